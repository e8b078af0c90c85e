//! What a reload does to the next 14 days, compared on a thread of its own so that new rules are live at once.
//!
//! At a million invoices the comparison plans and renders two 14-day plans:
//! seconds, while swapping the new rules in takes milliseconds. The daemon
//! swaps them in and says so (`now live: …`), then asks for the comparison
//! and goes on; the comparison logs its `reload ok: …; next 14 days: …` line
//! when it is done. Only the newest edit is worth comparing: one asked for
//! while another is not yet logged replaces it (from the same starting
//! point, naming the files of both), and a comparison that finishes after a
//! newer one was asked for is dropped, so a burst of saves queues no work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::impact::{HORIZON_DAYS, impact};
use crate::journal::JournalView;
use crate::project::Project;

/// One comparison to make: the rules before and after, over the days from
/// `today`, against the journal as it was at the reload.
struct Comparison {
    /// Its number among those asked for: an older one is stale.
    number: u64,
    before: Arc<Project>,
    after: Arc<Project>,
    /// The files the reload(s) found changed; empty for everything (SIGHUP).
    changed: Vec<String>,
    today: NaiveDate,
    /// Why the journal could not be read, when it could not.
    journal: std::result::Result<JournalView, String>,
}

#[derive(Default)]
struct Queue {
    /// The comparison to make next.
    next: Option<Comparison>,
    /// Where the last comparison asked for starts and what it names, until
    /// it is logged: a reload before then compares from there too.
    unlogged: Option<(Arc<Project>, Vec<String>)>,
    /// How many comparisons were asked for.
    asked: u64,
    /// Whether the thread is making one.
    busy: bool,
    /// The daemon is gone: nothing more is logged.
    closed: bool,
}

/// The comparisons of a daemon's reloads, and the thread that makes them.
pub(super) struct Comparisons {
    queue: Arc<(Mutex<Queue>, Condvar)>,
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Comparisons {
    pub(super) fn start() -> Result<Comparisons> {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let worker = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("relance-compare".into())
            .spawn(move || work(&worker))
            .map_err(|e| {
                Error::Refused(format!(
                    "cannot start the thread that compares a reload's rules: {e}"
                ))
            })?;
        Ok(Comparisons { queue })
    }

    /// Asks for what going from `before` to `after` (a reload of the
    /// `changed` files) does to the next days. When the comparison of an
    /// earlier reload is not logged yet, this one replaces it and starts
    /// where it started.
    pub(super) fn ask(
        &self,
        before: Arc<Project>,
        after: Arc<Project>,
        changed: Vec<String>,
        today: NaiveDate,
        journal: std::result::Result<JournalView, String>,
    ) {
        let (queue, wake) = &*self.queue;
        let mut queue = lock(queue);
        let (before, changed) = match queue.unlogged.take() {
            Some((start, earlier)) => (start, together(earlier, changed)),
            None => (before, changed),
        };
        queue.unlogged = Some((Arc::clone(&before), changed.clone()));
        queue.asked += 1;
        queue.next = Some(Comparison {
            number: queue.asked,
            before,
            after,
            changed,
            today,
            journal,
        });
        wake.notify_all();
    }

    /// Waits until every comparison asked for is logged (or `stop` is
    /// raised): a pass logs after the reload that came before it.
    pub(super) fn wait_until_logged(&self, stop: &AtomicBool) {
        let (queue, done) = &*self.queue;
        let mut queue = lock(queue);
        while (queue.next.is_some() || queue.busy) && !stop.load(Ordering::SeqCst) {
            // Woken by the comparison, or after a while to look at `stop`.
            queue = done
                .wait_timeout(queue, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Logs no more comparisons: the daemon stops (one being made is
    /// dropped when done, and the thread ends).
    pub(super) fn close(&self) {
        let (queue, wake) = &*self.queue;
        lock(queue).closed = true;
        wake.notify_all();
    }
}

impl Drop for Comparisons {
    fn drop(&mut self) {
        self.close();
    }
}

/// The files of two reloads, as one: everything if either was everything.
fn together(mut earlier: Vec<String>, later: Vec<String>) -> Vec<String> {
    if earlier.is_empty() || later.is_empty() {
        return Vec::new();
    }
    for name in later {
        if !earlier.contains(&name) {
            earlier.push(name);
        }
    }
    earlier
}

/// What the reload of `changed` is called in the log.
pub(super) fn what(changed: &[String]) -> String {
    match changed.is_empty() {
        true => "everything reloaded (SIGHUP)".to_string(),
        false => format!("{} changed", changed.join(", ")),
    }
}

/// The thread: makes each comparison asked for, and logs it unless a newer
/// one was asked for meanwhile or the daemon is gone.
fn work(shared: &(Mutex<Queue>, Condvar)) {
    let (queue, signal) = shared;
    loop {
        let comparison = {
            let mut queue = lock(queue);
            loop {
                if queue.closed {
                    return;
                }
                if let Some(next) = queue.next.take() {
                    queue.busy = true;
                    break next;
                }
                queue = signal.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let line = compared(&comparison);
        let mut queue = lock(queue);
        queue.busy = false;
        if !queue.closed && queue.asked == comparison.number {
            // Logged under the lock: a reload asking now either sees it
            // logged, or replaces it before it is.
            line.log();
            queue.unlogged = None;
        }
        signal.notify_all();
    }
}

/// A comparison's log line, made.
struct Line {
    what: String,
    policies: usize,
    templates: usize,
    invoices: usize,
    outcome: std::result::Result<Compared, String>,
}

/// The difference, in figures and words.
struct Compared {
    due: usize,
    before: usize,
    after: usize,
    summary: String,
}

fn compared(c: &Comparison) -> Line {
    let outcome = c.journal.as_ref().map_err(Clone::clone).map(|journal| {
        let impact = impact(&c.before, &c.after, c.today, HORIZON_DAYS, journal);
        Compared {
            due: impact.due_on_first_day,
            before: impact.before,
            after: impact.after,
            summary: impact.summary(),
        }
    });
    Line {
        what: what(&c.changed),
        policies: c.after.rulebook.policies.len(),
        templates: c.after.rulebook.templates.all().len(),
        invoices: c.after.ledger.invoices.len(),
        outcome,
    }
}

impl Line {
    fn log(&self) {
        let Line {
            what,
            policies,
            templates,
            invoices,
            ..
        } = self;
        match &self.outcome {
            Ok(c) => tracing::info!(
                policies,
                templates,
                invoices,
                due = c.due,
                before = c.before,
                after = c.after,
                "reload ok: {what}; next {HORIZON_DAYS} days: {}",
                c.summary
            ),
            // The new rules are live; only their comparison is missing.
            Err(e) => tracing::warn!(
                policies,
                templates,
                invoices,
                "reload ok: {what}; the difference it makes is unknown: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn two_reloads_compared_as_one_name_each_file_once_and_everything_wins() {
        assert_eq!(
            together(
                names(&["rules/a.yaml"]),
                names(&["rules/b.yaml", "rules/a.yaml"])
            ),
            names(&["rules/a.yaml", "rules/b.yaml"])
        );
        assert!(together(names(&["rules/a.yaml"]), Vec::new()).is_empty());
        assert!(together(Vec::new(), names(&["rules/a.yaml"])).is_empty());
        assert_eq!(
            what(&names(&["rules/a.yaml", "data/invoices.csv"])),
            "rules/a.yaml, data/invoices.csv changed"
        );
        assert_eq!(what(&[]), "everything reloaded (SIGHUP)");
    }
}
