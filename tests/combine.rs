//! One email per customer per day (`contact: {combine: true}`), end to end
//! on the binary: a customer's email reminders of a day in one `combined`
//! message with a section for invoices coming due and one for overdue ones,
//! in `preview`, `explain`, the outbox and the journal, after a crash, and
//! per policy; letters and thank-yous stay apart; `check` finds a missing
//! `combined` template. (Over SMTP: tests/delivery.rs.)

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

/// Customer C1 (one address) has, on [`AS_OF`], two invoices coming due
/// (A1 and A2: their courtesy note, A1 still offering its discount), one a
/// day overdue (A3) and one a month overdue (A4, whose letter fires); B1,
/// another customer's, gets its courtesy note alone. `config` adds to the
/// sender's identity (e.g. `contact: {combine: true}`).
fn combine_folder(config: &str) -> Folder {
    let c1 = |number: &str, due: &str, amount: &str| {
        invoice_row(number, "Customer One", "ap@one.example")
            .with("customer_id", "C1")
            .with("due_date", due)
            .with("amount", amount)
    };
    let folder = dunning_folder(
        config,
        &[
            c1("A1", "2026-12-08", "100.00").with("issue_date", "2026-11-25"),
            c1("A2", "2026-12-08", "250.00"),
            c1("A3", "2026-11-30", "80.00"),
            c1("A4", "2026-10-31", "40.00").with("issue_date", "2026-10-01"),
            invoice_row("B1", "Customer Two", "ap@two.example")
                .with("customer_id", "C2")
                .with("due_date", "2026-12-08"),
        ],
    );
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\ndiscount: {percent: 2, within_days: 10}\nstages:\n\
             \x20 - {id: courtesy, offset: -7, template: before_due}\n\
             \x20 - {id: overdue, offset: 1, template: overdue}\n\
             \x20 - {id: notice, offset: 30, channel: letter, template: notice}\n",
        )
        .write(
            "templates/before_due.en.hbs",
            &template("Invoice {{invoice.number}} is due soon", "Please pay."),
        )
        .write(
            "templates/notice.en.hbs",
            &template("Formal notice {{invoice.number}}", "Pay now."),
        )
        .write(
            "templates/combined.en.hbs",
            &template(
                "Your invoices, {{customer.name}}",
                "Coming due:\n\
                 {{#each due_soon}}\n\
                 - {{number}} due {{due_date}}: {{amount_due}} ({{stage.id}}){{#if discount.available}}, {{discount.amount}} off until {{discount.deadline}}{{/if}}\n\
                 {{/each}}\n\
                 Overdue:\n\
                 {{#each overdue}}\n\
                 - {{number}}, {{this.days_overdue}} days late: {{amount_due}} ({{stage.id}})\n\
                 {{/each}}\n\
                 Total: {{#each totals}}{{amount_due}} {{currency}}{{/each}}",
            ),
        );
    folder
}

const COMBINE: &str = "contact: {combine: true}";

/// The message C1's email reminders share on [`AS_OF`].
const C1_MESSAGE: &str = "customer.C1.combined.2026-12-01.A1";

/// The combined body of C1's message on [`AS_OF`].
const C1_BODY: &str = "Coming due:\n\
                       - A1 due 2026-12-08: 100.00 (courtesy), 2.00 off until 2026-12-05\n\
                       - A2 due 2026-12-08: 250.00 (courtesy)\n\
                       Overdue:\n\
                       - A3, 1 days late: 80.00 (overdue)\n\
                       Total: 430.00 EUR";

/// `preview --as-of AS_OF --days 1 --format json [extra…]`, parsed.
fn preview(folder: &Folder, extra: &[&str]) -> Vec<serde_json::Value> {
    let args = [
        "preview", "--as-of", AS_OF, "--days", "1", "--format", "json",
    ];
    let run = folder.run(&[&args[..], extra].concat()).expect_code(0);
    run.json().as_array().expect("a JSON array").clone()
}

fn s(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Each preview row's (invoice, stage, template, message).
fn messages(rows: &[serde_json::Value]) -> Vec<[String; 4]> {
    rows.iter()
        .map(|r| ["invoice", "stage", "template", "message"].map(|key| s(&r[key])))
        .collect()
}

fn row(invoice: &str, stage: &str, template: &str, message: &str) -> [String; 4] {
    [invoice, stage, template, message].map(str::to_string)
}

/// Each journal row's (invoice, stage, state, message token, Message-ID).
fn journal_messages(folder: &Folder) -> Vec<[String; 5]> {
    let db = rusqlite::Connection::open(folder.path().join("state/relance.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT invoice, stage, state, message, message_id FROM reminder ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The decoded text body of an email, with LF line ends.
fn email_body(raw: &[u8]) -> String {
    let mail = mailparse::parse_mail(raw).expect("a MIME message");
    mail.get_body().expect("a body").replace("\r\n", "\n")
}

#[test]
fn preview_gives_a_customers_email_reminders_of_a_day_one_message_and_its_letter_its_own() {
    let folder = combine_folder(COMBINE);
    let rows = preview(&folder, &["--render"]);
    assert_eq!(
        messages(&rows),
        [
            row("A1", "courtesy", "combined", C1_MESSAGE),
            row("A2", "courtesy", "combined", C1_MESSAGE),
            row("A3", "overdue", "combined", C1_MESSAGE),
            // A letter is never merged into an email.
            row("A4", "notice", "notice", "A4.dunning.notice.0"),
            // A customer's lone reminder keeps its own template and id.
            row("B1", "courtesy", "before_due", "B1.dunning.courtesy.0"),
        ]
    );
    for r in &rows[..3] {
        assert_eq!(r["subject"], "Your invoices, Customer One", "{r:#}");
        assert_eq!(s(&r["body"]).trim_end(), C1_BODY, "{r:#}");
        assert_eq!(r["to"], "ap@one.example");
        assert_eq!(r["channel"], "email");
    }
    // Each row keeps its own invoice's facts.
    let own: Vec<String> = rows[..3].iter().map(|r| s(&r["amount_due"])).collect();
    assert_eq!(own, ["100.00", "250.00", "80.00"]);
    assert_eq!(rows[3]["subject"], "Formal notice A4");

    // A table shows the message once, with the invoices it covers.
    let table = folder
        .run(&["preview", "--as-of", AS_OF, "--days", "1", "--render"])
        .expect_code(0);
    assert_eq!(
        table
            .stdout
            .matches("Subject: Your invoices, Customer One")
            .count(),
        1,
        "{}",
        table.stdout
    );
    assert_contains(
        &table.stdout,
        "=== 2026-12-01  Customer One (one message for A1, A2, A3)  courtesy  email (dunning)",
    );
}

#[test]
fn explain_shows_the_combined_message_a_reminder_goes_out_in() {
    let folder = combine_folder(COMBINE);
    let rows = preview(&folder, &[]);
    for (invoice, r) in ["A1", "A2", "A3"].iter().zip(&rows) {
        let explained = folder
            .run(&["explain", invoice, "--as-of", AS_OF, "--format", "json"])
            .expect_code(0)
            .json();
        for key in ["message", "to", "subject"] {
            assert_eq!(explained["fires"][key], r[key], "{invoice}: {key}");
        }
    }
}

#[test]
fn without_combine_each_reminder_is_its_own_message() {
    let folder = combine_folder("");
    assert_eq!(
        messages(&preview(&folder, &[])),
        [
            row("A1", "courtesy", "before_due", "A1.dunning.courtesy.0"),
            row("A2", "courtesy", "before_due", "A2.dunning.courtesy.0"),
            row("A3", "overdue", "overdue", "A3.dunning.overdue.0"),
            row("A4", "notice", "notice", "A4.dunning.notice.0"),
            row("B1", "courtesy", "before_due", "B1.dunning.courtesy.0"),
        ]
    );
}

#[test]
fn a_customers_statement_alone_stays_a_statement_and_with_a_courtesy_note_is_combined() {
    let folder = combine_folder(COMBINE);
    folder
        .write(
            "rules/dunning.yaml",
            "name: dunning\nstages:\n\
             \x20 - {id: courtesy, offset: -7, template: before_due}\n\
             \x20 - {id: overdue, offset: 1, template: statement, group: customer}\n",
        )
        .write(
            "templates/statement.en.hbs",
            &template("Statement", "{{#each invoices}}{{number}} {{/each}}"),
        );
    let c1 = |number: &str, due: &str| {
        invoice_row(number, "Customer One", "ap@one.example")
            .with("customer_id", "C1")
            .with("due_date", due)
    };
    let mut rows = vec![
        c1("S1", "2026-11-30"),
        c1("S2", "2026-11-30"),
        c1("S3", "2026-12-09"),
    ];
    folder.write_invoices(&rows);
    let plan = |folder: &Folder| {
        let run = folder
            .run(&[
                "preview", "--as-of", AS_OF, "--days", "2", "--format", "json",
            ])
            .expect_code(0);
        messages(run.json().as_array().unwrap())
    };
    // 1 December: S1 and S2's statement only, which its own template
    // writes; 2 December: S3's courtesy note alone.
    assert_eq!(
        plan(&folder),
        [
            row(
                "S1",
                "overdue",
                "statement",
                "customer.C1.statement.2026-12-01.S1"
            ),
            row(
                "S2",
                "overdue",
                "statement",
                "customer.C1.statement.2026-12-01.S1"
            ),
            row("S3", "courtesy", "before_due", "S3.dunning.courtesy.0"),
        ]
    );
    // A courtesy note due on 1 December too: the statement and the note are
    // one combined message.
    rows.push(c1("S4", "2026-12-08"));
    folder.write_invoices(&rows);
    let combined = "customer.C1.combined.2026-12-01.S1";
    assert_eq!(
        plan(&folder),
        [
            row("S1", "overdue", "combined", combined),
            row("S2", "overdue", "combined", combined),
            row("S4", "courtesy", "combined", combined),
            row("S3", "courtesy", "before_due", "S3.dunning.courtesy.0"),
        ]
    );
}

#[test]
fn a_policy_may_turn_combining_off_and_policies_that_combine_share_one_message() {
    let folder = combine_folder(COMBINE);
    // A2 falls under another policy that combines (as the config says):
    // it still shares C1's message. Customer C3's policy does not combine.
    folder
        .write(
            "rules/special.yaml",
            "name: special\npriority: 10\napplies_to: 'invoice.number == \"A2\"'\n\
             stages:\n  - {id: heads_up, offset: -7, template: before_due}\n",
        )
        .write(
            "rules/quiet.yaml",
            "name: quiet\npriority: 20\napplies_to: 'customer.id == \"C3\"'\n\
             contact: {combine: false}\n\
             stages:\n  - {id: courtesy, offset: -7, template: before_due}\n",
        );
    let mut feed = folder.read("data/invoices.csv");
    for number in ["Q1", "Q2"] {
        let row = invoice_row(number, "Customer Three", "ap@three.example")
            .with("customer_id", "C3")
            .with("due_date", "2026-12-08");
        feed.push_str(csv(&[row]).lines().nth(1).unwrap());
        feed.push('\n');
    }
    folder.write("data/invoices.csv", &feed);
    let rows = messages(&preview(&folder, &[]));
    assert_eq!(
        rows,
        [
            row("A1", "courtesy", "combined", C1_MESSAGE),
            row("A2", "heads_up", "combined", C1_MESSAGE),
            row("A3", "overdue", "combined", C1_MESSAGE),
            row("A4", "notice", "notice", "A4.dunning.notice.0"),
            row("B1", "courtesy", "before_due", "B1.dunning.courtesy.0"),
            row("Q1", "courtesy", "before_due", "Q1.quiet.courtesy.0"),
            row("Q2", "courtesy", "before_due", "Q2.quiet.courtesy.0"),
        ]
    );
}

#[test]
fn a_thank_you_is_not_merged_into_the_days_combined_message() {
    let folder = combine_folder(COMBINE);
    folder
        .write(
            "rules/dunning.yaml",
            &format!(
                "{}on_paid: {{template: thanks}}\n",
                folder.read("rules/dunning.yaml")
            ),
        )
        .write(
            "templates/thanks.en.hbs",
            &template("Thank you for paying {{invoice.number}}", "Thanks."),
        );
    // P1's courtesy note goes out on 24 November; it is paid on the 30th.
    let p1 = invoice_row("P1", "Customer One", "ap@one.example")
        .with("customer_id", "C1")
        .with("due_date", "2026-12-01");
    let mut rows = vec![p1.clone()];
    folder.write_invoices(&rows);
    folder
        .run(&["run", "--once", "--as-of", "2026-11-24"])
        .expect_code(0);
    rows = vec![
        p1.settled("2026-11-30"),
        invoice_row("A1", "Customer One", "ap@one.example")
            .with("customer_id", "C1")
            .with("due_date", "2026-12-08"),
        invoice_row("A2", "Customer One", "ap@one.example")
            .with("customer_id", "C1")
            .with("due_date", "2026-12-08"),
    ];
    folder.write_invoices(&rows);
    assert_eq!(
        messages(&preview(&folder, &[])),
        [
            row("A1", "courtesy", "combined", C1_MESSAGE),
            row("A2", "courtesy", "combined", C1_MESSAGE),
            row("P1", "on_paid", "thanks", "P1.dunning.on_paid.0"),
        ]
    );
}

#[test]
fn run_writes_one_email_with_both_sections_and_journals_each_reminder_with_its_token() {
    let folder = combine_folder(COMBINE);
    let run = folder.run(&RUN_ONCE).expect_code(0);
    assert_contains(&run.stderr, "due=3 sent=3");
    let emails: Vec<String> = folder
        .files("outbox")
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        emails,
        [
            "2026-12-01.B1.dunning.courtesy.0.eml".to_string(),
            format!("2026-12-01.{C1_MESSAGE}.eml"),
        ]
    );
    let id = format!("<{C1_MESSAGE}@atelier-durand.fr>");
    let raw = std::fs::read(folder.path().join("outbox").join(&emails[1])).unwrap();
    let mail = mailparse::parse_mail(&raw).unwrap();
    use mailparse::MailHeaderMap;
    assert_eq!(mail.headers.get_first_value("Message-ID").unwrap(), id);
    assert_eq!(
        mail.headers.get_first_value("Subject").unwrap(),
        "Your invoices, Customer One"
    );
    assert_eq!(email_body(&raw).trim_end(), C1_BODY);

    let owned = |r: [&str; 5]| r.map(str::to_string);
    // The stages each fired reminder overtook are skipped, as always.
    let c1: Vec<[String; 5]> = journal_messages(&folder)
        .into_iter()
        .filter(|r| r[0].starts_with('A'))
        .collect();
    assert_eq!(
        c1,
        [
            owned(["A3", "courtesy", "skipped", "", ""]),
            owned(["A4", "courtesy", "skipped", "", ""]),
            owned(["A4", "overdue", "skipped", "", ""]),
            owned(["A1", "courtesy", "sent", C1_MESSAGE, &id]),
            owned(["A2", "courtesy", "sent", C1_MESSAGE, &id]),
            owned(["A3", "overdue", "sent", C1_MESSAGE, &id]),
            owned([
                "A4",
                "notice",
                "sent",
                "A4.dunning.notice.0",
                &folder
                    .path()
                    .join("tasks/2026-12-01.A4.dunning.notice.0.letter.txt")
                    .display()
                    .to_string(),
            ]),
        ]
    );

    // Again on the same date: nothing goes out twice.
    let again = folder.run(&RUN_ONCE).expect_code(0);
    assert_contains(&again.stderr, "due=0 sent=0");
    assert_eq!(folder.files("outbox").len(), 2);
}

#[test]
fn a_combined_message_left_planned_by_a_crash_goes_out_once_whole() {
    let folder = combine_folder(COMBINE);
    folder.run(&RUN_ONCE).expect_code(0);
    let file = folder
        .path()
        .join(format!("outbox/2026-12-01.{C1_MESSAGE}.eml"));
    let inode = std::fs::metadata(&file).unwrap().ino();

    // Killed after writing the email, before journaling it sent: the file
    // proves it went out, and it is not written again.
    let dead = dead_pid();
    for invoice in ["A1", "A2", "A3"] {
        folder.rewind(invoice, "planned", dead);
    }
    let run = folder.run(&RUN_ONCE).expect_code(0);
    assert_contains(&run.stderr, "recovered=3");
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);

    // Killed before writing it: written once, whole, under its name.
    for invoice in ["A1", "A2", "A3"] {
        folder.rewind(invoice, "planned", dead);
    }
    std::fs::remove_file(&file).unwrap();
    let run = folder.run(&RUN_ONCE).expect_code(0);
    assert_contains(&run.stderr, "recovered=3");
    assert_eq!(folder.files("outbox").len(), 2);
    let raw = std::fs::read(&file).unwrap();
    let mail = mailparse::parse_mail(&raw).unwrap();
    use mailparse::MailHeaderMap;
    assert_eq!(
        mail.headers.get_first_value("Message-ID").unwrap(),
        format!("<{C1_MESSAGE}@atelier-durand.fr>")
    );
    assert_eq!(email_body(&raw).trim_end(), C1_BODY);
    let states: Vec<[String; 5]> = journal_messages(&folder)
        .into_iter()
        .filter(|r| ["A1", "A2", "A3"].contains(&r[0].as_str()) && r[2] != "skipped")
        .collect();
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(
        states.iter().all(|r| r[2] == "sent" && r[3] == C1_MESSAGE),
        "{states:?}"
    );
}

#[test]
fn check_reports_a_missing_combined_template_where_combining_is_turned_on() {
    let folder = combine_folder(COMBINE);
    folder.run(&["check"]).expect_code(0);
    folder.remove("templates/combined.en.hbs");
    let expected = folder.path().join("templates/combined.en.hbs");
    let run = folder.run(&["check"]).expect_code(1);
    // `contact: {combine: true}` is the config's third line.
    assert_contains(
        &run.stdout,
        &format!(
            "{}:3:11: contact: combine is on, but template \"combined\" is not found: expected {} \
             (a customer's email reminders of a day go out in it as one message)",
            folder.path().join("relance.yaml").display(),
            expected.display()
        ),
    );

    // Turned on by a policy, not the config: located in the policy.
    let folder = combine_folder("");
    folder.remove("templates/combined.en.hbs");
    folder.write(
        "rules/dunning.yaml",
        &folder
            .read("rules/dunning.yaml")
            .replace("stages:\n", "contact:\n  combine: true\nstages:\n"),
    );
    let run = folder.run(&["check"]).expect_code(1);
    assert_contains(
        &run.stdout,
        &format!(
            "{}:4:3: contact: combine is on in policy dunning, but template \"combined\" is not found",
            folder.path().join("rules/dunning.yaml").display()
        ),
    );
    // Without combining, no combined template is needed.
    combine_folder("").run(&["check"]).expect_code(0);
}

#[test]
fn check_renders_the_combined_template_with_an_invoice_coming_due() {
    let folder = combine_folder(COMBINE);
    // A mistake only the section of invoices coming due shows.
    folder.write(
        "templates/combined.en.hbs",
        &template(
            "Your invoices",
            "{{#each due_soon}}{{this.nmber}}{{/each}}{{#each overdue}}{{this.number}}{{/each}}",
        ),
    );
    let run = folder.run(&["check"]).expect_code(1);
    assert_contains(&run.stdout, "combined.en.hbs");
    assert_contains(&run.stdout, "nmber");
}

#[test]
fn the_shipped_combined_template_writes_both_sections_in_french_and_english() {
    // The sample as shipped combines (`contact: {combine: true}`).
    let folder = Folder::sample();
    assert_contains(&folder.read("relance.yaml"), "\ncontact: {combine: true");
    let rows = preview(&folder, &["--render"]);
    // Nobody gets two emails on 1 December.
    let mut emails: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r["channel"] == "email")
        .map(|r| (s(&r["customer_id"]), s(&r["message"])))
        .collect();
    emails.sort();
    emails.dedup();
    let customers: Vec<&String> = emails.iter().map(|(c, _)| c).collect();
    let mut distinct = customers.clone();
    distinct.dedup();
    assert_eq!(customers, distinct, "one email per customer: {emails:?}");

    let body = |invoice: &str| {
        let r = rows.iter().find(|r| r["invoice"] == invoice).unwrap();
        assert_eq!(r["template"], "combined", "{r:#}");
        (s(&r["subject"]), s(&r["body"]), s(&r["html"]))
    };
    // Northwind Traders, in English: two invoices coming due, one overdue
    // (its first reminder: `first_contact: restart`).
    let (subject, text, html) = body("F2026-0103");
    assert_eq!(
        subject,
        "Your overdue and upcoming invoices — Northwind Traders Ltd"
    );
    assert_contains(
        &text,
        "Coming due:\n\n  - Invoice F2026-0103 of November 5, 2026, due on December 5, 2026: €2,250.00\n",
    );
    assert_contains(
        &text,
        "Still unpaid, according to our records:\n\n  - Invoice F2026-0061 of September 16, 2026, due on November 16, 2026 (15 days overdue): €980.00\n\nTotal",
    );
    assert_contains(&text, "Total outstanding: €3,230.00 and £1,180.00");
    assert_contains(&html, "<h3 style=\"font-size: 1em;\">Coming due</h3>");
    // Menuiserie Martin, in French, with the early-payment discount.
    let (subject, text, html) = body("F2026-0101");
    assert_eq!(
        subject,
        "Vos factures échues et à échoir — Menuiserie Martin SARL"
    );
    assert_contains(
        &text,
        "Arrivent à échéance :\n\n  - Facture F2026-0101 du 23 novembre 2026, à régler le 8 décembre 2026 : 1 840,00 €\n    \
         En la réglant au plus tard le 3 décembre 2026, vous bénéficiez d'un escompte de 2 % pour paiement anticipé : \
         1 803,20 € au lieu de 1 840,00 €, soit 36,80 € de moins.\n",
    );
    assert_contains(
        &text,
        "Restent impayées, sauf erreur de notre part :\n\n  - Facture F2026-0102 du 31 octobre 2026, échue le 30 novembre 2026 (1 jour de retard) : 612,50 €\n",
    );
    assert_contains(&html, "Escompte de 2 % pour paiement anticipé");
}

#[test]
fn check_warns_of_a_combined_message_whose_file_name_is_too_long() {
    let number = "N".repeat(100);
    let customer = "K".repeat(150);
    let row = invoice_row(&number, "Long Customer", "ap@long.example")
        .with("customer_id", &customer)
        .with("due_date", "2026-12-08");
    let warning = format!(
        "warning: invoice {}… (100 bytes): its file names (stage overdue) would be 300 bytes \
         long, more than the 255 a file name may have: delivery shortens them with a hash",
        "N".repeat(40)
    );
    // Alone, its name fits; in a combined message, named after its
    // customer too, it does not.
    let folder = combine_folder("");
    folder.write_invoices(std::slice::from_ref(&row));
    let run = folder.run(&["check"]);
    assert!(!run.stdout.contains(&warning), "{}", run.stdout);
    let folder = combine_folder(COMBINE);
    folder.write_invoices(&[row]);
    assert_contains(&folder.run(&["check"]).stdout, &warning);
}
