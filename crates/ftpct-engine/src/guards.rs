//! Selective queueing: which directions of a control connection must stay
//! queued (the guard entries), and which server segments may hold an
//! announcement.

use crate::command::{Command, GuardKey};
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
/// ftpct still needs every segment of that direction, and the other
/// direction's segments queued while an edit of this one is
/// unacknowledged.
pub(crate) fn guard_commands(flow: &Flow, dir: Dir, seen: &Tuple) -> Vec<Command> {
    let key = GuardKey::of(seen, dir);
    // Without NAT the other direction has the same entry.
    let [orig, reply] = guard_keys(&flow.mapping);
    let shared = orig == reply && needs_every_segment(flow, dir.other());
    let mut commands = vec![Command::Guard {
        key,
        needed: needs_every_segment(flow, dir) || shared,
    }];
    if flow.stream(dir).adj().has_unacked_edits() {
        let acknowledger = if dir == Dir::Orig { reply } else { orig };
        commands.push(Command::GuardOn { key: acknowledger });
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

/// The guard entries of both directions of a connection, as its packets
/// show them before NAT.
pub(crate) fn guard_keys(m: &CtMapping) -> [GuardKey; 2] {
    [
        GuardKey::of(&m.orig, Dir::Orig),
        GuardKey::of(&m.reply, Dir::Reply),
    ]
}

/// Whether a line starting with 227 or 229 may start in `payload`, or go
/// on there after the `unfinished` start of a line: a complete line
/// starting with the code, or an unfinished one that may still.
pub(crate) fn may_hold_an_announcement(unfinished: &[u8], payload: &[u8]) -> bool {
    let pieces: Vec<&[u8]> = payload.split(|&b| b == b'\n').collect();
    let last = pieces.len() - 1;
    pieces.iter().enumerate().any(|(i, piece)| {
        let before: &[u8] = if i == 0 { unfinished } else { &[] };
        let head: Vec<u8> = before.iter().chain(piece.iter()).take(3).copied().collect();
        let may_be = |code: &[u8]| {
            if i < last || head.len() == 3 {
                head == code
            } else {
                !head.is_empty() && code.starts_with(&head)
            }
        };
        may_be(b"227") || may_be(b"229")
    })
}

/// Selective queueing on a connection whose fix-ups ftpct applies itself:
/// from now on every packet of it must cross.
pub(crate) fn guard_always(flow: &mut Flow, selective: bool) -> Vec<Command> {
    if !selective || std::mem::replace(&mut flow.guard_always, true) {
        return Vec::new();
    }
    guard_keys(&flow.mapping)
        .into_iter()
        .map(|key| Command::GuardAlways { key })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::may_hold_an_announcement as may;

    #[test]
    fn what_may_hold_an_announcement() {
        assert!(may(b"", b"227 Entering Passive Mode (1,2,3,4,5,6)\r\n"));
        assert!(may(b"", b"200 ok\r\n229 (|||5000|)\r\n"));
        assert!(may(b"", b"200 ok\r\n22"), "may still become one");
        assert!(may(b"22", b"7 Entering"), "goes on from the last segment");
        assert!(may(b"", b"227"));
        assert!(!may(b"", b"200 ok\r\n"));
        assert!(
            !may(b"", b"213 2270\r\n"),
            "the code is read at the line's start"
        );
        assert!(!may(b"", b"22\r\n"));
        assert!(!may(b"200", b" 227\r\n"));
        assert!(!may(b"", b""));
    }
}
