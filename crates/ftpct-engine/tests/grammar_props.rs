//! Properties of the FTP grammar: what we write we read back, rewriting
//! touches only the announcement, and no input makes the parser panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ftpct_engine::grammar::{
    client_prefix_may_announce, format_announce, parse_client_line, parse_server_line,
    rewrite_line, server_prefix_may_announce, Announce, AnnounceKind, ClientLine, ServerLine,
};
use proptest::prelude::*;

fn any_ipv4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
}

/// IPv6 addresses, weighted towards the forms that print specially
/// (runs of zeros, IPv4-mapped, IPv4-compatible).
fn any_ipv6() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        any::<[u16; 8]>().prop_map(|mut segments| {
            segments[1..5].fill(0);
            Ipv6Addr::from(segments)
        }),
        any::<[u8; 4]>().prop_map(|octets| Ipv4Addr::from(octets).to_ipv6_mapped()),
        any::<u32>().prop_map(|low| Ipv6Addr::from(u128::from(low))),
    ]
    .prop_map(IpAddr::V6)
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any_ipv4(), any_ipv6()]
}

fn any_port() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

/// Any delimiter RFC 2428 allows (33..=126, not a digit).
fn any_delimiter() -> impl Strategy<Value = u8> {
    (33u8..=126).prop_filter("digits are not delimiters", |byte| !byte.is_ascii_digit())
}

/// A delimiter that cannot be part of the address text, so that the
/// formatter keeps it.
fn delimiter_for(addr: IpAddr) -> impl Strategy<Value = u8> {
    any_delimiter().prop_filter(
        "delimiter inside the address text",
        move |&byte| match addr {
            IpAddr::V4(_) => byte != b'.',
            IpAddr::V6(_) => !(byte.is_ascii_hexdigit() || byte == b':' || byte == b'.'),
        },
    )
}

/// Free text that cannot contain the characters that end or start an
/// announcement (no digits, no line ends, no parentheses or commas).
fn filler() -> impl Strategy<Value = String> {
    "[A-Za-z .:;=!?-]{0,30}"
}

fn terminator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\r\n"), Just("\n")]
}

fn client_announce(line: &[u8]) -> Option<Announce> {
    match parse_client_line(line) {
        Ok(ClientLine::Announce(announce)) => Some(announce),
        _ => None,
    }
}

fn server_announce(line: &[u8]) -> Option<Announce> {
    match parse_server_line(line) {
        Ok(ServerLine::Announce(announce)) => Some(announce),
        _ => None,
    }
}

/// A line of the given kind announcing `addr`/`port`, built with the
/// formatter, plus free text where the grammar allows it.
fn build_line(
    kind: AnnounceKind,
    delim: u8,
    addr: IpAddr,
    port: u16,
    text: &str,
    end: &str,
) -> Vec<u8> {
    let body = format_announce(kind, delim, Some(addr), port);
    let body = String::from_utf8(body).expect("formatter writes ASCII");
    let line = match kind {
        AnnounceKind::Port => format!("PORT {body}{end}"),
        AnnounceKind::Eprt => format!("EPRT {body}{end}"),
        AnnounceKind::Pasv227 => format!("227 {text}({body}){text}{end}"),
        AnnounceKind::Epsv229 => {
            let d = char::from(delim);
            format!("229 {text}({d}{d}{d}{body}{d}){text}{end}")
        }
    };
    line.into_bytes()
}

fn parse_any(kind: AnnounceKind, line: &[u8]) -> Option<Announce> {
    match kind {
        AnnounceKind::Port | AnnounceKind::Eprt => client_announce(line),
        AnnounceKind::Pasv227 | AnnounceKind::Epsv229 => server_announce(line),
    }
}

/// The address the grammar reads back: PORT and 227 carry IPv4 only, and
/// write an IPv4-mapped address as the IPv4 it maps.
fn expected_addr(kind: AnnounceKind, addr: IpAddr) -> Option<IpAddr> {
    match (kind, addr) {
        (AnnounceKind::Epsv229, _) => None,
        (AnnounceKind::Port | AnnounceKind::Pasv227, IpAddr::V6(v6)) => {
            v6.to_ipv4_mapped().map(IpAddr::V4)
        }
        _ => Some(addr),
    }
}

fn any_kind() -> impl Strategy<Value = AnnounceKind> {
    prop_oneof![
        Just(AnnounceKind::Port),
        Just(AnnounceKind::Eprt),
        Just(AnnounceKind::Pasv227),
        Just(AnnounceKind::Epsv229),
    ]
}

/// Kind, address and delimiter that go together: PORT and 227 get IPv4
/// (or IPv4-mapped IPv6), EPRT and 229 anything.
fn announcement() -> impl Strategy<Value = (AnnounceKind, IpAddr, u8)> {
    any_kind().prop_flat_map(|kind| {
        let addr = match kind {
            AnnounceKind::Port | AnnounceKind::Pasv227 => prop_oneof![
                4 => any_ipv4(),
                1 => any::<[u8; 4]>()
                    .prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
            ]
            .boxed(),
            AnnounceKind::Eprt | AnnounceKind::Epsv229 => any_ip().boxed(),
        };
        addr.prop_flat_map(move |addr| {
            let delim = match kind {
                AnnounceKind::Port | AnnounceKind::Pasv227 => Just(b',').boxed(),
                AnnounceKind::Eprt => delimiter_for(addr).boxed(),
                AnnounceKind::Epsv229 => any_delimiter().boxed(),
            };
            (Just(kind), Just(addr), delim)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn format_then_parse_gives_the_same_values(
        (kind, addr, delim) in announcement(),
        port in any_port(),
        text in filler(),
        end in terminator(),
    ) {
        let line = build_line(kind, delim, addr, port, &text, end);
        let parsed = parse_any(kind, &line);
        let parsed = parsed.unwrap_or_else(|| panic!("not read back: {:?}", String::from_utf8_lossy(&line)));
        prop_assert_eq!(parsed.kind, kind);
        prop_assert_eq!(parsed.addr, expected_addr(kind, addr));
        prop_assert_eq!(parsed.port, port);
        prop_assert_eq!(parsed.delim, delim);
        // The span holds exactly what the formatter wrote.
        let written = format_announce(kind, delim, Some(addr), port);
        prop_assert_eq!(&line[parsed.span.clone()], &written[..]);
    }

    #[test]
    fn eprt_with_any_delimiter_reads_back(
        addr in any_ip(),
        delim in any_delimiter(),
        port in any_port(),
    ) {
        // Delimiters that clash with the address are replaced by `|`: the
        // result must still be read back.
        let line = build_line(AnnounceKind::Eprt, delim, addr, port, "", "\r\n");
        let parsed = client_announce(&line);
        prop_assert!(parsed.is_some(), "{:?}", String::from_utf8_lossy(&line));
        let parsed = parsed.unwrap();
        prop_assert_eq!((parsed.addr, parsed.port), (Some(addr), port));
    }

    #[test]
    fn rewrite_then_parse_gives_the_new_values(
        (kind, addr, delim) in announcement(),
        port in any_port(),
        new_port in any_port(),
        text in filler(),
        end in terminator(),
        new_v4 in any_ipv4(),
        new_v6 in any_ipv6(),
    ) {
        let line = build_line(kind, delim, addr, port, &text, end);
        let original = parse_any(kind, &line).expect("built line parses");
        // A replacement of the same family the kind can carry.
        let new_addr = match (kind, addr) {
            (AnnounceKind::Eprt | AnnounceKind::Epsv229, IpAddr::V6(_)) => new_v6,
            _ => new_v4,
        };
        let rewritten = rewrite_line(&line, &original, Some(new_addr), new_port);
        let parsed = parse_any(kind, &rewritten);
        prop_assert!(parsed.is_some(), "{:?}", String::from_utf8_lossy(&rewritten));
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.addr, expected_addr(kind, new_addr));
        prop_assert_eq!(parsed.port, new_port);
        prop_assert_eq!(parsed.delim, delim);
        // Outside the span, nothing changed.
        prop_assert_eq!(&rewritten[..parsed.span.start], &line[..original.span.start]);
        prop_assert_eq!(&rewritten[parsed.span.end..], &line[original.span.end..]);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_client_line(&bytes);
        let _ = parse_server_line(&bytes);
        let _ = client_prefix_may_announce(&bytes);
        let _ = server_prefix_may_announce(&bytes);
    }

    #[test]
    fn parsing_near_miss_lines_never_panics(
        head in prop_oneof![
            Just("PORT "), Just("port"), Just("EPRT "), Just("eprt  "),
            Just("227 "), Just("229 "), Just("234"), Just("AUTH "), Just("EPSV "),
        ],
        tail in "[0-9,|!()#.:a-f \r\n]{0,60}",
    ) {
        let line = format!("{head}{tail}\r\n");
        // An announcement's span always lies inside the line.
        for announce in [client_announce(line.as_bytes()), server_announce(line.as_bytes())].into_iter().flatten() {
            prop_assert!(announce.span.start <= announce.span.end);
            prop_assert!(announce.span.end <= line.len());
        }
    }

    #[test]
    fn a_complete_announcement_starts_with_a_prefix_that_may_announce(
        (kind, addr, delim) in announcement(),
        port in any_port(),
        cut in 0usize..80,
    ) {
        let line = build_line(kind, delim, addr, port, "Entering Mode ", "\r\n");
        let partial = &line[..cut.min(line.len() - 1)];
        match kind {
            AnnounceKind::Port | AnnounceKind::Eprt => prop_assert!(client_prefix_may_announce(partial)),
            AnnounceKind::Pasv227 | AnnounceKind::Epsv229 => prop_assert!(server_prefix_may_announce(partial)),
        }
    }
}
