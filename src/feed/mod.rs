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

mod customers;
mod row;
mod values;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use serde_json::Value;

use crate::config::{Config, FeedConfig, FeedFormat};
use crate::diagnostics::{Location, Problem, Problems, quote};
use crate::model::{Invoice, InvoiceField, LedgerIndex, NumberIndex, Shared};

use customers::Customers;
use row::{Converter, Interner, column_key};
use values::DateFormat;
pub use values::{parse_amount, parse_date};

/// What the feeds gave: the good invoices, and one problem per bad row or unreadable feed.
#[derive(Debug, Default)]
pub struct FeedLoad {
    pub invoices: Vec<Invoice>,
    pub problems: Problems,
    pub bad_rows: usize,
    /// The invoices by number (built while loading, to find duplicates)
    /// and their customers.
    pub index: LedgerIndex,
    /// Feeds that could not be read at all.
    pub unreadable: Vec<PathBuf>,
}

/// A row converted: an invoice, or the problems that make it a bad row.
type Converted = Result<(Invoice, Keys), Vec<Problem>>;

/// What a converting thread works out for the thread keeping the rows, so
/// that the one thread all rows go through hashes none of them: the
/// invoice's customer (numbered by the interner) and its number's hash.
struct Keys {
    customer: u32,
    number: u64,
}

/// Reads every feed of the config on `today` (in the config's time zone:
/// it bounds the plausible dates). A feed that cannot be read is one error
/// naming it; a bad row is one problem and is skipped; the rest goes on.
pub fn load_feeds(config: &Config, feeds: &[FeedConfig], today: NaiveDate) -> FeedLoad {
    let mut load = FeedLoad::default();
    // About one invoice per 100 bytes of feed: reserve once rather than grow.
    let size: u64 = feeds
        .iter()
        .filter_map(|f| std::fs::metadata(config.path(&f.path)).ok())
        .map(|m| m.len())
        .sum();
    let estimate = (size / 100) as usize;
    load.index.by_number = NumberIndex::with_capacity(estimate);
    load.index.customer_of.reserve(estimate);
    load.invoices.reserve(estimate);
    let interner = Mutex::new(Interner::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    // Kept from feed to feed: what each thread has interned and validated is still good.
    let mut converters: Vec<Converter> = (0..threads)
        .map(|_| Converter::new(&interner, load.index.by_number.hasher()))
        .collect();
    let mut customers = Customers::default();
    let max_bytes = config.limits.feed_file_bytes;
    for feed in feeds {
        let path = config.path(&feed.path);
        let opened = std::fs::File::open(&path).and_then(|f| {
            // A FIFO or a file still growing is bounded while it is read.
            match f.metadata()?.len() {
                size if size > max_bytes => Err(Overflow::File { max: max_bytes }.into()),
                _ => Ok(f),
            }
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                load.problems
                    .error(Location::file(&path), format!("cannot read feed: {e}"));
                load.unreadable.push(path);
                continue;
            }
        };
        let parser = match FeedParser::new(feed, config, Arc::new(path.clone()), today) {
            Ok(p) => p,
            Err(p) => {
                load.problems.push(p);
                load.unreadable.push(path);
                continue;
            }
        };
        let csv = parser.feed.format() == FeedFormat::Csv;
        let mut input = Bounded {
            inner: BufReader::with_capacity(1 << 16, file),
            read: 0,
            max: max_bytes,
            // JSON escapes its quotes: JSON Lines are bounded line by line instead.
            row: csv.then(|| RowScan::new(parser.row_bytes)),
            overflow: None,
        };
        let mut accept =
            |row: Converted| load.keep(row, &mut customers, &|line| parser.location(line));
        let (parser, converters) = (&parser, &mut converters[..]);
        let result = skip_bom(&mut input)
            .map_err(|e| parser.io_problem(e))
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
    load
}

impl FeedLoad {
    /// Keeps a converted row: its invoice, unless its number is a duplicate
    /// or its customer's total would not be exact (bad rows then), with a
    /// warning when its customer's rows disagree; or its problems. `at`
    /// locates a row by its line.
    fn keep(&mut self, row: Converted, customers: &mut Customers, at: &dyn Fn(usize) -> Location) {
        let (invoice, keys) = match row {
            Ok(converted) => converted,
            Err(problems) => {
                self.bad_rows += 1;
                self.problems.0.extend(problems);
                return;
            }
        };
        let line = invoice.origin.line;
        let at = || at(line);
        let total = match customers.total_with(keys.customer, &invoice, &at) {
            Ok(total) => total,
            Err(problem) => {
                self.bad_rows += 1;
                self.problems.push(problem);
                return;
            }
        };
        self.invoices.push(invoice);
        let i = self.invoices.len() - 1;
        let by_number = &mut self.index.by_number;
        if let Err(first) = by_number.insert_hashed(&self.invoices, i, keys.number)
            && let Some(dup) = self.invoices.pop()
        {
            let first = &self.invoices[first];
            self.bad_rows += 1;
            self.problems.error(
                at(),
                format!(
                    "number: duplicate invoice number {} (first seen at {}:{})",
                    quote(&dup.number),
                    first.origin.file.display(),
                    first.origin.line
                ),
            );
        } else {
            let kept = &self.invoices[i];
            let (customer, warning) = customers.keep(keys.customer, kept, total, &at);
            self.index.customer_of.push(customer);
            self.problems.0.extend(warning);
        }
    }
}

/// Invoices written out field by field rather than read from a feed: the
/// inline invoices of a policy test, each an object of canonical field
/// names (any other name is an extra column) and text values, at its line
/// of `file`. They are read as a JSON Lines feed's rows are, with ISO
/// dates and the config's currency, and the same checks: every field, the
/// plausible dates on `today`, duplicate numbers, a customer's rows agreeing.
pub fn read_written(
    config: &Config,
    file: &Path,
    rows: Vec<(usize, serde_json::Map<String, Value>)>,
    today: NaiveDate,
) -> FeedLoad {
    let mut load = FeedLoad::default();
    let feed = FeedConfig {
        format: Some(FeedFormat::Jsonl),
        ..FeedConfig::new(file.to_path_buf())
    };
    let parser = match FeedParser::new(&feed, config, Arc::new(file.to_path_buf()), today) {
        Ok(parser) => parser,
        Err(problem) => {
            load.problems.push(problem);
            return load;
        }
    };
    let interner = Mutex::new(Interner::default());
    let mut converter = Converter::new(&interner, load.index.by_number.hasher());
    let mut customers = Customers::default();
    for (line, object) in rows {
        let row = parser.json_row(Value::Object(object), line, &mut converter);
        load.keep(row, &mut customers, &|line| parser.location(line));
    }
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

/// A CSV feed's bytes on their way to the csv reader, with the places of
/// their line ends noted. The csv reader locates a record where the one
/// before it ended: before the `\n` of a CRLF line end, which it skips only
/// when it reads the next record, and before the blank lines it skips. So a
/// bad row of a Windows export, or after a blank line, would be reported a
/// line (or more) too early; [`LineEnds::lines_skipped_at`] gives the lines
/// to add.
struct LineEnds<R> {
    input: R,
    /// The offset of the next byte read.
    offset: u64,
    /// The offsets of the `\r` and `\n` bytes read and not yet passed, each
    /// with whether it ends a line (`\n`).
    ends: std::collections::VecDeque<(u64, bool)>,
}

impl<R> LineEnds<R> {
    fn new(input: R) -> Self {
        LineEnds {
            input,
            offset: 0,
            ends: std::collections::VecDeque::new(),
        }
    }

    /// How many lines end in the run of line-end bytes at `start`, where the
    /// csv reader says a record starts: the lines it skips before the
    /// record's first byte. The line ends before `start` are forgotten: the
    /// reader never goes back.
    fn lines_skipped_at(&mut self, start: u64) -> u64 {
        while self.ends.front().is_some_and(|&(at, _)| at < start) {
            self.ends.pop_front();
        }
        (start..)
            .zip(&self.ends)
            .take_while(|(next, (at, _))| at == next)
            .map(|(_, &(_, newline))| u64::from(newline))
            .sum()
    }
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        let read = &buf[..n];
        let offset = self.offset;
        self.ends.extend(
            memchr::memchr2_iter(b'\r', b'\n', read).map(|i| (offset + i as u64, read[i] == b'\n')),
        );
        self.offset += n as u64;
        Ok(n)
    }
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

struct FeedParser<'c> {
    feed: &'c FeedConfig,
    file: Arc<PathBuf>,
    dates: DateFormat<'c>,
    default_currency: Shared,
    /// The feed's own column names (as [`column_key`]) -> the canonical
    /// fields it gives (a set of [`InvoiceField::bit`]s), from `columns`:
    /// one column may give several (an export whose customer column is only
    /// an id gives `customer_id` and `customer_name`).
    renamed: HashMap<String, u32>,
    /// The earliest and latest plausible issue and due dates.
    plausible: (NaiveDate, NaiveDate),
    /// `limits.field_chars`, and the longest row it allows, in bytes.
    field_chars: usize,
    row_bytes: u64,
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
    /// Longer than a row may be: `bytes` holds its start only.
    too_long: bool,
}

/// An element of a JSON array feed.
#[derive(Default)]
struct JsonElement {
    index: usize,
    value: Value,
}

impl<'c> FeedParser<'c> {
    fn new(
        feed: &'c FeedConfig,
        config: &Config,
        file: Arc<PathBuf>,
        today: NaiveDate,
    ) -> Result<Self, Problem> {
        let dates = DateFormat::new(&feed.date_format).ok_or_else(|| {
            Problem::error(
                Location::file(&file),
                format!(
                    "date_format {:?} is not a valid strftime format",
                    feed.date_format
                ),
            )
        })?;
        let mut renamed: HashMap<String, u32> = HashMap::new();
        for (canonical, foreign) in &feed.columns {
            if let Some(i) = InvoiceField::feed_column(canonical) {
                *renamed.entry(column_key(foreign)).or_default() |= InvoiceField::ALL[i].bit();
            }
        }
        Ok(FeedParser {
            feed,
            file,
            dates,
            default_currency: config.currency.as_str().into(),
            renamed,
            plausible: plausible_dates(today),
            field_chars: config.limits.field_chars,
            row_bytes: row_bytes(config.limits.field_chars),
        })
    }

    /// A read error as a problem: located at its row when the row is too
    /// long, naming the limit when the file is too large.
    fn io_problem(&self, e: std::io::Error) -> Problem {
        match e.get_ref().and_then(|e| e.downcast_ref::<Overflow>()) {
            Some(overflow @ Overflow::Row { line, .. }) => {
                Problem::error(Location::line(&self.file, *line), overflow.to_string())
            }
            _ => self.read_error(e),
        }
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
            .from_reader(LineEnds::new(input));
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
                Ok(true) => {
                    if let Some(mut at) = row.record.position().cloned() {
                        let skipped = reader.get_mut().lines_skipped_at(at.byte());
                        if skipped > 0 {
                            at.set_line(at.line() + skipped);
                            row.record.set_position(Some(at));
                        }
                    }
                }
                Err(e) => {
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        let csv::ErrorKind::Io(e) = e.into_kind() else {
                            unreachable!("matched just above")
                        };
                        return Err(self.io_problem(e));
                    }
                    let line = e.position().map_or(0, |p| {
                        (p.line() + reader.get_mut().lines_skipped_at(p.byte())) as usize
                    });
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
                if e.is_io() {
                    return self.io_problem(e.into());
                }
                Problem::error(
                    Location::at(&self.file, e.line(), e.column()),
                    format!("not a JSON array of invoices: {e}"),
                )
            })
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
            let read = (&mut input)
                .take(self.row_bytes.saturating_add(1))
                .read_until(b'\n', &mut row.bytes)
                .map_err(|e| self.io_problem(e))?;
            if read == 0 {
                break;
            }
            if row.bytes.last() == Some(&b'\n') {
                row.bytes.pop();
            }
            row.too_long = row.bytes.len() as u64 > self.row_bytes;
            if row.too_long {
                // The rest of the line is skipped, never held.
                input.skip_until(b'\n').map_err(|e| self.io_problem(e))?;
                row.bytes.truncate(QUOTED_BYTES);
            }
            row.line = line;
            feeder.keep();
        }
        Ok(())
    }
}

/// The issue and due dates a feed may hold, read on `today`: from 1900 to
/// twenty years ahead. Anything else is a typo (year 0, 9999), and would
/// have catch-up walk through centuries of occurrences.
pub fn plausible_dates(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    let latest = today
        .checked_add_months(chrono::Months::new(20 * 12))
        .unwrap_or(NaiveDate::MAX);
    (earliest, latest)
}

/// The longest row (a CSV record, a JSON line) a feed may hold: 64 fields
/// of `field_chars` characters of 4 bytes, 1 MiB by default.
fn row_bytes(field_chars: usize) -> u64 {
    (field_chars as u64).saturating_mul(256)
}

/// What of a row too long to read is kept, to quote in its message.
const QUOTED_BYTES: usize = 4 * crate::diagnostics::QUOTED_CHARS;

/// A limit a feed passed while it was read.
#[derive(Debug, thiserror::Error)]
enum Overflow {
    #[error("feed is larger than limits.feed_file_bytes ({max} bytes)")]
    File { max: u64 },
    #[error(
        "row is longer than {max} bytes (256 × limits.field_chars): \
         the rest of the feed cannot be read row by row"
    )]
    Row { line: usize, max: u64 },
}

impl From<Overflow> for std::io::Error {
    fn from(o: Overflow) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, o)
    }
}

/// A feed's bytes, counted as they are read so that memory stays bounded
/// whatever the file holds: the whole file up to `max` bytes, and for CSV
/// each record up to its limit (the csv crate would buffer a record of any
/// length).
struct Bounded<R> {
    inner: R,
    read: u64,
    max: u64,
    row: Option<RowScan>,
    overflow: Option<Overflow>,
}

/// Where a CSV record starts and how long it is so far.
struct RowScan {
    quoted: bool,
    len: u64,
    max: u64,
    line: usize,
    start: usize,
}

impl RowScan {
    fn new(max: u64) -> Self {
        RowScan {
            quoted: false,
            len: 0,
            max,
            line: 1,
            start: 1,
        }
    }

    fn scan(&mut self, bytes: &[u8]) -> Option<Overflow> {
        // Only quotes and line ends change anything: the bytes between are
        // counted a run at a time.
        let mut from = 0;
        for at in memchr::memchr2_iter(b'"', b'\n', bytes) {
            self.len = self.len.saturating_add((at - from) as u64);
            if self.len > self.max {
                return Some(self.overflow());
            }
            from = at + 1;
            if bytes[at] == b'"' {
                self.quoted = !self.quoted;
            } else {
                self.line += 1;
                if !self.quoted {
                    self.len = 0;
                    self.start = self.line;
                    continue;
                }
            }
            self.len = self.len.saturating_add(1);
            if self.len > self.max {
                return Some(self.overflow());
            }
        }
        self.len = self.len.saturating_add((bytes.len() - from) as u64);
        (self.len > self.max).then(|| self.overflow())
    }

    fn overflow(&self) -> Overflow {
        Overflow::Row {
            line: self.start,
            max: self.max,
        }
    }
}

impl<R: BufRead> std::io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Bounded<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if let Some(overflow) = self.overflow.take() {
            return Err(overflow.into());
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        // The bytes consumed are still in the buffer: this returns them, reading nothing.
        if let (Some(row), Ok(bytes)) = (&mut self.row, self.inner.fill_buf()) {
            let end = n.min(bytes.len());
            if let Some(overflow) = row.scan(&bytes[..end]) {
                self.overflow = Some(overflow);
            }
        }
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.max {
            self.overflow = Some(Overflow::File { max: self.max });
        }
        self.inner.consume(n);
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
    use crate::model;

    pub(super) fn load(name: &str, content: &str, feed: impl FnOnce(&mut FeedConfig)) -> FeedLoad {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), content).unwrap();
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let mut f = FeedConfig::new(name.into());
        feed(&mut f);
        load_feeds(&config, &[f], model::tests::date("2026-03-01"))
    }

    /// Asserts that the first problem of the load reads `expected` after the
    /// feed's folder (`a.csv:3: amount: …`), or contains it.
    #[track_caller]
    pub(super) fn assert_first_problem(l: &FeedLoad, expected: &str) {
        let first = l.problems.0.first().map(ToString::to_string);
        assert!(
            first.is_some_and(|p| p.contains(expected)),
            "{expected:?} is not the first of {:?}",
            l.problems
        );
    }

    pub(super) const HEADER: &str = "number,customer_id,customer_name,email,issue_date,due_date,amount,amount_paid,currency,status,tags,region\n";

    /// A JSON feed of one invoice with these extra members (`"key": value, …`).
    pub(super) fn json_invoice(members: &str) -> String {
        format!(
            r#"{{"number":"J1","customer_id":"C","customer_name":"N","issue_date":"2026-01-01","due_date":"2026-01-31",{members}}}"#
        )
    }

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
        let l = load_feeds(
            &config,
            &[FeedConfig::new("nope.csv".into())],
            model::tests::date("2026-03-01"),
        );
        assert_first_problem(&l, "nope.csv: cannot read feed");
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
    fn bad_rows_of_crlf_feeds_and_after_blank_lines_are_located_by_physical_line() {
        let header = "number,customer_id,customer_name,issue_date,due_date,amount";
        let good = "F1,C1,A,2026-01-01,2026-01-31,1";
        let bad = "F2,C1,A,2026-01-01,2026-01-31,abc";
        for (name, content) in [
            ("crlf.csv", format!("{header}\r\n{good}\r\n{bad}\r\n")),
            ("blank.csv", format!("{header}\n\n{good}\n\n\n{bad}\n")),
            ("mixed.csv", format!("{header}\r\n\r\n{good}\n\r\n{bad}")),
        ] {
            let l = load(name, &content, |_| {});
            let line_of =
                |row: &str| content[..content.find(row).unwrap()].matches('\n').count() + 1;
            let bad_line = line_of(bad);
            assert_eq!(l.invoices[0].origin.line, line_of(good), "{name}");
            assert_first_problem(&l, &format!("{name}:{bad_line}: amount:"));
        }
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
}
