//! What a complete FTP line does to its session: commands remembered for
//! their replies, announcements planned, registered and rewritten.

use std::time::Duration;

use crate::command::{Adoption, Command};
use crate::config::Config;
use crate::dialogue::{Asked, ReplyLine};
use crate::event::{Event, RemoveReason, Stats};
use crate::expect::{ExpectTable, Expectation};
use crate::flow::{Fixups, Flow, FlowId};
use crate::grammar::{self, Announce, AnnounceKind, ClientLine, ServerLine};
use crate::guards::queued_directions;
use crate::nat::plan;
use crate::policy::Refusal;
use crate::stream::Line;
use crate::tuple::{Dir, Tuple};

/// What the per-packet work needs besides the flow itself (borrowed
/// from the engine's other fields, so one flow lookup serves a packet).
pub(crate) struct Ctx<'a> {
    /// The flow's slot: expectations are owned by it.
    pub(crate) id: FlowId,
    pub(crate) cfg: &'a Config,
    pub(crate) expects: &'a mut ExpectTable,
    pub(crate) stats: &'a mut Stats,
    pub(crate) events: &'a mut Vec<Event>,
    pub(crate) now: Duration,
    /// How many bytes the segment being handled may still grow by before
    /// it exceeds what its receiver accepts (None: its MSS is unknown).
    pub(crate) room: Option<usize>,
    /// The segment may leave shorter than it came (it carries no FIN).
    pub(crate) may_cut: bool,
    /// Where the segment's data starts (original numbering).
    pub(crate) segment_start: u32,
    /// For the kernel, decided while handling the packet.
    pub(crate) commands: Vec<Command>,
}

/// A NATed control connection's first rewrite, before conntrack sees it:
/// the moment to hand its fix-ups to the kernel (once). Until then its
/// entry is the one its SYN made: a session without a rewrite (a passive
/// one whose server is not behind DNAT, most of them) costs conntrack and
/// its listeners no re-creation. The rewrite is taken to be the kernel's
/// from here (a failure turns it back: `CommandOutcome::NotAdopted`).
pub(crate) fn adopt_at_first_rewrite(flow: &mut Flow, ctx: &mut Ctx<'_>) {
    let worth_it = ctx.cfg.kernel_fixups && flow.mapping_known && flow.mapping.is_natted();
    if !worth_it || std::mem::replace(&mut flow.adopt_asked, true) {
        return;
    }
    flow.fixups = Fixups::Kernel;
    ctx.commands.push(Command::AdoptControl(Box::new(Adoption {
        orig: flow.mapping.orig,
        directions: queued_directions(&flow.mapping),
        seqadj: [None, None],
        kept: None,
    })));
}

pub(crate) fn on_line(flow: &mut Flow, dir: Dir, line: &Line<'_>, ctx: &mut Ctx<'_>) {
    if !flow.inspecting {
        return;
    }
    let orig = flow.mapping.orig;
    if ctx.cfg.report_lines {
        ctx.events.push(Event::Line {
            flow: orig,
            dir,
            text: printable(&line.bytes),
        });
    }
    if line.overlong {
        ctx.stats.overlong_lines += 1;
        ctx.events.push(Event::Overlong { flow: orig, dir });
        // Not parsed, but still a command or a reply line: a multi-line
        // reply it opens or closes is followed all the same.
        match dir {
            Dir::Orig => flow.dialogue.command(Asked::Other),
            Dir::Reply if !line.bytes.is_empty() => {
                flow.dialogue.reply(&line.bytes);
            }
            Dir::Reply => {}
        }
        return;
    }
    let announce = match dir {
        Dir::Orig => on_command(flow, line, ctx),
        Dir::Reply => on_reply(flow, line, ctx),
    };
    if let Some(a) = announce {
        on_announce(flow, dir, line, &a, ctx);
    }
}

/// A client command: what it asks for is remembered for its reply.
fn on_command(flow: &mut Flow, line: &Line<'_>, ctx: &mut Ctx<'_>) -> Option<Announce> {
    let orig = flow.mapping.orig;
    let parsed = grammar::parse_client_line(&line.bytes);
    flow.dialogue.command(match parsed {
        Ok(ClientLine::Pasv) => Asked::Pasv,
        Ok(ClientLine::Epsv) => Asked::Epsv,
        _ => Asked::Other,
    });
    match parsed {
        Ok(ClientLine::Announce(a)) => Some(a),
        Ok(ClientLine::AuthTls) => {
            flow.auth_requested = true;
            ctx.events.push(recognised(&orig, Dir::Orig, "AUTH"));
            None
        }
        Ok(other) => {
            if let Some(name) = client_keyword(&other) {
                ctx.events.push(recognised(&orig, Dir::Orig, name));
            }
            None
        }
        Err(why) => {
            malformed(&orig, Dir::Orig, line, why, ctx);
            None
        }
    }
}

/// A server reply line: an announcement counts only as a single-line
/// reply to the PASV/EPSV it answers (see `dialogue`).
fn on_reply(flow: &mut Flow, line: &Line<'_>, ctx: &mut Ctx<'_>) -> Option<Announce> {
    let orig = flow.mapping.orig;
    let position = flow.dialogue.reply(&line.bytes);
    let single = matches!(position, ReplyLine::Single(_) | ReplyLine::Pipelined(_));
    match grammar::parse_server_line(&line.bytes) {
        Ok(ServerLine::Announce(a)) => {
            let asked = match a.kind {
                AnnounceKind::Pasv227 => Asked::Pasv,
                _ => Asked::Epsv,
            };
            let refusal = match position {
                ReplyLine::Single(Some(answers)) if answers == asked => return Some(a),
                ReplyLine::Pipelined(answers) if answers == asked => Refusal::Pipelined,
                _ => Refusal::Unsolicited,
            };
            refuse(flow, Dir::Reply, line, refusal, ctx);
            None
        }
        Ok(ServerLine::AuthAccepted) if single && flow.auth_requested => {
            flow.inspecting = false;
            flow.streams.iter_mut().for_each(|s| s.stop_parsing());
            ctx.stats.tls_sessions += 1;
            ctx.events.push(Event::InspectionStopped {
                flow: orig,
                why: "AUTH accepted (234): the control channel is encrypted from here on",
            });
            None
        }
        Ok(_) => None,
        // Lines inside a multi-line reply are text, not replies to parse.
        Err(why) if single => {
            malformed(&orig, Dir::Reply, line, why, ctx);
            None
        }
        Err(_) => None,
    }
}

fn malformed(orig: &Tuple, dir: Dir, line: &Line<'_>, why: grammar::Malformed, ctx: &mut Ctx<'_>) {
    ctx.stats.malformed += 1;
    ctx.events.push(Event::Malformed {
        flow: *orig,
        dir,
        line: printable(&line.bytes),
        why,
    });
}

fn refuse(flow: &Flow, dir: Dir, line: &Line<'_>, refusal: Refusal, ctx: &mut Ctx<'_>) {
    ctx.stats.refused += 1;
    ctx.events.push(Event::Refused {
        flow: flow.mapping.orig,
        dir,
        line: printable(&line.bytes),
        refusal,
    });
}

/// An announcement: plan it, register the expectation, record the edit.
fn on_announce(flow: &mut Flow, dir: Dir, line: &Line<'_>, a: &Announce, ctx: &mut Ctx<'_>) {
    if !announcer_matches(a.kind, dir) {
        return;
    }
    let mapping = flow.mapping;
    let (expects, owner) = (&*ctx.expects, ctx.id);
    let result = plan(
        &mapping,
        dir,
        a.addr,
        a.port,
        &ctx.cfg.policy,
        |dst, peer| expects.is_free(dst, peer, owner),
    );
    let plan = match result {
        Ok(p) => p,
        Err(r) => return refuse(flow, dir, line, r, ctx),
    };
    let edit = match plan.rewrite {
        None => None,
        Some(to) => {
            let addr = (a.kind != AnnounceKind::Epsv229).then_some(to.ip());
            let start = line.start.wrapping_add(a.span.start as u32);
            // A family the kind cannot carry (an IPv6 mapping for a PORT)
            // is a configuration error: refuse, do not garble.
            let Some(text) = grammar::try_format_announce(a.kind, a.delim, addr, to.port()) else {
                return refuse(flow, dir, line, Refusal::FamilyMismatch, ctx);
            };
            if !flow.stream(dir).can_edit_from(start) {
                return refuse(flow, dir, line, Refusal::SplitLine, ctx);
            }
            if flow.stream(dir).adj().is_full() {
                return refuse(flow, dir, line, Refusal::TooManyEdits, ctx);
            }
            let kernel = flow.fixups == Fixups::Kernel;
            if kernel && !flow.stream(dir).adj().acked_before(ctx.segment_start) {
                return refuse(flow, dir, line, Refusal::EditInFlight, ctx);
            }
            let growth = text.len().saturating_sub(a.span.len());
            if ctx.room.is_some_and(|room| growth > room) {
                return refuse(flow, dir, line, Refusal::SegmentTooLong, ctx);
            }
            ctx.room = ctx.room.map(|room| room - growth);
            Some((start, text))
        }
    };
    let exp = Expectation {
        peer: plan.peer,
        dst: plan.public,
        nat: plan.nat,
        master: mapping.orig,
        kind: a.kind,
        expires: ctx.now + ctx.cfg.expect_timeout,
    };
    match ctx.expects.insert(&exp, ctx.id) {
        Err(e) => return refuse(flow, dir, line, Refusal::Limit(e), ctx),
        Ok(Some(evicted)) => ctx.events.push(Event::ExpectationRemoved {
            exp: evicted,
            reason: RemoveReason::Evicted,
        }),
        Ok(None) => {}
    }
    ctx.stats.expectations += 1;
    ctx.events.push(Event::ExpectationAdded(exp));
    if let Some((start, text)) = edit {
        let mut rewritten = line.bytes[..a.span.start].to_vec();
        rewritten.extend_from_slice(&text);
        rewritten.extend_from_slice(&line.bytes[a.span.end..]);
        let end = start.wrapping_add((a.span.end - a.span.start) as u32);
        flow.streams_mut(dir).0.record_edit(start, end, text);
        adopt_at_first_rewrite(flow, ctx);
        if flow.fixups == Fixups::Kernel {
            set_kernel_point(flow, dir, ctx);
        }
        ctx.stats.rewrites += 1;
        ctx.events.push(Event::Rewritten {
            flow: mapping.orig,
            dir,
            before: printable(&line.bytes),
            after: printable(&rewritten),
        });
    }
}

/// The kernel's correction point for the edits of this segment (a later
/// edit in the same segment replaces the command of an earlier one).
fn set_kernel_point(flow: &Flow, dir: Dir, ctx: &mut Ctx<'_>) {
    let Some(adj) = flow.stream(dir).adj().kernel_point(ctx.segment_start) else {
        return;
    };
    let orig = flow.mapping.orig;
    // An entry being made anew carries the point from the start.
    for c in &mut ctx.commands {
        if let Command::AdoptControl(a) = c {
            if a.orig == orig {
                a.seqadj[dir.index()] = Some(adj);
                return;
            }
        }
    }
    ctx.commands.retain(
        |c| !matches!(c, Command::SetSeqAdj { orig: o, dir: d, .. } if *o == orig && *d == dir),
    );
    ctx.commands.push(Command::SetSeqAdj { orig, dir, adj });
}

fn recognised(orig: &Tuple, dir: Dir, what: &'static str) -> Event {
    Event::Recognised {
        flow: *orig,
        dir,
        what,
    }
}

fn client_keyword(line: &ClientLine) -> Option<&'static str> {
    match line {
        ClientLine::Pasv => Some("PASV"),
        ClientLine::Epsv => Some("EPSV"),
        ClientLine::EpsvAll => Some("EPSV ALL"),
        ClientLine::Lprt => Some("LPRT (not rewritten)"),
        ClientLine::Lpsv => Some("LPSV"),
        _ => None,
    }
}

/// PORT/EPRT come from clients, 227/229 from servers; the other way round
/// is nonsense and ignored.
fn announcer_matches(kind: AnnounceKind, who: Dir) -> bool {
    matches!(
        (kind, who),
        (AnnounceKind::Port | AnnounceKind::Eprt, Dir::Orig)
            | (AnnounceKind::Pasv227 | AnnounceKind::Epsv229, Dir::Reply)
    )
}

/// A line for humans: printable ASCII as sent (quotes too: `257 "/"`), the
/// rest and the backslash escaped (so an escape cannot be forged), no
/// terminator.
pub fn printable(bytes: &[u8]) -> String {
    let trimmed = bytes
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .unwrap_or(bytes);
    let mut out = String::with_capacity(trimmed.len());
    for &b in trimmed {
        match b {
            b'"' | b'\'' => out.push(char::from(b)),
            _ => out.extend(b.escape_ascii().map(char::from)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_keeps_quotes_and_escapes_the_rest() {
        use super::printable;
        assert_eq!(
            printable(b"257 \"/\" is the current directory\r\n"),
            r#"257 "/" is the current directory"#
        );
        assert_eq!(printable(b"230 it's\x07\\\n"), r"230 it's\x07\\");
    }
}
