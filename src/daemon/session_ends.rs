//! Sessions whose client sent its FIN. Under selective queueing the FIN is
//! not queued: the raw table's FIN rule puts the session (client address
//! and port, server address) in the FIN set and the segment goes on. Once
//! a second the supervisor reads the set (swapped with an empty one, so
//! the rule fills that one meanwhile, then listed and emptied) and ends
//! each followed session whose conntrack entry took the FIN.
//!
//! The rule runs in the raw table, before conntrack's window check: a
//! spoofed FIN lands in the set too. Conntrack's TCP state tells: an
//! entry still ESTABLISHED (or earlier) after the FIN went through took
//! none, and the session goes on (counted).

use ftpct_engine::tuple::Tuple;
use tracing::{debug, warn};

use super::executor::Executor;
use super::kernel::{Kernel, LiveKernel};
use super::shared::Shared;
use crate::netfilter::ipset::Element;
use crate::netfilter::rules::Family;
use crate::netfilter::sets::SetNames;

/// conntrack's TCP states from the first FIN on: FIN_WAIT, CLOSE_WAIT,
/// LAST_ACK, TIME_WAIT, CLOSE.
const AFTER_A_FIN: std::ops::RangeInclusive<u8> = 4..=8;

/// Reads both FIN sets and ends the sessions they name.
pub fn end_finished_sessions(shared: &Shared, exec: &mut Executor<LiveKernel>, sets: &SetNames) {
    let ports = shared
        .with_engine(|e| e.config().control_ports.clone())
        .unwrap_or_default();
    for family in [Family::V4, Family::V6] {
        let (fin, read) = sets.fin_of(family);
        match exec.kernel_mut().take_set(fin, read) {
            Ok(entries) => entries
                .iter()
                .for_each(|e| end_session(shared, exec, e, &ports)),
            Err(e) => warn!("reading the FIN set {fin}: {e}: sessions that ended meanwhile are forgotten when conntrack drops them"),
        }
    }
}

/// The session `entry` names (on one of the control `ports`), ended if
/// conntrack took its FIN.
fn end_session(shared: &Shared, exec: &mut Executor<LiveKernel>, entry: &Element, ports: &[u16]) {
    let Some(server) = entry.addr2 else {
        return;
    };
    let client = std::net::SocketAddr::new(entry.addr, entry.port);
    for &port in ports {
        let orig = Tuple::new(client, std::net::SocketAddr::new(server, port));
        if shared.with_engine(|e| e.tracks(&orig)) != Some(true) {
            continue;
        }
        let state = match exec.kernel_mut().ct_entry(&orig) {
            Ok(Some((_, state))) => state,
            // Gone already: the session is over.
            Ok(None) => Some(*AFTER_A_FIN.end()),
            Err(e) => {
                warn!(flow = %orig, "conntrack lookup after its FIN: {e}: forgotten when conntrack drops it");
                continue;
            }
        };
        let believed = state.is_some_and(|s| AFTER_A_FIN.contains(&s));
        shared.metrics().fin(believed);
        if !believed {
            debug!(flow = %orig, "a FIN conntrack did not take (outside the window): the session goes on");
            continue;
        }
        let now = shared.now();
        if shared.with_engine(|e| e.client_finished(&orig, now)) == Some(true) {
            debug!(flow = %orig, "the client sent its FIN: forgotten after the linger");
        }
    }
}
