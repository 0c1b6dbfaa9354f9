//! What a session's ladder shows, row by row: long sessions stay
//! readable because a data connection shows its first segment only (the
//! rest is counted), and an exchange repeated unchanged (a keep-alive)
//! is drawn once with how many times it came again.

use std::time::Duration;

use ftpct_engine::event::Event;

use super::crossing::Crossing;
use super::record::{Conn, Item};

/// Longest exchange, in segments, looked for repeats.
const MAX_EXCHANGE: usize = 6;
/// Repeats needed before an exchange is folded (it shows once, then
/// "n more times").
const MIN_REPEATS: usize = 2;

/// One row of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row<'a> {
    /// A segment drawn as arrows, with the events it brought.
    Arrow { conn: Conn, crossing: &'a Crossing },
    /// An event without a segment of its session.
    Note { time: Duration, event: &'a Event },
    /// Further segments of a data connection, counted.
    DataRun(DataRun),
    /// The `len` rows above came again `times` more times, alike.
    Repeated {
        len: usize,
        times: usize,
        until: Duration,
    },
}

/// Segments of a data connection folded into one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRun {
    pub conn: Conn,
    pub toward_inside: usize,
    pub from_inside: usize,
    /// Payload bytes, as captured on the inside.
    pub bytes: usize,
    pub until: Duration,
}

/// The rows of a session's items.
pub fn rows(items: &[Item]) -> Vec<Row<'_>> {
    fold_repeats(fold_data(items))
}

/// A data connection's segments after its first, without events of
/// their own, become counts.
fn fold_data(items: &[Item]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut seen: Vec<Conn> = Vec::new();
    for item in items {
        let (conn, crossing) = match item {
            Item::Note { time, event } => {
                rows.push(Row::Note { time: *time, event });
                continue;
            }
            Item::Crossing { conn, crossing } => (*conn, crossing),
        };
        let quiet_data = conn != Conn::Control && crossing.events.is_empty();
        if !quiet_data || !seen.contains(&conn) {
            seen.push(conn);
            rows.push(Row::Arrow { conn, crossing });
            continue;
        }
        match rows.last_mut() {
            Some(Row::DataRun(run)) if run.conn == conn => run.add(crossing),
            _ => {
                let mut run = DataRun {
                    conn,
                    toward_inside: 0,
                    from_inside: 0,
                    bytes: 0,
                    until: crossing.time,
                };
                run.add(crossing);
                rows.push(Row::DataRun(run));
            }
        }
    }
    rows
}

impl DataRun {
    fn add(&mut self, c: &Crossing) {
        if c.toward_inside {
            self.toward_inside += 1;
        } else {
            self.from_inside += 1;
        }
        self.bytes += c.inside.len;
        self.until = c.time;
    }

    pub fn segments(&self) -> usize {
        self.toward_inside + self.from_inside
    }
}

/// Runs of control segments that repeat an exchange of up to
/// [`MAX_EXCHANGE`] segments are drawn once and counted.
fn fold_repeats(rows: Vec<Row<'_>>) -> Vec<Row<'_>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut i = 0;
    while i < rows.len() {
        match repeat_at(&rows[i..]) {
            Some((len, times)) => {
                out.extend_from_slice(&rows[i..i + len]);
                let last = i + len * (times + 1) - 1;
                out.push(Row::Repeated {
                    len,
                    times,
                    until: row_time(&rows[last]),
                });
                i = last + 1;
            }
            None => {
                out.push(rows[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// The shortest exchange at the start of `rows` that repeats at least
/// [`MIN_REPEATS`] times, and how often it repeats.
fn repeat_at(rows: &[Row<'_>]) -> Option<(usize, usize)> {
    (1..=MAX_EXCHANGE.min(rows.len() / 2)).find_map(|len| {
        let block = &rows[..len];
        if !block.iter().all(is_foldable) {
            return None;
        }
        let times = rows[len..]
            .chunks_exact(len)
            .take_while(|next| next.iter().zip(block).all(|(a, b)| alike(a, b)))
            .count();
        (times >= MIN_REPEATS).then_some((len, times))
    })
}

/// A control segment that brought nothing but lines.
fn is_foldable(row: &Row<'_>) -> bool {
    match row {
        Row::Arrow {
            conn: Conn::Control,
            crossing,
        } => crossing
            .events
            .iter()
            .all(|e| matches!(e, Event::Line { .. })),
        _ => false,
    }
}

/// Two segments alike but for their numbers and time: same way, same
/// flags and payload on each side, the same shifts.
fn alike(a: &Row<'_>, b: &Row<'_>) -> bool {
    let (Row::Arrow { crossing: x, .. }, Row::Arrow { crossing: y, .. }) = (a, b) else {
        return false;
    };
    let shape = |s: &super::crossing::Segment| (s.flags.clone(), s.payload.clone(), s.len);
    is_foldable(a)
        && is_foldable(b)
        && x.toward_inside == y.toward_inside
        && shape(&x.inside) == shape(&y.inside)
        && x.outside.as_ref().map(shape) == y.outside.as_ref().map(shape)
        && (x.seq_shift(), x.ack_shift()) == (y.seq_shift(), y.ack_shift())
}

fn row_time(row: &Row<'_>) -> Duration {
    match row {
        Row::Arrow { crossing, .. } => crossing.time,
        Row::Note { time, .. } => *time,
        Row::DataRun(run) => run.until,
        Row::Repeated { until, .. } => *until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::crossing::tests::packet;
    use crate::ladder::crossing::Segment;

    fn seg(from_client: bool, seq: u32, payload: &[u8], ms: u64) -> Crossing {
        let s = Segment::parse(&packet(from_client, seq, 1, payload)).expect("tcp");
        Crossing {
            time: Duration::from_millis(ms),
            toward_inside: !from_client,
            inside: s.clone(),
            outside: Some(s),
            events: Vec::new(),
        }
    }

    fn control(c: Crossing) -> Item {
        Item::Crossing {
            conn: Conn::Control,
            crossing: c,
        }
    }

    /// NOOP, its reply, the client's ACK: `n` times, numbers moving on.
    fn noops(n: u32) -> Vec<Item> {
        (0..n)
            .flat_map(|i| {
                let ms = u64::from(i) * 1000;
                [
                    control(seg(true, 100 + 6 * i, b"NOOP\r\n", ms)),
                    control(seg(false, 500 + 8 * i, b"200 ok\r\n", ms + 1)),
                    control(seg(true, 106 + 6 * i, b"", ms + 2)),
                ]
            })
            .collect()
    }

    #[test]
    fn repeated_exchanges_are_drawn_once_and_counted() {
        let items = noops(5);
        let rows = rows(&items);
        assert_eq!(rows.len(), 4, "{rows:#?}");
        assert!(matches!(
            rows[3],
            Row::Repeated { len: 3, times: 4, until } if until == Duration::from_millis(4002)
        ));
    }

    #[test]
    fn a_single_repeat_is_not_folded() {
        assert_eq!(rows(&noops(2)).len(), 6);
    }

    #[test]
    fn a_segment_with_a_decision_is_never_folded() {
        let mut items = noops(4);
        if let Item::Crossing { crossing, .. } = &mut items[6] {
            crossing.events.push(Event::FlowClosed {
                flow: crossing.inside.tuple,
            });
        }
        let rows = rows(&items);
        // Two exchanges drawn, then the one with the event, then the last.
        assert!(rows.iter().all(|r| !matches!(r, Row::Repeated { .. })));
        assert_eq!(rows.len(), 12);
    }

    #[test]
    fn a_data_connection_shows_its_first_segment_and_counts_the_rest() {
        let data = |c| Item::Crossing {
            conn: Conn::Data(1),
            crossing: c,
        };
        let items = vec![
            data(seg(false, 1, b"", 1)),
            data(seg(true, 1, b"", 2)),
            data(seg(false, 2, &[7; 100], 3)),
            control(seg(false, 9, b"226 done\r\n", 4)),
            data(seg(false, 102, b"", 5)),
        ];
        let rows = rows(&items);
        assert_eq!(rows.len(), 4);
        let Row::DataRun(run) = &rows[1] else {
            panic!("{rows:#?}")
        };
        assert_eq!((run.segments(), run.from_inside, run.bytes), (2, 1, 100));
        assert!(matches!(&rows[3], Row::DataRun(r) if r.segments() == 1));
    }
}
