//! `ftpct rules`: the iptables/ip6tables rules ftpct needs, as a
//! [`RuleSet`]. Their chains and the script `ftpct rules` prints are
//! `chains.rs`, loading them `iptables.rs`, the sets they name `sets.rs`.
//!
//! Every rule goes in the raw table (before conntrack), in ftpct's chain
//! for PREROUTING or for OUTPUT (a rule's `chain` names the built-in chain
//! its chain hangs off). Per family:
//! - last in PREROUTING's, a rule with a conntrack match and one with a
//!   connlabel match, no target: they only make the kernel run conntrack
//!   in this namespace (a fresh one runs none until a rule needs it) and
//!   give its entries room for labels, when loaded; after the others, a
//!   control packet queued or accepted before them does not pay for their
//!   matches. The conntrack rule's comment also records whether ftpct
//!   created the raw table, so `--delete` can remove an empty table it
//!   created;
//! - PREROUTING and OUTPUT, first: a segment to a control port puts its
//!   client's address and port in the client set (SET target with
//!   `--exist`: the SYN adds it, each later segment renews it); a SYN
//!   whose destination address and port are in the ipset of expected data
//!   connections -> NFQUEUE; then every packet that is neither to nor from
//!   a control port, nor to a client in the client set, leaves ftpct's
//!   chain. What stays is FTP control: a segment to a control port is the
//!   client's, any other the server's, whatever port NAT gave the server
//!   (`DNAT --to-destination INSIDE:2121` of public port 21; the raw table
//!   sees packets before conntrack, whose matches see nothing there);
//! - PREROUTING and OUTPUT, selective queueing (the default): a control
//!   segment that can hold part of an announcement, AUTH or a multi-line
//!   opener (xt_string), or that does not end a line with CR LF or whose
//!   headers the programs do not read (IPv6 extension headers:
//!   `bpf::not_ending_a_line`), puts its direction (source address and
//!   port, destination address) in the guard ipset; every packet of a
//!   direction in the guard set -> NFQUEUE. A segment that is one short
//!   line whose start cannot matter (xt_bpf, `bpf::quick_plain_line` first
//!   for the common header shape, then `bpf::plain_line`, which read IPv4
//!   options and TCP headers of any length) leaves before the handshake
//!   rules and the string searches. ftpct
//!   takes the direction out again once it has seen what it needed (see
//!   docs/DESIGN.md, "Selective queueing");
//! - with `--queue-all` instead: every control packet -> NFQUEUE.
//!
//! `--queue-bypass` lets packets through when ftpct is not running.

use ftpct_engine::classifier::{search_words, string_from};

use ftpct_engine::classifier::Side;

use crate::netfilter::bpf;
use crate::netfilter::family::Family;
use crate::netfilter::programs::Kind;
// The sets the rules match: reachable where the RuleSet is.
use crate::netfilter::sets::UNSEEN_BUDGET;
pub use crate::netfilter::sets::{SetNames, DEFAULT_SET};

pub(crate) const TABLE: &str = "raw";
/// At most this many ports fit one multiport match.
const MULTIPORT_MAX: usize = 15;
pub(crate) const COMMENT_CT: &str = "ftpct: turns conntrack on";
pub(crate) const COMMENT_CT_CREATED: &str =
    "ftpct: turns conntrack on (raw table created by ftpct)";
pub(crate) const COMMENT_CONTROL: &str = "ftpct: FTP control channel";
const COMMENT_SELECT: &str = "ftpct: may hold an announcement: queue this direction";
const COMMENT_OPEN_LINE: &str =
    "ftpct: ends inside a line, or headers not read: queue this direction";
pub(crate) const COMMENT_GUARDED: &str = "ftpct: FTP control directions ftpct follows";
const COMMENT_CLOSE: &str = "ftpct: FTP control connections' resets, within the budget";
const COMMENT_PASSIVE: &str =
    "ftpct: a PASV or EPSV alone in its segment: noted in the passive set, not queued";
const COMMENT_FIN: &str = "ftpct: FTP sessions whose client sent its FIN";
const COMMENT_UNSEEN_BUDGET: &str =
    "ftpct: FTP control directions over their unseen budget: queue this direction";
const COMMENT_UNSEEN: &str = "ftpct: FTP control directions counting what passes unseen";

const COMMENT_PICKED: &str = "ftpct: FTP control segments just picked";
const COMMENT_QUICK: &str =
    "ftpct: a segment without payload, or one short line with no announcement, AUTH or multi-line opener, passes unqueued, common shape only";
pub(crate) const COMMENT_PLAIN: &str =
    "ftpct: a segment without payload, or one line with no announcement, AUTH or multi-line opener, passes unqueued";

/// The match of the control ports on `side` (`--dports`, `--sports` or
/// `--ports`): one port by the tcp match (iptables-nft makes it a plain
/// payload comparison, where multiport is an xtables call), else
/// multiport.
fn port_match(side: &str, ports: &str) -> Vec<String> {
    let single = match side {
        "--dports" => Some("--dport"),
        "--sports" => Some("--sport"),
        _ => None,
    };
    match single {
        Some(flag) if !ports.contains(',') => words(&[flag, ports]),
        _ => words(&["-m", "multiport", side, ports]),
    }
}

/// [`port_match`], negated: none of the ports on `side` (`--dports` or
/// `--sports`).
fn negated_port_match(side: &str, ports: &str) -> Vec<String> {
    let mut m = port_match(side, ports);
    let at = m.len() - 2;
    m.insert(at, "!".into());
    m
}

/// u32 test: the TCP header is 32 bytes (data offset 8).
fn tcp_header_is_32(family: Family) -> &'static str {
    match family {
        // The IP header's length, then the data offset at TCP byte 12.
        Family::V4 => "0>>22&0x3C@12>>26&0x3C=32",
        // TCP right after the IPv6 header (next header 6), else byte 52 is
        // not TCP's: behind extension headers it could say 32 by chance
        // and start the search past the payload's first bytes.
        Family::V6 => "6>>24=6&&52>>26&0x3C=32",
    }
}
const COMMENT_HANDSHAKE: &str = "ftpct: FTP control handshakes, within the budget";
const COMMENT_HANDSHAKE_EXCESS: &str =
    "ftpct: FTP control handshakes over the budget (a flood) pass unqueued";
/// Packets with SYN set (SYN, SYN-ACK) of control connections queued per
/// second at most: 5,000 sessions a second (more than the kernel helper
/// carries on the benchmark's machine), a tenth of what a queue thread
/// handles. Beyond it (a spoofed SYN flood) they pass unqueued, so the
/// queue keeps room for real sessions' commands; a session whose handshake
/// was not queued is picked up at its next packet, and cannot hand its
/// fix-ups to the kernel (its SYN-ACK is the moment): ftpct then follows
/// it whole.
pub const HANDSHAKE_BUDGET: &str = "10000/sec";
const HANDSHAKE_BURST: &str = "10000";
const COMMENT_SYN: &str = "ftpct: expected FTP data connections";
const COMMENT_CLIENT: &str =
    "ftpct: FTP clients noted, so their servers' side is followed whatever its port after NAT";
const COMMENT_GATE: &str = "ftpct: not FTP control: leaves ftpct's chain";
pub(crate) const COMMENT_LABELS: &str =
    "ftpct: conntrack labels on (pending expectations kept in conntrack)";
/// A label bit the rule names: a rule that uses labels is what makes the
/// kernel give conntrack entries room for them (`labels_used`); it matches
/// nothing ftpct relies on and has no target.
pub const LABELS_RULE_BIT: &str = "127";

/// Where the rules send packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTarget {
    Num(u16),
    /// `--queue-balance N:M`: one queue per core, `ftpct run --queue N ... --queue M`.
    Balance(u16, u16),
}

impl QueueTarget {
    fn args(self) -> Vec<String> {
        let mut a = match self {
            QueueTarget::Num(n) => vec!["--queue-num".to_string(), n.to_string()],
            QueueTarget::Balance(lo, hi) => vec!["--queue-balance".into(), format!("{lo}:{hi}")],
        };
        a.push("--queue-bypass".into());
        a
    }

    /// The queues `ftpct run` must bind.
    pub fn queues(self) -> Vec<u16> {
        match self {
            QueueTarget::Num(n) => vec![n],
            QueueTarget::Balance(lo, hi) => (lo..=hi).collect(),
        }
    }
}

/// `N:M` for --queue-balance.
pub fn parse_balance(s: &str) -> Result<QueueTarget, String> {
    let err = || format!("'{s}': expected FIRST:LAST queue numbers, e.g. 0:1");
    let (lo, hi) = s.split_once(':').ok_or_else(err)?;
    let lo: u16 = lo.parse().map_err(|_| err())?;
    let hi: u16 = hi.parse().map_err(|_| err())?;
    if lo >= hi {
        return Err(format!("'{s}': the first queue must be below the last"));
    }
    Ok(QueueTarget::Balance(lo, hi))
}

/// What a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ConntrackOn,
    /// Makes conntrack entries carry labels.
    Labels,
    /// Control handshakes, queued within a rate budget.
    Handshake,
    /// Control handshakes over the budget, accepted unqueued.
    HandshakeExcess,
    Control,
    /// Selective queueing: a segment that can matter puts its direction in
    /// the guard set.
    Select,
    /// Selective queueing: RSTs of control connections, within a rate
    /// budget.
    Close,
    /// Selective queueing: a client's FIN puts its session in the FIN set
    /// (read by ftpct every second), and goes on through the chain.
    Fin,
    /// Selective queueing: a segment without payload, or that is one line
    /// that cannot matter, leaves the chain (cheaper than the selectors'
    /// string searches).
    Plain,
    /// Selective queueing: a PASV or EPSV alone in its segment is noted
    /// in the passive set, and leaves the chain.
    Passive,
    /// Selective queueing: every packet of a guarded direction is queued.
    Guarded,
    /// Selective queueing: a direction over its budget of unseen bytes is
    /// put in the guard set (and queued by the next rule).
    UnseenBudget,
    /// Selective queueing: a direction's unseen bytes counted from its
    /// first segment that passes the guard rules.
    Unseen,
    ExpectedSyn,
    /// A client's segment notes its address and port in the client set.
    Client,
    /// What is not FTP control leaves the chain.
    Gate,
}

/// One rule of the raw table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    pub role: Role,
    /// The rule specification, after `-A CHAIN`.
    pub spec: Vec<String>,
}

/// Everything the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub families: Vec<Family>,
    pub queue: QueueTarget,
    pub control_ports: Vec<u16>,
    pub sets: SetNames,
    /// `--queue-all`: every control packet is queued (no selection).
    pub queue_all: bool,
}

pub(crate) fn words(s: &[&str]) -> Vec<String> {
    s.iter().map(|w| w.to_string()).collect()
}

/// The conntrack rule, with the comment saying who created the table.
pub(crate) fn conntrack_on(table_created: bool) -> Rule {
    let comment = if table_created {
        COMMENT_CT_CREATED
    } else {
        COMMENT_CT
    };
    Rule {
        chain: "PREROUTING",
        role: Role::ConntrackOn,
        spec: words(&[
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "comment",
            "--comment",
            comment,
        ]),
    }
}

/// A rule that only uses a conntrack label: while it exists, new entries
/// (those packets make and those ctnetlink makes) have room for labels,
/// where ftpct keeps each session's pending expectation.
pub(crate) fn labels_on() -> Rule {
    Rule {
        chain: "PREROUTING",
        role: Role::Labels,
        spec: words(&[
            "-m",
            "connlabel",
            "--label",
            LABELS_RULE_BIT,
            "-m",
            "comment",
            "--comment",
            COMMENT_LABELS,
        ]),
    }
}

impl RuleSet {
    /// The rules of one family, in the order they are appended.
    pub fn rules(&self, family: Family, table_created: bool) -> Vec<Rule> {
        let mut rules = Vec::new();
        for chain in ["PREROUTING", "OUTPUT"] {
            rules.extend(self.entry(family, chain));
            if self.queue_all {
                // Past the gate every packet is FTP control.
                rules.extend(self.handshakes(chain));
                let mut control = words(&["-p", "tcp"]);
                control.extend(words(&["-m", "comment", "--comment", COMMENT_CONTROL]));
                control.extend(self.target());
                rules.push(Rule {
                    chain,
                    role: Role::Control,
                    spec: control,
                });
                continue;
            }
            for (n, ports) in self.port_lists().iter().enumerate() {
                // Past the gate the handshake rules need no port: the
                // first group has them.
                let handshakes = if n == 0 {
                    self.handshakes(chain)
                } else {
                    Vec::new()
                };
                rules.extend(self.selective(family, chain, ports, handshakes));
            }
        }
        // Last: the rules without a target act when they are loaded, not
        // on packets, and a control packet queued or accepted before them
        // never pays for their matches.
        rules.extend([conntrack_on(table_created), labels_on()]);
        rules
    }

    /// The first rules of `chain`: clients noted, expected data SYNs
    /// queued, and the gate that lets everything else leave.
    fn entry(&self, family: Family, chain: &'static str) -> Vec<Rule> {
        let client_set = self.sets.client_of(family);
        let mut rules: Vec<Rule> = self
            .port_lists()
            .iter()
            .map(|ports| {
                let mut spec = words(&["-p", "tcp"]);
                spec.extend(port_match("--dports", ports));
                spec.extend(words(&["-m", "comment", "--comment", COMMENT_CLIENT]));
                spec.extend(words(&["-j", "SET", "--add-set", client_set, "src,src"]));
                spec.push("--exist".into());
                Rule {
                    chain,
                    role: Role::Client,
                    spec,
                }
            })
            .collect();
        let mut spec = words(&["-p", "tcp", "--syn", "-m", "set", "--match-set"]);
        spec.push(self.sets.of(family).to_string());
        spec.extend(words(&[
            "dst,dst",
            "-m",
            "comment",
            "--comment",
            COMMENT_SYN,
        ]));
        spec.extend(self.target());
        rules.push(Rule {
            chain,
            role: Role::ExpectedSyn,
            spec,
        });
        let mut gate = words(&["-p", "tcp"]);
        for ports in self.port_lists() {
            gate.extend(negated_port_match("--dports", &ports));
            // A tcp match of its own: iptables-nft (1.8.9) makes `! --sport
            // A ! --dport B` of one match a single test of both ports, true
            // when either differs (kernel test `tests/kernel_selection.rs`).
            if !ports.contains(',') {
                gate.extend(words(&["-m", "tcp"]));
            }
            gate.extend(negated_port_match("--sports", &ports));
        }
        gate.extend(words(&[
            "-m",
            "set",
            "!",
            "--match-set",
            client_set,
            "dst,dst",
        ]));
        gate.extend(words(&[
            "-m",
            "comment",
            "--comment",
            COMMENT_GATE,
            "-j",
            "RETURN",
        ]));
        rules.push(Rule {
            chain,
            role: Role::Gate,
            spec: gate,
        });
        rules
    }

    /// The handshake rules (SYN set: the client's SYN, the server's
    /// SYN-ACK): queued within the budget, accepted over it.
    fn handshakes(&self, chain: &'static str) -> Vec<Rule> {
        let handshake = words(&["-p", "tcp", "--tcp-flags", "SYN", "SYN"]);
        let mut within = handshake.clone();
        within.extend(words(&["-m", "limit", "--limit", HANDSHAKE_BUDGET]));
        within.extend(words(&["--limit-burst", HANDSHAKE_BURST]));
        within.extend(words(&["-m", "comment", "--comment", COMMENT_HANDSHAKE]));
        within.extend(self.target());
        let mut excess = handshake;
        excess.extend(words(&[
            "-m",
            "comment",
            "--comment",
            COMMENT_HANDSHAKE_EXCESS,
        ]));
        excess.extend(words(&["-j", "ACCEPT"]));
        vec![
            Rule {
                chain,
                role: Role::Handshake,
                spec: within,
            },
            Rule {
                chain,
                role: Role::HandshakeExcess,
                spec: excess,
            },
        ]
    }

    /// The control ports, as multiport lists.
    fn port_lists(&self) -> Vec<String> {
        self.control_ports
            .chunks(MULTIPORT_MAX)
            .map(|ports| {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                list.join(",")
            })
            .collect()
    }

    /// Past the gate, the server's side: a segment to no control port.
    fn server_side(&self) -> Vec<String> {
        self.port_lists()
            .iter()
            .flat_map(|ports| negated_port_match("--dports", ports))
            .collect()
    }

    /// Selective queueing for the control ports `ports` in `chain`, in
    /// order: the session's ends; every packet of a followed connection;
    /// any other segment without payload leaves (cheap: most packets are
    /// ACKs); the selectors put a connection in the guard set; the queue
    /// rules again, for what the selectors just picked. The guard entry is
    /// the client's address and port and the server's address:
    /// `src,src,dst` of a client segment (to a control port), `dst,dst,src`
    /// of a server segment (past the gate, to any other port).
    fn selective(
        &self,
        family: Family,
        chain: &'static str,
        ports: &str,
        handshakes: Vec<Rule>,
    ) -> Vec<Rule> {
        let guard = self.sets.guard_of(family);
        let (client_side, server_side) = (port_match("--dports", ports), self.server_side());
        let sides = [
            (client_side.as_slice(), "src,src,dst"),
            (server_side.as_slice(), "dst,dst,src"),
        ];
        let rule = |role, spec| Rule { chain, role, spec };
        // A session's end. The client's FIN (the server's adds nothing)
        // is not queued: it puts the session in the FIN set, which ftpct
        // reads every second and forgets it 10 s later (not when conntrack
        // drops its TIME_WAIT entry, 2 minutes on: a busy gateway's
        // sessions would fill the flow table). The segment goes on through
        // the rules below (it may carry a line). An RST, rare, is queued,
        // within a budget as the handshakes are: a flood of RSTs passes on
        // to the rules below.
        let fin = {
            let (fin_set, _) = self.sets.fin_of(family);
            let mut spec = words(&["-p", "tcp", "--tcp-flags", "FIN", "FIN"]);
            spec.extend(port_match("--dports", ports));
            spec.extend(words(&["-m", "comment", "--comment", COMMENT_FIN]));
            spec.extend(words(&["-j", "SET", "--add-set", fin_set, "src,src,dst"]));
            spec.push("--exist".into());
            rule(Role::Fin, spec)
        };
        let reset = {
            // Past the gate: an RST of either side.
            let mut spec = words(&["-p", "tcp", "--tcp-flags", "RST", "RST"]);
            spec.extend(words(&["-m", "limit", "--limit", HANDSHAKE_BUDGET]));
            spec.extend(words(&["--limit-burst", HANDSHAKE_BURST]));
            spec.extend(words(&["-m", "comment", "--comment", COMMENT_CLOSE]));
            spec.extend(self.target());
            rule(Role::Close, spec)
        };
        let guarded = |comment: &str, (side, key): (&[String], &str)| {
            let mut spec = words(&["-p", "tcp"]);
            spec.extend_from_slice(side);
            spec.extend(words(&["-m", "set", "--match-set", guard, key]));
            spec.extend(words(&["-m", "comment", "--comment", comment]));
            spec.extend(self.target());
            rule(Role::Guarded, spec)
        };
        let select = |(side, key): (&[String], &str), matches: Vec<String>, comment: &str| {
            let mut spec = words(&["-p", "tcp"]);
            spec.extend_from_slice(side);
            spec.extend(matches);
            spec.extend(words(&["-m", "comment", "--comment", comment]));
            spec.extend(words(&["-j", "SET", "--add-set", guard, key, "--exist"]));
            rule(Role::Select, spec)
        };
        // One rule for segments with timestamps (searched from their
        // payload), one for the others. KMP, not Boyer-Moore: the kernel's
        // Boyer-Moore misses a word that spans two fragments of a packet.
        let string = |word: &str, icase: bool, timestamps: bool| {
            let mut m = words(&["-m", "u32"]);
            if !timestamps {
                m.push("!".into());
            }
            m.extend(words(&["--u32", tcp_header_is_32(family)]));
            let from = string_from(family.ip(), timestamps).to_string();
            m.extend(words(&["-m", "string", "--algo", "kmp", "--from", &from]));
            m.extend(words(&["--string", word]));
            if icase {
                m.push("--icase".into());
            }
            m
        };
        // A rule that lets a segment of either side leave when all its
        // programs match.
        let passes = |comment: &str, kind: Kind| {
            sides
                .into_iter()
                .zip([bpf::Side::Client, bpf::Side::Server])
                .map(|((side, _), who)| {
                    let mut spec = words(&["-p", "tcp"]);
                    spec.extend_from_slice(side);
                    for program in kind.programs(family, who) {
                        spec.extend(words(&["-m", "bpf", "--bytecode", &program]));
                    }
                    let named = format!("{comment} ({})", kind.label(who));
                    spec.extend(words(&["-m", "comment", "--comment", &named]));
                    spec.extend(words(&["-j", "ACCEPT"]));
                    rule(Role::Plain, spec)
                })
                .collect::<Vec<_>>()
        };
        // What most segments meet, first: the FIN rule (a native flags
        // test), the guard set, then the quick rule, which lets segments
        // without payload (most are ACKs) and short lines (most commands
        // and replies) of the common shape leave; they never reach the
        // handshake and reset rules (the quick program leaves SYN, FIN and
        // RST to them). Other short lines leave by a rule of two programs,
        // longer ones by one of all five (an xt_bpf match costs the same
        // before its program reads anything, then each byte a general
        // program reads costs a helper call, where the quick one reads
        // words at fixed places, inline).
        let [over_budget, counted] = self.unseen(family, chain, sides);
        let mut rules = vec![fin];
        rules.extend(over_budget);
        rules.extend(sides.map(|side| guarded(COMMENT_GUARDED, side)));
        rules.extend(counted);
        rules.extend(passes(COMMENT_QUICK, Kind::Quick));
        rules.extend(handshakes);
        rules.push(reset);
        rules.extend(passes(COMMENT_PLAIN, Kind::Short));
        rules.extend(passes(COMMENT_PLAIN, Kind::Long));
        let [client, server] = sides;
        // A PASV or EPSV alone in its segment is not queued: it is noted in
        // the passive set (ftpct takes the note when the 227 or 229 comes:
        // an announcement counts only when asked for) and leaves the chain.
        let passive = words(&["-m", "bpf", "--bytecode", &bpf::passive_request(family)]);
        let passive_comment = format!("{COMMENT_PASSIVE} ({})", Kind::Passive.label(Side::Client));
        let (passive_set, (client_side, client_key)) = (self.sets.passive_of(family), client);
        let note = words(&["-j", "SET", "--add-set", passive_set, client_key, "--exist"]);
        for target in [note, words(&["-j", "ACCEPT"])] {
            let mut spec = words(&["-p", "tcp"]);
            spec.extend_from_slice(client_side);
            spec.extend(passive.clone());
            spec.extend(words(&["-m", "comment", "--comment", &passive_comment]));
            spec.extend(target);
            rules.push(rule(Role::Passive, spec));
        }
        for timestamps in [true, false] {
            for (side, who) in [(client, bpf::Side::Client), (server, bpf::Side::Server)] {
                let (words, any_case) = search_words(who);
                for w in words {
                    rules.push(select(
                        side,
                        string(w, any_case, timestamps),
                        COMMENT_SELECT,
                    ));
                }
            }
        }
        let open_line = words(&["-m", "bpf", "--bytecode", &bpf::not_ending_a_line(family)]);
        let open_comment = format!(
            "{COMMENT_OPEN_LINE} ({})",
            Kind::OpenLine.label(Side::Client)
        );
        for side in sides {
            rules.push(select(side, open_line.clone(), &open_comment));
        }
        rules.extend(sides.map(|side| guarded(COMMENT_PICKED, side)));
        rules
    }

    /// Selective queueing: the budget rules, before the guard rules, and
    /// the counting rules, after them. A budget rule puts a direction
    /// whose unseen bytes counted over [`UNSEEN_BUDGET`] in the guard set,
    /// so that the guard rules queue it, and so that a segment ending
    /// inside a line keeps its direction queued, as a selector would. Its
    /// set match adds the packet to the element's count before comparing;
    /// it is the only match of the counting set a packet meets (the
    /// counting rule's add is a target, which counts nothing). A counting
    /// rule gives a direction not followed its count, without `--exist`:
    /// a rule's add of a present element would set its count back to this
    /// one packet; the element stays as it is, renewed only by ftpct's
    /// recount.
    fn unseen(
        &self,
        family: Family,
        chain: &'static str,
        sides: [(&[String], &str); 2],
    ) -> [Vec<Rule>; 2] {
        let (unseen, guard) = (self.sets.unseen_of(family), self.sets.guard_of(family));
        let budget = UNSEEN_BUDGET.to_string();
        let over = per_side((chain, Role::UnseenBudget), sides, |key| {
            let mut spec = words(&["-m", "set", "--match-set", unseen, key]);
            spec.extend(words(&["--bytes-gt", &budget]));
            let comment = COMMENT_UNSEEN_BUDGET;
            spec.extend(words(&["-m", "comment", "--comment", comment]));
            spec.extend(words(&["-j", "SET", "--add-set", guard, key, "--exist"]));
            spec
        });
        // Not a handshake's or a reset's segment: a SYN flood's spoofed
        // ports would fill the set (and grow its hash under the flood),
        // and the count starts with what can pass unseen anyway.
        let counted = per_side((chain, Role::Unseen), sides, |key| {
            let mut spec = words(&["--tcp-flags", "SYN,RST", "NONE"]);
            spec.extend(words(&["-m", "comment", "--comment", COMMENT_UNSEEN]));
            spec.extend(words(&["-j", "SET", "--add-set", unseen, key]));
            spec
        });
        [over, counted]
    }

    /// The same rules in both queueing modes (what `--delete` removes, and
    /// what `--apply` takes away from the other mode).
    pub fn with_queue_all(&self, queue_all: bool) -> RuleSet {
        RuleSet {
            queue_all,
            ..self.clone()
        }
    }

    fn target(&self) -> Vec<String> {
        let mut t = words(&["-j", "NFQUEUE"]);
        t.extend(self.queue.args());
        t
    }

    pub(crate) fn port_list(&self) -> String {
        let list: Vec<String> = self.control_ports.iter().map(u16::to_string).collect();
        list.join(",")
    }
}

/// One rule of `role` in `chain` for each side: a TCP segment of that
/// side's ports, then what `rest` makes of the side's set key.
fn per_side(
    (chain, role): (&'static str, Role),
    sides: [(&[String], &str); 2],
    rest: impl Fn(&str) -> Vec<String>,
) -> Vec<Rule> {
    sides
        .into_iter()
        .map(|(side, key)| {
            let mut spec = words(&["-p", "tcp"]);
            spec.extend_from_slice(side);
            spec.extend(rest(key));
            Rule { chain, role, spec }
        })
        .collect()
}

/// Whether to add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    Delete,
    /// `--delete --force`: even while a program reads the queues.
    ForceDelete,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::netfilter::family::Families;

    pub(crate) fn ruleset(families: Families) -> RuleSet {
        RuleSet {
            families: families.list(),
            queue: QueueTarget::Num(0),
            control_ports: vec![21],
            sets: SetNames::new("ftpct").expect("names"),
            queue_all: true,
        }
    }

    #[test]
    fn queue_balance_and_many_ports() {
        let mut rs = ruleset(Families::V4);
        rs.queue = parse_balance("0:3").expect("balance");
        rs.control_ports = (2100..2120).collect();
        let rules = rs.rules(Family::V4, false);
        let control: Vec<&Rule> = rules.iter().filter(|r| r.role == Role::Control).collect();
        assert_eq!(
            control.len(),
            2,
            "past the gate, one control rule per chain"
        );
        let of = |role| rules.iter().filter(|r| r.role == role).collect::<Vec<_>>();
        assert_eq!(
            of(Role::Client).len(),
            4,
            "20 ports: 2 multiport rules per chain"
        );
        let gate = of(Role::Gate)[0].spec.join(" ");
        assert!(
            gate.contains("-m multiport ! --dports 2100,2101,")
                && gate.contains("-m multiport ! --sports 2115,2116,2117,2118,2119 ")
                && gate.contains("-m set ! --match-set ftpct-ctl dst,dst"),
            "{gate}"
        );
        assert!(control[0]
            .spec
            .join(" ")
            .contains("--queue-balance 0:3 --queue-bypass"));
        assert_eq!(rs.queue.queues(), vec![0, 1, 2, 3]);
        assert!(parse_balance("3:3").is_err());
        assert!(parse_balance("x").is_err());
    }

    /// xt_u32 on `packet`, for the tests this module writes: `&&` between
    /// tests, each a location (a number, then `&`, `<<`, `>>` or `@`
    /// numbers) `=` a value.
    pub(crate) fn u32_matches(expr: &str, packet: &[u8]) -> bool {
        let word = |at: usize| {
            let b = packet.get(at..at + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let number = |n: &str| match n.strip_prefix("0x").or(n.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).expect("hex"),
            None => n.parse().expect("number"),
        };
        expr.split("&&").all(|test| {
            let (location, value) = test.split_once('=').expect("a value");
            let mut at = 0usize;
            let mut rest = location;
            let split = |r: &str| -> usize { r.find(['&', '<', '>', '@']).unwrap_or(r.len()) };
            let first = split(rest);
            let Some(mut a) = word(number(&rest[..first]) as usize) else {
                return false;
            };
            rest = &rest[first..];
            while !rest.is_empty() {
                let op_len = if rest.starts_with("<<") || rest.starts_with(">>") {
                    2
                } else {
                    1
                };
                let (op, tail) = rest.split_at(op_len);
                let end = split(tail);
                let n = number(&tail[..end]);
                rest = &tail[end..];
                match op {
                    "&" => a &= n,
                    "<<" => a <<= n,
                    ">>" => a >>= n,
                    "@" => {
                        at += a as usize;
                        let Some(w) = word(at + n as usize) else {
                            return false;
                        };
                        a = w;
                    }
                    other => panic!("u32 operator {other}"),
                }
            }
            a == number(value)
        })
    }

    /// Every header shape, with sequence numbers whose first byte is each
    /// value (behind extension headers it sits where the old test read the
    /// data offset): the u32 test says 32 exactly when the TCP header is
    /// 32 bytes where the programs read it, and the string searches never
    /// start after the payload's first byte.
    #[test]
    fn the_string_searches_start_at_or_before_the_payload_in_every_shape() {
        use ftpct_engine::wire::TcpPacket;
        use ftpct_testkit::{Ipv6Ext, Segment, Shape};
        let v4 = ftpct_testkit::tuple("192.0.2.10:40000", "198.51.100.20:21");
        let v6 = ftpct_testkit::tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21");
        let exts: [&'static [Ipv6Ext]; 4] = [
            &[],
            &[Ipv6Ext::HopByHop],
            &[Ipv6Ext::DestinationOptions],
            &[Ipv6Ext::Routing, Ipv6Ext::DestinationOptions],
        ];
        let mut shapes = Vec::new();
        for tcp_header in [20, 24, 32, 40, 60] {
            for ipv4_options in [0, 4, 40] {
                let ipv4 = Shape {
                    ipv4_options,
                    ..Shape::tcp(tcp_header)
                };
                shapes.push((v4, ipv4));
            }
            for ipv6_ext in exts {
                let ipv6 = Shape {
                    ipv6_ext,
                    ..Shape::tcp(tcp_header)
                };
                shapes.push((v6, ipv6));
            }
        }
        for (t, shape) in shapes {
            let family = Family::of(t.src.ip());
            for first in 0..=255u32 {
                let seg = Segment::new(t, first << 24).ack(1);
                let packet = shape.build(seg.payload(b"PORT 1,2\r\n"));
                let pkt = TcpPacket::parse(&packet).expect("parses");
                let payload_at = packet.len() - pkt.payload().len();
                let says_32 = u32_matches(tcp_header_is_32(family), &packet);
                let readable = ftpct_engine::classifier::readable_payload(&packet).is_some();
                assert_eq!(
                    says_32,
                    readable && shape.tcp_header == 32,
                    "{shape:?} {first}"
                );
                assert!(
                    string_from(family.ip(), says_32) <= payload_at,
                    "{shape:?} {first}"
                );
            }
        }
    }
}
