//! Why a configuration cannot be used. `ftpct` exits with
//! [`crate::cli::exit::CONFIG`] on every one of these.

use std::fmt;
use std::path::PathBuf;

use super::ranges::RangeError;

#[derive(Debug)]
pub enum ConfigError {
    /// `--config PATH` names a file that does not exist (only the default
    /// path may be absent).
    Missing { path: PathBuf },
    /// The file exists but cannot be read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong key or value; the message
    /// carries the line, the column and the key.
    Parse { path: PathBuf, message: String },
    /// A number outside its range, from the file or a flag.
    Range(RangeError),
    /// The queues of the rules must be consecutive.
    Queues(String),
    /// The ipset name is not one ipset takes.
    SetName(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { path } => write!(
                f,
                "configuration {}: no such file (--config must name a file; without it an absent {} means the defaults)",
                path.display(),
                super::DEFAULT_PATH
            ),
            ConfigError::Read { path, source } => write!(
                f,
                "cannot read the configuration {}: {source} (give another with --config PATH)",
                path.display()
            ),
            ConfigError::Parse { path, message } => {
                write!(f, "configuration {}: {message}", path.display())
            }
            ConfigError::Range(e) => write!(f, "configuration: {e}"),
            ConfigError::Queues(q) => write!(
                f,
                "queues {q}: the rules can only spread over consecutive queues (write FIRST:LAST)"
            ),
            ConfigError::SetName(e) => write!(f, "ipset: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Range(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RangeError> for ConfigError {
    fn from(e: RangeError) -> Self {
        ConfigError::Range(e)
    }
}
