//! `relance test`: one line per policy test case, the difference of a failing one, a summary; or JSON.

use std::io::{self, Write};

use serde_json::Value;

use super::{Format, json};
use crate::policy_tests::{Expected, TestCase, TestFile};

/// Writes the cases of `files`: in a table, `ok` or `FAIL` with the case's
/// `file:line` and name, under a failing case the expected reminders that
/// are missing and the unexpected ones, one a line, then `N passed, M
/// failed`; in JSON, one array of the cases. Problems (files that do not
/// load) are the caller's to print.
pub fn policy_tests(out: &mut dyn Write, files: &[TestFile], format: Format) -> io::Result<()> {
    let cases: Vec<&TestCase> = files.iter().flat_map(|f| &f.cases).collect();
    if format == Format::Json {
        return json(out, &cases);
    }
    for case in &cases {
        let verdict = if case.passed { "ok  " } else { "FAIL" };
        writeln!(
            out,
            "{verdict} {}:{}  {}",
            case.file.display(),
            case.line,
            case.name
        )?;
        if !case.missing.is_empty() {
            writeln!(out, "     expected but missing:")?;
            for expected in &case.missing {
                writeln!(out, "       {}", expectation(expected))?;
            }
        }
        if !case.unexpected.is_empty() {
            writeln!(out, "     unexpected:")?;
            for row in &case.unexpected {
                writeln!(out, "       {}", reminder(row))?;
            }
        }
    }
    let failed = cases.iter().filter(|c| !c.passed).count();
    let unloaded = files.iter().filter(|f| !f.loaded()).count();
    let unloaded = match unloaded {
        0 => String::new(),
        n => format!(", {n} test file(s) with errors"),
    };
    writeln!(
        out,
        "{} passed, {failed} failed{unloaded}",
        cases.len() - failed
    )
}

/// An expectation as written, its keys in the order of the file format.
fn expectation(e: &Expected) -> String {
    let mut keys: Vec<String> = Vec::new();
    let mut key = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            keys.push(format!("{name}: {value}"));
        }
    };
    key("date", e.date.map(|d| d.to_string()));
    key("invoice", e.invoice.clone());
    key("policy", e.policy.clone());
    key("stage", e.stage.clone());
    key("occurrence", e.occurrence.map(|o| o.to_string()));
    key("channel", e.channel.clone());
    key("to", e.to.as_ref().map(|t| format!("{t:?}")));
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| format!("[{}]", v.join(", ")));
    key("cc", list(&e.cc));
    key("bcc", list(&e.bcc));
    key("language", e.language.clone());
    key("template", e.template.clone());
    key("message", e.message.clone());
    key(
        "subject_contains",
        e.subject_contains.as_ref().map(|s| format!("{s:?}")),
    );
    key(
        "body_contains",
        e.body_contains.as_ref().map(|s| format!("{s:?}")),
    );
    format!("{{{}}}", keys.join(", "))
}

/// A reminder on one line: `date invoice policy/stage#occurrence channel to "subject"`.
fn reminder(row: &Value) -> String {
    let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("");
    let occurrence = row.get("occurrence").and_then(Value::as_u64).unwrap_or(0);
    let to = match text("to") {
        "" => "(no recipient)",
        to => to,
    };
    let subject = match row.get("error").and_then(Value::as_str) {
        Some(error) => format!("NOT SENDABLE: {error}"),
        None => format!("{:?}", text("subject")),
    };
    format!(
        "{} {} {}/{}#{occurrence} {} {to} {subject}",
        text("date"),
        text("invoice"),
        text("policy"),
        text("stage"),
        text("channel"),
    )
}
