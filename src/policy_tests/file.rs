//! A policy test file (`rules/*.test.yaml`) read into its cases, each at its line, every mistake located.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::diagnostics::{Location, Problems, RuleLimits, key_location, locate_yaml_key};
use crate::diagnostics::{parse_yaml, read_rule_file};
use crate::journal::{JournalView, Mark, State};
use crate::rules::{Channel, HoldEntry};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestsFile {
    tests: Vec<CaseFile>,
}

/// One case as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: String,
    #[serde(deserialize_with = "date")]
    as_of: NaiveDate,
    #[serde(default = "one_day")]
    days: u32,
    #[serde(default)]
    invoices: Vec<WrittenInvoice>,
    #[serde(default)]
    journal: Vec<JournalEntry>,
    #[serde(default)]
    holds: Option<Vec<HoldEntry>>,
    #[serde(default)]
    config: Option<serde_yaml::Mapping>,
    expect: Vec<Expected>,
}

/// A date as the feeds write it by default, `YYYY-MM-DD`; a mistake is
/// located at the date (read inside the deserializer, which places it).
fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    struct Date;
    impl Visitor<'_> for Date {
        type Value = NaiveDate;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a date YYYY-MM-DD")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<NaiveDate, E> {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .map_err(|_| E::custom(format!("expected a date YYYY-MM-DD, found {text:?}")))
        }
    }
    d.deserialize_str(Date)
}

fn some_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    date(d).map(Some)
}

fn one_day() -> u32 {
    1
}

/// What a case says was already journaled before its first day.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalEntry {
    invoice: String,
    policy: String,
    stage: String,
    #[serde(default)]
    occurrence: u32,
    #[serde(deserialize_with = "date")]
    date: NaiveDate,
    #[serde(default = "sent")]
    state: String,
}

fn sent() -> String {
    State::Sent.as_str().to_string()
}

/// A reminder a case expects: each key it names must match; the others
/// match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(
        default,
        deserialize_with = "some_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The copies, all of them, in any order (`[]`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bcc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_contains: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

/// An inline invoice as written: its fields in order, each value as its
/// text (a number as written, not as a float), a list of tags joined by
/// `|` as a feed writes them; a null is left out.
pub struct WrittenInvoice(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for WrittenInvoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = WrittenInvoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an invoice: its feed fields, e.g. {number: T1, customer_id: C1, \
                     due_date: 2026-11-30, amount: 100}",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WrittenInvoice, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = if key.trim().eq_ignore_ascii_case("tags") {
                        map.next_value::<Tags>()?.0
                    } else {
                        // A plain scalar's text as written: `100.10` stays `100.10`.
                        match map.next_value::<Option<String>>()? {
                            Some(text) => text,
                            None => continue,
                        }
                    };
                    fields.push((key, value));
                }
                Ok(WrittenInvoice(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// `tags: [a, b]` or `tags: "a|b"`, as the feed's `a|b`.
struct Tags(String);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tags, e.g. [key-account, b2c]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Tags, E> {
                Ok(Tags(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Tags, E> {
                Ok(Tags(String::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::new();
                while let Some(tag) = seq.next_element::<String>()? {
                    tags.push(tag);
                }
                Ok(Tags(tags.join("|")))
            }
        }
        d.deserialize_any(List)
    }
}

/// One case, read and checked, ready to run.
pub struct Case {
    pub name: String,
    /// The line its item starts at.
    pub line: usize,
    pub as_of: NaiveDate,
    pub days: u32,
    /// Each inline invoice with the line it is written at.
    pub invoices: Vec<(usize, WrittenInvoice)>,
    pub journal: JournalView,
    /// Its `holds:`, instead of the folder's.
    pub holds: Option<Vec<HoldEntry>>,
    /// Its `config:` overrides, and the line of that key.
    pub config: Option<(serde_yaml::Mapping, Location)>,
    pub expect: Vec<Expected>,
    /// Whether it has a mistake of its own (reported): its world is still
    /// built, so that every mistake is reported at once, but it does not run.
    pub broken: bool,
}

/// A test file read: its text (holds are located in it) and the cases that read well.
pub struct Cases {
    pub path: PathBuf,
    pub source: String,
    pub cases: Vec<Case>,
}

/// The most days a case may simulate, as `preview --days`.
const MAX_DAYS: u32 = 3660;

/// Reads a test file held to `limits`; `None` when it does not read at all
/// (its problem is in `problems`). A case with a mistake serde does not
/// see (an unknown state, a bad channel, an empty name) is reported and
/// marked broken.
pub fn read(path: &Path, limits: RuleLimits, problems: &mut Problems) -> Option<Cases> {
    let source = read_rule_file(path, "policy test", limits, problems)?;
    let file = parse_yaml::<TestsFile>(path, &source, problems)?;
    let starts = case_lines(&source, file.tests.len());
    let mut cases = Vec::new();
    for (i, case) in file.tests.into_iter().enumerate() {
        let line = starts.get(i).copied().flatten().unwrap_or_else(|| {
            // Written otherwise than one `- ` item a line: its name's line.
            locate_yaml_key(&source, 1, "name", Some(&case.name)).map_or(1, |(line, _)| line)
        });
        let end = starts.get(i + 1).copied().flatten();
        let within = CaseText {
            path,
            source: &source,
            line,
            end,
        };
        cases.push(within.check(case, problems));
    }
    Some(Cases {
        path: path.to_path_buf(),
        source,
        cases,
    })
}

/// Where a case is written: from its line to the next case's.
struct CaseText<'a> {
    path: &'a Path,
    source: &'a str,
    line: usize,
    end: Option<usize>,
}

impl CaseText<'_> {
    /// Where `key:` (with `value`) is first written in the case, else the case's line.
    fn at(&self, from: usize, key: &str, value: Option<&str>) -> Location {
        let found = key_location(self.path, self.source, from, key, value);
        match found.line {
            Some(line) if self.end.is_none_or(|end| line < end) => found,
            _ => Location::line(self.path, self.line),
        }
    }

    /// The lines of the items of the case's block list `key:`, if written so.
    fn items(&self, key: &str) -> Vec<usize> {
        let at = self.at(self.line, key, None);
        match (at.line, at.col) {
            (Some(line), Some(col)) => items_under(self.source, line, col - 1),
            _ => Vec::new(),
        }
    }

    fn check(&self, case: CaseFile, problems: &mut Problems) -> Case {
        let before = problems.len();
        let whose = format!("test {:?}", case.name);
        if case.name.trim().is_empty() {
            problems.error(
                self.at(self.line, "name", None),
                "name is empty: say what the case checks, e.g. name: a late invoice gets a statement",
            );
        }
        if !(1..=MAX_DAYS).contains(&case.days) {
            problems.error(
                self.at(self.line, "days", None),
                format!(
                    "{whose}: days: {} is not a number of days from 1 to {MAX_DAYS}",
                    case.days
                ),
            );
        }
        let mut journal = JournalView::default();
        let rows = self.items("journal");
        for (i, entry) in case.journal.into_iter().enumerate() {
            let Some(state) = State::parse(&entry.state) else {
                let from = rows.get(i).copied().unwrap_or(self.line);
                problems.error(
                    self.at(from, "state", Some(&entry.state)),
                    format!(
                        "{whose}: journal[{i}]: state {:?} is not a journal state (expected \
                         sent, skipped, failed, planned, awaiting_approval or approved)",
                        entry.state
                    ),
                );
                continue;
            };
            journal
                .by_invoice
                .entry(entry.invoice)
                .or_default()
                .push(Mark {
                    policy: Arc::from(entry.policy.as_str()),
                    stage: Arc::from(entry.stage.as_str()),
                    occurrence: entry.occurrence,
                    state,
                    date: entry.date,
                    channel: Arc::from(""),
                });
        }
        let expected = self.items("expect");
        for (i, e) in case.expect.iter().enumerate() {
            if let Some(channel) = e.channel.as_deref()
                && Channel::parse(channel).is_none()
            {
                let from = expected.get(i).copied().unwrap_or(self.line);
                let names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
                problems.error(
                    self.at(from, "channel", Some(channel)),
                    format!(
                        "{whose}: expect[{i}]: channel {channel:?} is not a channel (expected one of {})",
                        names.join(", ")
                    ),
                );
            }
        }
        let lines = self.items("invoices");
        let invoices = case
            .invoices
            .into_iter()
            .enumerate()
            .map(|(i, invoice)| (lines.get(i).copied().unwrap_or(self.line), invoice))
            .collect();
        let config = case
            .config
            .map(|overrides| (overrides, self.at(self.line, "config", None)));
        Case {
            name: case.name,
            line: self.line,
            as_of: case.as_of,
            days: case.days,
            invoices,
            journal,
            holds: case.holds,
            config,
            expect: case.expect,
            broken: problems.len() > before,
        }
    }
}

/// The line each of the `count` cases of the top-level `tests:` list starts
/// at, when they are written as block items; `None` for each otherwise.
fn case_lines(source: &str, count: usize) -> Vec<Option<usize>> {
    let items = match locate_yaml_key(source, 1, "tests", None) {
        Some((line, 1)) => items_under(source, line, 0),
        _ => Vec::new(),
    };
    if items.len() == count {
        items.into_iter().map(Some).collect()
    } else {
        vec![None; count]
    }
}

/// The lines (1-based) where the items of the block list under the key at
/// line `at`, column `indent` (0-based) start: `- ` lines at one
/// indentation, not less than the key's, up to the first line less
/// indented than them. Empty when the list is written otherwise (`[…]`).
fn items_under(source: &str, at: usize, indent: usize) -> Vec<usize> {
    let mut items = Vec::new();
    let mut item_indent = None;
    for (i, line) in source.lines().enumerate().skip(at) {
        let text = line.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let this = line.len() - text.len();
        let is_item = text == "-" || text.starts_with("- ");
        match item_indent {
            None if is_item && this >= indent => {
                item_indent = Some(this);
                items.push(i + 1);
            }
            None => break,
            Some(n) if this < n || (this == n && !is_item) => break,
            Some(n) if this == n => items.push(i + 1),
            Some(_) => {}
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_of_a_block_list_and_nothing_for_a_flow_one() {
        let source = "tests:\n  - name: a\n    invoices:\n    - {number: T1}\n    # note\n    - number: T2\n      amount: 1\n    expect: []\n\n  - name: b\n    invoices: [{number: T3}]\n";
        assert_eq!(items_under(source, 1, 0), vec![2, 10]);
        assert_eq!(items_under(source, 3, 4), vec![4, 6]);
        assert_eq!(items_under(source, 11, 4), Vec::<usize>::new());
        assert_eq!(case_lines(source, 2), vec![Some(2), Some(10)]);
        assert_eq!(case_lines(source, 3), vec![None, None, None]);
    }
}
