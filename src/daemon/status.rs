//! What the daemon shows a console on another thread: the folder it decides with, its last evaluation and reload, published on each.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, mpsc};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Event, Report};
use crate::diagnostics::Problems;
use crate::project::{Options, Project};

/// What the daemon has published last. A reader takes the whole of it at
/// once ([`Shared::status`]): the project, its reload and its evaluation
/// always belong together.
#[derive(Clone)]
pub struct Status {
    /// The folder as last loaded without errors: what the daemon decides
    /// with (a broken edit keeps the one before).
    pub project: Arc<Project>,
    /// Where the folder is, as given on the command line.
    pub options: Options,
    /// The daemon's `--as-of`, when it evaluates as if on another day.
    pub as_of: Option<NaiveDate>,
    /// Whether the daemon evaluates and delivers (`relance run`), or only
    /// loads and reloads the folder (`relance serve`).
    pub delivers: bool,
    /// When the project was loaded (at start, or by the last good reload).
    pub loaded_at: DateTime<Utc>,
    /// The last reload, good or not.
    pub reload: Option<Reload>,
    /// The last evaluation, good or not.
    pub evaluation: Option<Evaluation>,
    /// When an evaluation last went through.
    pub evaluated_at: Option<DateTime<Utc>>,
    /// Counts up with every publication: a reader waits for the next one.
    pub generation: u64,
    /// What this instance does: the only daemon of an SQLite journal, or,
    /// sharing a PostgreSQL journal, the deciding or a delivering one
    /// (`None` before its first pass, and for `relance serve`).
    pub role: Option<super::Role>,
    /// Its name in the lease and the claims of a shared journal.
    pub instance: Option<String>,
}

impl Status {
    /// The date the daemon evaluates on at `now`: its `--as-of`, else today
    /// in the config's time zone.
    pub fn today(&self, now: DateTime<Utc>) -> NaiveDate {
        self.as_of.unwrap_or_else(|| self.project.date_at(now))
    }
}

/// One reload of the folder after an edit or SIGHUP.
#[derive(Debug, Clone)]
pub struct Reload {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The files that changed, as a person names them (empty: everything, SIGHUP).
    pub changed: Vec<String>,
    /// Why it failed: each problem of the edit, located.
    pub problems: Problems,
    pub took: Duration,
}

/// One evaluation pass.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub at: DateTime<Utc>,
    /// What it did; `None` when it failed.
    pub report: Option<Report>,
    pub error: Option<String>,
    pub took: Duration,
}

/// What a watcher of the daemon (the console's metrics) is told, as it happens.
pub enum Outcome<'a> {
    Reloaded(&'a Reload),
    Evaluated(&'a Evaluation),
}

type Listener = Arc<dyn Fn(&Outcome) + Send + Sync>;

/// The daemon's [`Status`], shared with the threads that read it, and the
/// way back: a request to reload now.
pub struct Shared {
    status: RwLock<Arc<Status>>,
    /// The generation last published, for [`Shared::reload_after`].
    published: Mutex<u64>,
    changed: Condvar,
    listener: RwLock<Option<Listener>>,
    events: mpsc::Sender<Event>,
}

impl Shared {
    pub(super) fn new(status: Status, events: mpsc::Sender<Event>) -> Shared {
        Shared {
            published: Mutex::new(status.generation),
            status: RwLock::new(Arc::new(status)),
            changed: Condvar::new(),
            listener: RwLock::new(None),
            events,
        }
    }

    /// What the daemon published last.
    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Calls `listener` with every reload and evaluation from now on.
    pub fn listen(&self, listener: impl Fn(&Outcome) + Send + Sync + 'static) {
        *self
            .listener
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(listener));
    }

    /// Asks the daemon to reload after `changed` files were written (a
    /// hold recorded in the console), as if the watcher had seen them, and
    /// waits at most `timeout` for a reload that started after the request:
    /// it read them. Returns whether one came (not when the daemon has
    /// stopped, or is busy with a long evaluation).
    pub fn reload_after(&self, changed: &[PathBuf], timeout: Duration) -> bool {
        let requested = Utc::now();
        let changed = changed.iter().map(|p| super::serve::absolute(p)).collect();
        if self.events.send(Event::Changed(changed)).is_err() {
            return false;
        }
        let reloaded = |status: &Status| status.reload.as_ref().is_some_and(|r| r.at >= requested);
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(published, timeout, |_| !reloaded(&self.status()))
            .unwrap_or_else(PoisonError::into_inner);
        reloaded(&self.status())
    }

    /// Publishes what `change` makes of the last status, then tells the
    /// listener about `outcome`.
    pub(super) fn publish(&self, change: impl FnOnce(&mut Status), outcome: Option<Outcome>) {
        let generation = {
            let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
            let mut next = Status::clone(&status);
            change(&mut next);
            next.generation += 1;
            let generation = next.generation;
            *status = Arc::new(next);
            generation
        };
        if let (Some(outcome), Some(listener)) = (
            outcome,
            self.listener
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        ) {
            listener(&outcome);
        }
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = generation;
        self.changed.notify_all();
    }
}
