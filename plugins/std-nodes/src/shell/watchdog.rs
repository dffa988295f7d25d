//! Makes a command's whole process group die with the process that started
//! it, even when that process is killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` on `sh` alone would kill only `sh`: whatever it started
//! would run on as orphans. So this process keeps one small watchdog, a
//! `sh` script reading a registration pipe whose write end only this process
//! holds (close-on-exec, so no command inherits it past `exec`). Every
//! command registers its process group on that pipe itself, between fork and
//! exec, so there is no moment in which it runs unregistered; it is
//! unregistered after it exited and before it is reaped (a group id cannot
//! be reused before then). The kernel closes the write end when this process
//! dies, however it dies: the script's `read` sees end-of-file and it kills
//! every group still registered.
//!
//! The command stays this process's direct child and leads its own group, so
//! its pid, exit status, `$PPID` and `kill -- -$$` are what they would be
//! without the watchdog. The cost is two small pipe writes per command.

use std::{
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    process::{Child, Command, Stdio},
    sync::Mutex,
};

/// Registers (`+ <pgid>`) and unregisters (`- <pgid>`) groups; at end of
/// input kills those still registered. Plain POSIX sh, no other program.
const SCRIPT: &str = r#"groups=' '
while read -r op id; do
  case "$op" in
    +) groups="$groups$id " ;;
    -) case "$groups" in *" $id "*) groups="${groups%% $id *} ${groups#* $id }" ;; esac ;;
  esac
done
for g in $groups; do kill -KILL -"$g" 2>/dev/null; done"#;

/// The running watchdog and the write end of its registration pipe.
struct Registry {
    watchdog: Child,
    pipe: OwnedFd,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// The registration pipe's write end, starting the watchdog when there is
/// none (or it died).
fn registration_pipe() -> io::Result<RawFd> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(current) = registry.as_mut()
        && current.watchdog.try_wait()?.is_none()
    {
        return Ok(current.pipe.as_raw_fd());
    }
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors, owned by no one else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let watchdog = Command::new("sh")
        .args(["-c", SCRIPT])
        .stdin(Stdio::from(read_end))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a Ctrl-C meant for the host's terminal group does not end it.
        .process_group(0)
        .spawn()?;
    let pipe = write_end.as_raw_fd();
    if let Some(mut old) = registry.replace(Registry { watchdog, pipe: write_end }) {
        let _ = old.watchdog.wait();
    }
    Ok(pipe)
}

/// `+ <pid>\n` or `- <pid>\n` without allocating (it is written between fork and exec).
fn line(op: u8, pid: u32, buf: &mut [u8; 16]) -> &[u8] {
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (pid, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[0] = op;
    buf[1] = b' ';
    for i in 0..len {
        buf[2 + i] = digits[len - 1 - i];
    }
    buf[2 + len] = b'\n';
    &buf[..3 + len]
}

/// Makes `command` lead a new process group that the watchdog will kill if
/// this process dies; also asks for SIGKILL should the starting thread die.
/// Without a watchdog (no `sh`, no descriptors) the command runs with only
/// the latter, and the reason is returned for the caller to log.
pub fn watch(command: &mut Command) -> io::Result<()> {
    command.process_group(0);
    // Taken here, in the parent: read in the child it would already be the
    // reaper's pid if the parent had died.
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let pipe = registration_pipe();
    let fd = pipe.as_ref().ok().copied();
    // SAFETY: the closure makes only async-signal-safe calls (prctl,
    // getppid, getpid, write, _exit) and does not allocate.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died before the request took effect.
                libc::_exit(128 + libc::SIGKILL);
            }
            if let Some(fd) = fd {
                let mut buf = [0u8; 16];
                let text = line(b'+', libc::getpid() as u32, &mut buf);
                // Atomic: a pipe write under PIPE_BUF bytes is never interleaved.
                if libc::write(fd, text.as_ptr().cast(), text.len()) != text.len() as isize {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    pipe.map(|_| ())
}

/// Tells the watchdog that group `pgid` is done. Call it after the command
/// exited and before reaping it, so the id cannot have been reused.
pub fn release(pgid: u32) {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(current) = registry.as_ref() {
        let mut buf = [0u8; 16];
        let text = line(b'-', pgid, &mut buf);
        // SAFETY: writing a buffer we own to a descriptor the registry owns.
        // A failure (the watchdog died) only means nothing watches the group.
        unsafe { libc::write(current.pipe.as_raw_fd(), text.as_ptr().cast(), text.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lines_are_decimal_pids() {
        let mut buf = [0u8; 16];
        assert_eq!(line(b'+', 0, &mut buf), b"+ 0\n");
        assert_eq!(line(b'-', 4_194_304, &mut buf), b"- 4194304\n");
        assert_eq!(line(b'+', u32::MAX, &mut buf), b"+ 4294967295\n");
    }
}
