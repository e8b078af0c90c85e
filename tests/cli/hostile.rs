//! Hostile and careless input (issue 12): no panic, no stack overflow, no
//! unbounded time or memory, whatever the feeds, rules and templates hold.

use std::time::{Duration, Instant};

use crate::common::{CSV_HEADER, Folder, assert_contains, template};
use crate::{check_problems, fields, folder, inv, preview_json, run_expect};

/// Half of `Decimal::MAX`, plus one: two of them overflow, one does not.
const HALF_MAX_PLUS: &str = "39614081257132168796771975168";

/// The invoice numbers `preview --format json` plans on 2026-12-10.
fn planned(f: &Folder) -> Vec<String> {
    fields(&preview_json(f, "--as-of 2026-12-10 --days 1"), "invoice")
}

#[track_caller]
fn assert_no_crash(run: &crate::common::Run) {
    assert!(
        ![101, 134, -1].contains(&run.code) && !run.stderr.contains("panicked"),
        "crashed ({}):\n{}",
        run.code,
        run.stderr
    );
}

#[test]
fn amounts_of_one_customer_past_the_decimal_maximum_are_a_bad_row_not_a_panic() {
    let f = folder(&[
        inv("F1", "2026-12-10", HALF_MAX_PLUS).customer("C1", "Acme"),
        inv("F2", "2026-12-10", HALF_MAX_PLUS).customer("C1", "Acme"),
        inv("F3", "2026-12-10", "10"),
    ]);
    assert_eq!(
        check_problems(&f),
        vec![format!(
            "data/invoices.csv:3: amount: the invoices of customer \"C1\" add up to more than \
             relance computes exactly (79228162514264337593543950335) (its first invoice is at \
             data/invoices.csv:2)"
        )]
    );
    // Every other invoice goes on, the customer's first one too.
    assert_eq!(planned(&f), vec!["F1", "F3"]);
    for command in [
        "preview --as-of 2026-12-10",
        "explain F1 --as-of 2026-12-10",
    ] {
        assert_no_crash(&f.run(&crate::args(command)));
    }
    let run = f.run(&["run", "--once", "--as-of", "2026-12-10"]);
    assert_no_crash(&run);
    assert_eq!(f.files("outbox").len(), 2, "{}", run.stderr);
}

#[test]
fn a_payment_whose_difference_with_the_amount_overflows_is_a_bad_row() {
    let max = "79228162514264337593543950335";
    let f = folder(&[
        inv("F1", "2026-12-10", &format!("-{max}")).with("amount_paid", max),
        inv("F2", "2026-12-10", "10"),
    ]);
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv:2: amount_paid: amount - amount_paid is too large to compute exactly"
        ]
    );
    assert_eq!(planned(&f), vec!["F2"]);
}

/// A folder whose template `t` includes partial `a`, with these partials.
fn with_partials(partials: &[(&str, &str)]) -> Folder {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "templates/t.fr.hbs",
        &template("{{invoice.number}}", "{{> a}}"),
    );
    for (name, body) in partials {
        f.write(&format!("templates/partials/{name}.fr.hbs"), body);
    }
    f
}

#[test]
fn partials_that_include_each_other_are_a_located_error_not_a_stack_overflow() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("a", "A\n{{> b}}\n"),
                ("b", "{{#if invoice}}{{> a}}{{/if}}\n"),
            ],
            "templates/partials/a.fr.hbs:2:1: partial include cycle: a → b → a \
             (templates/partials/b.fr.hbs:1:16 includes a)",
        ),
        (
            &[("a", "{{> a}}")],
            "templates/partials/a.fr.hbs:1:1: partial include cycle: a → a",
        ),
        (
            &[("a", "{{> b}}"), ("b", "{{> c}}"), ("c", "x {{> b}}")],
            "templates/partials/b.fr.hbs:1:1: partial include cycle: b → c → b \
             (templates/partials/c.fr.hbs:1:3 includes b)",
        ),
    ];
    for (partials, expected) in cases {
        let f = with_partials(partials);
        // (`t`, which includes the refused partials, then fails to render: said too.)
        assert_eq!(check_problems(&f)[0], expected, "{partials:?}");
        let preview = f.run(&crate::args("preview --as-of 2026-12-10 --format json"));
        assert_no_crash(&preview);
    }
    // A partial included twice, or by two others, is no cycle.
    let f = with_partials(&[("a", "{{> b}}{{> b}}{{> c}}"), ("b", "{{> c}}"), ("c", "c")]);
    assert_eq!(run_expect(&f, "check", 0).stdout, "");
}

/// `check`'s problems, which must come within a few seconds.
#[track_caller]
fn check_quickly(f: &Folder) -> Vec<String> {
    let started = Instant::now();
    let problems = check_problems(f);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "check took {:?}",
        started.elapsed()
    );
    problems
}

#[test]
fn deeply_nested_rule_files_are_refused_before_they_are_parsed() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    // 400 KB of flow nesting: the YAML parser takes minutes over it.
    f.write("rules/deep.yaml", &"[".repeat(400_000));
    let mut block = String::new();
    for level in 0..100 {
        block.push_str(&format!("{}k:\n", "  ".repeat(level)));
    }
    f.write("rules/holds.yaml", &block);
    assert_eq!(
        check_quickly(&f),
        vec![
            "rules/deep.yaml:1:64: nested deeper than limits.yaml_depth (64 levels): \
             simplify the file, or raise the limit in relance.yaml",
            "rules/holds.yaml:65:129: nested deeper than limits.yaml_depth (64 levels): \
             simplify the file, or raise the limit in relance.yaml",
        ]
    );
    // The policies that load still decide.
    assert_contains(
        &f.run(&crate::args("preview --as-of 2026-12-10")).stdout,
        "F1",
    );
}

#[test]
fn rule_file_limits_are_configurable() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "relance.yaml",
        "limits: {rule_file_bytes: 40, yaml_depth: 3}\n",
    );
    let problems = check_quickly(&f);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_contains(
        &problems[0],
        "rules/p.yaml: policy file is larger than limits.rule_file_bytes (40 bytes)",
    );
    f.write("relance.yaml", "limits: {yaml_depth: 3}\n");
    assert_contains(
        &check_quickly(&f)[0],
        "rules/p.yaml:4:5: nested deeper than limits.yaml_depth (3 levels)",
    );
    // Quotes, comments and brackets inside text do not count.
    f.write("relance.yaml", "limits: {yaml_depth: 4}\n");
    f.write(
        "rules/q.yaml",
        "name: q # [[[[[[\napplies_to: 'invoice.tags.contains(\"[[[[[[\")'\nstages:\n  - {id: s, offset: 0, template: t, when: '\"[[[[[[\" != \"\"'}\n",
    );
    assert_eq!(run_expect(&f, "check", 0).stdout, "");
}

#[test]
fn a_field_past_field_chars_is_a_bad_row_quoted_in_80_characters() {
    let long = "A".repeat(12_345);
    let f = folder(&[
        inv("F1", "2026-12-10", "10").customer("C1", &long),
        inv("F2", "2026-12-10", "10"),
    ]);
    let problems = check_problems(&f);
    assert_eq!(
        problems,
        vec![format!(
            "data/invoices.csv:2: customer_name: longer than limits.field_chars (4096 characters): \"{}…\" (12,345 characters)",
            "A".repeat(80)
        )]
    );
    assert_eq!(planned(&f), vec!["F2"]);
    // Any quoted value is cut the same way.
    let f = folder(&[inv("F1", "2026-12-10", &"9".repeat(200)).with("currency", &"x".repeat(300))]);
    for problem in check_problems(&f) {
        assert!(problem.len() < 250, "{problem}");
    }
}

#[test]
fn a_row_of_nul_bytes_stops_the_feed_without_growing_memory() {
    let f = folder(&[]);
    let mut feed = format!("{CSV_HEADER}\n");
    feed.push_str("F1,C1,Acme,a@x.fr,2026-11-01,2026-12-10,10,,,,,,,\n");
    feed.push_str(&"\0".repeat(3 << 20));
    f.write("data/invoices.csv", &feed);
    let problems = check_problems(&f);
    assert_eq!(
        problems,
        vec![
            "data/invoices.csv:3: row is longer than 1048576 bytes (256 × limits.field_chars): \
              the rest of the feed cannot be read row by row"
        ]
    );
}

#[test]
fn a_json_line_too_long_is_a_bad_row_and_the_next_lines_are_read() {
    let f = folder(&[]);
    let good = |n: &str| {
        format!(
            "{{\"number\":\"{n}\",\"customer_id\":\"C\",\"customer_name\":\"N\",\"email\":\"n@x.fr\",\"issue_date\":\"2026-11-01\",\"due_date\":\"2026-12-10\",\"amount\":\"10\"}}\n"
        )
    };
    let feed = format!("{}{}\n{}", good("J1"), "\0".repeat(2 << 20), good("J2"));
    f.write("relance.yaml", "feeds: [{path: data/a.jsonl}]\n")
        .write("data/a.jsonl", &feed);
    let problems = check_problems(&f);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_contains(
        &problems[0],
        "data/a.jsonl:2: line is longer than 1048576 bytes (256 × limits.field_chars); it starts with \"\\0\\0",
    );
    assert!(problems[0].len() < 700, "{}", problems[0]);
    assert_eq!(planned(&f), vec!["J1", "J2"]);
}

#[test]
fn a_feed_larger_than_feed_file_bytes_is_refused() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "relance.yaml",
        "limits: {feed_file_bytes: 100, field_chars: 5}\n",
    );
    assert_eq!(
        check_problems(&f),
        vec![
            "data/invoices.csv: cannot read feed: feed is larger than limits.feed_file_bytes (100 bytes)"
        ]
    );
}

#[test]
fn implausible_issue_and_due_dates_are_bad_rows() {
    let f = folder(&[
        inv("F1", "0001-01-01", "10"),
        inv("F2", "2026-12-10", "10").with("issue_date", "1899-12-31"),
        inv("F3", "2226-12-10", "10").with("issue_date", "2026-12-01"),
        inv("F4", "2026-12-10", "10"),
    ]);
    let problems = check_problems(&f);
    let expected_prefixes = [
        "data/invoices.csv:2: issue_date: 0001-01-01 is not a plausible date (expected between 1900-01-01 and ",
        "data/invoices.csv:2: due_date: 0001-01-01 is not a plausible date",
        "data/invoices.csv:3: issue_date: 1899-12-31 is not a plausible date",
        "data/invoices.csv:4: due_date: 2226-12-10 is not a plausible date",
    ];
    assert_eq!(problems.len(), expected_prefixes.len(), "{problems:?}");
    for (problem, prefix) in problems.iter().zip(expected_prefixes) {
        assert!(problem.starts_with(prefix), "{problem}");
    }
    assert_eq!(planned(&f), vec!["F4"]);
}

#[test]
fn rows_of_one_customer_that_disagree_on_name_or_email_are_a_warning_once() {
    let f = folder(&[
        inv("F1", "2026-12-10", "10").customer("C1", "Acme"),
        inv("F2", "2026-12-10", "10")
            .customer("C1", "Globex")
            .with("email", "boss@globex.com"),
        inv("F3", "2026-12-10", "10").customer("C1", "Other"),
        inv("F4", "2026-12-10", "10")
            .customer("C2", "Same")
            .with("email", "a@x.fr; b@x.fr"),
        inv("F5", "2026-12-10", "10")
            .customer("C2", "Same")
            .with("email", "B@x.fr;a@x.fr"),
    ]);
    let run = run_expect(&f, "check", 0);
    assert_eq!(
        crate::lines(&f, &run.stdout),
        vec![
            "data/invoices.csv:3: warning: customer \"C1\" has rows that disagree with its first \
             row at data/invoices.csv:2: customer_name \"Globex\" here, \"Acme\" there; email \
             \"boss@globex.com\" here, \"f1@example.com\" there (one customer_id is one \
             customer: are these two companies?)"
        ]
    );
}

/// An invoice due in 1950 under a stage repeated every day without a `max`:
/// the catch-up sends the latest occurrence once and journals its last
/// month of skipped repeats, not one skipped row per day since 1950 (tens of
/// thousands).
#[test]
fn a_catch_up_over_an_unbounded_repeat_journals_its_latest_occurrence_only() {
    let f = crate::with_stages(
        &[inv("F1", "1950-01-01", "100")],
        &[
            "{id: first, offset: 1, template: t}",
            "{id: again, offset: 2, template: t, repeat: {every: 1}}",
        ],
    );
    f.write("relance.yaml", "delivery: {kind: log}\n");
    let started = Instant::now();
    let rows = preview_json(&f, "--as-of 2026-12-01 --days 3");
    assert_eq!(fields(&rows, "stage"), ["again", "again", "again"]);
    run_expect(&f, "run --once --confirm --as-of 2026-12-01", 0);
    let history = run_expect(&f, "history --format json", 0).json();
    let journal: Vec<(String, String, u64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["occurrence"].as_u64().unwrap(),
            )
        })
        .collect();
    let days_since_1950 = 28_091; // 1950-01-03 to 2026-12-01
    assert!(
        journal.contains(&("again".into(), "sent".into(), days_since_1950)),
        "{journal:?}"
    );
    // `first`, skipped; the 29 repeats before the one sent; that one.
    assert_eq!(journal.len(), 1 + 29 + 1, "{journal:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// `{{#if true}}` nested `n` times around `inner`.
fn nested_ifs(n: usize, inner: &str) -> String {
    format!("{}{inner}{}", "{{#if true}}".repeat(n), "{{/if}}".repeat(n))
}

#[test]
fn templates_nested_deeper_than_template_depth_are_refused_before_they_are_parsed() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    // 5,000 blocks overflowed Handlebars' stack; 20,000 took seconds to parse.
    f.write(
        "templates/t.fr.hbs",
        &template("{{invoice.number}}", &nested_ifs(5_000, "x")),
    );
    f.write(
        "templates/each.fr.hbs",
        &template("s", &"{{#each a}}".repeat(20_000)),
    );
    f.write(
        "templates/deep_subject.fr.hbs",
        &template(&nested_ifs(40, "s"), "x"),
    );
    f.write(
        "templates/partials/deep.fr.hbs",
        &format!("\n  {}", nested_ifs(33, "x")),
    );
    let problems = check_quickly(&f);
    let deeper = "blocks nested deeper than limits.template_depth (32 blocks): \
                  simplify the template, or raise the limit in relance.yaml";
    assert_eq!(
        problems,
        vec![
            format!("templates/partials/deep.fr.hbs:2:{}: {deeper}", 3 + 32 * 12),
            format!("templates/deep_subject.fr.hbs:2:{}: {deeper}", 11 + 32 * 12),
            format!("templates/each.fr.hbs:4:{}: {deeper}", 1 + 32 * 11),
            format!("templates/t.fr.hbs:4:{}: {deeper}", 1 + 32 * 12),
        ]
    );
    for command in [
        "preview --as-of 2026-12-10 --render",
        "explain F1 --as-of 2026-12-10",
    ] {
        assert_no_crash(&f.run(&crate::args(command)));
    }
    let run = f.run(&crate::args("run --once --as-of 2026-12-10"));
    assert_no_crash(&run);
    // The folder has errors: the run refuses to start, and says where.
    assert_eq!(run.code, 1);
    assert_contains(
        &run.stderr,
        "templates/t.fr.hbs:4:385: blocks nested deeper",
    );

    // Within the limit (raised as far as it goes, a partial as deep inside it), it renders.
    f.write("relance.yaml", "limits: {template_depth: 256}\n")
        .write(
            "templates/t.fr.hbs",
            &template("{{invoice.number}}", &nested_ifs(256, "{{> deep}}")),
        )
        .write(
            "templates/partials/deep.fr.hbs",
            &nested_ifs(256, "{{invoice.number}}"),
        );
    f.remove("templates/each.fr.hbs");
    f.remove("templates/deep_subject.fr.hbs");
    assert_eq!(run_expect(&f, "check", 0).stdout, "");
    let run = run_expect(&f, "run --once --as-of 2026-12-10", 0);
    assert_eq!(f.files("outbox").len(), 1, "{}", run.stderr);
    f.write("relance.yaml", "limits: {template_depth: 257}\n");
    assert_contains(
        &check_problems(&f)[0],
        "limits.template_depth must be at most 256",
    );
}

#[test]
fn a_template_front_matter_nested_too_deep_and_files_too_large_are_refused() {
    let f = folder(&[inv("F1", "2026-12-10", "10")]);
    f.write(
        "templates/t.fr.hbs",
        &format!("---\nsubject: {}\n---\nx\n", "[".repeat(200_000)),
    );
    assert_eq!(
        check_quickly(&f),
        vec![
            "templates/t.fr.hbs:2:73: nested deeper than limits.yaml_depth (64 levels): \
             simplify the file, or raise the limit in relance.yaml"
        ]
    );
    f.write(
        "relance.yaml",
        "limits: {rule_file_bytes: 1000, template_bytes: 1000}\n",
    )
    .write("templates/t.fr.hbs", &template("s", &"x".repeat(1_000)))
    .write("templates/partials/big.fr.hbs", &"x".repeat(1_001))
    .write(
        "rules/big.rhai",
        &format!("fn f() {{ 1 }}\n//{}", "x".repeat(1_000)),
    );
    let larger = |what: &str, limit: &str| {
        format!(
            "{what} file is larger than limits.{limit} (1000 bytes): a file this large \
             is not written by hand; raise the limit in relance.yaml if it is meant"
        )
    };
    assert_eq!(
        check_quickly(&f),
        vec![
            format!("rules/big.rhai: {}", larger("script", "rule_file_bytes")),
            format!(
                "templates/partials/big.fr.hbs: {}",
                larger("template", "template_bytes")
            ),
            format!(
                "templates/t.fr.hbs: {}",
                larger("template", "template_bytes")
            ),
        ]
    );
}

#[test]
fn stage_offsets_and_repeats_past_ten_years_are_located_errors() {
    let f = crate::with_stages(
        &[inv("F1", "2026-12-10", "10")],
        &[
            "{id: far, offset: -50000000, template: t, repeat: {every: 1, max: 100000000}}",
            "{id: huge, offset: 9223372036854775807, template: t, repeat: {every: 4000}}",
        ],
    );
    f.write(
        "rules/q.yaml",
        &crate::every_day(&crate::common::policy(
            "q",
            &[
                "{id: a, offset: -9223372036854775807, template: t}",
                "{id: b, offset: 9223372036854775807, template: t}",
            ],
        )),
    );
    let problems = check_quickly(&f);
    let bound = |at: &str, id: &str, offset: &str| {
        format!(
            "{at}: stage {id}: offset {offset} is more than 3660 days (ten years) from the due \
             date: expected an offset between -3660 and 3660"
        )
    };
    assert_eq!(
        problems,
        vec![
            bound("rules/p.yaml:4:15", "far", "-50000000"),
            "rules/p.yaml:4:66: stage far: repeat.max 100000000 is more than 3660: expected at \
             most 3660 (ten years of daily repeats; leave `max` out to repeat for as long as the \
             invoice is open)"
                .to_string(),
            bound("rules/p.yaml:5:16", "huge", "9223372036854775807"),
            "rules/p.yaml:5:67: stage huge: repeat.every 4000 is more than 3660: expected at \
             most 3660 (a repeat waits at most ten years)"
                .to_string(),
            bound("rules/q.yaml:4:13", "a", "-9223372036854775807"),
            bound("rules/q.yaml:5:13", "b", "9223372036854775807"),
        ]
    );
    // The policies are left out; nothing aborts.
    for command in [
        "preview --as-of 2026-12-10",
        "explain F1 --as-of 2026-12-10",
        "run --once --as-of 2026-12-10",
    ] {
        assert_no_crash(&f.run(&crate::args(command)));
    }
}

/// 200 invoices due in 1900 under a daily repeat without `max`: 46,000
/// occurrences each, which the engine once walked one by one every day it
/// decided (preview: 48 s; an offset of -700,000 days: 70 s and an explain
/// of 700,025 lines). It finds the ones that matter by arithmetic.
#[test]
fn a_repeat_without_max_since_1900_is_decided_without_walking_its_occurrences() {
    let rows: Vec<_> = (0..200)
        .map(|i| inv(&format!("F{i}"), "1900-01-02", "10"))
        .collect();
    let f = crate::with_stages(
        &rows,
        &[
            "{id: first, offset: 1, template: t}",
            "{id: again, offset: 2, template: t, repeat: {every: 1}}",
        ],
    );
    let started = Instant::now();
    let reminders = preview_json(&f, "--as-of 2026-12-10 --days 14");
    assert_eq!(reminders.len(), 200 * 14);
    let explain = run_expect(&f, "explain F1 --as-of 2026-12-10", 0).stdout;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(explain.lines().count() < 60, "{explain}");
    assert_contains(
        &explain,
        "again #46330  2026-11-09  reached      -        not listed, with the 46330 before it: \
         reached long ago; a catch-up journals only a stage's latest occurrences",
    );
    assert_contains(
        &explain,
        "again #46361  2026-12-10  reached      -        FIRES",
    );
}

#[test]
fn long_values_of_rule_files_are_quoted_in_80_characters() {
    let long = "x".repeat(3_000);
    // A 3,000-character stage id made a line of 9,075 characters.
    let f = crate::with_stages(
        &[inv("F1", "2026-12-10", "10")],
        &[
            &format!("{{id: {long}, offset: 1, template: t, to: '', channel: letter, cc: [c]}}"),
            &format!("{{id: {long}, offset: -5000, template: 'a/{long}'}}"),
            &format!("{{id: b, offset: 2, template: t, when: '1 +* \"{long}\"'}}"),
        ],
    );
    f.write(
        "rules/holds.yaml",
        &format!("holds:\n  - {{id: '{long} ', invoice: F1, reason: r}}\n"),
    );
    let problems = check_quickly(&f);
    assert!(problems.len() >= 6, "{problems:?}");
    let quoted = format!("\"{}…\" (3,000 characters)", "x".repeat(80));
    // Each value cut to 80 characters (a message may name two stages).
    for problem in &problems {
        assert!(!problem.contains(&"x".repeat(81)), "{problem}");
        assert!(problem.len() < 700, "{problem}");
    }
    assert_contains(
        &problems.join("\n"),
        &format!("rules/p.yaml:5:6: stage id {quoted} is used twice in this policy"),
    );
    assert_contains(
        &problems.join("\n"),
        &format!("stage {quoted}: offset -5000 is more than 3660 days"),
    );
}
