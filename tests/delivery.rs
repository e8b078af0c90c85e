//! Delivery by `relance run`: `.eml` files in the outbox and SMTP to a real
//! server on 127.0.0.1, with what arrives parsed as MIME; refusals, retries
//! with backoff, crashes and signals in the middle of a batch, and exactly once.

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailparse::{MailAddr, MailHeaderMap, ParsedMail};

use common::*;
use smtp::{Mail, Script, SmtpServer};

// --- Helpers -----------------------------------------------------------------

/// `relance run --once --as-of AS_OF`.
fn run_once(folder: &Folder) -> Run {
    folder.run(&RUN_ONCE)
}

/// `relance run --once --as-of AS_OF` with the SMTP password variable set to
/// `password` (unset for `None`), and `RELANCE_LOG` set to `log`.
fn run_once_with_password(folder: &Folder, password: Option<&str>, log: &str) -> Run {
    let mut command = folder.command(&RUN_ONCE);
    match password {
        Some(password) => command.env("RELANCE_TEST_SMTP_PASSWORD", password),
        None => command.env_remove("RELANCE_TEST_SMTP_PASSWORD"),
    };
    command.env("RELANCE_LOG", log);
    command.output().expect("run relance").into()
}

/// A server that refuses the first `refused` messages, and a [`dunning_folder`]
/// of `n` invoices delivered to it and retried as `retry` says.
fn refusing_server_and_folder(refused: usize, retry: &str, n: usize) -> (SmtpServer, Folder) {
    let server = SmtpServer::refusing_first(refused);
    let folder = dunning_folder(
        &format!("{}\nretry: {retry}", server.delivery()),
        &invoices(n),
    );
    (server, folder)
}

/// The daemon (`relance run --as-of AS_OF`) started on `folder`, and the log
/// line of its first evaluation.
fn start_daemon(folder: &Folder) -> (Spawned, String) {
    let mut daemon = folder.spawn(&DAEMON);
    let done = daemon.expect_evaluation();
    (daemon, done)
}

/// The Message-IDs of the messages the server accepted, sorted.
fn accepted_ids(server: &SmtpServer) -> Vec<String> {
    message_ids(&server.accepted())
}

/// The Message-IDs of the messages, sorted; a duplicate would show twice.
fn message_ids(mails: &[Mail]) -> Vec<String> {
    let mut ids: Vec<String> = mails.iter().map(|m| m.header("Message-ID")).collect();
    ids.sort();
    ids
}

/// The Message-ID the journal gives the `overdue` reminder of each invoice.
fn expected_ids(numbers: impl IntoIterator<Item = usize>) -> Vec<String> {
    numbers
        .into_iter()
        .map(|i| format!("<F{i:03}.dunning.overdue.0@atelier-durand.fr>"))
        .collect()
}

/// The one address of an address header.
fn single(addr: &mailparse::MailHeader) -> mailparse::SingleInfo {
    match mailparse::addrparse_header(addr)
        .expect("an address list")
        .into_inner()
        .as_slice()
    {
        [MailAddr::Single(info)] => info.clone(),
        other => panic!("one address expected, got {other:?}"),
    }
}

/// A part's decoded body, with the CRLF line ends of MIME made LF.
fn body(part: &ParsedMail) -> String {
    part.get_body()
        .expect("a decodable body")
        .replace("\r\n", "\n")
}

/// The state of each journal row, in order.
fn states(folder: &Folder) -> Vec<String> {
    folder.journal().into_iter().map(|r| r.state).collect()
}

/// `n` journal states, each `sent`.
fn all_sent(n: usize) -> Vec<String> {
    vec!["sent".to_string(); n]
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// --- Outbox ------------------------------------------------------------------

/// A French invoice with a name that needs encoding (and HTML escaping), from
/// a company whose name needs encoding too, with text and HTML templates.
fn mime_folder() -> Folder {
    let folder = dunning_folder("", &[]);
    folder
        .write(
            "relance.yaml",
            "language: en\ncompany: {name: \"Atelier Durand — Réparations\", email: \"compta@atelier-durand.fr\"}\n",
        )
        .write_invoices(&[
            invoice_row("F001", "Café Noël & Fils", "compta@cafe-noel.fr")
                .with("customer_id", "C1")
                .with("amount", "1234.56")
                .with("language", "fr"),
        ])
        .write(
            "templates/overdue.fr.hbs",
            &template(
                "Relance — facture {{invoice.number}} échue : {{money invoice.amount_due}}",
                "Bonjour {{customer.name}},\nmerci de régler {{money invoice.amount_due}}.",
            ),
        )
        .write(
            "templates/overdue.fr.html.hbs",
            "<p>Bonjour {{customer.name}}, merci de régler {{money invoice.amount_due}}.</p>\n",
        );
    folder
}

#[test]
fn the_outbox_gets_one_proper_mime_email_per_reminder() {
    let folder = mime_folder();
    let preview = folder.run(&[
        "preview", "--as-of", AS_OF, "--days", "1", "--format", "json",
    ]);
    let subject = preview.json()[0]["subject"].as_str().unwrap().to_string();
    assert_starts_with(&subject, "Relance — facture F001 échue : 1");
    assert!(subject.ends_with('€'), "{subject}");

    let before = unix_now();
    run_once(&folder).expect_code(0);
    let files = folder.files("outbox");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("2026-12-01.F001.dunning.overdue.0.eml"));
    let raw = std::fs::read(&files[0]).unwrap();
    let mail = Mail {
        recipients: Vec::new(),
        raw,
    };
    let parsed = mail.parsed();

    // Headers are 7-bit: the UTF-8 subject and names are encoded words.
    let (head, _) = mailparse::parse_headers(&mail.raw).unwrap();
    assert!(
        head.iter().all(|h| h.get_value_raw().is_ascii()),
        "8-bit header in:\n{}",
        String::from_utf8_lossy(&mail.raw)
    );
    assert_eq!(parsed.headers.get_first_value("Subject").unwrap(), subject);
    let from = single(parsed.headers.get_first_header("From").unwrap());
    assert_eq!(
        from.display_name.as_deref(),
        Some("Atelier Durand — Réparations")
    );
    assert_eq!(from.addr, "compta@atelier-durand.fr");
    let to = single(parsed.headers.get_first_header("To").unwrap());
    assert_eq!(to.display_name.as_deref(), Some("Café Noël & Fils"));
    assert_eq!(to.addr, "compta@cafe-noel.fr");
    assert_eq!(
        mail.header("Message-ID"),
        "<F001.dunning.overdue.0@atelier-durand.fr>"
    );
    assert_eq!(mail.header("Message-ID"), folder.journal()[0].message_id);
    let date = mailparse::dateparse(&mail.header("Date")).expect("an RFC 5322 date");
    assert!(
        (before - 1..=unix_now() + 1).contains(&date),
        "Date is the sending time"
    );

    // multipart/alternative: the text as written, the HTML escaped.
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let parts: Vec<(&str, String)> = parsed
        .subparts
        .iter()
        .map(|p| (p.ctype.mimetype.as_str(), body(p)))
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].0, "text/plain");
    assert_starts_with(&parts[0].1, "Bonjour Café Noël & Fils,\nmerci de régler 1");
    assert_eq!(parts[1].0, "text/html");
    assert_contains(&parts[1].1, "<p>Bonjour Café Noël &amp; Fils, merci");

    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(folder.path().join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_text_only_template_makes_a_single_part_email() {
    let folder = dunning_folder("", &invoices(1));
    run_once(&folder).expect_code(0);
    let raw = std::fs::read(&folder.files("outbox")[0]).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(parsed.ctype.mimetype, "text/plain");
    assert_eq!(parsed.ctype.charset, "utf-8");
    assert!(parsed.subparts.is_empty());
    assert_eq!(
        body(&parsed).trim_end(),
        "Dear Customer 1,\nplease pay €100.00."
    );
}

#[test]
fn the_message_id_is_derived_from_the_reminder_identity() {
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let folder = mime_folder();
            run_once(&folder).expect_code(0);
            let raw = std::fs::read(&folder.files("outbox")[0]).unwrap();
            mailparse::parse_mail(&raw)
                .unwrap()
                .headers
                .get_first_value("Message-ID")
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "the same reminder gets the same Message-ID wherever it is sent"
    );
}

#[test]
fn a_customer_name_with_cr_lf_cannot_inject_a_header() {
    let folder = dunning_folder("feeds: [{path: data/invoices.json}]", &[]);
    folder
        .write(
            "data/invoices.json",
            r#"[{"number": "F001", "customer_id": "C1", "customer_name": "Evil\r\nBcc: spy@evil.example",
                "email": "victim@example.com", "issue_date": "2026-11-01", "due_date": "2026-11-30",
                "amount": "100.00", "language": "en"}]"#,
        )
        .write(
            "templates/overdue.en.hbs",
            &template("Invoice for {{customer.name}}", "Dear {{customer.name}}"),
        );
    run_once(&folder).expect_code(0);
    let raw = std::fs::read(&folder.files("outbox")[0]).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let parsed = mailparse::parse_mail(&raw).unwrap();

    assert!(parsed.headers.get_first_header("Bcc").is_none(), "{text}");
    let (headers, _) = text.split_once("\r\n\r\n").expect("headers, then the body");
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{text}"
    );
    let to = parsed.headers.get_all_headers("To");
    assert_eq!(to.len(), 1);
    let to = single(to[0]);
    assert_eq!(to.addr, "victim@example.com");
    assert!(to.display_name.unwrap().starts_with("Evil"));
    let subject = parsed.headers.get_first_value("Subject").unwrap();
    assert!(
        subject.starts_with("Invoice for Evil") && !subject.contains(['\r', '\n']),
        "{subject:?}"
    );
}

#[test]
fn without_a_config_emails_reach_the_outbox_from_a_placeholder_sender() {
    // docs/contract.md §1: no relance.yaml means all defaults: outbox delivery, and an
    // empty company.email, which must not fail every email.
    let folder = dunning_folder("", &invoices(2));
    folder.remove("relance.yaml");
    folder.write(
        "templates/overdue.fr.hbs",
        &template("Facture {{invoice.number}}", "Merci."),
    );
    let run = run_once(&folder).expect_code(0);
    let warnings = run.log_lines("company.email is empty");
    assert_eq!(warnings.len(), 1, "warned once:\n{}", run.stderr);
    assert_contains(warnings[0], "WARN");
    assert_contains(warnings[0], "relance@localhost");

    assert_eq!(states(&folder), ["sent", "sent"]);
    let files = folder.files("outbox");
    assert_eq!(files.len(), 2, "{files:?}");
    let mail = Mail {
        recipients: Vec::new(),
        raw: std::fs::read(&files[0]).unwrap(),
    };
    let from = single(mail.parsed().headers.get_first_header("From").unwrap());
    assert_eq!(
        (from.display_name, from.addr.as_str()),
        (None, "relance@localhost")
    );
    assert_eq!(
        mail.header("Message-ID"),
        "<F001.dunning.overdue.0@localhost>"
    );
    assert_eq!(mail.header("Message-ID"), folder.journal()[0].message_id);
}

// --- SMTP --------------------------------------------------------------------

#[test]
fn every_reminder_arrives_once_over_smtp() {
    let server = SmtpServer::accepting();
    let mut rows = invoices(2);
    rows.push(invoice_row(
        "F003",
        "Two Desks Ltd",
        "ap@two.example;boss@two.example",
    ));
    let folder = dunning_folder(&server.delivery(), &rows);

    run_once(&folder).expect_code(0);
    let mails = server.wait_for_accepted(3);
    assert_eq!(message_ids(&mails), expected_ids(1..=3));
    let journal = folder.journal();
    assert_eq!(states(&folder), all_sent(3));
    for row in &journal {
        let mail = mails
            .iter()
            .find(|m| m.header("Message-ID") == row.message_id)
            .unwrap();
        assert_eq!(mail.header("Subject"), row.subject);
        assert_eq!(
            mail.header("Subject"),
            format!("Invoice {} is overdue", row.invoice)
        );
        assert_eq!(row.attempts, 1);
    }
    let two = mails
        .iter()
        .find(|m| m.header("Message-ID").starts_with("<F003."))
        .unwrap();
    assert_eq!(two.recipients, ["ap@two.example", "boss@two.example"]);
    let one = mails
        .iter()
        .find(|m| m.header("Message-ID").starts_with("<F001."))
        .unwrap();
    assert_eq!(one.recipients, ["c1@example.com"]);
    assert!(body(&one.parsed()).contains("please pay €100.00."));

    // The same date again: nothing is sent twice.
    run_once(&folder).expect_code(0);
    assert_eq!(server.attempts().len(), 3);
}

/// Customer C1 with, on [`AS_OF`], an invoice a day overdue (F001) and two
/// coming due in a week (F002, F003), whose policy combines them into one
/// email (`delivery`: the `delivery:` line of the config).
fn combining_folder(delivery: &str) -> Folder {
    let c1 = |number: &str, due: &str| {
        invoice_row(number, "Customer One", "ap@one.example")
            .with("customer_id", "C1")
            .with("due_date", due)
    };
    let folder = dunning_folder(
        &format!("{delivery}\ncontact: {{combine: true}}"),
        &[
            c1("F001", "2026-11-30"),
            c1("F002", "2026-12-08"),
            c1("F003", "2026-12-08"),
        ],
    );
    folder
        .write(
            "rules/dunning.yaml",
            &policy(
                "dunning",
                &[
                    "{id: courtesy, offset: -7, template: overdue}",
                    "{id: overdue, offset: 1, template: overdue}",
                ],
            ),
        )
        .write(
            "templates/combined.en.hbs",
            &template(
                "Your invoices, {{customer.name}}",
                "Coming due:{{#each due_soon}} {{this.number}}{{/each}}\n\
                 Overdue:{{#each overdue}} {{this.number}}{{/each}}",
            ),
        );
    folder
}

/// The Message-ID of C1's combined email of [`combining_folder`].
const COMBINED_ID: &str = "<customer.C1.combined.2026-12-01.F001@atelier-durand.fr>";

/// Asserts that `mail` is C1's whole combined email, and that its three
/// reminders are journaled `sent` under its Message-ID.
fn assert_combined_email_sent(folder: &Folder, mail: &Mail) {
    assert_eq!(mail.header("Message-ID"), COMBINED_ID);
    assert_eq!(mail.recipients, ["ap@one.example"]);
    assert_eq!(mail.header("Subject"), "Your invoices, Customer One");
    assert_eq!(
        body(&mail.parsed()).trim_end(),
        "Coming due: F002 F003\nOverdue: F001"
    );
    let sent: Vec<(String, String, String)> = folder
        .journal()
        .into_iter()
        .filter(|r| r.state != "skipped")
        .map(|r| (r.invoice, r.state, r.message_id))
        .collect();
    let row = |invoice: &str| (invoice.to_string(), "sent".into(), COMBINED_ID.to_string());
    assert_eq!(sent, [row("F001"), row("F002"), row("F003")]);
}

#[test]
fn a_customers_reminders_of_a_day_combined_arrive_as_one_email_over_smtp() {
    let server = SmtpServer::accepting();
    let folder = combining_folder(&server.delivery());
    run_once(&folder).expect_code(0);
    let mails = server.wait_for_accepted(1);
    assert_eq!(mails.len(), 1, "three reminders, one email");
    assert_combined_email_sent(&folder, &mails[0]);

    // The same date again: nothing is sent twice.
    run_once(&folder).expect_code(0);
    assert_eq!(server.attempts().len(), 1);
}

#[test]
fn a_combined_email_killed_in_the_middle_of_smtp_goes_out_once_whole_after_the_restart() {
    let first = SmtpServer::holding(0);
    let folder = combining_folder(&first.delivery_in_order());
    let mut crashed = folder.spawn(&RUN_ONCE);
    first.wait_until_holding();
    crashed.kill();
    first.release(false);
    let planned: Vec<String> = folder
        .journal()
        .into_iter()
        .filter(|r| r.state != "skipped")
        .map(|r| r.state)
        .collect();
    assert_eq!(planned, ["planned", "planned", "planned"]);

    let second = SmtpServer::accepting();
    move_to(&folder, &first, &second);
    let run = run_once(&folder).expect_code(0);
    assert_contains(&run.stderr, "recovered=3");
    let mails = second.wait_for_accepted(1);
    assert_eq!(mails.len(), 1, "the message once, not once per reminder");
    assert_combined_email_sent(&folder, &mails[0]);
    assert!(first.accepted().is_empty());
}

const PASSWORD: &str = "s3cret-Pa55word";

fn smtp_auth_folder(server: &SmtpServer) -> Folder {
    dunning_folder(
        &format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {}, tls: none, user: relance, password_env: RELANCE_TEST_SMTP_PASSWORD}}",
            server.port
        ),
        &invoices(2),
    )
}

/// Whether `secret` appears in any file of the folder (config, journal and its WAL, outbox…).
fn folder_contains(folder: &Folder, secret: &str) -> bool {
    fn walk(dir: &std::path::Path, secret: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path, secret)
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                bytes.windows(secret.len()).any(|w| w == secret)
            }
        })
    }
    walk(folder.path(), secret.as_bytes())
}

#[test]
fn smtp_logs_in_with_the_password_from_the_environment_and_writes_it_nowhere() {
    let server = SmtpServer::with_login("relance", PASSWORD);
    let folder = smtp_auth_folder(&server);
    let run = run_once_with_password(&folder, Some(PASSWORD), "trace").expect_code(0);
    assert!(!server.logins().is_empty());
    assert!(
        server
            .logins()
            .iter()
            .all(|l| *l == ("relance".to_string(), PASSWORD.to_string())),
        "{:?}",
        server.logins()
    );
    assert_eq!(
        message_ids(&server.wait_for_accepted(2)),
        expected_ids(1..=2)
    );
    assert!(!run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
    assert!(!folder_contains(&folder, PASSWORD));
}

#[test]
fn a_wrong_smtp_password_fails_the_delivery_without_revealing_it() {
    let server = SmtpServer::with_login("relance", "the-right-one");
    let folder = smtp_auth_folder(&server);
    let run = run_once_with_password(&folder, Some(PASSWORD), "info").expect_code(1);
    assert!(server.accepted().is_empty());
    let journal = folder.journal();
    assert_eq!(states(&folder), ["failed", "failed"]);
    let error = journal[0].last_error.as_deref().unwrap();
    assert_contains(error, "535");
    assert!(!run.stderr.contains(PASSWORD));
    assert!(!folder_contains(&folder, PASSWORD));
}

#[test]
fn smtp_without_its_password_variable_refuses_to_start() {
    let server = SmtpServer::accepting();
    let folder = smtp_auth_folder(&server);
    let run = run_once_with_password(&folder, None, "info").expect_code(1);
    assert_contains(
        &run.stderr,
        "environment variable RELANCE_TEST_SMTP_PASSWORD is not set",
    );
    assert!(server.attempts().is_empty());
}

#[test]
fn smtp_without_a_sender_address_refuses_to_start() {
    let server = SmtpServer::accepting();
    for company in ["", "company: {name: Atelier, email: \"compta at atelier\"}"] {
        let folder = dunning_folder(&server.delivery(), &invoices(1));
        folder.write(
            "relance.yaml",
            &format!("language: en\n{company}\n{}\n", server.delivery()),
        );
        let run = run_once(&folder).expect_code(1);
        // The config's validation finds it, as `check` does.
        let expected = if company.is_empty() {
            "relance.yaml: company.email is empty: SMTP delivery needs the sender address"
        } else {
            "company.email \"compta at atelier\" is not an email address"
        };
        assert_contains(&run.stderr, expected);
        assert!(
            !folder.path().join("state").exists(),
            "refused before the journal is opened"
        );
    }
    assert!(server.attempts().is_empty());
}

// --- Failures and retries ----------------------------------------------------

#[test]
fn a_refusing_server_gets_retries_with_backoff_and_every_reminder_arrives_once() {
    // Three reminders; the first four DATA commands are refused: all three at
    // the first evaluation, then F001 again at its first retry.
    let (server, folder) = refusing_server_and_folder(4, "{first: 1s, max: 2s, attempts: 5}", 3);
    let (mut daemon, done) = start_daemon(&folder);
    assert_contains(&done, "sent=0 failed=3");
    for row in folder.journal() {
        assert_eq!(row.state, "failed", "never sent while refused: {row:?}");
        assert_eq!(row.attempts, 1);
        assert!(
            row.last_error.as_deref().unwrap().contains("451"),
            "{row:?}"
        );
        assert!(row.next_try_at.is_some(), "{row:?}");
    }

    let mails = server.wait_for_accepted(3);
    assert!(
        wait_until(DEADLINE, || states(&folder) == all_sent(3)),
        "{:?}",
        folder.journal()
    );
    assert_eq!(
        message_ids(&mails),
        expected_ids(1..=3),
        "each arrives exactly once"
    );
    let attempts: Vec<u32> = folder.journal().iter().map(|r| r.attempts).collect();
    assert_eq!(attempts, [3, 2, 2]);
    assert!(
        folder
            .journal()
            .iter()
            .all(|r| r.last_error.is_none() && r.next_try_at.is_none())
    );

    // Exponential backoff: F001 was tried again after ~1 s, then after ~2 s.
    let tries: Vec<Instant> = server
        .attempts()
        .into_iter()
        .filter(|(_, to)| to == &["c1@example.com"])
        .map(|(at, _)| at)
        .collect();
    assert_eq!(tries.len(), 3);
    let (first, second) = (tries[1] - tries[0], tries[2] - tries[1]);
    assert!(first >= Duration::from_millis(900), "{first:?}");
    assert!(second >= Duration::from_millis(1900), "{second:?}");
    assert!(second > first);

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(DEADLINE).code(), Some(0));
    let failures = daemon
        .log
        .iter()
        .filter(|l| l.contains("delivery failed"))
        .count();
    assert_eq!(failures, 4, "{}", daemon.log.join("\n"));
}

#[test]
fn a_reminder_that_keeps_failing_is_given_up_after_its_last_attempt() {
    let (server, folder) =
        refusing_server_and_folder(usize::MAX, "{first: 1s, max: 1s, attempts: 2}", 1);
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_line(DEADLINE, "giving up", |l| l.contains("giving up"));
    let row = &folder.journal()[0];
    assert_eq!((row.state.as_str(), row.attempts), ("failed", 2));
    assert_eq!(row.next_try_at, None);
    assert!(row.last_error.as_deref().unwrap().contains("451"));
    assert!(server.accepted().is_empty());
    assert_eq!(server.attempts().len(), 2);
}

// --- Crashes and signals in the middle of a batch ----------------------------

/// A folder of `n` reminders whose delivery was SIGKILLed while `first` held
/// a message (its script's `hold`): the messages before it accepted, the rest
/// left `planned`.
fn crash_while_holding(first: &SmtpServer, n: usize) -> Folder {
    let folder = dunning_folder(&first.delivery_in_order(), &invoices(n));
    let mut crashed = folder.spawn(&RUN_ONCE);
    first.wait_until_holding();
    crashed.kill();
    first.release(false);
    folder
}

/// Points the folder's config at another SMTP server.
fn move_to(folder: &Folder, from: &SmtpServer, to: &SmtpServer) {
    let config = folder.read("relance.yaml");
    folder.write(
        "relance.yaml",
        &config.replace(&from.delivery_in_order(), &to.delivery_in_order()),
    );
}

#[test]
fn sigkill_in_the_middle_of_an_smtp_batch_loses_nothing_and_sends_nothing_twice() {
    // Five reminders; the server holds the third until relance has been killed.
    let first = SmtpServer::holding(2);
    let folder = crash_while_holding(&first, 5);
    assert_eq!(accepted_ids(&first), expected_ids(1..=2));
    assert_eq!(
        states(&folder),
        ["sent", "sent", "planned", "planned", "planned"],
        "accepted messages are journaled sent at once; the rest stays planned"
    );

    // Restarted against a server that accepts everything.
    let second = SmtpServer::accepting();
    move_to(&folder, &first, &second);
    run_once(&folder).expect_code(0);
    assert_eq!(accepted_ids(&second), expected_ids(3..=5));
    let mut all = first.accepted();
    all.extend(second.accepted());
    assert_eq!(
        message_ids(&all),
        expected_ids(1..=5),
        "nothing lost, nothing twice"
    );
    assert_eq!(states(&folder), all_sent(5));
}

#[test]
fn sigterm_finishes_the_message_in_flight_then_the_daemon_exits_0() {
    assert_finishes_the_message_in_flight(&DAEMON, "TERM");
}

#[test]
fn sigint_finishes_the_message_in_flight_then_run_once_exits_0() {
    assert_finishes_the_message_in_flight(&RUN_ONCE, "INT");
}

/// Four reminders; `signal` arrives while the server holds the second: it is
/// delivered and journaled `sent`, the other two stay `planned` for the next
/// start, and relance exits 0.
fn assert_finishes_the_message_in_flight(args: &[&str], signal: &str) {
    let server = SmtpServer::holding(1);
    let folder = dunning_folder(&server.delivery_in_order(), &invoices(4));
    let mut relance = folder.spawn(args);
    server.wait_until_holding();
    relance.signal(signal);
    relance.expect_line(DEADLINE, "acknowledging the signal", |l| {
        l.contains("finishing the message in flight")
    });
    server.release(true);
    let status = relance.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", relance.log.join("\n"));
    assert_eq!(accepted_ids(&server), expected_ids(1..=2));
    assert_eq!(states(&folder), ["sent", "sent", "planned", "planned"]);

    // The next start delivers the rest.
    run_once(&folder).expect_code(0);
    assert_eq!(accepted_ids(&server), expected_ids(1..=4));
    assert_eq!(states(&folder), all_sent(4));
}

#[test]
fn a_second_run_never_sends_what_a_running_daemon_is_delivering() {
    let server = SmtpServer::holding(1);
    let folder = dunning_folder(&server.delivery_in_order(), &invoices(3));
    let mut daemon = folder.spawn(&DAEMON);
    server.wait_until_holding();

    // The daemon is in the middle of its batch: F002 in flight, F003 planned.
    let racing = folder
        .run(&["run", "--once", "--confirm", "--as-of", AS_OF])
        .expect_code(0);
    assert_contains(&racing.stderr, "due=0 sent=0");
    assert_eq!(server.attempts().len(), 2, "the second run sent nothing");

    server.release(true);
    assert_eq!(
        message_ids(&server.wait_for_accepted(3)),
        expected_ids(1..=3)
    );
    assert!(wait_until(DEADLINE, || states(&folder) == all_sent(3)));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(DEADLINE).code(), Some(0));
    assert_eq!(server.attempts().len(), 3, "each reminder was sent once");
}

#[test]
fn a_failed_reminder_whose_invoice_is_paid_before_its_retry_is_skipped() {
    let (server, folder) = refusing_server_and_folder(1, "{first: 2s, max: 2s, attempts: 5}", 1);
    let (mut daemon, done) = start_daemon(&folder);
    assert_contains(&done, "failed=1");

    folder.write_invoices(&[
        invoice_row("F001", "Customer 1", "c1@example.com").with("status", "paid")
    ]);
    daemon.expect_line(DEADLINE, "reloading the feed", |l| l.contains("reload ok:"));
    daemon.expect_line(DEADLINE, "dropping the retry", |l| {
        l.contains("not retried")
    });
    let row = &folder.journal()[0];
    assert_eq!(row.state, "skipped");
    assert_eq!(
        row.last_error.as_deref(),
        Some("the invoice is no longer open")
    );
    assert!(server.accepted().is_empty());
    assert_eq!(server.attempts().len(), 1);
}

#[test]
fn two_runs_recovering_the_same_crash_send_each_reminder_once() {
    let first = SmtpServer::holding(0);
    let folder = crash_while_holding(&first, 3);
    assert_eq!(states(&folder), ["planned", "planned", "planned"]);

    // Two runs start after the crash: the first is delivering F001 (held by
    // the server) when the second looks at what the crash left.
    let second = SmtpServer::holding(0);
    move_to(&folder, &first, &second);
    let mut recovering = folder.spawn(&RUN_ONCE);
    second.wait_until_holding();
    run_once(&folder).expect_code(0);
    second.release(true);
    let status = recovering.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", recovering.log.join("\n"));

    assert_eq!(
        accepted_ids(&second),
        expected_ids(1..=3),
        "each reminder arrives once"
    );
    assert_eq!(states(&folder), all_sent(3));
}

// --- Delivery faults ---------------------------------------------------------

/// A server that refuses `reject` for good (550) and accepts the rest.
fn rejecting(reject: &'static [&'static str]) -> SmtpServer {
    SmtpServer::start(Script {
        reject,
        ..Script::default()
    })
}

/// The journal row of `invoice`.
fn row_of(folder: &Folder, invoice: &str) -> common::JournalRow {
    folder
        .journal()
        .into_iter()
        .find(|r| r.invoice == invoice)
        .unwrap_or_else(|| panic!("{invoice} is journaled"))
}

#[test]
fn a_server_that_never_answers_costs_the_timeout_and_a_retry_not_a_hang() {
    // Accepts connections, keeps them open, never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().flatten().collect();
        drop(held);
    });
    let folder = dunning_folder(
        &format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {port}, tls: none, timeout: 1s}}\nretry: {{first: 1h}}"
        ),
        &invoices(2),
    );
    let started = Instant::now();
    let run = run_once(&folder).expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    for row in folder.journal() {
        assert_eq!(row.state, "failed", "{row:?}");
        assert!(row.next_try_at.is_some(), "a timeout is temporary: {row:?}");
    }
    assert_eq!(run.log_lines("giving up").len(), 0, "{}", run.stderr);
    // The summary says what is still to be retried, and when.
    assert_eq!(
        run.log_lines("2 failed delivery(ies) will be retried; the next retry is due at")
            .len(),
        1,
        "{}",
        run.stderr
    );
    let summary = run.log_lines("evaluation done");
    assert_contains(summary[0], "retries=2 next_retry=");

    // The daemon meets the same server, logs the failures, and goes on.
    let (mut daemon, done) = start_daemon(&folder);
    assert_contains(&done, "evaluation done");
    assert!(daemon.running());
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn a_mute_server_costs_a_few_timeouts_then_the_rest_of_the_pass_waits_for_its_retry() {
    // Accepts connections, keeps them open, never says a word; counts them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let n = 12;
    let folder = dunning_folder(
        &format!(
            "delivery: {{kind: smtp, host: 127.0.0.1, port: {port}, tls: none, timeout: 1s}}\nretry: {{first: 1h}}"
        ),
        &invoices(n),
    );
    let run = run_once(&folder).expect_code(1);
    let rows = folder.journal();
    assert_eq!(rows.len(), n);
    let errors: Vec<String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.state, "failed", "{r:?}");
            assert!(r.next_try_at.is_some(), "temporary, backed off: {r:?}");
            r.last_error.clone().unwrap()
        })
        .collect();
    let timed_out = errors
        .iter()
        .filter(|e| e.starts_with("SMTP: timed out after 1 s"))
        .count();
    let not_tried = errors
        .iter()
        .filter(|e| {
            e.starts_with(
                "SMTP: not tried in this pass: the server failed the last 3 attempts in a row",
            )
        })
        .count();
    // The four senders' first attempts time out together; after three in
    // a row, the other emails are not tried (a sender or two may have
    // started one more while the others were still being counted).
    assert!((3..=6).contains(&timed_out), "{errors:#?}");
    assert_eq!(timed_out + not_tried, n, "{errors:#?}");
    let tried = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried <= 6, "{tried} connections");
    assert!(
        !run.stderr.contains("Resource temporarily unavailable"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.log_lines("SMTP server unreachable: ").len(),
        1,
        "logged once: {}",
        run.stderr
    );
    assert_contains(run.log_lines("evaluation done")[0], &format!("failed={n} "));
}

#[test]
fn a_stalled_answer_holds_neither_the_other_emails_nor_the_call_sheets() {
    // The default `delivery.connections` (4): several senders.
    let server = SmtpServer::holding(0);
    let folder = dunning_folder(&server.delivery(), &invoices(4));
    folder.write(
        "rules/calls.yaml",
        "name: calls\npriority: 10\napplies_to: 'invoice.number == \"F004\"'\nstages:\n  - {id: call, offset: 1, channel: call, template: overdue}\n",
    );
    let mut run = folder.spawn(&RUN_ONCE);
    server.wait_until_holding();
    // While one connection waits for the held answer, the other emails go
    // out and the call sheet is written and journaled.
    server.wait_for_accepted(2);
    assert!(
        wait_until(DEADLINE, || {
            folder
                .journal()
                .iter()
                .filter(|r| r.state == "sent")
                .count()
                == 3
        }),
        "{:?}",
        folder.journal()
    );
    assert_eq!(row_of(&folder, "F004").channel, "call");
    assert_eq!(folder.files("tasks").len(), 1);
    server.release(true);
    assert_eq!(run.wait_exit(DEADLINE).code(), Some(0));
    assert_eq!(states(&folder), all_sent(4));
    assert_eq!(accepted_ids(&server), expected_ids(1..=3), "each once");
}

#[test]
fn a_permanent_refusal_is_not_retried_until_relance_retry_requeues_it() {
    let server = rejecting(&["c1@example.com"]);
    let folder = dunning_folder(
        &format!("{}\nretry: {{first: 1s}}", server.delivery()),
        &invoices(2),
    );
    let run = run_once(&folder).expect_code(1);
    let failed = row_of(&folder, "F001");
    assert_eq!(
        (failed.state.as_str(), failed.next_try_at.as_deref()),
        ("failed", None)
    );
    let error = failed.last_error.unwrap();
    assert_contains(&error, "550");
    assert_contains(
        &error,
        "permanent: not retried; `relance retry F001` re-queues it",
    );
    assert_eq!(row_of(&folder, "F002").state, "sent");
    assert_eq!(
        run.log_lines("delivery failed, giving up").len(),
        1,
        "{}",
        run.stderr
    );
    assert_contains(run.log_lines("evaluation done")[0], "retries=0");
    let history = folder.run(&["history", "F001"]).expect_code(0);
    assert_contains(&history.stdout, "failed");
    assert_contains(&history.stdout, "permanent: not retried");

    assert_contains(run.log_lines("evaluation done")[0], "given_up=1");
    // No automatic retry: the next run leaves it alone, and says so again.
    let later = run_once(&folder).expect_code(0);
    assert_eq!(server.attempts().len(), 1, "F002 only");
    assert_eq!(
        later
            .log_lines("1 failed delivery(ies) will not be retried: `relance history` says why; `relance retry INVOICE…`")
            .len(),
        1,
        "{}",
        later.stderr
    );
    assert_contains(later.log_lines("evaluation done")[0], "given_up=1");

    folder.run(&["retry"]).expect_code(2);
    folder.run(&["retry", "F001", "--all"]).expect_code(2);
    let missing = folder.run(&["retry", "F002", "F001"]).expect_code(1);
    assert_contains(&missing.stderr, "invoice F002 has no failed reminder");
    assert_contains(&missing.stdout, "F001: 1 failed reminder(s) re-queued");
    assert!(row_of(&folder, "F001").next_try_at.is_some());
    // Re-queued, it is tried again at the next run (and refused again).
    run_once(&folder).expect_code(1);
    assert_eq!(
        server.attempts().len(),
        1,
        "a refused RCPT never reaches DATA"
    );
    assert_eq!(row_of(&folder, "F001").attempts, 1, "counted afresh");
    folder.run(&["retry", "--all"]).expect_code(0);
}

#[test]
fn a_recipient_refused_for_now_does_not_keep_the_message_from_the_other() {
    let server = SmtpServer::start(Script {
        defer: &["busy@two.example"],
        ..Script::default()
    });
    let folder = dunning_folder(
        &server.delivery(),
        &[invoice_row(
            "F001",
            "Two Desks Ltd",
            "ap@two.example;busy@two.example",
        )],
    );
    let run = run_once(&folder).expect_code(0);
    let mails = server.wait_for_accepted(1);
    assert_eq!(mails[0].recipients, ["ap@two.example"]);
    let row = row_of(&folder, "F001");
    assert_eq!(row.state, "sent");
    assert_eq!(row.recipient, "ap@two.example", "who got it");
    let refused = row.last_error.unwrap();
    assert_contains(&refused, "refused by busy@two.example");
    assert_contains(&refused, "451");
    assert_eq!(
        run.log_lines("some recipients refused the message").len(),
        1
    );
    run_once(&folder).expect_code(0);
    assert_eq!(server.accepted().len(), 1, "not sent again");
}

#[test]
fn a_refused_recipient_does_not_keep_the_message_from_the_other() {
    let server = rejecting(&["gone@two.example"]);
    let folder = dunning_folder(
        &server.delivery(),
        &[invoice_row(
            "F001",
            "Two Desks Ltd",
            "ap@two.example;gone@two.example",
        )],
    );
    run_once(&folder).expect_code(0);
    let mails = server.wait_for_accepted(1);
    assert_eq!(mails[0].recipients, ["ap@two.example"]);
    assert_eq!(message_ids(&mails), expected_ids([1]));
    let row = row_of(&folder, "F001");
    assert_eq!(row.state, "sent");
    assert_eq!(row.recipient, "ap@two.example", "who got it");
    let refused = row.last_error.unwrap();
    assert_contains(&refused, "gone@two.example");
    assert_contains(&refused, "550");
    run_once(&folder).expect_code(0);
    assert_eq!(server.accepted().len(), 1, "not sent again");
}
