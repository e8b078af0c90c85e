//! `relance preview --baseline DIR|git:REV` on real folders: the reminders an
//! edit of the rules adds, removes and changes over the coming days, on the
//! folder's own feeds and journal, from another folder or a git revision.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// The stage of `dunning_folder` at `offset` days after the due date (its
/// invoices fall due on 2026-11-30, the day before [`AS_OF`]).
fn overdue_at(offset: i32) -> String {
    format!("{{id: overdue, offset: {offset}, template: overdue}}")
}

/// A copy of `folder`'s config, rules, templates and feed: the rules as they
/// were before an edit.
fn baseline_of(folder: &Folder) -> Folder {
    let baseline = Folder::empty();
    for sub in ["rules", "templates", "data"] {
        copy_dir(&folder.path().join(sub), &baseline.path().join(sub));
    }
    baseline.write("relance.yaml", &folder.read("relance.yaml"));
    baseline
}

/// The dunning policy of `folder` edited: its stages `before` (`None`: as
/// the folder has them) are copied into a baseline, then replaced by `after`.
fn edit_policy(folder: &Folder, before: Option<&[&str]>, after: &[&str]) -> Folder {
    if let Some(stages) = before {
        folder.write("rules/dunning.yaml", &policy("dunning", stages));
    }
    let baseline = baseline_of(folder);
    folder.write("rules/dunning.yaml", &policy("dunning", after));
    baseline
}

/// `preview --as-of AS_OF --baseline BASELINE [extra…]`.
fn compare(folder: &Folder, baseline: &str, extra: &[&str]) -> Run {
    let args = [
        &["preview", "--as-of", AS_OF, "--baseline", baseline],
        extra,
    ]
    .concat();
    folder.run(&args)
}

/// The JSON of `preview --baseline BASELINE --format json`, exit 0.
fn impact_json(folder: &Folder, baseline: &Path) -> Value {
    let baseline = baseline.to_str().expect("a UTF-8 path");
    compare(folder, baseline, &["--format", "json"])
        .expect_code(0)
        .json()
}

/// `invoice stage #occurrence date` of each row of a list of the JSON.
fn rows(impact: &Value, list: &str) -> Vec<String> {
    impact[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} is not an array: {impact:#}"))
        .iter()
        .map(|r| {
            format!(
                "{} {} #{} {}",
                r["invoice"].as_str().unwrap(),
                r["stage"].as_str().unwrap(),
                r["occurrence"],
                r["date"].as_str().unwrap()
            )
        })
        .collect()
}

/// `invoice: fields (before date → after date)` of each changed row.
fn changes(impact: &Value) -> Vec<String> {
    impact["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let fields: Vec<&str> = c["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            format!(
                "{}: {} ({} → {})",
                c["after"]["invoice"].as_str().unwrap(),
                fields.join(","),
                c["before"]["date"].as_str().unwrap(),
                c["after"]["date"].as_str().unwrap()
            )
        })
        .collect()
}

/// `policy/stage +added -removed ~changed` of each `by_stage` entry.
fn by_stage(impact: &Value) -> Vec<String> {
    impact["by_stage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{} +{} -{} ~{}",
                s["policy"].as_str().unwrap(),
                s["stage"].as_str().unwrap(),
                s["added"],
                s["removed"],
                s["changed"]
            )
        })
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

// --- What an edit does ---------------------------------------------------------

#[test]
fn a_moved_stage_changes_the_date_of_its_reminders_and_says_which_field() {
    let folder = dunning_folder("", &invoices(2));
    let baseline = edit_policy(&folder, None, &[&overdue_at(3)]);

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(
        (impact["before"].as_u64(), impact["after"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(rows(&impact, "added"), Vec::<String>::new());
    assert_eq!(rows(&impact, "removed"), Vec::<String>::new());
    assert_eq!(
        changes(&impact),
        [
            "F001: date (2026-12-01 → 2026-12-03)",
            "F002: date (2026-12-01 → 2026-12-03)"
        ]
    );
    assert_eq!(by_stage(&impact), ["dunning/overdue +0 -0 ~2"]);
}

#[test]
fn an_added_stage_adds_its_reminders_and_a_removed_one_removes_them() {
    let folder = dunning_folder("", &invoices(2));
    // `late` gives way to `firm`, a week after the due date.
    let baseline = edit_policy(
        &folder,
        Some(&[&overdue_at(1), "{id: late, offset: 10, template: overdue}"]),
        &[&overdue_at(1), "{id: firm, offset: 7, template: overdue}"],
    );

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(
        rows(&impact, "added"),
        ["F001 firm #0 2026-12-07", "F002 firm #0 2026-12-07"]
    );
    assert_eq!(
        rows(&impact, "removed"),
        ["F001 late #0 2026-12-10", "F002 late #0 2026-12-10"]
    );
    assert_eq!(changes(&impact), Vec::<String>::new());
    // The new rules' stages in their order, then those only the baseline has.
    assert_eq!(
        by_stage(&impact),
        ["dunning/firm +2 -0 ~0", "dunning/late +0 -2 ~0"]
    );
    assert_eq!(
        (impact["before"].as_u64(), impact["after"].as_u64()),
        (Some(4), Some(4))
    );
}

#[test]
fn a_new_subject_in_a_template_changes_the_subject_only() {
    let folder = dunning_folder("", &invoices(1));
    let baseline = baseline_of(&folder);
    folder.write(
        "templates/overdue.en.hbs",
        &template("Reminder: invoice {{invoice.number}}", "Please pay."),
    );

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(
        changes(&impact),
        ["F001: subject (2026-12-01 → 2026-12-01)"]
    );
    let change = &impact["changed"][0];
    assert_eq!(change["before"]["subject"], "Invoice F001 is overdue");
    assert_eq!(change["after"]["subject"], "Reminder: invoice F001");
}

#[test]
fn a_stage_sent_by_letter_instead_of_email_changes_its_channel_and_recipient() {
    let folder = dunning_folder("", &invoices(1));
    let baseline = edit_policy(
        &folder,
        None,
        &["{id: overdue, offset: 1, channel: letter, template: overdue}"],
    );

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(
        changes(&impact),
        ["F001: channel,to (2026-12-01 → 2026-12-01)"]
    );
    let change = &impact["changed"][0];
    assert_eq!(
        (&change["before"]["channel"], &change["after"]["channel"]),
        (&Value::from("email"), &Value::from("letter"))
    );
    assert_eq!(
        (&change["before"]["to"], &change["after"]["to"]),
        (&Value::from("c1@example.com"), &Value::from("Customer 1"))
    );
}

#[test]
fn the_same_rules_make_no_difference() {
    let folder = dunning_folder("", &invoices(2));
    let baseline = baseline_of(&folder);

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(impact["before"], 2);
    assert_eq!(impact["after"], 2);
    for list in ["added", "removed", "changed", "by_stage"] {
        assert_eq!(impact[list], Value::Array(vec![]), "{list}");
    }
    let table = compare(&folder, baseline.path().to_str().unwrap(), &[]).expect_code(0);
    assert_eq!(
        table.stdout,
        "No difference from 2026-12-01 to 2026-12-14: 2 reminder(s) before and after.\n"
    );
}

// --- The same feeds and journal ----------------------------------------------

#[test]
fn both_plans_read_the_folders_feeds_and_journal_not_the_baselines() {
    let folder = dunning_folder("", &invoices(2));
    let baseline = baseline_of(&folder);
    // The baseline's own feed and journal would say otherwise: five
    // invoices, nothing sent.
    baseline.write_invoices(&invoices(5));
    // F001 and F002 get their reminder today, journaled as sent.
    folder.run(&RUN_ONCE).expect_code(0);
    assert_eq!(folder.files("outbox").len(), 2);
    folder.write(
        "rules/dunning.yaml",
        &policy(
            "dunning",
            &[&overdue_at(1), "{id: firm, offset: 7, template: overdue}"],
        ),
    );
    folder.write(
        "templates/overdue.en.hbs",
        &template("Reminder: invoice {{invoice.number}}", "Please pay."),
    );

    let impact = impact_json(&folder, baseline.path());
    // The sent reminders are in neither plan (no change of subject shows);
    // the baseline plans nothing more for the folder's two invoices.
    assert_eq!(impact["before"], 0);
    assert_eq!(impact["after"], 2);
    assert_eq!(
        rows(&impact, "added"),
        ["F001 firm #0 2026-12-07", "F002 firm #0 2026-12-07"]
    );
    assert_eq!(impact["changed"], Value::Array(vec![]));
    assert!(
        baseline.files("state").is_empty(),
        "no journal made for the baseline"
    );
}

// --- Outputs -------------------------------------------------------------------

#[test]
fn the_json_has_exactly_the_documented_keys_and_rows_shaped_like_preview_rows() {
    let folder = dunning_folder("", &invoices(2));
    let baseline = edit_policy(
        &folder,
        Some(&[&overdue_at(1), "{id: late, offset: 10, template: overdue}"]),
        &[&overdue_at(3), "{id: firm, offset: 7, template: overdue}"],
    );
    let preview = folder
        .run(&["preview", "--as-of", AS_OF, "--format", "json"])
        .expect_code(0)
        .json();
    let preview_row = keys(&preview[0]);

    let impact = impact_json(&folder, baseline.path());
    assert_eq!(
        keys(&impact),
        set(&["before", "after", "added", "removed", "changed", "by_stage"])
    );
    assert_eq!(keys(&impact["added"][0]), preview_row);
    assert_eq!(keys(&impact["removed"][0]), preview_row);
    let change = &impact["changed"][0];
    assert_eq!(keys(change), set(&["before", "after", "fields"]));
    assert_eq!(keys(&change["before"]), preview_row);
    assert_eq!(keys(&change["after"]), preview_row);
    assert_eq!(change["fields"], serde_json::json!(["date"]));
    assert_eq!(
        keys(&impact["by_stage"][0]),
        set(&["policy", "stage", "added", "removed", "changed"])
    );
    // The added row is the row preview prints for it.
    let firm = preview
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["invoice"] == "F001" && r["stage"] == "firm")
        .unwrap();
    assert_eq!(&impact["added"][0], firm);
}

#[test]
fn the_table_groups_rows_by_policy_and_stage_with_their_counts() {
    let folder = dunning_folder("", &invoices(2));
    let baseline = edit_policy(
        &folder,
        Some(&[&overdue_at(1), "{id: late, offset: 10, template: overdue}"]),
        &[&overdue_at(3), "{id: firm, offset: 7, template: overdue}"],
    );

    let run = compare(&folder, baseline.path().to_str().unwrap(), &[]).expect_code(0);
    let expected = "\
From 2026-12-01 to 2026-12-14: 4 → 4 reminders (+2 firm, -2 late, ~2 changed)

dunning / overdue: 2 changed
CHANGE   DATE        INVOICE  CUSTOMER    STAGE    CHANNEL  SUBJECT / DIFFERENCE
changed  2026-12-03  F001     Customer 1  overdue  email    date: 2026-12-01 → 2026-12-03
changed  2026-12-03  F002     Customer 2  overdue  email    date: 2026-12-01 → 2026-12-03

dunning / firm: 2 added
CHANGE  DATE        INVOICE  CUSTOMER    STAGE  CHANNEL  SUBJECT / DIFFERENCE
added   2026-12-07  F001     Customer 1  firm   email    Invoice F001 is overdue
added   2026-12-07  F002     Customer 2  firm   email    Invoice F002 is overdue

dunning / late: 2 removed
CHANGE   DATE        INVOICE  CUSTOMER    STAGE  CHANNEL  SUBJECT / DIFFERENCE
removed  2026-12-10  F001     Customer 1  late   email    Invoice F001 is overdue
removed  2026-12-10  F002     Customer 2  late   email    Invoice F002 is overdue
";
    assert_eq!(run.stdout, expected);
}

#[test]
fn a_table_shows_fifty_rows_of_a_stage_unless_all_are_asked_for() {
    let folder = dunning_folder("", &invoices(60));
    let baseline = edit_policy(
        &folder,
        None,
        &[&overdue_at(1), "{id: firm, offset: 7, template: overdue}"],
    );
    let baseline = baseline.path().to_str().unwrap();

    let capped = compare(&folder, baseline, &[]).expect_code(0);
    assert_contains(&capped.stdout, "dunning / firm: 60 added\n");
    let added = |run: &Run| -> Vec<String> {
        run.stdout
            .lines()
            .filter(|l| l.starts_with("added"))
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
            .collect()
    };
    let shown = added(&capped);
    assert_eq!(shown.len(), 50);
    assert_eq!((shown[0].as_str(), shown[49].as_str()), ("F001", "F050"));
    assert_ends_with(&capped.stdout, "\n… and 10 more (--all to see them)\n");

    let all = compare(&folder, baseline, &["--all"]).expect_code(0);
    assert_eq!(added(&all).len(), 60);
    assert!(!all.stdout.contains("more (--all"), "{}", all.stdout);
    // JSON always lists every row.
    let json = compare(&folder, baseline, &["--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json["added"].as_array().unwrap().len(), 60);
}

#[test]
fn the_readme_excerpt_is_what_the_shipped_folder_prints() {
    let folder = Folder::sample();
    let baseline = baseline_of(&folder);
    let standard = folder.read("rules/standard.yaml");
    assert!(standard.contains("offset: 15"), "the tour's edit");
    folder.write(
        "rules/standard.yaml",
        &standard.replacen("offset: 15", "offset: 10", 1),
    );

    let run = compare(&folder, baseline.path().to_str().unwrap(), &[]).expect_code(0);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let excerpt: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("$ relance preview --as-of 2026-12-01 --baseline"))
        .skip(1)
        .take_while(|l| *l != "…")
        .collect();
    assert!(excerpt.len() >= 5, "{excerpt:?}");
    let out: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(out[..excerpt.len()], *excerpt);
}

// --- A git revision as the baseline --------------------------------------------

/// A git repository holding a dunning folder in its subfolder `finance/`,
/// committed: (the repository, the folder).
fn repository_with_a_folder(invoices_n: usize) -> (Folder, std::path::PathBuf) {
    let repo = Folder::empty();
    let source = dunning_folder("", &invoices(invoices_n));
    let folder = repo.path().join("finance");
    for sub in ["rules", "templates", "data"] {
        copy_dir(&source.path().join(sub), &folder.join(sub));
    }
    std::fs::copy(
        source.path().join("relance.yaml"),
        folder.join("relance.yaml"),
    )
    .unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(
        repo.path(),
        &["commit", "-q", "-m", "the rules as they are"],
    );
    (repo, folder)
}

/// `relance --dir FOLDER preview --as-of AS_OF --baseline SPEC [extra…]`, run
/// from `cwd`.
fn compare_in(cwd: &Path, folder: &Path, spec: &str, extra: &[&str]) -> Run {
    relance()
        .current_dir(cwd)
        .arg("--dir")
        .arg(folder)
        .args([&["preview", "--as-of", AS_OF, "--baseline", spec], extra].concat())
        .output()
        .expect("run relance")
        .into()
}

#[test]
fn a_git_revision_of_the_folder_is_a_baseline() {
    let (repo, folder) = repository_with_a_folder(2);
    std::fs::write(
        folder.join("rules/dunning.yaml"),
        policy(
            "dunning",
            &[&overdue_at(1), "{id: firm, offset: 7, template: overdue}"],
        ),
    )
    .unwrap();

    let run = compare_in(repo.path(), &folder, "git:HEAD", &["--format", "json"]).expect_code(0);
    let impact = run.json();
    assert_eq!(
        rows(&impact, "added"),
        ["F001 firm #0 2026-12-07", "F002 firm #0 2026-12-07"]
    );
    assert_eq!(by_stage(&impact), ["dunning/firm +2 -0 ~0"]);

    // Committed, the edit is the baseline of the next one; from inside the
    // folder, with the revision before it too.
    git(repo.path(), &["commit", "-q", "-a", "-m", "a firmer stage"]);
    let run = compare_in(&folder, Path::new("."), "git:HEAD", &[]).expect_code(0);
    assert_contains(&run.stdout, "No difference");
    let run = compare_in(&folder, Path::new("."), "git:HEAD~1", &[]).expect_code(0);
    assert_contains(&run.stdout, "2 → 4 reminders (+2 firm)");
}

#[test]
fn a_git_revision_with_a_broken_policy_is_refused_with_its_location_in_the_revision() {
    let (repo, folder) = repository_with_a_folder(1);
    std::fs::write(
        folder.join("rules/dunning.yaml"),
        policy("dunning", &["{id: overdue, ofset: 1, template: overdue}"]),
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-a", "-m", "a typo"]);
    std::fs::write(
        folder.join("rules/dunning.yaml"),
        policy("dunning", &[&overdue_at(1)]),
    )
    .unwrap();

    let run = compare_in(repo.path(), &folder, "git:HEAD", &[]).expect_code(2);
    assert_starts_with(
        &run.stderr,
        "HEAD:finance/rules/dunning.yaml:3:19: stages[0]: unknown field `ofset`",
    );
    assert_contains(
        &run.stderr,
        "relance: --baseline git:HEAD: its rules have errors (above)",
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn git_errors_are_quoted_and_refused() {
    let (repo, folder) = repository_with_a_folder(1);

    let run = compare_in(repo.path(), &folder, "git:no-such-branch", &[]).expect_code(2);
    assert_starts_with(
        &run.stderr,
        "relance: --baseline git:no-such-branch: unknown revision \"no-such-branch\": git says: fatal:",
    );

    let run = compare_in(repo.path(), &folder, "git:", &[]).expect_code(2);
    assert_contains(&run.stderr, "expected a revision after git:");

    // A folder in no repository: git is told not to look above it.
    let outside = dunning_folder("", &invoices(1));
    let run: Run = relance()
        .arg("--dir")
        .arg(outside.path())
        .args(["preview", "--as-of", AS_OF, "--baseline", "git:HEAD"])
        .env("GIT_CEILING_DIRECTORIES", outside.path().parent().unwrap())
        .output()
        .expect("run relance")
        .into();
    let run = run.expect_code(2);
    assert_contains(
        &run.stderr,
        "is not in a git repository: git says: fatal: not a git repository",
    );
}

#[test]
fn without_git_a_revision_baseline_says_how_to_install_it() {
    let folder = dunning_folder("", &invoices(1));
    let no_tools = Folder::empty();
    let run: Run = relance()
        .arg("--dir")
        .arg(folder.path())
        .args(["preview", "--as-of", AS_OF, "--baseline", "git:HEAD"])
        .env("PATH", no_tools.path())
        .output()
        .expect("run relance")
        .into();
    assert_eq!(
        run.expect_code(2).stderr,
        "relance: --baseline git:HEAD: git:REV needs the git command line tool: apt-get install git\n"
    );
}

// --- Refusals --------------------------------------------------------------------

#[test]
fn a_baseline_with_a_broken_policy_is_refused_with_its_location() {
    let folder = dunning_folder("", &invoices(1));
    let baseline = baseline_of(&folder);
    baseline.write(
        "rules/dunning.yaml",
        &policy("dunning", &["{id: overdue, ofset: 1, template: overdue}"]),
    );

    let run = compare(&folder, baseline.path().to_str().unwrap(), &[]).expect_code(2);
    let file = baseline.path().join("rules/dunning.yaml");
    assert_starts_with(
        &run.stderr,
        &format!("{}:3:19: stages[0]: unknown field `ofset`", file.display()),
    );
    assert_contains(
        &run.stderr,
        "its rules have errors (above): a difference with them would mean nothing",
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn a_missing_baseline_folder_is_refused() {
    let folder = dunning_folder("", &invoices(1));
    let missing = folder.path().join("no-such-folder");

    let run = compare(&folder, missing.to_str().unwrap(), &[]).expect_code(2);
    assert_eq!(
        run.stderr,
        format!(
            "relance: --baseline {0}: {0}: folder not found (expected a relance folder, or \
             git:REV for a revision of this one)\n",
            missing.display()
        )
    );
}

#[test]
fn a_folder_whose_own_rules_are_broken_is_not_compared() {
    let folder = dunning_folder("", &invoices(1));
    let baseline = baseline_of(&folder);
    folder.write(
        "rules/dunning.yaml",
        &policy("dunning", &["{id: overdue, ofset: 1, template: overdue}"]),
    );

    let run = compare(&folder, baseline.path().to_str().unwrap(), &[]).expect_code(1);
    assert_contains(
        &run.stderr,
        "rules/dunning.yaml:3:19: stages[0]: unknown field `ofset`",
    );
    assert_contains(&run.stderr, "the folder's rules have errors (above)");
    assert_eq!(run.stdout, "");
}

#[test]
fn baseline_takes_a_table_or_json_and_neither_render_nor_invoice() {
    let folder = dunning_folder("", &invoices(1));
    let baseline = baseline_of(&folder);
    let baseline = baseline.path().to_str().unwrap();

    let csv = compare(&folder, baseline, &["--format", "csv"]).expect_code(2);
    assert_contains(&csv.stderr, "prints a table or JSON");
    for flag in [&["--render"][..], &["--invoice", "F001"]] {
        let run = compare(&folder, baseline, flag).expect_code(2);
        assert_contains(&run.stderr, "cannot be used with");
    }
    let all = folder.run(&["preview", "--all"]).expect_code(2);
    assert_contains(&all.stderr, "--baseline");
}

#[test]
fn preview_help_describes_the_baseline() {
    let help = relance().args(["preview", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert_contains(&help, "--baseline <DIR|git:REV>");
    assert_contains(&help, "feeds and journal");
    assert_contains(&help, "--all");
}
