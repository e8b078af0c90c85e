//! Issue 6, money rules: late-payment interest, the recovery indemnity, the
//! config's `rates` and a policy's early-payment discount, in scripts,
//! templates, `check`, `explain` and the shipped sample.

use crate::common::{Folder, assert_contains, template};
use crate::{
    check_problems, fields, folder, inv, preview_json, run_expect, stderr_lines, str_of,
    with_stages,
};
use serde_json::Value;

/// The statutory rate of the example.
const RATES: &str = "rates: {late_interest_annual: 12.15}\n";

/// The template `t` whose body shows the interest at the config's rate, the
/// indemnity and the interest as money.
const MONEY_BODY: &str = "{{late_interest invoice rates.late_interest_annual}} {{recovery_indemnity invoice}} {{money (late_interest invoice rates.late_interest_annual)}}";

/// One invoice per row with the policy `p` firing on the due date, the
/// config `config` and the French template `t` of (`subject`, `body`).
fn money_folder(rows: &[crate::Inv], config: &str, subject: &str, body: &str) -> Folder {
    let f = folder(rows);
    f.write("relance.yaml", config)
        .write("templates/t.fr.hbs", &template(subject, body));
    f
}

/// The text bodies of `preview --format json --render ARGS`.
fn bodies(f: &Folder, args: &str) -> Vec<String> {
    preview_json(f, &format!("{args} --render"))
        .iter()
        .map(|r| str_of(r, "body").to_string())
        .collect()
}

/// The policy `p` of one stage `late` 30 days after the due date, on template `t`.
const THIRTY_DAYS_LATE: &str = "{id: late, offset: 30, template: t}";

#[test]
fn interest_is_actual_over_365_rounded_to_the_cent_and_the_indemnity_is_40() {
    // 1000 × 12.15 % × 30 / 365 = 9.986… → 9.99
    let f = with_stages(&[inv("F1", "2026-11-01", "1000.00")], &[THIRTY_DAYS_LATE]);
    f.write("relance.yaml", RATES).write(
        "templates/t.fr.hbs",
        &template(
            "{{invoice.number}} : {{money (late_interest invoice rates.late_interest_annual)}}",
            MONEY_BODY,
        ),
    );
    let reminders = preview_json(&f, "--as-of 2026-12-01 --days 1 --render");
    assert_eq!(fields(&reminders, "date invoice"), vec!["2026-12-01 F1"]);
    // A subject gets the rates and the whole invoice it names.
    assert_eq!(str_of(&reminders[0], "subject"), "F1 : 9,99 €");
    assert_eq!(str_of(&reminders[0], "body"), "9.99 40.00 9,99 €\n");
}

#[test]
fn the_rate_may_be_written_as_a_string_and_the_indemnity_configured() {
    let f = with_stages(&[inv("F1", "2026-11-01", "1000.00")], &[THIRTY_DAYS_LATE]);
    f.write(
        "relance.yaml",
        "rates:\n  late_interest_annual: \"12.15\"\n  recovery_indemnity: 45.5\n",
    )
    .write(
        "templates/t.fr.hbs",
        &template("{{invoice.number}}", MONEY_BODY),
    );
    assert_eq!(
        bodies(&f, "--as-of 2026-12-01 --days 1"),
        vec!["9.99 45.50 9,99 €\n"]
    );
}

#[test]
fn no_interest_until_the_due_date_has_passed() {
    // Due 2026-11-01: nothing on the 31st nor on the 1st, one day's worth on
    // the 2nd: 1000 × 12.15 % / 365 = 0.3328… → 0.33
    let f = with_stages(
        &[inv("F1", "2026-11-01", "1000.00")],
        &[
            "{id: before, offset: -1, template: t}",
            "{id: on_due, offset: 0, template: t}",
            "{id: after, offset: 1, template: t}",
        ],
    );
    f.write("relance.yaml", RATES).write(
        "templates/t.fr.hbs",
        &template(
            "{{invoice.number}}",
            "{{stage.id}} {{late_interest invoice rates.late_interest_annual}}",
        ),
    );
    assert_eq!(
        bodies(&f, "--as-of 2026-10-31 --days 3"),
        vec!["before 0.00\n", "on_due 0.00\n", "after 0.33\n"]
    );
}

#[test]
fn exact_midpoints_round_half_to_even() {
    // 10 % a year over 73 days (1 January to 15 March) is exactly 2 %:
    // 20.005 → 20.00 and 20.015 → 20.02, where rounding half up gives 20.01 and 20.02.
    let f = with_stages(
        &[
            inv("F1", "2026-01-01", "1000.25"),
            inv("F2", "2026-01-01", "1000.75"),
        ],
        &["{id: late, offset: 73, template: t}"],
    );
    f.write(
        "templates/t.fr.hbs",
        &template("{{invoice.number}}", "{{late_interest invoice 10}}"),
    );
    assert_eq!(
        bodies(&f, "--as-of 2026-03-15 --days 1"),
        vec!["20.00\n", "20.02\n"]
    );
}

#[test]
fn explain_shows_the_interest_of_the_reminder_that_fires() {
    let f = with_stages(&[inv("F1", "2026-11-01", "1000.00")], &[THIRTY_DAYS_LATE]);
    f.write("relance.yaml", RATES).write(
        "templates/t.fr.hbs",
        &template(
            "Intérêts de retard : {{money (late_interest invoice rates.late_interest_annual)}}",
            ".",
        ),
    );
    let run = run_expect(&f, "explain F1 --as-of 2026-12-01", 0);
    assert_contains(
        &run.stdout,
        "On 2026-12-01: sends late (email) to f1@example.com: Intérêts de retard : 9,99 €",
    );
}

#[test]
fn when_expressions_read_late_interest_rates_and_recovery_indemnity() {
    // As of 1 December: 9.99 of interest on 1000.00, 9.98 on 999.00.
    let f = with_stages(
        &[
            inv("F1", "2026-11-01", "1000.00"),
            inv("F2", "2026-11-01", "999.00"),
            inv("F3", "2026-11-01", "5000.00").with("tags", "b2c"),
        ],
        &[
            "{id: late, offset: 30, template: t, when: 'late_interest(invoice, rates.late_interest_annual) >= 9.99 && recovery_indemnity(invoice) == rates.recovery_indemnity'}",
        ],
    );
    f.write("relance.yaml", RATES);
    assert_eq!(
        fields(&preview_json(&f, "--as-of 2026-12-01 --days 1"), "invoice"),
        vec!["F1"]
    );
    let run = run_expect(&f, "explain F2 --as-of 2026-12-01", 0);
    assert_contains(&run.stdout, "On 2026-12-01: nothing fires.");
    // The interest grows every day: F2 reaches it on 2 December (31 days: 10.31).
    assert_eq!(
        fields(
            &preview_json(&f, "--as-of 2026-12-01 --days 2"),
            "date invoice"
        ),
        vec!["2026-12-01 F1", "2026-12-02 F2"]
    );
}

#[test]
fn consumers_tagged_b2c_on_the_invoice_or_the_customer_get_no_indemnity() {
    let f = money_folder(
        &[
            // C1 is a consumer: one of its invoices says so, for both.
            inv("B2C-1", "2026-11-01", "100").customer("C1", "Jeanne Martin"),
            inv("B2C-2", "2026-11-01", "100")
                .customer("C1", "Jeanne Martin")
                .with("tags", "b2c"),
            inv("PRO", "2026-11-01", "100").with("tags", "vip"),
        ],
        RATES,
        "{{invoice.number}}",
        "{{invoice.number}} {{recovery_indemnity invoice}}",
    );
    assert_eq!(
        bodies(&f, "--as-of 2026-11-01 --days 1"),
        vec!["B2C-1 0.00\n", "B2C-2 0.00\n", "PRO 40.00\n"]
    );
}

#[test]
fn check_names_the_missing_interest_rate_where_it_is_needed() {
    let f = money_folder(
        &[inv("F1", "2026-11-01", "1000.00")],
        "language: fr\n",
        "{{invoice.number}}",
        "Intérêts : {{money (late_interest invoice rates.late_interest_annual)}}",
    );
    f.write(
        "rules/p.yaml",
        "name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: t\n    when: 'late_interest(invoice, rates.late_interest_annual) > 10'\n",
    );
    let not_set = "rates.late_interest_annual is not set in relance.yaml: add the annual late-payment interest rate in percent there (in France, the ECB main refinancing rate plus 10 points)";
    assert_eq!(
        check_problems(&f),
        vec![
            format!("rules/p.yaml:6:12: Runtime error: {not_set} (with a sample invoice)"),
            format!("templates/t.fr.hbs:4:12: late_interest: {not_set}"),
        ]
    );
    // Set, everything checks.
    f.write("relance.yaml", RATES);
    run_expect(&f, "check", 0);
}

#[test]
fn rates_mistakes_in_the_config_are_located() {
    let f = folder(&[inv("F1", "2026-11-01", "10")]);
    f.write(
        "relance.yaml",
        "language: fr\nrates: {late_interest_anual: 12.15}\n",
    );
    assert_eq!(
        stderr_lines(&f, "check", 1),
        vec![
            "relance: relance.yaml:2:9: rates: unknown field `late_interest_anual`, expected `late_interest_annual` or `recovery_indemnity`"
        ]
    );
    // A decimal comma is text, not a number: refused rather than guessed.
    f.write("relance.yaml", "rates:\n  late_interest_annual: 12,15\n");
    assert_eq!(
        stderr_lines(&f, "check", 1),
        vec![
            "relance: relance.yaml:2:3: rates: expected a decimal number such as 12.15, found \"12,15\""
        ]
    );
    f.write("relance.yaml", "rates: {late_interest_annual: -1}\n");
    assert_eq!(
        check_problems(&f),
        vec!["relance.yaml:1:9: rates.late_interest_annual must not be negative"]
    );
}

#[test]
fn a_script_function_cannot_take_the_name_of_a_built_in() {
    let f = folder(&[inv("F1", "2026-11-01", "10")]);
    f.write(
        "rules/interest.rhai",
        "// The old way.\nfn late_interest(invoice, rate) { 12.15 }\n",
    );
    assert_eq!(
        check_problems(&f)[0],
        "rules/interest.rhai:2:1: function late_interest is built into relance (the money rules): rename this one"
    );
}

/// Policy `d` (with a 2 % discount within 10 days) for invoice A, policy `p`
/// (without) for the others, both firing 20 days before the due date.
fn discount_folder(body: &str) -> Folder {
    let f = money_folder(
        &[
            // Issued 1 November, due 1 December: the discount runs to 11 November.
            inv("A", "2026-12-01", "1000.00").with("issue_date", "2026-11-01"),
            inv("B", "2026-12-01", "1000.00").with("issue_date", "2026-11-01"),
        ],
        RATES,
        "{{invoice.number}}",
        body,
    );
    f.write(
        "rules/d.yaml",
        "name: d\npriority: 5\napplies_to: 'invoice.number == \"A\"'\ndiscount: {percent: 2, within_days: 10}\nstages: [{id: early, offset: -20, template: t}]\n",
    )
    .write(
        "rules/p.yaml",
        "name: p\nstages: [{id: early, offset: -20, template: t}]\n",
    );
    f
}

#[test]
fn templates_see_the_discount_of_their_policy_only() {
    let f = discount_folder(
        "{{invoice.number}}: {{#if discount}}{{percent discount.percent}} {{discount.amount}} {{money discount.amount_due_after}} {{discount.deadline}} {{#if discount.available}}available{{else}}passed{{/if}}{{else}}no discount{{/if}}",
    );
    assert_eq!(
        bodies(&f, "--as-of 2026-11-11 --days 1"),
        vec![
            "A: 2 % 20.00 980,00 € 2026-11-11 available\n",
            "B: no discount\n"
        ]
    );
    // The day after the deadline, the reminder no longer offers it.
    assert_eq!(
        bodies(&f, "--as-of 2026-11-12 --days 1")[0],
        "A: 2 % 20.00 980,00 € 2026-11-11 passed\n"
    );
}

#[test]
fn check_finds_a_discount_shown_without_its_guard() {
    let f = discount_folder("À régler : {{money discount.amount_due_after}}");
    // Policy d, which has a discount, renders it; policy p, which has none, cannot.
    assert_eq!(
        check_problems(&f),
        vec![
            "templates/t.fr.hbs:4:12: missing variable discount.amount_due_after (templates render in strict mode) \
             (under policy p, which offers no discount: show the discount only inside {{#if discount}}…{{/if}})"
        ]
    );
}

#[test]
fn a_when_reads_the_discount_of_its_policy() {
    let f = discount_folder("{{invoice.number}}");
    f.write(
        "rules/d.yaml",
        "name: d\ndiscount: {percent: 2, within_days: 10}\nstages: [{id: early, offset: -20, template: t, when: 'discount != () && discount.available && discount.amount_due_after == 980.00 && discount.deadline == \"2026-11-11\"'}]\n",
    )
    .write(
        "rules/p.yaml",
        "name: p\npriority: 5\napplies_to: 'invoice.number == \"B\"'\nstages: [{id: early, offset: -20, template: t, when: 'discount == ()'}]\n",
    );
    // A's offer lasts until 11 November: on the 12th its stage waits for nothing.
    let on = |date: &str| {
        fields(
            &preview_json(&f, &format!("--as-of {date} --days 1")),
            "invoice policy",
        )
    };
    assert_eq!(on("2026-11-11"), vec!["A d", "B p"]);
    assert_eq!(on("2026-11-12"), vec!["B p"]);
}

#[test]
fn discount_mistakes_in_a_policy_are_located() {
    let f = folder(&[inv("F1", "2026-11-01", "10")]);
    f.write(
        "rules/p.yaml",
        "name: p\ndiscount:\n  percent: 120\n  within_days: -3\nstages: [{id: on_due, offset: 0, template: t}]\n",
    );
    assert_eq!(
        check_problems(&f)[..2],
        [
            "rules/p.yaml:3:3: discount.percent must be more than 0 and less than 100, not 120",
            "rules/p.yaml:4:3: discount.within_days counts days from the issue date: it must not be negative, not -3",
        ]
    );
}

/// The rendered reminders of the shipped sample for `args`, by invoice number.
fn sample_message(f: &Folder, args: &str, invoice: &str, stage: &str) -> Value {
    preview_json(f, &format!("{args} --render --invoice {invoice}"))
        .into_iter()
        .find(|r| r["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} for {invoice} with {args}"))
}

#[test]
fn the_shipped_courtesy_note_offers_the_discount_while_it_lasts() {
    // The courtesy note alone: the sample as shipped combines it with
    // Menuiserie Martin's overdue statement of the same day, in a message
    // that offers the discount too (tests/combine.rs).
    let f = Folder::sample_with_contract_defaults();
    // F2026-0101: 1 840,00 € issued on 23 November, due on 8 December.
    let courtesy = sample_message(&f, "--as-of 2026-12-01", "F2026-0101", "courtesy");
    assert_eq!(courtesy["date"], "2026-12-01");
    assert_contains(
        str_of(&courtesy, "body"),
        "\n\nEn la réglant au plus tard le 3 décembre 2026, vous bénéficiez d'un escompte de 2 % pour paiement anticipé : 1 803,20 € au lieu de 1 840,00 €, soit 36,80 € de moins.\n\n",
    );
    assert_contains(str_of(&courtesy, "html"), "<strong>1 803,20 €</strong>");
    // On the 6th the deadline has passed: the same template says nothing of it.
    let due_soon = sample_message(&f, "--as-of 2026-12-01", "F2026-0101", "due_soon");
    // Sunday 6 December, brought forward to Friday 4 (`shift: earlier`).
    assert_eq!(due_soon["date"], "2026-12-04");
    assert!(
        !str_of(&due_soon, "body").contains("escompte"),
        "{due_soon}"
    );
    assert!(
        !str_of(&due_soon, "html").contains("escompte"),
        "{due_soon}"
    );
}

#[test]
fn the_shipped_formal_notice_states_interest_indemnity_and_total() {
    let f = Folder::sample();
    // F2026-0050: 245,90 € due on 1 October, 61 days late on 1 December:
    // its first contact restarts the ladder (`first_contact: restart`), and
    // its formal notice comes 29 days after the first statement, on 30
    // December, 90 days late: 245.90 × 12.15 % × 90 / 365 = 7.367… → 7,37 €.
    let notice = sample_message(
        &f,
        "--as-of 2026-12-01 --days 30",
        "F2026-0050",
        "formal_notice",
    );
    assert_eq!(notice["date"], "2026-12-30");
    // A person approves it before it goes out (`approve: true`).
    assert_eq!(notice["approval"], "required");
    let body = str_of(&notice, "body");
    for line in [
        "  Principal restant dû :                  245,90 €\n",
        "  Pénalités de retard :                   7,37 €\n",
        "  Indemnité forfaitaire de recouvrement : 40,00 €\n",
        "  Total :                                 293,27 €\n",
        "soit 90 jours, au taux annuel de 12,15 % prévu par l'article L441-10 du Code de commerce",
        "245,90 € × 12,15 % × 90 / 365.",
        "L'indemnité forfaitaire pour frais de recouvrement de 40,00 € est due de plein droit",
    ] {
        assert_contains(body, line);
    }
    // In English: F2026-0061, 980.00 due on 16 November, restarted on 1
    // December too: 44 days late on 30 December (980 × 12.15 % × 44 / 365
    // = 14.353… → €14.35).
    let notice = sample_message(
        &f,
        "--as-of 2026-12-01 --days 30",
        "F2026-0061",
        "formal_notice",
    );
    assert_eq!(notice["date"], "2026-12-30");
    let body = str_of(&notice, "body");
    for line in [
        "  Late-payment interest:               €14.35\n",
        "  Fixed indemnity for recovery costs:  €40.00\n",
        "  Total:                               €1,034.35\n",
        "to today, 44 days, at the annual rate of 12.15%",
    ] {
        assert_contains(body, line);
    }
}

#[test]
fn the_shipped_formal_notice_claims_no_indemnity_from_a_consumer() {
    let f = Folder::sample();
    // F2026-0121: 185,00 € due on 14 November, customer tagged b2c; its
    // formal notice on 30 December, 46 days late (185 × 12.15 % × 46 / 365
    // = 2.832… → 2,83 €).
    let notice = sample_message(
        &f,
        "--as-of 2026-12-01 --days 30",
        "F2026-0121",
        "formal_notice",
    );
    assert_eq!(notice["date"], "2026-12-30");
    let body = str_of(&notice, "body");
    assert_contains(
        body,
        "  Pénalités de retard :                   2,83 €\n  Total :                                 187,83 €\n",
    );
    assert!(!body.contains("Indemnité"), "{body}");
    assert!(!body.contains("indemnité"), "{body}");
}
