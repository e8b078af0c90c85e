//! Work for people, written by `relance run` on real folders: call sheets,
//! letters (text and PDF) and the worklist, their exact contents, and
//! exactly-once across crashes and torn appends. (The sample folder's task
//! files are in tests/daemon.rs.)

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use serde_json::{Value, json};

/// The sender of every folder here.
const CONFIG: &str = r#"language: fr
feeds: [{path: data/invoices.json}]
company: {name: "Atelier Durand SARL", email: "compta@atelier-durand.fr", phone: "+33 1 84 60 12 34",
          address: "12 rue des Tanneurs, 69001 Lyon", siren: "812 345 678", iban: "FR76 3000 4000"}
"#;

/// A folder whose one policy `work` has one stage `work`, on `channel`,
/// fired the day after the due date, with a French and an English template
/// (subject, then `body` in each language), and these invoices as a JSON feed.
fn work_folder(channel: &str, fr: (&str, &str), en: (&str, &str), invoices: &[Value]) -> Folder {
    let folder = Folder::empty();
    folder
        .write("relance.yaml", CONFIG)
        .write(
            "rules/work.yaml",
            &policy(
                "work",
                &[&format!(
                    "{{id: work, offset: 1, channel: {channel}, template: work}}"
                )],
            ),
        )
        .write("templates/work.fr.hbs", &template(fr.0, fr.1))
        .write("templates/work.en.hbs", &template(en.0, en.1));
    write_feed(&folder, invoices);
    folder
}

fn write_feed(folder: &Folder, invoices: &[Value]) {
    folder.write(
        "data/invoices.json",
        &serde_json::to_string_pretty(invoices).unwrap(),
    );
}

/// An open invoice of customer `C-NUMBER`, issued a month before it is due
/// on `due`, in French, with nothing paid.
fn invoice(number: &str, due: &str, amount: &str) -> Value {
    let due_date = chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").unwrap();
    json!({
        "number": number,
        "customer_id": format!("C-{number}"),
        "customer_name": format!("Client {number}"),
        "email": format!("{}@example.fr", number.to_lowercase()),
        "issue_date": (due_date - chrono::Days::new(30)).to_string(),
        "due_date": due,
        "amount": amount,
        "amount_paid": "0",
        "currency": "EUR",
        "language": "fr",
    })
}

/// `invoice` with more fields set (or replaced).
fn with(mut invoice: Value, fields: Value) -> Value {
    for (k, v) in fields.as_object().unwrap() {
        invoice[k] = v.clone();
    }
    invoice
}

fn run_on(folder: &Folder, date: &str) -> Run {
    folder
        .run(&["run", "--once", "--as-of", date])
        .expect_code(0)
}

// --- Call sheets -------------------------------------------------------------

const CALL_FR: (&str, &str) = (
    "Appeler {{customer.name}} : {{money invoice.amount_due}}",
    "1. Se présenter : {{company.name}}.\n2. Obtenir une date de paiement pour {{money invoice.amount_due}}.",
);
const CALL_EN: (&str, &str) = (
    "Call {{customer.name}}: {{money invoice.amount_due}}",
    "1. Introduce yourself: {{company.name}}.\n2. Get a payment date for {{money invoice.amount_due}}.",
);

#[test]
fn a_call_sheet_has_the_phone_the_invoices_the_totals_and_the_rendered_script() {
    let folder = work_folder(
        "call",
        CALL_FR,
        CALL_EN,
        &[with(
            invoice("F001", "2026-11-30", "1840.00"),
            json!({"customer_name": "Menuiserie Martin SARL", "amount_paid": "840.5", "phone": "+33 4 72 10 20 30"}),
        )],
    );
    let run = run_on(&folder, AS_OF);
    assert!(
        run.log_lines("no phone number").is_empty(),
        "{}",
        run.stderr
    );
    assert_eq!(
        folder.read("tasks/2026-12-01.F001.work.work.0.call.txt"),
        "FICHE D'APPEL — 1er décembre 2026

Client :     Menuiserie Martin SARL (C-F001)
Téléphone :  +33 4 72 10 20 30
Courriel :   f001@example.fr
Relance :    work / work
Objet :      Appeler Menuiserie Martin SARL : 999,50 €

Facture  Émise le    Échéance    Jours de retard   Montant   Réglé  Reste dû  Devise
F001     31/10/2026  30/11/2026                1  1 840,00  840,50    999,50  EUR

Total dû :   999,50 EUR

Trame d'appel :

1. Se présenter : Atelier Durand SARL.
2. Obtenir une date de paiement pour 999,50 €.
"
    );
}

#[test]
fn a_call_sheet_without_a_phone_says_so_in_the_language_of_the_message_and_warns() {
    let folder = work_folder(
        "call",
        CALL_FR,
        CALL_EN,
        &[with(
            invoice("F002", "2026-11-30", "1200"),
            json!({"customer_name": "Northwind Traders Ltd", "language": "en", "currency": "GBP"}),
        )],
    );
    let run = run_on(&folder, AS_OF);
    let warnings = run.log_lines("no phone number");
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert_contains(warnings[0], "invoice=F002");
    assert_eq!(
        folder.read("tasks/2026-12-01.F002.work.work.0.call.txt"),
        "CALL SHEET — December 1, 2026

Customer:   Northwind Traders Ltd (C-F002)
Phone:      (not in the feed: look it up in the customer record)
Email:      f002@example.fr
Reminder:   work / work
Subject:    Call Northwind Traders Ltd: £1,200.00

Invoice  Issued      Due         Days overdue    Amount  Paid  Amount due  Currency
F002     2026-10-31  2026-11-30             1  1,200.00  0.00    1,200.00  GBP

Total due:  1,200.00 GBP

Call script:

1. Introduce yourself: Atelier Durand SARL.
2. Get a payment date for £1,200.00.
"
    );
    assert_eq!(
        folder.journal_states(),
        [("F002".into(), "sent".into())],
        "a missing number does not hold the call"
    );
}

// --- Letters -----------------------------------------------------------------

const NOTICE_FR: (&str, &str) = (
    "Mise en demeure — facture {{invoice.number}}",
    "Madame, Monsieur,\n\nLa facture {{invoice.number}} reste impayée : {{money invoice.amount_due}}.\n\n{{company.name}}",
);
const NOTICE_EN: (&str, &str) = (
    "Formal notice — invoice {{invoice.number}}",
    "Dear Sir or Madam,\n\nInvoice {{invoice.number}} is unpaid: {{money invoice.amount_due}}.\n\n{{company.name}}",
);

/// The path of a task file of the messages of `work_folder` on [`AS_OF`].
fn task_file(folder: &Folder, invoice: &str, ext: &str) -> std::path::PathBuf {
    folder
        .path()
        .join(format!("tasks/2026-12-01.{invoice}.work.work.0.{ext}"))
}

fn pdf(folder: &Folder, invoice: &str) -> lopdf::Document {
    lopdf::Document::load(task_file(folder, invoice, "letter.pdf")).expect("a PDF that opens")
}

#[test]
fn a_letter_is_a_text_and_a_pdf_ready_for_registered_mail() {
    let folder = work_folder(
        "letter",
        NOTICE_FR,
        NOTICE_EN,
        &[with(
            invoice("F003", "2026-11-30", "245.90"),
            json!({"customer_name": "Boulangerie Dupont", "address": "Mme Dupont | 4 place du Marché\n33000 Bordeaux"}),
        )],
    );
    let run = run_on(&folder, AS_OF);
    assert!(
        run.log_lines("no postal address").is_empty(),
        "{}",
        run.stderr
    );
    let right = " ".repeat(44);
    let letter = format!(
        "Atelier Durand SARL
12 rue des Tanneurs, 69001 Lyon
Tél. : +33 1 84 60 12 34
Courriel : compta@atelier-durand.fr
SIREN : 812 345 678

{right}Boulangerie Dupont
{right}Mme Dupont
{right}4 place du Marché
{right}33000 Bordeaux

{right}Lyon, le 1er décembre 2026

Lettre recommandée avec accusé de réception

Objet : Mise en demeure — facture F003

Madame, Monsieur,

La facture F003 reste impayée : 245,90 €.

Atelier Durand SARL
"
    );
    assert_eq!(
        folder.read("tasks/2026-12-01.F003.work.work.0.letter.txt"),
        letter
    );

    // The PDF is the same letter on one A4 page, accents and € included.
    let doc = pdf(&folder, "F003");
    assert_eq!(doc.get_pages().len(), 1);
    let media_box: Vec<f32> = doc
        .get_dictionary(doc.get_pages()[&1])
        .unwrap()
        .get(b"MediaBox")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_float().unwrap())
        .collect();
    assert_eq!(media_box, [0.0, 0.0, 595.28, 841.89], "A4");
    // The reader gives each line (blank ones aside) and the indentation.
    let expected: String = letter
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(doc.extract_text(&[1]).unwrap(), expected);
    // The journal names the text, the last file written.
    assert_eq!(
        folder.journal()[0].message_id,
        task_file(&folder, "F003", "letter.txt")
            .display()
            .to_string()
    );
}

#[test]
fn a_long_english_letter_wraps_and_takes_several_pages() {
    let paragraph = "This sentence is long enough that a few of them make a paragraph wider than a page, so it must wrap.";
    let body = format!("Dear Sir or Madam,\n\n{}", [paragraph; 40].join("\n\n"));
    let folder = work_folder(
        "letter",
        NOTICE_FR,
        ("Formal notice — invoice {{invoice.number}}", &body),
        &[with(
            invoice("F004", "2026-11-30", "10"),
            json!({"language": "en", "address": "1 High Street|London EC1A 1BB"}),
        )],
    );
    run_on(&folder, AS_OF);
    let letter = folder.read("tasks/2026-12-01.F004.work.work.0.letter.txt");
    assert_starts_with(
        &letter,
        "Atelier Durand SARL
12 rue des Tanneurs, 69001 Lyon
Phone: +33 1 84 60 12 34
Email: compta@atelier-durand.fr
SIREN: 812 345 678

Client F004
1 High Street
London EC1A 1BB

December 1, 2026

Sent by registered mail with acknowledgement of receipt

Subject: Formal notice — invoice F004

Dear Sir or Madam,
",
    );

    // 16 lines of heading, then 40 paragraphs of two lines and a blank one
    // each: 135 lines of at most 80 characters, on 3 pages of 60 lines.
    let doc = pdf(&folder, "F004");
    assert_eq!(doc.get_pages().len(), 3);
    let first = doc.extract_text(&[1]).unwrap();
    let (line_1, line_2) = paragraph.split_at(paragraph[..=80].rfind(' ').unwrap());
    assert_contains(&first, &format!("\n{line_1}\n{}\n", line_2.trim_start()));
    assert!(first.lines().all(|l| l.chars().count() <= 80), "{first}");
    assert_ends_with(&first, "1/3\n");
    assert_ends_with(&doc.extract_text(&[3]).unwrap(), "3/3\n");
}

#[test]
fn a_letter_without_an_address_is_written_with_a_note_where_it_goes_and_a_warning() {
    let folder = work_folder(
        "letter",
        NOTICE_FR,
        NOTICE_EN,
        &[invoice("F005", "2026-11-30", "10")],
    );
    let run = run_on(&folder, AS_OF);
    let warnings = run.log_lines("no postal address");
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert_contains(warnings[0], "invoice=F005");
    let right = " ".repeat(44);
    assert_contains(
        &folder.read("tasks/2026-12-01.F005.work.work.0.letter.txt"),
        &format!(
            "\n{right}Client F005\n{right}(adresse absente du flux : à compléter avant l'envoi)\n\n"
        ),
    );
    assert_eq!(folder.journal_states(), [("F005".into(), "sent".into())]);
}

#[test]
fn a_letter_whose_pdf_was_lost_is_written_again_whole() {
    let folder = work_folder(
        "letter",
        NOTICE_FR,
        NOTICE_EN,
        &[
            invoice("F006", "2026-11-30", "10"),
            invoice("F007", "2026-11-30", "10"),
        ],
    );
    run_on(&folder, AS_OF);
    let inode = |invoice: &str, ext: &str| {
        std::fs::metadata(task_file(&folder, invoice, ext))
            .unwrap()
            .ino()
    };
    let (txt_6, pdf_6) = (inode("F006", "letter.txt"), inode("F006", "letter.pdf"));
    let txt_7 = inode("F007", "letter.txt");
    let pdf_7 = std::fs::read(task_file(&folder, "F007", "letter.pdf")).unwrap();
    // Both were planned when the machine lost power: F006's files were
    // synced, F007's PDF was named but never got its content.
    folder.rewind("F006", "planned", 0);
    folder.rewind("F007", "planned", 0);
    std::fs::write(task_file(&folder, "F007", "letter.pdf"), "").unwrap();

    run_on(&folder, AS_OF);
    assert_eq!(
        folder.journal_states(),
        [
            ("F006".into(), "sent".into()),
            ("F007".into(), "sent".into())
        ]
    );
    assert_eq!(
        (inode("F006", "letter.txt"), inode("F006", "letter.pdf")),
        (txt_6, pdf_6),
        "F006 was delivered: not written again"
    );
    assert_ne!(
        inode("F007", "letter.txt"),
        txt_7,
        "F007 is written again whole"
    );
    assert_eq!(
        std::fs::read(task_file(&folder, "F007", "letter.pdf")).unwrap(),
        pdf_7,
        "the same letter, the same PDF"
    );
}

// --- The worklist ------------------------------------------------------------

const TASK_FR: (&str, &str) = (
    "Recouvrement : {{customer.name}}, {{money invoice.amount_due}}",
    "Transmettre le dossier {{invoice.number}} à l'agence.",
);
const TASK_EN: (&str, &str) = (
    "Collection: {{customer.name}}, {{money invoice.amount_due}}",
    "Hand invoice {{invoice.number}} over to the agency.",
);

const HEADER: &str = "date,invoice,customer_id,customer_name,email,phone,issue_date,due_date,days_overdue,amount,amount_paid,amount_due,currency,policy,stage,occurrence,subject,message\r\n";

/// Three invoices: two due on 30 November (their task fires on 1 December),
/// one due on 1 December (its task fires on the 2nd).
fn worklist_folder() -> Folder {
    work_folder(
        "task",
        TASK_FR,
        TASK_EN,
        &[
            with(
                invoice("F010", "2026-11-30", "4000"),
                json!({"customer_name": "Imprimerie Richard, SAS", "amount_paid": "1000.10", "phone": "+33 1 23 45 67 89"}),
            ),
            with(
                invoice("F011", "2026-11-30", "99.999"),
                json!({"language": "en", "currency": "USD", "email": "a@x.example;b@x.example"}),
            ),
            invoice("F012", "2026-12-01", "50"),
        ],
    )
}

const ROW_10: &str = "2026-12-01,F010,C-F010,\"Imprimerie Richard, SAS\",f010@example.fr,+33 1 23 45 67 89,2026-10-31,2026-11-30,1,4000.00,1000.10,2999.90,EUR,work,work,0,\"Recouvrement : Imprimerie Richard, SAS, 2 999,90 €\",F010.work.work.0\r\n";
const ROW_11: &str = "2026-12-01,F011,C-F011,Client F011,a@x.example;b@x.example,,2026-10-31,2026-11-30,1,99.999,0.00,99.999,USD,work,work,0,\"Collection: Client F011, $100.00\",F011.work.work.0\r\n";
const ROW_12: &str = "2026-12-02,F012,C-F012,Client F012,f012@example.fr,,2026-11-01,2026-12-01,1,50.00,0.00,50.00,EUR,work,work,0,\"Recouvrement : Client F012, 50,00 €\",F012.work.work.0\r\n";

#[test]
fn the_worklist_has_a_header_and_one_exact_row_per_reminder_and_grows_day_by_day() {
    let folder = worklist_folder();
    run_on(&folder, AS_OF);
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{ROW_11}")
    );
    // The task sheet, the agency's hand-off text, is written too.
    let sheet = folder.read("tasks/2026-12-01.F010.work.work.0.task.txt");
    assert_starts_with(&sheet, "TÂCHE — 1er décembre 2026\n\nClient :");
    assert_contains(
        &sheet,
        "F010     31/10/2026  30/11/2026                1  4 000,00  1 000,10  2 999,90  EUR\n",
    );
    assert_ends_with(
        &sheet,
        "Consignes :\n\nTransmettre le dossier F010 à l'agence.\n",
    );

    run_on(&folder, "2026-12-02");
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{ROW_11}{ROW_12}"),
        "the next day appends, without a second header"
    );
    run_on(&folder, "2026-12-02");
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{ROW_11}{ROW_12}"),
        "a second run on the same day adds nothing"
    );
    let journal = folder.journal();
    assert!(journal.iter().all(|r| r.state == "sent"), "{journal:#?}");
    assert_eq!(
        journal[0].message_id,
        task_file(&folder, "F010", "task.txt").display().to_string(),
        "the journal names the task's text"
    );
}

#[test]
fn a_task_left_planned_by_a_crash_is_resolved_by_its_worklist_row() {
    let folder = worklist_folder();
    run_on(&folder, AS_OF);
    // F010 was planned when the process died after appending its row;
    // F011 when it died after writing its text, before its row.
    folder.rewind("F010", "planned", 0);
    folder.rewind("F011", "planned", 0);
    folder.write("tasks/worklist.csv", &format!("{HEADER}{ROW_10}"));

    let run = run_on(&folder, AS_OF);
    assert_eq!(
        run.log_lines("recovered: delivered before").len(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        folder.journal_states(),
        [
            ("F010".into(), "sent".into()),
            ("F011".into(), "sent".into())
        ]
    );
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{ROW_11}"),
        "F010's row is not appended again, F011's is appended once"
    );
}

#[test]
fn a_row_torn_by_a_power_cut_is_ended_and_its_message_appended_again() {
    let folder = worklist_folder();
    run_on(&folder, AS_OF);
    // The power went while F011's row was appended: only part of it reached
    // the disk, every column and its whole token but not its CRLF end.
    folder.rewind("F011", "planned", 0);
    let torn = &ROW_11[..ROW_11.len() - "\r\n".len()];
    folder.write("tasks/worklist.csv", &format!("{HEADER}{ROW_10}{torn}"));

    run_on(&folder, AS_OF);
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{torn}\n{ROW_11}"),
        "the torn row ends on its own line; the whole row follows"
    );
    assert_eq!(
        folder.journal_states(),
        [
            ("F010".into(), "sent".into()),
            ("F011".into(), "sent".into())
        ]
    );

    // The next day's row comes after them.
    run_on(&folder, "2026-12-02");
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{torn}\n{ROW_11}{ROW_12}")
    );
}

#[test]
fn a_row_that_lost_only_its_last_line_feed_counts_and_is_not_appended_again() {
    let folder = worklist_folder();
    run_on(&folder, AS_OF);
    // The cut took the LF alone: the row is whole, its CR included.
    folder.rewind("F011", "planned", 0);
    let torn = &ROW_11[..ROW_11.len() - "\n".len()];
    folder.write("tasks/worklist.csv", &format!("{HEADER}{ROW_10}{torn}"));

    run_on(&folder, AS_OF);
    assert_eq!(
        folder.journal_states(),
        [
            ("F010".into(), "sent".into()),
            ("F011".into(), "sent".into())
        ]
    );
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{torn}"),
        "delivered: not appended again"
    );
    // The next append ends it with the LF it lost.
    run_on(&folder, "2026-12-02");
    assert_eq!(
        folder.read("tasks/worklist.csv"),
        format!("{HEADER}{ROW_10}{ROW_11}{ROW_12}")
    );
}
