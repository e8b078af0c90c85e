//! The firing rules (SPEC §4): which stage of which policy fires for an invoice on a date.
//!
//! One function, [`Evaluator::evaluate`], decides for one invoice and one
//! date; the daemon calls it for today, `preview` for each coming day against a
//! journal it simulates forward, and `explain` with a trace. So a preview is
//! exactly what the daemon will send.

use std::sync::Arc;

use chrono::NaiveDate;
use rayon::prelude::*;
use rhai::{Dynamic, ImmutableString, Scope};
use serde::Serialize;

use crate::calendar::add_days;
use crate::journal::{JournalView, Mark, State};
use crate::model::{Invoice, Ledger};
use crate::rules::{CustomerView, InvoiceView, ScriptError, Scripts, Variables};
use crate::rules::{Holds, ON_PAID, Policy, Trigger};
use crate::text::weekday;

/// One occurrence of a stage: occurrence 0 is its first firing, k its k-th repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub stage: usize,
    pub occurrence: u32,
    /// The day it is reached: anchor + offset + k × every.
    pub reached_on: NaiveDate,
}

/// The decision for one invoice on one date.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Index of the chosen policy; `None` when no policy applies.
    pub policy: Option<usize>,
    pub fire: Option<Occurrence>,
    /// Earlier candidates overtaken by the one that fires: recorded, never sent.
    pub skipped: Vec<Occurrence>,
    /// Reached candidates left waiting because their `when` was false.
    pub pending: bool,
    pub errors: Vec<ScriptError>,
}

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
    /// Reached, but the invoice already had a reminder on this date (SPEC §4.5).
    OnePerDay,
    /// Reached, but nothing goes out today: a hold, a promise to pay, a
    /// day that is not a sending day (the trace's `blocked` says which).
    Held,
    /// A broken-promise stage of an invoice with no promise to pay.
    NoPromise,
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

/// The policy an invoice falls under, with the script failures met on the way.
#[derive(Debug, Default, Clone)]
pub struct PolicyChoice {
    pub policy: Option<usize>,
    pub errors: Vec<ScriptError>,
}

#[derive(Debug, Default, Serialize)]
pub struct Trace {
    pub policies: Vec<PolicyTrace>,
    pub stages: Vec<StageTrace>,
    /// Why nothing goes out on the date, if so: "held until 2026-12-15:
    /// contested delivery", a promise to pay, a day off.
    pub blocked: Option<String>,
}

impl Trace {
    /// Says why the stages that were waiting to fire do not fire today.
    fn waiting_are(&mut self, verdict: Verdict) {
        for st in &mut self.stages {
            if st.verdict == Verdict::Waiting {
                st.verdict = verdict;
            }
        }
    }
}

/// A reminder the plan says will go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub date: NaiveDate,
    pub invoice: usize,
    pub policy: usize,
    pub stage: usize,
    pub occurrence: u32,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Sorted by date, then invoice number.
    pub reminders: Vec<Planned>,
    /// Occurrences overtaken by a later one on the same day: journaled as skipped.
    pub skipped: Vec<Planned>,
    /// Open invoices that no policy matched.
    pub unmatched: Vec<usize>,
    /// Script failures, one per invoice and message.
    pub errors: Vec<(usize, ScriptError)>,
}

/// What `plan_invoice` needs besides the invoice.
struct PlanContext<'a> {
    from: NaiveDate,
    end: NaiveDate,
    /// Some expression reads the date: evaluate every day.
    daily: bool,
    journal: &'a JournalView,
    chosen: Option<&'a PolicyChoice>,
    /// Each policy's name and stage ids, shared by the marks the plan journals.
    names: &'a [(Arc<str>, Vec<Arc<str>>)],
}

/// Whether the journal holds a reminder (not a skip) of this invoice for `date`.
fn sent_on(marks: &[Mark], date: NaiveDate) -> bool {
    let mut reminders = marks.iter().filter(|m| m.state != State::Skipped);
    reminders.any(|m| m.date == date)
}

/// Decides reminders for the invoices of a ledger under a set of policies.
pub struct Evaluator<'a> {
    pub policies: &'a [Policy],
    pub scripts: &'a Scripts,
    pub ledger: &'a Arc<Ledger>,
    pub holds: &'a Holds,
}

impl Evaluator<'_> {
    fn variables(&self, invoice: usize, date: NaiveDate, marks: &[Mark]) -> Variables {
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
            },
            today: date,
            sent,
        }
    }

    /// Applies SPEC §4 to one open invoice on `date`, given its journal marks.
    pub fn evaluate(
        &self,
        invoice: usize,
        date: NaiveDate,
        marks: &[Mark],
        trace: Option<&mut Trace>,
    ) -> Outcome {
        self.decide(invoice, date, marks, trace, None, &mut Scope::new())
    }

    /// Step 1 of SPEC §4: the highest-priority policy whose applies_to holds.
    fn choose(&self, scope: &mut Scope<'static>, mut trace: Option<&mut Trace>) -> PolicyChoice {
        let mut choice = PolicyChoice::default();
        let mut evaluated = 0;
        for (i, policy) in self.policies.iter().enumerate() {
            evaluated = i + 1;
            let applies = match &policy.applies_to {
                None => Ok(true),
                Some(expr) => self.scripts.eval_bool(expr, scope),
            };
            if let Some(t) = trace.as_deref_mut() {
                t.policies.push(PolicyTrace {
                    policy: policy.name.clone(),
                    priority: policy.priority,
                    applies: Some(applies.clone().map_err(|e| e.to_string())),
                });
            }
            match applies {
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
        if let Some(t) = trace {
            // The policies after the one that decided were not evaluated.
            t.policies
                .extend(self.policies[evaluated..].iter().map(|p| PolicyTrace {
                    policy: p.name.clone(),
                    priority: p.priority,
                    applies: None,
                }));
        }
        choice
    }

    /// Why nothing of `policy` can go out to `inv` on `date`, if so: a hold,
    /// a promise to pay not yet due (`promise`: for an open invoice), or a
    /// day that is not a sending day.
    fn blocked(
        &self,
        policy: &Policy,
        inv: &Invoice,
        date: NaiveDate,
        promise: bool,
    ) -> Option<String> {
        if let Some(hold) = self.holds.active(inv, date) {
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

    /// Why a reminder already decided cannot go out on `date` (a retry, a
    /// crash leftover): a day off, a hold, a promise running — what would
    /// stop a new one.
    pub fn waits(&self, planned: &Planned, date: NaiveDate) -> Option<String> {
        let policy = &self.policies[planned.policy];
        let inv = &self.ledger.invoices[planned.invoice];
        let thanks = policy.stages[planned.stage].trigger == Trigger::Paid;
        self.blocked(policy, inv, date, !thanks)
    }

    /// SPEC §4 for one invoice and date. `chosen` is the policy choice when
    /// it was made once for the invoice's customer; `scope` is reused.
    fn decide(
        &self,
        invoice: usize,
        date: NaiveDate,
        marks: &[Mark],
        mut trace: Option<&mut Trace>,
        chosen: Option<&PolicyChoice>,
        scope: &mut Scope<'static>,
    ) -> Outcome {
        let inv = &self.ledger.invoices[invoice];
        if !inv.is_open() {
            return self.thank(invoice, date, marks, trace);
        }
        let mut out = Outcome::default();
        // The script variables are set only when an expression is about to
        // run: most decisions (a stage without `when`, a policy chosen once
        // for the customer) need none, and setting them is most of their cost.
        let mut scope_ready = false;
        let mut ready = |scope: &mut Scope<'static>| {
            if !scope_ready {
                self.variables(invoice, date, marks).apply(scope);
                scope_ready = true;
            }
        };
        let choice = match chosen {
            Some(c) => c.clone(),
            None => {
                ready(scope);
                self.choose(scope, trace.as_deref_mut())
            }
        };
        out.policy = choice.policy;
        out.errors = choice.errors;
        let Some(p) = out.policy else { return out };
        let policy = &self.policies[p];
        let anchor = policy.anchor_date(inv);

        // 3. What the journal holds under this policy, and the last of it.
        let journaled = |s: usize, k: u32| {
            marks
                .iter()
                .find(|m| {
                    *m.policy == *policy.name
                        && *m.stage == *policy.stages[s].id
                        && m.occurrence == k
                })
                .map(|m| m.state)
        };
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

        // 2. Reached occurrences that are candidates, in order. A stage is
        // reached on its date moved to a sending day.
        let mut candidates: Vec<Occurrence> = Vec::new();
        let margin = policy.calendar().longest_closure();
        let near = (add_days(date, -margin), add_days(date, margin));
        for (s, stage) in policy.stages.iter().enumerate() {
            if !stage.is_scheduled() {
                continue;
            }
            let mut k = 0u32;
            loop {
                if stage.max_occurrence().is_some_and(|max| k > max) {
                    break;
                }
                // Far from the evaluation date, whether an occurrence is
                // reached does not depend on the calendar, which moves a date
                // by its longest closure at most: the exact day is needed
                // only near it, or to explain.
                let scheduled = policy.scheduled_date(anchor, s, k);
                let reached_on = if trace.is_none() && (scheduled < near.0 || scheduled > near.1) {
                    scheduled
                } else {
                    policy.calendar().shift(scheduled, stage.shift)
                };
                let reached = reached_on <= date;
                let state = journaled(s, k);
                let passed = last.is_some_and(|l| (s, k) <= l);
                if let Some(t) = trace.as_deref_mut() {
                    let verdict = match (reached, state, passed) {
                        (_, Some(_), _) => Verdict::InJournal,
                        (false, None, _) => Verdict::NotReached,
                        (true, None, true) => Verdict::Passed,
                        (true, None, false) => Verdict::Waiting,
                    };
                    t.stages.push(StageTrace {
                        stage: stage.id.clone(),
                        occurrence: k,
                        date: Some(reached_on),
                        moved_from: (scheduled != reached_on).then_some(scheduled),
                        moved_because: policy.calendar().closed(scheduled),
                        reached,
                        when: None,
                        journal: state,
                        verdict,
                    });
                }
                if !reached {
                    break;
                }
                if state.is_none() && !passed {
                    candidates.push(Occurrence {
                        stage: s,
                        occurrence: k,
                        reached_on,
                    });
                }
                k += 1;
            }
        }

        // A broken promise: the first day after the promised date (plus
        // grace), once, while the invoice is still open.
        let promise = policy.promise_broken().and_then(|s| {
            let state = journaled(s, 0);
            let dates = policy.promise_broken_on(inv);
            if let Some(t) = trace.as_deref_mut() {
                let reached = dates.is_some_and(|(_, on)| on <= date);
                t.stages.push(StageTrace {
                    stage: policy.stages[s].id.clone(),
                    occurrence: 0,
                    date: dates.map(|(_, on)| on),
                    moved_from: dates
                        .and_then(|(scheduled, on)| (scheduled != on).then_some(scheduled)),
                    moved_because: dates
                        .and_then(|(scheduled, _)| policy.calendar().closed(scheduled)),
                    reached,
                    when: None,
                    journal: state,
                    verdict: match (dates, state, reached) {
                        (None, _, _) => Verdict::NoPromise,
                        (_, Some(_), _) => Verdict::InJournal,
                        (_, None, false) => Verdict::NotReached,
                        (_, None, true) => Verdict::Waiting,
                    },
                });
            }
            let (_, on) = dates?;
            (state.is_none() && on <= date).then_some(Occurrence {
                stage: s,
                occurrence: 0,
                reached_on: on,
            })
        });

        // A hold, a promise not yet due, a day off: the candidates wait.
        if let Some(reason) = self.blocked(policy, inv, date, true) {
            out.pending = !candidates.is_empty() || promise.is_some();
            if let Some(t) = trace {
                t.blocked = Some(reason);
                t.waiting_are(Verdict::Held);
            }
            return out;
        }

        // 5. At most one reminder per invoice per date — also across
        // evaluations: the daemon evaluates the same date again (hourly by
        // default), and a policy edited or a feed refreshed in between must
        // not send a second reminder that day. The candidates wait for tomorrow.
        if sent_on(marks, date) {
            out.pending = !candidates.is_empty() || promise.is_some();
            if let Some(t) = trace {
                t.waiting_are(Verdict::OnePerDay);
            }
            return out;
        }

        // The broken promise, last, is looked at first: the scheduled
        // candidates wait for the next day rather than being overtaken (a
        // formal notice reached during the pause must still go out).
        candidates.extend(promise);

        // 4. The latest candidate whose `when` holds fires; earlier ones are skipped.
        // The policy's discount is the same for every stage: set it once.
        let mut discount_set = false;
        for (i, c) in candidates.iter().enumerate().rev() {
            let stage = &policy.stages[c.stage];
            let holds = match &stage.when {
                None => Ok(true),
                Some(expr) => {
                    ready(scope);
                    if !discount_set {
                        scope.set_value("discount", policy.discount_variable(inv, date));
                        discount_set = true;
                    }
                    scope.set_value("stage", stage.view(c.occurrence));
                    self.scripts.eval_bool(expr, scope)
                }
            };
            if let Some(t) = trace.as_deref_mut()
                && let Some(st) = t
                    .stages
                    .iter_mut()
                    .find(|st| st.stage == stage.id && st.occurrence == c.occurrence)
            {
                st.when = stage
                    .when
                    .as_ref()
                    .map(|_| holds.clone().map_err(|e| e.to_string()));
            }
            match holds {
                Ok(true) if out.fire.is_none() => {
                    out.fire = Some(*c);
                    // A broken promise overtakes nothing.
                    if stage.is_scheduled() {
                        out.skipped = candidates[..i].to_vec();
                    }
                    if trace.is_none() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => out.errors.push(e),
            }
        }
        // Left waiting: whatever neither fired nor was overtaken.
        out.pending = match out.fire {
            None => !candidates.is_empty(),
            Some(_) => candidates.len() > 1 + out.skipped.len(),
        };
        if let Some(t) = trace {
            for st in &mut t.stages {
                let is = |o: &Occurrence| {
                    policy.stages[o.stage].id == st.stage && o.occurrence == st.occurrence
                };
                if out.fire.as_ref().is_some_and(is) {
                    st.verdict = Verdict::Fires;
                } else if out.skipped.iter().any(is) {
                    st.verdict = Verdict::Skipped;
                }
            }
        }
        out
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
        let Some(last) = marks
            .iter()
            .filter(|m| m.state == State::Sent && *m.stage != *ON_PAID)
            .max_by_key(|m| m.date)
        else {
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
        out.policy = Some(p);
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
            t.stages.push(StageTrace {
                stage: ON_PAID.into(),
                occurrence: 0,
                date: Some(date),
                moved_from: None,
                moved_because: None,
                reached: true,
                when: None,
                journal: state,
                verdict: match (state, fires) {
                    (Some(_), _) => Verdict::InJournal,
                    (None, true) => Verdict::Fires,
                    (None, false) if blocked.is_some() => Verdict::Held,
                    (None, false) => Verdict::OnePerDay,
                },
            });
            t.blocked = blocked.clone();
        }
        if fires {
            out.fire = Some(Occurrence {
                stage: s,
                occurrence: 0,
                reached_on: date,
            });
        } else {
            out.pending = state.is_none();
        }
        out
    }

    /// The first day after `date` on which a new stage occurrence is reached:
    /// of `policy` when the invoice's policy cannot change, else of any policy.
    fn next_reach(
        &self,
        invoice: usize,
        date: NaiveDate,
        policy: Option<usize>,
    ) -> Option<NaiveDate> {
        let inv = &self.ledger.invoices[invoice];
        let mut next: Option<NaiveDate> = None;
        let mut consider = |d: NaiveDate| next = Some(next.map_or(d, |n| n.min(d)));
        let policies = match policy {
            Some(p) => std::slice::from_ref(&self.policies[p]),
            None => self.policies,
        };
        for policy in policies {
            let anchor = policy.anchor_date(inv);
            if policy.promise_broken().is_some()
                && let Some((_, on)) = policy.promise_broken_on(inv)
                && on > date
            {
                consider(on);
            }
            // The calendar moves a date by its longest closure at most:
            // start looking for the next occurrence that much earlier.
            let from = add_days(date, -policy.calendar().longest_closure());
            for (s, stage) in policy.stages.iter().enumerate() {
                if !stage.is_scheduled() {
                    continue;
                }
                let first = policy.scheduled_date(anchor, s, 0);
                let mut k = match stage.repeat.filter(|r| r.every > 0) {
                    Some(r) if first < from => {
                        ((from - first).num_days() / i64::from(r.every)) as u32
                    }
                    _ => 0,
                };
                while stage.max_occurrence().is_none_or(|max| k <= max) {
                    let reached = policy.reach_date(anchor, s, k);
                    if reached > date {
                        consider(reached);
                        break;
                    }
                    if stage.repeat.is_none() {
                        break;
                    }
                    k += 1;
                }
            }
        }
        next
    }

    /// The reminders of the `days` days from `from`, as the daemon would send
    /// them if no payment arrived: each day's decisions are journaled in memory
    /// before the next day is decided. Days on which nothing can change for an
    /// invoice are not evaluated. Invoices are planned in parallel. `only`:
    /// that invoice and the other invoices of its customer, which its
    /// messages may be grouped with.
    pub fn plan(
        &self,
        from: NaiveDate,
        days: u32,
        journal: &JournalView,
        only: Option<usize>,
    ) -> Plan {
        let started = std::time::Instant::now();
        let end = add_days(from, i64::from(days));
        let daily = self.policies.iter().any(Policy::time_dependent);
        let invoices: Vec<usize> = match only {
            Some(i) => {
                let customer = self.ledger.customer_index(i);
                (0..self.ledger.invoices.len())
                    .filter(|&j| self.ledger.customer_index(j) == customer)
                    .collect()
            }
            None => (0..self.ledger.invoices.len()).collect(),
        };
        let choices = self.choices_per_customer(from);
        let names: Vec<(Arc<str>, Vec<Arc<str>>)> = self
            .policies
            .iter()
            .map(|p| {
                let stages = p.stages.iter().map(|s| Arc::from(s.id.as_str())).collect();
                (Arc::from(p.name.as_str()), stages)
            })
            .collect();
        let parts: Vec<Plan> = invoices
            .par_chunks(2048)
            .map(|chunk| {
                let mut plan = Plan::default();
                let mut scope = Scope::new();
                for &invoice in chunk {
                    let inv = &self.ledger.invoices[invoice];
                    // A settled invoice the journal knows may be owed a thank-you.
                    if inv.is_open()
                        || (inv.is_settled()
                            && !journal.by_invoice.is_empty()
                            && !journal.marks(&inv.number).is_empty())
                    {
                        let chosen = choices
                            .as_ref()
                            .map(|c| &c[self.ledger.customer_index(invoice)]);
                        let ctx = PlanContext {
                            from,
                            end,
                            daily,
                            journal,
                            chosen,
                            names: &names,
                        };
                        self.plan_invoice(invoice, &ctx, &mut scope, &mut plan);
                    }
                }
                plan
            })
            .collect();
        let mut plan = Plan::default();
        for part in parts {
            plan.reminders.extend(part.reminders);
            plan.skipped.extend(part.skipped);
            plan.unmatched.extend(part.unmatched);
            plan.errors.extend(part.errors);
        }
        let invoices = &self.ledger.invoices;
        // By date, then invoice number. Comparing the numbers' first eight
        // bytes as an integer settles almost every pair without reaching
        // into the invoices, which a million reminders make slow.
        let prefix = |i: usize| {
            let mut bytes = [0u8; 8];
            let number = invoices[i].number.as_bytes();
            let n = number.len().min(8);
            bytes[..n].copy_from_slice(&number[..n]);
            u64::from_be_bytes(bytes)
        };
        let mut keyed: Vec<(NaiveDate, u64, Planned)> = plan
            .reminders
            .par_iter()
            .map(|r| (r.date, prefix(r.invoice), *r))
            .collect();
        keyed.par_sort_unstable_by(|a, b| {
            (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| {
                invoices[a.2.invoice]
                    .number
                    .cmp(&invoices[b.2.invoice].number)
            })
        });
        plan.reminders = keyed.into_iter().map(|(_, _, r)| r).collect();
        tracing::debug!(days, reminders = plan.reminders.len(), elapsed = ?started.elapsed(), "planned");
        plan
    }

    /// When every `applies_to` reads only the customer, the policy choice is
    /// made once per customer instead of once per invoice.
    fn choices_per_customer(&self, date: NaiveDate) -> Option<Vec<PolicyChoice>> {
        if !self
            .policies
            .iter()
            .all(|p| p.applies_to.as_ref().is_none_or(|e| e.per_customer))
        {
            return None;
        }
        // Any invoice of the customer will do for the scope: the expressions do not read it.
        let mut representative = vec![usize::MAX; self.ledger.customers.len()];
        for (invoice, &customer) in self.ledger.customer_of.iter().enumerate() {
            let r = &mut representative[customer as usize];
            if *r == usize::MAX {
                *r = invoice;
            }
        }
        Some(
            representative
                .par_chunks(1024)
                .flat_map_iter(|chunk| {
                    let mut scope = Scope::new();
                    chunk
                        .iter()
                        .map(|&invoice| {
                            self.variables(invoice, date, &[]).apply(&mut scope);
                            self.choose(&mut scope, None)
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    }

    fn plan_invoice(
        &self,
        invoice: usize,
        ctx: &PlanContext,
        scope: &mut Scope<'static>,
        plan: &mut Plan,
    ) {
        let inv = &self.ledger.invoices[invoice];
        let mut marks = ctx.journal.marks(&inv.number).to_vec();
        let open = inv.is_open();
        let (end, daily) = (ctx.end, ctx.daily && open);
        let mut day = ctx.from;
        let mut first = true;
        while day < end {
            let out = self.decide(invoice, day, &marks, None, ctx.chosen, scope);
            // No policy because an applies_to failed is an error, not "unmatched".
            let failed = !out.errors.is_empty();
            for e in out.errors {
                if !plan
                    .errors
                    .iter()
                    .any(|(i, known)| *i == invoice && *known == e)
                {
                    plan.errors.push((invoice, e));
                }
            }
            let Some(p) = out.policy else {
                if first && !failed && open {
                    plan.unmatched.push(invoice);
                }
                if !daily && !out.pending {
                    break;
                }
                day = add_days(day, 1);
                first = false;
                continue;
            };
            first = false;
            let planned = |o: &Occurrence| Planned {
                date: day,
                invoice,
                policy: p,
                stage: o.stage,
                occurrence: o.occurrence,
            };
            plan.skipped.extend(out.skipped.iter().map(planned));
            if let Some(f) = out.fire {
                plan.reminders.push(planned(&f));
            }
            let next = if daily || out.pending {
                Some(add_days(day, 1))
            } else if !open {
                None // a thank-you goes out once
            } else {
                // A choice made once for the customer holds every day.
                self.next_reach(invoice, day, ctx.chosen.map(|_| p))
            };
            let Some(next) = next.filter(|n| *n < end) else {
                break;
            };
            // Journal today's decisions in memory before deciding the next day.
            let (policy_name, stage_ids) = &ctx.names[p];
            let mark = |o: &Occurrence, state| Mark {
                policy: policy_name.clone(),
                stage: stage_ids[o.stage].clone(),
                occurrence: o.occurrence,
                state,
                date: day,
            };
            marks.extend(out.skipped.iter().map(|o| mark(o, State::Skipped)));
            marks.extend(out.fire.iter().map(|f| mark(f, State::Sent)));
            day = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, HolidaySettings, Holidays, SendWindow, WEEKDAYS};
    use crate::diagnostics::Problems;
    use crate::model::tests::{date, invoice};
    use crate::model::{Invoice, Status};
    use crate::rules::ON_PAID;
    use crate::rules::{load_holds, load_policies};

    struct Fixture {
        _dir: tempfile::TempDir,
        policies: Vec<Policy>,
        scripts: Scripts,
        ledger: Arc<Ledger>,
        holds: Holds,
    }

    /// Policies sending every day of the week: the rules of SPEC §4 alone.
    fn fixture(policies: &[&str], invoices: Vec<Invoice>) -> Fixture {
        let every_day = SendWindow {
            calendar: Calendar::every_day(),
            send_time: None,
        };
        fixture_with(&every_day, None, policies, invoices)
    }

    /// Policies under the config's `window`, with a `rules/holds.yaml`.
    fn fixture_with(
        window: &SendWindow,
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
        let scripts = Scripts::load(dir.path(), &Default::default(), &mut problems);
        let policies = load_policies(dir.path(), &scripts, window, &mut problems);
        let holds = load_holds(dir.path(), &mut problems);
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
        fn ev(&self) -> Evaluator<'_> {
            Evaluator {
                policies: &self.policies,
                scripts: &self.scripts,
                ledger: &self.ledger,
                holds: &self.holds,
            }
        }
        /// "DATE INVOICE STAGE" of each reminder of a plan.
        fn fired(&self, plan: &Plan) -> Vec<String> {
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
        fn plan(&self, from: &str, days: u32, journal: &JournalView) -> Vec<(String, String, u32)> {
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

    const STANDARD: &str = "name: standard
stages:
  - {id: courtesy, offset: -7, template: t}
  - {id: due_soon, offset: -2, template: t}
  - {id: overdue_1, offset: 1, template: t}
  - {id: overdue_2, offset: 15, template: t, when: 'invoice.amount_due >= 50'}
  - {id: collection, offset: 90, template: t, repeat: {every: 30, max: 3}}
";

    fn row(s: &str, k: u32) -> (String, String, u32) {
        let (d, st) = s.split_once(' ').unwrap();
        (d.to_string(), st.to_string(), k)
    }

    #[test]
    fn a_stage_fires_on_the_day_it_is_reached() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let out = f.ev().evaluate(0, date("2026-12-02"), &[], None);
        assert_eq!(out.fire, None);
        let out = f.ev().evaluate(0, date("2026-12-03"), &[], None);
        assert_eq!(out.fire.map(|o| o.stage), Some(0));
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn the_latest_candidate_fires_and_earlier_ones_are_skipped() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        // A daemon down for a fortnight: one reminder, the right one.
        let out = f.ev().evaluate(0, date("2026-12-12"), &[], None);
        assert_eq!(out.fire.map(|o| o.stage), Some(2));
        assert_eq!(
            out.skipped.iter().map(|o| o.stage).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn when_false_falls_back_to_an_earlier_candidate_and_waits() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "20")]);
        let out = f.ev().evaluate(0, date("2026-12-26"), &[], None);
        assert_eq!(
            out.fire.map(|o| o.stage),
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
        }];
        // courtesy and due_soon are reached and not journaled, but come before overdue_1.
        let out = f.ev().evaluate(0, date("2026-12-12"), &marks, None);
        assert_eq!(out.fire, None);
        assert!(!out.pending);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(0, date("2026-12-12"), &marks, Some(&mut trace));
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
        tagged.tags = Arc::new(["vip".into()]);
        let f = fixture(
            &[vip, b, a],
            vec![invoice("F1", "C1", "2026-12-10", "100"), tagged],
        );
        let name = |i| {
            f.policies[f
                .ev()
                .evaluate(i, date("2026-12-11"), &[], None)
                .policy
                .unwrap()]
            .name
            .clone()
        };
        assert_eq!(name(0), "a");
        assert_eq!(name(1), "vip");
    }

    #[test]
    fn unmatched_invoices_are_reported_not_errors() {
        let only_usd = "name: usd\napplies_to: 'invoice.currency == \"USD\"'\nstages: [{id: s, offset: 1, template: t}]\n";
        let f = fixture(&[only_usd], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let plan = f
            .ev()
            .plan(date("2026-12-01"), 30, &JournalView::default(), None);
        assert_eq!(plan.unmatched, vec![0]);
        assert!(plan.reminders.is_empty() && plan.errors.is_empty());
    }

    #[test]
    fn a_throwing_script_is_reported_for_that_invoice_only() {
        let p = "name: p\nstages:\n  - {id: s, offset: 1, template: t, when: 'invoice.number != \"BAD\" || days_between(\"boom\", today) > 0'}\n";
        let f = fixture(
            &[p],
            vec![
                invoice("BAD", "C1", "2026-12-10", "100"),
                invoice("OK", "C1", "2026-12-10", "100"),
            ],
        );
        let plan = f
            .ev()
            .plan(date("2026-12-11"), 1, &JournalView::default(), None);
        assert_eq!(plan.reminders.len(), 1);
        assert_eq!(plan.reminders[0].invoice, 1);
        assert_eq!(plan.errors.len(), 1);
        assert!(
            plan.errors[0]
                .1
                .message
                .contains("\"boom\" is not a YYYY-MM-DD date"),
            "{}",
            plan.errors[0].1
        );
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
        let out = f.ev().evaluate(0, date("2026-12-11"), &[], None);
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
            .evaluate(0, date("2026-12-11"), &[], Some(&mut trace));
        assert!(matches!(trace.policies[0].applies, Some(Err(_))));
        assert!(trace.policies[1].applies.is_none(), "not evaluated");
    }

    #[test]
    fn preview_simulates_the_journal_day_by_day() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        let plan = f.plan("2026-12-01", 30, &JournalView::default());
        assert_eq!(
            plan,
            vec![
                row("2026-12-03 courtesy", 0),
                row("2026-12-08 due_soon", 0),
                row("2026-12-11 overdue_1", 0),
                row("2026-12-25 overdue_2", 0)
            ]
        );
        // Starting late: the first day catches up with one reminder, the latest.
        let plan = f.plan("2026-12-20", 10, &JournalView::default());
        assert_eq!(
            plan,
            vec![
                row("2026-12-20 overdue_1", 0),
                row("2026-12-25 overdue_2", 0)
            ]
        );
    }

    #[test]
    fn repeats_fire_every_period_up_to_max() {
        let f = fixture(&[STANDARD], vec![invoice("F1", "C1", "2026-01-31", "100")]);
        let mut journal = JournalView::default();
        journal.by_invoice.insert(
            "F1".into(),
            vec![Mark {
                policy: "standard".into(),
                stage: "overdue_2".into(),
                occurrence: 0,
                state: State::Sent,
                date: date("2026-02-15"),
            }],
        );
        let plan = f.plan("2026-04-01", 200, &journal);
        // 2026-01-31 + 90 = 2026-05-01, then +30 three times.
        assert_eq!(
            plan,
            vec![
                row("2026-05-01 collection", 0),
                row("2026-05-31 collection", 1),
                row("2026-06-30 collection", 2),
                row("2026-07-30 collection", 3)
            ]
        );
    }

    #[test]
    fn unbounded_repeat_and_leap_years() {
        let p = "name: p\nanchor: issue_date\nstages:\n  - {id: monthly, offset: 29, template: t, repeat: {every: 1}}\n";
        let mut inv = invoice("F1", "C1", "2028-03-31", "100");
        inv.issue_date = date("2028-01-31");
        let f = fixture(&[p], vec![inv]);
        let plan = f.plan("2028-02-28", 4, &JournalView::default());
        assert_eq!(
            plan,
            vec![
                row("2028-02-29 monthly", 0),
                row("2028-03-01 monthly", 1),
                row("2028-03-02 monthly", 2)
            ]
        );
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
        };
        let out = f
            .ev()
            .evaluate(0, date("2026-12-10"), &[sent_a(State::Sent)], None);
        assert_eq!(out.fire, None);
        assert!(out.pending);
        let out = f
            .ev()
            .evaluate(0, date("2026-12-11"), &[sent_a(State::Sent)], None);
        assert_eq!(out.fire.map(|o| o.stage), Some(1));
        // A skip is not a reminder: it does not use up the day.
        let out = f
            .ev()
            .evaluate(0, date("2026-12-10"), &[sent_a(State::Skipped)], None);
        assert_eq!(out.fire.map(|o| o.stage), Some(1));
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
    fn time_dependent_when_is_rechecked_daily() {
        let p = "name: p\nstages:\n  - {id: late, offset: 1, template: t, when: 'invoice.days_overdue >= 5 && customer.overdue_count >= 1'}\n";
        let f = fixture(&[p], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        assert_eq!(
            f.plan("2026-12-01", 30, &JournalView::default()),
            vec![row("2026-12-15 late", 0)]
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
        let out = f.ev().evaluate(0, date("2026-12-05"), &[], None);
        assert_eq!(out.fire, None);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(0, date("2026-12-07"), &[], Some(&mut trace));
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
    fn a_repeat_finds_its_next_occurrence_after_the_calendar() {
        // Every 7 days from Friday 4 December, shifted earlier when off: the
        // plan must not skip an occurrence the calendar moved before its date.
        let p = "name: p\nstages:\n  - {id: weekly, offset: 0, template: t, shift: earlier, repeat: {every: 7}}\n";
        let window = SendWindow {
            calendar: Calendar::new(&[chrono::Weekday::Thu], &HolidaySettings::default()),
            send_time: None,
        };
        let f = fixture_with(
            &window,
            None,
            &[p],
            vec![invoice("F1", "C1", "2026-12-04", "100")],
        );
        assert_eq!(
            f.plan("2026-12-01", 20, &JournalView::default()),
            vec![
                row("2026-12-03 weekly", 0),
                row("2026-12-10 weekly", 1),
                row("2026-12-17 weekly", 2)
            ]
        );
    }

    const HOLDS: &str = "holds:\n  - invoice: F1\n    until: 2026-12-15\n    reason: contested delivery\n  - customer: C9\n    reason: in talks\n";

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
            .evaluate(0, date("2026-12-12"), &[], Some(&mut trace));
        assert_eq!(
            trace.blocked.as_deref(),
            Some("held until 2026-12-15: contested delivery")
        );
        assert_eq!(trace.stages[2].verdict, Verdict::Held);
        let mut trace = Trace::default();
        f.ev()
            .evaluate(1, date("2026-12-12"), &[], Some(&mut trace));
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
            .evaluate(0, date("2026-12-15"), &[], Some(&mut trace));
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
        let out = f
            .ev()
            .evaluate(0, date("2026-12-16"), journal.marks("F1"), None);
        assert_eq!(out.fire, None, "once");
    }
}
