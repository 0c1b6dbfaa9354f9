//! Conntrack and ipset as far as the executor sees them, for unit tests.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;

use ftpct_engine::command::DataConnection;
use ftpct_engine::tuple::Tuple;

use super::kernel::Kernel;

#[derive(Default)]
pub struct FakeKernel {
    pub calls: Vec<String>,
    pub master_mark: Option<u32>,
    pub created: Vec<DataConnection>,
    /// Entries in conntrack by original tuple, with their TCP state.
    pub entries: HashMap<Tuple, u8>,
    /// errno of every create (a full table: ENOMEM).
    pub create_errno: Option<i32>,
    /// Sets that exist, and their entries.
    pub sets: HashMap<String, HashSet<SocketAddr>>,
    /// When set, a create says it started, then waits for a message: a
    /// kernel that does not answer.
    pub create_blocks: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl Kernel for FakeKernel {
    fn ipset_add(&mut self, set: &str, dst: SocketAddr, timeout: u32) -> io::Result<()> {
        self.calls.push(format!("add {set} {dst} {timeout}"));
        self.sets.entry(set.into()).or_default().insert(dst);
        Ok(())
    }

    fn ipset_del(&mut self, set: &str, dst: SocketAddr) -> io::Result<()> {
        self.calls.push(format!("del {set} {dst}"));
        self.sets.entry(set.into()).or_default().remove(&dst);
        Ok(())
    }

    fn ct_mark(&mut self, _: &Tuple) -> io::Result<Option<u32>> {
        Ok(self.master_mark)
    }

    fn create_related(&mut self, dc: &DataConnection) -> io::Result<()> {
        if let Some((entered, release)) = &self.create_blocks {
            let _ = entered.send(());
            let _ = release.recv();
        }
        self.calls.push(format!("create {}", dc.tuple));
        if let Some(errno) = self.create_errno {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if self.entries.contains_key(&dc.tuple) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        self.entries.insert(dc.tuple, 1);
        self.created.push(*dc);
        Ok(())
    }

    fn set_liberal(&mut self, orig: &Tuple) -> io::Result<()> {
        self.calls.push(format!("liberal {orig}"));
        Ok(())
    }

    fn ct_entry(&mut self, tuple: &Tuple) -> io::Result<Option<(Tuple, Option<u8>)>> {
        Ok(self.entries.get(tuple).map(|s| (*tuple, Some(*s))))
    }

    fn ct_delete(&mut self, orig: &Tuple) -> io::Result<()> {
        self.calls.push(format!("delete {orig}"));
        self.entries.remove(orig);
        Ok(())
    }

    fn ensure_set(&mut self, set: &str, _: bool) -> io::Result<bool> {
        if self.sets.contains_key(set) {
            return Ok(false);
        }
        self.calls.push(format!("create set {set}"));
        self.sets.insert(set.into(), HashSet::new());
        Ok(true)
    }

    fn ipset_test(&mut self, set: &str, dst: SocketAddr) -> io::Result<bool> {
        Ok(self.sets.get(set).is_some_and(|s| s.contains(&dst)))
    }
}
