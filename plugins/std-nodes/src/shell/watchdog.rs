//! Makes a command's whole process group die with the process that started
//! it, even when that process is killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` on `sh` ([`die_with_parent`]) kills only `sh`: whatever
//! it started would run on as orphans. So every command also gets a
//! [`Watchdog`]: a small process forked from this one, leading the process
//! group the command then joins, that blocks reading a process-wide
//! "lifeline" pipe whose write end only this process holds (close-on-exec,
//! so no command inherits it). The kernel closes that end when this process
//! dies, however it dies; the read returns end-of-file and the watchdog
//! kills its group. When the command ends normally the watchdog is killed
//! and reaped here, so it leaves no zombie.
//! The command stays this process's direct child: its pid, exit status and
//! `$PPID` are what they would be without a watchdog.
//!
//! The watchdog is forked from a multi-threaded process, so it uses only
//! async-signal-safe calls: no allocation, no locks.

use std::{io, os::unix::process::CommandExt, process::Command, sync::OnceLock};

/// The lifeline's (read end, write end), both close-on-exec; created once and
/// never closed, so the write end lives exactly as long as this process.
fn lifeline() -> Option<(libc::c_int, libc::c_int)> {
    static LIFELINE: OnceLock<Option<(libc::c_int, libc::c_int)>> = OnceLock::new();
    *LIFELINE.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        (unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0).then_some((fds[0], fds[1]))
    })
}

/// Asks the kernel to SIGKILL the command when the thread that starts it
/// dies: covers the moment before its [`Watchdog`] exists.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let parent = libc::getppid();
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died before the request took effect.
                libc::_exit(128 + libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// A process leading an otherwise empty process group, for the command to
/// join, that kills the group if this process dies first; dropping it stops
/// (kills and reaps) the watchdog alone.
///
/// The group exists before the command starts, so there is no moment in
/// which the command runs unwatched.
pub struct Watchdog {
    pid: libc::pid_t,
}

impl Watchdog {
    /// `None` when no lifeline or process could be made (the command then
    /// runs with only [`die_with_parent`]).
    pub fn start() -> Option<Self> {
        let (read_end, _) = lifeline()?;
        // SAFETY: the child only makes async-signal-safe calls (see `watch`).
        match unsafe { libc::fork() } {
            -1 => None,
            0 => unsafe {
                libc::setpgid(0, 0);
                watch(read_end)
            },
            pid => {
                // Both sides set the group, so it exists whichever runs first.
                // SAFETY: `pid` is our child, which never execs.
                unsafe { libc::setpgid(pid, pid) };
                Some(Self { pid })
            }
        }
    }

    /// The process group the command is to join.
    pub fn group(&self) -> libc::pid_t {
        self.pid
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // SAFETY: `pid` is our own child, not yet reaped, so it cannot have
        // been reused.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, std::ptr::null_mut(), 0) == -1 && *libc::__errno_location() == libc::EINTR {}
        }
    }
}

/// The watchdog's whole life: never returns.
unsafe fn watch(read_end: libc::c_int) -> ! {
    // SAFETY: close_range/close, read, kill and _exit are async-signal-safe;
    // this process owns nothing but `read_end`.
    unsafe {
        // Hold no descriptor but the lifeline's read end: not the command's
        // pipes (their readers must see EOF), not the lifeline's write end.
        close_all_but(read_end);
        let mut byte = 0u8;
        loop {
            let n = libc::read(read_end, (&raw mut byte).cast(), 1);
            if n == 0 {
                // Every write end is closed: the process that started the command
                // is gone. Take our group, the command's, with us.
                libc::kill(0, libc::SIGKILL);
                libc::_exit(0);
            }
            if n < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(0);
            }
        }
    }
}

unsafe fn close_all_but(keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    // SAFETY: closing descriptors of a process that uses none of them.
    unsafe {
        let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0, keep - 1, 0) == 0;
        let above = libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0) == 0;
        if !(below && above) {
            for fd in (0..1024).filter(|&fd| fd != keep as libc::c_int) {
                libc::close(fd);
            }
        }
    }
}
