//! Promises to pay recorded in `rules/holds.yaml` (`promises:`): they pause reminders as a feed's `promise_date` does, win over it, are checked and located, explained, and reloaded by the daemon.

mod common;

use common::*;

/// Two invoices due on 2026-11-30 (F001, F002), a policy whose `overdue`
/// stage comes the day after, and a broken-promise stage.
fn promised_folder(invoices: &[Inv]) -> Folder {
    let folder = dunning_folder("", invoices);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[
                "{id: overdue, offset: 1, template: overdue}",
                "{id: broken, on: promise_broken, template: overdue}",
            ],
        ),
    );
    folder
}

/// The preview of 14 days from AS_OF as (date, invoice, stage).
fn planned(folder: &Folder) -> Vec<(String, String, String)> {
    folder
        .run(&["preview", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (text("date"), text("invoice"), text("stage"))
        })
        .collect()
}

fn row(date: &str, invoice: &str, stage: &str) -> (String, String, String) {
    (date.into(), invoice.into(), stage.into())
}

const PROMISE: &str =
    "promises:\n  - invoice: F001\n    date: 2026-12-04\n    note: called Mrs Dupont\n";

#[test]
fn a_promise_in_holds_yaml_pauses_reminders_as_a_feed_promise_does() {
    let mut in_feed = invoices(2);
    in_feed[0] = in_feed[0].clone().with("promise_date", "2026-12-04");
    let by_feed = promised_folder(&in_feed);
    let by_file = promised_folder(&invoices(2));
    by_file.write("rules/holds.yaml", PROMISE);
    let plan = planned(&by_file);
    // F001 waits for its promise (through Friday 12-04): the first sending
    // day after it, Monday 12-07, the broken promise fires, and its
    // overdue reminder the day after (one reminder a day).
    assert_eq!(
        plan,
        [
            row("2026-12-01", "F002", "overdue"),
            row("2026-12-07", "F001", "broken"),
            row("2026-12-08", "F001", "overdue"),
        ]
    );
    assert_eq!(plan, planned(&by_feed));

    let explain = by_file
        .run_inside(&["explain", "F001", "--as-of", AS_OF])
        .expect_code(0);
    assert_contains(
        &explain.stdout,
        "promise to pay by 2026-12-04 recorded at rules/holds.yaml:2:5: called Mrs Dupont",
    );
    assert_contains(&explain.stdout, "promised to pay by 2026-12-04");
}

#[test]
fn the_files_promise_wins_over_the_feeds() {
    let mut rows = invoices(2);
    rows[0] = rows[0].clone().with("promise_date", "2026-12-20");
    let folder = promised_folder(&rows);
    assert_eq!(
        planned(&folder),
        [row("2026-12-01", "F002", "overdue")],
        "the feed's promise holds F001 beyond the 14 days"
    );
    folder.write("rules/holds.yaml", PROMISE);
    assert_eq!(
        planned(&folder),
        [
            row("2026-12-01", "F002", "overdue"),
            row("2026-12-07", "F001", "broken"),
            row("2026-12-08", "F001", "overdue"),
        ]
    );
    // Several for one invoice: the last written is the newest decision.
    folder.write(
        "rules/holds.yaml",
        &format!("{PROMISE}  - {{invoice: F001, date: 2026-12-08}}\n"),
    );
    assert_eq!(
        planned(&folder),
        [
            row("2026-12-01", "F002", "overdue"),
            row("2026-12-09", "F001", "broken"),
            row("2026-12-10", "F001", "overdue"),
        ]
    );
}

#[test]
fn check_locates_each_bad_promise_and_keeps_the_others() {
    let folder = promised_folder(&invoices(2));
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F002\n    reason: x\npromises:\n  - invoice: F001\n    date: 2026-12-40\n  - invoice: F404\n    date: 2026-12-04\n  - invoice: F002\n  - {invoice: F001, date: 2026-12-04}\n",
    );
    let check = folder.run_inside(&["check"]).expect_code(1);
    let lines: Vec<&str> = check
        .stdout
        .lines()
        .filter(|l| l.starts_with("rules/holds.yaml"))
        .collect();
    assert_eq!(
        lines,
        [
            "rules/holds.yaml:6:5: promises[0]: date \"2026-12-40\": expected a date written YYYY-MM-DD (2026-12-18)",
            "rules/holds.yaml:9:5: promises[2]: invoice F002: say when it will be paid: `date: YYYY-MM-DD`",
            "rules/holds.yaml:7:5: warning: promise: invoice F404 is not in the feeds: this promise pauses nothing (a typo?)",
        ],
        "{}",
        check.stdout
    );
}

#[test]
fn an_unknown_key_of_a_promise_is_refused_at_its_line() {
    let folder = promised_folder(&invoices(2));
    folder.write(
        "rules/holds.yaml",
        "promises:\n  - invoice: F001\n    date: 2026-12-04\n    notes: typo\n",
    );
    let check = folder.run_inside(&["check"]).expect_code(1);
    assert_contains(
        &check.stdout,
        "rules/holds.yaml:4:5: promises[0]: unknown field `notes`, expected one of `invoice`, `date`, `note`",
    );
}

#[test]
fn the_daemon_reloads_a_promise_like_any_edit_of_the_rules() {
    let folder = dunning_folder(
        "",
        &[
            invoice_row("F001", "Customer 1", "c1@example.com"),
            invoice_row("F002", "Customer 2", "c2@example.com"),
        ],
    );
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[
                "{id: overdue, offset: 1, template: overdue}",
                "{id: second, offset: 8, template: overdue}",
            ],
        ),
    );
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_evaluation();
    // F001 promises to pay on 12-20: its second reminder (12-08) is paused
    // beyond the 14 days the reload summary looks at.
    folder.write(
        "rules/holds.yaml",
        "promises:\n  - {invoice: F001, date: 2026-12-20}\n",
    );
    daemon.expect_line(DEADLINE, "the reload of the promise", |l| {
        l.contains("reload ok: rules/holds.yaml changed; next 14 days: 2 → 1 reminders (-1 second)")
    });
    // Removed, the promise no longer pauses anything.
    folder.write("rules/holds.yaml", "promises: []\n");
    daemon.expect_line(DEADLINE, "the reload without the promise", |l| {
        l.contains("reload ok: rules/holds.yaml changed; next 14 days: 1 → 2 reminders (+1 second)")
    });
}

#[test]
fn a_hold_and_a_promise_recorded_from_the_console_are_what_preview_then_plans() {
    let folder = promised_folder(&invoices(3));
    folder.write(
        "rules/holds.yaml",
        "# Marie's holds\nholds:\n  - customer: C-none   # kept as written\n    reason: old\n",
    );
    let rules = folder.path().join("rules");
    let read = relance::read_holds_file(&rules).unwrap();
    let hold = relance::NewHold {
        invoice: Some("F002".into()),
        customer: None,
        until: None,
        reason: "contested delivery".into(),
    };
    let id = relance::add_hold(&rules, &hold, Some(&read.version)).unwrap();
    assert_eq!(id, "invoice-F002");
    // The form was read before the hold: its version is stale now.
    let promise = relance::NewPromise {
        invoice: "F001".into(),
        date: chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(),
        note: String::new(),
    };
    let stale = relance::add_promise(&rules, &promise, Some(&read.version)).unwrap_err();
    assert!(
        matches!(stale, relance::Error::HoldsChanged { .. }),
        "{stale}"
    );
    let read = relance::read_holds_file(&rules).unwrap();
    relance::add_promise(&rules, &promise, Some(&read.version)).unwrap();
    assert_eq!(
        planned(&folder),
        [
            row("2026-12-01", "F003", "overdue"),
            row("2026-12-07", "F001", "broken"),
            row("2026-12-08", "F001", "overdue"),
        ]
    );
    let check = folder.run_inside(&["check"]).expect_code(0);
    assert_contains(
        &check.stdout,
        "rules/holds.yaml:3:5: warning: hold: customer C-none is not in the feeds",
    );
    assert_starts_with(
        &folder.read("rules/holds.yaml"),
        "# Marie's holds\nholds:\n  - customer: C-none   # kept as written\n    reason: old\n  - invoice: F002\n",
    );
    relance::remove_hold(&rules, &id, None).unwrap();
    assert_eq!(
        planned(&folder)[..2],
        [
            row("2026-12-01", "F002", "overdue"),
            row("2026-12-01", "F003", "overdue")
        ]
    );
    let listed = relance::read_holds_file(&rules).unwrap();
    assert_eq!(
        serde_json::to_value(&listed.promises).unwrap(),
        serde_json::json!([{"invoice": "F001", "date": "2026-12-04", "note": ""}])
    );
    assert_eq!(
        serde_json::to_value(&listed.holds).unwrap(),
        serde_json::json!([{"id": "customer-C-none", "invoice": null, "customer": "C-none", "until": null, "reason": "old"}])
    );
}
