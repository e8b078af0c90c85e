//! What `explain` shows of a decision: the policies asked, every stage
//! occurrence met and its verdict, made of the decision's own findings.

use chrono::NaiveDate;
use serde::Serialize;

use super::PolicyChoice;
use super::contact::Restart;
use super::decide::{Findings, Visit, Wait};
use crate::journal::State;
use crate::rules::{ON_PAID, Policy};

/// What `explain` shows of one stage occurrence.
#[derive(Debug, Clone, Serialize)]
pub struct StageTrace {
    pub stage: String,
    pub occurrence: u32,
    /// The day it is reached, on the calendar; `None` for a broken-promise
    /// stage of an invoice without a promise.
    pub date: Option<NaiveDate>,
    /// The day the offsets give, when the calendar moved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<NaiveDate>,
    /// Why: "not a sending day", "bank holiday: Christmas Day"…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_because: Option<String>,
    pub reached: bool,
    /// `None` when not evaluated (no `when`, or not a candidate).
    #[serde(serialize_with = "script_value")]
    pub when: Option<Result<bool, String>>,
    pub journal: Option<State>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NotReached,
    InJournal,
    /// Before the last stage the journal holds for this policy: a policy never steps back.
    Passed,
    Fires,
    Skipped,
    Waiting,
    /// Reached, but the invoice already had a reminder on this date (docs/contract.md §4.5).
    OnePerDay,
    /// Reached, but nothing goes out today: a hold, a promise to pay, a
    /// day that is not a sending day (the trace's `blocked` says which).
    Held,
    /// A broken-promise stage of an invoice with no promise to pay.
    NoPromise,
    /// This occurrence and every earlier one of its stage (a repeat without
    /// `max`), reached long ago, not listed one by one: a catch-up journals
    /// only the latest ones, so none of them can fire or be journaled.
    Earlier,
}

/// What `explain` shows of the policy choice.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTrace {
    pub policy: String,
    pub priority: i64,
    /// `None`: not evaluated because a higher policy was chosen.
    #[serde(serialize_with = "script_value")]
    pub applies: Option<Result<bool, String>>,
}

/// An expression's value for machines: `null` (not evaluated), `true`,
/// `false`, or `{"error": "file:line:col: message"}` — rather than serde's
/// `{"Ok": true}` rendering of a `Result`.
fn script_value<S: serde::Serializer>(
    value: &Option<Result<bool, String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match value {
        None => s.serialize_none(),
        Some(Ok(b)) => s.serialize_bool(*b),
        Some(Err(e)) => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("error", e)?;
            map.end()
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Trace {
    pub policies: Vec<PolicyTrace>,
    pub stages: Vec<StageTrace>,
    /// Why nothing goes out on the date, if so: "held until 2026-12-15:
    /// contested delivery", a promise to pay, a day off, the minimum gap
    /// between two emails to the customer.
    pub blocked: Option<String>,
    /// The invoice's ladder restarted at its first contact (`first_contact: restart`).
    pub restart: Option<Restart>,
}

impl Trace {
    /// The trace of an open invoice's decision.
    pub(super) fn of(policies: &[Policy], found: &Findings) -> Trace {
        let (stages, restart) = match found.choice.policy {
            Some(p) => {
                let policy = &policies[p];
                let stage = |visit| stage_trace(policy, found, visit);
                let restart = found.ladder.and_then(|l| Restart::of(policy, &l));
                (found.visits.iter().map(stage).collect(), restart)
            }
            None => (Vec::new(), None),
        };
        let policies = policies.iter().enumerate().map(|(i, p)| PolicyTrace {
            policy: p.name.clone(),
            priority: p.priority,
            applies: applies(&found.choice, i),
        });
        Trace {
            policies: policies.collect(),
            stages,
            blocked: match &found.wait {
                Some(Wait::Blocked(why)) => Some(why.clone()),
                _ => None,
            },
            restart,
        }
    }

    /// The trace of a settled invoice's thank-you on `date`: `journal`, what
    /// the journal holds of it; `blocked`, why it cannot go out that day.
    pub(super) fn thank(
        date: NaiveDate,
        journal: Option<State>,
        fires: bool,
        blocked: Option<String>,
    ) -> Trace {
        let verdict = match (journal, fires) {
            (Some(_), _) => Verdict::InJournal,
            (None, true) => Verdict::Fires,
            (None, false) if blocked.is_some() => Verdict::Held,
            (None, false) => Verdict::OnePerDay,
        };
        Trace {
            policies: Vec::new(),
            stages: vec![StageTrace {
                stage: ON_PAID.into(),
                occurrence: 0,
                date: Some(date),
                moved_from: None,
                moved_because: None,
                reached: true,
                when: None,
                journal,
                verdict,
            }],
            blocked,
            restart: None,
        }
    }
}

/// What policy `i`'s `applies_to` said in `choice`; `None` when a higher
/// policy decided before it was asked.
fn applies(choice: &PolicyChoice, i: usize) -> Option<Result<bool, String>> {
    if i >= choice.asked {
        return None;
    }
    Some(if choice.policy == Some(i) {
        Ok(true)
    } else if i + 1 == choice.asked
        && let Some(e) = choice.errors.first()
    {
        Err(e.to_string())
    } else {
        Ok(false)
    })
}

fn stage_trace(policy: &Policy, found: &Findings, visit: &Visit) -> StageTrace {
    let stage = &policy.stages[visit.stage];
    let candidate = found.candidates.iter().position(|c| {
        c.occurrence.stage == visit.stage && c.occurrence.occurrence == visit.occurrence
    });
    let when = candidate
        .filter(|_| stage.when.is_some())
        .and_then(|i| found.candidates[i].when)
        .map(|w| w.map_err(|e| found.failures[e].to_string()));
    let verdict = match candidate {
        _ if visit.elided => Verdict::Earlier,
        Some(i) => candidate_verdict(found, i),
        None => match (visit.dates, visit.journal, visit.reached) {
            (None, _, _) => Verdict::NoPromise,
            (_, Some(_), _) => Verdict::InJournal,
            (_, None, false) => Verdict::NotReached,
            (_, None, true) => Verdict::Passed,
        },
    };
    StageTrace {
        stage: stage.id.clone(),
        occurrence: visit.occurrence,
        date: visit.dates.map(|(_, on)| on),
        moved_from: visit
            .dates
            .and_then(|(scheduled, on)| (scheduled != on).then_some(scheduled)),
        moved_because: visit
            .dates
            .and_then(|(scheduled, _)| policy.calendar().closed(scheduled)),
        reached: visit.reached,
        when,
        journal: visit.journal,
        verdict,
    }
}

/// A candidate fires, is overtaken, or waits: for its `when`, or for another day.
fn candidate_verdict(found: &Findings, i: usize) -> Verdict {
    match &found.wait {
        Some(Wait::Blocked(_)) => Verdict::Held,
        Some(Wait::OnePerDay) => Verdict::OnePerDay,
        None if found.fire == Some(i) => Verdict::Fires,
        None if i < found.overtaken && found.records_skip(i) => Verdict::Skipped,
        // An earlier repeat of a stage whose later one is skipped or fires.
        None if i < found.overtaken => Verdict::Passed,
        None => Verdict::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::add_days;
    use crate::engine::tests::{STANDARD, fixture};
    use crate::journal::Mark;
    use crate::model::tests::{date, invoice};

    #[test]
    fn the_trace_says_what_was_decided() {
        let promise = "name: promise\npriority: 5\napplies_to: 'invoice.number == \"F2\"'\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n  - {id: broken, on: promise_broken, template: t}\n  - {id: overdue_2, offset: 15, template: t, when: 'invoice.amount_due >= 50'}\n";
        let mut invoices = vec![
            invoice("F1", "C1", "2026-12-10", "20"),
            invoice("F2", "C1", "2026-12-10", "20"),
        ];
        invoices[1].promise_date = Some(date("2026-12-18"));
        let f = fixture(&[STANDARD, promise], invoices);
        let sent = [Mark {
            policy: "standard".into(),
            stage: "overdue_1".into(),
            occurrence: 0,
            state: State::Sent,
            date: date("2026-12-11"),
            channel: "email".into(),
        }];
        for (invoice, marks) in [(0, &sent[..]), (0, &[]), (1, &[])] {
            let invoice = crate::model::InvoiceId::new(invoice);
            for day in 0..150 {
                let on = add_days(date("2026-11-20"), day);
                let mut trace = Trace::default();
                let traced = f.ev().evaluate(invoice, on, marks, Some(&mut trace));
                let fast = f.ev().evaluate(invoice, on, marks, None);
                assert_eq!(
                    (traced.policy, traced.fire, &traced.skipped, traced.pending),
                    (fast.policy, fast.fire, &fast.skipped, fast.pending),
                    "{on}"
                );
                let said = |verdict| trace.stages.iter().filter(|s| s.verdict == verdict).count();
                assert_eq!(
                    said(Verdict::Fires),
                    usize::from(fast.fire.is_some()),
                    "{on}"
                );
                assert_eq!(said(Verdict::Skipped), fast.skipped.len(), "{on}");
            }
        }
    }
}
