//! What the command line shows: log output and the replay report.

pub mod logging;
pub mod report;
