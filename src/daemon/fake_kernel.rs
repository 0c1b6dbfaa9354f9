//! Conntrack and ipset as far as the executor sees them, for unit tests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::netfilter::guard_entries::GuardEntry;
use ftpct_engine::command::{Adoption, DataConnection, SeqAdj};
use ftpct_engine::tuple::{Dir, Tuple};

use super::kernel::{KeptState, Kernel};
use crate::netfilter::error::{Op, Target};
use crate::netfilter::kept_labels::Labels;
use crate::netfilter::Error;

#[derive(Default)]
pub struct FakeKernel {
    pub calls: Vec<String>,
    pub master_mark: Option<u32>,
    /// How many times a master's mark was asked for.
    pub marks_asked: usize,
    pub created: Vec<DataConnection>,
    /// Entries in conntrack by original tuple, with their TCP state.
    pub entries: HashMap<Tuple, u8>,
    /// Set by another thread while its adoption has deleted an entry and
    /// not made it anew yet: no entry is found meanwhile.
    pub adopting: Arc<AtomicBool>,
    /// errno of every create (a full table: ENOMEM).
    pub create_errno: Option<i32>,
    /// errno of every delete; the entry goes all the same (ENOENT: it
    /// timed out just before).
    pub delete_errno: Option<i32>,
    /// errno of every adopt.
    pub adopt_errno: Option<i32>,
    /// Labels and corrections of entries, by original tuple.
    pub kept: HashMap<Tuple, KeptState>,
    /// Sets that exist, and their entries.
    pub sets: HashMap<String, HashSet<SocketAddr>>,
    /// Guard sets' entries, with their timeouts.
    pub guards: HashMap<String, HashMap<GuardEntry, u32>>,
    /// When set, a create says it started, then waits for a message: a
    /// kernel that does not answer.
    pub create_blocks: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
    /// The same for every ipset add of an expected destination.
    pub add_blocks: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl FakeKernel {
    /// What a rule's SET target does (a PASV or EPSV let through unqueued
    /// noted in the passive set `set`): the entry, with the set's timeout.
    pub fn rule_adds(&mut self, set: &str, key: GuardEntry) {
        self.guards.entry(set.into()).or_default().insert(key, 0);
    }
}

impl Kernel for FakeKernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout: u32) -> Result<(), Error> {
        if let Some((entered, release)) = &self.add_blocks {
            let _ = entered.send(());
            let _ = release.recv();
        }
        self.calls.push(format!("add {set} {dst} {timeout}"));
        self.sets.entry(set.into()).or_default().insert(dst);
        Ok(())
    }

    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> Result<(), Error> {
        self.calls.push(format!("del {set} {dst}"));
        self.sets.entry(set.into()).or_default().remove(&dst);
        Ok(())
    }

    fn guard_add(&mut self, set: &str, key: &GuardEntry, timeout: u32) -> Result<(), Error> {
        self.calls.push(format!("guard {set} {key} {timeout}"));
        self.guards
            .entry(set.into())
            .or_default()
            .insert(*key, timeout);
        Ok(())
    }

    fn guard_del(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error> {
        self.calls.push(format!("unguard {set} {key}"));
        self.guards.entry(set.into()).or_default().remove(key);
        Ok(())
    }

    fn guard_take(&mut self, set: &str, key: &GuardEntry) -> Result<bool, Error> {
        self.calls.push(format!("take {set} {key}"));
        Ok(self
            .guards
            .entry(set.into())
            .or_default()
            .remove(key)
            .is_some())
    }

    fn recount_unseen(&mut self, set: &str, key: &GuardEntry) -> Result<(), Error> {
        self.calls.push(format!("recount {set} {key}"));
        Ok(())
    }

    fn ct_mark(&mut self, _: &Tuple) -> Result<Option<u32>, Error> {
        self.marks_asked += 1;
        Ok(self.master_mark)
    }

    fn create_related(&mut self, dc: &DataConnection) -> Result<(), Error> {
        if let Some((entered, release)) = &self.create_blocks {
            let _ = entered.send(());
            let _ = release.recv();
        }
        self.calls.push(format!("create {}", dc.tuple));
        let refused = |errno| Error::Kernel {
            op: Op::CtCreate,
            target: Target::related(dc.tuple, dc.master),
            errno,
        };
        if let Some(errno) = self.create_errno {
            return Err(refused(errno));
        }
        if self.entries.contains_key(&dc.tuple) {
            return Err(refused(libc::EEXIST));
        }
        self.entries.insert(dc.tuple, 1);
        self.created.push(*dc);
        Ok(())
    }

    fn set_liberal(&mut self, orig: &Tuple) -> Result<(), Error> {
        self.calls.push(format!("liberal {orig}"));
        Ok(())
    }

    fn adopt(&mut self, a: &Adoption, _labels: Option<Labels>) -> Result<(), Error> {
        self.calls.push(format!("adopt {}", a.orig));
        match self.adopt_errno {
            Some(errno) => Err(Error::Kernel {
                op: Op::CtAdopt,
                target: Target::Conn(a.orig),
                errno,
            }),
            None => Ok(()),
        }
    }

    fn set_labels(&mut self, orig: &Tuple, labels: &[u8; 16], _: &[u8; 16]) -> Result<(), Error> {
        self.calls
            .push(format!("labels {orig} {:x}", u128::from_le_bytes(*labels)));
        Ok(())
    }

    fn kept_state(&mut self, orig: &Tuple) -> Result<Option<KeptState>, Error> {
        self.calls.push(format!("kept {orig}"));
        Ok(self.kept.get(orig).copied())
    }

    fn set_seqadj(&mut self, orig: &Tuple, dir: Dir, adj: &SeqAdj) -> Result<(), Error> {
        self.calls.push(format!(
            "seqadj {orig} {dir:?} {} {} {}",
            adj.correction_pos, adj.offset_before, adj.offset_after
        ));
        Ok(())
    }

    fn ct_entry(&mut self, tuple: &Tuple) -> Result<Option<(Tuple, Option<u8>)>, Error> {
        if self.adopting.load(Ordering::Acquire) {
            return Ok(None);
        }
        Ok(self.entries.get(tuple).map(|s| (*tuple, Some(*s))))
    }

    fn ct_delete(&mut self, orig: &Tuple) -> Result<(), Error> {
        self.calls.push(format!("delete {orig}"));
        self.entries.remove(orig);
        match self.delete_errno {
            Some(errno) => Err(Error::Kernel {
                op: Op::CtDelete,
                target: Target::Conn(*orig),
                errno,
            }),
            None => Ok(()),
        }
    }

    fn ensure_set(&mut self, set: &str, _: bool) -> Result<bool, Error> {
        if self.sets.contains_key(set) {
            return Ok(false);
        }
        self.calls.push(format!("create set {set}"));
        self.sets.insert(set.into(), HashSet::new());
        Ok(true)
    }

    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> Result<bool, Error> {
        Ok(self.sets.get(set).is_some_and(|s| s.contains(&dst)))
    }
}
