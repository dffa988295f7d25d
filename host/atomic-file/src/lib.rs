//! Writing a file so that a reader sees the old content or the new, never
//! half of it, and never through someone else's link.
//!
//! [`write`] does, in order:
//! 1. refuses a destination that exists and is not a regular file: a
//!    symbolic link, a directory, a FIFO, a socket or a device (`lstat`, so a
//!    link is never followed);
//! 2. removes stale temporaries of the same destination that killed writers
//!    left behind (their process no longer exists);
//! 3. creates the temporary in the destination's directory exclusively
//!    (`O_CREAT | O_EXCL`: a link planted under the name fails the open,
//!    never redirects it) under an unpredictable name
//!    `.<name>.<pid>.<random>.tmp`;
//! 4. writes, fsyncs, renames it over the destination and fsyncs the
//!    directory, so after a crash the file is either old or new.
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
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
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
    remove_stale_temporaries(dir, name);
    let prefix = format!(".{}.{}.", name.to_string_lossy(), std::process::id());
    // tempfile opens with O_CREAT | O_EXCL and retries on a name collision.
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(RANDOM_LEN)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io_error("create a temporary file in", dir))?;
    temp.write_all(data).map_err(io_error("write", temp.path()))?;
    temp.as_file().sync_all().map_err(io_error("sync", temp.path()))?;
    // Once more, just before the rename: something may have appeared meanwhile.
    check_destination(path)?;
    temp.persist(path).map_err(|e| io_error("rename into place", path)(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
}

/// The writer's pid when `entry` is one of [`write`]'s temporaries for `name`.
fn temporary_owner(entry: &OsStr, name: &OsStr) -> Option<u32> {
    let entry = entry.to_str()?;
    let rest = entry.strip_prefix('.')?.strip_prefix(name.to_str()?)?.strip_prefix('.')?;
    let (pid, random) = rest.strip_suffix(TEMP_SUFFIX)?.split_once('.')?;
    let random_ok = random.len() == RANDOM_LEN && random.chars().all(|c| c.is_ascii_alphanumeric());
    random_ok.then(|| pid.parse().ok()).flatten()
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes temporaries of `name` in `dir` whose writer no longer runs (a run
/// killed mid-write). Only regular files owned by this user are removed; a
/// live writer's temporary, a link or someone else's file is left alone.
pub fn remove_stale_temporaries(dir: &Path, name: &OsStr) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = temporary_owner(&entry.file_name(), name) else { continue };
        if pid == own || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        let stale = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.uid() == uid);
        if stale && fs::remove_file(&path).is_ok() {
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
        write(&dir.path().join("out.txt"), b"done").unwrap();
        let mut expected = vec![live, other_output, wrong_shape];
        expected.sort();
        assert_eq!(leftovers(dir.path()), expected);
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error() {
        let err = write(Path::new("/tmp/.."), b"x").unwrap_err();
        assert!(matches!(err, WriteError::NoFileName { .. }), "{err}");
    }
}
