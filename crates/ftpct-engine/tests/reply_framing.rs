//! An announcement counts only where a reply begins, as the server framed
//! it: after CR LF, as a single-line reply to a PASV/EPSV sent alone.
//! Servers echo client text (`550 <path> is not retrievable.`); a path
//! holding a line feed and a 227 must not open the port it names, through
//! DNAT (the server inside) or SNAT, with every packet queued or only the
//! segments that can matter.

use ftpct_engine::engine::Config;
use ftpct_engine::event::Event;
use ftpct_engine::nat::{DnatRule, SnatRule, StaticNat};
use ftpct_engine::policy::Refusal;
use ftpct_engine::Outcome;
use ftpct_testkit::{expected_ports, tuple, Control, Gateway};

/// The server's inside address, as it announces it (DNAT).
const INSIDE: &str = "192.0.2.20";

/// Builds a session past its login, every packet queued or not.
type Session = fn(bool) -> (Gateway<StaticNat>, Control);

fn config(selective: bool) -> Config {
    Config {
        selective,
        keep_state: true,
        ..Config::default()
    }
}

/// A client outside reaching the server inside through DNAT
/// (198.51.100.1 -> 192.0.2.20), past its greeting.
fn dnat_session(selective: bool) -> (Gateway<StaticNat>, Control) {
    let rule: DnatRule = "198.51.100.1=192.0.2.20".parse().expect("rule");
    let mut gw = Gateway::new(config(selective), StaticNat::new(Vec::new(), vec![rule]));
    let mut c = Control::new(
        tuple("203.0.113.5:40000", "198.51.100.1:21"),
        tuple("192.0.2.20:21", "203.0.113.5:40000"),
        1000,
        9000,
    );
    c.logs_in(&mut gw, selective);
    (gw, c)
}

/// The usual client behind SNAT, past its greeting.
fn snat_session(selective: bool) -> (Gateway<StaticNat>, Control) {
    let rule: SnatRule = "192.0.2.0/24=198.51.100.1".parse().expect("rule");
    let mut gw = Gateway::new(config(selective), StaticNat::new(vec![rule], Vec::new()));
    let mut c = Control::snat_session();
    c.logs_in(&mut gw, selective);
    (gw, c)
}

fn refusals(out: &Outcome) -> Vec<Refusal> {
    out.events
        .iter()
        .filter_map(|e| match e {
            Event::Refused { refusal, .. } => Some(*refusal),
            _ => None,
        })
        .collect()
}

fn pasv_reply(server: &str, port: (u8, u8)) -> Vec<u8> {
    let addr = server.replace('.', ",");
    format!(
        "227 Entering Passive Mode ({addr},{},{}).\r\n",
        port.0, port.1
    )
    .into_bytes()
}

/// What the pyftpdlib-style server answers to `SIZE <path>` then `PASV`.
fn echoed(path: &str, real_port: (u8, u8), server: &str) -> Vec<u8> {
    let mut reply = format!("550 {path} is not retrievable.\r\n").into_bytes();
    reply.extend(pasv_reply(server, real_port));
    reply
}

fn forged_path(server: &str) -> String {
    // Port 21 * 256 + 179 = 5555.
    format!(
        "/x\n227 Entering Passive Mode ({},21,179)",
        server.replace('.', ",")
    )
}

#[test]
fn echoed_client_text_opens_nothing_through_dnat_or_snat() {
    let sessions: [(Session, &str); 2] = [(dnat_session, INSIDE), (snat_session, "198.51.100.20")];
    for (session, server) in sessions {
        for selective in [false, true] {
            let (mut gw, mut c) = session(selective);
            let path = forged_path(server);
            c.client_says(&mut gw, format!("SIZE {path}\r\nPASV\r\n").as_bytes());
            let out = c.server_says(&mut gw, &echoed(&path, (200, 10), server));
            let case = format!("{server} selective={selective}");
            assert!(expected_ports(&out).is_empty(), "{case}: {out:?}");
            assert_eq!(
                refusals(&out),
                [Refusal::Pipelined],
                "{case} {:?}",
                out.events
            );
            // The same session, PASV sent alone: its answer counts.
            c.client_says(&mut gw, b"PASV\r\n");
            let real = c.server_says(&mut gw, &pasv_reply(server, (200, 11)));
            assert_eq!(expected_ports(&real), [51211], "{case}: {real:?}");
        }
    }
}

#[test]
fn an_echo_cut_after_its_line_feed_is_still_one_line() {
    // An attacker's MSS can end a segment right after the echoed LF.
    for selective in [false, true] {
        let (mut gw, mut c) = dnat_session(selective);
        let path = forged_path(INSIDE);
        c.client_says(&mut gw, format!("SIZE {path}\r\n").as_bytes());
        let reply = echoed(&path, (200, 10), INSIDE);
        let cut = reply.iter().position(|&b| b == b'\n').expect("LF") + 1;
        let head = c.server_says(&mut gw, &reply[..cut]);
        assert!(expected_ports(&head).is_empty());
        c.client_says(&mut gw, b"PASV\r\n");
        let tail = c.server_says(&mut gw, &reply[cut..]);
        // The PASV came before the SIZE's reply ended: pipelined.
        assert!(
            expected_ports(&tail).is_empty(),
            "selective={selective}: {tail:?}"
        );
        assert_eq!(
            refusals(&tail),
            [Refusal::Pipelined],
            "selective={selective}"
        );
    }
}

#[test]
fn a_forged_end_of_block_in_a_listing_opens_nothing() {
    for selective in [false, true] {
        let (mut gw, mut c) = dnat_session(selective);
        c.client_says(&mut gw, b"STAT /pub\r\nPASV\r\n");
        let listing = b"213-Status of /pub:\r\n-rw-r--r-- 1 ftp ftp 0 Dec 07 x\r\n213 End\r\n\
227 Entering Passive Mode (192,0,2,20,21,179)\r\n213 End of status\r\n\
227 Entering Passive Mode (192,0,2,20,200,10).\r\n";
        let out = c.server_says(&mut gw, listing);
        assert!(
            expected_ports(&out).is_empty(),
            "selective={selective}: {out:?}"
        );
        assert!(refusals(&out).contains(&Refusal::Pipelined));
    }
}

#[test]
fn an_overlong_opener_still_opens_its_block() {
    let long = "A".repeat(1100);
    for selective in [false, true] {
        let (mut gw, mut c) = dnat_session(selective);
        c.client_says(&mut gw, b"HELP\r\nPASV\r\n");
        let block =
            format!("211-{long}\r\n227 Entering Passive Mode (192,0,2,20,21,179)\r\n211 End\r\n");
        let out = c.server_says(&mut gw, block.as_bytes());
        assert!(
            expected_ports(&out).is_empty(),
            "selective={selective}: {out:?}"
        );
        assert_eq!(refusals(&out), [Refusal::Unsolicited], "inside the block");
        let real = c.server_says(&mut gw, &pasv_reply(INSIDE, (200, 9)));
        assert_eq!(refusals(&real), [Refusal::Pipelined]);
        // An overlong last line closes a block as well.
        c.client_says(&mut gw, b"HELP\r\n");
        let block = format!("211-help\r\n211 {long}\r\n");
        c.server_says(&mut gw, block.as_bytes());
        c.client_says(&mut gw, b"PASV\r\n");
        let real = c.server_says(
            &mut gw,
            b"227 Entering Passive Mode (192,0,2,20,200,10)\r\n",
        );
        assert_eq!(
            expected_ports(&real),
            [51210],
            "selective={selective}: {real:?}"
        );
    }
}
