//! docs/contract.md §3 and §4.1: policies, their choice, and their mistakes located by `check`.

use crate::common::{Folder, assert_contains, assert_starts_with, policy};
use crate::{
    args, array, check_problems, fields, folder, inv, preview_fields, run_args, run_expect,
    stderr_lines,
};

/// "INVOICE POLICY STAGE" of each reminder on 2026-12-10.
fn chosen_on_dec_10(f: &Folder) -> Vec<String> {
    preview_fields(f, "--as-of 2026-12-10 --days 1", "invoice policy stage")
}

/// A folder of one invoice (F1, due 2026-12-10) with `content` written at `rel`.
fn one_invoice_with_file(rel: &str, content: &str) -> Folder {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(rel, content);
    f
}

#[test]
fn the_highest_priority_policy_whose_applies_to_holds_wins() {
    let f = folder(&[
        inv("EUR1", "2026-12-10", "10"),
        inv("USD1", "2026-12-10", "10").with("currency", "USD"),
    ]);
    f.write(
        "rules/euro.yaml",
        "name: euro\npriority: 5\napplies_to: 'invoice.currency == \"EUR\"'\nstages: [{id: euro_due, offset: 0, template: t}]\n",
    )
    .write(
        "rules/everyone.yaml",
        "name: everyone\npriority: 9\napplies_to: 'invoice.amount_due > 100'\nstages: [{id: big_due, offset: 0, template: t}]\n",
    );
    assert_eq!(
        chosen_on_dec_10(&f),
        vec!["EUR1 euro euro_due", "USD1 p on_due"]
    );
}

#[test]
fn a_priority_tie_goes_to_the_policy_whose_name_sorts_first() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.remove("rules/p.yaml");
    // File names sort the other way round: the name decides, not the file.
    f.write(
        "rules/a.yaml",
        "name: zeta\npriority: 3\nstages: [{id: z, offset: 0, template: t}]\n",
    )
    .write(
        "rules/b.yaml",
        "name: alpha\npriority: 3\nstages: [{id: a, offset: 0, template: t}]\n",
    );
    assert_eq!(chosen_on_dec_10(&f), vec!["F1 alpha a"]);
}

#[test]
fn an_invoice_no_policy_matches_is_reported_not_an_error() {
    let f = folder(&[inv("F1", "2026-12-10", "10"), inv("F2", "2026-12-10", "10")]);
    f.write(
        "rules/p.yaml",
        "name: p\napplies_to: 'invoice.number == \"F2\"'\nstages: [{id: on_due, offset: 0, template: t}]\n",
    );
    assert_eq!(
        stderr_lines(&f, "preview --as-of 2026-12-10 --days 1", 0),
        vec!["note: 1 open invoice(s) matched no policy: F1"]
    );
    assert_eq!(chosen_on_dec_10(&f), vec!["F2 p on_due"]);
    let explain = run_expect(&f, "explain F1 --as-of 2026-12-10", 0);
    assert_contains(
        &explain.stdout,
        "p                    priority    0  applies_to is false",
    );
    assert_contains(
        &explain.stdout,
        "No policy matched: this invoice gets no reminder.",
    );
    run_expect(&f, "check", 0);
}

#[test]
fn a_yaml_syntax_error_is_located_and_check_fails() {
    let f = one_invoice_with_file(
        "rules/broken.yaml",
        "name: broken\nstages:\n  - {id: a, offset: 1, template: t\n",
    );
    let out = check_problems(&f);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("rules/broken.yaml:4:1: "), "{out:?}");
}

#[test]
fn an_unknown_key_is_reported_with_its_position_and_the_other_policies_still_load() {
    let f = one_invoice_with_file(
        "rules/typo.yaml",
        "name: typo\npriority: 50\nstages:\n  - id: one\n    ofset: 1\n    template: t\n",
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "rules/typo.yaml:5:5: stages[0]: unknown field `ofset`, expected one of `id`, `offset`, `on`, `channel`, `template`, `when`, `repeat`, `shift`, `group`, `urgent`, `approve`, `to`, `cc`, `bcc`"
        ]
    );
    // The broken policy is left out and `p` still works, but preview says
    // (exit 1) that what it shows is not what the daemon would run with.
    let run = run_expect(&f, "preview --as-of 2026-12-10 --days 1 --format json", 1);
    assert_eq!(
        fields(&array(run.json()), "invoice policy stage"),
        vec!["F1 p on_due"]
    );
}

#[test]
fn an_expression_that_does_not_compile_is_located_inside_the_yaml() {
    let f = one_invoice_with_file(
        "rules/p.yaml",
        "name: p\napplies_to: 'invoce.amount > 1'\nstages:\n  - id: on_due\n    offset: 0\n    template: t\n    when: 'invoice.amount_due >= '\n",
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "rules/p.yaml:2:14: in expression \"invoce.amount > 1\": Undefined variable: invoce",
            "rules/p.yaml:7:34: in expression \"invoice.amount_due >= \": Script is incomplete",
        ]
    );
}

#[test]
fn a_missing_template_is_reported_at_the_stage() {
    let f = one_invoice_with_file(
        "rules/p.yaml",
        "name: p\nstages:\n  - id: on_due\n    offset: 0\n    template: nowhere\n",
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "rules/p.yaml:5:5: stage on_due: template \"nowhere\" not found: expected templates/nowhere.fr.hbs"
        ]
    );
}

#[test]
fn duplicate_policy_names_and_stage_ids_are_errors() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "rules/q.yaml",
        &policy("p", &["{id: x, offset: 1, template: t}"]),
    )
    .write(
        "rules/r.yaml",
        &policy(
            "r",
            &[
                "{id: x, offset: 1, template: t}",
                "{id: x, offset: 2, template: t}",
            ],
        ),
    );
    let out = check_problems(&f);
    assert!(
        out.iter()
            .any(|l| l.starts_with("rules/q.yaml:1:1: policy name \"p\" is already used by")),
        "{out:?}"
    );
    assert!(
        out.contains(&"rules/r.yaml:4:6: stage id \"x\" is used twice in this policy".to_string()),
        "{out:?}"
    );
}

#[test]
fn an_unknown_config_key_is_an_error_with_its_position() {
    let f = one_invoice_with_file("relance.yaml", "language: en\ncurency: USD\n");
    let err = stderr_lines(&f, "check", 1);
    assert_starts_with(
        &err[0],
        "relance: relance.yaml:2:1: unknown field `curency`",
    );
}

#[test]
fn paths_in_the_config_are_relative_to_the_config_file() {
    let f = folder(&[]);
    f.remove("rules");
    f.remove("templates");
    f.write(
        "conf/relance.yaml",
        "rules: ../shared/rules\ntemplates: ../shared/templates\nfeeds: [{path: ../exports/today.csv}]\n",
    )
    .write("shared/rules/p.yaml", &policy("p", &[crate::ON_DUE]))
    .write(
        "shared/templates/t.fr.hbs",
        &crate::common::template("{{invoice.number}}", "."),
    )
    .write(
        "exports/today.csv",
        &crate::csv(&[inv("X1", "2026-12-10", "10")]),
    );
    let config = f.path().join("conf/relance.yaml");
    let preview = args("preview --as-of 2026-12-10 --days 1 --format json");
    let command = [&["--config", config.to_str().unwrap()][..], &preview].concat();
    let run = run_args(&f, &command, 0);
    assert_eq!(run.json()[0]["invoice"], "X1");
}
