//! Writing a file so that a reader sees the old content or the new, never
//! half of it, and never through someone else's link.
//!
//! [`write`] does, in order:
//! 1. refuses a destination that exists and is not a regular file: a
//!    symbolic link, a directory, a FIFO, a socket or a device (`lstat`, so a
//!    link is never followed);
//! 2. the first time this process writes into a directory, removes the stale
//!    temporaries killed writers left there (see [`remove_stale_temporaries`]);
//! 3. creates the temporary in the destination's directory exclusively
//!    (`O_CREAT | O_EXCL`: a link planted under the name fails the open,
//!    never redirects it) under an unpredictable name
//!    `.<name>.<pid>.<random>.tmp`, and holds an exclusive `flock` on it
//!    while writing, so cleaners elsewhere leave it alone;
//! 4. gives it the replaced file's permission bits (and owner, as root);
//! 5. writes, fsyncs, renames it over the destination and fsyncs the
//!    directory, so after a crash the file is either old or new.
//!
//! The rename makes a new inode: hard links to the old file keep the old
//! content. Something that appears at the destination between the last
//! check and the rename (a link, a FIFO) is replaced by the rename, never
//! written into.
//!
//! A destination that is a symbolic link is refused, not followed and not
//! replaced: following it is how a planted link redirects a write, and
//! silently replacing a link someone made on purpose loses their layout.
//! Links among the *parent* directories are followed: they are the user's
//! own layout, and the name inside them is still created exclusively.

use std::{
    ffi::OsStr,
    fs,
    io::{self, Write},
    os::{
        fd::AsRawFd,
        unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

/// The last part of every temporary's name.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Length of the random part of a temporary's name.
const RANDOM_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("{} is a {kind}, not a regular file; refusing to replace it (remove it, or write somewhere else)", path.display())]
    NotARegularFile { path: PathBuf, kind: &'static str },
    #[error(
        "{} is a symbolic link; files are never written through or over links (remove the link, or write to the file it points to)",
        path.display()
    )]
    SymbolicLink { path: PathBuf },
    #[error("{} names no file (it ends in `..` or `/`)", path.display())]
    NoFileName { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> WriteError + 'p {
    move |source| WriteError::Io { action, path: path.to_owned(), source }
}

/// What a non-regular file is, in words.
pub fn kind_of(file_type: fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_fifo() {
        "named pipe (FIFO)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// `Ok` when `path` does not exist or is a regular file; links are not followed.
pub fn check_destination(path: &Path) -> Result<(), WriteError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("inspect", path)(e)),
        Ok(meta) if meta.file_type().is_symlink() => Err(WriteError::SymbolicLink { path: path.to_owned() }),
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(WriteError::NotARegularFile { path: path.to_owned(), kind: kind_of(meta.file_type()) }),
    }
}

/// The directory a relative or absolute file path lives in.
fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `data` to `path` atomically, creating parent directories; see the
/// module documentation for what is refused.
pub fn write(path: &Path, data: &[u8]) -> Result<(), WriteError> {
    let name = path.file_name().ok_or_else(|| WriteError::NoFileName { path: path.to_owned() })?;
    let dir = parent_of(path);
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    check_destination(path)?;
    clean_once(dir);
    let prefix = format!(".{}.{}.", shortened(&name.to_string_lossy()), std::process::id());
    // tempfile opens with O_CREAT | O_EXCL and retries on a name collision.
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(RANDOM_LEN)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io_error("create a temporary file in", dir))?;
    // SAFETY: flock on a descriptor we own; released when it closes.
    unsafe { libc::flock(temp.as_file().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    keep_attributes(path, temp.as_file()).map_err(io_error("copy the permissions of", path))?;
    temp.write_all(data).map_err(io_error("write", temp.path()))?;
    temp.as_file().sync_all().map_err(io_error("sync", temp.path()))?;
    // Once more, just before the rename: something may have appeared meanwhile.
    check_destination(path)?;
    temp.persist(path).map_err(|e| io_error("rename into place", path)(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

/// Longest part of the destination's name kept in a temporary's name, so
/// the temporary's name stays within the file system's limit (255 bytes).
const MAX_NAME_IN_TEMP: usize = 200;

fn shortened(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_IN_TEMP);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The replaced file's permission bits, and as root its owner, on the temporary.
fn keep_attributes(path: &Path, temp: &fs::File) -> io::Result<()> {
    let Ok(old) = fs::symlink_metadata(path) else { return Ok(()) };
    temp.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::fchown(temp, Some(old.uid()), Some(old.gid()))?;
    }
    Ok(())
}

/// The writer's pid when `entry` is named like one of [`write`]'s
/// temporaries: `.<name>.<pid>.<random>.tmp`.
fn temporary_owner(entry: &OsStr) -> Option<u32> {
    let rest = entry.to_str()?.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let (rest, random) = rest.rsplit_once('.')?;
    let (name, pid) = rest.rsplit_once('.')?;
    let random_ok = random.len() == RANDOM_LEN && random.chars().all(|c| c.is_ascii_alphanumeric());
    let pid_ok = !name.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (random_ok && pid_ok).then(|| pid.parse().ok()).flatten()
}

/// [`remove_stale_temporaries`] once per directory per process: a directory
/// of many outputs is scanned once, not once per output.
fn clean_once(dir: &Path) {
    static CLEANED: std::sync::Mutex<Option<std::collections::HashSet<PathBuf>>> = std::sync::Mutex::new(None);
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let first = CLEANED.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_default().insert(key);
    if first {
        remove_stale_temporaries(dir);
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temporaries in `dir` that killed writers left (a run killed
/// mid-write). A temporary is stale when its writer's pid no longer runs
/// here and nobody holds its lock (a writer in another pid namespace or on
/// another machine sharing the directory does). Only regular files owned by
/// this user are removed; links and others' files are left alone.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = temporary_owner(&entry.file_name()) else { continue };
        if pid == own || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.uid() == uid) {
            continue;
        }
        let Ok(file) = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path)
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        let unlocked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if unlocked && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_creates_parents_and_replaces_a_regular_file_leaving_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/out.txt");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(leftovers(path.parent().unwrap()).is_empty());
    }

    #[test]
    fn a_symbolic_link_destination_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("out.txt");
        symlink(&victim, &link).unwrap();
        let err = write(&link, b"attack").unwrap_err();
        assert!(matches!(err, WriteError::SymbolicLink { .. }), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link itself stays");
    }

    #[test]
    fn links_planted_under_old_style_temporary_names_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // Every name an attacker could predict: the old `.<name>.<pid>.tmp`.
        symlink(&victim, dir.path().join(format!(".out.txt.{}.tmp", std::process::id()))).unwrap();
        write(&dir.path().join("out.txt"), b"output").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(dir.path().join("out.txt")).unwrap(), b"output");
    }

    #[test]
    fn special_files_and_directories_are_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = write(&fifo, b"x").unwrap_err();
        assert!(err.to_string().contains("named pipe (FIFO), not a regular file"), "{err}");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let err = write(&sub, b"x").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");

        let err = write(Path::new("/dev/null"), b"x").unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_live_ones_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = format!(".out.txt.{dead}.abcdefghij.tmp");
        let live = format!(".out.txt.{}.abcdefghij.tmp", std::process::id());
        let other_output = format!(".out.txt.{dead}.x.abcdefghij.tmp");
        let wrong_shape = format!(".out.txt.{dead}.short.tmp");
        for name in [&stale, &live, &other_output, &wrong_shape] {
            fs::write(dir.path().join(name), b"partial").unwrap();
        }
        let locked = format!(".other.txt.{dead}.klmnopqrst.tmp");
        fs::write(dir.path().join(&locked), b"partial").unwrap();
        // A writer elsewhere (another pid namespace, another machine) holds its lock.
        let holder = fs::File::open(dir.path().join(&locked)).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
        let other_stale = format!(".other.txt.{dead}.uvwxyzabcd.tmp");
        fs::write(dir.path().join(&other_stale), b"partial").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 2, "both unlocked temporaries of dead writers");
        let mut expected = vec![live, other_output, wrong_shape, locked];
        expected.sort();
        assert_eq!(leftovers(dir.path()), expected);
        drop(holder);
    }

    #[test]
    fn the_replaced_file_keeps_its_permissions_and_long_names_fit() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.txt");
        fs::write(&secret, b"old").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        write(&secret, b"new").unwrap();
        assert_eq!(fs::metadata(&secret).unwrap().mode() & 0o7777, 0o600);
        let long = dir.path().join("x".repeat(250));
        write(&long, b"fits").unwrap();
        assert_eq!(fs::read(&long).unwrap(), b"fits");
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error() {
        let err = write(Path::new("/tmp/.."), b"x").unwrap_err();
        assert!(matches!(err, WriteError::NoFileName { .. }), "{err}");
    }
}
