//! The library API driven directly, as a server or a test harness would: load
//! a folder, check it, plan a window, render the outgoing messages, explain an
//! invoice, run one daemon pass. Each result is compared with what the binary
//! prints for the same folder: one decision path behind both.

mod common;

use chrono::{NaiveDate, TimeZone, Utc};
use common::Folder;
use relance::{Daemon, Options, Project, RunOptions};

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn load(folder: &Folder) -> Project {
    Project::load(&Options {
        dir: folder.path().to_path_buf(),
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn the_shipped_sample_loads_and_checks_clean() {
    let folder = Folder::sample();
    let project = load(&folder);
    assert!(!project.has_rule_errors());
    let problems = project.check(date("2026-12-01"));
    assert!(problems.is_empty(), "{problems:?}");
    assert!(project.ledger.invoices.len() >= 5);
}

#[test]
fn a_planned_window_renders_the_rows_preview_prints() {
    let folder = Folder::sample();
    let project = load(&folder);
    let journal = project.journal_view().unwrap();
    let plan = project.plan(date("2026-12-01"), 14, &journal);
    let rows = project.render(&plan.reminders, false);
    assert!(!rows.is_empty());
    let from_api = serde_json::to_value(&rows).unwrap();
    let from_binary = folder
        .run(&["preview", "--as-of", "2026-12-01", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(from_api, from_binary);
}

#[test]
fn an_explanation_is_a_value_with_the_json_explain_prints() {
    let folder = Folder::sample();
    let project = load(&folder);
    let journal = project.journal_view().unwrap();
    let explanation =
        relance::explain(&project, "F2026-0102", date("2026-12-01"), &journal).unwrap();
    assert_eq!(explanation.policy, Some("standard"));
    let from_binary = folder
        .run(&[
            "explain",
            "F2026-0102",
            "--as-of",
            "2026-12-01",
            "--format",
            "json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(serde_json::to_value(&explanation).unwrap(), from_binary);
    let unknown = relance::explain(&project, "NOPE", date("2026-12-01"), &journal);
    assert!(matches!(unknown, Err(relance::Error::UnknownInvoice(n)) if n == "NOPE"));
}

#[test]
fn the_impact_of_an_edit_is_a_value_with_the_json_preview_baseline_prints() {
    let folder = Folder::sample();
    let before = Folder::sample();
    let standard = folder.read("rules/standard.yaml");
    folder.write(
        "rules/standard.yaml",
        &standard.replacen("offset: 15", "offset: 10", 1),
    );
    let project = load(&folder);
    let baseline =
        relance::Baseline::load(before.path().to_str().unwrap(), folder.path(), &project).unwrap();
    assert!(!baseline.project.has_rule_errors());
    let journal = project.journal_view().unwrap();
    let impact = relance::impact(
        &baseline.project,
        &project,
        date("2026-12-01"),
        14,
        &journal,
    );
    assert!(!impact.added.is_empty());
    let from_binary = folder
        .run(&[
            "preview",
            "--as-of",
            "2026-12-01",
            "--baseline",
            before.path().to_str().unwrap(),
            "--format",
            "json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(serde_json::to_value(&impact).unwrap(), from_binary);
}

#[test]
fn one_daemon_pass_delivers_what_the_plan_says_once() {
    let folder = Folder::sample();
    let options = Options {
        dir: folder.path().to_path_buf(),
        ..Options::default()
    };
    let run = RunOptions {
        as_of: Some(date("2026-12-01")),
        confirm: true,
        ..RunOptions::default()
    };
    let expected = {
        let project = load(&folder);
        let plan = project.plan(date("2026-12-01"), 1, &project.journal_view().unwrap());
        project.messages(&plan.reminders).each().count()
    };
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
    let mut daemon = Daemon::open(options.clone(), run.clone()).unwrap();
    let report = daemon.evaluate(now).unwrap();
    assert_eq!(
        (report.due, report.sent, report.failed),
        (expected, expected, 0)
    );
    let delivered = folder.files("outbox").len() + folder.files("tasks").len();
    assert!(
        delivered >= expected,
        "{delivered} files for {expected} messages"
    );
    // The journal now holds them: a second pass, even by a new daemon, sends nothing.
    let again = Daemon::open(options, run).unwrap().evaluate(now).unwrap();
    assert_eq!((again.due, again.sent), (0, 0));
    assert_eq!(
        folder.files("outbox").len() + folder.files("tasks").len(),
        delivered
    );
}

#[test]
fn a_folder_that_cannot_be_loaded_is_a_located_error() {
    let folder = Folder::empty();
    folder.write("relance.yaml", "timezone: Mars/Olympus\n");
    let error = Project::load(&Options {
        dir: folder.path().to_path_buf(),
        ..Options::default()
    })
    .err()
    .expect("an unknown time zone stops loading");
    let text = error.to_string();
    assert!(text.contains("relance.yaml:1:"), "{text}");
    assert!(text.contains("Mars/Olympus"), "{text}");
    let as_std: &dyn std::error::Error = &error;
    assert_eq!(as_std.to_string(), text);
}
