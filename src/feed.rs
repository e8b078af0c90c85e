//! Reading invoices from CSV, JSON and JSON Lines feeds into the model.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::{Config, FeedConfig, FeedFormat, is_currency_code, is_language_tag};
use crate::diagnostics::{Location, Problem, Problems};
use crate::model::{Invoice, NumberIndex, Origin, Shared, Status};

/// The canonical fields of SPEC §2, in the order `Fields` stores them.
pub const FIELDS: [&str; 14] = [
    "number",
    "customer_id",
    "customer_name",
    "email",
    "issue_date",
    "due_date",
    "amount",
    "amount_paid",
    "currency",
    "status",
    "paid_date",
    "language",
    "tags",
    "promise_date",
];
const REQUIRED: [&str; 6] = [
    "number",
    "customer_id",
    "customer_name",
    "issue_date",
    "due_date",
    "amount",
];

fn field_index(name: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == name)
}

/// What the feeds gave: the good invoices, and one problem per bad row or unreadable feed.
#[derive(Debug, Default)]
pub struct FeedLoad {
    pub invoices: Vec<Invoice>,
    pub problems: Problems,
    pub bad_rows: usize,
    /// The invoices by number (built while loading, to find duplicates).
    pub index: NumberIndex,
    /// Feeds that could not be read at all.
    pub unreadable: Vec<PathBuf>,
}

/// One row's values by canonical field, plus its other columns.
struct Row<'a> {
    fields: [Option<Cow<'a, str>>; FIELDS.len()],
    extra: BTreeMap<String, String>,
}

impl<'a> Row<'a> {
    fn new() -> Self {
        Row {
            fields: Default::default(),
            extra: BTreeMap::new(),
        }
    }
    fn set(&mut self, index: usize, value: Cow<'a, str>) {
        let trimmed = value.trim();
        if !trimmed.is_empty() {
            self.fields[index] = Some(if trimmed.len() == value.len() {
                value
            } else {
                Cow::Owned(trimmed.to_string())
            });
        }
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.fields[field_index(name).expect("canonical field")].as_deref()
    }
}

/// Reads every feed of the config. A feed that cannot be read is one error
/// naming it; a bad row is one problem and is skipped; the rest goes on.
pub fn load_feeds(config: &Config, feeds: &[FeedConfig]) -> FeedLoad {
    let mut load = FeedLoad::default();
    // About one invoice per 100 bytes of feed: reserve once rather than grow.
    let size: u64 = feeds
        .iter()
        .filter_map(|f| std::fs::metadata(config.path(&f.path)).ok())
        .map(|m| m.len())
        .sum();
    let estimate = (size / 100) as usize;
    let mut index = NumberIndex::with_capacity(estimate);
    load.invoices.reserve(estimate);
    let mut interner = Interner::default();
    for feed in feeds {
        let path = config.path(&feed.path);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                load.problems
                    .error(Location::file(&path), format!("cannot read feed: {e}"));
                load.unreadable.push(path);
                continue;
            }
        };
        let parser = match FeedParser::new(feed, config, Arc::new(path.clone())) {
            Ok(p) => p,
            Err(p) => {
                load.problems.push(p);
                load.unreadable.push(path);
                continue;
            }
        };
        let reader = BufReader::with_capacity(1 << 16, file);
        let mut accept = |row: Result<Invoice, Vec<Problem>>| match row {
            Ok(invoice) => {
                load.invoices.push(invoice);
                let i = load.invoices.len() - 1;
                if let Err(first) = index.insert(&load.invoices, i) {
                    let dup = load.invoices.pop().expect("just pushed");
                    let first = &load.invoices[first];
                    load.bad_rows += 1;
                    load.problems.error(
                        parser.location(dup.origin.line),
                        format!(
                            "number: duplicate invoice number {:?} (first seen at {}:{})",
                            &*dup.number,
                            first.origin.file.display(),
                            first.origin.line
                        ),
                    );
                }
            }
            Err(problems) => {
                load.bad_rows += 1;
                load.problems.0.extend(problems);
            }
        };
        // Two stages on two threads: one reads, converts and interns rows,
        // this one indexes them by number (to find duplicates) and keeps them.
        let result = std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Invoice, Vec<Problem>>>>(16);
            let parser = &parser;
            let interner = &mut interner;
            let reading = scope.spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                let mut send = |row| {
                    batch.push(row);
                    if batch.len() == BATCH {
                        let _ = tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                };
                let result = match parser.feed.format() {
                    FeedFormat::Csv => parser.csv(reader, interner, &mut send),
                    FeedFormat::Json => parser.json_array(reader, interner, &mut send),
                    FeedFormat::Jsonl => parser.json_lines(reader, interner, &mut send),
                };
                let _ = tx.send(batch);
                result
            });
            for row in rx.into_iter().flatten() {
                accept(row);
            }
            reading.join().unwrap_or_else(|_| {
                Err(Problem::error(
                    Location::file(&parser.file),
                    "the feed reader crashed",
                ))
            })
        });
        if let Err(p) = result {
            load.problems.push(p);
            load.unreadable.push(path);
        }
    }
    load.index = index;
    load
}

/// Rows handed from the reading thread to the indexing one at a time.
const BATCH: usize = 4096;

/// One allocation per distinct customer id, name, address, currency,
/// language and tag set, however many invoices share it.
#[derive(Default)]
struct Interner {
    strings: hashbrown::HashSet<Shared>,
    tag_sets: hashbrown::HashMap<Box<str>, Arc<[Shared]>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Shared {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared: Shared = Arc::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    fn tags(&mut self, list: &str) -> Arc<[Shared]> {
        if let Some(set) = self.tag_sets.get(list) {
            return set.clone();
        }
        let set: Arc<[Shared]> = list
            .split('|')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| self.get(t))
            .collect();
        self.tag_sets.insert(list.into(), set.clone());
        set
    }
}

struct FeedParser<'c> {
    feed: &'c FeedConfig,
    file: Arc<PathBuf>,
    dates: DateFormat<'c>,
    default_currency: Shared,
}

/// A date format parsed once per feed rather than once per date.
enum DateFormat<'f> {
    Iso,
    Strftime(Vec<chrono::format::Item<'f>>),
}

impl DateFormat<'_> {
    fn parse(&self, s: &str) -> Option<NaiveDate> {
        match self {
            DateFormat::Iso => {
                let b = s.as_bytes();
                let digits = |r: std::ops::Range<usize>| -> Option<u32> {
                    b.get(r)?.iter().try_fold(0u32, |n, d| {
                        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
                    })
                };
                if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
                    return None;
                }
                NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
            }
            DateFormat::Strftime(items) => {
                let mut parsed = chrono::format::Parsed::new();
                chrono::format::parse(&mut parsed, s, items.iter()).ok()?;
                parsed.to_naive_date().ok()
            }
        }
    }
}

type Sink<'s> = dyn FnMut(Result<Invoice, Vec<Problem>>) + 's;

impl<'c> FeedParser<'c> {
    fn new(feed: &'c FeedConfig, config: &Config, file: Arc<PathBuf>) -> Result<Self, Problem> {
        let dates = if feed.date_format == "%Y-%m-%d" {
            DateFormat::Iso
        } else {
            DateFormat::Strftime(
                chrono::format::StrftimeItems::new(&feed.date_format)
                    .parse()
                    .map_err(|_| {
                        Problem::error(
                            Location::file(&file),
                            format!(
                                "date_format {:?} is not a valid strftime format",
                                feed.date_format
                            ),
                        )
                    })?,
            )
        };
        Ok(FeedParser {
            feed,
            file,
            dates,
            default_currency: config.currency.as_str().into(),
        })
    }

    fn location(&self, line: usize) -> Location {
        if self.feed.format() == FeedFormat::Json {
            Location {
                file: self.file.to_path_buf(),
                line: None,
                col: None,
                index: Some(line),
            }
        } else {
            Location::line(&self.file, line)
        }
    }

    fn csv(
        &self,
        mut input: impl BufRead,
        interner: &mut Interner,
        sink: &mut Sink,
    ) -> Result<(), Problem> {
        let delimiter = match self.feed.delimiter {
            Some(d) => d as u8,
            None => {
                let head = input.fill_buf().map_err(|e| {
                    Problem::error(Location::file(&self.file), format!("cannot read feed: {e}"))
                })?;
                detect_delimiter(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head))
            }
        };
        // csv strips a UTF-8 byte order mark itself.
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(input);
        let headers = reader
            .headers()
            .map_err(|e| {
                Problem::error(
                    Location::line(&self.file, 1),
                    format!("cannot read the header row: {e}"),
                )
            })?
            .clone();
        let columns = self.map_columns(headers.iter().map(str::trim), || {
            Location::line(&self.file, 1)
        })?;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line() as usize);
                    if record.iter().all(|v| v.trim().is_empty()) {
                        continue;
                    }
                    let mut row = Row::new();
                    for (value, column) in record.iter().zip(&columns) {
                        match column {
                            Column::Field(i) => row.set(*i, Cow::Borrowed(value)),
                            Column::Extra(name) => {
                                row.extra.insert(name.clone(), value.to_string());
                            }
                        }
                    }
                    sink(self.invoice(row, line, interner));
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        return Err(Problem::error(
                            Location::file(&self.file),
                            format!("cannot read feed: {e}"),
                        ));
                    }
                    sink(Err(vec![Problem::error(
                        Location::line(&self.file, line),
                        format!("unreadable row: {e}"),
                    )]));
                }
            }
        }
        Ok(())
    }

    /// Reads a JSON array one element at a time, so that the whole array is never held in memory.
    fn json_array(
        &self,
        input: impl BufRead,
        interner: &mut Interner,
        sink: &mut Sink,
    ) -> Result<(), Problem> {
        struct Elements<'p, 'c, 's> {
            parser: &'p FeedParser<'c>,
            interner: &'p mut Interner,
            sink: &'p mut Sink<'s>,
        }
        impl<'de> serde::de::Visitor<'de> for Elements<'_, '_, '_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array of invoices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut index = 0;
                while let Some(value) = seq.next_element::<Value>()? {
                    (self.sink)(self.parser.json_row(value, index, self.interner));
                    index += 1;
                }
                Ok(())
            }
        }
        let mut de = serde_json::Deserializer::from_reader(input);
        serde::Deserializer::deserialize_seq(
            &mut de,
            Elements {
                parser: self,
                interner,
                sink,
            },
        )
        .and_then(|()| de.end())
        .map_err(|e| {
            Problem::error(
                Location::at(&self.file, e.line(), e.column()),
                format!("not a JSON array of invoices: {e}"),
            )
        })
    }

    fn json_lines(
        &self,
        input: impl BufRead,
        interner: &mut Interner,
        sink: &mut Sink,
    ) -> Result<(), Problem> {
        for (i, line) in input.split(b'\n').enumerate() {
            let line = line.map_err(|e| {
                Problem::error(Location::file(&self.file), format!("cannot read feed: {e}"))
            })?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(&line) {
                Ok(value) => sink(self.json_row(value, i + 1, interner)),
                Err(e) => sink(Err(vec![Problem::error(
                    Location::at(&self.file, i + 1, e.column()),
                    format!("invalid JSON: {e}"),
                )])),
            }
        }
        Ok(())
    }

    fn json_row(
        &self,
        value: Value,
        line: usize,
        interner: &mut Interner,
    ) -> Result<Invoice, Vec<Problem>> {
        let Value::Object(object) = value else {
            return Err(vec![Problem::error(
                self.location(line),
                "expected a JSON object (one invoice)",
            )]);
        };
        let names: Vec<&str> = object.keys().map(String::as_str).collect();
        let columns = self
            .map_columns(names.iter().copied(), || self.location(line))
            .map_err(|p| vec![p])?;
        let mut row = Row::new();
        let mut problems = Vec::new();
        for ((name, value), column) in object.iter().zip(&columns) {
            let text: Option<Cow<str>> = match value {
                Value::Null => None,
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                Value::Number(n) => Some(Cow::Owned(n.to_string())),
                Value::Bool(b) => Some(Cow::Owned(b.to_string())),
                Value::Array(items) if matches!(column, Column::Field(i) if FIELDS[*i] == "tags") => {
                    Some(Cow::Owned(
                        items
                            .iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join("|"),
                    ))
                }
                _ => {
                    problems.push(Problem::error(
                        self.location(line),
                        format!("{name}: expected a string or a number"),
                    ));
                    None
                }
            };
            let Some(text) = text else { continue };
            match column {
                Column::Field(i) => {
                    // A JSON number is written with a dot whatever the feed's decimal setting.
                    let text = if matches!(value, Value::Number(_)) && self.feed.decimal == ',' {
                        Cow::Owned(text.replace('.', ","))
                    } else {
                        text
                    };
                    row.set(*i, text)
                }
                Column::Extra(name) => {
                    row.extra.insert(name.clone(), text.into_owned());
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.invoice(row, line, interner)
    }

    /// Maps each column name of the feed to a canonical field or an extra column.
    fn map_columns<'n>(
        &self,
        names: impl Iterator<Item = &'n str>,
        at: impl Fn() -> Location,
    ) -> Result<Vec<Column>, Problem> {
        let renamed: HashMap<&str, usize> = self
            .feed
            .columns
            .iter()
            .filter_map(|(canonical, foreign)| {
                field_index(canonical).map(|i| (foreign.as_str(), i))
            })
            .collect();
        let columns: Vec<Column> = names
            .map(|name| {
                if let Some(i) = renamed.get(name) {
                    return Column::Field(*i);
                }
                let lower = name.to_ascii_lowercase();
                match field_index(&lower) {
                    Some(i) if !self.feed.columns.contains_key(&lower) => Column::Field(i),
                    _ => Column::Extra(name.to_string()),
                }
            })
            .collect();
        // Only CSV has one header for the whole file; JSON rows are checked field by field.
        if self.feed.format() == FeedFormat::Csv {
            for canonical in self.feed.columns.keys() {
                if field_index(canonical).is_none() {
                    return Err(Problem::error(
                        at(),
                        format!(
                            "columns: {canonical:?} is not a canonical field (expected one of {})",
                            FIELDS.join(", ")
                        ),
                    ));
                }
            }
            let missing: Vec<&str> = REQUIRED
                .iter()
                .copied()
                .filter(|f| {
                    !columns
                        .iter()
                        .any(|c| matches!(c, Column::Field(i) if FIELDS[*i] == *f))
                })
                .collect();
            if !missing.is_empty() {
                let hint = missing
                    .iter()
                    .map(|m| match self.feed.columns.get(*m) {
                        Some(foreign) => format!("{m} (mapped to column {foreign:?})"),
                        None => m.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Problem::error(
                    at(),
                    format!("missing required column(s): {hint}"),
                ));
            }
        }
        Ok(columns)
    }

    fn invoice(
        &self,
        row: Row,
        line: usize,
        interner: &mut Interner,
    ) -> Result<Invoice, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, reason: String| {
            problems.push(Problem::error(
                self.location(line),
                format!("{field}: {reason}"),
            ))
        };
        for field in REQUIRED {
            if row.get(field).is_none() {
                bad(field, "missing (required)".into());
            }
        }
        let date = |f: &str, bad: &mut dyn FnMut(&str, String)| {
            row.get(f).and_then(|s| match self.dates.parse(s) {
                Some(d) => Some(d),
                None => {
                    bad(
                        f,
                        format!(
                            "expected a date in the format {}, found {s:?}",
                            self.feed.date_format
                        ),
                    );
                    None
                }
            })
        };
        let issue_date = date("issue_date", &mut bad);
        let due_date = date("due_date", &mut bad);
        let paid_date = date("paid_date", &mut bad);
        let promise_date = date("promise_date", &mut bad);
        let amount = |f: &str, bad: &mut dyn FnMut(&str, String)| {
            row.get(f)
                .and_then(|s| match parse_amount(s, self.feed.decimal) {
                    Ok(d) => Some(d),
                    Err(reason) => {
                        bad(f, reason);
                        None
                    }
                })
        };
        let amount_total = amount("amount", &mut bad);
        let amount_paid = amount("amount_paid", &mut bad).unwrap_or(Decimal::ZERO);
        let currency = match row.get("currency") {
            Some(c) if is_currency_code(c) => Some(c.to_string()),
            Some(c) if is_currency_code(&c.to_ascii_uppercase()) => Some(c.to_ascii_uppercase()),
            Some(c) => {
                bad(
                    "currency",
                    format!("expected an ISO 4217 code such as EUR, found {c:?}"),
                );
                None
            }
            None => None,
        };
        let status = match row.get("status").map(|s| (s, Status::parse(s))) {
            None => Status::Open,
            Some((_, Some(s))) => s,
            Some((s, None)) => {
                bad(
                    "status",
                    format!("expected open, paid, void or disputed, found {s:?}"),
                );
                Status::Open
            }
        };
        let language = match row.get("language") {
            Some(l) if is_language_tag(l) => Some(canonical_language(l)),
            Some(l) => {
                bad(
                    "language",
                    format!("expected a language tag such as fr, fr-CA or en, found {l:?}"),
                );
                None
            }
            None => None,
        };
        if let (Some(issue), Some(due)) = (issue_date, due_date)
            && due < issue
        {
            bad(
                "due_date",
                format!("due date {due} is before the issue date {issue}"),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut text = |f: &str| interner.get(row.get(f).unwrap_or(""));
        Ok(Invoice {
            number: row.get("number").unwrap_or("").into(),
            customer_id: text("customer_id"),
            customer_name: text("customer_name"),
            email: text("email"),
            issue_date: issue_date.expect("checked"),
            due_date: due_date.expect("checked"),
            amount: amount_total.expect("checked"),
            amount_paid,
            currency: match currency {
                Some(c) => interner.get(&c),
                None => self.default_currency.clone(),
            },
            status,
            paid_date,
            language: language.map(|l| interner.get(&l)),
            tags: interner.tags(row.get("tags").unwrap_or("")),
            promise_date,
            extra: row.extra,
            origin: Origin {
                file: self.file.clone(),
                line,
            },
        })
    }
}

enum Column {
    Field(usize),
    Extra(String),
}

/// A language tag in its usual case (`FR` → `fr`, `fr-ca` → `fr-CA`):
/// tags are case-insensitive, but template files and the French/English
/// helpers are looked up by the canonical spelling, so an export writing
/// `FR` must not get English amounts or fall back to the default language.
fn canonical_language(tag: &str) -> String {
    tag.split('-')
        .enumerate()
        .map(|(i, part)| match (i, part.len()) {
            (0, _) => part.to_ascii_lowercase(),
            (_, 2) => part.to_ascii_uppercase(), // region: CA, GB
            (_, 4) => {
                // script: Latn
                let lower = part.to_ascii_lowercase();
                lower[..1].to_ascii_uppercase() + &lower[1..]
            }
            _ => part.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Picks `;` or `,` from the header line: whichever occurs more often outside quotes.
fn detect_delimiter(bytes: &[u8]) -> u8 {
    let header = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for b in header {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas { b';' } else { b',' }
}

/// Parses an amount exactly. With `decimal: ","` spaces, no-break spaces and
/// dots group thousands (`1 234,56`, `1.234,56`); with `.` only spaces do,
/// and a comma is refused rather than guessed (is `1,5` one and a half or fifteen?).
pub fn parse_amount(s: &str, decimal: char) -> Result<Decimal, String> {
    let spaces = |c: char| c == ' ' || c == '\u{a0}' || c == '\u{202f}' || c == '\'';
    let normalized: Cow<str> = if decimal == ',' {
        Cow::Owned(
            s.chars()
                .filter(|c| !spaces(*c) && *c != '.')
                .map(|c| if c == ',' { '.' } else { c })
                .collect(),
        )
    } else if s.contains(spaces) {
        Cow::Owned(s.chars().filter(|c| !spaces(*c)).collect())
    } else {
        Cow::Borrowed(s)
    };
    if decimal == '.' && normalized.contains(',') {
        return Err(format!(
            "expected a decimal number like 1234.56, found {s:?} (for amounts written 1 234,56 set `decimal: \",\"` on this feed)"
        ));
    }
    let valid = !normalized.is_empty()
        && normalized
            .trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && normalized.chars().any(|c| c.is_ascii_digit())
        // `1.2.3` is as unreadable as `abc`: say so the same way.
        && normalized.matches('.').count() <= 1;
    if !valid {
        return Err(format!(
            "expected a decimal number like {}, found {s:?}",
            if decimal == ',' { "1234,56" } else { "1234.56" }
        ));
    }
    Decimal::from_str_exact(&normalized)
        .map_err(|e| format!("amount {s:?} cannot be read exactly: {e}"))
}

/// The feeds a command reads: `--feed` overrides the config's list.
pub fn feeds_for(config: &Config, overrides: &[PathBuf]) -> Vec<FeedConfig> {
    if overrides.is_empty() {
        return config.feeds.clone();
    }
    overrides
        .iter()
        .map(|p| {
            // A path given on the command line is relative to where the command runs,
            // but keep the settings of a configured feed with the same file.
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            let configured = config.feeds.iter().find(|f| {
                std::path::absolute(config.path(&f.path)).ok().as_deref() == Some(abs.as_path())
            });
            let mut feed = configured
                .cloned()
                .unwrap_or_else(|| FeedConfig::new(abs.clone()));
            // Messages name the file as the user typed it when that path
            // resolves the same from the config's folder (the current one).
            feed.path = if config.base == Path::new(".") {
                p.clone()
            } else {
                abs
            };
            feed
        })
        .collect()
}

pub fn is_feed_path(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("csv" | "json" | "jsonl" | "ndjson")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, content: &str, feed: impl FnOnce(&mut FeedConfig)) -> FeedLoad {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), content).unwrap();
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let mut f = FeedConfig::new(name.into());
        feed(&mut f);
        load_feeds(&config, &[f])
    }

    const HEADER: &str = "number,customer_id,customer_name,email,issue_date,due_date,amount,amount_paid,currency,status,tags,region\n";

    #[test]
    fn csv_rows_and_extra_columns() {
        let l = load(
            "a.csv",
            &format!(
                "{HEADER}F1,C1,Acme,a@x.fr;b@x.fr,2026-01-01,2026-01-31,1234.56,34.56,,open,vip|public-sector,north\n"
            ),
            |_| {},
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let inv = &l.invoices[0];
        assert_eq!(inv.amount_due().to_string(), "1200.00");
        assert_eq!(&*inv.currency, "EUR");
        assert_eq!(
            inv.tags.iter().map(|t| &**t).collect::<Vec<_>>(),
            vec!["vip", "public-sector"]
        );
        assert_eq!(inv.extra["region"], "north");
        assert_eq!(
            inv.recipients().collect::<Vec<_>>(),
            vec!["a@x.fr", "b@x.fr"]
        );
        assert_eq!(inv.origin.line, 2);
    }

    #[test]
    fn bad_rows_are_reported_and_skipped() {
        let content = format!(
            "{HEADER}F1,C1,Acme,,2026-01-01,2026-01-31,12.5,,,,,\nF2,C1,Acme,,2026-13-01,2026-01-31,abc,,,,,\nF3,C1,Acme,,2026-01-01,2026-01-31,10,,,weird,,\nF1,C2,Dup,,2026-01-01,2026-01-31,10,,,,,\nF4,C1,Acme,,2026-01-01,2026-02-28,7,,,,,\n"
        );
        let l = load("a.csv", &content, |_| {});
        assert_eq!(
            l.invoices.iter().map(|i| &*i.number).collect::<Vec<_>>(),
            vec!["F1", "F4"]
        );
        assert_eq!(l.bad_rows, 3);
        let msgs: Vec<String> = l.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs[0].ends_with(
                "a.csv:3: issue_date: expected a date in the format %Y-%m-%d, found \"2026-13-01\""
            ),
            "{msgs:?}"
        );
        assert!(
            msgs[1].ends_with(
                "a.csv:3: amount: expected a decimal number like 1234.56, found \"abc\""
            ),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("a.csv:4: status:"), "{msgs:?}");
        assert!(
            msgs[3].contains("a.csv:5: number: duplicate invoice number \"F1\""),
            "{msgs:?}"
        );
    }

    #[test]
    fn french_dialect_with_bom_semicolons_mapping() {
        let content = "\u{feff}N° facture;customer_id;customer_name;issue_date;due_date;amount\nF1;C1;Dupont;01/02/2024;29/02/2024;1 234,56\nF2;C1;Dupont;01/02/2024;31/02/2024;1,5\n";
        let l = load("fr.csv", content, |f| {
            f.decimal = ',';
            f.date_format = "%d/%m/%Y".into();
            f.columns.insert("number".into(), "N° facture".into());
        });
        assert_eq!(l.invoices.len(), 1, "{:?}", l.problems);
        assert_eq!(l.invoices[0].amount.to_string(), "1234.56");
        assert_eq!(l.invoices[0].due_date.to_string(), "2024-02-29");
        assert!(
            l.problems.0[0].to_string().contains("fr.csv:3: due_date"),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn missing_required_column_is_a_feed_error() {
        let l = load("a.csv", "number,customer_id\nF1,C1\n", |_| {});
        assert!(l.invoices.is_empty());
        assert!(
            l.problems.0[0]
                .to_string()
                .contains("a.csv:1: missing required column(s): customer_name, issue_date")
        );
    }

    #[test]
    fn json_array_and_lines() {
        let json = r#"[{"number":"J1","customer_id":"C","customer_name":"N","issue_date":"2026-01-01","due_date":"2026-01-31","amount":1234.56,"tags":["a","b"],"po":"77"},
                     {"number":"J2","customer_id":"C","customer_name":"N","issue_date":"2026-01-01","due_date":"2026-01-31"}]"#;
        let l = load("a.json", json, |_| {});
        assert_eq!(l.invoices.len(), 1);
        assert_eq!(l.invoices[0].amount.to_string(), "1234.56");
        assert_eq!(
            l.invoices[0].tags.iter().map(|t| &**t).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(l.invoices[0].extra["po"], "77");
        assert_eq!(
            l.problems.0[0].to_string(),
            format!(
                "{}:[1]: amount: missing (required)",
                l.problems.0[0].location.file.display()
            )
        );
        let jsonl = "{\"number\":\"L1\",\"customer_id\":\"C\",\"customer_name\":\"N\",\"issue_date\":\"2026-01-01\",\"due_date\":\"2026-01-31\",\"amount\":\"10\"}\n\n{oops\n";
        let l = load("a.jsonl", jsonl, |_| {});
        assert_eq!(l.invoices.len(), 1);
        assert!(
            l.problems.0[0].to_string().contains("a.jsonl:3:"),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn unreadable_feed_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let l = load_feeds(&config, &[FeedConfig::new("nope.csv".into())]);
        assert!(
            l.problems.0[0]
                .to_string()
                .contains("nope.csv: cannot read feed")
        );
    }

    #[test]
    fn language_tags_get_their_canonical_case() {
        assert_eq!(canonical_language("FR"), "fr");
        assert_eq!(canonical_language("fr-ca"), "fr-CA");
        assert_eq!(canonical_language("EN-gb"), "en-GB");
        assert_eq!(canonical_language("zh-HANT-tw"), "zh-Hant-TW");
        assert_eq!(canonical_language("en"), "en");
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1234.56", '.').unwrap().to_string(), "1234.56");
        assert_eq!(
            parse_amount("1\u{202f}234,5", ',').unwrap().to_string(),
            "1234.5"
        );
        assert_eq!(
            parse_amount("1.234,56", ',').unwrap().to_string(),
            "1234.56"
        );
        assert_eq!(parse_amount("-10", '.').unwrap().to_string(), "-10");
        assert!(parse_amount("1,5", '.').is_err());
        assert!(parse_amount("1e3", '.').is_err());
        assert_eq!(
            parse_amount("1.2.3", '.'),
            Err("expected a decimal number like 1234.56, found \"1.2.3\"".into())
        );
        assert!(parse_amount("", '.').is_err());
    }
}
