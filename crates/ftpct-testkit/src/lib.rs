//! Dev-only helpers that drive ftpct's engine the way a gateway does, for
//! the engine's tests and benchmarks, the fuzz targets and the ftpct
//! crate's tests. Never a normal dependency of a shipped crate.
//!
//! - [`Segment`]: one TCP/IPv4 or TCP/IPv6 segment (flags, sequence and
//!   acknowledgement numbers, MSS, timestamps and SACK options, payload),
//!   built with etherparse; [`set_seq_ack`] renumbers a built one in place.
//! - [`Gateway`]: the engine, the NAT it reads and the clock of the
//!   packets it is given.
//! - [`Control`]: a simulated FTP control connection, a client and a
//!   server with their own sequence numbers, that shake hands and say
//!   lines through a [`Gateway`], each acknowledging what reached it after
//!   the engine's edits.
//! - [`reshape`]: a built packet in another header [`Shape`] (IPv4
//!   options, IPv6 extension headers, a longer TCP header).
//! - [`bpf::Program`]: a classic BPF interpreter, for the checks of the
//!   programs ftpct's rules carry.
//! - [`Received`]: what one direction delivered, byte by sequence
//!   position, for checks that the far side never gets two different bytes
//!   at one position.

pub mod bpf;
mod control;
pub mod drive;
mod gateway;
mod packet;
mod received;
mod shape;

pub use control::{Control, Peer, Side};
pub use gateway::{expected_ports, leaving, Gateway};
pub use packet::{addr, set_seq_ack, tuple, Segment, TTL, WINDOW};
pub use received::{Conflict, Received};
pub use shape::{reshape, Ipv6Ext, Shape};
