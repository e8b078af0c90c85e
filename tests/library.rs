//! The library API driven directly, as a server or a test harness would: load
//! a folder, check it, plan a window, render the outgoing messages, explain an
//! invoice, run one daemon pass, each command of the binary as one call.
//! Each result is compared with what the binary
//! prints for the same folder: one decision path behind both.

mod common;

use chrono::{NaiveDate, TimeZone, Utc};
use common::Folder;
use relance::report::Format;
use relance::report::commands::{self, AsOf, Done, Exit, Invoices, Preview, ReportFormat};
use relance::{Approval, AwaitingFilter, Daemon, Options, Project, RunOptions};

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

/// What a command of [`relance::report::commands`] printed and how it ended.
fn captured(
    command: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> relance::Result<Done>,
) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let done = command(&mut out, &mut err).unwrap();
    let code = match done.exit {
        Exit::Ok => 0,
        Exit::Problems => 1,
        Exit::Usage => 2,
    };
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (code, text(out), text(err))
}

fn binary(folder: &Folder, args: &[&str]) -> (i32, String, String) {
    let run = folder.run(args);
    (run.code, run.stdout, run.stderr)
}

fn options(folder: &Folder) -> Options {
    Options {
        dir: folder.path().to_path_buf(),
        ..Options::default()
    }
}

fn as_of(day: &str) -> AsOf {
    AsOf {
        date: Some(date(day)),
        now: Utc::now(),
    }
}

#[test]
fn each_command_is_one_library_call_that_prints_what_the_binary_prints() {
    let folder = Folder::sample();
    // A bad row, so that the warnings on stderr are compared too.
    let feed = folder.read("data/invoices.csv");
    folder.write("data/invoices.csv", &format!("{feed}BAD,,,,,,,,,,,,,\n"));
    let o = &options(&folder);
    let day = "2026-12-01";
    let preview = |format, invoice: Option<&str>| Preview {
        as_of: as_of(day),
        days: 14,
        format,
        render: false,
        invoice: invoice.map(str::to_string),
        baseline: None,
        all: false,
    };
    let now = Utc::now();
    type Call<'a> = Box<dyn FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> relance::Result<Done> + 'a>;
    let cases: Vec<(Vec<&str>, Call)> = vec![
        (
            vec!["check", "--format", "json"],
            Box::new(|out, err| commands::check(out, err, o, Format::Json, now)),
        ),
        (
            vec!["preview", "--as-of", day],
            Box::new(|out, err| commands::preview(out, err, o, preview(Format::Table, None))),
        ),
        (
            vec!["preview", "--as-of", day, "--format", "csv"],
            Box::new(|out, err| commands::preview(out, err, o, preview(Format::Csv, None))),
        ),
        (
            vec!["preview", "--as-of", day, "--invoice", "NOPE"],
            Box::new(|out, err| {
                commands::preview(out, err, o, preview(Format::Table, Some("NOPE")))
            }),
        ),
        (
            vec!["explain", "F2026-0102", "--as-of", day],
            Box::new(|out, err| {
                commands::explain(out, err, o, "F2026-0102", as_of(day), Format::Table)
            }),
        ),
        (
            vec!["test", "--format", "json"],
            Box::new(|out, err| commands::test(out, err, o, &[], Format::Json)),
        ),
        (
            vec!["backtest", "--from", "2026-11-01", "--to", day],
            Box::new(|out, err| {
                let from = date("2026-11-01");
                commands::backtest(out, err, o, from, date(day), Format::Table)
            }),
        ),
        (
            vec!["report", "--as-of", day, "--format", "json"],
            Box::new(|out, err| commands::receivables(out, err, o, as_of(day), ReportFormat::Json)),
        ),
        (
            vec!["history", "--format", "json"],
            Box::new(|out, _| commands::history(out, o, None, None, Format::Json)),
        ),
    ];
    for (args, call) in cases {
        let expected = binary(&folder, &args);
        if expected.0 == 1 && expected.1.is_empty() {
            // An error the binary prints as `relance: …`: the call returns it.
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let error = call(&mut out, &mut err).err().expect("an error");
            let printed = format!("{}relance: {error}\n", String::from_utf8(err).unwrap());
            assert_eq!(printed, expected.2, "{args:?}");
            continue;
        }
        assert_eq!(captured(call), expected, "{args:?}");
    }
}

#[test]
fn retry_requeues_the_failed_reminders_of_each_invoice_named() {
    let folder = common::dunning_folder("", &common::invoices(3));
    folder.run(&common::RUN_ONCE).expect_code(0);
    folder.rewind("F001", "failed", 0);
    let config = relance::Config::load(folder.path(), None).unwrap();
    let now = "2026-12-01T10:00:00.000Z";
    let requeued = relance::retry(&config, &[Some("F002"), Some("F001")], now).unwrap();
    assert_eq!(requeued, vec![(Some("F002"), 0), (Some("F001"), 1)]);
    let row = folder
        .journal()
        .into_iter()
        .find(|r| r.invoice == "F001")
        .unwrap();
    assert_eq!(row.next_try_at.as_deref(), Some(now));
    // Still failed (it has not been tried again): `--all` finds it.
    let (code, out, err) = captured(|out, err| {
        commands::retry(out, err, &options(&folder), Invoices::All, Utc::now())
    });
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "1 failed reminder(s) re-queued\n", "")
    );
    let named = ["F003".to_string()];
    let (code, out, err) = captured(|out, err| {
        commands::retry(
            out,
            err,
            &options(&folder),
            Invoices::Named(&named),
            Utc::now(),
        )
    });
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "relance: invoice F003 has no failed reminder\n")
    );
}

#[test]
fn approvals_are_decided_invoice_by_invoice_with_their_reason() {
    let folder = common::dunning_folder("", &common::invoices(3));
    folder.write(
        "rules/dunning.yaml",
        &common::policy(
            "dunning",
            &["{id: overdue, offset: 1, template: overdue, approve: true}"],
        ),
    );
    folder.run(&common::RUN_ONCE).expect_code(0);
    let config = relance::Config::load(folder.path(), None).unwrap();
    let now = "2026-12-01T10:00:00.000Z";
    let any = AwaitingFilter::default();
    let approved =
        relance::decide_approvals(&config, &[Some("F001")], any, Approval::Approve, now).unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].0, Some("F001"));
    let stages: Vec<&str> = approved[0].1.iter().map(|i| i.stage.as_str()).collect();
    assert_eq!(stages, ["overdue"]);
    let other_stage = AwaitingFilter {
        stage: Some("formal_notice"),
        policy: None,
    };
    let reject = Approval::Reject { reason: "disputed" };
    let none = relance::decide_approvals(&config, &[Some("F002")], other_stage, reject, now);
    assert!(none.unwrap()[0].1.is_empty());
    let (code, out, err) = captured(|out, err| {
        let named = ["F002".to_string(), "F001".to_string()];
        commands::decide_approvals(
            out,
            err,
            &options(&folder),
            Invoices::Named(&named),
            any,
            reject,
            Utc::now(),
        )
    });
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "F002: 1 reminder(s) rejected\n",
            "relance: invoice F001 has no reminder awaiting approval\n"
        )
    );
    let mut states = folder.journal_states();
    states.sort();
    let expected = [
        ("F001", "approved"),
        ("F002", "skipped"),
        ("F003", "awaiting_approval"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(i, s)| (i.to_string(), s.to_string()))
        .collect();
    assert_eq!(states, expected);
}
