//! Approvals on real folders: a stage with `approve: true` is journaled
//! `awaiting_approval` instead of being delivered; `relance approve` sends
//! it (once) at the next pass, `relance reject` drops it with its reason;
//! payment before approval, filters, restarts, preview, explain, the
//! daemon with SIGHUP, and an email over SMTP.

#[macro_use]
mod common;
#[path = "common/smtp.rs"]
mod smtp;

use common::*;
use smtp::SmtpServer;

/// A folder whose policy `dunning` sends an email the day after the due date,
/// a formal notice by letter after 10 days and hands over to collection (a
/// task) after 20, both approved by a person first; policy `vip` (customers
/// tagged `vip`) has only the approved formal notice. `config`: more lines
/// of relance.yaml. On [`AS_OF`]: F001 and F002 reach the formal notice,
/// F003 the email, F004 the collection, F005 the `vip` formal notice.
fn approvals_folder(config: &str) -> Folder {
    let folder = dunning_folder(config, &[]);
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: overdue, offset: 1, template: overdue}",
                    "{id: formal_notice, offset: 10, channel: letter, template: notice, approve: true}",
                    "{id: collection, offset: 20, channel: task, template: handoff, approve: true}",
                ],
            ),
        )
        .write(
            "rules/vip.yaml",
            &format!(
                "priority: 10\napplies_to: 'customer.tags.contains(\"vip\")'\n{}",
                policy(
                    "vip",
                    &["{id: formal_notice, offset: 10, channel: letter, template: notice, approve: true}"]
                )
            ),
        )
        .write(
            "templates/notice.en.hbs",
            &template(
                "Formal notice: invoice {{invoice.number}}",
                "Dear {{customer.name}},\nwe give you formal notice to pay {{money invoice.amount_due}}.",
            ),
        )
        .write(
            "templates/handoff.en.hbs",
            &template(
                "Hand over {{invoice.number}} to the agency",
                "Send the file of {{customer.name}} to the collection agency.",
            ),
        );
    folder.write_invoices(&feed(&[]));
    folder
}

/// The invoices of [`approvals_folder`], those named in `paid` settled on AS_OF.
fn feed(paid: &[&str]) -> Vec<Inv> {
    let due = |number: &str, due: &str| {
        let row = invoice_row(
            number,
            &format!("Customer {number}"),
            &format!("{}@example.com", number.to_lowercase()),
        )
        .with("due_date", due)
        .with("issue_date", "2026-10-01");
        match paid.contains(&number) {
            true => row.settled(AS_OF).with("amount_paid", "100.00"),
            false => row,
        }
    };
    vec![
        due("F001", "2026-11-20"),
        due("F002", "2026-11-21"),
        due("F003", "2026-11-30"),
        due("F004", "2026-11-10"),
        due("F005", "2026-11-20").with("tags", "vip"),
    ]
}

/// `relance run --once --as-of AS_OF`.
fn run_once(folder: &Folder) -> Run {
    folder.run(&RUN_ONCE)
}

/// The journal row of `invoice`'s `stage`.
fn row(folder: &Folder, invoice: &str, stage: &str) -> JournalRow {
    folder
        .journal()
        .into_iter()
        .find(|r| r.invoice == invoice && r.stage == stage)
        .unwrap_or_else(|| panic!("no journal row for {invoice} {stage}"))
}

/// The names of the files of a subfolder.
fn names(folder: &Folder, rel: &str) -> Vec<String> {
    folder
        .files(rel)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The letters and task sheets written in `tasks/`.
fn task_files(folder: &Folder) -> Vec<String> {
    let mut files = names(folder, "tasks");
    files.retain(|f| f.ends_with(".txt"));
    files
}

const F001_LETTER: &str = "2026-12-01.F001.dunning.formal_notice.0.letter.txt";

on_both_backends! {
fn an_approved_stage_waits_in_the_journal_and_goes_out_once_after_approval(backend: Backend) {
    let folder = approvals_folder("").on(backend);

    let run = run_once(&folder).expect_code(0);
    assert!(task_files(&folder).is_empty(), "{:?}", task_files(&folder));
    assert_eq!(
        names(&folder, "outbox"),
        ["2026-12-01.F003.dunning.overdue.0.eml"],
        "only the stage that needs no approval went out"
    );
    let waiting = run.log_lines("reminder(s) awaiting approval");
    assert_eq!(waiting.len(), 1, "{}", run.stderr);
    assert_contains(
        waiting[0],
        "4 reminder(s) awaiting approval (relance approve INVOICE… | --all)",
    );
    assert_eq!(
        run.log_lines("awaits approval: `relance approve F001`")
            .len(),
        1
    );
    assert_contains(run.log_lines("evaluation done")[0], "due=1 sent=1");
    let notice = row(&folder, "F001", "formal_notice");
    assert_eq!(
        (
            notice.state.as_str(),
            notice.channel.as_str(),
            notice.attempts
        ),
        ("awaiting_approval", "letter", 0)
    );
    assert_eq!(notice.subject, "Formal notice: invoice F001");
    assert_eq!(notice.recipient, "Customer F001");
    assert_eq!(
        row(&folder, "F001", "overdue").last_error.as_deref(),
        Some("overtaken by formal_notice")
    );

    // history shows it, in a table and as JSON.
    let table = folder.run(&["history", "F001"]).expect_code(0).stdout;
    assert_contains(&table, "formal_notice  awaiting_approval  letter");
    let json = folder
        .run(&["history", "F001", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json[0]["stage"], "formal_notice");
    assert_eq!(json[0]["state"], "awaiting_approval");

    // A restart changes nothing: still waiting, nothing delivered.
    let again = run_once(&folder).expect_code(0);
    assert_contains(
        again.log_lines("awaiting approval (relance approve")[0],
        "4 reminder(s)",
    );
    assert_eq!(
        row(&folder, "F001", "formal_notice").state,
        "awaiting_approval"
    );
    assert!(task_files(&folder).is_empty());

    let approved = folder.run(&["approve", "F001"]).expect_code(0);
    assert_eq!(approved.stdout, "F001: 1 reminder(s) approved\n");
    assert_eq!(row(&folder, "F001", "formal_notice").state, "approved");
    assert!(
        task_files(&folder).is_empty(),
        "sent by the next pass, not by approve"
    );

    let sent = run_once(&folder).expect_code(0);
    assert_eq!(task_files(&folder), [F001_LETTER]);
    let letter = folder.read(&format!("tasks/{F001_LETTER}"));
    assert_contains(&letter, "we give you formal notice to pay €100.00.");
    let notice = row(&folder, "F001", "formal_notice");
    assert_eq!((notice.state.as_str(), notice.attempts), ("sent", 1));
    assert_contains(
        sent.log_lines("awaiting approval (relance approve")[0],
        "3 reminder(s)",
    );
    assert_contains(sent.log_lines("evaluation done")[0], "recovered=0");

    // Exactly once: a later pass writes nothing again.
    let written = std::fs::metadata(folder.path().join("tasks").join(F001_LETTER))
        .unwrap()
        .modified()
        .unwrap();
    run_once(&folder).expect_code(0);
    assert_eq!(task_files(&folder), [F001_LETTER]);
    let unchanged = std::fs::metadata(folder.path().join("tasks").join(F001_LETTER))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(written, unchanged);
    let table = folder.run(&["history", "F001"]).expect_code(0).stdout;
    assert_contains(&table, "formal_notice  sent");
}
}

#[test]
fn a_dry_run_says_what_would_await_approval_and_journals_nothing() {
    let folder = approvals_folder("");
    let run = folder
        .run(&[&RUN_ONCE[..], &["--dry-run"]].concat())
        .expect_code(0);
    let awaiting = run.log_lines("would await approval (dry run)");
    assert_eq!(awaiting.len(), 4, "{}", run.stderr);
    assert_eq!(run.log_lines("would send (dry run)").len(), 1);
    assert!(!folder.path().join("state/relance.db").exists());
}

on_both_backends! {
fn a_rejected_reminder_is_skipped_with_its_reason_and_never_sent(backend: Backend) {
    let folder = approvals_folder("").on(backend);
    run_once(&folder).expect_code(0);

    let rejected = folder
        .run(&[
            "reject",
            "F001",
            "--reason",
            "paying on Friday, promised by phone",
        ])
        .expect_code(0);
    assert_eq!(rejected.stdout, "F001: 1 reminder(s) rejected\n");
    let notice = row(&folder, "F001", "formal_notice");
    assert_eq!(notice.state, "skipped");
    assert_eq!(
        notice.last_error.as_deref(),
        Some("rejected: paying on Friday, promised by phone")
    );
    run_once(&folder).expect_code(0);
    assert!(task_files(&folder).is_empty());
    let table = folder.run(&["history", "F001"]).expect_code(0).stdout;
    assert_contains(&table, "skipped  letter");
    assert_contains(&table, "rejected: paying on Friday, promised by phone");

    // Decided: neither approved nor rejected again.
    let late = folder.run(&["approve", "F001"]).expect_code(1);
    assert_contains(
        &late.stderr,
        "invoice F001 has no reminder awaiting approval",
    );
    // A rejection says why.
    folder.run(&["reject", "F002"]).expect_code(2);
}
}

on_both_backends! {
fn an_approval_given_after_the_invoice_was_paid_sends_nothing(backend: Backend) {
    let folder = approvals_folder("").on(backend);
    run_once(&folder).expect_code(0);

    // Paid, and approved before any pass saw the payment.
    folder.write_invoices(&feed(&["F001"]));
    folder.run(&["approve", "F001"]).expect_code(0);
    let run = run_once(&folder).expect_code(0);
    assert!(task_files(&folder).is_empty(), "{}", run.stderr);
    let notice = row(&folder, "F001", "formal_notice");
    assert_eq!(
        (notice.state.as_str(), notice.last_error.as_deref()),
        ("skipped", Some("paid before it was approved"))
    );
    assert_eq!(notice.attempts, 0);
    let logged = run.log_lines("not sent: paid before it was approved");
    assert_eq!(logged.len(), 1, "{}", run.stderr);
    assert_contains(logged[0], "invoice=F001");

    // Paid while it waited: the next pass drops it, nobody is asked any more.
    folder.write_invoices(&feed(&["F001", "F002"]));
    let run = run_once(&folder).expect_code(0);
    let notice = row(&folder, "F002", "formal_notice");
    assert_eq!(
        (notice.state.as_str(), notice.last_error.as_deref()),
        ("skipped", Some("paid while it awaited approval"))
    );
    assert_contains(
        run.log_lines("awaiting approval (relance approve")[0],
        "2 reminder(s)",
    );
    assert_eq!(
        run.log_lines("no longer awaits approval: paid while it awaited approval")
            .len(),
        1,
        "{}",
        run.stderr
    );
    let late = folder.run(&["approve", "F002"]).expect_code(1);
    assert_contains(
        &late.stderr,
        "invoice F002 has no reminder awaiting approval",
    );
    assert!(task_files(&folder).is_empty());
}
}

on_both_backends! {
fn approve_and_reject_take_invoices_or_all_filtered_by_stage_and_policy(backend: Backend) {
    let folder = approvals_folder("").on(backend);
    // Nothing journaled yet: nothing to approve, and no journal created.
    let none = folder.run(&["approve", "F001"]).expect_code(1);
    assert_contains(
        &none.stderr,
        "invoice F001 has no reminder awaiting approval",
    );
    assert!(!folder.path().join("state/relance.db").exists());
    run_once(&folder).expect_code(0);

    // Usage: invoices or --all, not both, not neither.
    folder.run(&["approve"]).expect_code(2);
    folder.run(&["approve", "F001", "--all"]).expect_code(2);

    // A filter that leaves nothing of a named invoice: exit 1, nothing changed.
    let filtered = folder
        .run(&["approve", "F001", "--stage", "collection"])
        .expect_code(1);
    assert_contains(
        &filtered.stderr,
        "invoice F001 has no reminder of stage collection awaiting approval",
    );
    assert_eq!(
        row(&folder, "F001", "formal_notice").state,
        "awaiting_approval"
    );

    // An unknown invoice among others: exit 1, the others are approved.
    let mixed = folder.run(&["approve", "F999", "F002"]).expect_code(1);
    assert_contains(
        &mixed.stderr,
        "invoice F999 has no reminder awaiting approval",
    );
    assert_eq!(mixed.stdout, "F002: 1 reminder(s) approved\n");

    let collection = folder
        .run(&["approve", "--all", "--stage", "collection"])
        .expect_code(0);
    assert_eq!(
        collection.stdout,
        "F004: 1 reminder(s) approved\n1 reminder(s) approved\n"
    );
    let vip = folder
        .run(&[
            "reject",
            "--all",
            "--policy",
            "vip",
            "--reason",
            "key customer",
        ])
        .expect_code(0);
    assert_eq!(
        vip.stdout,
        "F005: 1 reminder(s) rejected\n1 reminder(s) rejected\n"
    );
    assert_eq!(row(&folder, "F005", "formal_notice").state, "skipped");
    assert_eq!(
        row(&folder, "F001", "formal_notice").state,
        "awaiting_approval"
    );

    run_once(&folder).expect_code(0);
    assert_eq!(
        task_files(&folder),
        [
            "2026-12-01.F002.dunning.formal_notice.0.letter.txt",
            "2026-12-01.F004.dunning.collection.0.task.txt",
        ]
    );

    let rest = folder.run(&["approve", "--all"]).expect_code(0);
    assert_eq!(
        rest.stdout,
        "F001: 1 reminder(s) approved\n1 reminder(s) approved\n"
    );
    let nothing = folder.run(&["approve", "--all"]).expect_code(0);
    assert_eq!(nothing.stdout, "0 reminder(s) approved\n");
}
}

#[test]
fn reminders_awaiting_approval_count_for_no_sending_limit() {
    let folder = approvals_folder("limits: {max_per_run: 1}");
    let run = run_once(&folder).expect_code(0);
    assert_contains(run.log_lines("evaluation done")[0], "held=false");
    assert_eq!(names(&folder, "outbox").len(), 1);
    assert_eq!(
        folder
            .journal()
            .iter()
            .filter(|r| r.state == "awaiting_approval")
            .count(),
        4
    );
}

on_both_backends! {
fn preview_marks_the_reminders_that_need_approval_and_notes_those_waiting(backend: Backend) {
    let folder = approvals_folder("").on(backend);
    let preview = ["preview", "--as-of", AS_OF, "--days", "1"];

    let table = folder.run(&preview).expect_code(0);
    assert_contains(
        &table.stdout,
        "F001     Customer F001  dunning  formal_notice (needs approval)  letter",
    );
    assert_contains(
        &table.stdout,
        "F003     Customer F003  dunning  overdue                         email",
    );
    let json = folder
        .run(&[&preview[..], &["--format", "json"]].concat())
        .expect_code(0)
        .json();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let expected = match r["stage"].as_str() {
            Some("overdue") => serde_json::Value::Null,
            _ => "required".into(),
        };
        assert_eq!(r["approval"], expected, "{r}");
    }
    let csv = folder
        .run(&[&preview[..], &["--format", "csv"]].concat())
        .expect_code(0)
        .stdout;
    assert_contains(csv.lines().next().unwrap(), ",error,approval");
    let mut reader = ::csv::Reader::from_reader(csv.as_bytes());
    let approval = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "approval")
        .unwrap();
    assert!(
        reader
            .records()
            .map(Result::unwrap)
            .any(|r| { r[0] == *"2026-12-01" && r[1] == *"F004" && r[approval] == *"required" })
    );

    // Once journaled they are decided: not planned again, noted on stderr.
    run_once(&folder).expect_code(0);
    let after = folder.run(&preview).expect_code(0);
    assert_contains(
        &after.stdout,
        "0 reminder(s) from 2026-12-01 to 2026-12-01.",
    );
    assert_contains(
        &after.stderr,
        "note: 4 reminder(s) await approval in the journal, sent once approved \
         (relance approve INVOICE… | --all): F001 formal_notice, F002 formal_notice, \
         F004 collection, F005 formal_notice",
    );
    let one = folder
        .run(&[&preview[..], &["--invoice", "F004"]].concat())
        .expect_code(0);
    assert_contains(
        &one.stderr,
        "note: 1 reminder(s) await approval in the journal",
    );
}
}

#[test]
fn explain_says_a_stage_needs_approval_and_that_the_later_ones_follow_their_dates() {
    let folder = approvals_folder("");
    let before = folder
        .run(&["explain", "F001", "--as-of", AS_OF])
        .expect_code(0)
        .stdout;
    assert_contains(
        &before,
        "On 2026-12-01: formal_notice (letter) to Customer F001 needs approval: \
         Formal notice: invoice F001\n  Journaled awaiting_approval, it goes out once \
         `relance approve F001` is given (`relance reject` drops it); the later stages keep \
         their own dates.\n",
    );
    let json = folder
        .run(&["explain", "F001", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json["fires"]["approval"], "required");

    run_once(&folder).expect_code(0);
    // Ten days on, still unapproved: the collection follows on its own date.
    let later = folder
        .run(&["explain", "F001", "--as-of", "2026-12-10"])
        .expect_code(0)
        .stdout;
    assert_contains(
        &later,
        "awaiting_approval  in the journal, awaiting approval (relance approve); later stages follow their own dates",
    );
    assert_contains(
        &later,
        "On 2026-12-10: collection (task) to Customer F001 needs approval",
    );
}

#[test]
fn the_daemon_logs_what_waits_and_delivers_an_approval_on_sighup() {
    let folder = approvals_folder("");
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_evaluation();
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l
                .contains("4 reminder(s) awaiting approval (relance approve INVOICE… | --all)")),
        "{}",
        daemon.log.join("\n")
    );
    assert!(task_files(&folder).is_empty());

    folder.run(&["approve", "F001"]).expect_code(0);
    daemon.signal("HUP");
    let sent = daemon.expect_line(DEADLINE, "sending the approved notice", |l| {
        l.contains("event=\"sent\"") && l.contains("invoice=F001")
    });
    assert_contains(&sent, "stage=formal_notice");
    assert_eq!(task_files(&folder), [F001_LETTER]);
    assert_eq!(row(&folder, "F001", "formal_notice").state, "sent");
    assert!(daemon.running());
}

/// An invoice of customer Northwind due on `due`.
fn northwind(number: &str, due: &str) -> Inv {
    invoice_row(number, "Northwind", "ap@northwind.example")
        .customer("N", "Northwind")
        .with("due_date", due)
}

#[test]
fn a_message_to_approve_is_never_grouped_with_one_that_needs_none_and_is_approved_whole() {
    // One customer: A reaches the grouped statement, B and C the grouped
    // statement that needs approval, on the same day with the same template.
    let folder = dunning_folder("", &[]);
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: overdue, offset: 1, template: overdue, group: customer}",
                    "{id: final, offset: 10, template: overdue, group: customer, approve: true}",
                ],
            ),
        )
        .write_invoices(&[
            northwind("A", "2026-11-30"),
            northwind("B", "2026-11-20"),
            northwind("C", "2026-11-20"),
        ]);

    run_once(&folder).expect_code(0);
    assert_eq!(names(&folder, "outbox").len(), 1, "A alone");
    let b = row(&folder, "B", "final");
    assert_eq!(b.state, "awaiting_approval");
    assert_eq!(row(&folder, "A", "overdue").state, "sent");
    assert_ne!(row(&folder, "A", "overdue").message_id, b.message_id);
    assert_eq!(row(&folder, "C", "final").message_id, b.message_id);

    let approved = folder.run(&["approve", "C"]).expect_code(0);
    assert_eq!(
        approved.stdout,
        "C: 1 reminder(s) approved\nB: 1 reminder(s) approved (in one message with C)\n"
    );
    run_once(&folder).expect_code(0);
    assert_eq!(names(&folder, "outbox").len(), 2, "B and C in one email");
    assert_eq!(row(&folder, "B", "final").state, "sent");
    assert_eq!(row(&folder, "C", "final").state, "sent");
}

// --- SMTP --------------------------------------------------------------------

/// The Message-IDs of the messages the server accepted, in order.
fn message_ids(server: &SmtpServer) -> Vec<String> {
    server
        .accepted()
        .iter()
        .map(|mail| mail.header("Message-ID"))
        .collect()
}

on_both_backends! {
fn an_email_that_needs_approval_reaches_the_smtp_server_once_after_approval(backend: Backend) {
    let server = SmtpServer::accepting();
    let folder = dunning_folder(&server.delivery(), &invoices(2)).on(backend);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &["{id: overdue, offset: 1, template: overdue, approve: true}"],
        ),
    );

    run_once(&folder).expect_code(0);
    assert!(message_ids(&server).is_empty());
    folder.run(&["approve", "F002"]).expect_code(0);
    run_once(&folder).expect_code(0);
    // run --once commits `sent` after the server's answer: it is there now.
    assert_eq!(
        message_ids(&server),
        ["<F002.dunning.overdue.0@atelier-durand.fr>"]
    );
    assert_eq!(row(&folder, "F002", "overdue").state, "sent");
    assert_eq!(row(&folder, "F001", "overdue").state, "awaiting_approval");

    run_once(&folder).expect_code(0);
    assert_eq!(message_ids(&server).len(), 1, "sent once");
}
}

#[test]
fn a_policy_test_journal_may_hold_a_reminder_awaiting_approval() {
    let folder = approvals_folder("");
    folder.write(
        "rules/dunning.test.yaml",
        "tests:
  - name: the collection follows its date while the formal notice awaits approval
    as_of: 2026-12-10
    invoices:
      - {number: T1, customer_id: C1, due_date: 2026-11-20, amount: 100}
    journal:
      - {invoice: T1, policy: dunning, stage: formal_notice, date: 2026-11-30, state: awaiting_approval}
    expect:
      - {date: 2026-12-10, invoice: T1, stage: collection, channel: task}
",
    );
    let run = folder.run(&["test"]).expect_code(0);
    assert_contains(&run.stdout, "1 passed, 0 failed");
}
