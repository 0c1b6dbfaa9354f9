//! The one way ftpct drives its engine: the daemon's queue threads and its
//! supervisor, the replay and the monitor all feed inputs here, answer the
//! engine's questions from their kernel (the real one, a capture's NAT
//! rules) and carry out its commands. What differs is only where the
//! engine lives ([`EngineHost`]: behind the daemon's lock, or owned) and
//! which kernel answers ([`DriverKernel`]). No FTP here, and no sequence
//! of engine calls of a driver's own: the engine's protocol decides what
//! is asked and when.

use std::time::Duration;

use ftpct_engine::engine::{
    Answer, CommandOutcome, Engine, Input, Origin, Outcome, Question, Verdict,
};
use ftpct_engine::event::Event;
use ftpct_engine::Command;

/// Questions a packet asks at most: its passive note, its mapping, a kept
/// state, its passive note again.
const MAX_QUESTIONS: usize = 4;

/// What came out of the engine after one input.
#[derive(Debug, Default)]
pub struct Round {
    pub verdict: Option<Verdict>,
    pub question: Option<Question>,
    pub events: Vec<Event>,
    pub commands: Vec<Command>,
}

impl Round {
    /// Everything the engine has to say now.
    pub fn drain(engine: &mut Engine) -> Round {
        Round {
            verdict: engine.poll_verdict(),
            question: engine.poll_question(),
            events: std::iter::from_fn(|| engine.poll_event()).collect(),
            commands: std::iter::from_fn(|| engine.poll_command()).collect(),
        }
    }
}

/// Where the engine lives.
pub trait EngineHost {
    /// Hands `input` to the engine at `now` and takes what comes out, in
    /// one go (the daemon: under one lock). None: the engine could not
    /// (it panicked; logged).
    fn round(&mut self, now: Duration, input: Input<'_>) -> Option<Round>;
    /// When the engine's timers want to run next
    /// ([`Engine::poll_timeout`]; None: the engine could not say).
    fn deadline(&mut self) -> Option<Duration>;
}

/// An engine owned by its driver (the replay, the monitor, tests).
impl EngineHost for Engine {
    fn round(&mut self, now: Duration, input: Input<'_>) -> Option<Round> {
        self.handle(now, input);
        Some(Round::drain(self))
    }

    fn deadline(&mut self) -> Option<Duration> {
        self.poll_timeout()
    }
}

/// What the driver's kernel does for the engine.
pub trait DriverKernel {
    /// Answers a question (conntrack's mapping, a passive note, a kept
    /// state).
    fn answer(&mut self, q: &Question) -> Answer;
    /// Carries out a command; what the engine must learn of its outcome.
    fn carry_out(&mut self, c: &Command) -> Option<CommandOutcome>;
}

/// A kernel that knows nothing and does nothing.
pub struct NoKernel;

impl DriverKernel for NoKernel {
    fn answer(&mut self, q: &Question) -> Answer {
        nothing_known(q)
    }

    fn carry_out(&mut self, _: &Command) -> Option<CommandOutcome> {
        None
    }
}

/// The answer of a kernel that knows nothing of `q`.
pub fn nothing_known(q: &Question) -> Answer {
    match q {
        Question::Mapping(_) => Answer::Mapping(None),
        Question::PassiveNote { .. } => Answer::PassiveNote(false),
        Question::KeptState { .. } => Answer::KeptState(None),
    }
}

/// One packet from `origin`, through to its verdict: its questions
/// answered and its commands carried out (in order, before the verdict
/// is returned). The outcome's commands are those the engine gave, the
/// answers to their outcomes included.
pub fn packet<H: EngineHost, K: DriverKernel>(
    host: &mut H,
    kernel: &mut K,
    now: Duration,
    bytes: &[u8],
    origin: Origin,
) -> Outcome {
    let mut done = Outcome {
        verdict: Verdict::Accept,
        events: Vec::new(),
        commands: Vec::new(),
    };
    let mut input = Input::Packet { bytes, origin };
    // A panic in the engine, or no verdict after its questions (a protocol
    // slip), lets the packet pass unchanged.
    for _ in 0..=MAX_QUESTIONS {
        let Some(round) = host.round(now, input) else {
            break;
        };
        done.events.extend(round.events);
        carry_out(host, kernel, now, round.commands, &mut done);
        if let Some(verdict) = round.verdict {
            done.verdict = verdict;
            break;
        }
        let Some(q) = round.question else {
            break;
        };
        input = Input::Answer(kernel.answer(&q));
    }
    done
}

/// Any input but a packet (a timeout, a conntrack event, a kernel note, a
/// policy): what came out, its commands carried out.
pub fn input<H: EngineHost, K: DriverKernel>(
    host: &mut H,
    kernel: &mut K,
    now: Duration,
    input: Input<'_>,
) -> Outcome {
    let mut done = Outcome {
        verdict: Verdict::Accept,
        events: Vec::new(),
        commands: Vec::new(),
    };
    if let Some(round) = host.round(now, input) {
        done.events.extend(round.events);
        carry_out(host, kernel, now, round.commands, &mut done);
    }
    done
}

/// Starts the engine's timers at `now` on a driver's clock that does not
/// start at zero (a capture's times count from 1970): nothing of the
/// engine is due before it (the timers would otherwise catch up from zero).
pub fn start_clock<H: EngineHost, K: DriverKernel>(host: &mut H, kernel: &mut K, now: Duration) {
    input(host, kernel, now, Input::Timeout);
}

/// The timers due by `now` on a driver's own clock (a capture's time), each
/// run at the deadline the engine gave ([`Input::Timeout`] when
/// `poll_timeout` says), in order: what each gave, and when.
pub fn timers_until<H: EngineHost, K: DriverKernel>(
    host: &mut H,
    kernel: &mut K,
    now: Duration,
) -> Vec<(Duration, Outcome)> {
    let mut fired = Vec::new();
    let mut last = None;
    while let Some(at) = host.deadline().filter(|at| *at <= now) {
        // A deadline that does not move on (an engine that failed) is
        // not fired again.
        if last.is_some_and(|l| at <= l) {
            break;
        }
        last = Some(at);
        fired.push((at, input(host, kernel, at, Input::Timeout)));
    }
    fired
}

/// Runs `commands` in order; what a command's outcome makes the engine
/// ask for runs right after it.
fn carry_out<H: EngineHost, K: DriverKernel>(
    host: &mut H,
    kernel: &mut K,
    now: Duration,
    commands: Vec<Command>,
    done: &mut Outcome,
) {
    for c in commands {
        let outcome = kernel.carry_out(&c);
        done.commands.push(c);
        let Some(outcome) = outcome else {
            continue;
        };
        if let Some(round) = host.round(now, Input::Outcome(outcome)) {
            done.events.extend(round.events);
            carry_out(host, kernel, now, round.commands, done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftpct_engine::engine::{Config, Origin};
    use ftpct_engine::event::RemoveReason;
    use ftpct_testkit::{Control, Side};

    /// A driver on a clock of its own fires each timer at its deadline,
    /// in order, not at the time it next looks.
    #[test]
    fn timers_fire_at_their_deadlines_in_order() {
        // The control connection's handshake is not shown: it must not
        // time out first.
        let cfg = Config {
            unestablished_timeout: Duration::from_secs(3600),
            ..Config::default()
        };
        let expect_timeout = cfg.expect_timeout;
        let mut engine = Engine::new(cfg);
        let c = Control::snat_session();
        let start = Duration::from_secs(5);
        let port = c
            .segment(Side::Client, &engine)
            .payload(b"PORT 192,0,2,10,156,64\r\n")
            .build();
        let out = packet(&mut engine, &mut NoKernel, start, &port, Origin::Network);
        assert!(
            out.events
                .iter()
                .any(|e| matches!(e, Event::ExpectationAdded { .. })),
            "{out:?}"
        );
        let expires = start + expect_timeout;
        let later = expires + Duration::from_secs(100);
        let fired = timers_until(&mut engine, &mut NoKernel, later);
        let times: Vec<Duration> = fired.iter().map(|(at, _)| *at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert!(times.iter().all(|at| *at <= later));
        let expired = fired.iter().find_map(|(at, out)| {
            out.events
                .iter()
                .any(|e| {
                    matches!(
                        e,
                        Event::ExpectationRemoved {
                            reason: RemoveReason::Expired,
                            ..
                        }
                    )
                })
                .then_some(*at)
        });
        assert_eq!(expired, Some(expires), "{fired:?}");
        assert!(engine.poll_timeout().is_some_and(|t| t > later));
        assert!(timers_until(&mut engine, &mut NoKernel, later).is_empty());
    }
}
