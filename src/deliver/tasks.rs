//! Work for people, in `tasks/`: call sheets, letters, SMS and task sheets, and the worklist agencies import.
//!
//! Every layout takes the invoices a message covers (one, or a customer's
//! several when grouped) and is written in the message's language: French
//! (`fr`, `fr-CA`…) or English.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use rust_decimal::Decimal;

use crate::config::Company;
use crate::journal::Identity;
use crate::locale::{format_amount, format_date, is_french, money};
use crate::model::{Invoice, distinct_recipients};
use crate::money::checked_sum;
use crate::project::Message;
use crate::rules::Channel;
use crate::text::clean_line;

/// The worklist's file name, in the tasks folder.
pub const WORKLIST: &str = "worklist.csv";

/// The worklist's columns: one row per invoice of a `task` message, the
/// message's token last (what crash recovery looks for).
pub const WORKLIST_COLUMNS: [&str; 18] = [
    "date",
    "invoice",
    "customer_id",
    "customer_name",
    "email",
    "phone",
    "issue_date",
    "due_date",
    "days_overdue",
    "amount",
    "amount_paid",
    "amount_due",
    "currency",
    "policy",
    "stage",
    "occurrence",
    "subject",
    "message",
];

/// The words of the sheets and letters in one language.
struct Words {
    call_sheet: &'static str,
    sms_sheet: &'static str,
    task_sheet: &'static str,
    call_body: &'static str,
    sms_body: &'static str,
    task_body: &'static str,
    /// After a label: French puts a space before the colon.
    colon: &'static str,
    customer: &'static str,
    phone: &'static str,
    email: &'static str,
    reminder: &'static str,
    subject: &'static str,
    no_phone: &'static str,
    not_in_feed: &'static str,
    columns: [&'static str; 8],
    /// How a table writes its dates.
    date_format: &'static str,
    /// Days overdue of an invoice not yet due: `{}` is the days left.
    due_in: &'static str,
    total_due: &'static str,
    /// The sender's identity under its name and address: company key, label.
    sender: [(&'static str, &'static str); 5],
    no_address: &'static str,
    registered: &'static str,
}

const FRENCH: Words = Words {
    call_sheet: "FICHE D'APPEL",
    sms_sheet: "SMS À ENVOYER",
    task_sheet: "TÂCHE",
    call_body: "Trame d'appel",
    sms_body: "Texte du SMS",
    task_body: "Consignes",
    colon: " :",
    customer: "Client",
    phone: "Téléphone",
    email: "Courriel",
    reminder: "Relance",
    subject: "Objet",
    no_phone: "(absent du flux : le chercher dans la fiche client)",
    not_in_feed: "(absent du flux)",
    columns: [
        "Facture",
        "Émise le",
        "Échéance",
        "Jours de retard",
        "Montant",
        "Réglé",
        "Reste dû",
        "Devise",
    ],
    date_format: "%d/%m/%Y",
    due_in: "dans {} j",
    total_due: "Total dû",
    sender: [
        ("phone", "Tél."),
        ("email", "Courriel"),
        ("siren", "SIREN"),
        ("siret", "SIRET"),
        ("vat", "TVA intracommunautaire"),
    ],
    no_address: "(adresse absente du flux : à compléter avant l'envoi)",
    registered: "Lettre recommandée avec accusé de réception",
};

const ENGLISH: Words = Words {
    call_sheet: "CALL SHEET",
    sms_sheet: "TEXT MESSAGE TO SEND",
    task_sheet: "TASK",
    call_body: "Call script",
    sms_body: "Text of the message",
    task_body: "Instructions",
    colon: ":",
    customer: "Customer",
    phone: "Phone",
    email: "Email",
    reminder: "Reminder",
    subject: "Subject",
    no_phone: "(not in the feed: look it up in the customer record)",
    not_in_feed: "(not in the feed)",
    columns: [
        "Invoice",
        "Issued",
        "Due",
        "Days overdue",
        "Amount",
        "Paid",
        "Amount due",
        "Currency",
    ],
    date_format: "%Y-%m-%d",
    due_in: "in {} d",
    total_due: "Total due",
    sender: [
        ("phone", "Phone"),
        ("email", "Email"),
        ("siren", "SIREN"),
        ("siret", "SIRET"),
        ("vat", "VAT number"),
    ],
    no_address: "(address not in the feed: fill it in before posting)",
    registered: "Sent by registered mail with acknowledgement of receipt",
};

fn words(language: &str) -> &'static Words {
    if is_french(language) {
        &FRENCH
    } else {
        &ENGLISH
    }
}

/// The phone number of a message's customer (the feed's `phone` column of
/// the first of its invoices that has one).
pub fn phone_of<'a>(items: &[(&'a Invoice, &'a Identity)]) -> Option<&'a str> {
    items.iter().find_map(|(inv, _)| inv.extra_field("phone"))
}

/// The lines of the customer's postal address (the feed's `address` column,
/// lines separated by `|` or a newline), if one of the invoices has it.
pub fn address_of<'a>(items: &[(&'a Invoice, &'a Identity)]) -> Option<Vec<&'a str>> {
    items
        .iter()
        .find_map(|(inv, _)| inv.extra_field("address"))
        .map(lines_of)
}

/// An address's lines: `|` or a newline ends one.
fn lines_of(address: &str) -> Vec<&str> {
    address
        .split(['|', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The email addresses of the message's customer, each once, in feed
/// order; `None` when the feed has none.
fn emails(items: &[(&Invoice, &Identity)]) -> Option<String> {
    let all = distinct_recipients(items.iter().map(|(inv, _)| *inv));
    (!all.is_empty()).then(|| all.join(", "))
}

/// The sheet a person acts on for a call, an SMS or a task: who to reach
/// and how, the invoices with what is due on each and the totals, then the
/// rendered message (the call script, the SMS text, the instructions).
pub fn sheet(r: &Message, items: &[(&Invoice, &Identity)]) -> String {
    let w = words(r.language);
    let (title, heading) = match r.channel {
        Channel::Call => (w.call_sheet, w.call_body),
        Channel::Sms => (w.sms_sheet, w.sms_body),
        _ => (w.task_sheet, w.task_body),
    };
    let mut reminders: Vec<String> = Vec::new();
    for (_, id) in items {
        let label = format!(
            "{} / {}",
            id.policy,
            crate::text::stage_label(&id.stage, id.occurrence)
        );
        if !reminders.contains(&label) {
            reminders.push(label);
        }
    }
    let facts = [
        (
            w.customer,
            format!("{} ({})", r.customer_name, r.customer_id),
        ),
        (w.phone, phone_of(items).unwrap_or(w.no_phone).to_string()),
        (
            w.email,
            emails(items).unwrap_or_else(|| w.not_in_feed.into()),
        ),
        (w.reminder, reminders.join(", ")),
        (w.subject, r.subject.clone()),
    ];
    let labels = facts
        .iter()
        .map(|(label, _)| label)
        .chain([&w.total_due])
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        + w.colon.len()
        + 2;

    let mut text = format!("{title} — {}\n\n", format_date(r.date, r.language));
    for (label, value) in &facts {
        let _ = writeln!(text, "{:<labels$}{value}", format!("{label}{}", w.colon));
    }
    text.push('\n');
    text.push_str(&invoice_table(r, items, w));
    text.push('\n');
    text.push_str(&totals(items, w, labels, r.language));
    let _ = writeln!(text, "\n{heading}{}\n\n{}", w.colon, body(r));
    text
}

/// The invoices as an aligned table, amounts exact and right-aligned.
fn invoice_table(r: &Message, items: &[(&Invoice, &Identity)], w: &Words) -> String {
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|(inv, _)| {
            let days = match inv.days_overdue(r.date) {
                d if d >= 0 => d.to_string(),
                d => w.due_in.replace("{}", &(-d).to_string()),
            };
            [
                inv.number.to_string(),
                inv.issue_date.format(w.date_format).to_string(),
                inv.due_date.format(w.date_format).to_string(),
                days,
                format_amount(inv.amount, r.language),
                format_amount(inv.amount_paid, r.language),
                format_amount(inv.amount_due(), r.language),
                inv.currency.to_string(),
            ]
        })
        .collect();
    // Days and amounts are right-aligned, header included, so that digits line up.
    let right = |column: usize| (3..=6).contains(&column);
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([w.columns[column].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let align = |column: usize, cell: &str| {
        if right(column) {
            format!("{cell:>0$}", width(column))
        } else {
            cell.to_string()
        }
    };
    let header: Vec<String> = (0..8).map(|c| align(c, w.columns[c])).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| (0..8).map(|c| align(c, &row[c])).collect())
        .collect();
    let mut table = Vec::new();
    // Writing to memory does not fail.
    let _ = crate::text::table(&mut table, &header, &rows);
    String::from_utf8_lossy(&table).into_owned()
}

/// What is due in each currency, exact: one line per currency.
fn totals(items: &[(&Invoice, &Identity)], w: &Words, labels: usize, language: &str) -> String {
    let mut due: BTreeMap<&str, Vec<Decimal>> = BTreeMap::new();
    for (inv, _) in items {
        due.entry(&inv.currency).or_default().push(inv.amount_due());
    }
    let amounts: Vec<(String, &str)> = due
        .into_iter()
        .map(|(currency, amounts)| {
            // Several customers' amounts may pass what a decimal holds: said, not wrapped.
            let total = match checked_sum(amounts) {
                Some(sum) => format_amount(sum, language),
                None => format!("> {}", format_amount(Decimal::MAX, language)),
            };
            (total, currency)
        })
        .collect();
    let width = amounts.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (i, (amount, currency)) in amounts.iter().enumerate() {
        let label = if i == 0 {
            format!("{}{}", w.total_due, w.colon)
        } else {
            String::new()
        };
        let _ = writeln!(text, "{label:<labels$}{amount:>width$} {currency}");
    }
    text
}

/// The rendered text of a message, without the blank lines around it.
fn body<'r>(r: &'r Message) -> &'r str {
    r.body
        .as_deref()
        .unwrap_or("")
        .trim_start_matches(['\n', '\r'])
        .trim_end()
}

/// How far the recipient block and the date line are indented in a French
/// letter: the right half of the page, where a window envelope shows the
/// address. English letters keep them at the margin.
const FRENCH_RECIPIENT_INDENT: usize = 44;

/// A letter ready to print and post by registered mail: the sender (the
/// config's `company`), the recipient (the customer and the feed's
/// `address`), the place and date, the registered-mail line, the subject,
/// then the rendered text. The .txt and the PDF of a letter are this text.
pub fn letter(r: &Message, items: &[(&Invoice, &Identity)], company: &Company) -> String {
    let w = words(r.language);
    let french = is_french(r.language);
    let mut text = String::new();
    let mut line = |indent: usize, line: &str| {
        let _ = writeln!(text, "{:indent$}{line}", "");
    };

    let address = lines_of(company.get("address"));
    for sender in [company.get("name").trim()]
        .into_iter()
        .chain(address.iter().copied())
        .filter(|l| !l.is_empty())
    {
        line(0, sender);
    }
    for (key, label) in w.sender {
        let value = company.get(key).trim();
        if !value.is_empty() {
            line(0, &format!("{label}{} {value}", w.colon));
        }
    }
    line(0, "");

    let indent = if french { FRENCH_RECIPIENT_INDENT } else { 0 };
    line(indent, r.customer_name);
    match address_of(items) {
        Some(lines) => lines.iter().for_each(|l| line(indent, l)),
        None => line(indent, w.no_address),
    }
    line(0, "");

    let date = format_date(r.date, r.language);
    let dated = match (french, place(company)) {
        (true, Some(place)) => format!("{place}, le {date}"),
        (true, None) => format!("Le {date}"),
        (false, _) => date,
    };
    line(indent, &dated);
    line(0, "");
    line(0, w.registered);
    line(0, "");
    line(0, &format!("{}{} {}", w.subject, w.colon, r.subject));
    line(0, "");
    text.push_str(body(r));
    text.push('\n');
    text
}

/// Where a letter is written from: `company.city`, else the town of the
/// company's address (its last part, after the postcode: `Lyon` in
/// `12 rue des Tanneurs, 69001 Lyon`).
fn place(company: &Company) -> Option<String> {
    let city = company.get("city").trim();
    if !city.is_empty() {
        return Some(city.to_string());
    }
    let last = company.get("address").rsplit(['|', '\n', ',']).next()?;
    let town: Vec<&str> = last
        .split_whitespace()
        .skip_while(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    (!town.is_empty()).then(|| town.join(" "))
}

/// The worklist rows of a `task` message, one per invoice, as CSV with the
/// header first when `header`. Rows end with CRLF (RFC 4180): a row cut
/// short by a power loss, then ended by the bare LF the next append starts
/// with, is told apart from a complete one (see [`in_worklist`]). Text is
/// kept on one line, so that a row is a line.
fn worklist_rows(
    r: &Message,
    items: &[(&Invoice, &Identity)],
    header: bool,
) -> csv::Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if header {
        writer.write_record(WORKLIST_COLUMNS)?;
    }
    for (inv, id) in items {
        let values = [
            r.date.to_string(),
            inv.number.to_string(),
            inv.bill_to.id.to_string(),
            inv.bill_to.name.to_string(),
            inv.recipients().collect::<Vec<_>>().join(";"),
            inv.extra_field("phone").unwrap_or("").to_string(),
            inv.issue_date.to_string(),
            inv.due_date.to_string(),
            inv.days_overdue(r.date).to_string(),
            money(inv.amount),
            money(inv.amount_paid),
            money(inv.amount_due()),
            inv.currency.to_string(),
            id.policy.clone(),
            id.stage.clone(),
            id.occurrence.to_string(),
            r.subject.clone(),
            r.message.clone(),
        ];
        // Every field on one line: a row is a line, whatever the feed holds.
        writer.write_record(values.iter().map(|v| clean_line(v)))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Appends the rows of a `task` message to the worklist at `path`, in one
/// write on a file opened for appending, under an exclusive lock so that
/// two relance appending at once neither interleave nor both write the
/// header. A last line without its newline was cut short by a crash: the
/// rows start on a line of their own.
pub fn append_to_worklist(
    path: &Path,
    r: &Message,
    items: &[(&Invoice, &Identity)],
) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    // Held until the file is closed (a crash closes it too, so the
    // worklist is never left locked).
    file.lock()?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::new();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            bytes.push(b'\n');
        }
    }
    bytes.extend(worklist_rows(r, items, len == 0).map_err(std::io::Error::other)?);
    file.write_all(&bytes)
}

/// The messages (date, token) whose complete rows the worklist at `path`
/// holds: the proof, after a crash, that a `task` message was delivered. A
/// row counts when it has every column and ends with the CRLF relance
/// writes, or with its CR alone at the end of the file (only the LF was
/// lost, and the next append ends the row); a row cut shorter does not.
/// Read once per pass over pending reminders (see `deliver::Proofs`).
pub fn worklist_messages(path: &Path) -> HashSet<(String, String)> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashSet::new();
    };
    // A row cut inside a character is not valid UTF-8; it does not count anyway.
    let text = String::from_utf8_lossy(&bytes);
    let mut rows: Vec<&str> = text.split('\n').collect();
    // After the last LF: a row whose LF alone was lost, or a shorter cut.
    let last = rows.pop().filter(|row| row.ends_with('\r'));
    rows.into_iter()
        .chain(last)
        .filter_map(|row| {
            let row = row.strip_suffix('\r')?;
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(row.as_bytes());
            let mut record = csv::StringRecord::new();
            let complete = matches!(reader.read_record(&mut record), Ok(true))
                && record.len() == WORKLIST_COLUMNS.len();
            complete.then(|| {
                let token = &record[WORKLIST_COLUMNS.len() - 1];
                (record[0].to_string(), token.to_string())
            })
        })
        .collect()
}

/// Whether the worklist at `path` has the complete rows of the message
/// `token` of `date` ([`worklist_messages`], for a single question).
#[cfg(test)]
fn in_worklist(path: &Path, date: chrono::NaiveDate, token: &str) -> bool {
    worklist_messages(path).contains(&(date.to_string(), token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Invoice;
    use crate::model::tests::{date, invoice};
    use std::borrow::Cow;

    fn reminder(channel: Channel, language: &'static str, body: &str) -> Message<'static> {
        Message {
            date: date("2026-12-01"),
            invoice: "F1",
            customer_id: "C1",
            customer_name: "Customer C1",
            policy: "standard",
            stage: "collection",
            occurrence: 0,
            message: "F1.standard.collection.0".into(),
            channel,
            to: Cow::Borrowed(""),
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: None,
            language,
            template: "t",
            subject: "Collection: Customer C1".into(),
            amount_due: "100.00".into(),
            currency: "EUR",
            send_at: None,
            body: Some(format!("\n{body}\n\n")),
            html: None,
            error: None,
            approval: None,
            covers: std::sync::Arc::from([]),
        }
    }

    /// Each invoice with the identity of a first `standard/collection` reminder.
    fn reminders(invoices: &[Invoice]) -> Vec<Identity> {
        invoices
            .iter()
            .map(|invoice| Identity {
                invoice: invoice.number.to_string(),
                policy: "standard".into(),
                stage: "collection".into(),
                occurrence: 0,
            })
            .collect()
    }

    fn items<'a>(invoices: &'a [Invoice], ids: &'a [Identity]) -> Vec<(&'a Invoice, &'a Identity)> {
        invoices.iter().zip(ids).collect()
    }

    /// Two invoices of one customer in euros and one in dollars, one of them
    /// partly paid and one not yet due, with a phone number on the second.
    fn grouped() -> Vec<Invoice> {
        let mut a = invoice("F1", "C1", "2026-10-01", "1234.5");
        a.amount_paid = "234.5".parse().unwrap();
        let mut b = invoice("F2", "C1", "2026-12-04", "99.999");
        b.extra.insert("phone".into(), " +33 4 72 10 20 30 ".into());
        let mut c = invoice("F3", "C1", "2026-11-01", "40");
        c.currency = "USD".into();
        vec![a, b, c]
    }

    #[test]
    fn a_sheet_lists_every_invoice_with_what_is_due_and_the_totals_per_currency() {
        let invoices = grouped();
        let r = reminder(Channel::Call, "fr-CA", "1. Se présenter.");
        assert_eq!(
            sheet(&r, &items(&invoices, &reminders(&invoices))),
            "FICHE D'APPEL — 1er décembre 2026

Client :     Customer C1 (C1)
Téléphone :  +33 4 72 10 20 30
Courriel :   C1@example.com
Relance :    standard / collection
Objet :      Collection: Customer C1

Facture  Émise le    Échéance    Jours de retard   Montant   Réglé  Reste dû  Devise
F1       01/09/2026  01/10/2026               61  1 234,50  234,50  1 000,00  EUR
F2       04/11/2026  04/12/2026         dans 3 j    99,999    0,00    99,999  EUR
F3       02/10/2026  01/11/2026               30     40,00    0,00     40,00  USD

Total dû :   1 099,999 EUR
                 40,00 USD

Trame d'appel :

1. Se présenter.
"
        );
    }

    #[test]
    fn an_english_sheet_says_what_the_feed_lacks() {
        let mut inv = invoice("F1", "C1", "2026-11-30", "100");
        std::sync::Arc::make_mut(&mut inv.bill_to).email = "".into();
        let r = reminder(Channel::Sms, "en", "Please pay.");
        let text = sheet(
            &r,
            &items(
                std::slice::from_ref(&inv),
                &reminders(std::slice::from_ref(&inv)),
            ),
        );
        assert!(
            text.starts_with("TEXT MESSAGE TO SEND — December 1, 2026\n\n"),
            "{text}"
        );
        for line in [
            "Phone:      (not in the feed: look it up in the customer record)\n",
            "Email:      (not in the feed)\n",
            "Invoice  Issued      Due         Days overdue  Amount  Paid  Amount due  Currency\n",
            "F1       2026-10-31  2026-11-30             1  100.00  0.00      100.00  EUR\n",
            "Total due:  100.00 EUR\n\nText of the message:\n\nPlease pay.\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }

    fn company(pairs: &[(&str, &str)]) -> Company {
        let mut company = Company::default();
        for (k, v) in pairs {
            company.0.insert(k.to_string(), v.to_string());
        }
        company
    }

    #[test]
    fn a_french_letter_has_sender_recipient_place_date_registered_mail_and_subject() {
        let mut inv = invoice("F1", "C1", "2026-10-01", "245.90");
        inv.extra.insert(
            "address".into(),
            "4 place du Marché | 33000 Bordeaux".into(),
        );
        let r = reminder(Channel::Letter, "fr", "Madame, Monsieur,");
        let sender = company(&[
            ("name", "Atelier Durand SARL"),
            ("address", "12 rue des Tanneurs, 69001 Lyon"),
            ("phone", "+33 1 84 60 12 34"),
            ("siren", "812 345 678"),
            ("iban", "FR76 …"),
        ]);
        let indent = " ".repeat(FRENCH_RECIPIENT_INDENT);
        assert_eq!(
            letter(
                &r,
                &items(
                    std::slice::from_ref(&inv),
                    &reminders(std::slice::from_ref(&inv))
                ),
                &sender
            ),
            format!(
                "Atelier Durand SARL
12 rue des Tanneurs, 69001 Lyon
Tél. : +33 1 84 60 12 34
SIREN : 812 345 678

{indent}Customer C1
{indent}4 place du Marché
{indent}33000 Bordeaux

{indent}Lyon, le 1er décembre 2026

Lettre recommandée avec accusé de réception

Objet : Collection: Customer C1

Madame, Monsieur,
"
            )
        );
    }

    #[test]
    fn an_english_letter_without_an_address_says_so_where_it_goes() {
        let inv = invoice("F1", "C1", "2026-10-01", "245.90");
        let r = reminder(Channel::Letter, "en", "Dear Sir or Madam,");
        let sender = company(&[("name", "Atelier Durand"), ("email", "compta@atelier.fr")]);
        assert_eq!(
            letter(
                &r,
                &items(
                    std::slice::from_ref(&inv),
                    &reminders(std::slice::from_ref(&inv))
                ),
                &sender
            ),
            "Atelier Durand
Email: compta@atelier.fr

Customer C1
(address not in the feed: fill it in before posting)

December 1, 2026

Sent by registered mail with acknowledgement of receipt

Subject: Collection: Customer C1

Dear Sir or Madam,
"
        );
    }

    #[test]
    fn a_letter_is_written_from_the_company_city_or_the_town_of_its_address() {
        let place = |pairs: &[(&str, &str)]| place(&company(pairs));
        assert_eq!(
            place(&[("address", "12 rue des Tanneurs, 69001 Lyon")]).as_deref(),
            Some("Lyon")
        );
        assert_eq!(
            place(&[("address", "3 quai Kléber|67000 Strasbourg Cedex")]).as_deref(),
            Some("Strasbourg Cedex")
        );
        assert_eq!(
            place(&[
                ("address", "12 rue X, 69001 Lyon"),
                ("city", "Villeurbanne")
            ])
            .as_deref(),
            Some("Villeurbanne")
        );
        assert_eq!(place(&[]), None);
        assert_eq!(place(&[("address", "69001")]), None);
    }

    fn worklist_in(dir: &Path) -> std::path::PathBuf {
        dir.join(WORKLIST)
    }

    #[test]
    fn worklist_rows_are_exact_and_prove_their_message_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = worklist_in(dir.path());
        let invoices = grouped();
        let r = reminder(Channel::Task, "fr", "x");
        let day = r.date;
        assert!(!in_worklist(&path, day, &r.message), "no worklist yet");

        append_to_worklist(&path, &r, &items(&invoices, &reminders(&invoices))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines[0], WORKLIST_COLUMNS.join(","));
        assert_eq!(
            lines[1..],
            [
                "2026-12-01,F1,C1,Customer C1,C1@example.com,,2026-09-01,2026-10-01,61,1234.50,234.50,1000.00,EUR,standard,collection,0,Collection: Customer C1,F1.standard.collection.0",
                "2026-12-01,F2,C1,Customer C1,C1@example.com,+33 4 72 10 20 30,2026-11-04,2026-12-04,-3,99.999,0.00,99.999,EUR,standard,collection,0,Collection: Customer C1,F1.standard.collection.0",
                "2026-12-01,F3,C1,Customer C1,C1@example.com,,2026-10-02,2026-11-01,30,40.00,0.00,40.00,USD,standard,collection,0,Collection: Customer C1,F1.standard.collection.0",
            ]
        );
        assert!(in_worklist(&path, day, &r.message));
        assert!(
            !in_worklist(&path, date("2026-12-02"), &r.message),
            "another date"
        );
        assert!(
            !in_worklist(&path, day, "F1.standard.collection"),
            "a token's prefix"
        );

        // A power cut in the middle of the next message's row: cut inside
        // its token, the row has every column but no end.
        let mut next = reminder(Channel::Task, "fr", "x");
        next.message = "F9.standard.collection.10".into();
        let cut = "2026-12-01,F9,C9,Customer C9,,,2026-09-01,2026-10-01,61,5.00,0.00,5.00,EUR,standard,collection,10,S,F9.standard.collection.1";
        std::fs::write(&path, format!("{text}{cut}")).unwrap();
        assert!(!in_worklist(&path, day, "F9.standard.collection.1"));
        assert!(!in_worklist(&path, day, &next.message));

        // The next append starts on a line of its own; the cut row, ended by
        // that bare LF, still proves nothing.
        let f9 = invoice("F9", "C9", "2026-10-01", "5");
        append_to_worklist(
            &path,
            &next,
            &items(
                std::slice::from_ref(&f9),
                &reminders(std::slice::from_ref(&f9)),
            ),
        )
        .unwrap();
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(
            after.starts_with(&format!("{text}{cut}\n2026-12-01,F9,")),
            "{after}"
        );
        assert!(after.ends_with(",F9.standard.collection.10\r\n"), "{after}");
        assert_eq!(after.matches("date,invoice").count(), 1, "one header");
        assert!(!in_worklist(&path, day, "F9.standard.collection.1"));
        assert!(in_worklist(&path, day, &next.message));
        assert!(in_worklist(&path, day, &r.message));
    }

    #[test]
    fn worklist_text_stays_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = worklist_in(dir.path());
        let mut inv = invoice("F1", "C1", "2026-10-01", "5");
        std::sync::Arc::make_mut(&mut inv.bill_to).name = "Dupont,\n\"Frères\"".into();
        // Two addresses a feed wrote on two lines, without a `;`.
        std::sync::Arc::make_mut(&mut inv.bill_to).email = "a@dupont.fr\nb@dupont.fr".into();
        let r = reminder(Channel::Task, "fr", "x");
        append_to_worklist(
            &path,
            &r,
            &items(
                std::slice::from_ref(&inv),
                &reminders(std::slice::from_ref(&inv)),
            ),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches('\n').count(), 2, "{text}");
        assert!(text.contains(",\"Dupont, \"\"Frères\"\"\","), "{text}");
        assert!(in_worklist(&path, r.date, &r.message));
    }
}
