//! Signals: a self-pipe, so the main loop can sleep in poll and still wake at once.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
/// Set before the pipe is written: `take` reads the pipe only when it is set, so a
/// look between two polls costs no system call while no signal came.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the wake-up.
        unsafe { nix::libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

pub(super) struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
    /// A SIGCHLD was read and nobody has looked for the exited child since.
    child: Cell<bool>,
}

/// What a signal asks the watchdog to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Request {
    Stop,
    Reconnect,
}

impl Signals {
    pub(super) fn install() -> Result<Signals, String> {
        // pipe() and then fcntl rather than pipe2, which Apple lacks: the window between
        // the two is harmless here, as no other thread could fork in it.
        let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        for end in [&read, &write] {
            super::process::set_cloexec_nonblocking(end).map_err(|e| format!("pipe: {e}"))?;
        }
        use std::os::fd::AsRawFd;
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGCHLD,
        ] {
            // SAFETY: the handler only calls write(2).
            unsafe { sigaction(signal, &action) }
                .map_err(|e| format!("sigaction {signal}: {e}"))?;
        }
        Ok(Signals {
            read,
            _write: write,
            child: Cell::new(false),
        })
    }

    /// Sleeps up to `timeout`, until a signal, or until one of `also` (ssh's stderr,
    /// the network-change socket) is readable; returns the most important signal seen
    /// and sets `ready[i]` for each of `also` that is readable (or in error). Only
    /// what poll found readable is read: a wake-up by the clock reads nothing.
    pub(super) fn wait(
        &self,
        timeout: Duration,
        also: &[BorrowedFd],
        ready: &mut [bool],
    ) -> Option<Request> {
        let timeout = super::poll_timeout(timeout);
        let mut fds: Vec<PollFd> = std::iter::once(self.read.as_fd())
            .chain(also.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        // On an error (EINTR: a signal came) every fd counts as ready: reading one that
        // is not costs a system call, missing one would lose an event.
        let polled = poll(&mut fds, timeout).is_ok();
        let woke = |f: &PollFd| !polled || f.revents().is_some_and(|r| !r.is_empty());
        for (slot, f) in ready.iter_mut().zip(&fds[1..]) {
            *slot = woke(f);
        }
        if woke(&fds[0]) {
            self.read_pipe()
        } else {
            None
        }
    }

    /// The most important signal since the last look, without waiting.
    pub(super) fn take(&self) -> Option<Request> {
        // A byte written after this look is found by the next poll, which reads the
        // pipe whatever the flag says.
        if SIGNALLED.swap(false, Ordering::SeqCst) {
            self.read_pipe()
        } else {
            None
        }
    }

    fn read_pipe(&self) -> Option<Request> {
        SIGNALLED.store(false, Ordering::SeqCst);
        let fd = self.read.as_fd();
        let mut request = None;
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                match Signal::try_from(i32::from(b)) {
                    Ok(Signal::SIGTERM | Signal::SIGINT) => request = Some(Request::Stop),
                    Ok(Signal::SIGHUP | Signal::SIGUSR1) if request.is_none() => {
                        request = Some(Request::Reconnect)
                    }
                    Ok(Signal::SIGCHLD) => self.child.set(true),
                    _ => {}
                }
            }
        }
        request
    }

    /// Whether a SIGCHLD came since the last call: only then can ssh have exited.
    pub(super) fn take_child(&self) -> bool {
        self.child.replace(false)
    }
}
