//! Readiness on a file descriptor the supervisor opened for us: s6's `notification-fd`
//! (a newline, then the fd closed, as s6-supervise asks) and OpenRC's `notify=fd:N`
//! (supervise-daemon reads the pipe until a newline; an end of file before one means the
//! start failed). The fd is checked at start, kept from ssh and `--on-change` runs
//! (close-on-exec), written once and closed.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

use super::Unusable;
use super::sd_notify::READY_LINE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    S6,
    OpenRc,
}

impl Flavour {
    fn option(self) -> &'static str {
        match self {
            Flavour::S6 => "s6-fd",
            Flavour::OpenRc => "openrc-fd",
        }
    }

    /// Where the number comes from, for the message when the fd is not there.
    fn fix(self) -> &'static str {
        match self {
            Flavour::S6 => {
                "s6-supervise opens it when the service directory has a notification-fd file \
                 holding that number"
            }
            Flavour::OpenRc => {
                "supervise-daemon opens it when the init script sets notify=fd:N (OpenRC 0.62 \
                 or later)"
            }
        }
    }

    /// What goes on the fd when the tunnel is proven.
    fn line(self) -> &'static [u8] {
        match self {
            Flavour::S6 => b"\n",
            Flavour::OpenRc => READY_LINE,
        }
    }
}

pub struct ReadyFd {
    /// `None` once "ready" was written (the fd is closed then).
    fd: Option<std::fs::File>,
    flavour: Flavour,
    number: i32,
}

impl ReadyFd {
    /// Takes fd `number`: it must be open for writing; it is made close-on-exec so ssh
    /// and `--on-change` runs do not hold the supervisor's pipe open.
    pub fn open(number: i32, flavour: Flavour) -> Result<ReadyFd, Unusable> {
        use nix::libc::{F_GETFD, F_GETFL, F_SETFD, FD_CLOEXEC, O_ACCMODE, O_RDONLY, fcntl};
        let unusable = |what: &str| {
            Unusable(format!(
                "--readiness {}:{number}: {what} ({})",
                flavour.option(),
                flavour.fix()
            ))
        };
        // SAFETY: fcntl on a number only asks about it; nothing is owned yet.
        let flags = unsafe { fcntl(number, F_GETFD) };
        if flags < 0 {
            return Err(unusable(&format!("file descriptor {number} is not open")));
        }
        // SAFETY: as above.
        let status = unsafe { fcntl(number, F_GETFL) };
        if status < 0 || status & O_ACCMODE == O_RDONLY {
            return Err(unusable(&format!(
                "file descriptor {number} is not open for writing"
            )));
        }
        // SAFETY: as above; setting FD_CLOEXEC changes no ownership.
        if unsafe { fcntl(number, F_SETFD, flags | FD_CLOEXEC) } < 0 {
            return Err(unusable(&format!(
                "file descriptor {number}: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: the supervisor handed this fd to us to write and close; nothing else in
        // this process uses it (std opens nothing at a number we are given).
        let owned = unsafe { OwnedFd::from_raw_fd(number) };
        Ok(ReadyFd {
            fd: Some(owned.into()),
            flavour,
            number,
        })
    }

    /// Writes the ready line once and closes the fd.
    pub fn ready(&mut self) -> Result<(), String> {
        let Some(mut file) = self.fd.take() else {
            return Ok(());
        };
        // Dropping `file` closes the fd, also when the write failed.
        file.write_all(self.flavour.line()).map_err(|e| {
            format!(
                "--readiness {}:{}: telling the supervisor failed: {e}",
                self.flavour.option(),
                self.number
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, IntoRawFd};

    /// A pipe whose write end is handed over by number, as a supervisor does
    /// (close-on-exec, so no child another test spawns holds it open).
    fn pipe() -> (std::fs::File, i32) {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (read.into(), write.into_raw_fd())
    }

    #[test]
    fn writes_its_line_once_then_the_reader_sees_the_end() {
        for (flavour, line) in [
            (Flavour::S6, &b"\n"[..]),
            (Flavour::OpenRc, READY_LINE), // sd_notify.rs pins its bytes
        ] {
            let (mut read, number) = pipe();
            let mut fd = ReadyFd::open(number, flavour).unwrap();
            // SAFETY: asking about our own fd.
            let flags = unsafe { nix::libc::fcntl(number, nix::libc::F_GETFD) };
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0, "close-on-exec");
            fd.ready().unwrap();
            fd.ready().unwrap();
            let mut got = Vec::new();
            // End of file only comes when the write end is closed.
            read.read_to_end(&mut got).unwrap();
            assert_eq!(got, line);
        }
    }

    #[test]
    fn refuses_an_fd_that_is_not_open_or_not_writable() {
        let e = ReadyFd::open(987, Flavour::S6).err().unwrap().0;
        assert!(
            e.contains("s6-fd:987: file descriptor 987 is not open"),
            "{e}"
        );
        assert!(e.contains("notification-fd"), "{e}");
        let (read, number) = pipe();
        // SAFETY: closing the write end we own.
        drop(unsafe { OwnedFd::from_raw_fd(number) });
        let e = ReadyFd::open(read.as_raw_fd(), Flavour::OpenRc)
            .err()
            .unwrap()
            .0;
        assert!(e.contains("not open for writing"), "{e}");
        assert!(e.contains("notify=fd:N"), "{e}");
    }
}
