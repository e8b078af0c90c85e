//! The firing rules for one invoice and one date (docs/contract.md §4), as steps whose
//! findings make both the decision and its trace.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::borrow::Cow;

use chrono::NaiveDate;
use rhai::{Dynamic, ImmutableString, Scope};
use smallvec::SmallVec;

use super::contact::{Ladder, LastContact, contact_wait};
use super::{Evaluator, Occurrence, Outcome, PolicyChoice, Trace};
use crate::calendar::add_days;
use crate::journal::{Mark, State};
use crate::model::{Invoice, InvoiceId};
use crate::rules::native::Native;
use crate::rules::{CustomerView, InvoiceView, ScriptError, Variables};
use crate::rules::{ON_PAID, Policy, PolicyId, StageId};
use crate::text::weekday;

/// How many of the latest occurrences of a stage that repeats without `max`
/// a catch-up journals (the one that fires and those it overtakes just
/// before it); earlier overtaken ones are not journaled (see `Findings::pick`).
const RECORDED_REPEATS: usize = 30;

/// What the steps of docs/contract.md §4 found for one open invoice on one date. The
/// outcome is made of it, and so is the trace: `explain` cannot say other
/// than what was decided.
pub(super) struct Findings<'c> {
    /// Borrowed when it was made once for the invoice's customer.
    pub(super) choice: Cow<'c, PolicyChoice>,
    /// Every occurrence met, in order; kept only for a trace.
    pub(super) visits: Vec<Visit>,
    /// The reached occurrences not journaled yet, in order, the broken promise last.
    pub(super) candidates: SmallVec<[Candidate; 8]>,
    /// What the candidates' `when`s threw, in the order they ran: latest
    /// candidate first.
    pub(super) failures: Vec<ScriptError>,
    /// Looked for when there are candidates, or for a trace.
    pub(super) wait: Option<Wait>,
    /// The candidate that fires.
    pub(super) fire: Option<usize>,
    /// How many candidates, from the first, the one that fires overtakes.
    pub(super) overtaken: usize,
    /// Overtaken candidates not journaled as skipped (see `pick`), in order.
    pub(super) unrecorded: Vec<usize>,
    /// Where the chosen policy's dates run from (`first_contact: restart`).
    pub(super) ladder: Option<Ladder>,
    /// Nothing is journaled for the invoice yet: what fires is its first contact.
    pub(super) untouched: bool,
}

/// One occurrence met on the way through a policy's stages: each reached
/// one and the first one not reached of each stage, then the broken promise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Visit {
    pub(super) stage: usize,
    pub(super) occurrence: u32,
    /// The day the offsets give and the day it is reached on the calendar;
    /// `None` for a broken-promise stage of an invoice without a promise.
    pub(super) dates: Option<(NaiveDate, NaiveDate)>,
    pub(super) reached: bool,
    /// Looked up for a trace, and otherwise only for an occurrence that may
    /// be a candidate: reached and not passed.
    pub(super) journal: Option<State>,
    /// At or before the last stage the journal holds for this policy.
    pub(super) passed: bool,
    /// Stands for this occurrence and every earlier one of its stage, which
    /// a trace does not list (see [`first_visited`]).
    pub(super) elided: bool,
}

/// What a decision knows of the invoice's customer besides the ledger.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Known<'c> {
    /// The policy choice, when it was made once for the customer.
    pub(super) chosen: Option<&'c PolicyChoice>,
    /// What the customer was sent before the day decided.
    pub(super) last: LastContact,
    /// No hold names the invoice or its customer ([`crate::rules::Held`]):
    /// the holds need not be asked.
    pub(super) unheld: bool,
}

/// A reached occurrence the journal does not hold, after the last one it does.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub(super) occurrence: Occurrence,
    /// What its stage's `when` says, `Ok(true)` without one; `None` while
    /// not evaluated; `Err(i)`: it threw `Findings::failures[i]`.
    pub(super) when: Option<Result<bool, usize>>,
}

/// Why nothing goes out on a date although occurrences are reached.
#[derive(Debug)]
pub(super) enum Wait {
    /// A hold, a promise to pay not yet due, a day off: the reason.
    Blocked(String),
    /// The invoice already had a reminder on this date (docs/contract.md §4.5).
    OnePerDay,
}

impl Visit {
    fn candidate(&self) -> Option<Candidate> {
        let (_, reached_on) = self.dates?;
        let candidate = self.reached && self.journal.is_none() && !self.passed && !self.elided;
        candidate.then_some(Candidate {
            occurrence: Occurrence {
                stage: StageId::new(self.stage),
                occurrence: self.occurrence,
                reached_on,
            },
            when: None,
        })
    }
}

impl Candidate {
    fn holds(&self) -> bool {
        matches!(self.when, Some(Ok(true)))
    }
}

impl<'c> Findings<'c> {
    fn new(choice: Cow<'c, PolicyChoice>) -> Self {
        Findings {
            choice,
            visits: Vec::new(),
            candidates: SmallVec::new(),
            failures: Vec::new(),
            wait: None,
            fire: None,
            overtaken: 0,
            unrecorded: Vec::new(),
            ladder: None,
            untouched: false,
        }
    }

    /// Step 4's choice: the latest candidate whose `when` holds fires and
    /// overtakes the earlier ones. A broken promise overtakes nothing: it is
    /// last, so looked at first, and the scheduled candidates wait for the
    /// next day (a formal notice reached during the pause must still go out).
    fn pick(&mut self, policy: &Policy) {
        self.fire = self.candidates.iter().rposition(Candidate::holds);
        self.overtaken = self
            .fire
            .filter(|&i| policy.stages[self.candidates[i].occurrence.stage].is_scheduled())
            .unwrap_or(0);
        // Of the overtaken repeats of a stage without `max`, only those
        // within RECORDED_REPEATS of the stage's latest are journaled:
        // what fires passes them all (a policy never steps back), and a
        // catch-up over years of such a repeat would otherwise journal one
        // row per occurrence.
        let candidates = &self.candidates;
        self.unrecorded = (0..self.overtaken)
            .filter(|&i| {
                let stage = candidates[i].occurrence.stage;
                policy.stages[stage].max_occurrence().is_none()
                    && candidates
                        .get(i.saturating_add(RECORDED_REPEATS))
                        .is_some_and(|later| later.occurrence.stage == stage)
            })
            .collect();
    }

    /// Whether overtaken candidate `i` is journaled as skipped.
    pub(super) fn records_skip(&self, i: usize) -> bool {
        !self.unrecorded.contains(&i)
    }

    fn outcome(&self) -> Outcome {
        let candidates = &self.candidates;
        let fire = self.fire.map(|i| candidates[i].occurrence);
        let skipped = (0..self.overtaken)
            .filter(|&i| self.records_skip(i))
            .map(|i| candidates[i].occurrence)
            .collect();
        // Left waiting: whatever neither fired nor was overtaken.
        let pending = candidates.len() > self.overtaken.saturating_add(usize::from(fire.is_some()));
        // The choice's failures, then the `when`s' in the order they ran.
        let errors = match (&self.choice.errors[..], &self.failures[..]) {
            ([], []) => Vec::new(),
            (choice, whens) => [choice, whens].concat(),
        };
        let restarts = self.ladder.is_some_and(|l| l.restart.is_some());
        Outcome {
            policy: self.choice.policy.map(PolicyId::new),
            fire,
            skipped,
            pending,
            errors,
            restarted: fire.is_some() && restarts && self.untouched,
        }
    }
}

/// Step 3 of docs/contract.md §4: what the journal holds under a policy.
struct Journaled<'a> {
    policy: &'a Policy,
    marks: &'a [Mark],
    /// The last scheduled occurrence it holds: a policy never steps back.
    last: Option<(usize, u32)>,
}

impl<'a> Journaled<'a> {
    fn new(policy: &'a Policy, marks: &'a [Mark]) -> Self {
        // Event stages (a broken promise, a thank-you) stand outside the
        // sequence: journaling one does not pass the stages before it.
        let last = marks
            .iter()
            .filter(|m| *m.policy == *policy.name)
            .filter_map(|m| {
                policy
                    .stages
                    .iter()
                    .position(|s| s.is_scheduled() && *s.id == *m.stage)
                    .map(|s| (s, m.occurrence))
            })
            .max();
        Journaled {
            policy,
            marks,
            last,
        }
    }

    fn state(&self, s: usize, k: u32) -> Option<State> {
        let stage = &*self.policy.stages[s].id;
        // The cheap comparisons first: most marks are of another occurrence
        // or stage, few of another policy.
        self.marks
            .iter()
            .find(|m| m.occurrence == k && *m.stage == *stage && *m.policy == *self.policy.name)
            .map(|m| m.state)
    }

    fn passed(&self, s: usize, k: u32) -> bool {
        self.last.is_some_and(|l| (s, k) <= l)
    }
}

/// Step 2 of docs/contract.md §4: the occurrences of `policy`'s stages on
/// `date` (counted from `anchor`), each stage's up to its first not reached,
/// then the broken promise: the first day after the promised date (plus
/// grace), once. A stage is reached on its date moved to a sending day.
/// Each is handed to `visit`, in order. `tracing`: each on its calendar day
/// even far from `date`, and what the journal holds of each, for a trace to show.
fn visits(
    policy: &Policy,
    inv: &Invoice,
    (date, anchor): (NaiveDate, NaiveDate),
    journal: &Journaled,
    tracing: bool,
    mut visit: impl FnMut(Visit),
) {
    let calendar = policy.calendar();
    // Far from the evaluation date, whether an occurrence is reached does
    // not depend on the calendar, which moves a date by its longest closure
    // at most: the exact day is needed only near it, or to explain.
    let margin = calendar.longest_closure();
    let near = add_days(date, margin.saturating_neg())..=add_days(date, margin);
    // Moved once for all the stages: date arithmetic was a sixth of planning.
    let surely = *near.start();
    // Whether the journal holds an occurrence matters only to a trace and
    // to a candidate.
    let state = |s, k, reached: bool, passed: bool| {
        if tracing || (reached && !passed) {
            journal.state(s, k)
        } else {
            None
        }
    };
    for (s, stage) in policy.stages.iter().enumerate() {
        if !stage.is_scheduled() {
            continue;
        }
        let last = stage.max_occurrence().unwrap_or(u32::MAX);
        let first = first_visited(policy, s, anchor, surely);
        if tracing && let Some(k) = first.checked_sub(1) {
            let scheduled = policy.scheduled_date(anchor, StageId::new(s), k);
            visit(Visit {
                stage: s,
                occurrence: k,
                dates: Some((scheduled, calendar.shift(scheduled, stage.shift))),
                reached: true,
                journal: None,
                passed: journal.passed(s, k),
                elided: true,
            });
        }
        for k in first..=last {
            let scheduled = policy.scheduled_date(anchor, StageId::new(s), k);
            let on = if tracing || near.contains(&scheduled) {
                calendar.shift(scheduled, stage.shift)
            } else {
                scheduled
            };
            let reached = on <= date;
            let passed = journal.passed(s, k);
            visit(Visit {
                stage: s,
                occurrence: k,
                dates: Some((scheduled, on)),
                reached,
                journal: state(s, k, reached, passed),
                passed,
                elided: false,
            });
            if !reached {
                break;
            }
        }
    }
    if let Some(s) = policy.promise_broken() {
        let dates = policy.promise_broken_on(inv);
        let reached = dates.is_some_and(|(_, on)| on <= date);
        visit(Visit {
            stage: s,
            occurrence: 0,
            dates,
            reached,
            journal: state(s, 0, reached, false),
            passed: false,
            elided: false,
        });
    }
}

/// The first occurrence of stage `s` worth visiting when every occurrence
/// scheduled on or before `surely` is reached whatever the calendar: 0,
/// except for a stage that repeats without `max`, whose occurrences are
/// found by arithmetic rather than by walking them all since the anchor
/// (an invoice due in 1900 under a daily repeat has 46,000). Of those
/// surely reached, the latest `RECORDED_REPEATS` + 1 are visited: any
/// earlier one, were it a candidate, would be overtaken by at least
/// `RECORDED_REPEATS` later candidates of its stage and journaled by
/// nobody (`Findings::pick`), so leaving it out changes no decision in
/// which one of these fires.
fn first_visited(policy: &Policy, s: usize, anchor: NaiveDate, surely: NaiveDate) -> u32 {
    let stage = &policy.stages[s];
    let Some(every) = stage.repeat.map(|r| i64::from(r.every)).filter(|e| *e > 0) else {
        return 0;
    };
    if stage.max_occurrence().is_some() {
        return 0;
    }
    let since = surely
        .signed_duration_since(policy.scheduled_date(anchor, StageId::new(s), 0))
        .num_days();
    let surely_reached = since.checked_div(every).unwrap_or(0);
    let keep = i64::try_from(RECORDED_REPEATS).unwrap_or(i64::MAX);
    u32::try_from(surely_reached.saturating_sub(keep).max(0)).unwrap_or(u32::MAX)
}

/// The latest reminder sent for an invoice, a thank-you aside: the one a
/// thank-you follows, under its policy.
fn last_reminder(marks: &[Mark]) -> Option<&Mark> {
    marks
        .iter()
        .filter(|m| m.state == State::Sent && *m.stage != *ON_PAID)
        .max_by_key(|m| m.date)
}

/// Whether the journal holds a reminder (not a skip) of this invoice for `date`.
fn sent_on(marks: &[Mark], date: NaiveDate) -> bool {
    let mut reminders = marks.iter().filter(|m| m.state != State::Skipped);
    reminders.any(|m| m.date == date)
}

/// The scope of one decision's expressions. The script variables are set
/// only when an expression is about to run: most decisions (a stage without
/// `when`, a policy chosen once for the customer) need none, and setting
/// them is most of their cost.
struct Script<'a, 'e> {
    evaluator: &'a Evaluator<'e>,
    invoice: usize,
    date: NaiveDate,
    marks: &'a [Mark],
    last: LastContact,
    unheld: bool,
    scope: &'a mut Scope<'static>,
    ready: bool,
}

impl Script<'_, '_> {
    fn scope(&mut self) -> &mut Scope<'static> {
        if !self.ready {
            let variables =
                self.evaluator
                    .variables(self.invoice, self.date, self.marks, self.last);
            variables.apply(self.scope);
            self.ready = true;
        }
        self.scope
    }
}

impl Evaluator<'_> {
    pub(super) fn variables(
        &self,
        invoice: usize,
        date: NaiveDate,
        marks: &[Mark],
        last: LastContact,
    ) -> Variables {
        let invoice = InvoiceId::new(invoice);
        let sent = marks
            .iter()
            .filter(|m| m.state == State::Sent)
            .map(|m| Dynamic::from(ImmutableString::from(&*m.stage)))
            .collect();
        Variables {
            invoice: InvoiceView {
                ledger: self.ledger.clone(),
                index: invoice,
                today: date,
            },
            customer: CustomerView {
                ledger: self.ledger.clone(),
                index: self.ledger.customer_index(invoice),
                today: date,
                last_contacted: last.any,
            },
            today: date,
            sent,
        }
    }

    /// docs/contract.md §4 for one invoice and date; `scope` is reused.
    pub(super) fn decide(
        &self,
        invoice: usize,
        date: NaiveDate,
        marks: &[Mark],
        trace: Option<&mut Trace>,
        customer: Known,
        scope: &mut Scope<'static>,
    ) -> Outcome {
        let Known {
            chosen,
            last,
            unheld,
        } = customer;
        if !self.ledger.invoices[invoice].is_open() {
            return self.thank(invoice, date, marks, trace);
        }
        let mut script = Script {
            evaluator: self,
            invoice,
            date,
            marks,
            last,
            unheld,
            scope,
            ready: false,
        };
        let choice = match chosen {
            Some(c) => Cow::Borrowed(c),
            None => Cow::Owned(self.choose(script.scope())),
        };
        let mut found = Findings::new(choice);
        if let Some(p) = found.choice.policy {
            self.find(&self.policies[p], &mut found, &mut script, trace.is_some());
        }
        if let Some(t) = trace {
            *t = Trace::of(self.policies, &found);
        }
        found.outcome()
    }

    /// The steps of docs/contract.md §4 after the choice of `policy`, for an open
    /// invoice. `tracing`: find what a trace shows too, every occurrence met
    /// on its calendar day and every candidate's `when`.
    fn find(&self, policy: &Policy, found: &mut Findings, script: &mut Script, tracing: bool) {
        let inv = &self.ledger.invoices[script.invoice];
        let (date, marks) = (script.date, script.marks);
        let journal = Journaled::new(policy, marks);
        let ladder = Ladder::of(policy, inv, date, marks);
        found.ladder = Some(ladder);
        found.untouched = marks.is_empty();
        visits(
            policy,
            inv,
            (date, ladder.anchor),
            &journal,
            tracing,
            |visit| {
                if let Some(c) = visit.candidate() {
                    found.candidates.push(c);
                }
                if tracing {
                    found.visits.push(visit);
                }
            },
        );
        // Without a candidate nothing waits, but a trace tells why it would.
        if tracing || !found.candidates.is_empty() {
            found.wait = self.wait(policy, inv, date, marks, script.unheld);
        }
        if found.wait.is_none() {
            let (candidates, failures) = (&mut found.candidates, &mut found.failures);
            self.judge(policy, inv, candidates, failures, script, tracing);
            found.pick(policy);
            // What fires may wait for the customer's last email to be far enough.
            let stage = found
                .fire
                .map(|i| &policy.stages[found.candidates[i].occurrence.stage]);
            if let Some(why) = stage.and_then(|s| contact_wait(policy, s, date, script.last)) {
                found.wait = Some(Wait::Blocked(why));
                found.fire = None;
                found.overtaken = 0;
                found.unrecorded.clear();
            }
        }
    }

    /// Step 1 of docs/contract.md §4: the highest-priority policy whose applies_to holds.
    pub(super) fn choose(&self, scope: &mut Scope<'static>) -> PolicyChoice {
        self.choose_by(|_, policy| match &policy.applies_to {
            None => Ok(true),
            Some(expr) => self.scripts.eval_bool(expr, scope),
        })
    }

    /// Each policy's condition decided without the interpreter, when every
    /// `applies_to` is ([`Native`]): `None` in place of a policy without one.
    pub(super) fn native_conditions(&self) -> Option<Vec<Option<&Native>>> {
        self.policies
            .iter()
            .map(|p| match &p.applies_to {
                None => Some(None),
                Some(expr) => expr.native.as_ref().map(Some),
            })
            .collect()
    }

    /// [`Evaluator::choose`] for a customer, by its policies'
    /// [`Evaluator::native_conditions`]: the same choice, without a scope.
    pub(super) fn choose_natively(
        &self,
        conditions: &[Option<&Native>],
        customer: usize,
    ) -> PolicyChoice {
        let customer = &self.ledger.customers[customer];
        self.choose_by(|i, _| Ok(conditions[i].is_none_or(|n| n.holds(customer))))
    }

    /// The highest policy that applies, as `applies` says of each (by its
    /// place and itself).
    fn choose_by(
        &self,
        mut applies: impl FnMut(usize, &Policy) -> Result<bool, ScriptError>,
    ) -> PolicyChoice {
        let mut choice = PolicyChoice::default();
        for (i, policy) in self.policies.iter().enumerate() {
            choice.asked = i.saturating_add(1);
            match applies(i, policy) {
                Ok(true) => {
                    choice.policy = Some(i);
                    break;
                }
                Ok(false) => {}
                // Whether this policy applies is unknown, so which policy is the
                // highest matching one is unknown too: falling through to a lower
                // one would send a reminder the rules never chose (the standard
                // cadence to a key account whose rule threw). The invoice gets
                // nothing until the script is fixed, and the error is reported.
                Err(e) => {
                    choice.errors.push(e);
                    break;
                }
            }
        }
        choice
    }

    /// Why the candidates wait for another day, if they do: a hold, a
    /// promise not yet due, a day off; or step 5, at most one reminder per
    /// invoice per date — also across evaluations: the daemon evaluates the
    /// same date again (hourly by default), and a policy edited or a feed
    /// refreshed in between must not send a second reminder that day.
    fn wait(
        &self,
        policy: &Policy,
        inv: &Invoice,
        date: NaiveDate,
        marks: &[Mark],
        unheld: bool,
    ) -> Option<Wait> {
        if let Some(reason) = self.blocked_unless_unheld(policy, inv, date, true, unheld) {
            return Some(Wait::Blocked(reason));
        }
        sent_on(marks, date).then_some(Wait::OnePerDay)
    }

    /// Step 4's `when`s, latest candidate first, up to the first that holds;
    /// every one for a trace to show (`all`).
    fn judge(
        &self,
        policy: &Policy,
        inv: &Invoice,
        candidates: &mut [Candidate],
        failures: &mut Vec<ScriptError>,
        script: &mut Script,
        all: bool,
    ) {
        // The policy's discount is the same for every stage: worked out
        // once, for the first expression that names it. One that does not
        // cannot read it: scripts have no `eval`, and their functions do not
        // see the scope.
        let mut discount_set = false;
        for c in candidates.iter_mut().rev() {
            let stage = &policy.stages[c.occurrence.stage];
            let holds = match &stage.when {
                None => Ok(true),
                Some(expr) => {
                    let date = script.date;
                    let scope = script.scope();
                    if !discount_set && expr.reads_discount {
                        scope.set_value("discount", policy.discount_variable(inv, date));
                        discount_set = true;
                    }
                    scope.set_value("stage", stage.view(c.occurrence.occurrence));
                    self.scripts.eval_bool(expr, scope)
                }
            };
            c.when = Some(holds.map_err(|e| {
                failures.push(e);
                failures.len().saturating_sub(1)
            }));
            if c.holds() && !all {
                break;
            }
        }
    }

    /// Why nothing of `policy` can go out to `inv` on `date`, if so: a hold,
    /// a promise to pay not yet due (`promise`: for an open invoice), or a
    /// day that is not a sending day.
    pub(super) fn blocked(
        &self,
        policy: &Policy,
        inv: &Invoice,
        date: NaiveDate,
        promise: bool,
    ) -> Option<String> {
        self.blocked_unless_unheld(policy, inv, date, promise, false)
    }

    /// [`Evaluator::blocked`], the holds not asked when `unheld`: none names the invoice.
    fn blocked_unless_unheld(
        &self,
        policy: &Policy,
        inv: &Invoice,
        date: NaiveDate,
        promise: bool,
        unheld: bool,
    ) -> Option<String> {
        if !unheld && let Some(hold) = self.holds.active(inv, date) {
            return Some(hold.describe());
        }
        if promise
            && let (Some(promised), Some(end)) = (inv.promise_date, policy.promise_end(inv))
            && date <= end
        {
            let grace = match policy.promise_grace {
                0 => String::new(),
                1 => " + 1 day of grace".to_string(),
                n => format!(" + {n} days of grace"),
            };
            return Some(format!(
                "promised to pay by {promised}{grace}: reminders paused until {end}"
            ));
        }
        // The fast bit test first: the reason is worked out only for a day off.
        let calendar = policy.calendar();
        if calendar.is_sending_day(date) {
            return None;
        }
        calendar
            .closed(date)
            .map(|why| format!("{} {date} is {why}", weekday(date)))
    }

    /// Whether a settled invoice may still be thanked ([`Evaluator::thank`]):
    /// it had a reminder, under a policy that thanks (`on_paid`), and that
    /// policy's thank-you is not in the journal yet.
    pub fn may_thank(&self, marks: &[Mark]) -> bool {
        let Some(last) = last_reminder(marks) else {
            return false;
        };
        self.policies
            .iter()
            .find(|p| *p.name == *last.policy)
            .is_some_and(|policy| {
                policy.on_paid().is_some()
                    && !marks
                        .iter()
                        .any(|m| *m.policy == *policy.name && *m.stage == *ON_PAID)
            })
    }

    /// The policy's `on_paid` thank-you for a settled invoice that had a
    /// reminder sent before `date`: under the policy of the latest such
    /// reminder, once, on a sending day.
    fn thank(
        &self,
        invoice: usize,
        date: NaiveDate,
        marks: &[Mark],
        trace: Option<&mut Trace>,
    ) -> Outcome {
        let mut out = Outcome::default();
        let inv = &self.ledger.invoices[invoice];
        if !inv.is_settled() {
            return out;
        }
        let Some(last) = last_reminder(marks) else {
            return out;
        };
        // Paid the day of its reminder: thanked the next day, not in the
        // same breath as the reminder.
        if last.date >= date {
            out.pending = true;
            return out;
        }
        let Some(p) = self.policies.iter().position(|p| *p.name == *last.policy) else {
            return out;
        };
        out.policy = Some(PolicyId::new(p));
        let policy = &self.policies[p];
        let Some(s) = policy.on_paid() else {
            return out;
        };
        let state = marks
            .iter()
            .find(|m| *m.policy == *policy.name && *m.stage == *ON_PAID)
            .map(|m| m.state);
        let blocked = state
            .is_none()
            .then(|| self.blocked(policy, inv, date, false))
            .flatten();
        let fires = state.is_none() && blocked.is_none() && !sent_on(marks, date);
        if let Some(t) = trace {
            *t = Trace::thank(date, state, fires, blocked);
        }
        if fires {
            out.fire = Some(Occurrence {
                stage: StageId::new(s),
                occurrence: 0,
                reached_on: date,
            });
        } else {
            out.pending = state.is_none();
        }
        out
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::calendar::{Calendar, HolidaySettings, Holidays, SendWindow, WEEKDAYS};
    use crate::engine::Verdict;
    use crate::engine::tests::{STANDARD, fixture, fixture_with, row};
    use crate::journal::JournalView;
    use crate::model::Status;
    use crate::model::tests::{date, invoice};

    /// Monday to Friday with the French bank holidays and Christmas Eve.
    fn french_weekdays() -> SendWindow {
        SendWindow {
            calendar: Calendar::new(
                &WEEKDAYS,
                &HolidaySettings {
                    calendars: vec![Holidays::FR],
                    dates: vec![date("2026-12-24")],
                },
            ),
            send_time: None,
        }
    }

    const HOLDS: &str = "holds:\n  - invoice: F1\n    until: 2026-12-15\n    reason: contested delivery\n  - customer: C9\n    reason: in talks\n";

    #[test]
    fn a_stage_fires_on_the_day_it_is_reached() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-02"), &[], None);
        assert_eq!(out.fire, None);
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-03"), &[], None);
        assert_eq!(out.fire.map(|o| o.stage.index()), Some(0));
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn the_latest_candidate_fires_and_earlier_ones_are_skipped() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        // A daemon down for a fortnight: one reminder, the right one.
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-12"), &[], None);
        assert_eq!(out.fire.map(|o| o.stage.index()), Some(2));
        assert_eq!(
            out.skipped
                .iter()
                .map(|o| o.stage.index())
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn when_false_falls_back_to_an_earlier_candidate_and_waits() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "20")]);
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-26"), &[], None);
        assert_eq!(
            out.fire.map(|o| o.stage.index()),
            Some(2),
            "overdue_2 needs >= 50 due"
        );
        assert!(out.pending);
    }

    #[test]
    fn a_policy_never_steps_back() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let marks = vec![Mark {
            policy: "standard".into(),
            stage: "overdue_1".into(),
            occurrence: 0,
            state: State::Sent,
            date: date("2026-12-11"),
            channel: "email".into(),
        }];
        // courtesy and due_soon are reached and not journaled, but come before overdue_1.
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-12"), &marks, None);
        assert_eq!(out.fire, None);
        assert!(!out.pending);
        let mut trace = Trace::default();
        f.ev().evaluate(
            InvoiceId::new(0),
            date("2026-12-12"),
            &marks,
            Some(&mut trace),
        );
        assert_eq!(trace.stages[0].verdict, Verdict::Passed);
        assert_eq!(trace.stages[2].verdict, Verdict::InJournal);
        assert_eq!(trace.stages[3].verdict, Verdict::NotReached);
    }

    #[test]
    fn highest_priority_matching_policy_wins_ties_by_name() {
        let vip = "name: vip\npriority: 20\napplies_to: 'customer.tags.contains(\"vip\")'\nstages: [{id: v, offset: 1, template: t}]\n";
        let b = "name: b\npriority: 10\nstages: [{id: b, offset: 1, template: t}]\n";
        let a = "name: a\npriority: 10\nstages: [{id: a, offset: 1, template: t}]\n";
        let mut tagged = invoice("F2", "C2", "2026-12-10", "100");
        tagged.tags = crate::model::ThinSlice::from(["vip".into()]);
        let f = fixture(
            &[vip, b, a],
            vec![invoice("F1", "C1", "2026-12-10", "100"), tagged],
        );
        let name = |i| {
            f.policies[f
                .ev()
                .evaluate(InvoiceId::new(i), date("2026-12-11"), &[], None)
                .policy
                .unwrap()]
            .name
            .clone()
        };
        assert_eq!(name(0), "a");
        assert_eq!(name(1), "vip");
    }

    #[test]
    fn a_failing_applies_to_does_not_fall_through_to_a_lower_policy() {
        let vip = "name: vip\npriority: 20\napplies_to: 'invoice.number == \"BAD\" && days_between(\"x\", today) > 0 || invoice.number == \"VIP\"'\nstages: [{id: v, offset: 1, template: t}]\n";
        let standard = "name: standard\nstages: [{id: s, offset: 1, template: t}]\n";
        let f = fixture(
            &[vip, standard],
            vec![
                invoice("BAD", "C1", "2026-12-10", "100"),
                invoice("OK", "C2", "2026-12-10", "100"),
                invoice("VIP", "C3", "2026-12-10", "100"),
            ],
        );
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-11"), &[], None);
        assert_eq!(out.policy, None, "the standard policy must not take over");
        assert_eq!(out.errors.len(), 1);
        let plan = f
            .ev()
            .plan(date("2026-12-11"), 1, &JournalView::default(), None);
        let fired: Vec<(&str, &str)> = plan
            .reminders
            .iter()
            .map(|r| {
                (
                    &*f.ledger.invoices[r.invoice].number,
                    f.policies[r.policy].name.as_str(),
                )
            })
            .collect();
        assert_eq!(fired, vec![("OK", "standard"), ("VIP", "vip")]);
        assert!(plan.unmatched.is_empty(), "a failure is not 'unmatched'");
        assert_eq!(plan.errors.len(), 1);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(InvoiceId::new(0), date("2026-12-11"), &[], Some(&mut trace));
        assert!(matches!(trace.policies[0].applies, Some(Err(_))));
        assert!(trace.policies[1].applies.is_none(), "not evaluated");
    }

    #[test]
    fn one_reminder_per_invoice_per_day() {
        let p = "name: p\nstages:\n  - {id: a, offset: 0, template: t}\n  - {id: b, offset: 0, template: t}\n";
        let f = fixture(&[p], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        assert_eq!(
            f.plan("2026-12-01", 20, &JournalView::default()),
            vec![row("2026-12-10 b", 0)]
        );
    }

    #[test]
    fn one_reminder_per_invoice_per_day_across_evaluations() {
        // Evaluated this morning: `a` was sent. The policy then gained `b`,
        // reached the same day: it waits for tomorrow.
        let p = "name: p\nstages:\n  - {id: a, offset: 0, template: t}\n  - {id: b, offset: 0, template: t}\n";
        let f = fixture(&[p], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let sent_a = |state| Mark {
            policy: "p".into(),
            stage: "a".into(),
            occurrence: 0,
            state,
            date: date("2026-12-10"),
            channel: "email".into(),
        };
        let out = f.ev().evaluate(
            InvoiceId::new(0),
            date("2026-12-10"),
            &[sent_a(State::Sent)],
            None,
        );
        assert_eq!(out.fire, None);
        assert!(out.pending);
        let out = f.ev().evaluate(
            InvoiceId::new(0),
            date("2026-12-11"),
            &[sent_a(State::Sent)],
            None,
        );
        assert_eq!(out.fire.map(|o| o.stage.index()), Some(1));
        // A skip is not a reminder: it does not use up the day.
        let out = f.ev().evaluate(
            InvoiceId::new(0),
            date("2026-12-10"),
            &[sent_a(State::Skipped)],
            None,
        );
        assert_eq!(out.fire.map(|o| o.stage.index()), Some(1));
        let mut journal = JournalView::default();
        journal
            .by_invoice
            .insert("F1".into(), vec![sent_a(State::Sent)]);
        assert_eq!(
            f.plan("2026-12-10", 3, &journal),
            vec![row("2026-12-11 b", 0)]
        );
    }

    #[test]
    fn closed_invoices_get_nothing() {
        let mut paid = invoice("F1", "C1", "2026-12-10", "100");
        paid.status = Status::Paid;
        let mut credit = invoice("F2", "C1", "2026-12-10", "-100");
        credit.status = Status::Open;
        let f = fixture(&[STANDARD], vec![paid, credit]);
        assert!(f.plan("2026-12-01", 60, &JournalView::default()).is_empty());
    }

    #[test]
    fn a_stage_on_a_day_off_moves_to_the_next_sending_day_or_the_previous_one() {
        // Due Monday 7 December 2026: -2 is Saturday 5, +1 is Tuesday 8.
        let p = "name: p\nstages:\n  - {id: due_soon, offset: -2, template: t, shift: earlier}\n  - {id: late, offset: -2, template: t}\n";
        let f = fixture_with(
            &french_weekdays(),
            None,
            &[p],
            vec![invoice("F1", "C1", "2026-12-07", "100")],
        );
        assert_eq!(
            f.plan("2026-12-01", 10, &JournalView::default()),
            vec![row("2026-12-04 due_soon", 0), row("2026-12-07 late", 0)]
        );
        // Nothing at all goes out on the weekend, not even a catch-up.
        let out = f
            .ev()
            .evaluate(InvoiceId::new(0), date("2026-12-05"), &[], None);
        assert_eq!(out.fire, None);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(InvoiceId::new(0), date("2026-12-07"), &[], Some(&mut trace));
        assert_eq!(trace.stages[0].moved_from, Some(date("2026-12-05")));
        assert_eq!(trace.stages[0].date, Some(date("2026-12-04")));
        assert_eq!(
            trace.stages[0].moved_because.as_deref(),
            Some("not a sending day")
        );
        assert_eq!(trace.stages[1].date, Some(date("2026-12-07")));
    }

    #[test]
    fn holidays_move_stages_past_christmas() {
        // Due Wednesday 23 December: +1 is the config's Christmas Eve, then
        // Christmas (FR), then the weekend: Monday 28.
        let p = "name: p\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n";
        let f = fixture_with(
            &french_weekdays(),
            None,
            &[p],
            vec![invoice("F1", "C1", "2026-12-23", "100")],
        );
        assert_eq!(
            f.plan("2026-12-20", 14, &JournalView::default()),
            vec![row("2026-12-28 overdue_1", 0)]
        );
    }

    #[test]
    fn a_held_invoice_fires_nothing_and_resumes_under_spec_4() {
        let f = fixture_with(
            &SendWindow {
                calendar: Calendar::every_day(),
                send_time: None,
            },
            Some(HOLDS),
            &[STANDARD],
            vec![
                invoice("F1", "C1", "2026-12-10", "100"),
                invoice("F2", "C9", "2026-12-10", "100"),
            ],
        );
        // Held through the 15th: on the 16th the latest reached stage fires
        // (overdue_1), the earlier ones are skipped. C9 is held for good.
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 30, &JournalView::default(), None);
        let fired = f.fired(&plan);
        assert_eq!(
            fired,
            vec!["2026-12-16 F1 overdue_1", "2026-12-25 F1 overdue_2"]
        );
        let mut trace = Trace::default();
        f.ev()
            .evaluate(InvoiceId::new(0), date("2026-12-12"), &[], Some(&mut trace));
        assert_eq!(
            trace.blocked.as_deref(),
            Some("held until 2026-12-15: contested delivery")
        );
        assert_eq!(trace.stages[2].verdict, Verdict::Held);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(InvoiceId::new(1), date("2026-12-12"), &[], Some(&mut trace));
        assert_eq!(
            trace.blocked.as_deref(),
            Some("held until the hold is removed (customer C9): in talks")
        );
    }

    #[test]
    fn a_promise_pauses_reminders_then_the_broken_promise_fires_once() {
        let p = "name: p\npromise_grace: 2\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n  - {id: broken, on: promise_broken, template: t}\n  - {id: overdue_2, offset: 15, template: t}\n";
        let mut promised = invoice("F1", "C1", "2026-12-10", "100");
        promised.promise_date = Some(date("2026-12-18"));
        let f = fixture(
            &[p],
            vec![promised, invoice("F2", "C1", "2026-12-10", "100")],
        );
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 30, &JournalView::default(), None);
        let fired = f.fired(&plan);
        // Paused through the 20th (18 + 2 days of grace): the 21st the
        // broken promise, the 22nd overdue_1 (waiting, not overtaken), then
        // overdue_2 on its day. F2 has no promise: no broken-promise stage.
        assert_eq!(
            fired,
            vec![
                "2026-12-11 F2 overdue_1",
                "2026-12-21 F1 broken",
                "2026-12-22 F1 overdue_1",
                "2026-12-25 F1 overdue_2",
                "2026-12-25 F2 overdue_2",
            ]
        );
        let mut trace = Trace::default();
        f.ev()
            .evaluate(InvoiceId::new(0), date("2026-12-15"), &[], Some(&mut trace));
        assert_eq!(
            trace.blocked.as_deref(),
            Some(
                "promised to pay by 2026-12-18 + 2 days of grace: reminders paused until 2026-12-20"
            )
        );
    }

    #[test]
    fn a_paid_invoice_that_was_reminded_gets_one_thank_you() {
        let p = "name: p\non_paid: {template: thanks}\nstages:\n  - {id: overdue_1, offset: 1, template: t}\n";
        let mut paid = invoice("F1", "C1", "2026-12-10", "100");
        paid.status = Status::Paid;
        let mut settled = invoice("F2", "C1", "2026-12-10", "100");
        settled.amount_paid = settled.amount;
        let mut never_reminded = invoice("F3", "C1", "2026-12-10", "100");
        never_reminded.status = Status::Paid;
        let f = fixture(&[p], vec![paid, settled, never_reminded]);
        let sent = |d| Mark {
            policy: "p".into(),
            stage: "overdue_1".into(),
            occurrence: 0,
            state: State::Sent,
            date: date(d),
            channel: "email".into(),
        };
        let mut journal = JournalView::default();
        journal
            .by_invoice
            .insert("F1".into(), vec![sent("2026-12-11")]);
        journal
            .by_invoice
            .insert("F2".into(), vec![sent("2026-12-14")]);
        let plan = f.ev().plan(date("2026-12-14"), 5, &journal, None);
        let fired = f.fired(&plan);
        // F2's reminder went out on the 14th: its payment is seen the next day.
        assert_eq!(
            fired,
            vec!["2026-12-14 F1 on_paid", "2026-12-15 F2 on_paid"]
        );
        journal.by_invoice.get_mut("F1").unwrap().push(Mark {
            stage: ON_PAID.into(),
            ..sent("2026-12-14")
        });
        let out = f.ev().evaluate(
            InvoiceId::new(0),
            date("2026-12-16"),
            journal.marks("F1"),
            None,
        );
        assert_eq!(out.fire, None, "once");
    }
}
