//! Text for people: aligned tables, stage labels, one-line values, values trimmed, control characters escaped, weekdays, ISO dates.

use std::borrow::Cow;
use std::io::{self, Write};

use chrono::NaiveDate;

/// Writes rows as a table with aligned columns (widths in characters).
/// Control characters in a cell are written as escapes
/// ([`escape_controls`]): a value from a feed cannot break a row nor drive
/// the terminal.
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape_controls(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
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
    for row in &rows {
        line(out, &mut row.iter().map(|cell| cell.as_ref()))?;
    }
    Ok(())
}

/// `text` with its control characters (CR, LF, ESC…) written as escapes
/// (`\r`, `\n`, `\u{1b}`), for a terminal or a human log: a value from a
/// feed cannot start a line of its own nor drive the terminal. Borrowed,
/// without a copy, when there is none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// [`escape_controls`] for a text of several lines (a message's body):
/// line ends (LF, CR LF) and tabs are kept, the other controls escaped.
pub fn escape_controls_in_lines(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    escape(text, |at| match bytes[at] {
        b'\n' | b'\t' => true,
        b'\r' => bytes.get(at + 1) == Some(&b'\n'),
        _ => false,
    })
}

/// `text` with each control character escaped unless `keep` (given its
/// byte offset) says otherwise.
fn escape(text: &str, keep: impl Fn(usize) -> bool) -> Cow<'_, str> {
    let escaped = |(at, c): &(usize, char)| c.is_control() && !keep(*at);
    if !text.char_indices().any(|c| escaped(&c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (at, c) in text.char_indices() {
        match escaped(&(at, c)) {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// How many characters `text` takes once [`escape_controls`] wrote it.
pub fn escaped_width(text: &str) -> usize {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().count(),
            false => 1,
        })
        .sum()
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

/// `s.trim()`, without decoding characters when `s` is empty or begins
/// and ends with printable ASCII, as nearly every value of a feed does.
pub(crate) fn trim(s: &str) -> &str {
    // No whitespace: `char::is_whitespace` is ASCII's `\t`–`\r` and space.
    let solid = |b: &u8| matches!(b, 0x21..=0x7e);
    match s.as_bytes() {
        [] => s,
        [first, .., last] if solid(first) && solid(last) => s,
        [only] if solid(only) => s,
        _ => s.trim(),
    }
}

/// `date` as `NaiveDate`'s `Display` writes it (`2026-12-01`) without going
/// through `core::fmt`, which took a thousand instructions a date (a fifth
/// of a preview row's heading); `None` for a year outside 0–9999, which no
/// plausible invoice has, and which `Display` writes otherwise.
fn iso_date(date: NaiveDate) -> Option<[u8; 10]> {
    use chrono::Datelike;
    let year = u32::try_from(date.year())
        .ok()
        .filter(|&year| year <= 9999)?;
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let [c1, c2] = two(year / 100);
    let [y1, y2] = two(year);
    let [m1, m2] = two(date.month());
    let [d1, d2] = two(date.day());
    Some([c1, c2, y1, y2, b'-', m1, m2, b'-', d1, d2])
}

/// `write` given the text of `date` ([`iso_date`]; `Display`'s for a year
/// it does not write).
pub(crate) fn with_iso_date<R>(date: NaiveDate, write: impl FnOnce(&str) -> R) -> R {
    match iso_date(date) {
        // Digits and dashes: the text is always ASCII.
        Some(bytes) => write(std::str::from_utf8(&bytes).unwrap_or_default()),
        None => write(&date.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A generator of pseudo-random numbers (31 bits) from `seed`, a small
    /// linear congruential one: the tests' generated data is the same on
    /// every run.
    pub(crate) fn random(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        }
    }

    /// Dates are written as `Display` writes them: every day of the first
    /// five years of each century (leap or not), a day a week of the others,
    /// and the years `Display` alone writes.
    #[test]
    fn iso_dates_are_written_as_display_writes_them() {
        use chrono::Datelike;
        let mut date = NaiveDate::from_ymd_opt(-3, 12, 25).unwrap();
        let mut written = 0;
        while date < NaiveDate::from_ymd_opt(10_001, 1, 8).unwrap() {
            with_iso_date(date, |text| assert_eq!(text, date.to_string()));
            written += usize::from(iso_date(date).is_some());
            // Every day for a few years, then a day a week.
            let step = if date.year().rem_euclid(100) <= 4 {
                1
            } else {
                7
            };
            date = date + chrono::Days::new(step);
        }
        assert!(written > 100_000, "{written}");
        // The ends of years far beyond.
        for year in [-262_000, 10_000, 99_999, 262_000] {
            for date in [(year, 1, 1), (year, 12, 31)] {
                let date = NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap();
                with_iso_date(date, |text| assert_eq!(text, date.to_string()));
            }
        }
    }

    /// `count` texts of up to `longest` pieces each, taken at random from
    /// `pieces` (the same texts on every run).
    pub(crate) fn random_texts<'p>(
        pieces: &'p [&str],
        longest: u64,
        count: usize,
    ) -> impl Iterator<Item = String> + 'p {
        let mut next = random(3);
        (0..count).map(move |_| {
            (0..next() % (longest + 1))
                .map(|_| pieces[next() as usize % pieces.len()])
                .collect()
        })
    }

    /// Every text of up to four pieces, ASCII controls, spaces and wider
    /// whitespace among them, is trimmed as `str::trim` trims it.
    #[test]
    fn trim_is_str_trim() {
        let pieces = [
            "a", "é", " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\0", "\u{1f}", "\u{7f}", "~", "!",
            "\u{85}", "\u{a0}", "\u{3000}",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
        }
        for text in &texts {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped_and_clean_text_is_not_copied() {
        assert!(matches!(escape_controls("F1 é"), Cow::Borrowed("F1 é")));
        let forged = "F1\r\nINFO forged\u{1b}[2J\t";
        assert_eq!(escape_controls(forged), r"F1\r\nINFO forged\u{1b}[2J\t");
        assert_eq!(
            escaped_width(forged),
            escape_controls(forged).chars().count()
        );
        assert_eq!(
            escape_controls_in_lines("a\r\nb\n\tc\rd\u{1b}e"),
            "a\r\nb\n\tc\\rd\\u{1b}e"
        );
    }
}
