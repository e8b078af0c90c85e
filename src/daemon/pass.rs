//! One evaluation pass, as explicit steps: recover → plan → gate → guard → journal → deliver.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::{Daemon, Report, rfc3339};
use crate::deliver::Proofs;
use crate::engine::{Plan, Reminder};
use crate::error::Result;
use crate::journal::{Identity, JournalRow, State, Transaction};
use crate::model::InvoiceId;
use crate::project::Message;
use crate::rules::{Channel, ON_PAID, PolicyId, StageId};

/// A message ready to go: its reminders and their rendering.
type Outgoing<'p> = (Vec<Reminder>, Message<'p>);

/// Rows journaled `planned` are delivered and their `sent` committed in
/// batches of this many (files prove delivery, so a batch is one sync).
const BATCH: usize = 256;

impl Daemon {
    /// One evaluation: finish what the journal still owes, then decide and
    /// deliver today's reminders through the same path `preview` uses.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Result<Report> {
        let date = self.today(now);
        let mut report = Report {
            date: Some(date),
            ..Report::default()
        };
        // Stopped before anything began (a signal while the folder loaded).
        if self.stopping() {
            report.interrupted = true;
            return Ok(report);
        }
        if !self.run.dry_run {
            self.recover(now, &mut report)?;
        }
        let plan = self.plan(date)?;
        let (messages, waiting) = self.gate(&plan, date, now, &mut report);
        if self.run.dry_run {
            self.log_dry_run(&messages);
        }
        if !self.guard(&messages, date, &mut report) || self.run.dry_run {
            return Ok(report);
        }
        let batch = self.journal_planned(&plan, messages, &waiting, date, now)?;
        self.deliver(batch, now, &mut report)?;
        Ok(report)
    }

    /// Step 2: today's reminders, decided as `preview` decides them.
    fn plan(&self, date: NaiveDate) -> Result<Plan> {
        let plan = self
            .project
            .evaluator()
            .plan(date, 1, &self.journal_view()?, None);
        for (invoice, e) in &plan.errors {
            tracing::warn!(invoice = %self.project.ledger.invoices[*invoice].number, "{e}");
        }
        if !plan.unmatched.is_empty() {
            tracing::info!(
                count = plan.unmatched.len(),
                "open invoices matched no policy"
            );
        }
        Ok(plan)
    }

    /// Step 3: the plan's messages whose send time has come. The others
    /// wait, with the skips of their invoices (returned): the next
    /// evaluation decides them again, the same way.
    fn gate(
        &self,
        plan: &Plan,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> (Vec<Vec<Reminder>>, HashSet<InvoiceId>) {
        let clock = self.clock(date, now);
        let mut messages: Vec<Vec<Reminder>> = Vec::new();
        let mut waiting: HashSet<InvoiceId> = HashSet::new();
        for rows in self.project.messages(&plan.reminders).each() {
            let rows: Vec<Reminder> = rows.iter().map(|&i| plan.reminders[i]).collect();
            let send_at = self
                .project
                .send_at(&rows[0])
                .map(|t| t.with_timezone(&Utc));
            match (send_at, clock) {
                (Some(at), Some(clock)) if at > clock => {
                    report.waiting += 1;
                    report.next_send = Some(report.next_send.map_or(at, |n| n.min(at)));
                    waiting.extend(rows.iter().map(|r| r.invoice));
                }
                _ => messages.push(rows),
            }
        }
        if let Some(at) = report.next_send {
            tracing::info!(
                waiting = report.waiting,
                "{} message(s) wait for their send time; the first goes out at {}",
                report.waiting,
                rfc3339(at)
            );
        }
        report.due = messages.len();
        (messages, waiting)
    }

    /// The moment the send times of `date`'s messages are compared with:
    /// now, or with `--as-of` the end of that day unless `--at` says when.
    fn clock(&self, date: NaiveDate, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (self.run.at, self.run.as_of) {
            (Some(at), _) => Some(
                crate::calendar::local_moment(self.project.config.timezone, date, at)
                    .with_timezone(&Utc),
            ),
            (None, Some(_)) => None,
            (None, None) => Some(now),
        }
    }

    /// A dry run shows every message, held or not: over the limit is
    /// exactly when the operator needs to see what would go out.
    fn log_dry_run(&self, messages: &[Vec<Reminder>]) {
        for rows in messages {
            let r = self.project.message(rows, true);
            tracing::info!(invoice = %r.invoice, invoices = rows.len(), policy = %r.policy, stage = %r.stage, occurrence = r.occurrence,
                channel = r.channel.as_str(), to = %r.to, subject = %r.subject, "would send (dry run)");
        }
    }

    /// Step 4: whether the batch may go out. More than `limits.max_per_run`
    /// messages without `--confirm` sends none of them: a mistyped offset
    /// must not mail every customer.
    fn guard(&self, messages: &[Vec<Reminder>], date: NaiveDate, report: &mut Report) -> bool {
        let limit = self.project.config.limits.max_per_run;
        if report.due <= limit || self.run.confirm {
            return true;
        }
        report.held = true;
        let mut by_stage: BTreeMap<(String, String), usize> = BTreeMap::new();
        for rows in messages {
            let policy = &self.project.rulebook.policies[rows[0].policy];
            *by_stage
                .entry((policy.name.clone(), policy.stages[rows[0].stage].id.clone()))
                .or_default() += 1;
        }
        let mut top: Vec<_> = by_stage.into_iter().collect();
        top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        let top: Vec<String> = top
            .iter()
            .take(5)
            .map(|((p, s), n)| format!("{p}/{s}: {n}"))
            .collect();
        let reminders: usize = messages.iter().map(Vec::len).sum();
        let due = if reminders == report.due {
            format!("{reminders} reminders are")
        } else {
            format!("{reminders} reminders in {} messages are", report.due)
        };
        tracing::error!(
            due = report.due,
            limit,
            "held: {due} due on {date}, more than limits.max_per_run ({limit}); nothing was sent. \
             Largest: {}. Check the policies with `relance preview`, then send with `relance run --once --confirm`",
            top.join(", ")
        );
        false
    }

    /// Step 5: the whole batch journaled in one transaction, skipped
    /// occurrences and every reminder `planned`, before anything is
    /// delivered. Returns the messages this process took: a racing run may
    /// have planned some of their reminders a moment ago.
    fn journal_planned(
        &self,
        plan: &Plan,
        messages: Vec<Vec<Reminder>>,
        waiting: &HashSet<InvoiceId>,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing<'_>>> {
        let rendered: Vec<Outgoing> = messages
            .into_iter()
            .map(|rows| {
                let r = self.project.message(&rows, true);
                (rows, r)
            })
            .collect();
        let journal = self.journal();
        let now_s = rfc3339(now);
        let date_s = date.to_string();
        let tx = journal.begin()?;
        // Which stage overtook each skipped one (one reminder per invoice and
        // date): `history` shows it as the reason of the skip.
        let fired: BTreeMap<InvoiceId, &Reminder> = rendered
            .iter()
            .flat_map(|(rows, _)| rows.iter().map(|p| (p.invoice, p)))
            .collect();
        for s in plan
            .skipped
            .iter()
            .filter(|s| !waiting.contains(&s.invoice))
        {
            let identity = self.identity(s);
            let policy = &self.project.rulebook.policies[s.policy];
            let reason = fired.get(&s.invoice).map(|p| {
                format!(
                    "overtaken by {}",
                    crate::text::stage_label(&policy.stages[p.stage].id, p.occurrence)
                )
            });
            let row = JournalRow {
                channel: policy.stages[s.stage].channel.as_str().to_string(),
                last_error: reason,
                ..JournalRow::new(identity, State::Skipped, &date_s)
            };
            journal.insert(&row, &now_s)?;
        }
        let mut mine = Vec::new();
        for (rows, r) in rendered {
            let message_id = self.deliverer.message_id(&r.message);
            let whole = rows.len();
            let mut taken = Vec::new();
            for planned in rows {
                let identity = self.identity(&planned);
                let row = JournalRow {
                    channel: r.channel.as_str().to_string(),
                    recipient: r.to.to_string(),
                    subject: r.subject.clone(),
                    message_id: message_id.clone(),
                    message: r.message.clone(),
                    ..JournalRow::new(identity, State::Planned, &date_s)
                };
                // Another process may have planned it a moment ago: then it is theirs.
                if journal.insert(&row, &now_s)? {
                    taken.push(planned);
                }
            }
            if taken.len() == whole {
                mine.push((taken, r));
            } else if !taken.is_empty() {
                // Partly taken by a racing run: what is ours goes out as its
                // own message, under the token journaled for it.
                let mut part = self.project.message(&taken, true);
                part.message = r.message;
                mine.push((taken, part));
            }
        }
        tx.commit()?;
        Ok(mine)
    }

    /// The journal's identity of a planned reminder.
    fn identity(&self, planned: &Reminder) -> Identity {
        let policy = &self.project.rulebook.policies[planned.policy];
        Identity {
            invoice: self.project.ledger.invoices[planned.invoice]
                .number
                .to_string(),
            policy: policy.name.clone(),
            stage: policy.stages[planned.stage].id.clone(),
            occurrence: planned.occurrence,
        }
    }

    /// Step 6: delivers planned messages, committing `sent` in batches
    /// (files prove delivery after a crash) or one by one over SMTP.
    fn deliver(&self, batch: Vec<Outgoing>, now: DateTime<Utc>, report: &mut Report) -> Result<()> {
        let journal = self.journal();
        let batched = !self.deliverer.is_smtp();
        let mut open: Option<Transaction> = None;
        for (i, (rows, r)) in batch.iter().enumerate() {
            if self.stopping() {
                report.interrupted = true;
                tracing::info!(
                    left = batch.len() - i,
                    "stopping: the rest stays planned and is delivered at the next start"
                );
                break;
            }
            if batched && open.is_none() {
                open = Some(journal.begin()?);
            }
            self.deliver_one(rows, r, now, report, batched)?;
            if (i + 1) % BATCH == 0
                && let Some(tx) = open.take()
            {
                self.deliverer.flush().map_err(delivery_error)?;
                tx.commit()?;
            }
        }
        if let Some(tx) = open {
            self.deliverer.flush().map_err(delivery_error)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Delivers one message (the reminders `rows`, rendered as `r`) and
    /// journals the outcome of each of its reminders. `in_batch`: the caller
    /// flushes the delivered files before it commits the batch; else they
    /// are flushed here, and the message's rows change in one transaction.
    fn deliver_one(
        &self,
        rows: &[Reminder],
        r: &Message,
        now: DateTime<Utc>,
        report: &mut Report,
        in_batch: bool,
    ) -> Result<()> {
        let journal = self.journal();
        let identities: Vec<Identity> = rows.iter().map(|p| self.identity(p)).collect();
        let now_s = rfc3339(now);
        let result = match &r.error {
            Some(e) => Err(e.clone()),
            None => {
                let items: Vec<_> = rows
                    .iter()
                    .map(|p| &self.project.ledger.invoices[p.invoice])
                    .zip(&identities)
                    .collect();
                self.deliverer.deliver(r, &items).map_err(|e| e.to_string())
            }
        };
        let result = match result {
            Ok(id) if !in_batch => self
                .deliverer
                .flush()
                .map(|()| id)
                .map_err(|e| e.to_string()),
            other => other,
        };
        // The rows of a message change together; what is logged has been
        // committed (an operator, or a test, reads the journal after the log).
        let tx = if in_batch {
            None
        } else {
            Some(journal.begin()?)
        };
        let retry =
            match &result {
                Ok(id) => {
                    for identity in &identities {
                        journal.mark_sent(identity, id, &now_s)?;
                    }
                    None
                }
                Err(error) => {
                    let attempts = journal.state_attempts(&identities[0])? + 1;
                    let next =
                        self.project.config.retry.delay(attempts).map(|d| {
                            rfc3339(now + chrono::Duration::from_std(d).unwrap_or_default())
                        });
                    for identity in &identities {
                        journal.mark_failed(identity, error, next.as_deref(), &now_s)?;
                    }
                    Some((attempts, next))
                }
            };
        if let Some(tx) = tx {
            tx.commit()?;
        }
        match (result, retry) {
            (Ok(id), _) => {
                report.sent += 1;
                tracing::info!(event = "sent", invoice = %r.invoice, invoices = rows.len(), policy = %r.policy, stage = %r.stage,
                    occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, id = %id, "sent");
            }
            (Err(error), Some((attempts, Some(at)))) => {
                report.failed += 1;
                tracing::warn!(event = "failed", invoice = %r.invoice, policy = %r.policy, stage = %r.stage,
                    occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, attempts,
                    retry_at = %at, error = %error, "delivery failed: {error}")
            }
            (Err(error), retry) => {
                report.failed += 1;
                let attempts = retry.map_or(0, |(a, _)| a);
                tracing::error!(event = "failed", invoice = %r.invoice, policy = %r.policy, stage = %r.stage,
                    occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, attempts,
                    error = %error, "delivery failed, giving up: {error}")
            }
        }
        Ok(())
    }

    /// Step 1: crash leftovers and due retries, message by message: the
    /// rows that share a message token went out, or go out again, together.
    pub(super) fn recover(&self, now: DateTime<Utc>, report: &mut Report) -> Result<()> {
        let journal = self.journal();
        let now_s = rfc3339(now);
        let mut by_message: Vec<(String, Vec<JournalRow>)> = Vec::new();
        for p in journal.pending(&now_s)? {
            match by_message.iter_mut().find(|(token, _)| *token == p.message) {
                Some((_, rows)) => rows.push(p),
                None => by_message.push((p.message.clone(), vec![p])),
            }
        }
        let mut proofs = self.deliverer.proofs();
        for (token, pending) in by_message {
            if self.stopping() {
                report.interrupted = true;
                break;
            }
            let mut claimed = Vec::new();
            for p in pending {
                if p.state == State::Planned && p.owner.is_some_and(delivering_elsewhere) {
                    continue; // another running relance is delivering it
                }
                if !journal.claim(&p, &now_s)? {
                    continue; // another run took it a moment ago
                }
                if p.state == State::Planned {
                    report.recovered += 1;
                }
                claimed.push(p);
            }
            let Some(first) = claimed.first() else {
                continue;
            };
            // A written file proves delivery before an interruption, between
            // `planned` (or a retry) and the commit of `sent`: the message is
            // sent, even if its invoices were paid since, and is not written again.
            if let Some(id) = delivered_file(&mut proofs, first) {
                for p in &claimed {
                    journal.mark_sent(&p.identity, &id, &now_s)?;
                }
                tracing::info!(invoice = %first.identity.invoice, stage = %first.identity.stage, "recovered: delivered before the interruption");
                continue;
            }
            let mut rows = Vec::new();
            let mut kept = Vec::new();
            for p in &claimed {
                match self.resolve(p) {
                    Ok(planned) => {
                        rows.push(planned);
                        kept.push(p);
                    }
                    Err(reason) => {
                        journal.mark_skipped(&p.identity, reason.as_str(), &now_s)?;
                        tracing::info!(invoice = %p.identity.invoice, stage = %p.identity.stage, "not retried: {reason}");
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            // A retry goes out only when a new reminder could: on a sending
            // day, to an invoice neither held nor paused by a promise. The
            // whole message waits (its token names one file) for an
            // evaluation on a day it can go out.
            let today = self.today(now);
            let evaluator = self.project.evaluator();
            if let Some(why) = rows.iter().find_map(|r| evaluator.waits(r, today)) {
                for p in kept {
                    journal.release(p, &now_s)?;
                }
                report.deferred += 1;
                tracing::info!(invoice = %first.identity.invoice, stage = %first.identity.stage, "delivery waits: {why}");
                continue;
            }
            let mut r = self.project.message(&rows, true);
            // The files and Message-ID of the message are those journaled.
            r.message = token;
            self.deliver_one(&rows, &r, now, report, false)?;
        }
        Ok(())
    }

    /// Finds the reminder a journal row stands for in the current project.
    fn resolve(&self, p: &JournalRow) -> Result<Reminder, String> {
        let id = &p.identity;
        let invoice = self
            .project
            .ledger
            .find(&id.invoice)
            .ok_or("the invoice is no longer in the feeds")?;
        // A thank-you is owed to a paid invoice, every other reminder to an open one.
        let inv = &self.project.ledger.invoices[invoice];
        if id.stage == ON_PAID {
            if !inv.is_settled() {
                return Err("the invoice is no longer paid".into());
            }
        } else if !inv.is_open() {
            return Err("the invoice is no longer open".into());
        }
        let policy = self
            .project
            .rulebook
            .policies
            .iter()
            .position(|x| x.name == id.policy)
            .ok_or("the policy no longer exists")?;
        let stage = self.project.rulebook.policies[policy]
            .stages
            .iter()
            .position(|s| s.id == id.stage)
            .ok_or("the stage no longer exists")?;
        let date = NaiveDate::parse_from_str(&p.date, "%Y-%m-%d")
            .map_err(|_| "bad date in the journal")?;
        Ok(Reminder {
            date,
            invoice,
            policy: PolicyId::new(policy),
            stage: StageId::new(stage),
            occurrence: id.occurrence,
        })
    }
}

fn delivery_error(e: crate::deliver::DeliveryError) -> crate::error::Error {
    crate::error::Error::Delivery(e.to_string())
}

/// The id a pending reminder was delivered with, if what its message
/// wrote is there (the Message-ID for an email, the file for the others,
/// as [`crate::deliver::Deliverer::deliver`] returns them).
fn delivered_file(proofs: &mut Proofs, p: &JournalRow) -> Option<String> {
    let date = NaiveDate::parse_from_str(&p.date, "%Y-%m-%d").ok()?;
    proofs.delivered(date, &p.message, Channel::parse(&p.channel)?)
}

/// Whether the process that planned a reminder may still be delivering it.
///
/// Never this process: it leaves nothing `planned` behind while it runs (a
/// batch is delivered, or the process stops), so a row with our pid was left
/// by an earlier process that had the same pid, as in a container where
/// relance is always pid 1. Another pid counts only while it is a running
/// relance: after a reboot its number may belong to an unrelated program,
/// and a zombie delivers nothing. Without /proc (not Linux), no process is.
fn delivering_elsewhere(owner: u32) -> bool {
    owner != std::process::id()
        && program_of(owner).is_some_and(|p| Some(p) == program_of(std::process::id()))
}

/// The command name of a live (not zombie) process, from /proc/PID/stat.
fn program_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE …": the name may itself hold spaces and parentheses.
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let state = tail.trim_start().chars().next()?;
    (!matches!(state, 'Z' | 'X' | 'x')).then(|| name.to_string())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_another_running_relance_can_be_delivering_a_planned_reminder() {
        let me = std::process::id();
        assert!(program_of(me).is_some());
        assert!(
            !delivering_elsewhere(me),
            "a row with our own pid is a leftover"
        );
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(program_of(other.id()).as_deref(), Some("sleep"));
        assert!(
            !delivering_elsewhere(other.id()),
            "another program with a reused pid"
        );
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(program_of(other.id()), None, "a process that is gone");
    }
}
