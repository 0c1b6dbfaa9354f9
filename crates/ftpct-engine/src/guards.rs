//! Selective queueing: which directions of a control connection must stay
//! queued (the guard entries), and which server segments may hold an
//! announcement.

use crate::command::{Command, QueuedDirection};
use crate::config::Config;
use crate::flow::Flow;
use crate::nat::CtMapping;
use crate::tuple::{Dir, Tuple};

/// True when the kernel queues only part of the flow's segments (selective
/// queueing, and not a connection queued whole): bytes passing unseen
/// between lines are then no loss.
pub(crate) fn sees_part(flow: &Flow, cfg: &Config) -> bool {
    cfg.selective && !flow.guard_always
}

/// Selective queueing, after a packet of `dir` (seen as `seen`): whether
/// ftpct still needs every segment of each direction, and the other
/// direction's segments queued while an edit of this one is
/// unacknowledged.
pub(crate) fn guard_commands(flow: &Flow, dir: Dir, seen: &Tuple) -> Vec<Command> {
    let other = queued_directions(&flow.mapping)[dir.other().index()];
    let mut commands = vec![Command::Guard {
        direction: QueuedDirection::of(seen, dir),
        needed: needs_every_segment(flow, dir),
        other,
        other_needed: needs_every_segment(flow, dir.other()),
    }];
    if flow.stream(dir).adj().has_unacked_edits() {
        commands.push(Command::GuardOn { direction: other });
    }
    commands
}

/// Selective queueing: true while ftpct must see every segment of `dir`:
/// a line is incomplete (or held, or being skipped); for the server, a
/// multi-line reply is open (its end and what it quotes must be seen);
/// and while the other direction's latest edit is unacknowledged (the
/// acknowledgement, which this direction carries, lets the next edit of
/// the other one have the kernel's one correction point: the server's 200
/// after a rewritten PORT, the client's ACK or next command after a
/// rewritten 227, whose PASV the kernel's rule notes unqueued).
pub(crate) fn needs_every_segment(flow: &Flow, dir: Dir) -> bool {
    let in_block = dir == Dir::Reply && flow.dialogue.in_block();
    let acknowledges_an_edit = flow.stream(dir.other()).adj().has_unacked_edits();
    !flow.stream(dir).at_rest() || in_block || acknowledges_an_edit
}

/// Both directions of a connection, as its packets show them before NAT
/// (by `Dir::index`).
pub(crate) fn queued_directions(m: &CtMapping) -> [QueuedDirection; 2] {
    [
        QueuedDirection::of(&m.orig, Dir::Orig),
        QueuedDirection::of(&m.reply, Dir::Reply),
    ]
}

/// Selective queueing on a connection whose fix-ups ftpct applies itself:
/// from now on every packet of it must cross.
pub(crate) fn guard_always(flow: &mut Flow, selective: bool) -> Vec<Command> {
    if !selective || std::mem::replace(&mut flow.guard_always, true) {
        return Vec::new();
    }
    queued_directions(&flow.mapping)
        .into_iter()
        .map(|direction| Command::GuardAlways { direction })
        .collect()
}
