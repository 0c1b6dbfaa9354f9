//! At start: the sessions conntrack kept for ftpct (labels of their
//! entries, the kernel's sequence corrections) are taken up again, so that
//! a restarted ftpct, or ftpct on a standby gateway whose conntrack
//! conntrackd keeps in step, helps their pending data connections and goes
//! on with their fix-ups.

use ftpct_engine::engine::{ConntrackEvent, Input};
use ftpct_engine::nat::CtMapping;
use tracing::{info, warn};

use super::executor::Executor;
use super::kernel::LiveKernel;
use super::shared::Shared;
use crate::driver;

/// Takes up every kept session; logs how many.
pub fn resume_sessions(shared: &Shared, exec: &mut Executor<LiveKernel>) {
    let entries = match exec.kernel_mut().ct_dump() {
        Ok(entries) => entries,
        Err(e) => {
            warn!("listing conntrack to take up kept sessions failed: {e}: pending data connections of earlier sessions are not helped");
            return;
        }
    };
    let now = shared.now();
    let (mut sessions, mut pending) = (0, 0);
    for info in entries {
        let Some(kept) = info.labels.and_then(|l| exec.decode_labels(&l)) else {
            continue;
        };
        let mapping = CtMapping {
            orig: info.entry.orig,
            reply: info.entry.reply,
        };
        let Some(before) = shared.with_engine(|e| e.flow_count()) else {
            continue;
        };
        let picked_up = Input::Conntrack(ConntrackEvent::Kept {
            mapping,
            seqadj: info.seqadj,
            kept,
        });
        let out = driver::input(&mut { shared }, exec, now, picked_up);
        let taken = shared.with_engine(|e| e.flow_count() > before) == Some(true);
        sessions += usize::from(taken);
        pending += out.commands.len();
    }
    if sessions > 0 {
        info!("took up {sessions} session(s) kept in conntrack, {pending} with a pending data connection");
    }
}
