//! One segment of a followed control connection: its fate in its stream,
//! the lines it completes, and the verdict with fix-ups.

use std::borrow::Cow;
use std::time::Duration;

use crate::command::Command;
use crate::event::{Event, ResyncReason, Stats};
use crate::flow::{Fixups, Flow};
use crate::grammar;
use crate::guards::{queued_directions, sees_part};
use crate::lines::{on_line, Ctx};
use crate::stream::{Arrival, DropReason, Fate, GapFate, Stream, RECOUNT_AFTER};
use crate::tuple::Dir;
use crate::verdict::Verdict;
use crate::wire::{Rebuild, TcpPacket};

/// How much the MSS that each end of a control connection announces is
/// lowered: the most a rewrite can add to a segment (an EPRT of the
/// longest IPv6 address and port for the shortest: 40 bytes), rounded up.
/// A full-size segment whose announcement grows then still fits the path
/// (the kernel helper lets such a segment exceed the MTU, and it stalls).
pub const MSS_HEADROOM: u16 = 48;

/// MSS values at or below this are left alone (IPv4's default MSS).
const MIN_MSS: u16 = 536;

/// The segment's fate in its stream, the lines it completes handled, and
/// the verdict with fix-ups.
pub(crate) fn handle(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, ctx: &mut Ctx<'_>) -> Verdict {
    if !plausible(flow, dir, pkt) {
        // Seen here, in the raw table, before conntrack's window check
        // marks it INVALID: it must not move a stream (a gap skipped to a
        // spoofed PORT, an acknowledgement far ahead) nor end the session.
        ctx.stats.implausible += 1;
        return Verdict::Accept;
    }
    flow.last_seen = ctx.now;
    if sees_part(flow, ctx.cfg) {
        recount_unseen(flow, dir, pkt, ctx);
    }
    if pkt.flags.ack {
        skip_unseen(flow, dir.other(), pkt.ack, ctx);
    }
    let orig = flow.mapping.orig;
    let payload = pkt.payload();
    let mss = clamp_mss(flow, dir, pkt, ctx.stats);
    // Data on a SYN starts after the SYN's own number.
    let data_seq = pkt.seq.wrapping_add(u32::from(pkt.flags.syn));
    let partial_view = sees_part(flow, ctx.cfg);
    let stream = &mut flow.streams[dir.index()];
    if pkt.flags.syn {
        if dir == Dir::Orig && !pkt.flags.ack && flow.client_isn.is_none() {
            flow.client_isn = Some(pkt.seq);
        }
        if !stream.is_started() {
            stream.syn(pkt.seq);
        } else if payload.is_empty() {
            // A retransmitted (or stray) SYN: nothing to learn; its MSS
            // is lowered as the first one's was.
            return fix_up(flow, dir, pkt, data_seq, &[], mss, ctx.stats);
        }
        // A repeated SYN with data: its bytes are old ones, and leave with
        // the same edits as the first time.
    }
    // What the segment may grow by: its receiver's MSS, less its options
    // (TCP timestamps...) and any held line head that leaves in front of it.
    let leaving = stream.held_len() + payload.len() + pkt.option_bytes();
    // What leaves starts with the held head of an incomplete line, if any:
    // the kernel's correction point must cover an edit inside it.
    ctx.segment_start = data_seq.wrapping_sub(stream.held_len() as u32);
    ctx.room = flow.mss[dir.other().index()].map(|mss| usize::from(mss).saturating_sub(leaving));
    let fate = match stream.classify(data_seq, payload.len()) {
        Arrival::Empty => Fate::Forward {
            start: data_seq,
            bytes: Cow::Borrowed(payload),
        },
        Arrival::Old => {
            let (fate, gave_up) = stream.retransmission(data_seq, payload);
            if gave_up {
                ctx.stats.held_given_up += 1;
                ctx.events.push(Event::HeldLineReleased { flow: orig, dir });
            }
            fate
        }
        // Selective queueing: complete lines passed unseen in between.
        Arrival::Gap if partial_view && stream.at_rest() => {
            stream.skip_to(data_seq);
            stream.classify(data_seq, payload.len());
            new_data(flow, dir, data_seq, payload, 0, ctx)
        }
        Arrival::Gap => {
            let gap = stream.on_gap(data_seq);
            if gap == GapFate::Wait {
                Fate::Drop(DropReason::OutOfOrder)
            } else {
                let why = match gap {
                    GapFate::ResyncHere => ResyncReason::UnseenBytes,
                    _ => ResyncReason::GapNotFilled,
                };
                resynced(flow, dir, data_seq, why, ctx);
                // Parse this segment (from its next line start, when
                // the stream gave up waiting).
                flow.streams[dir.index()].classify(data_seq, payload.len());
                new_data(flow, dir, data_seq, payload, 0, ctx)
            }
        }
        Arrival::New { skip } => new_data(flow, dir, data_seq, payload, skip, ctx),
    };
    track_close(flow, dir, pkt, ctx);
    let verdict = match fate {
        Fate::Drop(reason) => {
            ctx.stats.dropped += 1;
            ctx.events.push(Event::Dropped {
                flow: orig,
                dir,
                seq: pkt.seq,
                reason,
            });
            Verdict::Drop
        }
        Fate::Forward { start, bytes } => fix_up(flow, dir, pkt, start, &bytes, mss, ctx.stats),
    };
    if pkt.flags.ack {
        let peer = &mut flow.streams[dir.other().index()];
        let acked = peer.adj().unshift(pkt.ack);
        peer.forget_acked(acked);
    }
    verdict
}

/// True when the segment's sequence number is near its direction's stream
/// and its acknowledgement near the other's (`stream::MAX_UNSEEN`).
pub(crate) fn plausible(flow: &Flow, dir: Dir, pkt: &TcpPacket<'_>) -> bool {
    let peer = flow.stream(dir.other());
    flow.stream(dir).plausible(pkt.seq)
        && (!pkt.flags.ack || peer.plausible(peer.adj().unshift(pkt.ack)))
}

/// Selective queueing, before the segment moves the streams: when more
/// than [`RECOUNT_AFTER`] bytes of either direction passed unseen since
/// the last recount (the segment starts past its stream, or acknowledges
/// past the other one), or [`crate::stream::RECOUNT_EVERY`] segments of this one were
/// seen, the kernel counts afresh: this segment shows ftpct where both
/// directions are.
fn recount_unseen(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, ctx: &mut Ctx<'_>) {
    let data_seq = pkt.seq.wrapping_add(u32::from(pkt.flags.syn));
    let stream = &mut flow.streams[dir.index()];
    let many_seen = stream.note_seen();
    let own = stream.note_unseen(data_seq);
    let peer = &mut flow.streams[dir.other().index()];
    let other = if pkt.flags.ack {
        peer.note_unseen(peer.adj().unshift(pkt.ack))
    } else {
        0
    };
    if own.max(other) > RECOUNT_AFTER || many_seen {
        flow.streams.iter_mut().for_each(Stream::recounted);
        let directions = queued_directions(&flow.mapping);
        ctx.commands.push(Command::RecountUnseen { directions });
    }
}

/// The peer acknowledged bytes of `dir` that never reached ftpct (they
/// passed uninspected: a queue overflow with fail-open). They will not
/// come again, so waiting for them would stall the session: follow the
/// stream from there at once.
fn skip_unseen(flow: &mut Flow, dir: Dir, ack: u32, ctx: &mut Ctx<'_>) {
    let partial_view = sees_part(flow, ctx.cfg);
    let stream = &mut flow.streams[dir.index()];
    let acked = stream.adj().unshift(ack);
    if !stream.acked_unseen(acked) {
        return;
    }
    let expected = partial_view && stream.at_rest();
    stream.skip_to(acked);
    if !expected {
        resynced(flow, dir, acked, ResyncReason::UnseenBytes, ctx);
    }
}

/// A direction is followed again from `seq`: counted and said; replies
/// are trusted again only for commands seen from now on.
fn resynced(flow: &mut Flow, dir: Dir, seq: u32, why: ResyncReason, ctx: &mut Ctx<'_>) {
    flow.dialogue.lost_track();
    ctx.stats.resyncs += 1;
    ctx.events.push(Event::Resynced {
        flow: flow.mapping.orig,
        dir,
        seq,
        why,
        had_edits: !flow.stream(dir).adj().is_empty(),
    });
}

/// New bytes: their complete lines are handled, then the segment leaves
/// or is held.
fn new_data<'a>(
    flow: &mut Flow,
    dir: Dir,
    data_seq: u32,
    payload: &'a [u8],
    skip: usize,
    ctx: &mut Ctx<'_>,
) -> Fate<'a> {
    let lines = flow
        .streams_mut(dir)
        .0
        .take_lines(&payload[skip..], ctx.cfg.max_line);
    for line in lines {
        on_line(flow, dir, &line, ctx);
    }
    let hold = must_hold(flow, dir);
    flow.streams_mut(dir)
        .0
        .outgoing(data_seq, payload, hold, ctx.may_cut)
}

/// True if the segment ends inside a line that may need a rewrite.
fn must_hold(flow: &Flow, dir: Dir) -> bool {
    if !flow.inspecting || !flow.mapping.is_natted() {
        return false;
    }
    flow.stream(dir)
        .pending_line()
        .is_some_and(|partial| match dir {
            Dir::Orig => grammar::client_prefix_may_announce(partial),
            Dir::Reply => grammar::server_prefix_may_announce(partial),
        })
}

/// FIN and RST bookkeeping: a flow closes after FIN both ways or an RST.
/// The first closing time stays (the engine's closing list holds it).
fn track_close(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, ctx: &Ctx<'_>) {
    if pkt.flags.fin {
        let after_payload = pkt.seq.wrapping_add(pkt.payload().len() as u32);
        flow.streams_mut(dir).0.fin_at(after_payload);
    }
    // Under selective queueing only the client's FIN is queued (the
    // server's may pass unseen): it ends the session for ftpct; whatever
    // the server still sends holds no announcement anyone will use.
    let client_done = sees_part(flow, ctx.cfg) && dir == Dir::Orig && pkt.flags.fin;
    let closing = pkt.flags.rst || client_done || flow.streams.iter().all(|s| s.has_fin());
    let (now, linger) = (ctx.now, ctx.cfg.close_linger);
    if closing && flow.closing_at.is_none() {
        let wait = if pkt.flags.rst {
            linger.min(Duration::from_secs(1))
        } else {
            linger
        };
        flow.closing_at = Some(now + wait);
    }
}

/// Applies edits, shifts the sequence number, un-shifts the
/// acknowledgement and SACK edges. Returns Accept when nothing changed.
fn fix_up(
    flow: &Flow,
    dir: Dir,
    pkt: &TcpPacket<'_>,
    start: u32,
    bytes: &[u8],
    mss: Option<u16>,
    stats: &mut Stats,
) -> Verdict {
    let own = flow.stream(dir).adj();
    let peer = flow.stream(dir.other()).adj();
    let syn = u32::from(pkt.flags.syn);
    let unchanged_data = start == pkt.seq.wrapping_add(syn) && bytes.len() == pkt.payload().len();
    if own.is_empty() && peer.is_empty() && unchanged_data && mss.is_none() {
        return Verdict::Accept;
    }
    let mut edited = own.apply(start, bytes);
    // A retransmission cut differently can carry more edits than any
    // segment did: what does not fit the receiver's MSS is left for the
    // sender to send again (the same bytes always land at the same place).
    let limit = flow.mss[dir.other().index()]
        .map(|mss| usize::from(mss).saturating_sub(pkt.option_bytes()));
    if let Some(limit) = limit.filter(|&l| l > 0 && edited.payload.len() > l && !pkt.flags.fin) {
        edited.payload.truncate(limit);
    }
    // With the kernel's fix-ups, numbers stay as the sender wrote them:
    // conntrack shifts them after ftpct, on every packet.
    let kernel = flow.fixups == Fixups::Kernel;
    let seq = if kernel {
        edited.start.wrapping_sub(syn)
    } else {
        own.shift(edited.start).wrapping_sub(syn)
    };
    let ack = if pkt.flags.ack && !kernel {
        peer.unshift(pkt.ack)
    } else {
        pkt.ack
    };
    let sack_changes = !kernel && !peer.is_empty() && !pkt.sack_blocks().is_empty();
    let unchanged = seq == pkt.seq && ack == pkt.ack && edited.payload == pkt.payload();
    if unchanged && !sack_changes && mss.is_none() {
        return Verdict::Accept;
    }
    if !unchanged || sack_changes {
        stats.fixed_up += 1;
    }
    Verdict::Replace(pkt.rebuild(&Rebuild {
        tuple: None,
        seq,
        ack,
        map_sack: |edge| if kernel { edge } else { peer.unshift(edge) },
        payload: Some(&edited.payload),
        decrement_ttl: false,
        mss,
    }))
}

/// A SYN or SYN-ACK: remembers the MSS its sender accepts, and returns
/// the lowered value it must leave with (see `MSS_HEADROOM`).
fn clamp_mss(flow: &mut Flow, dir: Dir, pkt: &TcpPacket<'_>, stats: &mut Stats) -> Option<u16> {
    if !pkt.flags.syn {
        return None;
    }
    let mss = pkt.mss()?;
    flow.mss[dir.index()].get_or_insert(mss);
    if mss <= MIN_MSS {
        return None;
    }
    stats.mss_clamped += 1;
    Some(mss.saturating_sub(MSS_HEADROOM).max(MIN_MSS))
}
