//! Port forwarding that changes the port: public port 21 forwarded to a
//! server inside on 2121, with the default control port (21) only. The
//! engine follows the connection, not the port: the server's side is
//! known by its connection's original destination (conntrack's mapping),
//! so its 227 is rewritten and its data connections expected.

use ftpct_engine::engine::Config;
use ftpct_engine::event::Event;
use ftpct_engine::nat::{CtMapping, DnatRule, NatLookup, StaticNat};
use ftpct_engine::tuple::Tuple;
use ftpct_engine::Outcome;
use ftpct_testkit::{expected_ports, tuple, Control, Gateway, Side};

/// The control connection as the gateway sees it: the client's side to
/// the public port 21, the server's from 2121.
fn control() -> Control {
    let client = "203.0.113.5:40000";
    let (to_public, from_inside) = ("198.51.100.1:21", "192.0.2.20:2121");
    Control::new(
        tuple(client, to_public),
        tuple(from_inside, client),
        1000,
        9000,
    )
}

/// A client outside reaching 198.51.100.1:21, forwarded to
/// 192.0.2.20:2121, past its greeting and login.
fn session(selective: bool) -> (Gateway<Live>, Control) {
    let rule: DnatRule = "198.51.100.1:21=192.0.2.20:2121".parse().expect("rule");
    let cfg = Config {
        selective,
        keep_state: true,
        ..Config::default()
    };
    assert_eq!(cfg.control_ports, [21], "the default configuration");
    let mut gw = Gateway::new(cfg, Live(StaticNat::new(Vec::new(), vec![rule])));
    let mut c = control();
    c.logs_in(&mut gw, selective);
    (gw, c)
}

/// Whether the outcome rewrote a line to one holding `text`.
fn rewritten_to(out: &Outcome, text: &str) -> bool {
    let to = |e: &Event| matches!(e, Event::Rewritten { after, .. } if after.contains(text));
    out.events.iter().any(to)
}

#[test]
fn the_inside_servers_passive_replies_are_followed_and_rewritten() {
    let replies: [(&[u8], &[u8], u16); 2] = [
        (
            b"PASV\r\n",
            b"227 Entering Passive Mode (192,0,2,20,200,10).\r\n",
            51210,
        ),
        (
            b"EPSV\r\n",
            b"229 Entering Extended Passive Mode (|||51211|)\r\n",
            51211,
        ),
    ];
    for selective in [false, true] {
        let (mut gw, mut c) = session(selective);
        for (request, reply, port) in replies {
            c.client_says(&mut gw, request);
            let out = c.server_says(&mut gw, reply);
            let case = format!("selective={selective} {}", String::from_utf8_lossy(request));
            assert_eq!(expected_ports(&out), [port], "{case}: {out:?}");
            let public = port != 51210 || rewritten_to(&out, "198,51,100,1,200,10");
            assert!(public, "{case}: the public address announced: {out:?}");
        }
    }
}

#[test]
fn the_clients_active_announcements_are_followed() {
    for selective in [false, true] {
        let (mut gw, mut c) = session(selective);
        let out = c.client_says(&mut gw, b"PORT 203,0,113,5,200,12\r\n");
        assert_eq!(
            expected_ports(&out),
            [51212],
            "selective={selective}: {out:?}"
        );
        c.server_says(&mut gw, b"200 PORT ok\r\n");
        let out = c.client_says(&mut gw, b"EPRT |1|203.0.113.5|51213|\r\n");
        assert_eq!(
            expected_ports(&out),
            [51213],
            "selective={selective}: {out:?}"
        );
    }
}

/// NAT as live conntrack answers it: nothing at a connection's first SYN
/// (queued before conntrack saw it), the mapping from then on.
struct Live(StaticNat);

impl NatLookup for Live {
    fn lookup(&mut self, seen: &Tuple) -> Option<CtMapping> {
        self.0.lookup(seen)
    }

    fn lookup_new(&mut self, _orig: &Tuple) -> Option<CtMapping> {
        None
    }
}

/// The server's SYN-ACK, from port 2121, is the connection's: the flow
/// learns its mapping there and lowers the MSS it announces, as for a
/// server on port 21.
#[test]
fn the_servers_syn_ack_from_another_port_is_the_connections() {
    let rule: DnatRule = "198.51.100.1:21=192.0.2.20:2121".parse().expect("rule");
    let nat = Live(StaticNat::new(Vec::new(), vec![rule]));
    let mut gw = Gateway::new(Config::default(), nat);
    let c = control().with_mss(1460);
    let syn = c.syn(Side::Client, &gw.engine);
    gw.send(&syn);
    let syn_ack = c.syn(Side::Server, &gw.engine);
    let out = gw.send(&syn_ack);
    assert!(
        matches!(out.verdict, ftpct_engine::Verdict::Replace(_)),
        "its MSS lowered: {out:?}"
    );
    let flow = gw.engine.flows().next().expect("one flow");
    assert!(flow.mapping_known && flow.server_spoke, "{flow:?}");
    assert_eq!(flow.mapping.reply, c.tuple(Side::Server));
}
