//! Located error messages for user-written files (workflows, configs).

use serde::Serialize;
use std::{fmt, ops::Range, path::PathBuf};

/// Workflow and config files larger than this are refused unless the
/// limit is raised (`--max-file-size`): their parse trees would cost memory
/// many times their size.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// At most this many diagnostics are shown per file; the rest are counted.
pub const MAX_DIAGNOSTICS_PER_FILE: usize = 100;

/// Bytes between two checkpoints of the character count (see [`SourceFile::location`]).
const CHAR_CHECKPOINT: usize = 1024;

/// A file's text, kept to turn byte offsets into line:column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
    /// Characters before each multiple of [`CHAR_CHECKPOINT`] bytes (rounded
    /// down to a character boundary), so a column costs at most one
    /// checkpoint's worth of counting even on a megabyte-long line.
    chars_before: Vec<(usize, usize)>,
}

/// Why a user-written file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Invalid input, located.
    #[error("{0}")]
    Invalid(Diagnostic),
}

/// Reads a config or workflow file into the caller's error type: `unreadable`
/// for an I/O failure, `invalid` for located problems (too large, not UTF-8).
pub fn read_source<E>(
    path: &std::path::Path,
    max_bytes: u64,
    unreadable: impl FnOnce(PathBuf, std::io::Error) -> E,
    invalid: impl FnOnce(Diagnostics) -> E,
) -> Result<SourceFile, E> {
    SourceFile::read(path, max_bytes).map_err(|e| match e {
        ReadError::Io { path, source } => unreadable(path, source),
        ReadError::Invalid(d) => invalid(Diagnostics::sorted(vec![d])),
    })
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let mut chars_before = vec![(0, 0)];
        let (mut at, mut count) = (0, 0);
        while at + CHAR_CHECKPOINT < text.len() {
            let mut next = at + CHAR_CHECKPOINT;
            while !text.is_char_boundary(next) {
                next -= 1;
            }
            count += text[at..next].chars().count();
            chars_before.push((next, count));
            at = next;
        }
        Self { path: path.into(), text, line_starts, chars_before }
    }

    /// Reads a UTF-8 file of at most `max_bytes`. A larger file, or one that
    /// is not UTF-8 (located at its first bad byte), is invalid input.
    pub fn read(path: &std::path::Path, max_bytes: u64) -> Result<Self, ReadError> {
        use std::io::Read;
        let io = |source| ReadError::Io { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(path, bytes, max_bytes)
    }

    /// [`SourceFile::read`] for bytes already in memory (stdin, fuzzing).
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: Vec<u8>, max_bytes: u64) -> Result<Self, ReadError> {
        let path = path.into();
        if bytes.len() as u64 > max_bytes {
            return Err(ReadError::Invalid(
                Diagnostic::unlocated(path, format!("the file is larger than {max_bytes} bytes"))
                    .with_help("split it, or raise the limit with --max-file-size BYTES"),
            ));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => {
                let bad = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(bad);
                let prefix = Self::new(path, String::from_utf8(bytes).unwrap_or_default());
                let mut diagnostic = prefix.diagnostic(bad..bad, "the file is not valid UTF-8");
                diagnostic.help = Some("workflow and config files are TOML, which must be UTF-8 text".into());
                Err(ReadError::Invalid(diagnostic))
            }
        }
    }

    /// Characters in `text[..offset]`; `offset` is a character boundary.
    fn chars_up_to(&self, offset: usize) -> usize {
        let at = self.chars_before.partition_point(|&(byte, _)| byte <= offset) - 1;
        let (byte, count) = self.chars_before[at];
        count + self.text[byte..offset].chars().count()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn location(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.chars_up_to(offset) - self.chars_up_to(start);
        (line + 1, column + 1)
    }

    pub fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.location(span.start);
        Diagnostic { file: self.path.clone(), line, column, message: message.into(), help: None, stands_for: 0 }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One problem in one file, with where and, when we can tell, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// For an "and N more" line, the N it stands for (`omitted` in JSON); 0
    /// for a real problem.
    #[serde(rename = "omitted", skip_serializing_if = "is_zero")]
    stands_for: usize,
}

impl Diagnostic {
    /// A problem with no position in a file (an environment variable, the
    /// built-in config); `source` names where it came from.
    pub fn unlocated(source: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self { file: source.into(), line: 0, column: 0, message: message.into(), help: None, stands_for: 0 }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: not from a file position (an environment variable, a built-in default).
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file.display(), self.message)?;
        } else {
            write!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.column, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pass over a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// In file order, which is how people fix them; at most
    /// [`MAX_DIAGNOSTICS_PER_FILE`] per file, then one saying how many more.
    /// Sorting an already sorted list again keeps its counts.
    pub fn sorted(diagnostics: Vec<Diagnostic>) -> Self {
        let (summaries, mut diagnostics): (Vec<_>, Vec<_>) = diagnostics.into_iter().partition(|d| d.stands_for > 0);
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        let earlier = |file: &PathBuf| summaries.iter().filter(|s| &s.file == file).map(|s| s.stands_for).sum();
        let mut kept = Vec::with_capacity(diagnostics.len().min(4 * MAX_DIAGNOSTICS_PER_FILE));
        let (mut file, mut in_file, mut more) = (None::<PathBuf>, 0, 0);
        for d in diagnostics {
            if file.as_ref() != Some(&d.file) {
                Self::say_more(&mut kept, file.take(), more);
                (in_file, more) = (0, earlier(&d.file));
                file = Some(d.file.clone());
            }
            if in_file < MAX_DIAGNOSTICS_PER_FILE {
                kept.push(d);
                in_file += 1;
            } else {
                more += 1;
            }
        }
        Self::say_more(&mut kept, file, more);
        // A file with only a summary left (its problems were counted, not kept) keeps it.
        for summary in summaries {
            if !kept.iter().any(|d| d.file == summary.file) {
                kept.push(summary);
            }
        }
        Self(kept)
    }

    /// Adds "and N more" for `file` when `more` were left out.
    fn say_more(kept: &mut Vec<Diagnostic>, file: Option<PathBuf>, more: usize) {
        if let (Some(file), true) = (file, more > 0) {
            let text = format!("and {more} more error{} in this file", if more == 1 { "" } else { "s" });
            let mut summary = Diagnostic::unlocated(file, text)
                .with_help(format!("only the first {MAX_DIAGNOSTICS_PER_FILE} are shown; fix these and run again"));
            summary.stands_for = more;
            kept.push(summary);
        }
    }

    /// Errors found, including those only counted in an "and N more" line.
    pub fn count(&self) -> usize {
        self.0.iter().map(|d| if d.stands_for > 0 { d.stands_for } else { 1 }).sum()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.count();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_are_capped_per_file_and_keep_their_count_when_sorted_again() {
        let file = SourceFile::new("f.toml", "x\n".repeat(300));
        let many: Vec<Diagnostic> = (0..250).rev().map(|i| file.diagnostic(i * 2..i * 2, "bad")).collect();
        let other = Diagnostic::unlocated("g.toml", "also bad");
        let mut all = many;
        all.push(other);
        let sorted = Diagnostics::sorted(all);
        assert_eq!(sorted.count(), 251);
        assert_eq!(sorted.0.len(), MAX_DIAGNOSTICS_PER_FILE + 2);
        assert_eq!(sorted.0[0].line, 1, "file order");
        assert_eq!(sorted.0[MAX_DIAGNOSTICS_PER_FILE].message, "and 150 more errors in this file");
        let again = Diagnostics::sorted(sorted.0.clone());
        assert_eq!(again, sorted);
        assert!(again.to_string().ends_with("251 errors"), "{again}");
    }

    #[test]
    fn columns_on_a_long_line_count_characters() {
        let line = "é".repeat(5000) + "x";
        let file = SourceFile::new("f.toml", format!("a\n{line}"));
        assert_eq!(file.location(2 + 10_000), (2, 5001));
        assert_eq!(file.location(2 + 3001), (2, 1501), "inside a character: its start");
    }

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let file = SourceFile::new("f.toml", "a = 1\nbé = 2\n".into());
        assert_eq!(file.location(0), (1, 1));
        assert_eq!(file.location(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(file.location(9), (2, 3));
        assert_eq!(file.location(999), (3, 1));
    }
}
