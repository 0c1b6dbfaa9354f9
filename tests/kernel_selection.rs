//! Selective queueing in the kernel: `ftpct rules --apply` in a namespace,
//! real TCP connections to port 21 over loopback, each writing one segment
//! shape; the guard ipset then says whether the kernel picked the
//! direction (no ftpct runs: with --queue-bypass the packets pass, and
//! nobody takes the entries out again). Every shape that can hold part of
//! an announcement, AUTH or a multi-line opener, or that ends inside a
//! line, must be picked; plain complete lines must not. A picked direction
//! stays queued: the continuation of a split line is queued too.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::thread::sleep;
use std::time::Duration;

use ftpct_engine::tuple::Tuple;
use ftpct_testkit::{Ipv6Ext, Segment, Shape};
use socket2::{Domain, Socket, Type};

mod root;
use root::kernel_tests_enabled;
use root::netns::{accept, connect_from, veth, Netns};

const FTPCT: &str = env!("CARGO_BIN_EXE_ftpct");
const GUARDED: &str = "ftpct: FTP control directions ftpct follows";
const PICKED: &str = "ftpct: FTP control segments just picked";
const CLOSE: &str = "ftpct: FTP control connections' resets, within the budget";
const PLAIN: &str =
    "ftpct: a segment without payload, or one line with no announcement, AUTH or multi-line opener, passes unqueued";
const QUICK: &str =
    "ftpct: a segment without payload, or one short line with no announcement, AUTH or multi-line opener, passes unqueued, common shape only";
/// A plain command longer than the plain-line programs vouch for: the
/// string searches decide it.
const BUDGET: &str = "ftpct: FTP control directions over their unseen budget: queue this direction";
/// `sets::UNSEEN_BUDGET`.
const UNSEEN_BUDGET: u64 = 256 << 10;
const LONG: &[u8] = b"SITE xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
/// Time for a written segment to cross loopback before the next write, so
/// that each write is a segment of its own.
const GAP: Duration = Duration::from_millis(30);

struct Family {
    client: &'static str,
    server: &'static str,
    guard: &'static str,
    fin: &'static str,
    passive: &'static str,
    count: &'static str,
    ip6: bool,
}

const V4: Family = Family {
    client: "192.0.2.10",
    server: "198.51.100.20",
    guard: "ftpct-guard",
    fin: "ftpct-fin",
    passive: "ftpct-pasv",
    count: "ftpct-count",
    ip6: false,
};

const V6: Family = Family {
    client: "2001:db8::10",
    server: "2001:db8:2::20",
    guard: "ftpct-guard6",
    fin: "ftpct-fin6",
    passive: "ftpct-pasv6",
    count: "ftpct-count6",
    ip6: true,
};

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("address"), port)
}

/// One connection: the client writes `from_client` segments, then the
/// server writes `from_server` ones. Returns the client's port.
fn exchange(
    ns: &Netns,
    f: &Family,
    port: u16,
    from_client: &[&[u8]],
    from_server: &[&[u8]],
) -> u16 {
    exchange_on(ns, f, (port, 21), from_client, from_server)
}

/// [`exchange`], the server listening on `ports.1` (the client still
/// dials 21: a NAT rule may forward it there).
fn exchange_on(
    ns: &Netns,
    f: &Family,
    ports: (u16, u16),
    from_client: &[&[u8]],
    from_server: &[&[u8]],
) -> u16 {
    let (port, listen) = ports;
    ns.run(|| {
        let listener = TcpListener::bind(sock(f.server, listen)).expect("listen");
        let mut client: TcpStream =
            connect_from(sock(f.client, port), sock(f.server, 21)).expect("connect");
        client.set_nodelay(true).expect("nodelay");
        let (mut server, _) = accept(&listener);
        server.set_nodelay(true).expect("nodelay");
        for seg in from_client {
            client.write_all(seg).expect("client writes");
            sleep(GAP);
        }
        for seg in from_server {
            server.write_all(seg).expect("server writes");
            sleep(GAP);
        }
    });
    port
}

/// Whether the guard set holds the connection from the client's `port`
/// (the entry is the client's address and port, the server's address,
/// whichever side's segment put it there).
fn guarded(ns: &Netns, f: &Family, port: u16) -> bool {
    in_set(ns, f.guard, f, port)
}

/// Whether `set` holds the connection from the client's `port`.
fn in_set(ns: &Netns, set: &str, f: &Family, port: u16) -> bool {
    let element = format!("{},tcp:{port},{}", f.client, f.server);
    ns.try_sh(&["ipset", "test", set, &element])
}

fn lab(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    for cidr in ["192.0.2.10/32", "198.51.100.20/32"] {
        ns.add_addr(cidr);
    }
    for cidr in ["2001:db8::10/128", "2001:db8:2::20/128"] {
        ns.sh(&["ip", "addr", "add", cidr, "dev", "lo", "nodad"]);
    }
    ns.sh(&[FTPCT, "rules", "--apply", "--selective"]);
    ns
}

fn client_shapes(ns: &Netns, f: &Family, base_port: u16) {
    let cases: [(&str, &[&[u8]], bool); 18] = [
        ("a plain command", &[b"NOOP\r\n"], false),
        // Up to 16 bytes the quick program reads the payload by words: a
        // line feed in each of them ends a line, and the next is seen.
        (
            "PORT behind a line feed in the first word",
            &[b"ABC\nPORT 1,2\r\n"],
            true,
        ),
        (
            "PASV behind a line feed in the second word",
            &[b"ABCDEF\nPASV\r\n"],
            true,
        ),
        (
            "AUTH behind a line feed in the third word",
            &[b"ABCDEFGHI\nAUTH\r\n"],
            true,
        ),
        ("a keyword inside one line", &[b"NOOP PORT\r\n"], false),
        ("a long plain command", &[LONG], false),
        (
            "PORT behind a long command",
            &[b"SITE xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nPORT 192,0,2,10,156,64\r\n"],
            true,
        ),
        ("PORT", &[b"PORT 192,0,2,10,156,64\r\n"], true),
        ("port in lower case", &[b"port 192,0,2,10,156,64\r\n"], true),
        ("EPRT", &[b"EPRT |1|192.0.2.10|40000|\r\n"], true),
        ("EPSV behind another command", &[b"NOOP\r\nEPSV\r\n"], true),
        ("PASV behind another command", &[b"NOOP\r\nPASV\r\n"], true),
        ("PASV with more on its line", &[b"PASV xxxxxxxxxxxxxxxxxxxxxxxxxx\r\n"], true),
        ("AUTH", &[b"AUTH TLS\r\n"], true),
        ("a command without its newline", &[b"NOOP"], true),
        // A line ends only at CR LF.
        ("a command ending in a bare line feed", &[b"NOOP\n"], true),
        ("a command ending in a CR", &[b"NOOP\r"], true),
        ("a lone line feed", &[b"\n"], true),
    ];
    for (i, (what, segments, picked)) in cases.into_iter().enumerate() {
        let port = exchange(ns, f, base_port + i as u16, segments, &[]);
        assert_eq!(
            guarded(ns, f, port),
            picked,
            "client direction, {what} ({})",
            f.guard
        );
    }
}

fn server_shapes(ns: &Netns, f: &Family, base_port: u16) {
    let cases: [(&str, &[&[u8]], bool); 10] = [
        ("a plain reply", &[b"200 ok\r\n"], false),
        ("227 behind a bare line feed", &[b"200 ok\n227 x\r\n"], true),
        ("a hyphen inside one line", &[b"226 done - ok\r\n"], false),
        (
            "227",
            &[b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n"],
            true,
        ),
        (
            "229",
            &[b"229 Entering Extended Passive Mode (|||40000|)\r\n"],
            true,
        ),
        ("234", &[b"234 AUTH TLS ok\r\n"], true),
        ("a multi-line opener", &[b"213-status\r\n"], true),
        ("a reply without its newline", &[b"150 opening"], true),
        // An echoed bare line feed ends no line (NAT slipstreaming: the
        // next segment would be taken for a line's start).
        ("a reply ending in a bare line feed", &[b"550 /x\n"], true),
        (
            "a reply ending in a bare line feed, long",
            &[b"550 /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"],
            true,
        ),
    ];
    for (i, (what, segments, picked)) in cases.into_iter().enumerate() {
        let port = exchange(ns, f, base_port + i as u16, &[], segments);
        assert_eq!(
            guarded(ns, f, port),
            picked,
            "server direction, {what} ({})",
            f.guard
        );
    }
}

#[test]
fn the_kernel_queues_the_segment_shapes_that_can_matter_and_not_the_others() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("select");
    // With TCP timestamps (32-byte headers: the rules search from the
    // payload) and without (20 bytes).
    for (run, timestamps) in [(0u16, "1"), (1, "0")] {
        ns.sh(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.tcp_timestamps={timestamps}"),
        ]);
        for f in [&V4, &V6] {
            client_shapes(&ns, f, 41000 + 100 * run);
            server_shapes(&ns, f, 42000 + 100 * run);
        }
    }
}

/// Packets of the rules with one of these comments (raw OUTPUT), summed.
fn queued_by(ns: &Netns, f: &Family, comments: &[&str]) -> u64 {
    counted(ns, f, "OUTPUT", comments)
}

/// Packets of the rules of raw `chain` with one of these comments, summed.
fn counted(ns: &Netns, f: &Family, chain: &str, comments: &[&str]) -> u64 {
    counted_in(&listing(ns, f, chain), comments)
}

/// ftpct's chain of raw `chain`, listed with its counters.
fn listing(ns: &Netns, f: &Family, chain: &str) -> String {
    let cmd = if f.ip6 { "ip6tables" } else { "iptables" };
    let own = if chain == "OUTPUT" {
        "ftpct-out"
    } else {
        "ftpct-pre"
    };
    ns.sh(&[cmd, "-t", "raw", "-nvxL", own])
}

/// Packets of the rules in `listed` whose comment starts with one of
/// these (the rest names the rule's programs), summed.
fn counted_in(listed: &str, comments: &[&str]) -> u64 {
    let markers: Vec<String> = comments.iter().map(|c| format!("/* {c}")).collect();
    listed
        .lines()
        .filter(|l| markers.iter().any(|m| l.contains(m)))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_split_line_keeps_its_direction_queued_for_its_rest() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("split");
    for f in [&V4, &V6] {
        let before = queued_by(&ns, f, &[GUARDED, PICKED]);
        let ends_before = queued_by(&ns, f, &[CLOSE]);
        // "PO" ends inside a line: picked; "RT ...\r\n" alone holds no
        // keyword and ends a line, yet is queued as the direction's rest.
        exchange(
            &ns,
            f,
            43000,
            &[b"PO", b"RT 192,0,2,10,156,64\r\n", b"NOOP\r\n"],
            &[],
        );
        let queued = queued_by(&ns, f, &[GUARDED, PICKED]) - before;
        assert!(
            queued >= 3,
            "{queued} client segments queued, want the head, its rest and what follows ({})",
            f.guard
        );
        // A server segment cut right after an echoed bare line feed: the
        // line goes on in the next segment, which is queued however plain.
        let before = queued_by(&ns, f, &[GUARDED, PICKED]);
        exchange(&ns, f, 43002, &[], &[b"550 /x\n", b"200 x) failed.\r\n"]);
        let queued = queued_by(&ns, f, &[GUARDED, PICKED]) - before;
        assert!(
            queued >= 2,
            "{queued} server segments queued, want both halves ({})",
            f.guard
        );
        // A connection's end is queued (here an RST: the server closes
        // with unread data): ftpct forgets the session then. In a guarded
        // connection the guard rules queue it; in another, the reset rule.
        exchange(&ns, f, 43001, &[b"NOOP\r\n"], &[]);
        sleep(10 * GAP);
        let ends = queued_by(&ns, f, &[CLOSE]) - ends_before;
        assert!(ends >= 1, "{ends} RST queued ({})", f.guard);
    }
}

#[test]
fn plain_lines_leave_by_the_cheap_rule() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("plain");
    for f in [&V4, &V6] {
        let before = queued_by(&ns, f, &[PLAIN]);
        let quick_before = queued_by(&ns, f, &[QUICK]);
        let port = exchange(
            &ns,
            f,
            44000,
            &[b"NOOP\r\n", b"RETR 1k.bin\r\n"],
            &[b"200 NOOP ok.\r\n", b"226 Transfer complete.\r\n"],
        );
        // Linux sends timestamps: the common shape. Up to 16 bytes the
        // quick rule's one program lets the line pass; the longer 226
        // leaves by the general rule.
        let quick = queued_by(&ns, f, &[QUICK]) - quick_before;
        assert!(
            quick >= 3,
            "{quick} segments left by the quick plain-line rule ({})",
            f.guard
        );
        let plain = queued_by(&ns, f, &[PLAIN]) - before;
        assert!(
            plain >= 1,
            "{plain} segments left by the general plain-line rule ({})",
            f.guard
        );
        assert!(!guarded(&ns, f, port));
    }
}

#[test]
fn a_clean_close_puts_the_session_in_the_fin_set_unqueued() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("fin");
    for f in [&V4, &V6] {
        let queued_before = queued_by(&ns, f, &[GUARDED, PICKED, CLOSE]);
        // Nothing unread: both sides close with a FIN, the server first.
        let port = exchange(&ns, f, 45000, &[], &[]);
        sleep(10 * GAP);
        assert!(in_set(&ns, f.fin, f, port), "the client's FIN ({})", f.fin);
        let queued = queued_by(&ns, f, &[GUARDED, PICKED, CLOSE]) - queued_before;
        assert_eq!(queued, 0, "nothing of a clean close is queued ({})", f.fin);
        assert!(!guarded(&ns, f, port));
    }
}

/// Port-translating DNAT (port 21 forwarded to 2121): the server answers
/// from 2121, and its announcement is picked as from 21; its plain lines
/// still pass unqueued.
#[test]
fn a_server_on_a_translated_port_is_selected_as_on_21() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("dnat");
    for (f, ipt, to) in [
        (&V4, "iptables", "198.51.100.20:2121"),
        (&V6, "ip6tables", "[2001:db8:2::20]:2121"),
    ] {
        let mut dnat = vec![ipt];
        dnat.extend("-t nat -A OUTPUT -p tcp --dport 21 -j DNAT --to-destination".split(' '));
        dnat.push(to);
        ns.sh(&dnat);
        let before = queued_by(&ns, f, &[GUARDED, PICKED]);
        let plain: [&[u8]; 1] = [b"200 NOOP ok.\r\n"];
        let port = exchange_on(&ns, f, (47000, 2121), &[b"NOOP\r\n"], &plain);
        assert!(!guarded(&ns, f, port), "a plain reply not picked ({ipt})");
        assert_eq!(queued_by(&ns, f, &[GUARDED, PICKED]), before, "{ipt}");
        let announcement: [&[u8]; 1] = [b"227 Entering Passive Mode (198,51,100,20,200,10).\r\n"];
        let port = exchange_on(&ns, f, (47001, 2121), &[b"NOOP\r\n"], &announcement);
        assert!(guarded(&ns, f, port), "the 227 from 2121 picked ({ipt})");
    }
}

#[test]
fn a_lone_passive_request_is_noted_not_queued() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("pasv");
    let lone: [&[u8]; 4] = [b"PASV\r\n", b"epsv\r\n", b"EPSV ALL\r\n", b"EPSV 2\r\n"];
    for f in [&V4, &V6] {
        for (i, request) in lone.into_iter().enumerate() {
            let before = queued_by(&ns, f, &[GUARDED, PICKED]);
            let port = exchange(&ns, f, 46000 + i as u16, &[request], &[]);
            let what = String::from_utf8_lossy(request);
            assert!(
                in_set(&ns, f.passive, f, port),
                "{what:?} noted ({})",
                f.passive
            );
            assert!(!guarded(&ns, f, port), "{what:?} not followed");
            let queued = queued_by(&ns, f, &[GUARDED, PICKED]) - before;
            assert_eq!(queued, 0, "{what:?} not queued ({})", f.passive);
        }
        // Behind another command it is queued, and not noted.
        let port = exchange(&ns, f, 46010, &[b"NOOP\r\nPASV\r\n"], &[]);
        assert!(!in_set(&ns, f.passive, f, port));
        assert!(guarded(&ns, f, port));
    }
}

/// What the rules do with a crafted segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its direction guarded, the segment queued.
    Queued,
    /// Let pass by the quick plain-line rule.
    Quick,
    /// Let pass by a general plain-line rule.
    Plain,
}

/// The gateway's raw PREROUTING counters: (queued, quick, plain).
fn fates(gw: &Netns, f: &Family) -> [u64; 3] {
    let listed = listing(gw, f, "PREROUTING");
    [&[GUARDED, PICKED][..], &[QUICK], &[PLAIN]].map(|rules| counted_in(&listed, rules))
}

/// The segment from the client's `port` (or to it, from the server) with
/// `payload`, in `shape`, as the IP packet a raw socket sends.
fn crafted(f: &Family, port: u16, client: bool, shape: Shape, payload: &[u8]) -> Vec<u8> {
    let (c, s) = (sock(f.client, port), sock(f.server, 21));
    let t = if client {
        Tuple::new(c, s)
    } else {
        Tuple::new(s, c)
    };
    // A first sequence byte of 0x80: where a u32 test that took TCP to
    // follow the IPv6 header read a 32-byte data offset behind an 8-byte
    // extension header (it skipped the payload's first 4 bytes).
    shape.build(Segment::new(t, 0x8000_0001).ack(1).payload(payload))
}

/// Sends an IP packet, headers included, from a raw socket in `ns`.
fn send_raw(ns: &Netns, packet: &[u8]) {
    ns.run(|| {
        let (domain, dst) = if packet[0] >> 4 == 6 {
            let b: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
            (Domain::IPV6, IpAddr::from(b))
        } else {
            let b: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
            (Domain::IPV4, IpAddr::from(b))
        };
        // IPPROTO_RAW: the header is ours, options and extension headers
        // as written (IPv4 fills in its length and checksum).
        let raw = Socket::new(
            domain,
            Type::from(libc::SOCK_RAW),
            Some(libc::IPPROTO_RAW.into()),
        )
        .expect("raw socket");
        let sent = raw
            .send_to(packet, &SocketAddr::new(dst, 0).into())
            .expect("raw send");
        assert_eq!(sent, packet.len());
    });
}

/// Every header shape through the real rules, on a gateway's path:
/// crafted control segments (a raw socket in a sender namespace, over a
/// veth) meet `ftpct rules --apply` in raw PREROUTING of the gateway
/// namespace, which then drops them (not its addresses, forwarding off).
/// IPv6 extension headers (hop-by-hop, destination options, routing), IPv4
/// options and TCP headers of 20 to 60 bytes: each segment that holds a
/// keyword or ends inside a line is queued, plain lines the programs can
/// read pass by the plain-line rules, those of the common shape by the
/// quick one, and those behind extension headers are queued (no program
/// reads them). The rule counters say which rule took each segment.
#[test]
fn every_header_shape_is_read_or_queued() {
    if !kernel_tests_enabled() {
        return;
    }
    let gw = Netns::new("shapes-gw");
    let sender = Netns::new("shapes-tx");
    for ns in [&gw, &sender] {
        // The link-local addresses usable at once: no wait for the first
        // neighbour solicitation.
        ns.sh(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    }
    veth(
        &sender,
        "tx0",
        "203.0.113.1/24",
        &gw,
        "gw0",
        "203.0.113.2/24",
    );
    sender.sh(&[
        "ip",
        "addr",
        "add",
        "2001:db8:ff::1/64",
        "dev",
        "tx0",
        "nodad",
    ]);
    gw.sh(&[
        "ip",
        "addr",
        "add",
        "2001:db8:ff::2/64",
        "dev",
        "gw0",
        "nodad",
    ]);
    for net in ["192.0.2.0/24", "198.51.100.0/24"] {
        sender.sh(&["ip", "route", "add", net, "via", "203.0.113.2"]);
    }
    sender.sh(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8::/32",
        "via",
        "2001:db8:ff::2",
    ]);
    gw.sh(&[FTPCT, "rules", "--apply", "--selective"]);

    let port_cmd: &[u8] = b"PORT 192,0,2,10,156,64\r\n";
    let pasv_reply: &[u8] = b"227 Entering Passive Mode (198,51,100,20,156,64)\r\n";
    // (segment, from the client, fate of a readable shape)
    let segments: [(&[u8], bool, Fate); 6] = [
        (port_cmd, true, Fate::Queued),
        (pasv_reply, false, Fate::Queued),
        (b"NOOP", true, Fate::Queued),
        (b"550 /x\n", false, Fate::Queued),
        (b"NOOP\r\n", true, Fate::Plain),
        (b"200 NOOP ok.\r\n", false, Fate::Plain),
    ];
    let mut shapes: Vec<(&Family, Shape)> = Vec::new();
    for f in [&V4, &V6] {
        for tcp_header in [20, 32, 40, 60] {
            shapes.push((f, Shape::tcp(tcp_header)));
        }
    }
    for (ipv4_options, tcp_header) in [(4, 20), (4, 32), (40, 40), (8, 60)] {
        let options = Shape {
            ipv4_options,
            ..Shape::tcp(tcp_header)
        };
        shapes.push((&V4, options));
    }
    let exts: [&'static [Ipv6Ext]; 3] = [
        &[Ipv6Ext::HopByHop],
        &[Ipv6Ext::DestinationOptions],
        &[Ipv6Ext::Routing],
    ];
    for ext in exts {
        for tcp_header in [20, 32] {
            let behind = Shape {
                ipv6_ext: ext,
                ..Shape::tcp(tcp_header)
            };
            shapes.push((&V6, behind));
        }
    }
    let mut port = 47000;
    for (f, shape) in shapes {
        let common = shape.ipv4_options == 0 && shape.ipv6_ext.is_empty();
        for &(payload, client, readable_fate) in &segments {
            port += 1;
            let fate = match readable_fate {
                // Behind extension headers nothing is read: queued.
                _ if !shape.ipv6_ext.is_empty() => Fate::Queued,
                Fate::Plain if common && shape.tcp_header == 32 => Fate::Quick,
                other => other,
            };
            let before = fates(&gw, f);
            send_raw(&sender, &crafted(f, port, client, shape, payload));
            // The veth delivers in the background: wait for a counter.
            let mut after = fates(&gw, f);
            for _ in 0..100 {
                if after != before {
                    break;
                }
                sleep(Duration::from_millis(20));
                after = fates(&gw, f);
            }
            let moved: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            let want = [Fate::Queued, Fate::Quick, Fate::Plain].map(|x| u64::from(x == fate));
            let what = String::from_utf8_lossy(payload);
            assert_eq!(
                moved, want,
                "{what:?} in {shape:?} ({}): want {fate:?}; [queued, quick, plain] counted",
                f.guard
            );
            assert_eq!(
                guarded(&gw, f, port),
                fate == Fate::Queued,
                "{what:?} in {shape:?}"
            );
        }
    }
}

/// The count of the connection from the client's `port` in the counting
/// set: bytes, if it has the element.
fn counted_bytes(ns: &Netns, f: &Family, port: u16) -> Option<u64> {
    let element = format!("{},tcp:{port},{} ", f.client, f.server);
    let listed = ns.sh(&["ipset", "list", f.count]);
    let line = listed.lines().find(|l| l.starts_with(&element))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "bytes")?;
    words.get(at + 1)?.parse().ok()
}

/// Plain lines pass unqueued while their connection's count of unseen
/// bytes (both directions: no NAT here) stays within the budget; the
/// segment that goes over it puts the direction in the guard set and is
/// queued; after ftpct's recount (and release) plain lines pass again.
#[test]
fn a_connection_over_its_unseen_budget_is_queued_until_recounted() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = lab("unseen");
    for (f, port) in [(&V4, 45000), (&V6, 45001)] {
        let element = format!("{},tcp:{port},{}", f.client, f.server);
        let (noop_passed, over, after) = ns.run(|| {
            let listener = TcpListener::bind(sock(f.server, 21)).expect("listen");
            let mut client: TcpStream =
                connect_from(sock(f.client, port), sock(f.server, 21)).expect("connect");
            client.set_nodelay(true).expect("nodelay");
            let (_server, _) = accept(&listener);
            let mut noop = || {
                client.write_all(b"NOOP\r\n").expect("client writes");
                sleep(GAP);
            };
            noop();
            let noop_passed = (guarded(&ns, f, port), counted_bytes(&ns, f, port));
            // As if lines passed unseen since ftpct's last recount: the
            // count 100 bytes short of the budget. The next NOOP and the
            // server's ACK go over it.
            let near = format!("{}", UNSEEN_BUDGET - 100);
            let bytes = ["bytes", near.as_str(), "packets", "1", "-exist"];
            ns.sh(&[&["ipset", "add", f.count, &element][..], &bytes].concat());
            noop();
            let over = guarded(&ns, f, port);
            // ftpct's recount and release.
            ns.sh(&["ipset", "del", f.guard, &element]);
            let zero = ["bytes", "0", "packets", "0", "-exist"];
            ns.sh(&[&["ipset", "add", f.count, &element][..], &zero].concat());
            noop();
            (
                noop_passed,
                over,
                (guarded(&ns, f, port), counted_bytes(&ns, f, port)),
            )
        });
        let (was_guarded, first_count) = noop_passed;
        assert!(
            !was_guarded,
            "a NOOP within the budget passes ({})",
            f.count
        );
        assert!(
            first_count.is_some_and(|b| b < 1000),
            "the connection's count starts with its first segments: {first_count:?} ({})",
            f.count
        );
        assert!(over, "over the budget: queued whole ({})", f.count);
        assert!(queued_by(&ns, f, &[BUDGET]) >= 1);
        let (guarded_after, count_after) = after;
        assert!(!guarded_after, "recounted: plain lines pass ({})", f.count);
        assert!(
            count_after.is_some_and(|b| b > 0 && b < 1000),
            "counted afresh: {count_after:?} ({})",
            f.count
        );
    }
}
