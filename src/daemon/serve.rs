//! The daemon's loop: the schedule, retries, hot reload on file changes and SIGHUP, and a clean stop on SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::compare::what;
use super::{
    Daemon, Evaluation, Event, Outcome, Reload, Report, deliverer, log_feed_problems, log_problems,
    rfc3339, warn_if_placeholder_sender,
};
use crate::diagnostics::{Location, Problems};
use crate::error::{Error, Result};
use crate::project::{Project, Rulebook};

/// How long a pass waits before trying again when the journal is busy
/// (another process holds its lock longer than the busy timeout).
const BUSY_RETRY: Duration = Duration::from_secs(1);

type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

impl Daemon {
    /// Reloads after files changed. Anything that fails to load keeps the
    /// last good version running; every error is logged with its location.
    /// A reload that loads is live at once (`now live: …`, once the console
    /// can see it); the difference it makes to the coming
    /// [`crate::impact::HORIZON_DAYS`] days, as `preview --baseline` would
    /// show it, is logged when known (`reload ok: …`, computed on a thread
    /// of its own: `daemon/compare.rs`).
    pub fn reload(&mut self, changed: &[PathBuf]) -> bool {
        let (at, started) = (Utc::now(), std::time::Instant::now());
        let before = Arc::clone(&self.project);
        let mut problems = Problems::default();
        let ok = self.reload_logged(changed, &mut problems);
        let names = self.names(changed);
        let reload = Reload {
            at,
            ok,
            changed: names.clone(),
            problems,
            took: started.elapsed(),
        };
        let project = Arc::clone(&self.project);
        self.shared.publish(
            |status| {
                status.project = project;
                if ok {
                    status.loaded_at = reload.at;
                }
                status.reload = Some(reload.clone());
            },
            Some(Outcome::Reloaded(&reload)),
        );
        if ok {
            self.compare(before, names);
        }
        ok
    }

    /// Says the reloaded rules are live, then asks for their comparison
    /// with those `before`.
    fn compare(&self, before: Arc<Project>, changed: Vec<String>) {
        let after = &self.project;
        tracing::info!(
            policies = after.rulebook.policies.len(),
            templates = after.rulebook.templates.all().len(),
            invoices = after.ledger.invoices.len(),
            "now live: {}",
            what(&changed)
        );
        let journal = self.journal_view().map_err(|e| e.to_string());
        let today = self.today(Utc::now());
        self.comparisons
            .ask(before, Arc::clone(after), changed, today, journal);
    }

    /// [`Daemon::reload`]'s loading, its problems logged and kept in `problems`.
    fn reload_logged(&mut self, changed: &[PathBuf], problems: &mut Problems) -> bool {
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
        let ok = if config_changed {
            self.reload_all(problems)
        } else {
            self.reload_parts(rules_changed, feeds_changed, problems)
        };
        if !ok {
            let names = self.names(changed);
            tracing::error!(changed = ?names, "reload failed: keeping the last good configuration");
        }
        ok
    }

    /// The changed files as a person names them: relative to the folder
    /// when they are in it.
    fn names(&self, changed: &[PathBuf]) -> Vec<String> {
        let folder = std::fs::canonicalize(&self.options.dir).ok();
        changed
            .iter()
            .map(|c| {
                folder
                    .as_ref()
                    .and_then(|f| c.strip_prefix(f).ok())
                    .unwrap_or(c)
                    .display()
                    .to_string()
            })
            .collect()
    }

    /// The config changed (or SIGHUP): the whole folder, loaded again.
    fn reload_all(&mut self, problems: &mut Problems) -> bool {
        let project = match Project::load(&self.options) {
            Err(e) => {
                tracing::error!("{e}");
                problems.push(match e {
                    Error::Problem(problem) => *problem,
                    e => crate::diagnostics::Problem::error(
                        Location::file(&self.options.dir),
                        e.to_string(),
                    ),
                });
                return false;
            }
            Ok(project) => project,
        };
        if project.problems.has_errors() {
            log_problems(&project.problems);
            problems.extend(project.problems);
            return false;
        }
        // As at start: an unreadable feed is not a feed with no invoices.
        if !project.unreadable_feeds.is_empty() {
            log_problems(&project.feed_problems);
            problems.extend(project.feed_problems);
            return false;
        }
        match deliverer(&project.config, &self.run) {
            Ok(deliverer) => {
                warn_if_placeholder_sender(&deliverer, Some(&self.deliverer));
                log_feed_problems(&project);
                self.project = Arc::new(project);
                self.deliverer = deliverer;
                true
            }
            Err(e) => {
                tracing::error!("delivery: {e}");
                let config = project.config.file.as_deref().unwrap_or(&self.options.dir);
                problems.error(Location::file(config), format!("delivery: {e}"));
                false
            }
        }
    }

    /// Rules or feeds changed: each part that loads is swapped in, the
    /// rest of the folder kept as it was.
    fn reload_parts(
        &mut self,
        rules_changed: bool,
        feeds_changed: bool,
        problems: &mut Problems,
    ) -> bool {
        let mut next = Project::clone(&self.project);
        let mut ok = true;
        if rules_changed {
            let (rulebook, found) = Rulebook::load(&next.config);
            if found.has_errors() {
                log_problems(&found);
                problems.extend(found);
                ok = false;
            } else {
                next.rulebook = Arc::new(rulebook);
            }
        }
        if feeds_changed {
            let load = Project::read_feeds(&next.config, &self.options);
            if load.unreadable.is_empty() {
                let (ledger, warnings) = Project::ledger(&next.config, load.invoices, load.index);
                for p in load.problems.iter().chain(warnings.iter()) {
                    tracing::warn!("{p}");
                }
                next.ledger = ledger;
                next.bad_rows = load.bad_rows;
            } else {
                log_problems(&load.problems);
                problems.extend(load.problems);
                ok = false;
            }
        }
        // Promises to pay live in the rules and act on the ledger: either
        // one replaced, they are set again.
        next.apply_promises();
        self.project = Arc::new(next);
        ok
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
    /// retries failed deliveries, reloads on file changes and SIGHUP. A busy
    /// journal (another process holding its lock) delays a pass, never ends
    /// the daemon.
    pub fn serve(mut self) -> Result<()> {
        let tx = self.sender.clone();
        let mut watcher = self.watch(tx.clone())?;
        let mut next_eval = Utc::now();
        let mut retries_wait = false;
        tracing::info!(dir = %self.options.dir.display(), "relance daemon started");
        loop {
            if self.stopping() {
                break;
            }
            let now = Utc::now();
            let wake = match self.serve_once(now, &mut next_eval, &mut retries_wait) {
                Ok(wake) => wake,
                Err(e) if e.is_transient() => {
                    tracing::warn!("{e}; trying again in {} s", BUSY_RETRY.as_secs());
                    Utc::now() + BUSY_RETRY
                }
                Err(e) => return Err(e),
            };
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
        self.comparisons.close();
        tracing::info!("relance daemon stopped");
        Ok(())
    }

    /// What is due at `now`: the scheduled evaluation, or the due retries;
    /// returns when to wake next.
    fn serve_once(
        &mut self,
        now: DateTime<Utc>,
        next_eval: &mut DateTime<Utc>,
        retries_wait: &mut bool,
    ) -> Result<DateTime<Utc>> {
        // The console alone: the folder is loaded and reloaded, nothing is evaluated.
        if self.run.serve_only {
            return Ok(now + chrono::Duration::days(1));
        }
        // Several daemons on one journal: the lease renewed each tick, and
        // what the deciding one planned delivered by all.
        if self
            .journal
            .as_ref()
            .is_some_and(crate::journal::Journal::is_shared)
            && !self.run.dry_run
        {
            return self.serve_shared(now, next_eval);
        }
        if now >= *next_eval {
            self.comparisons.wait_until_logged(&self.stop);
            let report = self.evaluate_published(now)?;
            report.log();
            *next_eval = self.next_evaluation(Utc::now());
            // Messages waiting for their send time wake the daemon then.
            if let Some(at) = report.next_send {
                *next_eval = (*next_eval).min(at.max(Utc::now()));
            }
            *retries_wait = report.deferred > 0;
        } else if let Some(journal) = &self.journal
            && !*retries_wait
            && journal.next_retry()?.is_some_and(|at| at <= rfc3339(now))
        {
            self.comparisons.wait_until_logged(&self.stop);
            let mut report = Report::default();
            self.recover(now, &mut report)?;
            // Due retries that cannot go out today wait for the next
            // evaluation rather than wake the daemon again at once.
            *retries_wait = report.deferred > 0;
        }
        let next_retry = match &self.journal {
            Some(j) if !*retries_wait => j
                .next_retry()?
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        };
        Ok(next_retry.map_or(*next_eval, |r| r.min(*next_eval)))
    }

    /// [`Daemon::evaluate`], published for the console, good or not.
    pub(super) fn evaluate_published(&mut self, now: DateTime<Utc>) -> Result<Report> {
        let started = std::time::Instant::now();
        let result = self.evaluate(now);
        let evaluation = Evaluation {
            at: Utc::now(),
            report: result.as_ref().ok().cloned(),
            error: result.as_ref().err().map(ToString::to_string),
            took: started.elapsed(),
        };
        self.shared.publish(
            |status| {
                if evaluation.error.is_none() {
                    status.evaluated_at = Some(evaluation.at);
                }
                status.evaluation = Some(evaluation.clone());
            },
            Some(Outcome::Evaluated(&evaluation)),
        );
        result
    }

    /// Watches the folders (not single files, so that editors that save via a
    /// temporary file and a rename are seen) and sends the relevant changes.
    fn watch(&self, tx: mpsc::Sender<Event>) -> Result<Watcher> {
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
                // A policy test changes nothing the daemon sends.
                let rule_file = matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "rhai" | "hbs")
                ) && !crate::rules::is_test_file(p);
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
        )
        .map_err(|cause| Error::Watch {
            path: self.options.dir.clone(),
            cause,
        })?;
        let mut parents: Vec<PathBuf> = feeds
            .iter()
            .chain([&config_file])
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        parents.sort();
        parents.dedup();
        let folders = [
            (&rules, RecursiveMode::Recursive),
            (&templates, RecursiveMode::Recursive),
        ];
        let parents = parents.iter().map(|p| (p, RecursiveMode::NonRecursive));
        for (dir, mode) in folders.into_iter().chain(parents) {
            if dir.is_dir() {
                debouncer.watch(dir, mode).map_err(|cause| Error::Watch {
                    path: dir.clone(),
                    cause,
                })?;
            }
        }
        Ok(debouncer)
    }
}

pub(super) fn absolute(p: &Path) -> PathBuf {
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

pub(super) fn spawn_signal_thread(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(Error::Signals)?;
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
