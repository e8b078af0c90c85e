//! The journal: every reminder's identity and state, so each happens exactly once (in SQLite, or in PostgreSQL shared by several daemons).
//!
//! The state machine, the rows and their SQL are written once, here; a
//! backend ([`sqlite`], [`postgres`]) opens its database, migrates its
//! schema and runs the statements (written with SQLite's `?N`
//! placeholders, which PostgreSQL reads as `$N`).

mod copy;
mod postgres;
mod sqlite;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::{Config, JournalSetting, PostgresJournal};
use crate::error::{Error, Result};

pub use copy::Copied;

/// The journal's identity of a reminder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    pub invoice: String,
    pub policy: String,
    pub stage: String,
    pub occurrence: u32,
}

impl Identity {
    /// A stable token for file names and Message-IDs: the four parts joined by
    /// dots, each with anything but letters, digits, `-` and `_` written `%XX`,
    /// so that two identities never share a token.
    pub fn token(&self) -> String {
        reminder_token(&self.invoice, &self.policy, &self.stage, self.occurrence)
    }
}

/// [`Identity::token`] of the reminder with these parts, built in one
/// string: a preview makes one for each of a million rows.
pub fn reminder_token(invoice: &str, policy: &str, stage: &str, occurrence: u32) -> String {
    let mut token = String::with_capacity(invoice.len() + policy.len() + stage.len() + 8);
    for part in [invoice, policy, stage] {
        escape_into(&mut token, part);
        token.push('.');
    }
    token.push_str(itoa::Buffer::new().format(occurrence));
    token
}

/// The token of a message grouped per customer: customer, template, date
/// and its first invoice (so that a second message to the customer on the
/// same day, for invoices that reached a stage after the first went out,
/// has a token of its own). Five parts: never a reminder's four.
pub fn group_token(customer: &str, template: &str, date: chrono::NaiveDate, first: &str) -> String {
    let mut token = String::from("customer.");
    for part in [customer, template] {
        escape_into(&mut token, part);
        token.push('.');
    }
    crate::text::with_iso_date(date, |text| token.push_str(text));
    token.push('.');
    escape_into(&mut token, first);
    token
}

/// Which bytes a token keeps as they are: ASCII letters and digits, `-`, `_`.
/// A table, as a preview makes a token for each of a million rows.
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        plain[b] = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
        b += 1;
    }
    plain
};

/// Appends `part` with anything but letters, digits, `-` and `_` written `%XX`.
fn escape_into(out: &mut String, part: &str) {
    let plain = |b: u8| PLAIN[usize::from(b)];
    if part.bytes().all(plain) {
        out.push_str(part);
        return;
    }
    for b in part.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The life of a reminder: `planned` before delivery, then `sent` or
/// `failed`; `skipped` for an earlier stage overtaken by a later one. A
/// reminder of a stage with `approve: true` is `awaiting_approval` instead of
/// `planned`, then `approved` (`relance approve`) until the next pass
/// delivers it, or `skipped` (`relance reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Planned,
    Sent,
    Failed,
    Skipped,
    AwaitingApproval,
    Approved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::AwaitingApproval => "awaiting_approval",
            State::Approved => "approved",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "planned" => State::Planned,
            "sent" => State::Sent,
            "failed" => State::Failed,
            "skipped" => State::Skipped,
            "awaiting_approval" => State::AwaitingApproval,
            "approved" => State::Approved,
            _ => return None,
        })
    }
}

/// What the engine needs to know of one journaled reminder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Shared text: a preview simulates millions of marks of a few names.
    pub policy: Arc<str>,
    pub stage: Arc<str>,
    pub occurrence: u32,
    pub state: State,
    /// The evaluation date it belongs to.
    pub date: NaiveDate,
    /// The channel it went out on (`email`, `letter`…), as the journal
    /// records it; empty where nobody recorded one (a policy test's journal,
    /// a backtest's), and the engine reads the stage's channel then.
    #[serde(skip_serializing_if = "is_empty")]
    pub channel: Arc<str>,
}

fn is_empty(text: &Arc<str>) -> bool {
    text.is_empty()
}

/// The journal's marks grouped by invoice number.
#[derive(Debug, Default, Clone)]
pub struct JournalView {
    pub by_invoice: HashMap<String, Vec<Mark>>,
}

impl JournalView {
    pub fn marks(&self, invoice: &str) -> &[Mark] {
        self.by_invoice.get(invoice).map_or(&[], Vec::as_slice)
    }
}

/// How many reminders of one state, channel, policy and stage the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub state: String,
    pub channel: String,
    pub policy: String,
    pub stage: String,
    pub count: u64,
}

/// Which reminders awaiting approval `relance approve` or `reject` is
/// about: those of an invoice (of every invoice when `None`), of a stage
/// and of a policy when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Awaiting<'a> {
    pub invoice: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub policy: Option<&'a str>,
}

/// One row of the journal: a reminder's identity, where it stands and how it
/// went out. `history` shows it (without its message token and owner); the
/// daemon inserts new ones and reads back those it still has to deliver.
#[derive(Debug, Clone, Serialize)]
pub struct JournalRow {
    #[serde(flatten)]
    pub identity: Identity,
    /// The customer the invoice belonged to when the reminder was decided;
    /// `None` in rows journaled before customers were recorded (`history`
    /// finds theirs through the feeds).
    pub customer_id: Option<String>,
    pub state: State,
    /// The evaluation date it belongs to.
    pub date: String,
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub message_id: String,
    /// The token of the message it goes out in: its own identity's, or the
    /// one it shares with the rest of a grouped message.
    #[serde(skip)]
    pub message: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The process that planned it (the journal sets it on insert).
    #[serde(skip)]
    pub owner: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
}

impl JournalRow {
    /// A row to insert: the journal sets its attempts, owner and times.
    pub fn new(identity: Identity, state: State, date: &str) -> JournalRow {
        JournalRow {
            identity,
            customer_id: None,
            state,
            date: date.to_string(),
            channel: String::new(),
            recipient: String::new(),
            subject: String::new(),
            message_id: String::new(),
            message: String::new(),
            attempts: 0,
            last_error: None,
            owner: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    /// Reads the columns of [`ROW_COLUMNS`], in their order.
    fn read(r: &dyn Cells) -> Result<JournalRow> {
        let identity = Identity {
            invoice: r.text(0)?,
            policy: r.text(1)?,
            stage: r.text(2)?,
            occurrence: r.int(3)? as u32,
        };
        // Rows of a journal from before messages were recorded went out
        // alone, under their own identity's token.
        let message = Some(r.text(10)?)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| identity.token());
        Ok(JournalRow {
            identity,
            customer_id: r.opt_text(16)?,
            state: State::parse(&r.text(4)?).unwrap_or(State::Planned),
            date: r.text(5)?,
            channel: r.text(6)?,
            recipient: r.text(7)?,
            subject: r.text(8)?,
            message_id: r.text(9)?,
            message,
            attempts: r.int(11)? as u32,
            last_error: r.opt_text(12)?,
            owner: r.opt_int(13)?.map(|o| o as u32),
            created_at: r.text(14)?,
            updated_at: r.text(15)?,
        })
    }
}

/// The columns [`JournalRow::read`] reads.
const ROW_COLUMNS: &str = "invoice, policy, stage, occurrence, state, date, channel, recipient, subject, \
     message_id, message, attempts, last_error, owner, created_at, updated_at, customer_id";

/// The version of the journal's schema this relance writes: the same
/// numbering in both backends.
pub const SCHEMA_VERSION: i64 = sqlite::MIGRATIONS.len() as i64;

/// A value bound to a statement, in either backend.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(Some(s))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Self {
        Value::Text(Some(s))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(s: Option<&'a str>) -> Self {
        Value::Text(s)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(s: &'a Option<String>) -> Self {
        Value::Text(s.as_deref())
    }
}

impl From<u32> for Value<'_> {
    fn from(n: u32) -> Self {
        Value::Int(Some(i64::from(n)))
    }
}

impl From<Option<u32>> for Value<'_> {
    fn from(n: Option<u32>) -> Self {
        Value::Int(n.map(i64::from))
    }
}

/// The values of a statement, `?1` first.
macro_rules! values {
    ($($v:expr),* $(,)?) => { &[$(Value::from($v)),*] as &[Value] };
}

/// One row a backend read, its columns by position.
trait Cells {
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    /// The text of column `i`, shared with the rows before that had the
    /// same (`names`: a handful of policies, stages, channels for millions
    /// of rows).
    fn shared(&self, i: usize, names: &mut Vec<Arc<str>>) -> Result<Arc<str>>;
}

/// `text` as one of `names`, added when new.
fn intern(names: &mut Vec<Arc<str>>, text: &str) -> Arc<str> {
    match names.iter().find(|n| ***n == *text) {
        Some(n) => n.clone(),
        None => {
            let new: Arc<str> = Arc::from(text);
            names.push(new.clone());
            new
        }
    }
}

/// The database a journal lives in.
enum Store {
    Sqlite(sqlite::Db),
    Postgres(Box<postgres::Db>),
}

impl Store {
    fn execute(&self, sql: &str, values: &[Value]) -> Result<usize> {
        match self {
            Store::Sqlite(db) => db.execute(sql, values),
            Store::Postgres(db) => db.execute(sql, values),
        }
    }

    /// Calls `each` with every row `sql` selects.
    fn query(
        &self,
        sql: &str,
        values: &[Value],
        each: &mut dyn FnMut(&dyn Cells) -> Result<()>,
    ) -> Result<()> {
        match self {
            Store::Sqlite(db) => db.query(sql, values, each),
            Store::Postgres(db) => db.query(sql, values, each),
        }
    }

    fn begin(&self) -> Result<()> {
        match self {
            Store::Sqlite(db) => db.batch("BEGIN IMMEDIATE"),
            Store::Postgres(db) => db.begin(),
        }
    }

    fn finish(&self, commit: bool) -> Result<()> {
        match self {
            Store::Sqlite(db) => db.batch(if commit { "COMMIT" } else { "ROLLBACK" }),
            Store::Postgres(db) => db.finish(commit),
        }
    }
}

pub struct Journal {
    store: Store,
}

/// A write transaction on the journal: committed by [`Transaction::commit`],
/// rolled back when dropped without it (an error on the way, a panic), so a
/// batch is journaled whole or not at all.
pub struct Transaction<'j> {
    journal: &'j Journal,
    open: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.journal.store.finish(true)?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.journal.store.finish(false);
        }
    }
}

impl Journal {
    /// The version of the journal's schema this relance writes.
    pub const SCHEMA_VERSION: i64 = SCHEMA_VERSION;

    /// Opens the SQLite journal at `path` for reading only; `None` when it
    /// does not exist yet (a preview must not create it).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>> {
        Ok(sqlite::Db::open_read_only(path)?.map(|db| Journal {
            store: Store::Sqlite(db),
        }))
    }

    /// Opens (creating it and its folder if needed) and migrates the
    /// SQLite journal at `path`.
    pub fn open(path: &Path) -> Result<Journal> {
        Ok(Journal {
            store: Store::Sqlite(sqlite::Db::open(path)?),
        })
    }

    /// Opens and migrates the journal `config` names: its SQLite file, or
    /// its PostgreSQL database.
    pub fn open_config(config: &Config) -> Result<Journal> {
        match &config.journal {
            JournalSetting::File(path) => Journal::open(&config.path(path)),
            JournalSetting::Postgres(pg) => Journal::open_postgres(pg),
        }
    }

    /// Opens and migrates the PostgreSQL journal `setting` names.
    pub fn open_postgres(setting: &PostgresJournal) -> Result<Journal> {
        Ok(Journal {
            store: Store::Postgres(Box::new(postgres::Db::open(setting, true)?)),
        })
    }

    /// The journal `config` names, for reading only; `None` when it does
    /// not exist yet (no file, or a database relance never wrote).
    pub fn open_config_read_only(config: &Config) -> Result<Option<Journal>> {
        match &config.journal {
            JournalSetting::File(path) => Journal::open_read_only(&config.path(path)),
            JournalSetting::Postgres(pg) => {
                Ok(postgres::Db::open_read_only(pg)?.map(|db| Journal {
                    store: Store::Postgres(Box::new(db)),
                }))
            }
        }
    }

    /// What `relance check` finds of a PostgreSQL journal: `None` when it
    /// can be reached (or is a file), else why not (which variable, which
    /// server, what it answered).
    pub fn probe(config: &Config) -> Option<String> {
        match &config.journal {
            JournalSetting::File(_) => None,
            JournalSetting::Postgres(pg) => postgres::probe(pg).err().map(|e| e.to_string()),
        }
    }

    /// The rows `sql` selects, each read by `read`.
    fn rows<T>(
        &self,
        sql: &str,
        values: &[Value],
        read: impl Fn(&dyn Cells) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut rows = Vec::new();
        self.store.query(sql, values, &mut |r| {
            rows.push(read(r)?);
            Ok(())
        })?;
        Ok(rows)
    }

    /// The one row `sql` selects (an aggregate), read by `read`.
    fn row<T: Default>(
        &self,
        sql: &str,
        values: &[Value],
        read: impl Fn(&dyn Cells) -> Result<T>,
    ) -> Result<T> {
        Ok(self.rows(sql, values, read)?.pop().unwrap_or_default())
    }

    /// Whether several daemons may share this journal (PostgreSQL): one
    /// decides under the evaluation lease, all deliver what they claim.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Store::Postgres(_))
    }

    /// Takes, or renews, the evaluation lease for `instance` for `seconds`;
    /// true when `instance` holds it. An SQLite journal has one daemon:
    /// it always does.
    pub fn lease(&self, instance: &str, seconds: u64) -> Result<bool> {
        match &self.store {
            Store::Sqlite(_) => Ok(true),
            Store::Postgres(db) => db.lease(instance, seconds),
        }
    }

    /// Gives the evaluation lease up, if `instance` holds it (a clean stop:
    /// another daemon decides at once instead of after the lease's time).
    pub fn give_up_lease(&self, instance: &str) -> Result<()> {
        match &self.store {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(db) => db.give_up_lease(instance),
        }
    }

    /// Claims for `instance`, for `seconds`, the pending reminders of up to
    /// `limit` messages nobody holds (`SELECT … FOR UPDATE SKIP LOCKED`:
    /// two daemons never take the same row): `planned` ones, the claims of
    /// a daemon that died (expired), due retries and approved reminders.
    /// Each row comes with its state before the claim, and whether it was
    /// claimed before (a crash leftover, whose proof of delivery is looked
    /// for). Empty with an SQLite journal, whose one daemon delivers what
    /// it planned.
    pub fn claim_due(
        &self,
        instance: &str,
        seconds: u64,
        now: &str,
        limit: usize,
    ) -> Result<Vec<(JournalRow, bool)>> {
        match &self.store {
            Store::Sqlite(_) => Ok(Vec::new()),
            Store::Postgres(db) => db.claim_due(instance, seconds, now, limit),
        }
    }

    /// Makes the claims `instance` holds on rows still `planned` last
    /// `seconds` more: it is delivering them.
    pub fn keep_claims(&self, instance: &str, seconds: u64) -> Result<()> {
        match &self.store {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(db) => db.keep_claims(instance, seconds),
        }
    }

    /// Every reminder, grouped by invoice, for the engine.
    pub fn view(&self) -> Result<JournalView> {
        let mut view = JournalView::default();
        // A handful of names, shared by every mark.
        let mut names: Vec<Arc<str>> = Vec::new();
        self.store.query(
            "SELECT invoice, policy, stage, occurrence, state, date, channel FROM reminder ORDER BY id",
            &[],
            &mut |r| {
                let date = r.text(5)?;
                let mark = Mark {
                    policy: r.shared(1, &mut names)?,
                    stage: r.shared(2, &mut names)?,
                    occurrence: r.int(3)? as u32,
                    state: State::parse(&r.text(4)?).unwrap_or(State::Planned),
                    date: date.parse().map_err(|_| {
                        Error::Refused(format!("journal: bad date {date:?} in a reminder"))
                    })?,
                    channel: r.shared(6, &mut names)?,
                };
                view.by_invoice.entry(r.text(0)?).or_default().push(mark);
                Ok(())
            },
        )?;
        Ok(view)
    }

    /// The journal at `path`, newest first, optionally for one invoice;
    /// empty when there is no journal yet.
    pub fn history_at(path: &Path, invoice: Option<&str>) -> Result<Vec<JournalRow>> {
        match Journal::open_read_only(path)? {
            Some(journal) => journal.history(invoice),
            None => Ok(Vec::new()),
        }
    }

    /// The journal `config` names, newest first, optionally for one
    /// invoice; empty when there is no journal yet.
    pub fn history_of(config: &Config, invoice: Option<&str>) -> Result<Vec<JournalRow>> {
        match Journal::open_config_read_only(config)? {
            Some(journal) => journal.history(invoice),
            None => Ok(Vec::new()),
        }
    }

    /// The journal, newest first, optionally for one invoice.
    pub fn history(&self, invoice: Option<&str>) -> Result<Vec<JournalRow>> {
        // `history` reads a journal without migrating it: one an older
        // relance wrote has no customers yet.
        let has_customers = match &self.store {
            Store::Sqlite(db) => db.has_customers()?,
            Store::Postgres(_) => true,
        };
        let columns = if has_customers {
            Cow::Borrowed(ROW_COLUMNS)
        } else {
            Cow::Owned(ROW_COLUMNS.replace("customer_id", "NULL"))
        };
        self.rows(
            &format!(
                "SELECT {columns} FROM reminder WHERE (CAST(?1 AS TEXT) IS NULL OR invoice = ?1) \
                 ORDER BY updated_at DESC, id DESC"
            ),
            values![invoice],
            JournalRow::read,
        )
    }

    /// How many reminders the journal holds of each state, channel, policy
    /// and stage (the console's `/metrics`).
    pub fn counts(&self) -> Result<Vec<Count>> {
        self.rows(
            "SELECT state, channel, policy, stage, COUNT(*) FROM reminder \
             GROUP BY state, channel, policy, stage ORDER BY state, channel, policy, stage",
            &[],
            |r| {
                Ok(Count {
                    state: r.text(0)?,
                    channel: r.text(1)?,
                    policy: r.text(2)?,
                    stage: r.text(3)?,
                    count: r.int(4)? as u64,
                })
            },
        )
    }

    /// Records a reminder in the given state unless its identity is already
    /// there; returns whether it was new. The unique identity makes a double
    /// insert impossible even when two evaluations race. (The daemon inserts
    /// whole rows with [`Journal::insert`]; the tests use this short form.)
    #[cfg(test)]
    fn record(&self, invoice: &str, mark: &Mark, now: &str) -> Result<bool> {
        let n = self.store.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, channel, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT (invoice, policy, stage, occurrence) DO NOTHING",
            values![
                invoice,
                &*mark.policy,
                &*mark.stage,
                mark.occurrence,
                mark.state.as_str(),
                &mark.date.to_string(),
                &*mark.channel,
                now
            ],
        )?;
        Ok(n == 1)
    }

    /// The state of one reminder, for the tests.
    #[cfg(test)]
    fn state_of(
        &self,
        invoice: &str,
        policy: &str,
        stage: &str,
        occurrence: u32,
    ) -> Result<Option<State>> {
        let states = self.rows(
            "SELECT state FROM reminder WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
            values![invoice, policy, stage, occurrence],
            |r| r.text(0),
        )?;
        Ok(states.first().and_then(|s| State::parse(s)))
    }

    /// Starts a write transaction (taking the write lock at once in SQLite,
    /// so that two processes never interleave their batches).
    pub fn begin(&self) -> Result<Transaction<'_>> {
        self.store.begin()?;
        Ok(Transaction {
            journal: self,
            open: true,
        })
    }

    /// Inserts a row unless its identity is already journaled; true when inserted.
    pub fn insert(&self, row: &JournalRow, now: &str) -> Result<bool> {
        let id = &row.identity;
        let n = self.store.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, channel, recipient, subject,
                                   message_id, last_error, owner, created_at, updated_at, message, customer_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15)
             ON CONFLICT (invoice, policy, stage, occurrence) DO NOTHING",
            values![
                &id.invoice,
                &id.policy,
                &id.stage,
                id.occurrence,
                row.state.as_str(),
                &row.date,
                &row.channel,
                &row.recipient,
                &row.subject,
                &row.message_id,
                &row.last_error,
                std::process::id(),
                now,
                &row.message,
                &row.customer_id
            ],
        )?;
        Ok(n == 1)
    }

    /// [`Journal::insert`] of each row, in order; for each, whether it was
    /// inserted. PostgreSQL takes a few hundred rows per statement: a day's
    /// batch is tens of thousands of rows (skipped occurrences included), and
    /// one round trip per row made journaling it take seconds.
    pub fn insert_all(&self, rows: &[JournalRow], now: &str) -> Result<Vec<bool>> {
        if !matches!(self.store, Store::Postgres(_)) {
            return rows.iter().map(|row| self.insert(row, now)).collect();
        }
        // Fifteen values a row, well under PostgreSQL's 65,535 parameters
        // (a power of two: see below).
        const ROWS_PER_STATEMENT: usize = 512;
        const VALUES: usize = 15;
        let owner = std::process::id();
        let mut inserted = Vec::with_capacity(rows.len());
        let mut rest = rows;
        while !rest.is_empty() {
            // A connection prepares each statement once and keeps it: chunks
            // of a power of two rows give it at most ten shapes of this one,
            // whatever the sizes of the batches a long-running daemon inserts.
            let (chunk, tail) = rest.split_at(1 << rest.len().min(ROWS_PER_STATEMENT).ilog2());
            rest = tail;
            let mut sql = String::from(
                "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, channel, recipient, subject,
                                       message_id, last_error, owner, created_at, updated_at, message, customer_id)
                 VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * VALUES);
            for (i, row) in chunk.iter().enumerate() {
                let p = |k: usize| i * VALUES + k;
                let _ = write!(
                    sql,
                    "{}(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    if i == 0 { "" } else { ", " },
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9),
                    p(10),
                    p(11),
                    p(12),
                    p(13),
                    p(13),
                    p(14),
                    p(15)
                );
                let id = &row.identity;
                values.extend([
                    Value::from(&id.invoice),
                    Value::from(&id.policy),
                    Value::from(&id.stage),
                    Value::from(id.occurrence),
                    Value::from(row.state.as_str()),
                    Value::from(&row.date),
                    Value::from(&row.channel),
                    Value::from(&row.recipient),
                    Value::from(&row.subject),
                    Value::from(&row.message_id),
                    Value::from(&row.last_error),
                    Value::from(owner),
                    Value::from(now),
                    Value::from(&row.message),
                    Value::from(&row.customer_id),
                ]);
            }
            sql.push_str(
                " ON CONFLICT (invoice, policy, stage, occurrence) DO NOTHING
                  RETURNING invoice, policy, stage, occurrence",
            );
            let mut new: HashSet<(String, String, String, i64)> = HashSet::new();
            self.store.query(&sql, &values, &mut |r| {
                new.insert((r.text(0)?, r.text(1)?, r.text(2)?, r.int(3)?));
                Ok(())
            })?;
            inserted.extend(chunk.iter().map(|row| {
                let id = &row.identity;
                let key = (
                    id.invoice.clone(),
                    id.policy.clone(),
                    id.stage.clone(),
                    i64::from(id.occurrence),
                );
                new.contains(&key)
            }));
        }
        Ok(inserted)
    }

    pub fn mark_sent(&self, id: &Identity, message_id: &str, now: &str) -> Result<()> {
        self.update(
            id,
            "state = 'sent', message_id = ?5, attempts = attempts + 1, last_error = NULL, \
             next_try_at = NULL, updated_at = ?6",
            values![message_id, now],
        )
    }

    /// Takes a pending reminder for this process before acting on it: it
    /// becomes `planned` with this process as its owner, unless it changed
    /// since `pending` read it. Two runs that recover the same crash, or retry
    /// the same failure, would otherwise both deliver it; the one whose update
    /// comes second finds it taken. True when this process has it.
    pub fn claim(&self, p: &JournalRow, now: &str) -> Result<bool> {
        let id = &p.identity;
        let n = self.store.execute(
            "UPDATE reminder SET state = 'planned', owner = ?8, updated_at = ?9
             WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4
               AND state = ?5 AND owner IS NOT DISTINCT FROM ?6 AND attempts = ?7",
            values![
                &id.invoice,
                &id.policy,
                &id.stage,
                id.occurrence,
                p.state.as_str(),
                p.owner,
                p.attempts,
                std::process::id(),
                now
            ],
        )?;
        Ok(n == 1)
    }

    /// Gives back a claimed reminder that cannot go out yet (a day off, a
    /// hold): as it was, `failed` or `planned`, with no owner, for a later
    /// evaluation to take again.
    pub fn release(&self, p: &JournalRow, now: &str) -> Result<()> {
        self.update(
            &p.identity,
            "state = ?5, owner = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ?6",
            values![p.state.as_str(), now],
        )
    }

    /// Sets columns (`set`, whose parameters start at `?5`) of one reminder.
    fn update(&self, id: &Identity, set: &str, values: &[Value]) -> Result<()> {
        let key = values![&id.invoice, &id.policy, &id.stage, id.occurrence];
        let all: Vec<Value> = key.iter().chain(values).copied().collect();
        self.store.execute(
            &format!(
                "UPDATE reminder SET {set} \
                 WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4"
            ),
            &all,
        )?;
        Ok(())
    }

    /// Records a failed attempt; `next_try_at` None means it will not be retried.
    pub fn mark_failed(
        &self,
        id: &Identity,
        error: &str,
        next_try_at: Option<&str>,
        now: &str,
    ) -> Result<()> {
        self.update(
            id,
            "state = 'failed', attempts = attempts + 1, last_error = ?5, next_try_at = ?6, \
             owner = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = ?7",
            values![error, next_try_at, now],
        )
    }

    /// Records who got a message some of whose recipients refused it: the
    /// addresses that accepted it, and the refusals.
    pub fn note_refused(&self, id: &Identity, accepted: &str, refused: &str) -> Result<()> {
        self.update(
            id,
            "recipient = ?5, last_error = ?6",
            values![accepted, &format!("refused by {refused}")],
        )
    }

    /// Re-queues the failed reminders of `invoice` (of every invoice when
    /// `None`): due for a retry at `now`, with their attempts counted afresh
    /// so that a temporary failure backs off again. Returns how many.
    pub fn requeue(&self, invoice: Option<&str>, now: &str) -> Result<usize> {
        self.store.execute(
            "UPDATE reminder SET next_try_at = ?2, attempts = 0, owner = NULL, updated_at = ?2
             WHERE state = 'failed' AND (CAST(?1 AS TEXT) IS NULL OR invoice = ?1)",
            values![invoice, now],
        )
    }

    /// The failed reminders that will be retried: how many, and when the
    /// first is due.
    pub fn retries(&self) -> Result<(usize, Option<String>)> {
        self.row(
            "SELECT COUNT(*), MIN(next_try_at) FROM reminder WHERE state = 'failed' AND next_try_at IS NOT NULL",
            &[],
            |r| Ok((r.int(0)? as usize, r.opt_text(1)?)),
        )
    }

    /// How many failed reminders will not be retried unless `relance retry`
    /// re-queues them (refused for good, or out of attempts).
    pub fn given_up(&self) -> Result<usize> {
        self.row(
            "SELECT COUNT(*) FROM reminder WHERE state = 'failed' AND next_try_at IS NULL",
            &[],
            |r| Ok(r.int(0)? as usize),
        )
    }

    /// Gives up on a reminder that is no longer due (the invoice was paid or removed).
    pub fn mark_skipped(&self, id: &Identity, reason: &str, now: &str) -> Result<()> {
        self.update(
            id,
            "state = 'skipped', last_error = ?5, next_try_at = NULL, updated_at = ?6",
            values![reason, now],
        )
    }

    /// Reminders to deliver now: every `planned` one (left by a crash, or by
    /// this process a moment ago), `failed` ones whose retry time has come,
    /// and `approved` ones.
    pub fn pending(&self, now: &str) -> Result<Vec<JournalRow>> {
        self.rows_where(
            "state = 'planned' \
             OR (state IN ('failed', 'approved') AND next_try_at IS NOT NULL AND next_try_at <= ?1)",
            values![now],
        )
    }

    /// The reminders awaiting approval, in the order they were decided.
    pub fn awaiting_approval(&self) -> Result<Vec<JournalRow>> {
        self.rows_where("state = 'awaiting_approval'", &[])
    }

    /// The rows that `condition` (SQL) selects, in the order they were journaled.
    fn rows_where(&self, condition: &str, values: &[Value]) -> Result<Vec<JournalRow>> {
        self.rows(
            &format!("SELECT {ROW_COLUMNS} FROM reminder WHERE {condition} ORDER BY id"),
            values,
            JournalRow::read,
        )
    }

    /// How many reminders await approval.
    pub fn awaiting_count(&self) -> Result<usize> {
        self.row(
            "SELECT COUNT(*) FROM reminder WHERE state = 'awaiting_approval'",
            &[],
            |r| Ok(r.int(0)? as usize),
        )
    }

    /// Approves the reminders awaiting approval that `which` selects, and
    /// the others of their messages (a message goes out whole: its token
    /// names one file): `approved`, due at the next pass. Returns them.
    pub fn approve(&self, which: &Awaiting, now: &str) -> Result<Vec<Identity>> {
        self.decide_approval(
            "state = 'approved', next_try_at = ?4, owner = NULL, updated_at = ?4",
            true,
            which,
            values![now],
        )
    }

    /// Rejects the reminders awaiting approval that `which` selects:
    /// `skipped`, with `rejected: REASON` as their reason. Returns them.
    pub fn reject(&self, which: &Awaiting, reason: &str, now: &str) -> Result<Vec<Identity>> {
        self.decide_approval(
            "state = 'skipped', last_error = ?4, next_try_at = NULL, updated_at = ?5",
            false,
            which,
            values![&format!("rejected: {reason}"), now],
        )
    }

    /// Sets `set` (parameters from `?4`) on the reminders awaiting approval
    /// that `which` selects, and with `whole_messages` on the others of
    /// their messages.
    fn decide_approval(
        &self,
        set: &str,
        whole_messages: bool,
        which: &Awaiting,
        values: &[Value],
    ) -> Result<Vec<Identity>> {
        let selected = "(CAST(?1 AS TEXT) IS NULL OR invoice = ?1) \
                        AND (CAST(?2 AS TEXT) IS NULL OR stage = ?2) \
                        AND (CAST(?3 AS TEXT) IS NULL OR policy = ?3)";
        let rows = match whole_messages {
            true => format!(
                "message IN (SELECT message FROM reminder WHERE state = 'awaiting_approval' AND {selected})"
            ),
            false => selected.to_string(),
        };
        let sql = format!(
            "UPDATE reminder SET {set} WHERE state = 'awaiting_approval' AND {rows} \
             RETURNING invoice, policy, stage, occurrence"
        );
        let filter = values![which.invoice, which.stage, which.policy];
        let all: Vec<Value> = filter.iter().chain(values).copied().collect();
        self.rows(&sql, &all, |r| {
            Ok(Identity {
                invoice: r.text(0)?,
                policy: r.text(1)?,
                stage: r.text(2)?,
                occurrence: r.int(3)? as u32,
            })
        })
    }

    /// How many delivery attempts a reminder has had.
    pub fn state_attempts(&self, id: &Identity) -> Result<u32> {
        self.row(
            "SELECT attempts FROM reminder WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
            values![&id.invoice, &id.policy, &id.stage, id.occurrence],
            |r| Ok(r.int(0)? as u32),
        )
    }

    /// When the next failed reminder is due for a retry, or an approved one
    /// for its delivery.
    pub fn next_retry(&self) -> Result<Option<String>> {
        self.row(
            "SELECT MIN(next_try_at) FROM reminder WHERE state IN ('failed', 'approved')",
            &[],
            |r| r.opt_text(0),
        )
    }
}

#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
mod test_cluster;

#[cfg(test)]
mod tests {
    use super::*;

    /// Which database a test's journal is in: the tests of the journal's
    /// behaviour run on both.
    #[derive(Clone, Copy)]
    enum Backend {
        Sqlite,
        Postgres,
    }

    /// A new, empty journal on `backend`, with the folder its SQLite
    /// file is in (kept as long as the journal is used).
    fn new_journal(backend: Backend) -> (Journal, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let journal = match backend {
            Backend::Sqlite => Journal::open(&dir.path().join("relance.db")).unwrap(),
            Backend::Postgres => Journal {
                store: Store::Postgres(Box::new(
                    postgres::Db::open_url(&test_cluster::database().url).unwrap(),
                )),
            },
        };
        (journal, dir)
    }

    /// Defines the test `NAME` as `NAME::sqlite` and `NAME::postgres`.
    macro_rules! on_both_backends {
        (fn $name:ident($backend:ident: Backend) $body:block) => {
            mod $name {
                use super::*;
                fn body($backend: Backend) $body
                #[test]
                fn sqlite() {
                    body(Backend::Sqlite)
                }
                #[test]
                fn postgres() {
                    body(Backend::Postgres)
                }
            }
        };
    }

    #[test]
    fn tokens_are_stable_and_distinct() {
        let id = |inv: &str, stage: &str| Identity {
            invoice: inv.into(),
            policy: "std".into(),
            stage: stage.into(),
            occurrence: 2,
        };
        assert_eq!(
            id("F2026-0012", "overdue_1").token(),
            "F2026-0012.std.overdue_1.2"
        );
        assert_eq!(id("A/B c", "x").token(), "A%2FB%20c.std.x.2");
        assert_ne!(id("a.b", "c").token(), id("a", "b.c").token());
        // Every character below 256 (é and ÿ as their two UTF-8 bytes).
        for c in (0..=255u8).map(char::from) {
            let plain = c.is_ascii_alphanumeric() || c == '-' || c == '_';
            let escaped = match plain {
                true => c.to_string(),
                false => c.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
            };
            assert_eq!(
                id(&format!("F{c}1"), "s").token(),
                format!("F{escaped}1.std.s.2"),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_journal_that_does_not_exist_is_not_created_by_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/relance.db");
        assert!(Journal::open_read_only(&path).unwrap().is_none());
        assert!(!path.exists());
    }

    on_both_backends! {
    fn identity_is_recorded_once_and_read_back(backend: Backend) {
        let (j, _dir) = new_journal(backend);
        let mark = Mark {
            policy: "p".into(),
            stage: "s".into(),
            occurrence: 0,
            state: State::Sent,
            date: "2026-12-01".parse().unwrap(),
            channel: "email".into(),
        };
        assert!(j.record("F1", &mark, "2026-12-01T09:00:00Z").unwrap());
        assert!(
            !j.record(
                "F1",
                &Mark {
                    state: State::Skipped,
                    ..mark.clone()
                },
                "2026-12-02T09:00:00Z"
            )
            .unwrap()
        );
        assert_eq!(j.view().unwrap().marks("F1"), &[mark]);
        assert_eq!(j.state_of("F1", "p", "s", 0).unwrap(), Some(State::Sent));
        assert_eq!(j.history(Some("F1")).unwrap().len(), 1);
        assert!(j.history(Some("F2")).unwrap().is_empty());
        assert_eq!(j.history(None).unwrap().len(), 1);
        assert_eq!(j.counts().unwrap().len(), 1);
    }
    }

    use rusqlite::Connection;
    use sqlite::{MIGRATIONS, Migration};

    impl Journal {
        /// The SQLite connection, for the tests that look under the journal.
        fn sqlite_version(&self) -> i64 {
            match &self.store {
                Store::Sqlite(db) => db.version().unwrap(),
                Store::Postgres(_) => panic!("an SQLite journal"),
            }
        }

        fn conn(&self) -> &Connection {
            match &self.store {
                Store::Sqlite(db) => &db.conn,
                Store::Postgres(_) => panic!("an SQLite journal"),
            }
        }
    }

    /// A journal at `path` as relance wrote it at schema version 2 (before
    /// approvals and customers), empty.
    fn version_2_journal(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        for migration in &MIGRATIONS[..2] {
            let Migration::Sql(sql) = migration else {
                panic!("the first two steps are SQL")
            };
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn
    }

    #[test]
    fn a_journal_of_before_approvals_is_migrated_with_its_rows_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relance.db");
        {
            let conn = version_2_journal(&path);
            conn.execute(
                "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, message, created_at, updated_at)
                 VALUES ('F1', 'p', 's', 0, 'sent', '2026-12-01', 'F1.p.s.0', 't', 't')",
                [],
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.sqlite_version(), SCHEMA_VERSION);
        let rows = j.history(None).unwrap();
        assert_eq!((rows.len(), rows[0].state), (1, State::Sent));
        assert_eq!(rows[0].message, "F1.p.s.0");
        let awaiting = Mark {
            policy: "p".into(),
            stage: "notice".into(),
            occurrence: 0,
            state: State::AwaitingApproval,
            date: "2026-12-02".parse().unwrap(),
            channel: "letter".into(),
        };
        assert!(j.record("F1", &awaiting, "t").unwrap());
        assert_eq!(j.awaiting_count().unwrap(), 1);
        let index: i64 = j
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'reminder_invoice'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
        // A state the journal does not know is still refused.
        let refused = j.conn().execute("UPDATE reminder SET state = 'done'", []);
        assert!(refused.is_err());
    }

    on_both_backends! {
    fn a_batch_is_inserted_with_what_each_row_became(backend: Backend) {
        let (j, _dir) = new_journal(backend);
        let row = |invoice: String, state: State| JournalRow {
            channel: "email".into(),
            subject: format!("Relance {invoice}"),
            customer_id: Some("C1".into()),
            ..JournalRow::new(
                Identity {
                    invoice,
                    policy: "p".into(),
                    stage: "s".into(),
                    occurrence: 1,
                },
                state,
                "2026-12-01",
            )
        };
        j.insert(&row("F7".into(), State::Sent), "2026-11-30T09:00:00Z")
            .unwrap();
        // More rows than one statement takes, one of them already journaled.
        let batch: Vec<JournalRow> = (0..1200)
            .map(|i| row(format!("F{i}"), State::Planned))
            .collect();
        let inserted = j.insert_all(&batch, "2026-12-01T09:00:00Z").unwrap();
        assert_eq!(inserted.len(), 1200);
        assert_eq!(inserted.iter().filter(|new| !**new).count(), 1);
        assert!(!inserted[7] && inserted[6] && inserted[1199]);
        assert_eq!(j.state_of("F7", "p", "s", 1).unwrap(), Some(State::Sent));
        assert_eq!(j.state_of("F1199", "p", "s", 1).unwrap(), Some(State::Planned));
        let f3 = j.history(Some("F3")).unwrap();
        assert_eq!(f3.len(), 1);
        assert_eq!(f3[0].subject, "Relance F3");
        assert_eq!(f3[0].customer_id.as_deref(), Some("C1"));
        assert_eq!(j.insert_all(&batch, "2026-12-02T09:00:00Z").unwrap(), vec![false; 1200]);
    }
    }

    on_both_backends! {
    fn approving_one_reminder_of_a_message_approves_the_message(backend: Backend) {
        let (j, _dir) = new_journal(backend);
        let awaiting = |invoice: &str, stage: &str, message: &str| JournalRow {
            channel: "letter".into(),
            message: message.into(),
            ..JournalRow::new(
                Identity {
                    invoice: invoice.into(),
                    policy: "p".into(),
                    stage: stage.into(),
                    occurrence: 0,
                },
                State::AwaitingApproval,
                "2026-12-01",
            )
        };
        for row in [
            awaiting("F1", "notice", "customer.C1.notice.2026-12-01.F1"),
            awaiting("F2", "notice", "customer.C1.notice.2026-12-01.F1"),
            awaiting("F3", "notice", "F3.p.notice.0"),
            awaiting("F3", "collection", "F3.p.collection.0"),
        ] {
            assert!(j.insert(&row, "t").unwrap());
        }
        let only = |invoice| Awaiting {
            invoice: Some(invoice),
            ..Awaiting::default()
        };
        let approved = j.approve(&only("F2"), "2026-12-01T10:00:00.000Z").unwrap();
        let mut invoices: Vec<&str> = approved.iter().map(|i| i.invoice.as_str()).collect();
        invoices.sort();
        assert_eq!(invoices, ["F1", "F2"]);
        assert!(
            j.approve(&only("F1"), "t").unwrap().is_empty(),
            "done already"
        );
        let notices = Awaiting {
            stage: Some("notice"),
            ..Awaiting::default()
        };
        let rejected = j.reject(&notices, "paying Friday", "t").unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            j.state_of("F3", "p", "notice", 0).unwrap(),
            Some(State::Skipped)
        );
        assert_eq!(
            j.history(Some("F3")).unwrap()[1].last_error.as_deref(),
            Some("rejected: paying Friday")
        );
        assert_eq!(j.awaiting_count().unwrap(), 1, "F3's collection");
        // Approved reminders are due at the next pass, as a retry is.
        let due = j.pending("2026-12-01T10:00:01.000Z").unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|p| p.state == State::Approved));
    }
    }

    #[test]
    fn the_history_of_a_journal_from_before_customers_reads_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relance.db");
        let conn = version_2_journal(&path);
        conn.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, created_at, updated_at)
             VALUES ('F1', 'p', 's', 0, 'sent', '2026-12-01', 't', 't')",
            [],
        )
        .unwrap();
        drop(conn);
        let old = Journal::open_read_only(&path).unwrap().unwrap();
        let rows = old.history(None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].customer_id, None);
        drop(old);
        // Opened for writing, it is migrated: new rows keep their customer.
        let migrated = Journal::open(&path).unwrap();
        let row = JournalRow {
            customer_id: Some("C2".into()),
            ..JournalRow::new(
                Identity {
                    invoice: "F2".into(),
                    policy: "p".into(),
                    stage: "s".into(),
                    occurrence: 0,
                },
                State::Planned,
                "2026-12-02",
            )
        };
        assert!(migrated.insert(&row, "u").unwrap());
        let customers: Vec<Option<String>> = migrated
            .history(None)
            .unwrap()
            .into_iter()
            .map(|r| r.customer_id)
            .collect();
        assert_eq!(customers, [Some("C2".to_string()), None]);
    }

    #[test]
    fn daemons_opening_a_new_database_at_once_migrate_it_once() {
        let url = test_cluster::database().url;
        let opened: Vec<std::thread::JoinHandle<i64>> = (0..6)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let journal = Journal {
                        store: Store::Postgres(Box::new(postgres::Db::open_url(&url).unwrap())),
                    };
                    journal.awaiting_count().unwrap() as i64
                })
            })
            .collect();
        for opener in opened {
            assert_eq!(opener.join().unwrap(), 0);
        }
        let mut client = test_cluster::connect(&url);
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM relance_migration ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        // A state the journal does not know is refused by the database.
        let refused = client.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, created_at, updated_at)
             VALUES ('F1', 'p', 's', 0, 'done', '2026-12-01', 't', 't')",
            &[],
        );
        assert!(refused.is_err());
    }

    on_both_backends! {
    fn a_pending_reminder_is_claimed_once(backend: Backend) {
        let (j, _dir) = new_journal(backend);
        let identity = Identity {
            invoice: "F1".into(),
            policy: "p".into(),
            stage: "s".into(),
            occurrence: 0,
        };
        let row = JournalRow {
            channel: "email".into(),
            recipient: "a@example.com".into(),
            message: "F1.p.s.0".into(),
            ..JournalRow::new(identity.clone(), State::Planned, "2026-12-01")
        };
        assert!(j.insert(&row, "2026-12-01T09:00:00.000Z").unwrap());
        j.mark_failed(&identity, "451", Some("2026-12-01T09:01:00.000Z"), "t")
            .unwrap();
        let pending = j.pending("2026-12-01T09:02:00.000Z").unwrap();
        assert_eq!(pending.len(), 1);
        // Two runs read the same failed reminder; only the first takes it.
        assert!(j.claim(&pending[0], "t").unwrap());
        assert!(!j.claim(&pending[0], "t").unwrap());
        assert_eq!(j.state_of("F1", "p", "s", 0).unwrap(), Some(State::Planned));
    }
    }
}
