//! `--html`: every FTP session the engine followed, drawn as a ladder
//! (inside host, gateway, outside host; time going down) in one
//! self-contained HTML page, for teaching and troubleshooting.
//!
//! Nothing here knows FTP: the page presents the engine's own events and
//! the packets on both sides of the gateway as the replay (or the
//! monitor) produced them, the far side being what `replay --out`
//! writes. No number is recomputed; a shift shown is the difference of
//! the two packets' numbers.

mod arrow;
mod crossing;
mod fold;
pub mod layout;
mod note;
mod page;
mod record;
pub mod text;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use page::{render, Heading};
pub use record::Recorder;

/// The page could not be written.
#[derive(Debug)]
pub struct LadderError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for LadderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for LadderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes the page of `recorder` to `path`.
pub fn write(path: &Path, recorder: &Recorder, heading: &Heading) -> Result<(), LadderError> {
    std::fs::write(path, render(recorder, heading)).map_err(|source| LadderError {
        path: path.to_path_buf(),
        source,
    })
}
