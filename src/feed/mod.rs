//! Reading invoices from CSV, JSON and JSON Lines feeds into the model.
//!
//! A feed is read by a pipeline of threads, because a million rows take one
//! core about a second to convert:
//!
//! - one thread reads the file and hands it on in batches: runs of whole CSV
//!   records (it only finds where records end: [`RecordEnds`]), JSON Lines
//!   lines, elements of a JSON array;
//! - one thread per core converts batches into invoices (parsing the CSV
//!   records, checking every field, interning shared text), in any order;
//!   the thread that converts the next batch in the feed's order keeps it,
//!   and those converted ahead of it, in order;
//! - once all rows are in, duplicate numbers are found by one sort, and the
//!   customers' rows are checked with a thread per core.
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
use crate::model::{
    self, Invoice, InvoiceField, LedgerIndex, NumberHasher, NumberIndex, Origin, Shared,
};

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
    number: u32,
}

/// Reads every feed of the config on `today` (in the config's time zone:
/// it bounds the plausible dates). A feed that cannot be read is one error
/// naming it; a bad row is one problem and is skipped; the rest goes on.
pub fn load_feeds(config: &Config, feeds: &[FeedConfig], today: NaiveDate) -> FeedLoad {
    load_feeds_in_chunks(config, feeds, today, CHUNK_BYTES)
}

/// [`load_feeds`], CSV records handed on `chunk_bytes` at a time.
fn load_feeds_in_chunks(
    config: &Config,
    feeds: &[FeedConfig],
    today: NaiveDate,
    chunk_bytes: usize,
) -> FeedLoad {
    let mut load = Kept::default();
    // About one invoice per 100 bytes of feed: reserve once rather than grow.
    let size: u64 = feeds
        .iter()
        .filter_map(|f| std::fs::metadata(config.path(&f.path)).ok())
        .map(|m| m.len())
        .sum();
    let estimate = (size / 100) as usize;
    load.invoices.reserve(estimate);
    load.keys.reserve(estimate);
    let interner = Mutex::new(Interner::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let numbers = NumberHasher::default();
    // Kept from feed to feed: what each thread has interned and validated is still good.
    let mut converters: Vec<Converter> = (0..threads)
        .map(|_| Converter::new(&interner, numbers.clone()))
        .collect();
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
                let problem =
                    Problem::error(Location::file(&path), format!("cannot read feed: {e}"));
                load.unreadable(path, problem);
                continue;
            }
        };
        let parser = match FeedParser::new(feed, config, Arc::new(path.clone()), today) {
            Ok(p) => FeedParser { chunk_bytes, ..p },
            Err(p) => {
                load.unreadable(path, p);
                continue;
            }
        };
        if parser.feed.format() == FeedFormat::Json {
            load.json_arrays.push(parser.file.clone());
        }
        let csv = parser.feed.format() == FeedFormat::Csv;
        let mut input = Bounded {
            // Smaller only where tests hand on records a few bytes at a time.
            inner: BufReader::with_capacity(chunk_bytes.clamp(1, 1 << 16), file),
            read: 0,
            max: max_bytes,
            // JSON escapes its quotes: JSON Lines are bounded line by line instead.
            row: csv.then(|| RowScan::new(parser.row_bytes)),
            overflow: None,
        };
        let started = std::time::Instant::now();
        let rows_before = load.invoices.len() + load.bad_rows;
        let mut accept = |row: Converted| load.keep(row);
        let (parser, converters) = (&parser, &mut converters[..]);
        let result = skip_bom(&mut input)
            .map_err(|e| parser.io_problem(e))
            .and_then(|()| match parser.feed.format() {
                FeedFormat::Csv => parser.csv(input, converters, &mut accept),
                FeedFormat::Json => pipeline(
                    |feeder| parser.read_json_array(input, feeder),
                    |element, converter, out| out.extend(parser.json_element(element, converter)),
                    converters,
                    &mut accept,
                )
                .unwrap_or_else(|Crashed| Err(parser.crashed())),
                FeedFormat::Jsonl => pipeline(
                    |feeder| parser.read_json_lines(input, feeder),
                    |line, converter, out| out.extend(parser.json_line(line, converter)),
                    converters,
                    &mut accept,
                )
                .unwrap_or_else(|Crashed| Err(parser.crashed())),
            });
        tracing::debug!(
            feed = %path.display(),
            rows = load.invoices.len() + load.bad_rows - rows_before,
            elapsed = ?started.elapsed(),
            "feed converted"
        );
        if let Err(p) = result {
            load.unreadable(path, p);
        }
    }
    let extra_columns = converters.iter().flat_map(|c| &c.extra_columns);
    let started = std::time::Instant::now();
    let load = load.finish(numbers, extra_columns);
    tracing::debug!(elapsed = ?started.elapsed(), "numbers and customers checked");
    load
}

/// The rows of the feeds as the pipeline keeps them, in the feeds' order:
/// whether their numbers repeat and their customers' rows agree is found
/// once all are in ([`Kept::finish`]), so that keeping a row, which one
/// thread does for every row, only moves it.
#[derive(Default)]
struct Kept {
    invoices: Vec<Invoice>,
    keys: Vec<Keys>,
    /// The feeds' problems so far, each after how many invoices it comes.
    problems: Vec<(usize, Problem)>,
    bad_rows: usize,
    unreadable: Vec<PathBuf>,
    /// The feeds whose rows are located by element index, not line.
    json_arrays: Vec<Arc<PathBuf>>,
}

/// Where an invoice's number was seen first, while customers are checked:
/// known from the sorted index, unless a row is refused for its customer's
/// total, which makes a later row of its number the first kept one.
enum Firsts<'i> {
    /// Each repeated row with its number's first row, in the rows' order.
    Sorted(&'i [(usize, usize)]),
    Kept(HashMap<&'i str, usize>),
}

impl Kept {
    fn keep(&mut self, row: Converted) {
        match row {
            Ok((invoice, keys)) => {
                self.invoices.push(invoice);
                self.keys.push(keys);
            }
            Err(problems) => {
                self.bad_rows += 1;
                let at = self.invoices.len();
                self.problems.extend(problems.into_iter().map(|p| (at, p)));
            }
        }
    }

    fn unreadable(&mut self, path: PathBuf, problem: Problem) {
        self.problems.push((self.invoices.len(), problem));
        self.unreadable.push(path);
    }

    /// Where an invoice's row is (its origin), as its feed locates rows.
    fn location(&self, origin: &Origin) -> Location {
        match self.json_arrays.iter().any(|f| **f == *origin.file) {
            true => Location {
                file: origin.file.to_path_buf(),
                line: None,
                col: None,
                index: Some(origin.line),
            },
            false => Location::line(&origin.file, origin.line),
        }
    }

    /// The invoices kept: not those whose number an earlier kept row has,
    /// nor those whose customer's total would not be exact (bad rows then),
    /// with a warning when a customer's rows disagree; and every problem in
    /// the order of the rows, as reading them one by one would give.
    /// `extra_columns` are those of the invoices converted.
    fn finish<'c>(
        self,
        numbers: NumberHasher,
        extra_columns: impl Iterator<Item = &'c Shared>,
    ) -> FeedLoad {
        let parts = model::threads_for(self.invoices.len());
        self.finish_in(numbers, extra_columns, parts)
    }

    /// [`Kept::finish`], the customers checked by `parts` threads.
    fn finish_in<'c>(
        mut self,
        numbers: NumberHasher,
        extra_columns: impl Iterator<Item = &'c Shared>,
        parts: usize,
    ) -> FeedLoad {
        // The index is sorted on one core while the customers are checked on
        // the other, as if no number repeated: they almost never do, and
        // when they do the customers are checked again knowing which.
        let ((by_number, duplicates), mut checked) = std::thread::scope(|scope| {
            let sorting = scope.spawn(|| {
                let hashes = self.keys.iter().map(|k| k.number).enumerate();
                NumberIndex::build(&self.invoices, hashes, &numbers)
            });
            let checked = self.customers(Firsts::Sorted(&[]), parts);
            let sorted = sorting
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (sorted, checked)
        });
        if !duplicates.is_empty() {
            checked = self.customers(Firsts::Sorted(&duplicates), parts);
        }
        if checked.overflowed {
            checked = self.customers(Firsts::Kept(HashMap::new()), 1);
        }
        let mut load = FeedLoad {
            bad_rows: self.bad_rows + checked.refused.len(),
            unreadable: std::mem::take(&mut self.unreadable),
            ..FeedLoad::default()
        };
        // Both in the order of the rows: merged, feed problems first at a tie
        // (a bad row comes before the invoice after it).
        let mut verdicts = checked.problems.into_iter().peekable();
        for (at, problem) in self.problems {
            while let Some((_, p)) = verdicts.next_if(|(i, _)| *i < at) {
                load.problems.push(p);
            }
            load.problems.push(problem);
        }
        load.problems.0.extend(verdicts.map(|(_, p)| p));
        let mut customer_of = checked.customer_of;
        if checked.refused.is_empty() {
            let mut names: Vec<String> = extra_columns.map(|c| c.to_string()).collect();
            names.sort();
            names.dedup();
            load.invoices = self.invoices;
            load.index = LedgerIndex {
                by_number,
                customer_of,
                // Only while every invoice converted is kept: a refused one
                // may have been the only one with a column.
                extra_columns: Some(names),
            };
            return load;
        }
        let mut refused = checked.refused.iter().peekable();
        let mut i = 0;
        self.invoices.retain(|_| {
            i += 1;
            refused.next_if_eq(&&(i - 1)).is_none()
        });
        customer_of.retain(|&c| c != u32::MAX);
        let hashes = self.invoices.iter().map(|inv| numbers.hash(&inv.number));
        let (by_number, _) = NumberIndex::build(&self.invoices, hashes.enumerate(), &numbers);
        load.invoices = self.invoices;
        load.index = LedgerIndex {
            by_number,
            customer_of,
            extra_columns: None,
        };
        load
    }

    /// Checks each invoice's customer in the order of the rows: the
    /// problems, each with its invoice, the invoices refused, and each
    /// invoice's customer (`u32::MAX` for a refused one). Past a few
    /// thousand rows, a thread per core checks its share of the customers:
    /// the rows of one customer are all checked by one thread, in order.
    fn customers<'i>(&'i self, firsts: Firsts<'i>, parts: usize) -> Checked {
        let checked: Vec<CustomersPart> = match firsts {
            // With Kept, which row of a number comes first depends on every
            // customer's rows: one thread checks them all.
            Firsts::Sorted(duplicates) if parts > 1 => model::in_parts(0..parts, |part| {
                self.customers_part(Firsts::Sorted(duplicates), part, parts)
            }),
            firsts => vec![self.customers_part(firsts, 0, 1)],
        };
        let mut all = Checked::default();
        let mut firsts: Vec<(usize, u32)> = Vec::new();
        for part in checked {
            all.problems.extend(part.problems);
            all.refused.extend(part.refused);
            all.overflowed |= part.overflowed;
            firsts.extend(part.firsts);
        }
        // Stable: an invoice's problems stay in their order.
        all.problems.sort_by_key(|&(invoice, _)| invoice);
        all.refused.sort_unstable();
        // Customers are numbered in the order of their first kept rows.
        firsts.sort_unstable();
        let mut number = Vec::new();
        for (index, &(_, customer)) in firsts.iter().enumerate() {
            let customer = customer as usize;
            if number.len() <= customer {
                number.resize(customer.saturating_add(1), u32::MAX);
            }
            number[customer] = index as u32;
        }
        let mut refused = all.refused.iter().peekable();
        all.customer_of = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, keys)| match refused.next_if_eq(&&i) {
                Some(_) => u32::MAX,
                None => number[keys.customer as usize],
            })
            .collect();
        all
    }

    /// [`Kept::customers`] for the customers whose number is `part` modulo `parts`.
    fn customers_part<'i>(
        &'i self,
        mut firsts: Firsts<'i>,
        part: usize,
        parts: usize,
    ) -> CustomersPart {
        let mut customers = Customers::default();
        let mut checked = CustomersPart::default();
        let mut duplicate_at = 0;
        for (i, (invoice, keys)) in model::read_ahead(&self.invoices)
            .zip(&self.keys)
            .enumerate()
        {
            // Whom a row this part checks next bills, and what the part has
            // of its customer, are a wait on memory each: asked for first.
            if let Some((ahead, ahead_keys)) = model::near(&self.invoices, &self.keys, i)
                && ahead_keys.customer as usize % parts == part
            {
                model::prefetch(Arc::as_ptr(&ahead.bill_to));
                customers.prefetch(ahead_keys.customer / parts as u32);
            }
            if keys.customer as usize % parts != part {
                continue;
            }
            let locate = |origin: &Origin| self.location(origin);
            // The part's customers are every `parts`-th: numbered apart by `parts`.
            let customer = keys.customer / parts as u32;
            let total = match customers.total_with(customer, invoice, &locate) {
                Ok(total) => total,
                Err(problem) => {
                    checked.overflowed = true;
                    checked.refuse(i, problem);
                    continue;
                }
            };
            let first = match &mut firsts {
                Firsts::Sorted(duplicates) => {
                    // Past those of the other parts' rows.
                    while duplicates.get(duplicate_at).is_some_and(|&(d, _)| d < i) {
                        duplicate_at += 1;
                    }
                    duplicates
                        .get(duplicate_at)
                        .filter(|&&(d, _)| d == i)
                        .map(|&(_, f)| f)
                }
                Firsts::Kept(kept) => match kept.get(&*invoice.number) {
                    Some(&first) => Some(first),
                    None => {
                        kept.insert(&invoice.number, i);
                        None
                    }
                },
            };
            if let Some(first) = first {
                checked.refuse(
                    i,
                    duplicate(invoice, &self.invoices[first], locate(&invoice.origin)),
                );
                continue;
            }
            // The part's customers are numbered in the order of their first rows.
            let (index, warning) = customers.keep(customer, invoice, total, &locate);
            if index as usize == checked.firsts.len() {
                checked.firsts.push((i, keys.customer));
            }
            checked.problems.extend(warning.map(|w| (i, w)));
        }
        checked
    }
}

/// The bad row an invoice makes whose number an earlier one has.
fn duplicate(invoice: &Invoice, first: &Invoice, at: Location) -> Problem {
    Problem::error(
        at,
        format!(
            "number: duplicate invoice number {} (first seen at {}:{})",
            quote(&invoice.number),
            first.origin.file.display(),
            first.origin.line
        ),
    )
}

/// What checking a share of the invoices' customers found: as [`Checked`],
/// with each customer's first kept row rather than each row's customer.
#[derive(Default)]
struct CustomersPart {
    problems: Vec<(usize, Problem)>,
    refused: Vec<usize>,
    /// Each customer's first kept row, with the customer's number.
    firsts: Vec<(usize, u32)>,
    overflowed: bool,
}

impl CustomersPart {
    fn refuse(&mut self, invoice: usize, problem: Problem) {
        self.problems.push((invoice, problem));
        self.refused.push(invoice);
    }
}

/// What checking the invoices' customers found.
#[derive(Default)]
struct Checked {
    problems: Vec<(usize, Problem)>,
    refused: Vec<usize>,
    customer_of: Vec<u32>,
    /// A customer's total would not have been exact.
    overflowed: bool,
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
    let mut load = Kept::default();
    let feed = FeedConfig {
        format: Some(FeedFormat::Jsonl),
        ..FeedConfig::new(file.to_path_buf())
    };
    let parser = match FeedParser::new(&feed, config, Arc::new(file.to_path_buf()), today) {
        Ok(parser) => parser,
        Err(problem) => {
            let mut load = FeedLoad::default();
            load.problems.push(problem);
            return load;
        }
    };
    let interner = Mutex::new(Interner::default());
    let numbers = NumberHasher::default();
    let mut converter = Converter::new(&interner, numbers.clone());
    for (line, object) in rows {
        load.keep(parser.json_row(Value::Object(object), line, &mut converter));
    }
    load.finish(numbers, converter.extra_columns.iter())
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

/// Reads the records of a [`CsvChunk`] with `csv_core` straight from its
/// bytes, each with the line it starts on. The csv crate's reader would copy
/// the bytes into a buffer of its own, check a record's text field by
/// field, and locate a record where the one before it ended (before the
/// `\n` of a CRLF, before the blank lines it skips); this reader locates it
/// at its first byte.
///
/// A chunk without a quote or a `\r` (most of them) is read as
/// [`PlainLines`] instead.
struct ChunkRecords<'c> {
    core: &'c mut csv_core::Reader,
    bytes: &'c [u8],
    /// The next byte to read.
    at: usize,
    /// The line of the chunk's first byte.
    line: u64,
    plain: Option<PlainLines<'c>>,
}

impl<'c> ChunkRecords<'c> {
    /// The records of `bytes`, whose first byte is on `line`, split at
    /// `delimiter` and read by `core` (reset here: a chunk starts where a
    /// record starts) unless they are plain lines.
    fn new(core: &'c mut csv_core::Reader, delimiter: u8, bytes: &'c [u8], line: u64) -> Self {
        core.reset();
        ChunkRecords {
            core,
            bytes,
            at: 0,
            line,
            plain: PlainLines::of(bytes, delimiter, line),
        }
    }

    /// Reads the next record into `row`: false when there is none.
    fn read(&mut self, row: &mut CsvRow) -> bool {
        match &mut self.plain {
            Some(lines) => lines.read(row),
            None => self.read_record(row),
        }
    }

    /// [`ChunkRecords::read`] with `csv_core`.
    fn read_record(&mut self, row: &mut CsvRow) -> bool {
        use csv_core::ReadRecordResult;
        row.separated = false;
        // `text` lends its buffer, grown as needed, and gets it back as
        // text once checked.
        let mut out = std::mem::take(&mut row.text).into_bytes();
        out.resize(out.capacity().clamp(256, 2 * out.len().max(128)), 0);
        if row.ends.len() < 16 {
            row.ends.resize(16, 0);
        }
        // The reader has counted the lines it read; the line ends it skips
        // before the record are counted here, as it has not read them yet.
        let skipped = self.bytes[self.at..]
            .iter()
            .take_while(|&&b| matches!(b, b'\r' | b'\n'))
            .filter(|&&b| b == b'\n')
            .count() as u64;
        row.line = self.line - 1 + self.core.line() + skipped;
        let (mut wrote, mut fields) = (0, 0);
        loop {
            // Reading empty input tells the reader that the chunk ends.
            let input = &self.bytes[self.at..];
            let (result, read, out_n, ends_n) =
                self.core
                    .read_record(input, &mut out[wrote..], &mut row.ends[fields..]);
            self.at += read;
            wrote += out_n;
            fields += ends_n;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => out.resize(2 * out.len(), 0),
                ReadRecordResult::OutputEndsFull => row.ends.resize(2 * row.ends.len(), 0),
                ReadRecordResult::Record => break,
                ReadRecordResult::End => {
                    out.clear();
                    row.text = String::from_utf8(out).unwrap_or_default();
                    return false;
                }
            }
        }
        row.fields = fields;
        out.truncate(wrote);
        row.set_text(out);
        true
    }
}

/// Bytes of CSV records the reading thread hands on at a time (the records
/// of a [`CsvChunk`]): as [`BATCH`], about a thousand rows.
const CHUNK_BYTES: usize = 1 << 17;
/// How many lines end in these bytes.
fn newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Where CSV records end, found as the csv reader finds them but without
/// parsing them, so that the reading thread can hand on whole records: a
/// line end outside a quoted value ends a record (or a blank line), and a
/// quote opens a quoted value only at the start of a value (elsewhere it is
/// a character of the value). With the csv crate's settings relance uses:
/// `"` quotes, `""` is a quote inside a quoted value, no escape character
/// and no comments; `\r`, `\n` and `\r\n` end lines.
#[derive(Clone, Copy)]
struct RecordEnds {
    delimiter: u8,
    state: Scan,
    /// The last byte scanned; none at the start of the input.
    last: Option<u8>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Scan {
    Unquoted,
    Quoted,
    /// After a quote inside a quoted value: the end of the value, or the
    /// first half of `""`.
    QuoteInQuoted,
    /// After a `\r` that ends a line: a `\n` may follow, ending the same line.
    CarriageReturn,
}

impl RecordEnds {
    fn new(delimiter: u8) -> Self {
        RecordEnds {
            delimiter,
            state: Scan::Unquoted,
            last: None,
        }
    }

    /// Scans the next bytes of the input, calling `end` with each place in
    /// them where a record (or a blank line) has ended and another may start.
    fn scan(&mut self, bytes: &[u8], mut end: impl FnMut(usize)) {
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                Scan::Quoted => match memchr::memchr(b'"', &bytes[at..]) {
                    Some(i) => {
                        at += i + 1;
                        self.state = Scan::QuoteInQuoted;
                    }
                    None => at = bytes.len(),
                },
                Scan::QuoteInQuoted if bytes[at] == b'"' => {
                    self.state = Scan::Quoted;
                    at += 1;
                }
                // The byte after is read as outside quotes.
                Scan::QuoteInQuoted => self.state = Scan::Unquoted,
                Scan::CarriageReturn => {
                    self.state = Scan::Unquoted;
                    if bytes[at] != b'\n' {
                        end(at);
                    }
                }
                Scan::Unquoted => match memchr::memchr3(b'"', b'\n', b'\r', &bytes[at..]) {
                    None => at = bytes.len(),
                    Some(i) => {
                        let found = at + i;
                        match bytes[found] {
                            b'"' => {
                                let before = match found {
                                    0 => self.last,
                                    _ => Some(bytes[found - 1]),
                                };
                                if before.is_none_or(|b| {
                                    matches!(b, b'\n' | b'\r') || b == self.delimiter
                                }) {
                                    self.state = Scan::Quoted;
                                }
                            }
                            b'\n' => end(found + 1),
                            _ => self.state = Scan::CarriageReturn,
                        }
                        at = found + 1;
                    }
                },
            }
        }
        if let Some(&last) = bytes.last() {
            self.last = Some(last);
        }
    }
}

/// A chunk of CSV records with no quote and no `\r`, read without
/// `csv_core`, whose state machine takes a byte at a time: in such bytes
/// every line is a record (or a blank line, skipped) and every delimiter
/// ends a field, which is all `csv_core` makes of them (a test compares
/// random plain chunks with the csv crate's reader). A record's fields are
/// found with [`Marks`] and its line copied as it is, delimiters included
/// ([`CsvRow::separated`]).
struct PlainLines<'c> {
    bytes: &'c [u8],
    /// The next byte to read, and its line.
    at: usize,
    line: u64,
    /// The chunk's delimiters and line ends, in order.
    marks: Marks<'c>,
    delimiter: u8,
}

impl<'c> PlainLines<'c> {
    /// The plain lines of `bytes`, whose first byte is on `line`; none
    /// when they hold a quote or a `\r`, or when `delimiter` may be part
    /// of a character (beyond ASCII: `csv_core`'s fields would then show a
    /// character cut in two, which a line's text hides) or of the quoting.
    fn of(bytes: &'c [u8], delimiter: u8, line: u64) -> Option<Self> {
        let plain = delimiter.is_ascii()
            && !matches!(delimiter, b'"' | b'\r' | b'\n')
            && memchr::memchr2(b'"', b'\r', bytes).is_none();
        plain.then(|| PlainLines {
            bytes,
            at: 0,
            line,
            marks: Marks::new(bytes, delimiter, b'\n'),
            delimiter,
        })
    }

    /// [`ChunkRecords::read`] for plain lines.
    fn read(&mut self, row: &mut CsvRow) -> bool {
        let mut end_field = |fields: &mut usize, end: usize| {
            match row.ends.get_mut(*fields) {
                Some(slot) => *slot = end,
                None => row.ends.push(end),
            }
            *fields += 1;
        };
        loop {
            if self.at >= self.bytes.len() {
                return false;
            }
            let start = self.at;
            let mut fields = 0;
            // The record's delimiters, up to its line end (or the chunk's).
            let end = loop {
                let end = self.marks.next().unwrap_or(self.bytes.len());
                if self.bytes.get(end) != Some(&self.delimiter) {
                    break end;
                }
                end_field(&mut fields, end - start);
            };
            self.at = end + 1;
            if end == start {
                // A blank line, skipped as `csv_core` skips it.
                self.line += 1;
                continue;
            }
            end_field(&mut fields, end - start);
            row.fields = fields;
            row.line = self.line;
            row.separated = true;
            self.line += 1;
            let mut text = std::mem::take(&mut row.text).into_bytes();
            text.clear();
            text.extend_from_slice(&self.bytes[start..end]);
            row.set_text(text);
            return true;
        }
    }
}

/// Where two bytes are in a text, in order: a plain chunk's delimiters and
/// line ends. `memchr2_iter` costs about thirty instructions a place found,
/// most of what reading a plain line costs, as a line has a place every
/// seven bytes; here sixty-four bytes at a time are compared at once into
/// a mask of bits, and each place found costs a few.
struct Marks<'b> {
    bytes: &'b [u8],
    /// Where the block after the one in `mask` starts.
    next: usize,
    /// The places not yet given in the block before `next`, one bit each.
    mask: u64,
    needles: [u8; 2],
}

/// The bytes [`Marks`] compares at a time: the bits of its mask.
const MARKS_BLOCK: usize = 64;

impl<'b> Marks<'b> {
    fn new(bytes: &'b [u8], one: u8, other: u8) -> Self {
        Marks {
            bytes,
            next: 0,
            mask: 0,
            needles: [one, other],
        }
    }
}

impl Iterator for Marks<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            let block = self.bytes.get(self.next..)?;
            if block.is_empty() {
                return None;
            }
            let [one, other] = self.needles;
            self.mask = match block.first_chunk::<MARKS_BLOCK>() {
                Some(whole) => block_mask(whole, one, other),
                None => bytewise_mask(block, one, other),
            };
            self.next += MARKS_BLOCK;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.next - MARKS_BLOCK + bit)
    }
}

/// The places of `one` and `other` in a whole block, one bit each, sixteen bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn block_mask(block: &[u8; MARKS_BLOCK], one: u8, other: u8) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut mask = 0;
    for (i, lanes) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is enabled for this target (the x86_64 baseline),
        // and the load reads the sixteen bytes of `lanes`, unaligned.
        let found = unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast());
            let one = _mm_cmpeq_epi8(v, _mm_set1_epi8(one as i8));
            let other = _mm_cmpeq_epi8(v, _mm_set1_epi8(other as i8));
            _mm_movemask_epi8(_mm_or_si128(one, other))
        };
        mask |= u64::from(found as u16) << (16 * i);
    }
    mask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn block_mask(block: &[u8; MARKS_BLOCK], one: u8, other: u8) -> u64 {
    bytewise_mask(block, one, other)
}

/// [`block_mask`] a byte at a time, also of the last block, which may be shorter.
fn bytewise_mask(block: &[u8], one: u8, other: u8) -> u64 {
    block
        .iter()
        .take(MARKS_BLOCK)
        .enumerate()
        .fold(0, |mask, (i, &b)| {
            mask | (u64::from(b == one || b == other) << i)
        })
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
/// on one thread per converter (a row of the reading thread's may give any
/// number of converted ones), and hands each converted row to `accept`, in
/// the feed's order. `Err` when a thread crashed.
///
/// The thread that converts the next batch in the feed's order keeps it
/// (and any converted ahead of it) while the others go on converting: its
/// rows are still in that core's cache, where a thread keeping every row
/// would wait on each one coming from another core.
fn pipeline<R: Default + Send>(
    read: impl FnOnce(&mut Feeder<R>) -> Result<(), Problem> + Send,
    convert: impl Fn(&mut R, &mut Converter, &mut Vec<Converted>) + Sync,
    converters: &mut [Converter],
    accept: &mut (dyn FnMut(Converted) + Send),
) -> Result<Result<(), Problem>, Crashed> {
    let (full, to_convert) = std::sync::mpsc::channel::<Batch<R>>();
    let (kept, empty) = std::sync::mpsc::channel::<Batch<R>>();
    let convert = &convert;
    let keeper = Mutex::new(Keeper {
        next: 0,
        waiting: BTreeMap::new(),
        accept,
        kept: Some(kept),
        crashed: false,
    });
    let keeper = &keeper;
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
                let to_convert = to_convert.clone();
                scope.spawn(move || {
                    loop {
                        // The lock is held only to take a batch; converting runs in parallel.
                        let next = to_convert
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        let Ok(mut batch) = next else { break };
                        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let Batch {
                                rows,
                                len,
                                converted,
                                ..
                            } = &mut batch;
                            for row in &mut rows[..*len] {
                                convert(row, converter, converted);
                            }
                        }));
                        if done.is_err() || !Keeper::keep(keeper, batch) {
                            Keeper::crash(keeper);
                            return Err(Crashed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop(to_convert);
        let mut crashed = false;
        for thread in converting {
            crashed |= !matches!(thread.join(), Ok(Ok(())));
        }
        crashed |= keeper.lock().map_or(true, |k| k.crashed);
        match reading.join() {
            Ok(result) if !crashed => Ok(result),
            _ => Err(Crashed),
        }
    })
}

/// The batches converted ahead of the next one in the feed's order, and
/// where their rows go once it is converted.
struct Keeper<'a, R> {
    next: usize,
    waiting: BTreeMap<usize, Batch<R>>,
    accept: &'a mut (dyn FnMut(Converted) + Send),
    /// Kept batches go back to the reading thread to be filled again; gone
    /// once a thread crashed, so that the reading thread never waits for one.
    kept: Option<Sender<Batch<R>>>,
    crashed: bool,
}

impl<R> Keeper<'_, R> {
    /// Keeps a converted batch and every one waiting for it, in order; false
    /// when keeping crashed (or another thread did).
    fn keep(keeper: &Mutex<Self>, batch: Batch<R>) -> bool {
        let mut guard = keeper.lock().unwrap_or_else(PoisonError::into_inner);
        let keeper = &mut *guard;
        if keeper.crashed {
            return false;
        }
        keeper.waiting.insert(batch.seq, batch);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while let Some(mut batch) = keeper.waiting.remove(&keeper.next) {
                batch.converted.drain(..).for_each(&mut *keeper.accept);
                keeper.next += 1;
                if let Some(kept) = &keeper.kept {
                    let _ = kept.send(batch);
                }
            }
        }))
        .is_ok()
    }

    /// Stops the pipeline: no batch is kept any more, and the reading thread
    /// makes new ones rather than wait for kept ones.
    fn crash(keeper: &Mutex<Self>) {
        let mut keeper = keeper.lock().unwrap_or_else(PoisonError::into_inner);
        keeper.crashed = true;
        keeper.kept = None;
        keeper.waiting.clear();
    }
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
    /// How many bytes of CSV records are handed on at a time ([`CHUNK_BYTES`]).
    chunk_bytes: usize,
}

/// Whole CSV records as the reading thread hands them on, to be parsed by a converting thread.
#[derive(Default)]
struct CsvChunk {
    bytes: Vec<u8>,
    /// The line of its first byte.
    line: u64,
    /// The records being converted, a few at a time.
    rows: Vec<CsvRow>,
    /// What parses them, built once per chunk buffer.
    reader: Option<csv_core::Reader>,
}

/// How many CSV records a converting thread reads before converting them.
const ROWS_AHEAD: usize = 8;

/// A CSV record being converted (its buffers are reused from record to record).
#[derive(Default)]
struct CsvRow {
    /// The fields' text one after the other (with the delimiters between
    /// them when `separated`); empty when `not_utf8`.
    text: String,
    /// Where each field ends in `text` (the first `fields` of them).
    ends: Vec<usize>,
    fields: usize,
    /// The line the record starts on.
    line: u64,
    /// The first field that is not UTF-8 text, if any: the record is
    /// then a bad row ([`FeedParser::not_utf8`]).
    not_utf8: Option<usize>,
    /// Whether `text` holds the delimiters between the fields (a plain
    /// line's bytes as they are), each at the end of the field before it.
    separated: bool,
}

impl CsvRow {
    fn len(&self) -> usize {
        self.fields
    }

    /// Where `field` is in `text`.
    fn span(&self, field: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends[..self.fields].get(field)?;
        let start = match field {
            0 => 0,
            _ => self.ends[field - 1] + usize::from(self.separated),
        };
        Some(start..end)
    }

    fn get(&self, field: usize) -> Option<&str> {
        self.text.get(self.span(field)?)
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.fields).map_while(|field| self.get(field))
    }

    /// Takes the record's bytes (its `fields` already found) as its text,
    /// or finds the first field that is not UTF-8 text. A field boundary
    /// `csv_core` found may cut a character in two, valid text once the
    /// halves are side by side; a plain line's boundaries are its ASCII
    /// delimiters, which cut none.
    fn set_text(&mut self, bytes: Vec<u8>) {
        (self.text, self.not_utf8) = match String::from_utf8(bytes) {
            Ok(text)
                if self.separated
                    || self.ends[..self.fields]
                        .iter()
                        .all(|&end| text.is_char_boundary(end)) =>
            {
                (text, None)
            }
            Ok(text) => (String::new(), self.first_not_utf8(text.as_bytes())),
            Err(e) => (String::new(), self.first_not_utf8(e.as_bytes())),
        };
    }

    /// The first of the fields in `bytes` (where [`CsvRow::span`] says
    /// they are) that is not UTF-8, as the csv crate finds it.
    fn first_not_utf8(&self, bytes: &[u8]) -> Option<usize> {
        (0..self.fields).position(|field| {
            self.span(field)
                .and_then(|span| bytes.get(span))
                .is_some_and(|field| std::str::from_utf8(field).is_err())
        })
    }
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
            chunk_bytes: CHUNK_BYTES,
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

    /// Reads the header here, then the records through the [`pipeline`]:
    /// the reading thread only finds where records end ([`RecordEnds`]) and
    /// hands on runs of whole records, which each converting thread parses
    /// itself, so that a record's bytes are read by the core converting it.
    fn csv(
        &self,
        mut input: impl BufRead + Send,
        converters: &mut [Converter],
        accept: &mut (dyn FnMut(Converted) + Send),
    ) -> Result<(), Problem> {
        let delimiter = match self.feed.delimiter {
            Some(d) => d as u8,
            None => detect_delimiter(input.fill_buf().map_err(|e| self.read_error(e))?),
        };
        let header_problem = |e: &dyn std::fmt::Display| {
            Problem::error(
                Location::line(&self.file, 1),
                format!("cannot read the header row: {e}"),
            )
        };
        let mut ends = RecordEnds::new(delimiter);
        // The header is the first record that is not a blank line: read up
        // to its end, and where the last record end read after it is.
        let mut bytes: Vec<u8> = Vec::new();
        let (mut header_end, mut last_end) = (None, 0);
        while header_end.is_none() {
            let read = input.fill_buf().map_err(|e| header_problem(&e))?;
            if read.is_empty() {
                header_end = Some(bytes.len());
                break;
            }
            let from = bytes.len();
            bytes.extend_from_slice(read);
            let n = read.len();
            input.consume(n);
            ends.scan(&bytes[from..], |end| {
                let end = from + end;
                last_end = end;
                if header_end.is_none() && bytes[..end].iter().any(|b| !matches!(b, b'\r' | b'\n'))
                {
                    header_end = Some(end);
                }
            });
        }
        let header_end = header_end.unwrap_or(bytes.len());
        let (columns, names) = {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .from_reader(&bytes[..header_end]);
            let headers = reader.headers().map_err(|e| header_problem(&e))?;
            let columns = self.map_columns(headers.iter(), || Location::line(&self.file, 1))?;
            (
                columns,
                headers.iter().map(String::from).collect::<Vec<_>>(),
            )
        };
        let customer = row::customer_column(&columns);
        let first_line = 1 + newlines(&bytes[..header_end]);
        bytes.drain(..header_end);
        let mut last_end = last_end.saturating_sub(header_end);
        let read = |feeder: &mut Feeder<CsvChunk>| {
            let mut line = first_line;
            let chunk = feeder.next();
            chunk.bytes.clear();
            chunk.bytes.append(&mut bytes);
            chunk.line = line;
            loop {
                let read = match input.fill_buf() {
                    Ok(read) => read,
                    Err(e) => {
                        // The records read whole are kept; the one cut short is not.
                        feeder.next().bytes.truncate(last_end);
                        feeder.keep();
                        return Err(self.io_problem(e));
                    }
                };
                if read.is_empty() {
                    feeder.keep();
                    return Ok(());
                }
                let chunk = feeder.next();
                let from = chunk.bytes.len();
                // `last_end`: where the last record read so far ends, in the chunk.
                ends.scan(read, |end| last_end = from + end);
                chunk.bytes.extend_from_slice(read);
                let n = read.len();
                input.consume(n);
                if chunk.bytes.len() >= self.chunk_bytes && last_end > 0 {
                    let rest = chunk.bytes.split_off(last_end);
                    line += newlines(&chunk.bytes);
                    feeder.keep();
                    feeder.hand_on();
                    let chunk = feeder.next();
                    chunk.bytes.clear();
                    chunk.bytes.extend_from_slice(&rest);
                    chunk.line = line;
                    last_end = 0;
                }
            }
        };
        let convert = |chunk: &mut CsvChunk,
                       converter: &mut Converter,
                       out: &mut Vec<Converted>| {
            let CsvChunk {
                bytes,
                line,
                rows,
                reader,
            } = chunk;
            let reader = reader
                .get_or_insert_with(|| csv_core::ReaderBuilder::new().delimiter(delimiter).build());
            let mut records = ChunkRecords::new(reader, delimiter, bytes, *line);
            rows.resize_with(ROWS_AHEAD, CsvRow::default);
            let mut more = true;
            while more {
                let mut read = 0;
                while read < ROWS_AHEAD {
                    let row = &mut rows[read];
                    if !records.read(row) {
                        more = false;
                        break;
                    }
                    read += 1;
                }
                // Each row's customer is a wait on memory: asked for all
                // the rows read before any is converted, the waits overlap.
                if let Some(column) = customer {
                    for row in &rows[..read] {
                        if let Some(id) = row.get(column) {
                            converter.prefetch_customer(id);
                        }
                    }
                }
                for row in &rows[..read] {
                    out.extend(match row.not_utf8 {
                        Some(field) => Some(Err(vec![self.not_utf8(row.line, field, &names)])),
                        None => self.csv_row(row, &columns, converter),
                    });
                }
            }
        };
        pipeline(read, convert, converters, accept).unwrap_or_else(|Crashed| Err(self.crashed()))
    }

    /// A CSV record on `line` whose `field` (counted from 0, named in the
    /// header `names`) is not UTF-8.
    fn not_utf8(&self, line: u64, field: usize, names: &[String]) -> Problem {
        let name = names
            .get(field)
            .map(|name| format!(" ({})", quote(name)))
            .unwrap_or_default();
        Problem::error(
            Location::line(&self.file, line as usize),
            format!(
                "unreadable row: column {}{name} is not UTF-8 text (export the feed as UTF-8)",
                field + 1
            ),
        )
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
    use crate::text::tests::random;
    use ecow::EcoString;
    use rust_decimal::Decimal;

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

    /// Each converting thread copies the texts every row carries (the feed's
    /// extra column names, the default currency) once per feed: a feed read
    /// after another gets its own, even where its texts take the memory the
    /// earlier feed's freed.
    #[test]
    fn each_feed_of_several_gets_its_own_column_names_and_default_currency() {
        let dir = tempfile::tempdir().unwrap();
        let mut feeds = Vec::new();
        for i in 0..12 {
            let name = format!("f{i}.csv");
            let content = match i % 2 {
                0 => format!(
                    "number,customer_id,customer_name,issue_date,due_date,amount,currency,col{i}\n\
                     F{i},C{i},N,2026-01-01,2026-01-31,10,USD,v{i}\n"
                ),
                _ => format!(
                    "number,customer_id,customer_name,issue_date,due_date,amount\n\
                     F{i},C{i},N,2026-01-01,2026-01-31,10\n"
                ),
            };
            std::fs::write(dir.path().join(&name), content).unwrap();
            feeds.push(FeedConfig::new(name.into()));
        }
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let l = load_feeds(&config, &feeds, model::tests::date("2026-03-01"));
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.invoices.len(), 12);
        for (i, inv) in l.invoices.iter().enumerate() {
            let (currency, extra) = match i % 2 {
                0 => ("USD", vec![(format!("col{i}"), format!("v{i}"))]),
                _ => ("EUR", vec![]),
            };
            assert_eq!(&*inv.currency, currency, "{}", inv.number);
            let got: Vec<(String, String)> = inv
                .extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, extra, "{}", inv.number);
        }
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

    /// Rows of numbers that repeat, of customers whose rows disagree, and bad
    /// rows between them; with `huge`, amounts whose customer totals are past
    /// what a decimal holds, so that a row refused for that is followed by a
    /// kept row of its number.
    fn rows(huge: bool, numbers: &NumberHasher) -> Vec<Converted> {
        let file = Arc::new(PathBuf::from("a.csv"));
        let mut next = random(7);
        (2..3000)
            .map(|line| {
                if next().is_multiple_of(40) {
                    return Err(vec![Problem::error(Location::line(&file, line), "bad")]);
                }
                let customer = (next() % 60) as u32;
                let amount = match huge && next().is_multiple_of(200) {
                    true => Decimal::MAX.to_string(),
                    false => (next() % 1000).to_string(),
                };
                let number = format!("F{}", next() % 2000);
                let mut invoice =
                    model::tests::invoice(&number, &format!("C{customer}"), "2026-01-31", &amount);
                if next().is_multiple_of(90) {
                    std::sync::Arc::make_mut(&mut invoice.bill_to).name = "Another name".into();
                }
                invoice.origin = model::Origin {
                    file: file.clone(),
                    line,
                };
                let keys = Keys {
                    customer,
                    number: numbers.hash(&invoice.number),
                };
                Ok((invoice, keys))
            })
            .collect()
    }

    /// The rows kept one by one, each checked against those before it: what
    /// [`Kept::finish`] must give.
    fn one_by_one(rows: Vec<Converted>) -> (Vec<String>, Vec<String>, Vec<u32>, usize) {
        let mut customers = Customers::default();
        let mut kept: Vec<Invoice> = Vec::new();
        let mut by_number: HashMap<EcoString, usize> = HashMap::new();
        let (mut problems, mut customer_of, mut bad_rows) = (Vec::new(), Vec::new(), 0);
        for row in rows {
            let (invoice, keys) = match row {
                Ok(row) => row,
                Err(p) => {
                    bad_rows += 1;
                    problems.extend(p.iter().map(ToString::to_string));
                    continue;
                }
            };
            let locate = |origin: &Origin| Location::line(&origin.file, origin.line);
            let refused = match customers.total_with(keys.customer, &invoice, &locate) {
                Err(problem) => Some(problem),
                Ok(total) => match by_number.get(&invoice.number) {
                    Some(&first) => {
                        Some(duplicate(&invoice, &kept[first], locate(&invoice.origin)))
                    }
                    None => {
                        let (c, warning) = customers.keep(keys.customer, &invoice, total, &locate);
                        customer_of.push(c);
                        problems.extend(warning.iter().map(ToString::to_string));
                        by_number.insert(invoice.number.clone(), kept.len());
                        kept.push(invoice);
                        None
                    }
                },
            };
            if let Some(problem) = refused {
                bad_rows += 1;
                problems.push(problem.to_string());
            }
        }
        let numbers = kept.iter().map(|i| i.number.to_string()).collect();
        (numbers, problems, customer_of, bad_rows)
    }

    #[test]
    fn rows_checked_all_at_once_give_what_keeping_them_one_by_one_gave() {
        // Checked by one thread, and with their customers shared out between several.
        for (huge, parts) in [(false, 1), (true, 1), (false, 3), (true, 2), (true, 7)] {
            let numbers = NumberHasher::default();
            let mut kept = Kept::default();
            rows(huge, &numbers)
                .into_iter()
                .for_each(|row| kept.keep(row));
            let load = kept.finish_in(numbers.clone(), std::iter::empty(), parts);
            let (expected, problems, customer_of, bad_rows) = one_by_one(rows(huge, &numbers));
            let got: Vec<String> = load.invoices.iter().map(|i| i.number.to_string()).collect();
            assert_eq!(got, expected, "huge: {huge}, parts: {parts}");
            let got: Vec<String> = load.problems.iter().map(ToString::to_string).collect();
            assert_eq!(got, problems, "huge: {huge}, parts: {parts}");
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("duplicate invoice number"))
            );
            assert!(problems.iter().any(|p| p.contains("rows that disagree")));
            assert_eq!(
                problems.iter().any(|p| p.contains("add up to more than")),
                huge
            );
            assert_eq!(
                load.index.customer_of, customer_of,
                "huge: {huge}, parts: {parts}"
            );
            assert_eq!(load.bad_rows, bad_rows, "huge: {huge}, parts: {parts}");
            let ledger = model::Ledger::with_index(load.invoices.clone(), load.index);
            for (i, invoice) in load.invoices.iter().enumerate() {
                assert_eq!(ledger.find(&invoice.number), Some(model::InvoiceId::new(i)));
            }
            assert_eq!(ledger.find("F-none"), None);
        }
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
                memchr::memchr2_iter(b'\r', b'\n', read)
                    .map(|i| (offset + i as u64, read[i] == b'\n')),
            );
            self.offset += n as u64;
            Ok(n)
        }
    }

    /// The records csv reads from `input` (with relance's settings and its
    /// correction of their lines, as a converting thread reads a chunk),
    /// each with its line counted from `first_line`.
    fn csv_records(delimiter: u8, input: &[u8], first_line: u64) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(false)
            .from_reader(LineEnds::new(input));
        let mut record = csv::ByteRecord::new();
        let mut records = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            let at = record.position().unwrap().clone();
            let line = first_line - 1 + at.line() + reader.get_mut().lines_skipped_at(at.byte());
            records.push((line, record.iter().map(<[u8]>::to_vec).collect()));
        }
        records
    }

    /// Random CSV-ish bytes: values, separators, quotes and line ends of every kind.
    const CSV_NOISE: &[u8] = b"ab,;\"\"\"\n\n\r ";

    /// Fewer than `max` bytes taken at random from `bytes`.
    fn csv_noise(next: &mut impl FnMut() -> u64, bytes: &[u8], max: u64) -> Vec<u8> {
        (0..next() % max)
            .map(|_| bytes[(next() % bytes.len() as u64) as usize])
            .collect()
    }

    /// A chunk read by [`ChunkRecords`] gives the records, and their lines,
    /// that the csv crate's reader gives (with its lines corrected by
    /// [`LineEnds`]), and the first field that is not UTF-8 where the csv
    /// crate would report it: also when the two halves of a character are
    /// two fields, which make valid text once put side by side. Half the
    /// chunks have no quote and no `\r`: those are read as plain lines.
    #[test]
    fn chunk_records_are_the_records_the_csv_reader_reads() {
        let mut next = random(12);
        let bytes = [CSV_NOISE, "é".as_bytes(), "é".as_bytes(), b"\t\0"].concat();
        let plain_bytes: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'"' | b'\r'))
            .collect();
        // Readers used again and again, as converting threads use theirs.
        let mut cores =
            [b',', b';'].map(|d| (d, csv_core::ReaderBuilder::new().delimiter(d).build()));
        let mut row = CsvRow::default();
        let (mut records, mut not_utf8, mut plain) = (0, 0, 0);
        for _ in 0..40_000 {
            // Plain chunks longer than the blocks `Marks` compares at a time.
            let input = match next() % 2 {
                0 => csv_noise(&mut next, &bytes, 48),
                _ => csv_noise(&mut next, &plain_bytes, 200),
            };
            let (delimiter, core) = &mut cores[(next() % 2) as usize];
            let first_line = 1 + next() % 5;
            // Each record's line, and its fields or the first not UTF-8.
            type Record = (u64, Result<Vec<Vec<u8>>, usize>);
            let expected: Vec<Record> = csv_records(*delimiter, &input, first_line)
                .into_iter()
                .map(|(line, fields)| {
                    let bad = fields.iter().position(|f| std::str::from_utf8(f).is_err());
                    (line, bad.map_or(Ok(fields), Err))
                })
                .collect();
            let mut chunk = ChunkRecords::new(core, *delimiter, &input, first_line);
            plain += usize::from(chunk.plain.is_some());
            let mut read = Vec::new();
            while chunk.read(&mut row) {
                let fields = match row.not_utf8 {
                    Some(field) => Err(field),
                    None => Ok(row.iter().map(|f| f.as_bytes().to_vec()).collect()),
                };
                assert_eq!(row.separated, chunk.plain.is_some());
                read.push((row.line, fields));
            }
            assert_eq!(read, expected, "{:?}", String::from_utf8_lossy(&input));
            records += read.len();
            not_utf8 += read.iter().filter(|(_, r)| r.is_err()).count();
        }
        assert!(
            records > 80_000 && not_utf8 > 4_000 && plain > 19_000,
            "{records} {not_utf8} {plain}"
        );
    }

    /// [`Marks`] finds the bytes `memchr2` finds, in texts of every length
    /// around its blocks, with the bytes at the blocks' edges.
    #[test]
    fn marks_are_where_memchr_finds_the_bytes() {
        let mut next = random(13);
        let mut found = 0;
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| b"a,\n;\xff"[(next() % 5) as usize])
                .collect();
            let (one, other) = [(b',', b'\n'), (b';', b'\xff')][(next() % 2) as usize];
            let marks: Vec<usize> = Marks::new(&text, one, other).collect();
            assert_eq!(
                marks,
                memchr::memchr2_iter(one, other, &text).collect::<Vec<_>>()
            );
            found += marks.len();
            if let Some(block) = text.first_chunk::<MARKS_BLOCK>() {
                assert_eq!(
                    block_mask(block, one, other),
                    bytewise_mask(block, one, other)
                );
            }
        }
        assert!(found > 500_000, "{found}");
    }

    /// Only chunks without a quote or a `\r`, split at an ASCII delimiter
    /// that is no part of the quoting, are read as plain lines.
    #[test]
    fn plain_lines_only_where_csv_core_would_read_the_same() {
        let plain = |bytes: &[u8], delimiter: u8| PlainLines::of(bytes, delimiter, 1).is_some();
        assert!(plain(b"a,b\n\nc,d", b','));
        assert!(plain("a;é\n".as_bytes(), b';'));
        assert!(!plain(b"a,\"b\"\n", b','));
        assert!(!plain(b"a,b\r\n", b','));
        assert!(!plain(b"a,b\rc,d", b','));
        // The second byte of `é`: as a delimiter, it cuts the character in two.
        assert!(!plain("aé\n".as_bytes(), 0xA9));
        assert!(!plain(b"a\"b\n", b'"'));
    }

    /// Splitting a feed where [`RecordEnds`] says records end, and reading
    /// each part with a reader of its own, gives the records (and lines)
    /// one reader gives reading it whole: whatever pieces the bytes come in.
    #[test]
    fn records_end_where_the_csv_reader_ends_them() {
        let mut next = random(11);
        let mut splits = 0;
        for _ in 0..20_000 {
            let input = csv_noise(&mut next, CSV_NOISE, 48);
            let delimiter = [b',', b';'][(next() % 2) as usize];
            let whole = csv_records(delimiter, &input, 1);
            // Scanned in pieces of random sizes, as reads give them.
            let mut ends = RecordEnds::new(delimiter);
            let mut found = Vec::new();
            let mut from = 0;
            while from < input.len() {
                let to = (from + 1 + (next() % 5) as usize).min(input.len());
                ends.scan(&input[from..to], |end| found.push(from + end));
                from = to;
            }
            assert!(found.windows(2).all(|w| w[0] <= w[1]), "{found:?}");
            found.push(input.len());
            let (mut split, mut start, mut line) = (Vec::new(), 0, 1);
            for end in found {
                split.extend(csv_records(delimiter, &input[start..end], line));
                line += newlines(&input[start..end]);
                splits += 1;
                start = end;
            }
            assert_eq!(split, whole, "{:?}", String::from_utf8_lossy(&input));
        }
        assert!(splits > 100_000, "{splits}");
    }

    /// A feed read with its records handed on a few bytes at a time gives
    /// what reading it in one piece gives: the invoices, their lines, and
    /// every problem where it is.
    #[test]
    fn a_csv_feed_read_in_chunks_of_any_size_gives_the_same_load() {
        let mut content = String::from("\r\n").into_bytes();
        content.extend_from_slice(HEADER.trim_end().as_bytes());
        content.extend_from_slice(b"\r\n");
        for i in 0..40 {
            let row = match i % 8 {
                0 => format!(
                    "F{i},C{i},\"Name\non two lines\",a@x.fr,2026-01-01,2026-01-31,10,,,open,,r\r\n"
                ),
                1 => format!(
                    "F{i},C{i},\"Say \"\"hi\"\"\",a@x.fr,2026-01-01,2026-01-31,10,,,open,,\"r\r\n\"\n"
                ),
                2 => format!("F{i},C{i},N,a@x.fr,2026-01-01,2026-13-31,10,,,open,,r\n\n\r\n"),
                3 => format!("F{i},C{i},N\"q,a@x.fr,2026-01-01,2026-01-31,10,,,open,,r\r"),
                4 => format!("F{i},C{i},N,a@x.fr,2026-01-01,2026-01-31,zero,,,open,,r\n"),
                _ => format!("F{i},C{i},N,a@x.fr,2026-01-01,2026-01-31,{i},,,open,,r\n"),
            };
            content.extend_from_slice(row.as_bytes());
            if i == 21 {
                content.extend_from_slice(
                    b"F-bad,C,\xff\xfe,a@x.fr,2026-01-01,2026-01-31,1,,,open,,r\n",
                );
            }
        }
        content.extend_from_slice(b"F-last,C,N,a@x.fr,2026-01-01,2026-01-31,1,,,open,,r");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), &content).unwrap();
        let config = Config {
            base: dir.path().to_path_buf(),
            ..Config::default()
        };
        let feed = FeedConfig {
            delimiter: Some(','),
            ..FeedConfig::new("a.csv".into())
        };
        let summary = |chunk_bytes| {
            let l = load_feeds_in_chunks(
                &config,
                std::slice::from_ref(&feed),
                model::tests::date("2026-03-01"),
                chunk_bytes,
            );
            let invoices: Vec<String> = l
                .invoices
                .iter()
                .map(|i| format!("{} {} {:?}", i.origin.line, i.number, i.bill_to.name))
                .collect();
            let problems: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
            (invoices, problems, l.bad_rows)
        };
        let whole = summary(CHUNK_BYTES);
        assert_eq!(whole.0.len(), 31, "{:#?}", whole.0);
        assert!(
            whole
                .0
                .contains(&"3 F0 \"Name\\non two lines\"".to_string()),
            "{:#?}",
            whole.0
        );
        let unreadable = "unreadable row: column 3 (\"customer_name\") is not UTF-8 text";
        assert!(
            whole.1.iter().any(|p| p.contains(unreadable)),
            "{:#?}",
            whole.1
        );
        assert_eq!(whole.2, 11);
        for chunk_bytes in [1, 2, 3, 7, 64, 200] {
            assert_eq!(summary(chunk_bytes), whole, "{chunk_bytes} bytes at a time");
        }
    }

    /// A thread of the pipeline that panics, converting or keeping, stops
    /// it: the feed is unreadable, and no thread is left waiting.
    #[test]
    fn a_crash_converting_or_keeping_stops_the_pipeline() {
        let interner = Mutex::new(Interner::default());
        let numbers = NumberHasher::default();
        let mut converters: Vec<Converter> = (0..2)
            .map(|_| Converter::new(&interner, numbers.clone()))
            .collect();
        let read = |feeder: &mut Feeder<usize>| {
            for i in 0..100 * BATCH {
                *feeder.next() = i;
                feeder.keep();
            }
            Ok(())
        };
        let converted =
            |_: &mut usize, _: &mut Converter, out: &mut Vec<Converted>| out.push(Err(vec![]));
        let crash_at = |row: &mut usize, c: &mut Converter, out: &mut Vec<Converted>| match *row
            == 7 * BATCH + 3
        {
            true => panic!("converting row {row}"),
            false => converted(row, c, out),
        };
        let mut kept = 0;
        let result = pipeline(read, crash_at, &mut converters, &mut |_| kept += 1);
        assert!(result.is_err());
        assert!(kept < 100 * BATCH, "{kept}");
        let mut kept = 0;
        let mut crash_keeping = |_: Converted| {
            kept += 1;
            assert!(kept < 5 * BATCH, "keeping row {kept}");
        };
        assert!(pipeline(read, converted, &mut converters, &mut crash_keeping).is_err());
        let mut all = 0;
        assert!(pipeline(read, converted, &mut converters, &mut |_| all += 1).is_ok());
        assert_eq!(all, 100 * BATCH);
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
