//! The event socket as the poll loop sees it, one for both platforms: a plain fd for
//! the loop's poll, drained of every pending message. How the socket is opened, read
//! and parsed is the platform's: `rtnetlink::sys` on Linux, `pfroute::sys` on macOS.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::NetEvent;
#[cfg(target_os = "macos")]
use super::pfroute::sys as platform;
#[cfg(target_os = "linux")]
use super::rtnetlink::sys as platform;

/// Bound on messages read per drain, so a storm cannot starve the loop.
const MAX_READS: usize = 256;

/// The event socket: a plain fd for the loop's poll.
pub struct Source {
    fd: OwnedFd,
}

impl Source {
    pub fn open() -> nix::Result<Source> {
        Ok(Source {
            fd: platform::open_events()?,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending message (non-blocking) and returns their events.
    /// ENOBUFS means the kernel dropped messages: reported as [`NetEvent::Lost`].
    pub fn drain(&mut self) -> Vec<NetEvent> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; platform::BUF];
        for _ in 0..MAX_READS {
            match platform::read(&self.fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(platform::events(&buf[..n])),
                Err(Errno::EINTR) => continue,
                Err(Errno::ENOBUFS) => out.push(NetEvent::Lost),
                Err(_) => break, // EAGAIN: all read
            }
        }
        out
    }
}
