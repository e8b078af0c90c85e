//! docs/contract.md §3: Rhai in policies and templates, exact decimals, the sandbox,
//! customer aggregates.

use crate::common::{Folder, assert_contains, assert_ends_with, assert_starts_with, template};
use crate::{
    check_problems, folder, inv, preview_fields, preview_json, run_expect, stderr_lines, str_of,
};

/// A folder whose policy `p` fires on the due date when `when` holds.
fn with_when(rows: &[crate::Inv], when: &str) -> Folder {
    let f = folder(rows);
    write_when(&f, when);
    f
}

/// Writes the policy `p`, whose stage fires on the due date when `when` holds.
fn write_when(f: &Folder, when: &str) {
    f.write(
        "rules/p.yaml",
        &format!(
            "name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: t\n    when: '{when}'\n"
        ),
    );
}

/// Invoices `failing` and `other` (10 each, due 2026-12-10) and the script
/// file `rules/lib.rhai` of `lib`.
fn two_invoices_and_lib(failing: &str, other: &str, lib: &str) -> Folder {
    let f = folder(&[
        inv(failing, "2026-12-10", "10"),
        inv(other, "2026-12-10", "10"),
    ]);
    f.write("rules/lib.rhai", lib);
    f
}

/// The invoice numbers of the reminders on 2026-12-10.
fn numbers_on_dec_10(f: &Folder) -> Vec<String> {
    preview_fields(f, "--as-of 2026-12-10 --days 1", "invoice")
}

/// Invoices `failing` and `OK`, whose stage fires when `when` holds, with the
/// script file `rules/lib.rhai` of `lib`, which fails for `failing` only.
/// Checks that `OK` still gets its reminder of 2026-12-10 and returns the
/// folder and the problems `preview` reported.
fn preview_with_a_failing_script(failing: &str, when: &str, lib: &str) -> (Folder, Vec<String>) {
    let f = two_invoices_and_lib(failing, "OK", lib);
    write_when(&f, when);
    let problems = stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0);
    assert_eq!(numbers_on_dec_10(&f), vec!["OK"]);
    (f, problems)
}

const FEES: &str = "\
// Fees and thresholds of the finance team.
fn late_fee(invoice) {
    (invoice.amount_due * 0.05).round(2)
}
fn is_big(invoice) {
    invoice.amount_due >= 1000
}
";

#[test]
fn functions_of_rhai_files_are_callable_from_when() {
    let f = with_when(
        &[
            inv("BIG", "2026-12-10", "1234.56"),
            inv("SMALL", "2026-12-10", "999.99"),
        ],
        "is_big(invoice)",
    );
    f.write("rules/fees.rhai", FEES);
    assert_eq!(numbers_on_dec_10(&f), vec!["BIG"]);
}

#[test]
fn functions_of_rhai_files_are_template_helpers() {
    let f = folder(&[inv("F1", "2026-12-10", "1234.56")]);
    f.write("rules/fees.rhai", FEES).write(
        "templates/t.fr.hbs",
        &template(
            "{{invoice.number}} : pénalité {{money (late_fee invoice)}}",
            "Pénalité : {{late_fee invoice}}",
        ),
    );
    let r = &preview_json(&f, "--as-of 2026-12-10 --days 1 --render")[0];
    // 1234.56 × 0.05 = 61.728, rounded to the cent.
    assert_eq!(str_of(r, "subject"), "F1 : pénalité 61,73 €");
    assert_eq!(str_of(r, "body"), "Pénalité : 61.73\n");
}

#[test]
fn numbers_in_scripts_are_exact_decimals() {
    let f = with_when(
        &[inv("F1", "2026-12-10", "0.3").with("amount_paid", "0.1")],
        "0.1 + 0.2 == 0.3 && invoice.amount_due == 0.2 && invoice.amount_due * 3 == 0.6",
    );
    f.write("rules/sum.rhai", "fn tenths() { 0.1 + 0.2 }\n")
        .write(
            "templates/t.fr.hbs",
            &template("{{invoice.number}}", "{{tenths}}"),
        );
    let r = &preview_json(&f, "--as-of 2026-12-10 --days 1 --render")[0];
    assert_eq!(str_of(r, "body"), "0.3\n");
}

#[test]
fn a_script_that_loops_forever_is_stopped_for_that_invoice_only() {
    let (_f, problems) = preview_with_a_failing_script(
        "LOOP",
        "spin(invoice)",
        "fn spin(invoice) {\n    if invoice.number == \"LOOP\" { loop { } }\n    true\n}\n",
    );
    assert_eq!(
        problems,
        vec![
            // Located at the .rhai line that loops (issue 12), with the
            // expression that called it.
            "rules/lib.rhai:2:5: script stopped: too many operations (an endless loop?) (in spin, called at rules/p.yaml:6:12) (invoice LOOP)"
        ]
    );
}

#[test]
fn a_loop_or_recursion_in_a_template_helper_is_located_at_its_rhai_line() {
    let f = two_invoices_and_lib(
        "LOOP",
        "OK",
        "// Helpers.\nfn spin(invoice) {\n    let n = 0;\n    if invoice.number == \"LOOP\" {\n        loop { n += 1; }\n    }\n    n\n}\nfn deep(n) {\n    deep(n + 1)\n}\n",
    );
    f.write(
        "templates/t.fr.hbs",
        &template("{{invoice.number}}", "Body\n{{spin invoice}}"),
    )
    .write("templates/u.fr.hbs", &template("{{deep 1}}", "."));
    let problems = check_problems(&f);
    assert_eq!(
        problems,
        vec![
            "rules/lib.rhai:10:5: script stopped: calls nested too deep (endless recursion?) \
             (in deep, called at templates/u.fr.hbs:2:1)",
        ]
    );
    let run = run_expect(
        &f,
        "preview --as-of 2026-12-10 --days 1 --render --format json",
        0,
    );
    let reminders = run.json();
    assert_eq!(
        crate::local(&f, reminders[0]["error"].as_str().unwrap()),
        "rules/lib.rhai:5:9: script stopped: too many operations (an endless loop?) \
         (in spin, called at templates/t.fr.hbs:5:1)"
    );
    assert_eq!(reminders[1]["body"], "Body\n0\n");
}

#[test]
fn a_script_that_recurses_too_deep_is_stopped_for_that_invoice_only() {
    let (_f, err) = preview_with_a_failing_script(
        "DEEP",
        "invoice.number != \"DEEP\" || depth(0) > 0",
        "fn depth(n) { depth(n + 1) }\n",
    );
    assert_eq!(err.len(), 1, "{err:?}");
    assert_contains(
        &err[0],
        "script stopped: calls nested too deep (endless recursion?)",
    );
    assert_ends_with(&err[0], "(invoice DEEP)");
}

#[test]
fn a_script_that_throws_is_reported_where_it_threw_for_that_invoice_only() {
    let (f, problems) = preview_with_a_failing_script(
        "BOOM",
        "known(invoice)",
        "fn known(invoice) {\n    if invoice.number == \"BOOM\" { throw \"unknown customer\"; }\n    true\n}\n",
    );
    assert_eq!(
        problems,
        vec!["rules/lib.rhai:2:35: Runtime error: unknown customer (in known) (invoice BOOM)"]
    );
    let explain = run_expect(&f, "explain BOOM --as-of 2026-12-10", 0);
    assert_contains(&explain.stdout, "when failed: ");
    assert_contains(
        &explain.stdout,
        "lib.rhai:2:35: Runtime error: unknown customer",
    );
}

#[test]
fn a_failing_applies_to_gives_that_invoice_nothing_rather_than_a_lower_policy() {
    let f = two_invoices_and_lib(
        "BOOM",
        "KEY",
        "fn is_key(invoice) {\n    if invoice.number == \"BOOM\" { throw \"CRM unreachable\"; }\n    invoice.number == \"KEY\"\n}\n",
    );
    f.write(
        "rules/key.yaml",
        "name: key\npriority: 20\napplies_to: 'is_key(invoice)'\nstages: [{id: gentle, offset: 0, template: t}]\n",
    );
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        vec!["rules/lib.rhai:2:35: Runtime error: CRM unreachable (in is_key) (invoice BOOM)"]
    );
    // BOOM might be a key account: it must not get the standard policy's reminder.
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-10 --days 1", "invoice policy"),
        vec!["KEY key"]
    );
    let explain = run_expect(&f, "explain BOOM --as-of 2026-12-10", 0);
    assert_contains(
        &explain.stdout,
        "An applies_to failed, so no policy can be chosen: this invoice gets no reminder until it is fixed.",
    );
}

#[test]
fn a_template_helper_that_fails_marks_that_reminder_only() {
    let f = two_invoices_and_lib(
        "BOOM",
        "OK",
        "fn label(invoice) {\n    if invoice.number == \"BOOM\" { throw \"no label\"; }\n    \"L-\" + invoice.number\n}\n",
    );
    f.write("templates/t.fr.hbs", &template("{{label invoice}}", "."));
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 0);
    let reminders = run.json();
    assert_eq!(reminders[0]["invoice"], "BOOM");
    // Located where the script threw, then where the template called it.
    assert_eq!(
        crate::local(&f, reminders[0]["error"].as_str().unwrap()),
        "rules/lib.rhai:2:35: Runtime error: no label (in label, called at templates/t.fr.hbs:2:1)",
        "{reminders}"
    );
    assert_eq!(reminders[1]["subject"], "L-OK");
    assert!(reminders[1].get("error").is_none());
    assert_contains(&run.stderr, "warning: 2026-12-10 BOOM on_due: ");
}

#[test]
fn scripts_cannot_use_eval() {
    let f = with_when(&[inv("F1", "2026-12-10", "10")], "eval(\"true\")");
    let out = check_problems(&f);
    assert_starts_with(
        &out[0],
        "rules/p.yaml:6:12: in expression \"eval(\\\"true\\\")\"",
    );
}

/// Customer C1: two settled invoices (one 20 days late, one early) and two
/// open ones (100.50 due 15 November, 149.75 left on 20 December); C2: one
/// open invoice.
fn customers() -> Vec<crate::Inv> {
    vec![
        inv("P1", "2026-10-01", "10")
            .customer("C1", "Acme")
            .settled("2026-10-21"),
        inv("P2", "2026-11-01", "10")
            .customer("C1", "Acme")
            .settled("2026-10-30"),
        inv("O1", "2026-11-15", "100.50").customer("C1", "Acme"),
        inv("O2", "2026-12-20", "200")
            .with("amount_paid", "50.25")
            .customer("C1", "Acme"),
        inv("O3", "2026-11-15", "300").customer("C2", "Beta"),
    ]
}

#[test]
fn customer_aggregates_are_usable_in_applies_to_and_when() {
    let f = folder(&customers());
    f.write(
        "rules/watch.yaml",
        "name: watch\npriority: 10\n\
         applies_to: 'customer.open_count == 2 && customer.total_due == 250.25 && customer.late_paid_ratio == 0.5 && customer.avg_days_late == 10'\n\
         stages: [{id: watch_early, offset: -30, template: t, when: 'customer.overdue_count >= 1'}]\n",
    );
    // As of 1 December O1 is overdue: the watch policy holds for both of C1's open invoices.
    assert_eq!(
        preview_fields(&f, "--as-of 2026-12-01 --days 1", "invoice policy stage"),
        vec![
            "O1 watch watch_early",
            "O2 watch watch_early",
            "O3 p on_due"
        ]
    );
}

#[test]
fn customer_aggregates_are_shown_to_templates() {
    let f = folder(&customers());
    f.write(
        "templates/t.fr.hbs",
        &template(
            "{{invoice.number}}",
            "{{customer.open_count}} {{customer.total_due}} {{customer.overdue_count}} {{customer.late_paid_ratio}} {{customer.avg_days_late}}",
        ),
    );
    let reminders = preview_json(&f, "--as-of 2026-12-20 --days 1 --render --invoice O2");
    // As of 20 December only O1 is overdue (O2 is due that day).
    assert_eq!(str_of(&reminders[0], "body"), "2 250.25 1 0.5 10\n");
}
