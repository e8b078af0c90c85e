//! `relance backtest` on real folders: the current rules replayed on the
//! history of the feeds, day by day, with a journal that starts empty.

mod common;

use common::{Folder, Inv, assert_contains, inv, policy, template};
use serde_json::json;

/// A folder sending every day of the week (so the dates below are exact),
/// with one policy `dunning`: `overdue` the day after the due date, `firm`
/// ten days after, and a thank-you once a reminded invoice is paid.
fn dunning(invoices: &[Inv]) -> Folder {
    let folder = Folder::empty();
    folder
        .write(
            "relance.yaml",
            "language: en\nsend_days: [mon, tue, wed, thu, fri, sat, sun]\n\
             company: {name: \"Atelier Durand\", email: \"compta@atelier-durand.fr\"}\n",
        )
        .write(
            "rules/dunning.yaml",
            &(policy(
                "dunning",
                &[
                    "{id: overdue, offset: 1, template: overdue}",
                    "{id: firm, offset: 10, template: overdue}",
                ],
            ) + "on_paid: {template: thanks}\n"),
        )
        .write(
            "templates/overdue.en.hbs",
            &template("Invoice {{invoice.number}} is overdue", "Please pay."),
        )
        .write(
            "templates/thanks.en.hbs",
            &template("Thank you for {{invoice.number}}", "Paid, thanks."),
        )
        .write_invoices(invoices);
    folder
}

/// An invoice issued on `issue` and due on `due`, of 100.
fn issued(number: &str, issue: &str, due: &str) -> Inv {
    inv(number, due, "100.00").with("issue_date", issue)
}

/// The history of the day-by-day test, window 2026-03-01 to 2026-04-30.
fn history() -> Vec<Inv> {
    vec![
        // Paid two days before its due date: no reminder, on time.
        issued("A", "2026-02-08", "2026-03-10").settled("2026-03-08"),
        // Paid two days after its `overdue` reminder, then thanked that day.
        issued("B", "2026-02-08", "2026-03-10").settled("2026-03-13"),
        // Paid ten days after `firm`, 19 after `overdue`: 20 days late.
        issued("C", "2026-02-08", "2026-03-10").settled("2026-03-30"),
        // Never paid, and no address to send its emails to.
        issued("D", "2026-02-08", "2026-03-10").with("email", ""),
        // Due after the window: nothing reached, not late.
        issued("E", "2026-04-01", "2026-05-01"),
        // Held until after its payment, 41 days late: late without a reminder.
        issued("G", "2026-02-08", "2026-03-10").settled("2026-04-20"),
        // Issued in the window, due after it.
        issued("H", "2026-04-25", "2026-05-25"),
        // Issued after the window: not one of its invoices.
        issued("I", "2026-05-02", "2026-06-01"),
        // Paid before the window: not one of its invoices either.
        issued("F", "2026-01-01", "2026-01-31").settled("2026-02-15"),
        // Overdue since February: the first day catches up with one
        // reminder, the latest reached (`firm`), as the daemon would.
        issued("J", "2026-01-02", "2026-02-01"),
    ]
}

const WINDOW: [&str; 5] = ["backtest", "--from", "2026-03-01", "--to", "2026-04-30"];

fn json_args() -> Vec<&'static str> {
    WINDOW.iter().copied().chain(["--format", "json"]).collect()
}

fn with_holds(folder: Folder) -> Folder {
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: G\n    until: 2026-05-31\n    reason: contested delivery\n",
    );
    folder
}

#[test]
fn each_day_is_decided_as_it_stood_and_the_report_has_exactly_its_keys() {
    let f = with_holds(dunning(&history()));
    let run = f.run(&json_args()).expect_code(0);
    assert_eq!(run.stderr, "");
    let paid = |d3: u32, d7: u32, d14: u32| json!({"3": d3, "7": d7, "14": d14});
    assert_eq!(
        run.json(),
        json!({
            "from": "2026-03-01",
            "to": "2026-04-30",
            "invoices": 8,
            "by_stage": [
                // B, C and D on 11 March (J's was overtaken on the first day);
                // B paid two days later.
                {"policy": "dunning", "stage": "overdue", "reminders": 3, "paid_within": paid(1, 1, 1)},
                // J on 1 March, C and D on 20 March; C paid ten days later.
                {"policy": "dunning", "stage": "firm", "reminders": 3, "paid_within": paid(0, 0, 1)},
                // B and C, on the day they were paid.
                {"policy": "dunning", "stage": "on_paid", "reminders": 2, "paid_within": paid(0, 0, 0)}
            ],
            "late_without_reminder": 1,
            "days_late": {"on_time": 1, "1-15": 1, "16-30": 1, "31-60": 1, "over_60": 0, "unpaid": 4},
            "no_address": 2
        })
    );
}

#[test]
fn an_invoice_paid_before_a_stage_is_not_reminded_and_one_paid_after_is() {
    // The same invoices without the hold: G, paid on 20 April, is reminded
    // on 11 and 20 March; A, paid before its due date, never is.
    let f = dunning(&history());
    let report = f.run(&json_args()).expect_code(0).json();
    assert_eq!(report["late_without_reminder"], 0);
    assert_eq!(report["by_stage"][0]["reminders"], 4);
    assert_eq!(report["by_stage"][1]["reminders"], 4);
    assert_eq!(report["by_stage"][2]["reminders"], 3, "{report:#}");
    // Paying A later than its `overdue` day makes it reminded once more.
    let mut later = history();
    later[0] = issued("A", "2026-02-08", "2026-03-10").settled("2026-03-12");
    let report = dunning(&later).run(&json_args()).expect_code(0).json();
    assert_eq!(report["by_stage"][0]["reminders"], 5);
    assert_eq!(report["by_stage"][0]["paid_within"]["3"], 2);
}

#[test]
fn the_table_reads_per_stage_then_days_late() {
    let f = with_holds(dunning(&history()));
    let run = f.run(&WINDOW).expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "Backtest of the current rules from 2026-03-01 to 2026-04-30 (61 days, journal empty on the first), 8 invoice(s).",
            "",
            "POLICY   STAGE    REMINDERS  PAID WITHIN 3 DAYS  PAID WITHIN 7 DAYS  PAID WITHIN 14 DAYS",
            "dunning  overdue  3          1 (33 %)            1 (33 %)            1 (33 %)",
            "dunning  firm     3          0 (0 %)             0 (0 %)             1 (33 %)",
            "dunning  on_paid  2          0 (0 %)             0 (0 %)             0 (0 %)",
        ]
    );
    assert_contains(
        &run.stdout,
        "ON TIME   1–15      16–30     31–60     OVER 60  UNPAID ON 2026-04-30\n\
         1 (13 %)  1 (13 %)  1 (13 %)  1 (13 %)  0 (0 %)  4 (50 %)\n",
    );
    assert_contains(
        &run.stdout,
        "Paid late, or unpaid and overdue on 2026-04-30, without any reminder: 1 invoice(s).",
    );
    assert_contains(
        &run.stdout,
        "Email reminders to invoices without a usable address: 2",
    );
}

#[test]
fn the_journal_starts_empty_and_the_real_one_is_never_touched() {
    let f = with_holds(dunning(&history()));
    let before = f.run(&json_args()).expect_code(0).stdout;
    assert!(
        !f.path().join("state").exists(),
        "a backtest created the journal"
    );
    // A real journal that already holds reminders of these invoices changes
    // nothing: the backtest neither reads it nor writes to it.
    // (D's email fails: it has no address.)
    f.run(&["run", "--once", "--confirm", "--as-of", "2026-03-11"])
        .expect_code(1);
    let journal = |f: &Folder| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        f.files("state")
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect()
    };
    let kept = journal(&f);
    assert!(!kept.is_empty());
    assert!(!f.journal().is_empty());
    let after = f.run(&json_args()).expect_code(0).stdout;
    assert_eq!(before, after);
    assert_eq!(journal(&f), kept);
}

#[test]
fn a_customer_becomes_a_habitual_late_payer_only_once_it_has_paid_late() {
    // C1 pays an invoice on time on 9 March, then two 19 and 15 days late
    // on 20 March. Its invoices reminded before were reminded under the
    // standard cadence (no late payment yet); the one due on 10 April,
    // after: under the late payers' policy. With hindsight, all would have
    // been "late".
    let f = Folder::empty();
    f.write(
        "relance.yaml",
        "language: en\nsend_days: [mon, tue, wed, thu, fri, sat, sun]\n",
    )
    .write(
        "rules/late.yaml",
        "name: late\npriority: 20\napplies_to: 'customer.late_paid_ratio >= 0.5'\n\
         stages:\n  - {id: early_note, offset: -3, template: t}\n",
    )
    .write(
        "rules/standard.yaml",
        &policy("standard", &["{id: courtesy, offset: -3, template: t}"]),
    )
    .write(
        "templates/t.en.hbs",
        &template("{{invoice.number}}", "Hello."),
    )
    .write_invoices(
        &[
            issued("P1", "2026-02-01", "2026-03-01").settled("2026-03-20"),
            issued("P2", "2026-02-05", "2026-03-05").settled("2026-03-20"),
            issued("N1", "2026-02-08", "2026-03-10").settled("2026-03-09"),
            issued("N2", "2026-03-11", "2026-04-10"),
        ]
        .map(|i| i.customer("C1", "Menuiserie Martin")),
    );
    let report = f
        .run(&[
            "backtest",
            "--from",
            "2026-03-01",
            "--to",
            "2026-04-30",
            "--format",
            "json",
        ])
        .expect_code(0)
        .json();
    let reminders = |i: usize| {
        let s = &report["by_stage"][i];
        (
            s["policy"].clone(),
            s["stage"].clone(),
            s["reminders"].clone(),
        )
    };
    // P1 (caught up on 1 March), P2 on 2 March, N1 on 7 March; N2 on 7 April.
    assert_eq!(reminders(0), (json!("late"), json!("early_note"), json!(1)));
    assert_eq!(
        reminders(1),
        (json!("standard"), json!("courtesy"), json!(3))
    );
}

/// An export from an American accounting system, as it comes: CRLF line
/// ends, m/d/yyyy dates without leading zeros, numeric invoice numbers, a
/// customer column that is only an id, no email column at all, no status
/// column, and the payment date in a column of its own name.
const US_EXPORT: &str = "Invoice No,Customer,Invoice Date,Due Date,Amount,Paid,Date Paid\r\n\
    1001,4417,1/5/2026,2/4/2026,250.00,250.00,2/19/2026\r\n\
    1002,4417,1/20/2026,2/19/2026,80.00,0,\r\n\
    1003,5120,2/2/2026,3/4/2026,1200.00,1200.00,3/3/2026\r\n\
    1004,5120,3/1/2026,3/31/2026,430.50,430.50,5/12/2026\r\n\
    1005,7788,12/15/2025,1/14/2026,99.99,99.99,1/10/2026\r\n";

const US_CONFIG: &str = "language: en
currency: USD
timezone: America/New_York
company: {name: \"Durand Woodworks LLC\", email: \"billing@durand.example\"}
rates: {late_interest_annual: 12.15, recovery_indemnity: 40}
feeds:
  - path: data/export.csv
    date_format: \"%m/%d/%Y\"
    columns: {number: \"Invoice No\", customer_id: \"Customer\", customer_name: \"Customer\",
              issue_date: \"Invoice Date\", due_date: \"Due Date\", amount: \"Amount\",
              amount_paid: \"Paid\", paid_date: \"Date Paid\"}
";

#[test]
fn a_foreign_export_backtests_through_the_column_mapping() {
    let f = Folder::shipped_rules();
    f.write("relance.yaml", US_CONFIG)
        .write("data/export.csv", US_EXPORT);
    // The shipped holds are of the French sample's invoices, and its key
    // accounts copy their account manager from a column of its feed this
    // export does not have (`check` would refuse the stage, tests/contacts.rs).
    f.remove("rules/holds.yaml");
    let key_accounts = f.read("rules/key_accounts.yaml");
    let cc = "    cc: [account_manager_email]";
    assert!(key_accounts.contains(cc), "{key_accounts}");
    f.write(
        "rules/key_accounts.yaml",
        &key_accounts
            .lines()
            .filter(|l| !l.starts_with(cc))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    assert!(f.read("data/export.csv").contains("\r\n"));
    let run = f
        .run(&[
            "backtest",
            "--from",
            "2026-01-01",
            "--to",
            "2026-06-30",
            "--format",
            "json",
        ])
        .expect_code(0);
    assert_eq!(run.stderr, "", "no bad row, nothing fatal");
    let report = run.json();
    assert_eq!(report["invoices"], 5);
    assert_eq!(
        report["days_late"],
        json!({"on_time": 2, "1-15": 1, "16-30": 0, "31-60": 1, "over_60": 0, "unpaid": 1})
    );
    assert_eq!(report["late_without_reminder"], 0);
    // Every email reminder is counted as planned, and as one without an
    // address; letters, calls and tasks need none.
    let stages = report["by_stage"].as_array().unwrap();
    let count = |email: bool| -> u64 {
        stages
            .iter()
            .filter(|s| {
                let paper = ["formal_notice", "collection", "account_call"];
                paper.contains(&s["stage"].as_str().unwrap()) != email
            })
            .map(|s| s["reminders"].as_u64().unwrap())
            .sum()
    };
    assert!(count(true) > 0 && count(false) > 0, "{report:#}");
    assert_eq!(report["no_address"], count(true));
    // 4417 pays 1001 15 days late on 19 February: from that day it is a
    // habitual late payer, and 1002 goes on under that policy (its formal
    // notice, then its collection and two follow-ups). 5120 paid 1003 on
    // time: 1004 stays under the standard cadence until it is paid, then
    // is thanked, as are 1001, 1003 and 1005.
    let reminders = |policy: &str, stage: &str| {
        stages
            .iter()
            .find(|s| s["policy"] == policy && s["stage"] == stage)
            .map(|s| s["reminders"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(reminders("habitual_late", "formal_notice"), 1);
    assert_eq!(reminders("habitual_late", "collection"), 3);
    assert_eq!(reminders("standard", "formal_notice"), 1);
    assert_eq!(reminders("standard", "on_paid"), 4);
    assert_eq!(reminders("standard", "courtesy"), 5);
    // `check` says the emails cannot go out, as a warning that stops nothing.
    let check = f.run(&["check"]).expect_code(0);
    assert_contains(
        &check.stdout,
        "data/export.csv:3: warning: email: invoice 1002 has no email address",
    );
}

#[test]
fn from_after_to_is_a_usage_error() {
    let f = dunning(&history());
    let run = f
        .run(&["backtest", "--from", "2026-05-01", "--to", "2026-04-01"])
        .expect_code(2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(
            "error: --from 2026-05-01 is after --to 2026-04-01: expected --from on or before --to"
        ),
        "{}",
        run.stderr
    );
    for args in [
        &["backtest", "--from", "2026-05-01"][..],
        &["backtest", "--from", "1/5/2026", "--to", "2026-04-01"],
        &[
            "backtest",
            "--from",
            "2026-01-01",
            "--to",
            "2026-04-01",
            "--format",
            "csv",
        ],
    ] {
        let run = f.run(args).expect_code(2);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
    let help = f.run(&["backtest", "--help"]).expect_code(0);
    assert_contains(&help.stdout, "journal that starts empty on --from");
}
