//! Problems found while loading a relance folder, each pinned to `file:line:col`,
//! and the reading of the files they are found in.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where in a file something was found. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub col: Option<usize>,
    /// For JSON array feeds: the element's index, used where no line is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl Location {
    pub fn file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            line: None,
            col: None,
            index: None,
        }
    }
    pub fn at(file: &Path, line: usize, col: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line: Some(line),
            col: Some(col),
            index: None,
        }
    }
    pub fn line(file: &Path, line: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line: Some(line),
            col: None,
            index: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (self.line, self.col, self.index) {
            (Some(l), Some(c), _) => write!(f, ":{l}:{c}"),
            (Some(l), None, _) => write!(f, ":{l}"),
            (None, _, Some(i)) => write!(f, ":[{i}]"),
            _ => Ok(()),
        }
    }
}

/// One problem: printed as `file:line:col: message` (warnings say so after the location).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
}

impl Problem {
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            location,
            message: message.into(),
        }
    }
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            location,
            message: message.into(),
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.location, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.location, self.message),
        }
    }
}

impl std::error::Error for Problem {}

/// Problems collected while loading; loading goes on after each one so that
/// a finance manager sees every mistake at once, not one per attempt.
#[derive(Debug, Default, Clone)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    pub fn error(&mut self, location: Location, message: impl Into<String>) {
        self.push(Problem::error(location, message));
    }
    pub fn warning(&mut self, location: Location, message: impl Into<String>) {
        self.push(Problem::warning(location, message));
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Finds where `key:` is written in a YAML source, searching from line `from`
/// (1-based) on, optionally only on a line that also contains `value`.
/// serde_yaml reports positions of syntax errors only; this pins semantic
/// errors (an unknown template, a bad expression) to the line a user edits.
pub fn locate_yaml_key(
    source: &str,
    from: usize,
    key: &str,
    value: Option<&str>,
) -> Option<(usize, usize)> {
    let pattern = format!("{key}:");
    source
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, line)| {
            // The key starts a block line (`key:`, `- key:`) or follows `{` or `,` in a flow mapping.
            let col = line.match_indices(&pattern).map(|(c, _)| c).find(|&c| {
                let before = line[..c].trim_end();
                before.is_empty() || before.ends_with(['-', '{', ','])
            })?;
            if value.is_some_and(|v| !line[col..].contains(v)) {
                return None;
            }
            Some((i + 1, col + 1))
        })
}

/// Converts a YAML error into a problem at its position in `file`.
pub fn yaml_problem(file: &Path, err: &serde_yaml::Error, line_offset: usize) -> Problem {
    let location = match err.location() {
        Some(loc) => Location::at(file, loc.line() + line_offset, loc.column()),
        None => Location::file(file),
    };
    // serde_yaml repeats the position in its message; keep only the reason.
    let msg = err.to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    Problem::error(location, msg)
}

/// Where `key:` (with `value`, if given) is written in a YAML source, searching from line `from`.
pub fn key_location(
    path: &Path,
    source: &str,
    from: usize,
    key: &str,
    value: Option<&str>,
) -> Location {
    match locate_yaml_key(source, from, key, value) {
        Some((line, col)) => Location::at(path, line, col),
        None => Location::file(path),
    }
}

/// The YAML files of the rules folder (`.yaml` and `.yml`), sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = files_with_extension(dir, "yaml");
    files.extend(files_with_extension(dir, "yml"));
    files.sort();
    files
}

/// The text of a rule file (`what` it holds names it in the error).
pub fn read_rule_file(path: &Path, what: &str, problems: &mut Problems) -> Option<String> {
    std::fs::read_to_string(path)
        .map_err(|e| problems.error(Location::file(path), format!("cannot read {what}: {e}")))
        .ok()
}

/// A rule file's YAML read into `T`; a mistake is reported with its position.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<T> {
    serde_yaml::from_str(source)
        .map_err(|e| problems.push(yaml_problem(path, &e, 0)))
        .ok()
}

/// Files of `dir` with the extension, sorted by name so that loading is deterministic.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}
