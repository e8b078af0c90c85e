//! docs/contract.md §6: `preview` output formats, `explain`, `check`, exit codes, and the
//! shipped sample folder.

use crate::common::{Folder, assert_starts_with};
use crate::{
    ON_DUE, STANDARD, args, array, check_problems, fields, folder, inv, lines, preview_json,
    run_expect, run_inside, str_of, with_stages,
};
use serde_json::{Value, json};

/// Invoices whose reminders fall on two days, listed out of order.
fn two_days() -> Folder {
    let f = with_stages(
        &[
            inv("B2", "2026-12-10", "1500")
                .customer("C2", "Beta & Co")
                .with("email", "b@x.fr; compta@x.fr"),
            inv("A10", "2026-12-11", "99.5")
                .with("currency", "USD")
                .with("language", "en"),
            inv("A1", "2026-12-10", "1234.56")
                .with("amount_paid", "0.56")
                .customer("C1", "Acme"),
            inv("A2", "2026-12-11", "12").customer("C1", "Acme"),
        ],
        &[
            ON_DUE,
            "{id: letter, offset: 1, channel: letter, template: t}",
        ],
    );
    f.write(
        "templates/t.en.hbs",
        &crate::common::template("Invoice {{invoice.number}}", "Hello"),
    );
    f
}

#[test]
fn preview_json_is_one_array_sorted_by_date_then_invoice_with_every_key() {
    let f = two_days();
    let reminders = preview_json(&f, "--as-of 2026-12-10 --days 2");
    assert_eq!(
        fields(&reminders, "date invoice stage"),
        vec![
            "2026-12-10 A1 on_due",
            "2026-12-10 B2 on_due",
            "2026-12-11 A1 letter",
            "2026-12-11 A10 on_due",
            "2026-12-11 A2 on_due",
            "2026-12-11 B2 letter",
        ]
    );
    assert_eq!(
        reminders[1],
        json!({
            "date": "2026-12-10",
            "invoice": "B2",
            "customer_id": "C2",
            "customer_name": "Beta & Co",
            "policy": "p",
            "stage": "on_due",
            "occurrence": 0,
            "message": "B2.p.on_due.0",
            "channel": "email",
            "to": "b@x.fr, compta@x.fr",
            "language": "fr",
            "template": "t",
            "subject": "B2",
            "amount_due": "1500.00",
            "currency": "EUR",
        })
    );
    assert_eq!(reminders[0]["amount_due"], "1234.00");
    assert_eq!(reminders[3]["amount_due"], "99.50");
    assert_eq!(reminders[3]["currency"], "USD");
    assert_eq!(reminders[3]["language"], "en");
    assert_eq!(reminders[3]["subject"], "Invoice A10");
    // A letter goes to the customer by name.
    assert_eq!(reminders[2]["channel"], "letter");
    assert_eq!(reminders[2]["to"], "Acme");
}

#[test]
fn preview_csv_has_the_same_columns_and_values_as_json() {
    let f = two_days();
    let json = preview_json(&f, "--as-of 2026-12-10 --days 2");
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 2 --format csv", 0);
    let mut reader = ::csv::Reader::from_reader(run.stdout.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let keys: Vec<&str> = "date invoice customer_id customer_name policy stage occurrence message channel to language template subject amount_due currency"
        .split_whitespace()
        .collect();
    assert_eq!(header[..keys.len()], keys);
    let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), json.len());
    for (row, object) in rows.iter().zip(&json) {
        for (i, key) in keys.iter().enumerate() {
            let expected = match &object[*key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(row[i], expected, "{key} of {object}");
        }
    }
}

#[test]
fn preview_table_is_aligned_and_ends_with_a_count() {
    let f = two_days();
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1", 0);
    assert_eq!(
        run.stdout,
        "DATE        INVOICE  CUSTOMER   POLICY  STAGE   CHANNEL  DUE          SUBJECT\n\
         2026-12-10  A1       Acme       p       on_due  email    1234.00 EUR  A1\n\
         2026-12-10  B2       Beta & Co  p       on_due  email    1500.00 EUR  B2\n\
         \n\
         2 reminder(s) from 2026-12-10 to 2026-12-10.\n"
    );
}

/// `preview --render` of B2 on 2026-12-10 in `f` (it must exit 0).
fn render_b2(f: &Folder) -> String {
    run_expect(
        f,
        "preview --as-of 2026-12-10 --days 1 --render --invoice B2",
        0,
    )
    .stdout
}

/// What [`render_b2`] prints when the text body is followed by `after_body`.
fn rendered_b2(after_body: &str) -> String {
    format!(
        "=== 2026-12-10  B2  on_due  email (p)\n\
         To: b@x.fr, compta@x.fr\n\
         Subject: B2\n\
         \n\
         Body of B2\n\
         {after_body}\n\
         \n\
         1 reminder(s) from 2026-12-10 to 2026-12-10.\n"
    )
}

#[test]
fn preview_render_prints_each_full_message() {
    assert_eq!(render_b2(&two_days()), rendered_b2(""));
}

#[test]
fn preview_render_prints_the_html_part_after_the_text() {
    let f = two_days();
    f.write(
        "templates/t.fr.html.hbs",
        "<p>Bonjour {{customer.name}}</p>\n",
    );
    assert_eq!(
        render_b2(&f),
        rendered_b2("--- html ---\n<p>Bonjour Beta &amp; Co</p>\n")
    );
}

#[test]
fn preview_writes_nothing() {
    let f = two_days();
    run_expect(&f, "preview --as-of 2026-12-10 --days 60 --render", 0);
    for made in ["state", "outbox", "tasks"] {
        assert!(!f.path().join(made).exists(), "preview created {made}/");
    }
}

#[test]
fn preview_leaves_an_existing_journal_as_it_was() {
    let f = two_days();
    crate::run_once(&f, "2026-12-10");
    let before = std::fs::read(f.path().join("state/relance.db")).unwrap();
    let history = run_expect(&f, "history --format json", 0).stdout;
    run_expect(&f, "preview --as-of 2026-12-11 --days 30", 0);
    assert_eq!(
        std::fs::read(f.path().join("state/relance.db")).unwrap(),
        before
    );
    assert_eq!(run_expect(&f, "history --format json", 0).stdout, history);
}

#[test]
fn explain_shows_the_policy_chosen_and_why_and_each_stage() {
    let f = with_stages(
        &[inv("F1", "2026-12-10", "20").customer("C1", "Acme")],
        &STANDARD,
    );
    f.write(
        "rules/big.yaml",
        "name: big\npriority: 10\napplies_to: 'invoice.amount_due >= 1000'\nstages: [{id: call, offset: 1, channel: call, template: t}]\n",
    );
    let run = run_expect(&f, "explain F1 --as-of 2026-12-27", 0);
    assert_eq!(
        run.stdout,
        "Invoice F1 — Acme (C1)\n  \
         20,00 € due 2026-12-10 (17 day(s) overdue), status open, as of 2026-12-27\n\
         \n\
         Policies, highest priority first:\n  \
         big                  priority   10  applies_to is false\n  \
         p                    priority    0  no applies_to: covers every invoice → CHOSEN\n\
         \n\
         Stages of p (offsets from due_date 2026-12-10):\n\
         STAGE          DATE        REACHED      JOURNAL  VERDICT\n\
         courtesy       2026-12-03  reached      -        skipped: overtaken by a later stage\n\
         due_soon       2026-12-08  reached      -        skipped: overtaken by a later stage\n\
         overdue_1      2026-12-11  reached      -        FIRES\n\
         overdue_2      2026-12-25  reached      -        when = false; waiting: reached, but its `when` is false\n\
         formal_notice  2027-01-09  not reached  -        not reached yet\n\
         collection     2027-03-10  not reached  -        not reached yet\n\
         \n\
         On 2026-12-27: sends overdue_1 (email) to f1@example.com: F1\n"
    );
}

#[test]
fn explain_writes_money_in_the_language_of_the_invoice() {
    let f = folder(&[
        inv("F1", "2026-12-10", "1234.5"),
        inv("F2", "2026-12-10", "1234.5").with("language", "en"),
    ]);
    let header = |number: &str| {
        let run = run_expect(&f, &format!("explain {number} --as-of 2026-12-10"), 0);
        run.stdout.lines().nth(1).unwrap().to_string()
    };
    assert_starts_with(&header("F1"), "  1 234,50 € due 2026-12-10");
    assert_starts_with(&header("F2"), "  €1,234.50 due 2026-12-10");
}

#[test]
fn preview_and_explain_with_a_broken_policy_show_the_rest_but_exit_1() {
    // `run` refuses to start on this folder: a preview that exited 0 would
    // promise reminders the daemon never sends.
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    f.write(
        "rules/typo.yaml",
        "name: typo\nstages:\n  - {id: one, ofset: 1, template: t}\n",
    );
    let problem = "rules/typo.yaml:3:15: stages[0]: unknown field `ofset`";
    let preview = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 1);
    assert_starts_with(&crate::local(&f, &preview.stderr), problem);
    assert_eq!(
        fields(&array(preview.json()), "invoice stage"),
        ["F1 on_due"]
    );

    let explain = run_expect(&f, "explain F1 --as-of 2026-12-10", 1);
    assert_starts_with(&crate::local(&f, &explain.stderr), problem);
    assert!(
        explain
            .stdout
            .ends_with("On 2026-12-10: sends on_due (email) to f1@example.com: F1\n"),
        "{}",
        explain.stdout
    );
    run_expect(&f, "run --once --dry-run --as-of 2026-12-10", 1);
}

#[test]
fn explain_json_gives_the_same_facts_to_machines() {
    let f = with_stages(&[inv("F1", "2026-12-10", "20")], &STANDARD);
    let run = run_expect(&f, "explain F1 --as-of 2026-12-27 --format json", 0);
    let v = run.json();
    assert_eq!(v["policy"], "p");
    assert_eq!(
        v["policies"],
        json!([{"policy": "p", "priority": 0, "applies": true}])
    );
    assert_eq!(v["fires"]["stage"], "overdue_1");
    assert_eq!(v["skipped"], json!(["courtesy", "due_soon"]));
    assert_eq!(
        v["stages"][3],
        json!({"stage": "overdue_2", "occurrence": 0, "date": "2026-12-25", "reached": true,
               "when": false, "journal": null, "verdict": "waiting"})
    );
}

#[test]
fn explain_an_unknown_invoice_exits_1_with_a_clear_message() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    let run = run_expect(&f, "explain F404 --as-of 2026-12-10", 1);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "relance: invoice F404 is not in the feeds\n");
    let preview = run_expect(&f, "preview --invoice F404 --as-of 2026-12-10", 1);
    assert_eq!(
        preview.stderr,
        "relance: invoice F404 is not in the feeds\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    for line in [
        "preview --bogus",
        "preview --as-of 2026-13-01",
        "preview --as-of 10/12/2026",
        "explain F1 --as-of tomorrow",
        "preview --days 0",
        "preview --days many",
        "preview --format xml",
        "explain",
        "frobnicate",
    ] {
        let run = run_expect(&f, line, 2);
        assert!(run.stderr.starts_with("error: "), "{line}: {}", run.stderr);
    }
}

#[test]
fn check_on_a_clean_folder_prints_nothing_and_exits_0() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    let run = run_expect(&f, "check", 0);
    assert_eq!(run.stdout, "");
    assert_eq!(
        lines(&f, &run.stderr),
        vec![
            "ok: 0 error(s), 0 warning(s) in 1 invoice(s) (0 bad row(s)), 1 policies, 1 templates"
        ]
    );
}

#[test]
fn check_on_the_shipped_sample_exits_0() {
    let f = Folder::sample();
    let run = run_expect(&f, "check", 0);
    assert_eq!(run.stdout, "");
    assert_starts_with(&run.stderr, "ok: 0 error(s), 0 warning(s)");
}

#[test]
fn the_shipped_sample_previews_what_the_readme_shows() {
    let f = Folder::sample();
    let run = run_expect(&f, "preview --as-of 2026-12-01", 0);
    assert_eq!(run.stderr, "");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // The README's excerpt: the header, the first rows and the count.
    let excerpt: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ relance preview --as-of 2026-12-01"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| *l != "…")
        .collect();
    let (count, rows) = excerpt.split_last().expect("an excerpt");
    assert!(rows.len() >= 4, "{excerpt:?}");
    let out: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(out[..rows.len()], *rows);
    assert_eq!(out.last().unwrap(), count);
}

#[test]
fn an_email_reminder_without_an_address_is_reported_not_sent() {
    let f = folder(&[
        inv("F1", "2026-12-10", "10").with("email", ""),
        inv("F2", "2026-12-10", "10"),
    ]);
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0);
    let reminders = run.json();
    assert_eq!(
        crate::local(&f, str_of(&reminders[0], "error")),
        "data/invoices.csv:2: email: invoice F1 has no email address"
    );
    assert!(reminders[1].get("error").is_none(), "{reminders}");
    assert_eq!(
        lines(&f, &run.stderr),
        vec![
            "warning: 2026-12-10 F1 on_due: data/invoices.csv:2: email: invoice F1 has no email address"
        ]
    );
}

#[test]
fn without_dir_the_current_folder_is_used_and_locations_are_relative_to_it() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    f.write(
        "rules/typo.yaml",
        "name: typo\nstages:\n  - {id: one, ofset: 1, template: t}\n",
    );
    let run = run_inside(&f, "check");
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout,
        "rules/typo.yaml:3:15: stages[0]: unknown field `ofset`, expected one of `id`, `offset`, `on`, `channel`, `template`, `when`, `repeat`, `shift`, `group`, `urgent`, `approve`, `to`, `cc`, `bcc`\n"
    );
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    // `relance preview --render --format json | head -c 100`: once the reader
    // is gone, the rest of the output has nowhere to go, and that is fine.
    let f = Folder::sample();
    let mut child = f
        .command(&args(
            "preview --as-of 2026-12-01 --days 60 --render --format json",
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, with far more than a pipe buffer still to write.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn an_smtp_user_without_password_env_is_a_config_error() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    f.write(
        "relance.yaml",
        "delivery: {kind: smtp, host: smtp.example.com, user: relance}\ncompany: {email: ar@acme.example}\n",
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "relance.yaml:1:48: delivery: user needs password_env, the environment variable holding the password (never the password itself)"
        ]
    );
}

#[test]
fn check_refuses_a_sender_that_is_not_an_email_address() {
    let f = folder(&[inv("F1", "2026-12-10", "20")]);
    f.write(
        "relance.yaml",
        "company: {name: Acme, email: compta-at-acme}\n",
    );
    assert_eq!(
        check_problems(&f),
        vec!["relance.yaml:1:23: company.email \"compta-at-acme\" is not an email address"]
    );
}
