//! A feed's row turned into an invoice: its columns mapped to the canonical
//! fields, each field read and checked, shared text interned.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::NaiveDate;
use ecow::EcoString;
use rust_decimal::Decimal;
use serde_json::Value;

use super::values::{canonical_language, currency_code, json_amount, parse_amount};
use super::{Converted, CsvRow, FeedParser, JsonElement, JsonLine, Keys};
use crate::config::{FeedFormat, is_language_tag};
use crate::diagnostics::{Location, Problem, quote};
use crate::model::{
    BillTo, Extra, Invoice, InvoiceField, NumberHasher, Origin, Shared, Status, ThinSlice,
};
use crate::text::trim;

// Each field's place among a row's values (its place in `InvoiceField::ALL`;
// the worked-out fields' places stay empty): a row's values are read by
// index, millions of times, rather than searched for by name.
const NUMBER: usize = InvoiceField::Number as usize;
const CUSTOMER_ID: usize = InvoiceField::CustomerId as usize;
const CUSTOMER_NAME: usize = InvoiceField::CustomerName as usize;
const EMAIL: usize = InvoiceField::Email as usize;
const ISSUE_DATE: usize = InvoiceField::IssueDate as usize;
const DUE_DATE: usize = InvoiceField::DueDate as usize;
const AMOUNT: usize = InvoiceField::Amount as usize;
const AMOUNT_PAID: usize = InvoiceField::AmountPaid as usize;
const CURRENCY: usize = InvoiceField::Currency as usize;
const STATUS: usize = InvoiceField::Status as usize;
const PAID_DATE: usize = InvoiceField::PaidDate as usize;
const LANGUAGE: usize = InvoiceField::Language as usize;
const TAGS: usize = InvoiceField::Tags as usize;
const PROMISE_DATE: usize = InvoiceField::PromiseDate as usize;

/// The name of a row's `index`-th value.
fn field_name(index: usize) -> &'static str {
    InvoiceField::ALL[index].name()
}

/// One row's values by canonical field, plus its other columns.
struct Row<'a> {
    fields: [Option<Cow<'a, str>>; InvoiceField::ALL.len()],
    extra: Vec<(Shared, Shared)>,
}

impl<'a> Row<'a> {
    fn new() -> Self {
        Row::with_extra(Vec::new())
    }
    /// A row whose other columns go in `extra` (empty), a vector kept from row to row.
    fn with_extra(extra: Vec<(Shared, Shared)>) -> Self {
        Row {
            fields: Default::default(),
            extra,
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

/// One allocation per distinct customer id, name, address, currency,
/// language and tag set, however many invoices share it.
#[derive(Default)]
pub(super) struct Interner {
    strings: hashbrown::HashSet<Shared>,
    tag_sets: hashbrown::HashMap<Box<str>, ThinSlice<Shared>>,
    /// Each customer id's number, in the order the threads first met them:
    /// the thread keeping the rows finds a customer by it without hashing.
    customers: hashbrown::HashMap<Shared, u32>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Shared {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared = Shared::from(s);
        self.strings.insert(shared.clone());
        shared
    }

    fn customer(&mut self, id: &str) -> (Shared, u32) {
        if let Some((shared, &number)) = self.customers.get_key_value(id) {
            return (shared.clone(), number);
        }
        let shared = self.get(id);
        let number = self.customers.len() as u32;
        self.customers.insert(shared.clone(), number);
        (shared, number)
    }

    fn tags(&mut self, list: &str) -> ThinSlice<Shared> {
        if let Some(set) = self.tag_sets.get(list) {
            return set.clone();
        }
        let set: ThinSlice<Shared> = list
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
    /// The texts and the tag sets this thread has interned.
    strings: hashbrown::HashSet<Shared>,
    tag_sets: hashbrown::HashMap<Box<str>, ThinSlice<Shared>>,
    /// The set of no tags, which most rows have.
    no_tags: ThinSlice<Shared>,
    /// Each customer id this thread met: the customer's number, and whom
    /// this thread last billed an invoice of theirs to. A customer's rows
    /// nearly always repeat their name and address, so comparing them with
    /// the last ones saves hashing them, and the thread's invoices share
    /// its own [`BillTo`] (whose reference count no other core then
    /// touches). One probe finds both; an id of up to 15 bytes is compared
    /// inside the table, without reading another allocation.
    customers: hashbrown::HashMap<EcoString, (u32, Arc<BillTo>)>,
}

impl ThreadInterner<'_> {
    fn get(&mut self, s: &str) -> Shared {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        let shared = self.lock().get(s);
        self.strings.insert(shared.clone());
        shared
    }

    /// The number of a row's customer, and whom the row bills, its texts interned.
    fn customer(&mut self, id: &str, name: &str, email: &str) -> (u32, Arc<BillTo>) {
        let (number, id) = match self.customers.get(id) {
            Some((number, last)) if last.made_with(name, email) => {
                return (*number, last.clone());
            }
            Some((number, last)) => (*number, last.id.clone()),
            None => {
                let (shared, number) = self.lock().customer(id);
                (number, shared)
            }
        };
        let bill_to = BillTo::new(id, self.get(name), self.get(email));
        let key = EcoString::from(&*bill_to.id);
        self.customers.insert(key, (number, bill_to.clone()));
        (number, bill_to)
    }

    /// Asks the processor for what [`ThreadInterner::customer`] will read
    /// of this customer: its entry (read here: a few rows' lookups one
    /// after the other wait on memory together, not one after the other)
    /// and whom it last billed.
    fn prefetch_customer(&self, id: &str) {
        if let Some((_, last)) = self.customers.get(id) {
            crate::model::prefetch(Arc::as_ptr(last));
        }
    }

    fn tags(&mut self, list: &str) -> ThinSlice<Shared> {
        // Not looked up: comparing with the empty key in the table reads
        // from the dangling address an empty `Box<str>` holds, which glibc's
        // AVX-512 `memcmp` does with a masked load that the processor
        // completes in microcode (7 % of a converting thread's time).
        if list.is_empty() {
            return self.no_tags.clone();
        }
        if let Some(set) = self.tag_sets.get(list) {
            return set.clone();
        }
        // The thread's own copy of the set, as with [`Own`]: most rows share a few sets.
        let set: ThinSlice<Shared> = self.lock().tags(list).iter().cloned().collect();
        self.tag_sets.insert(list.into(), set.clone());
        set
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Interner> {
        // A thread that panicked while holding it left a consistent table: a
        // set is only ever added to.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one converting thread keeps from row to row.
pub(super) struct Converter<'s> {
    strings: ThreadInterner<'s>,
    numbers: NumberHasher,
    /// As written in the feeds (`usd`, `FR`) → canonical (`USD`, `fr`).
    currencies: Canonical,
    languages: Canonical,
    /// The extra columns of the invoices this thread converted: the ledger's
    /// list of them, without reading every invoice again.
    pub(super) extra_columns: Vec<Shared>,
    own: Own,
}

/// This thread's own copies of what every row carries: its feed's file,
/// its extra columns' names, the default currency. Were every converting
/// thread to clone the one allocation for every row, its reference count
/// would go from core to core on every row.
#[derive(Default)]
struct Own {
    file: Option<(Arc<PathBuf>, Arc<PathBuf>)>,
    /// A text → its copy. The text is kept, so that its allocation is not
    /// freed and reused for another while it names the copy.
    texts: Vec<(Shared, Shared)>,
    /// The other columns of the last row whose values were all empty, as
    /// given, and their [`Extra`]: the next such row shares it.
    empty_extra: Option<(Vec<Shared>, Extra)>,
    /// A row's other columns are gathered here, then this is emptied for the next row.
    spare_extra: Vec<(Shared, Shared)>,
}

impl Own {
    fn file(&mut self, file: &Arc<PathBuf>) -> Arc<PathBuf> {
        match &self.file {
            Some((shared, own)) if Arc::ptr_eq(shared, file) => own.clone(),
            _ => {
                let own = Arc::new(file.to_path_buf());
                self.file = Some((file.clone(), own.clone()));
                own
            }
        }
    }

    /// A row's other columns as an invoice keeps them.
    fn extra(&mut self, mut columns: Vec<(Shared, Shared)>) -> Extra {
        if columns.iter().any(|(_, value)| !value.is_empty()) {
            return Extra::from(columns);
        }
        let extra = match &self.empty_extra {
            Some((names, extra))
                if names.len() == columns.len()
                    && names.iter().zip(&columns).all(|(n, (c, _))| n == c) =>
            {
                extra.clone()
            }
            _ => {
                let names = columns.iter().map(|(name, _)| name.clone()).collect();
                let extra = Extra::from(columns.clone());
                self.empty_extra = Some((names, extra.clone()));
                extra
            }
        };
        columns.clear();
        self.spare_extra = columns;
        extra
    }

    fn text(&mut self, text: &Shared) -> Shared {
        if let Some((_, own)) = self.texts.iter().find(|(t, _)| Shared::ptr_eq(t, text)) {
            return own.clone();
        }
        let own = Shared::from(&**text);
        self.texts.push((text.clone(), own.clone()));
        own
    }
}

impl<'s> Converter<'s> {
    pub(super) fn new(shared: &'s Mutex<Interner>, numbers: NumberHasher) -> Self {
        Converter {
            strings: ThreadInterner {
                shared,
                strings: hashbrown::HashSet::new(),
                tag_sets: hashbrown::HashMap::new(),
                no_tags: ThinSlice::default(),
                customers: hashbrown::HashMap::new(),
            },
            numbers,
            currencies: Canonical::default(),
            languages: Canonical::default(),
            extra_columns: Vec::new(),
            own: Own::default(),
        }
    }
}

impl Converter<'_> {
    /// [`ThreadInterner::prefetch_customer`] of a row's customer id, as given.
    pub(super) fn prefetch_customer(&self, id: &str) {
        self.strings.prefetch_customer(trim(id));
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
            // The thread's own copy, as with [`Own`]: every row clones it.
            let own = Shared::from(&*value);
            self.0.push((raw.into(), own.clone()));
            return Some(own);
        }
        Some(value)
    }
}

impl FeedParser<'_> {
    /// A CSV record whose text is UTF-8 as an invoice or a bad row; nothing for a blank one.
    pub(super) fn csv_row(
        &self,
        record: &CsvRow,
        columns: &[Column],
        converter: &mut Converter,
    ) -> Option<Converted> {
        let line = record.line as usize;
        // Values past the header have no column to go to: dropping them would
        // hide a shifted row (an unquoted separator inside a value). Empty ones
        // are only trailing separators, as some exports write on every row.
        if (columns.len()..record.len())
            .filter_map(|field| record.get(field))
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
        let mut values = Row::with_extra(std::mem::take(&mut converter.own.spare_extra));
        let mut blank = true;
        for (value, column) in record.iter().zip(columns) {
            let trimmed = trim(value);
            blank &= trimmed.is_empty();
            match column {
                Column::Fields(fields) if !trimmed.is_empty() => {
                    for i in fields.indices() {
                        values.fields[i] = Some(Cow::Borrowed(trimmed));
                    }
                }
                Column::Fields(_) => {}
                Column::Extra(name) => {
                    values
                        .extra
                        .push((converter.own.text(name), Shared::from(value)));
                }
            }
        }
        if blank {
            let mut spare = values.extra;
            spare.clear();
            converter.own.spare_extra = spare;
            return None;
        }
        Some(self.invoice(values, line, converter))
    }

    pub(super) fn json_element(
        &self,
        element: &mut JsonElement,
        converter: &mut Converter,
    ) -> Option<Converted> {
        let value = std::mem::take(&mut element.value);
        Some(self.json_row(value, element.index, converter))
    }

    pub(super) fn json_line(
        &self,
        line: &mut JsonLine,
        converter: &mut Converter,
    ) -> Option<Converted> {
        if line.too_long {
            return Some(Err(vec![Problem::error(
                Location::line(&self.file, line.line),
                format!(
                    "line is longer than {} bytes (256 × limits.field_chars); it starts with {}…",
                    self.row_bytes,
                    quote(
                        &String::from_utf8_lossy(&line.bytes)
                            .chars()
                            .take(crate::diagnostics::QUOTED_CHARS)
                            .collect::<String>()
                    )
                ),
            )]));
        }
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

    pub(super) fn json_row(
        &self,
        value: Value,
        line: usize,
        converter: &mut Converter,
    ) -> Converted {
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
            let Column::Fields(fields) = column else {
                if let Some(text) = self.json_text(name, value, None, line, &mut problems) {
                    row.extra.push((name.as_str().into(), Shared::from(text)));
                }
                continue;
            };
            for i in fields.indices() {
                let known = problems.len();
                if let Some(text) = self.json_text(name, value, Some(i), line, &mut problems) {
                    row.set(i, text);
                }
                // A value no field takes is reported once, not once per field.
                if problems.len() > known {
                    break;
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.invoice(row, line, converter)
    }

    /// A JSON value as the text of `field` (an extra column's when `None`),
    /// or a problem when it is no value for it.
    fn json_text<'v>(
        &self,
        name: &str,
        value: &'v Value,
        field: Option<usize>,
        line: usize,
        problems: &mut Vec<Problem>,
    ) -> Option<Cow<'v, str>> {
        match (value, field) {
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
        }
    }

    /// Maps each column name of the feed to a canonical field or an extra column.
    /// Names are matched trimmed and whatever their case, mapped ones (`columns`)
    /// as canonical ones: `Montant TTC ` is the column mapped as `montant ttc`.
    pub(super) fn map_columns<'n>(
        &self,
        names: impl Iterator<Item = &'n str>,
        at: impl Fn() -> Location,
    ) -> Result<Vec<Column>, Problem> {
        let mut columns = Vec::new();
        // The column that gives each canonical field, to refuse a second one:
        // which of two `amount` columns is the amount would be a guess.
        let mut giving: [Option<&str>; InvoiceField::ALL.len()] = Default::default();
        for name in names.map(str::trim) {
            let key = column_key(name);
            let fields = match self.renamed.get(&key) {
                Some(&mask) => Some(Fields(mask)),
                // A canonical name mapped to another column is an extra column here.
                None => InvoiceField::feed_column(&key)
                    .filter(|_| !self.feed.columns.contains_key(&key))
                    .map(|i| Fields(InvoiceField::ALL[i].bit())),
            };
            match fields {
                Some(fields) => {
                    for i in fields.indices() {
                        if let Some(first) = giving[i].replace(name) {
                            return Err(Problem::error(
                                at(),
                                if first == name {
                                    format!("duplicate column {name:?}")
                                } else {
                                    format!(
                                        "duplicate column {name:?}: {first:?} already gives {}",
                                        field_name(i)
                                    )
                                },
                            ));
                        }
                    }
                    columns.push(Column::Fields(fields));
                }
                None => columns.push(Column::Extra(name.into())),
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
                if InvoiceField::feed_column(canonical).is_none() {
                    return Err(Problem::error(
                        at(),
                        format!(
                            "columns: {canonical:?} is not a canonical field (expected one of {})",
                            InvoiceField::ALL[..InvoiceField::ALL.len()]
                                .iter()
                                .map(|f| f.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            let missing: Vec<&str> = InvoiceField::REQUIRED
                .iter()
                .filter(|&&f| {
                    !columns
                        .iter()
                        .any(|c| matches!(c, Column::Fields(given) if given.has(f as usize)))
                })
                .map(|f| f.name())
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

    /// A row's values as an invoice, or every problem of the row at once.
    fn invoice(&self, row: Row, line: usize, converter: &mut Converter) -> Converted {
        let mut read = Reading {
            parser: self,
            row: &row,
            line,
            problems: Vec::new(),
        };
        read.lengths();
        if !read.problems.is_empty() {
            // Nothing more is read of a value that long.
            return Err(read.problems);
        }
        read.required();
        let issue_date = read.plausible_date(ISSUE_DATE);
        let due_date = read.plausible_date(DUE_DATE);
        let paid_date = read.date(PAID_DATE);
        let promise_date = read.date(PROMISE_DATE);
        let amount = read.amount(AMOUNT);
        let amount_paid = read.payment();
        read.amount_due(amount, amount_paid);
        let Converter {
            strings,
            numbers,
            currencies,
            languages,
            extra_columns,
            own,
        } = converter;
        let currency = read.code(
            CURRENCY,
            currencies,
            strings,
            currency_code,
            "an ISO 4217 code such as EUR",
        );
        let status = read.status();
        let language = read.code(
            LANGUAGE,
            languages,
            strings,
            |l| is_language_tag(l).then(|| Cow::Owned(canonical_language(l))),
            "a language tag such as fr, fr-CA or en",
        );
        read.due_after_issue(issue_date, due_date);
        // The required fields are there unless a problem says they are not.
        let (true, Some(issue_date), Some(due_date), Some(amount)) =
            (read.problems.is_empty(), issue_date, due_date, amount)
        else {
            return Err(read.problems);
        };
        for (name, _) in &row.extra {
            if !extra_columns.contains(name) {
                extra_columns.push(name.clone());
            }
        }
        let (customer, bill_to) = strings.customer(
            row.get(CUSTOMER_ID).unwrap_or(""),
            row.get(CUSTOMER_NAME).unwrap_or(""),
            row.get(EMAIL).unwrap_or(""),
        );
        let number = row.get(NUMBER).unwrap_or("");
        let keys = Keys {
            customer,
            number: numbers.hash(number),
        };
        let invoice = Invoice {
            number: number.into(),
            bill_to,
            issue_date,
            due_date,
            amount,
            amount_paid,
            currency: currency.unwrap_or_else(|| own.text(&self.default_currency)),
            status,
            paid_date,
            language,
            tags: strings.tags(row.get(TAGS).unwrap_or("")),
            promise_date,
            extra: own.extra(row.extra),
            origin: Origin {
                file: own.file(&self.file),
                line,
            },
        };
        Ok((invoice, keys))
    }
}

/// One row's fields being read. What is wrong is noted, naming the field,
/// and the reading goes on: a bad row's every problem is reported at once.
struct Reading<'r> {
    parser: &'r FeedParser<'r>,
    row: &'r Row<'r>,
    line: usize,
    problems: Vec<Problem>,
}

impl Reading<'_> {
    fn bad(&mut self, field: usize, reason: String) {
        self.problems.push(Problem::error(
            self.parser.location(self.line),
            format!("{}: {reason}", field_name(field)),
        ));
    }

    fn required(&mut self) {
        for field in InvoiceField::REQUIRED.map(|f| f as usize) {
            if self.row.get(field).is_none() {
                self.bad(field, "missing (required)".into());
            }
        }
    }

    /// A date in the feed's `date_format`.
    fn date(&mut self, field: usize) -> Option<NaiveDate> {
        let s = self.row.get(field)?;
        let date = self.parser.dates.parse(s);
        if date.is_none() {
            let format = &self.parser.feed.date_format;
            self.bad(
                field,
                format!("expected a date in the format {format}, found {}", quote(s)),
            );
        }
        date
    }

    /// An issue or due date, which must be plausible: a year 0 or 9999
    /// is a typo, and would make catch-up walk thousands of years.
    fn plausible_date(&mut self, field: usize) -> Option<NaiveDate> {
        let date = self.date(field)?;
        let (earliest, latest) = self.parser.plausible;
        if date < earliest || date > latest {
            self.bad(
                field,
                format!(
                    "{} is not a plausible date (expected between {} and {})",
                    date.format("%Y-%m-%d"),
                    earliest.format("%Y-%m-%d"),
                    latest.format("%Y-%m-%d")
                ),
            );
            return None;
        }
        Some(date)
    }

    /// Every value of the row, its other columns too, within `limits.field_chars`.
    fn lengths(&mut self) {
        let max = self.parser.field_chars;
        let long = |v: &str| v.len() > max && v.chars().count() > max;
        let row = self.row;
        for (i, value) in row.fields.iter().enumerate() {
            if let Some(v) = value.as_deref().filter(|v| long(v)) {
                self.bad(i, too_long(v, max));
            }
        }
        for (name, v) in row.extra.iter().filter(|(_, v)| long(v)) {
            self.problems.push(Problem::error(
                self.parser.location(self.line),
                format!("{}: {}", quote(name), too_long(v, max)),
            ));
        }
    }

    /// `amount - amount_paid`, which every total adds up: refused when
    /// it cannot be computed exactly.
    fn amount_due(&mut self, amount: Option<Decimal>, paid: Decimal) {
        if amount.is_some_and(|a| a.checked_sub(paid).is_none()) {
            self.bad(
                AMOUNT_PAID,
                "amount - amount_paid is too large to compute exactly".into(),
            );
        }
    }

    /// An amount written with the feed's `decimal` separator.
    fn amount(&mut self, field: usize) -> Option<Decimal> {
        let s = self.row.get(field)?;
        parse_amount(s, self.parser.feed.decimal)
            .map_err(|reason| self.bad(field, reason))
            .ok()
    }

    /// What was paid, none when not given. A negative payment would raise
    /// the amount due: a sign error in the export.
    fn payment(&mut self) -> Decimal {
        match self.amount(AMOUNT_PAID) {
            Some(paid) if paid < Decimal::ZERO => {
                let written = self.row.get(AMOUNT_PAID).unwrap_or_default();
                self.bad(
                    AMOUNT_PAID,
                    format!("must not be negative, found {}", quote(written)),
                );
                Decimal::ZERO
            }
            paid => paid.unwrap_or(Decimal::ZERO),
        }
    }

    fn status(&mut self) -> Status {
        let Some(s) = self.row.get(STATUS) else {
            return Status::Open;
        };
        Status::parse(s).unwrap_or_else(|| {
            self.bad(
                STATUS,
                format!("expected open, paid, void or disputed, found {}", quote(s)),
            );
            Status::Open
        })
    }

    /// A code of the few a column takes (a currency, a language): checked
    /// and canonicalized once per distinct value (see `Canonical`), and
    /// interned at once. `expected` says what it should be.
    fn code(
        &mut self,
        field: usize,
        known: &mut Canonical,
        strings: &mut ThreadInterner,
        canonical: impl FnOnce(&str) -> Option<Cow<'_, str>>,
        expected: &str,
    ) -> Option<Shared> {
        let raw = self.row.get(field)?;
        let code = known.get(raw, |raw| canonical(raw).map(|c| strings.get(&c)));
        if code.is_none() {
            self.bad(field, format!("expected {expected}, found {}", quote(raw)));
        }
        code
    }

    fn due_after_issue(&mut self, issue: Option<NaiveDate>, due: Option<NaiveDate>) {
        if let (Some(issue), Some(due)) = (issue, due)
            && due < issue
        {
            self.bad(
                DUE_DATE,
                format!("due date {due} is before the issue date {issue}"),
            );
        }
    }
}

pub(super) enum Column {
    /// The canonical fields the column gives: one, or several when the
    /// feed's `columns` maps them to it.
    Fields(Fields),
    /// An extra column, by its name (shared by every invoice of the feed).
    Extra(Shared),
}

/// Which of `columns` gives the customer id, if one does.
pub(super) fn customer_column(columns: &[Column]) -> Option<usize> {
    columns
        .iter()
        .position(|c| matches!(c, Column::Fields(fields) if fields.has(CUSTOMER_ID)))
}

/// A set of canonical fields, as [`InvoiceField::bit`]s: a column's, read
/// for every row without an allocation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields(u32);

impl Fields {
    /// The fields' places in a row's values, in [`InvoiceField::ALL`]'s order.
    fn indices(self) -> impl Iterator<Item = usize> {
        let mut left = self.0;
        std::iter::from_fn(move || {
            let i = left.trailing_zeros();
            left &= left.checked_sub(1)?;
            Some(i as usize)
        })
    }

    fn has(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

/// Why a value is refused for its length.
fn too_long(value: &str, max: usize) -> String {
    format!(
        "longer than limits.field_chars ({max} characters): {}",
        quote(value)
    )
}

/// How a column name is matched, to canonical names and to the feed's
/// `columns`: trimmed and lower-cased, as exports vary in both.
pub(super) fn column_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use crate::feed::tests::{HEADER, assert_first_problem, json_invoice, load};

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
    fn one_column_gives_two_fields_us_dates_crlf() {
        // An American export: a customer column that is only an id, m/d/yyyy
        // dates without leading zeros, CRLF line ends, no email column.
        let content = "Invoice #,Customer,Date,Due,Total,Date Paid\r\n1001,4417,1/5/2026,2/4/2026,250.00,2/19/2026\r\n1002,4417,12/30/2025,1/29/2026,80.00,\r\n";
        let l = load("us.csv", content, |f| {
            f.date_format = "%m/%d/%Y".into();
            for (field, column) in [
                ("number", "Invoice #"),
                ("customer_id", "Customer"),
                ("customer_name", "Customer"),
                ("issue_date", "Date"),
                ("due_date", "Due"),
                ("amount", "Total"),
                ("paid_date", "Date Paid"),
            ] {
                f.columns.insert(field.into(), column.into());
            }
        });
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let inv = &l.invoices[0];
        assert_eq!((&*inv.number, &*inv.bill_to.id), ("1001", "4417"));
        assert_eq!(&*inv.bill_to.name, "4417");
        assert_eq!(inv.issue_date.to_string(), "2026-01-05");
        assert_eq!(
            inv.paid_date.map(|d| d.to_string()).as_deref(),
            Some("2026-02-19")
        );
        assert_eq!(&*inv.bill_to.email, "");
        assert_eq!(l.invoices[1].due_date.to_string(), "2026-01-29");
        assert_eq!(
            (l.invoices[0].origin.line, l.invoices[1].origin.line),
            (2, 3)
        );
        // A column given twice for one field is still refused.
        let l = load(
            "us.csv",
            "Customer,Client,number,issue_date,due_date,amount\n",
            |f| {
                f.columns.insert("customer_id".into(), "Customer".into());
                f.columns.insert("customer_name".into(), "Customer".into());
            },
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let l = load(
            "us.json",
            r#"[{"number":"1","Customer":4417,"issue_date":"2026-01-01","due_date":"2026-01-31","amount":1}]"#,
            |f| {
                f.columns.insert("customer_id".into(), "Customer".into());
                f.columns.insert("customer_name".into(), "Customer".into());
            },
        );
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(&*l.invoices[0].bill_to.name, "4417");
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
            assert_eq!(&*l.invoices[1].bill_to.id, "1.5");
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
    fn values_past_the_header_are_a_bad_row_unless_empty() {
        let content = format!(
            "{HEADER}F1,C1,Acme,,2026-01-01,2026-01-31,1,,,,,north,,\nF2,C1,Acme,,2026-01-01,2026-01-31,1,,,,,north,shifted\n"
        );
        let l = load("a.csv", &content, |_| {});
        assert_eq!(l.invoices.len(), 1);
        assert_eq!(l.invoices[0].extra["region"], "north");
        assert_first_problem(&l, "a.csv:3: row has 13 fields, the header has 12");
    }

    #[test]
    fn rows_whose_other_columns_are_all_empty_share_them_and_still_have_them() {
        let content = "number,customer_id,customer_name,issue_date,due_date,amount,region,po\n\
             F1,C1,A,2026-01-01,2026-01-31,1,,\n\
             F2,C1,A,2026-01-01,2026-01-31,1,north,\n\
             F3,C1,A,2026-01-01,2026-01-31,1,, \n\
             F4,C1,A,2026-01-01,2026-01-31,1,,PO-7\n";
        let l = load("a.csv", content, |_| {});
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let extra = |i: usize| -> Vec<(String, String)> {
            let e = &l.invoices[i].extra;
            e.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let pairs = |region: &str, po: &str| {
            vec![
                ("po".to_string(), po.to_string()),
                ("region".to_string(), region.to_string()),
            ]
        };
        assert_eq!(extra(0), pairs("", ""));
        assert_eq!(extra(1), pairs("north", ""));
        // A blank value is kept as written: it is not empty.
        assert_eq!(extra(2), pairs("", " "));
        assert_eq!(extra(3), pairs("", "PO-7"));
        assert_eq!(l.invoices[0].extra.get("po"), Some(""));
        assert_eq!(l.invoices[0].extra.get("phone"), None);
        // Every row whose values are all empty shares the first such row's columns.
        let more: String = (5..40)
            .map(|n| format!("F{n},C1,A,2026-01-01,2026-01-31,1,,\n"))
            .collect();
        let l = load("a.csv", &format!("{content}{more}"), |_| {});
        let empty: Vec<_> = l
            .invoices
            .iter()
            .filter(|i| i.extra.iter().all(|(_, v)| v.is_empty()))
            .collect();
        assert_eq!(empty.len(), 36);
        let shared = empty
            .iter()
            .filter(|i| i.extra.is_shared_with(&empty[1].extra));
        assert_eq!(
            shared.count(),
            36,
            "rows with only empty values share their columns"
        );
        assert!(!l.invoices[3].extra.is_shared_with(&l.invoices[4].extra));
    }

    #[test]
    fn a_customers_rows_that_name_them_alike_share_who_they_bill() {
        let content = "number,customer_id,customer_name,email,issue_date,due_date,amount\n\
                       F1,C1,Acme,a@acme.fr,2026-01-01,2026-01-31,1\n\
                       F2,C2,Globex,g@globex.fr,2026-01-01,2026-01-31,1\n\
                       F3,C1,Acme,a@acme.fr,2026-01-01,2026-01-31,1\n\
                       F4,C1,Acme SA,a@acme.fr,2026-01-01,2026-01-31,1\n\
                       F5,C1,Acme,b@acme.fr,2026-01-01,2026-01-31,1\n\
                       F6,C1,Acme,a@acme.fr,2026-01-01,2026-01-31,1\n";
        let l = load("a.csv", content, |_| {});
        let bill_to = |i: usize| &l.invoices[i].bill_to;
        let texts = |i: usize| {
            let b = bill_to(i);
            (b.id.to_string(), b.name.to_string(), b.email.to_string())
        };
        let acme = (
            "C1".to_string(),
            "Acme".to_string(),
            "a@acme.fr".to_string(),
        );
        assert_eq!(texts(0), acme);
        assert_eq!(texts(1).1, "Globex");
        assert!(std::sync::Arc::ptr_eq(bill_to(0), bill_to(2)));
        assert_eq!(
            texts(3),
            ("C1".into(), "Acme SA".into(), "a@acme.fr".into())
        );
        assert_eq!(texts(4), ("C1".into(), "Acme".into(), "b@acme.fr".into()));
        assert_eq!(texts(5), acme);
        // Whatever record a row gets, its texts are the interned ones.
        assert!(crate::model::Shared::ptr_eq(
            &bill_to(0).name,
            &bill_to(4).name
        ));
        assert!(crate::model::Shared::ptr_eq(
            &bill_to(0).email,
            &bill_to(3).email
        ));
        assert!(crate::model::Shared::ptr_eq(&bill_to(0).id, &bill_to(5).id));
    }
}
