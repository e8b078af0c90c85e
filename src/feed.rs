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
        let mut reader = BufReader::with_capacity(1 << 16, file);
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
                let result = skip_bom(&mut reader)
                    .map_err(|e| parser.read_error(e))
                    .and_then(|()| match parser.feed.format() {
                        FeedFormat::Csv => parser.csv(reader, interner, &mut send),
                        FeedFormat::Json => parser.json_array(reader, interner, &mut send),
                        FeedFormat::Jsonl => parser.json_lines(reader, interner, &mut send),
                    });
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

/// Skips a UTF-8 byte order mark at the start of a feed: spreadsheets and
/// Windows tools write one before CSV and JSON alike, and a JSON parser
/// would refuse it as an unexpected character.
fn skip_bom(input: &mut impl BufRead) -> std::io::Result<()> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if input.fill_buf()?.starts_with(BOM) {
        input.consume(BOM.len());
    }
    Ok(())
}

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
    /// The feed's own column names (as [`column_key`]) -> canonical field, from `columns`.
    renamed: HashMap<String, usize>,
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
        let renamed = feed
            .columns
            .iter()
            .filter_map(|(canonical, foreign)| {
                field_index(canonical).map(|i| (column_key(foreign), i))
            })
            .collect();
        Ok(FeedParser {
            feed,
            file,
            dates,
            default_currency: config.currency.as_str().into(),
            renamed,
        })
    }

    /// The feed could not be read (an I/O error mid-way): one error naming it.
    fn read_error(&self, e: impl std::fmt::Display) -> Problem {
        Problem::error(Location::file(&self.file), format!("cannot read feed: {e}"))
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
            None => detect_delimiter(input.fill_buf().map_err(|e| self.read_error(e))?),
        };
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
        let columns = self.map_columns(headers.iter(), || Location::line(&self.file, 1))?;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line() as usize);
                    if record.iter().all(|v| v.trim().is_empty()) {
                        continue;
                    }
                    // Values past the header have no column to go to: dropping them would
                    // hide a shifted row (an unquoted separator inside a value). Empty ones
                    // are only trailing separators, as some exports write on every row.
                    if record
                        .iter()
                        .skip(columns.len())
                        .any(|v| !v.trim().is_empty())
                    {
                        sink(Err(vec![Problem::error(
                            Location::line(&self.file, line),
                            format!(
                                "row has {} fields, the header has {}",
                                record.len(),
                                columns.len()
                            ),
                        )]));
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
                        return Err(self.read_error(e));
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
            let line = line.map_err(|e| self.read_error(e))?;
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
            let field = match column {
                Column::Field(i) => Some(FIELDS[*i]),
                Column::Extra(_) => None,
            };
            let text: Option<Cow<str>> = match (value, field) {
                (Value::Null, _) => None,
                (Value::String(s), _) => Some(Cow::Borrowed(s.as_str())),
                (Value::Number(n), Some("amount" | "amount_paid")) => {
                    Some(Cow::Owned(json_amount(n.as_str(), self.feed.decimal)))
                }
                (Value::Number(n), _) => Some(Cow::Owned(n.to_string())),
                (Value::Bool(b), _) => Some(Cow::Owned(b.to_string())),
                (Value::Array(items), Some("tags")) => Some(Cow::Owned(
                    items
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("|"),
                )),
                // Every other column is kept as text (SPEC §2): a nested
                // object or array as its compact JSON, for scripts to inspect.
                (Value::Object(_) | Value::Array(_), None) => Some(Cow::Owned(value.to_string())),
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
                Column::Field(i) => row.set(*i, text),
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
    /// Names are matched trimmed and whatever their case, mapped ones (`columns`)
    /// as canonical ones: `Montant TTC ` is the column mapped as `montant ttc`.
    fn map_columns<'n>(
        &self,
        names: impl Iterator<Item = &'n str>,
        at: impl Fn() -> Location,
    ) -> Result<Vec<Column>, Problem> {
        let mut columns = Vec::new();
        // The column that gives each canonical field, to refuse a second one:
        // which of two `amount` columns is the amount would be a guess.
        let mut giving: [Option<&str>; FIELDS.len()] = Default::default();
        for name in names.map(str::trim) {
            let key = column_key(name);
            let field = match self.renamed.get(&key) {
                Some(i) => Some(*i),
                // A canonical name mapped to another column is an extra column here.
                None => field_index(&key).filter(|_| !self.feed.columns.contains_key(&key)),
            };
            match field {
                Some(i) => {
                    if let Some(first) = giving[i].replace(name) {
                        return Err(Problem::error(
                            at(),
                            if first == name {
                                format!("duplicate column {name:?}")
                            } else {
                                format!(
                                    "duplicate column {name:?}: {first:?} already gives {}",
                                    FIELDS[i]
                                )
                            },
                        ));
                    }
                    columns.push(Column::Field(i));
                }
                None => columns.push(Column::Extra(name.to_string())),
            }
        }
        // Only CSV has one header for the whole file; JSON rows are checked field by field.
        if self.feed.format() == FeedFormat::Csv {
            // (A JSON object cannot repeat a key.) Unnamed columns are left
            // alone: an export's trailing separators make several.
            for (i, column) in columns.iter().enumerate() {
                if let Column::Extra(name) = column
                    && !name.is_empty()
                    && columns[..i]
                        .iter()
                        .any(|c| matches!(c, Column::Extra(n) if n == name))
                {
                    return Err(Problem::error(at(), format!("duplicate column {name:?}")));
                }
            }
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
        // A negative payment would raise the amount due: a sign error in the export.
        let amount_paid = match amount("amount_paid", &mut bad) {
            Some(paid) if paid < Decimal::ZERO => {
                bad(
                    "amount_paid",
                    format!(
                        "must not be negative, found {:?}",
                        row.get("amount_paid").unwrap_or_default()
                    ),
                );
                Decimal::ZERO
            }
            paid => paid.unwrap_or(Decimal::ZERO),
        };
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

/// How a column name is matched, to canonical names and to the feed's
/// `columns`: trimmed and lower-cased, as exports vary in both.
fn column_key(name: &str) -> String {
    name.trim().to_lowercase()
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

/// A JSON number given as an amount, written the way the feed's amounts are
/// (`decimal`), for [`parse_amount`]: JSON writes numbers with a dot whatever
/// the feed's setting, and may use an exponent (`1.5E3`). A number that is no
/// exact decimal is left as written, to be reported as such.
fn json_amount(number: &str, decimal: char) -> String {
    let exact = if number.contains(['e', 'E']) {
        Decimal::from_scientific(number)
    } else {
        Decimal::from_str_exact(number)
    };
    match exact {
        // Decimal writes digits, `-` and at most one `.`: nothing else to translate.
        Ok(d) if decimal == ',' => d.to_string().replace('.', ","),
        Ok(d) => d.to_string(),
        Err(_) => number.to_string(),
    }
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

/// Parses an amount exactly: an optional sign, the integer part, then the
/// `decimal` separator and the fraction. The integer part may group thousands
/// with one separator — a space, a no-break space, `'`, and with `decimal: ","`
/// a dot (`1 234,56`, `1.234.567,89`) — but only between groups of exactly three
/// digits: a dot in a `decimal: ","` feed (`1234.56`, `1.5`) is then refused
/// rather than silently read as 123456 or 15. With `.` a comma is refused
/// rather than guessed (is `1,5` one and a half or fifteen?).
pub fn parse_amount(s: &str, decimal: char) -> Result<Decimal, String> {
    if decimal == '.' && s.contains(',') {
        return Err(format!(
            "expected a decimal number like 1234.56, found {s:?} (for amounts written 1 234,56 set `decimal: \",\"` on this feed)"
        ));
    }
    let invalid = || {
        format!(
            "expected a decimal number like {}, found {s:?}",
            if decimal == ',' { "1234,56" } else { "1234.56" }
        )
    };
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = unsigned.split_once(decimal).unwrap_or((unsigned, ""));
    let digits = ungroup(whole, decimal).ok_or_else(invalid)?;
    // `1.2.3` is as unreadable as `abc`: say so the same way.
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() && fraction.is_empty() {
        return Err(invalid());
    }
    // The common case, `1234.56`, is parsed as it is, without a copy.
    let exact: Cow<str> = match digits {
        Cow::Borrowed(_) if decimal == '.' => Cow::Borrowed(s),
        _ => {
            let sign = if s.starts_with('-') { "-" } else { "" };
            let point = if fraction.is_empty() { "" } else { "." };
            Cow::Owned(format!("{sign}{digits}{point}{fraction}"))
        }
    };
    Decimal::from_str_exact(&exact).map_err(|e| format!("amount {s:?} cannot be read exactly: {e}"))
}

/// The digits of an amount's integer part without its thousands separators
/// (see [`parse_amount`]); `None` unless every group after the first has
/// exactly three digits, all split by the same separator.
fn ungroup(whole: &str, decimal: char) -> Option<Cow<'_, str>> {
    let Some(separator) = whole.chars().find(|c| !c.is_ascii_digit()) else {
        return Some(Cow::Borrowed(whole));
    };
    let thousands = matches!(separator, ' ' | '\u{a0}' | '\u{202f}' | '\'')
        || (separator == '.' && decimal == ',');
    let digits = |g: &str| g.bytes().all(|b| b.is_ascii_digit());
    let mut groups = whole.split(separator);
    let first = groups
        .next()
        .filter(|g| (1..=3).contains(&g.len()) && digits(g));
    (thousands && first.is_some() && groups.all(|g| g.len() == 3 && digits(g)))
        .then(|| Cow::Owned(whole.replace(separator, "")))
}

/// The feeds a command reads: `--feed` overrides the config's list.
pub fn feeds_for(config: &Config, overrides: &[PathBuf]) -> Vec<FeedConfig> {
    if overrides.is_empty() {
        return config.feeds.clone();
    }
    overrides
        .iter()
        .map(|p| {
            // A path given on the command line is relative to where the command runs.
            let typed = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            // When nothing is there, it is the folder's file: a harness running
            // `relance --dir X --feed data/b.json` from elsewhere means X/data/b.json.
            // `config.path` resolves a relative `feed.path` against the folder.
            let in_folder = p.is_relative() && !typed.exists() && config.path(p).exists();
            let (abs, path) = if in_folder {
                let abs = std::path::absolute(config.path(p)).unwrap_or_else(|_| p.clone());
                (abs, p.clone())
            } else if config.base == Path::new(".") {
                // Messages name the file as the user typed it when that path
                // resolves the same from the config's folder (the current one).
                (typed, p.clone())
            } else {
                (typed.clone(), typed)
            };
            // Keep the settings of a configured feed with the same file.
            let configured = config.feeds.iter().find(|f| {
                std::path::absolute(config.path(&f.path)).ok().as_deref() == Some(abs.as_path())
            });
            FeedConfig {
                path,
                ..configured.cloned().unwrap_or_else(|| FeedConfig::new(abs))
            }
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

    /// Asserts that the first problem of the load reads `expected` after the
    /// feed's folder (`a.csv:3: amount: …`), or contains it.
    #[track_caller]
    fn assert_first_problem(l: &FeedLoad, expected: &str) {
        let first = l.problems.0.first().map(ToString::to_string);
        assert!(
            first.is_some_and(|p| p.contains(expected)),
            "{expected:?} is not the first of {:?}",
            l.problems
        );
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
        assert_first_problem(&l, "fr.csv:3: due_date");
    }

    #[test]
    fn missing_required_column_is_a_feed_error() {
        let l = load("a.csv", "number,customer_id\nF1,C1\n", |_| {});
        assert!(l.invoices.is_empty());
        assert_first_problem(
            &l,
            "a.csv:1: missing required column(s): customer_name, issue_date",
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
        assert_first_problem(&l, "a.jsonl:3:");
    }

    #[test]
    fn unreadable_feed_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let l = load_feeds(&config, &[FeedConfig::new("nope.csv".into())]);
        assert_first_problem(&l, "nope.csv: cannot read feed");
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

    #[test]
    fn thousands_separators_only_between_groups_of_three() {
        let ok = |s: &str, decimal| parse_amount(s, decimal).unwrap().to_string();
        assert_eq!(ok("1.234.567,89", ','), "1234567.89");
        assert_eq!(ok("1 234,56", ','), "1234.56");
        assert_eq!(ok("1\u{a0}234\u{a0}567", ','), "1234567");
        assert_eq!(ok("-1'234,5", ','), "-1234.5");
        assert_eq!(ok("1.234", ','), "1234");
        assert_eq!(ok("12 345.6", '.'), "12345.6");
        assert_eq!(ok("+0,5", ','), "0.5");
        let comma = |s: &str| format!("expected a decimal number like 1234,56, found {s:?}");
        for bad in [
            "1234.56",
            "1.5",
            "1 23,4",
            "1234 567,8",
            "1.234 567",
            ",",
            "1,2,3",
            "1.234,5.6",
        ] {
            assert_eq!(parse_amount(bad, ','), Err(comma(bad)), "{bad}");
        }
        for bad in ["1 23.4", "1234 567", "1.234.567", " 123"] {
            assert!(parse_amount(bad, '.').is_err(), "{bad}");
        }
    }

    /// A JSON feed of one invoice with these extra members (`"key": value, …`).
    fn json_invoice(members: &str) -> String {
        format!(
            r#"{{"number":"J1","customer_id":"C","customer_name":"N","issue_date":"2026-01-01","due_date":"2026-01-31",{members}}}"#
        )
    }

    #[test]
    fn json_and_json_lines_with_a_byte_order_mark() {
        let one = json_invoice(r#""amount":"10""#);
        for (name, content) in [
            ("a.json", format!("[{one}]")),
            ("a.jsonl", format!("{one}\n")),
        ] {
            let l = load(name, &format!("\u{feff}{content}"), |_| {});
            assert!(l.problems.is_empty(), "{name}: {:?}", l.problems);
            assert_eq!(l.invoices.len(), 1, "{name}");
        }
    }

    #[test]
    fn json_objects_and_arrays_are_kept_as_json_text_in_extra() {
        let l = load(
            "a.json",
            &format!(
                "[{}, {}]",
                json_invoice(
                    r#""amount":1,"address":{"city":"Lyon", "zip": "69001"},"lines":[1, "a"]"#
                ),
                json_invoice(r#""amount":{"value":1}"#).replace("J1", "J2"),
            ),
            |_| {},
        );
        let extra = &l.invoices[0].extra;
        assert_eq!(extra["address"], r#"{"city":"Lyon","zip":"69001"}"#);
        assert_eq!(extra["lines"], r#"[1,"a"]"#);
        // A canonical field still has to be a string or a number.
        assert_eq!(l.invoices.len(), 1);
        assert_first_problem(&l, "[1]: amount: expected a string or a number");
    }

    #[test]
    fn json_amounts_in_exponent_form_and_with_a_decimal_comma() {
        let content = format!(
            "[{}, {}]",
            json_invoice(r#""amount":1.5E3,"amount_paid":1e-2"#),
            json_invoice(r#""amount":1234.56,"customer_id":1.5"#).replace("J1", "J2"),
        );
        for decimal in ['.', ','] {
            let l = load("a.json", &content, |f| f.decimal = decimal);
            assert!(l.problems.is_empty(), "{:?}", l.problems);
            assert_eq!(l.invoices[0].amount_due().to_string(), "1499.99");
            assert_eq!(l.invoices[1].amount.to_string(), "1234.56");
            // Only amounts follow the feed's decimal: other numbers stay as written.
            assert_eq!(&*l.invoices[1].customer_id, "1.5");
        }
        let l = load(
            "a.json",
            &format!("[{}]", json_invoice(r#""amount":1e999"#)),
            |_| {},
        );
        assert_first_problem(&l, "amount: expected a decimal number");
    }

    #[test]
    fn mapped_column_names_match_trimmed_and_in_any_case() {
        let content = " FACTURE ;Customer_ID;customer_name;issue_date;due_date;Montant TTC\nF1;C1;Dupont;2024-02-01;2024-02-29;10\n";
        let l = load("fr.csv", content, |f| {
            f.columns.insert("number".into(), "Facture".into());
            f.columns.insert("amount".into(), "montant ttc".into());
        });
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(
            (
                &*l.invoices[0].number,
                l.invoices[0].amount.to_string().as_str()
            ),
            ("F1", "10")
        );
        let l = load(
            "a.json",
            &format!("[{}]", json_invoice(r#""Montant TTC":"10""#)),
            |f| {
                f.columns.insert("amount".into(), "montant ttc".into());
            },
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn a_negative_payment_is_a_bad_row() {
        let l = load(
            "a.csv",
            &format!("{HEADER}F1,C1,Acme,,2026-01-01,2026-01-31,100,-30,,,,\n"),
            |_| {},
        );
        assert!(l.invoices.is_empty());
        assert_first_problem(
            &l,
            "a.csv:2: amount_paid: must not be negative, found \"-30\"",
        );
    }

    #[test]
    fn a_duplicate_column_is_a_feed_error() {
        let cases = [
            (
                "number,customer_id,customer_name,issue_date,due_date,amount,Amount\n",
                None,
                "duplicate column \"Amount\": \"amount\" already gives amount",
            ),
            (
                "number,customer_id,customer_name,issue_date,due_date,amount,po,po\n",
                None,
                "duplicate column \"po\"",
            ),
            (
                "number,customer_id,customer_name,issue_date,due_date,Montant,MONTANT\n",
                Some("montant"),
                "duplicate column \"MONTANT\": \"Montant\" already gives amount",
            ),
        ];
        for (header, mapped, message) in cases {
            let l = load(
                "a.csv",
                &format!("{header}F1,C1,A,2026-01-01,2026-01-31,1,2\n"),
                |f| {
                    if let Some(m) = mapped {
                        f.columns.insert("amount".into(), m.into());
                    }
                },
            );
            assert_eq!(l.unreadable.len(), 1, "{header}");
            assert_first_problem(&l, &format!("a.csv:1: {message}"));
        }
        // Unnamed columns (trailing separators in the header) are no duplicates.
        let l = load(
            "a.csv",
            "number,customer_id,customer_name,issue_date,due_date,amount,,\nF1,C1,A,2026-01-01,2026-01-31,1,,\n",
            |_| {},
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[test]
    fn bad_rows_after_a_multi_line_value_are_located_by_physical_line() {
        let content = "number,customer_id,customer_name,issue_date,due_date,amount,note\n\
                       F1,C1,A,2026-01-01,2026-01-31,1,\"two\nlines\r\nhere\"\n\
                       F2,C1,A,2026-01-01,2026-01-31,abc,\n";
        let l = load("a.csv", content, |_| {});
        assert_eq!(l.invoices[0].extra["note"], "two\nlines\r\nhere");
        assert_first_problem(&l, "a.csv:5: amount:");
    }

    #[test]
    fn values_past_the_header_are_a_bad_row_unless_empty() {
        let content = format!(
            "{HEADER}F1,C1,Acme,,2026-01-01,2026-01-31,1,,,,,north,,\nF2,C1,Acme,,2026-01-01,2026-01-31,1,,,,,north,shifted\n"
        );
        let l = load("a.csv", &content, |_| {});
        assert_eq!(l.invoices.len(), 1);
        assert_eq!(l.invoices[0].extra["region"], "north");
        assert_first_problem(&l, "a.csv:3: row has 13 fields, the header has 12");
    }
}
