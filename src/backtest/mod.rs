//! `relance backtest`: the current rules replayed on the history of the
//! feeds, day by day, against a journal that starts empty; what would have
//! gone out, and what the customers did after.
//!
//! Every day of the window is decided by the engine's plan for that one day
//! ([`Evaluator::plan_invoices`], the decision `preview` and the daemon
//! make), on the day's [`World`]: the invoices issued by then, those paid
//! later still open, the customers' aggregates of that day. Each day's
//! reminders and overtaken stages go into the journal in memory before the
//! next day is decided. Nothing is delivered, and the real journal is never
//! opened.

mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::calendar::add_days;
use crate::engine::{Evaluator, Plan};
use crate::journal::{JournalView, Mark, State};
use crate::model::{Invoice, InvoiceId};
use crate::project::{Project, valid_addresses};
use crate::rules::{Channel, Policy, Trigger};
use world::World;

/// How many days after a reminder a payment counts as its answer, in the
/// three measures a backtest gives.
pub const PAID_WITHIN: [i64; 3] = [3, 7, 14];

/// What a backtest found: `relance backtest --format json` prints it as it is.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The invoices of the window: issued on or before `to` and not paid
    /// before `from` (paid on or after it, or open without a paid date).
    pub invoices: usize,
    /// Every stage of every policy, in the rulebook's order.
    pub by_stage: Vec<StageResult>,
    /// Invoices of the window paid late, or unpaid and overdue at `to`,
    /// that got no reminder at all.
    pub late_without_reminder: usize,
    pub days_late: DaysLate,
    /// Email reminders of invoices without a usable address: counted in
    /// `by_stage` as sent, though they could not have been.
    pub no_address: usize,
    /// Script failures, each with the invoices it happened to.
    #[serde(skip)]
    pub script_errors: Vec<(String, Vec<String>)>,
    /// Invoices that no policy matched on some day they were open.
    #[serde(skip)]
    pub unmatched: Vec<String>,
}

/// The reminders of one stage, and the payments that followed them.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub policy: String,
    pub stage: String,
    /// Every occurrence counts: a stage that repeats counts each.
    pub reminders: usize,
    /// Of these reminders, how many were followed by their invoice's
    /// payment within 3, 7 and 14 days (0 to N days after, paid by `to`);
    /// none for a thank-you, which follows the payment.
    pub paid_within: PaidWithin,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PaidWithin {
    #[serde(rename = "3")]
    pub days_3: usize,
    #[serde(rename = "7")]
    pub days_7: usize,
    #[serde(rename = "14")]
    pub days_14: usize,
}

impl PaidWithin {
    /// The counts in the order of [`PAID_WITHIN`].
    pub fn counts(&self) -> [usize; 3] {
        [self.days_3, self.days_7, self.days_14]
    }
}

/// The invoices of the window by days late: paid date minus due date, as
/// of `to` (an invoice paid after it is unpaid).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DaysLate {
    pub on_time: usize,
    #[serde(rename = "1-15")]
    pub days_1_15: usize,
    #[serde(rename = "16-30")]
    pub days_16_30: usize,
    #[serde(rename = "31-60")]
    pub days_31_60: usize,
    pub over_60: usize,
    pub unpaid: usize,
}

impl DaysLate {
    fn count(&mut self, days_late: Option<i64>) {
        let bucket = match days_late {
            None => &mut self.unpaid,
            Some(..=0) => &mut self.on_time,
            Some(1..=15) => &mut self.days_1_15,
            Some(16..=30) => &mut self.days_16_30,
            Some(31..=60) => &mut self.days_31_60,
            Some(_) => &mut self.over_60,
        };
        *bucket += 1;
    }
}

impl Backtest {
    /// Replays the days from `from` to `to` (both included; none when
    /// `from` is after `to`) with the project's rules on its feeds.
    pub fn run(project: &Project, from: NaiveDate, to: NaiveDate) -> Backtest {
        let started = std::time::Instant::now();
        let mut tally = Tally::new(project, to);
        replay(project, from, to, |plan| tally.count(plan));
        tracing::debug!(elapsed = ?started.elapsed(), "backtest replayed");
        tally.result(from, to)
    }
}

/// Decides each day from `from` to `to` on the world of that day, hands
/// each day's plan to `day_done`, and journals it in memory, as the daemon
/// would (the reminders sent, the stages they overtook skipped), before the
/// next day. Invoice ids are the project ledger's.
fn replay(project: &Project, from: NaiveDate, to: NaiveDate, mut day_done: impl FnMut(&Plan)) {
    let rulebook = &project.rulebook;
    let mut world = World::new(&project.ledger);
    let mut journal = JournalView::default();
    let names = Names::of(&rulebook.policies);
    // Issued and not paid yet, or paid and still owed a thank-you: the
    // invoices for which the day may decide something.
    let mut live: Vec<InvoiceId> = Vec::new();
    let mut day = from;
    while day <= to {
        live.extend(world.advance(day));
        let evaluator = Evaluator {
            policies: &rulebook.policies,
            scripts: &rulebook.scripts,
            ledger: &world.ledger,
            holds: &rulebook.holds,
            skipped: true,
        };
        live.retain(|&i| {
            let inv = &world.ledger.invoices[i];
            inv.is_open() || (inv.is_settled() && evaluator.may_thank(journal.marks(&inv.number)))
        });
        let plan = evaluator.plan_invoices(day, 1, &journal, &live);
        day_done(&plan);
        names.journal(&plan, &world.ledger.invoices, &mut journal);
        day = add_days(day, 1);
    }
}

/// Each policy's name and stage ids, shared by the marks a replay journals.
struct Names(Vec<(Arc<str>, Vec<Arc<str>>)>);

impl Names {
    fn of(policies: &[Policy]) -> Names {
        Names(
            policies
                .iter()
                .map(|p| {
                    let stages = p.stages.iter().map(|s| Arc::from(s.id.as_str())).collect();
                    (Arc::from(p.name.as_str()), stages)
                })
                .collect(),
        )
    }

    /// Journals a day's decisions in memory: the reminders as sent, the
    /// stages they overtook as skipped.
    fn journal(&self, plan: &Plan, invoices: &[Invoice], journal: &mut JournalView) {
        let decided = plan
            .reminders
            .iter()
            .map(|r| (r, State::Sent))
            .chain(plan.skipped.iter().map(|r| (r, State::Skipped)));
        // No channel recorded: the engine reads the stage's.
        let unknown: Arc<str> = Arc::from("");
        for (r, state) in decided {
            let (policy, stages) = &self.0[r.policy.index()];
            let mark = Mark {
                policy: policy.clone(),
                stage: stages[r.stage.index()].clone(),
                occurrence: r.occurrence,
                state,
                date: r.date,
                channel: unknown.clone(),
            };
            let number = &invoices[r.invoice].number;
            match journal.by_invoice.get_mut(&**number) {
                Some(marks) => marks.push(mark),
                None => {
                    journal.by_invoice.insert(number.to_string(), vec![mark]);
                }
            }
        }
    }
}

/// What the days' plans add up to.
struct Tally<'p> {
    project: &'p Project,
    to: NaiveDate,
    /// Per policy, per stage: reminders and the payments that followed.
    stages: Vec<Vec<(usize, PaidWithin)>>,
    /// Per invoice: how many reminders it got, and how many of them were emails.
    reminded: Vec<(u32, u32)>,
    script_errors: BTreeMap<String, BTreeSet<InvoiceId>>,
    unmatched: BTreeSet<InvoiceId>,
}

impl<'p> Tally<'p> {
    fn new(project: &'p Project, to: NaiveDate) -> Self {
        let policies = &project.rulebook.policies;
        Tally {
            project,
            to,
            stages: policies
                .iter()
                .map(|p| vec![(0, PaidWithin::default()); p.stages.len()])
                .collect(),
            reminded: vec![(0, 0); project.ledger.invoices.len()],
            script_errors: BTreeMap::new(),
            unmatched: BTreeSet::new(),
        }
    }

    /// Counts a day's reminders, and the payments that answered them.
    fn count(&mut self, plan: &Plan) {
        let policies = &self.project.rulebook.policies;
        for r in &plan.reminders {
            let stage = &policies[r.policy].stages[r.stage];
            let (reminders, paid_within) = &mut self.stages[r.policy.index()][r.stage.index()];
            *reminders += 1;
            let paid = self.project.ledger.invoices[r.invoice].paid_date;
            // A thank-you follows the payment: it cannot be what brought it.
            let answered = paid.filter(|p| *p <= self.to && stage.trigger != Trigger::Paid);
            if let Some(paid) = answered {
                let after = paid.signed_duration_since(r.date).num_days();
                let counts = [
                    &mut paid_within.days_3,
                    &mut paid_within.days_7,
                    &mut paid_within.days_14,
                ];
                for (days, count) in PAID_WITHIN.into_iter().zip(counts) {
                    *count += usize::from((0..=days).contains(&after));
                }
            }
            let email = stage.channel == Channel::Email;
            let (all, emails) = &mut self.reminded[r.invoice.index()];
            *all += 1;
            *emails += u32::from(email);
        }
        for (invoice, error) in &plan.errors {
            self.script_errors
                .entry(error.to_string())
                .or_default()
                .insert(*invoice);
        }
        self.unmatched.extend(&plan.unmatched);
    }

    fn result(self, from: NaiveDate, to: NaiveDate) -> Backtest {
        let ledger = &self.project.ledger;
        let mut result = Backtest {
            from,
            to,
            invoices: 0,
            by_stage: Vec::new(),
            late_without_reminder: 0,
            days_late: DaysLate::default(),
            no_address: 0,
            script_errors: Vec::new(),
            unmatched: Vec::new(),
        };
        for (policy, stages) in self.project.rulebook.policies.iter().zip(&self.stages) {
            for (stage, &(reminders, paid_within)) in policy.stages.iter().zip(stages) {
                result.by_stage.push(StageResult {
                    policy: policy.name.clone(),
                    stage: stage.id.clone(),
                    reminders,
                    paid_within,
                });
            }
        }
        for (i, inv) in ledger.invoices.iter().enumerate() {
            let (reminders, emails) = self.reminded[i];
            if emails > 0 && valid_addresses(ledger, inv).is_empty() {
                result.no_address += emails as usize;
            }
            let Some(days_late) = window_days_late(inv, from, to) else {
                continue;
            };
            result.invoices += 1;
            result.days_late.count(days_late);
            let late = days_late.map_or(inv.due_date < to, |d| d > 0);
            if late && reminders == 0 {
                result.late_without_reminder += 1;
            }
        }
        let number = |i: &InvoiceId| ledger.invoices[*i].number.to_string();
        result.script_errors = self
            .script_errors
            .into_iter()
            .map(|(error, invoices)| (error, invoices.iter().map(number).collect()))
            .collect();
        result.unmatched = self.unmatched.iter().map(number).collect();
        result
    }
}

/// Whether an invoice is one of the window's, and if so its days late as
/// of `to` (`None`: unpaid then). The window's invoices are those issued on
/// or before `to` and not paid before `from`; of those without a paid date,
/// only the open ones: a void, disputed or credit invoice is owed nothing,
/// and one settled without a paid date was settled no one knows when.
fn window_days_late(inv: &Invoice, from: NaiveDate, to: NaiveDate) -> Option<Option<i64>> {
    if inv.issue_date > to {
        return None;
    }
    match inv.paid_date {
        Some(paid) if paid < from => None,
        Some(paid) if paid <= to => Some(Some(paid.signed_duration_since(inv.due_date).num_days())),
        Some(_) => Some(None),
        None => inv.is_open().then_some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::date;
    use crate::project::Options;

    /// A history of invoices over half a year: customers who pay on time,
    /// one who pays later and later, unpaid, void and partly paid ones.
    fn history() -> String {
        let mut rows = vec![
            "number,customer_id,customer_name,email,issue_date,due_date,amount,amount_paid,status,paid_date,tags".to_string(),
        ];
        // The same history every run.
        let mut random = crate::text::tests::random(7);
        let mut next = |n: u64| random() % n;
        for n in 0..90u64 {
            let customer = next(6);
            let issue = add_days(date("2026-01-02"), next(170) as i64);
            let due = add_days(issue, 30);
            let paid = match (customer, next(10)) {
                (_, 0) => None,
                // C5 pays later as the year goes by: a habitual late payer from spring.
                (5, _) => Some(add_days(due, (issue - date("2026-01-01")).num_days() / 4)),
                (_, k) => Some(add_days(due, k as i64 * 3 - 12)),
            };
            let tags = if customer == 4 { "key-account" } else { "" };
            let (paid_amount, status, paid_date) = match (paid, n % 17) {
                (_, 3) => ("0", "void", String::new()),
                (Some(p), 5) => ("40", "open", p.to_string()),
                (Some(p), _) => ("100", "paid", p.to_string()),
                (None, 6) => ("30", "open", String::new()),
                (None, _) => ("0", "open", String::new()),
            };
            rows.push(format!(
                "F{n:03},C{customer},Customer {customer},c{customer}@example.com,{issue},{due},100,{paid_amount},{status},{paid_date},{tags}"
            ));
        }
        rows.join("\n") + "\n"
    }

    const LATE: &str = "name: late\npriority: 30\napplies_to: 'customer.late_paid_ratio >= 0.5 && customer.avg_days_late >= 10'\non_paid: {template: t}\nstages:\n  - {id: early, offset: -10, template: t}\n  - {id: overdue, offset: 1, template: t}\n  - {id: notice, offset: 15, template: t, repeat: {every: 10, max: 2}}\n";
    const KEY: &str = "name: key\npriority: 20\napplies_to: 'customer.tags.contains(\"key-account\")'\nstages:\n  - {id: call, offset: 20, template: t}\n";
    const STANDARD: &str = "name: standard\npriority: 10\non_paid: {template: t}\nstages:\n  - {id: courtesy, offset: -5, template: t, shift: earlier}\n  - {id: overdue, offset: 3, template: t, when: 'customer.overdue_count >= 1 && customer.open_count >= 1'}\n  - {id: firm, offset: 20, template: t, when: 'customer.total_due >= 150 || invoice.amount_due >= 100'}\n";

    fn project() -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "relance.yaml",
            "language: en\nsend_days: [mon, tue, wed, thu, fri]\n",
        );
        write("rules/late.yaml", LATE);
        write("rules/key.yaml", KEY);
        write("rules/standard.yaml", STANDARD);
        write(
            "templates/t.en.hbs",
            "---\nsubject: \"{{invoice.number}}\"\n---\nPay.\n",
        );
        write("data/invoices.csv", &history());
        let options = Options {
            dir: dir.path().to_path_buf(),
            ..Options::default()
        };
        let project = Project::load(&options).unwrap();
        assert!(!project.has_rule_errors(), "{:?}", project.problems);
        assert!(
            project.feed_problems.is_empty(),
            "{:?}",
            project.feed_problems
        );
        (dir, project)
    }

    /// "DATE NUMBER POLICY STAGE#K" of a plan's reminders.
    fn rows(project: &Project, plan: &Plan, numbers: impl Fn(InvoiceId) -> String) -> Vec<String> {
        let mut rows: Vec<String> = plan
            .reminders
            .iter()
            .map(|r| {
                let policy = &project.rulebook.policies[r.policy];
                let stage = &policy.stages[r.stage].id;
                let number = numbers(r.invoice);
                format!(
                    "{} {number} {} {stage}#{}",
                    r.date, policy.name, r.occurrence
                )
            })
            .collect();
        rows.sort();
        rows
    }

    /// The invoice as it stood on `day`: issued by then, open until paid.
    fn as_of(inv: &Invoice, day: NaiveDate) -> Option<Invoice> {
        if inv.issue_date > day {
            return None;
        }
        let mut inv = inv.clone();
        if inv.paid_date.is_some_and(|p| p > day) {
            inv.status = crate::model::Status::Open;
            inv.amount_paid = rust_decimal::Decimal::ZERO;
            inv.paid_date = None;
        }
        Some(inv)
    }

    #[test]
    fn a_replay_decides_each_day_as_a_ledger_of_that_day_would() {
        let (_dir, project) = project();
        let (from, to) = (date("2026-02-01"), date("2026-08-31"));
        let mut replayed = Vec::new();
        replay(&project, from, to, |plan| {
            let numbers = |i: InvoiceId| project.ledger.invoices[i].number.to_string();
            replayed.extend(rows(&project, plan, numbers));
        });
        // The same days decided the slow way: every day a ledger built
        // afresh from the invoices as they stood, planned whole.
        let names = Names::of(&project.rulebook.policies);
        let mut journal = JournalView::default();
        let mut expected = Vec::new();
        let mut day = from;
        while day <= to {
            let invoices: Vec<Invoice> = project
                .ledger
                .invoices
                .iter()
                .filter_map(|inv| as_of(inv, day))
                .collect();
            let index = crate::model::LedgerIndex::of(&invoices);
            let (ledger, _) = Project::ledger(&project.config, invoices, index);
            let evaluator = Evaluator {
                policies: &project.rulebook.policies,
                scripts: &project.rulebook.scripts,
                ledger: &ledger,
                holds: &project.rulebook.holds,
                skipped: true,
            };
            let plan = evaluator.plan(day, 1, &journal, None);
            let numbers = |i: InvoiceId| ledger.invoices[i].number.to_string();
            expected.extend(rows(&project, &plan, numbers));
            names.journal(&plan, &ledger.invoices, &mut journal);
            day = add_days(day, 1);
        }
        assert_eq!(replayed, expected);
        // The history exercises what it is for: a policy chosen by the
        // customer's payments of the day, thank-yous, repeats, catch-up.
        for part in [
            " late overdue#0",
            " late notice#2",
            " late on_paid#0",
            " standard on_paid#0",
            " key call#0",
            " standard firm#0",
        ] {
            assert!(
                replayed.iter().any(|r| r.contains(part)),
                "{part} in {replayed:#?}"
            );
        }
        // C5, paying later and later, falls under `late` once its payments
        // of the day say so, and never before.
        let of_c5 = |row: &&String| {
            let number = row.split(' ').nth(1).unwrap();
            let i = project.ledger.find(number).unwrap();
            &*project.ledger.invoices[i].bill_to.id == "C5" && !row.contains("on_paid")
        };
        let c5: Vec<&String> = replayed.iter().filter(of_c5).collect();
        let last_standard = c5
            .iter()
            .filter(|r| r.contains(" standard "))
            .max()
            .unwrap();
        let first_late = c5.iter().filter(|r| r.contains(" late ")).min().unwrap();
        assert!(last_standard < first_late, "{c5:#?}");
        assert!(first_late.as_str() > "2026-03", "{first_late}");
    }
}
