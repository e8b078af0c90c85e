//! Several daemons on one PostgreSQL journal: the evaluation lease (one instance decides), claims (every instance delivers), each one's role.
//!
//! The instance holding the lease (`journal.lease_seconds`, renewed every
//! [`TICK`]) decides the day's reminders and journals them `planned`,
//! claimed by nobody. Every instance, that one included, then claims
//! pending messages a few at a time (`FOR UPDATE SKIP LOCKED`: no two take
//! the same row) and delivers them as a single daemon does. A claim lasts
//! the lease's time: the claims of an instance that died are taken by the
//! others once they expire, with the proof rules of a crash (a file written
//! is not written again); when the deciding instance dies, another takes
//! the lease within `lease_seconds` and evaluates at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Daemon, Report, rfc3339};
use crate::config::JournalSetting;
use crate::error::Result;
use crate::journal::{Journal, JournalRow};

/// How often an instance on a shared journal renews its role and looks for
/// messages to deliver.
pub(super) const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// How many rows a claim takes at most (with the rest of their messages):
/// small enough that a batch is delivered well within a claim's time.
const CLAIM: usize = 64;

/// What an instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The only daemon of an SQLite journal: it decides and delivers.
    Single,
    /// Holds the evaluation lease of a shared journal: decides the
    /// reminders, and delivers with the others.
    Deciding,
    /// Delivers what the deciding instance planned.
    Delivering,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Deciding => "deciding",
            Role::Delivering => "delivering",
        }
    }
}

/// This instance's name on a shared journal: the machine and the process,
/// as the lease and the claims record it.
pub(super) fn instance_name() -> String {
    let mut host = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let ok = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0;
    let end = host.iter().position(|&b| b == 0).unwrap_or(host.len());
    let host = match ok {
        true => String::from_utf8_lossy(&host[..end]).into_owned(),
        false => "localhost".into(),
    };
    format!("{host}:{}", std::process::id())
}

impl Daemon {
    /// How long the lease and the claims last.
    fn lease_seconds(&self) -> u64 {
        match &self.project.config.journal {
            JournalSetting::Postgres(pg) => pg.lease_seconds.max(1),
            JournalSetting::File(_) => 30,
        }
    }

    /// How often the claims of a batch in delivery are renewed: three
    /// times in a claim's life.
    pub(super) fn claims_refresh(&self) -> std::time::Duration {
        match self.journal.as_ref().is_some_and(Journal::is_shared) {
            true => std::time::Duration::from_millis(self.lease_seconds() * 1000 / 3),
            false => std::time::Duration::from_secs(3600),
        }
    }

    /// Renews this instance's claims when a third of their life has passed
    /// since `kept` (a shared journal; nothing to do with SQLite).
    pub(super) fn keep_claims(&self, kept: &mut std::time::Instant) -> Result<()> {
        if kept.elapsed() < self.claims_refresh() {
            return Ok(());
        }
        if let Some(journal) = &self.journal {
            journal.keep_claims(&self.instance, self.lease_seconds())?;
        }
        *kept = std::time::Instant::now();
        Ok(())
    }

    /// Takes or renews the evaluation lease: this instance's role now,
    /// logged and published when it changes.
    pub(super) fn take_role(&mut self) -> Result<Role> {
        let journal = self.journal()?;
        let role = match journal.is_shared() {
            false => Role::Single,
            true => match journal.lease(&self.instance, self.lease_seconds())? {
                true => Role::Deciding,
                false => Role::Delivering,
            },
        };
        if self.role != Some(role) {
            match role {
                Role::Deciding => tracing::info!(role = role.as_str(), instance = %self.instance,
                    "role: deciding (this instance holds the evaluation lease: it decides the reminders, and delivers)"),
                Role::Delivering => tracing::info!(role = role.as_str(), instance = %self.instance,
                    "role: delivering (another instance decides; this one delivers)"),
                Role::Single => {}
            }
            self.role = Some(role);
            let instance = self.instance.clone();
            self.shared.publish(
                |status| {
                    status.role = Some(role);
                    status.instance = Some(instance);
                },
                None,
            );
        }
        Ok(role)
    }

    /// Gives the lease up when this instance holds it: at a clean stop,
    /// another instance decides at once rather than after the lease's time.
    pub(super) fn give_up_role(&self) {
        if self.role == Some(Role::Deciding)
            && let Some(journal) = &self.journal
            && let Err(e) = journal.give_up_lease(&self.instance)
        {
            tracing::warn!("giving up the evaluation lease: {e}");
        }
    }

    /// Claims and delivers pending messages, a few at a time, until none
    /// is left that another instance does not hold.
    pub(super) fn deliver_claimed(
        &mut self,
        now: DateTime<Utc>,
        report: &mut Report,
    ) -> Result<()> {
        let now_s = rfc3339(now);
        let lease = self.lease_seconds();
        loop {
            if self.stopping() {
                report.interrupted = true;
                return Ok(());
            }
            // A long batch keeps the role it started with.
            self.take_role()?;
            let claimed = self
                .journal()?
                .claim_due(&self.instance, lease, &now_s, CLAIM)?;
            if claimed.is_empty() {
                return Ok(());
            }
            let mut by_message: Vec<(String, Vec<JournalRow>)> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for (row, reclaimed) in claimed {
                if reclaimed {
                    report.recovered += 1;
                }
                match index.get(&row.message) {
                    Some(&i) => by_message[i].1.push(row),
                    None => {
                        index.insert(row.message.clone(), by_message.len());
                        by_message.push((row.message.clone(), vec![row]));
                    }
                }
            }
            let mut proofs = self.deliverer.proofs();
            let mut batch = Vec::new();
            for (token, rows) in by_message {
                if let Some(outgoing) = self.ready(token, &rows, &mut proofs, now, report)? {
                    batch.push(outgoing);
                }
            }
            self.deliver(batch, now, report)?;
        }
    }

    /// One tick of an instance on a shared journal: the role renewed, then
    /// the evaluation when it is due (or when this instance has just taken
    /// the lease over from one that died), else the messages it can claim.
    /// Returns when to wake next.
    pub(super) fn serve_shared(
        &mut self,
        now: DateTime<Utc>,
        next_eval: &mut DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        let before = self.role;
        let role = self.take_role()?;
        let took_over = role == Role::Deciding && before == Some(Role::Delivering);
        if now >= *next_eval || took_over {
            self.comparisons.wait_until_logged(&self.stop);
            let report = self.evaluate_published(now)?;
            report.log();
            *next_eval = self.next_evaluation(Utc::now());
            if let Some(at) = report.next_send {
                *next_eval = (*next_eval).min(at.max(Utc::now()));
            }
        } else {
            let mut report = Report::default();
            self.deliver_claimed(now, &mut report)?;
            if report.sent + report.failed + report.recovered > 0 {
                tracing::info!(
                    role = role.as_str(),
                    sent = report.sent,
                    failed = report.failed,
                    recovered = report.recovered,
                    "delivered what it claimed"
                );
            }
        }
        let tick = chrono::Duration::from_std(TICK).unwrap_or(chrono::Duration::seconds(1));
        Ok((Utc::now() + tick).min(*next_eval))
    }
}
