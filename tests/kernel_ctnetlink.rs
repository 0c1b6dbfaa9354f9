//! ctnetlink and ipset against the live kernel. Each test builds its own
//! network namespace (`ftpct-t-*`), runs the netlink code from a thread that
//! entered it, and removes it at the end, even on failure.
//!
//! Needs root (CI runs as root) and the iptables, ip6tables, ipset and
//! conntrack binaries (scripts/install-deps.sh). Not root: the tests are
//! skipped and say so (an error under CI=true).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ftpct::netfilter::ctnetlink::{
    Ctnetlink, IPS_DST_NAT, IPS_EXPECTED, IPS_SEEN_REPLY, IPS_SRC_NAT,
};
use ftpct::netfilter::error::{Op, Target};
use ftpct::netfilter::ipset::{self, Element, Ipset, SetType};
use ftpct::netfilter::Error;
use ftpct_engine::command::{DataConnection, NatBinding};
use ftpct_engine::tuple::{Dir, Tuple};

mod root;
use root::kernel_tests_enabled;
use root::netns::{accept, connect_from, Netns};

const TCP_CONNTRACK_SYN_SENT: u8 = 1;
const TCP_CONNTRACK_ESTABLISHED: u8 = 3;

/// Addresses of one lab: client, server, the public address the client
/// dials (DNAT to the server), and a spare one for SNAT.
struct Lab {
    ip6: bool,
    client: IpAddr,
    server: IpAddr,
    public: IpAddr,
    spare: IpAddr,
}

impl Lab {
    fn v4() -> Lab {
        Lab {
            ip6: false,
            client: "192.0.2.2".parse().unwrap(),
            server: "192.0.2.1".parse().unwrap(),
            public: "203.0.113.3".parse().unwrap(),
            spare: "198.51.100.4".parse().unwrap(),
        }
    }

    fn v6() -> Lab {
        Lab {
            ip6: true,
            client: "2001:db8::2".parse().unwrap(),
            server: "2001:db8::1".parse().unwrap(),
            public: "2001:db8:3::3".parse().unwrap(),
            spare: "2001:db8:4::4".parse().unwrap(),
        }
    }

    fn iptables(&self) -> &'static str {
        if self.ip6 {
            "ip6tables"
        } else {
            "iptables"
        }
    }

    fn at(&self, ip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(ip, port)
    }

    /// Local addresses on lo, and the control connection's DNAT
    /// (public:21 -> server:2121), which also turns conntrack and NAT on.
    fn setup(&self, ns: &Netns) {
        let host = if self.ip6 { "/128" } else { "/32" };
        for ip in [self.client, self.server, self.public, self.spare] {
            ns.add_addr(&format!("{ip}{host}"));
        }
        let to = self.at(self.server, 2121).to_string();
        ns.sh(&[
            self.iptables(),
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            &self.public.to_string(),
            "--dport",
            "21",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
    }

    /// A rule that only counts, tagged so [`Netns::counter`] finds it.
    fn count_rule(&self, ns: &Netns, table: &str, chain: &str, matches: &[&str], tag: &str) {
        let mut args = vec![self.iptables(), "-t", table, "-A", chain];
        args.extend_from_slice(matches);
        args.extend_from_slice(&["-m", "comment", "--comment", tag]);
        ns.sh(&args);
    }
}

/// The control connection: client -> public:21, DNATed to server:2121.
/// Returns its original tuple and both ends (keep them open).
fn control_connection(lab: &Lab) -> (Tuple, TcpStream, TcpStream) {
    let listener = TcpListener::bind(lab.at(lab.server, 2121)).expect("bind control");
    let client = connect_from(lab.at(lab.client, 0), lab.at(lab.public, 21)).expect("connect");
    let (server, _) = accept(&listener);
    let orig = Tuple::new(client.local_addr().unwrap(), client.peer_addr().unwrap());
    (orig, client, server)
}

#[test]
fn get_returns_both_tuples_of_a_nated_connection_v4() {
    if kernel_tests_enabled() {
        get_returns_both_tuples(Lab::v4(), "get4");
    }
}

#[test]
fn get_returns_both_tuples_of_a_nated_connection_v6() {
    if kernel_tests_enabled() {
        get_returns_both_tuples(Lab::v6(), "get6");
    }
}

fn get_returns_both_tuples(lab: Lab, tag: &str) {
    let ns = Netns::new(tag);
    lab.setup(&ns);
    ns.run(|| {
        let (orig, _c, _s) = control_connection(&lab);
        assert_eq!(orig.dst, lab.at(lab.public, 21));
        let want_reply = Tuple::new(lab.at(lab.server, 2121), orig.src);
        let mut ct = Ctnetlink::open().expect("open ctnetlink");

        let by_orig = ct.get(&orig, Dir::Orig).unwrap().expect("entry by orig");
        assert_eq!(by_orig.orig, orig);
        assert_eq!(by_orig.reply, want_reply, "reply tuple shows the DNAT");
        let by_reply = ct
            .get(&want_reply, Dir::Reply)
            .unwrap()
            .expect("entry by reply");
        assert_eq!(by_reply, by_orig);

        let info = ct.get_info(&orig, Dir::Orig).unwrap().unwrap();
        assert_eq!(info.status & IPS_DST_NAT, IPS_DST_NAT);
        assert_eq!(info.tcp_state, Some(TCP_CONNTRACK_ESTABLISHED));
        assert_eq!(info.master, None);

        // A tuple of the entry, asked in the wrong direction, is no match.
        assert_eq!(ct.get(&orig, Dir::Reply).unwrap(), None);
        assert_eq!(ct.get(&want_reply, Dir::Orig).unwrap(), None);
        let unknown = Tuple::new(lab.at(lab.client, 1), lab.at(lab.server, 2));
        assert_eq!(ct.get(&unknown, Dir::Orig).unwrap(), None);
    });
}

#[test]
fn related_data_connection_with_dnat_v4() {
    if kernel_tests_enabled() {
        related_data_connection(Lab::v4(), false, "rel4");
    }
}

#[test]
fn related_data_connection_with_dnat_and_snat_v6() {
    if kernel_tests_enabled() {
        related_data_connection(Lab::v6(), true, "rel6");
    }
}

/// The whole technique: create the data connection's entry RELATED to the
/// control connection with NAT bindings, then open that exact connection
/// and watch the kernel classify its SYN RELATED and apply the NAT.
fn related_data_connection(lab: Lab, with_snat: bool, tag: &str) {
    let ns = Netns::new(tag);
    lab.setup(&ns);
    let public = lab.public.to_string();
    let server = lab.server.to_string();
    // Before NAT (mangle OUTPUT, after conntrack): the SYN to the public port.
    let syn_out = ["-p", "tcp", "--syn", "-d", &public, "--dport", "30000"];
    let related = [&syn_out[..], &["-m", "conntrack", "--ctstate", "RELATED"]].concat();
    let new = [&syn_out[..], &["-m", "conntrack", "--ctstate", "NEW"]].concat();
    lab.count_rule(&ns, "mangle", "OUTPUT", &related, "syn-related");
    lab.count_rule(&ns, "mangle", "OUTPUT", &new, "syn-new");
    // After NAT (filter INPUT): the same SYN, now addressed to server:30001.
    let syn_in = ["-p", "tcp", "--syn", "-d", &server, "--dport", "30001"];
    let related_in = [&syn_in[..], &["-m", "conntrack", "--ctstate", "RELATED"]].concat();
    lab.count_rule(&ns, "filter", "INPUT", &related_in, "syn-dnat");

    let data = Tuple::new(lab.at(lab.client, 40000), lab.at(lab.public, 30000));
    let snat = with_snat.then_some(NatBinding {
        addr: lab.spare,
        port: None,
    });
    let seen_from = if with_snat {
        lab.at(lab.spare, 40000)
    } else {
        data.src
    };

    let master = ns.run(|| {
        let (master, _c, _s) = control_connection(&lab);
        let listener = TcpListener::bind(lab.at(lab.server, 30001)).expect("bind data");
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        let dc = DataConnection {
            tuple: data,
            master,
            nat_src: snat,
            nat_dst: Some(NatBinding {
                addr: lab.server,
                port: Some(30001),
            }),
            timeout_secs: 120,
            mark: Some(0x2a),
        };
        ct.create_related(&dc).expect("create_related");

        let info = ct
            .get_info(&data, Dir::Orig)
            .unwrap()
            .expect("created entry");
        let want_reply = Tuple::new(lab.at(lab.server, 30001), seen_from);
        assert_eq!(info.entry.reply, want_reply, "reply tuple reflects the NAT");
        assert_eq!(info.entry.mark, 0x2a);
        assert_eq!(info.master, Some(master), "CTA_TUPLE_MASTER dumped back");
        assert_eq!(info.status & IPS_EXPECTED, IPS_EXPECTED);
        assert_eq!(info.status & IPS_DST_NAT, IPS_DST_NAT);
        assert_eq!(info.status & IPS_SRC_NAT != 0, with_snat);
        assert_eq!(info.tcp_state, Some(TCP_CONNTRACK_SYN_SENT));
        assert!(matches!(info.timeout_secs, Some(1..=120)), "{info:?}");

        // A second create is EEXIST, told apart from other failures.
        let again = ct.create_related(&dc).unwrap_err();
        assert!(
            matches!(
                &again,
                Error::Kernel {
                    op: Op::CtCreate,
                    target: Target::Related { tuple, master: m },
                    errno: libc::EEXIST,
                } if *tuple == data && **m == master
            ),
            "{again:?}"
        );
        // A master that does not exist is ENOENT.
        let mut orphan = dc;
        orphan.tuple.src.set_port(40001);
        orphan.master.src.set_port(1);
        let e = ct.create_related(&orphan).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Kernel {
                    op: Op::CtCreate,
                    errno: libc::ENOENT,
                    ..
                }
            ),
            "{e:?}"
        );

        // The data connection itself: its SYN matches the entry exactly.
        let mut client = connect_from(data.src, data.dst).expect("data connect");
        let (mut server, peer) = accept(&listener);
        assert_eq!(peer, seen_from, "server sees the (S)NATed client");
        client.write_all(b"RETR").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"DATA").unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"DATA");

        let info = ct.get_info(&data, Dir::Orig).unwrap().expect("entry");
        assert_eq!(info.tcp_state, Some(TCP_CONNTRACK_ESTABLISHED));
        assert_eq!(info.status & IPS_SEEN_REPLY, IPS_SEEN_REPLY);
        master
    });

    assert_eq!(ns.counter(lab.ip6, "mangle", "OUTPUT", "syn-related"), 1);
    assert_eq!(ns.counter(lab.ip6, "mangle", "OUTPUT", "syn-new"), 0);
    assert_eq!(ns.counter(lab.ip6, "filter", "INPUT", "syn-dnat"), 1);

    // conntrack(8) sees the same entry, NAT and mark included.
    let family = if lab.ip6 { "ipv6" } else { "ipv4" };
    let listing = ns.sh(&[
        "conntrack",
        "-L",
        "-f",
        family,
        "-o",
        "extended",
        "-p",
        "tcp",
    ]);
    let want_orig = format!(
        "src={} dst={} sport=40000 dport=30000",
        lab.client, lab.public
    );
    let want_reply = format!(
        "src={} dst={} sport=30001 dport=40000",
        lab.server,
        seen_from.ip()
    );
    let line = listing
        .lines()
        .find(|l| l.contains(&want_orig))
        .unwrap_or_else(|| panic!("no {want_orig} in:\n{listing}"));
    assert!(line.contains(&want_reply), "{line}");
    assert!(line.contains("mark=42"), "{line}");

    ns.run(|| {
        let mut ct = Ctnetlink::open().unwrap();
        ct.delete(&data).expect("delete");
        assert_eq!(ct.get(&data, Dir::Orig).unwrap(), None);
        let e = ct.delete(&data).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Kernel {
                    op: Op::CtDelete,
                    target: Target::Conn(t),
                    errno: libc::ENOENT,
                } if *t == data
            ),
            "{e:?}"
        );
        // The master is untouched (closed, but still tracked).
        assert!(ct.get(&master, Dir::Orig).unwrap().is_some());
    });
}

#[test]
fn ipset_lifecycle_v4() {
    if kernel_tests_enabled() {
        ipset_lifecycle(Lab::v4(), "ips4");
    }
}

#[test]
fn ipset_lifecycle_v6() {
    if kernel_tests_enabled() {
        ipset_lifecycle(Lab::v6(), "ips6");
    }
}

fn ipset_lifecycle(lab: Lab, tag: &str) {
    let ns = Netns::new(tag);
    let name = format!("ftpct-{tag}");
    let ip = lab.server;
    ns.run(|| {
        let mut set = Ipset::open().expect("open ipset");
        assert!((6..=7).contains(&set.protocol()));
        set.create(&name, lab.ip6, 300).expect("create");
        set.create(&name, lab.ip6, 300)
            .expect("create again is idempotent");
        // Another timeout: the kernel refuses; another family: ftpct sees it.
        let e = set.create(&name, lab.ip6, 10).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Kernel {
                    op: Op::IpsetCreate,
                    errno: libc::EEXIST,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = set.create(&name, !lab.ip6, 300).unwrap_err();
        assert!(
            matches!(&e, Error::SetMismatch { name: n, type_name, .. } if *n == name && type_name == ipset::SET_TYPE),
            "{e:?}"
        );

        assert!(!set.test(&name, ip, 2121).unwrap());
        set.add(&name, ip, 2121, 60).expect("add");
        set.add(&name, ip, 2121, 90).expect("re-add refreshes");
        assert!(set.test(&name, ip, 2121).unwrap());
        assert!(!set.test(&name, ip, 2122).unwrap());
        assert!(!set.test(&name, lab.client, 2121).unwrap());
    });

    let listing = ns.sh(&["ipset", "list", &name]);
    assert!(listing.contains("Type: hash:ip,port"), "{listing}");
    let family = if lab.ip6 {
        "family inet6"
    } else {
        "family inet "
    };
    assert!(listing.contains(family), "{listing}");
    assert!(listing.contains("timeout 300"), "{listing}");
    let member = format!("{ip},tcp:2121 timeout ");
    let line = listing
        .lines()
        .find(|l| l.starts_with(&member))
        .unwrap_or_else(|| panic!("no {member} in:\n{listing}"));
    let left: u32 = line[member.len()..].trim().parse().unwrap();
    assert!((60..=90).contains(&left), "timeout refreshed to 90: {line}");

    // A rule that uses the set keeps it from being destroyed.
    let rule = ["-m", "set", "--match-set", &name, "dst,dst"];
    lab.count_rule(&ns, "raw", "PREROUTING", &rule, "uses-set");
    ns.run(|| {
        let mut set = Ipset::open().unwrap();
        let e = set.destroy(&name).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Kernel {
                    op: Op::IpsetDestroy,
                    errno: ipset::IPSET_ERR_BUSY | ipset::IPSET_ERR_REFERENCED,
                    ..
                }
            ),
            "{e:?}"
        );
    });
    let mut del_rule = vec![lab.iptables(), "-t", "raw", "-D", "PREROUTING"];
    del_rule.extend_from_slice(&rule);
    del_rule.extend_from_slice(&["-m", "comment", "--comment", "uses-set"]);
    ns.sh(&del_rule);

    ns.run(|| {
        let mut set = Ipset::open().unwrap();
        // The wrong family for the set is refused with a clear message.
        let other: IpAddr = if lab.ip6 {
            "192.0.2.9".parse().unwrap()
        } else {
            "2001:db8::9".parse().unwrap()
        };
        let e = set.add(&name, other, 1, 1).unwrap_err();
        assert!(
            matches!(&e, Error::Kernel { op: Op::IpsetAdd, target: Target::Set(n), .. } if *n == name),
            "{e:?}"
        );

        set.del(&name, ip, 2121).expect("del");
        assert!(!set.test(&name, ip, 2121).unwrap());
        set.del(&name, ip, 2121)
            .expect("del of a missing element is Ok");
        set.add(&name, ip, 1, 30).unwrap();
        set.flush(&name).expect("flush");
        assert!(!set.test(&name, ip, 1).unwrap());
        set.destroy(&name).expect("destroy");
        set.destroy(&name).expect("destroy of a missing set is Ok");
        let e = set.test(&name, ip, 1).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Kernel {
                    op: Op::IpsetTest,
                    errno: libc::ENOENT,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = set.add(&name, ip, 1, 30).unwrap_err();
        assert!(
            matches!(&e, Error::Kernel { op: Op::IpsetAdd, target: Target::Set(n), errno: libc::ENOENT } if *n == name),
            "{e:?}"
        );
    });
    assert!(!ns.try_sh(&["ipset", "list", &name]));
}

/// The sets of sessions (`hash:ip,port,ip`): a take says whether the
/// element was there (the passive note), a swap and a listing read what a
/// rule put in a set (the FIN set).
#[test]
fn session_sets_take_swap_and_list() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("sessets");
    ns.run(|| {
        let mut set = Ipset::open().expect("open ipset");
        let kind = (false, SetType::Guard);
        let (live, read) = ("ftpct-t-fin", "ftpct-t-finx");
        for name in [live, read] {
            set.create_of(name, kind, 60).expect("create");
        }
        let session = |port| Element {
            addr: "192.0.2.10".parse().expect("ip"),
            port,
            addr2: Some("198.51.100.20".parse().expect("ip")),
        };
        assert!(
            !set.take_element(live, &session(40000)).expect("take"),
            "not there"
        );
        set.add_element(live, &session(40000), 0).expect("add");
        assert!(
            set.take_element(live, &session(40000)).expect("take"),
            "there"
        );
        assert!(
            !set.take_element(live, &session(40000)).expect("take"),
            "taken"
        );

        set.add_element(live, &session(40001), 0).expect("add");
        set.add_element(live, &session(40002), 0).expect("add");
        set.swap(live, read).expect("swap");
        assert!(
            set.list(live).expect("list").is_empty(),
            "the rules fill an empty one"
        );
        let mut taken = set.list(read).expect("list");
        taken.sort_by_key(|e| e.port);
        assert_eq!(taken, vec![session(40001), session(40002)]);
        for name in [live, read] {
            set.destroy(name).expect("destroy");
        }
    });
}

/// Servers that open data connections from port 20 reuse 5-tuples: the
/// data SYN of a new transfer can meet the entry of the last one, still in
/// TIME_WAIT (120 s by default). conntrack would reopen the tuple as a new
/// connection, without NAT; ftpct's actions replace the entry by a RELATED
/// one with its NAT, and the new connection passes through it.
#[test]
fn a_data_tuple_in_time_wait_is_replaced_by_a_related_entry() {
    if !kernel_tests_enabled() {
        return;
    }
    use ftpct::daemon::{Executor, LiveKernel};
    use ftpct::netfilter::kept_labels::KeptLabels;
    use ftpct::netfilter::sets::SetNames;
    use ftpct_engine::command::{Command, Related};
    use ftpct_engine::expect::{Expectation, NatBindings};
    use ftpct_engine::grammar::AnnounceKind;

    let lab = Lab::v4();
    let ns = Netns::new("reuse");
    lab.setup(&ns);
    let data = Tuple::new(lab.at(lab.client, 40020), lab.at(lab.public, 30000));
    ns.run(|| {
        let (master, _c, _s) = control_connection(&lab);
        let listener = TcpListener::bind(lab.at(lab.server, 30001)).expect("bind data");
        let sets = SetNames::new("ftpct-reuse").expect("names");
        let mut kernel = LiveKernel::open(Default::default(), 0).expect("kernel");
        kernel.prepare_sets(&sets).expect("sets");
        let mut exec = Executor::new(kernel, sets, KeptLabels::default());
        let exp = Expectation {
            peer: lab.client,
            dst: data.dst,
            nat: NatBindings {
                src: None,
                dst: Some(lab.at(lab.server, 30001)),
            },
            master,
            kind: AnnounceKind::Port,
            expires: Duration::from_secs(300),
        };
        let transfer = |exec: &mut Executor<LiveKernel>| {
            exec.run(&Command::ExpectDst {
                dst: data.dst,
                timeout: Duration::from_secs(300),
            });
            let back = exec.run(&Command::CreateRelated(Box::new(Related {
                conn: DataConnection::for_match(&data, &exp),
                mark: None,
                exp: exp.clone(),
            })));
            assert_eq!(back, None, "the entry was made");
            let mut client = connect_from(data.src, data.dst).expect("data connect");
            let (mut server, _) = accept(&listener);
            server.write_all(b"DATA").unwrap();
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).unwrap();
            // The server closes first, the client after: conntrack ends
            // in TIME_WAIT, and the client's port is free again.
            drop(server);
            assert_eq!(client.read(&mut buf).unwrap(), 0);
            drop(client);
        };
        transfer(&mut exec);
        let mut ct = Ctnetlink::open().unwrap();
        let state = |ct: &mut Ctnetlink| {
            ct.get_info(&data, Dir::Orig)
                .unwrap()
                .and_then(|i| i.tcp_state)
        };
        let time_wait = 7;
        let mut waited = 0;
        while state(&mut ct) != Some(time_wait) && waited < 40 {
            std::thread::sleep(Duration::from_millis(50));
            waited += 1;
        }
        assert_eq!(
            state(&mut ct),
            Some(time_wait),
            "the first transfer's entry"
        );
        // The same tuple again: replaced, RELATED, DNATed; the data flows.
        transfer(&mut exec);
        let info = ct.get_info(&data, Dir::Orig).unwrap().expect("entry");
        assert_eq!(info.master, Some(master));
        assert_eq!(info.status & IPS_DST_NAT, IPS_DST_NAT);
        exec.cleanup(&[data.dst]);
    });
}

/// Runs `f` (as root) in an IPv4 lab of its own, from a thread in it.
fn in_v4_lab(tag: &str, f: impl FnOnce(&Lab) + Send) {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::v4();
    let ns = Netns::new(tag);
    lab.setup(&ns);
    ns.run(|| f(&lab));
}

/// ftpct's adoptions delete entries: their destroy events name its socket.
#[test]
fn a_destroy_event_names_the_socket_whose_delete_caused_it() {
    in_v4_lab("byport", |lab| {
        // Listening first: only entries made while someone listens
        // report their end.
        let mut events =
            ftpct::netfilter::ct_events::DestroyEvents::open().expect("destroy events");
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        let (orig, _c, _s) = control_connection(lab);
        ct.delete(&orig).expect("delete");
        let port = ct.port_id().expect("port id");
        assert_ne!(port, 0, "bound by its first request");
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(events.destroyed().expect("events"));
            if seen.iter().any(|d| d.orig == orig) {
                break;
            }
        }
        let ours = seen.iter().find(|d| d.orig == orig).expect("its event");
        assert_eq!(ours.by, port, "{seen:?}");
    });
}

#[test]
fn a_connection_in_a_zone_is_found_adopted_and_given_its_data_entry_there() {
    if !kernel_tests_enabled() {
        return;
    }
    for (lab, tag) in [(Lab::v4(), "zone4"), (Lab::v6(), "zone6")] {
        in_a_zone(lab, tag);
    }
}

/// Conntrack zone 1, as an operator's raw rules (`-j CT --zone 1`) make
/// it: a socket told the zone finds the control connection there (zone 0
/// does not), re-creates it there (adoption: delete and create) and makes
/// the data connection's entry there, which the data SYN, in zone 1 too,
/// then uses (RELATED, DNATed).
fn in_a_zone(lab: Lab, tag: &str) {
    let ns = Netns::new(tag);
    lab.setup(&ns);
    for chain in ["OUTPUT", "PREROUTING"] {
        ns.sh(&[
            lab.iptables(),
            "-t",
            "raw",
            "-A",
            chain,
            "-j",
            "CT",
            "--zone",
            "1",
        ]);
    }
    let data = Tuple::new(lab.at(lab.client, 40000), lab.at(lab.public, 30000));
    ns.run(|| {
        let (orig, mut c, mut s) = control_connection(&lab);
        let mut zone0 = Ctnetlink::open().expect("open ctnetlink");
        assert_eq!(zone0.get(&orig, Dir::Orig).unwrap(), None, "not in zone 0");
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        ct.set_zone(1);
        let entry = ct.get(&orig, Dir::Orig).unwrap().expect("found in zone 1");
        assert_eq!(entry.reply.src, lab.at(lab.server, 2121));
        ct.adopt(&orig, [None, None], None)
            .expect("adopted in zone 1");
        let anew = ct.get_info(&orig, Dir::Orig).unwrap().expect("re-created");
        assert_eq!(anew.entry, entry);
        assert_eq!(
            zone0.get(&orig, Dir::Orig).unwrap(),
            None,
            "still not in zone 0"
        );
        c.write_all(b"NOOP\r\n").expect("write");
        let mut line = [0u8; 6];
        s.read_exact(&mut line)
            .expect("the control connection goes on");

        let listener = TcpListener::bind(lab.at(lab.server, 30001)).expect("bind data");
        let dc = DataConnection {
            tuple: data,
            master: orig,
            nat_src: None,
            nat_dst: Some(NatBinding {
                addr: lab.server,
                port: Some(30001),
            }),
            timeout_secs: 120,
            mark: None,
        };
        ct.create_related(&dc).expect("data entry in zone 1");
        let info = ct.get_info(&data, Dir::Orig).unwrap().expect("entry");
        assert_eq!(info.master, Some(orig));
        assert_eq!(zone0.get(&data, Dir::Orig).unwrap(), None);
        let mut dclient = connect_from(data.src, data.dst).expect("data connects");
        let (mut dserver, _) = accept(&listener);
        dclient.write_all(b"x").expect("write");
        let mut byte = [0u8; 1];
        dserver
            .read_exact(&mut byte)
            .expect("the data arrives through the DNAT");
        let info = ct.get_info(&data, Dir::Orig).unwrap().expect("entry");
        assert_eq!(info.status & IPS_EXPECTED, IPS_EXPECTED, "{info:?}");
        assert_eq!(info.status & IPS_SEEN_REPLY, IPS_SEEN_REPLY, "{info:?}");
    });
}

/// With the control ports' filter, the kernel queues only their entries'
/// destroy events, and not those an adopting socket's deletes caused:
/// another port's, or the adopter's, never reaches the socket.
#[test]
fn destroy_events_of_other_ports_and_of_adoptions_are_filtered_out_in_the_kernel() {
    in_v4_lab("evfilter", |lab| {
        let mut events =
            ftpct::netfilter::ct_events::DestroyEvents::open().expect("destroy events");
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        let mut adopter = Ctnetlink::open().expect("open ctnetlink");
        let probe = Tuple::new(lab.at(lab.client, 9), lab.at(lab.public, 9));
        adopter
            .get(&probe, Dir::Orig)
            .expect("get: the socket bound");
        let ignored = [adopter.port_id().expect("port id")];
        assert!(events.only_to_ports(&[21], &ignored).expect("filter"));
        // To the server's port directly: not a control port.
        let listener = TcpListener::bind(lab.at(lab.server, 2122)).expect("bind");
        let other = connect_from(lab.at(lab.client, 0), lab.at(lab.server, 2122)).expect("connect");
        let _other_server = accept(&listener);
        let other = Tuple::new(other.local_addr().unwrap(), other.peer_addr().unwrap());
        let (adopted, _c1, _s1) = control_connection(lab);
        let (orig, _c2, _s2) = control_connection(lab);
        ct.delete(&other).expect("delete the other");
        adopter
            .delete(&adopted)
            .expect("delete as an adoption does");
        ct.delete(&orig).expect("delete the control connection");
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(events.destroyed().expect("events"));
            if seen.iter().any(|d| d.orig == orig) {
                break;
            }
        }
        let origs: Vec<Tuple> = seen.iter().map(|d| d.orig).collect();
        assert_eq!(origs, [orig], "{seen:?}");
    });
}

/// The FIN checks' lookups: asked together, in one datagram, answered in
/// order (found, not found in this direction, not found at all), each
/// counted as a request of its own; more than fit one datagram go in
/// several.
#[test]
fn lookups_asked_together_go_in_one_datagram_and_are_answered_in_order() {
    in_v4_lab("together", |lab| {
        let (orig, _c, _s) = control_connection(lab);
        let reply = Tuple::new(lab.at(lab.server, 2121), orig.src);
        let unknown = Tuple::new(lab.at(lab.client, 1), lab.at(lab.server, 2));
        let counters = ftpct::netfilter::netlink::NlCounters::default();
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        ct.count_in(counters.clone());
        let before = ct.socket().datagrams();
        let asks = [
            (orig, Dir::Orig),
            (orig, Dir::Reply),
            (unknown, Dir::Orig),
            (reply, Dir::Reply),
        ];
        let found = ct.get_infos(&asks);
        assert_eq!(ct.socket().datagrams() - before, 1, "one datagram");
        let origs: Vec<Option<Tuple>> = found
            .into_iter()
            .map(|f| f.expect("answered").map(|i| i.entry.orig))
            .collect();
        assert_eq!(origs, [Some(orig), None, None, Some(orig)]);
        assert_eq!(
            counters.requests.totals(),
            (4, 4),
            "four lookups, waited for"
        );
        let gets = counters.requests.snapshot();
        assert!(gets.contains(&(Op::CtGet, 0, 4)), "{gets:?}");
        assert!(
            counters.errors.snapshot().is_empty(),
            "not found is an answer"
        );

        let many = vec![(unknown, Dir::Orig); ftpct::netfilter::netlink::MAX_ASKED_TOGETHER + 1];
        let before = ct.socket().datagrams();
        let found = ct.get_infos(&many);
        assert_eq!(ct.socket().datagrams() - before, 2);
        assert!(found.iter().all(|f| matches!(f, Ok(None))));
        // The socket is in step: a lookup after them gets its own answer.
        assert!(ct.get(&orig, Dir::Orig).unwrap().is_some());
    });
}

/// The executor's ipset requests not waited for go on its conntrack
/// socket: held with conntrack's, they leave in the datagram of the next
/// waited conntrack request; each is carried out, and a refusal is still
/// counted as its own operation's.
#[test]
fn ipset_requests_not_waited_for_ride_in_a_conntrack_datagram() {
    in_v4_lab("ride", |lab| {
        let (orig, _c, _s) = control_connection(lab);
        let counters = ftpct::netfilter::netlink::NlCounters::default();
        let mut set = Ipset::open().expect("open ipset");
        set.create("ftpct-ride", false, 300).expect("create");
        let mut ct = Ctnetlink::open().expect("open ctnetlink");
        ct.count_in(counters.clone());
        ct.get(&orig, Dir::Orig).expect("bound");
        let before = ct.socket().datagrams();
        ct.socket().hold();
        let e = Element::dst(lab.server, 40001);
        set.tell_add_on(ct.socket(), "ftpct-ride", (&e, 300), "note")
            .expect("held");
        set.tell_del_on(ct.socket(), "ftpct-missing", &e, "note")
            .expect("held");
        assert!(ct.get(&orig, Dir::Orig).expect("lookup").is_some());
        assert_eq!(ct.socket().datagrams() - before, 1, "one datagram");
        assert!(set.test("ftpct-ride", lab.server, 40001).expect("test"));
        let errors = counters.errors.snapshot();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, Op::IpsetDel, "{errors:?}");
        let requests = counters.requests.snapshot();
        assert!(requests.contains(&(Op::IpsetAdd, 1, 0)), "{requests:?}");
        assert!(requests.contains(&(Op::IpsetDel, 1, 0)), "{requests:?}");
        set.destroy("ftpct-ride").expect("destroy");
    });
}
