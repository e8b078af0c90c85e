//! The project configuration (`relance.yaml`): where things are, who sends, and how.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

use crate::calendar::{Calendar, HolidaySettings, SendWindow};
use crate::diagnostics::{Location, Problem, Problems, RuleLimits, read_yaml_source, yaml_problem};
use crate::money::{de_decimal, de_opt_decimal};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "de_timezone")]
    pub timezone: Tz,
    pub language: String,
    pub currency: String,
    pub company: Company,
    pub feeds: Vec<FeedConfig>,
    pub rules: PathBuf,
    pub templates: PathBuf,
    /// Where the journal is: an SQLite file (a path), or a PostgreSQL
    /// database (`{url_env: NAME}`).
    pub journal: JournalSetting,
    pub delivery: Delivery,
    pub tasks: PathBuf,
    pub schedule: Schedule,
    pub limits: Limits,
    pub retry: Retry,
    /// The days reminders go out on (default Monday to Friday); a policy may set its own.
    #[serde(deserialize_with = "crate::calendar::de_weekdays")]
    pub send_days: Vec<chrono::Weekday>,
    pub holidays: HolidaySettings,
    /// The local time (in the recipient's time zone) reminders are sent at;
    /// none: as soon as they are decided.
    #[serde(deserialize_with = "crate::calendar::de_opt_time")]
    pub send_time: Option<chrono::NaiveTime>,
    pub rates: Rates,
    /// How considerate relance is with a customer; a policy may override each key.
    pub contact: Contact,
    /// What an invoice relance never wrote about gets first (a policy may override).
    pub first_contact: FirstContact,
    /// The address replies go to (`Reply-To:`), when not the sender's; a policy may set its own.
    pub reply_to: Option<String>,
    /// The web console (`relance serve`, `relance run`); none: `run` serves
    /// no console unless given `--http`.
    pub http: Option<Http>,
    /// The folder paths are relative to (the config file's folder); not read from YAML.
    #[serde(skip)]
    pub base: PathBuf,
    /// The config file, when one exists.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timezone: Tz::UTC,
            language: "fr".into(),
            currency: "EUR".into(),
            company: Company::default(),
            feeds: vec![FeedConfig::new(PathBuf::from("data/invoices.csv"))],
            rules: "rules".into(),
            templates: "templates".into(),
            journal: JournalSetting::File("state/relance.db".into()),
            delivery: Delivery::default(),
            tasks: "tasks".into(),
            schedule: Schedule::default(),
            limits: Limits::default(),
            retry: Retry::default(),
            send_days: crate::calendar::WEEKDAYS.to_vec(),
            holidays: HolidaySettings::default(),
            send_time: None,
            rates: Rates::default(),
            contact: Contact::default(),
            first_contact: FirstContact::default(),
            reply_to: None,
            http: None,
            base: PathBuf::from("."),
            file: None,
        }
    }
}

/// Where the journal is (`journal:`): a path keeps it in an SQLite file (one
/// daemon); `{url_env: NAME}` in PostgreSQL, shared by several daemons.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a path (state/relance.db) or {url_env: RELANCE_DATABASE_URL}"
)]
pub enum JournalSetting {
    File(PathBuf),
    Postgres(PostgresJournal),
}

/// The PostgreSQL journal (`journal: {url_env: …}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresJournal {
    /// The environment variable holding the connection URL, password
    /// included (never the file).
    #[serde(default = "PostgresJournal::default_url_env")]
    pub url_env: String,
    /// How long the evaluation lease lasts without being renewed: when the
    /// deciding daemon dies, another decides within this many seconds.
    #[serde(default = "PostgresJournal::default_lease_seconds")]
    pub lease_seconds: u64,
}

impl PostgresJournal {
    pub const DEFAULT_URL_ENV: &str = "RELANCE_DATABASE_URL";

    fn default_url_env() -> String {
        Self::DEFAULT_URL_ENV.into()
    }

    fn default_lease_seconds() -> u64 {
        30
    }

    /// The journal in the database whose URL `url_env` holds.
    pub fn at(url_env: &str) -> PostgresJournal {
        PostgresJournal {
            url_env: url_env.into(),
            lease_seconds: Self::default_lease_seconds(),
        }
    }
}

/// Contact pressure (`contact:` in the config or a policy): customers are
/// not flooded. The defaults are the contract's: each reminder its own
/// message, no minimum gap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contact {
    /// All of one customer's email reminders of a day go out as one message
    /// (the `combined` template).
    pub combine: bool,
    /// At least this many days between two email messages to one customer
    /// (0: no minimum); a stage with `urgent: true` does not wait.
    pub min_days_between: u32,
}

/// What an invoice relance has never written about gets first
/// (`first_contact:` in the config or a policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstContact {
    /// The latest stage reached, the earlier ones skipped (docs/contract.md §4).
    #[default]
    Latest,
    /// The first stage after the due date, the later ones following at the
    /// policy's gaps: a first contact is never a legal step.
    Restart,
}

/// The web console (`http:` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// The address and port it listens on; a loopback address unless a
    /// token protects it.
    pub listen: String,
    /// The environment variable holding the token (never the token itself,
    /// like the SMTP password); unset or empty: no token.
    pub token_env: String,
    /// `/metrics`, `/healthz` and `/readyz` answer without the token (for
    /// a monitoring system that holds none).
    pub open_metrics: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".into(),
            token_env: "RELANCE_TOKEN".into(),
            open_metrics: true,
        }
    }
}

impl Http {
    /// The address `listen` names: an IP address and a port, or
    /// `localhost:PORT` (the IPv4 loopback).
    pub fn address(listen: &str) -> Result<std::net::SocketAddr, String> {
        let listen = listen.trim();
        let parsed = match listen.strip_prefix("localhost:") {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            None => listen.parse().ok(),
        };
        parsed.ok_or_else(|| {
            format!(
                "{listen:?} is not an address to listen on (expected an IP address and a port, \
                 such as 127.0.0.1:8080)"
            )
        })
    }
}

/// The sender's identity, shown in templates as `company.*`. Any extra key
/// (address, siren, …) is kept and available to templates too.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Company(pub BTreeMap<String, String>);

impl Default for Company {
    fn default() -> Self {
        Company(BTreeMap::new()).with_standard_keys()
    }
}

impl Company {
    const STANDARD_KEYS: [&'static str; 5] = ["name", "email", "phone", "payment_url", "iban"];
    fn with_standard_keys(mut self) -> Self {
        for key in Self::STANDARD_KEYS {
            self.0.entry(key.to_string()).or_default();
        }
        self
    }
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    Csv,
    Json,
    Jsonl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub path: PathBuf,
    /// Guessed from the extension when absent: .json, .jsonl/.ndjson, else CSV.
    #[serde(default)]
    pub format: Option<FeedFormat>,
    /// CSV only; auto-detected (`,` or `;`) when absent.
    #[serde(default)]
    pub delimiter: Option<char>,
    /// The decimal separator of amounts: `.` (default) or `,`.
    #[serde(default = "default_decimal")]
    pub decimal: char,
    /// strftime format of dates; ISO `%Y-%m-%d` by default.
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// canonical field name -> the column name used by this feed.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

fn default_decimal() -> char {
    '.'
}
fn default_date_format() -> String {
    "%Y-%m-%d".into()
}

impl FeedConfig {
    pub fn new(path: PathBuf) -> Self {
        FeedConfig {
            path,
            format: None,
            delimiter: None,
            decimal: default_decimal(),
            date_format: default_date_format(),
            columns: BTreeMap::new(),
        }
    }
    pub fn format(&self) -> FeedFormat {
        self.format.unwrap_or_else(|| {
            match self
                .path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("json") => FeedFormat::Json,
                Some("jsonl" | "ndjson") => FeedFormat::Jsonl,
                _ => FeedFormat::Csv,
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// Plain connection upgraded by STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465): `tls: tls` in the config.
    #[serde(rename = "tls")]
    Implicit,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Delivery {
    Outbox {
        #[serde(default = "default_outbox")]
        dir: PathBuf,
    },
    Smtp {
        host: String,
        #[serde(default = "default_smtp_port")]
        port: u16,
        #[serde(default)]
        tls: Tls,
        #[serde(default)]
        user: Option<String>,
        /// The name of the environment variable holding the password; the
        /// password itself never appears in the YAML.
        #[serde(default)]
        password_env: Option<String>,
        /// How long to wait for the server: to connect, and for each answer
        /// (greeting, every command, the end of the data). A server that
        /// accepts connections and never answers costs this, not a hang.
        #[serde(default = "default_smtp_timeout", deserialize_with = "de_duration")]
        timeout: Duration,
        /// How many messages are sent at once, each over its own connection:
        /// one slow answer does not hold up the others.
        #[serde(default = "default_smtp_connections")]
        connections: u32,
    },
    Log,
}

fn default_outbox() -> PathBuf {
    "outbox".into()
}
fn default_smtp_port() -> u16 {
    587
}
fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}
/// Four by default: a server slow to answer one email holds one sender,
/// not the batch. (With 1, emails go out one after another in the order
/// they were planned; a crash may resend at most one email per connection.)
fn default_smtp_connections() -> u32 {
    4
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery::Outbox {
            dir: default_outbox(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub every: Option<Duration>,
    /// Local time of day ("09:00") in the config's time zone.
    #[serde(default, deserialize_with = "crate::calendar::de_opt_time")]
    pub at: Option<chrono::NaiveTime>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            every: Some(Duration::from_secs(3600)),
            at: None,
        }
    }
}

/// `limits.template_depth`: its default and the most it may be raised to.
pub const TEMPLATE_DEPTH: (usize, usize) = (32, 256);

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_per_run: usize,
    /// The largest policy or holds file, in bytes.
    pub rule_file_bytes: u64,
    /// The deepest nesting of a rule file (indentation levels and `[`/`{`).
    pub yaml_depth: usize,
    /// The longest value of a feed's field, in characters.
    pub field_chars: usize,
    /// The largest feed file, in bytes.
    pub feed_file_bytes: u64,
    /// The deepest nesting of a template's blocks (`{{#if}}`, `{{#each}}`…).
    pub template_depth: usize,
    /// The largest template or partial file, in bytes.
    pub template_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let rules = RuleLimits::default();
        Limits {
            max_per_run: 200,
            rule_file_bytes: rules.bytes,
            yaml_depth: rules.depth,
            field_chars: 4096,
            feed_file_bytes: 2 << 30,
            template_depth: TEMPLATE_DEPTH.0,
            template_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// What a rule file may be.
    pub fn rules(&self) -> RuleLimits {
        RuleLimits {
            bytes: self.rule_file_bytes,
            depth: self.yaml_depth,
        }
    }
}

/// How failed deliveries are retried: after `first`, doubling up to `max`,
/// `attempts` times in all before giving up (the reminder stays `failed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    #[serde(deserialize_with = "de_duration")]
    pub first: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
            attempts: 8,
        }
    }
}

impl Retry {
    /// The wait after the `attempt`-th failure (1-based); `None` once attempts are used up.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        (attempt < self.attempts).then(|| {
            self.first
                .saturating_mul(1 << attempt.saturating_sub(1).min(20))
                .min(self.max)
        })
    }
}

/// The figures of the money rules (late-payment interest, recovery
/// indemnity), in the config because the law sets them, not the policies.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rates {
    /// The annual late-payment interest rate, in percent (12.15 for 12.15 %).
    /// No default: the French reference rate changes every six months, and a
    /// figure built into relance would silently go stale.
    #[serde(deserialize_with = "de_opt_decimal")]
    pub late_interest_annual: Option<Decimal>,
    /// The fixed indemnity for recovery costs, per invoice paid late.
    #[serde(deserialize_with = "de_decimal")]
    pub recovery_indemnity: Decimal,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            late_interest_annual: None,
            // 40 €, Code de commerce D441-5.
            recovery_indemnity: Decimal::new(40, 0),
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<Tz>().map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {s:?} (expected an IANA name such as Europe/Paris)"
        ))
    })
}

/// Parses durations such as `30s`, `15m`, `1h`, `1d`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?} (expected e.g. 30s, 15m, 1h, 1d)");
    let mut total = 0u64;
    let mut number = String::new();
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| err())?;
        number.clear();
        total += n * match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(err()),
        };
    }
    if !number.is_empty() || total == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

impl Config {
    /// Loads `config` (default `dir/relance.yaml`); an absent file means all defaults.
    /// An explicitly named file that does not exist is an error.
    pub fn load(dir: &Path, config: Option<&Path>) -> Result<Config, Problem> {
        let (path, explicit) = match config {
            Some(p) => (p.to_path_buf(), true),
            None if dir == Path::new(".") => (PathBuf::from("relance.yaml"), false),
            None => (dir.join("relance.yaml"), false),
        };
        if !path.exists() {
            if explicit {
                return Err(Problem::error(
                    Location::file(&path),
                    "config file not found",
                ));
            }
            return Ok(Config {
                base: dir.to_path_buf(),
                ..Config::default()
            });
        }
        // The config's own limits are not known before it is read: it is
        // held to the defaults.
        let source = read_yaml_source(&path, "config", RuleLimits::default())?;
        let config: Config = if source.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(&source).map_err(|e| yaml_problem(&path, &e, 0))?
        };
        Ok(config.read_from(path))
    }

    /// The config as read from `path`: what the YAML does not say itself.
    fn read_from(mut self, path: PathBuf) -> Config {
        self.company = self.company.with_standard_keys();
        // Currency codes are upper-case, but `usd` is as clear here as in a feed
        // (which upper-cases it too); `validate` then checks the code.
        self.currency.make_ascii_uppercase();
        self.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if self.base.as_os_str().is_empty() {
            self.base = PathBuf::from(".");
        }
        self.file = Some(path);
        self
    }

    /// This config with `overrides` (keys of `relance.yaml`) written over
    /// its file's: a mapping merges key by key into the file's mapping, any
    /// other value replaces the file's. Paths stay relative to the file's
    /// folder. The error is the YAML's (an unknown key, a wrong type),
    /// without a position: the overrides are not the file.
    pub fn with_overrides(&self, overrides: &serde_yaml::Mapping) -> Result<Config, String> {
        let mut merged = match &self.file {
            Some(path) => {
                let source = read_yaml_source(path, "config", RuleLimits::default())
                    .map_err(|p| p.to_string())?;
                match serde_yaml::from_str(&source).map_err(|e| e.to_string())? {
                    serde_yaml::Value::Null => serde_yaml::Mapping::new(),
                    serde_yaml::Value::Mapping(m) => m,
                    _ => return Err("relance.yaml is not a mapping of keys".into()),
                }
            }
            None => serde_yaml::Mapping::new(),
        };
        merge_yaml(&mut merged, overrides);
        // Read back from text, as the file is: decimals (`rates`) are read
        // from their text, which a YAML value holds as a number.
        let text = serde_yaml::to_string(&merged).map_err(|e| e.to_string())?;
        let config: Config = serde_yaml::from_str(&text).map_err(|e| {
            let message = e.to_string();
            match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            }
        })?;
        let file = self.file.clone();
        let path = file
            .clone()
            .unwrap_or_else(|| self.base.join("relance.yaml"));
        Ok(Config {
            file,
            ..config.read_from(path)
        })
    }

    /// Semantic checks the YAML types cannot express.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::default();
        let file = self
            .file
            .clone()
            .unwrap_or_else(|| self.base.join("relance.yaml"));
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        let at = |key: &str| match crate::diagnostics::locate_yaml_key(&source, 1, key, None) {
            Some((l, c)) => Location::at(&file, l, c),
            None => Location::file(&file),
        };
        if !is_language_tag(&self.language) {
            problems.error(
                at("language"),
                format!(
                    "language {:?} is not a language tag such as fr or en",
                    self.language
                ),
            );
        }
        if !is_currency_code(&self.currency) {
            problems.error(
                at("currency"),
                format!(
                    "currency {:?} is not an ISO 4217 code such as EUR",
                    self.currency
                ),
            );
        }
        if self.feeds.is_empty() {
            problems.warning(
                at("feeds"),
                "no feeds configured: there are no invoices to remind",
            );
        }
        for feed in &self.feeds {
            if feed.decimal != '.' && feed.decimal != ',' {
                problems.error(
                    at("decimal"),
                    format!("decimal must be \".\" or \",\", not {:?}", feed.decimal),
                );
            }
            if let Some(d) = feed.delimiter
                && !d.is_ascii()
            {
                problems.error(
                    at("delimiter"),
                    format!("delimiter {d:?} must be a single ASCII character"),
                );
            }
            if chrono::format::StrftimeItems::new(&feed.date_format)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                problems.error(
                    at("date_format"),
                    format!(
                        "date_format {:?} is not a valid strftime format",
                        feed.date_format
                    ),
                );
            }
        }
        if let Some(why) = self
            .reply_to
            .as_deref()
            .and_then(crate::address::refused_in)
        {
            problems.error(
                at("reply_to"),
                format!("reply_to: {why}: expected the address replies go to (e.g. reply_to: recouvrement@example.com)"),
            );
        }
        if let Some(http) = &self.http {
            if let Err(why) = Http::address(&http.listen) {
                problems.error(at("listen"), format!("http: listen: {why}"));
            }
            if http.token_env.trim().is_empty() {
                problems.error(
                    at("token_env"),
                    "http: token_env must name an environment variable (the default is RELANCE_TOKEN)",
                );
            }
        }
        if self.schedule.every.is_some() && self.schedule.at.is_some() {
            problems.error(
                at("schedule"),
                "schedule: give either `every` or `at`, not both",
            );
        }
        if self.send_days.is_empty() {
            problems.error(
                at("send_days"),
                "send_days is empty: no reminder could ever go out (the default is [mon, tue, wed, thu, fri])",
            );
        }
        for (key, value) in [
            ("late_interest_annual", self.rates.late_interest_annual),
            ("recovery_indemnity", Some(self.rates.recovery_indemnity)),
        ] {
            if value.is_some_and(|v| v.is_sign_negative() && !v.is_zero()) {
                problems.error(at(key), format!("rates.{key} must not be negative"));
            }
        }
        for (key, value) in [
            ("max_per_run", self.limits.max_per_run as u64),
            ("rule_file_bytes", self.limits.rule_file_bytes),
            ("yaml_depth", self.limits.yaml_depth as u64),
            ("field_chars", self.limits.field_chars as u64),
            ("feed_file_bytes", self.limits.feed_file_bytes),
            ("template_depth", self.limits.template_depth as u64),
            ("template_bytes", self.limits.template_bytes),
        ] {
            if value == 0 {
                problems.error(at(key), format!("limits.{key} must be at least 1"));
            }
        }
        let (default, most) = TEMPLATE_DEPTH;
        if self.limits.template_depth > most {
            problems.error(
                at("template_depth"),
                format!(
                    "limits.template_depth must be at most {most}: Handlebars recurses once per \
                     block, and deeper templates could overflow the stack (the default is {default})"
                ),
            );
        }
        if let Delivery::Smtp {
            user,
            password_env,
            timeout,
            connections,
            ..
        } = &self.delivery
        {
            if timeout.is_zero() {
                problems.error(
                    at("timeout"),
                    "delivery: timeout must be longer than 0s (the default is 30s)",
                );
            }
            if !(1..=64).contains(connections) {
                problems.error(
                    at("connections"),
                    "delivery: connections must be between 1 and 64 (the default is 4)",
                );
            }
            match (user, password_env) {
                (_, Some(var)) if var.is_empty() => problems.error(
                    at("password_env"),
                    "password_env must name an environment variable",
                ),
                // Logging in with an empty password is never what was meant.
                (Some(_), None) => problems.error(
                    at("user"),
                    "delivery: user needs password_env, the environment variable holding the password (never the password itself)",
                ),
                _ => {}
            }
        }
        // The sender of every email: `relance run` refuses to start without a
        // usable one, so `check` says so first.
        let sender = self.company.get("email");
        let refused = crate::address::parse(sender.trim()).err();
        if let Some(why) = refused.filter(|_| !sender.is_empty()) {
            // Delivery's own words when it is no address at all; the reason
            // when it looks like one (a display name, a quoted local part).
            let why = if why.starts_with("not an email address") {
                String::new()
            } else {
                format!(": {why}")
            };
            problems.error(
                at("email"),
                format!("company.email {sender:?} is not an email address{why}"),
            );
        } else if sender.is_empty() && matches!(self.delivery, Delivery::Smtp { .. }) {
            problems.error(
                at("company"),
                "company.email is empty: SMTP delivery needs the sender address",
            );
        }
        problems
    }

    /// When reminders go out, unless a policy says otherwise.
    pub fn send_window(&self) -> SendWindow {
        SendWindow {
            calendar: Calendar::new(&self.send_days, &self.holidays),
            send_time: self.send_time,
        }
    }

    /// Resolves a path from the config against the config file's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        // Paths under the current folder print without a leading `./`.
        if p.is_absolute() || self.base == Path::new(".") {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

/// Writes `over` into `base`: a mapping into a mapping key by key, any
/// other value in place of the base's.
fn merge_yaml(base: &mut serde_yaml::Mapping, over: &serde_yaml::Mapping) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(serde_yaml::Value::Mapping(inner)), serde_yaml::Value::Mapping(over)) => {
                merge_yaml(inner, over)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

pub fn is_language_tag(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
        })
        && s.split('-')
            .next()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_alphabetic()))
}

pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn retry_backoff_doubles_up_to_max_then_stops() {
        let r = Retry {
            first: Duration::from_secs(10),
            max: Duration::from_secs(25),
            attempts: 4,
        };
        assert_eq!(r.delay(1), Some(Duration::from_secs(10)));
        assert_eq!(r.delay(2), Some(Duration::from_secs(20)));
        assert_eq!(r.delay(3), Some(Duration::from_secs(25)));
        assert_eq!(r.delay(4), None);
    }

    #[test]
    fn language_tags() {
        assert!(is_language_tag("fr"));
        assert!(is_language_tag("fr-CA"));
        assert!(!is_language_tag(""));
        assert!(!is_language_tag("fr_CA"));
    }

    #[test]
    fn defaults_when_config_absent() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path(), None).unwrap();
        assert_eq!(c.language, "fr");
        assert_eq!(c.limits.max_per_run, 200);
        assert_eq!(c.feeds[0].path, PathBuf::from("data/invoices.csv"));
        assert_eq!(c.company.get("iban"), "");
    }

    #[test]
    fn a_lower_case_currency_is_upper_cased() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relance.yaml"), "currency: usd\n").unwrap();
        let c = Config::load(dir.path(), None).unwrap();
        assert_eq!(c.currency, "USD");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        std::fs::write(dir.path().join("relance.yaml"), "currency: dollars\n").unwrap();
        let c = Config::load(dir.path(), None).unwrap();
        assert!(c.validate().has_errors());
    }

    /// The config of `yaml`, or the problem loading it, and the folder it is
    /// in (`validate` reads the file again to locate problems).
    fn config(yaml: &str) -> (tempfile::TempDir, Result<Config, Problem>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relance.yaml"), yaml).unwrap();
        let config = Config::load(dir.path(), None);
        (dir, config)
    }

    #[test]
    fn rates_are_exact_decimals_written_as_numbers_or_strings() {
        let (_dir, c) =
            config("rates: {late_interest_annual: 12.15, recovery_indemnity: \"40.50\"}\n");
        let c = c.unwrap();
        assert_eq!(c.rates.late_interest_annual.unwrap().to_string(), "12.15");
        assert_eq!(c.rates.recovery_indemnity.to_string(), "40.50");
        // More digits than a float holds: read from the text, never through an f64.
        let (_dir, c) = config("rates:\n  late_interest_annual: 12.150000000000000000000001\n");
        let c = c.unwrap();
        assert_eq!(
            c.rates.late_interest_annual.unwrap().to_string(),
            "12.150000000000000000000001"
        );
        assert_eq!(c.rates.recovery_indemnity.to_string(), "40");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn the_interest_rate_has_no_default_and_the_indemnity_defaults_to_40() {
        let c = Config::default();
        assert_eq!(c.rates.late_interest_annual, None);
        assert_eq!(c.rates.recovery_indemnity, Decimal::new(40, 0));
        let (_dir, c) = config("language: fr\n");
        let c = c.unwrap();
        assert_eq!(c.rates.late_interest_annual, None);
    }

    #[test]
    fn rate_mistakes_are_located() {
        let (_dir, err) = config("language: fr\nrates: {late_interest: 12.15}\n");
        let err = err.unwrap_err();
        assert_eq!(err.location.line, Some(2));
        assert!(
            err.message.contains("unknown field `late_interest`"),
            "{}",
            err.message
        );
        let (_dir, err) = config("rates:\n  late_interest_annual: \"12,15\"\n");
        let err = err.unwrap_err();
        assert_eq!(err.location.line, Some(2));
        assert!(
            err.message
                .contains("expected a decimal number such as 12.15, found \"12,15\""),
            "{}",
            err.message
        );
        let (_dir, c) = config("language: fr\nrates:\n  recovery_indemnity: -40\n");
        let c = c.unwrap();
        let problems: Vec<String> = c.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .ends_with("relance.yaml:3:3: rates.recovery_indemnity must not be negative"),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("relance.yaml"),
            "language: en\ntimezon: UTC\n",
        )
        .unwrap();
        let err = Config::load(dir.path(), None).unwrap_err();
        assert_eq!(err.location.line, Some(2));
        assert!(err.message.contains("timezon"), "{}", err.message);
    }
}
