//! The real `relance` binary run on real folders: everything docs/contract.md §1–6 and §8
//! and issue 3 name. Each test writes a small folder, runs one command with
//! `--as-of` (never the wall clock) and asserts exact dates, amounts, exit
//! codes and `file:line` locations.
//!
//! One test binary, split by subject; the helpers shared by all are here.

mod common;

#[path = "cli/check.rs"]
mod check;
#[path = "cli/commands.rs"]
mod commands;
#[path = "cli/feeds.rs"]
mod feeds;
#[path = "cli/firing.rs"]
mod firing;
#[path = "cli/hostile.rs"]
mod hostile;
#[path = "cli/money.rs"]
mod money;
#[path = "cli/policies.rs"]
mod policies;
#[path = "cli/scripts.rs"]
mod scripts;
#[path = "cli/templates.rs"]
mod templates;

use common::{Folder, Run, policy, template};
pub use common::{Inv, csv, inv};
use serde_json::Value;

/// The single stage of the default policy: on the due date.
pub const ON_DUE: &str = "{id: on_due, offset: 0, template: t}";

/// The cadence of docs/contract.md §3, every stage on template `t`.
pub const STANDARD: [&str; 6] = [
    "{id: courtesy, offset: -7, template: t}",
    "{id: due_soon, offset: -2, template: t}",
    "{id: overdue_1, offset: 1, template: t}",
    "{id: overdue_2, offset: 15, template: t, when: 'invoice.amount_due >= 50'}",
    "{id: formal_notice, offset: 30, channel: letter, template: t}",
    "{id: collection, offset: 90, channel: task, template: t, repeat: {every: 30, max: 3}}",
];

/// A folder with no config (all defaults: French, EUR, `data/invoices.csv`),
/// the policy `p` with one stage on the due date, the French template `t`
/// whose subject is the invoice number, and a feed of `rows`.
pub fn folder(rows: &[Inv]) -> Folder {
    with_stages(rows, &[ON_DUE])
}

/// Like [`folder`], with these stages (YAML flow mappings) in the policy `p`.
pub fn with_stages(rows: &[Inv], stages: &[&str]) -> Folder {
    let f = Folder::empty();
    write_stages(&f, stages)
        .write(
            "templates/t.fr.hbs",
            &template("{{invoice.number}}", "Body of {{invoice.number}}"),
        )
        .write_invoices(rows);
    f
}

/// Writes the policy `p` with these stages (YAML flow mappings) over the old
/// one. It sends every day of the week: these tests pin the firing rules of
/// docs/contract.md §4 to exact dates, and the calendar that moves them off weekends
/// and holidays has tests of its own (`dunning.rs`).
pub fn write_stages<'f>(f: &'f Folder, stages: &[&str]) -> &'f Folder {
    f.write("rules/p.yaml", &every_day(&policy("p", stages)))
}

/// A policy's YAML that sends every day of the week.
pub fn every_day(policy: &str) -> String {
    format!("send_days: [mon, tue, wed, thu, fri, sat, sun]\n{policy}")
}

/// The words of a command line: `"preview --days 1"` is `["preview", "--days", "1"]`.
pub fn args(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `relance ARGS…` and checks its exit code (showing the output if not).
pub fn run_args(f: &Folder, args: &[&str], code: i32) -> Run {
    let run = f.run(args);
    assert_eq!(
        run.code,
        code,
        "relance {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

/// Runs the command line `relance LINE` (words split on white space) and
/// checks its exit code.
pub fn run_expect(f: &Folder, line: &str, code: i32) -> Run {
    run_args(f, &args(line), code)
}

/// Runs `relance LINE` without `--dir`, from inside the folder (so that the
/// folder is the current one and relative paths resolve there).
pub fn run_inside(f: &Folder, line: &str) -> Run {
    common::relance()
        .args(args(line))
        .current_dir(f.path())
        .output()
        .expect("run relance")
        .into()
}

/// What `relance LINE` (which must exit `code`) writes to stderr: its
/// non-empty lines, relative to the folder.
pub fn stderr_lines(f: &Folder, line: &str, code: i32) -> Vec<String> {
    lines(f, &run_expect(f, line, code).stderr)
}

/// The problems `check` finds (it must exit 1): its output lines, relative to the folder.
pub fn check_problems(f: &Folder) -> Vec<String> {
    lines(f, &run_expect(f, "check", 1).stdout)
}

/// `preview --format json ARGS` (which must exit 0): the reminders.
pub fn preview_json(f: &Folder, args: &str) -> Vec<Value> {
    array(run_expect(f, &format!("preview --format json {args}"), 0).json())
}

/// The elements of a JSON array (panics with the value when it is not one).
pub fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(elements) => elements,
        other => panic!("not an array: {other}"),
    }
}

/// For each object, the string fields named in `keys` (separated by spaces),
/// joined by spaces: `"invoice policy"` gives `"F1 p"`.
pub fn fields(objects: &[Value], keys: &str) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            keys.split_whitespace()
                .map(|k| str_of(o, k))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// [`fields`] of the reminders of `preview --format json ARGS`.
pub fn preview_fields(f: &Folder, args: &str, keys: &str) -> Vec<String> {
    fields(&preview_json(f, args), keys)
}

/// The reminders of `preview --as-of FROM --days DAYS`, one
/// `"DATE INVOICE STAGE"` each (`STAGE#k` for its k-th repeat).
pub fn fired(f: &Folder, from: &str, days: &str) -> Vec<String> {
    preview_json(f, &format!("--as-of {from} --days {days}"))
        .iter()
        .map(|r| {
            let k = r["occurrence"].as_u64().expect("occurrence is a number");
            let stage = r["stage"].as_str().unwrap();
            let stage = if k == 0 {
                stage.to_string()
            } else {
                format!("{stage}#{k}")
            };
            format!("{} {} {stage}", str_of(r, "date"), str_of(r, "invoice"))
        })
        .collect()
}

/// A string field of a JSON object (panics with the object when it is not one).
pub fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// `text` with the folder's path taken out, so that locations read as a user
/// in the folder sees them: `rules/p.yaml:4:5: …`.
pub fn local(f: &Folder, text: &str) -> String {
    text.replace(&format!("{}/", f.path().display()), "")
}

/// The non-empty lines of a command's output, relative to the folder.
pub fn lines(f: &Folder, text: &str) -> Vec<String> {
    local(f, text)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Creates the journal as the daemon does: one `run --once` on `date`, with
/// emails only logged.
pub fn run_once(f: &Folder, date: &str) {
    if !f.path().join("relance.yaml").exists() {
        f.write("relance.yaml", "delivery: {kind: log}\n");
    }
    run_expect(f, &format!("run --once --as-of {date}"), 0);
    assert!(f.path().join("state/relance.db").exists());
}
