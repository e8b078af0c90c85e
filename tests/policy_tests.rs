//! `relance test` on real folders: policy unit tests (`rules/*.test.yaml`)
//! run by the real binary on the real engine and templates, their output
//! (table and JSON), exit codes, located load errors, and `check` running them.

mod common;

use common::*;
use serde_json::Value;

/// The policy `p`: a note 3 days before the due date and a statement the
/// day after, on the config's sending days (Monday to Friday by default).
const POLICY: &str = "name: p\nstages:\n  - {id: before, offset: -3, template: t}\n  - {id: overdue, offset: 1, template: t}\n";

/// A folder with no config (French, EUR, UTC, Monday to Friday), the policy
/// [`POLICY`], its French template `t` (the subject names the stage, the
/// invoice and the customer; the body its dates and amount) and the test
/// file `rules/p.test.yaml` holding `tests`.
fn folder(tests: &str) -> Folder {
    let f = Folder::empty();
    f.write("rules/p.yaml", POLICY)
        .write(
            "templates/t.fr.hbs",
            &template(
                "{{stage.id}} {{invoice.number}} {{customer.name}}",
                "Émise le {{invoice.issue_date}}, échue le {{invoice.due_date}} : {{money invoice.amount_due}}",
            ),
        )
        .write("rules/p.test.yaml", tests)
        .write_invoices(&[]);
    f
}

/// One case: `body` is its keys after `name` (YAML lines indented by 4).
fn case(name: &str, body: &str) -> String {
    format!("  - name: {name}\n{body}")
}

fn tests(cases: &[String]) -> String {
    format!("tests:\n{}", cases.concat())
}

/// An invoice of C1 due on 30 November 2026 (a Monday): its statement goes
/// out on 1 December.
const LATE: &str = "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n";

#[test]
fn a_passing_case_prints_ok_with_its_file_and_line_and_exits_0() {
    let f = folder(&tests(&[case(
        "the statement the day after the due date",
        &format!(
            "{LATE}    expect:\n      - {{date: 2026-12-01, invoice: T1, policy: p, stage: overdue, occurrence: 0, channel: email, template: t, language: fr}}\n"
        ),
    )]));
    let run = f.run(&["test"]).expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_starts_with(lines[0], "ok   ");
    assert_ends_with(
        lines[0],
        "rules/p.test.yaml:2  the statement the day after the due date",
    );
    assert_eq!(lines[1], "1 passed, 0 failed");
    assert_eq!(run.stderr, "");
}

#[test]
fn a_failing_case_shows_what_is_missing_and_what_is_unexpected_and_exits_1() {
    let f = folder(&tests(&[
        case(
            "passes",
            &format!("{LATE}    expect:\n      - {{stage: overdue}}\n"),
        ),
        case(
            "expects the wrong stage",
            &format!(
                "{LATE}    expect:\n      - {{date: 2026-12-01, invoice: T1, stage: before, subject_contains: \"before T1\"}}\n"
            ),
        ),
    ]));
    let run = f.run(&["test"]).expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_starts_with(lines[0], "ok   ");
    assert_starts_with(lines[1], "FAIL ");
    assert_ends_with(lines[1], "rules/p.test.yaml:8  expects the wrong stage");
    assert_eq!(
        lines[2..],
        [
            "     expected but missing:",
            "       {date: 2026-12-01, invoice: T1, stage: before, subject_contains: \"before T1\"}",
            "     unexpected:",
            "       2026-12-01 T1 p/overdue#0 email c1@example.com \"overdue T1 Customer C1\"",
            "1 passed, 1 failed",
        ]
    );
}

#[test]
fn json_gives_each_case_with_exactly_the_documented_keys() {
    let f = folder(&tests(&[
        case(
            "passes",
            &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
        ),
        case("nothing expected", &format!("{LATE}    expect: []\n")),
    ]));
    let run = f.run(&["test", "--format", "json"]).expect_code(1);
    let cases = run.json();
    let cases = cases.as_array().expect("an array");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let keys: Vec<&str> = case
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            ["file", "line", "missing", "name", "passed", "unexpected"].into(),
        );
        assert!(
            case["file"]
                .as_str()
                .unwrap()
                .ends_with("rules/p.test.yaml")
        );
    }
    assert_eq!(cases[0]["line"], 2);
    assert_eq!(cases[0]["passed"], true);
    assert_eq!(cases[1]["name"], "nothing expected");
    assert_eq!(cases[1]["passed"], false);
    assert_eq!(cases[1]["missing"], Value::Array(vec![]));
    // An unexpected reminder is the row `preview --format json` prints for
    // the same invoice in a feed.
    f.write_invoices(&[inv("T1", "2026-11-30", "100")
        .customer("C1", "Customer C1")
        .with("email", "c1@example.com")
        .with("issue_date", "2026-10-31")]);
    let preview = f
        .run(&[
            "preview",
            "--as-of",
            "2026-12-01",
            "--days",
            "1",
            "--format",
            "json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(cases[1]["unexpected"], preview);
    assert_eq!(preview[0]["stage"], "overdue");
    let missing = folder(&tests(&[case(
        "missing",
        &format!("{LATE}    expect:\n      - {{stage: before, subject_contains: x}}\n      - {{stage: overdue}}\n"),
    )]))
    .run(&["test", "--format", "json"])
    .expect_code(1)
    .json();
    assert_eq!(
        missing[0]["missing"],
        serde_json::json!([{"stage": "before", "subject_contains": "x"}])
    );
    assert_eq!(missing[0]["unexpected"], serde_json::json!([]));
}

#[test]
fn a_test_file_that_does_not_load_is_a_located_error_exit_2_and_the_others_still_run() {
    let f = folder(&tests(&[case(
        "passes",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    f.write(
        "rules/a.test.yaml",
        "tests:\n  - name: typo\n    as_of: 2026-12-01\n    expect:\n      - {stage: overdue, subjet_contains: x}\n",
    )
    .write(
        "rules/b.test.yaml",
        "tests:\n  - as_of: 2026-12-01\n    expect: []\n",
    )
    .write(
        "rules/c.test.yaml",
        "tests:\n  - name: bad date\n    as_of: 2026-11-31\n    expect: []\n",
    );
    let run = f.run(&["test"]).expect_code(2);
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 3, "{}", run.stderr);
    assert_contains(
        errors[0],
        "rules/a.test.yaml:5:26: tests[0].expect[0]: unknown field `subjet_contains`, expected one of",
    );
    assert_contains(
        errors[1],
        "rules/b.test.yaml:2:5: tests[0]: missing field `name`",
    );
    assert_contains(
        errors[2],
        "rules/c.test.yaml:3:12: tests[0].as_of: expected a date YYYY-MM-DD, found \"2026-11-31\"",
    );
    assert_contains(&run.stdout, "ok   ");
    assert_ends_with(
        &run.stdout,
        "1 passed, 0 failed, 3 test file(s) with errors\n",
    );
}

#[test]
fn a_case_whose_invoices_journal_or_config_do_not_load_is_located_and_does_not_run() {
    let f = folder(&tests(&[
        case(
            "bad invoice",
            "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n      - number: T2\n        customer_id: C1\n        due_date: 30/11/2026\n        amount: 12,50\n    journal:\n      - {invoice: T1, policy: p, stage: before, date: 2026-11-27, state: done}\n    expect: [{channel: mail}]\n",
        ),
        case(
            "bad config",
            "    as_of: 2026-12-01\n    config:\n      send_dayz: [mon]\n    expect: []\n",
        ),
        case(
            "duplicate invoice",
            "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n    expect: []\n",
        ),
        case("runs", &format!("{LATE}    expect: [{{stage: overdue}}]\n")),
    ]));
    let run = f.run(&["test"]).expect_code(2);
    let errors: Vec<String> = run
        .stderr
        .lines()
        .map(|l| l.replace(&format!("{}/", f.path().display()), ""))
        .collect();
    assert_eq!(
        errors,
        [
            "rules/p.test.yaml:11:67: test \"bad invoice\": journal[0]: state \"done\" is not a journal state (expected sent, skipped, failed, planned, awaiting_approval or approved)",
            "rules/p.test.yaml:12:15: test \"bad invoice\": expect[0]: channel \"mail\" is not a channel (expected one of email, letter, sms, call, task)",
            "rules/p.test.yaml:6: test \"bad invoice\": due_date: expected a date in the format %Y-%m-%d, found \"30/11/2026\"",
            "rules/p.test.yaml:6: test \"bad invoice\": amount: expected a decimal number like 1234.56, found \"12,50\" (for amounts written 1 234,56 set `decimal: \",\"` on this feed)",
            "rules/p.test.yaml:16:7: test \"bad config\": config: unknown field `send_dayz`, expected one of `timezone`, `language`, `currency`, `company`, `feeds`, `rules`, `templates`, `journal`, `delivery`, `tasks`, `schedule`, `limits`, `retry`, `send_days`, `holidays`, `send_time`, `rates`, `contact`, `first_contact`, `reply_to`, `http`",
            "rules/p.test.yaml:22: test \"duplicate invoice\": number: duplicate invoice number \"T1\" (first seen at rules/p.test.yaml:21)",
        ]
    );
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert_contains(&run.stdout, "runs");
}

#[test]
fn an_inline_invoice_gets_a_name_an_address_and_an_issue_date_from_its_customer_and_due_date() {
    let f = folder(&tests(&[case(
        "defaults",
        "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: ACME-9, due_date: 2026-11-30, amount: 1234.5}\n    expect:\n      - {invoice: T1, to: acme-9@example.com, subject_contains: \"overdue T1 Customer ACME-9\",\n         body_contains: \"Émise le 2026-10-31, échue le 2026-11-30 : 1 234,50 €\"}\n",
    )]));
    f.run(&["test"]).expect_code(0);
}

#[test]
fn any_feed_field_may_be_given_and_reads_as_in_a_feed() {
    let f = folder(&tests(&[case(
        "feed fields",
        "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: C1, customer_name: Dupont SA, email: compta@dupont.fr,\n         issue_date: 2026-11-02, due_date: 2026-11-30, amount: 100.10, amount_paid: 0.10,\n         currency: usd, language: EN, tags: [vip, b2c], phone: \"+33 1 00 00 00 00\"}\n    expect:\n      - {invoice: T1, to: compta@dupont.fr, language: fr, subject_contains: \"Dupont SA\",\n         body_contains: \"Émise le 2026-11-02, échue le 2026-11-30 : 100,00 $ US\"}\n",
    )]));
    // The template exists in French only: an English invoice falls back to it.
    f.run(&["test"]).expect_code(0);
}

#[test]
fn the_journal_of_a_case_keeps_a_stage_from_firing_again() {
    let f = folder(&tests(&[case(
        "already sent",
        &format!(
            "{LATE}    journal:\n      - {{invoice: T1, policy: p, stage: overdue, date: 2026-12-01, state: sent}}\n    expect: []\n"
        ),
    )]));
    f.run(&["test"]).expect_code(0);
}

#[test]
fn over_several_days_the_journal_is_carried_forward_and_a_stage_fires_once() {
    let f = folder(&tests(&[case(
        "a week",
        "    as_of: 2026-11-25\n    days: 10\n    invoices:\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n    expect:\n      - {date: 2026-11-27, invoice: T1, stage: before}\n      - {date: 2026-12-01, invoice: T1, stage: overdue}\n",
    )]));
    f.run(&["test"]).expect_code(0);
}

#[test]
fn a_case_may_give_its_own_holds_and_config() {
    let f = folder(&tests(&[
        case(
            "held until the 3rd",
            &format!(
                "{LATE}    days: 5\n    holds:\n      - {{invoice: T1, until: 2026-12-03, reason: disputed}}\n    expect:\n      - {{date: 2026-12-04, invoice: T1, stage: overdue}}\n"
            ),
        ),
        case(
            "on Saturdays too",
            "    as_of: 2026-12-05\n    config: {send_days: [mon, tue, wed, thu, fri, sat]}\n    invoices:\n      - {number: T2, customer_id: C2, due_date: 2026-12-04, amount: 100}\n    journal: [{invoice: T2, policy: p, stage: before, date: 2026-12-01}]\n    expect:\n      - {date: 2026-12-05, invoice: T2, stage: overdue}\n",
        ),
        case(
            "not on Saturdays without it",
            "    as_of: 2026-12-05\n    days: 3\n    invoices:\n      - {number: T2, customer_id: C2, due_date: 2026-12-04, amount: 100}\n    journal: [{invoice: T2, policy: p, stage: before, date: 2026-12-01}]\n    expect:\n      - {date: 2026-12-07, invoice: T2, stage: overdue}\n",
        ),
    ]));
    // The folder's own hold on T1 is not the first case's: the case's
    // replaces it. The other cases (about T2) have the folder's.
    f.write(
        "rules/holds.yaml",
        "holds:\n  - {invoice: T1, until: 2026-12-31}\n",
    );
    let run = f.run(&["test"]).expect_code(0);
    assert_eq!(run.stdout.lines().last(), Some("3 passed, 0 failed"));
    // Without holds of its own, a case has the folder's.
    f.write(
        "rules/p.test.yaml",
        &tests(&[case(
            "held by the folder",
            &format!("{LATE}    days: 10\n    expect: []\n"),
        )]),
    );
    f.run(&["test"]).expect_code(0);
}

#[test]
fn subject_contains_and_body_contains_are_parts_of_the_rendered_message() {
    let expect = |key: &str, text: &str| {
        folder(&tests(&[case(
            "contains",
            &format!("{LATE}    expect: [{{{key}: \"{text}\"}}]\n"),
        )]))
        .run(&["test"])
        .code
    };
    assert_eq!(expect("subject_contains", "overdue T1"), 0);
    assert_eq!(expect("subject_contains", "Customer C1"), 0);
    assert_eq!(expect("subject_contains", "100,00"), 1);
    assert_eq!(expect("body_contains", "100,00 €"), 0);
    assert_eq!(expect("body_contains", "overdue T1"), 1);
}

#[test]
fn each_expected_reminder_needs_a_distinct_actual_one() {
    let two = "    as_of: 2026-12-01\n    invoices:\n      - {number: T1, customer_id: C1, due_date: 2026-11-30, amount: 100}\n      - {number: T2, customer_id: C2, due_date: 2026-11-30, amount: 100}\n";
    let run = |expect: &str| {
        folder(&tests(&[case(
            "two",
            &format!("{two}    expect: {expect}\n"),
        )]))
        .run(&["test"])
        .code
    };
    // The first expectation fits both reminders: it must leave T1 to the second.
    assert_eq!(run("[{stage: overdue}, {invoice: T1}]"), 0);
    // One reminder cannot meet two expectations.
    assert_eq!(run("[{invoice: T1}, {invoice: T1}, {invoice: T2}]"), 1);
    // Nor is a reminder left over.
    assert_eq!(run("[{invoice: T1}]"), 1);
}

#[test]
fn named_files_run_alone() {
    let f = folder(&tests(&[case(
        "in p",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    f.write(
        "elsewhere/q.test.yaml",
        &tests(&[case("in q", &format!("{LATE}    expect: []\n"))]),
    );
    let q = f.path().join("elsewhere/q.test.yaml");
    let run = f.run(&["test", q.to_str().unwrap()]).expect_code(1);
    assert_contains(&run.stdout, "FAIL ");
    assert_contains(&run.stdout, "q.test.yaml:2  in q");
    assert!(!run.stdout.contains("in p"), "{}", run.stdout);
    // Relative to the folder when it is not where the command runs.
    let run = f.run(&["test", "elsewhere/q.test.yaml"]).expect_code(1);
    assert_contains(&run.stdout, "q.test.yaml:2  in q");
    let missing = f.path().join("rules/none.test.yaml");
    let run = f.run(&["test", missing.to_str().unwrap()]).expect_code(2);
    assert_contains(&run.stderr, "none.test.yaml: cannot read policy test: ");
}

#[test]
fn check_runs_the_tests_and_a_failing_or_broken_one_is_an_error() {
    let f = folder(&tests(&[case(
        "passes",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    let run = f.run(&["check"]).expect_code(0);
    assert_contains(
        &run.stderr,
        "ok: 0 error(s), 0 warning(s) in 0 invoice(s) (0 bad row(s)), 1 policies",
    );
    f.write(
        "rules/p.test.yaml",
        &tests(&[
            case(
                "passes",
                &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
            ),
            case("fails", &format!("{LATE}    expect: [{{stage: before}}]\n")),
        ]),
    );
    let run = f.run(&["check"]).expect_code(1);
    assert_eq!(
        run.stdout.replace(&format!("{}/", f.path().display()), ""),
        "rules/p.test.yaml:7: test \"fails\" fails: 1 missing, 1 unexpected (run relance test)\n"
    );
    f.write("rules/p.test.yaml", "tests: [{name: x}]\n");
    let run = f.run(&["check"]).expect_code(1);
    assert_contains(
        &run.stdout,
        "rules/p.test.yaml:1:9: tests[0]: missing field `as_of`",
    );
}

#[test]
fn check_does_not_bury_a_rule_error_under_the_tests_it_makes_fail() {
    let f = folder(&tests(&[case(
        "passes",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    f.write("rules/p.yaml", &POLICY.replace("offset:", "ofset:"));
    let run = f.run(&["check"]).expect_code(1);
    let out = run.stdout.replace(&format!("{}/", f.path().display()), "");
    assert_contains(&out, "rules/p.yaml:");
    assert_contains(&out, "unknown field `ofset`");
    assert_contains(
        &out,
        "rules/p.test.yaml: warning: 1 policy test file(s) not run: the rules have errors",
    );
    assert!(!out.contains("fails:"), "{out}");
}

#[test]
fn a_test_file_is_never_a_policy() {
    let f = folder(&tests(&[case(
        "passes",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    f.write(
        "rules/q.test.yml",
        &tests(&[case(
            "also",
            &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
        )]),
    )
    .write_invoices(&[inv("F1", "2026-11-30", "100")]);
    let run = f.run(&[
        "preview",
        "--as-of",
        "2026-12-01",
        "--days",
        "1",
        "--format",
        "json",
    ]);
    let rows = run.expect_code(0).json();
    let policies: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["p"]);
    let run = f.run(&["test"]).expect_code(0);
    assert_eq!(run.stdout.lines().last(), Some("2 passed, 0 failed"));
}

#[test]
fn test_reads_no_feed_and_reports_a_broken_policy_with_exit_2() {
    let f = folder(&tests(&[case(
        "passes",
        &format!("{LATE}    expect: [{{stage: overdue}}]\n"),
    )]));
    // A feed that cannot be read is no concern of the policy tests.
    f.write("data/invoices.csv", "not,a,feed\n");
    f.run(&["test"]).expect_code(0);
    f.write(
        "rules/broken.yaml",
        "name: broken\nstages: [{id: x, ofset: 1, template: t}]\n",
    );
    let run = f.run(&["test"]).expect_code(2);
    assert_contains(&run.stderr, "rules/broken.yaml:2:");
    // Not a screen of failed cases that bury the error.
    assert_contains(
        &run.stderr,
        "relance: policy tests not run: the rules have errors (located above)",
    );
    assert_eq!(run.stdout, "");
    f.write("relance.yaml", "languag: fr\n");
    let run = f.run(&["test"]).expect_code(2);
    assert_contains(&run.stderr, "relance.yaml:1:1: unknown field `languag`");
}

#[test]
fn the_shipped_sample_s_tests_pass() {
    let f = Folder::sample();
    let run = f.run(&["test"]).expect_code(0);
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (summary, cases) = lines.split_last().unwrap();
    assert!(cases.len() >= 20, "{}", run.stdout);
    assert!(
        cases
            .iter()
            .all(|l| l.starts_with("ok   ") && l.contains("/rules/")),
        "{}",
        run.stdout
    );
    for file in ["standard", "key_accounts", "habitual_late"] {
        assert!(
            cases
                .iter()
                .any(|l| l.contains(&format!("rules/{file}.test.yaml:"))),
            "{file}: {}",
            run.stdout
        );
    }
    assert_eq!(*summary, format!("{} passed, 0 failed", cases.len()));
    f.run(&["check"]).expect_code(0);
}

#[test]
fn the_library_runs_the_tests_the_binary_prints() {
    let f = Folder::sample();
    let options = relance::Options {
        dir: f.path().to_path_buf(),
        ..relance::Options::default()
    };
    let project = relance::Project::load_rules(&options).unwrap();
    let files = relance::test_files(&project.config, &[]);
    assert_eq!(files.len(), 3);
    let results = relance::run_tests(&project, &files);
    let cases: Vec<&relance::TestCase> = results.iter().flat_map(|r| &r.cases).collect();
    let from_binary = f.run(&["test", "--format", "json"]).expect_code(0).json();
    assert_eq!(serde_json::to_value(&cases).unwrap(), from_binary);
}

#[test]
fn the_daemon_does_not_reload_for_a_test_file() {
    let folder = dunning_folder("", &invoices(2));
    let mut daemon = folder.spawn(&DAEMON);
    daemon.expect_evaluation();
    // Not a policy, and not even a test file that loads: nothing to reload.
    folder.write("rules/dunning.test.yaml", "name: not a policy\n");
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &["{id: overdue, offset: 1, template: overdue, channel: email}"],
        ),
    );
    let line = daemon.expect_line(DEADLINE, "the reload of the policy", |l| {
        l.contains("reload ok") || l.contains("reload failed")
    });
    assert_contains(&line, "reload ok: rules/dunning.yaml changed;");
    assert!(!line.contains("dunning.test.yaml"), "{line}");
}

#[test]
fn test_has_help() {
    let run = Folder::empty().run(&["test", "--help"]).expect_code(0);
    assert_contains(&run.stdout, "rules/*.test.yaml");
    assert_contains(&run.stdout, "--format <FORMAT>");
    assert_contains(&run.stdout, "[possible values: table, json]");
    let run = Folder::empty().run(&["--help"]).expect_code(0);
    assert_contains(&run.stdout, "test ");
}
