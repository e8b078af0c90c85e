//! Several contacts, a day's letters in one file, and a customer's contact
//! history, on real folders through the binary: a stage's `to:`, `cc:` and
//! `bcc:` feed columns and the `reply_to` in the outbox and over SMTP, the
//! addresses `check` refuses and the reminders that fail for them,
//! `tasks/letters-DATE.pdf`, and `history --customer`.

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use mailparse::MailHeaderMap;

use common::*;
use smtp::SmtpServer;

/// The feed's columns: the canonical ones an email needs, then the
/// contacts the stages name.
const COLUMNS: [&str; 11] = [
    "number",
    "customer_id",
    "customer_name",
    "email",
    "issue_date",
    "due_date",
    "amount",
    "language",
    "escalation_email",
    "account_manager_email",
    "audit_email",
];

/// The contacts of one invoice: its `email`, `escalation_email`,
/// `account_manager_email` and `audit_email` (empty: none).
struct Contacts<'a> {
    email: &'a str,
    escalation: &'a str,
    manager: &'a str,
    audit: &'a str,
}

/// An invoice of 100.00 EUR in English of customer `customer`, due on
/// 2026-11-30 (overdue on [`AS_OF`]), with these contacts.
fn row(number: &str, customer: &str, c: &Contacts) -> [String; 11] {
    [
        number,
        customer,
        &format!("Customer {customer}"),
        c.email,
        "2026-11-01",
        "2026-11-30",
        "100.00",
        "en",
        c.escalation,
        c.manager,
        c.audit,
    ]
    .map(str::to_string)
}

/// The feed of these rows, as a CSV file with a header.
fn feed(rows: &[[String; 11]]) -> String {
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS).unwrap();
    for row in rows {
        writer.write_record(row).unwrap();
    }
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

/// A [`dunning_folder`] (`config` lines added) whose stage `overdue` goes
/// to `escalation_email` with copies to `account_manager_email` and blind
/// copies to `audit_email`, replies going to recouvrement@, and these
/// invoices.
fn contacts_folder(config: &str, rows: &[[String; 11]]) -> Folder {
    let folder = dunning_folder(
        &format!("reply_to: recouvrement@atelier-durand.fr\n{config}"),
        &[],
    );
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: overdue, offset: 1, template: overdue, to: escalation_email, \
                   cc: [account_manager_email], bcc: [audit_email]}",
                ],
            ),
        )
        .write("data/invoices.csv", &feed(rows));
    folder
}

/// F001 has an escalation contact, an account manager and an auditor;
/// F002 has no escalation contact (its email goes to `email`) and the
/// same auditor as its account manager (who gets one copy).
fn two_invoices() -> Vec<[String; 11]> {
    vec![
        row(
            "F001",
            "C1",
            &Contacts {
                email: "ap@one.example",
                escalation: "cfo@one.example",
                manager: "am@atelier-durand.fr",
                audit: "audit@atelier-durand.fr",
            },
        ),
        row(
            "F002",
            "C2",
            &Contacts {
                email: "ap@two.example",
                escalation: "",
                manager: "am2@atelier-durand.fr",
                audit: "am2@atelier-durand.fr; audit@atelier-durand.fr",
            },
        ),
    ]
}

/// The `.eml` of `invoice`'s reminder in the outbox, parsed back.
fn outbox_email(folder: &Folder, invoice: &str) -> Vec<u8> {
    let name = format!("{AS_OF}.{invoice}.dunning.overdue.0.eml");
    std::fs::read(folder.path().join("outbox").join(&name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The value of header `name` of a raw message, if it has one.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let (headers, _) = mailparse::parse_headers(raw).expect("headers");
    headers.get_first_value(name)
}

#[test]
fn an_outbox_email_goes_to_the_stage_columns_with_its_copies_and_reply_to() {
    let folder = contacts_folder("", &two_invoices());
    folder.run(&["check"]).expect_code(0);

    let preview = folder
        .run(&[
            "preview", "--as-of", AS_OF, "--days", "1", "--format", "json",
        ])
        .expect_code(0)
        .json();
    let rows = preview.as_array().unwrap();
    assert_eq!(rows[0]["to"], "cfo@one.example");
    assert_eq!(rows[0]["cc"], serde_json::json!(["am@atelier-durand.fr"]));
    assert_eq!(
        rows[0]["bcc"],
        serde_json::json!(["audit@atelier-durand.fr"])
    );
    assert_eq!(rows[0]["reply_to"], "recouvrement@atelier-durand.fr");
    // No escalation contact: the invoice's `email`; an address in both the
    // copies and the blind copies is copied once.
    assert_eq!(rows[1]["to"], "ap@two.example");
    assert_eq!(rows[1]["cc"], serde_json::json!(["am2@atelier-durand.fr"]));
    assert_eq!(
        rows[1]["bcc"],
        serde_json::json!(["audit@atelier-durand.fr"])
    );

    folder.run(&RUN_ONCE).expect_code(0);
    let one = outbox_email(&folder, "F001");
    assert_eq!(
        header(&one, "To").as_deref(),
        Some("\"Customer C1\" <cfo@one.example>")
    );
    assert_eq!(header(&one, "Cc").as_deref(), Some("am@atelier-durand.fr"));
    // The outbox keeps the blind copies for the job that sends the file on.
    assert_eq!(
        header(&one, "Bcc").as_deref(),
        Some("audit@atelier-durand.fr")
    );
    assert_eq!(
        header(&one, "Reply-To").as_deref(),
        Some("recouvrement@atelier-durand.fr")
    );
    let two = outbox_email(&folder, "F002");
    assert_eq!(
        header(&two, "To").as_deref(),
        Some("\"Customer C2\" <ap@two.example>")
    );
    // The journal's recipient is the message's To.
    let recipients: Vec<(String, String)> = folder
        .journal()
        .into_iter()
        .map(|r| (r.invoice, r.recipient))
        .collect();
    assert_eq!(
        recipients,
        [
            ("F001".to_string(), "cfo@one.example".to_string()),
            ("F002".to_string(), "ap@two.example".to_string())
        ]
    );
}

#[test]
fn over_smtp_the_blind_copies_are_envelope_recipients_only() {
    let server = SmtpServer::accepting();
    let folder = contacts_folder(&server.delivery(), &two_invoices()[..1]);
    folder.run(&RUN_ONCE).expect_code(0);
    let mails = server.wait_for_accepted(1);
    assert_eq!(
        mails[0].recipients,
        [
            "cfo@one.example",
            "am@atelier-durand.fr",
            "audit@atelier-durand.fr"
        ]
    );
    let raw = &mails[0].raw;
    assert_eq!(
        header(raw, "To").as_deref(),
        Some("\"Customer C1\" <cfo@one.example>")
    );
    assert_eq!(header(raw, "Cc").as_deref(), Some("am@atelier-durand.fr"));
    assert_eq!(header(raw, "Bcc"), None, "no header shows a blind copy");
    assert!(!String::from_utf8_lossy(raw).contains("audit@"));
    assert_eq!(
        header(raw, "Reply-To").as_deref(),
        Some("recouvrement@atelier-durand.fr")
    );
    assert_eq!(folder.journal()[0].state, "sent");
}

#[test]
fn a_refused_copy_address_is_located_by_check_and_fails_its_reminder_only() {
    let mut rows = two_invoices();
    rows[0][9] = "Account Manager <am@atelier-durand.fr>".into();
    let folder = contacts_folder("", &rows);

    let check = folder.run(&["check"]).expect_code(1);
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("account_manager_email"))
        .unwrap_or_else(|| panic!("{}", check.stdout));
    assert_contains(
        line,
        "data/invoices.csv:2: account_manager_email: invoice F001: ",
    );
    assert_contains(line, "a display name is not accepted");
    assert_contains(line, "cc of stage overdue of policy dunning");

    let preview = folder
        .run(&["preview", "--as-of", AS_OF, "--days", "1"])
        .expect_code(0);
    assert_contains(&preview.stdout, "NOT SENDABLE");

    // A failed delivery makes the run's exit code 1.
    folder.run(&RUN_ONCE).expect_code(1);
    let journal = folder.journal();
    let (failed, sent) = (&journal[0], &journal[1]);
    assert_eq!(
        (failed.invoice.as_str(), failed.state.as_str()),
        ("F001", "failed")
    );
    let reason = failed.last_error.as_deref().unwrap();
    assert_contains(reason, "account_manager_email: invoice F001");
    assert_contains(reason, "it never goes to another address");
    assert_eq!(
        (sent.invoice.as_str(), sent.state.as_str()),
        ("F002", "sent")
    );
    assert_eq!(folder.files("outbox").len(), 1, "only F002's email");
}

#[test]
fn a_column_no_feed_has_is_an_error_at_the_stage_key_and_its_emails_fail() {
    let folder = contacts_folder("", &two_invoices());
    folder.write(
        "rules/dunning.yaml",
        "name: dunning\nstages:\n  - id: overdue\n    offset: 1\n    template: overdue\n    \
         cc: [acount_manager_email]\n",
    );
    let check = folder.run(&["check"]).expect_code(1);
    let line = check
        .stdout
        .lines()
        .find(|l| l.contains("acount_manager_email"))
        .unwrap_or_else(|| panic!("{}", check.stdout));
    assert_contains(
        line,
        "rules/dunning.yaml:6:5: stage overdue: cc: no feed has a column \"acount_manager_email\"",
    );
    assert_contains(line, "account_manager_email, audit_email");

    folder.run(&RUN_ONCE).expect_code(1);
    for row in folder.journal() {
        assert_eq!(row.state, "failed");
        assert_contains(row.last_error.as_deref().unwrap(), "acount_manager_email");
    }
    assert!(folder.files("outbox").is_empty());
}

#[test]
fn a_reply_to_that_is_no_address_is_an_error_at_its_key() {
    let folder = contacts_folder("", &two_invoices());
    folder.write(
        "relance.yaml",
        "language: en\ncompany: {name: \"Atelier Durand\", email: \"compta@atelier-durand.fr\"}\n\
         reply_to: recouvrement at atelier\n",
    );
    folder.write(
        "rules/dunning.yaml",
        "name: dunning\nreply_to: \"Recouvrement <r@atelier-durand.fr>\"\nstages:\n  \
         - {id: overdue, offset: 1, template: overdue}\n",
    );
    let check = folder.run(&["check"]).expect_code(1);
    assert_contains(
        &check.stdout,
        "relance.yaml:3:1: reply_to: \"recouvrement at atelier\": not an email address (no @)",
    );
    assert_contains(
        &check.stdout,
        "rules/dunning.yaml:2:1: reply_to: \"Recouvrement <r@atelier-durand.fr>\": a display name",
    );
    // The daemon refuses rules that do not load.
    folder.run(&RUN_ONCE).expect_code(1);
}

#[test]
fn a_grouped_message_copies_only_whom_every_invoice_names() {
    let contacts = |manager| Contacts {
        email: "ap@one.example",
        escalation: "",
        manager,
        audit: "",
    };
    let folder = contacts_folder(
        "",
        &[
            row("F001", "C1", &contacts("am@x.example; boss@x.example")),
            row("F002", "C1", &contacts("am@x.example")),
        ],
    );
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[
                "{id: overdue, offset: 1, template: overdue, group: customer, \
               cc: [account_manager_email]}",
            ],
        ),
    );
    let preview = folder
        .run(&[
            "preview", "--as-of", AS_OF, "--days", "1", "--format", "json",
        ])
        .expect_code(0)
        .json();
    for row in preview.as_array().unwrap() {
        assert_eq!(row["message"], preview[0]["message"], "one message");
        assert_eq!(row["cc"], serde_json::json!(["am@x.example"]));
        assert!(row.get("bcc").is_none(), "no blind copy: no key");
    }
}

#[test]
fn reminders_for_other_contacts_are_never_combined_with_the_others() {
    let contacts = Contacts {
        email: "ap@one.example",
        escalation: "",
        manager: "am@atelier-durand.fr",
        audit: "",
    };
    let mut rows = vec![
        row("F001", "C1", &contacts),
        row("F002", "C1", &contacts),
        row("F003", "C1", &contacts),
    ];
    // F001 is due in two days: its courtesy note goes to `email` alone.
    rows[0][5] = "2026-12-03".into();
    let folder = contacts_folder("contact: {combine: true}", &rows);
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: soon, offset: -2, template: overdue}",
                    "{id: late, offset: 1, template: overdue, cc: [account_manager_email]}",
                ],
            ),
        )
        .write(
            "templates/combined.en.hbs",
            &template(
                "Your invoices",
                "{{#each overdue}}{{this.number}} {{/each}}{{#each due_soon}}{{this.number}} {{/each}}",
            ),
        );
    let preview = folder
        .run(&[
            "preview", "--as-of", AS_OF, "--days", "1", "--format", "json",
        ])
        .expect_code(0)
        .json();
    let seen: Vec<(&str, &str, &serde_json::Value)> = preview
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = |k: &str| r[k].as_str().unwrap();
            (key("invoice"), key("template"), &r["cc"])
        })
        .collect();
    let manager = serde_json::json!(["am@atelier-durand.fr"]);
    assert_eq!(
        seen,
        [
            ("F001", "overdue", &serde_json::Value::Null),
            ("F002", "combined", &manager),
            ("F003", "combined", &manager),
        ]
    );
    assert_ne!(preview[0]["message"], preview[1]["message"]);
    assert_eq!(preview[1]["message"], preview[2]["message"]);
}

// --- A day's letters in one file ---------------------------------------------

/// A [`dunning_folder`] whose stage sends a letter, with these invoices.
fn letters_folder(invoices: &[Inv]) -> Folder {
    let folder = dunning_folder("", invoices);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &["{id: notice, offset: 1, channel: letter, template: overdue}"],
        ),
    );
    folder
}

/// The day's letters file of [`AS_OF`]: how many pages, and each page's text.
fn letters_of_the_day(folder: &Folder) -> (usize, Vec<String>) {
    let path = folder.path().join(format!("tasks/letters-{AS_OF}.pdf"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Page objects as a PDF reader counts them (not the `/Pages` tree).
    let text = String::from_utf8_lossy(&bytes);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    let doc = lopdf::Document::load_mem(&bytes).expect("a PDF that opens");
    assert_eq!(doc.get_pages().len(), pages);
    let texts = (1..=pages as u32)
        .map(|page| doc.extract_text(&[page]).unwrap())
        .collect();
    (pages, texts)
}

#[test]
fn a_days_letters_are_in_one_file_each_on_its_own_page_and_later_ones_join_it() {
    let mut rows = invoices(2);
    let folder = letters_folder(&rows);
    folder.run(&RUN_ONCE).expect_code(0);
    let (pages, texts) = letters_of_the_day(&folder);
    assert_eq!(pages, 2);
    assert_contains(&texts[0], "Dear Customer 1,");
    assert_contains(&texts[1], "Dear Customer 2,");
    // Each letter is whole: its own PDF's text, from its first line.
    let own = folder.read(&format!("tasks/{AS_OF}.F001.dunning.notice.0.letter.txt"));
    assert!(
        texts[0].starts_with(own.lines().next().unwrap()),
        "{}",
        texts[0]
    );

    // A later run the same day, with a new letter: the file holds all three.
    rows.push(invoice_row("F003", "Customer 3", "c3@example.com"));
    folder.write_invoices(&rows);
    let run = folder.run(&RUN_ONCE).expect_code(0);
    assert_contains(&run.stderr, &format!("letters-{AS_OF}.pdf"));
    let (pages, texts) = letters_of_the_day(&folder);
    assert_eq!(pages, 3);
    for (page, customer) in texts.iter().zip(["Customer 1", "Customer 2", "Customer 3"]) {
        assert_contains(page, &format!("Dear {customer},"));
    }
    // Nothing is left beside it: the file was written through a temporary one.
    let names: Vec<String> = folder
        .files("tasks")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn a_run_without_letters_writes_no_letters_file() {
    let folder = dunning_folder("", &invoices(1));
    folder.run(&RUN_ONCE).expect_code(0);
    assert!(folder.files("tasks").is_empty());
}

// --- Contact history per customer --------------------------------------------

/// F001 and F002 of customer C1, F003 of C2, each reminded on [`AS_OF`].
fn history_folder() -> (Folder, Vec<Inv>) {
    let rows = vec![
        invoice_row("F001", "Dupont", "a@dupont.example").customer("C1", "Dupont"),
        invoice_row("F002", "Dupont", "a@dupont.example").customer("C1", "Dupont"),
        invoice_row("F003", "Martin", "a@martin.example").customer("C2", "Martin"),
    ];
    let folder = dunning_folder("", &rows);
    folder.run(&RUN_ONCE).expect_code(0);
    (folder, rows)
}

/// The (invoice, customer_id) of each row of `history ARGS… --format json`.
fn history_json(folder: &Folder, args: &[&str]) -> Vec<(String, serde_json::Value)> {
    let mut all = vec!["history"];
    all.extend(args);
    all.extend(["--format", "json"]);
    let mut rows: Vec<(String, serde_json::Value)> = folder
        .run(&all)
        .expect_code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["invoice"].as_str().unwrap().to_string(),
                r["customer_id"].clone(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[test]
fn history_lists_everything_sent_to_a_customer_even_after_its_invoice_left_the_feed() {
    let (folder, rows) = history_folder();
    let c1 = || serde_json::json!("C1");
    assert_eq!(
        history_json(&folder, &["--customer", "C1"]),
        [("F001".to_string(), c1()), ("F002".to_string(), c1())]
    );
    assert_eq!(
        history_json(&folder, &[]),
        [
            ("F001".to_string(), c1()),
            ("F002".to_string(), c1()),
            ("F003".to_string(), serde_json::json!("C2"))
        ]
    );
    let csv = folder
        .run(&["history", "--customer", "C2", "--format", "csv"])
        .expect_code(0)
        .stdout;
    let mut reader = ::csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = headers.iter().position(|h| h == "customer_id").unwrap();
    let records: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0][column], "C2");
    assert_eq!(&records[0][0], "F003");

    let table = folder
        .run(&["history", "--customer", "C1"])
        .expect_code(0)
        .stdout;
    assert_eq!(table.lines().count(), 3, "a header and two rows:\n{table}");

    // F002 is paid and leaves the feed: it still belongs to C1's history.
    folder.write_invoices(&[rows[0].clone(), rows[2].clone()]);
    assert_eq!(
        history_json(&folder, &["--customer", "C1"]),
        [("F001".to_string(), c1()), ("F002".to_string(), c1())]
    );
    assert!(history_json(&folder, &["--customer", "C9"]).is_empty());
}

#[test]
fn rows_journaled_before_customers_were_find_theirs_through_the_feeds() {
    let (folder, rows) = history_folder();
    // As a journal of an earlier relance left them: no customer.
    rusqlite::Connection::open(folder.path().join("state/relance.db"))
        .unwrap()
        .execute("UPDATE reminder SET customer_id = NULL", [])
        .unwrap();
    assert_eq!(
        history_json(&folder, &["--customer", "C1"]),
        [
            ("F001".to_string(), serde_json::json!("C1")),
            ("F002".to_string(), serde_json::json!("C1"))
        ]
    );
    // An old row whose invoice has left the feeds has no customer to show.
    folder.write_invoices(&[rows[0].clone(), rows[2].clone()]);
    let all = history_json(&folder, &[]);
    assert_eq!(all[1], ("F002".to_string(), serde_json::Value::Null));
    assert_eq!(history_json(&folder, &["--customer", "C1"]).len(), 1);
}
