//! The journal (SQLite): every reminder's identity and state, so each happens exactly once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::error::{Error, Result};

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
    let _ = write!(token, "{occurrence}");
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
    let _ = write!(token, "{date}.");
    escape_into(&mut token, first);
    token
}

/// Appends `part` with anything but letters, digits, `-` and `_` written `%XX`.
fn escape_into(out: &mut String, part: &str) {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
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
    fn read(r: &rusqlite::Row) -> rusqlite::Result<JournalRow> {
        let identity = Identity {
            invoice: r.get(0)?,
            policy: r.get(1)?,
            stage: r.get(2)?,
            occurrence: r.get(3)?,
        };
        // Rows of a journal from before messages were recorded went out
        // alone, under their own identity's token.
        let message = Some(r.get::<_, String>(10)?)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| identity.token());
        Ok(JournalRow {
            identity,
            customer_id: r.get(16)?,
            state: State::parse(&r.get::<_, String>(4)?).unwrap_or(State::Planned),
            date: r.get(5)?,
            channel: r.get(6)?,
            recipient: r.get(7)?,
            subject: r.get(8)?,
            message_id: r.get(9)?,
            message,
            attempts: r.get(11)?,
            last_error: r.get(12)?,
            owner: r.get(13)?,
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
        })
    }
}

/// The columns [`JournalRow::read`] reads.
const ROW_COLUMNS: &str = "invoice, policy, stage, occurrence, state, date, channel, recipient, subject, \
     message_id, message, attempts, last_error, owner, created_at, updated_at, customer_id";

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One step of the journal's schema.
enum Migration {
    /// SQL run as written.
    Sql(&'static str),
    /// The table `reminder` built again with this text of its `CREATE TABLE`
    /// replaced (from, to): the way to change a constraint, which SQLite's
    /// `ALTER TABLE` cannot. The statement is the one SQLite holds, so the
    /// columns added by the steps before are kept, whatever they are.
    Rebuild(&'static str, &'static str),
}

/// Migrations, in order; `user_version` records how many have run.
const MIGRATIONS: [Migration; 4] = [
    Migration::Sql(
        "CREATE TABLE reminder (
        id          INTEGER PRIMARY KEY,
        invoice     TEXT NOT NULL,
        policy      TEXT NOT NULL,
        stage       TEXT NOT NULL,
        occurrence  INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('planned', 'sent', 'failed', 'skipped')),
        date        TEXT NOT NULL,
        channel     TEXT NOT NULL DEFAULT '',
        recipient   TEXT NOT NULL DEFAULT '',
        subject     TEXT NOT NULL DEFAULT '',
        message_id  TEXT NOT NULL DEFAULT '',
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        next_try_at TEXT,
        owner       INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        UNIQUE (invoice, policy, stage, occurrence)
    );
    CREATE INDEX reminder_invoice ON reminder (invoice);",
    ),
    // The token of the message a reminder went out in: a customer's
    // reminders of a day grouped into one email share it, and after a crash
    // it names the file that proves the message was delivered.
    Migration::Sql("ALTER TABLE reminder ADD COLUMN message TEXT NOT NULL DEFAULT '';"),
    // Reminders of a stage with `approve: true` wait for a person.
    Migration::Rebuild("'skipped')", "'skipped', 'awaiting_approval', 'approved')"),
    // The customer a reminder was for: a customer's history keeps the
    // invoices that have left the feeds. Rows from before stay NULL.
    Migration::Sql(
        "ALTER TABLE reminder ADD COLUMN customer_id TEXT;
        CREATE INDEX reminder_customer ON reminder (customer_id);",
    ),
];

pub struct Journal {
    conn: Connection,
    /// Named in every error, so an operator knows which file to look at.
    path: PathBuf,
}

/// A write transaction on the journal: committed by [`Transaction::commit`],
/// rolled back when dropped without it (an error on the way, a panic), so a
/// batch is journaled whole or not at all.
pub struct Transaction<'j> {
    tx: rusqlite::Transaction<'j>,
    path: &'j Path,
}

impl Transaction<'_> {
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tx.commit().map_err(|cause| Error::Journal {
            path: path.to_path_buf(),
            cause,
        })
    }
}

impl Journal {
    /// The version of the journal's schema this relance writes.
    pub const SCHEMA_VERSION: i64 = SCHEMA_VERSION;

    /// Opens the journal for reading only; `None` when it does not exist yet
    /// (a preview must not create it).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        );
        let journal = Journal {
            conn: conn.map_err(|cause| fail(path, cause))?,
            path: path.to_path_buf(),
        };
        let version = journal.version()?;
        Ok((version > 0).then_some(journal))
    }

    /// Opens (creating it and its folder if needed) and migrates the journal.
    ///
    /// SQLite answers `database is locked` at once, without waiting for the
    /// busy timeout, to a connection that switches a new journal to WAL while
    /// another process does the same; several runs started together on a new
    /// folder do exactly that. The whole opening is idempotent, so it is tried
    /// again for as long as the busy timeout would have waited.
    pub fn open(path: &Path) -> Result<Journal> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match Journal::open_once(path) {
                Err(Error::Journal { cause, .. })
                    if is_busy(&cause) && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                opened => return opened,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let journal = Journal {
            conn: Connection::open(path).map_err(|cause| fail(path, cause))?,
            path: path.to_path_buf(),
        };
        // WAL lets `preview` and `history` read while the daemon writes; FULL sync
        // makes a committed `sent` survive a power cut.
        let conn = &journal.conn;
        // The busy timeout first: several processes starting at once wait
        // for each other's lock instead of failing.
        journal.sql(conn.busy_timeout(BUSY_TIMEOUT))?;
        journal.sql(conn.pragma_update(None, "journal_mode", "WAL"))?;
        journal.sql(conn.pragma_update(None, "synchronous", "FULL"))?;
        // An up-to-date journal is opened without the write lock: another
        // process holding it (a long batch) must not stop this one from
        // starting. A migration reads the version again under the lock, so
        // that of several processes opening a new journal at once one
        // creates the tables and the others find them (not `table reminder
        // already exists`).
        if journal.version()? < SCHEMA_VERSION {
            let tx = journal.begin()?;
            let version = journal.version()?;
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                journal.migrate(&tx, migration)?;
                journal.sql(tx.tx.pragma_update(None, "user_version", (i + 1) as i64))?;
            }
            tx.commit()?;
        }
        Ok(journal)
    }

    /// Runs one migration inside the transaction `tx`.
    fn migrate(&self, tx: &Transaction, migration: &Migration) -> Result<()> {
        let (from, to) = match migration {
            Migration::Sql(sql) => return self.sql(tx.tx.execute_batch(sql)),
            Migration::Rebuild(from, to) => (from, to),
        };
        let create: String = self.sql(tx.tx.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reminder'",
            [],
            |r| r.get(0),
        ))?;
        // After a rename SQLite writes the name quoted: everything up to
        // the column list is written anew.
        let columns = create.find('(').map(|at| &create[at..]);
        let Some(columns) = columns.filter(|c| c.contains(from)) else {
            return Err(Error::Refused(format!(
                "{}: cannot migrate the journal: its table `reminder` has no {from}",
                self.path.display()
            )));
        };
        // Dropping the table drops its indexes: they are made again after.
        let indexes: Vec<String> = {
            let mut stmt = self.sql(tx.tx.prepare(
                "SELECT sql FROM sqlite_master \
                 WHERE type = 'index' AND tbl_name = 'reminder' AND sql IS NOT NULL",
            ))?;
            self.sql(self.sql(stmt.query_map([], |r| r.get(0)))?.collect())?
        };
        let mut script = format!(
            "CREATE TABLE reminder_rebuilt {};
             INSERT INTO reminder_rebuilt SELECT * FROM reminder;
             DROP TABLE reminder;
             ALTER TABLE reminder_rebuilt RENAME TO reminder;",
            columns.replacen(from, to, 1)
        );
        for index in indexes {
            script.push_str(&index);
            script.push(';');
        }
        self.sql(tx.tx.execute_batch(&script))
    }

    /// The schema version, refused when a newer relance wrote it.
    fn version(&self) -> Result<i64> {
        let version: i64 =
            self.sql(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        if version > SCHEMA_VERSION {
            return Err(Error::JournalTooNew {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// An SQLite result with the journal's file named in its error.
    fn sql<T>(&self, result: rusqlite::Result<T>) -> Result<T> {
        result.map_err(|cause| fail(&self.path, cause))
    }

    /// Every reminder, grouped by invoice, for the engine.
    pub fn view(&self) -> Result<JournalView> {
        let mut view = JournalView::default();
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT invoice, policy, stage, occurrence, state, date, channel FROM reminder ORDER BY id",
        ))?;
        // A handful of channel names, shared by every mark.
        let mut channels: Vec<Arc<str>> = Vec::new();
        let rows = self.sql(stmt.query_map([], |r| {
            let channel = r.get_ref(6)?.as_str().unwrap_or_default();
            let channel = match channels.iter().find(|c| ***c == *channel) {
                Some(c) => c.clone(),
                None => {
                    let new: Arc<str> = Arc::from(channel);
                    channels.push(new.clone());
                    new
                }
            };
            Ok((
                r.get::<_, String>(0)?,
                Mark {
                    policy: r.get::<_, String>(1)?.into(),
                    stage: r.get::<_, String>(2)?.into(),
                    occurrence: r.get(3)?,
                    state: State::parse(&r.get::<_, String>(4)?).unwrap_or(State::Planned),
                    date: r.get(5)?,
                    channel,
                },
            ))
        }))?;
        for row in rows {
            let (invoice, mark) = self.sql(row)?;
            view.by_invoice.entry(invoice).or_default().push(mark);
        }
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

    /// The journal, newest first, optionally for one invoice.
    pub fn history(&self, invoice: Option<&str>) -> Result<Vec<JournalRow>> {
        // `history` reads a journal without migrating it: one an older
        // relance wrote has no customers yet.
        let has_customers: bool = self.sql(self.conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('reminder') WHERE name = 'customer_id'",
            [],
            |r| r.get(0),
        ))?;
        let columns = if has_customers {
            Cow::Borrowed(ROW_COLUMNS)
        } else {
            Cow::Owned(ROW_COLUMNS.replace("customer_id", "NULL"))
        };
        let mut stmt = self.sql(self.conn.prepare(&format!(
            "SELECT {columns} FROM reminder WHERE (?1 IS NULL OR invoice = ?1) \
             ORDER BY updated_at DESC, id DESC"
        )))?;
        let rows = self.sql(stmt.query_map(params![invoice], JournalRow::read))?;
        self.sql(rows.collect())
    }

    /// How many reminders the journal holds of each state, channel, policy
    /// and stage (the console's `/metrics`).
    pub fn counts(&self) -> Result<Vec<Count>> {
        let mut stmt = self.sql(self.conn.prepare(
            "SELECT state, channel, policy, stage, COUNT(*) FROM reminder \
             GROUP BY state, channel, policy, stage ORDER BY state, channel, policy, stage",
        ))?;
        let rows = self.sql(stmt.query_map([], |r| {
            Ok(Count {
                state: r.get(0)?,
                channel: r.get(1)?,
                policy: r.get(2)?,
                stage: r.get(3)?,
                count: r.get(4)?,
            })
        }))?;
        self.sql(rows.collect())
    }

    /// Records a reminder in the given state unless its identity is already
    /// there; returns whether it was new. The unique identity makes a double
    /// insert impossible even when two evaluations race. (The daemon inserts
    /// whole rows with [`Journal::insert`]; the tests use this short form.)
    #[cfg(test)]
    fn record(&self, invoice: &str, mark: &Mark, now: &str) -> Result<bool> {
        let n = self.sql(self.conn.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, channel, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT (invoice, policy, stage, occurrence) DO NOTHING",
            params![invoice, &*mark.policy, &*mark.stage, mark.occurrence, mark.state.as_str(), mark.date, &*mark.channel, now],
        ))?;
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
        let state = self.conn
            .query_row(
                "SELECT state FROM reminder WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
                params![invoice, policy, stage, occurrence],
                |r| r.get::<_, String>(0),
            )
            .optional();
        Ok(self.sql(state)?.and_then(|s: String| State::parse(&s)))
    }
}

/// An SQLite error on the journal at `path`.
/// How long a process waits for another one's lock on the journal.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(cause: &rusqlite::Error) -> bool {
    matches!(cause, rusqlite::Error::SqliteFailure(e, _)
        if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn fail(path: &Path, cause: rusqlite::Error) -> Error {
    Error::Journal {
        path: path.to_path_buf(),
        cause,
    }
}

impl Journal {
    /// Starts a write transaction (taking the write lock at once, so that two
    /// processes never interleave their batches).
    pub fn begin(&self) -> Result<Transaction<'_>> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate);
        Ok(Transaction {
            tx: self.sql(tx)?,
            path: &self.path,
        })
    }

    /// Inserts a row unless its identity is already journaled; true when inserted.
    pub fn insert(&self, row: &JournalRow, now: &str) -> Result<bool> {
        let id = &row.identity;
        let n = self.sql(self.conn.execute(
            "INSERT INTO reminder (invoice, policy, stage, occurrence, state, date, channel, recipient, subject,
                                   message_id, last_error, owner, created_at, updated_at, message, customer_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15)
             ON CONFLICT (invoice, policy, stage, occurrence) DO NOTHING",
            params![
                id.invoice,
                id.policy,
                id.stage,
                id.occurrence,
                row.state.as_str(),
                row.date,
                row.channel,
                row.recipient,
                row.subject,
                row.message_id,
                row.last_error,
                std::process::id(),
                now,
                row.message,
                row.customer_id
            ],
        ))?;
        Ok(n == 1)
    }

    pub fn mark_sent(&self, id: &Identity, message_id: &str, now: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE reminder SET state = 'sent', message_id = ?5, attempts = attempts + 1, last_error = NULL,
                    next_try_at = NULL, updated_at = ?6
             WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
            params![id.invoice, id.policy, id.stage, id.occurrence, message_id, now],
        ))?;
        Ok(())
    }

    /// Takes a pending reminder for this process before acting on it: it
    /// becomes `planned` with this process as its owner, unless it changed
    /// since `pending` read it. Two runs that recover the same crash, or retry
    /// the same failure, would otherwise both deliver it; the one whose update
    /// comes second finds it taken. True when this process has it.
    pub fn claim(&self, p: &JournalRow, now: &str) -> Result<bool> {
        let id = &p.identity;
        let n = self.sql(self.conn.execute(
            "UPDATE reminder SET state = 'planned', owner = ?8, updated_at = ?9
             WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4
               AND state = ?5 AND owner IS ?6 AND attempts = ?7",
            params![
                id.invoice,
                id.policy,
                id.stage,
                id.occurrence,
                p.state.as_str(),
                p.owner,
                p.attempts,
                std::process::id(),
                now
            ],
        ))?;
        Ok(n == 1)
    }

    /// Gives back a claimed reminder that cannot go out yet (a day off, a
    /// hold): as it was, `failed` or `planned`, with no owner, for a later
    /// evaluation to take again.
    pub fn release(&self, p: &JournalRow, now: &str) -> Result<()> {
        self.update(
            &p.identity,
            "state = ?5, owner = NULL, updated_at = ?6",
            &[&p.state.as_str(), &now],
        )
    }

    /// Sets columns (`set`, whose parameters start at `?5`) of one reminder.
    fn update(&self, id: &Identity, set: &str, values: &[&dyn rusqlite::ToSql]) -> Result<()> {
        let key: [&dyn rusqlite::ToSql; 4] = [&id.invoice, &id.policy, &id.stage, &id.occurrence];
        let params: Vec<&dyn rusqlite::ToSql> =
            key.into_iter().chain(values.iter().copied()).collect();
        self.sql(self.conn.execute(
            &format!(
                "UPDATE reminder SET {set} \
                 WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4"
            ),
            params.as_slice(),
        ))?;
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
        self.sql(self.conn.execute(
            "UPDATE reminder SET state = 'failed', attempts = attempts + 1, last_error = ?5, next_try_at = ?6,
                    owner = NULL, updated_at = ?7
             WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
            params![id.invoice, id.policy, id.stage, id.occurrence, error, next_try_at, now],
        ))?;
        Ok(())
    }

    /// Records who got a message some of whose recipients refused it: the
    /// addresses that accepted it, and the refusals.
    pub fn note_refused(&self, id: &Identity, accepted: &str, refused: &str) -> Result<()> {
        self.update(
            id,
            "recipient = ?5, last_error = ?6",
            &[&accepted, &format!("refused by {refused}")],
        )
    }

    /// Re-queues the failed reminders of `invoice` (of every invoice when
    /// `None`): due for a retry at `now`, with their attempts counted afresh
    /// so that a temporary failure backs off again. Returns how many.
    pub fn requeue(&self, invoice: Option<&str>, now: &str) -> Result<usize> {
        self.sql(self.conn.execute(
            "UPDATE reminder SET next_try_at = ?2, attempts = 0, owner = NULL, updated_at = ?2
             WHERE state = 'failed' AND (?1 IS NULL OR invoice = ?1)",
            params![invoice, now],
        ))
    }

    /// The failed reminders that will be retried: how many, and when the
    /// first is due.
    pub fn retries(&self) -> Result<(usize, Option<String>)> {
        self.sql(self.conn.query_row(
            "SELECT COUNT(*), MIN(next_try_at) FROM reminder WHERE state = 'failed' AND next_try_at IS NOT NULL",
            [],
            |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)),
        ))
    }

    /// How many failed reminders will not be retried unless `relance retry`
    /// re-queues them (refused for good, or out of attempts).
    pub fn given_up(&self) -> Result<usize> {
        self.sql(self.conn.query_row(
            "SELECT COUNT(*) FROM reminder WHERE state = 'failed' AND next_try_at IS NULL",
            [],
            |r| r.get::<_, i64>(0).map(|n| n as usize),
        ))
    }

    /// Gives up on a reminder that is no longer due (the invoice was paid or removed).
    pub fn mark_skipped(&self, id: &Identity, reason: &str, now: &str) -> Result<()> {
        self.sql(self.conn.execute(
            "UPDATE reminder SET state = 'skipped', last_error = ?5, next_try_at = NULL, updated_at = ?6
             WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
            params![id.invoice, id.policy, id.stage, id.occurrence, reason, now],
        ))?;
        Ok(())
    }

    /// Reminders to deliver now: every `planned` one (left by a crash, or by
    /// this process a moment ago), `failed` ones whose retry time has come,
    /// and `approved` ones.
    pub fn pending(&self, now: &str) -> Result<Vec<JournalRow>> {
        self.rows_where(
            "state = 'planned' \
             OR (state IN ('failed', 'approved') AND next_try_at IS NOT NULL AND next_try_at <= ?1)",
            params![now],
        )
    }

    /// The reminders awaiting approval, in the order they were decided.
    pub fn awaiting_approval(&self) -> Result<Vec<JournalRow>> {
        self.rows_where("state = 'awaiting_approval'", [])
    }

    /// The rows that `condition` (SQL) selects, in the order they were journaled.
    fn rows_where(
        &self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<JournalRow>> {
        let mut stmt = self.sql(self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM reminder WHERE {condition} ORDER BY id"
        )))?;
        let rows = self.sql(stmt.query_map(values, JournalRow::read))?;
        self.sql(rows.collect())
    }

    /// How many reminders await approval.
    pub fn awaiting_count(&self) -> Result<usize> {
        self.sql(self.conn.query_row(
            "SELECT COUNT(*) FROM reminder WHERE state = 'awaiting_approval'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n as usize),
        ))
    }

    /// Approves the reminders awaiting approval that `which` selects, and
    /// the others of their messages (a message goes out whole: its token
    /// names one file): `approved`, due at the next pass. Returns them.
    pub fn approve(&self, which: &Awaiting, now: &str) -> Result<Vec<Identity>> {
        self.decide_approval(
            "state = 'approved', next_try_at = ?4, owner = NULL, updated_at = ?4",
            true,
            which,
            &[&now],
        )
    }

    /// Rejects the reminders awaiting approval that `which` selects:
    /// `skipped`, with `rejected: REASON` as their reason. Returns them.
    pub fn reject(&self, which: &Awaiting, reason: &str, now: &str) -> Result<Vec<Identity>> {
        self.decide_approval(
            "state = 'skipped', last_error = ?4, next_try_at = NULL, updated_at = ?5",
            false,
            which,
            &[&format!("rejected: {reason}"), &now],
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
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Identity>> {
        let selected = "(?1 IS NULL OR invoice = ?1) AND (?2 IS NULL OR stage = ?2) \
                        AND (?3 IS NULL OR policy = ?3)";
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
        let filter: [&dyn rusqlite::ToSql; 3] = [&which.invoice, &which.stage, &which.policy];
        let params: Vec<&dyn rusqlite::ToSql> =
            filter.into_iter().chain(values.iter().copied()).collect();
        let mut stmt = self.sql(self.conn.prepare(&sql))?;
        let rows = self.sql(stmt.query_map(params.as_slice(), |r| {
            Ok(Identity {
                invoice: r.get(0)?,
                policy: r.get(1)?,
                stage: r.get(2)?,
                occurrence: r.get(3)?,
            })
        }))?;
        self.sql(rows.collect())
    }

    /// How many delivery attempts a reminder has had.
    pub fn state_attempts(&self, id: &Identity) -> Result<u32> {
        let attempts = self.conn
            .query_row(
                "SELECT attempts FROM reminder WHERE invoice = ?1 AND policy = ?2 AND stage = ?3 AND occurrence = ?4",
                params![id.invoice, id.policy, id.stage, id.occurrence],
                |r| r.get(0),
            )
            .optional();
        Ok(self.sql(attempts)?.unwrap_or_default())
    }

    /// When the next failed reminder is due for a retry, or an approved one
    /// for its delivery.
    pub fn next_retry(&self) -> Result<Option<String>> {
        self.sql(self.conn.query_row(
            "SELECT MIN(next_try_at) FROM reminder WHERE state IN ('failed', 'approved')",
            [],
            |r| r.get(0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn identity_is_recorded_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/relance.db");
        assert!(Journal::open_read_only(&path).unwrap().is_none());
        let j = Journal::open(&path).unwrap();
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
        drop(j);
        let j = Journal::open_read_only(&path).unwrap().unwrap();
        assert_eq!(j.view().unwrap().marks("F1"), &[mark]);
        assert_eq!(j.state_of("F1", "p", "s", 0).unwrap(), Some(State::Sent));
        assert_eq!(j.history(Some("F1")).unwrap().len(), 1);
        assert!(j.history(Some("F2")).unwrap().is_empty());
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
        assert_eq!(j.version().unwrap(), SCHEMA_VERSION);
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
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'reminder_invoice'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
        // A state the journal does not know is still refused.
        let refused = j.conn.execute("UPDATE reminder SET state = 'done'", []);
        assert!(refused.is_err());
    }

    #[test]
    fn approving_one_reminder_of_a_message_approves_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("relance.db")).unwrap();
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
    fn a_pending_reminder_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("relance.db")).unwrap();
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
