//! Dunning depth, end to end on the release binary: the sending calendar
//! (weekends, French and Canadian bank holidays, the office's own days off,
//! `shift: earlier`), holds (invoice and customer, with and without an end,
//! hot-reloaded by the daemon), disputes, promises to pay and broken
//! promises, thank-you messages, one message per customer (`group:
//! customer`) in preview, in the outbox, over SMTP and after a crash, and
//! send times in the recipient's time zone across daylight-saving changes.
//! Time is always injected (`--as-of`, `--at`), never read from the clock.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, response};
use mailparse::MailHeaderMap;

use common::*;

/// How long a test waits for the daemon to pick up a saved file (the
/// contract says a second; the machine is shared with other builds).
const RELOAD: Duration = Duration::from_secs(5);

// --- Helpers -----------------------------------------------------------------

/// `relance run --once --as-of DATE [extra…]`.
fn run_on(folder: &Folder, date: &str, extra: &[&str]) -> Run {
    folder.run(&[&["run", "--once", "--as-of", date][..], extra].concat())
}

/// `relance run --once --as-of DATE --at TIME`.
fn run_at(folder: &Folder, date: &str, time: &str) -> Run {
    run_on(folder, date, &["--at", time])
}

/// `preview --as-of FROM --days DAYS --format json [extra…]`, parsed.
fn preview_json(folder: &Folder, from: &str, days: u32, extra: &[&str]) -> Vec<serde_json::Value> {
    let days = days.to_string();
    let run = folder
        .run(
            &[
                &[
                    "preview", "--as-of", from, "--days", &days, "--format", "json",
                ][..],
                extra,
            ]
            .concat(),
        )
        .expect_code(0);
    run.json().as_array().expect("a JSON array").clone()
}

/// The (date, invoice, stage) of each row of a JSON preview.
fn plan(folder: &Folder, from: &str, days: u32) -> Vec<(String, String, String)> {
    preview_json(folder, from, days, &[])
        .iter()
        .map(|r| (s(&r["date"]), s(&r["invoice"]), s(&r["stage"])))
        .collect()
}

/// A JSON string value as a `String` (panics on anything else).
fn s(value: &serde_json::Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_string()
}

/// `(date, invoice, stage)` triples, for comparing with [`plan`].
fn rows(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|(d, i, st)| (d.to_string(), i.to_string(), st.to_string()))
        .collect()
}

/// `explain NUM --as-of DATE` (the table), exit 0.
fn explain(folder: &Folder, invoice: &str, date: &str) -> String {
    folder
        .run(&["explain", invoice, "--as-of", date])
        .expect_code(0)
        .stdout
}

/// `explain NUM --as-of DATE --format json`, parsed.
fn explain_json(folder: &Folder, invoice: &str, date: &str) -> serde_json::Value {
    folder
        .run(&["explain", invoice, "--as-of", date, "--format", "json"])
        .expect_code(0)
        .json()
}

/// The stage `id` (occurrence 0) of an `explain --format json`.
fn stage<'a>(explained: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    explained["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|st| st["stage"] == id && st["occurrence"] == 0)
        .unwrap_or_else(|| panic!("no stage {id} in {explained:#}"))
}

/// The line of the explain table for `stage` (its first cell).
fn stage_line<'a>(table: &'a str, stage: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no line for stage {stage} in:\n{table}"))
}

/// A journal row reduced to what most tests compare: (invoice, stage,
/// occurrence, state, evaluation date).
type Brief = (String, String, u32, String, String);

fn briefs(folder: &Folder) -> Vec<Brief> {
    if !folder.path().join("state/relance.db").exists() {
        return Vec::new();
    }
    folder
        .journal()
        .into_iter()
        .map(|r| (r.invoice, r.stage, r.occurrence, r.state, r.date))
        .collect()
}

/// The journal rows of one invoice, briefly.
fn briefs_of(folder: &Folder, invoice: &str) -> Vec<Brief> {
    briefs(folder)
        .into_iter()
        .filter(|b| b.0 == invoice)
        .collect()
}

fn brief(invoice: &str, stage: &str, occurrence: u32, state: &str, date: &str) -> Brief {
    (
        invoice.into(),
        stage.into(),
        occurrence,
        state.into(),
        date.into(),
    )
}

/// The names of the files of a subfolder.
fn names(folder: &Folder, rel: &str) -> Vec<String> {
    folder
        .files(rel)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Each journal row's (invoice, stage, state, message token, Message-ID).
fn journal_messages(folder: &Folder) -> Vec<(String, String, String, String, String)> {
    let db = rusqlite::Connection::open(folder.path().join("state/relance.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT invoice, stage, state, message, message_id FROM reminder ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// An open invoice of 100.00 EUR in English, due on `due`, of its own
/// customer `C-NUMBER` at `number@example.com`.
fn due_on(number: &str, due: &str) -> Inv {
    invoice_row(
        number,
        &format!("Customer {number}"),
        &format!("{}@example.com", number.to_lowercase()),
    )
    .with("customer_id", &format!("C-{number}"))
    .with("due_date", due)
    .with("issue_date", "2026-01-01")
}

/// A [`dunning_folder`] whose policy `dunning` has these stages.
fn folder_with_stages(config: &str, stages: &[&str], invoices: &[Inv]) -> Folder {
    let folder = dunning_folder(config, invoices);
    folder.write("rules/dunning.yaml", &policy("dunning", stages));
    folder
}

/// A CSV feed of `rows`, each with a value in an extra `timezone` column.
fn csv_with_time_zones(rows: &[(Inv, &str)]) -> String {
    let plain: Vec<Inv> = rows.iter().map(|(r, _)| r.clone()).collect();
    let text = csv(&plain);
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    header.push("timezone".into());
    writer.write_record(&header).unwrap();
    for (record, (_, tz)) in reader.records().zip(rows) {
        let mut fields: Vec<String> = record.unwrap().iter().map(String::from).collect();
        fields.push(tz.to_string());
        writer.write_record(&fields).unwrap();
    }
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

// --- The calendar ------------------------------------------------------------

#[test]
fn a_stage_on_a_weekend_moves_to_monday_or_with_shift_earlier_to_friday() {
    let folder = folder_with_stages(
        "",
        &[
            "{id: due_soon, offset: -2, template: overdue, shift: earlier}",
            "{id: overdue, offset: 1, template: overdue}",
        ],
        &[
            // Due Friday 4 December: `overdue` falls on Saturday the 5th.
            due_on("F001", "2026-12-04"),
            // Due Tuesday 8 December: `due_soon` falls on Sunday the 6th.
            due_on("F002", "2026-12-08"),
        ],
    );
    assert_eq!(
        plan(&folder, "2026-12-01", 14),
        rows(&[
            ("2026-12-02", "F001", "due_soon"),
            ("2026-12-04", "F002", "due_soon"),
            ("2026-12-07", "F001", "overdue"),
            ("2026-12-09", "F002", "overdue"),
        ])
    );

    let table = explain(&folder, "F001", "2026-12-07");
    assert_contains(
        stage_line(&table, "overdue"),
        "moved from Sat 2026-12-05 (not a sending day); FIRES",
    );
    assert_contains(&table, "On 2026-12-07: sends overdue (email)");

    let json = explain_json(&folder, "F002", "2026-12-04");
    let due_soon = stage(&json, "due_soon");
    assert_eq!(due_soon["date"], "2026-12-04");
    assert_eq!(due_soon["moved_from"], "2026-12-06");
    assert_eq!(due_soon["moved_because"], "not a sending day");
    assert_eq!(due_soon["verdict"], "fires");
    assert_eq!(json["blocked"], serde_json::Value::Null);
    // A stage on a sending day is not moved.
    let overdue = stage(&json, "overdue");
    assert_eq!(overdue["date"], "2026-12-09");
    assert!(
        overdue.get("moved_from").is_none_or(|v| v.is_null()),
        "{json:#}"
    );
}

#[test]
fn nothing_goes_out_on_a_weekend_and_monday_catches_up_with_the_latest_stage() {
    let folder = folder_with_stages(
        "",
        &[
            "{id: overdue, offset: 1, template: overdue}",
            "{id: reminder, offset: 3, template: overdue}",
        ],
        // Due Thursday 3 December: `overdue` on Friday the 4th, `reminder`
        // on Sunday the 6th, moved to Monday the 7th.
        &[due_on("F001", "2026-12-03")],
    );

    for weekend in ["2026-12-05", "2026-12-06"] {
        let run = run_on(&folder, weekend, &[]).expect_code(0);
        assert_contains(&run.stderr, "due=0 sent=0");
        assert!(
            folder.journal().is_empty(),
            "{weekend}: {:?}",
            briefs(&folder)
        );
        assert!(folder.files("outbox").is_empty());
    }
    let table = explain(&folder, "F001", "2026-12-05");
    assert_contains(
        &table,
        "On 2026-12-05: nothing goes out: Sat 2026-12-05 is not a sending day.",
    );
    assert_contains(
        stage_line(&table, "overdue"),
        "waiting: Sat 2026-12-05 is not a sending day",
    );
    let json = explain_json(&folder, "F001", "2026-12-06");
    assert_eq!(json["blocked"], "Sun 2026-12-06 is not a sending day");
    assert_eq!(json["fires"], serde_json::Value::Null);

    run_on(&folder, "2026-12-07", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [
            brief("F001", "overdue", 0, "skipped", "2026-12-07"),
            brief("F001", "reminder", 0, "sent", "2026-12-07"),
        ]
    );
    assert_eq!(
        names(&folder, "outbox"),
        ["2026-12-07.F001.dunning.reminder.0.eml"]
    );
}

#[test]
fn christmas_and_new_year_under_the_french_calendar_and_the_offices_own_days_off() {
    let folder = folder_with_stages(
        "holidays: {calendars: [FR], dates: [2026-12-24, 2026-12-31]}",
        &[
            "{id: before, offset: -2, template: overdue, shift: earlier}",
            "{id: overdue, offset: 1, template: overdue}",
        ],
        &[
            // overdue on Thu 24 (office closed), Fri 25 (Christmas), the
            // weekend: Monday 28.
            due_on("F001", "2026-12-23"),
            // before on Fri 25 (Christmas), brought forward over Thu 24
            // (office closed) to Wednesday 23.
            due_on("F002", "2026-12-27"),
            // overdue on Thu 31 (office closed), Fri 1 January (New Year's
            // Day), the weekend: Monday 4 January 2027.
            due_on("F003", "2026-12-30"),
        ],
    );
    assert_eq!(
        plan(&folder, "2026-12-21", 20),
        rows(&[
            ("2026-12-21", "F001", "before"),
            ("2026-12-23", "F002", "before"),
            ("2026-12-28", "F001", "overdue"),
            ("2026-12-28", "F002", "overdue"),
            ("2026-12-28", "F003", "before"),
            ("2027-01-04", "F003", "overdue"),
        ])
    );

    assert_contains(
        stage_line(&explain(&folder, "F001", "2026-12-28"), "overdue"),
        "moved from Thu 2026-12-24 (a holiday in the config); FIRES",
    );
    let f2 = explain_json(&folder, "F002", "2026-12-23");
    let before = stage(&f2, "before");
    assert_eq!(
        (
            &before["date"],
            &before["moved_from"],
            &before["moved_because"]
        ),
        (
            &"2026-12-23".into(),
            &"2026-12-25".into(),
            &"bank holiday: Christmas Day".into()
        )
    );
    let f3 = explain_json(&folder, "F003", "2027-01-04");
    let overdue = stage(&f3, "overdue");
    assert_eq!(
        (
            &overdue["date"],
            &overdue["moved_from"],
            &overdue["moved_because"]
        ),
        (
            &"2027-01-04".into(),
            &"2026-12-31".into(),
            &"a holiday in the config".into()
        )
    );

    // On Christmas Day nothing at all goes out, not even F001's catch-up.
    let run = run_on(&folder, "2026-12-25", &[]).expect_code(0);
    assert_contains(&run.stderr, "due=0 sent=0");
    assert!(folder.journal().is_empty(), "{:?}", briefs(&folder));
    assert_contains(
        &explain(&folder, "F003", "2026-12-25"),
        "On 2026-12-25: nothing goes out: Fri 2026-12-25 is bank holiday: Christmas Day.",
    );
    assert_eq!(
        explain_json(&folder, "F003", "2026-12-24")["blocked"],
        "Thu 2026-12-24 is a holiday in the config"
    );
}

#[test]
fn french_bank_holidays_of_2026_including_those_that_follow_easter() {
    let folder = folder_with_stages(
        "holidays: {calendars: [FR]}",
        &["{id: overdue, offset: 1, template: overdue}"],
        &[
            due_on("F01", "2026-04-02"), // Fri 3 April: Good Friday is no French holiday
            due_on("F02", "2026-04-05"), // Mon 6 April: Easter Monday (Easter is 5 April)
            due_on("F03", "2026-04-30"), // Fri 1 May, then the weekend
            due_on("F04", "2026-05-07"), // Fri 8 May, then the weekend
            due_on("F05", "2026-05-13"), // Thu 14 May: Ascension
            due_on("F06", "2026-05-24"), // Mon 25 May: Whit Monday
            due_on("F07", "2026-07-13"), // Tue 14 July
            due_on("F08", "2026-08-14"), // Sat 15 August: a weekend anyway
            due_on("F09", "2026-10-31"), // Sun 1 November: a weekend anyway
            due_on("F10", "2026-11-10"), // Wed 11 November
        ],
    );
    assert_eq!(
        plan(&folder, "2026-04-01", 240),
        rows(&[
            ("2026-04-03", "F01", "overdue"),
            ("2026-04-07", "F02", "overdue"),
            ("2026-05-04", "F03", "overdue"),
            ("2026-05-11", "F04", "overdue"),
            ("2026-05-15", "F05", "overdue"),
            ("2026-05-26", "F06", "overdue"),
            ("2026-07-15", "F07", "overdue"),
            ("2026-08-17", "F08", "overdue"),
            ("2026-11-02", "F09", "overdue"),
            ("2026-11-12", "F10", "overdue"),
        ])
    );
    for (invoice, date, why) in [
        ("F02", "2026-04-07", "bank holiday: Easter Monday"),
        ("F03", "2026-05-04", "bank holiday: Labour Day"),
        ("F05", "2026-05-15", "bank holiday: Ascension Day"),
        ("F06", "2026-05-26", "bank holiday: Whit Monday"),
        ("F07", "2026-07-15", "bank holiday: Bastille Day"),
        ("F08", "2026-08-17", "not a sending day"),
    ] {
        let json = explain_json(&folder, invoice, date);
        let overdue = stage(&json, "overdue");
        assert_eq!(overdue["date"], date, "{invoice}");
        assert_eq!(overdue["moved_because"], why, "{invoice}");
        assert_eq!(overdue["verdict"], "fires", "{invoice}");
    }
}

#[test]
fn a_policy_can_follow_the_canadian_calendar_with_weekend_holidays_observed() {
    // The config closes on French holidays; the CAD policy on Canadian ones.
    let folder = dunning_folder(
        "holidays: {calendars: [FR]}",
        &[
            // Christmas 2027 is a Saturday, Boxing Day a Sunday: Canada
            // observes them on Monday 27 and Tuesday 28, France on neither.
            due_on("CA1", "2027-12-24").with("currency", "CAD"),
            due_on("FR1", "2027-12-24"),
            // Canada Day, a Thursday.
            due_on("CA2", "2027-06-30").with("currency", "CAD"),
            due_on("FR2", "2027-06-30"),
        ],
    );
    folder.write(
        "rules/canada.yaml",
        "name: canada\npriority: 20\napplies_to: 'invoice.currency == \"CAD\"'\n\
         holidays: {calendars: [CA]}\nstages:\n  - {id: overdue, offset: 1, template: overdue}\n",
    );
    assert_eq!(
        plan(&folder, "2027-06-28", 190),
        rows(&[
            ("2027-07-01", "FR2", "overdue"),
            ("2027-07-02", "CA2", "overdue"),
            ("2027-12-27", "FR1", "overdue"),
            ("2027-12-29", "CA1", "overdue"),
        ])
    );
    let ca1 = explain_json(&folder, "CA1", "2027-12-27");
    assert_eq!(ca1["policy"], "canada");
    assert_eq!(
        ca1["blocked"],
        "Mon 2027-12-27 is bank holiday: Christmas Day"
    );
    assert_eq!(
        explain_json(&folder, "CA1", "2027-12-28")["blocked"],
        "Tue 2027-12-28 is bank holiday: Boxing Day"
    );
    assert_eq!(
        stage(&explain_json(&folder, "CA2", "2027-07-02"), "overdue")["moved_because"],
        "bank holiday: Canada Day"
    );
}

#[test]
fn send_days_in_the_config_and_in_a_policy() {
    // The office sends on Saturdays too; the `slow` policy only on Tuesdays
    // and Thursdays.
    let folder = dunning_folder(
        "send_days: [mon, tue, wed, thu, fri, sat]",
        &[
            due_on("F001", "2026-12-04"), // overdue on Saturday 5: sent that day
            due_on("F002", "2026-12-06"), // overdue on Monday 7: slow, Tuesday 8
            due_on("F003", "2026-12-08"), // overdue on Wednesday 9: slow, Thursday 10
        ],
    );
    folder.write(
        "rules/slow.yaml",
        "name: slow\npriority: 20\napplies_to: 'invoice.number != \"F001\"'\n\
         send_days: [tue, thu]\nstages:\n  - {id: overdue, offset: 1, template: overdue}\n",
    );
    assert_eq!(
        plan(&folder, "2026-12-01", 14),
        rows(&[
            ("2026-12-05", "F001", "overdue"),
            ("2026-12-08", "F002", "overdue"),
            ("2026-12-10", "F003", "overdue"),
        ])
    );
    run_on(&folder, "2026-12-05", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [brief("F001", "overdue", 0, "sent", "2026-12-05")]
    );
    assert_eq!(
        explain_json(&folder, "F002", "2026-12-07")["blocked"],
        "Mon 2026-12-07 is not a sending day"
    );
}

#[test]
fn a_leap_day_counts_and_a_stage_on_sunday_29_february_moves() {
    let folder = folder_with_stages(
        "",
        &["{id: late, offset: 30, template: overdue}"],
        &[
            // 30 January 2028 + 30 days: Tuesday 29 February 2028.
            due_on("F001", "2028-01-30"),
            // 30 January 2031 + 30 days: Saturday 1 March 2031 (no 29th), Monday 3.
            due_on("F002", "2031-01-30"),
            // 30 January 2032 + 30 days: Sunday 29 February 2032, Monday 1 March.
            due_on("F003", "2032-01-30"),
            // The same under `shift: earlier`: Friday 27 February 2032.
            due_on("F004", "2032-01-30"),
        ],
    );
    folder.write(
        "rules/earlier.yaml",
        "name: earlier\npriority: 20\napplies_to: 'invoice.number == \"F004\"'\n\
         stages:\n  - {id: late, offset: 30, template: overdue, shift: earlier}\n",
    );
    let one = |invoice: &str, from: &str| -> Vec<String> {
        preview_json(&folder, from, 10, &["--invoice", invoice])
            .iter()
            .map(|r| s(&r["date"]))
            .collect()
    };
    assert_eq!(one("F001", "2028-02-25"), ["2028-02-29"]);
    assert_eq!(one("F002", "2031-02-25"), ["2031-03-03"]);
    assert_eq!(one("F003", "2032-02-25"), ["2032-03-01"]);
    assert_eq!(one("F004", "2032-02-25"), ["2032-02-27"]);
    assert_contains(
        stage_line(&explain(&folder, "F003", "2032-03-01"), "late"),
        "moved from Sun 2032-02-29 (not a sending day); FIRES",
    );
}

// --- Holds and disputes ------------------------------------------------------

const THREE_STAGES: [&str; 3] = [
    "{id: overdue, offset: 1, template: overdue}",
    "{id: second, offset: 8, template: overdue}",
    "{id: third, offset: 21, template: overdue}",
];

#[test]
fn a_held_invoice_gets_nothing_until_the_day_after_its_hold_then_its_latest_stage() {
    let folder = folder_with_stages(
        "",
        &THREE_STAGES,
        &[due_on("F001", "2026-11-30"), due_on("F002", "2026-11-30")],
    );
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F001\n    until: 2026-12-15\n    reason: \"contested delivery\"\n",
    );
    run_on(&folder, "2026-12-01", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [brief("F002", "overdue", 0, "sent", "2026-12-01")]
    );

    // The last day of the hold: still nothing.
    let table = explain(&folder, "F001", "2026-12-15");
    assert_contains(&table, "\n  held until 2026-12-15: contested delivery\n");
    assert_contains(
        stage_line(&table, "second"),
        "waiting: held until 2026-12-15: contested delivery",
    );
    assert_contains(
        &table,
        "On 2026-12-15: nothing goes out: held until 2026-12-15: contested delivery.",
    );
    run_on(&folder, "2026-12-15", &[]).expect_code(0);
    assert!(briefs_of(&folder, "F001").is_empty());

    // The preview knows when the hold ends.
    assert_eq!(
        plan(&folder, "2026-12-15", 10)
            .into_iter()
            .filter(|r| r.1 == "F001")
            .collect::<Vec<_>>(),
        rows(&[
            ("2026-12-16", "F001", "second"),
            ("2026-12-21", "F001", "third")
        ])
    );

    // The day after: the latest stage reached fires, the earlier one is skipped.
    run_on(&folder, "2026-12-16", &[]).expect_code(0);
    assert_eq!(
        briefs_of(&folder, "F001"),
        [
            brief("F001", "overdue", 0, "skipped", "2026-12-16"),
            brief("F001", "second", 0, "sent", "2026-12-16"),
        ]
    );
}

#[test]
fn a_customer_hold_covers_all_its_invoices_until_it_ends_or_is_removed() {
    let c042 = |n: &str| due_on(n, "2026-11-30").customer("C042", "Receivership SA");
    let c043 = |n: &str| due_on(n, "2026-11-30").customer("C043", "Contested Ltd");
    let folder = folder_with_stages(
        "",
        &["{id: overdue, offset: 1, template: overdue}"],
        &[
            c042("A1"),
            c042("A2"),
            c043("B1"),
            due_on("Z1", "2026-11-30"),
        ],
    );
    let both = "holds:\n\
                \x20 - customer: C042\n\
                \x20   reason: \"in receivership: claims go to the administrator\"\n\
                \x20 - customer: C043\n\
                \x20   until: 2026-12-15\n\
                \x20   reason: \"account under review\"\n";
    folder.write("rules/holds.yaml", both);

    assert_contains(
        &explain(&folder, "A2", "2026-12-01"),
        "held until the hold is removed (customer C042): in receivership: claims go to the administrator",
    );
    assert_eq!(
        explain_json(&folder, "B1", "2026-12-01")["blocked"],
        "held until 2026-12-15 (customer C043): account under review"
    );
    run_on(&folder, "2026-12-01", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [brief("Z1", "overdue", 0, "sent", "2026-12-01")]
    );

    // The hold without an end lasts until the finance manager removes it.
    run_on(&folder, "2026-12-02", &[]).expect_code(0);
    assert_eq!(briefs(&folder).len(), 1);
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - customer: C043\n    until: 2026-12-15\n    reason: \"account under review\"\n",
    );
    run_on(&folder, "2026-12-03", &[]).expect_code(0);
    run_on(&folder, "2026-12-16", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [
            brief("Z1", "overdue", 0, "sent", "2026-12-01"),
            brief("A1", "overdue", 0, "sent", "2026-12-03"),
            brief("A2", "overdue", 0, "sent", "2026-12-03"),
            brief("B1", "overdue", 0, "sent", "2026-12-16"),
        ]
    );
}

#[test]
fn check_warns_about_a_hold_that_names_nothing_in_the_feeds() {
    let folder = dunning_folder("", &invoices(1));
    folder.write(
        "rules/holds.yaml",
        "holds:\n\
         \x20 - invoice: F001\n\
         \x20   reason: \"known\"\n\
         \x20 - invoice: NOPE\n\
         \x20   until: 2026-12-15\n\
         \x20 - customer: C-NOBODY\n",
    );
    let check = folder.run(&["check"]).expect_code(0);
    let warnings = check.warnings();
    assert_eq!(warnings.len(), 2, "{}", check.stdout);
    assert_ends_with(
        warnings[0],
        "rules/holds.yaml:4:5: warning: hold: invoice NOPE is not in the feeds: this hold holds nothing (a typo?)",
    );
    assert_ends_with(
        warnings[1],
        "rules/holds.yaml:6:5: warning: hold: customer C-NOBODY is not in the feeds: this hold holds nothing (a typo?)",
    );
}

#[test]
fn a_mistyped_hold_key_is_a_located_error_not_a_hold_forever() {
    let folder = dunning_folder("", &invoices(1));
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F001\n    untill: 2026-12-15\n",
    );
    let check = folder.run(&["check"]).expect_code(1);
    assert_contains(
        &check.stdout,
        "rules/holds.yaml:3:5: holds[0]: unknown field `untill`, expected one of `invoice`, `customer`, `until`, `reason`, `id`",
    );
    let run = run_on(&folder, AS_OF, &[]).expect_code(1);
    assert_contains(&run.stderr, "unknown field `untill`");
    assert!(folder.files("outbox").is_empty());
}

#[test]
fn a_hold_saved_while_the_daemon_runs_is_live_and_its_removal_too() {
    let folder = dunning_folder("schedule: {every: 1s}", &invoices(1));
    folder.write("rules/holds.yaml", "holds: []\n");
    let mut daemon = folder.spawn(&DAEMON);
    assert_contains(&daemon.expect_evaluation(), "sent=1");

    // The finance manager holds F002 before it shows up in the feed…
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F002\n    reason: \"credit note coming\"\n",
    );
    daemon.expect_line(RELOAD, "reloading holds.yaml", |l| {
        l.contains("reload ok: rules/holds.yaml changed; next 14 days: 0 → 0 reminders policies=")
            && l.contains(" due=0 ")
    });
    // …so the feed that brings it makes nothing due.
    folder.write_invoices(&invoices(2));
    daemon.expect_line(RELOAD, "reloading the feed", |l| {
        l.contains("reload ok: data/invoices.csv changed; next 14 days: 0 → 0 reminders policies=")
            && l.contains(" due=0 ")
    });
    let next = daemon.expect_evaluation();
    assert_contains(&next, "due=0 sent=0");
    assert_eq!(
        briefs(&folder),
        [brief("F001", "overdue", 0, "sent", AS_OF)]
    );

    // Removing the hold makes F002 due; the next evaluation sends it.
    folder.write("rules/holds.yaml", "holds: []\n");
    daemon.expect_line(RELOAD, "reloading holds.yaml", |l| {
        l.contains("reload ok: rules/holds.yaml changed; next 14 days: 0 → 1 reminders (+1 overdue) policies=")
            && l.contains(" due=1 ")
    });
    daemon.expect_line(DEADLINE, "sending F002", |l| {
        l.contains("evaluation done") && l.contains("sent=1")
    });
    assert_eq!(
        briefs(&folder),
        [
            brief("F001", "overdue", 0, "sent", AS_OF),
            brief("F002", "overdue", 0, "sent", AS_OF),
        ]
    );
}

#[test]
fn a_disputed_invoice_fires_nothing_until_the_feed_reopens_it() {
    let disputed = due_on("F001", "2026-11-30").with("status", "disputed");
    let folder = folder_with_stages(
        "",
        &[
            "{id: overdue, offset: 1, template: overdue}",
            "{id: reminder, offset: 3, template: overdue}",
        ],
        std::slice::from_ref(&disputed),
    );
    for date in ["2026-12-01", "2026-12-02", "2026-12-03"] {
        run_on(&folder, date, &[]).expect_code(0);
    }
    assert!(folder.journal().is_empty(), "{:?}", briefs(&folder));
    assert!(plan(&folder, "2026-12-01", 14).is_empty());
    assert_contains(
        &explain(&folder, "F001", "2026-12-03"),
        "Disputed: nothing fires while the status is disputed; ",
    );

    folder.write_invoices(&[disputed.with("status", "open")]);
    run_on(&folder, "2026-12-04", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [
            brief("F001", "overdue", 0, "skipped", "2026-12-04"),
            brief("F001", "reminder", 0, "sent", "2026-12-04"),
        ]
    );
}

// --- Promises to pay ---------------------------------------------------------

fn promise_folder() -> Folder {
    let folder = dunning_folder(
        "",
        &[
            due_on("F001", "2026-11-30").with("promise_date", "2026-12-18"),
            due_on("F002", "2026-11-30"),
        ],
    );
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\npromise_grace: 2\nstages:\n\
             \x20 - {id: overdue_1, offset: 1, template: overdue}\n\
             \x20 - {id: broken, on: promise_broken, template: broken}\n\
             \x20 - {id: overdue_2, offset: 15, template: overdue}\n",
        )
        .write(
            "templates/broken.en.hbs",
            &template(
                "Invoice {{invoice.number}}: the payment promised for {{invoice.promise_date}} has not arrived",
                "Dear {{customer.name}}, please pay {{money invoice.amount_due}}.",
            ),
        );
    folder
}

#[test]
fn a_promise_pauses_reminders_then_the_broken_promise_fires_then_the_latest_stage() {
    let folder = promise_folder();
    // Paused through 18 December + 2 days of grace (Sunday 20): the broken
    // promise on Monday 21, then, the day after, the latest stage reached
    // meanwhile (overdue_2, with overdue_1 skipped): one reminder a day.
    assert_eq!(
        plan(&folder, "2026-12-01", 31),
        rows(&[
            ("2026-12-01", "F002", "overdue_1"),
            ("2026-12-15", "F002", "overdue_2"),
            ("2026-12-21", "F001", "broken"),
            ("2026-12-22", "F001", "overdue_2"),
        ])
    );
    let table = explain(&folder, "F001", "2026-12-10");
    assert_contains(
        &table,
        "On 2026-12-10: nothing goes out: promised to pay by 2026-12-18 + 2 days of grace: reminders paused until 2026-12-20.",
    );
    assert_eq!(
        explain_json(&folder, "F001", "2026-12-20")["blocked"],
        "promised to pay by 2026-12-18 + 2 days of grace: reminders paused until 2026-12-20"
    );

    for date in ["2026-12-01", "2026-12-15", "2026-12-20"] {
        run_on(&folder, date, &[]).expect_code(0);
    }
    assert!(briefs_of(&folder, "F001").is_empty());
    run_on(&folder, "2026-12-21", &[]).expect_code(0);
    let broken = folder
        .journal()
        .into_iter()
        .find(|r| r.invoice == "F001")
        .unwrap();
    assert_eq!(
        (
            broken.stage.as_str(),
            broken.state.as_str(),
            broken.subject.as_str()
        ),
        (
            "broken",
            "sent",
            "Invoice F001: the payment promised for 2026-12-18 has not arrived"
        )
    );
    run_on(&folder, "2026-12-22", &[]).expect_code(0);
    run_on(&folder, "2026-12-23", &[]).expect_code(0);
    assert_eq!(
        briefs_of(&folder, "F001"),
        [
            brief("F001", "broken", 0, "sent", "2026-12-21"),
            brief("F001", "overdue_1", 0, "skipped", "2026-12-22"),
            brief("F001", "overdue_2", 0, "sent", "2026-12-22"),
        ],
        "the broken promise goes once and overtakes nothing"
    );
}

#[test]

fn explain_moves_a_broken_promise_dated_on_a_day_off_like_any_stage() {
    let folder = promise_folder();
    // Promised by Thursday 3 December + 2 days of grace: the day after is Sunday 6.
    folder.write_invoices(&[due_on("F001", "2026-11-30").with("promise_date", "2026-12-03")]);
    assert_eq!(
        plan(&folder, "2026-12-01", 15),
        rows(&[
            ("2026-12-07", "F001", "broken"),
            ("2026-12-08", "F001", "overdue_1"),
            ("2026-12-15", "F001", "overdue_2"),
        ])
    );
    let json = explain_json(&folder, "F001", "2026-12-04");
    let broken = stage(&json, "broken");
    assert_eq!(broken["date"], "2026-12-07", "{json:#}");
    assert_eq!(broken["moved_from"], "2026-12-06", "{json:#}");
    assert_eq!(broken["moved_because"], "not a sending day", "{json:#}");
}

#[test]
fn a_promise_kept_sends_no_broken_promise() {
    let folder = promise_folder();
    run_on(&folder, "2026-12-01", &[]).expect_code(0);
    folder.write_invoices(&[
        due_on("F001", "2026-11-30")
            .with("promise_date", "2026-12-18")
            .settled("2026-12-17"),
        due_on("F002", "2026-11-30"),
    ]);
    for date in ["2026-12-21", "2026-12-22"] {
        run_on(&folder, date, &[]).expect_code(0);
    }
    assert!(
        briefs_of(&folder, "F001").is_empty(),
        "{:?}",
        briefs(&folder)
    );
    assert!(
        preview_json(&folder, "2026-12-21", 14, &["--invoice", "F001"]).is_empty(),
        "nothing planned for a paid invoice never reminded"
    );
}

#[test]
fn a_broken_promise_stage_with_an_offset_or_a_repeat_is_a_located_error() {
    let folder = dunning_folder("", &invoices(1));
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\nstages:\n\
             \x20 - {id: overdue, offset: 1, template: overdue}\n\
             \x20 - id: broken\n\
             \x20   on: promise_broken\n\
             \x20   offset: 3\n\
             \x20   repeat: {every: 7}\n\
             \x20   template: overdue\n",
        )
        .write("templates/overdue.en.hbs", &template("Overdue", "Pay."));
    let check = folder.run(&["check"]).expect_code(1);
    let errors: Vec<&str> = check
        .stdout
        .lines()
        .filter(|l| l.contains("rules/dunning.yaml:"))
        .collect();
    assert_eq!(errors.len(), 2, "{}", check.stdout);
    assert_ends_with(
        errors[0],
        "rules/dunning.yaml:6:5: stage broken: a stage `on: promise_broken` fires the first day after \
         the promised date (plus promise_grace), not at an offset: remove `offset`",
    );
    assert_ends_with(
        errors[1],
        "rules/dunning.yaml:7:5: stage broken: a stage `on: promise_broken` fires once: remove `repeat`",
    );
    // The daemon refuses such a folder.
    let run = run_on(&folder, AS_OF, &[]).expect_code(1);
    assert_contains(&run.stderr, "remove `offset`");
}

// --- Thank-you messages ------------------------------------------------------

/// A dunning folder whose policy thanks reminded invoices once paid.
fn thanks_folder(invoices: &[Inv]) -> Folder {
    let folder = dunning_folder("", invoices);
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\non_paid: {template: thanks, channel: email}\n\
             stages:\n  - {id: overdue, offset: 1, template: overdue}\n",
        )
        .write(
            "templates/thanks.en.hbs",
            &template(
                "Thank you for paying {{invoice.number}}",
                "Dear {{customer.name}},\nwe received {{money invoice.amount}}. Thank you.",
            ),
        );
    folder
}

#[test]
fn a_reminded_invoice_seen_paid_later_gets_one_thank_you() {
    let rows = [
        due_on("F001", "2026-11-30"),
        due_on("F002", "2026-11-30"),
        due_on("F003", "2026-11-30").settled("2026-11-29"),
        due_on("F004", "2026-11-30"),
    ];
    let folder = thanks_folder(&rows);
    run_on(&folder, "2026-12-01", &[]).expect_code(0);
    assert_eq!(
        folder.journal().len(),
        3,
        "F003 was paid before any reminder"
    );

    // The next export: F001 paid, F002 paid in full but still `open`, F004 voided.
    folder.write_invoices(&[
        rows[0].clone().settled("2026-12-01"),
        rows[1].clone().with("amount_paid", "100.00"),
        rows[2].clone(),
        rows[3].clone().with("status", "void"),
    ]);
    assert_contains(
        &explain(&folder, "F001", "2026-12-02"),
        "Paid, after a reminder: on 2026-12-02 the thank-you (thanks, email) goes to f001@example.com: Thank you for paying F001",
    );
    run_on(&folder, "2026-12-02", &[]).expect_code(0);
    let thanks: Vec<JournalRow> = folder
        .journal()
        .into_iter()
        .filter(|r| r.date == "2026-12-02")
        .collect();
    assert_eq!(thanks.len(), 2, "{thanks:#?}");
    for (row, invoice) in thanks.iter().zip(["F001", "F002"]) {
        assert_eq!(
            (
                row.invoice.as_str(),
                row.policy.as_str(),
                row.stage.as_str(),
                row.occurrence,
                row.state.as_str(),
                row.channel.as_str()
            ),
            (invoice, "dunning", "on_paid", 0, "sent", "email")
        );
        assert_eq!(row.subject, format!("Thank you for paying {invoice}"));
        assert_eq!(
            row.message_id,
            format!("<{invoice}.dunning.on_paid.0@atelier-durand.fr>")
        );
    }
    let outbox = names(&folder, "outbox");
    assert!(
        outbox.contains(&"2026-12-02.F001.dunning.on_paid.0.eml".to_string()),
        "{outbox:?}"
    );
    let history = folder
        .run(&["history", "F001", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(history[0]["stage"], "on_paid");
    assert_eq!(history[0]["occurrence"], 0);
    assert_eq!(history[0]["state"], "sent");
    assert_eq!(history[0]["date"], "2026-12-02");

    // Never twice.
    let journal = folder.journal();
    run_on(&folder, "2026-12-03", &[]).expect_code(0);
    run_on(&folder, "2026-12-10", &[]).expect_code(0);
    assert_eq!(folder.journal(), journal);
    assert_eq!(folder.files("outbox").len(), 5);
}

#[test]
fn a_payment_seen_the_day_of_the_reminder_is_thanked_the_next_sending_day() {
    let folder = thanks_folder(&[due_on("F001", "2026-11-30")]);
    run_on(&folder, "2026-12-04", &[]).expect_code(0); // a Friday
    folder.write_invoices(&[due_on("F001", "2026-11-30").settled("2026-12-04")]);
    // The same day, then the weekend: nothing.
    for date in ["2026-12-04", "2026-12-05", "2026-12-06"] {
        run_on(&folder, date, &[]).expect_code(0);
    }
    assert_eq!(
        briefs(&folder),
        [brief("F001", "overdue", 0, "sent", "2026-12-04")]
    );
    run_on(&folder, "2026-12-07", &[]).expect_code(0);
    assert_eq!(
        briefs(&folder),
        [
            brief("F001", "overdue", 0, "sent", "2026-12-04"),
            brief("F001", "on_paid", 0, "sent", "2026-12-07"),
        ]
    );
}

#[test]
fn preview_shows_the_thank_you_owed_to_an_invoice_already_paid_in_the_feed() {
    let folder = thanks_folder(&[due_on("F001", "2026-11-30"), due_on("F002", "2026-11-30")]);
    run_on(&folder, "2026-12-01", &[]).expect_code(0);
    folder.write_invoices(&[
        due_on("F001", "2026-11-30").settled("2026-12-03"),
        due_on("F002", "2026-11-30"),
    ]);
    // From a Saturday: the thank-you goes on Monday.
    let preview = preview_json(&folder, "2026-12-05", 5, &[]);
    assert_eq!(preview.len(), 1, "{preview:#?}");
    let row = &preview[0];
    assert_eq!(row["date"], "2026-12-07");
    assert_eq!(row["invoice"], "F001");
    assert_eq!(row["policy"], "dunning");
    assert_eq!(row["stage"], "on_paid");
    assert_eq!(row["occurrence"], 0);
    assert_eq!(row["template"], "thanks");
    assert_eq!(row["message"], "F001.dunning.on_paid.0");
    assert_eq!(row["subject"], "Thank you for paying F001");
    assert_eq!(row["to"], "f001@example.com");
}

// --- One message per customer ------------------------------------------------

/// Customer C1 has, in English, two EUR invoices (F002 far enough overdue
/// for `second`) and a USD one, at two addresses, and a French one (F005);
/// C2 has one invoice (F004); C3's policy opts its stage out of grouping.
fn grouped_folder(config: &str) -> Folder {
    let c1 = |n: &str, due: &str, amount: &str, email: &str| {
        due_on(n, due)
            .customer("C1", "Customer One")
            .with("amount", amount)
            .with("email", email)
    };
    let rows = [
        c1(
            "F001",
            "2026-11-30",
            "100.00",
            "a@one.example; b@one.example",
        ),
        c1(
            "F002",
            "2026-11-21",
            "250.50",
            "a@one.example; b@one.example",
        ),
        c1(
            "F003",
            "2026-11-30",
            "75.25",
            "a@one.example; b@one.example",
        )
        .with("currency", "USD"),
        due_on("F004", "2026-11-30").customer("C2", "Customer Two"),
        c1("F005", "2026-11-30", "40.00", "a@one.example").with("language", "fr"),
        due_on("F006", "2026-11-30").customer("C3", "Customer Three"),
        due_on("F007", "2026-11-30").customer("C3", "Customer Three"),
    ];
    let folder = dunning_folder(config, &rows);
    let statement = "{{#each invoices}}\n\
                     - {{number}}: {{amount_due}} {{currency}} ({{stage.id}} #{{stage.occurrence}})\n\
                     {{/each}}\n\
                     {{#each totals}}\n\
                     Total {{currency}}: {{amount_due}} over {{count}} invoice(s)\n\
                     {{/each}}";
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\ngroup: customer\nstages:\n\
             \x20 - {id: overdue, offset: 1, template: statement}\n\
             \x20 - {id: second, offset: 10, template: statement}\n",
        )
        .write(
            "rules/solo.yaml",
            "name: solo\npriority: 20\napplies_to: 'customer.id == \"C3\"'\ngroup: customer\n\
             stages:\n  - {id: overdue, offset: 1, template: overdue, group: invoice}\n",
        )
        .write(
            "templates/statement.en.hbs",
            &template(
                "Statement for {{customer.name}}: {{#each totals}}{{amount_due}} {{currency}}{{#unless @last}} + {{/unless}}{{/each}}",
                statement,
            ),
        )
        .write(
            "templates/statement.fr.hbs",
            &template("Relevé {{customer.name}}", statement),
        );
    folder
}

const C1_MESSAGE: &str = "customer.C1.statement.2026-12-01.F001";

#[test]
fn preview_gives_the_reminders_of_one_message_one_id_and_totals_per_currency() {
    let folder = grouped_folder("");
    let preview = preview_json(&folder, AS_OF, 1, &["--render"]);
    let ids: Vec<(String, String, String)> = preview
        .iter()
        .map(|r| (s(&r["invoice"]), s(&r["stage"]), s(&r["message"])))
        .collect();
    let row = |i: &str, st: &str, m: &str| (i.to_string(), st.to_string(), m.to_string());
    assert_eq!(
        ids,
        [
            row("F001", "overdue", C1_MESSAGE),
            row("F002", "second", C1_MESSAGE),
            row("F003", "overdue", C1_MESSAGE),
            // A grouped stage's message for a customer's only invoice.
            row("F004", "overdue", "customer.C2.statement.2026-12-01.F004"),
            // Another language, another message.
            row("F005", "overdue", "customer.C1.statement.2026-12-01.F005"),
            // `group: invoice` on the stage: each alone.
            row("F006", "overdue", "F006.solo.overdue.0"),
            row("F007", "overdue", "F007.solo.overdue.0"),
        ]
    );

    let c1: Vec<&serde_json::Value> = preview[..3].iter().collect();
    let body = "- F001: 100.00 EUR (overdue #0)\n\
                - F002: 250.50 EUR (second #0)\n\
                - F003: 75.25 USD (overdue #0)\n\
                Total EUR: 350.50 over 2 invoice(s)\n\
                Total USD: 75.25 over 1 invoice(s)";
    for r in &c1 {
        assert_eq!(
            r["subject"], "Statement for Customer One: 350.50 EUR + 75.25 USD",
            "{r:#}"
        );
        assert_eq!(s(&r["body"]).trim_end(), body, "{r:#}");
        assert_eq!(r["to"], "a@one.example, b@one.example");
    }
    // Each row keeps its own invoice's facts.
    let own: Vec<(String, String)> = c1
        .iter()
        .map(|r| (s(&r["amount_due"]), s(&r["currency"])))
        .collect();
    assert_eq!(
        own,
        [
            ("100.00".to_string(), "EUR".to_string()),
            ("250.50".into(), "EUR".into()),
            ("75.25".into(), "USD".into())
        ]
    );
    assert_eq!(
        s(&preview[4]["body"]).trim_end(),
        "- F005: 40.00 EUR (overdue #0)\nTotal EUR: 40.00 over 1 invoice(s)"
    );
}

#[test]
fn a_message_lists_a_hundred_invoices_at_most_the_rest_go_in_the_next() {
    let folder = grouped_folder("");
    let rows: Vec<Inv> = (1..=205)
        .map(|i| {
            due_on(&format!("G{i:03}"), "2026-11-30")
                .customer("C9", "Customer Nine")
                .with("email", "ap@nine.example")
        })
        .collect();
    folder.write_invoices(&rows);
    let preview = preview_json(&folder, AS_OF, 1, &[]);
    let mut messages: Vec<(String, usize)> = Vec::new();
    for r in &preview {
        let id = s(&r["message"]);
        match messages.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => messages.push((id, 1)),
        }
    }
    assert_eq!(
        messages,
        [
            ("customer.C9.statement.2026-12-01.G001".to_string(), 100),
            ("customer.C9.statement.2026-12-01.G101".to_string(), 100),
            ("customer.C9.statement.2026-12-01.G201".to_string(), 5),
        ]
    );
}

#[test]
fn a_grouped_message_is_one_outbox_email_and_each_invoice_is_journaled_sent() {
    let folder = grouped_folder("");
    let run = run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_contains(&run.stderr, "due=5 sent=5");
    assert_eq!(
        names(&folder, "outbox"),
        [
            "2026-12-01.F006.solo.overdue.0.eml",
            "2026-12-01.F007.solo.overdue.0.eml",
            "2026-12-01.customer.C1.statement.2026-12-01.F001.eml",
            "2026-12-01.customer.C1.statement.2026-12-01.F005.eml",
            "2026-12-01.customer.C2.statement.2026-12-01.F004.eml",
        ]
    );
    let c1_id = format!("<{C1_MESSAGE}@atelier-durand.fr>");
    let c1_rows: Vec<_> = journal_messages(&folder)
        .into_iter()
        .filter(|r| ["F001", "F002", "F003"].contains(&r.0.as_str()))
        .collect();
    let expected = |invoice: &str, stage: &str, state: &str, token: &str, id: &str| {
        (
            invoice.to_string(),
            stage.to_string(),
            state.to_string(),
            token.to_string(),
            id.to_string(),
        )
    };
    assert_eq!(
        c1_rows,
        [
            expected("F002", "overdue", "skipped", "", ""),
            expected("F001", "overdue", "sent", C1_MESSAGE, &c1_id),
            expected("F002", "second", "sent", C1_MESSAGE, &c1_id),
            expected("F003", "overdue", "sent", C1_MESSAGE, &c1_id),
        ]
    );

    let raw = folder.read(&format!("outbox/2026-12-01.{C1_MESSAGE}.eml"));
    let mail = mailparse::parse_mail(raw.as_bytes()).unwrap();
    assert_eq!(mail.headers.get_first_value("Message-ID").unwrap(), c1_id);
    let to = mailparse::addrparse_header(mail.headers.get_first_header("To").unwrap()).unwrap();
    let to: Vec<String> = to
        .iter()
        .flat_map(|a| match a {
            mailparse::MailAddr::Single(s) => vec![s.addr.clone()],
            mailparse::MailAddr::Group(g) => g.addrs.iter().map(|s| s.addr.clone()).collect(),
        })
        .collect();
    assert_eq!(to, ["a@one.example", "b@one.example"]);
    let body = mail.get_body().unwrap().replace("\r\n", "\n");
    for line in [
        "- F001: 100.00 EUR (overdue #0)",
        "- F002: 250.50 EUR (second #0)",
        "- F003: 75.25 USD (overdue #0)",
    ] {
        assert_contains(&body, line);
    }

    // Again on the same date: nothing is sent twice.
    let again = run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_contains(&again.stderr, "due=0 sent=0");
    assert_eq!(folder.files("outbox").len(), 5);
}

#[test]
fn a_grouped_message_arrives_once_over_smtp_listing_every_invoice() {
    let server = SmtpServer::start();
    let folder = grouped_folder(&server.delivery());
    run_on(&folder, AS_OF, &[]).expect_code(0);
    let mails = server.received();
    assert_eq!(
        mails.len(),
        5,
        "one SMTP message per message, not per invoice"
    );
    let c1_id = format!("<{C1_MESSAGE}@atelier-durand.fr>");
    let grouped: Vec<&(Vec<String>, Vec<u8>)> = mails
        .iter()
        .filter(|(_, raw)| {
            mailparse::parse_mail(raw)
                .unwrap()
                .headers
                .get_first_value("Message-ID")
                .as_deref()
                == Some(c1_id.as_str())
        })
        .collect();
    assert_eq!(grouped.len(), 1, "the C1 message arrives once");
    let (recipients, raw) = grouped[0];
    assert_eq!(recipients, &["a@one.example", "b@one.example"]);
    let mail = mailparse::parse_mail(raw).unwrap();
    assert_eq!(
        mail.headers.get_first_value("Subject").unwrap(),
        "Statement for Customer One: 350.50 EUR + 75.25 USD"
    );
    let body = mail.get_body().unwrap().replace("\r\n", "\n");
    assert_contains(
        &body,
        "- F001: 100.00 EUR (overdue #0)\n- F002: 250.50 EUR (second #0)\n- F003: 75.25 USD (overdue #0)\n",
    );
    for invoice in ["F001", "F002", "F003"] {
        let row = folder
            .journal()
            .into_iter()
            .find(|r| r.invoice == invoice && r.state != "skipped")
            .unwrap();
        assert_eq!((row.state.as_str(), row.attempts), ("sent", 1), "{row:?}");
        assert_eq!(row.message_id, c1_id);
        assert_eq!(row.recipient, "a@one.example, b@one.example");
    }
    run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_eq!(server.received().len(), 5, "nothing twice");
}

#[test]
fn a_grouped_message_refused_by_the_server_is_retried_as_one_message() {
    // C1's message goes to a@ and b@one.example: refused whole, then to
    // each of them alone (relance tries each recipient in a transaction
    // of its own when a server refuses one with several), three refusals.
    // One connection: C1's message is the first to go.
    let server = SmtpServer::refusing(Some("@one.example"), 3);
    let folder = grouped_folder(
        &server
            .delivery()
            .replace("tls: none", "tls: none, connections: 1"),
    );
    let run = run_on(&folder, AS_OF, &[]).expect_code(1);
    assert_contains(&run.stderr, "due=5 sent=4 failed=1");
    assert_eq!(server.refusals_left(), 0);
    let c1_id = format!("<{C1_MESSAGE}@atelier-durand.fr>");
    let failed: Vec<JournalRow> = folder
        .journal()
        .into_iter()
        .filter(|r| r.state == "failed")
        .collect();
    let invoices: Vec<&str> = failed.iter().map(|r| r.invoice.as_str()).collect();
    assert_eq!(
        invoices,
        ["F001", "F002", "F003"],
        "every invoice of the message failed"
    );
    for row in &failed {
        assert_eq!(row.message_id, c1_id);
        assert_eq!(row.attempts, 1);
        assert_contains(row.last_error.as_deref().unwrap_or_default(), "451");
        assert!(row.next_try_at.is_some(), "{row:?}");
    }

    // The retry is due (the test does not wait a minute for it).
    rusqlite::Connection::open(folder.path().join("state/relance.db"))
        .unwrap()
        .execute(
            "UPDATE reminder SET next_try_at = '2000-01-01T00:00:00.000Z' WHERE state = 'failed'",
            [],
        )
        .unwrap();
    run_on(&folder, AS_OF, &[]).expect_code(0);
    let mails = server.received();
    assert_eq!(mails.len(), 5, "the four first, then the retried one");
    let (recipients, raw) = mails.last().unwrap();
    assert_eq!(recipients, &["a@one.example", "b@one.example"]);
    let mail = mailparse::parse_mail(raw).unwrap();
    assert_eq!(mail.headers.get_first_value("Message-ID").unwrap(), c1_id);
    assert_contains(
        &mail.get_body().unwrap().replace("\r\n", "\n"),
        "- F001: 100.00 EUR (overdue #0)\n- F002: 250.50 EUR (second #0)\n- F003: 75.25 USD (overdue #0)\n",
    );
    for invoice in ["F001", "F002", "F003"] {
        let row = folder
            .journal()
            .into_iter()
            .find(|r| r.invoice == invoice && r.state != "skipped")
            .unwrap();
        assert_eq!(
            (row.state.as_str(), row.attempts, row.last_error.as_deref()),
            ("sent", 2, None),
            "{row:?}"
        );
    }
}

#[test]
fn a_grouped_message_left_planned_by_a_crash_is_resolved_by_its_outbox_file() {
    let folder = grouped_folder("");
    run_on(&folder, AS_OF, &[]).expect_code(0);
    let file = folder
        .path()
        .join(format!("outbox/2026-12-01.{C1_MESSAGE}.eml"));
    let inode = std::fs::metadata(&file).unwrap().ino();

    // Killed after writing the email, before journaling it sent.
    let dead = dead_pid();
    for invoice in ["F001", "F002", "F003"] {
        folder.rewind(invoice, "planned", dead);
    }
    let run = run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_contains(&run.stderr, "recovered=3");
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "delivered before the crash: not written again"
    );
    let states: Vec<(String, String, String)> = journal_messages(&folder)
        .into_iter()
        .filter(|r| ["F001", "F002", "F003"].contains(&r.0.as_str()))
        .map(|r| (r.0, r.2, r.3))
        .collect();
    let row = |i: &str, st: &str, m: &str| (i.to_string(), st.to_string(), m.to_string());
    assert_eq!(
        states,
        [
            row("F002", "skipped", ""),
            row("F001", "sent", C1_MESSAGE),
            row("F002", "sent", C1_MESSAGE),
            row("F003", "sent", C1_MESSAGE),
        ]
    );

    // Killed before writing it: it is written once, whole, under its name.
    for invoice in ["F001", "F002", "F003"] {
        folder.rewind(invoice, "planned", dead);
    }
    std::fs::remove_file(&file).unwrap();
    let run = run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_contains(&run.stderr, "recovered=3");
    assert_eq!(folder.files("outbox").len(), 5);
    let raw = std::fs::read(&file).unwrap();
    let mail = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(
        mail.headers.get_first_value("Message-ID").unwrap(),
        format!("<{C1_MESSAGE}@atelier-durand.fr>")
    );
    let body = mail.get_body().unwrap().replace("\r\n", "\n");
    assert_contains(
        &body,
        "- F001: 100.00 EUR (overdue #0)\n- F002: 250.50 EUR (second #0)\n- F003: 75.25 USD (overdue #0)\n",
    );
    assert!(
        folder
            .journal()
            .iter()
            .all(|r| r.state == "sent" || (r.invoice == "F002" && r.stage == "overdue")),
        "{:?}",
        briefs(&folder)
    );
}

#[test]

fn explain_shows_the_grouped_message_a_reminder_goes_out_in() {
    let folder = grouped_folder("");
    let preview = preview_json(&folder, AS_OF, 1, &[]);
    for invoice in ["F001", "F002", "F003"] {
        let row = preview.iter().find(|r| r["invoice"] == invoice).unwrap();
        let fires = explain_json(&folder, invoice, AS_OF)["fires"].clone();
        for key in ["message", "to", "subject"] {
            assert_eq!(fires[key], row[key], "{invoice}: {key}");
        }
        assert_contains(
            &explain(&folder, invoice, AS_OF),
            "(email) to a@one.example, b@one.example: Statement for Customer One: 350.50 EUR + 75.25 USD",
        );
    }
}

#[test]
fn check_warns_when_a_grouped_stage_template_does_not_list_the_invoices() {
    let folder = dunning_folder("", &invoices(1));
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\nstages:\n\
             \x20 - {id: overdue, offset: 1, template: overdue, group: customer}\n\
             \x20 - {id: statement, offset: 5, template: statement, group: customer}\n",
        )
        .write(
            "templates/statement.en.hbs",
            &template("Statement", "{{#each invoices}}{{number}}\n{{/each}}"),
        );
    let check = folder.run(&["check"]).expect_code(0);
    let warnings = check.warnings();
    assert_eq!(warnings.len(), 1, "{}", check.stdout);
    assert_ends_with(
        warnings[0],
        "rules/dunning.yaml:3:6: warning: stage overdue groups reminders per customer, but template \
         \"overdue\" does not list `invoices`: a message for several invoices would show only the \
         first (use a statement template, e.g. {{#each invoices}}…{{/each}})",
    );
}

#[test]
fn max_per_run_counts_messages_not_invoices() {
    // Five messages for seven invoices.
    let folder = grouped_folder("limits: {max_per_run: 5}");
    run_on(&folder, AS_OF, &[]).expect_code(0);
    assert_eq!(folder.files("outbox").len(), 5);

    let folder = grouped_folder("limits: {max_per_run: 4}");
    let held = run_on(&folder, AS_OF, &[]).expect_code(1);
    assert_contains(
        &held.stderr,
        "held: 7 reminders in 5 messages are due on 2026-12-01, more than limits.max_per_run (4)",
    );
    assert!(folder.files("outbox").is_empty());
    run_on(&folder, AS_OF, &["--confirm"]).expect_code(0);
    assert_eq!(folder.files("outbox").len(), 5);
}

// --- Retries and crash leftovers under the calendar, holds and promises --------

/// Both reminders of a two-invoice [`dunning_folder`] went out on `date`;
/// then F001's is made a failed delivery due for its retry and F002's a
/// reminder planned by a process that died before writing its file.
fn pending_after(date: &str) -> Folder {
    let folder = dunning_folder("", &invoices(2));
    run_on(&folder, date, &[]).expect_code(0);
    let dead = dead_pid();
    folder.rewind("F001", "failed", dead);
    folder.rewind("F002", "planned", dead);
    for f in folder.files("outbox") {
        std::fs::remove_file(f).unwrap();
    }
    folder
}

#[test]
fn a_retry_and_a_crash_leftover_are_delivered_by_the_next_run() {
    // The control for the two tests below: on a plain weekday, both go out.
    let folder = pending_after("2026-12-01");
    let run = run_on(&folder, "2026-12-02", &[]).expect_code(0);
    assert_contains(&run.stderr, "recovered=1");
    assert_eq!(
        folder.journal_states(),
        [
            ("F001".into(), "sent".into()),
            ("F002".into(), "sent".into())
        ]
    );
    assert_eq!(
        names(&folder, "outbox"),
        [
            "2026-12-01.F001.dunning.overdue.0.eml",
            "2026-12-01.F002.dunning.overdue.0.eml"
        ]
    );
}

#[test]

fn a_retry_and_a_crash_leftover_wait_for_the_next_sending_day() {
    // Friday 4 December: delivery failed (F001) or was interrupted (F002).
    let folder = pending_after("2026-12-04");
    for weekend in ["2026-12-05", "2026-12-06"] {
        run_on(&folder, weekend, &[]).expect_code(0);
        assert!(
            folder.files("outbox").is_empty(),
            "{weekend}: {:?}",
            names(&folder, "outbox")
        );
        assert!(
            folder.journal().iter().all(|r| r.state != "sent"),
            "{weekend}: {:?}",
            briefs(&folder)
        );
    }
    run_on(&folder, "2026-12-07", &[]).expect_code(0);
    assert_eq!(
        folder.journal_states(),
        [
            ("F001".into(), "sent".into()),
            ("F002".into(), "sent".into())
        ]
    );
    assert_eq!(folder.files("outbox").len(), 2);
}

#[test]

fn a_retry_waits_while_its_invoice_is_held_or_paused_by_a_promise() {
    let folder = pending_after("2026-12-01");
    // The same afternoon: F001 is put on hold, F002's customer promises to pay by the 18th.
    folder.write(
        "rules/holds.yaml",
        "holds:\n  - invoice: F001\n    reason: \"contested delivery\"\n",
    );
    let mut rows = invoices(2);
    rows[1] = rows[1].clone().with("promise_date", "2026-12-18");
    folder.write_invoices(&rows);

    run_on(&folder, "2026-12-02", &[]).expect_code(0);
    assert!(
        folder.files("outbox").is_empty(),
        "{:?}",
        names(&folder, "outbox")
    );
    assert!(
        folder.journal().iter().all(|r| r.state != "sent"),
        "{:?}",
        briefs(&folder)
    );
}

// --- Send time ---------------------------------------------------------------

/// A folder in Paris sending at 09:00 in each recipient's time zone. F001
/// (Toronto) has two stages reached on 1 December, so one is skipped when the
/// other goes; F002 has no time zone (Paris); F003's is not one (Paris, with
/// a warning).
fn send_time_folder() -> Folder {
    let folder = folder_with_stages(
        "timezone: Europe/Paris\nsend_time: \"09:00\"",
        &[
            "{id: overdue, offset: 1, template: overdue}",
            "{id: reminder, offset: 10, template: overdue}",
        ],
        &[],
    );
    folder.write(
        "data/invoices.csv",
        &csv_with_time_zones(&[
            (due_on("F001", "2026-11-20"), "America/Toronto"),
            (due_on("F002", "2026-11-30"), ""),
            (due_on("F003", "2026-11-30"), "Mars/Olympus_Mons"),
        ]),
    );
    folder
}

#[test]
fn a_message_waits_for_its_send_time_in_the_recipients_time_zone() {
    let folder = send_time_folder();

    let early = run_at(&folder, "2026-12-01", "08:59").expect_code(0);
    assert!(folder.journal().is_empty(), "{:?}", briefs(&folder));
    assert_contains(
        &early.stderr,
        "3 message(s) wait for their send time; the first goes out at 2026-12-01T08:00:00.000Z",
    );
    assert_contains(
        &early.stderr,
        "timezone: \"Mars/Olympus_Mons\" is not a time zone (expected an IANA name such as America/Toronto): \
         invoice F003 is sent at the config's time zone (Europe/Paris)",
    );

    // 10:00 in Paris is 04:00 in Toronto: F001 waits, skip included.
    let ten = run_at(&folder, "2026-12-01", "10:00").expect_code(0);
    assert_contains(
        &ten.stderr,
        "1 message(s) wait for their send time; the first goes out at 2026-12-01T14:00:00.000Z",
    );
    assert_eq!(
        briefs(&folder),
        [
            brief("F002", "overdue", 0, "sent", "2026-12-01"),
            brief("F003", "overdue", 0, "sent", "2026-12-01"),
        ]
    );
    // 09:00 in Toronto is 15:00 in Paris.
    run_at(&folder, "2026-12-01", "14:59").expect_code(0);
    assert_eq!(folder.journal().len(), 2);
    run_at(&folder, "2026-12-01", "15:00").expect_code(0);
    assert_eq!(
        briefs_of(&folder, "F001"),
        [
            brief("F001", "overdue", 0, "skipped", "2026-12-01"),
            brief("F001", "reminder", 0, "sent", "2026-12-01"),
        ]
    );
}

#[test]
fn preview_rows_say_when_each_message_goes_out_in_its_recipients_time() {
    let folder = send_time_folder();
    let rows = preview_json(&folder, "2026-12-01", 1, &[]);
    let send_at: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["invoice"].as_str().unwrap(),
                r["send_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        send_at,
        [
            ("F001", "2026-12-01T09:00:00-05:00"),
            ("F002", "2026-12-01T09:00:00+01:00"),
            ("F003", "2026-12-01T09:00:00+01:00"),
        ]
    );
    // Without a send time, no key.
    folder.write("relance.yaml", "timezone: Europe/Paris\nlanguage: en\n");
    let rows = preview_json(&folder, "2026-12-01", 1, &[]);
    assert!(rows.iter().all(|r| r.get("send_at").is_none()), "{rows:?}");
}

#[test]
fn without_at_a_past_date_counts_as_elapsed_whatever_the_send_time() {
    let folder = send_time_folder();
    let run = run_on(&folder, "2026-12-01", &[]).expect_code(0);
    assert_contains(&run.stderr, "due=3 sent=3");
    assert_eq!(folder.journal().len(), 4, "{:?}", briefs(&folder));
}

#[test]
fn send_times_follow_each_zone_across_the_daylight_saving_changes_of_march_2026() {
    // A weekly reminder on Mondays to Toronto, evaluated from Paris. 09:00 in
    // Toronto is 15:00 in Paris on 2 March (both in winter time), 14:00 on
    // 23 March (Toronto moved on 8 March, Paris not yet), 15:00 again on
    // 30 March (Paris moved on 29 March).
    let folder = folder_with_stages(
        "timezone: Europe/Paris\nsend_time: \"09:00\"",
        &["{id: weekly, offset: 0, template: overdue, repeat: {every: 7}}"],
        &[],
    );
    folder.write(
        "data/invoices.csv",
        &csv_with_time_zones(&[(due_on("F001", "2026-03-02"), "America/Toronto")]),
    );
    // (date, a minute before, the send time in UTC, its time in Paris, the occurrence due)
    let steps = [
        (
            "2026-03-02",
            "14:59",
            "2026-03-02T14:00:00.000Z",
            "15:00",
            0,
        ),
        (
            "2026-03-23",
            "13:59",
            "2026-03-23T13:00:00.000Z",
            "14:00",
            3,
        ),
        (
            "2026-03-30",
            "14:59",
            "2026-03-30T13:00:00.000Z",
            "15:00",
            4,
        ),
    ];
    for (date, before, first_at, on_time, occurrence) in steps {
        let sent_before = briefs(&folder).iter().filter(|b| b.3 == "sent").count();
        let waiting = run_at(&folder, date, before).expect_code(0);
        assert_contains(
            &waiting.stderr,
            &format!("1 message(s) wait for their send time; the first goes out at {first_at}"),
        );
        let run = run_at(&folder, date, on_time).expect_code(0);
        assert_contains(&run.stderr, "due=1 sent=1");
        let sent: Vec<Brief> = briefs(&folder)
            .into_iter()
            .filter(|b| b.3 == "sent")
            .collect();
        assert_eq!(sent.len(), sent_before + 1, "{date}");
        assert_eq!(
            sent.last().unwrap(),
            &brief("F001", "weekly", occurrence, "sent", date)
        );
    }
    // The repeats overtaken on 23 March were skipped.
    let skipped: Vec<u32> = briefs(&folder)
        .into_iter()
        .filter(|b| b.3 == "skipped")
        .map(|b| b.2)
        .collect();
    assert_eq!(skipped, [1, 2]);
}

#[test]
fn a_send_time_the_spring_forward_skips_goes_out_as_much_later() {
    // 02:30 does not exist in Paris on Sunday 29 March 2026 (02:00 → 03:00):
    // the reminder goes at 03:30, never before its time nor lost. The policy
    // overrides the config's send time and days.
    let folder = dunning_folder(
        "timezone: Europe/Paris\nsend_time: \"09:00\"",
        &[due_on("F001", "2026-03-28")],
    );
    folder.write(
        "rules/dunning.yaml",
        "name: dunning\nsend_time: \"02:30\"\nsend_days: [mon, tue, wed, thu, fri, sat, sun]\n\
         stages:\n  - {id: overdue, offset: 1, template: overdue}\n",
    );
    let waiting = run_at(&folder, "2026-03-29", "03:29").expect_code(0);
    assert_contains(
        &waiting.stderr,
        "1 message(s) wait for their send time; the first goes out at 2026-03-29T01:30:00.000Z",
    );
    assert!(folder.journal().is_empty());
    run_at(&folder, "2026-03-29", "03:30").expect_code(0);
    assert_eq!(
        briefs(&folder),
        [brief("F001", "overdue", 0, "sent", "2026-03-29")]
    );
}

// --- A real SMTP server ------------------------------------------------------

/// What the server accepted: each message's recipients and raw bytes.
type Received = Arc<Mutex<Vec<(Vec<String>, Vec<u8>)>>>;

/// An SMTP server (mailin-embedded) on a free port of 127.0.0.1 that keeps
/// every message it accepts.
struct SmtpServer {
    port: u16,
    received: Received,
    refusals: Arc<Mutex<usize>>,
}

#[derive(Clone)]
struct Mailbox {
    received: Received,
    /// Messages to an address ending so are refused (451) while the count lasts.
    refuse: Option<&'static str>,
    refusals: Arc<Mutex<usize>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Mailbox {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        if let Some(address) = self.refuse
            && to.iter().any(|t| t.ends_with(address))
        {
            let mut left = self.refusals.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Response::custom(451, "4.3.0 Mailbox busy, try again later".into());
            }
        }
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = (std::mem::take(&mut self.to), std::mem::take(&mut self.data));
        self.received.lock().unwrap().push(message);
        response::OK
    }
}

impl SmtpServer {
    /// A server that accepts every message.
    fn start() -> SmtpServer {
        SmtpServer::refusing(None, 0)
    }

    /// A server that refuses the first `times` messages to `address`.
    fn refusing(address: Option<&'static str>, times: usize) -> SmtpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let received = Received::default();
        let refusals = Arc::new(Mutex::new(times));
        let mut server = mailin_embedded::Server::new(Mailbox {
            received: received.clone(),
            refuse: address,
            refusals: refusals.clone(),
            to: Vec::new(),
            data: Vec::new(),
        });
        server
            .with_name("localhost")
            .with_ssl(mailin_embedded::SslConfig::None)
            .expect("no TLS")
            // More than relance's default connections (4): each holds a thread.
            .with_num_threads(8)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(e) = server.serve() {
                panic!("SMTP server: {e}");
            }
        });
        SmtpServer {
            port,
            received,
            refusals,
        }
    }

    /// The `delivery:` line of relance.yaml for this server.
    fn delivery(&self) -> String {
        format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {}, tls: none}}",
            self.port
        )
    }

    fn received(&self) -> Vec<(Vec<String>, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }

    /// How many refusals are left.
    fn refusals_left(&self) -> usize {
        *self.refusals.lock().unwrap()
    }
}
