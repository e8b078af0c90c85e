//! `relance backtest`: what the rules would have sent on the history of the feeds, as a table or JSON.

use std::io::{self, Write};

use chrono::NaiveDate;

use super::{Format, json};
use crate::backtest::{Backtest, PAID_WITHIN};
use crate::project::Project;
use crate::text::table;

/// Replays the days from `from` to `to` and writes what the backtest found
/// on `out`; script failures and unmatched invoices go to `warn`.
pub fn backtest(
    out: &mut dyn Write,
    project: &Project,
    from: NaiveDate,
    to: NaiveDate,
    format: Format,
    warn: &mut dyn FnMut(&str),
) -> io::Result<()> {
    let found = Backtest::run(project, from, to);
    for (error, invoices) in &found.script_errors {
        warn(&format!("{error} ({})", some_invoices(invoices)));
    }
    if !found.unmatched.is_empty() {
        warn(&format!(
            "note: {} invoice(s) matched no policy on a day they were open: {}",
            found.unmatched.len(),
            some_invoices(&found.unmatched)
        ));
    }
    match format {
        Format::Json => json(out, &found),
        _ => write_table(out, &found),
    }
}

/// "invoice F1", "invoices F1, F2, F3 and 12 more".
fn some_invoices(numbers: &[String]) -> String {
    const SHOWN: usize = 10;
    match numbers {
        [one] => format!("invoice {one}"),
        _ if numbers.len() <= SHOWN => format!("invoices {}", numbers.join(", ")),
        _ => format!(
            "invoices {} and {} more",
            numbers[..SHOWN].join(", "),
            numbers.len() - SHOWN
        ),
    }
}

/// `n (p %)` of `of`, the share rounded to a whole percent.
fn share(n: usize, of: usize) -> String {
    match of {
        0 => n.to_string(),
        _ => format!("{n} ({} %)", (n * 100 + of / 2) / of),
    }
}

fn write_table(out: &mut dyn Write, found: &Backtest) -> io::Result<()> {
    let days = found.to.signed_duration_since(found.from).num_days() + 1;
    writeln!(
        out,
        "Backtest of the current rules from {} to {} ({days} days, journal empty on the first), {} invoice(s).\n",
        found.from, found.to, found.invoices
    )?;
    let paid_headers: Vec<String> = PAID_WITHIN
        .iter()
        .map(|d| format!("PAID WITHIN {d} DAYS"))
        .collect();
    let mut header = vec!["POLICY", "STAGE", "REMINDERS"];
    header.extend(paid_headers.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = found
        .by_stage
        .iter()
        .map(|s| {
            let mut row = vec![s.policy.clone(), s.stage.clone(), s.reminders.to_string()];
            row.extend(
                s.paid_within
                    .counts()
                    .iter()
                    .map(|&n| share(n, s.reminders)),
            );
            row
        })
        .collect();
    table(out, &header, &rows)?;
    let d = &found.days_late;
    writeln!(
        out,
        "\nDays late (paid date − due date) of the {} invoice(s):\n",
        found.invoices
    )?;
    let unpaid = format!("UNPAID ON {}", found.to);
    table(
        out,
        &["ON TIME", "1–15", "16–30", "31–60", "OVER 60", &unpaid],
        &[[
            d.on_time,
            d.days_1_15,
            d.days_16_30,
            d.days_31_60,
            d.over_60,
            d.unpaid,
        ]
        .map(|n| share(n, found.invoices))
        .to_vec()],
    )?;
    writeln!(
        out,
        "\nPaid late, or unpaid and overdue on {}, without any reminder: {} invoice(s).",
        found.to, found.late_without_reminder
    )?;
    if found.no_address > 0 {
        writeln!(
            out,
            "Email reminders to invoices without a usable address: {} (counted above as sent; they could not have been).",
            found.no_address
        )?;
    }
    Ok(())
}
