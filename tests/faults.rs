//! Integrity under an operator's accidents: long invoice numbers and file
//! names, several runs starting on a new folder at once, a lost journal,
//! and control characters in logged values.

mod common;

use common::*;

/// An invoice number too long for a file name once the date, policy, stage
/// and extension are added.
fn long_number() -> String {
    format!("F{}", "9".repeat(299))
}

#[test]
fn a_long_invoice_number_gets_a_shortened_file_name_that_recovery_finds() {
    let number = long_number();
    let folder = dunning_folder("", &[invoice_row(&number, "Long Ltd", "c1@example.com")]);
    folder.run(&RUN_ONCE).expect_code(0);
    let files = folder.files("outbox");
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.len() <= 255, "{}", name.len());
    assert_starts_with(&name, "2026-12-01.F999");
    assert_ends_with(&name, ".eml");
    assert_eq!(folder.journal()[0].state, "sent");

    // A crash after the file was written: the next run finds it by the same
    // name, marks the reminder sent and writes nothing again.
    folder.rewind(&number, "planned", dead_pid());
    let run = folder.run(&RUN_ONCE).expect_code(0);
    assert_eq!(
        run.log_lines("delivered before the interruption").len(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(folder.files("outbox"), files);
    assert_eq!(folder.journal()[0].state, "sent");
}

#[test]
fn a_long_non_ascii_invoice_number_gets_a_shortened_message_id_within_the_line_limit() {
    let number = "É".repeat(200);
    let folder = dunning_folder("", &[invoice_row(&number, "Long Ltd", "c1@example.com")]);
    folder.run(&RUN_ONCE).expect_code(0);
    let files = folder.files("outbox");
    assert_eq!(files.len(), 1, "{files:?}");
    let eml = std::fs::read(&files[0]).unwrap();
    for line in eml.split(|&b| b == b'\n') {
        assert!(line.len() <= 998, "a line of {} characters", line.len());
    }
    let mail = mailparse::parse_mail(&eml).unwrap();
    use mailparse::MailHeaderMap;
    let id = mail.headers.get_first_value("Message-ID").unwrap();
    let row = &folder.journal()[0];
    assert_eq!(row.invoice, number);
    assert_eq!(id, row.message_id, "the journal names the id sent");
    // The token writes each byte outside [A-Za-z0-9-_] as %XX.
    assert_starts_with(&id, &format!("<{}", "%C3%89".repeat(20)));
    assert_ends_with(&id, "@atelier-durand.fr>");
    let left = id.trim_start_matches('<').split('@').next().unwrap();
    assert!(left.len() <= 200, "{} bytes", left.len());
    assert!(left.contains('~'), "shortened with a hash: {left}");
    // The same reminder keeps the same id: recovery after a crash finds it.
    folder.rewind(&number, "planned", dead_pid());
    folder.run(&RUN_ONCE).expect_code(0);
    assert_eq!(folder.files("outbox"), files, "found, not written again");
}

#[test]
fn runs_started_together_on_a_new_folder_all_open_the_journal() {
    for _ in 0..4 {
        let folder = dunning_folder("", &invoices(3));
        let runs: Vec<_> = (0..4)
            .map(|_| folder.command(&RUN_ONCE).spawn().unwrap())
            .collect();
        for run in runs {
            let out = run.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(folder.journal_states().len(), 3);
        assert_eq!(folder.files("outbox").len(), 3, "each once");
    }
}

/// What `run` says when its journal is lost beside the two files it delivered.
fn expect_refused_as_lost(stderr: &str) {
    assert_contains(stderr, "state/relance.db is missing (or empty), but ");
    assert_contains(stderr, "outbox holds 2 delivered file(s)");
    assert_contains(stderr, "relance run --fresh-journal");
}

#[test]
fn a_lost_journal_beside_delivered_files_stops_run_until_told_otherwise() {
    let folder = dunning_folder("", &invoices(2));
    folder.run(&RUN_ONCE).expect_code(0);
    folder.remove("state/relance.db");
    let refused = folder.run(&RUN_ONCE).expect_code(1);
    expect_refused_as_lost(&refused.stderr);
    assert!(
        !folder.path().join("state/relance.db").exists(),
        "not created"
    );
    assert_eq!(folder.files("outbox").len(), 2);
    // A dry run touches nothing and is not refused.
    folder
        .run(&["run", "--once", "--dry-run", "--as-of", AS_OF])
        .expect_code(0);

    let mut fresh = RUN_ONCE.to_vec();
    fresh.push("--fresh-journal");
    folder.run(&fresh).expect_code(0);
    assert_eq!(folder.journal_states().len(), 2);
    // With its journal back, run starts as usual.
    folder.run(&RUN_ONCE).expect_code(0);
}

#[test]
fn an_emptied_journal_beside_delivered_files_stops_run_as_a_lost_one_does() {
    let folder = dunning_folder("", &invoices(2));
    folder.run(&RUN_ONCE).expect_code(0);
    // `: > state/relance.db`: the file is there, the journal is not.
    for leftover in ["state/relance.db-wal", "state/relance.db-shm"] {
        if folder.path().join(leftover).exists() {
            folder.remove(leftover);
        }
    }
    folder.write("state/relance.db", "");
    let refused = folder.run(&RUN_ONCE).expect_code(1);
    expect_refused_as_lost(&refused.stderr);
    assert_eq!(folder.read("state/relance.db"), "", "left as it was");
    assert_eq!(folder.files("outbox").len(), 2, "nothing sent again");

    let mut fresh = RUN_ONCE.to_vec();
    fresh.push("--fresh-journal");
    folder.run(&fresh).expect_code(0);
    assert_eq!(folder.journal_states().len(), 2);
    folder.run(&RUN_ONCE).expect_code(0);
}

/// An invoice number that would forge a log line and clear the screen.
const FORGED: &str = "F1\r\n2026-12-01T09:00:00Z  INFO relance: forged\u{1b}[2J";

/// A folder whose one invoice, [`FORGED`], is due, for a customer whose
/// name holds an escape sequence and a line feed too.
fn forging_folder() -> Folder {
    let folder = dunning_folder("", &[]);
    folder.write(
        "data/invoices.json",
        &serde_json::json!([{
            "number": FORGED,
            "customer_id": "C1", "customer_name": "Forger\u{1b}[31m\nLtd", "email": "c1@example.com",
            "issue_date": "2026-11-01", "due_date": "2026-11-30", "amount": "100.00",
            "amount_paid": "0", "currency": "EUR", "status": "open", "language": "en"
        }])
        .to_string(),
    );
    folder.write(
        "relance.yaml",
        &format!(
            "{}feeds: [{{path: data/invoices.json}}]\n",
            folder.read("relance.yaml")
        ),
    );
    folder
}

#[test]
fn control_characters_in_a_value_reach_no_table_but_json_and_csv_keep_them() {
    let folder = forging_folder();
    let raw = |out: &str| out.contains('\u{1b}') || out.contains('\r');
    let escaped = r"F1\r\n2026-12-01T09:00:00Z  INFO relance: forged\u{1b}[2J";
    let preview = folder.run(&["preview", "--as-of", AS_OF]).expect_code(0);
    assert!(!raw(&preview.stdout), "{:?}", preview.stdout);
    let rows = |out: &str| out.lines().filter(|l| l.starts_with("2026-")).count();
    assert_eq!(
        rows(&preview.stdout),
        1,
        "one row, no forged one: {}",
        preview.stdout
    );
    assert_contains(&preview.stdout, escaped);
    assert_contains(&preview.stdout, r"Forger\u{1b}[31m\nLtd");
    // Aligned on the escaped cells: the header's next column starts where the row's does.
    let lines: Vec<&str> = preview.stdout.lines().collect();
    let customer_column = lines[0].find("CUSTOMER").unwrap();
    assert_eq!(
        lines[1][customer_column..].chars().next(),
        Some('F'),
        "{}",
        preview.stdout
    );
    assert_starts_with(&lines[1][customer_column..], r"Forger\u{1b}");

    let rendered = folder
        .run(&["preview", "--as-of", AS_OF, "--render"])
        .expect_code(0);
    assert!(!raw(&rendered.stdout), "{:?}", rendered.stdout);
    assert_contains(&rendered.stdout, escaped);

    let json = folder
        .run(&["preview", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json[0]["invoice"], FORGED, "JSON keeps the exact value");
    let csv = folder
        .run(&["preview", "--as-of", AS_OF, "--format", "csv"])
        .expect_code(0);
    assert_contains(&csv.stdout, FORGED);

    folder.run(&RUN_ONCE).expect_code(0);
    let history = folder.run(&["history"]).expect_code(0);
    assert!(!raw(&history.stdout), "{:?}", history.stdout);
    assert_eq!(rows(&history.stdout), 1, "{}", history.stdout);
    assert_contains(&history.stdout, escaped);
    let json = folder
        .run(&["history", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json[0]["invoice"], FORGED);

    let report = folder.run(&["report", "--as-of", AS_OF]).expect_code(0);
    assert!(!raw(&report.stdout), "{:?}", report.stdout);
}

#[test]
fn control_characters_in_a_value_cannot_forge_a_human_log_line() {
    let folder = forging_folder();
    let run = folder.run(&RUN_ONCE).expect_code(0);
    let sent = run.log_lines("invoice=");
    assert!(!sent.is_empty(), "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .all(|l| !l.contains("forged") || l.contains("invoice=")),
        "a forged line: {}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\r'));
    assert_contains(
        &run.stderr,
        r"invoice=F1\r\n2026-12-01T09:00:00Z  INFO relance: forged\u{1b}[2J",
    );
}
