//! ftpct's engine, sans-IO: an IP packet, the time and the hook it was seen
//! at go in; a verdict, the rewritten packet, events (what was decided and
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

pub mod classifier;
pub mod command;
pub mod dialogue;
pub mod engine;
pub mod event;
pub mod expect;
pub mod flow;
pub mod grammar;
pub mod kept;
pub mod nat;
pub mod policy;
pub mod seqadj;
pub mod stream;
pub mod tuple;
pub mod wire;

pub use command::Command;
pub use engine::{Config, Effects, Engine, Hook, Known, MappingQuestion, Outcome, Step, Verdict};
pub use tuple::Tuple;
