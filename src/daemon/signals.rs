//! Signal plumbing; every `unsafe` block here is a plain libc call.

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;
use std::time::Duration;

/// Sent to a queue thread to interrupt its blocking `recv`.
pub const WAKE: libc::c_int = libc::SIGUSR1;

/// SIGINT, SIGTERM and SIGHUP, blocked and waited for.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks them in this thread, and so in every thread it starts
    /// afterwards: they stay pending until [`StopSignals::wait`].
    pub fn block() -> io::Result<Self> {
        // SAFETY: a zeroed sigset_t is valid storage; sigemptyset then
        // initialises it, sigaddset only sets bits, and pthread_sigmask
        // reads it and accepts a null pointer for the old mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(StopSignals { set })
        }
    }

    /// The stop signal that arrived within `timeout`, if any.
    pub fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(1),
            // Below 10^9: fits every c_long.
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` was initialised in block(), `ts` lives across the
        // call, and a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// Async-signal-safe: does nothing; its only effect is the EINTR.
extern "C" fn on_wake(_: libc::c_int) {}

/// Installs the SIGUSR1 handler, without SA_RESTART.
pub fn install_wake_handler() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
    // handler is an extern "C" fn with the signature sa_handler expects,
    // valid for the life of the program; the old action pointer may be null.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(WAKE, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Interrupts whatever the thread blocks in.
pub fn wake<T>(thread: &JoinHandle<T>) {
    // SAFETY: the handle is not joined yet, so its pthread_t names a
    // thread that is running or finished-but-unjoined: both are valid
    // targets for pthread_kill. WAKE has a handler, so it cannot kill.
    unsafe {
        libc::pthread_kill(thread.as_pthread_t(), WAKE);
    }
}
