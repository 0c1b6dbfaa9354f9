//! The engine's protocol driven the simplest way, for tests, the fuzz
//! target and the benchmark: NAT questions answered at once by rules, no
//! passive note nor kept state in any kernel, and everything that comes
//! out gathered. (The program's drivers share `ftpct::driver`.)

use std::time::Duration;

use ftpct_engine::engine::{Answer, Effects, Engine, Input, Origin, Outcome, Question, Verdict};
use ftpct_engine::nat::NatLookup;

/// One packet through `engine`, questions answered from `nat`.
pub fn process(
    engine: &mut Engine,
    bytes: &[u8],
    now: Duration,
    origin: Origin,
    nat: &mut dyn NatLookup,
) -> Outcome {
    feed(engine, bytes, now, origin, nat);
    let Effects { events, commands } = drain(engine);
    Outcome {
        verdict: engine.poll_verdict().unwrap_or(Verdict::Accept),
        events,
        commands,
    }
}

/// One packet through `engine` as `process`, its events and commands
/// polled and dropped: the verdict alone (the benchmark's packet).
pub fn verdict(
    engine: &mut Engine,
    bytes: &[u8],
    now: Duration,
    origin: Origin,
    nat: &mut dyn NatLookup,
) -> Verdict {
    feed(engine, bytes, now, origin, nat);
    while engine.poll_event().is_some() {}
    while engine.poll_command().is_some() {}
    engine.poll_verdict().unwrap_or(Verdict::Accept)
}

/// Hands `engine` the packet and answers its questions (inlined: a
/// call less on the benchmark's path).
#[inline(always)]
fn feed(engine: &mut Engine, bytes: &[u8], now: Duration, origin: Origin, nat: &mut dyn NatLookup) {
    engine.handle(now, Input::Packet { bytes, origin });
    // A packet asks four questions at most.
    for _ in 0..4 {
        let Some(q) = engine.poll_question() else {
            break;
        };
        let answer = match q {
            Question::Mapping(q) => Answer::Mapping(q.answer_with(nat)),
            Question::PassiveNote { .. } => Answer::PassiveNote(false),
            Question::KeptState { .. } => Answer::KeptState(None),
        };
        engine.handle(now, Input::Answer(answer));
    }
}

/// Any other input; what came out of it.
pub fn input(engine: &mut Engine, now: Duration, input: Input<'_>) -> Effects {
    engine.handle(now, input);
    drain(engine)
}

/// The events and commands waiting in `engine`.
pub fn drain(engine: &mut Engine) -> Effects {
    Effects {
        events: std::iter::from_fn(|| engine.poll_event()).collect(),
        commands: std::iter::from_fn(|| engine.poll_command()).collect(),
    }
}
