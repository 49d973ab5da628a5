//! libproc's `proc_pidinfo(PROC_PIDTBSDINFO)` and `sysctl(KERN_PROCARGS2)`. Type-checked
//! for both Apple targets; never run on a Mac (the byte parsing is tested everywhere).

use nix::libc;

use super::{ProcInfo, RunState, parse_procargs2};

pub fn inspect(pid: i32) -> Option<ProcInfo> {
    // SAFETY: proc_bsdinfo is plain old data; all-zero is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // arg 1: also find a zombie (XNU's proc_pidinfo looks zombies up for BSDINFO only
    // when asked), so a zombie reads as a zombie rather than as no process.
    // SAFETY: the buffer is `size` bytes of writable memory we own.
    let got = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            1,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if got != size {
        return None;
    }
    let name = c_chars(&info.pbi_name);
    let name = if name.is_empty() {
        c_chars(&info.pbi_comm)
    } else {
        name
    };
    let state = match info.pbi_status {
        libc::SSTOP => RunState::Stopped,
        libc::SZOMB => RunState::Zombie,
        _ => RunState::Active,
    };
    Some(ProcInfo { name, state })
}

/// A NUL-terminated (or full) fixed-size C string.
fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn argv(pid: i32) -> Option<Vec<String>> {
    let mut buf = vec![0u8; arg_max()];
    let mut len: libc::size_t = buf.len();
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    // SAFETY: `buf` holds `len` writable bytes; the kernel writes at most that and
    // stores the length it wrote in `len`.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            mib.len() as libc::c_uint,
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    buf.truncate(len);
    parse_procargs2(&buf)
}

/// `kern.argmax`, the most KERN_PROCARGS2 can return (1 MiB on current macOS); the
/// fallback and the cap keep a bad answer from sizing the buffer.
fn arg_max() -> usize {
    let mut value: libc::c_int = 0;
    let mut len: libc::size_t = std::mem::size_of::<libc::c_int>();
    let mut mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
    // SAFETY: `value` is a writable c_int of `len` bytes.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            mib.len() as libc::c_uint,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    match usize::try_from(value) {
        Ok(n) if rc == 0 && n > 0 => n.min(16 << 20),
        _ => 1 << 20,
    }
}
