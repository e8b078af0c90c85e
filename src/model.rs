//! The invoices and customers relance reasons about, as read from the feeds.
// Money and counts from the feeds: no operation may overflow unchecked.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::hash::BuildHasher;
use std::marker::PhantomData;

use hashbrown::DefaultHashBuilder;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use ecow::EcoString;
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Paid,
    Void,
    Disputed,
}

impl Status {
    /// Every status, in the order the feeds' documentation lists them.
    pub const ALL: [Status; 4] = [Status::Open, Status::Paid, Status::Void, Status::Disputed];

    /// A status in any case (`Paid`, `PAID`); empty is open. Compared in
    /// place: every row of a feed has one, and a lower-cased copy each cost
    /// an allocation.
    pub fn parse(s: &str) -> Option<Status> {
        let s = crate::text::trim(s);
        if s.is_empty() {
            return Some(Status::Open);
        }
        Status::ALL
            .into_iter()
            .find(|status| s.eq_ignore_ascii_case(status.as_str()))
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Paid => "paid",
            Status::Void => "void",
            Status::Disputed => "disputed",
        }
    }
}

/// Where an invoice came from, for messages that point a user at the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<PathBuf>,
    /// CSV / JSON Lines: the line; JSON arrays: the element index.
    pub line: usize,
}

/// Text shared by many invoices (customer, email, currency, language): one
/// allocation per distinct value, however many invoices carry it.
pub type Shared = arcstr::ArcStr;

#[derive(Debug, Clone)]
pub struct Invoice {
    pub number: EcoString,
    pub bill_to: Arc<BillTo>,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub amount: Decimal,
    pub amount_paid: Decimal,
    pub currency: Shared,
    pub status: Status,
    pub paid_date: Option<NaiveDate>,
    /// The invoice's own language, if the feed gives one.
    pub language: Option<Shared>,
    pub tags: ThinSlice<Shared>,
    pub promise_date: Option<NaiveDate>,
    pub extra: Extra,
    pub origin: Origin,
}

/// A slice shared by many invoices (a tag set, other columns) behind one
/// pointer: 8 bytes in each invoice, where `Arc<[T]>` takes 16.
pub struct ThinSlice<T>(triomphe::ThinArc<(), T>);

impl<T> std::ops::Deref for ThinSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0.slice
    }
}

impl<T> Clone for ThinSlice<T> {
    fn clone(&self) -> Self {
        ThinSlice(self.0.clone())
    }
}

impl<T> FromIterator<T> for ThinSlice<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        ThinSlice::from(items.into_iter().collect::<Vec<T>>())
    }
}

impl<T> From<Vec<T>> for ThinSlice<T> {
    fn from(items: Vec<T>) -> Self {
        ThinSlice(triomphe::ThinArc::from_header_and_iter(
            (),
            items.into_iter(),
        ))
    }
}

impl<T, const N: usize> From<[T; N]> for ThinSlice<T> {
    fn from(items: [T; N]) -> Self {
        items.into_iter().collect()
    }
}

impl<T> Default for ThinSlice<T> {
    fn default() -> Self {
        ThinSlice::from([])
    }
}

impl<T: PartialEq> PartialEq for ThinSlice<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for ThinSlice<T> {}

impl<T: Serialize> Serialize for ThinSlice<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ThinSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Who an invoice is billed to, as its row says. Rows of one customer that
/// say it alike mostly share one (the feeds give a customer's next row the
/// one they made for its last on that thread when they match): a
/// customer's texts are then read through one pointer, and an invoice is
/// 16 bytes smaller than with three.
#[derive(Clone, Default)]
pub struct BillTo {
    pub id: Shared,
    pub name: Shared,
    /// As given: one or more addresses separated by `;` (or `,`).
    pub email: Shared,
    made_with: MadeWith,
}

impl BillTo {
    pub fn new(
        id: impl Into<Shared>,
        name: impl Into<Shared>,
        email: impl Into<Shared>,
    ) -> Arc<BillTo> {
        let (name, email) = (name.into(), email.into());
        Arc::new(BillTo {
            made_with: MadeWith::new(&name, &email),
            id: id.into(),
            name,
            email,
        })
    }

    /// Whether it was made with this name and address (the feeds ask of
    /// each row whether the customer's last one bills it): compared in the
    /// allocation that holds it when they fit there, without reading the
    /// texts (two more cache misses a row at a million rows).
    pub fn made_with(&self, name: &str, email: &str) -> bool {
        match self.made_with.texts() {
            Some((own_name, own_email)) => {
                own_name == name.as_bytes() && own_email == email.as_bytes()
            }
            None => *self.name == *name && *self.email == *email,
        }
    }
}

/// A copy of the name and address a [`BillTo`] was made with, kept inside
/// it when they fit: 96 bytes an allocation instead of 48.
#[derive(Clone)]
struct MadeWith {
    /// The name's length, and both's; `u8::MAX` when they do not fit.
    name: u8,
    both: u8,
    bytes: [u8; MadeWith::ROOM],
}

impl MadeWith {
    const ROOM: usize = 54;

    fn new(name: &str, email: &str) -> MadeWith {
        let mut made = MadeWith::default();
        let both = name.len().saturating_add(email.len());
        if let (Ok(name_len), Ok(both_len), Some(room)) = (
            u8::try_from(name.len()),
            u8::try_from(both),
            made.bytes.get_mut(..both),
        ) {
            let (own_name, own_email) = room.split_at_mut(name.len());
            own_name.copy_from_slice(name.as_bytes());
            own_email.copy_from_slice(email.as_bytes());
            (made.name, made.both) = (name_len, both_len);
        }
        made
    }

    fn texts(&self) -> Option<(&[u8], &[u8])> {
        let both = self.bytes.get(..usize::from(self.both))?;
        both.split_at_checked(usize::from(self.name))
    }
}

impl Default for MadeWith {
    fn default() -> MadeWith {
        MadeWith {
            name: u8::MAX,
            both: u8::MAX,
            bytes: [0; MadeWith::ROOM],
        }
    }
}

// What it was made with is a copy of what it says, for the feeds: two
// that say the same are equal, and show the same, whatever they were made
// with (a test may change one's texts after making it).
impl PartialEq for BillTo {
    fn eq(&self, other: &BillTo) -> bool {
        (&self.id, &self.name, &self.email) == (&other.id, &other.name, &other.email)
    }
}

impl Eq for BillTo {}

impl std::fmt::Debug for BillTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillTo")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("email", &self.email)
            .finish()
    }
}

/// An invoice's other columns (`phone`, `po`, `address`…) and their values,
/// in column name order. The names are shared by all the invoices of a feed,
/// an empty value takes no allocation, and the pairs are one shared slice: a
/// million invoices with a few extra columns each hold one allocation each,
/// not a map node apiece, and consecutive rows whose values are all empty
/// (most rows of a sparse column) mostly share one (the feeds keep one per
/// converting thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra(ThinSlice<(Shared, Shared)>);

impl Extra {
    /// A column's value as written (untrimmed), `None` when absent.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(name, _)| (**name).cmp(column))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// Sets a column's value, replacing the one it had.
    pub fn insert(&mut self, column: Shared, value: Shared) {
        let mut all = self.0.to_vec();
        all.push((column, value));
        *self = Extra::from(all);
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| &**name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (&**name, &**value))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether both are one allocation.
    #[cfg(test)]
    pub(crate) fn is_shared_with(&self, other: &Extra) -> bool {
        std::ptr::eq(self.0.as_ptr(), other.0.as_ptr())
    }
}

impl From<Vec<(Shared, Shared)>> for Extra {
    /// In the order given; of two values of one column, the later one.
    fn from(mut columns: Vec<(Shared, Shared)>) -> Extra {
        columns.reverse();
        // Stable: of equal names the later given comes first, and stays.
        columns.sort_by(|(a, _), (b, _)| a.cmp(b));
        columns.dedup_by(|later, earlier| later.0 == earlier.0);
        Extra(columns.into())
    }
}

/// `extra["po"]` in tests.
#[cfg(test)]
impl std::ops::Index<&str> for Extra {
    type Output = Shared;
    fn index(&self, column: &str) -> &Shared {
        self.0
            .iter()
            .find(|(name, _)| **name == *column)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no extra column {column:?}"))
    }
}

impl Invoice {
    pub fn amount_due(&self) -> Decimal {
        // The feeds refuse a row where this overflows: saturating only keeps
        // an invoice made some other way from panicking.
        self.amount.saturating_sub(self.amount_paid)
    }

    /// Open means: status open, something left to pay, and not a credit note.
    pub fn is_open(&self) -> bool {
        self.status == Status::Open
            && self.amount > Decimal::ZERO
            && self.amount_due() > Decimal::ZERO
    }

    /// Paid, as a thank-you needs it: status `paid`, or nothing left to pay
    /// on an open invoice (not a credit note, a void or a disputed one).
    pub fn is_settled(&self) -> bool {
        match self.status {
            Status::Paid => true,
            Status::Open => self.amount > Decimal::ZERO && self.amount_due() <= Decimal::ZERO,
            Status::Void | Status::Disputed => false,
        }
    }

    /// Days since the due date; negative before it.
    pub fn days_overdue(&self, today: NaiveDate) -> i64 {
        today.signed_duration_since(self.due_date).num_days()
    }

    /// An extra column's value, trimmed; `None` when empty or absent
    /// (`phone`, `address`, `timezone`…).
    pub fn extra_field(&self, column: &str) -> Option<&str> {
        self.extra
            .get(column)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// The addresses, trimmed, without empty parts, valid or not
    /// (separated as [`crate::address::SEPARATORS`] says).
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        crate::address::split(&self.bill_to.email)
    }
}

/// Every address of these invoices, each once, in their order: where a
/// message about several of them goes.
pub fn distinct_recipients<'a>(invoices: impl IntoIterator<Item = &'a Invoice>) -> Vec<&'a str> {
    let mut all: Vec<&str> = Vec::new();
    for address in invoices.into_iter().flat_map(Invoice::recipients) {
        if !all.contains(&address) {
            all.push(address);
        }
    }
    all
}

/// A customer as the scripts see it: identity plus aggregates over all of its
/// invoices in the feeds, computed once per load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Customer {
    pub id: Shared,
    pub name: Shared,
    pub email: Shared,
    pub language: Option<Shared>,
    pub tags: Vec<Shared>,
    pub open_count: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub total_due: Decimal,
    /// Share of settled invoices (with a paid date) that were paid after their due date.
    #[serde(with = "rust_decimal::serde::str")]
    pub late_paid_ratio: Decimal,
    /// Mean days between due date and payment over settled invoices (early = 0).
    #[serde(with = "rust_decimal::serde::str")]
    pub avg_days_late: Decimal,
    /// Due dates of the open invoices, sorted, so `overdue_count` is exact for any date.
    #[serde(skip)]
    pub open_due_dates: Vec<NaiveDate>,
}

impl Customer {
    /// Open invoices whose due date is before `today`.
    pub fn overdue_count(&self, today: NaiveDate) -> i64 {
        self.open_due_dates.partition_point(|d| *d < today) as i64
    }

    /// The customer before any of its invoices: nothing open, nothing paid
    /// (its identity and tags stay). A backtest counts the invoices back in
    /// as they are issued and paid ([`Customer::count_open`], [`Payments`]).
    pub fn forget_invoices(&mut self) {
        self.open_count = 0;
        self.total_due = Decimal::ZERO;
        self.open_due_dates.clear();
        Payments::default().set_aggregates(self);
    }

    /// Counts an open invoice in `open_count`, `total_due` and the due dates.
    pub fn count_open(&mut self, inv: &Invoice) {
        self.add_open_amounts(inv);
        let at = self.open_due_dates.partition_point(|d| *d <= inv.due_date);
        self.open_due_dates.insert(at, inv.due_date);
    }

    /// Takes back [`Customer::count_open`] of the same invoice, unchanged.
    pub fn uncount_open(&mut self, inv: &Invoice) {
        self.open_count = self.open_count.saturating_sub(1);
        self.total_due = self.total_due.saturating_sub(inv.amount_due());
        let at = self.open_due_dates.partition_point(|d| *d < inv.due_date);
        if self.open_due_dates.get(at) == Some(&inv.due_date) {
            self.open_due_dates.remove(at);
        }
    }

    fn add_open_amounts(&mut self, inv: &Invoice) {
        self.open_count = self.open_count.saturating_add(1);
        // The feeds refuse the row that would take a customer's amounts
        // past what a decimal holds (feed/customers.rs).
        self.total_due = self.total_due.saturating_add(inv.amount_due());
    }
}

/// A customer's settled invoices (those with a paid date), the source of
/// `late_paid_ratio` and `avg_days_late`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Payments {
    settled: i64,
    late: i64,
    days_late: i64,
}

impl Payments {
    /// Counts an invoice due on `due` and paid on `paid` (early counts as on time).
    pub fn add(&mut self, due: NaiveDate, paid: NaiveDate) {
        let late = paid.signed_duration_since(due).num_days().max(0);
        self.settled = self.settled.saturating_add(1);
        self.late = self.late.saturating_add(i64::from(late > 0));
        self.days_late = self.days_late.saturating_add(late);
    }

    /// How many invoices were settled (have a paid date).
    pub fn settled(&self) -> i64 {
        self.settled
    }

    /// How many of them were paid after their due date.
    pub fn late(&self) -> i64 {
        self.late
    }

    /// Sets the customer's `late_paid_ratio` and `avg_days_late` from these
    /// payments (both 0 without any).
    pub fn set_aggregates(&self, customer: &mut Customer) {
        let settled = Decimal::from(self.settled);
        let ratio = Decimal::from(self.late).checked_div(settled);
        let average = Decimal::from(self.days_late).checked_div(settled);
        customer.late_paid_ratio = ratio.map_or(Decimal::ZERO, |r| r.round_dp(4).normalize());
        customer.avg_days_late = average.map_or(Decimal::ZERO, |a| a.round_dp(2).normalize());
    }
}

/// Declares [`InvoiceField`], its list [`InvoiceField::ALL`] and each
/// field's name from one list, so that they cannot disagree.
macro_rules! invoice_fields {
    ($($(#[$doc:meta])* $field:ident => $name:literal,)*) => {
        /// An invoice's fields, in one list that feeds, scripts and templates
        /// all read: the columns a feed gives (docs/contract.md §2) and those
        /// relance works out, in the order templates list them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum InvoiceField {
            $($(#[$doc])* $field,)*
        }

        impl InvoiceField {
            pub const ALL: [InvoiceField; [$($name),*].len()] = [$(InvoiceField::$field),*];

            /// Its name in feeds, scripts (`invoice.due_date`) and templates.
            pub const fn name(self) -> &'static str {
                match self {
                    $(InvoiceField::$field => $name,)*
                }
            }
        }
    };
}

invoice_fields! {
    Number => "number",
    CustomerId => "customer_id",
    CustomerName => "customer_name",
    Email => "email",
    IssueDate => "issue_date",
    DueDate => "due_date",
    Amount => "amount",
    AmountPaid => "amount_paid",
    /// `amount - amount_paid`.
    AmountDue => "amount_due",
    Currency => "currency",
    Status => "status",
    PaidDate => "paid_date",
    Language => "language",
    Tags => "tags",
    PromiseDate => "promise_date",
    /// Days since the due date on the evaluation date; negative before it.
    DaysOverdue => "days_overdue",
    /// Every other column of the feeds, by name.
    Extra => "extra",
}

impl InvoiceField {
    /// What every feed row must give.
    pub const REQUIRED: [InvoiceField; 6] = {
        use InvoiceField::*;
        [Number, CustomerId, CustomerName, IssueDate, DueDate, Amount]
    };

    /// Whether a feed's column gives it (the others are worked out).
    pub const fn in_feeds(self) -> bool {
        !matches!(
            self,
            InvoiceField::AmountDue | InvoiceField::DaysOverdue | InvoiceField::Extra
        )
    }

    /// The fields a feed's columns give, in order.
    pub fn in_feeds_all() -> impl Iterator<Item = InvoiceField> {
        Self::ALL.into_iter().filter(|f| f.in_feeds())
    }

    /// The field called `name` as a feed row stores it (its place in
    /// [`InvoiceField::ALL`]), if a feed gives one by that name.
    pub fn feed_column(name: &str) -> Option<usize> {
        Self::in_feeds_all()
            .find(|f| f.name() == name)
            .map(|f| f as usize)
    }

    /// This field in a set of fields (a bit mask: templates read few of them).
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Every field, as a set.
    pub const EVERY: u32 = (1 << Self::ALL.len()) - 1;
}

/// A place in a list of `T` (the ledger's invoices, the rulebook's
/// policies, a policy's stages), typed so that an invoice's index is never
/// taken for a policy's. Four bytes: a plan holds millions of them.
pub struct Id<T> {
    index: u32,
    of: PhantomData<fn() -> T>,
}

/// An invoice's place in the ledger's invoices.
pub type InvoiceId = Id<Invoice>;

/// A customer's place in the ledger's customers.
pub type CustomerId = Id<Customer>;

impl<T> Id<T> {
    /// The id of `list[index]`. Lists of more than 4 billion items are
    /// beyond what one process loads (a feed row takes hundreds of bytes).
    pub fn new(index: usize) -> Self {
        Id {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            of: PhantomData,
        }
    }

    /// The id of `list[index]`, for constants.
    pub const fn from_u32(index: u32) -> Self {
        Id {
            index,
            of: PhantomData,
        }
    }

    pub fn index(self) -> usize {
        self.index as usize
    }
}

// By hand: derived, they would ask `T` for what only the index needs.
impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl<T> Eq for Id<T> {}
/// An id is its index: tests and logs compare it with one.
impl<T> PartialEq<usize> for Id<T> {
    fn eq(&self, index: &usize) -> bool {
        self.index() == *index
    }
}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index.cmp(&other.index)
    }
}
impl<T> std::hash::Hash for Id<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}
impl<T> std::fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.index)
    }
}
impl<T> Default for Id<T> {
    fn default() -> Self {
        Id::new(0)
    }
}

impl<T> std::ops::Index<Id<T>> for [T] {
    type Output = T;
    fn index(&self, id: Id<T>) -> &T {
        &self[id.index()]
    }
}

impl<T> std::ops::Index<Id<T>> for Vec<T> {
    type Output = T;
    fn index(&self, id: Id<T>) -> &T {
        &self[id.index()]
    }
}

/// Finds invoices by number. It holds each invoice's index beside half of
/// its number's hash, in one sorted array, not the numbers: 8 bytes an
/// invoice, built by one sort (a million inserts into a hash table each
/// missed the cache twice) and searched by bisection.
#[derive(Debug, Default, Clone)]
pub struct NumberIndex {
    /// `hash << 32 | index`, sorted: by hash, then by index.
    sorted: Vec<u64>,
    hasher: NumberHasher,
}

impl NumberIndex {
    /// Indexes the invoices at `indices` by number, each with its number's
    /// hash by `hasher`. Also gives each invoice whose number is that of an
    /// earlier one, with the earliest one: `(later, earlier)`, in order.
    pub fn build(
        invoices: &[Invoice],
        indices: impl Iterator<Item = (usize, u32)>,
        hasher: &NumberHasher,
    ) -> (NumberIndex, Vec<(usize, usize)>) {
        let mut sorted: Vec<u64> = indices
            .map(|(i, hash)| (u64::from(hash) << 32) | i as u64)
            .collect();
        sorted.sort_unstable();
        let mut duplicates = Vec::new();
        let index = |entry: u64| entry as u32 as usize;
        let mut firsts = Vec::new();
        for run in sorted.chunk_by(|a, b| a >> 32 == b >> 32) {
            // Almost always one invoice; otherwise in the order of the feeds.
            firsts.clear();
            for &entry in run {
                let later = index(entry);
                let number = &invoices[later].number;
                match firsts
                    .iter()
                    .find(|&&e: &&usize| invoices[e].number == *number)
                {
                    Some(&first) => duplicates.push((later, first)),
                    None => firsts.push(later),
                }
            }
        }
        duplicates.sort_unstable();
        let index = NumberIndex {
            sorted,
            hasher: hasher.clone(),
        };
        (index, duplicates)
    }

    pub fn find(&self, invoices: &[Invoice], number: &str) -> Option<usize> {
        let half = u64::from(self.hasher.hash(number));
        let from = self.sorted.partition_point(|&e| e >> 32 < half);
        self.sorted[from..]
            .iter()
            .take_while(|&&e| e >> 32 == half)
            .map(|&e| e as u32 as usize)
            .find(|&i| &*invoices[i].number == number)
    }
}

/// A number's hash as a [`NumberIndex`] computes it, on any thread.
#[derive(Debug, Default, Clone)]
pub struct NumberHasher(DefaultHashBuilder);

impl NumberHasher {
    /// Half of the number's hash: the bits of both halves folded together.
    pub fn hash(&self, number: &str) -> u32 {
        let full = self.0.hash_one(number);
        (full ^ (full >> 32)) as u32
    }
}

/// What the feed loader knows of its invoices once they are read: each one's
/// place by number, and each one's customer (numbered in the order of their
/// first invoice), so the ledger is built without hashing them again.
#[derive(Debug, Default)]
pub struct LedgerIndex {
    pub by_number: NumberIndex,
    pub customer_of: Vec<u32>,
    /// Every extra column of the invoices, sorted, when the loader knows
    /// them (else they are found by reading every invoice).
    pub extra_columns: Option<Vec<String>>,
}

impl LedgerIndex {
    /// The index of invoices with unique numbers, computed.
    pub fn of(invoices: &[Invoice]) -> LedgerIndex {
        let hasher = NumberHasher::default();
        let hashes = invoices.iter().map(|inv| hasher.hash(&inv.number));
        let (by_number, _) = NumberIndex::build(invoices, hashes.enumerate(), &hasher);
        let mut customers: hashbrown::HashMap<&str, u32> = hashbrown::HashMap::new();
        let customer_of = invoices
            .iter()
            .map(|inv| {
                let next = customers.len() as u32;
                *customers.entry(&inv.bill_to.id).or_insert(next)
            })
            .collect();
        LedgerIndex {
            by_number,
            customer_of,
            extra_columns: None,
        }
    }
}

/// Where a shared text lives: the same allocation is the same text (not
/// the other way round, for text that was not interned).
pub fn allocation(text: &Shared) -> usize {
    text.as_ptr() as usize
}

/// How many threads share out a pass over this many invoices: one below
/// some tens of thousands (starting threads would cost more than they
/// save), else one per core, at most 8.
pub fn threads_for(invoices: usize) -> usize {
    match invoices {
        0..50_000 => 1,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
    }
}

/// `work(part)` for each part, each on a thread of its own but the last,
/// in the parts' order; a panic in one is raised again here. Threads that
/// end, rather than a pool's that stay: their allocator caches go with
/// them (rayon's kept 15 MB more in `check`).
pub fn in_parts<P: Send, T: Send>(
    parts: impl IntoIterator<Item = P>,
    work: impl Fn(P) -> T + Sync,
) -> Vec<T> {
    let mut parts: Vec<P> = parts.into_iter().collect();
    let Some(last) = parts.pop() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        let last = work(last);
        let mut done: Vec<T> = threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        done.push(last);
        done
    })
}

/// How many invoices a customer weighs in [`CustomerPart::shares`]:
/// measured at a million invoices of 44,000 customers (BENCHMARKS.md,
/// issue 16's sixth session).
const CUSTOMER_WEIGHT: usize = 30;

/// Sums the customers numbered from `first` on, one per slot of
/// `customers`, from their invoices in the ledger's order; gives which of
/// their invoices' `email` fields are valid (by allocation). A thread per
/// part of the numbers fills its own slots: nothing is copied to merge them.
struct CustomerPart;

impl CustomerPart {
    fn sum(
        invoices: &[Invoice],
        customer_of: &[u32],
        first: usize,
        customers: &mut [Customer],
    ) -> (hashbrown::HashSet<usize>, Vec<CustomerEmails>) {
        let mut payments: Vec<Payments> = vec![Payments::default(); customers.len()];
        // Whether a customer's invoice carried another `email` field than
        // the customer's at that point (its first, until one fills it in).
        let mut several: Vec<bool> = vec![false; customers.len()];
        // Whether each customer is yet unmet, and still lacks an address and
        // a language: known here rather than read from its text for each of
        // its invoices.
        let mut lacks: Vec<Option<(bool, bool)>> = vec![None; customers.len()];
        let mut emails: hashbrown::HashMap<usize, &str> = hashbrown::HashMap::new();
        for (i, (inv, &idx)) in read_ahead(invoices).zip(customer_of).enumerate() {
            // Whom an invoice this part sums next bills, and its customer's
            // sums, are a wait on memory each: asked for before they are read.
            if let Some((ahead, &c)) = near(invoices, customer_of, i)
                && let Some(c) = (c as usize)
                    .checked_sub(first)
                    .and_then(|c| customers.get(c))
            {
                prefetch(Arc::as_ptr(&ahead.bill_to));
                prefetch(c);
            }
            let Some(own) = (idx as usize).checked_sub(first) else {
                continue;
            };
            let Some(c) = customers.get_mut(own) else {
                continue;
            };
            let (lacks_email, lacks_language) = lacks[own].get_or_insert_with(|| {
                // The customer's identity is that of its first invoice.
                c.id = inv.bill_to.id.clone();
                c.name = inv.bill_to.name.clone();
                c.email = inv.bill_to.email.clone();
                c.language = inv.language.clone();
                (inv.bill_to.email.is_empty(), inv.language.is_none())
            });
            // Most invoices have their customer's address (the same
            // allocation). The customer's only changes from none, which is
            // no valid address, and only at an invoice counted here.
            if allocation(&inv.bill_to.email) != allocation(&c.email) {
                emails.insert(allocation(&inv.bill_to.email), &inv.bill_to.email);
                several[own] = true;
            }
            if *lacks_email && !inv.bill_to.email.is_empty() {
                c.email = inv.bill_to.email.clone();
                *lacks_email = false;
            }
            if *lacks_language && inv.language.is_some() {
                c.language = inv.language.clone();
                *lacks_language = false;
            }
            for tag in inv.tags.iter() {
                if !c.tags.contains(tag) {
                    c.tags.push(tag.clone());
                }
            }
            if inv.is_open() {
                // Sorted once all are in: inserting each where it sorts
                // would take a customer of many invoices quadratic time.
                c.add_open_amounts(inv);
                c.open_due_dates.push(inv.due_date);
            }
            if let Some(paid) = inv.paid_date {
                payments[own].add(inv.due_date, paid);
            }
        }
        for (c, paid) in customers.iter_mut().zip(payments) {
            c.open_due_dates.sort_unstable();
            c.tags.sort();
            paid.set_aggregates(c);
        }
        for c in customers.iter() {
            emails.insert(allocation(&c.email), &c.email);
        }
        let valid: hashbrown::HashSet<usize> = emails
            .into_iter()
            .filter(|(_, field)| {
                let mut addresses = crate::address::split(field).peekable();
                addresses.peek().is_some() && addresses.all(|a| crate::address::parse(a).is_ok())
            })
            .map(|(allocation, _)| allocation)
            .collect();
        let by_customer = customers
            .iter()
            .zip(several)
            .map(|(c, several)| match several {
                true => CustomerEmails::Several,
                false => CustomerEmails::One {
                    valid: valid.contains(&allocation(&c.email)),
                },
            })
            .collect();
        (valid, by_customer)
    }

    /// The customers cut into `parts` runs of about as much work each, with
    /// the number of each run's first customer. A few customers may have
    /// most of the invoices, so the work is weighed by invoice; and a run of
    /// many customers finds fewer of them in the core's cache, so each
    /// customer weighs as much as [`CUSTOMER_WEIGHT`] invoices.
    fn shares<'c>(
        customers: &'c mut [Customer],
        customer_of: &[u32],
        parts: usize,
    ) -> Vec<(usize, &'c mut [Customer])> {
        let mut weights = vec![CUSTOMER_WEIGHT; customers.len()];
        for &c in customer_of {
            if let Some(weight) = weights.get_mut(c as usize) {
                *weight = weight.saturating_add(1);
            }
        }
        let total = weights.iter().fold(0usize, |sum, w| sum.saturating_add(*w));
        let parts = parts.max(1);
        let mut shares = Vec::with_capacity(parts);
        let (mut rest, mut first, mut counted, mut part) = (customers, 0usize, 0usize, 1usize);
        for (number, weight) in weights.iter().enumerate() {
            // Cut before the customer that would take this run past its share.
            let share = total
                .saturating_mul(part)
                .checked_div(parts)
                .unwrap_or(total);
            if part < parts && number > first && counted.saturating_add(*weight) > share {
                let (run, after) = rest.split_at_mut(number.saturating_sub(first));
                shares.push((first, run));
                (rest, first, part) = (after, number, part.saturating_add(1));
            }
            counted = counted.saturating_add(*weight);
        }
        shares.push((first, rest));
        shares
    }
}

/// All the invoices of the feeds and their customers.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub invoices: Vec<Invoice>,
    pub customers: Vec<Customer>,
    /// Index into `customers` for each invoice.
    pub customer_of: Vec<u32>,
    by_number: NumberIndex,
    /// Every extra column seen, so `check` can render templates with them.
    pub extra_columns: Vec<String>,
    /// The config's `language`, the language of invoices and customers the
    /// feeds give none (docs/contract.md §2); empty until [`Ledger::with_default_language`].
    pub default_language: Shared,
    /// Each invoice's `timezone` column, parsed once; empty when the feeds
    /// have no such column ([`Ledger::with_time_zones`]).
    time_zones: Vec<Option<chrono_tz::Tz>>,
    /// The config's time zone, for invoices without one of their own.
    default_time_zone: chrono_tz::Tz,
    /// The promises to pay that stand for the feeds' `promise_date`
    /// ([`Ledger::set_promises`]): each invoice's, with the feed's date it
    /// replaced.
    promised: Vec<(InvoiceId, Option<NaiveDate>, NaiveDate)>,
    /// The `email` fields (by allocation: the feeds intern them) whose
    /// every address delivery accepts, checked once for all the invoices
    /// that share them rather than for each message.
    valid_emails: hashbrown::HashSet<usize>,
    /// Each customer's invoices' `email` fields, by customer: known once,
    /// so that a pass over every invoice need not read each one's.
    customer_emails: Vec<CustomerEmails>,
}

/// The `email` fields of a customer's invoices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerEmails {
    /// Every invoice carries the customer's own field (the same
    /// allocation), and `valid` when delivery accepts its every address.
    One { valid: bool },
    /// The invoices carry different fields (or none of the customer's own).
    Several,
}

impl Ledger {
    /// Builds the ledger from invoices with unique numbers.
    pub fn new(invoices: Vec<Invoice>) -> Ledger {
        let index = LedgerIndex::of(&invoices);
        Ledger::with_index(invoices, index)
    }

    /// Builds the ledger from invoices already indexed (the feed loader
    /// indexes them to find duplicates and check their customers' rows).
    pub fn with_index(invoices: Vec<Invoice>, index: LedgerIndex) -> Ledger {
        // A thread per core sums its share of the customers: the invoices
        // are read once, each by one core.
        let parts = threads_for(invoices.len());
        Ledger::with_index_in(invoices, index, parts)
    }

    /// [`Ledger::with_index`], with the customers shared out between `parts` threads.
    fn with_index_in(invoices: Vec<Invoice>, index: LedgerIndex, parts: usize) -> Ledger {
        let LedgerIndex {
            by_number,
            customer_of,
            extra_columns,
        } = index;
        let total = customer_of
            .iter()
            .max()
            .map_or(0, |&c| (c as usize).saturating_add(1));
        let mut customers = vec![Customer::default(); total];
        let (valid_emails, customer_emails) = in_parts(
            CustomerPart::shares(&mut customers, &customer_of, parts),
            |(first, customers)| CustomerPart::sum(&invoices, &customer_of, first, customers),
        )
        .into_iter()
        .fold(
            (hashbrown::HashSet::new(), Vec::with_capacity(total)),
            |(mut valid, mut by_customer), (part_valid, part_by_customer)| {
                valid.extend(part_valid);
                by_customer.extend(part_by_customer);
                (valid, by_customer)
            },
        );
        let extra = extra_columns.unwrap_or_else(|| {
            let mut extra: Vec<String> = Vec::new();
            for inv in &invoices {
                for key in inv.extra.keys() {
                    if !extra.iter().any(|e| e == key) {
                        extra.push(key.to_string());
                    }
                }
            }
            extra.sort();
            extra
        });
        Ledger {
            invoices,
            customers,
            customer_of,
            by_number,
            extra_columns: extra,
            default_language: Shared::default(),
            time_zones: Vec::new(),
            default_time_zone: chrono_tz::Tz::UTC,
            promised: Vec::new(),
            valid_emails,
            customer_emails,
        }
    }

    /// Asks the processor to start reading `invoice` into its cache (a
    /// plan's invoices are far apart in memory: each would be a wait on it).
    pub fn prefetch_invoice(&self, invoice: InvoiceId) {
        if let Some(inv) = self.invoices.get(invoice.index()) {
            prefetch(inv);
        }
    }

    /// For a pass over a plan at its `k`-th row (`invoice_at` gives a row's
    /// invoice): asks for the invoice [`PLAN_AHEAD`] rows ahead, whom the
    /// invoice half as far ahead bills (its invoice at hand by then) and,
    /// a quarter as far, that customer's name and address texts (its
    /// `BillTo` at hand by then).
    pub fn prefetch_plan(&self, invoice_at: impl Fn(usize) -> Option<InvoiceId>, k: usize) {
        let at = |ahead: usize| {
            invoice_at(k.saturating_add(ahead)).and_then(|i| self.invoices.get(i.index()))
        };
        if let Some(inv) = at(PLAN_AHEAD) {
            prefetch(inv);
        }
        if let Some(inv) = at(PLAN_AHEAD / 2) {
            prefetch(Arc::as_ptr(&inv.bill_to));
        }
        if let Some(inv) = at(PLAN_AHEAD / 4) {
            prefetch(inv.bill_to.name.as_ptr());
            prefetch(inv.bill_to.email.as_ptr());
        }
    }

    /// Whether every address of the invoice's `email` is one delivery
    /// accepts (and it has one), known without parsing them again.
    pub fn emails_valid(&self, inv: &Invoice) -> bool {
        self.valid_emails.contains(&allocation(&inv.bill_to.email))
    }

    /// [`Ledger::emails_valid`] for the invoice at `invoice`, answered by
    /// its customer when all of the customer's invoices carry one field: a
    /// pass over every invoice then reads a small table, not each
    /// invoice's field (a wait on memory for most invoices).
    pub fn emails_valid_at(&self, invoice: InvoiceId) -> bool {
        match self.customer_emails(self.customer_index(invoice)) {
            CustomerEmails::One { valid } => valid,
            CustomerEmails::Several => self.emails_valid(&self.invoices[invoice]),
        }
    }

    /// Whether the customer's invoices all carry its own `email` field,
    /// and whether delivery accepts its every address.
    pub fn customer_emails(&self, customer: usize) -> CustomerEmails {
        self.customer_emails
            .get(customer)
            .copied()
            .unwrap_or(CustomerEmails::Several)
    }

    /// The promises to pay set in place of the feeds' promise dates, by invoice.
    pub fn promises(&self) -> Vec<(InvoiceId, NaiveDate)> {
        self.promised
            .iter()
            .map(|&(i, _, date)| (i, date))
            .collect()
    }

    /// Sets these promises to pay (one per invoice) in place of the feeds'
    /// promise dates; the invoices of earlier promises that are no longer
    /// among them get their feed's date back.
    pub fn set_promises(&mut self, promises: &[(InvoiceId, NaiveDate)]) {
        for (invoice, feeds, _) in self.promised.drain(..) {
            self.invoices[invoice.index()].promise_date = feeds;
        }
        for &(invoice, date) in promises {
            let inv = &mut self.invoices[invoice.index()];
            self.promised.push((invoice, inv.promise_date, date));
            inv.promise_date = Some(date);
        }
    }

    /// The ledger with the config's `language` as the default of invoices and
    /// customers without one, so that scripts read the language templates use.
    pub fn with_default_language(mut self, language: &str) -> Ledger {
        self.default_language = language.into();
        self
    }

    /// The ledger with each invoice's `timezone` column read (a value that
    /// is no time zone counts as none) and `default` for the others.
    pub fn with_time_zones(mut self, default: chrono_tz::Tz) -> Ledger {
        self.default_time_zone = default;
        if self.extra_columns.iter().any(|c| c == "timezone") {
            self.time_zones = self
                .invoices
                .iter()
                .map(|inv| inv.extra_field("timezone")?.parse().ok())
                .collect();
        }
        self
    }

    /// The time zone of an invoice's recipient: its own, else the default.
    pub fn time_zone_of(&self, invoice: InvoiceId) -> chrono_tz::Tz {
        self.time_zones
            .get(invoice.index())
            .copied()
            .flatten()
            .unwrap_or(self.default_time_zone)
    }

    /// The invoices whose `timezone` column holds something that is no
    /// time zone, with what it holds.
    pub fn unknown_time_zones(&self) -> impl Iterator<Item = (InvoiceId, &str)> {
        self.time_zones
            .iter()
            .enumerate()
            .filter(|(_, tz)| tz.is_none())
            .filter_map(|(i, _)| Some((Id::new(i), self.invoices[i].extra_field("timezone")?)))
    }

    /// The language of an invoice: its own, else its customer's, else the default.
    pub fn language_of(&self, invoice: InvoiceId) -> &str {
        self.invoices[invoice]
            .language
            .as_deref()
            .unwrap_or_else(|| {
                self.customer_language(CustomerId::new(self.customer_index(invoice)))
            })
    }

    /// The language of a customer: from its invoices, else the default.
    pub fn customer_language(&self, customer: CustomerId) -> &str {
        self.customers[customer]
            .language
            .as_deref()
            .unwrap_or(&self.default_language)
    }

    pub fn find(&self, number: &str) -> Option<InvoiceId> {
        self.by_number.find(&self.invoices, number).map(Id::new)
    }

    pub fn customer_index(&self, invoice: InvoiceId) -> usize {
        self.customer_of[invoice.index()] as usize
    }

    pub fn customer(&self, invoice: InvoiceId) -> &Customer {
        &self.customers[self.customer_index(invoice)]
    }

    /// The tags of the customer `invoice` bills, as the money rules read them.
    pub fn customer_tags(&self, invoice: InvoiceId) -> impl Iterator<Item = &str> {
        self.customer(invoice).tags.iter().map(|t| &**t)
    }
}

/// Asks the processor to start reading `value` into its cache (each of
/// its lines), and goes on without waiting: a loop asks for what it will
/// read a few turns later, so that its waits on memory overlap. A million
/// invoices (128 MB) are far larger than a core's cache, and this
/// machine's processors do not see a pass's next invoices coming soon
/// enough (a pass over them took 70 ms, 47 ms when asked ahead).
pub fn prefetch<T>(value: *const T) {
    // Elsewhere, nothing is asked: the passes are the same.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
    #[cfg(target_arch = "x86_64")]
    for offset in (0..size_of::<T>().max(1)).step_by(64) {
        // SAFETY: a prefetch reads nothing the program sees, and may name
        // any address, mapped or not.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                value.cast::<i8>().wrapping_add(offset),
            );
        }
    }
}

/// How many invoices ahead of itself a pass asks for the next: enough to
/// cover a wait on memory (about 100 ns) at a few nanoseconds an invoice.
const AHEAD: usize = 24;

/// How many rows ahead of itself a pass over a plan asks for a row's
/// invoice ([`Ledger::prefetch_plan`]): a row takes about a microsecond to
/// write, a wait on memory a tenth of that; asked for 16, 8 and 4 rows
/// ahead, the 30-day preview was written in 0.70 s instead of 1.0 s.
pub const PLAN_AHEAD: usize = 16;

/// How many invoices ahead of itself a pass asks for whom one bills: its
/// invoice, asked for [`AHEAD`] invoices ahead, is at hand by then.
const NEAR: usize = 8;

/// The invoice [`NEAR`] invoices after the `i`-th, with its entry in
/// `beside` (a pass's table of the invoices' customers): what a pass asks
/// for before it reaches it.
pub fn near<'i, T>(
    invoices: &'i [Invoice],
    beside: &'i [T],
    i: usize,
) -> Option<(&'i Invoice, &'i T)> {
    let at = i.saturating_add(NEAR);
    Some((invoices.get(at)?, beside.get(at)?))
}

/// The invoices, in order, each asked of memory [`AHEAD`] invoices before
/// the pass reaches it ([`prefetch`]).
pub fn read_ahead(invoices: &[Invoice]) -> impl Iterator<Item = &Invoice> {
    invoices.iter().enumerate().map(|(i, inv)| {
        if let Some(ahead) = invoices.get(i.saturating_add(AHEAD)) {
            prefetch(ahead);
        }
        inv
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_in_any_case_and_blank_is_open() {
        for (text, status) in [
            ("", Some(Status::Open)),
            ("  ", Some(Status::Open)),
            ("open", Some(Status::Open)),
            (" Paid ", Some(Status::Paid)),
            ("PAID", Some(Status::Paid)),
            ("vOiD", Some(Status::Void)),
            ("\u{a0}Disputed\t", Some(Status::Disputed)),
            ("paid.", None),
            ("pai", None),
            ("payé", None),
            ("ｐaid", None),
        ] {
            assert_eq!(Status::parse(text), status, "{text:?}");
        }
    }

    pub fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    pub fn invoice(number: &str, customer: &str, due: &str, amount: &str) -> Invoice {
        Invoice {
            number: number.into(),
            bill_to: BillTo::new(
                customer,
                format!("Customer {customer}"),
                format!("{customer}@example.com"),
            ),
            issue_date: date(due) - chrono::Days::new(30),
            due_date: date(due),
            amount: amount.parse().unwrap(),
            amount_paid: Decimal::ZERO,
            currency: "EUR".into(),
            status: Status::Open,
            paid_date: None,
            language: None,
            tags: ThinSlice::default(),
            promise_date: None,
            extra: Extra::default(),
            origin: Origin {
                file: Arc::new("test.csv".into()),
                line: 2,
            },
        }
    }

    #[test]
    fn customers_summed_by_several_threads_are_those_one_thread_sums() {
        // Shared texts, as the feeds intern them: an address field is the
        // same allocation on every invoice that has it.
        let emails: Vec<Shared> = [
            "",
            "a@client.example",
            "not an address",
            "b@x.example; c@y.example",
        ]
        .map(Shared::from)
        .into();
        let tags: Vec<ThinSlice<Shared>> = vec![
            ThinSlice::from([]),
            ThinSlice::from(["vip".into()]),
            ThinSlice::from(["public".into(), "vip".into()]),
        ];
        let mut invoices = Vec::new();
        for i in 0..400usize {
            // A skewed spread of customers, each numbered when first met.
            let customer = (i * i + 7 * i) % 23;
            let mut inv = invoice(
                &format!("F{i}"),
                &format!("C{customer}"),
                "2026-03-31",
                "10",
            );
            inv.due_date = date("2026-01-01") + chrono::Days::new((i * 37 % 200) as u64);
            std::sync::Arc::make_mut(&mut inv.bill_to).email =
                emails[(i + customer) % emails.len()].clone();
            inv.language = (i % 3 == 0).then(|| Shared::from(["fr", "en"][i % 2]));
            inv.tags = tags[i % tags.len()].clone();
            match i % 5 {
                0 => inv.amount_paid = "4".parse().unwrap(),
                1 => {
                    inv.status = Status::Paid;
                    inv.paid_date = Some(inv.due_date + chrono::Days::new((i % 9) as u64));
                }
                2 => inv.amount = "-3".parse().unwrap(),
                _ => {}
            }
            invoices.push(inv);
        }
        let one = Ledger::with_index_in(invoices.clone(), LedgerIndex::of(&invoices), 1);
        let ids: std::collections::HashSet<&str> =
            invoices.iter().map(|inv| &*inv.bill_to.id).collect();
        assert_eq!(one.customers.len(), ids.len());
        assert!(
            one.customers
                .iter()
                .any(|c| c.late_paid_ratio > Decimal::ZERO)
        );
        assert!(one.invoices.iter().any(|inv| one.emails_valid(inv)));
        assert!(one.invoices.iter().any(|inv| !one.emails_valid(inv)));
        for parts in [2, 3, 8, 40] {
            let several =
                Ledger::with_index_in(invoices.clone(), LedgerIndex::of(&invoices), parts);
            assert_eq!(
                format!("{:?}", several.customers),
                format!("{:?}", one.customers)
            );
            assert_eq!(several.valid_emails, one.valid_emails, "{parts} parts");
            assert_eq!(
                several.customer_emails, one.customer_emails,
                "{parts} parts"
            );
        }
    }

    #[test]
    fn a_customer_whose_invoices_all_carry_its_field_is_known_by_it() {
        let (valid, invalid, other) = (
            Shared::from("a@client.example"),
            Shared::from("not an address"),
            Shared::from("b@client.example"),
        );
        let with = |number: &str, customer: &str, email: &Shared| {
            let mut inv = invoice(number, customer, "2026-03-31", "10");
            std::sync::Arc::make_mut(&mut inv.bill_to).email = email.clone();
            inv
        };
        let invoices = vec![
            with("F1", "ONE", &valid),
            with("F2", "BAD", &invalid),
            with("F3", "TWO", &valid),
            with("F4", "ONE", &valid),
            with("F5", "TWO", &other),
            // No address first, then one: not one field.
            with("F6", "LATE", &Shared::default()),
            with("F7", "LATE", &valid),
            with("F8", "BAD", &invalid),
        ];
        let ledger = Ledger::new(invoices);
        let of = |customer: &str| {
            let number = ledger
                .customers
                .iter()
                .position(|c| &*c.id == customer)
                .unwrap();
            ledger.customer_emails(number)
        };
        assert_eq!(of("ONE"), CustomerEmails::One { valid: true });
        assert_eq!(of("BAD"), CustomerEmails::One { valid: false });
        assert_eq!(of("TWO"), CustomerEmails::Several);
        assert_eq!(of("LATE"), CustomerEmails::Several);
        // What the customer says holds for each of its invoices.
        for (i, inv) in ledger.invoices.iter().enumerate() {
            if let CustomerEmails::One { valid } =
                ledger.customer_emails(ledger.customer_index(InvoiceId::new(i)))
            {
                assert_eq!(ledger.emails_valid(inv), valid, "{}", inv.number);
            }
            let at = ledger.emails_valid_at(InvoiceId::new(i));
            assert_eq!(at, ledger.emails_valid(inv), "{}", inv.number);
        }
        // Out of range (a ledger built otherwise): nothing is assumed.
        assert_eq!(ledger.customer_emails(99), CustomerEmails::Several);
    }

    #[test]
    fn reading_ahead_gives_every_invoice_once_in_order() {
        for n in [0, 1, AHEAD, AHEAD + 1, 3 * AHEAD + 5] {
            let invoices: Vec<Invoice> = (0..n)
                .map(|i| invoice(&format!("F{i}"), "C1", "2026-12-01", "10"))
                .collect();
            let read: Vec<&str> = read_ahead(&invoices).map(|i| &*i.number).collect();
            let all: Vec<&str> = invoices.iter().map(|i| &*i.number).collect();
            assert_eq!(read, all);
        }
    }

    #[test]
    fn customers_are_shared_out_by_their_invoices_and_their_number() {
        // Customer 0 has 900 invoices, customers 1 to 100 one each.
        let customer_of: Vec<u32> = (0..1000u32).map(|i| i.saturating_sub(899)).collect();
        let mut customers = vec![Customer::default(); 101];
        let shares = CustomerPart::shares(&mut customers, &customer_of, 2);
        let runs: Vec<(usize, usize)> = shares
            .iter()
            .map(|(first, run)| (*first, run.len()))
            .collect();
        // Weighed 930 and 3,100 (100 customers of one invoice, at 31 each):
        // an even cut by customers (0..51) would give the first 2,480.
        assert_eq!(runs.len(), 2);
        let (first, second) = (runs[0], runs[1]);
        assert_eq!(first.0, 0);
        assert_eq!(second.0, first.1);
        assert_eq!(first.1 + second.1, 101);
        let weight = |from: usize, to: usize| {
            (from..to)
                .map(|c| {
                    if c == 0 {
                        900 + CUSTOMER_WEIGHT
                    } else {
                        1 + CUSTOMER_WEIGHT
                    }
                })
                .sum::<usize>()
        };
        let (a, b) = (weight(0, first.1), weight(first.1, 101));
        assert!(a.abs_diff(b) <= 900 + CUSTOMER_WEIGHT, "{a} and {b}");
        assert!(first.1 > 1 && first.1 < 51, "{runs:?}");
        // More parts than customers: each gets at least one, none is lost.
        let mut few = vec![Customer::default(); 3];
        let shares = CustomerPart::shares(&mut few, &[0, 1, 2, 2], 8);
        let runs: Vec<(usize, usize)> = shares
            .iter()
            .map(|(first, run)| (*first, run.len()))
            .collect();
        assert_eq!(runs.iter().map(|r| r.1).sum::<usize>(), 3);
        assert!(
            runs.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0),
            "{runs:?}"
        );
    }

    #[test]
    fn who_an_invoice_bills_knows_what_it_was_made_with() {
        let short = BillTo::new("C1", "Dupont SA", "compta@dupont.example");
        assert!(short.made_with("Dupont SA", "compta@dupont.example"));
        assert!(!short.made_with("Dupont S", "Acompta@dupont.example"));
        assert!(!short.made_with("Dupont SA", "compta@dupont.example "));
        assert!(!short.made_with("", ""));
        // Too long to be kept inside: compared with the texts themselves.
        let name = "Établissements Dupont et Fils, Société Anonyme au capital de 10 000 €";
        let long = BillTo::new("C2", name, "compta@dupont.example");
        assert!(long.made_with(name, "compta@dupont.example"));
        assert!(!long.made_with(name, "autre@dupont.example"));
        assert!(BillTo::new("C3", "", "").made_with("", ""));
        // What it was made with shows nowhere, and two that say the same are equal.
        let mut changed = BillTo::new("C1", "Autre", "compta@dupont.example");
        std::sync::Arc::make_mut(&mut changed).name = "Dupont SA".into();
        assert_eq!(changed, short);
        assert_eq!(
            format!("{:?}", *short),
            r#"BillTo { id: "C1", name: "Dupont SA", email: "compta@dupont.example" }"#
        );
    }

    #[test]
    fn open_and_amount_due() {
        let mut inv = invoice("A", "C1", "2026-01-31", "100.00");
        assert!(inv.is_open());
        inv.amount_paid = "100".parse().unwrap();
        assert!(!inv.is_open());
        let mut credit = invoice("B", "C1", "2026-01-31", "-50");
        assert!(!credit.is_open());
        credit.amount = Decimal::ZERO;
        assert!(!credit.is_open());
        let mut void = invoice("C", "C1", "2026-01-31", "10");
        void.status = Status::Void;
        assert!(!void.is_open());
    }

    #[test]
    fn days_overdue_across_leap_day() {
        let inv = invoice("A", "C1", "2028-02-28", "1");
        assert_eq!(inv.days_overdue(date("2028-03-01")), 2);
        assert_eq!(inv.days_overdue(date("2028-02-21")), -7);
    }

    #[test]
    fn customer_aggregates() {
        let mut paid_late = invoice("P1", "C1", "2026-01-10", "10");
        paid_late.status = Status::Paid;
        paid_late.paid_date = Some(date("2026-01-30"));
        let mut paid_early = invoice("P2", "C1", "2026-02-10", "10");
        paid_early.status = Status::Paid;
        paid_early.paid_date = Some(date("2026-02-01"));
        let mut open1 = invoice("O1", "C1", "2026-03-10", "100.50");
        open1.tags = ThinSlice::from(["vip".into()]);
        let mut open2 = invoice("O2", "C1", "2026-04-10", "200");
        open2.amount_paid = "50.25".parse().unwrap();
        let other = invoice("X", "C2", "2026-03-10", "1");
        let ledger = Ledger::new(vec![paid_late, paid_early, open1, open2, other]);
        let c = ledger.customer(InvoiceId::new(0));
        assert_eq!(c.open_count, 2);
        assert_eq!(c.total_due.to_string(), "250.25");
        assert_eq!(c.late_paid_ratio.to_string(), "0.5");
        assert_eq!(c.avg_days_late.to_string(), "10");
        assert_eq!(c.tags, vec![Shared::from("vip")]);
        assert_eq!(c.overdue_count(date("2026-03-10")), 0);
        assert_eq!(c.overdue_count(date("2026-03-11")), 1);
        assert_eq!(c.overdue_count(date("2026-05-01")), 2);
        assert_eq!(ledger.customer(InvoiceId::new(4)).open_count, 1);
        assert_eq!(ledger.find("O2"), Some(InvoiceId::new(3)));
    }

    #[test]
    fn aggregates_counted_one_invoice_at_a_time_are_those_of_the_ledger() {
        let mut late = invoice("P1", "C1", "2026-01-10", "10");
        late.status = Status::Paid;
        late.paid_date = Some(date("2026-01-30"));
        let mut early = invoice("P2", "C1", "2026-02-10", "10");
        early.status = Status::Paid;
        early.paid_date = Some(date("2026-02-01"));
        let open1 = invoice("O1", "C1", "2026-04-10", "100.50");
        let open2 = invoice("O2", "C1", "2026-03-10", "200");
        let open3 = invoice("O3", "C1", "2026-03-10", "7");
        let whole = Ledger::new(vec![
            late.clone(),
            early.clone(),
            open1.clone(),
            open2.clone(),
            open3.clone(),
        ]);
        let mut c = whole.customers[0].clone();
        c.forget_invoices();
        assert_eq!((c.open_count, c.late_paid_ratio), (0, Decimal::ZERO));
        let mut payments = Payments::default();
        for paid in [&late, &early] {
            payments.add(paid.due_date, paid.paid_date.unwrap());
        }
        payments.set_aggregates(&mut c);
        for open in [&open1, &open2, &open3] {
            c.count_open(open);
        }
        let w = &whole.customers[0];
        assert_eq!(
            (c.open_count, c.total_due, &c.open_due_dates),
            (w.open_count, w.total_due, &w.open_due_dates)
        );
        assert_eq!(
            (c.late_paid_ratio, c.avg_days_late),
            (w.late_paid_ratio, w.avg_days_late)
        );
        c.uncount_open(&open2);
        assert_eq!(c.open_count, 2);
        assert_eq!(c.total_due.to_string(), "107.50");
        assert_eq!(
            c.open_due_dates,
            vec![date("2026-03-10"), date("2026-04-10")]
        );
    }

    #[test]
    fn languages_fall_back_to_the_customer_then_the_default() {
        let mut own = invoice("A", "C1", "2026-01-31", "1");
        own.language = Some("en".into());
        let customers = invoice("B", "C1", "2026-01-31", "1");
        let none = invoice("C", "C2", "2026-01-31", "1");
        let ledger = Ledger::new(vec![own, customers, none]);
        assert_eq!(ledger.language_of(InvoiceId::new(2)), "");
        let ledger = ledger.with_default_language("fr");
        assert_eq!(
            (0..3)
                .map(|i| ledger.language_of(InvoiceId::new(i)))
                .collect::<Vec<_>>(),
            vec!["en", "en", "fr"]
        );
        assert_eq!(ledger.customer_language(CustomerId::new(1)), "fr");
    }
}
