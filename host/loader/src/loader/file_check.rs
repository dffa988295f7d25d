//! Checks a plugin file before `dlopen` maps it.
//!
//! The dynamic loader maps a library's segments straight from the file. When
//! the file is shorter than its headers say (a half-copied or truncated
//! `.so`), touching a page past the end raises SIGBUS and kills the host with
//! no message. Reading the ELF headers first and requiring every segment the
//! loader maps (and the dynamic section) to lie inside the file turns that
//! into an ordinary load error. Only the headers are read, so the cost does
//! not grow with the size of the library.
//!
//! A file overwritten in place after this check (`cp` over a loaded plugin)
//! can still fault; installing by rename, as package managers do, cannot.

use object::{
    Endianness, FileKind,
    elf::{self, FileHeader32, FileHeader64},
    read::{
        ReadCache,
        elf::{FileHeader, ProgramHeader},
    },
};
use std::{fs::File, path::Path};

/// What is wrong with a file, before anything of it is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Not a shared library at all (no valid ELF header).
    NotALibrary(String),
    /// An ELF shared library whose headers point past its end, or are corrupt.
    Damaged(String),
}

/// Checks the ELF headers of `path`. Files that are not ELF at all are left to
/// the platform loader, which rejects them without mapping anything.
pub fn check(path: &Path) -> Result<(), FileProblem> {
    let file = File::open(path).map_err(|e| FileProblem::NotALibrary(format!("cannot open it: {e}")))?;
    let len = file.metadata().map_err(|e| FileProblem::NotALibrary(format!("cannot read its size: {e}")))?.len();
    let data = ReadCache::new(file);
    match FileKind::parse(&data) {
        Ok(FileKind::Elf64) => check_elf::<FileHeader64<Endianness>>(&data, len),
        Ok(FileKind::Elf32) => check_elf::<FileHeader32<Endianness>>(&data, len),
        Ok(_) => Ok(()),
        Err(e) if has_elf_magic(&data) => Err(FileProblem::NotALibrary(format!("not a valid ELF file: {e}"))),
        Err(_) => Ok(()),
    }
}

fn has_elf_magic(data: &ReadCache<File>) -> bool {
    use object::ReadRef;
    data.read_bytes_at(0, 4).is_ok_and(|magic| magic == elf::ELFMAG)
}

fn check_elf<H: FileHeader<Endian = Endianness>>(data: &ReadCache<File>, len: u64) -> Result<(), FileProblem> {
    let header = H::parse(data).map_err(|e| FileProblem::NotALibrary(format!("not a valid ELF file: {e}")))?;
    let endian = header.endian().map_err(|e| FileProblem::NotALibrary(format!("not a valid ELF file: {e}")))?;
    if header.e_type(endian) != elf::ET_DYN {
        return Err(FileProblem::NotALibrary("an ELF file, but not a shared library".into()));
    }
    let truncated = |what: &str, end: u64| {
        FileProblem::Damaged(format!("its {what} ends at byte {end}, but the file has only {len} bytes"))
    };
    let segments = header
        .program_headers(endian, data)
        .map_err(|_| FileProblem::Damaged(format!("its program headers lie outside the file ({len} bytes)")))?;
    if segments.is_empty() {
        return Err(FileProblem::Damaged("it has no program headers".into()));
    }
    for segment in segments {
        let kind = segment.p_type(endian);
        if !matches!(kind, elf::PT_LOAD | elf::PT_DYNAMIC | elf::PT_NOTE | elf::PT_GNU_EH_FRAME | elf::PT_INTERP) {
            continue;
        }
        let offset: u64 = segment.p_offset(endian).into();
        let size: u64 = segment.p_filesz(endian).into();
        let end = offset.checked_add(size).ok_or_else(|| truncated("a segment", u64::MAX))?;
        if end > len {
            let what = if kind == elf::PT_DYNAMIC { "dynamic section" } else { "loadable segment" };
            return Err(truncated(what, end));
        }
    }
    // The section table is not checked: the dynamic loader never reads it,
    // and a file cut inside it loads and runs.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself is an ELF file with everything in place.
    fn this_executable() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn check_bytes(bytes: &[u8]) -> Result<(), FileProblem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("libx.so");
        std::fs::write(&path, bytes).unwrap();
        check(&path)
    }

    #[test]
    fn text_is_left_to_the_platform_loader_and_elf_garbage_is_not_a_library() {
        assert_eq!(check_bytes(b"just text"), Ok(()));
        assert!(matches!(check_bytes(b"\x7fELF but not really"), Err(FileProblem::NotALibrary(_))));
    }

    /// Where the last byte the loader maps from the file ends.
    fn end_of_mapped_data(bytes: &[u8]) -> u64 {
        let header = FileHeader64::<Endianness>::parse(bytes).unwrap();
        let endian = header.endian().unwrap();
        let segments = header.program_headers(endian, bytes).unwrap();
        segments
            .iter()
            .filter(|s| s.p_type(endian) == elf::PT_LOAD)
            .map(|s| s.p_offset(endian) + s.p_filesz(endian))
            .max()
            .unwrap()
    }

    #[test]
    fn a_copy_cut_inside_a_mapped_segment_is_damaged_and_one_cut_after_them_is_not() {
        // Test binaries are position-independent (ET_DYN), like a shared library.
        let exe = this_executable();
        assert_eq!(check_bytes(&exe), Ok(()));
        let end = end_of_mapped_data(&exe) as usize;
        let cut = &exe[..end - 1];
        assert!(matches!(check_bytes(cut), Err(FileProblem::Damaged(_))), "{:?}", check_bytes(cut));
        let header_only = &exe[..4096];
        assert!(matches!(check_bytes(header_only), Err(FileProblem::Damaged(_))), "{:?}", check_bytes(header_only));
        // What follows the mapped data (debug info, the section table) is never mapped.
        if end < exe.len() {
            assert_eq!(check_bytes(&exe[..end]), Ok(()));
        }
    }
}
