//! Reading invoices from CSV, JSON and JSON Lines feeds into the model.
//!
//! A feed is read by a pipeline of threads, because a million rows take one
//! core about a second to convert:
//!
//! - one thread reads the file and splits it into rows (CSV records, JSON
//!   Lines lines, elements of a JSON array), in batches;
//! - one thread per core converts batches of rows into invoices (checking
//!   every field and interning shared text), in any order;
//! - the calling thread takes the converted batches back in the feed's order,
//!   finds duplicate numbers and keeps the invoices.
//!
//! So every message, line number, "first seen at" and the order of the
//! invoices are what reading the feed row by row gives. Batches go round:
//! once kept, a batch goes back to the reading thread to be filled again, so
//! its row buffers are allocated once, not per row, and at most
//! [`IN_FLIGHT`] batches per converting thread exist at a time.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

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

// Each field's place in `FIELDS`, found at compile time: a row's values are
// read by index, millions of times, rather than searched for by name.
const NUMBER: usize = field("number");
const CUSTOMER_ID: usize = field("customer_id");
const CUSTOMER_NAME: usize = field("customer_name");
const EMAIL: usize = field("email");
const ISSUE_DATE: usize = field("issue_date");
const DUE_DATE: usize = field("due_date");
const AMOUNT: usize = field("amount");
const AMOUNT_PAID: usize = field("amount_paid");
const CURRENCY: usize = field("currency");
const STATUS: usize = field("status");
const PAID_DATE: usize = field("paid_date");
const LANGUAGE: usize = field("language");
const TAGS: usize = field("tags");
const PROMISE_DATE: usize = field("promise_date");

const REQUIRED: [usize; 6] = [
    NUMBER,
    CUSTOMER_ID,
    CUSTOMER_NAME,
    ISSUE_DATE,
    DUE_DATE,
    AMOUNT,
];

/// The index of a canonical field in [`FIELDS`]; a compile error for another name.
const fn field(name: &str) -> usize {
    match field_index(name) {
        Some(i) => i,
        None => panic!("not a canonical field"),
    }
}

/// The index of `name` in [`FIELDS`], if it is a canonical field. A `const
/// fn` (hence the loops: `position` and `==` on `str` are not) so that the
/// field constants above are found at compile time.
const fn field_index(name: &str) -> Option<usize> {
    let mut i = 0;
    while i < FIELDS.len() {
        let (a, b) = (FIELDS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return Some(i);
            }
        }
        i += 1;
    }
    None
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
        let trimmed = trim(&value);
        if !trimmed.is_empty() {
            self.fields[index] = Some(if trimmed.len() == value.len() {
                value
            } else {
                Cow::Owned(trimmed.to_string())
            });
        }
    }
    fn get(&self, field: usize) -> Option<&str> {
        self.fields[field].as_deref()
    }
}

/// A row converted: an invoice, or the problems that make it a bad row.
type Converted = Result<Invoice, Vec<Problem>>;

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
    let interner = Mutex::new(Interner::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    // Kept from feed to feed: what each thread has interned and validated is still good.
    let mut converters: Vec<Converter> = (0..threads).map(|_| Converter::new(&interner)).collect();
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
        let mut input = BufReader::with_capacity(1 << 16, file);
        let mut accept = |row: Converted| match row {
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
        let (parser, converters) = (&parser, &mut converters[..]);
        let result = skip_bom(&mut input)
            .map_err(|e| parser.read_error(e))
            .and_then(|()| match parser.feed.format() {
                FeedFormat::Csv => parser.csv(input, converters, &mut accept),
                FeedFormat::Json => pipeline(
                    |feeder| parser.read_json_array(input, feeder),
                    |element, converter| parser.json_element(element, converter),
                    converters,
                    &mut accept,
                )
                .unwrap_or_else(|Crashed| Err(parser.crashed())),
                FeedFormat::Jsonl => pipeline(
                    |feeder| parser.read_json_lines(input, feeder),
                    |line, converter| parser.json_line(line, converter),
                    converters,
                    &mut accept,
                )
                .unwrap_or_else(|Crashed| Err(parser.crashed())),
            });
        if let Err(p) = result {
            load.problems.push(p);
            load.unreadable.push(path);
        }
    }
    load.index = index;
    load
}

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

/// Rows per batch: enough that handing a batch from thread to thread costs
/// little next to converting it, few enough that a batch's invoices are
/// still in the cache when they are kept.
const BATCH: usize = 1024;
/// Batches per converting thread in the pipeline at a time: enough that no
/// thread waits for another, few enough to bound the memory they take.
const IN_FLIGHT: usize = 4;
/// Converting threads at most: past a few, the reading and keeping threads are the limit.
const MAX_THREADS: usize = 8;

/// Rows read from a feed and, once converted, their invoices or problems.
struct Batch<R> {
    /// Its place in the feed: batches are converted in any order, kept in this one.
    seq: usize,
    /// Row buffers, reused from batch to batch: the first `len` are this batch's rows.
    rows: Vec<R>,
    len: usize,
    /// One per row (none for a blank row), in the rows' order.
    converted: Vec<Converted>,
}

impl<R> Batch<R> {
    fn new() -> Self {
        Batch {
            seq: 0,
            rows: Vec::with_capacity(BATCH),
            len: 0,
            converted: Vec::with_capacity(BATCH),
        }
    }
}

/// The reading thread's end of the pipeline: fills batches row by row and hands them on.
struct Feeder<R> {
    batch: Batch<R>,
    /// Batches made so far: at most `limit`, then they are reused.
    made: usize,
    limit: usize,
    /// Batches kept by the loading thread, to fill again.
    empty: Receiver<Batch<R>>,
    full: Sender<Batch<R>>,
    seq: usize,
}

impl<R: Default> Feeder<R> {
    /// The next row to fill: its buffers are those of a row of an earlier batch.
    fn next(&mut self) -> &mut R {
        let batch = &mut self.batch;
        if batch.len == batch.rows.len() {
            batch.rows.push(R::default());
        }
        &mut batch.rows[batch.len]
    }

    /// Keeps the row filled since [`Feeder::next`], and hands the batch on when it is full.
    fn keep(&mut self) {
        self.batch.len += 1;
        if self.batch.len == BATCH {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        let mut empty = match self.empty.try_recv() {
            Ok(batch) => batch,
            Err(_) if self.made < self.limit => {
                self.made += 1;
                Batch::new()
            }
            // Wait for the loading thread to keep a batch; if it has stopped
            // (a converting thread crashed), the rest of the feed goes nowhere.
            Err(_) => self.empty.recv().unwrap_or_else(|_| Batch::new()),
        };
        empty.len = 0;
        let mut full = std::mem::replace(&mut self.batch, empty);
        full.seq = self.seq;
        self.seq += 1;
        // Fails only when every converting thread has crashed, which joining them reports.
        let _ = self.full.send(full);
    }
}

/// Reads a feed with `read` on one thread, converts its rows with `convert`
/// on one thread per converter, and hands each converted row to `accept` on
/// this thread, in the feed's order. `Err` when a thread crashed.
fn pipeline<R: Default + Send>(
    read: impl FnOnce(&mut Feeder<R>) -> Result<(), Problem> + Send,
    convert: impl Fn(&mut R, &mut Converter) -> Option<Converted> + Sync,
    converters: &mut [Converter],
    accept: &mut dyn FnMut(Converted),
) -> Result<Result<(), Problem>, Crashed> {
    let (full, to_convert) = std::sync::mpsc::channel::<Batch<R>>();
    let (converted, to_keep) = std::sync::mpsc::channel::<Option<Batch<R>>>();
    let (kept, empty) = std::sync::mpsc::channel::<Batch<R>>();
    let convert = &convert;
    std::thread::scope(|scope| {
        let limit = IN_FLIGHT * converters.len();
        let reading = scope.spawn(move || {
            let mut feeder = Feeder {
                batch: Batch::new(),
                made: 1,
                limit,
                empty,
                full,
                seq: 0,
            };
            let result = read(&mut feeder);
            if feeder.batch.len > 0 {
                feeder.hand_on();
            }
            result
        });
        // Shared by the converting threads only: when they are all gone, the
        // reading thread's sends fail rather than wait.
        let to_convert = Arc::new(Mutex::new(to_convert));
        let converting: Vec<_> = converters
            .iter_mut()
            .map(|converter| {
                let (to_convert, converted) = (to_convert.clone(), converted.clone());
                scope.spawn(move || {
                    loop {
                        // The lock is held only to take a batch; converting runs in parallel.
                        let next = to_convert
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        let Ok(mut batch) = next else { break };
                        // A crash must not leave the loading thread waiting for this
                        // batch forever: it is told, and stops the pipeline.
                        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let Batch {
                                rows,
                                len,
                                converted,
                                ..
                            } = &mut batch;
                            converted.extend(
                                rows[..*len]
                                    .iter_mut()
                                    .filter_map(|row| convert(row, converter)),
                            );
                        }));
                        if done.is_err() {
                            let _ = converted.send(None);
                            return Err(Crashed);
                        }
                        if converted.send(Some(batch)).is_err() {
                            break;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop((to_convert, converted));
        let mut crashed = false;
        // Batches converted ahead of the next one in the feed's order.
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for batch in &to_keep {
            let Some(batch) = batch else {
                crashed = true;
                break;
            };
            waiting.insert(batch.seq, batch);
            while let Some(mut batch) = waiting.remove(&next) {
                batch.converted.drain(..).for_each(&mut *accept);
                next += 1;
                let _ = kept.send(batch);
            }
        }
        drop((kept, to_keep));
        for thread in converting {
            crashed |= !matches!(thread.join(), Ok(Ok(())));
        }
        match reading.join() {
            Ok(result) if !crashed => Ok(result),
            _ => Err(Crashed),
        }
    })
}

/// A thread of the pipeline panicked: the feed is reported as unreadable.
struct Crashed;

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

/// A converting thread's view of the [`Interner`] all threads share. It
/// keeps its own table of what it has interned, so that the common case, a
/// value seen before, takes no lock; only a value new to the thread is
/// looked up in the shared one, so that all threads get the same allocation.
struct ThreadInterner<'s> {
    shared: &'s Mutex<Interner>,
    own: Interner,
}

impl ThreadInterner<'_> {
    fn get(&mut self, s: &str) -> Shared {
        if let Some(shared) = self.own.strings.get(s) {
            return shared.clone();
        }
        let shared = self.lock().get(s);
        self.own.strings.insert(shared.clone());
        shared
    }

    fn tags(&mut self, list: &str) -> Arc<[Shared]> {
        if let Some(set) = self.own.tag_sets.get(list) {
            return set.clone();
        }
        let set = self.lock().tags(list);
        self.own.tag_sets.insert(list.into(), set.clone());
        set
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interner> {
        // A thread that panicked while holding it left a consistent table: a
        // set is only ever added to.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one converting thread keeps from row to row.
struct Converter<'s> {
    strings: ThreadInterner<'s>,
    /// As written in the feeds (`usd`, `FR`) → canonical (`USD`, `fr`).
    currencies: Canonical,
    languages: Canonical,
}

impl<'s> Converter<'s> {
    fn new(shared: &'s Mutex<Interner>) -> Self {
        Converter {
            strings: ThreadInterner {
                shared,
                own: Interner::default(),
            },
            currencies: Canonical::default(),
            languages: Canonical::default(),
        }
    }
}

/// The canonical, interned form of the few values a column takes (`usd` →
/// `USD`): a feed of a million rows in three currencies checks and
/// canonicalizes each currency once, not once per row. Only valid values are
/// remembered, and only the first [`Canonical::MAX`]: a feed with more still
/// reads right, just slower.
#[derive(Default)]
struct Canonical(Vec<(Box<str>, Shared)>);

impl Canonical {
    const MAX: usize = 32;

    fn get(&mut self, raw: &str, canonical: impl FnOnce(&str) -> Option<Shared>) -> Option<Shared> {
        if let Some((_, value)) = self.0.iter().find(|(r, _)| **r == *raw) {
            return Some(value.clone());
        }
        let value = canonical(raw)?;
        if self.0.len() < Self::MAX {
            self.0.push((raw.into(), value.clone()));
        }
        Some(value)
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
struct DateFormat<'f> {
    /// The positions of the digits, for a format of `%Y`, `%m` and `%d` between literals.
    fixed: Option<FixedDate>,
    /// The format for chrono, for dates of any other shape. None for the
    /// default `%Y-%m-%d`, which is only read in its fixed shape (`2026-1-5`
    /// is not a date there).
    strftime: Option<Vec<chrono::format::Item<'f>>>,
}

impl<'f> DateFormat<'f> {
    fn new(format: &'f str) -> Option<Self> {
        let items = chrono::format::StrftimeItems::new(format).parse().ok()?;
        Some(DateFormat {
            fixed: FixedDate::new(&items),
            strftime: (format != "%Y-%m-%d").then_some(items),
        })
    }

    fn parse(&self, s: &str) -> Option<NaiveDate> {
        if let Some((year, month, day)) = self.fixed.as_ref().and_then(|f| f.fields(s)) {
            return NaiveDate::from_ymd_opt(year, month, day);
        }
        let mut parsed = chrono::format::Parsed::new();
        chrono::format::parse(&mut parsed, s, self.strftime.as_ref()?.iter()).ok()?;
        parsed.to_naive_date().ok()
    }
}

/// A date format made of `%Y`, `%m` and `%d` (once each) and separators
/// without digits, such as `%d/%m/%Y`. A date of exactly its shape, all
/// digits where the format has numbers (`05/01/2026`), is read by position:
/// chrono's parser reads the same numbers from it, far slower. Chrono still
/// says which dates exist ([`NaiveDate::from_ymd_opt`]) and reads the dates
/// of any other shape (`5/1/2026`).
struct FixedDate {
    /// Per byte of a date: `None` for a digit, else the separator's byte.
    shape: Vec<Option<u8>>,
    year: std::ops::Range<usize>,
    month: std::ops::Range<usize>,
    day: std::ops::Range<usize>,
}

impl FixedDate {
    fn new(items: &[chrono::format::Item]) -> Option<Self> {
        use chrono::format::{Item, Numeric};
        let mut shape = Vec::new();
        let (mut year, mut month, mut day) = (None, None, None);
        for item in items {
            let (place, width) = match item {
                Item::Literal(s) if s.bytes().all(|b| b.is_ascii_punctuation()) => {
                    shape.extend(s.bytes().map(Some));
                    continue;
                }
                // Chrono reads at most 4 digits for an unsigned year, 2 for a month or day.
                Item::Numeric(Numeric::Year, _) => (&mut year, 4),
                Item::Numeric(Numeric::Month, _) => (&mut month, 2),
                Item::Numeric(Numeric::Day, _) => (&mut day, 2),
                _ => return None,
            };
            if place.replace(shape.len()..shape.len() + width).is_some() {
                return None;
            }
            shape.resize(shape.len() + width, None);
        }
        Some(FixedDate {
            shape,
            year: year?,
            month: month?,
            day: day?,
        })
    }

    /// The year, month and day of a date of this shape; None for another shape.
    fn fields(&self, s: &str) -> Option<(i32, u32, u32)> {
        let b = s.as_bytes();
        let fits = b.len() == self.shape.len()
            && b.iter()
                .zip(&self.shape)
                .all(|(c, expected)| match expected {
                    None => c.is_ascii_digit(),
                    Some(separator) => c == separator,
                });
        let number = |r: &std::ops::Range<usize>| {
            b[r.clone()]
                .iter()
                .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
        };
        fits.then(|| {
            (
                number(&self.year) as i32,
                number(&self.month),
                number(&self.day),
            )
        })
    }
}

/// A CSV record as the reading thread hands it on.
#[derive(Default)]
struct CsvRow {
    record: csv::StringRecord,
    /// Why the csv reader could not read the record (invalid UTF-8).
    unreadable: Option<Problem>,
}

/// A line of a JSON Lines feed.
#[derive(Default)]
struct JsonLine {
    line: usize,
    bytes: Vec<u8>,
}

/// An element of a JSON array feed.
#[derive(Default)]
struct JsonElement {
    index: usize,
    value: Value,
}

impl<'c> FeedParser<'c> {
    fn new(feed: &'c FeedConfig, config: &Config, file: Arc<PathBuf>) -> Result<Self, Problem> {
        let dates = DateFormat::new(&feed.date_format).ok_or_else(|| {
            Problem::error(
                Location::file(&file),
                format!(
                    "date_format {:?} is not a valid strftime format",
                    feed.date_format
                ),
            )
        })?;
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

    /// Reads the header here, then the records through the [`pipeline`].
    fn csv(
        &self,
        mut input: impl BufRead + Send,
        converters: &mut [Converter],
        accept: &mut dyn FnMut(Converted),
    ) -> Result<(), Problem> {
        let delimiter = match self.feed.delimiter {
            Some(d) => d as u8,
            None => detect_delimiter(input.fill_buf().map_err(|e| self.read_error(e))?),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(input);
        let headers = reader.headers().map_err(|e| {
            Problem::error(
                Location::line(&self.file, 1),
                format!("cannot read the header row: {e}"),
            )
        })?;
        let columns = self.map_columns(headers.iter(), || Location::line(&self.file, 1))?;
        let read = |feeder: &mut Feeder<CsvRow>| loop {
            let row = feeder.next();
            row.unreadable = None;
            match reader.read_record(&mut row.record) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(e) => {
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        return Err(self.read_error(e));
                    }
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    row.unreadable = Some(Problem::error(
                        Location::line(&self.file, line),
                        format!("unreadable row: {e}"),
                    ));
                }
            }
            feeder.keep();
        };
        let convert =
            |row: &mut CsvRow, converter: &mut Converter| self.csv_row(row, &columns, converter);
        pipeline(read, convert, converters, accept).unwrap_or_else(|Crashed| Err(self.crashed()))
    }

    fn crashed(&self) -> Problem {
        Problem::error(Location::file(&self.file), "the feed reader crashed")
    }

    /// A CSV record as an invoice or a bad row; nothing for a blank one.
    fn csv_row(
        &self,
        row: &mut CsvRow,
        columns: &[Column],
        converter: &mut Converter,
    ) -> Option<Converted> {
        if let Some(problem) = row.unreadable.take() {
            return Some(Err(vec![problem]));
        }
        let record = &row.record;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|v| trim(v).is_empty()) {
            return None;
        }
        // Values past the header have no column to go to: dropping them would
        // hide a shifted row (an unquoted separator inside a value). Empty ones
        // are only trailing separators, as some exports write on every row.
        if record
            .iter()
            .skip(columns.len())
            .any(|v| !trim(v).is_empty())
        {
            return Some(Err(vec![Problem::error(
                Location::line(&self.file, line),
                format!(
                    "row has {} fields, the header has {}",
                    record.len(),
                    columns.len()
                ),
            )]));
        }
        let mut values = Row::new();
        for (value, column) in record.iter().zip(columns) {
            match column {
                Column::Field(i) => values.set(*i, Cow::Borrowed(value)),
                Column::Extra(name) => {
                    values.extra.insert(name.clone(), value.to_string());
                }
            }
        }
        Some(self.invoice(values, line, converter))
    }

    /// Reads a JSON array one element at a time, so that the whole array is never held in memory.
    fn read_json_array(
        &self,
        input: impl BufRead,
        feeder: &mut Feeder<JsonElement>,
    ) -> Result<(), Problem> {
        struct Elements<'f>(&'f mut Feeder<JsonElement>);
        impl<'de> serde::de::Visitor<'de> for Elements<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array of invoices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut index = 0;
                while let Some(value) = seq.next_element::<Value>()? {
                    *self.0.next() = JsonElement { index, value };
                    self.0.keep();
                    index += 1;
                }
                Ok(())
            }
        }
        let mut de = serde_json::Deserializer::from_reader(input);
        serde::Deserializer::deserialize_seq(&mut de, Elements(feeder))
            .and_then(|()| de.end())
            .map_err(|e| {
                Problem::error(
                    Location::at(&self.file, e.line(), e.column()),
                    format!("not a JSON array of invoices: {e}"),
                )
            })
    }

    fn json_element(
        &self,
        element: &mut JsonElement,
        converter: &mut Converter,
    ) -> Option<Converted> {
        let value = std::mem::take(&mut element.value);
        Some(self.json_row(value, element.index, converter))
    }

    /// Splits JSON Lines into lines; they are parsed on the converting threads.
    fn read_json_lines(
        &self,
        mut input: impl BufRead,
        feeder: &mut Feeder<JsonLine>,
    ) -> Result<(), Problem> {
        for line in 1.. {
            let row = feeder.next();
            row.bytes.clear();
            if input
                .read_until(b'\n', &mut row.bytes)
                .map_err(|e| self.read_error(e))?
                == 0
            {
                break;
            }
            if row.bytes.last() == Some(&b'\n') {
                row.bytes.pop();
            }
            row.line = line;
            feeder.keep();
        }
        Ok(())
    }

    fn json_line(&self, line: &mut JsonLine, converter: &mut Converter) -> Option<Converted> {
        if line.bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(match serde_json::from_slice::<Value>(&line.bytes) {
            Ok(value) => self.json_row(value, line.line, converter),
            Err(e) => Err(vec![Problem::error(
                Location::at(&self.file, line.line, e.column()),
                format!("invalid JSON: {e}"),
            )]),
        })
    }

    fn json_row(&self, value: Value, line: usize, converter: &mut Converter) -> Converted {
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
                Column::Field(i) => Some(*i),
                Column::Extra(_) => None,
            };
            let text: Option<Cow<str>> = match (value, field) {
                (Value::Null, _) => None,
                (Value::String(s), _) => Some(Cow::Borrowed(s.as_str())),
                (Value::Number(n), Some(AMOUNT | AMOUNT_PAID)) => {
                    Some(Cow::Owned(json_amount(n.as_str(), self.feed.decimal)))
                }
                (Value::Number(n), _) => Some(Cow::Owned(n.to_string())),
                (Value::Bool(b), _) => Some(Cow::Owned(b.to_string())),
                (Value::Array(items), Some(TAGS)) => Some(Cow::Owned(
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
        self.invoice(row, line, converter)
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
                .filter(|&&f| {
                    !columns
                        .iter()
                        .any(|c| matches!(c, Column::Field(i) if *i == f))
                })
                .map(|&f| FIELDS[f])
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

    fn invoice(&self, row: Row, line: usize, converter: &mut Converter) -> Converted {
        let mut problems = Vec::new();
        let mut bad = |field: usize, reason: String| {
            problems.push(Problem::error(
                self.location(line),
                format!("{}: {reason}", FIELDS[field]),
            ))
        };
        for field in REQUIRED {
            if row.get(field).is_none() {
                bad(field, "missing (required)".into());
            }
        }
        let date = |f: usize, bad: &mut dyn FnMut(usize, String)| {
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
        let issue_date = date(ISSUE_DATE, &mut bad);
        let due_date = date(DUE_DATE, &mut bad);
        let paid_date = date(PAID_DATE, &mut bad);
        let promise_date = date(PROMISE_DATE, &mut bad);
        let amount = |f: usize, bad: &mut dyn FnMut(usize, String)| {
            row.get(f)
                .and_then(|s| match parse_amount(s, self.feed.decimal) {
                    Ok(d) => Some(d),
                    Err(reason) => {
                        bad(f, reason);
                        None
                    }
                })
        };
        let amount_total = amount(AMOUNT, &mut bad);
        // A negative payment would raise the amount due: a sign error in the export.
        let amount_paid = match amount(AMOUNT_PAID, &mut bad) {
            Some(paid) if paid < Decimal::ZERO => {
                bad(
                    AMOUNT_PAID,
                    format!(
                        "must not be negative, found {:?}",
                        row.get(AMOUNT_PAID).unwrap_or_default()
                    ),
                );
                Decimal::ZERO
            }
            paid => paid.unwrap_or(Decimal::ZERO),
        };
        // Currencies and languages are checked and canonicalized once per
        // distinct value (see `Canonical`), and interned at once.
        let Converter {
            strings,
            currencies,
            languages,
        } = converter;
        let currency = row.get(CURRENCY).and_then(|c| {
            let code = currencies.get(c, |c| currency_code(c).map(|code| strings.get(&code)));
            if code.is_none() {
                bad(
                    CURRENCY,
                    format!("expected an ISO 4217 code such as EUR, found {c:?}"),
                );
            }
            code
        });
        let status = match row.get(STATUS).map(|s| (s, Status::parse(s))) {
            None => Status::Open,
            Some((_, Some(s))) => s,
            Some((s, None)) => {
                bad(
                    STATUS,
                    format!("expected open, paid, void or disputed, found {s:?}"),
                );
                Status::Open
            }
        };
        let language = row.get(LANGUAGE).and_then(|l| {
            let tag = languages.get(l, |l| {
                is_language_tag(l).then(|| strings.get(&canonical_language(l)))
            });
            if tag.is_none() {
                bad(
                    LANGUAGE,
                    format!("expected a language tag such as fr, fr-CA or en, found {l:?}"),
                );
            }
            tag
        });
        if let (Some(issue), Some(due)) = (issue_date, due_date)
            && due < issue
        {
            bad(
                DUE_DATE,
                format!("due date {due} is before the issue date {issue}"),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut text = |f: usize| strings.get(row.get(f).unwrap_or(""));
        Ok(Invoice {
            number: row.get(NUMBER).unwrap_or("").into(),
            customer_id: text(CUSTOMER_ID),
            customer_name: text(CUSTOMER_NAME),
            email: text(EMAIL),
            issue_date: issue_date.expect("checked"),
            due_date: due_date.expect("checked"),
            amount: amount_total.expect("checked"),
            amount_paid,
            currency: currency.unwrap_or_else(|| self.default_currency.clone()),
            status,
            paid_date,
            language,
            tags: strings.tags(row.get(TAGS).unwrap_or("")),
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

/// `s.trim()`, without decoding characters when `s` begins and ends with
/// ASCII that is no whitespace, as nearly every value of a feed does.
fn trim(s: &str) -> &str {
    let solid = |b: &u8| b.is_ascii() && !char::from(*b).is_whitespace();
    match s.as_bytes() {
        [first, .., last] if solid(first) && solid(last) => s,
        [only] if solid(only) => s,
        _ => s.trim(),
    }
}

/// A currency code as relance keeps it: upper case (`usd` is `USD`).
fn currency_code(c: &str) -> Option<Cow<'_, str>> {
    if is_currency_code(c) {
        return Some(Cow::Borrowed(c));
    }
    let upper = c.to_ascii_uppercase();
    is_currency_code(&upper).then_some(Cow::Owned(upper))
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
