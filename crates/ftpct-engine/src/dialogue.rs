//! The FTP dialogue: which command each server reply answers, and where a
//! reply line stands in its reply.
//!
//! An announcement is trusted only where the protocol puts it (RFC 959,
//! 4.2): a `227` or `229` counts only as a single-line reply, never as a
//! line inside a multi-line block (which runs from `xyz-` to the next line
//! that starts with the same `xyz ` and may quote anything: a file name
//! with a newline in a STAT listing, for one), and only when it answers a
//! PASV (227) or EPSV (229) that the client sent and that has no reply yet.
//! Replies answer commands in order; `1xy` replies are preliminary and the
//! command waits for its final reply; the greeting answers nothing.
//!
//! When the kernel queues only the segments that can matter (selective
//! queueing), most commands and replies pass unseen, so replies cannot be
//! paired with commands by counting. There a `227`/`229` counts only as a
//! single-line reply while the client's latest seen PASV/EPSV of that kind
//! has had no announcement yet (every PASV/EPSV is queued; multi-line
//! openers are queued and their blocks followed to the end).
//!
//! A passive request that the client pipelines behind commands still
//! waiting for their replies is answered by no announcement: a reply to
//! one of those may quote text that is not the server's (a listing of a
//! file named `x\r\n213 End\r\n227 Entering Passive Mode (...)` forges
//! the end of its block and then the 227, every line framed by CR LF).
//! Whether a PASV was pipelined shows in the replies: a reply (final,
//! preliminary or a block's opener) that comes while it waits for its
//! announcement answers an earlier command. Clients send one command at a
//! time (lftp's default sync mode, curl, ftplib); a pipelining client's
//! passive transfer fails and is reported, a pinhole is never opened.
//!
//! Limit: under selective queueing a single-line reply that quotes a
//! stored name holding CR LF (`257 "/x\r\n227 ..."` for PWD), cut by an
//! attacker-chosen MSS so that the forged line starts a segment, may pass
//! unseen; the announced address must then still be the server's own and
//! the port unprivileged (the policy checks both).

use std::collections::VecDeque;

/// Commands remembered while they wait for their reply; more (a client
/// pipelining thousands of commands) are counted, not stored, and their
/// replies trusted with nothing.
const MAX_OUTSTANDING: usize = 64;

/// What a command asked for, as far as its reply matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// PASV: may be answered by a 227.
    Pasv,
    /// EPSV: may be answered by a 229.
    Epsv,
    /// PASV or EPSV, unseen: the kernel's rule noted a segment holding
    /// just one of them (selective queueing); either announcement answers.
    Passive,
    Other,
}

/// Where a complete server line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyLine {
    /// A single-line final reply, answering this command (None: no
    /// command was waiting, e.g. the greeting or an unsolicited reply).
    Single(Option<Asked>),
    /// A preliminary (`1xy`) single-line reply: the command still waits.
    Preliminary,
    /// Any line of a multi-line reply (first, inside, last), or a line
    /// that is no reply at all: never an announcement.
    NotSingle,
    /// A single-line final reply to a PASV/EPSV that was pipelined behind
    /// other commands (see the module doc): never an announcement.
    Pipelined(Asked),
}

/// A command waiting for its final reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting {
    asked: Asked,
    /// A reply to an earlier command came while this one waited.
    pipelined: bool,
}

/// The dialogue state of one control connection.
#[derive(Debug, Default)]
pub struct Dialogue {
    /// Only some lines are seen (selective queueing): replies answer the
    /// latest passive request instead of commands in order.
    partial: bool,
    /// Selective queueing: the latest PASV/EPSV not yet answered by an
    /// announcement.
    asked: Option<Waiting>,
    outstanding: VecDeque<Waiting>,
    /// Commands sent beyond `MAX_OUTSTANDING`, in order after the stored ones.
    uncounted: u32,
    /// Inside a multi-line reply with this code.
    block: Option<[u8; 3]>,
    /// The greeting (the first final reply) has been seen.
    greeted: bool,
}

impl Dialogue {
    /// A dialogue of which only some lines are seen: see the module doc.
    pub fn partial() -> Self {
        Dialogue {
            partial: true,
            ..Dialogue::default()
        }
    }

    /// True inside a multi-line reply: its end must be seen.
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// The client sent a complete command line.
    pub fn command(&mut self, asked: Asked) {
        let waiting = Waiting {
            asked,
            pipelined: false,
        };
        if self.partial {
            if asked != Asked::Other {
                self.asked = Some(waiting);
            }
            return;
        }
        if self.uncounted == 0 && self.outstanding.len() < MAX_OUTSTANDING {
            self.outstanding.push_back(waiting);
        } else {
            self.uncounted = self.uncounted.saturating_add(1);
        }
    }

    /// The server sent this complete line (terminator included or not).
    pub fn reply(&mut self, line: &[u8]) -> ReplyLine {
        let code = reply_code(line);
        if let Some(open) = self.block {
            let closes = code.is_some_and(|c| c == open) && line.get(3) == Some(&b' ');
            if closes {
                self.block = None;
            }
            return ReplyLine::NotSingle;
        }
        let Some(code) = code else {
            return ReplyLine::NotSingle;
        };
        let multi = line.get(3) == Some(&b'-');
        self.note_pipelining(code, multi);
        if code[0] == b'1' {
            if multi {
                self.block = Some(code);
                return ReplyLine::NotSingle;
            }
            return ReplyLine::Preliminary;
        }
        if multi {
            self.block = Some(code);
        }
        let answers = if self.partial {
            self.announcement_answers(code)
        } else {
            self.answered()
        };
        match answers {
            _ if multi => ReplyLine::NotSingle,
            Some(w) if w.pipelined => ReplyLine::Pipelined(w.asked),
            _ => ReplyLine::Single(answers.map(|w| w.asked)),
        }
    }

    /// A reply (final, preliminary or a block's opener) that answers a
    /// command sent before a passive request still waiting for its
    /// announcement: that request was pipelined.
    fn note_pipelining(&mut self, code: [u8; 3], multi: bool) {
        if self.partial {
            let announces = !multi && announcement_kind(&code).is_some();
            if let Some(w) = self.asked.as_mut().filter(|_| !announces) {
                w.pipelined = true;
            }
            return;
        }
        let final_reply = code[0] != b'1' || multi;
        let skip = usize::from(final_reply && self.greeted);
        for w in self.outstanding.iter_mut().skip(skip) {
            w.pipelined |= w.asked != Asked::Other;
        }
    }

    /// The command a final reply answers, taken off the list.
    fn answered(&mut self) -> Option<Waiting> {
        if !self.greeted {
            self.greeted = true;
            return None;
        }
        if let Some(waiting) = self.outstanding.pop_front() {
            return Some(waiting);
        }
        if self.uncounted > 0 {
            self.uncounted -= 1;
            return Some(Waiting {
                asked: Asked::Other,
                pipelined: false,
            });
        }
        None
    }

    /// Selective queueing: the passive request a `227`/`229` answers,
    /// taken; other replies answer nothing known and take nothing (the
    /// replies to unseen commands are mostly unseen too).
    fn announcement_answers(&mut self, code: [u8; 3]) -> Option<Waiting> {
        let wanted = announcement_kind(&code)?;
        self.asked
            .take_if(|w| w.asked == wanted || w.asked == Asked::Passive)
            .map(|w| Waiting { asked: wanted, ..w })
    }

    /// Selective queueing: whether a passive request, seen or noted, waits
    /// for its announcement.
    pub fn passive_asked(&self) -> bool {
        self.asked.is_some()
    }

    /// Selective queueing: the kernel noted a PASV or EPSV it let pass.
    pub fn passive_noted(&mut self) {
        self.asked = Some(Waiting {
            asked: Asked::Passive,
            pipelined: false,
        });
    }

    /// Bytes of the connection passed unseen: which command a reply answers
    /// is no longer known, so no reply answers anything recorded before.
    pub fn lost_track(&mut self) {
        self.outstanding.clear();
        self.asked = None;
        self.uncounted = 0;
        self.block = None;
        self.greeted = true;
    }
}

/// The passive request a reply code announces the answer to.
fn announcement_kind(code: &[u8; 3]) -> Option<Asked> {
    match code {
        b"227" => Some(Asked::Pasv),
        b"229" => Some(Asked::Epsv),
        _ => None,
    }
}

/// The three digits that start a reply line, if it starts with three
/// digits followed by a space, a hyphen or the line end.
fn reply_code(line: &[u8]) -> Option<[u8; 3]> {
    let code: [u8; 3] = line.get(..3)?.try_into().ok()?;
    let well_formed = code.iter().all(u8::is_ascii_digit)
        && matches!(line.get(3), None | Some(b' ' | b'-' | b'\r' | b'\n'));
    well_formed.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeted() -> Dialogue {
        let mut d = Dialogue::default();
        assert_eq!(d.reply(b"220 ready\r\n"), ReplyLine::Single(None));
        d
    }

    #[test]
    fn a_noted_passive_request_is_answered_by_either_announcement_once() {
        for (code, kind) in [("227", Asked::Pasv), ("229", Asked::Epsv)] {
            let mut d = Dialogue::partial();
            assert!(!d.passive_asked());
            d.passive_noted();
            assert!(d.passive_asked());
            let line = format!("{code} x\r\n");
            assert_eq!(d.reply(line.as_bytes()), ReplyLine::Single(Some(kind)));
            assert_eq!(d.reply(line.as_bytes()), ReplyLine::Single(None), "once");
            assert!(!d.passive_asked());
        }
    }

    #[test]
    fn replies_answer_commands_in_order() {
        let mut d = greeted();
        d.command(Asked::Other);
        assert_eq!(
            d.reply(b"200 ok\r\n"),
            ReplyLine::Single(Some(Asked::Other))
        );
        d.command(Asked::Pasv);
        assert_eq!(
            d.reply(b"227 (1,2,3,4,5,6)\r\n"),
            ReplyLine::Single(Some(Asked::Pasv))
        );
        assert_eq!(d.reply(b"227 (1,2,3,4,5,6)\r\n"), ReplyLine::Single(None));
    }

    #[test]
    fn a_passive_request_pipelined_behind_a_command_announces_nothing() {
        // Behind a final reply, a preliminary one, or a block whose quoted
        // text forges its end and a 227.
        let replies: [&[&[u8]]; 3] = [
            &[b"200 ok\r\n"],
            &[b"150 opening\r\n", b"226 done\r\n"],
            &[b"213-status\r\n", b" x\r\n", b"213 End\r\n"],
        ];
        for before in replies {
            let mut d = greeted();
            d.command(Asked::Other);
            d.command(Asked::Pasv);
            for line in before {
                assert_ne!(d.reply(line), ReplyLine::Single(Some(Asked::Pasv)));
            }
            assert_eq!(
                d.reply(b"227 (1,2,3,4,5,6)\r\n"),
                ReplyLine::Pipelined(Asked::Pasv)
            );
            // The next one, sent alone, counts again.
            d.command(Asked::Epsv);
            assert_eq!(
                d.reply(b"229 (|||5000|)\r\n"),
                ReplyLine::Single(Some(Asked::Epsv))
            );
        }
    }

    #[test]
    fn preliminary_replies_keep_the_command_waiting() {
        let mut d = greeted();
        d.command(Asked::Other);
        assert_eq!(d.reply(b"150 opening\r\n"), ReplyLine::Preliminary);
        assert_eq!(
            d.reply(b"226 done\r\n"),
            ReplyLine::Single(Some(Asked::Other))
        );
        d.command(Asked::Epsv);
        assert_eq!(
            d.reply(b"229 (|||5000|)\r\n"),
            ReplyLine::Single(Some(Asked::Epsv))
        );
    }

    #[test]
    fn nothing_inside_a_multi_line_reply_is_single() {
        let mut d = greeted();
        d.command(Asked::Pasv);
        assert_eq!(d.reply(b"213-status follows\r\n"), ReplyLine::NotSingle);
        assert_eq!(
            d.reply(b"227 Entering Passive Mode (1,2,3,4,5,6)\r\n"),
            ReplyLine::NotSingle
        );
        assert_eq!(d.reply(b"213-not the end\r\n"), ReplyLine::NotSingle);
        assert_eq!(d.reply(b"213 end\r\n"), ReplyLine::NotSingle);
        assert!(!d.in_block());
    }

    #[test]
    fn a_multi_line_greeting_answers_nothing() {
        let mut d = Dialogue::default();
        assert_eq!(d.reply(b"220-welcome\r\n"), ReplyLine::NotSingle);
        assert_eq!(d.reply(b"220 ready\r\n"), ReplyLine::NotSingle);
        d.command(Asked::Pasv);
        assert_eq!(
            d.reply(b"227 (1,2,3,4,5,6)\r\n"),
            ReplyLine::Single(Some(Asked::Pasv))
        );
    }

    #[test]
    fn thousands_of_pipelined_commands_keep_their_order_in_bounded_memory() {
        let mut d = greeted();
        for _ in 0..10_000 {
            d.command(Asked::Other);
        }
        d.command(Asked::Pasv);
        assert!(d.outstanding.len() <= MAX_OUTSTANDING);
        for _ in 0..10_000 {
            assert_eq!(
                d.reply(b"200 ok\r\n"),
                ReplyLine::Single(Some(Asked::Other))
            );
        }
        // The PASV was beyond what is stored: its reply is trusted with nothing.
        assert_eq!(
            d.reply(b"227 (1,2,3,4,5,6)\r\n"),
            ReplyLine::Single(Some(Asked::Other))
        );
        assert_eq!(d.reply(b"200 ok\r\n"), ReplyLine::Single(None));
    }

    #[test]
    fn after_lost_bytes_earlier_commands_are_forgotten() {
        let mut d = greeted();
        d.command(Asked::Pasv);
        d.lost_track();
        assert_eq!(d.reply(b"227 (1,2,3,4,5,6)\r\n"), ReplyLine::Single(None));
        d.command(Asked::Epsv);
        assert_eq!(
            d.reply(b"229 (|||5000|)\r\n"),
            ReplyLine::Single(Some(Asked::Epsv))
        );
    }

    #[test]
    fn partial_view_announcements_answer_the_latest_passive_request() {
        let mut d = Dialogue::partial();
        // No greeting seen, unseen replies before: nothing asked yet.
        assert_eq!(d.reply(b"227 (1,2,3,4,5,6)\r\n"), ReplyLine::Single(None));
        d.command(Asked::Pasv);
        assert_eq!(
            d.reply(b"227 (1,2,3,4,5,6)\r\n"),
            ReplyLine::Single(Some(Asked::Pasv))
        );
        assert_eq!(d.reply(b"227 (1,2,3,4,5,6)\r\n"), ReplyLine::Single(None));
        // A seen reply to an unseen command takes nothing, and shows that
        // the PASV was pipelined behind that command.
        d.command(Asked::Pasv);
        assert_eq!(d.reply(b"200 ok\r\n"), ReplyLine::Single(None));
        assert_eq!(d.reply(b"229 (|||5000|)\r\n"), ReplyLine::Single(None));
        assert_eq!(
            d.reply(b"227 (1,2,3,4,5,6)\r\n"),
            ReplyLine::Pipelined(Asked::Pasv)
        );
        d.command(Asked::Epsv);
        assert_eq!(d.reply(b"213-status\r\n"), ReplyLine::NotSingle);
        assert!(d.in_block());
        assert_eq!(d.reply(b"229 (|||5000|)\r\n"), ReplyLine::NotSingle);
        assert_eq!(d.reply(b"213 end\r\n"), ReplyLine::NotSingle);
        assert!(!d.in_block());
        assert_eq!(
            d.reply(b"229 (|||5000|)\r\n"),
            ReplyLine::Pipelined(Asked::Epsv)
        );
    }

    #[test]
    fn lines_that_are_no_reply() {
        let mut d = greeted();
        d.command(Asked::Pasv);
        for line in [&b"hello\r\n"[..], b"22\r\n", b"2277 x\r\n", b" 227 x\r\n"] {
            assert_eq!(d.reply(line), ReplyLine::NotSingle);
        }
        assert_eq!(d.reply(b"227\r\n"), ReplyLine::Single(Some(Asked::Pasv)));
    }
}
