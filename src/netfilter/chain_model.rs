//! Test support: ftpct's raw-table chain run on one control segment, rule
//! by rule as the kernel would (the generated BPF programs in the testkit's
//! interpreter, xt_u32 and xt_string emulated), and the property that it
//! decides what the classifier says on every segment the generator makes:
//! the segments that cross are the ones `classify` names, no more, no
//! fewer; and over a connection's segments, that the counting set's
//! budget queues one once its direction passed that much unseen.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use ftpct_engine::classifier::{classify, Selection, Side};
use ftpct_engine::wire::TcpPacket;
use ftpct_testkit::bpf::Program;

use crate::netfilter::family::{Families, Family};
use crate::netfilter::rules::tests::{ruleset, u32_matches};
use crate::netfilter::rules::{Rule, RuleSet};

/// Where a segment leaves the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaves {
    Accepted,
    Queued,
    /// Past the last rule (the built-in chain's policy, ACCEPT).
    FellThrough,
}

/// One segment's walk: how it left, the (set, element) entries the SET
/// targets added on the way, and whether a budget of unseen bytes held.
struct Walk {
    leaves: Leaves,
    added: HashSet<(String, String)>,
    over_budget: bool,
}

/// The counting (unseen) set's elements and their byte counts, which
/// outlive one segment's walk.
type Counts = HashMap<String, u64>;

/// The rules of ftpct's PREROUTING chain, their programs parsed once.
struct Chain {
    rules: Vec<(Vec<String>, Vec<Program>)>,
    /// The set whose elements count bytes.
    counting: String,
}

impl Chain {
    fn new(rs: &RuleSet, family: Family) -> Chain {
        let rules = rs
            .rules(family, false)
            .into_iter()
            .filter(|r: &Rule| r.chain == "PREROUTING")
            .map(|r| {
                let programs = r
                    .spec
                    .iter()
                    .zip(r.spec.iter().skip(1))
                    .filter(|(w, _)| *w == "--bytecode")
                    .map(|(_, p)| Program::parse(p))
                    .collect();
                (r.spec, programs)
            })
            .collect();
        let counting = rs.sets.unseen_of(family).to_string();
        Chain { rules, counting }
    }

    /// One segment through the chain, its sets empty but the counting one.
    fn walk(&self, packet: &[u8], counts: &mut Counts) -> Walk {
        let pkt = TcpPacket::parse(packet).expect("a TCP segment");
        let mut sets = Sets {
            added: HashSet::new(),
            counts,
            counting: &self.counting,
            over_budget: false,
        };
        let leaves = self.leaves(packet, &pkt, &mut sets);
        Walk {
            leaves,
            added: sets.added,
            over_budget: sets.over_budget,
        }
    }

    fn leaves(&self, packet: &[u8], pkt: &TcpPacket<'_>, sets: &mut Sets<'_>) -> Leaves {
        for (spec, programs) in &self.rules {
            if !matches(spec, programs, packet, pkt, sets) {
                continue;
            }
            match target(spec) {
                Target::Accept => return Leaves::Accepted,
                Target::Queue => return Leaves::Queued,
                // The gate: what is not FTP control leaves ftpct's chain.
                Target::Return => return Leaves::FellThrough,
                Target::AddSet((set, flags)) => sets.add(&set, element(&flags, pkt), spec, packet),
                Target::None => {}
            }
        }
        Leaves::FellThrough
    }
}

/// The sets as one segment's walk sees them.
struct Sets<'a> {
    added: HashSet<(String, String)>,
    counts: &'a mut Counts,
    counting: &'a str,
    over_budget: bool,
}

impl Sets<'_> {
    /// A SET target's add: to the counting set only when missing (the
    /// rule has no `--exist`: the kernel would set the count back to this
    /// packet), counting this packet.
    fn add(&mut self, set: &str, element: String, spec: &[String], packet: &[u8]) {
        if set == self.counting {
            assert!(!spec.iter().any(|w| w == "--exist"), "{spec:?}");
            self.counts.entry(element).or_insert(packet.len() as u64);
        } else {
            self.added.insert((set.to_string(), element));
        }
    }

    /// A set match: the counting set's adds this packet to a present
    /// element's count (before any comparison: ip_set_match_extensions).
    fn holds(&mut self, set: &str, element: String, packet: &[u8]) -> (bool, Option<u64>) {
        if set != self.counting {
            return (self.added.contains(&(set.to_string(), element)), None);
        }
        match self.counts.get_mut(&element) {
            Some(count) => {
                *count += packet.len() as u64;
                (true, Some(*count))
            }
            None => (false, None),
        }
    }
}

/// The element a set match or add with `flags` (`src,src,dst`...) takes
/// from the packet.
fn element(flags: &str, pkt: &TcpPacket<'_>) -> String {
    let (src, dst) = (pkt.tuple.src, pkt.tuple.dst);
    flags
        .split(',')
        .enumerate()
        .map(|(i, side)| {
            let at = if side == "src" { src } else { dst };
            // ip,port[,ip]: the second names a port.
            if i == 1 {
                at.port().to_string()
            } else {
                at.ip().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The chain of each family of [`selective`]'s rules, built once.
fn chain(family: Family) -> &'static Chain {
    static CHAINS: OnceLock<[Chain; 2]> = OnceLock::new();
    let [v4, v6] = CHAINS.get_or_init(|| {
        let rs = selective();
        [Chain::new(&rs, Family::V4), Chain::new(&rs, Family::V6)]
    });
    match family {
        Family::V4 => v4,
        Family::V6 => v6,
    }
}

/// The default rules: selective queueing of port 21.
fn selective() -> RuleSet {
    RuleSet {
        queue_all: false,
        ..ruleset(Families::All)
    }
}

enum Target {
    Accept,
    Queue,
    Return,
    AddSet((String, String)),
    None,
}

fn target(spec: &[String]) -> Target {
    let Some(at) = spec.iter().position(|w| w == "-j") else {
        return Target::None;
    };
    match spec[at + 1].as_str() {
        "ACCEPT" => Target::Accept,
        "NFQUEUE" => Target::Queue,
        "RETURN" => Target::Return,
        "SET" => Target::AddSet((spec[at + 3].clone(), spec[at + 4].clone())),
        other => panic!("target {other}"),
    }
}

/// Whether every match of `spec` holds for `packet` (`programs`: its
/// xt_bpf programs, in order; `sets`: as the walk left them so far).
fn matches(
    spec: &[String],
    programs: &[Program],
    packet: &[u8],
    pkt: &TcpPacket<'_>,
    sets: &mut Sets<'_>,
) -> bool {
    let (src, dst) = (pkt.tuple.src.port(), pkt.tuple.dst.port());
    let ports = |list: &str| -> Vec<u16> {
        list.split(',')
            .map(|p| p.parse().expect("a port"))
            .collect()
    };
    let mut programs = programs.iter();
    let mut search = Search::default();
    let mut negate = false;
    let mut count = None;
    let mut i = 0;
    while i < spec.len() {
        let arg = |n: usize| spec[i + n].as_str();
        let (holds, used) = match spec[i].as_str() {
            "-j" => break,
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-p" | "-m" | "--limit" | "--limit-burst" | "--comment" | "--algo" | "--ctstate"
            | "--label" => (true, 2),
            "--dport" => (ports(arg(1)).contains(&dst), 2),
            "--sport" => (ports(arg(1)).contains(&src), 2),
            "--dports" => (ports(arg(1)).contains(&dst), 2),
            "--sports" => (ports(arg(1)).contains(&src), 2),
            "--ports" => (ports(arg(1)).iter().any(|&p| p == src || p == dst), 2),
            "--tcp-flags" => (flags_match(pkt, arg(1), arg(2)), 3),
            "--syn" => (pkt.flags.syn && !pkt.flags.ack && !pkt.flags.rst, 1),
            "--match-set" => {
                let (holds, counted) = sets.holds(arg(1), element(arg(2), pkt), packet);
                count = counted;
                (holds, 3)
            }
            "--bytes-gt" => {
                let over = count.is_some_and(|c| c > arg(1).parse().expect("a count"));
                sets.over_budget |= over;
                (over, 2)
            }
            "--bytecode" => (programs.next().expect("parsed").matches(packet), 2),
            "--u32" => (u32_matches(arg(1), packet), 2),
            "--from" => {
                search.from = arg(1).parse().expect("an offset");
                (true, 2)
            }
            "--string" => {
                search.word = Some(arg(1).to_string());
                (true, 2)
            }
            "--icase" => {
                search.any_case = true;
                (true, 1)
            }
            other => panic!("the model does not know {other}"),
        };
        if holds == negate {
            return false;
        }
        negate = false;
        i += used;
    }
    search.holds(packet)
}

/// xt_string: a word anywhere from an offset of the packet.
#[derive(Default)]
struct Search {
    from: usize,
    word: Option<String>,
    any_case: bool,
}

impl Search {
    fn holds(&self, packet: &[u8]) -> bool {
        let Some(word) = &self.word else {
            return true;
        };
        let searched = packet.get(self.from..).unwrap_or_default();
        searched.windows(word.len()).any(|w| {
            if self.any_case {
                w.eq_ignore_ascii_case(word.as_bytes())
            } else {
                w == word.as_bytes()
            }
        })
    }
}

/// `--tcp-flags MASK COMP` for the flags the rules name.
fn flags_match(pkt: &TcpPacket<'_>, mask: &str, comp: &str) -> bool {
    let f = &pkt.flags;
    let set = |names: &str| -> Vec<bool> {
        ["SYN", "ACK", "FIN", "RST"]
            .iter()
            .map(|n| names.split(',').any(|m| m == *n))
            .collect()
    };
    let have = [f.syn, f.ack, f.fin, f.rst];
    let (mask, comp) = (set(mask), set(comp));
    (0..4).all(|i| !mask[i] || have[i] == comp[i])
}

/// What the chain did, in the classifier's terms.
fn as_selection(walk: &Walk, rs: &RuleSet, family: Family) -> Result<Selection, String> {
    let guarded = walk
        .added
        .iter()
        .any(|(set, _)| set == rs.sets.guard_of(family));
    let noted = walk
        .added
        .iter()
        .any(|(set, _)| set == rs.sets.passive_of(family));
    match (walk.leaves, guarded, noted) {
        (Leaves::Queued, true, false) => {
            Ok(Selection::Crosses(ftpct_engine::classifier::Why::OpenLine))
        }
        (Leaves::Accepted | Leaves::FellThrough, false, true) => Ok(Selection::Noted),
        (Leaves::Accepted | Leaves::FellThrough, false, false) => Ok(Selection::Passes),
        (leaves, guarded, noted) => Err(format!(
            "{leaves:?}, guarded {guarded}, noted {noted}: no selection"
        )),
    }
}

/// The classifier's decision, the reason left out (the chain does not
/// tell its selectors apart).
fn decision(s: Selection) -> Selection {
    match s {
        Selection::Crosses(_) => Selection::Crosses(ftpct_engine::classifier::Why::OpenLine),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::sets::UNSEEN_BUDGET;
    use ftpct_testkit::{tuple, Ipv6Ext, Segment, Shape};
    use proptest::prelude::*;

    /// Pieces of control lines: the words and codes, in any case and cut
    /// anywhere, line ends alone, multi-line replies, and hostile bytes.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let text = [
            "PORT 192,0,2,10,4,1\r\n",
            "port",
            "EPRT |1|192.0.2.10|1025|\r\n",
            "PASV\r\n",
            "pasv",
            "EPSV\r\n",
            "epsv ALL\r\n",
            "AUTH TLS\r\n",
            "NOOP\r\n",
            "RETR file-1\r\n",
            "227 Entering Passive Mode (192,0,2,1,4,1)\r\n",
            "229 Entering Extended Passive Mode (|||5000|)\r\n",
            "234 AUTH ok\r\n",
            "211-Features:\r\n",
            " MDTM\r\n",
            "211 End\r\n",
            "200 ok\r\n",
            "226 Transfer complete\r\n",
            "\r\n",
            "\r",
            "\n",
            "-",
            "22",
            "7 ",
            "P",
            "ORT",
            "PAS",
            "V\r\n",
            " ",
        ]
        .map(|t| t.as_bytes().to_vec());
        prop_oneof![
            4 => proptest::sample::select(text.to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
            1 => (0usize..80).prop_map(|n| vec![b'a'; n]),
        ]
    }

    /// A payload: pieces one after another, then a window of them (a line
    /// split across segments starts or ends anywhere).
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        let lines = (
            proptest::collection::vec(piece(), 0..6),
            any::<u16>(),
            any::<u16>(),
        );
        prop_oneof![1 => piece(), 3 => windows(lines)]
    }

    fn windows(
        lines: impl Strategy<Value = (Vec<Vec<u8>>, u16, u16)>,
    ) -> impl Strategy<Value = Vec<u8>> {
        lines.prop_map(|(pieces, a, b)| {
            let all = pieces.concat();
            let (a, b) = (usize::from(a), usize::from(b));
            let start = if a % 3 == 0 { a % (all.len() + 1) } else { 0 };
            let end = if b % 3 == 0 {
                start + b % (all.len() - start + 1)
            } else {
                all.len()
            };
            all[start..end].to_vec()
        })
    }

    fn shape() -> impl Strategy<Value = (Family, Shape)> {
        let tcp = proptest::sample::select(vec![20usize, 24, 28, 32, 36, 40, 60]);
        let v4 = (
            tcp.clone(),
            proptest::sample::select(vec![0usize, 0, 4, 8, 12, 40]),
        )
            .prop_map(|(tcp_header, ipv4_options)| {
                let shape = Shape {
                    ipv4_options,
                    ..Shape::tcp(tcp_header)
                };
                (Family::V4, shape)
            });
        let mut exts: Vec<&'static [Ipv6Ext]> = vec![&[]; 8];
        exts.extend::<[&'static [Ipv6Ext]; 3]>([
            &[Ipv6Ext::HopByHop],
            &[Ipv6Ext::DestinationOptions],
            &[Ipv6Ext::Routing, Ipv6Ext::DestinationOptions],
        ]);
        let v6 = (tcp, proptest::sample::select(exts)).prop_map(|(tcp_header, ipv6_ext)| {
            let shape = Shape {
                ipv6_ext,
                ..Shape::tcp(tcp_header)
            };
            (Family::V6, shape)
        });
        prop_oneof![v4, v6]
    }

    /// A generated segment: its family, the side that sent it, its
    /// packet and payload.
    type Generated = (Family, Side, Vec<u8>, Vec<u8>);

    /// Segments from either side, in every shape, with a FIN or without,
    /// with sequence numbers that put any bytes in the header.
    fn segment() -> impl Strategy<Value = Generated> {
        let ends = (
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            1024u16..,
        );
        (shape(), payload(), ends).prop_map(
            |((family, shape), payload, (client_side, fin, seq, ack, port))| {
                let (client, server) = match family {
                    Family::V4 => (format!("192.0.2.10:{port}"), "198.51.100.20:21"),
                    Family::V6 => (format!("[2001:db8::10]:{port}"), "[2001:db8:2::20]:21"),
                };
                let (t, side) = if client_side {
                    (tuple(&client, server), Side::Client)
                } else {
                    (tuple(server, &client), Side::Server)
                };
                let segment = Segment::new(t, seq).ack(ack).payload(&payload);
                let segment = if fin { segment.fin() } else { segment };
                (family, side, shape.build(segment), payload)
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// The chain (the generated programs in the interpreter, the word
        /// searches, the sets) queues, notes or lets pass exactly what the
        /// classifier says.
        #[test]
        fn the_chain_decides_what_the_classifier_says(
            (family, side, packet, payload) in segment()
        ) {
            let walk = chain(family).walk(&packet, &mut Counts::new());
            let chain = as_selection(&walk, &selective(), family);
            let classified = decision(classify(&packet, side));
            prop_assert_eq!(
                chain,
                Ok(classified),
                "{:?} {:?}",
                side,
                String::from_utf8_lossy(&payload)
            );
        }
    }

    /// A connection's segments, client's or server's, `head` bytes short
    /// of their budget of unseen bytes (the connection ran before).
    fn connection() -> impl Strategy<Value = (Family, u64, Vec<(bool, Vec<u8>)>)> {
        let families = proptest::sample::select(vec![Family::V4, Family::V6]);
        let segments = proptest::collection::vec((any::<bool>(), payload()), 1..80);
        (families, 0u64..3000, segments)
    }

    fn connection_tuples(
        family: Family,
    ) -> (ftpct_engine::tuple::Tuple, ftpct_engine::tuple::Tuple) {
        match family {
            Family::V4 => (
                tuple("192.0.2.10:40000", "198.51.100.20:21"),
                tuple("198.51.100.20:21", "192.0.2.10:40000"),
            ),
            Family::V6 => (
                tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21"),
                tuple("[2001:db8:2::20]:21", "[2001:db8::10]:40000"),
            ),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Over a connection's segments, the chain counts what it lets
        /// pass: a segment crosses because of the count only once its
        /// direction's count goes over the budget, and then ftpct's recount
        /// (as it sends one: the segment showed a gap) starts it again; no
        /// more than the budget ever passes unseen between recounts; every
        /// other segment gets the classifier's decision.
        #[test]
        fn the_chain_queues_a_direction_over_its_unseen_budget(
            (family, head, segments) in connection()
        ) {
            let (c2s, s2c) = connection_tuples(family);
            let chain = chain(family);
            let rs = selective();
            let mut counts = Counts::new();
            // Both directions' elements (one: no NAT here), present.
            let noop = Segment::new(c2s, 1).ack(1).payload(b"NOOP\r\n").build();
            chain.walk(&noop, &mut counts);
            let counted = UNSEEN_BUDGET - head;
            for count in counts.values_mut() {
                *count = counted;
            }
            // The kernel's count, and what of it passed unseen.
            let (mut total, mut passed) = (counted, counted);
            let mut seq = [1u32, 1u32];
            for (client_side, payload) in segments {
                let (t, side, i) = if client_side {
                    (c2s, Side::Client, 0)
                } else {
                    (s2c, Side::Server, 1)
                };
                let packet = Segment::new(t, seq[i]).ack(seq[1 - i]).payload(&payload).build();
                seq[i] = seq[i].wrapping_add(payload.len() as u32);
                let walk = chain.walk(&packet, &mut counts);
                total += packet.len() as u64;
                prop_assert_eq!(walk.over_budget, total > UNSEEN_BUDGET);
                let chosen = as_selection(&walk, &rs, family);
                let classified = decision(classify(&packet, side));
                if walk.over_budget {
                    prop_assert_eq!(walk.leaves, Leaves::Queued);
                    counts.values_mut().for_each(|c| *c = 0);
                    (total, passed) = (0, 0);
                    continue;
                }
                prop_assert_eq!(chosen, Ok(classified));
                if walk.leaves != Leaves::Queued {
                    passed += packet.len() as u64;
                    prop_assert!(passed <= UNSEEN_BUDGET, "{} passed unseen", passed);
                }
            }
        }
    }

    /// The generator is not idle: among its segments, every decision the
    /// classifier can take, for every reason, tens of times at least.
    #[test]
    fn the_generator_makes_every_decision() {
        use ftpct_engine::classifier::Why;
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..5000 {
            let (_, side, packet, _) = segment().new_tree(&mut runner).expect("a value").current();
            let why = match classify(&packet, side) {
                Selection::Crosses(Why::Holds(_)) => "holds a word",
                Selection::Crosses(Why::OpenLine) => "open line",
                Selection::Crosses(Why::Unreadable) => "unreadable",
                Selection::Noted => "noted",
                Selection::Passes => "passes",
            };
            *seen.entry(why).or_insert(0) += 1;
        }
        for why in ["holds a word", "open line", "unreadable", "noted", "passes"] {
            assert!(seen.get(why).copied().unwrap_or(0) >= 20, "{seen:?}");
        }
    }
}
