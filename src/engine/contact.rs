//! Consideration for the customer: the days messages went out to it
//! (`customer.last_contacted`, `contact.min_days_between`) and an invoice's
//! first contact (`first_contact: restart`), all read from the journal alone
//! so that the daemon and `preview` decide alike.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use chrono::NaiveDate;
use serde::Serialize;

use super::Evaluator;
use crate::calendar::add_days;
use crate::config::FirstContact;
use crate::journal::{JournalView, Mark, State};
use crate::model::{Invoice, InvoiceId};
use crate::rules::{Channel, Policy, Stage, StageId};

/// What a customer was sent before the day being decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastContact {
    /// The last day a message of any channel went out: `customer.last_contacted`.
    pub any: Option<NaiveDate>,
    /// The last day an email went out: what `contact.min_days_between` counts from.
    pub email: Option<NaiveDate>,
}

/// The days messages went out to one customer, journaled `sent` or decided
/// on an earlier day of a plan; sorted, each day once.
#[derive(Debug, Default)]
pub(super) struct Contacts {
    any: Vec<NaiveDate>,
    email: Vec<NaiveDate>,
}

impl Contacts {
    pub(super) fn record(&mut self, date: NaiveDate, email: bool) {
        insert(&mut self.any, date);
        if email {
            insert(&mut self.email, date);
        }
    }

    /// What the customer was sent before `date`: the messages of `date`
    /// itself do not count, so a day's decisions do not depend on the order
    /// they are made in, nor on the daemon deciding the same day again.
    pub(super) fn before(&self, date: NaiveDate) -> LastContact {
        let last = |days: &[NaiveDate]| days[..days.partition_point(|d| *d < date)].last().copied();
        LastContact {
            any: last(&self.any),
            email: last(&self.email),
        }
    }
}

fn insert(days: &mut Vec<NaiveDate>, date: NaiveDate) {
    if let Err(at) = days.binary_search(&date) {
        days.insert(at, date);
    }
}

impl Evaluator<'_> {
    /// The days the messages of these journal marks went out.
    pub(super) fn contacts<'m>(&self, marks: impl Iterator<Item = &'m [Mark]>) -> Contacts {
        let mut contacts = Contacts::default();
        for mark in marks.flatten().filter(|m| m.state == State::Sent) {
            contacts.record(mark.date, self.is_email(mark));
        }
        contacts
    }

    /// The journal's messages to the customer of `invoice`, about any of its invoices.
    pub(super) fn customer_contacts(&self, invoice: InvoiceId, journal: &JournalView) -> Contacts {
        let customer = self.ledger.customer_index(invoice);
        let marks = (0..self.ledger.invoices.len())
            .map(InvoiceId::new)
            .filter(|&i| self.ledger.customer_index(i) == customer)
            .map(|i| journal.marks(&self.ledger.invoices[i].number));
        self.contacts(marks)
    }

    /// Whether a journaled message was an email: the channel the journal
    /// recorded, else its stage's under the current rules.
    fn is_email(&self, mark: &Mark) -> bool {
        if !mark.channel.is_empty() {
            return *mark.channel == *Channel::Email.as_str();
        }
        self.policies
            .iter()
            .find(|p| *p.name == *mark.policy)
            .and_then(|p| p.stages.iter().find(|s| *s.id == *mark.stage))
            .is_some_and(|s| s.channel == Channel::Email)
    }
}

/// Whether what a customer was sent changes a decision under `policies`:
/// one spaces emails out, or an expression reads `customer.last_contacted`.
/// If not, a customer's invoices are decided each on its own.
pub(super) fn weighs_contacts(policies: &[Policy]) -> bool {
    policies.iter().any(|p| {
        let whens = p.stages.iter().filter_map(|s| s.when.as_ref());
        p.contact.min_days_between > 0
            || p.applies_to
                .iter()
                .chain(whens)
                .any(|e| e.reads_last_contacted)
    })
}

/// `contact.min_days_between`: why an email reminder of `stage` waits on
/// `date`, if it does. An urgent stage never waits; reminders of the day of
/// the last email go out with it (the gap is between days).
pub(super) fn contact_wait(
    policy: &Policy,
    stage: &Stage,
    date: NaiveDate,
    last: LastContact,
) -> Option<String> {
    let gap = policy.contact.min_days_between;
    if gap == 0 || stage.urgent || stage.channel != Channel::Email {
        return None;
    }
    let last = last.email.filter(|l| *l < date)?;
    let until = add_days(last, i64::from(gap));
    (date < until).then(|| {
        format!(
            "waits until {until}: last message to this customer on {last} (min_days_between: {gap})"
        )
    })
}

/// Where an invoice's stage dates run from under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ladder {
    pub(super) anchor: NaiveDate,
    /// `first_contact: restart`: the first post-due stage and the day the
    /// ladder restarted at it.
    pub(super) restart: Option<(usize, NaiveDate)>,
}

impl Ladder {
    /// The dates of `policy` for `inv` decided on `date` against its journal
    /// `marks`. Under `first_contact: restart` an invoice relance never wrote
    /// about, whose policy's own dates have already reached a stage after
    /// its first post-due stage F, restarts: F is reached that day and every
    /// stage keeps its gap to F (anchor = that day − F's offset). The journal
    /// remembers it: the invoice's first journaled day R is a restart when
    /// the policy's own dates had reached a stage after F by R and nothing
    /// journaled on R is of a stage after F (or of another policy) — a
    /// first contact the policy's own dates made is never one.
    pub(super) fn of(policy: &Policy, inv: &Invoice, date: NaiveDate, marks: &[Mark]) -> Ladder {
        let anchor = policy.anchor_date(inv);
        let own = Ladder {
            anchor,
            restart: None,
        };
        if policy.first_contact != FirstContact::Restart {
            return own;
        }
        let Some(first) = first_post_due(policy, inv, anchor) else {
            return own;
        };
        let later = |s: usize| s > first && policy.stages[s].is_scheduled();
        let on = match marks.iter().map(|m| m.date).min() {
            None => date,
            Some(day) => {
                let restarted = marks.iter().filter(|m| m.date == day).all(|m| {
                    *m.policy == *policy.name
                        && policy
                            .stages
                            .iter()
                            .position(|s| *s.id == *m.stage)
                            .is_none_or(|s| !later(s))
                });
                if !restarted {
                    return own;
                }
                day
            }
        };
        let overdue = (0..policy.stages.len())
            .filter(|&s| later(s))
            .any(|s| policy.reach_date(anchor, StageId::new(s), 0) <= on);
        if !overdue {
            return own;
        }
        Ladder {
            anchor: add_days(on, policy.stages[first].offset.saturating_neg()),
            restart: Some((first, on)),
        }
    }
}

/// The first post-due stage: the first scheduled stage whose first date
/// falls after the invoice's due date (whatever the policy's anchor).
fn first_post_due(policy: &Policy, inv: &Invoice, anchor: NaiveDate) -> Option<usize> {
    (0..policy.stages.len()).find(|&s| {
        policy.stages[s].is_scheduled()
            && policy.scheduled_date(anchor, StageId::new(s), 0) > inv.due_date
    })
}

/// What `explain` says of a restarted ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// The first post-due stage, where the ladder restarted.
    pub restarted_at: String,
    /// The day it restarted (its first contact).
    pub on: NaiveDate,
    /// The later stages, each on its first day after the restart.
    pub later: Vec<LaterStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaterStage {
    pub stage: String,
    pub date: NaiveDate,
}

impl Restart {
    pub(super) fn of(policy: &Policy, ladder: &Ladder) -> Option<Restart> {
        let (first, on) = ladder.restart?;
        let later = (first.saturating_add(1)..policy.stages.len())
            .filter(|&s| policy.stages[s].is_scheduled())
            .map(|s| LaterStage {
                stage: policy.stages[s].id.clone(),
                date: policy.reach_date(ladder.anchor, StageId::new(s), 0),
            })
            .collect();
        Some(Restart {
            restarted_at: policy.stages[first].id.clone(),
            on,
            later,
        })
    }
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "first contact: restarted the ladder at {}",
            self.restarted_at
        )?;
        for (i, later) in self.later.iter().enumerate() {
            let lead = if i == 0 {
                "; the later stages follow at the policy's gaps: "
            } else {
                ", "
            };
            write!(f, "{lead}{} on {}", later.stage, later.date)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, SendWindow};
    use crate::config::Contact;
    use crate::engine::tests::{Fixture, fixture_with_defaults, row};
    use crate::engine::{Plan, Trace, Verdict};
    use crate::model::tests::{date, invoice};
    use crate::rules::PolicyDefaults;

    const LADDER: &str = "name: ladder
stages:
  - {id: courtesy, offset: -7, template: t}
  - {id: overdue_1, offset: 1, template: t}
  - {id: overdue_2, offset: 15, template: t}
  - {id: formal_notice, offset: 30, template: t, channel: letter}
";

    fn defaults(first_contact: FirstContact, min_days_between: u32) -> PolicyDefaults {
        PolicyDefaults {
            window: SendWindow {
                calendar: Calendar::every_day(),
                send_time: None,
            },
            contact: Contact {
                combine: false,
                min_days_between,
            },
            first_contact,
            reply_to: None,
        }
    }

    fn ladder(first_contact: FirstContact, invoices: Vec<Invoice>) -> Fixture {
        fixture_with_defaults(&defaults(first_contact, 0), None, &[LADDER], invoices)
    }

    /// The plan of `days` days from `from` decided one day at a time, each
    /// day's decisions journaled before the next, as the daemon runs.
    fn day_by_day(f: &Fixture, from: &str, days: i64) -> Vec<String> {
        let mut journal = JournalView::default();
        let mut fired = Vec::new();
        for d in 0..days {
            let day = add_days(date(from), d);
            let plan = f.ev().plan(day, 1, &journal, None);
            fired.extend(f.fired(&plan));
            journal_plan(f, &plan, &mut journal);
        }
        fired
    }

    fn journal_plan(f: &Fixture, plan: &Plan, journal: &mut JournalView) {
        let sent = plan.reminders.iter().map(|r| (r, State::Sent));
        for (r, state) in sent.chain(plan.skipped.iter().map(|r| (r, State::Skipped))) {
            let policy = &f.policies[r.policy];
            let stage = &policy.stages[r.stage];
            journal
                .by_invoice
                .entry(f.ledger.invoices[r.invoice].number.to_string())
                .or_default()
                .push(Mark {
                    policy: policy.name.as_str().into(),
                    stage: stage.id.as_str().into(),
                    occurrence: r.occurrence,
                    state,
                    date: r.date,
                    channel: stage.channel.as_str().into(),
                });
        }
    }

    #[test]
    fn a_first_contact_61_days_late_restarts_the_ladder_at_the_first_post_due_stage() {
        // Due 1 October: on 1 December the policy's own dates have reached the formal notice.
        let f = ladder(
            FirstContact::Restart,
            vec![invoice("F1", "C1", "2026-10-01", "100")],
        );
        let expected = vec![
            row("2026-12-01 overdue_1", 0),
            row("2026-12-15 overdue_2", 0),
            row("2026-12-30 formal_notice", 0),
        ];
        assert_eq!(f.plan("2026-12-01", 45, &JournalView::default()), expected);
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 45, &JournalView::default(), None);
        assert_eq!(
            f.fired(&Plan {
                reminders: plan.skipped.clone(),
                ..Plan::default()
            }),
            vec!["2026-12-01 F1 courtesy"]
        );
        assert_eq!(
            f.fired(&Plan {
                reminders: plan.restarts.clone(),
                ..Plan::default()
            }),
            vec!["2026-12-01 F1 overdue_1"]
        );
        // The daemon, one day at a time against its journal: the same days.
        assert_eq!(
            day_by_day(&f, "2026-12-01", 45),
            vec![
                "2026-12-01 F1 overdue_1",
                "2026-12-15 F1 overdue_2",
                "2026-12-30 F1 formal_notice"
            ]
        );
        // What explain says, the day after the restart.
        let mut journal = JournalView::default();
        let first = f.ev().plan(date("2026-12-01"), 1, &journal, None);
        journal_plan(&f, &first, &mut journal);
        let mut trace = Trace::default();
        let out = f.ev().evaluate_in(
            InvoiceId::new(0),
            date("2026-12-02"),
            &journal,
            Some(&mut trace),
        );
        assert_eq!(out.fire, None);
        assert!(!out.restarted, "the restart was yesterday's decision");
        assert_eq!(
            trace.restart.map(|r| r.to_string()).as_deref(),
            Some(
                "first contact: restarted the ladder at overdue_1; the later stages follow at \
                 the policy's gaps: overdue_2 on 2026-12-15, formal_notice on 2026-12-30"
            )
        );
        let formal = trace.stages.iter().find(|s| s.stage == "formal_notice");
        assert_eq!(
            formal.map(|s| (s.date, s.verdict)),
            Some((Some(date("2026-12-30")), Verdict::NotReached))
        );
    }

    #[test]
    fn latest_catches_up_with_the_latest_stage_as_the_contract_says() {
        let f = ladder(
            FirstContact::Latest,
            vec![invoice("F1", "C1", "2026-10-01", "100")],
        );
        assert_eq!(
            f.plan("2026-12-01", 45, &JournalView::default()),
            vec![row("2026-12-01 formal_notice", 0)]
        );
    }

    #[test]
    fn an_invoice_reminded_on_its_own_dates_keeps_them() {
        let f = ladder(
            FirstContact::Restart,
            vec![
                invoice("F1", "C1", "2026-10-01", "100"),
                invoice("F2", "C2", "2026-11-26", "100"),
            ],
        );
        // F1 had its statement on its day: the formal notice is overdue, it catches up.
        let mut journal = JournalView::default();
        journal.by_invoice.insert(
            "F1".into(),
            vec![Mark {
                policy: "ladder".into(),
                stage: "overdue_1".into(),
                occurrence: 0,
                state: State::Sent,
                date: date("2026-10-02"),
                channel: "email".into(),
            }],
        );
        // F2, 5 days late and never written to, has reached only its first
        // post-due stage: nothing to restart.
        let plan = f.ev().plan(date("2026-12-01"), 45, &journal, None);
        assert_eq!(
            f.fired(&plan),
            vec![
                "2026-12-01 F1 formal_notice",
                "2026-12-01 F2 overdue_1",
                "2026-12-11 F2 overdue_2",
                "2026-12-26 F2 formal_notice"
            ]
        );
        assert!(plan.restarts.is_empty());
    }

    const TWO_STAGES: &str = "name: p
stages:
  - {id: overdue_1, offset: 1, template: t}
  - {id: legal, offset: 2, template: t, urgent: true}
";

    fn capped(policy: &str, invoices: Vec<Invoice>) -> Fixture {
        fixture_with_defaults(
            &defaults(FirstContact::Latest, 3),
            None,
            &[policy],
            invoices,
        )
    }

    #[test]
    fn min_days_between_holds_an_email_back_until_the_gap_has_passed() {
        let f = capped(
            TWO_STAGES,
            vec![
                invoice("F1", "C1", "2026-11-30", "100"),
                invoice("F2", "C1", "2026-12-01", "100"),
                invoice("F3", "C1", "2026-11-30", "100"),
                invoice("F4", "C2", "2026-12-01", "100"),
            ],
        );
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 10, &JournalView::default(), None);
        // F1 and F3 share the 1st; F2's statement waits until the 4th; the
        // urgent stage never waits. C2 is another customer.
        assert_eq!(
            f.fired(&plan),
            vec![
                "2026-12-01 F1 overdue_1",
                "2026-12-01 F3 overdue_1",
                "2026-12-02 F1 legal",
                "2026-12-02 F3 legal",
                "2026-12-02 F4 overdue_1",
                "2026-12-03 F2 legal",
                "2026-12-03 F4 legal",
            ]
        );
        // overdue_1 of F2 was overtaken by its urgent stage before the gap passed.
        assert_eq!(
            f.fired(&Plan {
                reminders: plan.skipped.clone(),
                ..Plan::default()
            }),
            vec!["2026-12-03 F2 overdue_1"]
        );
        assert_eq!(day_by_day(&f, "2026-12-01", 10), f.fired(&plan));
    }

    #[test]
    fn a_reminder_that_waits_says_until_when_and_why() {
        let p = "name: p\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n";
        let f = capped(
            p,
            vec![
                invoice("F1", "C1", "2026-11-30", "100"),
                invoice("F2", "C1", "2026-12-01", "100"),
            ],
        );
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 10, &JournalView::default(), None);
        assert_eq!(
            f.fired(&plan),
            vec!["2026-12-01 F1 overdue_1", "2026-12-04 F2 overdue_1"]
        );
        assert_eq!(day_by_day(&f, "2026-12-01", 10), f.fired(&plan));
        let mut journal = JournalView::default();
        let first = f.ev().plan(date("2026-12-01"), 1, &journal, None);
        journal_plan(&f, &first, &mut journal);
        let mut trace = Trace::default();
        let out = f.ev().evaluate_in(
            InvoiceId::new(1),
            date("2026-12-02"),
            &journal,
            Some(&mut trace),
        );
        assert_eq!(out.fire, None);
        assert!(out.pending);
        assert_eq!(
            trace.blocked.as_deref(),
            Some(
                "waits until 2026-12-04: last message to this customer on 2026-12-01 (min_days_between: 3)"
            )
        );
        assert_eq!(trace.stages[0].verdict, Verdict::Held);
    }

    #[test]
    fn letters_do_not_hold_emails_back_but_count_as_a_contact() {
        let p = "name: p
stages:
  - {id: letter, offset: 1, template: t, channel: letter}
  - {id: email, offset: 2, template: t, when: 'customer.last_contacted == () || days_between(customer.last_contacted, today) >= 7'}
";
        let invoices = || {
            vec![
                invoice("F1", "C1", "2026-11-30", "100"),
                invoice("F2", "C1", "2026-12-05", "100"),
            ]
        };
        let f = capped(p, invoices());
        // F1's letter on the 1st does not hold its email of the 2nd back,
        // but the `when` waits 7 days after the last contact: F2's letter on
        // the 6th is one, so both emails go on the 13th.
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 20, &JournalView::default(), None);
        assert_eq!(
            f.fired(&plan),
            vec![
                "2026-12-01 F1 letter",
                "2026-12-06 F2 letter",
                "2026-12-13 F1 email",
                "2026-12-13 F2 email",
            ]
        );
        // Without the `when`, the letters hold no email back.
        let f = capped(
            &p.replace(", when: 'customer.last_contacted == () || days_between(customer.last_contacted, today) >= 7'", ""),
            invoices(),
        );
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 20, &JournalView::default(), None);
        assert_eq!(
            f.fired(&plan),
            vec![
                "2026-12-01 F1 letter",
                "2026-12-02 F1 email",
                "2026-12-06 F2 letter",
                "2026-12-07 F2 email",
            ]
        );
        assert_eq!(day_by_day(&f, "2026-12-01", 20), f.fired(&plan));
    }
}
