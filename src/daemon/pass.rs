//! One evaluation pass, as explicit steps: recover → plan → gate → guard → journal → deliver.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Daemon, Report, Role, rfc3339};
use crate::deliver::{Delivered, Deliverer, Proofs};
use crate::engine::{Plan, Reminder};
use crate::error::Result;
use crate::journal::{Identity, JournalRow, State, Transaction};
use crate::model::{Invoice, InvoiceId};
use crate::project::Message;
use crate::rules::{Channel, ON_PAID, PolicyId, StageId};

/// A message ready to go: its reminders and their rendering.
pub(super) type Outgoing<'p> = (Vec<Reminder>, Message<'p>);

/// The messages a pass decided, as the plan's reminders: those that go out
/// now, and those that wait for a person's approval.
struct Decided {
    messages: Vec<Vec<Reminder>>,
    awaiting: Vec<Vec<Reminder>>,
}

/// Logs each invoice whose first contact, journaled in `taken`, restarted
/// its ladder (`first_contact: restart`).
fn log_restarts(project: &crate::project::Project, plan: &Plan, taken: &[Outgoing]) {
    if plan.restarts.is_empty() {
        return;
    }
    let taken: HashSet<InvoiceId> = taken
        .iter()
        .flat_map(|(rows, _)| rows.iter().map(|r| r.invoice))
        .collect();
    for r in plan.restarts.iter().filter(|r| taken.contains(&r.invoice)) {
        let number = &project.ledger.invoices[r.invoice].number;
        let stage = &project.rulebook.policies[r.policy].stages[r.stage].id;
        tracing::info!(invoice = %number, stage = %stage,
            "first contact: invoice {number} restarted its ladder at {stage}");
    }
}

/// How long the outcome of an email the server answered is kept while the
/// journal cannot be written (a PostgreSQL restart or failover), before the
/// pass gives up on it.
const KEEP_OUTCOME: std::time::Duration = std::time::Duration::from_secs(120);

/// Rows journaled `planned` are delivered and their `sent` committed in
/// batches of this many (files prove delivery, so a batch is one sync).
const BATCH: usize = 256;

impl Daemon {
    /// One evaluation: finish what the journal still owes, then decide and
    /// deliver today's reminders through the same path `preview` uses.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Result<Report> {
        let today = self.evaluate_today(now);
        // Even after an error: the letters written before it are posted too.
        self.bind_letters();
        let mut report = today?;
        if let (Some(journal), false) = (&self.journal, self.run.dry_run) {
            report.awaiting = journal.awaiting_count()?;
            if report.awaiting > 0 {
                tracing::info!(
                    awaiting = report.awaiting,
                    "{} reminder(s) awaiting approval (relance approve INVOICE… | --all)",
                    report.awaiting
                );
            }
            let (retries, next) = journal.retries()?;
            report.retries = retries;
            report.next_retry = next
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|t| t.with_timezone(&Utc));
            if let Some(at) = report.next_retry {
                tracing::info!(
                    retries,
                    next_retry = %rfc3339(at),
                    "{retries} failed delivery(ies) will be retried; the next retry is due at {}",
                    rfc3339(at)
                );
            }
            report.given_up = journal.given_up()?;
            if report.given_up > 0 {
                tracing::warn!(
                    given_up = report.given_up,
                    "{} failed delivery(ies) will not be retried: `relance history` says why; \
                     `relance retry INVOICE…` (or `--all`) re-queues them once the cause is fixed",
                    report.given_up
                );
            }
        }
        Ok(report)
    }

    /// The file of each day's letters, written again for the days that
    /// have new ones (see [`Deliverer::bind_letters`]). A failure is logged:
    /// the letters themselves are delivered, and a later pass tries again.
    fn bind_letters(&self) {
        match self.deliverer.bind_letters() {
            Ok(files) => {
                for file in files {
                    tracing::info!(file = %file.display(), "the day's letters, in one file to print");
                }
            }
            Err(e) => tracing::warn!("the day's letters in one file: {e}"),
        }
    }

    /// [`Daemon::evaluate`] before it counts the retries still pending.
    fn evaluate_today(&mut self, now: DateTime<Utc>) -> Result<Report> {
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
        // A server down at the last pass is tried again.
        self.deliverer.begin_pass();
        // On a shared journal only the instance holding the lease decides;
        // every one delivers what it claims.
        let shared = !self.run.dry_run && self.journal()?.is_shared();
        if shared {
            if self.take_role()? == Role::Delivering {
                self.deliver_claimed(now, &mut report)?;
                return Ok(report);
            }
            self.expire_awaiting(&rfc3339(now))?;
        } else if !self.run.dry_run {
            self.recover(now, &mut report)?;
        }
        let plan = self.plan(date)?;
        let (messages, waiting) = self.gate(&plan, date, now, &mut report);
        // Those a person approves first are journaled, not delivered: no
        // customer gets them now, so they count for no limit.
        let (awaiting, messages): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|rows| self.needs_approval(rows));
        report.due = messages.len();
        if self.run.dry_run {
            self.log_dry_run(&messages, &awaiting);
        }
        if !self.guard(&messages, date, &mut report) || self.run.dry_run {
            return Ok(report);
        }
        let decided = Decided { messages, awaiting };
        let batch = self.journal_planned(&plan, decided, &waiting, date, now)?;
        if shared {
            // Planned, claimed by nobody yet: delivered by every instance.
            drop(batch);
            self.deliver_claimed(now, &mut report)?;
        } else {
            self.deliver(batch, now, &mut report)?;
        }
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
        (messages, waiting)
    }

    /// Whether a message waits for `relance approve`: its stage says
    /// `approve: true` (a message never mixes such a stage with others).
    fn needs_approval(&self, rows: &[Reminder]) -> bool {
        rows.iter()
            .any(|r| self.project.rulebook.policies[r.policy].stages[r.stage].approve)
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
    fn log_dry_run(&self, messages: &[Vec<Reminder>], awaiting: &[Vec<Reminder>]) {
        let all = messages.iter().map(|rows| (rows, "would send (dry run)"));
        let awaiting = awaiting
            .iter()
            .map(|rows| (rows, "would await approval (dry run)"));
        for (rows, what) in all.chain(awaiting) {
            let r = self.project.message(rows, true);
            tracing::info!(invoice = %r.invoice, invoices = rows.len(), policy = %r.policy, stage = %r.stage, occurrence = r.occurrence,
                channel = r.channel.as_str(), to = %r.to, subject = %r.subject, "{what}");
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
    /// occurrences, every reminder `planned` and those a person approves
    /// first `awaiting_approval`, before anything is delivered. Returns the
    /// messages this process took: a racing run may have planned some of
    /// their reminders a moment ago.
    fn journal_planned(
        &self,
        plan: &Plan,
        decided: Decided,
        waiting: &HashSet<InvoiceId>,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing<'_>>> {
        let rendered: Vec<Outgoing> = decided
            .messages
            .into_iter()
            .map(|rows| {
                let r = self.project.message(&rows, true);
                (rows, r)
            })
            .collect();
        // Their subject and recipients are journaled; their body is
        // rendered when they are approved.
        let awaiting: Vec<Outgoing> = decided
            .awaiting
            .into_iter()
            .map(|rows| {
                let r = self.project.message(&rows, false);
                (rows, r)
            })
            .collect();
        let journal = self.journal()?;
        let now_s = rfc3339(now);
        let date_s = date.to_string();
        let tx = journal.begin()?;
        // Which stage overtook each skipped one (one reminder per invoice and
        // date): `history` shows it as the reason of the skip.
        let fired: BTreeMap<InvoiceId, &Reminder> = rendered
            .iter()
            .chain(&awaiting)
            .flat_map(|(rows, _)| rows.iter().map(|p| (p.invoice, p)))
            .collect();
        // Every row of the batch first, then all inserted at once: a
        // shared journal takes hundreds of rows per round trip.
        let mut batch: Vec<JournalRow> = Vec::new();
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
            batch.push(JournalRow {
                channel: policy.stages[s.stage].channel.as_str().to_string(),
                last_error: reason,
                customer_id: Some(self.customer_of(s)),
                ..JournalRow::new(identity, State::Skipped, &date_s)
            });
        }
        let skipped = batch.len();
        let row = |planned: &Reminder, r: &Message, state: State| JournalRow {
            channel: r.channel.as_str().to_string(),
            recipient: r.to.to_string(),
            subject: r.subject.clone(),
            message_id: self.deliverer.message_id(&r.message),
            message: r.message.clone(),
            customer_id: Some(self.customer_of(planned)),
            ..JournalRow::new(self.identity(planned), state, &date_s)
        };
        for (rows, r) in &awaiting {
            batch.extend(rows.iter().map(|p| row(p, r, State::AwaitingApproval)));
        }
        for (rows, r) in &rendered {
            batch.extend(rows.iter().map(|p| row(p, r, State::Planned)));
        }
        let inserted = journal.insert_all(&batch, &now_s)?;
        let mut inserted = inserted[skipped..].iter().copied();
        for (rows, r) in &awaiting {
            let new = inserted.by_ref().take(rows.len()).fold(false, |a, b| a | b);
            if new {
                tracing::info!(event = "awaiting_approval", invoice = %r.invoice, invoices = rows.len(), policy = %r.policy,
                    stage = %r.stage, occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to,
                    "awaits approval: `relance approve {}` sends it, `relance reject {} --reason …` drops it", r.invoice, r.invoice);
            }
        }
        let mut mine = Vec::new();
        for (rows, r) in rendered {
            let whole = rows.len();
            // Another process may have planned some a moment ago: then they are theirs.
            let taken: Vec<Reminder> = rows
                .into_iter()
                .zip(inserted.by_ref())
                .filter_map(|(planned, new)| new.then_some(planned))
                .collect();
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
        log_restarts(&self.project, plan, &mine);
        Ok(mine)
    }

    /// The customer a reminder is for, as the journal keeps it: the
    /// invoice may leave the feeds, its history stays the customer's.
    fn customer_of(&self, planned: &Reminder) -> String {
        self.project.ledger.invoices[planned.invoice]
            .bill_to
            .id
            .to_string()
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

    /// Step 6: delivers planned messages. Files are committed `sent` in
    /// batches (a file proves delivery after a crash); over SMTP each email
    /// is committed the moment the server accepts it, and several go out at
    /// once while the task files are written beside them.
    pub(super) fn deliver(
        &self,
        batch: Vec<Outgoing>,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<()> {
        if self.deliverer.is_smtp() {
            return self.deliver_in_parallel(&batch, now, report);
        }
        let journal = self.journal()?;
        let mut open: Option<Transaction> = None;
        for (i, (rows, r)) in batch.iter().enumerate() {
            if self.stopping() {
                stopped(report, batch.len() - i);
                break;
            }
            if open.is_none() {
                open = Some(journal.begin()?);
            }
            self.deliver_one(rows, r, now, report, true)?;
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

    /// Step 6 over SMTP: `delivery.connections` senders take the emails in
    /// turn, one more thread writes the letters, call sheets and tasks, and
    /// this thread journals what each reports as it comes. A server that is
    /// slow to answer holds one sender, not the batch, and never the files.
    fn deliver_in_parallel(
        &self,
        batch: &[Outgoing],
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<()> {
        let jobs: Vec<Job> = batch
            .iter()
            .map(|(rows, r)| (r, self.items(rows)))
            .collect();
        let (emails, files): (Vec<usize>, Vec<usize>) =
            (0..jobs.len()).partition(|&i| jobs[i].0.channel == Channel::Email);
        let (deliverer, stop) = (&self.deliverer, &*self.stop);
        // Set when journaling fails: the senders stop rather than send
        // what could not be journaled.
        let abort = AtomicBool::new(false);
        let halt = || stop.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst);
        let next = AtomicUsize::new(0);
        // Sends message `i` and reports it; false once nobody listens. An
        // email's sender then waits until its `sent` is committed: a crash
        // can resend at most the one email per connection that the server
        // accepted and the journal has not recorded yet, never a queue of them.
        let send_one = |i: usize, tx: &mpsc::Sender<Reported>| {
            let (r, items) = &jobs[i];
            let outcome = send(deliverer, r, items);
            if r.channel != Channel::Email {
                return tx.send((i, outcome, None)).is_ok();
            }
            let (ack, journaled) = mpsc::sync_channel(1);
            tx.send((i, outcome, Some(ack))).is_ok() && journaled.recv().is_ok()
        };
        let handled = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Reported>();
            for _ in 0..deliverer.connections().min(emails.len()) {
                let (tx, emails, next, halt, send_one) =
                    (tx.clone(), &emails, &next, &halt, &send_one);
                scope.spawn(move || {
                    while !halt() {
                        match emails.get(next.fetch_add(1, Ordering::SeqCst)) {
                            Some(&i) if send_one(i, &tx) => {}
                            _ => break,
                        }
                    }
                });
            }
            let (files_ref, halt_ref, send_one_ref) = (&files, &halt, &send_one);
            scope.spawn(move || {
                for &i in files_ref {
                    if halt_ref() || !send_one_ref(i, &tx) {
                        break;
                    }
                }
            });
            let handled = self.journal_outcomes(batch, &rx, files.len(), now, report);
            if handled.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            handled
        })?;
        if handled < batch.len() {
            stopped(report, batch.len() - handled);
        }
        Ok(())
    }

    /// Journals the outcomes the senders report, until they are all done:
    /// an email's at once, the files' in batches of [`BATCH`] (synced
    /// first), the last batch when the last file is written. Returns how
    /// many messages were journaled.
    fn journal_outcomes(
        &self,
        batch: &[Outgoing],
        outcomes: &mpsc::Receiver<Reported>,
        files: usize,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<usize> {
        let journal = self.journal()?;
        let mut written: Vec<(usize, Outcome)> = Vec::new();
        let (mut handled, mut files_seen) = (0, 0);
        let commit_files =
            |written: &mut Vec<(usize, Outcome)>, report: &mut Report| -> Result<()> {
                if written.is_empty() {
                    return Ok(());
                }
                self.deliverer.flush().map_err(delivery_error)?;
                let tx = journal.begin()?;
                let mut verdicts = Vec::new();
                for (i, outcome) in written.drain(..) {
                    verdicts.push((
                        i,
                        self.record(&batch[i].0, &batch[i].1, outcome, now, report)?,
                    ));
                }
                tx.commit()?;
                for (i, verdict) in verdicts {
                    log_verdict(&batch[i].1, batch[i].0.len(), verdict);
                }
                Ok(())
            };
        let mut kept = std::time::Instant::now();
        loop {
            // A slow server must not let the claims of the batch expire:
            // another instance would take them and send them again.
            let (i, outcome, ack) = match outcomes.recv_timeout(self.claims_refresh()) {
                Ok(reported) => reported,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.keep_claims(&mut kept)?;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            self.keep_claims(&mut kept)?;
            handled += 1;
            if let Some(ack) = ack {
                let verdict = self.record_committed(&batch[i], outcome, now, report)?;
                // Committed: its sender may send the next email.
                let _ = ack.send(());
                log_verdict(&batch[i].1, batch[i].0.len(), verdict);
                continue;
            }
            files_seen += 1;
            written.push((i, outcome));
            if written.len() == BATCH || files_seen == files {
                commit_files(&mut written, report)?;
            }
        }
        commit_files(&mut written, report)?;
        Ok(handled)
    }

    /// Journals the outcome of an email in a transaction of its own. The
    /// server has answered: should the journal be unreachable a moment (its
    /// PostgreSQL server restarting), the outcome is kept and journaled
    /// once it is back, rather than lost, which would send the email again.
    fn record_committed(
        &self,
        (rows, r): &Outgoing,
        outcome: Outcome,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<Verdict> {
        let journal = self.journal()?;
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let counted = report.clone();
            let attempt = journal.begin().and_then(|tx| {
                let verdict = self.record(rows, r, outcome.clone(), now, report)?;
                tx.commit()?;
                Ok(verdict)
            });
            match attempt {
                Err(e) if e.is_transient() && started.elapsed() < KEEP_OUTCOME => {
                    *report = counted;
                    tracing::warn!(invoice = %r.invoice, "{e}; the outcome is journaled once the journal answers");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                done => return done,
            }
        }
    }

    /// The invoices a message covers, each with its reminder's identity.
    fn items(&self, rows: &[Reminder]) -> Vec<(&Invoice, Identity)> {
        rows.iter()
            .map(|p| (&self.project.ledger.invoices[p.invoice], self.identity(p)))
            .collect()
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
        let mut outcome = send(&self.deliverer, r, &self.items(rows));
        if !in_batch
            && outcome.is_ok()
            && let Err(e) = self.deliverer.flush()
        {
            outcome = Err(Failure::temporary(e.to_string()));
        }
        // The rows of a message change together; what is logged has been
        // committed (an operator, or a test, reads the journal after the log).
        let tx = if in_batch {
            None
        } else {
            Some(self.journal()?.begin()?)
        };
        let verdict = self.record(rows, r, outcome, now, report)?;
        if let Some(tx) = tx {
            tx.commit()?;
        }
        log_verdict(r, rows.len(), verdict);
        Ok(())
    }

    /// Journals the outcome of one message for each of its reminders:
    /// `sent` (with who refused it, if some recipients did), `failed` with a
    /// retry time, or `failed` for good (attempts used up, or a permanent
    /// refusal, which `relance retry` re-queues). Returns what to log once
    /// it is committed.
    fn record(
        &self,
        rows: &[Reminder],
        r: &Message,
        outcome: Outcome,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<Verdict> {
        let journal = self.journal()?;
        let identities: Vec<Identity> = rows.iter().map(|p| self.identity(p)).collect();
        let now_s = rfc3339(now);
        let failure = match outcome {
            Ok(delivered) => {
                let refused = delivered.refused.join("; ");
                for identity in &identities {
                    journal.mark_sent(identity, &delivered.id, &now_s)?;
                    if !refused.is_empty() {
                        journal.note_refused(identity, &delivered.accepted.join(", "), &refused)?;
                    }
                }
                report.sent += 1;
                return Ok(Verdict::Sent(delivered));
            }
            Err(failure) => failure,
        };
        report.failed += 1;
        let attempts = journal.state_attempts(&identities[0])? + 1;
        let error = match failure.permanent {
            true => format!(
                "{} (permanent: not retried; `relance retry {}` re-queues it)",
                failure.error, r.invoice
            ),
            false => failure.error,
        };
        let next = match failure.permanent {
            true => None,
            false => self
                .project
                .config
                .retry
                .delay(attempts)
                .map(|d| rfc3339(now + chrono::Duration::from_std(d).unwrap_or_default())),
        };
        for identity in &identities {
            journal.mark_failed(identity, &error, next.as_deref(), &now_s)?;
        }
        Ok(Verdict::Failed {
            error,
            attempts,
            next,
            permanent: failure.permanent,
        })
    }

    /// Step 1: crash leftovers, due retries and approved reminders, message
    /// by message: the rows that share a message token went out, or go out
    /// again, together.
    pub(super) fn recover(&self, now: DateTime<Utc>, report: &mut Report) -> Result<()> {
        let journal = self.journal()?;
        let now_s = rfc3339(now);
        self.expire_awaiting(&now_s)?;
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
            if let Some((rows, r)) = self.ready(token, &claimed, &mut proofs, now, report)? {
                self.deliver_one(&rows, &r, now, report, false)?;
            }
        }
        Ok(())
    }

    /// What becomes of a message whose pending rows this process claimed
    /// (the message `token`): `sent` when what it wrote proves it went out
    /// before an interruption, `skipped` for the rows no longer due, given
    /// back when it cannot go out today; else the message to deliver now.
    pub(super) fn ready(
        &self,
        token: String,
        claimed: &[JournalRow],
        proofs: &mut Proofs,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<Option<Outgoing<'_>>> {
        let journal = self.journal()?;
        let now_s = rfc3339(now);
        let Some(first) = claimed.first() else {
            return Ok(None);
        };
        // A written file proves delivery before an interruption, between
        // `planned` (or a retry) and the commit of `sent`: the message is
        // sent, even if its invoices were paid since, and is not written again.
        if let Some(id) = delivered_file(proofs, first) {
            for p in claimed {
                journal.mark_sent(&p.identity, &id, &now_s)?;
            }
            tracing::info!(invoice = %first.identity.invoice, stage = %first.identity.stage, "recovered: delivered before the interruption");
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut kept = Vec::new();
        for p in claimed {
            match self.resolve(p) {
                Ok(planned) => {
                    rows.push(planned);
                    kept.push(p);
                }
                Err(reason) => {
                    let approved = p.state == State::Approved;
                    let reason = match approved && self.paid(p) {
                        true => "paid before it was approved".to_string(),
                        false => reason,
                    };
                    journal.mark_skipped(&p.identity, reason.as_str(), &now_s)?;
                    let what = if approved { "not sent" } else { "not retried" };
                    tracing::info!(invoice = %p.identity.invoice, stage = %p.identity.stage, "{what}: {reason}");
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
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
            return Ok(None);
        }
        let mut r = self.project.message(&rows, true);
        // The files and Message-ID of the message are those journaled.
        r.message = token;
        Ok(Some((rows, r)))
    }

    /// Drops the reminders awaiting approval that can no longer go out (the
    /// invoice paid or gone, the stage removed): `skipped`, so that nobody
    /// is asked to approve them and the count of those waiting stays true.
    fn expire_awaiting(&self, now: &str) -> Result<()> {
        let journal = self.journal()?;
        for p in journal.awaiting_approval()? {
            let Err(reason) = self.resolve(&p) else {
                continue;
            };
            let reason = match self.paid(&p) {
                true => "paid while it awaited approval".to_string(),
                false => format!("{reason} (it awaited approval)"),
            };
            journal.mark_skipped(&p.identity, &reason, now)?;
            tracing::info!(invoice = %p.identity.invoice, stage = %p.identity.stage, "no longer awaits approval: {reason}");
        }
        Ok(())
    }

    /// Whether the invoice of a journal row is paid now.
    fn paid(&self, p: &JournalRow) -> bool {
        let ledger = &self.project.ledger;
        ledger
            .find(&p.identity.invoice)
            .is_some_and(|i| ledger.invoices[i].is_settled())
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

/// A message to send, with the invoices it covers and their reminders' identities.
type Job<'b, 'p> = (&'b Message<'p>, Vec<(&'b Invoice, Identity)>);

/// What came of delivering one message.
type Outcome = std::result::Result<Delivered, Failure>;

/// What a sender reports: which message, how it went, and for an email the
/// way to tell its sender that its outcome is committed.
type Reported = (usize, Outcome, Option<mpsc::SyncSender<()>>);

/// Why a message was not delivered, and whether trying again can help.
#[derive(Clone)]
struct Failure {
    error: String,
    permanent: bool,
}

impl Failure {
    fn temporary(error: String) -> Failure {
        Failure {
            error,
            permanent: false,
        }
    }
}

/// Delivers one message and journals nothing: what a sender thread runs.
fn send(deliverer: &Deliverer, r: &Message, items: &[(&Invoice, Identity)]) -> Outcome {
    if let Some(e) = &r.error {
        return Err(Failure::temporary(e.clone()));
    }
    let items: Vec<(&Invoice, &Identity)> = items.iter().map(|(i, id)| (*i, id)).collect();
    deliverer.deliver(r, &items).map_err(|e| Failure {
        permanent: e.is_permanent(),
        error: e.to_string(),
    })
}

/// What was journaled of a message, to be logged once committed (an
/// operator, or a test, reads the journal after the log).
enum Verdict {
    Sent(Delivered),
    Failed {
        error: String,
        attempts: u32,
        /// When it is retried; `None`: given up.
        next: Option<String>,
        permanent: bool,
    },
}

/// Logs what became of a message of `invoices` invoices.
fn log_verdict(r: &Message, invoices: usize, verdict: Verdict) {
    match verdict {
        Verdict::Sent(delivered) => {
            let id = &delivered.id;
            tracing::info!(event = "sent", invoice = %r.invoice, invoices, policy = %r.policy, stage = %r.stage,
                occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, id = %id, "sent");
            if !delivered.refused.is_empty() {
                tracing::warn!(event = "refused", invoice = %r.invoice, accepted = %delivered.accepted.join(", "),
                    "some recipients refused the message (not retried): {}", delivered.refused.join("; "));
            }
        }
        Verdict::Failed {
            error,
            attempts,
            next: Some(at),
            ..
        } => {
            tracing::warn!(event = "failed", invoice = %r.invoice, policy = %r.policy, stage = %r.stage,
            occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, attempts,
            retry_at = %at, error = %error, "delivery failed: {error}")
        }
        Verdict::Failed {
            error,
            attempts,
            next: None,
            permanent,
        } => {
            tracing::error!(event = "failed", invoice = %r.invoice, policy = %r.policy, stage = %r.stage,
            occurrence = r.occurrence, channel = r.channel.as_str(), to = %r.to, attempts,
            permanent, error = %error, "delivery failed, giving up: {error}")
        }
    }
}

/// Notes that a signal stopped the batch with `left` messages to go.
fn stopped(report: &mut Report, left: usize) {
    report.interrupted = true;
    tracing::info!(
        left,
        "stopping: the rest stays planned and is delivered at the next start"
    );
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
