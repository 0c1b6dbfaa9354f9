//! Living under a service manager: systemd's readiness protocol
//! (`Type=notify`: READY=1 once the queues are bound, RELOADING=1 and
//! STOPPING=1), and SIGHUP re-reading the policy from the configuration.

use std::time::Duration;

use ftpct_engine::engine::{Input, PolicyUpdate};
use ftpct_engine::policy::Policy;
use tracing::{info, warn};

use super::Timers;
use crate::cli::config::{PolicySettings, Reload};
use crate::driver::EngineHost;

/// Tells the service manager, if there is one (NOTIFY_SOCKET), that
/// ftpct is ready: its queues are bound and their threads run.
pub fn notify_ready(queues: &[u16]) {
    let status = format!("helping FTP on NFQUEUE queue(s) {queues:?}");
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// Tells the service manager that ftpct is stopping.
pub fn notify_stopping() {
    send(&[sd_notify::NotifyState::Stopping]);
}

fn send(states: &[sd_notify::NotifyState<'_>]) {
    // Without NOTIFY_SOCKET this does nothing; a failure only costs the
    // manager's view of our state, never the packets.
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot tell the service manager our state (NOTIFY_SOCKET): {e}");
    }
}

impl Timers {
    /// SIGHUP: the policy from the file again (the flags still win); a
    /// file that cannot be read or parsed keeps the policy in force.
    pub(super) fn reload(&mut self, reload: &Reload) {
        send(&[sd_notify::NotifyState::Reloading]);
        match reload.policy() {
            Ok(p) => {
                let timeout = Duration::from_secs(p.expect_timeout);
                let update = Input::Policy(PolicyUpdate {
                    policy: policy_of(&p),
                    expect_timeout: timeout,
                    per_session: p.max_expect_per_session,
                });
                let applied = (&mut &*self.shared).round(self.shared.now(), update);
                self.shared.metrics().reloaded(applied.is_some());
                if applied.is_some() {
                    self.expect_timeout = timeout;
                    info!(
                        "SIGHUP: policy reloaded from {}: min_data_port={} allow_fxp={:?} expect_timeout={}s max_expect_per_session={}",
                        reload.file.path.display(),
                        p.min_data_port,
                        p.allow_fxp,
                        p.expect_timeout,
                        p.max_expect_per_session
                    );
                }
            }
            Err(e) => {
                self.shared.metrics().reloaded(false);
                warn!("SIGHUP: {e}; the policy in force is kept");
            }
        }
        send(&[sd_notify::NotifyState::Ready]);
    }
}

fn policy_of(p: &PolicySettings) -> Policy {
    Policy {
        min_data_port: p.min_data_port,
        allow_fxp: p.allow_fxp.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    /// sd-notify writes READY=1 to the socket NOTIFY_SOCKET names.
    #[test]
    fn ready_reaches_the_notify_socket() {
        let path = std::env::temp_dir().join(format!("ftpct-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        // No other test of this binary reads NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        super::notify_ready(&[0, 1]);
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        std::env::remove_var("NOTIFY_SOCKET");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(msg.contains("READY=1"), "{msg}");
        assert!(msg.contains("queue(s) [0, 1]"), "{msg}");
        std::fs::remove_file(&path).ok();
    }
}
