//! docs/contract.md §4: when a stage fires, seen through `preview --format json` and `explain`.

use crate::common::{Folder, assert_ends_with};
use crate::{
    STANDARD, array, fields, fired, folder, inv, preview_fields, preview_json, run_expect,
    run_once, str_of, with_stages, write_stages,
};

/// The standard cadence for these invoices.
fn standard(rows: &[crate::Inv]) -> Folder {
    with_stages(rows, &STANDARD)
}

/// The standard cadence for one invoice, F1: 100 due on 2026-12-10.
fn standard_f1() -> Folder {
    standard(&[inv("F1", "2026-12-10", "100")])
}

/// The verdict column of `explain NUM --as-of DATE`, one `"STAGE VERDICT"` per row.
fn verdicts(f: &Folder, number: &str, date: &str) -> Vec<String> {
    let run = run_expect(f, &format!("explain {number} --as-of {date}"), 0);
    let table: Vec<String> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("STAGE"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split("  ").filter(|c| !c.trim().is_empty()).collect();
            format!("{} {}", cells[0].trim(), cells.last().unwrap().trim())
        })
        .collect();
    assert!(!table.is_empty(), "no stage table in:\n{}", run.stdout);
    table
}

#[test]
fn a_stage_fires_on_the_day_it_is_reached_and_not_before() {
    let f = standard_f1();
    assert_eq!(fired(&f, "2026-12-02", "1"), Vec::<String>::new());
    assert_eq!(fired(&f, "2026-12-03", "1"), vec!["2026-12-03 F1 courtesy"]);
}

#[test]
fn a_fortnight_follows_the_cadence_day_by_day() {
    let f = standard_f1();
    assert_eq!(
        fired(&f, "2026-12-01", "60"),
        vec![
            "2026-12-03 F1 courtesy",
            "2026-12-08 F1 due_soon",
            "2026-12-11 F1 overdue_1",
            "2026-12-25 F1 overdue_2",
            "2027-01-09 F1 formal_notice",
        ]
    );
}

#[test]
fn catching_up_fires_only_the_latest_reached_stage() {
    // First evaluated 17 days after the due date: courtesy, due_soon,
    // overdue_1 and overdue_2 are all reached; only overdue_2 goes out, and
    // the earlier ones never do.
    let f = standard_f1();
    assert_eq!(
        fired(&f, "2026-12-27", "14"),
        vec!["2026-12-27 F1 overdue_2", "2027-01-09 F1 formal_notice"]
    );
    assert_eq!(
        verdicts(&f, "F1", "2026-12-27"),
        vec![
            "courtesy skipped: overtaken by a later stage",
            "due_soon skipped: overtaken by a later stage",
            "overdue_1 skipped: overtaken by a later stage",
            "overdue_2 when = true; FIRES",
            "formal_notice not reached yet",
            "collection not reached yet",
        ]
    );
}

#[test]
fn a_candidate_whose_when_is_false_waits_and_an_earlier_one_fires() {
    // 20 due: overdue_2 needs at least 50. On the catch-up day overdue_1 fires
    // instead; overdue_2 waits, and is passed once formal_notice is sent.
    let f = standard(&[inv("F1", "2026-12-10", "20")]);
    assert_eq!(
        fired(&f, "2026-12-27", "30"),
        vec!["2026-12-27 F1 overdue_1", "2027-01-09 F1 formal_notice"]
    );
    assert_eq!(
        verdicts(&f, "F1", "2026-12-27")[2..4],
        [
            "overdue_1 FIRES",
            "overdue_2 when = false; waiting: reached, but its `when` is false",
        ]
    );
}

#[test]
fn a_waiting_stage_fires_on_the_first_day_its_when_holds() {
    let f = with_stages(
        &[inv("F1", "2026-12-10", "100")],
        &[
            "{id: late, offset: 15, template: t, when: 'invoice.days_overdue >= 20 && today >= \"2026-12-30\"'}",
        ],
    );
    assert_eq!(fired(&f, "2026-12-01", "60"), vec!["2026-12-30 F1 late"]);
}

#[test]
fn at_most_one_reminder_per_invoice_per_day() {
    let f = with_stages(
        &[
            inv("F1", "2026-12-10", "100"),
            inv("F2", "2026-12-10", "100"),
        ],
        &[
            "{id: first, offset: 0, template: t}",
            "{id: second, offset: 0, template: t}",
        ],
    );
    assert_eq!(
        fired(&f, "2026-12-01", "30"),
        vec!["2026-12-10 F1 second", "2026-12-10 F2 second"]
    );
}

#[test]
fn repeats_fire_every_period_at_most_max_more_times() {
    // Due 31 January 2026: +30 is 2 March (February has 28 days), +90 is 1 May.
    let f = standard(&[inv("F1", "2026-01-31", "100")]);
    assert_eq!(
        fired(&f, "2026-01-20", "300"),
        vec![
            "2026-01-24 F1 courtesy",
            "2026-01-29 F1 due_soon",
            "2026-02-01 F1 overdue_1",
            "2026-02-15 F1 overdue_2",
            "2026-03-02 F1 formal_notice",
            "2026-05-01 F1 collection",
            "2026-05-31 F1 collection#1",
            "2026-06-30 F1 collection#2",
            "2026-07-30 F1 collection#3",
        ]
    );
}

#[test]
fn a_repeat_without_max_goes_on_while_the_invoice_is_open() {
    let f = with_stages(
        &[inv("F1", "2026-01-31", "100")],
        &["{id: monthly, offset: 30, template: t, repeat: {every: 30}}"],
    );
    assert_eq!(
        fired(&f, "2026-03-01", "150"),
        vec![
            "2026-03-02 F1 monthly",
            "2026-04-01 F1 monthly#1",
            "2026-05-01 F1 monthly#2",
            "2026-05-31 F1 monthly#3",
            "2026-06-30 F1 monthly#4",
        ]
    );
}

#[test]
fn catching_up_on_a_repeating_stage_fires_its_latest_occurrence() {
    let f = standard(&[inv("F1", "2026-01-31", "100")]);
    // 1 July: collection (1 May), #1 (31 May) and #2 (30 June) are reached.
    assert_eq!(
        fired(&f, "2026-07-01", "60"),
        vec!["2026-07-01 F1 collection#2", "2026-07-30 F1 collection#3"]
    );
}

#[test]
fn offsets_count_calendar_days_across_month_ends_and_leap_years() {
    let f = with_stages(
        &[
            inv("JAN26", "2026-01-31", "100"),
            inv("JAN28", "2028-01-31", "100"),
            inv("LEAP", "2028-02-29", "100"),
        ],
        &[
            "{id: week_before, offset: -7, template: t}",
            "{id: next_day, offset: 1, template: t}",
            "{id: month, offset: 30, template: t}",
        ],
    );
    let only = |number: &str| {
        fired(&f, "2026-01-01", "1000")
            .into_iter()
            .filter(|r| r.contains(&format!(" {number} ")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only("JAN26"),
        vec![
            "2026-01-24 JAN26 week_before",
            "2026-02-01 JAN26 next_day",
            "2026-03-02 JAN26 month",
        ]
    );
    assert_eq!(
        only("JAN28"),
        vec![
            "2028-01-24 JAN28 week_before",
            "2028-02-01 JAN28 next_day",
            "2028-03-01 JAN28 month",
        ]
    );
    assert_eq!(
        only("LEAP"),
        vec![
            "2028-02-22 LEAP week_before",
            "2028-03-01 LEAP next_day",
            "2028-03-30 LEAP month",
        ]
    );
}

#[test]
fn the_issue_date_anchor_counts_from_the_issue_date() {
    let f = folder(&[inv("F1", "2028-03-31", "100").with("issue_date", "2028-01-31")]);
    f.write(
        "rules/p.yaml",
        "name: p\nanchor: issue_date\nstages:\n  - {id: d29, offset: 29, template: t}\n  - {id: d60, offset: 60, template: t}\n",
    );
    assert_eq!(
        fired(&f, "2028-02-01", "60"),
        vec!["2028-02-29 F1 d29", "2028-03-31 F1 d60"]
    );
}

#[test]
fn days_counts_from_as_of_included() {
    let f = standard_f1();
    // 8, 9 and 10 December: due_soon (8th) is in, overdue_1 (11th) is not.
    assert_eq!(fired(&f, "2026-12-08", "3"), vec!["2026-12-08 F1 due_soon"]);
    assert_eq!(
        fired(&f, "2026-12-08", "4"),
        vec!["2026-12-08 F1 due_soon", "2026-12-11 F1 overdue_1"]
    );
    let table = run_expect(&f, "preview --as-of 2026-12-08 --days 3", 0);
    assert_ends_with(
        &table.stdout,
        "\n1 reminder(s) from 2026-12-08 to 2026-12-10.\n",
    );
}

#[test]
fn the_default_preview_covers_fourteen_days() {
    let f = standard(&[inv("F1", "2026-12-14", "100")]);
    // From 1 December: due_soon on the 12th is day 12, overdue_1 on the 15th is day 15.
    let reminders = preview_json(&f, "--as-of 2026-12-01");
    let dates: Vec<&str> = reminders.iter().map(|r| str_of(r, "date")).collect();
    assert_eq!(dates, vec!["2026-12-07", "2026-12-12"]);
}

#[test]
fn invoice_limits_the_preview_to_one_invoice() {
    let f = standard(&[
        inv("F1", "2026-12-10", "100"),
        inv("F2", "2026-12-10", "100"),
    ]);
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-01 --invoice F2", "invoice stage"),
        vec!["F2 courtesy", "F2 due_soon", "F2 overdue_1"]
    );
}

#[test]
fn preview_starts_from_the_journal_as_it_is() {
    let f = standard_f1();
    run_once(&f, "2026-12-11"); // overdue_1 sent, courtesy and due_soon skipped
    assert_eq!(
        fired(&f, "2026-12-11", "20"),
        vec!["2026-12-25 F1 overdue_2"]
    );
    assert_eq!(
        verdicts(&f, "F1", "2026-12-12")[..4],
        [
            "courtesy already in the journal (skipped)",
            "due_soon already in the journal (skipped)",
            "overdue_1 already in the journal (sent)",
            "overdue_2 not reached yet",
        ]
    );
}

#[test]
fn a_policy_never_steps_back_to_a_stage_before_the_last_one_journaled() {
    let f = with_stages(
        &[inv("F1", "2026-12-10", "100")],
        &[
            "{id: courtesy, offset: -7, template: t}",
            "{id: overdue_1, offset: 1, template: t}",
            "{id: overdue_2, offset: 15, template: t}",
        ],
    );
    run_once(&f, "2026-12-11"); // overdue_1 is sent
    // The finance manager adds a stage on the due date: F1 is past it, so it
    // never gets it; a new invoice does.
    write_stages(
        &f,
        &[
            "{id: courtesy, offset: -7, template: t}",
            "{id: on_due, offset: 0, template: t}",
            "{id: overdue_1, offset: 1, template: t}",
            "{id: overdue_2, offset: 15, template: t}",
        ],
    )
    .write_invoices(&[
        inv("F1", "2026-12-10", "100"),
        inv("F2", "2026-12-12", "100"),
    ]);
    assert_eq!(
        fired(&f, "2026-12-12", "14"),
        vec![
            "2026-12-12 F2 on_due",
            "2026-12-13 F2 overdue_1",
            "2026-12-25 F1 overdue_2"
        ]
    );
    assert_eq!(
        verdicts(&f, "F1", "2026-12-12")[1],
        "on_due passed: a later stage is already in the journal, a policy never steps back"
    );
}

#[test]
fn a_due_date_moved_later_does_not_restart_the_cadence() {
    let f = standard_f1();
    run_once(&f, "2026-12-11");
    // The customer was granted ten more days: the courtesy notes are reached
    // again but come before overdue_1, which the journal holds.
    f.write_invoices(&[inv("F1", "2026-12-20", "100")]);
    assert_eq!(
        fired(&f, "2026-12-12", "30"),
        vec!["2027-01-04 F1 overdue_2"]
    );
}

#[test]
fn the_journal_is_per_policy() {
    let f = standard_f1();
    run_once(&f, "2026-12-11");
    // A new, higher policy takes the invoice over: its own cadence starts,
    // even with a stage id the other policy already sent.
    f.write(
        "rules/strict.yaml",
        "send_days: [mon, tue, wed, thu, fri, sat, sun]\nname: strict\npriority: 10\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n  - {id: call, offset: 3, channel: call, template: t}\n",
    );
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-12 --days 5", "date policy stage"),
        vec!["2026-12-12 strict overdue_1", "2026-12-13 strict call"]
    );
}

#[test]
fn a_second_evaluation_on_the_same_day_sends_nothing_more_to_that_invoice() {
    let f = with_stages(
        &[inv("F1", "2026-12-10", "100")],
        &["{id: a, offset: 0, template: t}"],
    );
    run_once(&f, "2026-12-10");
    // Later that day the policy gains a stage reached today: it waits for tomorrow.
    write_stages(
        &f,
        &[
            "{id: a, offset: 0, template: t}",
            "{id: b, offset: 0, template: t}",
        ],
    );
    run_once(&f, "2026-12-10");
    let history = array(run_expect(&f, "history --format json", 0).json());
    assert_eq!(fields(&history, "stage state"), vec!["a sent"]);
    assert_eq!(
        verdicts(&f, "F1", "2026-12-10"),
        vec![
            "a already in the journal (sent)",
            "b waiting: this invoice already had a reminder on this date (one a day)",
        ]
    );
    assert_eq!(fired(&f, "2026-12-10", "3"), vec!["2026-12-11 F1 b"]);
}
