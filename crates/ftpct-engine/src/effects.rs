//! What the kernel must do after the engine's events, and what a
//! command's outcome (an adoption that worked or failed) changes.

use crate::command::{Command, DataConnection, Related};
use crate::engine::Engine;
use crate::event::Event;
use crate::expect::Expectation;
use crate::flow::Fixups;
use crate::guards::guard_always;
use crate::tuple::Tuple;

impl Engine {
    /// The kernel took the fix-ups of control connection `orig`
    /// ([`Command::AdoptControl`] worked): from now on ftpct only edits
    /// payloads and sets correction points.
    pub(crate) fn adopted(&mut self, orig: &Tuple) -> Vec<Command> {
        if let Some(flow) = self.flows.by_tuple_mut(orig) {
            flow.fixups = Fixups::Kernel;
            flow.adopt_asked = true;
        }
        self.keep_state(orig).into_iter().collect()
    }

    /// The kernel could not take the fix-ups of control connection `orig`
    /// ([`Command::AdoptControl`] failed): ftpct shifts its packets itself
    /// from the rewrite that asked (the rewritten segment itself and what
    /// came before it need no shift either way). Returns what that needs:
    /// the connection queued whole, no window checks, its kept state.
    pub(crate) fn not_adopted(&mut self, orig: &Tuple) -> Vec<Command> {
        let Some(flow) = self.flows.by_tuple_mut(orig) else {
            return Vec::new();
        };
        flow.fixups = Fixups::Own;
        let mut commands = self.first_rewrite(orig);
        commands.extend(self.keep_state(orig));
        commands
    }

    /// What the kernel must do after `events`: the ipset follows the
    /// expectations (an entry goes with the last expectation of its
    /// destination: in FXP two peers may be expected at one address and
    /// port), a matched data SYN gets its entry, and a rewrite turns off
    /// window checks on its control connection (once per connection).
    pub(crate) fn commands_for(&mut self, events: &[Event]) -> Vec<Command> {
        let mut commands: Vec<Command> = self
            .unguard
            .drain(..)
            .map(|direction| Command::Unguard { direction })
            .collect();
        for e in events {
            match e {
                Event::ExpectationAdded(exp) => commands.push(self.expect_dst(exp.dst)),
                Event::ExpectationRemoved { exp, .. } => self.forget_dst(exp, &mut commands),
                Event::DataMatched { tuple, exp } => {
                    commands.push(Command::CreateRelated(Box::new(Related {
                        conn: DataConnection::for_match(tuple, exp),
                        mark: self.cfg.data_mark,
                        exp: exp.clone(),
                    })));
                    self.forget_dst(exp, &mut commands);
                }
                Event::Rewritten { flow, .. } => commands.extend(self.first_rewrite(flow)),
                _ => {}
            }
        }
        for e in events {
            if let Event::ExpectationAdded(exp)
            | Event::ExpectationRemoved { exp, .. }
            | Event::DataMatched { exp, .. } = e
            {
                commands.extend(self.keep_state(&exp.master));
            }
            // ftpct's own fix-ups moved: a restart must go on with them.
            if let Event::Rewritten { flow, .. } = e {
                commands.extend(self.keep_state(flow));
            }
        }
        commands
    }

    fn forget_dst(&self, exp: &Expectation, commands: &mut Vec<Command>) {
        let forget = Command::ForgetDst { dst: exp.dst };
        if !self.expects.expects_dst(exp.dst) && !commands.contains(&forget) {
            commands.push(forget);
        }
    }

    pub(crate) fn first_rewrite(&mut self, orig: &Tuple) -> Vec<Command> {
        let Some(flow) = self.flows.by_tuple_mut(orig) else {
            return Vec::new();
        };
        // An adopted entry was made liberal.
        if flow.fixups == Fixups::Kernel || std::mem::replace(&mut flow.liberal, true) {
            return Vec::new();
        }
        let mut commands = guard_always(flow, self.cfg.selective);
        commands.push(Command::SetLiberal { orig: *orig });
        commands
    }
}

/// The kept state a step sets on a connection whose entry it makes anew rides
/// in the new entry (one netlink round trip less, and no moment where the
/// new entry lacks them).
pub(crate) fn kept_into_adoption(commands: &mut Vec<Command>) {
    let Some(adopted) = commands.iter().find_map(|c| match c {
        Command::AdoptControl(a) => Some(a.orig),
        _ => None,
    }) else {
        return;
    };
    let mut latest = None;
    commands.retain(|c| match c {
        Command::Keep { orig, kept } if *orig == adopted => {
            latest = Some(*kept);
            false
        }
        _ => true,
    });
    for c in commands.iter_mut() {
        if let Command::AdoptControl(a) = c {
            a.kept = latest.or(a.kept);
        }
    }
}
