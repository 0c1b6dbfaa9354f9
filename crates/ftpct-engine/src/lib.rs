//! ftpct's engine, sans-IO: an IP packet, the time and where it came
//! from go in; a verdict, the rewritten packet, events (what was decided and
//! why) and commands for the kernel come out. It never calls the kernel:
//! the live queue loop, the pcap replay, the fuzz targets, the benchmarks
//! and the tests all drive it and carry out its commands.
//!
//! Modules, one idea each: `classifier` (which segments selective
//! queueing makes cross), `grammar` (FTP lines), `dialogue` (which reply
//! answers which command), `stream` (one direction's bytes and edits),
//! `seqadj` (sequence arithmetic), `flow` (the table of control
//! connections), `expect` (pending data connections), `nat` (what an
//! announcement becomes through NAT), `policy` (what is refused), `wire`
//! (packet parsing and rebuilding), `event` (what the engine reports).
//! The engine itself: `engine` (its state and what it tells), `config`,
//! `verdict` and `question` (what goes out and what it asks),
//! `packet_path` (a packet to its decision), `tracking` (which flow a
//! packet belongs to), `segment` (a segment of a followed flow), `lines`
//! (what an FTP line does), `guards` and `selective` (selective
//! queueing), `timers`, `effects` (the kernel's part) and `resume` (kept
//! state).

pub mod classifier;
pub mod command;
mod config;
pub mod dialogue;
mod effects;
pub mod engine;
pub mod event;
pub mod expect;
pub mod flow;
pub mod grammar;
mod guards;
pub mod kept;
pub mod kept_expectation;
mod lines;
pub mod nat;
mod outputs;
mod packet_path;
pub mod policy;
mod protocol;
mod question;
mod resume;
mod segment;
mod selective;
pub mod seqadj;
pub mod stream;
mod timers;
mod tracking;
pub mod tuple;
mod verdict;
pub mod wire;

pub use command::Command;
pub use engine::{
    Answer, CommandOutcome, Config, ConntrackEvent, Effects, Engine, Input, KernelNote,
    MappingQuestion, Origin, Outcome, PolicyUpdate, Question, Verdict,
};
pub use tuple::Tuple;
