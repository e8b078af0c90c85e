//! What the pages and the API compute from the daemon's snapshot (the plan of a window and its messages, the journal, the totals per currency), kept while nothing they depend on has changed.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::JournalSetting;
use crate::engine::Plan;
use crate::error::Result;
use crate::journal::{Journal, JournalRow, JournalView};
use crate::project::history::fill_customers;
use crate::project::{Messages, Project};
use crate::report::receivables::{Receivables, receivables};

/// The plans kept: the overview's, the plan page's and the API's windows.
const PLANS_KEPT: usize = 4;

/// The journal's files as last seen: a commit changes the write-ahead
/// log, a checkpoint the database; either makes the journal read again.
/// A PostgreSQL journal has none (other daemons write it): it is read
/// again each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Stamp {
    fn of_config(config: &crate::config::Config) -> Option<Stamp> {
        match &config.journal {
            JournalSetting::File(path) => Some(Stamp::of(&config.path(path))),
            JournalSetting::Postgres(_) => None,
        }
    }

    fn of(journal: &Path) -> Stamp {
        let seen = |path: &Path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        let mut wal = journal.as_os_str().to_owned();
        wal.push("-wal");
        Stamp([seen(journal), seen(&PathBuf::from(wal))])
    }
}

/// A window of the plan, as the daemon would decide it, with the
/// messages its reminders go out in. It keeps its project: the plan's
/// indexes point into that project's ledger and rulebook.
pub(crate) struct PlanView {
    pub project: Arc<Project>,
    journal: Arc<JournalView>,
    pub from: NaiveDate,
    pub days: u32,
    pub plan: Plan,
    pub messages: Messages,
}

/// The journal read last, with the project whose ledger gave its rows
/// their customers.
struct JournalRead {
    stamp: Option<Stamp>,
    view: Arc<JournalView>,
}

struct HistoryRead {
    stamp: Option<Stamp>,
    project: Arc<Project>,
    rows: Arc<Vec<JournalRow>>,
}

/// What requests share: a page of the plan renders its rows only, from a
/// plan made once per snapshot, journal and window.
#[derive(Default)]
pub(crate) struct Cache {
    journal: Mutex<Option<JournalRead>>,
    history: Mutex<Option<HistoryRead>>,
    plans: Mutex<VecDeque<Arc<PlanView>>>,
    receivables: Mutex<Option<ReceivablesRead>>,
}

/// The receivables last computed, with what they were computed from.
struct ReceivablesRead {
    project: Arc<Project>,
    journal: Arc<JournalView>,
    as_of: NaiveDate,
    receivables: Arc<Receivables>,
}

impl Cache {
    /// What the journal holds, for deciding: read again when it changed.
    pub fn journal(&self, project: &Project) -> Result<Arc<JournalView>> {
        let stamp = Stamp::of_config(&project.config);
        if let Some(read) = &*lock(&self.journal)
            && stamp.is_some()
            && read.stamp == stamp
        {
            return Ok(Arc::clone(&read.view));
        }
        let view = Arc::new(project.journal_view()?);
        *lock(&self.journal) = Some(JournalRead {
            stamp,
            view: Arc::clone(&view),
        });
        Ok(view)
    }

    /// The journal's rows, newest first, each with its customer (from the
    /// project's ledger for rows journaled before customers were).
    pub fn history(&self, project: &Arc<Project>) -> Result<Arc<Vec<JournalRow>>> {
        let stamp = Stamp::of_config(&project.config);
        if let Some(read) = &*lock(&self.history)
            && stamp.is_some()
            && read.stamp == stamp
            && Arc::ptr_eq(&read.project, project)
        {
            return Ok(Arc::clone(&read.rows));
        }
        let mut rows = Journal::history_of(&project.config, None)?;
        let ledger = &project.ledger;
        fill_customers(&mut rows, |number| {
            ledger.find(number).map(|i| &*ledger.invoices[i].bill_to.id)
        });
        let rows = Arc::new(rows);
        *lock(&self.history) = Some(HistoryRead {
            stamp,
            project: Arc::clone(project),
            rows: Arc::clone(&rows),
        });
        Ok(rows)
    }

    /// The plan of `days` days from `from`, as the daemon decides it.
    pub fn plan(
        &self,
        project: &Arc<Project>,
        from: NaiveDate,
        days: u32,
    ) -> Result<Arc<PlanView>> {
        let journal = self.journal(project)?;
        let same = |view: &PlanView| {
            Arc::ptr_eq(&view.project, project)
                && Arc::ptr_eq(&view.journal, &journal)
                && view.from == from
                && view.days == days
        };
        if let Some(view) = lock(&self.plans).iter().find(|v| same(v)) {
            return Ok(Arc::clone(view));
        }
        let plan = project.plan(from, days, &journal);
        let messages = project.messages(&plan.reminders);
        let view = Arc::new(PlanView {
            project: Arc::clone(project),
            journal,
            from,
            days,
            plan,
            messages,
        });
        let mut plans = lock(&self.plans);
        plans.retain(|v| Arc::ptr_eq(&v.project, project));
        plans.push_front(Arc::clone(&view));
        plans.truncate(PLANS_KEPT);
        Ok(view)
    }
}

impl Cache {
    /// Where the money stands on `as_of` (`relance report`'s values): the
    /// overview's and `/api/report`'s, made once per snapshot, journal and date.
    pub fn receivables(
        &self,
        project: &Arc<Project>,
        as_of: NaiveDate,
    ) -> Result<Arc<Receivables>> {
        let journal = self.journal(project)?;
        if let Some(read) = &*lock(&self.receivables)
            && Arc::ptr_eq(&read.project, project)
            && Arc::ptr_eq(&read.journal, &journal)
            && read.as_of == as_of
        {
            return Ok(Arc::clone(&read.receivables));
        }
        let computed = Arc::new(receivables(project, &journal, as_of));
        *lock(&self.receivables) = Some(ReceivablesRead {
            project: Arc::clone(project),
            journal,
            as_of,
            receivables: Arc::clone(&computed),
        });
        Ok(computed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open invoices of one currency on a date (for `/metrics`).
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    pub open_invoices: u64,
    /// What they leave to pay; `None` when the sum is too large for a
    /// decimal (each amount fits, their sum need not).
    pub open: Option<Decimal>,
}

/// The open invoices of every currency.
pub(crate) fn totals(project: &Project) -> BTreeMap<String, Totals> {
    let mut by_currency: BTreeMap<String, Totals> = BTreeMap::new();
    for inv in project.ledger.invoices.iter().filter(|i| i.is_open()) {
        let totals = by_currency
            .entry(inv.currency.to_string())
            .or_insert_with(|| Totals {
                open_invoices: 0,
                open: Some(Decimal::ZERO),
            });
        totals.open_invoices += 1;
        totals.open = totals.open.and_then(|t| t.checked_add(inv.amount_due()));
    }
    by_currency
}
