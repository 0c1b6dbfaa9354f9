//! Offline work on captures: reading and writing pcap files, and replaying
//! them through the engine as a gateway would.

pub mod capture;
pub mod replay;
pub mod selection;
