//! The real `relance` binary run on real folders: everything SPEC §1–6 and §8
//! and issue 3 name. Each test writes a small folder, runs one command with
//! `--as-of` (never the wall clock) and asserts exact dates, amounts, exit
//! codes and `file:line` locations.
//!
//! One test binary, split by subject; the helpers shared by all are here.

mod common;

#[path = "cli/commands.rs"]
mod commands;
#[path = "cli/feeds.rs"]
mod feeds;
#[path = "cli/firing.rs"]
mod firing;
#[path = "cli/policies.rs"]
mod policies;
#[path = "cli/scripts.rs"]
mod scripts;
#[path = "cli/templates.rs"]
mod templates;

use common::{CSV_HEADER, Folder, Run, policy, template};
use serde_json::Value;

/// One row of a canonical CSV feed: an open EUR invoice issued on its due
/// date unless a builder method says otherwise.
#[derive(Clone)]
pub struct Inv {
    number: String,
    customer_id: String,
    customer_name: String,
    email: String,
    issue_date: String,
    due_date: String,
    amount: String,
    amount_paid: String,
    currency: String,
    status: String,
    paid_date: String,
    language: String,
    tags: String,
    promise_date: String,
}

pub fn inv(number: &str, due: &str, amount: &str) -> Inv {
    Inv {
        number: number.into(),
        customer_id: format!("C-{number}"),
        customer_name: format!("Customer {number}"),
        email: format!("{}@example.com", number.to_lowercase()),
        issue_date: due.into(),
        due_date: due.into(),
        amount: amount.into(),
        amount_paid: String::new(),
        currency: String::new(),
        status: String::new(),
        paid_date: String::new(),
        language: String::new(),
        tags: String::new(),
        promise_date: String::new(),
    }
}

impl Inv {
    pub fn customer(mut self, id: &str, name: &str) -> Inv {
        self.customer_id = id.into();
        self.customer_name = name.into();
        self
    }
    pub fn email(mut self, email: &str) -> Inv {
        self.email = email.into();
        self
    }
    pub fn issued(mut self, date: &str) -> Inv {
        self.issue_date = date.into();
        self
    }
    pub fn paid(mut self, amount_paid: &str) -> Inv {
        self.amount_paid = amount_paid.into();
        self
    }
    pub fn status(mut self, status: &str) -> Inv {
        self.status = status.into();
        self
    }
    /// Settled on `date` (status paid).
    pub fn settled(mut self, date: &str) -> Inv {
        self.status = "paid".into();
        self.paid_date = date.into();
        self
    }
    pub fn currency(mut self, currency: &str) -> Inv {
        self.currency = currency.into();
        self
    }
    pub fn language(mut self, language: &str) -> Inv {
        self.language = language.into();
        self
    }
    pub fn tags(mut self, tags: &str) -> Inv {
        self.tags = tags.into();
        self
    }

    fn csv_line(&self) -> String {
        [
            &self.number,
            &self.customer_id,
            &self.customer_name,
            &self.email,
            &self.issue_date,
            &self.due_date,
            &self.amount,
            &self.amount_paid,
            &self.currency,
            &self.status,
            &self.paid_date,
            &self.language,
            &self.tags,
            &self.promise_date,
        ]
        .map(|v| csv_quote(v))
        .join(",")
    }
}

fn csv_quote(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// A canonical CSV feed of these invoices.
pub fn csv(rows: &[Inv]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for row in rows {
        s.push_str(&row.csv_line());
        s.push('\n');
    }
    s
}

/// The single stage of the default policy: on the due date.
pub const ON_DUE: &str = "{id: on_due, offset: 0, template: t}";

/// The cadence of SPEC §3, every stage on template `t`.
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
    let f = Folder::empty();
    f.write("rules/p.yaml", &policy("p", &[ON_DUE]))
        .write(
            "templates/t.fr.hbs",
            &template("{{invoice.number}}", "Body of {{invoice.number}}"),
        )
        .write("data/invoices.csv", &csv(rows));
    f
}

/// Runs `relance ARGS…` and checks its exit code (showing the output if not).
pub fn run_expect(f: &Folder, args: &[&str], code: i32) -> Run {
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

/// `preview --format json ARGS…` (which must exit 0): the reminders.
pub fn preview_json(f: &Folder, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["preview", "--format", "json"];
    all.extend_from_slice(args);
    match run_expect(f, &all, 0).json() {
        Value::Array(reminders) => reminders,
        other => panic!("not an array: {other}"),
    }
}

/// The reminders of `preview --as-of FROM --days DAYS`, one
/// `"DATE INVOICE STAGE"` each (`STAGE#k` for its k-th repeat).
pub fn fired(f: &Folder, from: &str, days: &str) -> Vec<String> {
    preview_json(f, &["--as-of", from, "--days", days])
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
    run_expect(f, &["run", "--once", "--as-of", date], 0);
    assert!(f.path().join("state/relance.db").exists());
}
