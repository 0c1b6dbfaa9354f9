//! A Prometheus text scrape, read for the tests: each family's type and
//! each series' value, by the text the exposition writes them with.
#![allow(dead_code)]

use std::collections::HashMap;

pub struct Scrape {
    /// `# TYPE NAME KIND`: NAME to KIND.
    types: HashMap<String, String>,
    /// `NAME{LABELS} VALUE`: `NAME{LABELS}` to VALUE.
    values: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut types = HashMap::new();
        let mut values = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    types.insert(name.to_string(), kind.to_string());
                }
            } else if !line.starts_with('#') {
                if let Some((series, value)) = line.rsplit_once(' ') {
                    if let Ok(v) = value.parse::<f64>() {
                        values.insert(series.to_string(), v);
                    }
                }
            }
        }
        Scrape {
            types,
            values,
            text: text.to_string(),
        }
    }

    /// The type of a family (`counter`, `gauge`, `histogram`), as declared.
    pub fn kind(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// The value of a series, written as in the text (`name{a="b"}`).
    pub fn value(&self, series: &str) -> f64 {
        *self
            .values
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.text))
    }

    /// Panics unless `family` is declared as `kind`.
    pub fn has(&self, family: &str, kind: &str) {
        assert_eq!(
            self.kind(family),
            Some(kind),
            "{family} as a {kind}:\n{}",
            self.text
        );
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}
