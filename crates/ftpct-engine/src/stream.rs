//! One direction of a control connection as a stream of lines.
//!
//! The kernel only looks at a command that starts a segment right after a
//! newline. We follow the byte stream in order instead: lines are
//! reassembled across segments, several lines per segment are found, and a
//! line is acted on only once it is complete.
//!
//! A line ends where its sender framed it: at CR LF, RFC 959's Telnet end
//! of line. A bare LF or CR is part of the line: servers echo client text
//! in their replies (`550 /x<LF>227 Entering Passive Mode (...)`), and a
//! line feed the client chose must not start a reply line. One exception,
//! explicit: a direction followed from its very first byte whose first
//! line ends with a bare LF is a bare-LF sender, and each of its line
//! feeds ends a line (the peer chose that, before any other text could be
//! quoted). A direction picked up later is taken to frame with CR LF.
//!
//! A line longer than the limit is not parsed, but its first bytes (a
//! reply's code and its `-`) are kept, so that a multi-line reply opened
//! or closed by an overlong line is still followed.
//!
//! Policy for segments that are not simply the next bytes:
//! - a retransmission (data already seen) is never parsed again; it leaves
//!   with exactly the edits the first copy got (see `seqadj`);
//! - an out-of-order segment (a gap before it) is dropped, so the sender
//!   sends it again in order. When the sender sends that same segment
//!   again while the gap is still open, the missing bytes are not coming:
//!   they reached the receiver without ftpct (a queue overflow with
//!   fail-open), so the stream resynchronises there at once. Otherwise at
//!   most `MAX_GAP_DROPS` segments are dropped while the same gap stays
//!   open; after that the stream resynchronises at that segment and skips
//!   to the next line start, rather than stall a session it cannot follow;
//! - a segment that ends inside a line that may need rewriting, on a flow
//!   where rewriting is possible, is held: its complete lines leave now (the
//!   segment is cut after them), the incomplete line is kept (a segment that
//!   is only that line, or has a FIN, is dropped and kept whole). When the
//!   rest of the line arrives, the segment that completes it leaves carrying
//!   the whole line, rewritten. A retransmission of the held part alone is
//!   dropped again at most `MAX_HOLD_REDROPS` times; after that it leaves
//!   unchanged and the line is reported as not rewritable. This does what
//!   the kernel does (drop the first part so that it comes again) but never
//!   loops, and needs no retransmission when the rest follows at once.

use std::borrow::Cow;

use crate::seqadj::{seq_after, SeqAdjust};

/// Out-of-order segments dropped while the same gap stays open, before
/// resynchronising (more than a control channel has in flight).
const MAX_GAP_DROPS: u8 = 8;
/// Drops of a retransmitted held line head before letting it pass.
const MAX_HOLD_REDROPS: u8 = 2;

/// Bytes kept of an overlong line: a reply's code and the `-` or space
/// after it.
pub const OVERLONG_HEAD: usize = 4;

/// A complete line and the sequence number of its first byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub start: u32,
    /// The whole line with its terminator; of an overlong line, only its
    /// first [`OVERLONG_HEAD`] bytes (none when its start was not seen).
    pub bytes: Cow<'a, [u8]>,
    /// Longer than the limit (or its start unseen): not parsed, never
    /// rewritten.
    pub overlong: bool,
}

/// How a direction ends its lines (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    /// Followed from its first byte, no line ended yet: the first line
    /// end decides.
    #[default]
    Learning,
    /// CR LF ends a line; a bare LF does not.
    Crlf,
    /// The sender ends its lines with a bare LF.
    BareLf,
}

impl Framing {
    /// Whether a line feed ends a line, given whether a CR came just
    /// before it; the first one decides while learning.
    fn ends_line(&mut self, after_cr: bool) -> bool {
        if *self == Framing::Learning {
            *self = if after_cr {
                Framing::Crlf
            } else {
                Framing::BareLf
            };
        }
        after_cr || *self == Framing::BareLf
    }

    /// Picked up where its first byte was not seen: CR LF.
    fn settle(&mut self) {
        if *self == Framing::Learning {
            *self = Framing::Crlf;
        }
    }
}

/// A line being passed over rather than parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Skip {
    #[default]
    No,
    /// Longer than the limit: its head is kept, the rest passed over.
    Overlong,
    /// Its start was not seen (a resync in the middle of a line).
    Unframed,
}

/// Where a segment's data lies relative to what was already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// No payload.
    Empty,
    /// Only bytes already seen.
    Old,
    /// New bytes start at this offset in the payload.
    New { skip: usize },
    /// Bytes missing before this segment.
    Gap,
}

/// The most bytes a direction plausibly sends past what ftpct saw of it
/// (complete lines passing unseen under selective queueing, segments lost
/// to a queue overflow): a sequence number further from the stream, either
/// way, is not its own. A spoofed segment that guesses the connection's
/// addresses and ports but not its numbers lands within it once in 2,048.
pub const MAX_UNSEEN: u32 = 1 << 20;

/// Selective queueing: the kernel queues a segment of a followed control
/// connection once the bytes it let pass unseen in a direction count over
/// a budget well below [`MAX_UNSEEN`] (the driver's rules say how much);
/// ftpct then asks it to count afresh. Only after this many unseen bytes
/// in a direction: a recount rides the segments the budget queued (the
/// first one follows at least the budget less its headers), not every
/// segment ftpct sees.
pub const RECOUNT_AFTER: u32 = 4 << 10;

/// Selective queueing: segments ftpct sees of a direction before it asks
/// for a recount whatever passed unseen. The kernel counts headers too: a
/// count gone over its budget mostly with bare acknowledgements (less than
/// [`RECOUNT_AFTER`] of lines) queues every later segment, which ftpct
/// sees and which never leave a gap; this ends that within a few.
pub const RECOUNT_EVERY: u16 = 64;

/// What to do with a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate<'a> {
    /// Send these original bytes, starting at this sequence number
    /// (edits and shifts are applied afterwards).
    Forward {
        start: u32,
        bytes: Cow<'a, [u8]>,
    },
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Ends inside a line that may need a rewrite: kept until the rest comes.
    HeldLineHead,
    /// Arrived before the bytes that precede it.
    OutOfOrder,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    start: u32,
    bytes: Vec<u8>,
    redrops: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    missing: u32,
    drops: u8,
    first_dropped: u32,
}

/// What to do with a segment that comes after a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapFate {
    /// Drop it: the missing bytes may still come.
    Wait,
    /// The sender sent a dropped segment again instead of the missing
    /// bytes: they passed unseen. Followed from this segment, taken as a
    /// line start.
    ResyncHere,
    /// Waited long enough: followed from the next line start.
    GiveUp,
}

/// State a direction needs only now and then: an incomplete line, a held
/// segment, an open gap, edits. Boxed, so that the many idle flows stay
/// small; freed again when empty.
#[derive(Debug, Default)]
struct Busy {
    /// Bytes of the current incomplete line.
    line: Vec<u8>,
    held: Option<Box<Held>>,
    /// An open gap: the missing sequence number, how many segments after
    /// it were dropped, and where the first of them started.
    gap: Option<Gap>,
    adj: SeqAdjust,
}

impl Busy {
    fn is_at_rest(&self) -> bool {
        self.line.is_empty() && self.held.is_none() && self.gap.is_none()
    }

    fn is_idle(&self) -> bool {
        self.line.is_empty() && self.held.is_none() && self.gap.is_none() && self.adj.is_empty()
    }
}

/// State of one direction.
#[derive(Debug, Default)]
pub struct Stream {
    /// Next expected sequence number (valid once `started`).
    next: u32,
    line_start: u32,
    /// Everything before this has left the gateway.
    forwarded_upto: u32,
    started: bool,
    /// Inside a line we do not parse (overlong, or after a resync).
    skip: Skip,
    framing: Framing,
    /// The last byte seen was a CR (a line end may straddle segments).
    after_cr: bool,
    fin: bool,
    busy: Option<Box<Busy>>,
    /// Selective queueing: bytes that passed unseen since the kernel last
    /// started counting them afresh (see [`RECOUNT_AFTER`]).
    unseen_since_recount: u32,
    /// Segments seen since then.
    seen_since_recount: u16,
}

/// No edits: what an idle direction shifts by.
static NO_EDITS: SeqAdjust = SeqAdjust::new();

impl Stream {
    /// A SYN: the stream starts after it. A repeated SYN changes nothing.
    pub fn syn(&mut self, seq: u32) {
        if !self.started {
            self.resync(seq.wrapping_add(1), false);
            self.framing = Framing::Learning;
        }
    }

    /// How this direction ends its lines, as far as known.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Between lines: nothing incomplete, held or skipped, no gap open.
    /// Under selective queueing, bytes that pass unseen from here are
    /// complete lines (the kernel queues every segment that does not end
    /// a line, and the continuation of one).
    pub fn at_rest(&self) -> bool {
        self.started && self.skip == Skip::No && self.busy.as_ref().is_none_or(|b| b.is_at_rest())
    }

    pub fn has_fin(&self) -> bool {
        self.fin
    }

    fn busy(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }

    /// Frees the boxed state once nothing in it is in use.
    fn tidy(&mut self) {
        if self.busy.as_ref().is_some_and(|b| b.is_idle()) {
            self.busy = None;
        }
    }

    fn line(&self) -> &[u8] {
        self.busy.as_ref().map_or(&[], |b| &b.line)
    }

    /// The start of a line whose end has not come yet (empty between lines).
    pub fn unfinished_line(&self) -> &[u8] {
        self.line()
    }

    /// The edit history of this direction.
    pub fn adj(&self) -> &SeqAdjust {
        self.busy.as_ref().map_or(&NO_EDITS, |b| &b.adj)
    }

    /// This direction already moves by `offset` (the kernel's correction
    /// of a session taken up again): later edits add to it.
    pub fn resume_offset(&mut self, offset: i32) {
        if offset != 0 {
            self.busy().adj.resume(offset);
        }
    }

    /// Records an edit of original bytes `start..end`.
    pub fn record_edit(&mut self, start: u32, end: u32, replacement: Vec<u8>) {
        self.busy().adj.record(start, end, replacement);
    }

    /// The receiver acknowledged original position `acked` (ignored when
    /// it acknowledges bytes never sent: a forged ACK must not erase edits).
    pub fn forget_acked(&mut self, acked: u32) {
        if seq_after(acked, self.next) {
            return;
        }
        if let Some(b) = self.busy.as_mut() {
            b.adj.forget_acked(acked);
        }
    }

    /// Follows the stream from `seq`; its first byte unseen, the direction
    /// frames its lines with CR LF unless it was learned otherwise.
    fn resync(&mut self, seq: u32, skip_to_newline: bool) {
        self.started = true;
        self.next = seq;
        self.line_start = seq;
        self.skip = if skip_to_newline {
            Skip::Unframed
        } else {
            Skip::No
        };
        self.framing.settle();
        self.after_cr = false;
        self.forwarded_upto = seq;
        if let Some(b) = self.busy.as_mut() {
            b.line.clear();
            b.held = None;
            b.gap = None;
        }
        self.tidy();
    }

    /// Notes that the direction reached `seq` (a segment's start, or what
    /// its receiver acknowledged) with the bytes before it unseen; returns
    /// how many passed unseen since the last recount. One byte more may be
    /// a FIN, as for [`Stream::acked_unseen`].
    pub fn note_unseen(&mut self, seq: u32) -> u32 {
        if self.started && seq_after(seq, self.next.wrapping_add(1)) {
            let unseen = seq.wrapping_sub(self.next);
            self.unseen_since_recount = self.unseen_since_recount.saturating_add(unseen);
        }
        self.unseen_since_recount
    }

    /// Notes a segment of this direction seen; true when enough were
    /// since the last recount (see [`RECOUNT_EVERY`]).
    pub fn note_seen(&mut self) -> bool {
        self.seen_since_recount = self.seen_since_recount.saturating_add(1);
        self.seen_since_recount >= RECOUNT_EVERY
    }

    /// The kernel counts this direction's unseen bytes afresh.
    pub fn recounted(&mut self) {
        self.unseen_since_recount = 0;
        self.seen_since_recount = 0;
    }

    /// True when `seq` is within [`MAX_UNSEEN`] of where this direction is,
    /// either way (anything, before it started).
    pub fn plausible(&self, seq: u32) -> bool {
        !self.started
            || seq.wrapping_sub(self.next) <= MAX_UNSEEN
            || self.next.wrapping_sub(seq) <= MAX_UNSEEN
    }

    pub fn classify(&mut self, seq: u32, len: usize) -> Arrival {
        if len == 0 {
            return Arrival::Empty;
        }
        if !self.started {
            // Picked up mid-connection: assume a segment starts a line,
            // which is how FTP peers write commands and replies.
            self.resync(seq, false);
        }
        let end = seq.wrapping_add(len as u32);
        if seq_after(seq, self.next) {
            Arrival::Gap
        } else if !seq_after(end, self.next) {
            Arrival::Old
        } else {
            Arrival::New {
                skip: self.next.wrapping_sub(seq) as usize,
            }
        }
    }

    /// True if the receiver acknowledged original position `acked`, beyond
    /// the bytes seen (one more is a FIN that may have passed unseen).
    pub fn acked_unseen(&self, acked: u32) -> bool {
        self.started && seq_after(acked, self.next.wrapping_add(1))
    }

    /// Follows the stream again from acknowledged position `seq`, taken as
    /// a line start: a receiver acknowledges where the sender's segments
    /// ended, and FTP peers end segments at line ends. (Replies after it
    /// are trusted only for commands seen after it: see `dialogue`.)
    pub fn skip_to(&mut self, seq: u32) {
        self.resync(seq, false);
    }

    /// An out-of-order segment: drop it, or stop waiting and resync.
    pub fn on_gap(&mut self, seq: u32) -> GapFate {
        let missing = self.next;
        let open = self
            .busy
            .as_ref()
            .and_then(|b| b.gap)
            .filter(|g| g.missing == missing);
        let gap = match open {
            // A dropped segment again, the gap still open.
            Some(g) if !seq_after(seq, g.first_dropped) => {
                self.resync(seq, false);
                return GapFate::ResyncHere;
            }
            Some(g) => Gap {
                drops: g.drops + 1,
                ..g
            },
            None => Gap {
                missing,
                drops: 1,
                first_dropped: seq,
            },
        };
        if gap.drops > MAX_GAP_DROPS {
            self.resync(seq, true);
            return GapFate::GiveUp;
        }
        self.busy().gap = Some(gap);
        GapFate::Wait
    }

    /// Appends new bytes and returns the lines they complete.
    pub fn take_lines<'a>(&mut self, new: &'a [u8], max_line: usize) -> Vec<Line<'a>> {
        let mut lines = Vec::new();
        let mut pos = 0;
        while let Some(end) = self.next_line_end(new, pos) {
            let piece = &new[pos..end];
            let start = self.line_start;
            let bytes = self.complete_line(piece, max_line);
            lines.push(Line {
                start,
                overlong: self.skip != Skip::No,
                bytes,
            });
            self.next = self.next.wrapping_add(piece.len() as u32);
            self.line_start = self.next;
            self.skip = Skip::No;
            pos = end;
        }
        let rest = &new[pos..];
        self.keep_unfinished(rest, max_line);
        self.next = self.next.wrapping_add(rest.len() as u32);
        self.after_cr = new.last().map_or(self.after_cr, |&b| b == b'\r');
        // The gap, if any, is filled now that bytes came in order.
        if let Some(b) = self.busy.as_mut() {
            b.gap = None;
        }
        self.tidy();
        lines
    }

    /// The offset just past the first line end in `new` from `from`, as
    /// the sender frames its lines (see [`Framing`]).
    fn next_line_end(&mut self, new: &[u8], from: usize) -> Option<usize> {
        let mut at = from;
        while let Some(found) = new[at..].iter().position(|&b| b == b'\n') {
            let lf = at + found;
            let after_cr = match lf {
                0 => self.after_cr,
                _ => new[lf - 1] == b'\r',
            };
            at = lf + 1;
            if self.framing.ends_line(after_cr) {
                return Some(at);
            }
        }
        None
    }

    /// The line that `piece` (its last bytes, terminator included)
    /// completes: whole, or the kept head of an overlong one.
    fn complete_line<'a>(&mut self, piece: &'a [u8], max_line: usize) -> Cow<'a, [u8]> {
        if self.skip == Skip::No && self.line().len() + piece.len() > max_line {
            self.keep_head_only(piece);
        }
        let pending = self
            .busy
            .as_mut()
            .map(|b| std::mem::take(&mut b.line))
            .unwrap_or_default();
        match self.skip {
            Skip::No if pending.is_empty() => Cow::Borrowed(piece),
            Skip::No => {
                let mut whole = pending;
                whole.extend_from_slice(piece);
                Cow::Owned(whole)
            }
            Skip::Overlong | Skip::Unframed => Cow::Owned(pending),
        }
    }

    /// The bytes of a line that has not ended yet.
    fn keep_unfinished(&mut self, rest: &[u8], max_line: usize) {
        if self.skip == Skip::No && self.line().len() + rest.len() > max_line {
            self.keep_head_only(rest);
        } else if self.skip == Skip::No && !rest.is_empty() {
            self.busy().line.extend_from_slice(rest);
        }
    }

    /// The current line is overlong: only its first bytes stay.
    fn keep_head_only(&mut self, more: &[u8]) {
        let line = &mut self.busy().line;
        let missing = OVERLONG_HEAD.saturating_sub(line.len());
        line.extend_from_slice(&more[..missing.min(more.len())]);
        line.truncate(OVERLONG_HEAD);
        self.skip = Skip::Overlong;
    }

    /// Bytes of a held segment waiting for the rest of its line.
    pub fn held_len(&self) -> usize {
        self.busy
            .as_ref()
            .and_then(|b| b.held.as_ref())
            .map_or(0, |h| h.bytes.len())
    }

    /// The incomplete line, if it could still be rewritten.
    pub fn pending_line(&self) -> Option<&[u8]> {
        let rewritable = self.skip == Skip::No && !seq_after(self.forwarded_upto, self.line_start);
        let line = self.line();
        (rewritable && !line.is_empty()).then_some(line)
    }

    /// True if an edit starting at `seq` is still possible (nothing from
    /// there on has left unchanged).
    pub fn can_edit_from(&self, seq: u32) -> bool {
        !seq_after(self.forwarded_upto, seq)
    }

    /// The fate of a segment with new data, after its lines were handled.
    /// `hold` asks to keep it because its last line may need a rewrite.
    /// When the segment also carries complete lines before that one (and
    /// may be cut: no FIN), those leave now and only the incomplete line
    /// is held: holding a whole full-size segment and sending it with the
    /// next would make a packet too big for the path.
    pub fn outgoing<'a>(
        &mut self,
        seq: u32,
        payload: &'a [u8],
        hold: bool,
        may_cut: bool,
    ) -> Fate<'a> {
        let held = self.busy.as_mut().and_then(|b| b.held.take());
        let (start, bytes, redrops) = match held {
            Some(h) if seq_after(seq, h.start) => {
                let keep = (seq.wrapping_sub(h.start) as usize).min(h.bytes.len());
                let mut merged = h.bytes;
                merged.truncate(keep);
                merged.extend_from_slice(payload);
                (h.start, Cow::Owned(merged), h.redrops)
            }
            _ => (seq, Cow::Borrowed(payload), 0),
        };
        if hold {
            let cut = self.line_start.wrapping_sub(start) as usize;
            if may_cut && cut > 0 && cut < bytes.len() {
                let (complete, partial) = bytes.split_at(cut);
                self.busy().held = Some(Box::new(Held {
                    start: self.line_start,
                    bytes: partial.to_vec(),
                    redrops: 0,
                }));
                let complete = match bytes {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[..cut]),
                    Cow::Owned(_) => Cow::Owned(complete.to_vec()),
                };
                self.mark_forwarded(start, cut);
                return Fate::Forward {
                    start,
                    bytes: complete,
                };
            }
            self.busy().held = Some(Box::new(Held {
                start,
                bytes: bytes.into_owned(),
                redrops,
            }));
            return Fate::Drop(DropReason::HeldLineHead);
        }
        self.tidy();
        self.mark_forwarded(start, bytes.len());
        Fate::Forward { start, bytes }
    }

    /// The fate of a segment with only old data. Returns the fate and
    /// whether a held line head was given up on.
    pub fn retransmission<'a>(&mut self, seq: u32, payload: &'a [u8]) -> (Fate<'a>, bool) {
        let end = seq.wrapping_add(payload.len() as u32);
        let mut gave_up = false;
        if let Some(h) = self.busy.as_mut().and_then(|b| b.held.as_mut()) {
            if seq_after(end, h.start) {
                if h.redrops < MAX_HOLD_REDROPS {
                    h.redrops += 1;
                    return (Fate::Drop(DropReason::HeldLineHead), false);
                }
                self.busy().held = None;
                self.tidy();
                gave_up = true;
            }
        }
        self.mark_forwarded(seq, payload.len());
        let fate = Fate::Forward {
            start: seq,
            bytes: Cow::Borrowed(payload),
        };
        (fate, gave_up)
    }

    fn mark_forwarded(&mut self, start: u32, len: usize) {
        let end = start.wrapping_add(len as u32);
        if seq_after(end, self.forwarded_upto) {
            self.forwarded_upto = end;
        }
    }

    /// A FIN after the payload ending at `seq_after_payload` consumes one number.
    pub fn fin_at(&mut self, seq_after_payload: u32) {
        self.fin = true;
        if self.started && self.next == seq_after_payload {
            self.next = seq_after_payload.wrapping_add(1);
        }
    }

    /// Drops the parsing state (encrypted from here on); fix-ups stay.
    pub fn stop_parsing(&mut self) {
        if let Some(b) = self.busy.as_mut() {
            b.line = Vec::new();
            b.held = None;
        }
        self.tidy();
        self.skip = Skip::Unframed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    }

    #[test]
    fn several_lines_in_one_segment_and_one_across_two() {
        let mut s = Stream::default();
        s.syn(99);
        assert_eq!(s.classify(100, 10), Arrival::New { skip: 0 });
        let lines = s.take_lines(b"NOOP\r\nPO", 1024);
        assert_eq!(texts(&lines), ["NOOP\r\n"]);
        assert_eq!(lines[0].start, 100);
        assert_eq!(s.pending_line(), Some(&b"PO"[..]));
        let lines = s.take_lines(b"RT 1\r\nLIST\r\n", 1024);
        assert_eq!(texts(&lines), ["PORT 1\r\n", "LIST\r\n"]);
        assert_eq!(lines[0].start, 106);
        assert_eq!(lines[1].start, 114);
    }

    #[test]
    fn overlong_lines_are_marked_and_skipped_to_their_end() {
        let mut s = Stream::default();
        s.syn(0);
        let long = vec![b'A'; 40];
        assert!(s.take_lines(&long, 32).is_empty());
        let lines = s.take_lines(b"AAA\r\nNOOP\r\n", 32);
        assert!(lines[0].overlong);
        assert!(!lines[1].overlong);
    }

    #[test]
    fn a_bare_lf_ends_no_line_of_a_crlf_sender() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 8);
        let lines = s.take_lines(b"220 hi\r\n", 1024);
        assert_eq!(s.framing(), Framing::Crlf);
        assert_eq!(texts(&lines), ["220 hi\r\n"]);
        let echo = b"550 /x\n227 Entering Passive Mode (1,2,3,4,5,6)\r\n227 ok\r";
        s.classify(9, echo.len());
        let lines = s.take_lines(echo, 1024);
        assert_eq!(
            texts(&lines),
            ["550 /x\n227 Entering Passive Mode (1,2,3,4,5,6)\r\n"]
        );
        // A CR LF straddling two segments ends the line; a bare CR does not.
        let lines = s.take_lines(b"\n2\r3\r\n", 1024);
        assert_eq!(texts(&lines), ["227 ok\r\n", "2\r3\r\n"]);
    }

    #[test]
    fn a_sender_whose_first_line_ends_with_a_bare_lf_frames_with_lf() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 20);
        let lines = s.take_lines(b"220 hi\n227 x\r\n", 1024);
        assert_eq!(s.framing(), Framing::BareLf);
        assert_eq!(texts(&lines), ["220 hi\n", "227 x\r\n"]);
    }

    #[test]
    fn a_direction_picked_up_midway_frames_with_crlf() {
        let mut s = Stream::default();
        s.classify(500, 10);
        let lines = s.take_lines(b"550 /x\n227 (1)\r\n", 1024);
        assert_eq!(s.framing(), Framing::Crlf);
        assert_eq!(texts(&lines), ["550 /x\n227 (1)\r\n"]);
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 5);
        s.take_lines(b"220 ", 1024);
        s.skip_to(100);
        s.classify(100, 5);
        assert!(s.take_lines(b"1\n2\r\n", 1024).len() == 1);
    }

    #[test]
    fn an_overlong_line_keeps_its_head_across_segments() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 2);
        s.take_lines(b"21", 16);
        let mut long = b"1-".to_vec();
        long.extend(vec![b'A'; 40]);
        assert!(s.take_lines(&long, 16).is_empty());
        assert_eq!(s.pending_line(), None, "never rewritten");
        let lines = s.take_lines(b"AAA\r\n211 End\r\n", 16);
        assert_eq!(texts(&lines), ["211-", "211 End\r\n"]);
        assert!(lines[0].overlong);
        assert!(!lines[1].overlong);
        assert_eq!(lines[1].start, 1 + 2 + 42 + 5);
    }

    #[test]
    fn retransmissions_and_gaps() {
        let mut s = Stream::default();
        s.syn(0);
        assert_eq!(s.classify(1, 5), Arrival::New { skip: 0 });
        s.take_lines(b"NOOP\n", 1024);
        assert_eq!(s.classify(1, 5), Arrival::Old);
        assert_eq!(s.classify(3, 5), Arrival::New { skip: 3 });
        assert_eq!(s.classify(10, 5), Arrival::Gap);
        for i in 0..MAX_GAP_DROPS {
            assert_eq!(
                s.on_gap(10 + 5 * u32::from(i)),
                GapFate::Wait,
                "dropped while the gap is open"
            );
        }
        assert_eq!(
            s.on_gap(60),
            GapFate::GiveUp,
            "resync when the gap does not fill"
        );
        assert_eq!(s.classify(60, 5), Arrival::New { skip: 0 });
    }

    #[test]
    fn a_dropped_segment_sent_again_proves_the_gap_passed_unseen() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 5);
        s.take_lines(b"NOOP\n", 1024);
        assert_eq!(s.on_gap(20), GapFate::Wait);
        assert_eq!(s.on_gap(25), GapFate::Wait, "the next one in flight");
        assert_eq!(s.on_gap(20), GapFate::ResyncHere, "the first one again");
        assert_eq!(s.classify(20, 5), Arrival::New { skip: 0 });
        assert!(s.take_lines(b"PORT\n", 1024).iter().all(|l| !l.overlong));
    }

    #[test]
    fn held_head_merges_with_its_tail() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 7);
        s.take_lines(b"PORT 19", 1024);
        assert_eq!(
            s.outgoing(1, b"PORT 19", true, true),
            Fate::Drop(DropReason::HeldLineHead)
        );
        assert!(s.can_edit_from(1));
        s.classify(8, 5);
        s.take_lines(b"2,1\r\n", 1024);
        match s.outgoing(8, b"2,1\r\n", false, true) {
            Fate::Forward { start, bytes } => {
                assert_eq!(start, 1);
                assert_eq!(&bytes[..], b"PORT 192,1\r\n");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn complete_lines_leave_and_only_the_incomplete_one_is_held() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 13);
        s.take_lines(b"NOOP\r\nPORT 19", 1024);
        match s.outgoing(1, b"NOOP\r\nPORT 19", true, true) {
            Fate::Forward { start, bytes } => {
                assert_eq!(start, 1);
                assert_eq!(&bytes[..], b"NOOP\r\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.held_len(), 7);
        s.classify(14, 5);
        s.take_lines(b"2,1\r\n", 1024);
        match s.outgoing(14, b"2,1\r\n", false, true) {
            Fate::Forward { start, bytes } => {
                assert_eq!(start, 7);
                assert_eq!(&bytes[..], b"PORT 192,1\r\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        // With a FIN the segment cannot be cut: held whole.
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 13);
        s.take_lines(b"NOOP\r\nPORT 19", 1024);
        assert_eq!(
            s.outgoing(1, b"NOOP\r\nPORT 19", true, false),
            Fate::Drop(DropReason::HeldLineHead)
        );
    }

    #[test]
    fn held_head_retransmitted_is_dropped_a_bounded_number_of_times() {
        let mut s = Stream::default();
        s.syn(0);
        s.classify(1, 7);
        s.take_lines(b"PORT 19", 1024);
        s.outgoing(1, b"PORT 19", true, true);
        for _ in 0..MAX_HOLD_REDROPS {
            assert_eq!(s.classify(1, 7), Arrival::Old);
            assert_eq!(
                s.retransmission(1, b"PORT 19").0,
                Fate::Drop(DropReason::HeldLineHead)
            );
        }
        let (fate, gave_up) = s.retransmission(1, b"PORT 19");
        assert!(gave_up);
        assert!(matches!(fate, Fate::Forward { .. }));
        assert!(!s.can_edit_from(5), "the head left unchanged");
    }
}
