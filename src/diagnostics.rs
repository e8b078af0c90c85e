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

/// How large and how deeply nested a rule file may be (`limits:` in
/// `relance.yaml`): the YAML parser takes time quadratic in the nesting, so
/// both are checked before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLimits {
    pub bytes: u64,
    pub depth: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        RuleLimits {
            bytes: 1 << 20,
            depth: 64,
        }
    }
}

/// The text of a rule file (`what` it holds names it in the error), if it
/// is within `limits`.
pub fn read_rule_file(
    path: &Path,
    what: &str,
    limits: RuleLimits,
    problems: &mut Problems,
) -> Option<String> {
    read_yaml_source(path, what, limits)
        .map_err(|p| problems.push(p))
        .ok()
}

/// A YAML file's text, refused before it is read when larger than
/// `limits.bytes` and before it is parsed when nested deeper than `limits.depth`.
pub fn read_yaml_source(path: &Path, what: &str, limits: RuleLimits) -> Result<String, Problem> {
    let source = read_within(path, what, limits.bytes)?;
    check_yaml_depth(path, &source, limits.depth)?;
    Ok(source)
}

/// A hand-written file's text (a rule file, a script), refused before it
/// is read when larger than `bytes` (`limits.rule_file_bytes`).
pub fn read_within(path: &Path, what: &str, bytes: u64) -> Result<String, Problem> {
    read_within_limit(path, what, bytes, "limits.rule_file_bytes")
}

/// [`read_within`] for a file held to the limit named `limit`.
pub fn read_within_limit(
    path: &Path,
    what: &str,
    bytes: u64,
    limit: &str,
) -> Result<String, Problem> {
    let cannot = |e: std::io::Error| {
        Problem::error(Location::file(path), format!("cannot read {what}: {e}"))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    let too_large = || {
        Problem::error(
            Location::file(path),
            format!(
                "{what} file is larger than {limit} ({bytes} bytes): a file \
                 this large is not written by hand; raise the limit in relance.yaml if it is meant"
            ),
        )
    };
    if size > bytes {
        return Err(too_large());
    }
    // The file may grow between the two calls: read no more than the limit.
    let mut source = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, bytes.saturating_add(1)),
        &mut source,
    )
    .map_err(cannot)?;
    if source.len() as u64 > bytes {
        return Err(too_large());
    }
    Ok(source)
}

/// Refuses YAML nested deeper than `max` levels, in one pass over the text:
/// indentation levels (a `- ` item counts as one) plus `[`/`{` nesting,
/// outside quoted strings, comments and block scalars. It is a guard, not a
/// parser: a file it lets through is still parsed, and a file within the
/// limit as a parser counts it is within it here too.
pub fn check_yaml_depth(path: &Path, source: &str, max: usize) -> Result<(), Problem> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a quoted scalar that runs on to the next line: its closing quote.
    let mut quote: Option<char> = None;
    // The indentation of a line ending in `|` or `>`: more indented lines are text.
    let mut block_scalar: Option<usize> = None;
    let too_deep = |line: usize, col: usize| {
        Problem::error(
            Location::at(path, line + 1, col + 1),
            format!(
                "nested deeper than limits.yaml_depth ({max} levels): \
                 simplify the file, or raise the limit in relance.yaml"
            ),
        )
    };
    for (number, line) in source.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if let Some(owner) = block_scalar {
            if rest.trim().is_empty() || indent > owner {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if rest.trim().is_empty() || rest.starts_with('#') {
                continue;
            }
            let mut at = indent;
            let mut item = rest;
            loop {
                while indents.last().is_some_and(|&top| top > at) {
                    indents.pop();
                }
                if indents.last() != Some(&at) {
                    indents.push(at);
                }
                // `- - x`: each dash is a level of its own.
                let Some(after) = item
                    .strip_prefix('-')
                    .filter(|a| a.is_empty() || a.starts_with(' '))
                else {
                    break;
                };
                let spaces = after.len() - after.trim_start_matches(' ').len();
                at += 1 + spaces;
                item = &after[spaces..];
                if item.is_empty() {
                    break;
                }
            }
        }
        // Where a scalar may start: a quote or a bracket there opens a quoted
        // scalar or a flow collection; anywhere else it is text.
        let mut scalar_start = true;
        let mut previous = ' ';
        let mut chars = line[indent..].char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if let Some(close) = quote {
                if c == '\\' && close == '"' {
                    chars.next();
                } else if c == close {
                    // `''` inside a single-quoted scalar is a quote, not its end.
                    if close == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                previous = c;
                scalar_start = false;
                continue;
            }
            match c {
                '#' if previous == ' ' || previous == '\t' => break,
                '"' | '\'' if scalar_start => quote = Some(c),
                '[' | '{' if scalar_start || flow > 0 => {
                    flow += 1;
                    if indents.len() + flow > max {
                        return Err(too_deep(number, line[..indent + i].chars().count()));
                    }
                }
                ']' | '}' if flow > 0 => flow -= 1,
                _ => {}
            }
            let spaced = chars.peek().is_none_or(|(_, n)| *n == ' ');
            scalar_start = match c {
                ' ' | '\t' => scalar_start,
                ',' | '[' | '{' => flow > 0,
                ':' | '-' | '?' => spaced,
                _ => false,
            };
            previous = c;
        }
        if indents.len() + flow > max {
            return Err(too_deep(number, indent));
        }
        if quote.is_none() && flow == 0 {
            let value = line.split(" #").next().unwrap_or("").trim_end();
            let indicator = value.rsplit([' ', ':', '-']).next().unwrap_or("");
            let is_block = (indicator.starts_with('|') || indicator.starts_with('>'))
                && indicator[1..]
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
                && value.len() > indicator.len();
            if is_block {
                block_scalar = Some(indent);
            }
        }
    }
    Ok(())
}

/// A value quoted in a message, at most [`QUOTED_CHARS`] characters of it:
/// `"AAAA…" (12,345 characters)` for a longer one, so that a field of a
/// million characters makes a one-line message.
pub fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let shown = format!("{:?}", &value[..cut]);
            let count = value.chars().count();
            format!(
                "{}…\" ({} characters)",
                &shown[..shown.len() - 1],
                group_thousands(count)
            )
        }
    }
}

/// A name or id from a rule file in a message: as written when it is
/// short, else [`quote`]d, cut to [`QUOTED_CHARS`] characters.
pub fn shown(value: &str) -> std::borrow::Cow<'_, str> {
    if value.char_indices().nth(QUOTED_CHARS).is_none() {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(quote(value))
    }
}

/// How many characters of a value a message quotes.
pub const QUOTED_CHARS: usize = 80;

fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
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
