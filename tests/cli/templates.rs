//! docs/contract.md §5: front matter, HTML versions, partials, languages, strict mode,
//! the money and date helpers, escaping.

use crate::common::{Folder, assert_contains, assert_ends_with, template};
use crate::{
    args, check_problems, folder, inv, lines, preview_fields, preview_json, run_expect, str_of,
    with_stages, write_stages,
};
use serde_json::Value;

/// The reminders of 2026-12-10 rendered in full (`--render`).
fn rendered(f: &Folder) -> Vec<Value> {
    preview_json(f, "--as-of 2026-12-10 --days 1 --render")
}

/// The text body of each reminder of 2026-12-10.
fn bodies(f: &Folder) -> Vec<String> {
    rendered(f)
        .iter()
        .map(|r| str_of(r, "body").to_string())
        .collect()
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
    // Plain ASCII spaces, as docs/contract.md §5 writes them.
    assert_eq!(
        bodies(&f),
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
    // A stage naming a missing template is an error of the folder: the
    // preview shows what it can, and exits 1 as the daemon would not start.
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 1);
    let r = &run.json()[0];
    assert_eq!(r["subject"], "");
    assert_eq!(
        crate::local(&f, str_of(r, "error")),
        "templates/nowhere.fr.hbs: template \"nowhere\" not found"
    );
    let explain = run_expect(&f, "explain F1 --as-of 2026-12-10", 1);
    assert_ends_with(
        &crate::local(&f, &explain.stdout),
        "On 2026-12-10: on_due (email) fires but cannot be sent: templates/nowhere.fr.hbs: template \"nowhere\" not found\n",
    );
}

/// Writes the feed of `rows` with one more column, `column`, holding `values`
/// (one for each row): an extra column, kept in `invoice.extra`.
fn write_with_column(f: &Folder, rows: &[crate::Inv], column: &str, values: &[&str]) {
    let cells = std::iter::once(column).chain(values.iter().copied());
    let feed: String = crate::csv(rows)
        .lines()
        .zip(cells)
        .map(|(line, cell)| format!("{line},{cell}\n"))
        .collect();
    f.write("data/invoices.csv", &feed);
}

#[test]
fn amounts_are_exact_numbers_that_compare_as_decimals() {
    let f = with_body(concat!(
        "{{invoice.amount}} {{invoice.amount_paid}} {{invoice.amount_due}} {{customer.total_due}}\n",
        "{{#if (eq invoice.amount_paid 0)}}nothing paid{{else}}partly paid{{/if}}\n",
        "{{#if invoice.amount_paid}}paid{{else}}unpaid{{/if}}\n",
        "{{#if (ne invoice.amount_due 1234)}}not 1234{{else}}1234{{/if}}\n",
        "{{#eq invoice.amount \"1234.0\"}}block eq{{else}}block ne{{/eq}}\n",
        "{{#if (gt invoice.amount_due 999.99)}}over 999.99{{/if}}\n",
        "{{#if customer.late_paid_ratio}}late{{else}}on time{{/if}}\n",
        "{{money invoice.amount_due}}",
    ));
    f.write_invoices(&[
        inv("F1", "2026-12-10", "1234"),
        inv("F2", "2026-12-10", "1234.56").with("amount_paid", "234.56"),
    ]);
    assert_eq!(
        bodies(&f),
        vec![
            "1234.00 0.00 1234.00 1234.00\nnothing paid\nunpaid\n1234\nblock eq\nover 999.99\non time\n1 234,00 €\n",
            "1234.56 234.56 1000.00 1000.00\npartly paid\npaid\nnot 1234\nblock ne\nover 999.99\non time\n1 000,00 €\n",
        ]
    );
}

#[test]
fn two_strings_still_compare_as_text() {
    let f = with_body(
        "{{#if (eq invoice.extra.postcode \"1000\")}}same{{else}}different{{/if}} \
         {{#if (eq invoice.extra.postcode 1000)}}same number{{/if}}",
    );
    write_with_column(&f, &[inv("F1", "2026-12-10", "10")], "postcode", &["01000"]);
    assert_eq!(bodies(&f), vec!["different same number\n"]);
}

#[test]
fn script_helpers_get_amounts_as_exact_decimals() {
    let f = with_body(
        "{{plus40 invoice.amount_due}} {{kind invoice.amount_due}} {{kind invoice.days_overdue}} \
         {{#if (nothing invoice)}}truthy{{else}}falsy{{/if}}",
    );
    f.write(
        "rules/lib.rhai",
        "fn plus40(x) { x + 40.00 }\nfn kind(x) { type_of(x) }\nfn nothing(invoice) { 0.00 }\n",
    )
    .write_invoices(&[inv("F1", "2026-12-10", "1234")]);
    assert_eq!(bodies(&f), vec!["1274.00 decimal i64 falsy\n"]);
}

#[test]
fn a_currency_code_is_written_in_upper_case_whatever_its_case() {
    let f =
        with_body("{{money invoice.amount_due \"usd\"}} | {{money invoice.amount_due \"chf\"}}");
    f.write_invoices(&[inv("F1", "2026-12-10", "0.12")]);
    assert_eq!(bodies(&f), vec!["0,12 $ US | 0,12 CHF\n"]);
}

#[test]
fn check_refuses_unescaped_tags_in_html_bodies_and_the_partials_they_include() {
    // The text body is never escaped: triple braces there are harmless.
    let f = with_body("{{{customer.name}}}\n{{> sig}}");
    f.write(
        "templates/t.fr.html.hbs",
        "<p>Bonjour {{{customer.name}}},</p>\n<p>{{#if invoice.number}}{{& invoice.number}}{{/if}}</p>\n{{> sig}}\n",
    )
    // A text partial with no HTML version: HTML bodies include it as it is.
    .write("templates/partials/sig.fr.hbs", "--\n{{{company.name}}}\n")
    // No HTML body includes this one.
    .write("templates/partials/unused.fr.hbs", "{{{company.name}}}\n");
    assert_eq!(
        check_problems(&f),
        vec![
            "templates/t.fr.html.hbs:1:12: {{{customer.name}}} would insert raw HTML, but HTML bodies are always escaped: write {{customer.name}}",
            "templates/t.fr.html.hbs:2:26: {{& invoice.number}} would insert raw HTML, but HTML bodies are always escaped: write {{invoice.number}}",
            "templates/partials/sig.fr.hbs:2:1: {{{company.name}}} would insert raw HTML, but HTML bodies are always escaped: write {{company.name}} (this partial is included by the HTML body templates/t.fr.html.hbs)",
        ]
    );
    // Even with the errors ignored, the HTML body is escaped.
    f.write("relance.yaml", "company: {name: <i>Durand</i>}\n")
        .write_invoices(&[inv("F1", "2026-12-10", "10").customer("C1", "<b>Leroy</b>")]);
    let run = f.run(&args(
        "preview --format json --as-of 2026-12-10 --days 1 --render",
    ));
    let r = &run.json()[0];
    assert_eq!(str_of(r, "body"), "<b>Leroy</b>\n--\n<i>Durand</i>\n");
    assert_eq!(
        str_of(r, "html"),
        "<p>Bonjour &lt;b&gt;Leroy&lt;/b&gt;,</p>\n<p>F1</p>\n--\n&lt;i&gt;Durand&lt;/i&gt;\n"
    );
}

/// The hint `check` adds to a failure with the sparse sample invoice.
const SPARSE_HINT: &str = " (with a sample invoice that has no paid_date, promise_date, tags, language, extra values or payment: show an optional field only when it is there, as in {{#if invoice.promise_date}}…{{/if}})";

/// The problems `check` finds (it must exit 1) with `body` as the body of `t`.
fn check_body(f: &Folder, body: &str) -> Vec<String> {
    f.write("templates/t.fr.hbs", &template("{{invoice.number}}", body));
    check_problems(f)
}

#[test]
fn check_renders_every_template_for_an_invoice_without_optional_fields_too() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    assert_eq!(
        check_body(&f, "Promesse : {{date invoice.promise_date}}"),
        vec![format!(
            "templates/t.fr.hbs:4:12: missing variable invoice.promise_date (templates render in strict mode){SPARSE_HINT}"
        )]
    );
    // An optional date shown as it is would be a blank for most invoices.
    assert_eq!(
        check_body(&f, "Payée le {{invoice.paid_date}}"),
        vec![format!(
            "templates/t.fr.hbs:4:10: missing variable invoice.paid_date (templates render in strict mode){SPARSE_HINT}"
        )]
    );
    // An empty extra column is no date either. Both samples have their
    // extra columns empty (a value of the wrong kind would fail a rightly
    // guarded helper), so the full one already fails, without the hint.
    write_with_column(&f, &[inv("F1", "2026-12-10", "10")], "delivered", &[""]);
    assert_eq!(
        check_body(&f, "Livrée le {{date invoice.extra.delivered}}"),
        vec!["templates/t.fr.hbs:4:11: date: invoice.extra.delivered is empty"]
    );
    // Guarded, the same fields pass.
    f.write(
        "templates/t.fr.hbs",
        &template(
            "{{invoice.number}}",
            "{{#if invoice.promise_date}}Promesse : {{date invoice.promise_date}}{{/if}}\
             {{#if invoice.paid_date}}Payée le {{invoice.paid_date}}{{/if}}\
             {{#if invoice.extra.delivered}}{{date invoice.extra.delivered}}{{/if}}\
             {{#each invoice.tags}}{{this}}{{/each}}",
        ),
    );
    run_expect(&f, "check", 0);
}

#[test]
fn an_optional_field_an_invoice_lacks_is_never_sent_blank() {
    let f = with_body("Promesse : {{invoice.promise_date}}");
    // A promise already broken: the reminder is not paused.
    f.write_invoices(&[
        inv("F1", "2026-12-10", "10").with("promise_date", "2026-12-05"),
        inv("F2", "2026-12-10", "10"),
    ]);
    let run = f.run(&args(
        "preview --format json --as-of 2026-12-10 --days 1 --render",
    ));
    let reminders = run.json();
    assert_eq!(str_of(&reminders[0], "body"), "Promesse : 2026-12-05\n");
    assert_ends_with(
        str_of(&reminders[1], "error"),
        "templates/t.fr.hbs:4:12: missing variable invoice.promise_date (templates render in strict mode)",
    );
}

#[test]
fn check_warns_of_open_invoices_without_an_address_when_a_policy_sends_emails() {
    let f = folder(&[
        inv("F1", "2026-12-10", "10"),
        inv("F2", "2026-12-10", "10").with("email", ""),
        // Settled: it gets no reminder, so no address is needed.
        inv("F3", "2026-12-10", "10")
            .with("email", "")
            .settled("2026-12-01"),
    ]);
    let run = run_expect(&f, "check", 0);
    assert_eq!(
        lines(&f, &run.stdout),
        vec![
            "data/invoices.csv:3: warning: email: invoice F2 has no email address: its email reminders cannot be sent"
        ]
    );
    // Letters need no email address.
    write_stages(
        &f,
        &["{id: notice, offset: 0, channel: letter, template: t}"],
    );
    assert_eq!(run_expect(&f, "check", 0).stdout, "");
}
