//! What the command line shows: the configuration, log output, the
//! replay report, exit codes, man pages and completions.

pub mod config;
pub mod config_page;
pub mod exit;
pub mod generate;
pub mod logging;
pub mod man_sections;
pub mod monitor;
pub mod permission;
pub mod report;
pub mod status;
