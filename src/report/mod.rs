//! Presenting results to people (aligned tables, prose) and machines (JSON, CSV).

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use chrono::NaiveDate;

use crate::calendar::add_days;
use crate::diagnostics::Problems;
use crate::engine::{Evaluator, Reminder};
use crate::error::{Error, Result};
use crate::journal::{JournalRow, JournalView, State};
use crate::model::InvoiceId;
use crate::project::{Languages, Message, Project};
use crate::text::{escape_controls, escape_controls_in_lines, escaped_width, stage_label, table};

pub mod approvals;
pub mod backtest;
pub mod commands;
pub mod explain;
pub mod impact;
pub mod journal_copy;
pub mod receivables;
mod test_results;

pub use receivables::{Receivables, receivables, receivables_fragment, receivables_html};

pub use test_results::policy_tests;

/// How a command writes its results: a table for people, JSON or CSV for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    /// The names the command line accepts, in the order its help lists them.
    pub const NAMES: [&'static str; 3] = ["table", "json", "csv"];
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(name: &str) -> Result<Format, String> {
        match name {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("expected one of {}", Format::NAMES.join(", "))),
        }
    }
}

/// `relance check`: every problem of the folder on `out` (as
/// `file:line:col: message`, or JSON), the summary line to `summary`;
/// returns how many are errors.
pub fn check(
    out: &mut dyn Write,
    summary: &mut dyn Write,
    project: &Project,
    today: NaiveDate,
    format: Format,
) -> io::Result<usize> {
    let mut problems = project.check(today);
    problems.extend(crate::policy_tests::check_tests(project));
    let errors = problems.iter().filter(|p| p.is_error()).count();
    match format {
        Format::Json => json(out, &problems.0)?,
        _ => problems_text(out, &problems)?,
    }
    writeln!(
        summary,
        "{}: {errors} error(s), {} warning(s) in {} invoice(s) ({} bad row(s)), {} policies, {} templates",
        if errors == 0 { "ok" } else { "problems found" },
        problems.len() - errors,
        project.ledger.invoices.len() + project.bad_rows,
        project.bad_rows,
        project.rulebook.policies.len(),
        project.rulebook.templates.all().len(),
    )?;
    Ok(errors)
}

/// Problems as `file:line:col: message`, one a line.
pub fn problems_text(out: &mut dyn Write, problems: &Problems) -> io::Result<()> {
    for p in problems.iter() {
        writeln!(out, "{p}")?;
    }
    Ok(())
}

/// What `relance preview` shows.
#[derive(Debug, Clone)]
pub struct PreviewRequest {
    pub from: NaiveDate,
    pub days: u32,
    pub format: Format,
    /// Each full message, not only its subject.
    pub render: bool,
    /// One invoice's reminders only.
    pub invoice: Option<String>,
}

/// `relance preview`: the reminders of the coming days on `out`; script
/// failures, messages that cannot be sent and unmatched invoices to `warn`.
pub fn preview(
    out: &mut dyn Write,
    project: &Project,
    journal: &JournalView,
    request: &PreviewRequest,
    warn: &mut dyn FnMut(&str),
) -> Result<()> {
    let only = match &request.invoice {
        Some(number) => Some(
            project
                .ledger
                .find(number)
                .ok_or_else(|| Error::UnknownInvoice(number.clone()))?,
        ),
        None => None,
    };
    // What is skipped only the journal needs.
    let evaluator = Evaluator {
        skipped: false,
        ..project.evaluator()
    };
    let plan = evaluator.plan(request.from, request.days, journal, only);
    // With --invoice the plan holds its customer's other invoices too (a
    // message may group them): only its own rows are shown.
    let shown = |i: &InvoiceId| only.is_none_or(|o| o == *i);
    for (invoice, error) in plan.errors.iter().filter(|(i, _)| shown(i)) {
        warn(&format!(
            "{error} (invoice {})",
            project.ledger.invoices[*invoice].number
        ));
    }
    let io = |cause: io::Error| Error::Output(cause);
    let started = std::time::Instant::now();
    write_preview(
        out,
        project,
        &plan.reminders,
        only,
        request.format,
        request.render,
        warn,
    )
    .map_err(io)?;
    tracing::debug!(elapsed = ?started.elapsed(), "rendered and written");
    if request.format == Format::Table {
        let until = add_days(request.from, i64::from(request.days) - 1);
        writeln!(
            out,
            "\n{} reminder(s) from {} to {until}.",
            plan.reminders.iter().filter(|r| shown(&r.invoice)).count(),
            request.from
        )
        .map_err(io)?;
    }
    note_awaiting(project, journal, only, warn);
    if !plan.unmatched.is_empty() {
        let numbers: Vec<&str> = plan
            .unmatched
            .iter()
            .take(10)
            .map(|i| &*project.ledger.invoices[*i].number)
            .collect();
        warn(&format!(
            "note: {} open invoice(s) matched no policy: {}{}",
            plan.unmatched.len(),
            numbers.join(", "),
            if plan.unmatched.len() > 10 {
                ", …"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// The reminders the journal holds for a person's approval, of invoices
/// still open: not planned again (they are decided), they go out once
/// approved. A note on stderr, so that `preview`'s output stays the plan.
fn note_awaiting(
    project: &Project,
    journal: &JournalView,
    only: Option<InvoiceId>,
    warn: &mut dyn FnMut(&str),
) {
    let mut awaiting: Vec<String> = journal
        .by_invoice
        .iter()
        .filter(|(number, _)| {
            project.ledger.find(number).is_some_and(|i| {
                project.ledger.invoices[i].is_open() && only.is_none_or(|o| o == i)
            })
        })
        .flat_map(|(number, marks)| {
            marks
                .iter()
                .filter(|m| m.state == State::AwaitingApproval)
                .map(move |m| format!("{number} {}", stage_label(&m.stage, m.occurrence)))
        })
        .collect();
    if awaiting.is_empty() {
        return;
    }
    awaiting.sort();
    warn(&format!(
        "note: {} reminder(s) await approval in the journal, sent once approved \
         (relance approve INVOICE… | --all): {}{}",
        awaiting.len(),
        awaiting[..awaiting.len().min(10)].join(", "),
        if awaiting.len() > 10 { ", …" } else { "" }
    ));
}

pub fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// CSV with the keys of the JSON objects as columns (nested values as JSON text).
pub fn csv<T: Serialize>(out: &mut dyn Write, rows: &[T], columns: &[&str]) -> io::Result<()> {
    let mut w = ::csv::Writer::from_writer(out);
    w.write_record(columns)?;
    for row in rows {
        let value = serde_json::to_value(row)?;
        w.write_record(columns.iter().map(|c| match value.get(*c) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }))?;
    }
    w.flush()
}

pub const REMINDER_COLUMNS: [&str; 21] = [
    "date",
    "invoice",
    "customer_id",
    "customer_name",
    "policy",
    "stage",
    "occurrence",
    "message",
    "channel",
    "to",
    "language",
    "template",
    "subject",
    "amount_due",
    "currency",
    "send_at",
    "error",
    "approval",
    "cc",
    "bcc",
    "reply_to",
];

const PREVIEW_HEADER: [&str; 8] = [
    "DATE", "INVOICE", "CUSTOMER", "POLICY", "STAGE", "CHANNEL", "DUE", "SUBJECT",
];

/// Reminders rendered and formatted at once (on every core); memory holds
/// only this many, whatever the size of the preview.
const WINDOW: usize = 1 << 14;
/// The window with whole messages: a grouped message's body is on each of
/// its rows, and a window holds them all until it is written.
const RENDER_WINDOW: usize = 1 << 12;
/// The reminders one core renders and formats in one go.
const CHUNK: usize = 2048;

/// Writes a preview: the planned reminders rendered (subjects, or whole
/// messages with `render`) and formatted on every core, a window at a time,
/// then written in order. `warn` gets a line for each reminder that could not
/// be rendered, in the order of the output.
pub fn write_preview(
    out: &mut dyn Write,
    project: &Project,
    plan: &[Reminder],
    only: Option<InvoiceId>,
    format: Format,
    render: bool,
    warn: &mut dyn FnMut(&str),
) -> io::Result<()> {
    use rayon::prelude::*;
    let shown = |p: &Reminder| only.is_none_or(|i| p.invoice == i);
    let rows = RowFormat {
        one_invoice: only.is_some(),
        ..RowFormat::new(format, render, project, plan, &shown)
    };
    let started = std::time::Instant::now();
    let messages = project.messages(plan);
    tracing::debug!(groups = messages.groups.len(), elapsed = ?started.elapsed(), "grouped");
    // Grouped messages, rendered in the window of their first reminder and
    // kept until the window of their last; in JSON with the text their rows
    // share already written (a statement's body is on each of its rows).
    let mut grouped: HashMap<usize, (Message, Vec<u8>)> = HashMap::new();
    let mut written = false;
    out.write_all(&rows.header())?;
    let (size, chunk_size) = if render {
        (RENDER_WINDOW, RENDER_WINDOW / 8)
    } else {
        (WINDOW, CHUNK)
    };
    // The bytes a JSON row took in the last window, a quarter more: a
    // chunk's buffer sized from it is not grown (and copied) as it fills.
    let mut row_bytes = 1024;
    for (w, window) in plan.chunks(size).enumerate() {
        let base = w * size;
        let opened: Vec<(usize, (Message, Vec<u8>))> = (base..base + window.len())
            .into_par_iter()
            .filter_map(|i| {
                // A message of one reminder renders with its row, below.
                let group = messages.group(i).filter(|g| g[0] == i && g.len() > 1)?;
                let rows: Vec<Reminder> = group.iter().map(|&j| plan[j]).collect();
                let mut message = project.message(&rows, render);
                let mut text = Vec::new();
                if format == Format::Json {
                    message.write_json_text(&mut text);
                    // Its rows are written from `text` now.
                    (message.body, message.html) = (None, None);
                }
                Some((i, (message, text)))
            })
            .collect();
        grouped.extend(opened);
        let parts: Vec<io::Result<Part>> = window
            .par_chunks(chunk_size)
            .enumerate()
            .map(|(c, chunk)| {
                let mut part = Part::default();
                let mut languages = Languages::default();
                let mut warn_of = |r: &Message, error: &Option<String>| {
                    if let Some(e) = error {
                        part.warnings.push(format!(
                            "warning: {} {} {}: {e}",
                            r.date, r.invoice, r.stage
                        ));
                    }
                };
                let shown_rows = chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| shown(p))
                    .map(|(k, p)| (k, p, messages.group(base + c * chunk_size + k)));
                if format == Format::Json {
                    // Each row written as it is made; a grouped message's
                    // shared text written once, and spliced into each of
                    // its rows as the chunk is written out.
                    let mut out = Vec::with_capacity(chunk.len() * row_bytes);
                    let mut splices = Vec::new();
                    let ledger = &project.ledger;
                    for (k, p, group) in shown_rows {
                        // Its invoice, whom it bills and their texts are
                        // far apart in memory: asked for a few rows ahead.
                        ledger.prefetch_plan(|k| chunk.get(k).map(|r| r.invoice), k);
                        match group {
                            Some(group) if group.len() > 1 => {
                                let (lead, text) = &grouped[&group[0]];
                                let r = project.member_heading(p, lead);
                                warn_of(&r, &lead.error);
                                json_row(&mut out, &r, Some((text, &mut splices)));
                            }
                            _ => {
                                let r = project.reminder_in(p, render, &mut languages);
                                warn_of(&r, &r.error);
                                json_row(&mut out, &r, None);
                            }
                        }
                    }
                    part.bytes = out;
                    part.splices = splices;
                    return Ok(part);
                }
                let reminders: Vec<Message> = shown_rows
                    .map(|(_, p, group)| match group {
                        Some(group) if group.len() > 1 => project.member(p, &grouped[&group[0]].0),
                        _ => project.reminder_in(p, render, &mut languages),
                    })
                    .collect();
                reminders.iter().for_each(|r| warn_of(r, &r.error));
                part.bytes = rows.rows(&reminders)?;
                Ok(part)
            })
            .collect();
        if format == Format::Json {
            let bytes = parts.iter().flatten().map(|p| p.bytes.len()).sum::<usize>();
            let per_row = bytes.checked_div(window.len()).unwrap_or(0);
            row_bytes = (per_row.saturating_mul(5) / 4).clamp(256, 1 << 16);
        }
        for part in parts {
            let part = part?;
            let opens = !written && format == Format::Json && !part.bytes.is_empty();
            part.write(out, usize::from(opens))?;
            written |= !part.bytes.is_empty();
            part.warnings.iter().for_each(|line| warn(line));
        }
        let end = base + window.len();
        grouped.retain(|&first, _| messages.group(first).is_some_and(|g| g[g.len() - 1] >= end));
    }
    out.write_all(&rows.footer(!plan.iter().any(shown)))
}

/// How preview rows are written: each chunk of rows is formatted on its own,
/// into bytes, so that chunks can be formatted in parallel.
struct RowFormat {
    format: Format,
    render: bool,
    /// Table only: the widths of the first seven columns.
    widths: [usize; 7],
    /// `--invoice`: one invoice's rows only, each with its whole message.
    one_invoice: bool,
}

impl RowFormat {
    /// A table needs its column widths, computed from the plan without
    /// rendering anything.
    fn new(
        format: Format,
        render: bool,
        project: &Project,
        plan: &[Reminder],
        shown: &(dyn Fn(&Reminder) -> bool + Sync),
    ) -> RowFormat {
        use rayon::prelude::*;
        let header = PREVIEW_HEADER.map(str::len);
        let mut widths: [usize; 7] = std::array::from_fn(|i| header[i]);
        if format == Format::Table && !render {
            widths = plan
                .par_iter()
                .filter(|p| shown(p))
                .map(|p| cell_widths(project, p))
                .reduce(|| widths, |a, b| std::array::from_fn(|i| a[i].max(b[i])));
        }
        RowFormat {
            format,
            render,
            widths,
            one_invoice: false,
        }
    }

    fn columns(&self) -> impl Iterator<Item = &'static str> {
        let rendered: &[&str] = if self.render { &["body", "html"] } else { &[] };
        REMINDER_COLUMNS.iter().chain(rendered).copied()
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.format {
            Format::Json => out.extend_from_slice(b"["),
            Format::Csv => {
                let mut w = ::csv::Writer::from_writer(&mut out);
                let _ = w.write_record(self.columns());
                drop(w);
            }
            Format::Table if !self.render => {
                let _ = write_row(&mut out, &self.widths, PREVIEW_HEADER.iter().copied());
            }
            Format::Table => {}
        }
        out
    }

    fn footer(&self, empty: bool) -> Vec<u8> {
        match self.format {
            Format::Json if empty => b"]\n".to_vec(),
            Format::Json => b"\n]\n".to_vec(),
            _ => Vec::new(),
        }
    }

    /// The rows of `reminders`. In JSON each starts with `,`: the writer
    /// drops the one that would open the array.
    fn rows(&self, reminders: &[Message<'_>]) -> io::Result<Vec<u8>> {
        let mut out: Vec<u8> = Vec::with_capacity(reminders.len() * 256);
        match self.format {
            Format::Json => reminders.iter().for_each(|r| json_row(&mut out, r, None)),
            Format::Csv => {
                let mut w = ::csv::Writer::from_writer(&mut out);
                for r in reminders {
                    w.write_record(self.columns().map(|c| reminder_cell(r, c)))?;
                }
                w.flush()?;
            }
            Format::Table if self.render => {
                // A grouped message once, with its first row; all of it
                // with the row of `--invoice`, the only one shown.
                for r in reminders
                    .iter()
                    .filter(|r| !r.follows_in_its_message() || self.one_invoice)
                {
                    write_message(&mut out, r)?;
                }
            }
            Format::Table => {
                for r in reminders {
                    let subject = match &r.error {
                        Some(e) => format!("NOT SENDABLE: {e}"),
                        None => r.subject.clone(),
                    };
                    let cells = [
                        r.date.to_string(),
                        r.invoice.to_string(),
                        r.customer_name.to_string(),
                        r.policy.to_string(),
                        stage_cell(r.stage, r.occurrence, r.approval.is_some()),
                        r.channel.as_str().to_string(),
                        format!("{} {}", r.amount_due, r.currency),
                        subject,
                    ];
                    write_row(&mut out, &self.widths, cells.iter().map(String::as_str))?;
                }
            }
        }
        Ok(out)
    }
}

/// One row of a JSON preview, after a `,` and a new line; `shared`: the
/// text of its grouped message ([`Message::write_json_text`]), written
/// once: copied into the row when short, else noted in `splices` to be
/// written where it goes.
fn json_row<'t>(out: &mut Vec<u8>, r: &Message, shared: Option<(&'t [u8], &mut Splices<'t>)>) {
    out.extend_from_slice(b",\n");
    r.write_json_heading(out);
    match shared {
        Some((text, splices)) if text.len() >= SPLICED => splices.push((out.len(), text)),
        Some((text, _)) => out.extend_from_slice(text),
        None => r.write_json_text(out),
    }
    r.write_json_end(out);
}

/// A grouped message's text goes into each of its rows (a statement's body
/// of a hundred invoices into a hundred rows: gigabytes in a rendered
/// preview). From this many bytes it is not copied into the rows but
/// written from where it is, beside them, in one system call for many.
const SPLICED: usize = 512;

/// Texts to write inside a chunk's bytes: each after so many of them.
type Splices<'t> = Vec<(usize, &'t [u8])>;

/// The rows of a chunk of a preview, formatted on a core of their own.
#[derive(Default)]
struct Part<'t> {
    bytes: Vec<u8>,
    splices: Splices<'t>,
    warnings: Vec<String>,
}

impl Part<'_> {
    /// Writes the part's bytes from `skip` on, each spliced text in its place.
    fn write(&self, out: &mut dyn Write, skip: usize) -> io::Result<()> {
        if self.splices.is_empty() {
            return out.write_all(&self.bytes[skip..]);
        }
        let mut slices = Vec::with_capacity(2 * self.splices.len() + 1);
        let mut from = skip;
        for &(at, text) in &self.splices {
            slices.push(io::IoSlice::new(&self.bytes[from..at]));
            slices.push(io::IoSlice::new(text));
            from = at;
        }
        slices.push(io::IoSlice::new(&self.bytes[from..]));
        write_all_vectored(out, &mut slices)
    }
}

/// [`Write::write_all`] for several slices (`write_all_vectored` is not
/// stable Rust): as few system calls as the writer takes them in.
fn write_all_vectored(out: &mut dyn Write, mut slices: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One whole message of `preview --render` in a table: its header lines,
/// its text and, when it has one, its HTML part.
/// Control characters from the feeds are escaped: one per header line,
/// the body's line ends and tabs kept.
fn write_message(out: &mut dyn Write, r: &Message) -> io::Result<()> {
    let invoices = if r.covers.is_empty() {
        r.invoice.to_string()
    } else {
        format!(
            "{} (one message for {})",
            r.customer_name,
            r.covers.join(", ")
        )
    };
    let heading = format!(
        "=== {}  {}  {}  {} ({})",
        r.date,
        invoices,
        stage_label(r.stage, r.occurrence),
        r.channel.as_str(),
        r.policy
    );
    let mut headers = vec![heading, format!("To: {}", r.to)];
    for (header, addresses) in [("Cc", &r.cc), ("Bcc", &r.bcc)] {
        if !addresses.is_empty() {
            headers.push(format!("{header}: {}", addresses.join(", ")));
        }
    }
    if let Some(reply_to) = r.reply_to {
        headers.push(format!("Reply-To: {reply_to}"));
    }
    headers.push(format!("Subject: {}", r.subject));
    if let Some(e) = &r.error {
        headers.push(format!("NOT SENDABLE: {e}"));
    }
    for line in &headers {
        writeln!(out, "{}", escape_controls(line))?;
    }
    writeln!(out)?;
    let body = r.body.as_deref().unwrap_or("").trim_end();
    writeln!(out, "{}", escape_controls_in_lines(body))?;
    // The HTML part goes out too: show it, marked off from the text.
    if let Some(html) = &r.html {
        writeln!(out, "--- html ---")?;
        writeln!(out, "{}", escape_controls_in_lines(html.trim_end()))?;
    }
    writeln!(out)
}

fn write_row<'c>(
    out: &mut dyn Write,
    widths: &[usize],
    cells: impl Iterator<Item = &'c str>,
) -> io::Result<()> {
    let mut line = String::new();
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        // A feed's CR, LF or ESC cannot break the row nor drive the terminal.
        let cell = escape_controls(cell);
        line.push_str(&cell);
        if let Some(w) = widths.get(i) {
            line.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// The widths of a preview row's first seven cells, from the plan alone.
fn cell_widths(project: &Project, p: &Reminder) -> [usize; 7] {
    let inv = &project.ledger.invoices[p.invoice];
    let policy = &project.rulebook.policies[p.policy];
    let stage = &policy.stages[p.stage];
    [
        10,
        escaped_width(&inv.number),
        escaped_width(&inv.bill_to.name),
        escaped_width(&policy.name),
        escaped_width(&stage_cell(&stage.id, p.occurrence, stage.approve)),
        stage.channel.as_str().len(),
        crate::locale::money(inv.amount_due()).len() + 1 + inv.currency.len(),
    ]
}

/// A preview's STAGE cell: the stage, marked when a person approves its
/// reminders before they go out.
fn stage_cell(stage: &str, occurrence: u32, approve: bool) -> String {
    let label = stage_label(stage, occurrence);
    match approve {
        true => format!("{label} (needs approval)"),
        false => label,
    }
}

fn reminder_cell(r: &Message, column: &str) -> String {
    match column {
        "date" => r.date.to_string(),
        "invoice" => r.invoice.to_string(),
        "customer_id" => r.customer_id.to_string(),
        "customer_name" => r.customer_name.to_string(),
        "policy" => r.policy.to_string(),
        "stage" => r.stage.to_string(),
        "occurrence" => r.occurrence.to_string(),
        "message" => r.message.clone(),
        "channel" => r.channel.as_str().to_string(),
        "to" => r.to.to_string(),
        "cc" => r.cc.join(", "),
        "bcc" => r.bcc.join(", "),
        "reply_to" => r.reply_to.unwrap_or_default().to_string(),
        "language" => r.language.to_string(),
        "template" => r.template.to_string(),
        "subject" => r.subject.clone(),
        "amount_due" => r.amount_due.clone(),
        "currency" => r.currency.to_string(),
        "send_at" => r.send_at.clone().unwrap_or_default(),
        "error" => r.error.clone().unwrap_or_default(),
        "approval" => r.approval.unwrap_or_default().to_string(),
        "body" => r.body.clone().unwrap_or_default(),
        "html" => r.html.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

pub fn history(out: &mut dyn Write, entries: &[JournalRow], format: Format) -> io::Result<()> {
    const COLUMNS: [&str; 15] = [
        "invoice",
        "policy",
        "stage",
        "occurrence",
        "state",
        "date",
        "channel",
        "recipient",
        "subject",
        "message_id",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
        "customer_id",
    ];
    match format {
        Format::Json => json(out, entries),
        Format::Csv => csv(out, entries, &COLUMNS),
        Format::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    // Failed and skipped rows show why; a skip journaled
                    // before skips carried their reason was an overtaken stage.
                    let detail = match (&e.last_error, e.state) {
                        (Some(reason), _) => reason.clone(),
                        (None, State::Skipped) => "overtaken by a later stage".to_string(),
                        (None, _) => e.subject.clone(),
                    };
                    vec![
                        e.updated_at.clone(),
                        e.date.clone(),
                        e.identity.invoice.clone(),
                        e.identity.policy.clone(),
                        stage_label(&e.identity.stage, e.identity.occurrence),
                        e.state.as_str().to_string(),
                        e.channel.clone(),
                        e.recipient.clone(),
                        detail,
                    ]
                })
                .collect();
            // WHEN is the row's last change; DATE the evaluation date it is for.
            table(
                out,
                &[
                    "WHEN",
                    "DATE",
                    "INVOICE",
                    "POLICY",
                    "STAGE",
                    "STATE",
                    "CHANNEL",
                    "TO",
                    "SUBJECT / ERROR",
                ],
                &rows,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `most` bytes of a call, from at most two
    /// slices, as a pipe or a socket may: what is written must not depend on it.
    struct Trickle {
        written: Vec<u8>,
        most: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.most);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for buf in bufs.iter().take(2) {
                let take = buf.len().min(self.most - n);
                self.written.extend_from_slice(&buf[..take]);
                n += take;
                if n == self.most {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_part_is_written_with_its_spliced_texts_in_place() {
        let (first, second) = (vec![b'a'; SPLICED], b"BB".to_vec());
        let part = Part {
            bytes: b",{1}{2}{3}".to_vec(),
            splices: vec![(3, &first[..]), (6, &second[..]), (6, &first[..])],
            warnings: Vec::new(),
        };
        let a = "a".repeat(SPLICED);
        for (skip, expected) in [
            (0, format!(",{{1{a}}}{{2BB{a}}}{{3}}")),
            (1, format!("{{1{a}}}{{2BB{a}}}{{3}}")),
        ] {
            for most in [1, 3, 7, 1 << 20] {
                let mut out = Trickle {
                    written: Vec::new(),
                    most,
                };
                part.write(&mut out, skip).unwrap();
                assert_eq!(String::from_utf8(out.written).unwrap(), expected, "{most}");
            }
        }
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error_not_a_loop() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let text = vec![b'x'; SPLICED];
        let part = Part {
            bytes: b",{}".to_vec(),
            splices: vec![(2, &text[..])],
            warnings: Vec::new(),
        };
        let e = part.write(&mut Full, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }
}
