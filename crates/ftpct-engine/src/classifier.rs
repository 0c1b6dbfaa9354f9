//! Selective queueing's selection rule, defined once: which segments of a
//! control connection must cross to ftpct, as data (the words and reply
//! codes that matter, the header shapes read, the line lengths vouched
//! for) and as pure functions of a segment's bytes. The kernel's programs
//! are generated from it (ftpct's `netfilter::bpf`), `replay --selective`
//! emulates the rules with [`classify`], and the engine reads
//! [`may_hold_an_announcement`] when it takes a passive note.
//!
//! A line ends only at CR LF (RFC 959's Telnet end of line), as the engine
//! reads it: a segment ends a line when its payload ends with CR LF.
//! Commands are case-insensitive; reply codes are digits.

/// Which end of the control connection sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// A word or reply code whose presence makes a segment cross, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    pub text: &'static str,
    pub why: &'static str,
}

const fn trigger(text: &'static str, why: &'static str) -> Trigger {
    Trigger { text, why }
}

/// What a client line that matters starts with (any case). The engine
/// reads a command's keyword at the line's start and nowhere else.
pub const CLIENT_WORDS: [Trigger; 5] = [
    trigger("PORT", "announces the client's data address (active mode)"),
    trigger("EPRT", "announces the client's data address (extended active mode)"),
    trigger("PASV", "asks for a passive announcement: the 227 answering it is read only when asked for"),
    trigger("EPSV", "asks for an extended passive announcement: the 229 answering it is read only when asked for"),
    trigger("AUTH", "may turn the control channel to TLS: ftpct must see the server's 234"),
];

/// The client words that, alone in a segment, only need noting (the
/// passive set) rather than the segment crossing.
pub const PASSIVE_WORDS: [&str; 2] = ["PASV", "EPSV"];

/// The reply codes a server line that matters starts with.
pub const SERVER_CODES: [Trigger; 3] = [
    trigger("227", "announces the server's passive data address"),
    trigger("229", "announces the server's extended passive data port"),
    trigger(
        "234",
        "accepts AUTH: the control channel is encrypted from here on",
    ),
];

/// The reply codes that announce a data address (227, 229): a passive
/// request must have been seen or noted before one is read.
pub const ANNOUNCEMENT_CODES: [&str; 2] = ["227", "229"];

/// The fourth byte of a multi-line reply's first line (`xyz-`).
pub const MULTI_LINE_OPENER: Trigger = trigger(
    "-",
    "opens a multi-line reply: its end and every line it quotes must be seen",
);

/// The end of a line.
pub const LINE_END: &[u8; 2] = b"\r\n";

/// The IP versions, and their fixed headers' lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    V4,
    V6,
}

impl Ip {
    /// The IP header without options or extension headers.
    pub const fn fixed_header(self) -> usize {
        match self {
            Ip::V4 => 20,
            Ip::V6 => 40,
        }
    }
}

/// IPv6's next header (and IPv4's protocol) for TCP.
pub const IPPROTO_TCP: u8 = 6;
/// A TCP header without options.
pub const TCP_HEADER_MIN: usize = 20;
/// The TCP header with the timestamps option, as Linux and most stacks
/// send every segment of a connection: 32 bytes.
pub const TCP_HEADER_WITH_TIMESTAMPS: usize = 32;

/// Where the payload starts in a segment of the common shape: an IPv4
/// header without options or an IPv6 header followed by TCP, and a TCP
/// header with the timestamps option.
pub const fn common_payload_at(ip: Ip) -> usize {
    ip.fixed_header() + TCP_HEADER_WITH_TIMESTAMPS
}

/// The TCP payload of the IP packet `ip` where the programs read it: after
/// an IPv4 header of any length, or an IPv6 header whose next header is
/// TCP, and a TCP header of any length. None for the shapes they do not
/// read (IPv6 extension headers; headers past the packet's end): those
/// always cross.
pub fn readable_payload(ip: &[u8]) -> Option<&[u8]> {
    let (_, tcp, tcp_header) = readable_headers(ip)?;
    ip.get(tcp + tcp_header..)
}

/// The IP version, where the TCP header starts and its length, in the
/// shapes [`readable_payload`] reads.
fn readable_headers(ip: &[u8]) -> Option<(Ip, usize, usize)> {
    let first = *ip.first()?;
    let (version, tcp) = match first >> 4 {
        4 => (Ip::V4, usize::from(first & 0x0f) * 4),
        6 if *ip.get(6)? == IPPROTO_TCP => (Ip::V6, Ip::V6.fixed_header()),
        _ => return None,
    };
    Some((version, tcp, usize::from(ip.get(tcp + 12)? >> 4) * 4))
}

/// Where the word search starts in a packet of version `ip` whose TCP
/// header is 32 bytes (`timestamps`) or not: where the payload starts
/// (IPv4 without options, IPv6 without extension headers) or before it
/// (IPv4 options), else after the smallest headers (a match in TCP options
/// only makes a segment cross for nothing; the timestamps change with
/// every segment and would hit now and then). Never after the payload's
/// start: no word is missed.
pub const fn string_from(ip: Ip, timestamps: bool) -> usize {
    let tcp = if timestamps {
        TCP_HEADER_WITH_TIMESTAMPS
    } else {
        TCP_HEADER_MIN
    };
    ip.fixed_header() + tcp
}

/// What the word search looks for anywhere from [`string_from`] in a
/// segment of `side`, and whether in any case: a client's words, a
/// server's codes and the multi-line opener.
pub fn search_words(side: Side) -> (Vec<&'static str>, bool) {
    match side {
        Side::Client => (CLIENT_WORDS.iter().map(|w| w.text).collect(), true),
        Side::Server => {
            let codes = SERVER_CODES.iter().map(|c| c.text);
            (codes.chain([MULTI_LINE_OPENER.text]).collect(), false)
        }
    }
}

/// Payload bytes the first plain-line program scans for a line feed; each
/// of the next scans `NEXT_SCAN` more (what fits in xt_bpf's 64
/// instructions).
pub const FIRST_SCAN: usize = 10;
pub const NEXT_SCAN: usize = 17;
/// The most programs a plain-line rule has, and the longest plain line
/// that passes.
pub const PLAIN_PROGRAMS: usize = 5;
pub const PLAIN_MAX: usize = plain_max(PLAIN_PROGRAMS);
/// The longest payload `programs` plain-line programs vouch for.
pub const fn plain_max(programs: usize) -> usize {
    1 + FIRST_SCAN + NEXT_SCAN * (programs - 1)
}
/// The longest passive request alone in a segment that is noted ("EPSV
/// ALL\r\n" is 10 bytes).
pub const PASSIVE_MAX: usize = plain_max(1);
/// The shortest and longest line the quick program lets pass (it reads
/// the payload by words: shorter lines go to the general programs).
pub const QUICK_PLAIN_MIN: usize = 5;
pub const QUICK_PLAIN_MAX: usize = 16;

/// Whether a segment with this payload ends inside a line: it has payload
/// and does not end with CR LF (a bare LF or CR last ends no line).
pub fn ends_inside_a_line(payload: &[u8]) -> bool {
    !payload.is_empty() && !payload.ends_with(LINE_END)
}

/// The first four bytes of a payload of at most `max` bytes that is one
/// whole line (ends with CR LF, no line feed before); None otherwise, and
/// for fewer than four bytes (the programs do not prove those).
fn one_whole_line(payload: &[u8], max: usize) -> Option<&[u8]> {
    let body = payload.strip_suffix(LINE_END)?;
    let head = payload.get(..4)?;
    (payload.len() <= max && !body.contains(&b'\n')).then_some(head)
}

/// Whether a line starting with `head` (four bytes) can matter to ftpct:
/// from a client, one of [`CLIENT_WORDS`] in any case; from a server, one
/// of [`SERVER_CODES`] or a multi-line opener.
fn head_matters(head: &[u8], side: Side) -> bool {
    match side {
        Side::Client => CLIENT_WORDS
            .iter()
            .any(|w| head.eq_ignore_ascii_case(w.text.as_bytes())),
        Side::Server => {
            let code = SERVER_CODES.iter().any(|c| head[..3] == *c.text.as_bytes());
            code || head[3..] == *MULTI_LINE_OPENER.text.as_bytes()
        }
    }
}

/// A segment that passes unqueued when its direction is not guarded: a
/// payload of at most [`PLAIN_MAX`] bytes that is one whole line whose
/// start cannot matter (`head_matters`). Shorter than four bytes: not
/// plain (the programs do not prove it).
pub fn is_plain_line(payload: &[u8], side: Side) -> bool {
    one_whole_line(payload, PLAIN_MAX).is_some_and(|head| !head_matters(head, side))
}

/// A client segment that is noted in the passive set and passes: one whole
/// line of at most [`PASSIVE_MAX`] bytes starting with a passive word.
pub fn is_passive_request(payload: &[u8]) -> bool {
    one_whole_line(payload, PASSIVE_MAX).is_some_and(|head| {
        PASSIVE_WORDS
            .iter()
            .any(|w| head.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// Whether the word search finds one of `side`'s words in the packet `ip`
/// (from [`string_from`], headers included: xt_string's view).
fn holds_a_word(ip: &[u8], side: Side) -> Option<&'static str> {
    let (version, _, tcp_header) = readable_headers(ip)?;
    let timestamps = tcp_header == TCP_HEADER_WITH_TIMESTAMPS;
    let searched = ip.get(string_from(version, timestamps)..)?;
    let (words, any_case) = search_words(side);
    words.into_iter().find(|w| {
        searched.windows(w.len()).any(|at| {
            let w = w.as_bytes();
            if any_case {
                at.eq_ignore_ascii_case(w)
            } else {
                at == w
            }
        })
    })
}

/// Why a segment crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Headers the programs do not read (IPv6 extension headers).
    Unreadable,
    /// It holds this word or code (maybe not at a line's start).
    Holds(&'static str),
    /// It ends inside a line, whose rest must be seen.
    OpenLine,
}

/// What the kernel's rules do with a control segment without SYN or RST
/// whose direction is not guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// No payload, or one plain line: passes unqueued.
    Passes,
    /// A passive request alone: its session is noted, it passes.
    Noted,
    /// Its direction is guarded from now on, and it crosses.
    Crosses(Why),
}

/// The selection rule on the IP packet `ip` (as the raw table sees it)
/// sent by `side`.
pub fn classify(ip: &[u8], side: Side) -> Selection {
    let Some(payload) = readable_payload(ip) else {
        return Selection::Crosses(Why::Unreadable);
    };
    if payload.is_empty() || is_plain_line(payload, side) {
        return Selection::Passes;
    }
    if side == Side::Client && is_passive_request(payload) {
        return Selection::Noted;
    }
    if let Some(word) = holds_a_word(ip, side) {
        return Selection::Crosses(Why::Holds(word));
    }
    if ends_inside_a_line(payload) {
        return Selection::Crosses(Why::OpenLine);
    }
    Selection::Passes
}

/// Whether a server line starting with an announcement code may start in
/// `payload`, or go on there after the `unfinished` start of a line: a
/// complete line starting with the code, or an unfinished one that may
/// still. A segment that may hold one needs its session's passive note.
pub fn may_hold_an_announcement(unfinished: &[u8], payload: &[u8]) -> bool {
    let pieces: Vec<&[u8]> = payload.split(|&b| b == b'\n').collect();
    let last = pieces.len() - 1;
    pieces.iter().enumerate().any(|(i, piece)| {
        let before: &[u8] = if i == 0 { unfinished } else { &[] };
        let head: Vec<u8> = before.iter().chain(piece.iter()).take(3).copied().collect();
        let may_be = |code: &str| {
            let code = code.as_bytes();
            if i < last || head.len() == 3 {
                head == code
            } else {
                !head.is_empty() && code.starts_with(&head)
            }
        };
        ANNOUNCEMENT_CODES.iter().any(|c| may_be(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_testkit::{tuple, Ipv6Ext, Segment, Shape};

    #[test]
    fn where_a_line_ends() {
        for (payload, inside) in [
            (&b"NOOP\r\n"[..], false),
            (b"", false),
            (b"\r\n", false),
            (b"NOOP", true),
            (b"NOOP\r", true),
            (b"550 /x\n", true),
            (b"NOOP\n\r", true),
            (b"NOOP\r\n\n", true),
        ] {
            assert_eq!(ends_inside_a_line(payload), inside, "{payload:?}");
        }
    }

    #[test]
    fn plain_lines_by_example() {
        use Side::{Client, Server};
        let plain = |side, p: &[u8]| is_plain_line(p, side);
        assert!(plain(Client, b"NOOP\r\n"));
        assert!(plain(Client, b"RETR 1k.bin\r\n"));
        assert!(plain(Client, b"NOOP PORT\r\n"), "read at the start");
        assert!(plain(Client, b"NOOP\rPORT\r\n"), "a bare CR ends no line");
        assert!(!plain(Client, b"port 1,2,3,4,5,6\r\n"));
        assert!(!plain(Client, b"Epsv\r\n"));
        assert!(!plain(Client, b"AUTH TLS\r\n"));
        assert!(!plain(Client, b"NOOP\r\nPASV\r\n"), "two lines");
        assert!(!plain(Client, b"NOOP"), "inside a line");
        assert!(!plain(Client, b"NOOP\n"), "a bare line feed ends no line");
        assert!(!plain(Client, b"\r\n"), "too short to read");
        assert!(!plain(Client, &[b'x'; PLAIN_MAX + 1]));
        assert!(plain(Server, b"200 NOOP ok.\r\n"));
        assert!(!plain(Server, b"550 /x\n227 (1,2,3,4,5,6)\r\n"));
        assert!(!plain(Server, b"227 Entering Passive Mode\r\n"));
        assert!(!plain(Server, b"229 (|||5000|)\r\n"));
        assert!(!plain(Server, b"234 go\r\n"));
        assert!(!plain(Server, b"211-Features\r\n"));
        assert!(plain(Server, b"PASV\r\n"), "client words mean nothing here");
    }

    #[test]
    fn passive_requests_by_example() {
        assert!(is_passive_request(b"PASV\r\n"));
        assert!(is_passive_request(b"epsv ALL\r\n"));
        assert!(!is_passive_request(b"PORT 1,2,3,4,5,6\r\n"));
        assert!(!is_passive_request(b"PASV\r\nRETR x\r\n"), "two lines");
        assert!(!is_passive_request(b"PASV"), "inside a line");
        assert!(!is_passive_request(b"PASV xxxxxxx\r\n"), "too long");
    }

    #[test]
    fn what_crosses() {
        let c2s = tuple("192.0.2.10:40000", "198.51.100.20:21");
        let s2c = tuple("198.51.100.20:21", "192.0.2.10:40000");
        let seg = |t, p: &[u8]| Segment::new(t, 1).ack(1).payload(p).build();
        let client = |p: &[u8]| classify(&seg(c2s, p), Side::Client);
        let server = |p: &[u8]| classify(&seg(s2c, p), Side::Server);
        assert_eq!(client(b""), Selection::Passes);
        assert_eq!(client(b"NOOP\r\n"), Selection::Passes);
        assert_eq!(client(b"PASV\r\n"), Selection::Noted);
        let port = Selection::Crosses(Why::Holds("PORT"));
        assert_eq!(client(b"port 192,0,2,10,4,1\r\n"), port);
        assert_eq!(client(b"NOOP\r\nPORT 1\r\n"), port);
        assert_eq!(client(b"NOO"), Selection::Crosses(Why::OpenLine));
        assert_eq!(client(b"NOOP\r\nNOOP\r\n"), Selection::Passes);
        assert_eq!(server(b"200 PORT ok\r\n"), Selection::Passes);
        let opener = Selection::Crosses(Why::Holds("-"));
        assert_eq!(server(b"211-Features\r\n"), opener);
        assert_eq!(server(b"200 ok\r\n200 ok\r\n"), Selection::Passes);
        let v6 = tuple("[2001:db8::10]:40000", "[2001:db8:2::20]:21");
        let behind = Shape {
            ipv6_ext: &[Ipv6Ext::HopByHop],
            ..Shape::tcp(32)
        };
        let packet = behind.build(Segment::new(v6, 1).ack(1));
        let unreadable = Selection::Crosses(Why::Unreadable);
        assert_eq!(classify(&packet, Side::Client), unreadable);
    }

    #[test]
    fn what_may_hold_an_announcement() {
        let may = may_hold_an_announcement;
        assert!(may(b"", b"227 Entering Passive Mode (1,2,3,4,5,6)\r\n"));
        assert!(may(b"", b"200 ok\r\n229 (|||5000|)\r\n"));
        assert!(may(b"", b"200 ok\r\n22"), "may still become one");
        assert!(may(b"22", b"7 Entering"), "goes on from the last segment");
        assert!(may(b"", b"227"));
        assert!(!may(b"", b"200 ok\r\n"));
        assert!(!may(b"", b"213 2270\r\n"), "read at the line's start");
        assert!(!may(b"", b"22\r\n"));
        assert!(!may(b"200", b" 227\r\n"));
        assert!(!may(b"", b""));
    }
}
