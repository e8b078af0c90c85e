//! Consideration for the customer, end to end on the binary: a first contact
//! that restarts the ladder (`first_contact: restart`) rather than opening
//! with a formal notice, the minimum gap between two emails to a customer
//! (`contact.min_days_between`, `urgent: true`), and `customer.last_contacted`
//! in a rule. Each plan `preview` shows is also what the daemon sends, one
//! day at a time (`run --once --as-of` on consecutive dates).

mod common;

use common::*;

/// Every day a sending day, so that the dates below are the offsets' own.
const EVERY_DAY: &str = "send_days: [mon, tue, wed, thu, fri, sat, sun]";

/// The cadence of the issue: a courtesy note, a friendly statement the day
/// after the due date, a firm one two weeks later, a formal notice after a month.
const LADDER: [&str; 4] = [
    "{id: courtesy, offset: -7, template: overdue}",
    "{id: overdue_1, offset: 1, template: overdue}",
    "{id: overdue_2, offset: 15, template: overdue}",
    "{id: formal_notice, offset: 30, template: overdue}",
];

/// A folder whose policy `dunning` has `stages`, under `config` (YAML lines).
fn folder(config: &str, stages: &[&str], invoices: &[Inv]) -> Folder {
    let folder = dunning_folder(&format!("{EVERY_DAY}\n{config}"), invoices);
    folder.write("rules/dunning.yaml", &policy("dunning", stages));
    folder
}

/// An open invoice of customer `customer`, due on `due`.
fn due(number: &str, customer: &str, due: &str) -> Inv {
    invoice_row(number, &format!("Customer {customer}"), "ap@example.com")
        .with("customer_id", customer)
        .with("due_date", due)
        .with("issue_date", "2026-09-01")
}

/// The (date, invoice, stage) of each row of `preview --format json`.
fn preview(folder: &Folder, from: &str, days: u32) -> Vec<(String, String, String)> {
    let days = days.to_string();
    let run = folder
        .run(&[
            "preview", "--as-of", from, "--days", &days, "--format", "json",
        ])
        .expect_code(0);
    run.json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| (text(&r["date"]), text(&r["invoice"]), text(&r["stage"])))
        .collect()
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().expect("a string").to_string()
}

fn rows(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(d, i, s)| (d.to_string(), i.to_string(), s.to_string()))
        .collect()
}

/// `run --once --as-of` each day of `days` from `from`: the stderr of each run.
fn daemon_days(folder: &Folder, from: &str, days: i64) -> Vec<String> {
    let start = chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d").expect("a date");
    (0..days)
        .map(|d| {
            let day = (start + chrono::Days::new(d as u64)).to_string();
            folder
                .run(&["run", "--once", "--as-of", &day])
                .expect_code(0)
                .stderr
        })
        .collect()
}

/// The journal's sent reminders as (evaluation date, invoice, stage), by date.
fn sent(folder: &Folder) -> Vec<(String, String, String)> {
    let mut sent: Vec<(String, String, String)> = folder
        .journal()
        .into_iter()
        .filter(|r| r.state == "sent")
        .map(|r| (r.date, r.invoice, r.stage))
        .collect();
    sent.sort();
    sent
}

fn explain(folder: &Folder, invoice: &str, date: &str) -> String {
    folder
        .run(&["explain", invoice, "--as-of", date])
        .expect_code(0)
        .stdout
}

// --- First contact --------------------------------------------------------------

#[test]
fn a_first_contact_61_days_late_restarts_the_ladder_in_preview_and_in_the_daemon() {
    let folder = folder(
        "first_contact: restart",
        &LADDER,
        &[due("F1", "C1", "2026-10-01")],
    );
    let expected = rows(&[
        ("2026-12-01", "F1", "overdue_1"),
        ("2026-12-15", "F1", "overdue_2"),
        ("2026-12-30", "F1", "formal_notice"),
    ]);
    assert_eq!(preview(&folder, "2026-12-01", 45), expected);
    let explained = explain(&folder, "F1", "2026-12-01");
    assert_contains(
        &explained,
        "first contact: restarted the ladder at overdue_1; the later stages follow at the \
         policy's gaps: overdue_2 on 2026-12-15, formal_notice on 2026-12-30.",
    );
    // The daemon, one day at a time: the same dates, and a line in its log.
    let logs = daemon_days(&folder, "2026-12-01", 45);
    assert_eq!(sent(&folder), expected);
    let restarted: Vec<&str> = logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("restarted its ladder"))
        .collect();
    assert_eq!(restarted.len(), 1, "{logs:?}");
    assert_contains(
        restarted[0],
        "first contact: invoice F1 restarted its ladder at overdue_1",
    );
    let skipped: Vec<(String, String)> = folder
        .journal()
        .into_iter()
        .filter(|r| r.state == "skipped")
        .map(|r| (r.date, r.stage))
        .collect();
    assert_eq!(skipped, vec![("2026-12-01".into(), "courtesy".into())]);
    // Remembered from the journal: explain still says it a week later, and JSON has it.
    assert_contains(
        &explain(&folder, "F1", "2026-12-08"),
        "first contact: restarted the ladder at overdue_1;",
    );
    let json = folder
        .run(&["explain", "F1", "--as-of", "2026-12-08", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json["first_contact"]["restarted_at"], "overdue_1");
    assert_eq!(json["first_contact"]["on"], "2026-12-01");
    assert_eq!(json["first_contact"]["later"][1]["stage"], "formal_notice");
    assert_eq!(json["first_contact"]["later"][1]["date"], "2026-12-30");
}

#[test]
fn without_first_contact_the_latest_stage_catches_up_as_the_contract_says() {
    let folder = folder("", &LADDER, &[due("F1", "C1", "2026-10-01")]);
    assert_eq!(
        preview(&folder, "2026-12-01", 45),
        rows(&[("2026-12-01", "F1", "formal_notice")])
    );
    let explained = explain(&folder, "F1", "2026-12-01");
    assert!(!explained.contains("first contact"), "{explained}");
}

#[test]
fn an_invoice_reminded_on_its_own_dates_keeps_them_under_restart() {
    // F2 is 5 days late on the 1st: its first post-due stage is the latest
    // reached, nothing to restart; its later stages keep the policy's dates.
    let folder = folder(
        "first_contact: restart",
        &LADDER,
        &[due("F2", "C2", "2026-11-26")],
    );
    let expected = rows(&[
        ("2026-12-01", "F2", "overdue_1"),
        ("2026-12-11", "F2", "overdue_2"),
        ("2026-12-26", "F2", "formal_notice"),
    ]);
    assert_eq!(preview(&folder, "2026-12-01", 30), expected);
    daemon_days(&folder, "2026-12-01", 30);
    assert_eq!(sent(&folder), expected);
}

// --- The minimum gap between two emails -----------------------------------------

#[test]
fn min_days_between_holds_an_email_back_until_the_gap_has_passed() {
    let folder = folder(
        "contact: {min_days_between: 3}",
        &["{id: overdue, offset: 1, template: overdue}"],
        &[
            due("F1", "C1", "2026-11-30"),
            due("F2", "C1", "2026-12-01"),
            due("F3", "C2", "2026-12-01"),
        ],
    );
    let expected = rows(&[
        ("2026-12-01", "F1", "overdue"),
        ("2026-12-02", "F3", "overdue"),
        ("2026-12-04", "F2", "overdue"),
    ]);
    assert_eq!(preview(&folder, "2026-12-01", 10), expected);
    daemon_days(&folder, "2026-12-01", 1);
    assert_contains(
        &explain(&folder, "F2", "2026-12-02"),
        "On 2026-12-02: nothing goes out: waits until 2026-12-04: last message to this \
         customer on 2026-12-01 (min_days_between: 3).",
    );
    daemon_days(&folder, "2026-12-02", 9);
    assert_eq!(sent(&folder), expected);
}

#[test]
fn an_urgent_stage_never_waits_and_reminders_of_one_day_all_go() {
    let folder = folder(
        "contact: {min_days_between: 3}",
        &[
            "{id: overdue, offset: 1, template: overdue}",
            "{id: legal, offset: 3, template: overdue, urgent: true}",
        ],
        &[
            due("F1", "C1", "2026-11-30"),
            due("F2", "C1", "2026-12-01"),
            due("F3", "C1", "2026-11-30"),
        ],
    );
    // F1 and F3 share the 1st. Their legal notices go on the 3rd despite
    // the gap; F2's statement waits, then its own legal notice (reached on
    // the 4th) goes out and overtakes it.
    let expected = rows(&[
        ("2026-12-01", "F1", "overdue"),
        ("2026-12-01", "F3", "overdue"),
        ("2026-12-03", "F1", "legal"),
        ("2026-12-03", "F3", "legal"),
        ("2026-12-04", "F2", "legal"),
    ]);
    assert_eq!(preview(&folder, "2026-12-01", 10), expected);
    daemon_days(&folder, "2026-12-01", 10);
    assert_eq!(sent(&folder), expected);
}

// --- customer.last_contacted ------------------------------------------------------

#[test]
fn a_rule_reads_when_the_customer_was_last_contacted() {
    let folder = folder(
        "",
        &[
            "{id: nudge, offset: 1, template: overdue, when: 'customer.last_contacted == () || \
           days_between(customer.last_contacted, today) >= 7'}",
        ],
        &[due("F1", "C1", "2026-11-30"), due("F2", "C1", "2026-12-02")],
    );
    let expected = rows(&[("2026-12-01", "F1", "nudge"), ("2026-12-08", "F2", "nudge")]);
    assert_eq!(preview(&folder, "2026-12-01", 14), expected);
    daemon_days(&folder, "2026-12-01", 14);
    assert_eq!(sent(&folder), expected);
}

// --- check ----------------------------------------------------------------------------

#[test]
fn check_warns_of_an_email_stage_the_minimum_gap_always_holds_back() {
    let folder = folder(
        "contact: {min_days_between: 7}",
        &[
            "{id: due_soon, offset: -2, template: overdue}",
            "{id: overdue_1, offset: 1, template: overdue}",
            "{id: legal, offset: 3, template: overdue, urgent: true}",
        ],
        &[due("F1", "C1", "2026-11-30")],
    );
    let check = folder.run(&["check"]).expect_code(0);
    let warnings = check.warnings();
    assert_eq!(warnings.len(), 1, "{}", check.stdout);
    // At overdue_1's `offset:`.
    assert_contains(
        warnings[0],
        "rules/dunning.yaml:4:21: warning: stage overdue_1 comes 3 day(s) after due_soon, \
         fewer than contact.min_days_between (7)",
    );
}
