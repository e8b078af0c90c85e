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
//!
//! A reminder of a stage with `approve: true` is journaled
//! `awaiting_approval` and not delivered; `relance approve` makes it
//! `approved`, which the next pass claims and delivers as it does a due
//! retry (or skips, when its invoice is no longer open).
//!
//! [`Daemon::open`] and [`Daemon::evaluate`] are one pass, with no signal
//! handler and no watcher (what a server or a test drives);
//! [`Daemon::start`] and [`Daemon::serve`] add them for `relance run`.
//! [`Daemon::shared`] is what it publishes for the web console, on each
//! reload and pass.

mod compare;
mod pass;
mod serve;
mod shared;
mod status;

pub use shared::Role;
pub use status::{Evaluation, Outcome, Reload, Shared, Status};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::{Config, Delivery, JournalSetting};
use crate::deliver::{Deliverer, PLACEHOLDER_SENDER};
use crate::diagnostics::Problems;
use crate::error::{Error, Result};
use crate::journal::{Journal, JournalView};
use crate::project::{Options, Project};

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
    /// Start with a new journal even though the outbox or tasks folder
    /// holds delivered files (see `refuse_without_journal`).
    pub fresh_journal: bool,
    /// Load the folder and reload it on edits, but never evaluate nor
    /// deliver (`relance serve`: the console alone). Like a dry run, it
    /// reads the journal and never creates it.
    pub serve_only: bool,
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
    /// Failed reminders still to be retried after this evaluation.
    pub retries: usize,
    /// When the first of them is due.
    pub next_retry: Option<DateTime<Utc>>,
    /// Failed reminders that will not be retried unless `relance retry`
    /// re-queues them (refused for good, or out of attempts), in the journal
    /// after this evaluation: every pass says so, not only the one that failed.
    pub given_up: usize,
    /// Reminders awaiting approval in the journal after this evaluation.
    pub awaiting: usize,
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
            retries = self.retries,
            next_retry = self.next_retry.map(|t| tracing::field::display(rfc3339(t))),
            given_up = self.given_up,
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
    /// The loaded folder; a reload swaps in a whole new one.
    project: Arc<Project>,
    deliverer: Deliverer,
    journal: Option<Journal>,
    stop: Arc<AtomicBool>,
    /// Signals, file changes and reload requests, in arrival order.
    events: mpsc::Receiver<Event>,
    sender: mpsc::Sender<Event>,
    /// What it publishes for the console.
    shared: Arc<Shared>,
    /// What each reload does to the coming days, worked out off the loop.
    comparisons: compare::Comparisons,
    /// This instance's name in the lease and the claims of a shared journal.
    instance: String,
    /// What it does (`None` before its first pass).
    role: Option<Role>,
}

impl Drop for Daemon {
    /// A stopped instance lets another decide at once.
    fn drop(&mut self) {
        self.give_up_role();
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Daemon {
    /// Installs the signal handlers, then opens the folder ([`Daemon::open`]).
    /// Signals first: a SIGTERM while a large folder loads must still stop
    /// the process cleanly (exit 0), not by the default action.
    pub fn start(options: Options, run: RunOptions) -> Result<Daemon> {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, events) = mpsc::channel::<Event>();
        serve::spawn_signal_thread(sender.clone(), stop.clone())?;
        Self::with_channel(options, run, stop, sender, events)
    }

    /// Loads the folder and opens the journal; refuses to start on any
    /// error, since running with a policy missing would send the wrong letters.
    pub fn open(options: Options, run: RunOptions) -> Result<Daemon> {
        let (sender, events) = mpsc::channel::<Event>();
        Self::with_channel(options, run, Arc::default(), sender, events)
    }

    fn with_channel(
        options: Options,
        run: RunOptions,
        stop: Arc<AtomicBool>,
        sender: mpsc::Sender<Event>,
        events: mpsc::Receiver<Event>,
    ) -> Result<Daemon> {
        let project = Project::load(&options)?;
        if project.problems.has_errors() {
            for p in project.problems.iter() {
                tracing::error!("{p}");
            }
            return Err(Error::Refused(
                "the configuration has errors (listed above); fix them and start again (relance check shows them)".into(),
            ));
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
            return Err(Error::Refused(format!(
                "cannot read the feed {}; start again once it can be read",
                names.join(", ")
            )));
        }
        let deliverer =
            deliverer(&project.config, &run).map_err(|e| Error::Delivery(e.to_string()))?;
        warn_if_placeholder_sender(&deliverer, None);
        // A dry run reads the journal if there is one, and never creates it.
        let journal = if run.dry_run || run.serve_only {
            Journal::open_config_read_only(&project.config)?
        } else {
            // A database is never "missing": only a file can be lost. An
            // empty file, or one without relance's tables, is a lost journal
            // as much as a missing one (`: > state/relance.db`).
            if let JournalSetting::File(path) = &project.config.journal
                && !run.fresh_journal
                && Journal::open_read_only(&project.config.path(path))?.is_none()
            {
                refuse_without_journal(&project.config, &project.config.path(path))?;
            }
            Some(Journal::open_config(&project.config)?)
        };
        let project = Arc::new(project);
        let status = Status {
            project: Arc::clone(&project),
            options: options.clone(),
            as_of: run.as_of,
            delivers: !run.serve_only,
            loaded_at: Utc::now(),
            reload: None,
            evaluation: None,
            evaluated_at: None,
            generation: 0,
            role: None,
            instance: None,
        };
        let shared = Arc::new(Shared::new(status, sender.clone()));
        let comparisons = compare::Comparisons::start()?;
        Ok(Daemon {
            options,
            run,
            project,
            deliverer,
            journal,
            stop,
            events,
            sender,
            shared,
            comparisons,
            instance: shared::instance_name(),
            role: None,
        })
    }

    /// What the daemon publishes on each reload and pass, for the console.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The folder as last loaded: what the daemon decides with.
    pub fn project(&self) -> &Arc<Project> {
        &self.project
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

    /// The journal a pass writes to; a dry run has none and writes nothing.
    fn journal(&self) -> Result<&Journal> {
        self.journal
            .as_ref()
            .ok_or_else(|| Error::Refused("a dry run writes nothing to the journal".into()))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Refuses to start when the journal is missing (or holds no journal: an
/// empty file, no tables) but the outbox or tasks folder holds delivered
/// files: the journal was lost (deleted, emptied, a new volume), and
/// starting with an empty one would send every reminder again.
fn refuse_without_journal(config: &Config, journal: &Path) -> Result<()> {
    let mut folders = vec![config.path(&config.tasks)];
    if let Delivery::Outbox { dir } = &config.delivery {
        folders.insert(0, config.path(dir));
    }
    for folder in folders {
        let delivered = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count();
        if delivered > 0 {
            return Err(Error::Refused(format!(
                "the journal {} is missing (or empty), but {} holds {delivered} delivered file(s): \
                 with a new journal every reminder would be sent again. Restore the journal \
                 from a backup, or start with `relance run --fresh-journal` to accept that risk",
                journal.display(),
                folder.display()
            )));
        }
    }
    Ok(())
}

fn log_problems(problems: &Problems) {
    for p in problems.iter() {
        if p.is_error() {
            tracing::error!("{p}");
        } else {
            tracing::warn!("{p}");
        }
    }
}

/// How the daemon delivers: through the config's delivery, or, when it
/// only serves the console, to the log (it never delivers; an SMTP
/// password need not be there).
fn deliverer(
    config: &Config,
    run: &RunOptions,
) -> Result<Deliverer, crate::deliver::DeliveryError> {
    if run.serve_only {
        let logged = Config {
            delivery: Delivery::Log,
            ..config.clone()
        };
        return Deliverer::new(&logged);
    }
    Deliverer::new(config)
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

/// Bad feed rows, logged as the warnings they are: they stopped nothing.
fn log_feed_problems(project: &Project) {
    for p in project.feed_problems.iter() {
        tracing::warn!("{p}");
    }
}
