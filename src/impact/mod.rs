//! The difference two rulebooks make to the coming days: what each plans, matched reminder by reminder.
//!
//! `preview --baseline` compares a baseline's rules ("before") with the
//! folder's ("after"), and the daemon compares the project it ran with the
//! one a reload gives: both plan the same days against the same journal with
//! the engine and render the subjects with the templates, as `preview` does,
//! then match the rows by a reminder's identity (invoice, policy, stage,
//! occurrence).

mod baseline;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::journal::JournalView;
use crate::project::{Message, Project};

pub use baseline::Baseline;

/// How many days a preview shows by default, and the horizon of the
/// difference the daemon logs on a reload.
pub const HORIZON_DAYS: u32 = 14;

/// What the "after" rules plan that the "before" rules do not, and the
/// reverse, over the same days. Serialised as `preview --baseline --format
/// json` prints it.
#[derive(Debug, Serialize)]
pub struct Impact<'p> {
    /// How many reminders each plans.
    pub before: usize,
    pub after: usize,
    /// Rows as `preview --format json` prints them, sorted by date, invoice,
    /// policy, stage and occurrence.
    pub added: Vec<Message<'p>>,
    pub removed: Vec<Message<'p>>,
    pub changed: Vec<Change<'p>>,
    /// The counts of each stage with a difference, by policy, then stage in
    /// the order the policy lists them.
    pub by_stage: Vec<StageImpact>,
    /// The first day compared, and how many.
    #[serde(skip)]
    pub from: NaiveDate,
    #[serde(skip)]
    pub days: u32,
    /// How many reminders the "after" plan has on `from`: what a pass that
    /// day would send.
    #[serde(skip)]
    pub due_on_first_day: usize,
    /// Script failures of either plan, as `preview` words them: a reminder
    /// a script failure keeps out of one plan looks added or removed.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// One reminder both plan, but not alike.
#[derive(Debug, Serialize)]
pub struct Change<'p> {
    pub before: Message<'p>,
    pub after: Message<'p>,
    /// Which of [`COMPARED`] differ, in that order.
    pub fields: Vec<&'static str>,
}

/// The fields of a reminder whose difference makes it `changed`.
pub const COMPARED: [&str; 6] = ["date", "channel", "to", "template", "language", "subject"];

/// How many reminders of one stage the edit adds, removes and changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageImpact {
    pub policy: String,
    pub stage: String,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

/// A reminder's identity, as the journal keys it.
type Identity<'p> = (&'p str, &'p str, &'p str, u32);

fn identity<'p>(row: &Message<'p>) -> Identity<'p> {
    (row.invoice, row.policy, row.stage, row.occurrence)
}

/// The order rows are listed in.
fn order<'p>(row: &Message<'p>) -> (NaiveDate, Identity<'p>) {
    (row.date, identity(row))
}

/// Plans `days` days from `from` with each project's rules against the same
/// `journal`, and compares the two plans reminder by reminder.
pub fn impact<'p>(
    before: &'p Project,
    after: &'p Project,
    from: NaiveDate,
    days: u32,
    journal: &JournalView,
) -> Impact<'p> {
    let (old, mut warnings) = rows(before, from, days, journal);
    for warning in &mut warnings {
        warning.insert_str(0, "baseline: ");
    }
    let (new, after_warnings) = rows(after, from, days, journal);
    warnings.extend(after_warnings);
    let mut impact = Impact {
        before: old.len(),
        after: new.len(),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        by_stage: Vec::new(),
        from,
        days,
        due_on_first_day: new.iter().filter(|r| r.date == from).count(),
        warnings,
    };
    let mut unmatched: HashMap<Identity<'p>, Message<'p>> =
        old.into_iter().map(|row| (identity(&row), row)).collect();
    for row in new {
        match unmatched.remove(&identity(&row)) {
            None => impact.added.push(row),
            Some(old) => {
                let fields = differences(&old, &row);
                if !fields.is_empty() {
                    impact.changed.push(Change {
                        before: old,
                        after: row,
                        fields,
                    });
                }
            }
        }
    }
    impact.removed = unmatched.into_values().collect();
    impact.added.sort_by_key(order);
    impact.removed.sort_by_key(order);
    impact.changed.sort_by_key(|c| order(&c.after));
    impact.by_stage = by_stage(&impact, before, after);
    impact
}

/// The rows a project plans, subjects rendered, and its script failures.
fn rows<'p>(
    project: &'p Project,
    from: NaiveDate,
    days: u32,
    journal: &JournalView,
) -> (Vec<Message<'p>>, Vec<String>) {
    let plan = project.plan(from, days, journal);
    let warnings = plan
        .errors
        .iter()
        .map(|(invoice, error)| {
            let number = &project.ledger.invoices[*invoice].number;
            format!("{error} (invoice {number})")
        })
        .collect();
    let started = std::time::Instant::now();
    let rows = project.render(&plan.reminders, false);
    tracing::debug!(rows = rows.len(), elapsed = ?started.elapsed(), "rendered");
    (rows, warnings)
}

fn differences(before: &Message, after: &Message) -> Vec<&'static str> {
    let differs = [
        before.date != after.date,
        before.channel != after.channel,
        // Copies change who reads the message as much as its recipients.
        (&before.to, &before.cc, &before.bcc) != (&after.to, &after.cc, &after.bcc),
        before.template != after.template,
        before.language != after.language,
        before.subject != after.subject,
    ];
    COMPARED
        .iter()
        .zip(differs)
        .filter_map(|(field, differs)| differs.then_some(*field))
        .collect()
}

/// The counts of each stage with a difference, in the order a finance
/// manager reads them: by policy name, then as the policy lists its stages
/// (the "after" rules first, then the stages only the "before" rules have).
fn by_stage<'p>(impact: &Impact<'p>, before: &Project, after: &Project) -> Vec<StageImpact> {
    let mut stages: HashMap<(&'p str, &'p str), StageImpact> = HashMap::new();
    let mut count = |row: &Message<'p>, what: fn(&mut StageImpact)| {
        let entry = stages
            .entry((row.policy, row.stage))
            .or_insert_with(|| StageImpact {
                policy: row.policy.to_string(),
                stage: row.stage.to_string(),
                added: 0,
                removed: 0,
                changed: 0,
            });
        what(entry);
    };
    impact.added.iter().for_each(|r| count(r, |s| s.added += 1));
    impact
        .removed
        .iter()
        .for_each(|r| count(r, |s| s.removed += 1));
    for change in &impact.changed {
        count(&change.after, |s| s.changed += 1);
    }
    let position = |project: &Project, policy: &str, stage: &str| {
        project
            .rulebook
            .policies
            .iter()
            .find(|p| p.name == policy)
            .and_then(|p| p.stages.iter().position(|s| s.id == stage))
    };
    let mut listed: Vec<StageImpact> = stages.into_values().collect();
    listed.sort_by_cached_key(|s| {
        let rank = match position(after, &s.policy, &s.stage) {
            Some(i) => (0, i),
            None => (
                1,
                position(before, &s.policy, &s.stage).unwrap_or(usize::MAX),
            ),
        };
        (s.policy.clone(), rank, s.stage.clone())
    });
    listed
}

impl Impact<'_> {
    /// Whether the two plans are alike.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The difference in one line: `31 → 44 reminders (+13 overdue_2, -2
    /// courtesy, ~3 changed)`. Each stage says its net change; a stage that
    /// gains as many as it loses says both (`+2 -2 overdue`); a stage id
    /// that two policies share is named with its policy (`standard/overdue`).
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for s in &self.by_stage {
            let shared = self
                .by_stage
                .iter()
                .any(|o| o.stage == s.stage && o.policy != s.policy);
            let name = if shared {
                format!("{}/{}", s.policy, s.stage)
            } else {
                s.stage.clone()
            };
            let net = s.added as i64 - s.removed as i64;
            if net > 0 {
                parts.push(format!("+{net} {name}"));
            } else if net < 0 {
                parts.push(format!("{net} {name}"));
            } else if s.added > 0 {
                parts.push(format!("+{} -{} {name}", s.added, s.removed));
            }
        }
        if !self.changed.is_empty() {
            parts.push(format!("~{} changed", self.changed.len()));
        }
        let counts = format!("{} → {} reminders", self.before, self.after);
        match parts.is_empty() {
            true => counts,
            false => format!("{counts} ({})", parts.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(policy: &str, stage: &str, added: usize, removed: usize) -> StageImpact {
        StageImpact {
            policy: policy.into(),
            stage: stage.into(),
            added,
            removed,
            changed: 0,
        }
    }

    fn summary(before: usize, after: usize, by_stage: Vec<StageImpact>) -> String {
        Impact {
            before,
            after,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            by_stage,
            from: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            days: HORIZON_DAYS,
            due_on_first_day: 0,
            warnings: Vec::new(),
        }
        .summary()
    }

    #[test]
    fn a_summary_gives_each_stages_net_change_and_names_a_shared_stage_with_its_policy() {
        assert_eq!(summary(31, 31, vec![]), "31 → 31 reminders");
        assert_eq!(
            summary(
                31,
                42,
                vec![
                    stage("standard", "overdue_2", 13, 0),
                    stage("standard", "courtesy", 0, 2)
                ]
            ),
            "31 → 42 reminders (+13 overdue_2, -2 courtesy)"
        );
        // As many gained as lost: both, or the line would look unchanged.
        assert_eq!(
            summary(5, 5, vec![stage("standard", "collection", 2, 2)]),
            "5 → 5 reminders (+2 -2 collection)"
        );
        assert_eq!(
            summary(
                4,
                6,
                vec![
                    stage("key", "overdue", 1, 0),
                    stage("standard", "overdue", 1, 0)
                ]
            ),
            "4 → 6 reminders (+1 key/overdue, +1 standard/overdue)"
        );
    }
}
