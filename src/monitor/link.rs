//! The frames an interface sees, through pnet's datalink (an AF_PACKET
//! socket: needs CAP_NET_RAW only), both directions, with a read timeout
//! so that the caller can look at its stop signals.

use std::io;
use std::time::Duration;

use pnet_datalink::{Channel, DataLinkReceiver, NetworkInterface};

use super::MonitorError;

/// How long a read waits for a frame before the caller looks around.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Room for the largest IP packet and its link header (a shorter buffer
/// would truncate frames silently).
const READ_BUFFER: usize = 65_536 + 64;

/// A receiving AF_PACKET socket on one interface.
pub struct Link {
    rx: Box<dyn DataLinkReceiver>,
}

/// What one read gave.
pub enum Read<'a> {
    Frame(&'a [u8]),
    /// Nothing within [`READ_TIMEOUT`] (or a signal interrupted the wait).
    Idle,
}

impl Link {
    /// Opens `name`; promiscuous for a mirror port (frames for other hosts).
    pub fn open(name: &str, promiscuous: bool) -> Result<Link, MonitorError> {
        let iface = find(name)?;
        let config = pnet_datalink::Config {
            read_buffer_size: READ_BUFFER,
            read_timeout: Some(READ_TIMEOUT),
            promiscuous,
            ..pnet_datalink::Config::default()
        };
        match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(_tx, rx)) => Ok(Link { rx }),
            Ok(_) => Err(MonitorError::NotEthernet(name.to_string())),
            Err(source) => Err(MonitorError::Open {
                interface: name.to_string(),
                source,
            }),
        }
    }

    pub fn read(&mut self) -> io::Result<Read<'_>> {
        match self.rx.next() {
            Ok(frame) => Ok(Read::Frame(frame)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Read::Idle)
            }
            Err(e) => Err(e),
        }
    }
}

fn find(name: &str) -> Result<NetworkInterface, MonitorError> {
    let all = pnet_datalink::interfaces();
    let known: Vec<String> = all.iter().map(|i| i.name.clone()).collect();
    all.into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| MonitorError::NoSuchInterface {
            name: name.to_string(),
            known,
        })
}
