//! The plan of the coming days: every invoice decided day after day against
//! a journal simulated forward, so a preview is what the daemon will send.
//! When contacts weigh, a customer's invoices are decided together, day by
//! day: what one of them is sent holds back the others' emails
//! (`contact.min_days_between`) and changes what their rules read
//! (`customer.last_contacted`); otherwise each invoice is planned on its own.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::sync::Arc;

use chrono::NaiveDate;
use rayon::prelude::*;
use rhai::Scope;

use super::contact::{Ladder, LastContact, weighs_contacts};
use super::decide::Known;
use super::{Evaluator, Occurrence, PolicyChoice, Reminder};
use crate::calendar::add_days;
use crate::journal::{JournalView, Mark, State};
use crate::model::InvoiceId;
use crate::rules::{Channel, Held, Policy, PolicyId, ScriptError, StageId};

#[derive(Debug, Default)]
pub struct Plan {
    /// Sorted by date, then invoice number.
    pub reminders: Vec<Reminder>,
    /// Occurrences overtaken by a later one on the same day: journaled as skipped.
    pub skipped: Vec<Reminder>,
    /// Open invoices that no policy matched.
    pub unmatched: Vec<InvoiceId>,
    /// Script failures, one per invoice and message.
    pub errors: Vec<(InvoiceId, ScriptError)>,
    /// The reminders (among `reminders`) that are an invoice's first
    /// contact and restart its ladder (`first_contact: restart`).
    pub restarts: Vec<Reminder>,
}

/// A policy's name, and each of its stages' id and channel, shared by the
/// marks the plan journals.
type Names = (Arc<str>, Vec<(Arc<str>, Arc<str>)>);

/// What the planning of a customer's invoices needs besides them.
#[derive(Clone, Copy)]
struct PlanContext<'a> {
    from: NaiveDate,
    end: NaiveDate,
    /// Some expression reads the date: evaluate every day.
    daily: bool,
    /// What a customer was sent matters: a policy spaces emails out, or an
    /// expression reads `customer.last_contacted`.
    contacts: bool,
    journal: &'a JournalView,
    /// The invoices a hold may stop.
    held: &'a Held,
    /// The policy choices made once per customer, if they were.
    choices: Option<&'a [PolicyChoice]>,
    names: &'a [Names],
    /// Whether the plan lists the skipped occurrences ([`Plan::skipped`]).
    skipped: bool,
}

/// One invoice of a customer being planned.
struct Track {
    invoice: InvoiceId,
    /// Its journal, with the plan's decisions of the days before.
    marks: Vec<Mark>,
    /// The next day it is decided on; `None` when nothing more can change.
    next: Option<NaiveDate>,
    /// Not decided yet: an open invoice no policy matches then is unmatched.
    first: bool,
}

impl Evaluator<'_> {
    /// The reminders of the `days` days from `from`, as the daemon would send
    /// them if no payment arrived: each day's decisions are journaled in memory
    /// before the next day is decided. Days on which nothing can change for an
    /// invoice are not evaluated. Planned in parallel. `only`:
    /// that invoice and the other invoices of its customer, which its
    /// messages may be grouped with.
    pub fn plan(
        &self,
        from: NaiveDate,
        days: u32,
        journal: &JournalView,
        only: Option<InvoiceId>,
    ) -> Plan {
        let all = (0..self.ledger.invoices.len()).map(InvoiceId::new);
        let invoices: Vec<InvoiceId> = match only {
            Some(i) => {
                let customer = self.ledger.customer_index(i);
                all.filter(|&j| self.ledger.customer_index(j) == customer)
                    .collect()
            }
            None => all.collect(),
        };
        self.plan_invoices(from, days, journal, &invoices)
    }

    /// [`Evaluator::plan`] for these invoices of the ledger only (a
    /// backtest's day: those issued and not yet paid, or owed a thank-you).
    pub fn plan_invoices(
        &self,
        from: NaiveDate,
        days: u32,
        journal: &JournalView,
        invoices: &[InvoiceId],
    ) -> Plan {
        let started = std::time::Instant::now();
        let end = add_days(from, i64::from(days));
        let daily = self.policies.iter().any(Policy::time_dependent);
        let choices = self.choices_per_customer(from, invoices);
        // Open invoices, and settled ones the journal knows, which may be
        // owed a thank-you. Found on every core: reading a million invoices
        // waits on memory.
        let live: Vec<InvoiceId> = invoices
            .par_iter()
            .copied()
            .filter(|&i| {
                let inv = &self.ledger.invoices[i];
                inv.is_open()
                    || (inv.is_settled()
                        && !journal.by_invoice.is_empty()
                        && !journal.marks(&inv.number).is_empty())
            })
            .collect();
        let ctx = PlanContext {
            from,
            end,
            daily,
            contacts: weighs_contacts(self.policies),
            journal,
            held: &self.holds.held_in(self.ledger),
            choices: choices.as_deref(),
            // Each part has its own (below).
            names: &[],
            skipped: self.skipped,
        };
        // Each part with its own scope and its own copies of the names:
        // every mark clones them, and the counts of copies shared by both
        // cores bounced between them (a third of the plan's time).
        let part = |plan_part: &dyn Fn(&PlanContext, &mut Scope<'static>, &mut Plan)| {
            let mut plan = Plan::default();
            let names = self.names();
            let ctx = PlanContext {
                names: &names,
                ..ctx
            };
            plan_part(&ctx, &mut Scope::new(), &mut plan);
            plan
        };
        let parts: Vec<Plan> = if ctx.contacts {
            let (sorted, customers) = self.by_customer(&live);
            // About 2048 invoices a chunk, whole customers.
            let chunk = customers
                .len()
                .saturating_mul(2048)
                .checked_div(sorted.len())
                .unwrap_or(1)
                .max(1);
            customers
                .par_chunks(chunk)
                .map(|chunk| {
                    part(&|ctx, scope, plan| {
                        for range in chunk {
                            let invoices = &sorted[range.0..range.1];
                            self.plan_customer(invoices, ctx, scope, plan);
                        }
                    })
                })
                .collect()
        } else {
            // Each invoice on its own, in the ledger's order: what a
            // decision reads of it is then read in the order it is held
            // (in the customers' order, each invoice was a cache miss).
            live.par_chunks(2048)
                .map(|chunk| {
                    part(&|ctx, scope, plan| {
                        for &invoice in chunk {
                            self.plan_alone(invoice, ctx, scope, plan);
                        }
                    })
                })
                .collect()
        };
        let mut plan = Plan::default();
        let mut reminders = Vec::with_capacity(parts.len());
        for part in parts {
            reminders.push(part.reminders);
            plan.skipped.extend(part.skipped);
            plan.unmatched.extend(part.unmatched);
            plan.errors.extend(part.errors);
            plan.restarts.extend(part.restarts);
        }
        // Planned by customer: back in the order of the invoices, as the
        // journal and the reports list them.
        plan.unmatched.sort_by_key(|i| i.index());
        plan.skipped.sort_by_key(|r| r.invoice.index());
        plan.errors.sort_by_key(|(i, _)| i.index());
        plan.restarts.sort_by_key(|r| r.invoice.index());
        plan.reminders = self.by_date_and_number(reminders);
        tracing::debug!(days, reminders = plan.reminders.len(), elapsed = ?started.elapsed(), "planned");
        plan
    }

    /// The parts' reminders by date, then invoice number. Dated by a
    /// counting sort as each part is taken (a plan covers few days): the
    /// parts and the sorted reminders are the only copies held, where keys
    /// for the whole plan would have been a third (42 MB at a million
    /// invoices). Each day's reminders are then sorted by number.
    // Counts and positions of reminders held in memory: below `usize::MAX`.
    #[allow(clippy::arithmetic_side_effects)]
    fn by_date_and_number(&self, parts: Vec<Vec<Reminder>>) -> Vec<Reminder> {
        use chrono::Datelike;
        let all = || parts.iter().flatten();
        let (Some(first), Some(filler)) = (all().map(|r| r.date).min(), all().next().copied())
        else {
            return Vec::new();
        };
        // A slot per day of each year from the first's, in date order: read
        // off the date as it is held, where counting days from the first
        // (three times for each of a million reminders) took twice as long.
        // Slots of days that do not exist stay empty.
        let day = |r: &Reminder| {
            let years = usize::try_from(r.date.year() - first.year()).unwrap_or(0);
            years * 366 + r.date.ordinal0() as usize
        };
        let days = all().map(day).max().unwrap_or(0) + 1;
        let mut start = vec![0usize; days + 1];
        for r in all() {
            start[day(r) + 1] += 1;
        }
        for d in 1..start.len() {
            start[d] += start[d - 1];
        }
        let bounds = start.clone();
        let mut sorted = vec![filler; start[days]];
        for part in parts {
            for r in &part {
                let at = &mut start[day(r)];
                sorted[*at] = *r;
                *at += 1;
            }
        }
        // Each day's reminders by number: their keys sorted, then moved to
        // the places the keys took. Comparing the numbers' first eight bytes
        // as an integer settles almost every pair without reaching into the
        // invoices again (a key holds its reminder's place in the day, 16
        // bytes for the day of the most reminders, in one buffer).
        let invoices = &self.ledger.invoices;
        let number = |r: &Reminder| &*invoices[r.invoice].number;
        let prefix = |r: &Reminder| {
            let number = number(r).as_bytes();
            let mut bytes = [0u8; 8];
            let n = number.len().min(8);
            bytes[..n].copy_from_slice(&number[..n]);
            u64::from_be_bytes(bytes)
        };
        // The days side by side, each sorted on its own core while there
        // are days enough (and on all of them, within a day, when not).
        let mut days: Vec<&mut [Reminder]> = Vec::new();
        let mut rest = &mut sorted[..];
        for day in bounds.windows(2).filter(|day| day[1] > day[0]) {
            let (before, after) = std::mem::take(&mut rest).split_at_mut(day[1] - day[0]);
            days.push(before);
            rest = after;
        }
        days.into_par_iter().for_each(|day| {
            let mut keys: Vec<(u64, usize)> = Vec::new();
            keys.par_extend(day.par_iter().enumerate().map(|(k, r)| (prefix(r), k)));
            keys.par_sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| number(&day[a.1]).cmp(number(&day[b.1])))
                    .then(a.1.cmp(&b.1))
            });
            // Where the reminder now at `k` is found: it was moved away by
            // a swap when `k` is a place already filled.
            for k in 0..keys.len() {
                let mut from = keys[k].1;
                while from < k {
                    from = keys[from].1;
                }
                keys[k].1 = from;
                day.swap(k, from);
            }
        });
        sorted
    }

    /// Each policy's name, and its stages' ids and channels, as marks name them.
    fn names(&self) -> Vec<Names> {
        self.policies
            .iter()
            .map(|p| {
                let stages = p
                    .stages
                    .iter()
                    .map(|s| (Arc::from(s.id.as_str()), Arc::from(s.channel.as_str())))
                    .collect();
                (Arc::from(p.name.as_str()), stages)
            })
            .collect()
    }

    /// `invoices` ordered by customer (each customer's in their order), and
    /// the range of each customer's among them.
    // Counts and positions of invoices held in memory: below `usize::MAX`.
    #[allow(clippy::arithmetic_side_effects)]
    fn by_customer(&self, invoices: &[InvoiceId]) -> (Vec<InvoiceId>, Vec<(usize, usize)>) {
        // A counting sort: customers are numbered densely.
        let mut start = vec![0usize; self.ledger.customers.len() + 1];
        for &i in invoices {
            start[self.ledger.customer_index(i) + 1] += 1;
        }
        for c in 1..start.len() {
            start[c] += start[c - 1];
        }
        let ranges = start
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| (w[0], w[1]))
            .collect();
        let mut sorted = vec![InvoiceId::new(0); invoices.len()];
        for &i in invoices {
            let at = &mut start[self.ledger.customer_index(i)];
            sorted[*at] = i;
            *at += 1;
        }
        (sorted, ranges)
    }

    /// When every `applies_to` reads only the customer, the policy choice is
    /// made once per customer instead of once per invoice: for the customers
    /// of `invoices` (the others' stay unmade, and are never read).
    fn choices_per_customer(
        &self,
        date: NaiveDate,
        invoices: &[InvoiceId],
    ) -> Option<Vec<PolicyChoice>> {
        if !self
            .policies
            .iter()
            .all(|p| p.applies_to.as_ref().is_none_or(|e| e.per_customer))
        {
            return None;
        }
        // Any invoice of the customer will do for the scope: the expressions do not read it.
        let mut representative = vec![usize::MAX; self.ledger.customers.len()];
        for &invoice in invoices {
            let r = &mut representative[self.ledger.customer_index(invoice)];
            if *r == usize::MAX {
                *r = invoice.index();
            }
        }
        if let Some(conditions) = self.native_conditions() {
            return Some(
                representative
                    .par_iter()
                    .enumerate()
                    .map(|(customer, &invoice)| match invoice {
                        usize::MAX => PolicyChoice::default(),
                        _ => self.choose_natively(&conditions, customer),
                    })
                    .collect(),
            );
        }
        Some(
            representative
                .par_chunks(1024)
                .flat_map_iter(|chunk| {
                    let mut scope = Scope::new();
                    chunk
                        .iter()
                        .map(|&invoice| {
                            if invoice == usize::MAX {
                                return PolicyChoice::default();
                            }
                            // Such expressions do not read `last_contacted` either (a time word).
                            let nothing = LastContact::default();
                            self.variables(invoice, date, &[], nothing)
                                .apply(&mut scope);
                            self.choose(&mut scope)
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    }

    /// Plans one invoice all its days at once, when what its customer was
    /// sent about others changes nothing: its data stays in the cache,
    /// which a customer of thousands of invoices decided day by day would
    /// not allow.
    fn plan_alone(
        &self,
        invoice: InvoiceId,
        ctx: &PlanContext,
        scope: &mut Scope<'static>,
        plan: &mut Plan,
    ) {
        let mut track = self.track(invoice, ctx);
        while let Some(day) = track.next {
            let nothing = LastContact::default();
            self.plan_day(&mut track, day, nothing, ctx, scope, plan);
        }
    }

    /// An invoice about to be planned, with its journal.
    fn track(&self, invoice: InvoiceId, ctx: &PlanContext) -> Track {
        Track {
            invoice,
            marks: self.marks(invoice, ctx).to_vec(),
            next: Some(ctx.from),
            first: true,
        }
    }

    fn marks<'j>(&self, invoice: InvoiceId, ctx: &PlanContext<'j>) -> &'j [Mark] {
        ctx.journal.marks(&self.ledger.invoices[invoice].number)
    }

    /// Plans one customer's invoices: each day, those of its invoices that
    /// may change are decided against what the customer was sent before that
    /// day; then that day's messages count as sent.
    fn plan_customer(
        &self,
        invoices: &[InvoiceId],
        ctx: &PlanContext,
        scope: &mut Scope<'static>,
        plan: &mut Plan,
    ) {
        let mut contacts = self.contacts(invoices.iter().map(|&i| self.marks(i, ctx)));
        let mut tracks: Vec<Track> = invoices.iter().map(|&i| self.track(i, ctx)).collect();
        while let Some(day) = tracks.iter().filter_map(|t| t.next).min() {
            let last = contacts.before(day);
            let mut sent: Option<bool> = None;
            for track in tracks.iter_mut().filter(|t| t.next == Some(day)) {
                if let Some(channel) = self.plan_day(track, day, last, ctx, scope, plan) {
                    let email = channel == Channel::Email;
                    sent = Some(sent.is_some_and(|e| e) || email);
                }
            }
            if let Some(email) = sent {
                contacts.record(day, email);
            }
        }
    }

    /// Decides one invoice on `day`, journals the decision in its track and
    /// sets the next day it is decided on. Returns the channel of the
    /// reminder that fires, if one does.
    fn plan_day(
        &self,
        track: &mut Track,
        day: NaiveDate,
        last: LastContact,
        ctx: &PlanContext,
        scope: &mut Scope<'static>,
        plan: &mut Plan,
    ) -> Option<Channel> {
        let invoice = track.invoice;
        let open = self.ledger.invoices[invoice].is_open();
        let daily = ctx.daily && open;
        let chosen = ctx.choices.map(|c| &c[self.ledger.customer_index(invoice)]);
        let out = self.decide(
            invoice.index(),
            day,
            &track.marks,
            None,
            Known {
                chosen,
                last,
                unheld: !ctx.held.may_hold(invoice),
            },
            scope,
        );
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
        let first = std::mem::replace(&mut track.first, false);
        let tomorrow = add_days(day, 1);
        let Some(p) = out.policy else {
            if first && !failed && open {
                plan.unmatched.push(invoice);
            }
            track.next = (daily || out.pending)
                .then_some(tomorrow)
                .filter(|n| *n < ctx.end);
            return None;
        };
        let planned = |o: &Occurrence| Reminder {
            date: day,
            invoice,
            policy: p,
            stage: o.stage,
            occurrence: o.occurrence,
        };
        if ctx.skipped {
            plan.skipped.extend(out.skipped.iter().map(planned));
        }
        if let Some(f) = &out.fire {
            plan.reminders.push(planned(f));
            if out.restarted {
                plan.restarts.push(planned(f));
            }
        }
        // A reminder awaiting approval has reached nobody yet.
        let channel = out
            .fire
            .map(|f| &self.policies[p].stages[f.stage])
            .filter(|stage| !stage.approve)
            .map(|stage| stage.channel);
        // A thank-you goes out once; past the window, where the next stage
        // falls does not matter.
        if !(daily || out.pending || open) || tomorrow >= ctx.end {
            track.next = None;
            return channel;
        }
        // Journal today's decisions in memory before deciding the next day.
        let (policy_name, stages) = &ctx.names[p.index()];
        let mark = |o: &Occurrence, state| Mark {
            policy: policy_name.clone(),
            stage: stages[o.stage.index()].0.clone(),
            occurrence: o.occurrence,
            state,
            date: day,
            channel: stages[o.stage.index()].1.clone(),
        };
        track
            .marks
            .extend(out.skipped.iter().map(|o| mark(o, State::Skipped)));
        // A stage a person approves first waits in the journal, unsent.
        let fired = |o: &Occurrence| match self.policies[p].stages[o.stage].approve {
            true => State::AwaitingApproval,
            false => State::Sent,
        };
        track
            .marks
            .extend(out.fire.iter().map(|f| mark(f, fired(f))));
        track.next = if daily || out.pending {
            Some(tomorrow)
        } else {
            // A choice made once for the customer holds every day.
            self.next_reach(invoice, day, chosen.map(|_| p), &track.marks)
        }
        .filter(|n| *n < ctx.end);
        channel
    }

    /// The first day after `date` on which a new stage occurrence is reached:
    /// of `policy` when the invoice's policy cannot change, else of any policy.
    fn next_reach(
        &self,
        invoice: InvoiceId,
        date: NaiveDate,
        policy: Option<PolicyId>,
        marks: &[Mark],
    ) -> Option<NaiveDate> {
        let inv = &self.ledger.invoices[invoice];
        let mut next: Option<NaiveDate> = None;
        let mut consider = |d: NaiveDate| next = Some(next.map_or(d, |n| n.min(d)));
        let policies = match policy {
            Some(p) => std::slice::from_ref(&self.policies[p]),
            None => self.policies,
        };
        for policy in policies {
            let anchor = Ladder::of(policy, inv, date, marks).anchor;
            if policy.promise_broken().is_some()
                && let Some((_, on)) = policy.promise_broken_on(inv)
                && on > date
            {
                consider(on);
            }
            // The calendar moves a date by its longest closure at most:
            // start looking for the next occurrence that much earlier.
            let from = add_days(date, policy.calendar().longest_closure().saturating_neg());
            for (s, stage) in policy.stages.iter().enumerate() {
                if !stage.is_scheduled() {
                    continue;
                }
                let s = StageId::new(s);
                let first = policy.scheduled_date(anchor, s, 0);
                let mut k = match stage.repeat.filter(|r| r.every > 0) {
                    Some(r) if first < from => {
                        let since = from.signed_duration_since(first).num_days();
                        let k = since.checked_div(i64::from(r.every)).unwrap_or(0);
                        u32::try_from(k).unwrap_or(u32::MAX)
                    }
                    // Reached before `date` whatever the calendar: no date
                    // of it is to come (most stages of an overdue invoice).
                    _ if stage.repeat.is_none() && first < from => continue,
                    _ => 0,
                };
                while stage.max_occurrence().is_none_or(|max| k <= max) {
                    let reached = match k {
                        0 => policy.calendar().shift(first, stage.shift),
                        k => policy.reach_date(anchor, s, k),
                    };
                    if reached > date {
                        consider(reached);
                        break;
                    }
                    let Some(next) = k.checked_add(1).filter(|_| stage.repeat.is_some()) else {
                        break;
                    };
                    k = next;
                }
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Calendar, HolidaySettings, SendWindow};
    use crate::engine::tests::{STANDARD, fixture, fixture_with, row};
    use crate::model::tests::{date, invoice};

    /// The policies chosen without the interpreter are those Rhai chooses:
    /// the same plan when every condition is left to Rhai.
    #[test]
    fn policies_chosen_natively_are_those_rhai_chooses() {
        let key = "name: key\npriority: 20\napplies_to: 'customer.tags.contains(\"key-account\") || customer.open_count >= 5'\nstages: [{id: k, offset: 1, template: t}]\n";
        let big = "name: big\npriority: 15\napplies_to: '!customer.tags.contains(\"b2c\") && customer.total_due > 900'\nstages: [{id: b, offset: 1, template: t}]\n";
        let invoices: Vec<_> = (0..80)
            .map(|i| {
                let mut inv = invoice(
                    &format!("F{i:02}"),
                    &format!("C{}", i % 23),
                    "2026-12-10",
                    &format!("{}", 100 + 37 * (i % 11)),
                );
                // A customer's tags are those of its invoices.
                inv.tags = match i % 23 % 5 {
                    0 => ["key-account"].map(Into::into).into(),
                    1 => ["b2c"].map(Into::into).into(),
                    _ => Default::default(),
                };
                inv
            })
            .collect();
        let native = fixture(&[key, big, STANDARD], invoices.clone());
        assert!(native.ev().native_conditions().is_some());
        let mut by_rhai = fixture(&[key, big, STANDARD], invoices);
        for policy in &mut by_rhai.policies {
            if let Some(expr) = &mut policy.applies_to {
                expr.native = None;
            }
        }
        assert!(by_rhai.ev().native_conditions().is_none());
        let journal = JournalView::default();
        let plan = native.plan("2026-12-01", 30, &journal);
        assert_eq!(plan, by_rhai.plan("2026-12-01", 30, &journal));
        // Each policy takes some of the customers.
        for stage in ["k", "b", "courtesy"] {
            assert!(plan.iter().any(|(_, s, _)| s == stage), "{stage}: {plan:?}");
        }
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
                channel: "email".into(),
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
    fn time_dependent_when_is_rechecked_daily() {
        let p = "name: p\nstages:\n  - {id: late, offset: 1, template: t, when: 'invoice.days_overdue >= 5 && customer.overdue_count >= 1'}\n";
        let f = fixture(&[p], vec![invoice("F1", "C1", "2026-12-10", "100")]);
        assert_eq!(
            f.plan("2026-12-01", 30, &JournalView::default()),
            vec![row("2026-12-15 late", 0)]
        );
    }

    #[test]
    fn the_invoices_a_hold_may_stop_are_those_it_names() {
        let holds =
            "holds:\n  - invoice: F1\n    until: 2026-12-15\n  - customer: C9\n  - invoice: F404\n";
        let window = SendWindow {
            calendar: Calendar::every_day(),
            send_time: None,
        };
        let invoices = ["F1 C1", "F2 C9", "F3 C2", "F4 C9", "F5 C1", "F6 C90"]
            .map(|s| s.split_once(' ').unwrap())
            .map(|(number, customer)| invoice(number, customer, "2026-12-10", "100"));
        let f = fixture_with(&window, Some(holds), &[STANDARD], invoices.to_vec());
        let held = f.holds.held_in(&f.ledger);
        let may: Vec<bool> = (0..6).map(|i| held.may_hold(InvoiceId::new(i))).collect();
        assert_eq!(may, [true, true, false, true, false, false]);
        for (i, inv) in f.ledger.invoices.iter().enumerate() {
            let active = f.holds.active(inv, date("2026-12-01")).is_some();
            assert_eq!(active, may[i], "{}", inv.number);
        }
    }

    /// Invoices whose numbers sort otherwise than the ledger holds them,
    /// due across December and January.
    fn across_the_year_end() -> Vec<crate::model::Invoice> {
        (0..60u64)
            .map(|i| {
                let due = date("2027-11-25") + chrono::Days::new(i * 7 % 61);
                let mut inv = invoice(
                    &format!("F{}", i * 37 % 60),
                    &format!("C{}", i % 9),
                    "2027-12-01",
                    "100",
                );
                inv.due_date = due;
                inv
            })
            .collect()
    }

    #[test]
    fn a_plan_across_a_year_end_and_a_leap_day_is_in_date_then_number_order() {
        let p = "name: p\nstages:\n  - {id: soon, offset: -3, template: t}\n  - {id: every, offset: 1, template: t, repeat: {every: 4}}\n";
        let f = fixture(&[p], across_the_year_end());
        let plan = f
            .ev()
            .plan(date("2027-12-20"), 75, &JournalView::default(), None);
        let keys: Vec<(NaiveDate, &str)> = plan
            .reminders
            .iter()
            .map(|r| (r.date, &*f.ledger.invoices[r.invoice].number))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for day in ["2027-12-31", "2028-01-01", "2028-02-29", "2028-03-01"] {
            assert!(keys.iter().any(|(d, _)| *d == date(day)), "{day}");
        }
    }

    #[test]
    fn a_plan_that_skips_days_is_the_plan_that_decides_every_day() {
        // The same stages, once with an expression that reads the date (so
        // every day is decided), once without (days on which nothing can
        // change are skipped), on weekdays only (dates move to Monday).
        let stages = "\n  - {id: courtesy, offset: -7, template: t}\n  - {id: overdue, offset: 1, template: t, when: 'WHEN'}\n  - {id: reminder, offset: 9, template: t, repeat: {every: 6, max: 4}}\n  - {id: weekly, offset: 30, template: t, repeat: {every: 7}}\n";
        let skipping = format!(
            "name: p\nstages:{}",
            stages.replace("WHEN", "invoice.amount_due > 0")
        );
        let daily = format!(
            "name: p\nstages:{}",
            stages.replace(
                "WHEN",
                "invoice.amount_due > 0 && days_between(today, today) == 0"
            )
        );
        let window = SendWindow {
            calendar: Calendar::new(&crate::calendar::WEEKDAYS, &HolidaySettings::default()),
            send_time: None,
        };
        let fixtures: Vec<_> = [skipping, daily]
            .iter()
            .map(|p| {
                let f = fixture_with(&window, None, &[p.as_str()], across_the_year_end());
                assert_eq!(f.policies[0].time_dependent(), p.contains("today"), "{p}");
                f
            })
            .collect();
        // From a Wednesday, and from a Sunday: a stage dated the day before
        // then goes out after it.
        for from in ["2027-12-01", "2027-12-05"] {
            let plans: Vec<Vec<String>> = fixtures
                .iter()
                .map(|f| {
                    let plan = f.ev().plan(date(from), 90, &JournalView::default(), None);
                    let occurrences = plan.reminders.iter().map(|r| r.occurrence);
                    f.fired(&plan)
                        .into_iter()
                        .zip(occurrences)
                        .map(|(fired, k)| format!("{fired} #{k}"))
                        .collect()
                })
                .collect();
            assert!(plans[0].len() > 100, "{}", plans[0].len());
            assert_eq!(plans[0], plans[1], "from {from}");
        }
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
}
