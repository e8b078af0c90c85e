//! Policy unit tests (`rules/*.test.yaml`, `relance test`): each case's invoices, journal, holds and config run on the real engine and templates, its expected reminders matched against what goes out.
//!
//! A case builds a [`Project`] of its own: the folder's config with the
//! case's `config:` written over it, the folder's rulebook (reloaded under
//! that config, with the case's `holds:` when it gives some), a ledger of
//! its inline invoices read by the feed's own row conversion, and a journal
//! of its `journal:` rows. Then it is planned and rendered as `preview`
//! plans and renders, so a case tests what the daemon would send.

mod file;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::diagnostics::{Location, Problems, files_with_extension};
use crate::project::{Message, Project, Rulebook};
use crate::rules::{Holds, is_test_file};

pub use file::Expected;
use file::{Case, Cases, WrittenInvoice};

/// What one case gave: whether every expected reminder went out and
/// nothing else did, and the difference when not.
#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// The expected reminders no actual one matched, as written.
    pub missing: Vec<Expected>,
    /// The actual reminders no expected one matched, as `preview --format
    /// json` prints them.
    pub unexpected: Vec<Value>,
}

/// What one test file gave: its cases that ran, and the problems that kept
/// it or some of its cases from running (errors), or that did not (warnings).
#[derive(Debug, Clone)]
pub struct TestFile {
    pub file: PathBuf,
    pub problems: Problems,
    pub cases: Vec<TestCase>,
}

impl TestFile {
    /// Whether all of it loaded: every case ran.
    pub fn loaded(&self) -> bool {
        !self.problems.has_errors()
    }
}

/// The policy test files to run: the files `named`, else the folder's
/// `rules/*.test.yaml` and `rules/*.test.yml`, sorted by name. A named path
/// is taken as written, or in the folder when it is relative and only
/// there (`relance --dir X test rules/a.test.yaml` run from elsewhere).
pub fn test_files(config: &Config, named: &[PathBuf]) -> Vec<PathBuf> {
    if !named.is_empty() {
        return named
            .iter()
            .map(|path| {
                let in_folder = config.path(path);
                if path.is_relative() && !path.exists() && in_folder.exists() {
                    in_folder
                } else {
                    path.clone()
                }
            })
            .collect();
    }
    let rules = config.path(&config.rules);
    let mut files = files_with_extension(&rules, "yaml");
    files.extend(files_with_extension(&rules, "yml"));
    files.retain(|f| is_test_file(f));
    files.sort();
    files
}

/// Runs the cases of each file against the project's config and rulebook
/// (its feeds' invoices play no part: each case brings its own).
pub fn run_tests(project: &Project, files: &[PathBuf]) -> Vec<TestFile> {
    files.iter().map(|file| run_file(project, file)).collect()
}

/// What `check` says of the folder's policy tests: a file or case that does
/// not load is its errors, a failing case is one error at its line.
pub fn check_tests(project: &Project) -> Problems {
    let mut problems = Problems::default();
    // Against rules that do not load every case fails, and a screen of
    // failed tests would bury the one error that matters.
    if project.has_rule_errors() {
        let files = test_files(&project.config, &[]);
        if let Some(first) = files.first() {
            problems.warning(
                Location::file(first),
                format!(
                    "{} policy test file(s) not run: the rules have errors (fix them, then run relance test)",
                    files.len()
                ),
            );
        }
        return problems;
    }
    for file in run_tests(project, &test_files(&project.config, &[])) {
        problems.extend(file.problems);
        for case in file.cases.iter().filter(|c| !c.passed) {
            problems.error(
                Location::line(&case.file, case.line),
                format!(
                    "test {:?} fails: {} missing, {} unexpected (run relance test)",
                    case.name,
                    case.missing.len(),
                    case.unexpected.len()
                ),
            );
        }
    }
    problems
}

fn run_file(project: &Project, path: &Path) -> TestFile {
    let mut problems = Problems::default();
    let limits = project.config.limits.rules();
    let Some(cases) = file::read(path, limits, &mut problems) else {
        return TestFile {
            file: path.to_path_buf(),
            problems,
            cases: Vec::new(),
        };
    };
    let results = cases
        .cases
        .iter()
        .filter_map(|case| run_case(project, &cases, case, &mut problems))
        .collect();
    TestFile {
        file: path.to_path_buf(),
        problems,
        cases: results,
    }
}

/// Runs one case; `None` when its world does not load (its problems say why).
fn run_case(
    project: &Project,
    file: &Cases,
    case: &Case,
    problems: &mut Problems,
) -> Option<TestCase> {
    let world = world(project, file, case, problems)?;
    let plan = world.plan(case.as_of, case.days, &case.journal);
    for (invoice, error) in &plan.errors {
        problems.warning(
            Location::line(&file.path, case.line),
            format!(
                "test {:?}: {error} (invoice {})",
                case.name, world.ledger.invoices[*invoice].number
            ),
        );
    }
    let actual = world.render(&plan.reminders, true);
    let owner = assign(&case.expect, &actual);
    let missing: Vec<Expected> = case
        .expect
        .iter()
        .enumerate()
        .filter(|(e, _)| !owner.contains(&Some(*e)))
        .map(|(_, expected)| expected.clone())
        .collect();
    let unexpected: Vec<Value> = actual
        .iter()
        .zip(&owner)
        .filter(|(_, owner)| owner.is_none())
        .map(|(row, _)| preview_row(row))
        .collect();
    Some(TestCase {
        file: file.path.clone(),
        line: case.line,
        name: case.name.clone(),
        passed: missing.is_empty() && unexpected.is_empty(),
        missing,
        unexpected,
    })
}

/// A rendered reminder as a `preview --format json` row: without its body.
fn preview_row(row: &Message) -> Value {
    let mut row = row.clone();
    row.body = None;
    row.html = None;
    serde_json::to_value(&row).unwrap_or_default()
}

/// The project a case runs in; `None`, with its problems, when its config,
/// holds or invoices do not load.
fn world(project: &Project, file: &Cases, case: &Case, problems: &mut Problems) -> Option<Project> {
    let mut own = Problems::default();
    let built = build(project, file, case, &mut own);
    for mut problem in own.0 {
        problem.message = format!("test {:?}: {}", case.name, problem.message);
        problems.push(problem);
    }
    built
}

fn build(project: &Project, file: &Cases, case: &Case, problems: &mut Problems) -> Option<Project> {
    let config = match &case.config {
        None => project.config.clone(),
        Some((overrides, at)) => {
            let config = match project.config.with_overrides(overrides) {
                Ok(config) => config,
                Err(why) => {
                    problems.error(locate_override(file, at, &why), format!("config: {why}"));
                    return None;
                }
            };
            // Located in relance.yaml, which it is not: said at `config:`.
            let folder = project.config.validate();
            let added: Vec<String> = config
                .validate()
                .0
                .into_iter()
                .filter(|p| p.is_error() && !folder.0.contains(p))
                .map(|p| p.message)
                .collect();
            if !added.is_empty() {
                for message in added {
                    problems.error(at.clone(), format!("config: {message}"));
                }
                return None;
            }
            config
        }
    };
    let rulebook = match (&case.config, &case.holds) {
        (None, None) => project.rulebook.clone(),
        _ => {
            let (mut rulebook, loaded) = Rulebook::load(&config);
            // The folder's own problems are reported where they are; what
            // the case's config adds (a template missing in its language)
            // is the case's.
            for problem in loaded.iter().filter(|p| p.is_error()) {
                if !project.problems.0.contains(problem) {
                    problems.error(
                        problem.location.clone(),
                        format!("with its config: {}", problem.message),
                    );
                }
            }
            if let Some(entries) = &case.holds {
                rulebook.holds = Holds::default();
                rulebook.holds.add(
                    entries.clone(),
                    &file.path,
                    &file.source,
                    case.line,
                    problems,
                );
            }
            Arc::new(rulebook)
        }
    };
    let rows = case
        .invoices
        .iter()
        .map(|(line, invoice)| (*line, with_defaults(invoice, case.as_of)))
        .collect();
    let read = crate::feed::read_written(&config, &file.path, rows, case.as_of);
    problems.extend(read.problems);
    let (ledger, warnings) = Project::ledger(&config, read.invoices, read.index);
    problems.extend(warnings);
    if problems.has_errors() || case.broken {
        return None;
    }
    let mut project = Project {
        config,
        rulebook,
        ledger,
        problems: Problems::default(),
        feed_problems: Problems::default(),
        bad_rows: 0,
        unreadable_feeds: Vec::new(),
    };
    // As the folder's holds hold the case's invoices of their numbers, so
    // do its promises to pay.
    project.apply_promises();
    Some(project)
}

/// Where a config override's mistake is: the key an unknown-field error
/// names, written after the case's `config:`, else that `config:`.
fn locate_override(file: &Cases, at: &Location, why: &str) -> Location {
    let named = why
        .strip_prefix("unknown field `")
        .or_else(|| why.split(": unknown field `").nth(1))
        .and_then(|rest| rest.split('`').next());
    match (named, at.line) {
        (Some(key), Some(line)) => {
            let found = crate::diagnostics::key_location(&file.path, &file.source, line, key, None);
            if found.line.is_some() {
                found
            } else {
                at.clone()
            }
        }
        _ => at.clone(),
    }
}

/// An inline invoice as a feed row: its fields, and for those it leaves
/// out the defaults of a case (a name and an address from the customer id,
/// an issue date 30 days before the due date); the feed gives the rest
/// (nothing paid, the config's currency and language, status open).
fn with_defaults(invoice: &WrittenInvoice, as_of: NaiveDate) -> serde_json::Map<String, Value> {
    let mut row = serde_json::Map::new();
    for (key, value) in &invoice.0 {
        row.insert(key.clone(), Value::String(value.clone()));
    }
    let given = |field: &str| {
        invoice
            .0
            .iter()
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(field))
            .map(|(_, value)| value.trim())
    };
    let mut defaults: Vec<(&str, String)> = Vec::new();
    if let Some(customer) = given("customer_id") {
        defaults.push(("customer_name", format!("Customer {customer}")));
        defaults.push(("email", format!("{customer}@example.com").to_lowercase()));
    }
    // Without a due date that reads, the row is bad whatever its issue
    // date: `as_of` stands in, so that the due date's mistake is the one said.
    let issued = match given("due_date").and_then(|d| d.parse::<NaiveDate>().ok()) {
        Some(due) => crate::calendar::add_days(due, -30),
        None => as_of,
    };
    defaults.push(("issue_date", issued.to_string()));
    for (field, value) in defaults {
        if given(field).is_none() {
            row.insert(field.to_string(), Value::String(value));
        }
    }
    row
}

/// Which expected reminder each actual one is matched with: a maximum
/// matching, so that an expectation naming few keys does not take the one
/// reminder a more precise expectation needs.
fn assign(expect: &[Expected], actual: &[Message]) -> Vec<Option<usize>> {
    let fits: Vec<Vec<usize>> = expect
        .iter()
        .map(|e| {
            (0..actual.len())
                .filter(|&a| matches(e, &actual[a]))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; actual.len()];
    for e in 0..expect.len() {
        let mut seen = vec![false; actual.len()];
        augment(e, &fits, &mut owner, &mut seen);
    }
    owner
}

/// Finds an actual reminder for expectation `e`, moving others' along an
/// augmenting path (Kuhn's algorithm).
fn augment(e: usize, fits: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &a in &fits[e] {
        if seen[a] {
            continue;
        }
        seen[a] = true;
        if owner[a].is_none_or(|other| augment(other, fits, owner, seen)) {
            owner[a] = Some(e);
            return true;
        }
    }
    false
}

/// Whether an actual reminder has every key the expectation names.
fn matches(e: &Expected, row: &Message) -> bool {
    fn same<T: PartialEq + ?Sized>(want: Option<&T>, got: &T) -> bool {
        want.is_none_or(|w| w == got)
    }
    let contains =
        |want: &Option<String>, text: &str| want.as_deref().is_none_or(|w| text.contains(w));
    let same_set = |want: &Option<Vec<String>>, got: &[&str]| {
        want.as_ref().is_none_or(|w| {
            let mut w: Vec<&str> = w.iter().map(String::as_str).collect();
            let mut g = got.to_vec();
            w.sort_unstable();
            g.sort_unstable();
            w == g
        })
    };
    same(e.date.as_ref(), &row.date)
        && same(e.invoice.as_deref(), row.invoice)
        && same(e.policy.as_deref(), row.policy)
        && same(e.stage.as_deref(), row.stage)
        && same(e.occurrence.as_ref(), &row.occurrence)
        && same(e.channel.as_deref(), row.channel.as_str())
        && same(e.to.as_deref(), &*row.to)
        && same_set(&e.cc, &row.cc)
        && same_set(&e.bcc, &row.bcc)
        && same(e.language.as_deref(), row.language)
        && same(e.template.as_deref(), row.template)
        && same(e.message.as_deref(), row.message.as_str())
        && contains(&e.subject_contains, &row.subject)
        && contains(&e.body_contains, row.body.as_deref().unwrap_or(""))
}
