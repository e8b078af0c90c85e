//! Delivering rendered reminders: `.eml` files in the outbox, SMTP through lettre,
//! the log, and task files for letters, calls and other work for people.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls as SmtpTls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::config::{Company, Config, Delivery, Tls};
use crate::journal::Identity;
use crate::model::Invoice;
use crate::project::Message;
use crate::rules::Channel;
use crate::text::clean_line;

pub(crate) mod pdf;
pub(crate) mod tasks;

/// The sender of emails when `company.email` is empty (the default): outbox
/// and log deliveries still produce complete messages, for a person to read
/// or a later job to send, instead of failing every one of them.
pub const PLACEHOLDER_SENDER: &str = "relance@localhost";

/// The proofs of delivery a pass over pending reminders consults. The
/// worklist, which only grows, is read once, when the first `task` message
/// asks, not once per message.
pub struct Proofs<'d> {
    deliverer: &'d Deliverer,
    worklist: Option<HashSet<(String, String)>>,
}

impl Proofs<'_> {
    /// The id a message was delivered with, if what it wrote is there: after
    /// a crash, the proof that it went out. That is its outbox or task file;
    /// for a letter, its PDF too; for a task, its rows in the worklist.
    /// `None` when it was not (completely) written, or when its route
    /// writes nothing (SMTP).
    pub fn delivered(
        &mut self,
        date: chrono::NaiveDate,
        token: &str,
        channel: Channel,
    ) -> Option<String> {
        let d = self.deliverer;
        let file = d.file_for(date, token, channel)?;
        // Files are synced in batches: after a power loss, a file written
        // but not yet synced may be there and empty. Only content proves delivery.
        let written = |file: &Path| std::fs::metadata(file).is_ok_and(|m| m.len() > 0);
        let delivered = match channel {
            Channel::Letter => {
                let delivered = written(&d.pdf_for(&file)) && written(&file);
                if delivered {
                    // Its day's file may have been written without it.
                    d.letter_written(date);
                }
                delivered
            }
            Channel::Task => self
                .worklist
                .get_or_insert_with(|| tasks::worklist_messages(&d.worklist()))
                .contains(&(date.to_string(), token.to_string())),
            Channel::Email | Channel::Sms | Channel::Call => written(&file),
        };
        delivered.then(|| match channel {
            Channel::Email => d.message_id(token),
            _ => file.display().to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Address(String),
    #[error("building the email: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SMTP password: environment variable {0} is not set")]
    MissingPassword(String),
    #[error("{0}")]
    Sender(String),
    /// Every recipient of a message with several refused it.
    #[error("every recipient refused the message: {refusals}")]
    Refused { refusals: String, permanent: bool },
    /// The server did not answer within `delivery.timeout` (to connect, or
    /// to a command, or at the end of the data: lettre has one timeout).
    #[error("SMTP: timed out after {0} (no answer from the server; `delivery.timeout`)")]
    Timeout(String),
    /// Not tried: the server could not be reached for the last attempts of
    /// this pass, and each further one would only wait for the timeout.
    #[error("SMTP: not tried in this pass: {0}")]
    Deferred(String),
}

impl DeliveryError {
    /// Whether trying again cannot help: the SMTP server answered 5xx (to
    /// every recipient). 4xx answers, network errors and timeouts may pass.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Smtp(e) => e.is_permanent(),
            DeliveryError::Refused { permanent, .. } => *permanent,
            _ => false,
        }
    }

    /// Whether the server was not reached, or did not answer: no SMTP
    /// answer at all (a refused connection, a timeout, a dropped line).
    fn is_unreachable(&self) -> bool {
        match self {
            DeliveryError::Timeout(_) => true,
            DeliveryError::Smtp(e) => !answered(e),
            _ => false,
        }
    }

    /// The error of a lettre SMTP call: a read that waited `timeout` in
    /// vain says so (the OS reports it as `EAGAIN`, "Resource temporarily
    /// unavailable", which tells an operator nothing).
    fn smtp(e: lettre::transport::smtp::Error, timeout: std::time::Duration) -> DeliveryError {
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            {
                return DeliveryError::Timeout(duration_text(timeout));
            }
            source = cause.source();
        }
        DeliveryError::Smtp(e)
    }
}

/// Whether an SMTP error is the server's answer (a 4xx or 5xx code, or an
/// answer that did not parse), rather than no answer.
fn answered(e: &lettre::transport::smtp::Error) -> bool {
    e.is_transient() || e.is_permanent() || e.is_response() || e.is_client()
}

/// `30 s`, or `500 ms` for a timeout under a whole second.
fn duration_text(d: std::time::Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{} s", d.as_secs()),
        _ => format!("{} ms", d.as_millis()),
    }
}

/// Attempts in a row that do not reach the SMTP server after which the
/// rest of a pass's emails are not tried: with the server down or mute,
/// each would wait `delivery.timeout` for nothing.
pub const UNREACHABLE_ATTEMPTS: usize = 3;

/// The attempts of one pass that did not reach the SMTP server, in a row
/// (see [`UNREACHABLE_ATTEMPTS`]).
#[derive(Default)]
struct Unreachable {
    in_a_row: usize,
    /// Set when the pass stops trying: why.
    given_up: Option<String>,
}

/// A message delivered: its id (Message-ID or file), and for an email some
/// of whose recipients refused it, who got it and who did not.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub id: String,
    /// The recipients that accepted it, when others refused.
    pub accepted: Vec<String>,
    /// `address: error` for each recipient that refused it.
    pub refused: Vec<String>,
}

impl Delivered {
    fn to_all(id: String) -> Delivered {
        Delivered {
            id,
            accepted: Vec::new(),
            refused: Vec::new(),
        }
    }
}

/// The longest name of a delivered file, in bytes: the file systems' 255,
/// less the `.NAME.tmp` it is first written as.
const MAX_FILE_NAME: usize = 240;

/// The `.eml` file of an email in the outbox `dir`.
fn outbox_file(dir: &Path, date: chrono::NaiveDate, token: &str) -> PathBuf {
    dir.join(file_name(&format!("{date}.{token}"), ".eml"))
}

/// The file name of a message: `STEM.EXT`, or, when that would be too long
/// for a file system, the stem's start, `~` and a stable hash of the whole
/// stem. One function for delivery and crash recovery, so that the one
/// finds what the other wrote.
fn file_name(stem: &str, ext: &str) -> String {
    format!("{}{ext}", shortened(stem, MAX_FILE_NAME - ext.len()))
}

/// `text` when it has at most `max` bytes; else its start, `~` and a
/// stable hash of the whole text, `max` bytes at most: two texts that
/// differ anywhere stay apart.
fn shortened(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let hash = fnv1a(text.as_bytes());
    let mut keep = max.saturating_sub(17);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}~{hash:016x}", &text[..keep]).into()
}

/// The longest left part of a Message-ID (`<LEFT@domain>`), in bytes. A
/// header line may not pass 998 characters (RFC 5322), and lettre writes a
/// non-ASCII one encoded (RFC 2047), about half as long again.
const MAX_MESSAGE_ID_LEFT: usize = 200;

/// FNV-1a, 64 bits: stable across versions and platforms (std's hasher is
/// not), which file names written by one relance and read by the next need.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

enum Route {
    Outbox(PathBuf),
    Smtp(Box<SmtpTransport>),
    Log,
}

impl Deliverer {
    /// Whether delivery is over SMTP, where each `sent` is committed at once
    /// (no file can prove delivery after a crash).
    pub fn is_smtp(&self) -> bool {
        matches!(self.route, Route::Smtp(_))
    }

    /// How many emails may be sent at once (1 unless over SMTP).
    pub fn connections(&self) -> usize {
        self.connections
    }
}

/// Where reminders go, built once from the config (an SMTP pool keeps its connections).
pub struct Deliverer {
    route: Route,
    tasks: PathBuf,
    /// The sender of letters.
    company: Company,
    from: Mailbox,
    /// The Message-IDs' domain: the sender's.
    domain: String,
    /// `company.email` is empty: emails come from [`PLACEHOLDER_SENDER`].
    placeholder_sender: bool,
    /// Folders holding files written since the last [`Deliverer::flush`].
    unsynced: std::sync::Mutex<Vec<PathBuf>>,
    /// See [`Deliverer::connections`].
    connections: usize,
    /// `delivery.timeout`, to say how long a server that did not answer was awaited.
    timeout: std::time::Duration,
    /// The SMTP attempts of this pass that did not reach the server.
    unreachable: std::sync::Mutex<Unreachable>,
    /// Days whose letters were written, or found written, since the last
    /// [`Deliverer::bind_letters`].
    letter_days: std::sync::Mutex<std::collections::BTreeSet<chrono::NaiveDate>>,
}

impl Deliverer {
    pub fn new(config: &Config) -> Result<Deliverer, DeliveryError> {
        let route = match &config.delivery {
            Delivery::Outbox { dir } => Route::Outbox(config.path(dir)),
            Delivery::Log => Route::Log,
            Delivery::Smtp {
                host,
                port,
                tls,
                user,
                password_env,
                timeout,
                connections,
            } => {
                let mut builder = match tls {
                    Tls::Implicit => SmtpTransport::relay(host)?,
                    Tls::Starttls => SmtpTransport::starttls_relay(host)?,
                    Tls::None => SmtpTransport::builder_dangerous(host),
                };
                if *tls == Tls::None {
                    builder = builder.tls(SmtpTls::None);
                } else if *tls == Tls::Starttls {
                    builder = builder.tls(SmtpTls::Required(TlsParameters::new(host.clone())?));
                }
                // The timeout bounds the connection and every answer awaited;
                // the pool lets the daemon's senders each hold a connection.
                builder = builder
                    .port(*port)
                    .timeout(Some(*timeout))
                    .pool_config(PoolConfig::new().max_size(*connections));
                if let Some(user) = user {
                    let password = match password_env {
                        Some(var) => std::env::var(var)
                            .map_err(|_| DeliveryError::MissingPassword(var.clone()))?,
                        None => String::new(),
                    };
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Route::Smtp(Box::new(builder.build()))
            }
        };
        let (from, placeholder_sender) = sender(config)?;
        let (connections, timeout) = match &config.delivery {
            Delivery::Smtp {
                connections,
                timeout,
                ..
            } => ((*connections).max(1) as usize, *timeout),
            _ => (1, std::time::Duration::ZERO),
        };
        Ok(Deliverer {
            connections,
            timeout,
            unreachable: std::sync::Mutex::default(),
            route,
            tasks: config.path(&config.tasks),
            company: config.company.clone(),
            domain: from.email.domain().to_string(),
            from,
            placeholder_sender,
            unsynced: std::sync::Mutex::new(Vec::new()),
            letter_days: std::sync::Mutex::default(),
        })
    }

    /// Makes every file written since the last call durable. The journal
    /// marks a reminder `sent` only after this: a file is the proof of a
    /// delivery, so it must be on disk before the journal says so. One sync
    /// of the file system per batch instead of two per file is what lets
    /// the outbox take thousands of reminders a second.
    pub fn flush(&self) -> Result<(), DeliveryError> {
        let folders = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(|e| e.into_inner()));
        for dir in folders {
            sync_folder(&dir).map_err(|source| DeliveryError::Io { path: dir, source })?;
        }
        Ok(())
    }

    /// Writes a delivered file (atomically, so it is absent or complete);
    /// it is made durable by the next [`Deliverer::flush`].
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
        write_atomically(path, bytes)?;
        self.unsynced(path);
        Ok(())
    }

    /// Notes that `path` changed: the next [`Deliverer::flush`] syncs its
    /// folder (a file written, or appended to, and its name).
    fn unsynced(&self, path: &Path) {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut unsynced = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        if !unsynced.contains(&dir) {
            unsynced.push(dir);
        }
    }

    /// Whether emails come from [`PLACEHOLDER_SENDER`] because `company.email`
    /// is empty (the daemon warns about it when it starts).
    pub fn uses_placeholder_sender(&self) -> bool {
        self.placeholder_sender
    }

    /// The Message-ID of the message with this token (a reminder's
    /// [`Identity::token`], or a grouped message's), shortened with a hash
    /// as file names are when the token is too long for a header line; the
    /// journal keeps the whole token.
    pub fn message_id(&self, token: &str) -> String {
        format!(
            "<{}@{}>",
            shortened(token, MAX_MESSAGE_ID_LEFT),
            self.domain
        )
    }

    /// The file a message is written to, if its route writes files: the
    /// proof, after a crash, that it was delivered.
    fn file_for(&self, date: chrono::NaiveDate, token: &str, channel: Channel) -> Option<PathBuf> {
        match (channel, &self.route) {
            (Channel::Email, Route::Outbox(dir)) => Some(outbox_file(dir, date, token)),
            (Channel::Email, _) => None,
            (channel, _) => Some(self.task_file(date, token, channel)),
        }
    }

    /// The text file of a message for a person (a letter, a call sheet…).
    fn task_file(&self, date: chrono::NaiveDate, token: &str, channel: Channel) -> PathBuf {
        let extension = format!(".{}.txt", channel.as_str());
        self.tasks
            .join(file_name(&format!("{date}.{token}"), &extension))
    }

    /// The PDF of a letter, beside its text.
    fn pdf_for(&self, txt: &Path) -> PathBuf {
        txt.with_extension("pdf")
    }

    /// The file of all the letters of `date`, for one print run.
    fn letters_of_the_day(&self, date: chrono::NaiveDate) -> PathBuf {
        self.tasks.join(format!("letters-{date}.pdf"))
    }

    /// Notes that a letter of `date` is in the tasks folder: the next
    /// [`Deliverer::bind_letters`] writes that day's file again.
    fn letter_written(&self, date: chrono::NaiveDate) {
        self.letter_days
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(date);
    }

    /// Writes `tasks/letters-DATE.pdf` for each day a letter was written
    /// (or found written after a crash) since the last call: every letter
    /// of that day, in the order of their file names, each starting on a
    /// new page, so that one print run posts them all. It is made of the
    /// day's letter files, so it holds the letters of the day's earlier
    /// runs too. Written atomically, then synced; a day that fails is kept
    /// for the next call. Returns the files written.
    pub fn bind_letters(&self) -> Result<Vec<PathBuf>, DeliveryError> {
        let days = std::mem::take(&mut *self.letter_days.lock().unwrap_or_else(|e| e.into_inner()));
        let mut written = Vec::new();
        let mut failure = None;
        for date in days {
            match self.bind_letters_of(date) {
                Ok(Some(path)) => written.push(path),
                Ok(None) => {}
                Err(e) => {
                    self.letter_written(date);
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.flush()?;
        Ok(written)
    }

    /// Writes the file of `date`'s letters; `None` when there is none.
    fn bind_letters_of(&self, date: chrono::NaiveDate) -> Result<Option<PathBuf>, DeliveryError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DeliveryError::Io { path, source }
        };
        let prefix = format!("{date}.");
        let mut letters: Vec<PathBuf> = std::fs::read_dir(&self.tasks)
            .map_err(io(&self.tasks))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".letter.txt"))
            })
            .collect();
        if letters.is_empty() {
            return Ok(None);
        }
        letters.sort();
        let texts = letters
            .iter()
            .map(|path| std::fs::read_to_string(path).map_err(io(path)))
            .collect::<Result<Vec<String>, _>>()?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let path = self.letters_of_the_day(date);
        self.write(
            &path,
            &pdf::a4_documents(&texts, &format!("letters {date}")),
        )?;
        Ok(Some(path))
    }

    /// The worklist `task` messages append their rows to.
    fn worklist(&self) -> PathBuf {
        self.tasks.join(tasks::WORKLIST)
    }

    /// What proves, during one pass over pending reminders, that messages
    /// went out (see [`Proofs::delivered`]).
    pub fn proofs(&self) -> Proofs<'_> {
        Proofs {
            deliverer: self,
            worklist: None,
        }
    }

    /// Delivers a rendered message (`r.message` names it) about `items`, the
    /// invoices it covers (one, or a customer's several when grouped), each
    /// with the identity of the reminder it stands for; returns
    /// its Message-ID (emails) or file (the other channels, whose files carry
    /// the invoices' facts).
    pub fn deliver(
        &self,
        r: &Message,
        items: &[(&Invoice, &Identity)],
    ) -> Result<Delivered, DeliveryError> {
        if r.channel != Channel::Email {
            return self.deliver_work(r, items).map(Delivered::to_all);
        }
        let id = self.message_id(&r.message);
        match &self.route {
            Route::Log => {
                tracing::info!(invoice = %r.invoice, to = %r.to, cc = %r.cc.join(", "), bcc = %r.bcc.join(", "),
                    subject = %r.subject, message_id = %id, "email (log delivery)");
                Ok(Delivered::to_all(id))
            }
            Route::Outbox(dir) => {
                let email = self.email(r, &id)?;
                let path = outbox_file(dir, r.date, &r.message);
                self.write(&path, &email.formatted())?;
                Ok(Delivered::to_all(id))
            }
            Route::Smtp(transport) => {
                let email = self.email(r, &id)?;
                if let Some(why) = &self.unreachable().given_up {
                    return Err(DeliveryError::Deferred(why.clone()));
                }
                let sent = send_to_each(transport, &email, id, self.timeout);
                self.count_unreachable(sent.as_ref().err());
                sent
            }
        }
    }

    /// Starts a pass: its SMTP attempts are counted afresh (see
    /// [`UNREACHABLE_ATTEMPTS`]), so that a server back since the last
    /// pass is tried again.
    pub fn begin_pass(&self) {
        *self.unreachable() = Unreachable::default();
    }

    fn unreachable(&self) -> std::sync::MutexGuard<'_, Unreachable> {
        self.unreachable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an SMTP attempt that did not reach the server, or resets the
    /// count on one that did; gives up on the pass (and logs it, once) at
    /// [`UNREACHABLE_ATTEMPTS`] in a row.
    fn count_unreachable(&self, error: Option<&DeliveryError>) {
        let mut unreachable = self.unreachable();
        match error {
            Some(e) if e.is_unreachable() => unreachable.in_a_row += 1,
            _ => unreachable.in_a_row = 0,
        }
        if let Some(e) = error
            && unreachable.in_a_row >= UNREACHABLE_ATTEMPTS
            && unreachable.given_up.is_none()
        {
            let why = format!(
                "the server failed the last {} attempts in a row (the last: {e}); retried at the next pass",
                unreachable.in_a_row
            );
            tracing::warn!(attempts = unreachable.in_a_row, error = %e,
                "SMTP server unreachable: {} attempts in a row failed; the other emails of this pass are not tried, \
                 they fail as temporary failures and are retried after their backoff", unreachable.in_a_row);
            unreachable.given_up = Some(why);
        }
    }

    /// Writes the files of a message for a person to act on (see
    /// [`crate::tasks`]); returns the text file, which the journal names.
    /// Each is written so that the last thing written is the proof
    /// [`Deliverer::delivered`] looks for: a letter's PDF before its text,
    /// a task's text before its rows in the worklist.
    fn deliver_work(
        &self,
        r: &Message,
        items: &[(&Invoice, &Identity)],
    ) -> Result<String, DeliveryError> {
        let path = self.task_file(r.date, &r.message, r.channel);
        // A missing phone number or address does not hold the message: the
        // person who acts on it can look them up, and is told to.
        let missing = match r.channel {
            Channel::Sms | Channel::Call if tasks::phone_of(items).is_none() => {
                Some("phone number (the feed's `phone` column is empty)")
            }
            Channel::Letter if tasks::address_of(items).is_none() => {
                Some("postal address (the feed's `address` column is empty)")
            }
            _ => None,
        };
        if let Some(what) = missing {
            tracing::warn!(invoice = %r.invoice, policy = %r.policy, stage = %r.stage, channel = r.channel.as_str(),
                "no {what} for this {}: {} written without one", r.channel.as_str(), path.display());
        }
        match r.channel {
            Channel::Letter => {
                let letter = tasks::letter(r, items, &self.company);
                self.write(
                    &self.pdf_for(&path),
                    &crate::deliver::pdf::a4(&letter, &r.subject),
                )?;
                self.write(&path, letter.as_bytes())?;
                self.letter_written(r.date);
            }
            Channel::Task => {
                self.write(&path, tasks::sheet(r, items).as_bytes())?;
                let worklist = self.worklist();
                tasks::append_to_worklist(&worklist, r, items).map_err(|source| {
                    DeliveryError::Io {
                        path: worklist.clone(),
                        source,
                    }
                })?;
                self.unsynced(&worklist);
            }
            _ => self.write(&path, tasks::sheet(r, items).as_bytes())?,
        }
        Ok(path.display().to_string())
    }

    /// Builds the MIME message. Names and subjects are encoded by lettre;
    /// control characters are removed first, so feed data cannot add headers.
    ///
    /// Blind copies are envelope recipients over SMTP, and no header shows
    /// them (lettre drops `Bcc:` once the envelope is made). An outbox
    /// `.eml` keeps its `Bcc:` header: the job that sends it on
    /// (`sendmail -t` and the like) reads the blind copies there, and
    /// removes the header.
    pub fn email(&self, r: &Message, message_id: &str) -> Result<lettre::Message, DeliveryError> {
        let from = self.from.clone();
        let mut builder = lettre::Message::builder()
            .from(from.clone())
            .subject(clean_line(&r.subject))
            .message_id(Some(message_id.to_string()))
            .date_now()
            .user_agent(format!("relance/{}", env!("CARGO_PKG_VERSION")));
        let parse = |role: &str, address: &str| {
            crate::address::parse(address).map_err(|e| {
                DeliveryError::Address(format!("invoice {}: {role} {address:?}: {e}", r.invoice))
            })
        };
        let mut any = false;
        for address in crate::address::split(&r.to) {
            let addr = parse("recipient", address)?;
            builder = builder.to(Mailbox::new(clean_name(r.customer_name), addr));
            any = true;
        }
        if !any {
            return Err(DeliveryError::Address(format!(
                "invoice {} has no email address",
                r.invoice
            )));
        }
        for address in &r.cc {
            builder = builder.cc(Mailbox::new(None, parse("copy", address)?));
        }
        for address in &r.bcc {
            builder = builder.bcc(Mailbox::new(None, parse("blind copy", address)?));
        }
        match r.reply_to {
            Some(list) => {
                for address in crate::address::split(list) {
                    builder = builder.reply_to(Mailbox::new(None, parse("reply-to", address)?));
                }
            }
            None => builder = builder.reply_to(from),
        }
        if matches!(self.route, Route::Outbox(_)) {
            builder = builder.keep_bcc();
        }
        let text = r.body.clone().unwrap_or_default();
        let email = match &r.html {
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(text, html.clone()))?
            }
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            )?,
        };
        Ok(email)
    }
}

/// Sends an email over SMTP in one transaction; when the server refuses it
/// (for good or for now) and it has several recipients, once more in one
/// transaction per recipient, the same bytes (and Message-ID) each time: a
/// server refuses a whole transaction when it refuses one of its
/// recipients, and one address refused, even for a while, must not keep
/// the message from the others. (A refused transaction delivered nothing,
/// so nobody gets it twice.) Delivered when one recipient accepted it.
/// Without a 4xx or 5xx answer (a timeout, a dropped connection, a
/// message the server cannot take) nothing is split: the whole message
/// fails, and is retried later.
fn send_to_each(
    transport: &SmtpTransport,
    email: &lettre::Message,
    id: String,
    timeout: std::time::Duration,
) -> Result<Delivered, DeliveryError> {
    let envelope = email.envelope();
    match transport.send(email) {
        Ok(_) => return Ok(Delivered::to_all(id)),
        Err(e) if !(e.is_transient() || e.is_permanent()) || envelope.to().len() < 2 => {
            return Err(DeliveryError::smtp(e, timeout));
        }
        Err(_) => {}
    }
    let bytes = email.formatted();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for to in envelope.to() {
        let one = Envelope::new(envelope.from().cloned(), vec![to.clone()])?;
        match transport.send_raw(&one, &bytes) {
            Ok(_) => accepted.push(to.to_string()),
            Err(e) => refused.push((to.to_string(), DeliveryError::smtp(e, timeout))),
        }
    }
    let refusals = || {
        refused
            .iter()
            .map(|(to, e)| format!("{to}: {e}"))
            .collect::<Vec<_>>()
    };
    if accepted.is_empty() {
        return Err(DeliveryError::Refused {
            refusals: refusals().join("; "),
            permanent: refused.iter().all(|(_, e)| e.is_permanent()),
        });
    }
    Ok(Delivered {
        id,
        refused: refusals(),
        accepted: if refused.is_empty() {
            Vec::new()
        } else {
            accepted
        },
    })
}

fn clean_name(s: &str) -> Option<String> {
    let name = clean_line(s);
    (!name.is_empty()).then_some(name)
}

/// The sender identity from `company`. An empty `company.email` is the
/// default: outbox and log deliveries fall back to [`PLACEHOLDER_SENDER`],
/// while SMTP needs a real sender (a server would refuse the placeholder, and
/// customers could not reply to it). An address that does not parse is
/// refused for every delivery: someone chose a sender, and replacing it
/// behind their back would send mail in nobody's name.
fn sender(config: &Config) -> Result<(Mailbox, bool), DeliveryError> {
    let email = config.company.get("email").trim();
    let (address, placeholder) = match email {
        "" if matches!(config.delivery, Delivery::Smtp { .. }) => {
            return Err(DeliveryError::Sender(
                "company.email is empty in the config: SMTP delivery needs the sender address (e.g. company: {email: billing@example.com})".into(),
            ));
        }
        "" => (PLACEHOLDER_SENDER, true),
        email => (email, false),
    };
    let addr = crate::address::parse(address).map_err(|e| {
        DeliveryError::Sender(format!(
            "company.email {address:?} in the config is not a valid sender address: {e}"
        ))
    })?;
    Ok((
        Mailbox::new(clean_name(config.company.get("name")), addr),
        placeholder,
    ))
}

/// Writes a file so that it is either absent or complete: temp file, then
/// rename. It is not synced here: [`Deliverer::flush`] syncs a whole batch.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    let io = |source| DeliveryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("message")
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Makes the files written in `dir` durable, with their names.
#[cfg(target_os = "linux")]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // syncfs(2) writes out the whole file system the folder is on in one
    // call: a batch of files costs one sync, not one per file.
    let folder = std::fs::File::open(dir)?;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(folder.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the files written in `dir` durable, with their names.
#[cfg(not(target_os = "linux"))]
fn sync_folder(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(delivery: Delivery, email: &str) -> Config {
        let mut config = Config {
            delivery,
            ..Config::default()
        };
        config.company.0.insert("email".into(), email.into());
        config
    }

    fn smtp() -> Delivery {
        Delivery::Smtp {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: Tls::None,
            user: None,
            password_env: None,
            timeout: Duration::from_secs(30),
            connections: 4,
        }
    }

    #[test]
    fn without_company_email_outbox_and_log_send_from_the_placeholder() {
        for delivery in [Delivery::default(), Delivery::Log] {
            let d = Deliverer::new(&config(delivery, "")).unwrap();
            assert!(d.uses_placeholder_sender());
            assert_eq!(d.from.email.to_string(), PLACEHOLDER_SENDER);
            let identity = Identity {
                invoice: "F1".into(),
                policy: "p".into(),
                stage: "s".into(),
                occurrence: 0,
            };
            assert_eq!(d.message_id(&identity.token()), "<F1.p.s.0@localhost>");
        }
        let d = Deliverer::new(&config(Delivery::Log, "compta@atelier.fr")).unwrap();
        assert!(!d.uses_placeholder_sender());
        assert_eq!(d.domain, "atelier.fr");
    }

    #[test]
    fn long_file_names_are_shortened_stably_and_short_ones_kept() {
        assert_eq!(
            file_name("2026-12-01.F1.p.s.0", ".eml"),
            "2026-12-01.F1.p.s.0.eml"
        );
        let long = format!("2026-12-01.{}.p.s.0", "F".repeat(300));
        let name = file_name(&long, ".letter.txt");
        assert_eq!(name.len(), MAX_FILE_NAME);
        assert!(name.starts_with("2026-12-01.FFFF") && name.ends_with(".letter.txt"));
        assert_eq!(name, file_name(&long, ".letter.txt"), "stable");
        let other = format!("2026-12-01.{}.p.s.1", "F".repeat(300));
        assert_ne!(name, file_name(&other, ".letter.txt"), "distinct");
        // A known value: the hash must not change between versions.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn smtp_needs_a_real_sender_and_no_delivery_takes_an_invalid_one() {
        let error = |delivery, email| {
            Deliverer::new(&config(delivery, email))
                .err()
                .expect("refused")
                .to_string()
        };
        assert!(error(smtp(), "").contains("company.email is empty"));
        for delivery in [smtp(), Delivery::default(), Delivery::Log] {
            let e = error(delivery, "compta at atelier");
            assert!(
                e.contains("\"compta at atelier\" in the config is not a valid sender address"),
                "{e}"
            );
        }
        assert!(Deliverer::new(&config(smtp(), "compta@atelier.fr")).is_ok());
    }
}
