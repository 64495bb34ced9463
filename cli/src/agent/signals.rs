//! The agent's signals, taken synchronously: SIGHUP, SIGTERM and SIGINT are blocked
//! before any thread starts (threads inherit the mask) and waited for with
//! sigtimedwait(2) between reconcile passes, so that no handler ever runs in the
//! middle of an attach.

use std::time::Duration;

/// What a signal asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Reload,
    Stop,
}

pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGHUP, SIGTERM and SIGINT in this thread and in those it starts later.
    pub fn block() -> Signals {
        // SAFETY: sigemptyset initialises the zeroed set; sigaddset gets valid signal
        // numbers; pthread_sigmask reads the set and writes no old mask (null).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Signals { set }
        }
    }

    /// The next signal, or `None` when `timeout` passed first.
    pub fn wait(&self, timeout: Duration) -> Option<Asked> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait = libc::timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(libc::time_t::MAX),
                tv_nsec: left.subsec_nanos().into(),
            };
            // SAFETY: sigtimedwait reads the initialised set and the timespec, and is
            // given no siginfo to write (null).
            let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &wait) };
            match signal {
                libc::SIGHUP => return Some(Asked::Reload),
                libc::SIGTERM | libc::SIGINT => return Some(Asked::Stop),
                // EAGAIN: the time is up; EINTR (stopped and continued): wait on.
                _ if left.is_zero() => return None,
                _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => {
                    return None;
                }
                _ => {}
            }
        }
    }
}
