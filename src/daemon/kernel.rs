//! The kernel operations the executor needs, as a trait (so the executor
//! is testable without root), and the real kernel behind it: one
//! ctnetlink and one ipset socket per thread that uses them.

use std::net::SocketAddr;

use crate::netfilter::guard_entries::GuardEntry;
use ftpct_engine::command::{Adoption, DataConnection, SeqAdj};
use ftpct_engine::tuple::{Dir, Tuple};

use super::DaemonError;
use crate::netfilter::ctnetlink::{CtInfo, Ctnetlink};
use crate::netfilter::family::Family;
use crate::netfilter::ipset::{Element, Ipset};
use crate::netfilter::kept_labels::Labels;
use crate::netfilter::netlink::{NlCounters, NlSocket};
use crate::netfilter::sets::{self, SetNames};
use crate::netfilter::Error;

/// TCP conntrack states in which a SYN opens the tuple again (conntrack
/// itself then replaces the entry): TIME_WAIT and CLOSE.
pub const TCP_TIME_WAIT: u8 = 7;
pub const TCP_CLOSE: u8 = 8;

/// What the executor asks of conntrack and ipset.
pub trait Kernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout_secs: u32) -> Result<(), Error>;
    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> Result<(), Error>;
    /// Puts a direction in guard set `set` (timeout 0: for good).
    fn guard_add(&mut self, set: &str, key: &GuardEntry, timeout_secs: u32) -> Result<(), Error>;
    fn guard_del(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error>;
    /// Takes a direction's entry out of set `set`; true if it was there.
    fn guard_take(&mut self, set: &str, key: &GuardEntry) -> Result<bool, Error>;
    /// The counting set `set` counts a direction's unseen bytes afresh.
    fn recount_unseen(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error>;
    /// The conntrack mark of the connection whose original tuple is `orig`.
    fn ct_mark(&mut self, orig: &Tuple) -> Result<Option<u32>, Error>;
    fn create_related(&mut self, dc: &DataConnection) -> Result<(), Error>;
    /// No TCP window checks on the control connection `orig` any more.
    fn set_liberal(&mut self, orig: &Tuple) -> Result<(), Error>;
    /// Re-creates the entry through ctnetlink with its first correction
    /// point and labels (see `Ctnetlink::adopt`).
    fn adopt(&mut self, a: &Adoption, labels: Option<Labels>) -> Result<(), Error>;
    fn set_seqadj(&mut self, orig: &Tuple, dir: Dir, adj: &SeqAdj) -> Result<(), Error>;
    fn set_labels(&mut self, orig: &Tuple, labels: &[u8; 16], mask: &[u8; 16])
        -> Result<(), Error>;
    /// The labels and sequence corrections of the entry whose original
    /// tuple is `orig` (None: no entry, or no labels).
    fn kept_state(&mut self, orig: &Tuple) -> Result<Option<KeptState>, Error>;
    /// The entry that holds `tuple` in either direction: its original
    /// tuple and TCP state.
    fn ct_entry(&mut self, tuple: &Tuple) -> Result<Option<(Tuple, Option<u8>)>, Error>;
    /// [`Kernel::ct_entry`] of each of `tuples`, in order (the live kernel
    /// asks them together: a datagram of questions, not one each).
    fn ct_entries(&mut self, tuples: &[Tuple]) -> Vec<Result<Option<CtEntryState>, Error>> {
        tuples.iter().map(|t| self.ct_entry(t)).collect()
    }
    fn ct_delete(&mut self, orig: &Tuple) -> Result<(), Error>;
    /// Creates the set when it is missing; true if it had to.
    fn ensure_set(&mut self, set: &str, v6: bool) -> Result<bool, Error>;
    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> Result<bool, Error>;
    /// From now on, requests whose answer changes nothing wait to go out
    /// together (one datagram per socket), until [`Kernel::send_held`].
    fn hold(&mut self) {}
    /// Sends what [`Kernel::hold`] held, and holds no more.
    fn send_held(&mut self) {}
    /// Reads the refusals of requests not waited for, without blocking
    /// (they are counted and logged).
    fn settle(&mut self) {}
}

/// An entry's original tuple and TCP state.
pub type CtEntryState = (Tuple, Option<u8>);

/// What an entry keeps for a session: its labels and the kernel's
/// sequence corrections by direction.
pub type KeptState = ([u8; 16], [Option<SeqAdj>; 2]);

/// The real kernel.
pub struct LiveKernel {
    ct: Ctnetlink,
    ipset: Ipset,
}

impl Kernel for LiveKernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout_secs: u32) -> Result<(), Error> {
        let e = Element::dst(dst.ip(), dst.port());
        let (ipset, sock) = self.told();
        ipset.tell_add_on(
            sock,
            set,
            (&e, timeout_secs),
            "that data connection will not be helped",
        )
    }

    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> Result<(), Error> {
        let e = Element::dst(dst.ip(), dst.port());
        let (ipset, sock) = self.told();
        ipset.tell_del_on(sock, set, &e, "the entry stays until it times out")
    }

    fn guard_add(&mut self, set: &str, key: &GuardEntry, timeout_secs: u32) -> Result<(), Error> {
        let e = key.element();
        let (ipset, sock) = self.told();
        ipset.tell_add_on(
            sock,
            set,
            (&e, timeout_secs),
            "ftpct may not see every segment of that direction",
        )
    }

    fn guard_del(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error> {
        let (ipset, sock) = self.told();
        ipset.tell_del_on(
            sock,
            set,
            &key.element(),
            "that direction stays queued until the entry times out",
        )
    }

    fn guard_take(&mut self, set: &str, key: &GuardEntry) -> Result<bool, Error> {
        self.ipset().take_element(set, &key.element())
    }

    fn recount_unseen(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error> {
        self.ipset().tell_recount(
            set,
            &key.element(),
            "the kernel queues that direction whole until a recount",
        )
    }

    fn ct_mark(&mut self, orig: &Tuple) -> Result<Option<u32>, Error> {
        Ok(self.ct().get(orig, Dir::Orig)?.map(|e| e.mark))
    }

    fn create_related(&mut self, dc: &DataConnection) -> Result<(), Error> {
        self.ct().create_related(dc)
    }

    fn set_liberal(&mut self, orig: &Tuple) -> Result<(), Error> {
        self.ct()
            .tell_liberal(orig, "the session may stall after this rewrite")
    }

    fn adopt(&mut self, a: &Adoption, labels: Option<Labels>) -> Result<(), Error> {
        self.ct().adopt(&a.orig, a.seqadj, labels).map(drop)
    }

    fn set_seqadj(&mut self, orig: &Tuple, dir: Dir, adj: &SeqAdj) -> Result<(), Error> {
        self.ct().tell_seqadj(
            orig,
            (dir, adj),
            "the kernel's sequence adjustment is not set: the session breaks after this rewrite",
        )
    }

    fn set_labels(
        &mut self,
        orig: &Tuple,
        labels: &[u8; 16],
        mask: &[u8; 16],
    ) -> Result<(), Error> {
        self.ct().tell_labels(
            orig,
            (labels, mask),
            "the session's labels are not kept (ENOSPC: no rule uses labels, ftpct rules --apply): a restarted ftpct will not take it up",
        )
    }

    fn kept_state(&mut self, orig: &Tuple) -> Result<Option<KeptState>, Error> {
        Ok(self
            .ct()
            .get_info(orig, Dir::Orig)?
            .and_then(|info| Some((info.labels?, info.seqadj))))
    }

    fn ct_entry(&mut self, tuple: &Tuple) -> Result<Option<(Tuple, Option<u8>)>, Error> {
        for dir in [Dir::Orig, Dir::Reply] {
            if let Some(info) = self.ct().get_info(tuple, dir)? {
                return Ok(Some((info.entry.orig, info.tcp_state)));
            }
        }
        Ok(None)
    }

    fn ct_entries(&mut self, tuples: &[Tuple]) -> Vec<Result<Option<CtEntryState>, Error>> {
        let state = |info: CtInfo| (info.entry.orig, info.tcp_state);
        let asks: Vec<(Tuple, Dir)> = tuples.iter().map(|t| (*t, Dir::Orig)).collect();
        let mut found: Vec<_> = self.ct().get_infos(&asks).into_iter().collect();
        // Not found as an original tuple: asked again as a reply.
        let again: Vec<usize> = (0..found.len())
            .filter(|&i| matches!(found[i], Ok(None)))
            .collect();
        let asks: Vec<(Tuple, Dir)> = again.iter().map(|&i| (tuples[i], Dir::Reply)).collect();
        if !asks.is_empty() {
            for (i, info) in again.into_iter().zip(self.ct().get_infos(&asks)) {
                found[i] = info;
            }
        }
        found
            .into_iter()
            .map(|info| info.map(|i| i.map(state)))
            .collect()
    }

    fn ct_delete(&mut self, orig: &Tuple) -> Result<(), Error> {
        self.ct().delete(orig)
    }

    fn ensure_set(&mut self, set: &str, v6: bool) -> Result<bool, Error> {
        sets::ensure_set(self.ipset(), set, v6)
    }

    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> Result<bool, Error> {
        self.ipset().test(set, dst.ip(), dst.port())
    }

    fn hold(&mut self) {
        self.ct.socket().hold();
        self.ipset.socket().hold();
    }

    fn send_held(&mut self) {
        // At most one of them holds anything: using one socket sends what
        // the other held (see `ct`).
        self.ct.socket().end_hold();
        self.ipset.socket().end_hold();
    }

    fn settle(&mut self) {
        self.ct.socket().settle();
        self.ipset.socket().settle();
    }
}

impl LiveKernel {
    /// Where the ipset requests not waited for go: the conntrack socket,
    /// so that they and conntrack's share datagrams (held together, or in
    /// the next waited conntrack request's). Their refusals come back on
    /// it, named by their set, and are read as conntrack's are.
    fn told(&mut self) -> (&Ipset, &mut NlSocket) {
        self.ipset.socket().send_held();
        (&self.ipset, self.ct.socket())
    }

    /// The conntrack socket, once what the ipset socket held is sent: the
    /// kernel sees the requests in the order they were made.
    fn ct(&mut self) -> &mut Ctnetlink {
        self.ipset.socket().send_held();
        &mut self.ct
    }

    /// The ipset socket, once what the conntrack socket held is sent.
    fn ipset(&mut self) -> &mut Ipset {
        self.ct.socket().send_held();
        &mut self.ipset
    }

    /// The netlink port id of the conntrack socket (None: unknown), which
    /// the destroy events of the entries it deletes carry.
    pub fn ct_port(&self) -> Option<u32> {
        self.ct.port_id().ok()
    }

    /// Every TCP entry of the conntrack table, labels and corrections
    /// included (to take sessions up again at start).
    pub fn ct_dump(&mut self) -> Result<Vec<CtInfo>, Error> {
        self.ct().dump()
    }

    /// Opens both sockets and checks that the kernel answers; their
    /// requests and failed requests are counted in `counters`; conntrack's
    /// entries are looked for and made in `zone`.
    pub fn open(counters: NlCounters, zone: u16) -> Result<Self, DaemonError> {
        let ct = open_ctnetlink(counters.clone(), zone)?;
        let mut ipset = Ipset::open().map_err(DaemonError::Ipset)?;
        ipset.count_in(counters);
        Ok(LiveKernel { ct, ipset })
    }

    /// What the rules put in set `live` so far: `live` is swapped with the
    /// empty set `read` (the rules fill that one from then on), which is
    /// listed and emptied.
    pub fn take_set(&mut self, live: &str, read: &str) -> Result<Vec<Element>, Error> {
        self.ipset().swap(live, read)?;
        let taken = self.ipset.list(read)?;
        self.ipset.flush(read)?;
        Ok(taken)
    }

    /// Makes sure the sets exist (created if missing) and start empty:
    /// entries left by an earlier run expect nothing any more, and ftpct
    /// follows no direction yet.
    pub fn prepare_sets(&mut self, sets: &SetNames) -> Result<(), DaemonError> {
        for family in [Family::V4, Family::V6] {
            for (name, set_type, timeout) in sets::family_sets(sets, family) {
                let kind = (family == Family::V6, set_type);
                let unusable = |source| DaemonError::SetUnusable {
                    name: name.to_string(),
                    source,
                };
                sets::ensure_set_of(&mut self.ipset, name, kind, timeout).map_err(unusable)?;
                self.ipset
                    .flush(name)
                    .map_err(|source| DaemonError::SetFlush {
                        name: name.to_string(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}

/// A ctnetlink socket that has answered one lookup, counting its requests
/// and failed requests in `counters`, naming connections in conntrack
/// zone `zone`.
pub fn open_ctnetlink(counters: NlCounters, zone: u16) -> Result<Ctnetlink, DaemonError> {
    let mut ct = Ctnetlink::open().map_err(DaemonError::Ctnetlink)?;
    ct.count_in(counters);
    ct.set_zone(zone);
    // Finding nothing proves that conntrack answers over netlink.
    let probe = Tuple::new(
        SocketAddr::from(([192, 0, 2, 0], 9)),
        SocketAddr::from(([192, 0, 2, 0], 9)),
    );
    ct.get(&probe, Dir::Orig).map_err(DaemonError::Conntrack)?;
    Ok(ct)
}

/// conntrack's name of a TCP state number.
pub fn tcp_state_name(state: Option<u8>) -> &'static str {
    const NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];
    state
        .and_then(|s| NAMES.get(usize::from(s)).copied())
        .unwrap_or("unknown")
}
