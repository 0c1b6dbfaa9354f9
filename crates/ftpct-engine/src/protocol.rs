//! The engine's one protocol, in the manner of quinn-proto: everything
//! goes in through [`Engine::handle`], everything comes out through the
//! `poll_*` methods. A packet whose fate needs something only the kernel
//! knows raises a [`Question`]; the driver answers it with a later
//! `handle` ([`Input::Answer`]) and only then does the packet's verdict
//! come out. A driver feeds inputs, answers questions from its kernel and
//! carries out commands; it holds no FTP logic and no sequence of its own.

use std::time::Duration;

use crate::command::{Command, SeqAdj};
use crate::engine::Engine;
use crate::event::Event;
use crate::expect::Expectation;
use crate::kept::Kept;
use crate::nat::CtMapping;
use crate::outputs::{Stage, Waiting};
use crate::policy::Policy;
use crate::question::{Answer, Known, Question};
use crate::tuple::Tuple;
use crate::verdict::{Origin, Verdict};

/// What goes into the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// An IP packet and where it came from: its verdict comes out, maybe
    /// after questions.
    Packet { bytes: &'a [u8], origin: Origin },
    /// The answer to the question [`Engine::poll_question`] gave.
    Answer(Answer),
    /// What became of a command.
    Outcome(CommandOutcome),
    /// What conntrack says of a control connection.
    Conntrack(ConntrackEvent),
    /// What the kernel's rules saw of a session without queueing it.
    Note(KernelNote),
    /// Time passed: the timers run (see [`Engine::poll_timeout`]).
    Timeout,
    /// A new policy (SIGHUP): it applies to announcements from now on.
    Policy(PolicyUpdate),
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// [`Command::AdoptControl`] worked: the kernel has the fix-ups.
    Adopted { orig: Tuple },
    /// It failed: ftpct keeps them.
    NotAdopted { orig: Tuple },
    /// [`Command::CreateRelated`] failed: its expectation is given back,
    /// so that the client's retried SYN finds it again.
    NotCreated(Expectation),
}

/// What conntrack says of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConntrackEvent {
    /// Its entry is gone (timed out, deleted, flushed) while `flow`
    /// ([`Engine::flow_of`]) had its tuple.
    Destroyed { orig: Tuple, flow: u64 },
    /// A session kept for ftpct, found at start (a restart, or a standby
    /// gateway taking over): it is taken up again.
    Kept {
        mapping: CtMapping,
        seqadj: [Option<SeqAdj>; 2],
        kept: Kept,
    },
}

/// What the kernel's rules saw without queueing it (selective queueing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelNote {
    /// The client of session `orig` sent its FIN: the session ends for
    /// ftpct after the linger.
    ClientFinished { orig: Tuple },
    /// A PASV or EPSV of session `orig` was let through: the next 227 or
    /// 229 answers it.
    PassiveLetThrough { orig: Tuple },
}

/// A new policy and its expectation limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyUpdate {
    pub policy: Policy,
    pub expect_timeout: Duration,
    pub per_session: usize,
}

impl Engine {
    /// Takes one input at time `now`.
    pub fn handle(&mut self, now: Duration, input: Input<'_>) {
        match input {
            Input::Packet { bytes, origin } => {
                // Taking it out moves it whole: only when there is one.
                if self.out.waiting.is_some() {
                    self.give_up_waiting();
                }
                self.start_packet(bytes, origin, now);
            }
            Input::Answer(answer) => self.answered(answer),
            Input::Outcome(outcome) => {
                let commands = match outcome {
                    CommandOutcome::Adopted { orig } => self.adopted(&orig),
                    CommandOutcome::NotAdopted { orig } => self.not_adopted(&orig),
                    CommandOutcome::NotCreated(exp) => self.reinstate(exp),
                };
                self.out.commands.extend(commands);
            }
            Input::Conntrack(ConntrackEvent::Destroyed { orig, flow }) => {
                let (_, effects) = self.conntrack_destroyed(&orig, flow);
                self.out.emit(effects.events, effects.commands);
            }
            Input::Conntrack(ConntrackEvent::Kept {
                mapping,
                seqadj,
                kept,
            }) => {
                let commands = self.resume(mapping, seqadj, kept, now);
                self.out.commands.extend(commands);
            }
            Input::Note(KernelNote::ClientFinished { orig }) => {
                self.client_finished(&orig, now);
            }
            Input::Note(KernelNote::PassiveLetThrough { orig }) => self.passive_noted(&orig),
            Input::Timeout => {
                let effects = self.tick(now);
                self.out.emit(effects.events, effects.commands);
            }
            Input::Policy(p) => self.set_policy(p.policy, p.expect_timeout, p.per_session),
        }
    }

    /// The question the waiting packet asks, once.
    #[inline]
    pub fn poll_question(&mut self) -> Option<Question> {
        self.out.question.take()
    }

    /// The next packet's verdict, in the order the packets came; the
    /// commands polled before it go to the kernel first.
    #[inline]
    pub fn poll_verdict(&mut self) -> Option<Verdict> {
        self.out.verdicts.pop_front()
    }

    /// The next command for the kernel, in order.
    #[inline]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.commands.pop_front()
    }

    /// The next event (what was decided and why), in order.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When the timers want to run next ([`Input::Timeout`]): an
    /// expectation's deadline, a closing flow's end, or the scan for idle
    /// flows (which also gives back the tables' spare room).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let closing = self.closing.iter().map(|(t, _)| *t).min();
        let due = [self.expects.next_deadline(), closing]
            .into_iter()
            .flatten()
            .fold(self.next_idle_scan, Duration::min);
        // Timers run at most once a TICK.
        Some(due.max(self.next_tick))
    }

    /// A packet of its own: its passive note asked for first when it may
    /// answer a PASV the kernel let through, else looked at.
    fn start_packet(&mut self, bytes: &[u8], origin: Origin, now: Duration) {
        if let Some((client, orig)) = self.passive_note_wanted(bytes, None) {
            let stage = Stage::NoteFirst { orig };
            let q = Question::PassiveNote { client };
            self.wait(bytes.to_vec(), origin, now, stage, q);
            return;
        }
        self.look_at(bytes, origin, now, None);
    }

    /// Decided, or its mapping asked for first (the packet is copied then,
    /// or `owned` kept). Inlined: a call less on every packet's path.
    #[inline(always)]
    fn look_at(&mut self, bytes: &[u8], origin: Origin, now: Duration, owned: Option<Vec<u8>>) {
        if let Err(q) = self.step(bytes, now, origin, Known::NotAsked) {
            let stage = Stage::Mapping {
                first_syn: q.first_syn,
            };
            let owned = owned.unwrap_or_else(|| bytes.to_vec());
            self.wait(owned, origin, now, stage, Question::Mapping(*q));
        }
    }

    fn wait(&mut self, bytes: Vec<u8>, origin: Origin, now: Duration, stage: Stage, q: Question) {
        self.out.waiting = Some(Waiting {
            bytes,
            origin,
            now,
            stage,
        });
        self.out.question = Some(q);
    }

    /// A new packet while one waits: the waiting one is decided as if
    /// conntrack knew nothing (a driver that does not answer never stalls
    /// the engine).
    fn give_up_waiting(&mut self) {
        if let Some(w) = self.out.waiting.take() {
            self.out.question = None;
            self.finish(&w, None);
        }
    }

    fn answered(&mut self, answer: Answer) {
        let Some(w) = self.out.waiting.take() else {
            return;
        };
        match (w.stage, answer) {
            (Stage::NoteFirst { orig }, Answer::PassiveNote(noted)) => {
                if noted {
                    self.passive_noted(&orig);
                }
                let bytes = w.bytes.clone();
                self.look_at(&bytes, w.origin, w.now, Some(w.bytes));
            }
            (Stage::Mapping { first_syn }, Answer::Mapping(answer)) => match answer {
                Some(m) if !first_syn => self.take_up(w, m),
                _ => self.finish(&w, answer),
            },
            (Stage::Kept { answer }, Answer::KeptState(kept)) => {
                if let Some((kept, seqadj)) = kept {
                    let commands = self.resume(answer, seqadj, kept, w.now);
                    self.out.commands.extend(commands);
                }
                self.start_reply(w, answer);
            }
            (Stage::NoteAfter { orig, answer }, Answer::PassiveNote(noted)) => {
                if noted {
                    self.passive_noted(&orig);
                }
                self.finish(&w, Some(answer));
            }
            // An answer to another question: decided without it.
            (Stage::NoteFirst { .. } | Stage::Mapping { .. }, _) => self.finish(&w, None),
            (Stage::Kept { answer } | Stage::NoteAfter { answer, .. }, _) => {
                self.finish(&w, Some(answer))
            }
        }
    }

    /// A connection conntrack knows and ftpct does not follow: its kept
    /// state is asked for first (it may be a session ftpct kept before a
    /// restart).
    fn take_up(&mut self, w: Waiting, m: CtMapping) {
        if self.cfg.keep_state && !self.tracks(&m.orig) {
            let q = Question::KeptState { orig: m.orig };
            self.wait(w.bytes, w.origin, w.now, Stage::Kept { answer: m }, q);
            return;
        }
        self.start_reply(w, m);
    }

    /// A server segment of a session not followed yet may start it (see
    /// `track_reply`); then its passive note may be wanted.
    fn start_reply(&mut self, w: Waiting, m: CtMapping) {
        let events = self.track_reply(&w.bytes, &m, w.now, w.origin);
        self.out.events.extend(events);
        if let Some((client, orig)) = self.passive_note_wanted(&w.bytes, Some(&m)) {
            let stage = Stage::NoteAfter { orig, answer: m };
            self.wait(
                w.bytes,
                w.origin,
                w.now,
                stage,
                Question::PassiveNote { client },
            );
            return;
        }
        self.finish(&w, Some(m));
    }

    /// Decided with conntrack's answer (an answered packet asks no more).
    fn finish(&mut self, w: &Waiting, answer: Option<CtMapping>) {
        let decided = self.step(&w.bytes, w.now, w.origin, Known::Answer(answer));
        debug_assert!(decided.is_ok(), "an answered packet asks again");
    }
}
