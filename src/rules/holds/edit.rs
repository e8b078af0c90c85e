//! `rules/holds.yaml` changed from the console: a hold or a promise added, a hold removed, by editing the file's text (comments and hand-written entries kept) and replacing it atomically.
//!
//! The file stays the finance manager's: rather than re-serialising the
//! document, an entry is appended to its list in the style of the entries
//! already there (block or flow mappings, their indentation), and a removed
//! hold's lines are cut out, its neighbours' comments left in place. Only a
//! list written in flow style (`holds: [{…}, {…}]`) is rewritten, as a block
//! list, when an entry is added to it or removed from it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{HoldEntry, Holds, Lists, PromiseEntry, free_id, hold_ids, made_id};
use crate::diagnostics::{Location, Problem, Problems};
use crate::error::{Error, Result};

/// What the console (or the API) asks to add to rules/holds.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub invoice: Option<String>,
    pub customer: Option<String>,
    pub until: Option<NaiveDate>,
    pub reason: String,
}

/// A promise to pay the console records in rules/holds.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPromise {
    pub invoice: String,
    pub date: NaiveDate,
    #[serde(default)]
    pub note: String,
}

/// One hold of the file as the API lists it (`GET /api/holds`): `id` is stable across edits of other entries.
#[derive(Debug, Clone, Serialize)]
pub struct HoldEntryView {
    pub id: String,
    pub invoice: Option<String>,
    pub customer: Option<String>,
    pub until: Option<NaiveDate>,
    pub reason: String,
}

/// One promise to pay of the file.
#[derive(Debug, Clone, Serialize)]
pub struct PromiseView {
    pub invoice: String,
    pub date: NaiveDate,
    pub note: String,
}

/// rules/holds.yaml as read now, with a version token (content hash) a form carries back.
#[derive(Debug, Clone, Serialize)]
pub struct HoldsFile {
    pub path: PathBuf,
    pub version: String,
    pub holds: Vec<HoldEntryView>,
    pub promises: Vec<PromiseView>,
}

/// The longest reason or note the console writes, in characters: the
/// file must stay within `limits.rule_file_bytes` to load.
const MAX_TEXT: usize = 1000;
/// The longest invoice number or customer id it writes.
const MAX_ID: usize = 200;

/// One edit of the file at a time in this process (two console requests);
/// an edit by another process is caught by reading the file again.
static WRITING: Mutex<()> = Mutex::new(());

/// How many times an edit without an expected version is tried again when
/// the file changes while it is written.
const ATTEMPTS: usize = 5;

/// The holds file of `rules_dir` as read now. A file with an error (a hand
/// edit gone wrong) is that located error: the console shows it.
pub fn read_holds_file(rules_dir: &Path) -> Result<HoldsFile> {
    let current = Current::read(&holds_path(rules_dir))?;
    Ok(current.view())
}

/// Adds a hold (written with an explicit `id:`, which it returns). Re-reads
/// the file just before writing (temporary file then rename, comments and
/// hand edits kept), and refuses with [`Error::HoldsChanged`] when
/// `expected_version` is given and is not the file's. A date in the past is
/// allowed (the hold holds nothing); neither or both of invoice and
/// customer, or an empty reason, is [`Error::InvalidHold`].
pub fn add_hold(
    rules_dir: &Path,
    hold: &NewHold,
    expected_version: Option<&str>,
) -> Result<String> {
    let (key, what) = match (target(&hold.invoice), target(&hold.customer)) {
        (Some(n), None) => ("invoice", n),
        (None, Some(c)) => ("customer", c),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give an invoice or a customer, not both (record two holds)",
            ));
        }
        (None, None) => return Err(invalid("say what is held: an invoice or a customer")),
    };
    checked_length(key, what, MAX_ID)?;
    let reason = hold.reason.trim();
    if reason.is_empty() {
        return Err(invalid(
            "give a reason: it is what explain and the console show",
        ));
    }
    checked_length("reason", reason, MAX_TEXT)?;
    let mut added = String::new();
    edit(rules_dir, expected_version, |current| {
        let entry = HoldEntry {
            invoice: (key == "invoice").then(|| what.to_string()),
            customer: (key == "customer").then(|| what.to_string()),
            until: hold.until,
            reason: reason.to_string(),
            id: None,
        };
        let taken = current.ids.iter().cloned().collect();
        let id = free_id(&made_id(&entry), &taken);
        let entry = HoldEntry {
            id: Some(id.clone()),
            ..entry
        };
        let text = add_to_list(
            &current.text,
            &current.lists,
            List::Holds,
            &hold_fields(&entry),
        );
        added = id;
        Ok(text)
    })?;
    Ok(added)
}

/// Removes the hold with id `id` (as [`read_holds_file`] lists it), its
/// lines only: comments around it stay. An unknown id is
/// [`Error::HoldNotFound`]; the file is read again and checked against
/// `expected_version` as [`add_hold`] does.
pub fn remove_hold(rules_dir: &Path, id: &str, expected_version: Option<&str>) -> Result<()> {
    edit(rules_dir, expected_version, |current| {
        let index = current
            .ids
            .iter()
            .position(|i| i == id)
            .ok_or_else(|| Error::HoldNotFound { id: id.to_string() })?;
        Ok(remove_from_list(&current.text, &current.lists, index))
    })
}

/// Adds a promise to pay under `promises:` (created when absent), as
/// [`add_hold`] adds a hold. An empty invoice number is
/// [`Error::InvalidHold`].
pub fn add_promise(
    rules_dir: &Path,
    promise: &NewPromise,
    expected_version: Option<&str>,
) -> Result<()> {
    let invoice = promise.invoice.trim();
    if invoice.is_empty() {
        return Err(invalid("say which invoice is promised"));
    }
    checked_length("invoice", invoice, MAX_ID)?;
    let note = promise.note.trim();
    checked_length("note", note, MAX_TEXT)?;
    let mut fields = vec![
        ("invoice", Value::Text(invoice)),
        ("date", Value::Date(promise.date)),
    ];
    if !note.is_empty() {
        fields.push(("note", Value::Text(note)));
    }
    edit(rules_dir, expected_version, |current| {
        Ok(add_to_list(
            &current.text,
            &current.lists,
            List::Promises,
            &fields,
        ))
    })
}

/// What a hold names, if anything.
fn target(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn invalid(message: &str) -> Error {
    Error::InvalidHold {
        message: message.to_string(),
    }
}

fn checked_length(what: &str, value: &str, max: usize) -> Result<()> {
    match value.chars().count() > max {
        true => Err(invalid(&format!(
            "the {what} is longer than {max} characters"
        ))),
        false => Ok(()),
    }
}

/// The file the holds of `rules_dir` are in: `holds.yaml`, or `holds.yml`
/// when only that one exists.
fn holds_path(rules_dir: &Path) -> PathBuf {
    let yml = rules_dir.join("holds.yml");
    let yaml = rules_dir.join("holds.yaml");
    match !yaml.exists() && yml.exists() {
        true => yml,
        false => yaml,
    }
}

/// The version token of a file's text: a hash of its bytes (FNV-1a, 64
/// bits), the same in every process and release. An absent file has the
/// version of an empty one.
fn version(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The file as read now: its text, its entries and their ids.
struct Current {
    path: PathBuf,
    text: String,
    lists: Lists,
    ids: Vec<String>,
}

impl Current {
    /// Reads and parses the file; an error of the file is refused (an edit
    /// would keep it, and the loader would refuse the result).
    fn read(path: &Path) -> Result<Current> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_problem(path, "cannot read", &e)),
        };
        Current::parse(path, text)
    }

    fn parse(path: &Path, text: String) -> Result<Current> {
        let mut problems = Problems::default();
        let lists = Holds::default().read(path, &text, &mut problems);
        if let Some(problem) = problems.iter().find(|p| p.is_error()) {
            let mut problem = problem.clone();
            problem
                .message
                .push_str(" (fix the file before changing it from the console)");
            return Err(Error::Problem(Box::new(problem)));
        }
        let lists = lists.unwrap_or_default();
        let ids = hold_ids(&lists.holds);
        Ok(Current {
            path: path.to_path_buf(),
            text,
            lists,
            ids,
        })
    }

    fn view(&self) -> HoldsFile {
        let trimmed = |v: &Option<String>| v.as_deref().map(|s| s.trim().to_string());
        HoldsFile {
            path: self.path.clone(),
            version: version(&self.text),
            holds: self
                .lists
                .holds
                .iter()
                .zip(&self.ids)
                .map(|(e, id)| HoldEntryView {
                    id: id.clone(),
                    invoice: trimmed(&e.invoice),
                    customer: trimmed(&e.customer),
                    until: e.until,
                    reason: e.reason.trim().to_string(),
                })
                .collect(),
            // Entries without a valid date are errors: `parse` refused them.
            promises: self
                .lists
                .promises
                .iter()
                .filter_map(|p| {
                    Some(PromiseView {
                        invoice: p.invoice.as_deref()?.trim().to_string(),
                        date: promise_date(p)?,
                        note: p.note.trim().to_string(),
                    })
                })
                .collect(),
        }
    }
}

fn promise_date(entry: &PromiseEntry) -> Option<NaiveDate> {
    match &entry.date {
        Some(serde_yaml::Value::String(s)) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
        _ => None,
    }
}

fn io_problem(path: &Path, what: &str, e: &std::io::Error) -> Error {
    Error::Problem(Box::new(Problem::error(
        Location::file(path),
        format!("{what}: {e}"),
    )))
}

/// Applies `change` to the file's text as read just now and writes the
/// result in its place, atomically. The file is read again just before the
/// rename: when it changed meanwhile (a hand edit saved at the same
/// moment), nothing is written and the edit is tried again on the new text
/// (or refused when the caller expects a version). The result must load
/// without problems, with the same entries plus or minus the one changed.
fn edit(
    rules_dir: &Path,
    expected_version: Option<&str>,
    mut change: impl FnMut(&Current) -> Result<String>,
) -> Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let path = holds_path(rules_dir);
    let changed = || Error::HoldsChanged { path: path.clone() };
    for _ in 0..ATTEMPTS {
        let current = Current::read(&path)?;
        if expected_version.is_some_and(|v| v != version(&current.text)) {
            return Err(changed());
        }
        let text = change(&current)?;
        check_result(&current, &text)?;
        if replace(&path, &current.text, &text)? {
            return Ok(());
        }
        if expected_version.is_some() {
            return Err(changed());
        }
    }
    Err(changed())
}

/// Refuses a text that does not load cleanly, or whose entries are not
/// those of `before` with one added or removed: an edit must never lose a
/// hand-written entry.
fn check_result(before: &Current, text: &str) -> Result<()> {
    let after = Current::parse(&before.path, text.to_string()).map_err(|e| Error::InvalidHold {
        message: format!("the edited file would not load: {e}"),
    })?;
    let (old, new) = (before.view(), after.view());
    let holds = |f: &HoldsFile| {
        f.holds
            .iter()
            .map(|h| (h.id.clone(), h.invoice.clone(), h.customer.clone(), h.until))
            .collect::<Vec<_>>()
    };
    let promises = |f: &HoldsFile| {
        f.promises
            .iter()
            .map(|p| (p.invoice.clone(), p.date))
            .collect::<Vec<_>>()
    };
    let (h0, h1, p0, p1) = (holds(&old), holds(&new), promises(&old), promises(&new));
    let fine = (h0 == h1 && one_more(&p0, &p1))
        || (p0 == p1 && (one_more(&h0, &h1) || one_more(&h1, &h0)));
    match fine {
        true => Ok(()),
        false => Err(invalid(
            "the edit would change other entries of the file: nothing written",
        )),
    }
}

/// Whether `after` is `before` with one more entry.
fn one_more<T: PartialEq>(before: &[T], after: &[T]) -> bool {
    after.len() == before.len() + 1 && before.iter().all(|x| after.contains(x))
}

/// Writes `text` to a temporary file beside `path`, flushed to disk, and
/// renames it over `path` if the file still holds `read` (what the edit
/// started from); returns whether it did. The file keeps its permissions.
fn replace(path: &Path, read: &str, text: &str) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let cannot_write = |e: std::io::Error| io_problem(path, "cannot write", &e);
    // A dot file: the loaders skip it while it exists.
    let mut temporary = tempfile::Builder::new()
        .prefix(".holds.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(cannot_write)?;
    temporary.write_all(text.as_bytes()).map_err(cannot_write)?;
    let permissions = match std::fs::metadata(path) {
        Ok(meta) => Some(meta.permissions()),
        Err(_) => default_permissions(),
    };
    if let Some(permissions) = permissions {
        temporary
            .as_file()
            .set_permissions(permissions)
            .map_err(cannot_write)?;
    }
    temporary.as_file().sync_all().map_err(cannot_write)?;
    let now = match std::fs::read_to_string(path) {
        Ok(now) => now,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_problem(path, "cannot read", &e)),
    };
    if now != read {
        // Dropped, the temporary file is removed.
        return Ok(false);
    }
    temporary.persist(path).map_err(|e| cannot_write(e.error))?;
    // The rename itself on disk: without it a crash may bring the old file back.
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(true)
}

/// A new file readable by the daemon as any rule file is (a temporary
/// file is private to its owner).
fn default_permissions() -> Option<std::fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(std::fs::Permissions::from_mode(0o644))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The two lists of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Holds,
    Promises,
}

impl List {
    fn key(self) -> &'static str {
        match self {
            List::Holds => "holds",
            List::Promises => "promises",
        }
    }
}

/// A value the console writes: text (plain when YAML reads it back as the
/// same text, else double-quoted) or a date.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    Date(NaiveDate),
}

impl Value<'_> {
    /// The value as YAML: plain when it reads back as itself, else a
    /// double-quoted string (JSON's escapes are YAML's).
    fn yaml(&self, in_flow: bool) -> String {
        match self {
            Value::Date(d) => d.to_string(),
            Value::Text(s) => {
                let plain = !s.is_empty()
                    && s.chars().next().is_some_and(|c| c.is_alphanumeric())
                    && s.chars().all(|c| {
                        c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '/' | '\'')
                    })
                    && !s.ends_with(' ')
                    && !(in_flow && s.contains(','))
                    && matches!(
                        serde_yaml::from_str::<serde_yaml::Value>(s),
                        Ok(serde_yaml::Value::String(back)) if back == *s
                    );
                match plain {
                    true => s.to_string(),
                    false => serde_json::to_string(s).unwrap_or_default(),
                }
            }
        }
    }
}

/// A hold's keys as the console writes them: what it holds first, its id last.
fn hold_fields(entry: &HoldEntry) -> Vec<(&'static str, Value<'_>)> {
    let mut fields = Vec::new();
    if let Some(n) = &entry.invoice {
        fields.push(("invoice", Value::Text(n)));
    }
    if let Some(c) = &entry.customer {
        fields.push(("customer", Value::Text(c)));
    }
    if let Some(until) = entry.until {
        fields.push(("until", Value::Date(until)));
    }
    if !entry.reason.trim().is_empty() {
        fields.push(("reason", Value::Text(entry.reason.trim())));
    }
    if let Some(id) = &entry.id {
        fields.push(("id", Value::Text(id)));
    }
    fields
}

/// A promise's keys as written.
fn promise_fields(entry: &PromiseEntry) -> Vec<(&'static str, Value<'_>)> {
    let mut fields = Vec::new();
    if let Some(n) = &entry.invoice {
        fields.push(("invoice", Value::Text(n.trim())));
    }
    if let Some(date) = promise_date(entry) {
        fields.push(("date", Value::Date(date)));
    }
    if !entry.note.trim().is_empty() {
        fields.push(("note", Value::Text(entry.note.trim())));
    }
    fields
}

/// An entry as the lines of a list item at `indent`: a block mapping, or a
/// flow mapping on one line (`- {invoice: F1, date: 2026-12-18}`).
fn item(fields: &[(&str, Value)], indent: usize, flow: bool, newline: &str) -> String {
    let pad = " ".repeat(indent);
    if flow {
        let pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.yaml(true)))
            .collect();
        return format!("{pad}- {{{}}}{newline}", pairs.join(", "));
    }
    let mut text = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        let lead = if i == 0 { "- " } else { "  " };
        text.push_str(&format!("{pad}{lead}{k}: {}{newline}", v.yaml(false)));
    }
    text
}

/// A file's lines, each with its line end.
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// The file's line end: `\r\n` when its first line has one.
fn newline(text: &str) -> &'static str {
    match text.contains("\r\n") {
        true => "\r\n",
        false => "\n",
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Where a top-level list is written, and how.
struct Section {
    /// The `key:` line.
    key: usize,
    /// The first line after the section (the next top-level key, or the end).
    end: usize,
    /// What follows `key:` on its line: empty for a block list.
    value: Flow,
    /// The comment after `key:` on its line, with its leading spaces.
    comment: String,
    /// The first line of each item of a block list.
    items: Vec<usize>,
    /// The items' indentation.
    indent: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// `key:` alone: a block list follows, or nothing.
    Block,
    /// `key: []`, `key: ~`, `key: null`: no entry.
    Empty,
    /// `key: [{…}, …]`.
    List,
}

/// The section of top-level key `key` in `lines`, if written.
fn section(lines: &[&str], key: &str) -> Option<Section> {
    let key_line = lines.iter().position(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    })?;
    let rest = &lines[key_line][key.len() + 1..];
    // A comment after the key is kept when nothing else is there: a `#`
    // inside a flow list may be in a quoted value.
    let (value, comment) = match rest.find(" #").or_else(|| rest.find("\t#")) {
        Some(at) => {
            let value = rest[..at].trim_end();
            (value, rest[value.len()..].trim_end().to_string())
        }
        None => (rest, String::new()),
    };
    let (value, comment) = match value.trim() {
        "" => (Flow::Block, comment),
        "[]" | "~" | "null" | "Null" | "NULL" => (Flow::Empty, comment),
        _ => (Flow::List, String::new()),
    };
    let end = (key_line + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            l.starts_with("---")
                || l.starts_with("...")
                || !(is_blank(l) || l.starts_with([' ', '\t', '#', '-']))
        })
        .unwrap_or(lines.len());
    let dashes: Vec<usize> = (key_line + 1..end)
        .filter(|&i| {
            let t = lines[i].trim_start();
            !is_comment(lines[i]) && (t.starts_with("- ") || t.trim_end() == "-")
        })
        .collect();
    let indent = dashes
        .iter()
        .map(|&i| indent_of(lines[i]))
        .min()
        .unwrap_or(2);
    let items = dashes
        .into_iter()
        .filter(|&i| indent_of(lines[i]) == indent)
        .collect();
    Some(Section {
        key: key_line,
        end,
        value,
        comment,
        items,
        indent,
    })
}

/// The last line of a section that belongs to its list: its last entry's
/// last line, or a comment indented under the key (a comment at the left
/// margin just before the next key is that key's).
fn last_line(lines: &[&str], s: &Section) -> usize {
    (s.key + 1..s.end)
        .rev()
        .find(|&i| !is_blank(lines[i]) && (!is_comment(lines[i]) || indent_of(lines[i]) > 0))
        .unwrap_or(s.key)
}

/// The line after the last line of item `i` of a block list. A comment
/// between two of its lines is the item's, whatever its indentation; one
/// after its last line is not.
fn item_end(lines: &[&str], s: &Section, i: usize) -> usize {
    let start = s.items[i];
    let mut end = start + 1;
    for (j, line) in lines.iter().enumerate().take(s.end).skip(start + 1) {
        if is_blank(line) || is_comment(line) {
            continue;
        }
        if indent_of(line) <= s.indent {
            break;
        }
        end = j + 1;
    }
    end
}

/// `text` with `fields` appended as the last entry of list `list` (the
/// list created at the end of the file when absent).
fn add_to_list(text: &str, lists: &Lists, list: List, fields: &[(&str, Value)]) -> String {
    let nl = newline(text);
    let all = lines(text);
    let entries = match list {
        List::Holds => lists.holds.len(),
        List::Promises => lists.promises.len(),
    };
    let Some(s) = section(&all, list.key()) else {
        // A list of its own at the end, indented as the file's other list.
        let indent = [List::Holds, List::Promises]
            .iter()
            .filter_map(|l| section(&all, l.key()))
            .find(|s| !s.items.is_empty())
            .map_or(2, |s| s.indent);
        let mut out = text.to_string();
        if out.is_empty() {
            out.push_str(&format!(
                "# Holds and promises to pay (docs/finance.md): written by hand or from{nl}\
                 # the console, which keeps comments and hand-written entries.{nl}"
            ));
        } else {
            if !out.ends_with('\n') {
                out.push_str(nl);
            }
            out.push_str(nl);
        }
        out.push_str(&format!("{}:{nl}", list.key()));
        out.push_str(&item(fields, indent, false, nl));
        return out;
    };
    if s.value == Flow::List || s.items.len() != entries {
        return rewritten(&all, &s, lists, list, Some(fields), None, nl);
    }
    let flow = s
        .items
        .last()
        .is_some_and(|&i| all[i].trim_start()[1..].trim_start().starts_with('{'));
    let after = last_line(&all, &s);
    let mut out: String = all[..s.key].concat();
    if s.value == Flow::Empty {
        out.push_str(&format!("{}:{}{nl}", list.key(), s.comment));
    } else {
        out.push_str(all[s.key]);
    }
    out.push_str(&all[s.key + 1..=after.max(s.key)].concat());
    if !out.ends_with('\n') {
        out.push_str(nl);
    }
    out.push_str(&item(fields, s.indent, flow, nl));
    out.push_str(&all[after.max(s.key) + 1..].concat());
    out
}

/// `text` without hold `index`'s lines.
fn remove_from_list(text: &str, lists: &Lists, index: usize) -> String {
    let all = lines(text);
    let nl = newline(text);
    let Some(s) = section(&all, List::Holds.key()) else {
        return text.to_string();
    };
    if s.value != Flow::Block || s.items.len() != lists.holds.len() {
        return rewritten(&all, &s, lists, List::Holds, None, Some(index), nl);
    }
    let (start, end) = (s.items[index], item_end(&all, &s, index));
    let mut out: String = all[..start].concat();
    out.push_str(&all[end..].concat());
    out
}

/// The section of `list` written again as a block list of its entries
/// (one added, or one removed): for lists written in flow style, whose
/// entries cannot be told apart by their lines. Comments inside the list
/// are lost; those before and after it stay.
fn rewritten(
    all: &[&str],
    s: &Section,
    lists: &Lists,
    list: List,
    add: Option<&[(&str, Value)]>,
    remove: Option<usize>,
    nl: &str,
) -> String {
    let mut items: Vec<Vec<(&str, Value)>> = match list {
        List::Holds => lists.holds.iter().map(hold_fields).collect(),
        List::Promises => lists.promises.iter().map(promise_fields).collect(),
    };
    if let Some(i) = remove.filter(|&i| i < items.len()) {
        items.remove(i);
    }
    items.extend(add.map(<[_]>::to_vec));
    let mut out: String = all[..s.key].concat();
    out.push_str(&format!("{}:{}{nl}", list.key(), s.comment));
    for fields in &items {
        out.push_str(&item(fields, 2, false, nl));
    }
    let after = last_line(all, s);
    out.push_str(&all[after + 1..].concat());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn on_invoice(number: &str, reason: &str) -> NewHold {
        NewHold {
            invoice: Some(number.into()),
            customer: None,
            until: Some(date("2026-12-15")),
            reason: reason.into(),
        }
    }

    /// A rules folder with `holds.yaml` holding `text`.
    fn rules(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("holds.yaml"), text).unwrap();
        dir
    }

    fn text(dir: &tempfile::TempDir) -> String {
        std::fs::read_to_string(dir.path().join("holds.yaml")).unwrap()
    }

    /// The file loads as the daemon loads it, without any problem.
    fn loads_clean(dir: &tempfile::TempDir) -> Holds {
        let mut problems = Problems::default();
        let holds = super::super::load_holds(dir.path(), Default::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}\n{}", text(dir));
        holds
    }

    /// Nothing but holds.yaml in the folder: no temporary file left.
    fn only_the_file(dir: &tempfile::TempDir) {
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["holds.yaml"]);
    }

    const HAND_WRITTEN: &str = "\
# Holds decided by Marie (finance).
holds:
  # Dupont: contested delivery, call back on 12/01
  - invoice: F2026-0012
    until: 2026-12-15
    reason: \"contested delivery\"   # see the ticket

  - customer: C042
    reason: in liquidation

# Promises to pay, from phone calls.
promises:
  - invoice: F2026-0020
    date: 2026-12-18
";

    #[test]
    fn a_hold_is_appended_in_the_files_style_and_comments_stay() {
        let dir = rules(HAND_WRITTEN);
        let before = read_holds_file(dir.path()).unwrap();
        assert_eq!(
            before
                .holds
                .iter()
                .map(|h| h.id.as_str())
                .collect::<Vec<_>>(),
            ["invoice-F2026-0012", "customer-C042"]
        );
        let id = add_hold(
            dir.path(),
            &on_invoice("F2026-0075", "called: pays on the 20th"),
            Some(&before.version),
        )
        .unwrap();
        assert_eq!(id, "invoice-F2026-0075");
        assert_eq!(
            text(&dir),
            "\
# Holds decided by Marie (finance).
holds:
  # Dupont: contested delivery, call back on 12/01
  - invoice: F2026-0012
    until: 2026-12-15
    reason: \"contested delivery\"   # see the ticket

  - customer: C042
    reason: in liquidation
  - invoice: F2026-0075
    until: 2026-12-15
    reason: \"called: pays on the 20th\"
    id: invoice-F2026-0075

# Promises to pay, from phone calls.
promises:
  - invoice: F2026-0020
    date: 2026-12-18
"
        );
        let holds = loads_clean(&dir);
        assert_eq!(holds.list.len(), 3);
        assert_eq!(holds.list[2].reason, "called: pays on the 20th");
        only_the_file(&dir);
    }

    #[test]
    fn ids_stay_what_they_were_when_other_holds_come_and_go() {
        let dir = rules(HAND_WRITTEN);
        // A second hold of the same invoice gets a suffix, written down.
        let second = add_hold(dir.path(), &on_invoice("F2026-0012", "again"), None).unwrap();
        assert_eq!(second, "invoice-F2026-0012-2");
        let third = add_hold(dir.path(), &on_invoice("F 7/1", "odd number"), None).unwrap();
        assert_eq!(third, "invoice-F_7_1");
        remove_hold(dir.path(), "customer-C042", None).unwrap();
        let ids: Vec<String> = read_holds_file(dir.path())
            .unwrap()
            .holds
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(
            ids,
            [
                "invoice-F2026-0012",
                "invoice-F2026-0012-2",
                "invoice-F_7_1"
            ]
        );
        remove_hold(dir.path(), "invoice-F2026-0012", None).unwrap();
        let ids: Vec<String> = read_holds_file(dir.path())
            .unwrap()
            .holds
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["invoice-F2026-0012-2", "invoice-F_7_1"]);
        loads_clean(&dir);
    }

    #[test]
    fn removing_a_hold_cuts_its_lines_only() {
        let dir = rules(HAND_WRITTEN);
        remove_hold(dir.path(), "invoice-F2026-0012", None).unwrap();
        assert_eq!(
            text(&dir),
            "\
# Holds decided by Marie (finance).
holds:
  # Dupont: contested delivery, call back on 12/01

  - customer: C042
    reason: in liquidation

# Promises to pay, from phone calls.
promises:
  - invoice: F2026-0020
    date: 2026-12-18
"
        );
        remove_hold(dir.path(), "customer-C042", None).unwrap();
        let holds = loads_clean(&dir);
        assert!(holds.list.is_empty());
        assert_eq!(holds.promises.len(), 1);
        let missing = remove_hold(dir.path(), "customer-C042", None).unwrap_err();
        assert!(matches!(missing, Error::HoldNotFound { .. }), "{missing}");
        assert_eq!(
            missing.to_string(),
            "no hold has the id \"customer-C042\" in rules/holds.yaml (it was removed, or the file was edited)"
        );
        only_the_file(&dir);
    }

    #[test]
    fn a_comment_inside_a_hold_goes_with_it_and_one_after_it_stays() {
        let dir = rules(
            "holds:\n- invoice: F1\n# why F1\n  reason: x\n# about F2\n- invoice: F2\n  reason: y\n",
        );
        remove_hold(dir.path(), "invoice-F1", None).unwrap();
        assert_eq!(
            text(&dir),
            "holds:\n# about F2\n- invoice: F2\n  reason: y\n"
        );
        loads_clean(&dir);
    }

    #[test]
    fn a_promise_is_added_under_promises_created_when_absent() {
        let dir = rules("holds:\n- {invoice: F1, reason: x}   # flow items\n");
        let promise = NewPromise {
            invoice: "F1".into(),
            date: date("2026-12-18"),
            note: "called Mrs Dupont".into(),
        };
        add_promise(dir.path(), &promise, None).unwrap();
        assert_eq!(
            text(&dir),
            "holds:\n- {invoice: F1, reason: x}   # flow items\n\npromises:\n- invoice: F1\n  date: 2026-12-18\n  note: called Mrs Dupont\n"
        );
        // A hold appended in the flow style of the others.
        add_hold(dir.path(), &on_invoice("F2", "a, b"), None).unwrap();
        assert!(
            text(&dir).starts_with(
                "holds:\n- {invoice: F1, reason: x}   # flow items\n- {invoice: F2, until: 2026-12-15, reason: \"a, b\", id: invoice-F2}\n"
            ),
            "{}",
            text(&dir)
        );
        let holds = loads_clean(&dir);
        assert_eq!(
            holds.promise("F1").map(|p| p.date),
            Some(date("2026-12-18"))
        );
        only_the_file(&dir);
    }

    #[test]
    fn a_missing_file_or_an_empty_list_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let empty = read_holds_file(dir.path()).unwrap();
        assert!(empty.holds.is_empty() && empty.promises.is_empty());
        add_hold(
            dir.path(),
            &NewHold {
                invoice: None,
                customer: Some("C003".into()),
                until: None,
                reason: "liquidation".into(),
            },
            Some(&empty.version),
        )
        .unwrap();
        assert_eq!(
            text(&dir),
            "# Holds and promises to pay (docs/finance.md): written by hand or from\n\
             # the console, which keeps comments and hand-written entries.\n\
             holds:\n  - customer: C003\n    reason: liquidation\n    id: customer-C003\n"
        );
        loads_clean(&dir);
        let dir = rules("holds: []   # none yet\npromises: ~\n");
        add_hold(dir.path(), &on_invoice("F1", "x"), None).unwrap();
        add_promise(
            dir.path(),
            &NewPromise {
                invoice: "12345".into(),
                date: date("2027-01-05"),
                note: String::new(),
            },
            None,
        )
        .unwrap();
        assert_eq!(
            text(&dir),
            "holds:   # none yet\n  - invoice: F1\n    until: 2026-12-15\n    reason: x\n    id: invoice-F1\npromises:\n  - invoice: \"12345\"\n    date: 2027-01-05\n"
        );
        loads_clean(&dir);
        only_the_file(&dir);
    }

    #[test]
    fn a_flow_list_is_rewritten_as_a_block_list() {
        let dir = rules("# top\nholds: [{invoice: F1, reason: a}, {customer: C2, reason: b}]\n");
        remove_hold(dir.path(), "invoice-F1", None).unwrap();
        assert_eq!(
            text(&dir),
            "# top\nholds:\n  - customer: C2\n    reason: b\n"
        );
        loads_clean(&dir);
    }

    #[test]
    fn a_file_changed_since_it_was_read_is_refused() {
        let dir = rules(HAND_WRITTEN);
        let read = read_holds_file(dir.path()).unwrap();
        // Marie saves a hand edit meanwhile.
        let edited = HAND_WRITTEN.replace("in liquidation", "in liquidation (since 11/20)");
        std::fs::write(dir.path().join("holds.yaml"), &edited).unwrap();
        let refused =
            add_hold(dir.path(), &on_invoice("F9", "x"), Some(&read.version)).unwrap_err();
        assert!(matches!(refused, Error::HoldsChanged { .. }), "{refused}");
        assert!(
            refused.to_string().contains("changed since it was read"),
            "{refused}"
        );
        let refused = remove_hold(dir.path(), "customer-C042", Some(&read.version)).unwrap_err();
        assert!(matches!(refused, Error::HoldsChanged { .. }));
        // Her edit is there, untouched; read again, the form goes through.
        assert_eq!(text(&dir), edited);
        let again = read_holds_file(dir.path()).unwrap();
        assert_ne!(again.version, read.version);
        add_hold(dir.path(), &on_invoice("F9", "x"), Some(&again.version)).unwrap();
        assert!(text(&dir).contains("in liquidation (since 11/20)"));
        only_the_file(&dir);
    }

    #[test]
    fn an_edit_saved_while_writing_is_never_overwritten() {
        let dir = rules(HAND_WRITTEN);
        let path = dir.path().join("holds.yaml");
        let current = Current::read(&path).unwrap();
        let ours = add_to_list(
            &current.text,
            &current.lists,
            List::Holds,
            &[("invoice", Value::Text("F9")), ("reason", Value::Text("x"))],
        );
        // The hand edit lands between our read and our rename.
        let theirs = HAND_WRITTEN.replace("C042", "C043");
        std::fs::write(&path, &theirs).unwrap();
        assert!(!replace(&path, &current.text, &ours).unwrap());
        assert_eq!(text(&dir), theirs);
        only_the_file(&dir);
    }

    #[test]
    fn bad_requests_and_broken_files_are_refused_with_what_to_do() {
        let dir = rules(HAND_WRITTEN);
        let both = NewHold {
            customer: Some("C1".into()),
            ..on_invoice("F1", "x")
        };
        let no_reason = on_invoice("F1", "  ");
        for (hold, message) in [
            (
                &both,
                "give an invoice or a customer, not both (record two holds)",
            ),
            (
                &no_reason,
                "give a reason: it is what explain and the console show",
            ),
        ] {
            let e = add_hold(dir.path(), hold, None).unwrap_err();
            assert!(matches!(e, Error::InvalidHold { .. }));
            assert_eq!(e.to_string(), format!("invalid hold or promise: {message}"));
        }
        assert_eq!(text(&dir), HAND_WRITTEN);
        let broken = rules("holds:\n  - invoice: F1\n    customer: C1\n");
        let e = add_hold(broken.path(), &on_invoice("F2", "x"), None).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "holds.yaml:2:5: holds[0]: give `invoice` or `customer`, not both (write two holds) (fix the file before changing it from the console)"
            ),
            "{e}"
        );
    }

    #[test]
    fn odd_text_is_quoted_so_that_it_reads_back_as_written() {
        let dir = rules("");
        for reason in [
            "true",
            "12",
            "a: b",
            "# not a comment",
            "line\nbreak",
            "«café» — 20 %",
            "'quoted'",
            "ends with space ",
            "null",
        ] {
            add_hold(dir.path(), &on_invoice("F1", reason), None).unwrap();
        }
        let holds = loads_clean(&dir);
        let reasons: Vec<&str> = holds.list.iter().map(|h| h.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "true",
                "12",
                "a: b",
                "# not a comment",
                "line\nbreak",
                "«café» — 20 %",
                "'quoted'",
                "ends with space",
                "null"
            ]
        );
    }

    #[test]
    fn crlf_files_keep_their_line_ends() {
        let dir = rules("holds:\r\n  - invoice: F1\r\n    reason: x\r\n");
        add_hold(dir.path(), &on_invoice("F2", "y"), None).unwrap();
        assert_eq!(
            text(&dir),
            "holds:\r\n  - invoice: F1\r\n    reason: x\r\n  - invoice: F2\r\n    until: 2026-12-15\r\n    reason: y\r\n    id: invoice-F2\r\n"
        );
        loads_clean(&dir);
    }
}
