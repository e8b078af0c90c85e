//! `relance run` and `relance history` on real folders: the SQLite journal,
//! exactly-once across runs and crashes, the blast-radius guard, dry runs,
//! task files, JSON logs, hot reload of real file edits, and signals.
//! (Email delivery, SMTP included, is in tests/delivery.rs.)

#[macro_use]
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;

/// docs/contract.md §7: a change is picked up within a second of the save.
const SAVE_TO_LIVE: Duration = Duration::from_secs(1);
/// How long a test watches the log for something that must *not* happen
/// (a second reload after one save, when reloads come every 50 ms in a storm).
const QUIET: Duration = Duration::from_millis(600);

/// `relance run --once --as-of AS_OF [extra…]`.
fn run_once(folder: &Folder, extra: &[&str]) -> Run {
    folder.run(&[&RUN_ONCE[..], extra].concat())
}

/// The daemon (`relance run --as-of AS_OF`), once its first evaluation is done
/// (by then it watches the folder).
fn start_daemon(folder: &Folder) -> Spawned {
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_evaluation();
    daemon
}

/// A [`dunning_folder`] of two invoices whose stage comes `offset` days after
/// the due date, watched by a started daemon.
fn watched_folder(offset: i32) -> (Folder, Spawned) {
    let folder = dunning_folder("", &invoices(2));
    folder.write("rules/dunning.yaml", &overdue_after(offset));
    let daemon = start_daemon(&folder);
    (folder, daemon)
}

/// An invoice of 50.00 EUR from a late payer, issued on `issued` and due on `due`.
fn late_invoice(number: &str, issued: &str, due: &str) -> Inv {
    invoice_row(number, "Late Payer", "late@example.com")
        .with("issue_date", issued)
        .with("due_date", due)
        .with("amount", "50.00")
}

/// The policy of `dunning_folder` with its stage moved to `offset` days after the due date.
fn overdue_after(offset: i32) -> String {
    policy(
        "dunning",
        &[&format!(
            "{{id: overdue, offset: {offset}, template: overdue}}"
        )],
    )
}

/// The log line of a successful reload of `what` (`rules/dunning.yaml
/// changed`) whose difference over the next 14 days reads `summary` (`2 → 2
/// reminders (~2 changed)`), with `due` reminders due today.
fn reloaded_with(what: &str, summary: &str, due: usize) -> impl Fn(&str) -> bool {
    let wanted = format!("reload ok: {what}; next 14 days: {summary} policies=");
    let due = format!(" due={due} ");
    move |line: &str| line.contains(&wanted) && line.contains(&due)
}

/// Whether `line` reports a reload, done or failed.
fn is_reload_line(line: &str) -> bool {
    line.contains("reload ok:") || line.contains("reload failed")
}

/// After one save and its reload, no other reload follows (reading the files
/// to reload them is not an edit).
fn assert_no_more_reloads(daemon: &mut Spawned) {
    if let Some(line) = daemon.next_line(QUIET, is_reload_line) {
        panic!(
            "a second reload without any edit: {line}\nthe log:\n{}",
            daemon.log.join("\n")
        );
    }
}

/// After a bad save: waits for the log line naming `naming`, then for the
/// refusal that keeps the last good configuration; returns the first line.
fn expect_refusal(daemon: &mut Spawned, naming: &str) -> String {
    let error = daemon.expect_line(SAVE_TO_LIVE, &format!("naming {naming}"), |l| {
        l.contains(naming)
    });
    daemon.expect_line(DEADLINE, "refusing the broken version", |l| {
        l.contains("reload failed: keeping the last good configuration")
    });
    error
}

/// Like [`expect_refusal`] for an error in `file`, which the line must locate
/// as `FILE:LINE:COL: message`.
fn expect_located_refusal(daemon: &mut Spawned, file: &str) -> String {
    let error = expect_refusal(daemon, &format!("{file}:"));
    assert!(has_location(&error, file), "{error}");
    error
}

/// Saves a good `templates/overdue.en.hbs` again and waits until the
/// daemon has it live (two reminders of the folder, their bodies changed).
fn fix_the_template(folder: &Folder, daemon: &mut Spawned) {
    folder.write(
        "templates/overdue.en.hbs",
        &template("Invoice {{invoice.number}}", "Please pay."),
    );
    daemon.expect_line(
        SAVE_TO_LIVE,
        "loading the fixed template",
        reloaded_with(
            "templates/overdue.en.hbs changed",
            "2 → 2 reminders (~2 changed)",
            0,
        ),
    );
}

/// Whether `line` holds `FILE:LINE:COL: message` for `file`.
fn has_location(line: &str, file: &str) -> bool {
    line.split(&format!("{file}:")).skip(1).any(|rest| {
        let mut parts = rest.splitn(3, ':');
        let (l, c, message) = (parts.next(), parts.next(), parts.next());
        [l, c]
            .iter()
            .all(|n| n.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
            && message.is_some_and(|m| m.starts_with(' ') && m.trim().len() > 3)
    })
}

/// The journal, opened with SQLite for the test to read or tamper with.
fn sqlite(folder: &Folder) -> rusqlite::Connection {
    rusqlite::Connection::open(folder.path().join("state/relance.db")).expect("open the journal")
}

/// Runs `sql` on the folder's journal, in whichever database it is: the
/// number of rows changed, or the database's error.
fn tamper(folder: &Folder, sql: &str) -> Result<u64, String> {
    match folder.database() {
        Some(db) => db.client().execute(sql, &[]).map_err(|e| format!("{e:?}")),
        None => sqlite(folder)
            .execute(sql, [])
            .map(|n| n as u64)
            .map_err(|e| e.to_string()),
    }
}

/// How many journal rows are in `state`.
fn count(rows: &[JournalRow], state: &str) -> usize {
    rows.iter().filter(|r| r.state == state).count()
}

/// The inode of each file of a subfolder: a file written again gets a new one.
fn inodes(folder: &Folder, rel: &str) -> Vec<u64> {
    folder
        .files(rel)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().ino())
        .collect()
}

/// The names of the files of a subfolder, sorted.
fn file_names(folder: &Folder, rel: &str) -> Vec<String> {
    folder
        .files(rel)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The journal states of F001…Fn, each `sent`.
fn all_sent(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("F{i:03}"), "sent".to_string()))
        .collect()
}

// --- The journal -------------------------------------------------------------

#[test]
fn run_once_creates_a_wal_journal_with_a_schema_version() {
    let folder = Folder::sample();
    run_once(&folder, &[]).expect_code(0);

    let db = sqlite(&folder);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, relance::Journal::SCHEMA_VERSION);
    assert_eq!(version, 5);
}

on_both_backends! {
fn the_journal_records_each_reminder_with_its_identity_and_delivery_facts(backend: Backend) {
    // One message per reminder and the contract's catch-up, so that each
    // row shows its own delivery facts (the sample as shipped: below).
    let folder = Folder::sample_with_contract_defaults().on(backend);
    run_once(&folder, &[]).expect_code(0);
    let rows = folder.journal();

    // One `sent` row per email or task file delivered (letters have a PDF
    // beside their text), and the overtaken stages `skipped`.
    let task_texts = file_names(&folder, "tasks")
        .iter()
        .filter(|name| name.ends_with(".txt"))
        .count();
    let delivered = folder.files("outbox").len() + task_texts;
    // 16 emails: F2026-0075 is held (rules/holds.yaml), F2026-0113 waits
    // for the payment its customer promised (promise_date).
    assert_eq!((folder.files("outbox").len(), task_texts), (16, 7));
    assert_eq!(count(&rows, "sent"), delivered);
    assert_eq!(count(&rows, "planned") + count(&rows, "failed"), 0);

    let row = |invoice: &str, stage: &str| {
        rows.iter()
            .find(|r| r.invoice == invoice && r.stage == stage)
            .unwrap_or_else(|| panic!("no journal row for {invoice} {stage}: {rows:#?}"))
    };
    assert_eq!(
        row("F2026-0103", "courtesy"),
        &JournalRow {
            invoice: "F2026-0103".into(),
            policy: "standard".into(),
            stage: "courtesy".into(),
            occurrence: 0,
            state: "sent".into(),
            date: AS_OF.into(),
            channel: "email".into(),
            recipient: "ap@northwind.example, finance@northwind.example".into(),
            subject: "Invoice F2026-0103 is due on December 5, 2026".into(),
            message_id: "<F2026-0103.standard.courtesy.0@atelier-durand.fr>".into(),
            attempts: 1,
            last_error: None,
            next_try_at: None,
        }
    );
    // F2026-0050 is 61 days late on its first evaluation: the formal notice
    // goes out, the four earlier stages are journaled as skipped.
    let f50: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.invoice == "F2026-0050")
        .map(|r| (r.stage.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(
        f50,
        [
            ("courtesy", "skipped"),
            ("due_soon", "skipped"),
            ("overdue_1", "skipped"),
            ("overdue_2", "skipped"),
            ("formal_notice", "sent")
        ]
    );
    let notice = row("F2026-0050", "formal_notice");
    assert_eq!(notice.channel, "letter");
    assert_eq!(notice.attempts, 1);
}
}

on_both_backends! {
fn the_first_run_of_the_shipped_sample_restarts_late_invoices_and_combines_a_customers_emails(backend: Backend) {
    let folder = Folder::sample().on(backend);
    let run = run_once(&folder, &[]).expect_code(0);
    let rows = folder.journal();
    // `first_contact: restart`: F2026-0050, 61 days late, gets the friendly
    // statement, not the formal notice; the stages before it are skipped,
    // the later ones are still to come.
    let f50: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.invoice == "F2026-0050")
        .map(|r| (r.stage.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(
        f50,
        [
            ("courtesy", "skipped"),
            ("due_soon", "skipped"),
            ("overdue_1", "sent")
        ]
    );
    assert_eq!(
        run.log_lines("first contact: invoice F2026-0050 restarted its ladder at overdue_1")
            .len(),
        1,
        "{}",
        run.stderr
    );
    // Nothing legal on a first contact: no letter, call or task file.
    assert!(!folder.path().join("tasks").exists());
    assert!(rows.iter().all(|r| r.channel == "email"), "{rows:#?}");
    // `contact: {combine: true}`: Northwind Traders' three reminders of the
    // day are one email, one row each in the journal sharing its id.
    let northwind: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| r.recipient.contains("northwind") && r.state == "sent")
        .map(|r| (r.invoice.as_str(), r.stage.as_str(), r.message_id.as_str()))
        .collect();
    let message = "<customer.C002.combined.2026-12-01.F2026-0061@atelier-durand.fr>";
    assert_eq!(
        northwind,
        [
            ("F2026-0061", "overdue_1", message),
            ("F2026-0103", "courtesy", message),
            ("F2026-0123", "courtesy", message),
        ]
    );
    // 23 reminders, 16 emails: one per customer.
    assert_eq!(
        (count(&rows, "sent"), folder.files("outbox").len()),
        (23, 16)
    );
}
}

on_both_backends! {
fn the_journal_holds_an_identity_once(backend: Backend) {
    let folder = Folder::sample().on(backend);
    run_once(&folder, &[]).expect_code(0);
    let duplicate = tamper(
        &folder,
        "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, created_at, updated_at)
         VALUES ('F2026-0103', 'standard', 'courtesy', 0, 'planned', '2026-12-02', 'now', 'now')",
    );
    let error = duplicate.expect_err("a second row for one identity");
    assert_contains(&error.to_uppercase(), "UNIQUE");
}
}

on_both_backends! {
fn a_second_run_on_the_same_date_sends_nothing_again(backend: Backend) {
    let folder = Folder::sample().on(backend);
    run_once(&folder, &[]).expect_code(0);
    let journal = folder.journal();
    let outbox = inodes(&folder, "outbox");

    let again = run_once(&folder, &[]).expect_code(0);
    assert_contains(&again.stderr, "due=0 sent=0");
    assert_eq!(folder.journal(), journal);
    assert_eq!(
        inodes(&folder, "outbox"),
        outbox,
        "no outbox file was written again"
    );
}
}

on_both_backends! {
fn a_journal_from_a_newer_relance_is_refused(backend: Backend) {
    let folder = Folder::sample().on(backend);
    run_once(&folder, &[]).expect_code(0);
    let newer = match backend {
        Backend::Sqlite => "PRAGMA user_version = 99",
        Backend::Postgres => "INSERT INTO relance_migration (version) VALUES (99)",
    };
    tamper(&folder, newer).unwrap();
    for args in [&["run", "--once", "--as-of", AS_OF][..], &["history"]] {
        let run = folder.run(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(
            run.stderr.contains("journal schema version 99 is newer"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
}

// --- history -----------------------------------------------------------------

on_both_backends! {
fn history_lists_the_journal_newest_first(backend: Backend) {
    let folder = Folder::sample().on(backend);
    run_once(&folder, &[]).expect_code(0);
    // F2026-0101 is due on Tuesday 8 December: courtesy on the 1st, due_soon
    // on the 6th, a Sunday, brought forward to Friday the 4th (`shift: earlier`).
    folder
        .run(&["run", "--once", "--as-of", "2026-12-04"])
        .expect_code(0);

    let all = folder.run(&["history", "--format", "json"]).expect_code(0);
    let entries = all.json();
    let entries = entries.as_array().expect("an array");
    assert_eq!(entries.len(), folder.journal().len());
    let updated: Vec<&str> = entries
        .iter()
        .map(|e| e["updated_at"].as_str().unwrap())
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {updated:?}"
    );
    assert_eq!(entries[0]["date"], "2026-12-04");
    assert_eq!(entries.last().unwrap()["date"], AS_OF);

    let one = folder.run(&["history", "F2026-0101", "--format", "json"]);
    let stages: Vec<(String, String, String)> = one
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("date"), s("stage"), s("state"))
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("2026-12-04".into(), "due_soon".into(), "sent".into()),
            (AS_OF.into(), "courtesy".into(), "sent".into())
        ]
    );
    let entry = &one.json()[0];
    assert_eq!(entry["invoice"], "F2026-0101");
    assert_eq!(entry["policy"], "standard");
    assert_eq!(entry["channel"], "email");
    assert_eq!(entry["recipient"], "compta@menuiserie-martin.fr");
    assert_eq!(
        entry["message_id"],
        "<F2026-0101.standard.due_soon.0@atelier-durand.fr>"
    );
    assert_eq!(entry["attempts"], 1);

    let table = folder.run(&["history", "F2026-0101"]).expect_code(0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{}", table.stdout);
    assert!(lines[0].contains("INVOICE"), "{}", table.stdout);
    assert!(lines[1].contains("due_soon") && lines[1].contains("sent"));
    assert!(lines[2].contains("courtesy") && lines[2].contains("sent"));
}
}

on_both_backends! {
fn the_history_table_has_the_evaluation_date_and_why_a_stage_was_skipped(backend: Backend) {
    // First evaluated 10 days after the due date: `reminder` goes out,
    // `courtesy` is overtaken and journaled skipped, with the reason.
    let folder = dunning_folder("", &invoices(1)).on(backend);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[
                "{id: courtesy, offset: 1, template: overdue}",
                "{id: reminder, offset: 10, template: overdue}",
            ],
        ),
    );
    folder
        .run(&["run", "--once", "--as-of", "2026-12-10"])
        .expect_code(0);
    let skipped = &folder.journal()[0];
    assert_eq!(
        (skipped.stage.as_str(), skipped.state.as_str()),
        ("courtesy", "skipped")
    );
    assert_eq!(skipped.last_error.as_deref(), Some("overtaken by reminder"));

    let table = folder.run(&["history"]).expect_code(0).stdout;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0].join("|"),
        "WHEN|DATE|INVOICE|POLICY|STAGE|STATE|CHANNEL|TO|SUBJECT / ERROR"
    );
    assert_eq!(rows.len(), 3, "{table}");
    // WHEN is the wall-clock time of the row's last change; DATE the evaluation date.
    for row in &rows[1..] {
        assert!(
            chrono::DateTime::parse_from_rfc3339(row[0]).is_ok(),
            "{table}"
        );
        assert_eq!(row[1], "2026-12-10", "{table}");
    }
    let by_stage = |stage: &str| rows.iter().find(|r| r[4] == stage).unwrap()[5..].to_vec();
    assert_eq!(
        by_stage("reminder"),
        ["sent", "email", "c1@example.com", "Invoice F001 is overdue"]
    );
    assert_eq!(
        by_stage("courtesy"),
        ["skipped", "email", "overtaken by reminder"]
    );
}
}

on_both_backends! {
fn history_without_a_journal_is_empty_and_creates_nothing(backend: Backend) {
    let folder = Folder::sample().on(backend);
    let run = folder.run(&["history", "--format", "json"]).expect_code(0);
    assert_eq!(run.json(), serde_json::json!([]));
    assert!(!folder.path().join("state").exists());
}
}

// --- Safety and operations ---------------------------------------------------

on_both_backends! {
fn a_batch_over_max_per_run_is_held_until_confirmed(backend: Backend) {
    let folder = dunning_folder("limits: {max_per_run: 2}", &invoices(3)).on(backend);

    let held = run_once(&folder, &[]).expect_code(1);
    assert_contains(
        &held.stderr,
        "held: 3 reminders are due on 2026-12-01, more than limits.max_per_run (2)",
    );
    assert_contains(&held.stderr, "dunning/overdue: 3");
    assert_contains(&held.stderr, "relance run --once --confirm");
    assert!(folder.files("outbox").is_empty());
    assert!(folder.journal().is_empty(), "nothing journaled while held");

    run_once(&folder, &["--confirm"]).expect_code(0);
    assert_eq!(folder.files("outbox").len(), 3);
    assert_eq!(count(&folder.journal(), "sent"), 3);
}
}

#[test]
fn a_dry_run_over_max_per_run_shows_every_reminder_then_the_hold() {
    let folder = dunning_folder("limits: {max_per_run: 2}", &invoices(3));
    let run = run_once(&folder, &["--dry-run"]).expect_code(1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let would: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("would send (dry run)"))
        .collect();
    let held = lines
        .iter()
        .position(|l| l.contains("held: 3 reminders are due on 2026-12-01"))
        .unwrap_or_else(|| panic!("no held note in:\n{}", run.stderr));
    assert_eq!(would.len(), 3, "{}", run.stderr);
    assert!(would.iter().all(|&i| i < held), "{}", run.stderr);
    for (i, n) in would.iter().zip(["F001", "F002", "F003"]) {
        assert_contains(lines[*i], &format!("invoice={n}"));
    }
    for created in ["state", "outbox", "tasks"] {
        assert!(!folder.path().join(created).exists(), "{created}/ created");
    }
}

#[test]
fn the_evaluation_summary_logs_the_date_itself() {
    let folder = dunning_folder("", &invoices(1));
    let human = run_once(&folder, &["--dry-run"]).expect_code(0);
    let done = human.log_lines("evaluation done");
    assert_eq!(done.len(), 1, "{}", human.stderr);
    assert_contains(done[0], "date=2026-12-01 due=1");
    assert!(!done[0].contains("Some("), "{}", done[0]);

    let json = run_once(&folder, &["--log-format", "json"]).expect_code(0);
    let done: serde_json::Value = json
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["message"] == "evaluation done")
        .unwrap_or_else(|| panic!("no summary in:\n{}", json.stderr));
    assert_eq!(done["date"], AS_OF);
    assert_eq!(done["sent"], 1);
}

#[test]
fn a_dry_run_touches_neither_journal_nor_outbox() {
    let folder = Folder::sample();
    let run = run_once(&folder, &["--dry-run"]).expect_code(0);
    let would: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("would send (dry run)"))
        .collect();
    // One line per message: the 23 reminders of the day are 16 emails, a
    // customer's reminders combined into one.
    assert_eq!(would.len(), 16, "{}", run.stderr);
    assert!(
        would
            .iter()
            .any(|l| l.contains("invoice=F2026-0061 invoices=3 ")),
        "{}",
        run.stderr
    );
    for created in ["state", "outbox", "tasks"] {
        assert!(
            !folder.path().join(created).exists(),
            "{created}/ was created by a dry run"
        );
    }
}

on_both_backends! {
fn a_dry_run_leaves_an_existing_journal_as_it_is(backend: Backend) {
    let folder = dunning_folder("", &invoices(2)).on(backend);
    run_once(&folder, &[]).expect_code(0);
    folder.write_invoices(&invoices(3));
    let journal = folder.journal();
    let run = run_once(&folder, &["--dry-run"]).expect_code(0);
    assert_contains(&run.stderr, "would send (dry run)");
    assert_contains(&run.stderr, "F003");
    assert_eq!(folder.journal(), journal);
    assert_eq!(folder.files("outbox").len(), 2);
}
}

on_both_backends! {
fn letters_calls_and_tasks_become_files_in_tasks_and_are_journaled(backend: Backend) {
    // The contract's catch-up and no approvals: the first run reaches the
    // letters, calls and tasks of the invoices already far overdue (the
    // sample as shipped restarts them and asks for approval: below).
    let folder = Folder::sample_with_contract_defaults().on(backend);
    let run = run_once(&folder, &[]).expect_code(0);
    assert_eq!(
        file_names(&folder, "tasks"),
        [
            "2026-12-01.F2026-0009.standard.collection.0.task.txt",
            "2026-12-01.F2026-0040.habitual_late.collection.1.task.txt",
            "2026-12-01.F2026-0045.key_accounts.account_call.0.call.txt",
            "2026-12-01.F2026-0050.standard.formal_notice.0.letter.pdf",
            "2026-12-01.F2026-0050.standard.formal_notice.0.letter.txt",
            "2026-12-01.F2026-0072.habitual_late.formal_notice.0.letter.pdf",
            "2026-12-01.F2026-0072.habitual_late.formal_notice.0.letter.txt",
            "2026-12-01.F2026-0080.standard.formal_notice.0.letter.pdf",
            "2026-12-01.F2026-0080.standard.formal_notice.0.letter.txt",
            "2026-12-01.F2026-0203.key_accounts.account_call.0.call.txt",
            // The day's three letters in one file to print.
            "letters-2026-12-01.pdf",
            "worklist.csv",
        ]
    );

    // The shipped formal notice, laid out as a letter (tests/tasks.rs has
    // the layout line by line).
    let letter = folder.read("tasks/2026-12-01.F2026-0050.standard.formal_notice.0.letter.txt");
    for part in [
        "Atelier Durand SARL\n12 rue des Tanneurs, 69001 Lyon\n",
        "Boulangerie Dupont\n",
        "Lyon, le 1er décembre 2026\n",
        "\nLettre recommandée avec accusé de réception\n",
        "\nObjet : Mise en demeure de payer — facture F2026-0050\n",
        "Par la présente, nous vous mettons en demeure",
        "Principal restant dû :                  245,90 €",
    ] {
        assert_contains(&letter, part);
    }
    let call = folder.read("tasks/2026-12-01.F2026-0045.key_accounts.account_call.0.call.txt");
    assert_contains(&call, "Téléphone :  +33 1 40 00 12 12\n");
    assert_contains(
        &call,
        "Trame d'appel :\n\nEncours total du client : 27 430,00 € sur 3 facture(s) ouverte(s).\n\n1. Se présenter",
    );

    // The French export has no phone column: the call is still written (the
    // number can be looked up), with a warning naming it.
    let call = folder.read("tasks/2026-12-01.F2026-0203.key_accounts.account_call.0.call.txt");
    assert_contains(
        &call,
        "Téléphone :  (absent du flux : le chercher dans la fiche client)\n",
    );
    assert_contains(&call, "Courriel :   facturation@conseil-bonnet.fr\n");
    let warnings = run.log_lines("no phone number");
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert_contains(warnings[0], "WARN");
    assert_contains(warnings[0], "invoice=F2026-0203");

    let journal = folder.journal();
    for (invoice, channel) in [
        ("F2026-0009", "task"),
        ("F2026-0045", "call"),
        ("F2026-0050", "letter"),
    ] {
        let row = journal
            .iter()
            .find(|r| r.invoice == invoice && r.state != "skipped")
            .unwrap();
        assert_eq!(
            (row.channel.as_str(), row.state.as_str()),
            (channel, "sent")
        );
        assert_eq!(row.attempts, 1);
        assert!(
            row.message_id.ends_with(&format!(".{channel}.txt")),
            "the journal names the file: {row:?}"
        );
    }
}
}

on_both_backends! {
fn the_shipped_formal_notice_waits_for_approval_before_its_letter_is_written(backend: Backend) {
    let folder = Folder::sample().on(backend);
    // F2026-0050, 61 days late on 1 December, restarts its ladder: the
    // statement on the 1st, the second on the 15th, the formal notice 29
    // days after the first, on the 30th.
    for day in ["2026-12-01", "2026-12-15", "2026-12-30"] {
        folder
            .run(&["run", "--once", "--as-of", day])
            .expect_code(0);
    }
    let notice = |folder: &Folder| {
        folder
            .journal()
            .into_iter()
            .find(|r| r.invoice == "F2026-0050" && r.stage == "formal_notice")
            .unwrap_or_else(|| panic!("no formal notice of F2026-0050: {:#?}", folder.journal()))
    };
    let waiting = notice(&folder);
    assert_eq!(
        (
            waiting.date.as_str(),
            waiting.state.as_str(),
            waiting.channel.as_str()
        ),
        ("2026-12-30", "awaiting_approval", "letter")
    );
    let letter = "tasks/2026-12-30.F2026-0050.standard.formal_notice.0.letter.txt";
    assert!(
        !folder.path().join(letter).exists(),
        "written before approval"
    );

    let approve = folder.run(&["approve", "F2026-0050"]).expect_code(0);
    assert_contains(&approve.stdout, "F2026-0050: 1 reminder(s) approved");
    folder
        .run(&["run", "--once", "--as-of", "2026-12-30"])
        .expect_code(0);
    assert_eq!(notice(&folder).state, "sent");
    let text = folder.read(letter);
    for part in [
        "Lyon, le 30 décembre 2026\n",
        "\nObjet : Mise en demeure de payer — facture F2026-0050\n",
        "soit 90 jours de retard",
        "Principal restant dû :                  245,90 €",
    ] {
        assert_contains(&text, part);
    }
    assert!(folder.path().join("tasks/letters-2026-12-30.pdf").exists());
    // The other formal notices of the day still wait for a person.
    assert!(
        folder
            .journal()
            .iter()
            .any(|r| r.stage == "formal_notice" && r.state == "awaiting_approval")
    );
}
}

#[test]
fn json_logs_have_one_event_per_reminder_sent_or_failed() {
    let mut rows = invoices(2);
    rows.push(invoice_row("F003", "No Address Ltd", ""));
    let folder = dunning_folder("", &rows);
    let run = run_once(&folder, &["--log-format", "json"]);
    assert_eq!(run.code, 1, "a failed reminder makes run --once exit 1");

    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e["invoice"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of("sent"), ["F001", "F002"]);
    assert_eq!(of("failed"), ["F003"]);
    let sent = events.iter().find(|e| e["event"] == "sent").unwrap();
    assert_eq!(sent["stage"], "overdue");
    assert_eq!(sent["channel"], "email");
    assert_eq!(sent["to"], "c1@example.com");
    // A failed event names the reminder as a sent one does, with the error
    // and the retry time in fields of their own.
    let failed = events.iter().find(|e| e["event"] == "failed").unwrap();
    for key in ["policy", "stage", "occurrence", "channel", "to"] {
        assert_eq!(
            failed[key].is_null(),
            sent[key].is_null(),
            "{key}: {failed}"
        );
    }
    assert_eq!(failed["attempts"], 1);
    assert!(failed["retry_at"].is_string(), "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("no email address"), "{failed}");
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    assert_stops_cleanly_on("TERM");
}

#[test]
fn sigint_stops_the_daemon_cleanly() {
    assert_stops_cleanly_on("INT");
}

fn assert_stops_cleanly_on(signal: &str) {
    let folder = dunning_folder("", &invoices(2));
    let mut daemon = start_daemon(&folder);
    daemon.signal(signal);
    let status = daemon.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log.join("\n"));
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("relance daemon stopped")),
        "{}",
        daemon.log.join("\n")
    );
    assert_eq!(count(&folder.journal(), "sent"), 2);
}

// --- Crash -------------------------------------------------------------------

on_both_backends! {
fn sigkill_in_the_middle_of_an_outbox_batch_loses_nothing_and_sends_nothing_twice(backend: Backend) {
    let folder = dunning_folder("", &invoices(5)).on(backend);
    // The third email's temporary file is a FIFO: opening it for writing
    // blocks until someone reads it, so the daemon is stuck right there, two
    // emails into its batch of five, until it is killed.
    let stuck = folder
        .path()
        .join("outbox/.2026-12-01.F003.dunning.overdue.0.eml.tmp");
    mkfifo(&stuck);
    let mut first = folder.spawn(&RUN_ONCE);
    // Delivered emails only: the second one's temporary file may still be
    // there, about to be renamed, when the first shows up.
    let delivered = || -> Vec<std::path::PathBuf> {
        let mut files = folder.files("outbox");
        files.retain(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.'));
        files
    };
    assert!(
        wait_until(DEADLINE, || delivered().len() == 2),
        "the first two emails are written; log:\n{}",
        first.log.join("\n")
    );
    first.kill();

    let written: Vec<(std::path::PathBuf, u64)> = delivered()
        .into_iter()
        .map(|f| {
            let inode = std::fs::metadata(&f).unwrap().ino();
            (f, inode)
        })
        .collect();
    let states = folder.journal_states();
    assert_eq!(states.len(), 5, "the whole batch was planned first");
    assert!(
        states.iter().all(|(_, s)| s == "planned" || s == "sent"),
        "{states:?}"
    );
    assert!(
        states[2..].iter().all(|(_, s)| s == "planned"),
        "{states:?}"
    );

    std::fs::remove_file(&stuck).unwrap();
    match backend {
        Backend::Sqlite => {
            run_once(&folder, &[]).expect_code(0);
        }
        // A shared journal's rows stay claimed by the killed daemon until
        // its claims expire (`lease_seconds`): then they are recovered.
        Backend::Postgres => assert!(
            wait_until(DEADLINE, || {
                run_once(&folder, &[]).expect_code(0);
                folder.journal_states() == all_sent(5)
            }),
            "{:?}",
            folder.journal_states()
        ),
    }
    assert_eq!(folder.journal_states(), all_sent(5));
    assert_eq!(
        file_names(&folder, "outbox"),
        (1..=5)
            .map(|i| format!("2026-12-01.F{i:03}.dunning.overdue.0.eml"))
            .collect::<Vec<_>>(),
        "nothing lost, no stray temporary file"
    );
    for (file, inode) in written {
        assert_eq!(
            std::fs::metadata(&file).unwrap().ino(),
            inode,
            "{} was delivered before the crash and must not be written again",
            file.display()
        );
    }
}
}

on_both_backends! {
fn reminders_left_planned_or_failed_by_a_crash_are_resolved_by_their_outbox_file(backend: Backend) {
    let folder = dunning_folder("", &invoices(5)).on(backend);
    run_once(&folder, &[]).expect_code(0);
    let file = |n: u32| {
        folder
            .path()
            .join(format!("outbox/2026-12-01.F00{n}.dunning.overdue.0.eml"))
    };
    let inode = |n: u32| std::fs::metadata(file(n)).unwrap().ino();
    let dead = dead_pid();
    // F001: planned by a process that died before writing its file.
    folder.rewind("F001", "planned", dead);
    std::fs::remove_file(file(1)).unwrap();
    // F002: planned by a process that died after writing its file.
    folder.rewind("F002", "planned", dead);
    // F003: planned by a pid now reused by another, running program (this
    // test): only a running relance can still be delivering it.
    folder.rewind("F003", "planned", std::process::id());
    std::fs::remove_file(file(3)).unwrap();
    // F004: a retry that wrote its file, then crashed before journaling `sent`.
    folder.rewind("F004", "failed", dead);
    // F005: the machine lost power after the file was named but before the
    // batch's sync gave it its content: an empty file proves nothing.
    folder.rewind("F005", "planned", dead);
    std::fs::write(file(5), "").unwrap();
    let (before_2, before_4) = (inode(2), inode(4));

    let run = run_once(&folder, &[]).expect_code(0);
    assert_eq!(folder.journal_states(), all_sent(5), "{}", run.stderr);
    assert!(
        file(1).exists() && file(3).exists(),
        "the missing emails are delivered"
    );
    let rewritten = std::fs::read_to_string(file(5)).unwrap();
    assert!(
        rewritten.contains("Message-ID: <F005.dunning.overdue.0@"),
        "the empty file is written again: {rewritten}"
    );
    assert_eq!(inode(2), before_2, "F002 was delivered: not written again");
    assert_eq!(inode(4), before_4, "F004 was delivered: not written again");
}
}

on_both_backends! {
fn an_unreadable_feed_stops_the_run_before_it_drops_pending_reminders(backend: Backend) {
    let folder = dunning_folder("", &invoices(2)).on(backend);
    run_once(&folder, &[]).expect_code(0);
    // F002 was planned by a process that crashed before writing its file; now
    // the export job is rewriting the feed and it cannot be read.
    folder.rewind("F002", "planned", 0);
    std::fs::remove_file(
        folder
            .path()
            .join("outbox/2026-12-01.F002.dunning.overdue.0.eml"),
    )
    .unwrap();
    folder.remove("data/invoices.csv");

    let run = run_once(&folder, &[]).expect_code(1);
    assert_contains(&run.stderr, "data/invoices.csv");
    assert_eq!(
        folder.journal_states(),
        [
            ("F001".into(), "sent".into()),
            ("F002".into(), "planned".into())
        ],
        "an invoice missing because its feed is unreadable is not an invoice gone"
    );

    folder.write_invoices(&invoices(2));
    run_once(&folder, &[]).expect_code(0);
    assert_eq!(count(&folder.journal(), "sent"), 2);
    assert_eq!(folder.files("outbox").len(), 2);
}
}

on_both_backends! {
fn a_letter_left_planned_by_a_crash_after_its_file_was_written_is_not_written_again(backend: Backend) {
    let folder = dunning_folder("", &invoices(1)).on(backend);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &["{id: notice, offset: 1, channel: letter, template: overdue}"],
        ),
    );
    run_once(&folder, &[]).expect_code(0);
    let sent = folder.journal().remove(0);
    let letter = folder
        .path()
        .join("tasks/2026-12-01.F001.dunning.notice.0.letter.txt");
    assert_eq!(sent.message_id, letter.display().to_string());
    let inode = std::fs::metadata(&letter).unwrap().ino();

    folder.rewind("F001", "planned", 0);
    run_once(&folder, &[]).expect_code(0);
    let recovered = folder.journal().remove(0);
    assert_eq!(recovered.state, "sent");
    assert_eq!(
        recovered.message_id, sent.message_id,
        "the journal names the file"
    );
    assert_eq!(std::fs::metadata(&letter).unwrap().ino(), inode);
}
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
}

// --- Hot reload --------------------------------------------------------------

#[test]
fn a_policy_saved_in_place_is_live_within_a_second() {
    let (folder, mut daemon) = watched_folder(10);

    folder.write("rules/dunning.yaml", &overdue_after(1));
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading the edited policy",
        reloaded_with(
            "rules/dunning.yaml changed",
            "2 → 2 reminders (~2 changed)",
            2,
        ),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn an_editor_save_through_a_temporary_file_and_a_rename_is_live_within_a_second() {
    let (folder, mut daemon) = watched_folder(10);

    folder.write("rules/.dunning.yaml.swp", &overdue_after(1));
    std::fs::rename(
        folder.path().join("rules/.dunning.yaml.swp"),
        folder.path().join("rules/dunning.yaml"),
    )
    .unwrap();
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading the renamed policy",
        reloaded_with(
            "rules/dunning.yaml changed",
            "2 → 2 reminders (~2 changed)",
            2,
        ),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn a_broken_policy_keeps_the_last_good_one_running_until_it_is_fixed() {
    let (folder, mut daemon) = watched_folder(5);

    // An unclosed flow mapping: a YAML syntax error.
    folder.write(
        "rules/dunning.yaml",
        "name: dunning\nstages:\n  - {id: overdue, offset: 1, template: overdue\n",
    );
    expect_located_refusal(&mut daemon, "rules/dunning.yaml");
    assert!(daemon.running());

    // The last good policy (5 days after the due date) still decides: an
    // invoice 11 days late is due, the two 1 day late are not.
    let mut rows = invoices(2);
    rows.push(late_invoice("F900", "2026-10-20", "2026-11-20"));
    folder.write_invoices(&rows);
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading the feed",
        reloaded_with(
            "data/invoices.csv changed",
            "2 → 3 reminders (+1 overdue)",
            1,
        ),
    );

    folder.write("rules/dunning.yaml", &overdue_after(1));
    daemon.expect_line(
        SAVE_TO_LIVE,
        "loading the fixed policy",
        reloaded_with(
            "rules/dunning.yaml changed",
            "3 → 3 reminders (~2 changed)",
            3,
        ),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn a_policy_with_an_unknown_key_is_refused_with_its_location() {
    let folder = dunning_folder("", &invoices(2));
    let mut daemon = start_daemon(&folder);

    folder.write(
        "rules/dunning.yaml",
        &policy("dunning", &["{id: overdue, ofset: 1, template: overdue}"]),
    );
    let error = expect_located_refusal(&mut daemon, "rules/dunning.yaml");
    assert_contains(&error, "unknown field `ofset`");
    assert!(daemon.running());
}

#[test]
fn a_broken_template_is_refused_and_its_fix_loaded() {
    let (folder, mut daemon) = watched_folder(10);

    folder.write(
        "templates/overdue.en.hbs",
        &template(
            "Invoice {{invoice.number}}",
            "{{#if invoice.amount_due}}unclosed",
        ),
    );
    expect_located_refusal(&mut daemon, "templates/overdue.en.hbs");

    fix_the_template(&folder, &mut daemon);
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn partials_that_include_each_other_are_refused_as_a_reload_and_the_daemon_stays_up() {
    let folder = dunning_folder("", &invoices(2));
    folder
        .write("rules/dunning.yaml", &overdue_after(10))
        .write("templates/partials/a.en.hbs", "{{> b}}")
        .write("templates/partials/b.en.hbs", "B");
    let mut daemon = start_daemon(&folder);

    folder.write("templates/partials/b.en.hbs", "{{> a}}");
    let error = expect_located_refusal(&mut daemon, "templates/partials/a.en.hbs");
    assert_contains(&error, "partial include cycle");
    assert!(daemon.running());

    folder.write("templates/partials/b.en.hbs", "b");
    daemon.expect_line(
        SAVE_TO_LIVE,
        "loading the fixed partial",
        reloaded_with("templates/partials/b.en.hbs changed", "2 → 2 reminders", 0),
    );
    assert!(daemon.running());
}

#[test]
fn a_template_nested_too_deep_is_refused_as_a_reload_and_the_last_good_one_kept() {
    let (folder, mut daemon) = watched_folder(10);

    // 5,000 nested blocks overflowed Handlebars' stack and killed the daemon.
    let deep = format!(
        "{}x{}",
        "{{#if true}}".repeat(5_000),
        "{{/if}}".repeat(5_000)
    );
    folder.write(
        "templates/overdue.en.hbs",
        &template("Invoice {{invoice.number}}", &deep),
    );
    let error = expect_located_refusal(&mut daemon, "templates/overdue.en.hbs");
    assert_contains(
        &error,
        "nested deeper than limits.template_depth (32 blocks)",
    );
    assert!(daemon.running());

    fix_the_template(&folder, &mut daemon);
    assert!(daemon.running());
}

#[test]
fn a_feed_edit_is_live_within_a_second() {
    let (folder, mut daemon) = watched_folder(10);

    // Two invoices more, due long ago enough for the 10-day stage.
    let mut rows = invoices(2);
    for n in ["F900", "F901"] {
        rows.push(late_invoice(n, "2026-10-01", "2026-11-01"));
    }
    folder.write_invoices(&rows);
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading the feed",
        reloaded_with(
            "data/invoices.csv changed",
            "2 → 4 reminders (+2 overdue)",
            2,
        ),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn the_next_scheduled_evaluation_sends_what_an_edit_made_due() {
    let folder = dunning_folder("schedule: {every: 1s}", &invoices(1));
    let mut daemon = start_daemon(&folder);
    assert_eq!(folder.files("outbox").len(), 1, "evaluated on start");

    folder.write_invoices(&invoices(2));
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading the feed",
        reloaded_with(
            "data/invoices.csv changed",
            "0 → 1 reminders (+1 overdue)",
            1,
        ),
    );
    let next = daemon.expect_line(DEADLINE, "for the next evaluation", |l| {
        l.contains("evaluation done") && l.contains("sent=1")
    });
    assert_contains(&next, "due=1");
    assert_eq!(folder.files("outbox").len(), 2);
    assert_eq!(count(&folder.journal(), "sent"), 2);
}

/// The new rules are live (and said so) before their comparison with the
/// old ones is worked out, which at a million invoices takes seconds; a
/// scheduled pass waits for the comparison, so the log reads in order.
#[test]
fn a_saved_policy_is_live_before_its_comparison_and_the_next_pass_logs_after_both() {
    let folder = dunning_folder("schedule: {every: 1s}", &invoices(2));
    folder.write("rules/dunning.yaml", &overdue_after(10));
    let mut daemon = start_daemon(&folder);

    folder.write("rules/dunning.yaml", &overdue_after(1));
    let live = daemon.expect_line(SAVE_TO_LIVE, "the new rules live", |l| {
        l.contains("now live:") || is_reload_line(l)
    });
    assert_contains(
        &live,
        "now live: rules/dunning.yaml changed policies=1 templates=",
    );
    let next = daemon.expect_line(DEADLINE, "the comparison, then the pass", |l| {
        is_reload_line(l) || l.contains("evaluation done")
    });
    assert!(
        reloaded_with(
            "rules/dunning.yaml changed",
            "2 → 2 reminders (~2 changed)",
            2
        )(&next),
        "{next}"
    );
    assert_contains(&daemon.expect_evaluation(), "due=2 sent=2");
}

#[test]
fn a_config_edit_is_live_and_a_broken_config_is_refused() {
    let (folder, mut daemon) = watched_folder(10);
    let config = folder.read("relance.yaml");

    folder.write(
        "relance.yaml",
        &format!("{config}limts: {{max_per_run: 5}}\n"),
    );
    expect_located_refusal(&mut daemon, "relance.yaml");

    folder.write(
        "relance.yaml",
        &format!("{config}limits: {{max_per_run: 5}}\n"),
    );
    daemon.expect_line(
        SAVE_TO_LIVE,
        "loading the fixed config",
        reloaded_with("relance.yaml changed", "2 → 2 reminders", 0),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn a_config_reload_with_an_unreadable_feed_keeps_the_last_good_invoices() {
    let folder = dunning_folder("", &invoices(2));
    let mut daemon = start_daemon(&folder);
    let config = folder.read("relance.yaml");

    folder.write(
        "relance.yaml",
        &format!("{config}feeds: [{{path: data/missing.csv}}]\n"),
    );
    let error = expect_refusal(&mut daemon, "data/missing.csv");
    assert_contains(&error, "ERROR");
    assert!(daemon.running());
}

#[test]
fn sighup_forces_a_reload() {
    let (_folder, mut daemon) = watched_folder(10);

    daemon.signal("HUP");
    daemon.expect_line(DEADLINE, "acknowledging SIGHUP", |l| l.contains("SIGHUP"));
    daemon.expect_line(
        SAVE_TO_LIVE,
        "reloading everything",
        reloaded_with("everything reloaded (SIGHUP)", "2 → 2 reminders", 0),
    );
    assert_no_more_reloads(&mut daemon);
}

#[test]
fn a_reload_logs_what_the_edit_does_to_the_next_fourteen_days_by_stage() {
    let folder = dunning_folder("", &invoices(3));
    let stages = |second: &str| {
        policy(
            "dunning",
            &["{id: overdue, offset: 1, template: overdue}", second],
        )
    };
    folder.write(
        "rules/dunning.yaml",
        &stages("{id: second, offset: 5, template: overdue}"),
    );
    let mut daemon = start_daemon(&folder);
    assert_eq!(count(&folder.journal(), "sent"), 3, "overdue sent on start");

    // The second stage renamed and moved: its three reminders are replaced
    // by three of the new stage; the ones sent stay out of both plans.
    folder.write(
        "rules/dunning.yaml",
        &stages("{id: firm, offset: 8, template: overdue}"),
    );
    let line = daemon.expect_line(
        SAVE_TO_LIVE,
        "the summary of the edit",
        reloaded_with(
            "rules/dunning.yaml changed",
            "3 → 3 reminders (+3 firm, -3 second)",
            0,
        ),
    );
    assert_contains(&line, "before=3 after=3");

    // A stage added: only its reminders are new.
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[
                "{id: overdue, offset: 1, template: overdue}",
                "{id: firm, offset: 8, template: overdue}",
                "{id: final, offset: 12, template: overdue}",
            ],
        ),
    );
    daemon.expect_line(
        SAVE_TO_LIVE,
        "the summary of the added stage",
        reloaded_with(
            "rules/dunning.yaml changed",
            "3 → 6 reminders (+3 final)",
            0,
        ),
    );
    assert_no_more_reloads(&mut daemon);
}

/// Another process holding the journal's write lock for longer than the busy
/// timeout (5 s) delays the daemon's pass; the daemon says so, stays up, and
/// delivers once the lock is gone, once.
#[test]
fn a_journal_locked_by_another_process_delays_the_pass_and_stops_nothing() {
    let folder = dunning_folder("delivery: {kind: log}", &invoices(1));
    // A day on which nothing is due: the journal is created, nothing written.
    folder
        .run(&["run", "--once", "--as-of", "2026-11-01"])
        .expect_code(0);
    let lock = sqlite(&folder);
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_line(DEADLINE, "saying the journal is busy", |l| {
        l.contains("database is locked") && l.contains("trying again in 1 s")
    });
    assert!(daemon.running(), "a busy journal ended the daemon");
    lock.execute_batch("COMMIT").unwrap();
    daemon.expect_line(DEADLINE, "of the reminder sent", |l| l.contains("sent"));
    daemon.expect_evaluation();
    assert!(daemon.running());
    let rows = folder.journal();
    assert_eq!(count(&rows, "sent"), 1, "{rows:?}");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(DEADLINE).success());
}
