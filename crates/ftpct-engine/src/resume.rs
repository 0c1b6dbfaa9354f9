//! Kept state: what conntrack keeps of a session for ftpct (see `kept`),
//! and a session taken up again from it after a restart.

use std::time::Duration;

use crate::command::{Command, SeqAdj};
use crate::engine::Engine;
use crate::flow::Fixups;
use crate::guards::guard_always;
use crate::kept::Kept;
use crate::kept_expectation::{keep, restore};
use crate::nat::CtMapping;
use crate::tuple::{Dir, Tuple};

impl Engine {
    /// The kept state of the control connection `orig`, when it changed
    /// (see `kept`).
    pub(crate) fn keep_state(&mut self, orig: &Tuple) -> Option<Command> {
        if !self.cfg.keep_state {
            return None;
        }
        let (id, _) = self.flows.locate(orig)?;
        let flow = self.flows.get(id)?;
        let pending = self
            .expects
            .latest_of(id, flow.mapping.orig)
            .and_then(|exp| keep(&flow.mapping, &exp));
        let kernel = flow.fixups == Fixups::Kernel;
        let own_shift = if kernel {
            [0, 0]
        } else {
            [Dir::Orig, Dir::Reply].map(|d| flow.stream(d).adj().total_shift())
        };
        let mut kept = Kept {
            kernel_fixups: kernel,
            pending,
            own_shift,
        };
        if !kept.fits() {
            // Too far to keep: a restart will not shift it.
            kept.own_shift = [0, 0];
        }
        let flow = self.flows.get_mut(id)?;
        if std::mem::replace(&mut flow.kept, kept) == kept {
            return None;
        }
        Some(Command::Keep { orig: *orig, kept })
    }

    /// Takes up again a session that conntrack kept for ftpct (at start:
    /// a restart, or a standby gateway taking over): its mapping, the
    /// kernel's sequence corrections, and its kept state. Returns the
    /// commands its pending expectation needs (its ipset entry).
    pub(crate) fn resume(
        &mut self,
        mapping: CtMapping,
        seqadj: [Option<SeqAdj>; 2],
        kept: Kept,
        now: Duration,
    ) -> Vec<Command> {
        if !self.cfg.keep_state || self.flows.locate(&mapping.orig).is_some() {
            return Vec::new();
        }
        let Some(id) = self.flows.insert(self.new_flow(mapping, true, now)) else {
            return Vec::new();
        };
        self.stats.flows += 1;
        // Established: it is past its handshake.
        self.flows.spoke(id, Dir::Orig, false);
        self.flows.spoke(id, Dir::Reply, false);
        let Some(flow) = self.flows.get_mut(id) else {
            return Vec::new();
        };
        flow.kept = kept;
        // Past its greeting: the next final reply answers the next command.
        flow.dialogue.lost_track();
        // Shifted so far: by the kernel (its seqadj), or by ftpct itself
        // (the labels), and from now on by the same.
        let shifts = if kept.kernel_fixups {
            flow.fixups = Fixups::Kernel;
            seqadj.map(|a| a.map_or(0, |a| a.offset_after))
        } else {
            kept.own_shift
        };
        flow.liberal = kept.kernel_fixups || shifts != [0, 0];
        // Adopted already, or shifted by ftpct: too late to hand over.
        flow.adopt_asked = flow.liberal;
        for dir in [Dir::Orig, Dir::Reply] {
            flow.streams[dir.index()].resume_offset(shifts[dir.index()]);
        }
        let mut commands = if shifts != [0, 0] && flow.fixups == Fixups::Own {
            guard_always(flow, self.cfg.selective)
        } else {
            Vec::new()
        };
        let Some(p) = kept.pending else {
            return commands;
        };
        let exp = restore(&mapping, &p, now + self.cfg.expect_timeout);
        if self.expects.insert(&exp, id).is_ok() {
            self.stats.expectations += 1;
            commands.push(self.expect_dst(exp.dst));
        }
        commands
    }
}
