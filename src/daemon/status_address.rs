//! Where `ftpct run` answers `ftpct status`: an abstract unix socket
//! (`@NAME`, the default), which belongs to the network namespace it was
//! bound in, so that each namespace's `ftpct status` reaches its own
//! daemon; or a file (`PATH`), which every namespace sharing the mount
//! namespace would see.

use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default: an abstract name, one per network namespace.
pub const DEFAULT: &str = "@ftpct-status";
/// sun_path holds 108 bytes; an abstract name takes one for its leading NUL.
const MAX_NAME: usize = 107;

/// `@NAME` (abstract) or a file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddress {
    Abstract(String),
    Path(PathBuf),
}

impl Default for StatusAddress {
    fn default() -> Self {
        StatusAddress::Abstract(DEFAULT.trim_start_matches('@').to_string())
    }
}

impl StatusAddress {
    /// A listener at this address (a file's directory is made if missing).
    pub fn bind(&self) -> io::Result<UnixListener> {
        match self {
            StatusAddress::Abstract(name) => {
                UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
            }
            StatusAddress::Path(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                UnixListener::bind(path)
            }
        }
    }

    pub fn connect(&self) -> io::Result<UnixStream> {
        match self {
            StatusAddress::Abstract(name) => {
                UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
            }
            StatusAddress::Path(path) => UnixStream::connect(path),
        }
    }
}

impl fmt::Display for StatusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusAddress::Abstract(name) => write!(f, "@{name}"),
            StatusAddress::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for StatusAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix('@') {
            Some("") => Err("'@': an abstract socket needs a name after the @".into()),
            Some(name) if name.len() > MAX_NAME || name.contains('\0') => Err(format!(
                "'{s}': an abstract name has at most {MAX_NAME} bytes and no NUL"
            )),
            Some(name) => Ok(StatusAddress::Abstract(name.to_string())),
            None if s.is_empty() => Err("an empty socket path".into()),
            None => Ok(StatusAddress::Path(PathBuf::from(s))),
        }
    }
}

impl Serialize for StatusAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for StatusAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_means_abstract_the_rest_a_path() {
        assert_eq!(
            "@ftpct-status".parse(),
            Ok(StatusAddress::Abstract("ftpct-status".into()))
        );
        assert_eq!(StatusAddress::default().to_string(), DEFAULT);
        assert_eq!(
            "/run/ftpct/ftpct.sock".parse(),
            Ok(StatusAddress::Path("/run/ftpct/ftpct.sock".into()))
        );
        assert!("@".parse::<StatusAddress>().is_err());
        assert!("".parse::<StatusAddress>().is_err());
        assert!(format!("@{}", "x".repeat(108))
            .parse::<StatusAddress>()
            .is_err());
    }

    #[test]
    fn an_abstract_name_is_taken_once() {
        let name = format!("@ftpct-test-{}", std::process::id());
        let addr: StatusAddress = name.parse().expect("address");
        let first = addr.bind().expect("bind");
        let again = addr.bind().expect_err("taken");
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
        addr.connect().expect("connect");
        drop(first);
        assert!(addr.connect().is_err(), "gone with its listener");
    }
}
