//! The firing rules (docs/contract.md §4): which stage of which policy fires for an invoice on a date.
//!
//! One function, [`Evaluator::evaluate`], decides for one invoice and one
//! date; the daemon calls it for today, `preview` for each coming day against a
//! journal it simulates forward, and `explain` with a trace. So a preview is
//! exactly what the daemon will send.

mod contact;
mod decide;
mod plan;
mod trace;

use std::sync::Arc;

use chrono::NaiveDate;
use rhai::Scope;
use smallvec::SmallVec;

use crate::journal::{JournalView, Mark};
use crate::model::{InvoiceId, Ledger};
use crate::rules::{Holds, Policy, PolicyId, ScriptError, Scripts, StageId, Trigger};

pub use contact::Restart;
pub use plan::Plan;
pub use trace::{PolicyTrace, StageTrace, Trace, Verdict};

/// One occurrence of a stage: occurrence 0 is its first firing, k its k-th repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub stage: StageId,
    pub occurrence: u32,
    /// The day it is reached: anchor + offset + k × every.
    pub reached_on: NaiveDate,
}

/// The decision for one invoice on one date.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The chosen policy; `None` when no policy applies.
    pub policy: Option<PolicyId>,
    pub fire: Option<Occurrence>,
    /// Earlier candidates overtaken by the one that fires: recorded, never sent.
    /// Usually a handful, kept on the stack; more (a long catch-up) spill
    /// to the heap.
    pub skipped: SmallVec<[Occurrence; 4]>,
    /// Reached candidates left waiting because their `when` was false.
    pub pending: bool,
    pub errors: Vec<ScriptError>,
    /// What fires is the invoice's first contact and restarts its ladder
    /// (`first_contact: restart`).
    pub restarted: bool,
}

/// The policy an invoice falls under, with the script failures met on the way.
#[derive(Debug, Default, Clone)]
pub struct PolicyChoice {
    pub policy: Option<usize>,
    pub errors: Vec<ScriptError>,
    /// How many policies were asked, highest priority first: the last one
    /// asked decided, unless none applied.
    pub asked: usize,
}

/// A reminder decided by the firing rules: this stage occurrence of this
/// policy goes out for this invoice on this date. A [`Plan`] lists them;
/// `project` groups them into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reminder {
    pub date: NaiveDate,
    pub invoice: InvoiceId,
    pub policy: PolicyId,
    pub stage: StageId,
    pub occurrence: u32,
}

/// Decides reminders for the invoices of a ledger under a set of policies.
pub struct Evaluator<'a> {
    pub policies: &'a [Policy],
    pub scripts: &'a Scripts,
    pub ledger: &'a Arc<Ledger>,
    pub holds: &'a Holds,
    /// Whether plans list the occurrences overtaken by a later one
    /// ([`Plan::skipped`]): only the journal needs them, and at a million
    /// invoices they are millions of rows a preview would hold for nothing.
    pub skipped: bool,
}

impl Evaluator<'_> {
    /// Applies docs/contract.md §4 to one open invoice on `date`, given its
    /// journal marks, as if its customer had been sent nothing about its
    /// other invoices.
    pub fn evaluate(
        &self,
        invoice: InvoiceId,
        date: NaiveDate,
        marks: &[Mark],
        trace: Option<&mut Trace>,
    ) -> Outcome {
        let last = self.contacts(std::iter::once(marks)).before(date);
        self.decide(
            invoice.index(),
            date,
            marks,
            trace,
            decide::Known {
                chosen: None,
                last,
                unheld: false,
            },
            &mut Scope::new(),
        )
    }

    /// [`Evaluator::evaluate`] against the whole journal: the invoice's
    /// marks, and what its customer was sent about any of its invoices.
    pub fn evaluate_in(
        &self,
        invoice: InvoiceId,
        date: NaiveDate,
        journal: &JournalView,
        trace: Option<&mut Trace>,
    ) -> Outcome {
        let marks = journal.marks(&self.ledger.invoices[invoice].number);
        let last = self.customer_contacts(invoice, journal).before(date);
        self.decide(
            invoice.index(),
            date,
            marks,
            trace,
            decide::Known {
                chosen: None,
                last,
                unheld: false,
            },
            &mut Scope::new(),
        )
    }

    /// Why a reminder already decided cannot go out on `date` (a retry, a
    /// crash leftover): a day off, a hold, a promise running — what would
    /// stop a new one.
    pub fn waits(&self, planned: &Reminder, date: NaiveDate) -> Option<String> {
        let policy = &self.policies[planned.policy];
        let inv = &self.ledger.invoices[planned.invoice];
        let thanks = policy.stages[planned.stage].trigger == Trigger::Paid;
        self.blocked(policy, inv, date, !thanks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, SendWindow};
    use crate::diagnostics::Problems;
    use crate::journal::JournalView;
    use crate::model::Invoice;
    use crate::model::tests::date;
    use crate::rules::{PolicyDefaults, load_holds, load_policies};

    /// A folder of rules and a ledger: what the engine's tests decide with.
    pub(super) struct Fixture {
        _dir: tempfile::TempDir,
        pub(super) policies: Vec<Policy>,
        scripts: Scripts,
        pub(super) ledger: Arc<Ledger>,
        pub(super) holds: Holds,
    }

    /// Policies sending every day of the week: the rules of docs/contract.md §4 alone.
    pub(super) fn fixture(policies: &[&str], invoices: Vec<Invoice>) -> Fixture {
        let every_day = SendWindow {
            calendar: Calendar::every_day(),
            send_time: None,
        };
        fixture_with(&every_day, None, policies, invoices)
    }

    /// Policies under the config's `window`, with a `rules/holds.yaml`.
    pub(super) fn fixture_with(
        window: &SendWindow,
        holds: Option<&str>,
        policies: &[&str],
        invoices: Vec<Invoice>,
    ) -> Fixture {
        let defaults = PolicyDefaults {
            window: window.clone(),
            ..PolicyDefaults::default()
        };
        fixture_with_defaults(&defaults, holds, policies, invoices)
    }

    /// Policies under the config's `defaults` (send window, contact, first
    /// contact), with a `rules/holds.yaml`.
    pub(super) fn fixture_with_defaults(
        defaults: &PolicyDefaults,
        holds: Option<&str>,
        policies: &[&str],
        invoices: Vec<Invoice>,
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for (i, p) in policies.iter().enumerate() {
            std::fs::write(dir.path().join(format!("p{i}.yaml")), p).unwrap();
        }
        if let Some(h) = holds {
            std::fs::write(dir.path().join("holds.yaml"), h).unwrap();
        }
        let mut problems = Problems::default();
        let scripts = Scripts::load(dir.path(), &Default::default(), 1 << 20, &mut problems);
        let limits = Default::default();
        let policies = load_policies(dir.path(), &scripts, defaults, limits, &mut problems);
        let holds = load_holds(dir.path(), limits, &mut problems);
        assert!(!problems.has_errors(), "{problems:?}");
        Fixture {
            _dir: dir,
            policies,
            scripts,
            ledger: Arc::new(Ledger::new(invoices)),
            holds,
        }
    }

    impl Fixture {
        pub(super) fn ev(&self) -> Evaluator<'_> {
            Evaluator {
                policies: &self.policies,
                scripts: &self.scripts,
                ledger: &self.ledger,
                holds: &self.holds,
                skipped: true,
            }
        }
        /// "DATE INVOICE STAGE" of each reminder of a plan.
        pub(super) fn fired(&self, plan: &Plan) -> Vec<String> {
            plan.reminders
                .iter()
                .map(|r| {
                    let stage = &self.policies[r.policy].stages[r.stage].id;
                    let number = &self.ledger.invoices[r.invoice].number;
                    format!("{} {number} {stage}", r.date)
                })
                .collect()
        }

        /// (date, stage, occurrence) of each planned reminder.
        pub(super) fn plan(
            &self,
            from: &str,
            days: u32,
            journal: &JournalView,
        ) -> Vec<(String, String, u32)> {
            self.ev()
                .plan(date(from), days, journal, None)
                .reminders
                .iter()
                .map(|r| {
                    (
                        r.date.to_string(),
                        self.policies[r.policy].stages[r.stage].id.clone(),
                        r.occurrence,
                    )
                })
                .collect()
        }
    }

    pub(super) const STANDARD: &str = "name: standard
stages:
  - {id: courtesy, offset: -7, template: t}
  - {id: due_soon, offset: -2, template: t}
  - {id: overdue_1, offset: 1, template: t}
  - {id: overdue_2, offset: 15, template: t, when: 'invoice.amount_due >= 50'}
  - {id: collection, offset: 90, template: t, repeat: {every: 30, max: 3}}
";

    pub(super) fn row(s: &str, k: u32) -> (String, String, u32) {
        let (d, st) = s.split_once(' ').unwrap();
        (d.to_string(), st.to_string(), k)
    }
}
