//! SPEC §5: front matter, HTML versions, partials, languages, strict mode,
//! the money and date helpers, escaping.

use crate::common::{Folder, assert_contains, assert_ends_with, template};
use crate::{
    check_problems, folder, inv, preview_fields, preview_json, run_expect, str_of, with_stages,
};
use serde_json::Value;

/// The reminders of 2026-12-10 rendered in full (`--render`).
fn rendered(f: &Folder) -> Vec<Value> {
    preview_json(f, "--as-of 2026-12-10 --days 1 --render")
}

/// A folder with one invoice and the French template `t` given as (subject, body).
fn one_invoice_with(row: crate::Inv, subject: &str, body: &str) -> Folder {
    let f = folder(&[row]);
    f.write("templates/t.fr.hbs", &template(subject, body));
    f
}

/// One invoice, F1, and the French template `t` whose subject is the invoice
/// number and whose body is `body`.
fn with_body(body: &str) -> Folder {
    one_invoice_with(inv("F1", "2026-12-10", "10"), "{{invoice.number}}", body)
}

#[test]
fn the_front_matter_holds_the_subject_and_the_rest_is_the_body() {
    let f = one_invoice_with(
        inv("F1", "2026-12-10", "10").customer("C1", "Dupont SARL"),
        "Rappel : facture {{invoice.number}} de {{customer.name}}",
        "Bonjour {{customer.name}},\n\nla facture {{invoice.number}} est due.\n\n-- \n{{company.name}}",
    );
    f.write("relance.yaml", "company: {name: Atelier Durand}\n");
    let r = &rendered(&f)[0];
    assert_eq!(str_of(r, "subject"), "Rappel : facture F1 de Dupont SARL");
    assert_eq!(
        str_of(r, "body"),
        "Bonjour Dupont SARL,\n\nla facture F1 est due.\n\n-- \nAtelier Durand\n"
    );
    assert!(r.get("html").is_none(), "no HTML template: {r}");
}

#[test]
fn an_html_template_beside_the_text_one_gives_an_html_body() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "templates/t.fr.html.hbs",
        "<p>Facture <b>{{invoice.number}}</b></p>\n",
    );
    let r = &rendered(&f)[0];
    assert_eq!(str_of(r, "html"), "<p>Facture <b>F1</b></p>\n");
    assert_eq!(str_of(r, "body"), "Body of F1\n");
    // Without --render, neither body is printed.
    let plain = &preview_json(&f, "--as-of 2026-12-10 --days 1")[0];
    assert!(
        plain.get("body").is_none() && plain.get("html").is_none(),
        "{plain}"
    );
}

#[test]
fn partials_are_included_in_the_message_language() {
    let f = with_body("Bonjour.\n{{> payment}}");
    f.write("relance.yaml", "company: {iban: FR76 1234}\n")
        .write(
            "templates/partials/payment.fr.hbs",
            "IBAN : {{company.iban}}\n",
        )
        .write(
            "templates/partials/payment.en.hbs",
            "IBAN: {{company.iban}}\n",
        )
        .write(
            "templates/partials/payment.fr.html.hbs",
            "<p>IBAN : {{company.iban}}</p>\n",
        )
        .write("templates/t.fr.html.hbs", "<p>Bonjour.</p>\n{{> payment}}");
    let r = &rendered(&f)[0];
    assert_eq!(str_of(r, "body"), "Bonjour.\nIBAN : FR76 1234\n");
    assert_eq!(
        str_of(r, "html"),
        "<p>Bonjour.</p>\n<p>IBAN : FR76 1234</p>\n"
    );
}

#[test]
fn a_partial_named_like_a_template_is_still_the_partial() {
    let f = with_body("Message, then: {{> t}}");
    f.write("templates/partials/t.fr.hbs", "the partial t\n");
    assert_eq!(
        str_of(&rendered(&f)[0], "body"),
        "Message, then: the partial t\n\n"
    );
}

/// French and English versions of `t`, config language `config_language`,
/// and one invoice per language tag (`-` for none).
fn multilingual(config_language: &str, languages: &[&str]) -> Folder {
    let rows: Vec<crate::Inv> = languages
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let row = inv(&format!("F{i}"), "2026-12-10", "10");
            if *l == "-" {
                row
            } else {
                row.with("language", l)
            }
        })
        .collect();
    let f = folder(&rows);
    f.write("relance.yaml", &format!("language: {config_language}\n"))
        .write(
            "templates/t.fr.hbs",
            &template("FR {{invoice.number}}", "."),
        )
        .write(
            "templates/t.en.hbs",
            &template("EN {{invoice.number}}", "."),
        );
    f
}

/// "LANGUAGE SUBJECT" of each reminder of 2026-12-10.
fn languages_and_subjects(f: &Folder) -> Vec<String> {
    preview_fields(f, "--as-of 2026-12-10 --days 1", "language subject")
}

#[test]
fn a_regional_language_falls_back_to_its_language_then_to_the_config() {
    let f = multilingual("en", &["fr-CA", "de", "-", "fr", "en-GB"]);
    assert_eq!(
        languages_and_subjects(&f),
        vec!["fr FR F0", "en EN F1", "en EN F2", "fr FR F3", "en EN F4"]
    );
}

#[test]
fn a_regional_template_is_used_when_it_exists() {
    let f = multilingual("fr", &["fr-CA", "fr"]);
    f.write(
        "templates/t.fr-CA.hbs",
        &template("QC {{invoice.number}}", "."),
    );
    assert_eq!(languages_and_subjects(&f), vec!["fr-CA QC F0", "fr FR F1"]);
}

#[test]
fn money_and_dates_are_written_the_french_and_english_way() {
    let f = multilingual("fr", &["fr", "en"]);
    let body = "{{money invoice.amount_due}} | {{money invoice.amount_due \"USD\"}} | {{date invoice.issue_date}} | {{date invoice.due_date}}";
    f.write("templates/t.fr.hbs", &template("FR", body))
        .write("templates/t.en.hbs", &template("EN", body))
        .write_invoices(&[
            inv("F0", "2026-12-10", "1234.56")
                .with("issue_date", "2026-11-01")
                .with("language", "fr"),
            inv("F1", "2026-12-10", "1234.56")
                .with("issue_date", "2026-11-01")
                .with("language", "en"),
        ]);
    let bodies: Vec<String> = rendered(&f)
        .iter()
        .map(|r| str_of(r, "body").to_string())
        .collect();
    // Plain ASCII spaces, as SPEC §5 writes them.
    assert_eq!(
        bodies,
        vec![
            "1 234,56 € | 1 234,56 $ US | 1er novembre 2026 | 10 décembre 2026\n",
            "€1,234.56 | $1,234.56 | November 1, 2026 | December 10, 2026\n",
        ]
    );
}

#[test]
fn the_text_body_is_never_escaped_and_the_html_body_always_is() {
    let f = one_invoice_with(
        inv("F1", "2026-12-10", "10").customer("C1", "Leroy & Fils <SARL>"),
        "Facture {{invoice.number}} — {{customer.name}}",
        "Bonjour {{customer.name}} \"client\"",
    );
    f.write(
        "templates/t.fr.html.hbs",
        "<p>Bonjour {{customer.name}}</p>\n",
    );
    let r = &rendered(&f)[0];
    assert_eq!(str_of(r, "subject"), "Facture F1 — Leroy & Fils <SARL>");
    assert_eq!(
        str_of(r, "body"),
        "Bonjour Leroy & Fils <SARL> \"client\"\n"
    );
    assert_eq!(
        str_of(r, "html"),
        "<p>Bonjour Leroy &amp; Fils &lt;SARL&gt;</p>\n"
    );
}

#[test]
fn check_finds_a_missing_variable_in_a_body_with_its_line() {
    let f = with_body("Bonjour,\n\nvotre solde : {{invoice.balance}}");
    assert_eq!(
        check_problems(&f),
        vec![
            "templates/t.fr.hbs:6:15: missing variable invoice.balance (templates render in strict mode)"
        ]
    );
}

#[test]
fn check_finds_a_missing_variable_in_a_subject_an_html_body_and_a_partial() {
    let f = one_invoice_with(inv("F1", "2026-12-10", "10"), "{{invoice.numero}}", ".");
    f.write("templates/u.fr.hbs", &template("U", "{{> sig}}"))
        .write(
            "templates/partials/sig.fr.hbs",
            "--\n{{company.signature}}\n",
        )
        .write("templates/v.fr.hbs", &template("V", "."))
        .write("templates/v.fr.html.hbs", "<p>{{customer.nom}}</p>");
    assert_eq!(
        check_problems(&f),
        vec![
            "templates/t.fr.hbs:2:1: subject: missing variable invoice.numero (templates render in strict mode)",
            "templates/partials/sig.fr.hbs:2:1: missing variable company.signature (templates render in strict mode)",
            "templates/v.fr.html.hbs:1:4: missing variable customer.nom (templates render in strict mode)",
        ]
    );
}

#[test]
fn a_message_with_a_missing_variable_is_never_sent_blank() {
    let f = one_invoice_with(inv("F1", "2026-12-10", "10"), "{{invoice.numero}}", ".");
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0);
    let r = &run.json()[0];
    assert_eq!(r["subject"], "");
    assert_ends_with(
        str_of(r, "error"),
        "templates/t.fr.hbs:2:1: subject: missing variable invoice.numero (templates render in strict mode)",
    );
    assert_contains(&run.stderr, "warning: 2026-12-10 F1 on_due: ");
}

#[test]
fn a_template_syntax_error_is_located() {
    let f = with_body("Line one\n{{#if invoice.tags}}unclosed");
    let out = check_problems(&f);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("templates/t.fr.hbs:"), "{out:?}");
    assert!(out[0].contains("template syntax:"), "{out:?}");
}

#[test]
fn a_language_tag_is_matched_whatever_its_case() {
    let f = multilingual("en", &["FR", "fr-ca"]);
    f.write(
        "templates/t.fr.hbs",
        &template("FR {{invoice.number}} {{money invoice.amount_due}}", "."),
    )
    .write(
        "templates/t.fr-CA.hbs",
        &template("QC {{invoice.number}}", "."),
    )
    .write_invoices(&[
        inv("F0", "2026-12-10", "1234.5").with("language", "FR"),
        inv("F1", "2026-12-10", "10").with("language", "fr-ca"),
    ]);
    assert_eq!(
        languages_and_subjects(&f),
        vec!["fr FR F0 1 234,50 €", "fr-CA QC F1"]
    );
}

#[test]
fn a_stage_whose_template_is_missing_is_reported_and_never_sent() {
    let f = with_stages(
        &[inv("F1", "2026-12-10", "10")],
        &["{id: on_due, offset: 0, template: nowhere}"],
    );
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0);
    let r = &run.json()[0];
    assert_eq!(r["subject"], "");
    assert_eq!(
        crate::local(&f, str_of(r, "error")),
        "templates/nowhere.fr.hbs: template \"nowhere\" not found"
    );
    let explain = run_expect(&f, "explain F1 --as-of 2026-12-10", 0);
    assert_ends_with(
        &crate::local(&f, &explain.stdout),
        "On 2026-12-10: on_due (email) fires but cannot be sent: templates/nowhere.fr.hbs: template \"nowhere\" not found\n",
    );
}
