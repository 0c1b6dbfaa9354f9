//! Runs every input of the `grammar` fuzz corpus through the same checks as
//! the fuzz target, so the corpus guards against regressions in a plain
//! `cargo test` (no fuzzer needed).

use std::fs;
use std::path::Path;

#[path = "../../../fuzz/fuzz_targets/grammar.rs"]
mod grammar_target;

use ftpct_engine::grammar::{parse_client_line, parse_server_line, ClientLine, ServerLine};
use grammar_target::check;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/grammar");

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let entries = fs::read_dir(Path::new(CORPUS)).expect("fuzz corpus directory");
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let line = fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&line));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
        count += 1;
    }
    assert!(count >= 20, "corpus unexpectedly small: {count} inputs");
}

#[test]
fn corpus_announcements_are_recognised() {
    // A few seeds whose meaning must not drift.
    let read = |name: &str| fs::read(Path::new(CORPUS).join(name)).expect("seed file");
    for name in ["port", "port-lower-lf", "eprt-v4", "eprt-v6", "eprt-bang"] {
        assert!(
            matches!(parse_client_line(&read(name)), Ok(ClientLine::Announce(_))),
            "{name}"
        );
    }
    for name in ["227", "227-equals", "227-no-parens", "229", "229-hash"] {
        assert!(
            matches!(parse_server_line(&read(name)), Ok(ServerLine::Announce(_))),
            "{name}"
        );
    }
    for name in ["port-octet-256", "eprt-octal", "227-seven", "229-no-close"] {
        let line = read(name);
        assert!(
            parse_client_line(&line).is_err() || parse_server_line(&line).is_err(),
            "{name}"
        );
    }
}
