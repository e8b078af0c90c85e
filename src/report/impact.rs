//! `preview --baseline`: the difference an edit of the rules makes, as a table grouped by stage or as JSON.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::calendar::add_days;
use crate::impact::{Change, Impact};
use crate::project::Message;
use crate::text::{stage_label, table};

use super::{Format, json, reminder_cell};

/// The rows a table shows of one stage unless `--all` asks for every one.
pub const ROWS_PER_STAGE: usize = 50;

/// Writes `impact`: JSON with the keys of docs/reference.md, or a table per
/// stage (counts, then its rows, [`ROWS_PER_STAGE`] of them unless `all`).
pub fn write(out: &mut dyn Write, impact: &Impact, format: Format, all: bool) -> io::Result<()> {
    if format == Format::Json {
        return json(out, impact);
    }
    let until = add_days(impact.from, i64::from(impact.days) - 1);
    if impact.is_empty() {
        return writeln!(
            out,
            "No difference from {} to {until}: {} reminder(s) before and after.",
            impact.from, impact.after
        );
    }
    writeln!(out, "From {} to {until}: {}", impact.from, impact.summary())?;
    let mut rows: HashMap<(&str, &str), Vec<Row>> = HashMap::new();
    let lines = (impact.added.iter().map(Row::Added))
        .chain(impact.removed.iter().map(Row::Removed))
        .chain(impact.changed.iter().map(Row::Changed));
    for row in lines {
        let shown = row.shown();
        rows.entry((shown.policy, shown.stage))
            .or_default()
            .push(row);
    }
    for stage in &impact.by_stage {
        let counts: Vec<String> = [
            (stage.added, "added"),
            (stage.removed, "removed"),
            (stage.changed, "changed"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        writeln!(
            out,
            "\n{} / {}: {}",
            stage.policy,
            stage.stage,
            counts.join(", ")
        )?;
        let mut group = rows
            .remove(&(stage.policy.as_str(), stage.stage.as_str()))
            .unwrap_or_default();
        group.sort_by_key(|r| {
            let shown = r.shown();
            (shown.date, shown.invoice, shown.occurrence)
        });
        let limit = if all { group.len() } else { ROWS_PER_STAGE };
        let cells: Vec<Vec<String>> = group.iter().take(limit).map(Row::cells).collect();
        table(
            out,
            &[
                "CHANGE",
                "DATE",
                "INVOICE",
                "CUSTOMER",
                "STAGE",
                "CHANNEL",
                "SUBJECT / DIFFERENCE",
            ],
            &cells,
        )?;
        if group.len() > limit {
            writeln!(
                out,
                "… and {} more (--all to see them)",
                group.len() - limit
            )?;
        }
    }
    Ok(())
}

/// One line of a stage's table.
enum Row<'i, 'p> {
    Added(&'i Message<'p>),
    Removed(&'i Message<'p>),
    Changed(&'i Change<'p>),
}

impl<'p> Row<'_, 'p> {
    /// The reminder the line shows: the one that goes out after the edit,
    /// or the one it removes.
    fn shown(&self) -> &Message<'p> {
        match self {
            Row::Added(r) | Row::Removed(r) => r,
            Row::Changed(c) => &c.after,
        }
    }

    fn cells(&self) -> Vec<String> {
        let r = self.shown();
        let (change, detail) = match self {
            Row::Added(_) => ("added", r.subject.clone()),
            Row::Removed(_) => ("removed", r.subject.clone()),
            Row::Changed(c) => ("changed", differences(c)),
        };
        vec![
            change.to_string(),
            r.date.to_string(),
            r.invoice.to_string(),
            r.customer_name.to_string(),
            stage_label(r.stage, r.occurrence),
            r.channel.as_str().to_string(),
            detail,
        ]
    }
}

/// `date: 2026-12-02 → 2026-12-03; subject: Relance → Rappel`.
fn differences(change: &Change) -> String {
    change
        .fields
        .iter()
        .map(|f| {
            format!(
                "{f}: {} → {}",
                reminder_cell(&change.before, f),
                reminder_cell(&change.after, f)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
