//! The daemon (`relance run`): evaluate on a schedule, deliver each reminder
//! exactly once, hot-reload a finance manager's edits, and stop cleanly.
//!
//! Exactly once: a reminder is journaled `planned` (with this process as its
//! owner) before delivery and `sent` after. A `planned` row whose owner is not
//! a running relance (other than this process) was interrupted by a crash.
//! Before a run acts on such a row, or retries a `failed` one, it claims it
//! (`planned`, owner: itself) in one conditional update, so that two runs
//! never both take it. If its outbox or task file exists it was delivered and
//! is marked `sent`; otherwise it is delivered now. Over SMTP no file proves
//! delivery, so each `sent` is committed the moment the server accepts the
//! message; a crash inside that instant resends the message with the same
//! Message-ID, which mail clients show once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::deliver::{Deliverer, Item, PLACEHOLDER_SENDER, Proofs};
use crate::engine::Planned;
use crate::journal::{Identity, Journal, JournalView, NewRow, Pending, State};
use crate::project::{Options, Project, Reminder, Rulebook};
use crate::rules::{Channel, ON_PAID};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Evaluate this date instead of today.
    pub as_of: Option<NaiveDate>,
    pub dry_run: bool,
    /// Send even when the batch is larger than `limits.max_per_run`.
    pub confirm: bool,
    /// The time of day (in the config's time zone) to evaluate at, against
    /// the send times: with `as_of` alone the whole day counts as elapsed.
    pub at: Option<chrono::NaiveTime>,
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub date: Option<NaiveDate>,
    /// New reminders due on the date.
    pub due: usize,
    pub sent: usize,
    pub failed: usize,
    /// Planned reminders left by a crash, now resolved.
    pub recovered: usize,
    /// Messages due today whose send time has not come: left for later.
    pub waiting: usize,
    /// When the first of them may go out.
    pub next_send: Option<DateTime<Utc>>,
    /// Retries and crash leftovers that cannot go out today (a day off, a
    /// hold, a promise): left for a later evaluation.
    pub deferred: usize,
    /// The batch was larger than `limits.max_per_run`: nothing was sent.
    pub held: bool,
    /// Stopped by a signal before the batch was done (the rest stays planned).
    pub interrupted: bool,
}

impl Report {
    /// The one-line summary of an evaluation. The date is logged as a date
    /// (`date=2026-12-01`), not as the `Option` it is held in.
    pub fn log(&self) {
        tracing::info!(
            date = self.date.map(tracing::field::display),
            due = self.due,
            sent = self.sent,
            failed = self.failed,
            recovered = self.recovered,
            waiting = self.waiting,
            deferred = self.deferred,
            held = self.held,
            "evaluation done"
        );
    }
}

enum Event {
    Changed(Vec<PathBuf>),
    Reload,
    Stop,
}

pub struct Daemon {
    options: Options,
    run: RunOptions,
    pub project: Project,
    deliverer: Deliverer,
    journal: Option<Journal>,
    stop: Arc<AtomicBool>,
    /// Signals, file changes and reload requests, in arrival order.
    events: mpsc::Receiver<Event>,
    sender: mpsc::Sender<Event>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

impl Daemon {
    /// Loads the folder; refuses to start on any error, since running with a
    /// policy missing would send the wrong letters.
    pub fn start(options: Options, run: RunOptions) -> Result<Daemon> {
        // Signals first: a SIGTERM while a large folder loads must still
        // stop the process cleanly (exit 0), not by the default action.
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, events) = mpsc::channel::<Event>();
        spawn_signal_thread(sender.clone(), stop.clone())?;
        let project = Project::load(&options).map_err(|p| anyhow::anyhow!("{p}"))?;
        if project.problems.has_errors() {
            for p in project.problems.iter() {
                tracing::error!("{p}");
            }
            bail!(
                "the configuration has errors (listed above); fix them and start again (relance check shows them)"
            );
        }
        log_feed_problems(&project);
        // A feed that cannot be read would make its invoices look settled:
        // pending reminders would be dropped as "no longer in the feeds".
        if !project.unreadable_feeds.is_empty() {
            let names: Vec<String> = project
                .unreadable_feeds
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            bail!(
                "cannot read the feed {}; start again once it can be read",
                names.join(", ")
            );
        }
        let deliverer = Deliverer::new(&project.config).context("delivery")?;
        warn_if_placeholder_sender(&deliverer, None);
        let path = project.config.path(&project.config.journal);
        // A dry run reads the journal if there is one, and never creates it.
        let journal = if run.dry_run {
            Journal::open_read_only(&path)?
        } else {
            Some(Journal::open(&path)?)
        };
        Ok(Daemon {
            options,
            run,
            project,
            deliverer,
            journal,
            stop,
            events,
            sender,
        })
    }

    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        self.run.as_of.unwrap_or_else(|| {
            now.with_timezone(&self.project.config.timezone)
                .date_naive()
        })
    }

    fn journal_view(&self) -> Result<JournalView> {
        Ok(match &self.journal {
            Some(j) => j.view()?,
            None => JournalView::default(),
        })
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

    /// One evaluation: finish what the journal still owes, then decide and
    /// deliver today's reminders through the same path `preview` uses.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Result<Report> {
        let date = self.today(now);
        let mut report = Report {
            date: Some(date),
            ..Report::default()
        };
        // Stopped before anything began (a signal while the folder loaded).
        if self.stop.load(Ordering::SeqCst) {
            report.interrupted = true;
            return Ok(report);
        }
        if !self.run.dry_run {
            self.deliver_pending(now, &mut report)?;
        }
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
        // Messages whose send time has not come wait, with the skips of
        // their invoices: the next evaluation decides them again, the same way.
        let clock = self.clock(date, now);
        let mut messages: Vec<Vec<Planned>> = Vec::new();
        let mut waiting_invoices: std::collections::HashSet<usize> = Default::default();
        for rows in self.project.messages(&plan.reminders).each() {
            let rows: Vec<Planned> = rows.iter().map(|&i| plan.reminders[i]).collect();
            match (
                self.project
                    .send_at(&rows[0])
                    .map(|t| t.with_timezone(&Utc)),
                clock,
            ) {
                (Some(at), Some(clock)) if at > clock => {
                    report.waiting += 1;
                    report.next_send = Some(report.next_send.map_or(at, |n| n.min(at)));
                    waiting_invoices.extend(rows.iter().map(|r| r.invoice));
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
        // A dry run shows every message, held or not: over the limit is
        // exactly when the operator needs to see what would go out.
        if self.run.dry_run {
            for rows in &messages {
                let r = self.project.message(rows, true);
                tracing::info!(invoice = %r.invoice, invoices = rows.len(), policy = %r.policy, stage = %r.stage, occurrence = r.occurrence,
                    channel = r.channel.as_str(), to = %r.to, subject = %r.subject, "would send (dry run)");
            }
        }
        let limit = self.project.config.limits.max_per_run;
        if report.due > limit && !self.run.confirm {
            report.held = true;
            let mut by_stage: BTreeMap<(String, String), usize> = BTreeMap::new();
            for rows in &messages {
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
            return Ok(report);
        }
        if self.run.dry_run {
            return Ok(report);
        }
        let rendered: Vec<(Vec<Planned>, Reminder)> = messages
            .into_iter()
            .map(|rows| {
                let r = self.project.message(&rows, true);
                (rows, r)
            })
            .collect();
        let journal = self.journal.as_ref().expect("a journal outside dry runs");
        let now_s = rfc3339(now);
        let date_s = date.to_string();
        // Plan the whole batch in one transaction: skipped occurrences and
        // every reminder, each `planned` before anything is delivered.
        journal.begin()?;
        // Which stage overtook each skipped one (one reminder per invoice and
        // date): `history` shows it as the reason of the skip.
        let fired: BTreeMap<usize, &Planned> = rendered
            .iter()
            .flat_map(|(rows, _)| rows.iter().map(|p| (p.invoice, p)))
            .collect();
        for s in plan
            .skipped
            .iter()
            .filter(|s| !waiting_invoices.contains(&s.invoice))
        {
            let identity = self.identity(s);
            let policy = &self.project.rulebook.policies[s.policy];
            let reason = fired.get(&s.invoice).map(|p| {
                format!(
                    "overtaken by {}",
                    crate::text::stage_label(&policy.stages[p.stage].id, p.occurrence)
                )
            });
            let row = NewRow {
                identity: &identity,
                state: State::Skipped,
                date: &date_s,
                channel: policy.stages[s.stage].channel.as_str(),
                recipient: "",
                subject: "",
                message_id: "",
                message: "",
                last_error: reason.as_deref(),
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
                let row = NewRow {
                    identity: &identity,
                    state: State::Planned,
                    date: &date_s,
                    channel: r.channel.as_str(),
                    recipient: &r.to,
                    subject: &r.subject,
                    message_id: &message_id,
                    message: &r.message,
                    last_error: None,
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
        journal.commit()?;
        self.deliver_batch(mine, now, &mut report)?;
        Ok(report)
    }

    /// The journal's identity of a planned reminder.
    fn identity(&self, planned: &Planned) -> Identity {
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

    /// Delivers planned messages, committing `sent` in batches (files prove
    /// delivery after a crash) or one by one over SMTP.
    fn deliver_batch(
        &self,
        batch: Vec<(Vec<Planned>, Reminder)>,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<()> {
        let journal = self.journal.as_ref().expect("a journal outside dry runs");
        let batched = !self.deliverer.is_smtp();
        let mut open = false;
        for (i, (rows, r)) in batch.iter().enumerate() {
            if self.stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                tracing::info!(
                    left = batch.len() - i,
                    "stopping: the rest stays planned and is delivered at the next start"
                );
                break;
            }
            if batched && !open {
                journal.begin()?;
                open = true;
            }
            self.deliver_one(rows, r, now, report, batched)?;
            if open && (i + 1) % 256 == 0 {
                self.deliverer.flush()?;
                journal.commit()?;
                open = false;
            }
        }
        if open {
            self.deliverer.flush()?;
            journal.commit()?;
        }
        Ok(())
    }

    /// Delivers one message (the reminders `rows`, rendered as `r`) and
    /// journals the outcome of each of its reminders. `in_batch`: the caller
    /// flushes the delivered files before it commits the batch; else they
    /// are flushed here, and the message's rows change in one transaction.
    fn deliver_one(
        &self,
        rows: &[Planned],
        r: &Reminder,
        now: DateTime<Utc>,
        report: &mut Report,
        in_batch: bool,
    ) -> Result<()> {
        let journal = self.journal.as_ref().expect("a journal outside dry runs");
        let identities: Vec<Identity> = rows.iter().map(|p| self.identity(p)).collect();
        let now_s = rfc3339(now);
        let result = match &r.error {
            Some(e) => Err(e.clone()),
            None => {
                let items: Vec<Item> = rows
                    .iter()
                    .zip(&identities)
                    .map(|(p, id)| Item {
                        invoice: &self.project.ledger.invoices[p.invoice],
                        policy: &id.policy,
                        stage: &id.stage,
                        occurrence: id.occurrence,
                    })
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
        if !in_batch {
            journal.begin()?;
        }
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
        if !in_batch {
            journal.commit()?;
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

    /// Finds the reminder a journal row stands for in the current project.
    fn resolve(&self, p: &Pending) -> Result<Planned, String> {
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
        Ok(Planned {
            date,
            invoice,
            policy,
            stage,
            occurrence: id.occurrence,
        })
    }

    /// The id a pending reminder was delivered with, if what its message
    /// wrote is there (the Message-ID for an email, the file for the others,
    /// as [`Deliverer::deliver`] returns them).
    fn delivered_file(proofs: &mut Proofs, p: &Pending) -> Option<String> {
        let date = NaiveDate::parse_from_str(&p.date, "%Y-%m-%d").ok()?;
        proofs.delivered(date, &p.message, Channel::parse(&p.channel)?)
    }

    /// Crash leftovers and due retries, message by message: the rows that
    /// share a message token went out, or go out again, together.
    fn deliver_pending(&self, now: DateTime<Utc>, report: &mut Report) -> Result<()> {
        let journal = self.journal.as_ref().expect("a journal outside dry runs");
        let now_s = rfc3339(now);
        let mut by_message: Vec<(String, Vec<Pending>)> = Vec::new();
        for p in journal.pending(&now_s)? {
            match by_message.iter_mut().find(|(token, _)| *token == p.message) {
                Some((_, rows)) => rows.push(p),
                None => by_message.push((p.message.clone(), vec![p])),
            }
        }
        let mut proofs = self.deliverer.proofs();
        for (token, pending) in by_message {
            if self.stop.load(Ordering::SeqCst) {
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
            if let Some(id) = Self::delivered_file(&mut proofs, first) {
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

    /// Reloads after files changed. Anything that fails to load keeps the
    /// last good version running; every error is logged with its location.
    pub fn reload(&mut self, changed: &[PathBuf]) -> bool {
        let config = &self.project.config;
        let config_file = config.file.clone().map(|f| absolute(&f));
        let rules = absolute(&config.path(&config.rules));
        let templates = absolute(&config.path(&config.templates));
        let feeds: Vec<PathBuf> = crate::feed::feeds_for(config, &self.options.feeds)
            .iter()
            .map(|f| absolute(&config.path(&f.path)))
            .collect();
        let all = changed.is_empty();
        let config_changed = all || changed.iter().any(|c| Some(c) == config_file.as_ref());
        let rules_changed = changed
            .iter()
            .any(|c| c.starts_with(&rules) || c.starts_with(&templates));
        let feeds_changed = changed.iter().any(|c| feeds.contains(c));
        let names: Vec<String> = changed.iter().map(|c| c.display().to_string()).collect();
        let ok = if config_changed {
            match Project::load(&self.options) {
                Err(p) => {
                    tracing::error!("{p}");
                    false
                }
                Ok(project) if project.problems.has_errors() => {
                    log_problems(&project.problems);
                    false
                }
                // As at start: an unreadable feed is not a feed with no invoices.
                Ok(project) if !project.unreadable_feeds.is_empty() => {
                    log_problems(&project.feed_problems);
                    false
                }
                Ok(project) => match Deliverer::new(&project.config) {
                    Ok(deliverer) => {
                        warn_if_placeholder_sender(&deliverer, Some(&self.deliverer));
                        log_feed_problems(&project);
                        self.project = project;
                        self.deliverer = deliverer;
                        true
                    }
                    Err(e) => {
                        tracing::error!("delivery: {e}");
                        false
                    }
                },
            }
        } else {
            let mut ok = true;
            if rules_changed {
                let (rulebook, problems) = Rulebook::load(&self.project.config);
                if problems.has_errors() {
                    log_problems(&problems);
                    ok = false;
                } else {
                    self.project.rulebook = rulebook;
                }
            }
            if feeds_changed {
                let load = Project::read_feeds(&self.project.config, &self.options);
                if load.unreadable.is_empty() {
                    let (ledger, warnings) =
                        Project::ledger(&self.project.config, load.invoices, load.index);
                    for p in load.problems.iter().chain(warnings.iter()) {
                        tracing::warn!("{p}");
                    }
                    self.project.ledger = ledger;
                    self.project.bad_rows = load.bad_rows;
                } else {
                    log_problems(&load.problems);
                    ok = false;
                }
            }
            ok
        };
        if !ok {
            tracing::error!(changed = ?names, "reload failed: keeping the last good configuration");
            return false;
        }
        let today = self.today(Utc::now());
        let due = self
            .journal_view()
            .map(|view| {
                self.project
                    .evaluator()
                    .plan(today, 1, &view, None)
                    .reminders
                    .len()
            })
            .unwrap_or(0);
        tracing::info!(
            changed = ?names,
            policies = self.project.rulebook.policies.len(),
            templates = self.project.rulebook.templates.all().len(),
            invoices = self.project.ledger.invoices.len(),
            due,
            "reloaded; new plan for {today}: {due} reminder(s) due"
        );
        true
    }

    /// When the schedule next evaluates after `now`.
    pub fn next_evaluation(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let schedule = &self.project.config.schedule;
        if let Some(at) = schedule.at {
            let tz = self.project.config.timezone;
            let local = now.with_timezone(&tz).date_naive();
            for offset in 0..3 {
                let day = local + chrono::Days::new(offset);
                // On a daylight-saving gap the time does not exist: take the next hour.
                let when = tz
                    .from_local_datetime(&day.and_time(at))
                    .earliest()
                    .or_else(|| {
                        tz.from_local_datetime(&(day.and_time(at) + chrono::Duration::hours(1)))
                            .earliest()
                    });
                if let Some(when) = when.map(|w| w.with_timezone(&Utc)).filter(|w| *w > now) {
                    return when;
                }
            }
        }
        let every = schedule.every.unwrap_or(Duration::from_secs(3600));
        now + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1))
    }

    /// Runs until SIGTERM or SIGINT: evaluates on start and on schedule,
    /// retries failed deliveries, reloads on file changes and SIGHUP.
    pub fn serve(mut self) -> Result<()> {
        let tx = self.sender.clone();
        let mut watcher = self.watch(tx.clone())?;
        let mut next_eval = Utc::now();
        let mut retries_wait = false;
        tracing::info!(dir = %self.options.dir.display(), "relance daemon started");
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Utc::now();
            if now >= next_eval {
                let report = self.evaluate(now)?;
                report.log();
                next_eval = self.next_evaluation(Utc::now());
                // Messages waiting for their send time wake the daemon then.
                if let Some(at) = report.next_send {
                    next_eval = next_eval.min(at.max(Utc::now()));
                }
                retries_wait = report.deferred > 0;
            } else if let Some(journal) = &self.journal
                && !retries_wait
                && journal.next_retry()?.is_some_and(|at| at <= rfc3339(now))
            {
                let mut report = Report::default();
                self.deliver_pending(now, &mut report)?;
                // Due retries that cannot go out today wait for the next
                // evaluation rather than wake the daemon again at once.
                retries_wait = report.deferred > 0;
            }
            let next_retry = match &self.journal {
                Some(j) if !retries_wait => j
                    .next_retry()?
                    .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                    .map(|t| t.with_timezone(&Utc)),
                _ => None,
            };
            let wake = next_retry.map_or(next_eval, |r| r.min(next_eval));
            let wait = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            match self.events.recv_timeout(wait) {
                Ok(Event::Stop) => break,
                Ok(Event::Reload) => {
                    tracing::info!("SIGHUP: reloading everything");
                    if self.reload(&[]) {
                        watcher = self.watch(tx.clone())?;
                    }
                }
                Ok(Event::Changed(mut paths)) => {
                    // Editors save in bursts: take everything already queued at once.
                    while let Ok(Event::Changed(more)) = self.events.try_recv() {
                        paths.extend(more);
                    }
                    paths.sort();
                    paths.dedup();
                    let config_changed = self
                        .project
                        .config
                        .file
                        .as_ref()
                        .is_some_and(|f| paths.contains(&absolute(f)));
                    if self.reload(&paths) && config_changed {
                        watcher = self.watch(tx.clone())?;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(watcher);
        tracing::info!("relance daemon stopped");
        Ok(())
    }

    /// Watches the folders (not single files, so that editors that save via a
    /// temporary file and a rename are seen) and sends the relevant changes.
    fn watch(
        &self,
        tx: mpsc::Sender<Event>,
    ) -> Result<Debouncer<notify::RecommendedWatcher, RecommendedCache>> {
        let config = &self.project.config;
        let rules = absolute(&config.path(&config.rules));
        let templates = absolute(&config.path(&config.templates));
        let config_file = config
            .file
            .clone()
            .map(|f| absolute(&f))
            .unwrap_or_else(|| absolute(&self.options.dir.join("relance.yaml")));
        let feeds: Vec<PathBuf> = crate::feed::feeds_for(config, &self.options.feeds)
            .iter()
            .map(|f| absolute(&config.path(&f.path)))
            .collect();
        let relevant = {
            let (rules, templates, config_file, feeds) = (
                rules.clone(),
                templates.clone(),
                config_file.clone(),
                feeds.clone(),
            );
            move |p: &Path| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let edited = !name.starts_with('.') && !name.ends_with('~');
                let rule_file = matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "rhai" | "hbs")
                );
                (edited && rule_file && (p.starts_with(&rules) || p.starts_with(&templates)))
                    || p == config_file
                    || feeds.iter().any(|f| f == p)
            }
        };
        // Short enough that a save is live well within a second; long enough
        // to join an editor's write-temp-then-rename into one reload.
        let mut debouncer = new_debouncer(
            Duration::from_millis(50),
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let paths: Vec<PathBuf> = events
                        .iter()
                        // Opening and reading a file is not an edit: without
                        // this, the reload's own reads of the files it watches
                        // trigger the next reload, forever (inotify reports them).
                        .filter(|e| !e.kind.is_access())
                        .flat_map(|e| e.paths.iter())
                        .filter(|p| relevant(p))
                        .cloned()
                        .collect();
                    if !paths.is_empty() {
                        let _ = tx.send(Event::Changed(paths));
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("file watcher: {e}");
                    }
                }
            },
        )?;
        for dir in [&rules, &templates] {
            if dir.is_dir() {
                debouncer
                    .watch(dir, RecursiveMode::Recursive)
                    .with_context(|| format!("watching {}", dir.display()))?;
            }
        }
        let mut parents: Vec<PathBuf> = feeds
            .iter()
            .chain([&config_file])
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        parents.sort();
        parents.dedup();
        for dir in parents.iter().filter(|d| d.is_dir()) {
            debouncer
                .watch(dir, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", dir.display()))?;
        }
        Ok(debouncer)
    }
}

fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Resolve symlinks of the folder (e.g. /tmp on macOS) so paths compare with the watcher's.
    match (
        abs.parent().and_then(|d| d.canonicalize().ok()),
        abs.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => abs,
    }
}

fn log_problems(problems: &crate::diagnostics::Problems) {
    for p in problems.iter() {
        if p.is_error() {
            tracing::error!("{p}");
        } else {
            tracing::warn!("{p}");
        }
    }
}

/// Warns that emails go out from the placeholder sender: at start, and on a
/// reload that empties `company.email` (not on every reload: once is enough).
fn warn_if_placeholder_sender(deliverer: &Deliverer, before: Option<&Deliverer>) {
    if deliverer.uses_placeholder_sender()
        && !before.is_some_and(Deliverer::uses_placeholder_sender)
    {
        tracing::warn!(
            "company.email is empty in the config: emails are sent from {PLACEHOLDER_SENDER}; \
             set company.email to the address customers should reply to"
        );
    }
}

fn log_feed_problems(project: &Project) {
    for p in project.feed_problems.iter() {
        tracing::warn!("{p}");
    }
}

fn spawn_signal_thread(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = if signal == SIGHUP {
                Event::Reload
            } else {
                stop_for(signal, &stop);
                Event::Stop
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Raises the stop flag, then says so: once the line is logged, the message
/// in flight is the last one.
fn stop_for(signal: i32, stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    tracing::info!("signal {signal}: finishing the message in flight, then stopping");
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
