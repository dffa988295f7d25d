//! Makes a command's whole process group die with the process that started
//! it, even when that process is killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` on `sh` ([`die_with_parent`]) kills only `sh`: whatever
//! it started would run on as orphans. So every command also gets a
//! [`Watchdog`]: a tiny `sh -c 'read _; kill -KILL 0'` that leads a new
//! process group, which the command then joins. Its stdin is the read end of
//! a process-wide "lifeline" pipe whose write end only this process holds
//! (close-on-exec, so no command inherits it). The kernel closes that end
//! when this process dies, however it dies; `read` sees end-of-file and the
//! watchdog kills its group, the command's. When the command ends normally
//! the watchdog is killed and reaped here, so it leaves no zombie.
//!
//! The watchdog is a real exec'd program, not a fork of this process: it
//! holds none of our memory, descriptors or signal handlers. The command
//! stays this process's direct child, so its pid, exit status and `$PPID`
//! are unchanged; only its process group is the watchdog's (`kill 0` in the
//! command still reaches the whole group; `kill -- -$$` does not).

use std::{
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Child, Command, Stdio},
    sync::Mutex,
};

/// The lifeline's (read end, write end), both close-on-exec; the write end is
/// never closed, so it lives exactly as long as this process. Created on
/// first use; a failure (no descriptors left) is retried next time.
fn lifeline_read_end() -> io::Result<BorrowedFd<'static>> {
    static LIFELINE: Mutex<Option<(OwnedFd, OwnedFd)>> = Mutex::new(None);
    let mut lifeline = LIFELINE.lock().unwrap_or_else(|e| e.into_inner());
    if lifeline.is_none() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned these two descriptors, owned by no one else.
        *lifeline = Some(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) });
    }
    let (read_end, _) = lifeline.as_ref().expect("just created");
    // SAFETY: the pipe is never closed (the static holds it for the life of
    // the process), so the descriptor outlives any borrow.
    Ok(unsafe { BorrowedFd::borrow_raw(read_end.as_raw_fd()) })
}

/// Asks the kernel to SIGKILL the command when the thread that starts it
/// dies; a second line of defence should no watchdog start.
pub fn die_with_parent(command: &mut Command) {
    // Taken here, in the parent: read in the child it would already be the
    // reaper's pid if the parent had died.
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: prctl, getppid and _exit are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
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

/// The leader of the process group a command joins; dropping it kills and
/// reaps the watchdog alone.
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts the watchdog, or says why it could not (the command then runs
    /// with only [`die_with_parent`]).
    pub fn start() -> io::Result<Self> {
        let lifeline = lifeline_read_end()?.try_clone_to_owned()?;
        let child = Command::new("sh")
            .args(["-c", "read _; kill -KILL 0"])
            .stdin(Stdio::from(lifeline))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self { child })
    }

    /// The process group the command is to join (the watchdog's pid).
    pub fn group(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
