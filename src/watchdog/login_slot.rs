//! A per-destination login slot shared by every watchdog on this machine, so that a crowd
//! of them (different tunnels, users, sandboxes) does not log in to one server all at
//! once and get thrown away by sshd's `MaxStartups`.
//!
//! The slots need no shared file, which `PrivateTmp=` and `DynamicUser=` units would not
//! have: slot `k` of a destination is a Linux abstract-namespace unix socket name,
//! `\0tunnelctl-login/HASH/k`. Binding it succeeds only while no socket holds that name,
//! whoever owns it; the kernel frees the name when its holder closes it or dies, so a
//! crashed watchdog leaves nothing behind. Abstract names belong to the network
//! namespace: watchdogs with `PrivateNetwork=` (or in other containers) do not share
//! them, and do not share a network path to the server with us either.
//!
//! Only ever tried, never waited for: [`try_take`] does not block, and a watchdog must
//! never stay down for a slot (another local user can squat the names), so the caller
//! retries briefly and then logs in without one. Elsewhere (macOS, the BSDs) or where a
//! sandbox refuses the socket, there are no slots ([`Taken::Unsupported`]).

use std::os::fd::OwnedFd;

/// Slots per destination. OpenSSH's sshd starts dropping unauthenticated connections past
/// 10 (`MaxStartups 10:30:100`, counted over all its clients): 10 from one machine reach
/// that and no further, and 20 tunnels of one machine are in within two logins' time
/// (the fault bench's crowd of 20: every tunnel up after 3.3 s with 10 slots, 3.8 s
/// with 8, and with 4 the crowd queued behind its own slots longer than a sshd drop
/// costs). Where several machines share a bastion, the busy server's short random
/// retry takes the rest.
pub const SLOTS: u32 = 10;

/// A held login slot: the name is the server's to use until this is dropped (or the
/// process dies). Hold it from starting ssh until its login is over (the control socket
/// appeared or ssh exited). The descriptor is close-on-exec, so ssh does not inherit it.
#[derive(Debug)]
pub struct LoginSlot {
    index: u32,
    _name: OwnedFd,
}

impl LoginSlot {
    /// Which of the [`SLOTS`] this is (0-based), for the log.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// What [`try_take`] found.
#[derive(Debug)]
pub enum Taken {
    Slot(LoginSlot),
    /// Every slot of this destination is held (by watchdogs here, or by a squatter).
    AllBusy,
    /// No slots on this system, or the sandbox refused the socket: log in without one.
    Unsupported,
}

/// Takes a free login slot for `destination` (`host:port` as ssh connects to it; the host
/// is compared without regard to ASCII case). Never blocks.
pub fn try_take(destination: &str) -> Taken {
    imp::try_take(destination)
}

/// `tunnelctl-login/HASH/k` (the abstract name, without its leading NUL): FNV-1a 64 of the
/// destination, stable across builds and versions (std's hasher promises neither), so
/// watchdogs of different releases on one machine share the slots.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn slot_name(destination: &str, k: u32) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in destination.bytes().map(|b| b.to_ascii_lowercase()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("tunnelctl-login/{hash:016x}/{k}")
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
    use std::os::fd::AsRawFd;

    use super::{LoginSlot, SLOTS, Taken, slot_name};

    pub(super) fn try_take(destination: &str) -> Taken {
        for index in 0..SLOTS {
            let Ok(address) = UnixAddr::new_abstract(slot_name(destination, index).as_bytes())
            else {
                return Taken::Unsupported;
            };
            // A stream socket that never listens: it holds the name, and nobody can
            // connect to it or send it anything.
            let Ok(fd) = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            ) else {
                return Taken::Unsupported;
            };
            match bind(fd.as_raw_fd(), &address) {
                Ok(()) => return Taken::Slot(LoginSlot { index, _name: fd }),
                Err(Errno::EADDRINUSE) => continue,
                Err(_) => return Taken::Unsupported,
            }
        }
        Taken::AllBusy
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::Taken;

    pub(super) fn try_take(_destination: &str) -> Taken {
        Taken::Unsupported
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    /// A destination no other test (nor another test run) uses.
    fn destination(test: &str) -> String {
        format!("{test}.{}.invalid:22", std::process::id())
    }

    fn slot(taken: Taken) -> LoginSlot {
        match taken {
            Taken::Slot(slot) => slot,
            other => panic!("no slot: {other:?}"),
        }
    }

    /// A name freed here can stay held for a moment by a process another test is just
    /// spawning (between its fork and exec the child has copies of our descriptors):
    /// poll, bounded.
    fn take_within(destination: &str, limit: Duration) -> Taken {
        let deadline = Instant::now() + limit;
        loop {
            match try_take(destination) {
                Taken::AllBusy if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                taken => return taken,
            }
        }
    }

    #[test]
    fn takes_in_one_process_get_different_slots_until_all_are_busy() {
        let d = destination("all-busy");
        let held: Vec<LoginSlot> = (0..SLOTS).map(|_| slot(try_take(&d))).collect();
        let indices: Vec<u32> = held.iter().map(LoginSlot::index).collect();
        assert_eq!(indices, (0..SLOTS).collect::<Vec<_>>());
        assert!(matches!(try_take(&d), Taken::AllBusy));
        assert!(matches!(try_take(&d), Taken::AllBusy));
        drop(held);
    }

    #[test]
    fn dropping_a_slot_frees_it_and_destinations_are_independent() {
        let (d, other) = (destination("drop"), destination("other"));
        let mut held: Vec<LoginSlot> = (0..SLOTS).map(|_| slot(try_take(&d))).collect();
        assert!(matches!(try_take(&d), Taken::AllBusy));
        // A full destination leaves another one alone, and its host is one name whatever
        // its case.
        let elsewhere = slot(try_take(&other));
        assert_eq!(elsewhere.index(), 0);
        let again = slot(try_take(&other.to_uppercase()));
        assert_eq!(again.index(), 1);

        let freed = held.remove(2);
        drop(freed);
        let retaken = slot(take_within(&d, Duration::from_secs(2)));
        assert_eq!(retaken.index(), 2);
        assert!(matches!(try_take(&d), Taken::AllBusy));
    }

    #[test]
    fn names_differ_by_destination_and_slot_and_fit_a_socket_address() {
        let a = slot_name("bastion.example.org:22", 0);
        assert_eq!(a, slot_name("Bastion.Example.ORG:22", 0));
        assert_ne!(a, slot_name("bastion.example.org:2222", 0));
        assert_ne!(a, slot_name("bastion.example.org:22", 1));
        assert!(
            a.starts_with("tunnelctl-login/") && a.ends_with("/0"),
            "{a}"
        );
        // FNV-1a 64 pinned: its value for "a" (the published test vector).
        assert_eq!(slot_name("a", 3), "tunnelctl-login/af63dc4c8601ec8c/3");
        let long = slot_name(&"x".repeat(1000), SLOTS - 1);
        assert!(long.len() < 100, "{long}");
    }

    /// The kernel frees a name when its holder dies: a slot handed to a child process
    /// (which alone keeps it once ours is closed) is busy while the child lives and free
    /// as soon as it is killed.
    #[test]
    fn a_slot_held_by_a_killed_process_is_free_again() {
        use std::os::unix::process::CommandExt;
        let d = destination("killed");
        let given = slot(try_take(&d));
        let fd = given._name.as_raw_fd();
        let mut sleep = std::process::Command::new("sleep");
        sleep.arg("60");
        // Only in the child, between fork and exec: keep the slot's descriptor open
        // across exec (fcntl is async-signal-safe).
        unsafe {
            sleep.pre_exec(move || {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = sleep.spawn().expect("run sleep");
        drop(given);

        let rest: Vec<LoginSlot> = (1..SLOTS).map(|_| slot(try_take(&d))).collect();
        let busy = matches!(try_take(&d), Taken::AllBusy);
        let _ = child.kill();
        let _ = child.wait();
        assert!(busy, "the child's slot was free while it lived");
        let retaken = slot(take_within(&d, Duration::from_secs(2)));
        assert_eq!(retaken.index(), 0);
        drop(rest);
    }
}
