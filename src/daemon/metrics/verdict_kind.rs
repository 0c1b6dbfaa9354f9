//! What a verdict did to its packet, as `ftpct_verdicts_total` counts it:
//! an announcement rewritten is `rewritten` (as `ftpct_rewrites_total`
//! counts it), headers changed alone (sequence fix-ups, an MSS clamped)
//! are `adjusted`.

use ftpct_engine::event::Event;
use ftpct_engine::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    Accept,
    Rewritten,
    Adjusted,
    Drop,
}

impl VerdictKind {
    pub const ALL: [VerdictKind; 4] = [
        VerdictKind::Accept,
        VerdictKind::Rewritten,
        VerdictKind::Adjusted,
        VerdictKind::Drop,
    ];

    /// The kind of `verdict`, given the events of the same packet.
    pub fn of(verdict: &Verdict, events: &[Event]) -> Self {
        match verdict {
            Verdict::Accept => VerdictKind::Accept,
            Verdict::Drop => VerdictKind::Drop,
            Verdict::Replace(_) if events.iter().any(is_rewrite) => VerdictKind::Rewritten,
            Verdict::Replace(_) => VerdictKind::Adjusted,
        }
    }

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            VerdictKind::Accept => "accept",
            VerdictKind::Rewritten => "rewritten",
            VerdictKind::Adjusted => "adjusted",
            VerdictKind::Drop => "drop",
        }
    }
}

fn is_rewrite(e: &Event) -> bool {
    matches!(e, Event::Rewritten { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::tuple::{Dir, Tuple};

    #[test]
    fn a_replaced_packet_is_rewritten_only_with_a_rewrite() {
        let flow = Tuple {
            src: "192.0.2.10:40000".parse().expect("addr"),
            dst: "198.51.100.20:21".parse().expect("addr"),
        };
        let rewrite = Event::Rewritten {
            flow,
            dir: Dir::Orig,
            before: "PORT 192,0,2,10,156,64".into(),
            after: "PORT 198,51,100,1,156,64".into(),
        };
        let replaced = Verdict::Replace(Vec::new());
        assert_eq!(
            VerdictKind::of(&replaced, &[rewrite]),
            VerdictKind::Rewritten
        );
        assert_eq!(VerdictKind::of(&replaced, &[]), VerdictKind::Adjusted);
        assert_eq!(VerdictKind::of(&Verdict::Accept, &[]), VerdictKind::Accept);
        assert_eq!(VerdictKind::of(&Verdict::Drop, &[]), VerdictKind::Drop);
    }
}
