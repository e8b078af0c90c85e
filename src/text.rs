//! Text for people: aligned tables, stage labels, one-line values, weekdays.

use std::io::{self, Write};

use chrono::NaiveDate;

/// Writes rows as a table with aligned columns (widths in characters).
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                text.extend(std::iter::repeat_n(
                    ' ',
                    widths[i].saturating_sub(cell.chars().count()),
                ));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

pub fn stage_label(stage: &str, occurrence: u32) -> String {
    if occurrence == 0 {
        stage.to_string()
    } else {
        format!("{stage} #{occurrence}")
    }
}

/// `s` on one line: control characters (newlines included) become spaces,
/// runs of spaces one.
pub(crate) fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// "Sat", as `explain` writes a day.
pub fn weekday(date: NaiveDate) -> String {
    date.format("%a").to_string()
}
