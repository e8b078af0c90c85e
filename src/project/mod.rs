//! A whole relance folder loaded: config, rulebook (policies, scripts, templates) and ledger.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::{Config, FeedConfig, FeedFormat};
use crate::diagnostics::{Location, Problem, Problems, key_location, locate_yaml_key};
use crate::engine::{Evaluator, Reminder};
use crate::feed::{feeds_for, load_feeds};
use crate::journal::JournalView;
use crate::journal::{group_token, reminder_token};
use crate::model::{
    BillTo, CustomerEmails, Invoice, InvoiceField, InvoiceId, Ledger, LedgerIndex, Origin, Status,
};
use crate::render::{Rendered, Resolved, StatementLine, SubjectData, Templates, message_context};
use crate::rules::{
    Channel, Grouping, HoldTarget, Holds, Policy, PolicyDefaults, Stage, Trigger, load_holds,
    load_policies,
};
use crate::rules::{CustomerView, InvoiceView, Scripts, Variables};

pub mod decisions;
#[cfg(test)]
mod differential;
pub mod history;

/// Where to find the folder and what to override, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dir: PathBuf,
    pub config: Option<PathBuf>,
    pub feeds: Vec<PathBuf>,
}

/// What a finance manager edits: policies, scripts and templates, loaded and
/// cross-checked together. The daemon swaps a whole rulebook on reload.
pub struct Rulebook {
    pub policies: Vec<Policy>,
    pub scripts: Arc<Scripts>,
    pub templates: Templates,
    /// `rules/holds.yaml`: invoices and customers that get no reminder for now.
    pub holds: Holds,
}

impl Rulebook {
    pub fn load(config: &Config) -> (Rulebook, Problems) {
        let mut problems = Problems::default();
        let rules = config.path(&config.rules);
        if !rules.is_dir() {
            problems.error(Location::file(&rules), "rules folder not found");
        }
        let scripts = Arc::new(Scripts::load(
            &rules,
            &config.rates,
            config.limits.rule_file_bytes,
            &mut problems,
        ));
        let limits = config.limits.rules();
        let defaults = PolicyDefaults::of(config);
        let policies = load_policies(&rules, &scripts, &defaults, limits, &mut problems);
        let holds = load_holds(&rules, limits, &mut problems);
        let templates_dir = config.path(&config.templates);
        if !templates_dir.is_dir() {
            problems.error(Location::file(&templates_dir), "templates folder not found");
        }
        let templates = Templates::load(&templates_dir, config, &scripts, &mut problems);
        for policy in &policies {
            for stage in &policy.stages {
                let fallback =
                    templates_dir.join(format!("{}.{}.hbs", stage.template, config.language));
                // A template file that is there but did not load has its own
                // error already (syntax, front matter): "not found" would mislead.
                if templates
                    .resolve(&stage.template, &config.language)
                    .is_none()
                    && !fallback.is_file()
                {
                    let known = templates.languages_of(&stage.template);
                    let hint = if known.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it exists in {}, but the config's language is the fallback of every message)",
                            known.join(", ")
                        )
                    };
                    problems.error(
                        stage.template_location.clone(),
                        format!(
                            "stage {}: template {:?} not found: expected {}{hint}",
                            stage.id,
                            stage.template,
                            fallback.display()
                        ),
                    );
                }
            }
        }
        check_combined_template(config, &policies, &templates, &templates_dir, &mut problems);
        if policies.is_empty() && !problems.has_errors() {
            problems.warning(
                Location::file(&rules),
                "no policies: no reminder will ever fire",
            );
        }
        (
            Rulebook {
                policies,
                scripts,
                templates,
                holds,
            },
            problems,
        )
    }
}

/// Reports a missing `combined` template when a policy combines a
/// customer's email reminders: in the config's language (the fallback of
/// every message), like a stage's template. Located at the `combine:` key
/// that turns combining on: the policy's own, or once the config's.
fn check_combined_template(
    config: &Config,
    policies: &[Policy],
    templates: &Templates,
    templates_dir: &std::path::Path,
    problems: &mut Problems,
) {
    let expected = templates_dir.join(format!("{COMBINED}.{}.hbs", config.language));
    if templates.resolve(COMBINED, &config.language).is_some() || expected.is_file() {
        return;
    }
    let config_file = config
        .file
        .clone()
        .unwrap_or_else(|| config.base.join("relance.yaml"));
    let mut located: Vec<Location> = Vec::new();
    for policy in policies {
        let emails = policy.stages.iter().any(|s| s.channel == Channel::Email);
        if !policy.contact.combine || !emails {
            continue;
        }
        let own = std::fs::read_to_string(&policy.file)
            .ok()
            .and_then(|source| locate_yaml_key(&source, 1, "combine", None))
            .map(|(line, col)| Location::at(&policy.file, line, col));
        let (location, whose) = match own {
            Some(location) => (location, format!(" in policy {}", policy.name)),
            None => {
                let source = std::fs::read_to_string(&config_file).unwrap_or_default();
                let at = key_location(&config_file, &source, 1, "combine", None);
                (at, String::new())
            }
        };
        if located.contains(&location) {
            continue;
        }
        problems.error(
            location.clone(),
            format!(
                "contact: combine is on{whose}, but template {COMBINED:?} is not found: \
                 expected {} (a customer's email reminders of a day go out in it as one message)",
                expected.display()
            ),
        );
        located.push(location);
    }
}

/// An outgoing message (an email, a letter, a call sheet…), seen from one of
/// the reminders it carries: that reminder's own fields (date, invoice,
/// policy, stage, occurrence) and the message's (token, channel, recipients,
/// subject, body, send time, and the invoices it covers when grouped).
/// `preview` prints one per reminder, with the keys of docs/contract.md §6;
/// the daemon delivers one per message token.
///
/// It borrows what the project holds, so that a preview of a million
/// reminders allocates only what each message adds.
#[derive(Debug, Clone, Serialize)]
pub struct Message<'p> {
    pub date: NaiveDate,
    pub invoice: &'p str,
    pub customer_id: &'p str,
    pub customer_name: &'p str,
    pub policy: &'p str,
    pub stage: &'p str,
    pub occurrence: u32,
    /// The message this reminder goes out in: its own identity's token, or
    /// the token of the message it shares with the customer's other
    /// reminders of the day (`group: customer`). Rows with one `message`
    /// are one email, letter or call sheet.
    pub message: String,
    pub channel: Channel,
    pub to: Cow<'p, str>,
    /// The copies and blind copies of an email (its stage's `cc:` and
    /// `bcc:` columns); omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<&'p str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<&'p str>,
    /// Where replies to an email go (its policy's or the config's
    /// `reply_to`), when not to the sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<&'p str>,
    pub language: &'p str,
    pub template: &'p str,
    pub subject: String,
    pub amount_due: String,
    pub currency: &'p str,
    /// When it goes out, in the recipient's time zone (`2026-12-01T09:00:00-05:00`),
    /// when its policy has a `send_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Set when the message could not be rendered; it would not be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `required` when its stage says `approve: true`: journaled
    /// `awaiting_approval`, it goes out after `relance approve`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<&'static str>,
    /// The invoices of its message when the message is grouped (a table
    /// shows the message once, with them); empty otherwise.
    #[serde(skip)]
    pub covers: Arc<[&'p str]>,
}

impl Message<'_> {
    /// Whether it is a later reminder of a grouped message, which a table
    /// has shown with the message's first.
    pub fn follows_in_its_message(&self) -> bool {
        self.covers
            .first()
            .is_some_and(|first| *first != self.invoice)
    }
}

/// A loaded folder. It is never changed once loaded: a reload builds a new
/// one (sharing what did not change) and the daemon swaps it in whole.
#[derive(Clone)]
pub struct Project {
    pub config: Config,
    pub rulebook: Arc<Rulebook>,
    pub ledger: Arc<Ledger>,
    /// Problems of config, policies, scripts and templates.
    pub problems: Problems,
    /// Bad feed rows and unreadable feeds.
    pub feed_problems: Problems,
    pub bad_rows: usize,
    /// Feeds that could not be read at all (each also has an error in `feed_problems`).
    pub unreadable_feeds: Vec<PathBuf>,
}

impl Project {
    /// Loads everything. Only a config that cannot be read stops loading:
    /// every other problem is collected and the rest still loads.
    pub fn load(options: &Options) -> Result<Project, crate::error::Error> {
        let started = std::time::Instant::now();
        let rules = Self::load_rules(options)?;
        tracing::debug!(elapsed = ?started.elapsed(), "rules loaded");
        let started = std::time::Instant::now();
        let load = Self::read_feeds(&rules.config, options);
        tracing::debug!(invoices = load.invoices.len(), elapsed = ?started.elapsed(), "feeds read");
        let started = std::time::Instant::now();
        let (ledger, mut feed_problems) = Self::ledger(&rules.config, load.invoices, load.index);
        tracing::debug!(elapsed = ?started.elapsed(), "ledger summed");
        feed_problems.extend(load.problems);
        let mut project = Project {
            ledger,
            feed_problems,
            bad_rows: load.bad_rows,
            unreadable_feeds: load.unreadable,
            ..rules
        };
        project.apply_promises();
        Ok(project)
    }

    /// Puts the promises to pay of `rules/holds.yaml` in the ledger, in
    /// place of their invoices' `promise_date` from the feeds, so that the
    /// engine, `explain` and the templates see them as a feed's: a promise
    /// written there wins over the feed's (it is the decision a person
    /// recorded last; removing it brings the feed's back), and of several
    /// for one invoice the last written wins. To be called whenever the
    /// rulebook or the ledger is replaced; the ledger is shared as it is
    /// when the promises are those it already has.
    pub fn apply_promises(&mut self) {
        let mut wanted: std::collections::BTreeMap<InvoiceId, NaiveDate> = Default::default();
        for promise in &self.rulebook.holds.promises {
            if let Some(invoice) = self.ledger.find(&promise.invoice) {
                wanted.insert(invoice, promise.date);
            }
        }
        let wanted: Vec<(InvoiceId, NaiveDate)> = wanted.into_iter().collect();
        let mut applied = self.ledger.promises();
        applied.sort();
        if applied == wanted {
            return;
        }
        let mut ledger = Ledger::clone(&self.ledger);
        ledger.set_promises(&wanted);
        self.ledger = Arc::new(ledger);
    }

    /// Loads the config and the rulebook, not the feeds: a project without
    /// invoices, for what brings its own (policy tests). Only a config that
    /// cannot be read stops loading.
    pub fn load_rules(options: &Options) -> Result<Project, crate::error::Error> {
        let config = Config::load(&options.dir, options.config.as_deref())?;
        let mut problems = config.validate();
        let (rulebook, rule_problems) = Rulebook::load(&config);
        problems.extend(rule_problems);
        Ok(Project {
            ledger: Arc::new(Ledger::new(Vec::new())),
            config,
            rulebook: Arc::new(rulebook),
            problems,
            feed_problems: Problems::default(),
            bad_rows: 0,
            unreadable_feeds: Vec::new(),
        })
    }

    /// The ledger of what the feeds gave, with the config's language and
    /// time zone for invoices and customers that have none; and a warning
    /// for each `timezone` value that is no time zone (the config's is used).
    pub fn ledger(
        config: &Config,
        invoices: Vec<Invoice>,
        index: LedgerIndex,
    ) -> (Arc<Ledger>, Problems) {
        let ledger = Ledger::with_index(invoices, index)
            .with_default_language(&config.language)
            .with_time_zones(config.timezone);
        let mut problems = Problems::default();
        for (invoice, tz) in ledger.unknown_time_zones() {
            let inv = &ledger.invoices[invoice];
            problems.warning(
                invoice_location(config, inv),
                format!(
                    "timezone: {tz:?} is not a time zone (expected an IANA name such as \
                     America/Toronto): invoice {} is sent at the config's time zone ({})",
                    inv.number, config.timezone
                ),
            );
        }
        (Arc::new(ledger), problems)
    }

    /// Reads the feeds a command uses (`--feed` overrides the config's).
    pub fn read_feeds(config: &Config, options: &Options) -> crate::feed::FeedLoad {
        // The one reading of the clock while loading: it bounds the
        // plausible dates of the feeds, and moves with the days the daemon runs.
        let today = chrono::Utc::now()
            .with_timezone(&config.timezone)
            .date_naive();
        load_feeds(config, &feeds_for(config, &options.feeds), today)
    }

    pub fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            policies: &self.rulebook.policies,
            scripts: &self.rulebook.scripts,
            ledger: &self.ledger,
            holds: &self.rulebook.holds,
            skipped: true,
        }
    }

    /// When a message led by `planned` may go out: its policy's send time
    /// on the day, in its recipient's time zone (the feed's `timezone`,
    /// else the config's); `None` when the policy has no send time.
    pub fn send_at(&self, planned: &Reminder) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let policy = &self.rulebook.policies[planned.policy];
        policy
            .window
            .send_at(planned.date, self.ledger.time_zone_of(planned.invoice))
    }

    /// [`Project::send_at`] as RFC 3339 text. A preview's rows share a few
    /// (time zone, day, time): each thread formats each of them once.
    fn send_at_text(&self, planned: &Reminder) -> Option<String> {
        type Moment = (chrono_tz::Tz, NaiveDate, chrono::NaiveTime);
        thread_local! {
            static TEXTS: std::cell::RefCell<hashbrown::HashMap<Moment, String>> =
                std::cell::RefCell::default();
        }
        let time = self.rulebook.policies[planned.policy].window.send_time?;
        let moment = (
            self.ledger.time_zone_of(planned.invoice),
            planned.date,
            time,
        );
        TEXTS.with_borrow_mut(|texts| {
            if texts.len() > 4096 {
                texts.clear();
            }
            let text = texts.entry(moment).or_insert_with(|| {
                crate::calendar::local_moment(moment.0, moment.1, moment.2).to_rfc3339()
            });
            Some(text.clone())
        })
    }

    /// The language a message to this invoice is written in, before template fallback.
    pub fn language_of(&self, invoice: InvoiceId) -> &str {
        self.ledger.language_of(invoice)
    }

    /// Renders a planned reminder that goes out alone (the body only when asked).
    pub fn reminder(&self, planned: &Reminder, body: bool) -> Message<'_> {
        self.message(std::slice::from_ref(planned), body)
    }

    /// [`Project::reminder`] with the templates found for earlier messages
    /// ([`Languages`]): for a writer of many.
    pub fn reminder_in<'p>(
        &'p self,
        planned: &Reminder,
        body: bool,
        languages: &mut Languages<'p>,
    ) -> Message<'p> {
        self.message_in(std::slice::from_ref(planned), body, languages)
    }

    /// Renders the message carrying `rows` (one reminder, or a customer's
    /// several when grouped or combined; the first leads): the first row's
    /// fields with the message's token, template, recipients, subject and
    /// (when asked) body.
    pub fn message(&self, rows: &[Reminder], body: bool) -> Message<'_> {
        self.message_in(rows, body, &mut Languages::default())
    }

    /// [`Project::message`] with the templates found for earlier messages
    /// ([`Languages`]): for a writer of many.
    pub fn message_in<'p>(
        &'p self,
        rows: &[Reminder],
        body: bool,
        languages: &mut Languages<'p>,
    ) -> Message<'p> {
        // Its invoices are far apart in memory: all asked for before any is
        // read, their waits overlap.
        if rows.len() > 1 {
            rows.iter()
                .for_each(|r| self.ledger.prefetch_invoice(r.invoice));
        }
        let planned = &rows[0];
        let inv = &self.ledger.invoices[planned.invoice];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let (to, contacts) = match stage.channel {
            Channel::Email => match self.contacts(rows, stage) {
                Ok(contacts) => (joined(&contacts.to), Ok(contacts)),
                Err(why) => (Cow::Borrowed(""), Err(why)),
            },
            channel => (self.recipients(rows, channel), Ok(Contacts::default())),
        };
        let combined = self.is_combined(rows);
        let grouped = combined || stage.group == Grouping::Customer;
        let template = if combined { COMBINED } else { &stage.template };
        let found = languages.find(self, planned.invoice, template);
        let mut reminder = if grouped {
            let token = group_token(&inv.bill_to.id, template, planned.date, &inv.number);
            let mut r = self.fields(planned, token, to, found.language);
            r.template = template;
            r.covers = rows
                .iter()
                .map(|r| &*self.ledger.invoices[r.invoice].number)
                .collect();
            r
        } else {
            let token = reminder_token(&inv.number, &policy.name, &stage.id, planned.occurrence);
            self.fields(planned, token, to, found.language)
        };
        let contacts = match contacts {
            Ok(contacts) => contacts,
            Err(why) => {
                reminder.error = Some(why);
                Contacts::default()
            }
        };
        reminder.cc = contacts.cc;
        reminder.bcc = contacts.bcc;
        if stage.channel == Channel::Email {
            reminder.reply_to = policy.reply_to.as_deref();
        }
        match self.render_message(rows, reminder.template, found, body) {
            Ok(message) => {
                reminder.subject = message.subject;
                if body {
                    reminder.body = Some(message.body);
                    reminder.html = message.html;
                }
            }
            // A template that does not render says so before an address does.
            Err(problem) => reminder.error = Some(problem.to_string()),
        }
        reminder
    }

    /// A reminder decided for its date, as it goes out: in the message it
    /// shares with its customer's other reminders of the day when its stage
    /// is grouped or its policy combines, which takes planning that
    /// customer's day (`explain`).
    pub fn as_sent(&self, planned: &Reminder, journal: &JournalView) -> Message<'_> {
        let stage = &self.rulebook.policies[planned.policy].stages[planned.stage];
        if stage.group != Grouping::Customer && !self.combines(planned) {
            return self.reminder(planned, false);
        }
        let plan = self
            .evaluator()
            .plan(planned.date, 1, journal, Some(planned.invoice));
        let messages = self.messages(&plan.reminders);
        let rows: Vec<Reminder> = plan
            .reminders
            .iter()
            .position(|r| r == planned)
            .and_then(|i| messages.group(i))
            .map_or_else(
                || vec![*planned],
                |g| g.iter().map(|&i| plan.reminders[i]).collect(),
            );
        let message = self.message(&rows, false);
        self.member(planned, &message)
    }

    /// A planned reminder as one row of the grouped message `message`
    /// (already rendered): its own fields, and the message's token,
    /// recipients, subject, body and error.
    pub fn member<'p>(&'p self, planned: &Reminder, message: &Message<'p>) -> Message<'p> {
        let mut r = self.member_heading(planned, message);
        r.body.clone_from(&message.body);
        r.html.clone_from(&message.html);
        r.error.clone_from(&message.error);
        r.send_at.clone_from(&message.send_at);
        r
    }

    /// [`Project::member`] without the text its message's rows share (send
    /// time, body, HTML body, error: [`Message::write_json_text`]), for a
    /// writer that has that text already, written once for the message.
    pub fn member_heading<'p>(&'p self, planned: &Reminder, message: &Message<'p>) -> Message<'p> {
        let mut r = self.fields(
            planned,
            message.message.clone(),
            message.to.clone(),
            message.language,
        );
        r.cc.clone_from(&message.cc);
        r.bcc.clone_from(&message.bcc);
        r.reply_to = message.reply_to;
        r.template = message.template;
        r.subject.clone_from(&message.subject);
        r.send_at = None;
        r.covers = message.covers.clone();
        r
    }

    fn fields<'p>(
        &'p self,
        planned: &Reminder,
        message: String,
        to: Cow<'p, str>,
        language: &'p str,
    ) -> Message<'p> {
        let inv = &self.ledger.invoices[planned.invoice];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        Message {
            date: planned.date,
            invoice: &inv.number,
            customer_id: &inv.bill_to.id,
            customer_name: &inv.bill_to.name,
            policy: &policy.name,
            stage: &stage.id,
            occurrence: planned.occurrence,
            message,
            channel: stage.channel,
            to,
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: None,
            language,
            template: &stage.template,
            subject: String::new(),
            amount_due: crate::locale::money(inv.amount_due()),
            currency: &inv.currency,
            send_at: self.send_at_text(planned),
            body: None,
            html: None,
            error: None,
            approval: stage.approve.then_some("required"),
            covers: Arc::from([]),
        }
    }

    /// Who a message about `rows` goes to on a channel other than email:
    /// the first phone number for a call or an SMS, the customer by name
    /// for a letter or a task (an email's are [`Project::contacts`]).
    fn recipients(&self, rows: &[Reminder], channel: Channel) -> Cow<'_, str> {
        let inv = &self.ledger.invoices[rows[0].invoice];
        match channel {
            Channel::Sms | Channel::Call => Cow::Borrowed(
                rows.iter()
                    .find_map(|r| self.ledger.invoices[r.invoice].extra_field("phone"))
                    .unwrap_or(""),
            ),
            Channel::Email | Channel::Letter | Channel::Task => Cow::Borrowed(&*inv.bill_to.name),
        }
    }

    /// Who an email about `rows` goes to: its recipients (the stage's `to:`
    /// column, else `email`; see [`Project::email_recipients`]) and the
    /// copies of its `cc:` and `bcc:` columns, which every invoice of the
    /// message carries too (a copy of a statement goes only where each of
    /// its invoices may be read). An address gets the message once: a copy
    /// is not sent to a recipient, nor a blind copy to either. Why there
    /// is none to send to, or why an address of a column the stage names
    /// is refused: such a message fails, it never goes to another address.
    fn contacts(&self, rows: &[Reminder], stage: &Stage) -> Result<Contacts<'_>, String> {
        for (key, column) in stage.contact_columns() {
            if !self.has_column(column) {
                return Err(self.unknown_column(&stage.id, key, column));
            }
        }
        let to = self.email_recipients(rows, stage.to.as_deref())?;
        let mut cc = self.copies(rows, &stage.cc)?;
        let mut bcc = self.copies(rows, &stage.bcc)?;
        cc.retain(|a| !to.contains(a));
        bcc.retain(|a| !to.contains(a) && !cc.contains(a));
        Ok(Contacts { to, cc, bcc })
    }

    /// Whether an invoice may have addresses in `column`: `email`, or an
    /// extra column of the feeds.
    fn has_column(&self, column: &str) -> bool {
        column == InvoiceField::Email.name()
            || self.ledger.extra_columns.iter().any(|c| c == column)
    }

    /// The addresses of `columns` that every invoice of `rows` carries, in
    /// the first one's order; the first refused address as an error.
    fn copies(&self, rows: &[Reminder], columns: &[String]) -> Result<Vec<&str>, String> {
        if columns.is_empty() {
            return Ok(Vec::new());
        }
        let of = |r: &Reminder| -> Result<Vec<&str>, String> {
            let inv = &self.ledger.invoices[r.invoice];
            let mut all: Vec<&str> = Vec::new();
            for column in columns {
                for address in self.column_addresses(inv, column)? {
                    if !all.contains(&address) {
                        all.push(address);
                    }
                }
            }
            Ok(all)
        };
        let mut common = of(&rows[0])?;
        // Every invoice is read, even once nothing is common: a refused
        // address fails the message wherever it is.
        for r in &rows[1..] {
            let theirs = of(r)?;
            common.retain(|a| theirs.contains(a));
        }
        Ok(common)
    }

    /// The addresses an invoice has in `column`, each once, all of them
    /// valid: a column a stage names is all or nothing, so that a copy
    /// never silently misses its reader. The first refused address is the
    /// error, naming the column and the feed row.
    fn column_addresses<'i>(&self, inv: &'i Invoice, column: &str) -> Result<Vec<&'i str>, String> {
        let field = if column == InvoiceField::Email.name() {
            &*inv.bill_to.email
        } else {
            inv.extra_field(column).unwrap_or("")
        };
        let mut addresses: Vec<&str> = Vec::new();
        for address in crate::address::split(field) {
            if let Err(why) = crate::address::parse(address) {
                return Err(format!(
                    "{}: {column}: invoice {}: {address:?}: {why}: its message is not sent until \
                     the feed is fixed (it never goes to another address)",
                    self.origin(inv),
                    inv.number
                ));
            }
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        Ok(addresses)
    }

    /// The addresses of an invoice in `column` (not `email`), else the
    /// valid ones of its `email`.
    fn addressees<'i>(
        &self,
        inv: &'i Invoice,
        column: Option<&str>,
    ) -> Result<Vec<&'i str>, String> {
        let own = match column {
            Some(column) => self.column_addresses(inv, column)?,
            None => Vec::new(),
        };
        Ok(if own.is_empty() {
            valid_addresses(&self.ledger, inv)
        } else {
            own
        })
    }

    /// The addresses an email about `rows` goes to: for each invoice, those
    /// of the stage's `to:` column (all valid, see
    /// [`Project::column_addresses`]), or, when it has none there, the
    /// valid addresses of its `email`; of the first row's, in its order,
    /// those every other invoice of the message carries too. Rows of one
    /// customer may give different addresses (two companies under one
    /// customer id, a contact who left): a statement goes only where every
    /// invoice in it may be read. An address of `email` delivery would
    /// refuse is left out (`check` reports it), so a message never goes to
    /// a wrong address; with none left, why.
    fn email_recipients(
        &self,
        rows: &[Reminder],
        column: Option<&str>,
    ) -> Result<Vec<&str>, String> {
        let column = column.filter(|c| *c != InvoiceField::Email.name());
        let valid_of = |inv| self.addressees(inv, column);
        let first = &self.ledger.invoices[rows[0].invoice];
        let mut common = valid_of(first)?;
        let first_has_some = !common.is_empty();
        let mut others_have_some = true;
        for r in &rows[1..] {
            let theirs = valid_of(&self.ledger.invoices[r.invoice])?;
            others_have_some &= !theirs.is_empty();
            common.retain(|a| theirs.contains(a));
        }
        if !common.is_empty() {
            return Ok(common);
        }
        let field = column.map_or(Cow::Borrowed("email"), |c| {
            Cow::Owned(format!("{c} (else email)"))
        });
        if rows.len() > 1 && others_have_some && first_has_some {
            let numbers: Vec<&str> = rows
                .iter()
                .map(|r| &*self.ledger.invoices[r.invoice].number)
                .collect();
            return Err(format!(
                "{}: {field}: the invoices of this message ({}) have no address in common: a \
                 message grouped per customer goes only to the addresses every invoice in it \
                 carries",
                self.origin(first),
                numbers.join(", ")
            ));
        }
        let refused = rows.iter().find_map(|r| {
            let inv = &self.ledger.invoices[r.invoice];
            inv.recipients()
                .find_map(|a| crate::address::parse(a).err().map(|why| (inv, a, why)))
        });
        Err(match refused {
            None => format!(
                "{}: {field}: invoice {} has no email address",
                self.origin(first),
                first.number
            ),
            Some((inv, address, why)) => format!(
                "{}: {field}: invoice {} has no valid email address: {address:?}: {why}",
                self.origin(inv),
                inv.number
            ),
        })
    }

    /// Which reminders of a plan go out together: those of a stage with
    /// `group: customer` share one message per customer, date, template,
    /// channel, language and need of approval; a customer's email reminders
    /// of a day under policies that combine (approval needed by none of
    /// them) share one `combined` message per language when they would
    /// otherwise be more than one message; every other reminder goes out alone.
    pub fn messages(&self, plan: &[Reminder]) -> Messages {
        self.messages_in(plan, crate::model::threads_for(plan.len()))
    }

    /// [`Project::messages`], grouped by `parts` threads.
    fn messages_in(&self, plan: &[Reminder], parts: usize) -> Messages {
        let mut messages = Messages {
            reminders: plan.len(),
            ..Messages::default()
        };
        let policies = &self.rulebook.policies;
        let grouping = policies
            .iter()
            .any(|p| p.stages.iter().any(|s| s.group == Grouping::Customer));
        let combining = policies.iter().any(|p| p.contact.combine);
        if !grouping && !combining {
            return messages;
        }
        let combined = match combining {
            true => self.combined_reminders(plan, &mut Languages::default()),
            false => Vec::new(),
        };
        // Each part of the customers is grouped on a core of its own: for
        // each reminder, its invoice and customer are read from memory (a
        // million reads at a million invoices). A message is one customer's.
        let parts = parts.max(1);
        // A plan in date order (as planned) has each day's messages
        // together: the keys of the days before are let go, which at a
        // million rows would hold 14 MB.
        let by_date = plan.is_sorted_by_key(|r| r.date);
        let customers: Vec<u32> = {
            use rayon::prelude::*;
            plan.par_iter()
                .map(|r| self.ledger.customer_of[r.invoice.index()])
                .collect()
        };
        let mut groups: Vec<Vec<usize>> = crate::model::in_parts(0..parts, |part| {
            self.group_part(plan, &customers, &combined, by_date, (part, parts))
        })
        .into_iter()
        .flatten()
        .collect();
        // Numbered in the order of their first reminder, as one part numbers them.
        groups.sort_by_key(|g| g[0]);
        if !groups.is_empty() {
            messages.group_of = vec![Messages::ALONE; plan.len()];
            for (g, group) in groups.iter().enumerate() {
                for &i in group {
                    messages.group_of[i] = g as u32;
                }
            }
        }
        messages.groups = groups;
        messages
    }

    /// The grouped messages of the reminders whose customer and day fall in
    /// `part` of `parts`, each as its reminders in plan order (`by_date`:
    /// the plan is in date order, so that each day's keys can be let go).
    fn group_part(
        &self,
        plan: &[Reminder],
        customers: &[u32],
        combined: &[bool],
        by_date: bool,
        (part, parts): (usize, usize),
    ) -> Vec<Vec<usize>> {
        let policies = &self.rulebook.policies;
        let mut languages = Languages::default();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        // foldhash rather than SipHash: a preview groups a million rows.
        let mut keys: hashbrown::HashMap<MessageKey, usize> = hashbrown::HashMap::new();
        let mut day = None;
        for (i, planned) in plan.iter().enumerate() {
            // The language read below is the invoice's, far apart in memory
            // from the last: asked for a few reminders ahead.
            if let Some(ahead) = plan.get(i.saturating_add(crate::model::PLAN_AHEAD)) {
                self.ledger.prefetch_invoice(ahead.invoice);
            }
            let customer = customers[i] as usize;
            // A message is of one customer and day: the customers that have
            // the most reminders go to each part in turn, day by day.
            let day_number =
                chrono::Datelike::num_days_from_ce(&planned.date).unsigned_abs() as usize;
            if (customer + day_number) % parts != part {
                continue;
            }
            let stage = &policies[planned.policy].stages[planned.stage];
            let template = if combined.get(i).is_some_and(|&c| c) {
                COMBINED
            } else if stage.group == Grouping::Customer {
                stage.template.as_str()
            } else {
                continue;
            };
            // A message a person approves carries only reminders that
            // need approval: approving it never sends one that needs none.
            let key = (
                planned.date,
                customer,
                template,
                stage.channel,
                languages.of(self, planned.invoice, template),
                stage.approve,
                contact_columns(stage),
            );
            if by_date && day != Some(planned.date) {
                keys.clear();
                day = Some(planned.date);
            }
            let next = groups.len();
            let entry = keys.entry(key).or_insert(next);
            // A full message starts the next one (with its own first invoice,
            // so its own id): a statement of thousands of invoices is read by
            // nobody, and its size would grow with the square of theirs.
            if groups
                .get(*entry)
                .is_some_and(|g| g.len() >= MAX_INVOICES_PER_MESSAGE)
            {
                *entry = next;
            }
            if *entry == next {
                groups.push(Vec::new());
            }
            groups[*entry].push(i);
        }
        groups
    }

    /// Whether `planned` may go out combined with its customer's other
    /// email reminders of its day: its policy combines (`contact: {combine:
    /// true}`), and it is an email reminder, not a thank-you (a different
    /// kind of message, about a paid invoice), nor one that needs approval.
    fn combines(&self, planned: &Reminder) -> bool {
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        // A reminder a person approves goes out on its own, when approved:
        // combined, it would hold back (or send) the others with it.
        policy.contact.combine
            && stage.channel == Channel::Email
            && stage.trigger != Trigger::Paid
            && !stage.approve
    }

    /// Whether the message of `rows` goes out in the `combined` template:
    /// several reminders that combine, and that are not one grouped stage's
    /// statement (which its own template writes, combining or not).
    fn is_combined(&self, rows: &[Reminder]) -> bool {
        let stage = |r: &Reminder| &self.rulebook.policies[r.policy].stages[r.stage];
        let one_statement = |first: &Stage| {
            first.group == Grouping::Customer
                && rows.iter().all(|r| {
                    let s = stage(r);
                    s.group == Grouping::Customer && s.template == first.template
                })
        };
        rows.len() > 1 && self.combines(&rows[0]) && !one_statement(stage(&rows[0]))
    }

    /// Which reminders of a plan go out in a combined message: of each
    /// customer's reminders of a day that combine (in the language the
    /// `combined` template gives them), those that would otherwise be more
    /// than one message. A customer's lone reminder, or a statement alone,
    /// keeps its own template.
    fn combined_reminders<'p>(
        &'p self,
        plan: &[Reminder],
        languages: &mut Languages<'p>,
    ) -> Vec<bool> {
        // Each reminder's customer day, as an index into `days`.
        let mut index: hashbrown::HashMap<(NaiveDate, usize, &str, ContactColumns), usize> =
            hashbrown::HashMap::new();
        let mut days: Vec<Vec<Reminder>> = Vec::new();
        let mut day_of: Vec<Option<usize>> = vec![None; plan.len()];
        for (i, planned) in plan.iter().enumerate() {
            if !self.combines(planned) {
                continue;
            }
            let key = (
                planned.date,
                self.ledger.customer_index(planned.invoice),
                languages.of(self, planned.invoice, COMBINED),
                contact_columns(&self.rulebook.policies[planned.policy].stages[planned.stage]),
            );
            let day = *index.entry(key).or_insert_with(|| {
                days.push(Vec::new());
                days.len() - 1
            });
            days[day].push(*planned);
            day_of[i] = Some(day);
        }
        let combined: Vec<bool> = days.iter().map(|rows| self.is_combined(rows)).collect();
        day_of
            .iter()
            .map(|day| day.is_some_and(|d| combined[d]))
            .collect()
    }

    /// Where an invoice is written in its feed: its line, or its index in a
    /// JSON array, as bad rows are reported.
    fn origin(&self, inv: &Invoice) -> Location {
        invoice_location(&self.config, inv)
    }

    /// The reminders of `days` days from `from`, decided as the daemon
    /// decides them (the journal simulated forward), sorted by date and
    /// invoice number.
    pub fn plan(&self, from: NaiveDate, days: u32, journal: &JournalView) -> crate::engine::Plan {
        self.evaluator().plan(from, days, journal, None)
    }

    /// The rows of a plan as they go out, in plan order: each reminder with
    /// the message it goes out in (grouped with its customer's others when
    /// its stage says so), the body too when `body`. What `preview --format
    /// json` prints, for a plan that fits in memory.
    /// Rendered on every core (`preview --baseline` and the daemon's
    /// reload render two plans of 14 days): each grouped message once,
    /// then every row.
    pub fn render(&self, plan: &[Reminder], body: bool) -> Vec<Message<'_>> {
        let all: Vec<usize> = (0..plan.len()).collect();
        self.render_rows(plan, &self.messages(plan), &all, body)
    }

    /// The rows `rows` (indexes into `plan`, whose grouping is `messages`)
    /// as they go out, in the order given: a page of a plan, or one of its
    /// messages, rendered as [`Project::render`] renders the whole plan.
    /// Each grouped message a row goes out in is rendered once.
    pub fn render_rows(
        &self,
        plan: &[Reminder],
        messages: &Messages,
        rows: &[usize],
        body: bool,
    ) -> Vec<Message<'_>> {
        use rayon::prelude::*;
        let mut wanted = vec![false; messages.groups.len()];
        for &i in rows {
            if let Some(&g) = messages.group_of.get(i).filter(|&&g| g != Messages::ALONE) {
                wanted[g as usize] = true;
            }
        }
        let leads: Vec<Option<Message>> = messages
            .groups
            .par_iter()
            .zip(wanted)
            .map(|(group, wanted)| {
                (wanted && group.len() > 1).then(|| {
                    let rows: Vec<Reminder> = group.iter().map(|&j| plan[j]).collect();
                    self.message(&rows, body)
                })
            })
            .collect();
        rows.par_iter()
            .map(|&i| {
                let planned = &plan[i];
                let lead = match messages.group_of.get(i) {
                    Some(&g) if g != Messages::ALONE => leads[g as usize].as_ref(),
                    _ => None,
                };
                match lead {
                    Some(lead) => self.member(planned, lead),
                    None => self.reminder(planned, body),
                }
            })
            .collect()
    }

    /// What the journal holds, for deciding as the daemon would; empty when
    /// there is no journal yet (a preview must not create one).
    pub fn journal_view(&self) -> Result<JournalView, crate::error::Error> {
        Ok(
            match crate::journal::Journal::open_config_read_only(&self.config)? {
                Some(journal) => journal.view()?,
                None => JournalView::default(),
            },
        )
    }

    /// The date it is at `now` in the config's time zone: "today" for a
    /// command given no `--as-of`.
    pub fn date_at(&self, now: chrono::DateTime<chrono::Utc>) -> NaiveDate {
        now.with_timezone(&self.config.timezone).date_naive()
    }

    /// Whether the config, a policy, a script or a template has an error:
    /// what the daemon refuses to start with, so `preview` and `explain`
    /// must not show what the other policies would send instead.
    pub fn has_rule_errors(&self) -> bool {
        self.problems.has_errors()
    }

    /// Renders the message of `rows` (the first leads) with `template`, as
    /// `found` in its language.
    fn render_message(
        &self,
        rows: &[Reminder],
        template: &str,
        found: Resolved,
        body: bool,
    ) -> Result<Rendered, Problem> {
        let planned = &rows[0];
        let language = found.language;
        if body {
            let lines = self.statement_lines(rows);
            let policy = &self.rulebook.policies[planned.policy];
            let templates = &self.rulebook.templates;
            if let Some(message) = templates.render_direct(
                template,
                language,
                &self.ledger,
                &lines,
                policy,
                planned.date,
            ) {
                return Ok(message);
            }
        } else {
            let data = SubjectData {
                ledger: &self.ledger,
                invoice: planned.invoice,
                today: planned.date,
                language,
                occurrence: planned.occurrence,
            };
            if let Some(subject) = found.quick_subject(&data) {
                return Ok(Rendered {
                    subject,
                    body: String::new(),
                    html: None,
                });
            }
        }
        self.render_with_handlebars(rows, template, language, body)
    }

    /// The invoices of a message with the stage each is at, as its
    /// template sees them.
    fn statement_lines(&self, rows: &[Reminder]) -> Vec<StatementLine<'_>> {
        rows.iter()
            .map(|r| {
                let policy = &self.rulebook.policies[r.policy];
                StatementLine {
                    invoice: r.invoice,
                    policy,
                    stage: &policy.stages[r.stage],
                    occurrence: r.occurrence,
                }
            })
            .collect()
    }

    /// [`Project::render_message`] through Handlebars, whatever the template.
    fn render_with_handlebars(
        &self,
        rows: &[Reminder],
        template: &str,
        language: &str,
        body: bool,
    ) -> Result<Rendered, Problem> {
        let planned = &rows[0];
        let policy = &self.rulebook.policies[planned.policy];
        let templates = &self.rulebook.templates;
        let parts = templates.parts(template, language, body);
        let lines = self.statement_lines(rows);
        let context = message_context(
            &self.ledger,
            &lines,
            policy,
            planned.date,
            language,
            &self.config,
            parts,
        );
        templates.render(template, language, context, body)
    }

    /// `relance check`: every problem of the folder, with templates rendered
    /// and expressions run against sample invoices so that a missing
    /// variable or an unknown property is found before a customer sees it.
    pub fn check(&self, today: NaiveDate) -> Problems {
        let mut problems = self.problems.clone();
        problems.extend(self.feed_problems.clone());
        // Four passes over every invoice, two on each core, said in this order.
        let (mut addresses, mut names) = (Problems::default(), Problems::default());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                self.check_email_addresses(&mut addresses);
                self.check_contact_columns(&mut addresses);
            });
            self.check_common_addresses(&mut names);
            self.check_file_names(today, &mut names);
        });
        problems.extend(addresses);
        problems.extend(names);
        self.check_holds(&mut problems);
        self.check_grouped_templates(&mut problems);
        let sample = Arc::new(self.sample_ledger(today));
        for policy in &self.rulebook.policies {
            let mut scope = Variables {
                invoice: InvoiceView {
                    ledger: sample.clone(),
                    index: FULL_SAMPLE,
                    today,
                },
                customer: CustomerView {
                    ledger: sample.clone(),
                    index: sample.customer_index(FULL_SAMPLE),
                    today,
                    // Never contacted: a rule must say what it does then.
                    last_contacted: None,
                },
                today,
                sent: vec![],
            }
            .into_scope(None);
            if let Some(expr) = &policy.applies_to
                && let Err(e) = self.rulebook.scripts.eval_bool(expr, &mut scope)
            {
                problems.error(e.location, format!("{} (with a sample invoice)", e.message));
            }
            // `when` sees the policy's discount; `applies_to` does not.
            let discount = policy.discount_variable(&sample.invoices[FULL_SAMPLE], today);
            scope.set_value("discount", discount);
            for stage in &policy.stages {
                if let Some(expr) = &stage.when {
                    scope.set_value("stage", stage.view(0));
                    if let Err(e) = self.rulebook.scripts.eval_bool(expr, &mut scope) {
                        problems
                            .error(e.location, format!("{} (with a sample invoice)", e.message));
                    }
                }
            }
        }
        // Every template in every language, rendered under the first stage
        // that uses it, or a stand-in stage for templates no stage uses yet;
        // when policies with and without a discount share it, under one of
        // each: `discount` is in the context of the first only.
        let stand_in = Policy::sample();
        for (name, language) in self.rulebook.templates.all() {
            // The combined template serves the email stages of the policies
            // that combine.
            let uses = |p: &Policy, s: &Stage| match name == COMBINED {
                true => {
                    p.contact.combine && s.channel == Channel::Email && s.trigger != Trigger::Paid
                }
                false => s.template == name,
            };
            let users: Vec<(&Policy, &Stage)> = self
                .rulebook
                .policies
                .iter()
                .filter_map(|p| p.stages.iter().find(|s| uses(p, s)).map(|s| (p, s)))
                .collect();
            let with_discount = users.iter().find(|(p, _)| p.discount.is_some());
            let without = users.iter().find(|(p, _)| p.discount.is_none());
            let sample_stage = Stage::sample(&name);
            let mut variants: Vec<(&Policy, &Stage)> =
                with_discount.into_iter().chain(without).copied().collect();
            if variants.is_empty() {
                variants.push((&stand_in, &sample_stage));
            }
            // A template only broken promises use always has a promise date.
            let promised = !users.is_empty()
                && name != COMBINED
                && self.rulebook.policies.iter().all(|p| {
                    p.stages
                        .iter()
                        .filter(|s| s.template == name)
                        .all(|s| s.trigger == Trigger::PromiseBroken)
                });
            for (policy, stage) in variants {
                let hint = if policy.discount.is_none() && with_discount.is_some() {
                    format!(
                        " (under policy {}, which offers no discount: show the discount only \
                         inside {{{{#if discount}}}}…{{{{/if}}}})",
                        policy.name
                    )
                } else {
                    String::new()
                };
                let message = SampleMessage {
                    name: &name,
                    language: &language,
                    policy,
                    stage,
                    promised,
                };
                if let Err(mut problem) = self.check_template(&sample, &message, today) {
                    problem.message.push_str(&hint);
                    problems.push(problem);
                    break;
                }
            }
        }
        problems
    }

    /// Warns of each hold that names an invoice or a customer the feeds do
    /// not have: a typo there holds nothing, and the customer gets reminded.
    fn check_holds(&self, problems: &mut Problems) {
        for hold in &self.rulebook.holds.list {
            let (what, known) = match &hold.target {
                HoldTarget::Invoice(n) => (format!("invoice {n}"), self.ledger.find(n).is_some()),
                HoldTarget::Customer(c) => (
                    format!("customer {c}"),
                    self.ledger.customers.iter().any(|k| *k.id == **c),
                ),
            };
            if !known {
                problems.warning(
                    hold.location.clone(),
                    format!("hold: {what} is not in the feeds: this hold holds nothing (a typo?)"),
                );
            }
        }
        for promise in &self.rulebook.holds.promises {
            if self.ledger.find(&promise.invoice).is_none() {
                problems.warning(
                    promise.location.clone(),
                    format!(
                        "promise: invoice {} is not in the feeds: this promise pauses nothing (a typo?)",
                        promise.invoice
                    ),
                );
            }
        }
    }

    /// Warns of each grouped stage whose template does not list the
    /// message's `invoices`: a customer's several reminders would go out as
    /// one message showing only the first invoice.
    fn check_grouped_templates(&self, problems: &mut Problems) {
        for policy in &self.rulebook.policies {
            for stage in policy
                .stages
                .iter()
                .filter(|s| s.group == Grouping::Customer)
            {
                if !self
                    .rulebook
                    .templates
                    .all_mention(&stage.template, "invoices")
                {
                    problems.warning(
                        stage.location.clone(),
                        format!(
                            "stage {} groups reminders per customer, but template {:?} does not list \
                             `invoices`: a message for several invoices would show only the first \
                             (use a statement template, e.g. {{{{#each invoices}}}}…{{{{/each}}}})",
                            stage.id, stage.template
                        ),
                    );
                }
            }
        }
    }

    /// Renders a template against the sample invoices, as a message of
    /// `stage` of `policy`: the first problem, if any. The full sample leads
    /// a statement of both: a grouped message's table meets invoices with
    /// and without every optional field.
    fn check_template(
        &self,
        sample: &Arc<Ledger>,
        message: &SampleMessage,
        today: NaiveDate,
    ) -> Result<(), Problem> {
        let SampleMessage {
            name,
            language,
            policy,
            stage,
            promised,
        } = *message;
        let render = |invoices: &[InvoiceId]| {
            let lines: Vec<StatementLine> = invoices
                .iter()
                .map(|&invoice| StatementLine {
                    invoice,
                    policy,
                    stage,
                    occurrence: 0,
                })
                .collect();
            let context = message_context(
                sample,
                &lines,
                policy,
                today,
                language,
                &self.config,
                // What a real message gets: a field the template reads
                // but the context lacks is found here, not in a mailbox.
                self.rulebook.templates.parts(name, language, true),
            );
            self.rulebook
                .templates
                .render(name, language, context, true)
        };
        let (sparse, lacks, guarded) = if promised {
            (SPARSE_PROMISED_SAMPLE, "paid_date, tags", "paid_date")
        } else {
            (
                SPARSE_SAMPLE,
                "paid_date, promise_date, tags",
                "promise_date",
            )
        };
        // The sparse invoice only where the full one renders: a mistake
        // that fails both is reported once, without a misleading hint. A
        // combined message also has an invoice coming due, which the full
        // and the sparse ones, both overdue, do not show.
        if name == COMBINED {
            render(&[FULL_SAMPLE, DUE_SOON_SAMPLE, sparse])?;
        } else {
            render(&[FULL_SAMPLE, sparse])?;
        }
        render(&[sparse]).map_err(|mut problem| {
            problem.message.push_str(&format!(
                " (with a sample invoice that has no {lacks}, language, extra values or \
                 payment: show an optional field only when it is there, as in \
                 {{{{#if invoice.{guarded}}}}}…{{{{/if}}}})"
            ));
            problem
        })?;
        Ok(())
    }

    /// Warns of each open invoice without an address when some policy sends
    /// emails, and reports each address delivery would refuse: its email
    /// reminders would fail (or miss that address) on their day, one by
    /// one, where a finance manager can fix the feed today.
    fn check_email_addresses(&self, problems: &mut Problems) {
        let sends_email = self
            .rulebook
            .policies
            .iter()
            .any(|p| p.stages.iter().any(|s| s.channel == Channel::Email));
        if !sends_email {
            return;
        }
        // Customers share their addresses: each distinct one is parsed once
        // (and the ledger knows the fields whose every address is valid).
        let mut valid: hashbrown::HashSet<&str> = hashbrown::HashSet::new();
        for (i, inv) in self.ledger.invoices.iter().enumerate() {
            if self.ledger.emails_valid_at(InvoiceId::new(i)) {
                continue;
            }
            if inv.is_open() && inv.recipients().next().is_none() {
                problems.warning(
                    self.origin(inv),
                    format!(
                        "email: invoice {} has no email address: its email reminders cannot be sent",
                        inv.number
                    ),
                );
            }
            if !inv.is_open() && !inv.is_settled() {
                continue;
            }
            refused_addresses(&inv.bill_to.email, &mut valid, |address, why| {
                problems.error(
                    self.origin(inv),
                    format!(
                        "email: invoice {}: {:?}: {why}; its emails go to its other \
                         addresses, and fail when it has none",
                        excerpt(&inv.number),
                        excerpt(address)
                    ),
                );
            });
        }
    }

    /// Reports each feed column an email stage sends to (`to:`, `cc:`,
    /// `bcc:`) that no feed has, at the stage's key, and each address in
    /// those columns delivery would refuse, at the feed row: the messages
    /// that go to such a column fail (they never go elsewhere) until the
    /// rule or the feed is fixed.
    fn check_contact_columns(&self, problems: &mut Problems) {
        // Each column the email stages name (`email` has its own check),
        // with who names it: "cc of stage overdue of policy standard".
        let mut named: Vec<(&str, Vec<String>)> = Vec::new();
        for policy in &self.rulebook.policies {
            for stage in policy.stages.iter().filter(|s| s.channel == Channel::Email) {
                for (key, column) in stage.contact_columns() {
                    if column == InvoiceField::Email.name() || column.trim().is_empty() {
                        continue;
                    }
                    if !self.has_column(column) {
                        // Without invoices the feeds' columns are unknown.
                        if !self.ledger.invoices.is_empty() {
                            problems.error(
                                stage_key_location(policy, stage, key, column),
                                self.unknown_column(&stage.id, key, column),
                            );
                        }
                        continue;
                    }
                    let user = format!("{key} of stage {} of policy {}", stage.id, policy.name);
                    match named.iter_mut().find(|(c, _)| *c == column) {
                        Some((_, users)) => users.push(user),
                        None => named.push((column, vec![user])),
                    }
                }
            }
        }
        if named.is_empty() {
            return;
        }
        // Customers share their contacts: each distinct address is parsed once.
        let mut valid: hashbrown::HashSet<&str> = hashbrown::HashSet::new();
        for inv in crate::model::read_ahead(&self.ledger.invoices) {
            if !inv.is_open() && !inv.is_settled() {
                continue;
            }
            for (column, users) in &named {
                let field = inv.extra_field(column).unwrap_or("");
                refused_addresses(field, &mut valid, |address, why| {
                    problems.error(
                        self.origin(inv),
                        format!(
                            "{column}: invoice {}: {:?}: {why}; the emails that go to this \
                             column ({}) fail until it is fixed",
                            excerpt(&inv.number),
                            excerpt(address),
                            users.join(", ")
                        ),
                    );
                });
            }
        }
    }

    /// Why a stage's `key` cannot name `column`, with what it may name.
    fn unknown_column(&self, stage: &str, key: &str, column: &str) -> String {
        let why = if InvoiceField::feed_column(column).is_some() {
            format!("{column} is not a column of email addresses")
        } else {
            format!("no feed has a column {column:?}")
        };
        let mut columns = vec![InvoiceField::Email.name()];
        columns.extend(self.ledger.extra_columns.iter().map(String::as_str));
        format!(
            "stage {stage}: {key}: {why}: its emails cannot be sent (expected one of the feeds' \
             columns: {})",
            columns.join(", ")
        )
    }

    /// Warns of each customer whose open invoices, read in feed order, come
    /// to one that shares no valid address with those before it, when a
    /// stage groups emails per customer or a policy combines them: a
    /// statement of them would have no recipient (it goes only to the
    /// addresses every invoice carries).
    fn check_common_addresses(&self, problems: &mut Problems) {
        let grouped_email = self.rulebook.policies.iter().any(|p| {
            p.stages.iter().any(|s| {
                s.channel == Channel::Email && (s.group == Grouping::Customer || p.contact.combine)
            })
        });
        if !grouped_email {
            return;
        }
        // Per customer: its first open invoice with an address, the addresses
        // all of its open invoices so far have in common (`None` once a
        // warning is given: one per customer), and the last `email` field
        // taken in (by allocation: the feeds intern it), which the next
        // invoice nearly always repeats, leaving the common ones as they are.
        struct Common<'l> {
            first: InvoiceId,
            shared: Option<Vec<&'l str>>,
            last: usize,
        }
        let mut common: Vec<Option<Common>> =
            (0..self.ledger.customers.len()).map(|_| None).collect();
        // Customers share their addresses: each distinct field is parsed once.
        let mut parsed: hashbrown::HashMap<usize, Vec<&str>> = hashbrown::HashMap::new();
        // The customers whose next invoices change nothing: taken in, and
        // all their invoices repeat the one field. Known in a small table,
        // without reading the invoice's field or the customer's `Common`
        // (from memory, for most invoices).
        let mut unchanging = vec![false; common.len()];
        for (i, inv) in crate::model::read_ahead(&self.ledger.invoices).enumerate() {
            let id = InvoiceId::new(i);
            if !inv.is_open() {
                continue;
            }
            let number = self.ledger.customer_index(id);
            if unchanging[number] {
                continue;
            }
            let customer = &mut common[number];
            let allocation = crate::model::allocation(&inv.bill_to.email);
            if let Some(c) = customer
                && (c.shared.is_none() || c.last == allocation)
            {
                continue;
            }
            let addresses = parsed
                .entry(allocation)
                .or_insert_with(|| valid_addresses(&self.ledger, inv));
            if addresses.is_empty() {
                continue;
            }
            let Some(c) = customer else {
                *customer = Some(Common {
                    first: id,
                    shared: Some(addresses.clone()),
                    last: allocation,
                });
                unchanging[number] = matches!(
                    self.ledger.customer_emails(number),
                    CustomerEmails::One { .. }
                );
                continue;
            };
            c.last = allocation;
            let Some(shared) = &mut c.shared else {
                continue;
            };
            shared.retain(|a| addresses.contains(a));
            if shared.is_empty() {
                let first = &self.ledger.invoices[c.first];
                problems.warning(
                    self.origin(inv),
                    format!(
                        "email: invoice {} of customer {} shares no address with invoice {} \
                         ({}) and the customer's invoices between: a message grouped per \
                         customer about them would have no recipient (it goes only to the \
                         addresses every invoice in it carries)",
                        inv.number,
                        inv.bill_to.id,
                        first.number,
                        self.origin(first)
                    ),
                );
                c.shared = None;
            }
        }
    }

    /// Warns of each stage and each invoice whose messages would be written
    /// to files with names longer than a file system takes (an outbox
    /// `.eml`, a task or letter file, and the temporary file each is
    /// written through): delivery shortens such a name, and a person
    /// looking for the file by its invoice number will not find it whole.
    fn check_file_names(&self, today: NaiveDate, problems: &mut Problems) {
        let writes_emails = matches!(self.config.delivery, crate::config::Delivery::Outbox { .. });
        // Each stage that writes files, with the bytes its file names have
        // besides the invoice's own part, and the template of the message
        // per customer it goes out in (its own when grouped; `combined`
        // too, when its policy combines its emails).
        let mut stages: Vec<(&Stage, usize, Option<&str>)> = Vec::new();
        for policy in &self.rulebook.policies {
            for stage in &policy.stages {
                let extension = match stage.channel {
                    Channel::Email if !writes_emails => continue,
                    Channel::Email => ".eml".len(),
                    channel => format!(".{}.txt", channel.as_str()).len(),
                };
                // The date before the token, the extension after it, and the
                // temporary file's leading dot and `.tmp`.
                let around = "2026-12-01.".len() + extension + ".".len() + ".tmp".len();
                let own = if stage.group == Grouping::Customer {
                    0
                } else {
                    let occurrence = stage.max_occurrence().unwrap_or(u32::MAX);
                    reminder_token("", &policy.name, &stage.id, occurrence).len()
                };
                if around + own + 1 > FILE_NAME_MAX {
                    problems.warning(
                        stage.location.clone(),
                        format!(
                            "stage {}: with policy {}, its file names are longer than the \
                             {FILE_NAME_MAX} bytes a file name may have: delivery shortens them \
                             (use shorter ids)",
                            stage.id,
                            excerpt(&policy.name)
                        ),
                    );
                    continue;
                }
                let grouped = (stage.group == Grouping::Customer).then_some(&*stage.template);
                stages.push((stage, around + own, grouped));
                if policy.contact.combine && stage.channel == Channel::Email {
                    stages.push((stage, around, Some(COMBINED)));
                }
            }
        }
        if stages.is_empty() {
            return;
        }
        // A token escapes a byte into three at most: an invoice whose
        // parts, tripled, fit in every name needs no closer look (the
        // grouped token's fixed parts: `customer.`, the date, three dots).
        let widest = stages
            .iter()
            .map(|(stage, rest, grouped)| {
                rest + 3 * grouped.unwrap_or(&stage.template).len() + "customer...2026-12-01".len()
            })
            .max()
            .unwrap_or(0);
        // The longest customer id stands for each invoice's: reading each
        // invoice's would wait on memory for most invoices.
        let longest_id = self
            .ledger
            .customers
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(0);
        for inv in crate::model::read_ahead(&self.ledger.invoices) {
            if !inv.is_open() && !inv.is_settled() {
                continue;
            }
            if widest + 3 * (inv.number.len() + longest_id) <= FILE_NAME_MAX {
                continue;
            }
            // The number as a token writes it (escaped), without the
            // separators of the empty parts.
            let number = reminder_token(&inv.number, "", "", 0).len() - "...0".len();
            let longest = stages
                .iter()
                .map(|&(stage, rest, grouped)| {
                    let own = match grouped {
                        Some(template) => {
                            group_token(&inv.bill_to.id, template, today, &inv.number).len()
                        }
                        None => number,
                    };
                    (rest + own, stage)
                })
                .max_by_key(|&(bytes, _)| bytes);
            if let Some((bytes, stage)) = longest.filter(|&(bytes, _)| bytes > FILE_NAME_MAX) {
                problems.warning(
                    self.origin(inv),
                    format!(
                        "invoice {}: its file names (stage {}) would be {bytes} bytes long, more \
                         than the {FILE_NAME_MAX} a file name may have: delivery shortens them \
                         with a hash",
                        excerpt(&inv.number),
                        stage.id
                    ),
                );
            }
        }
    }

    /// The invoices `check` renders templates with: at `FULL_SAMPLE` one
    /// with every field set (and every extra column the feeds have), at
    /// `SPARSE_SAMPLE` one of another customer with every optional field
    /// empty, as many real invoices are: a template must render for both.
    fn sample_ledger(&self, today: NaiveDate) -> Ledger {
        let extra = crate::model::Extra::from(
            self.ledger
                .extra_columns
                .iter()
                .map(|column| (column.as_str().into(), crate::model::Shared::default()))
                .collect::<Vec<_>>(),
        );
        let due = today - chrono::Days::new(10);
        let full = Invoice {
            number: "SAMPLE-0001".into(),
            bill_to: BillTo::new("SAMPLE", "Sample Customer", "sample@example.com"),
            // Issued today: an early-payment discount is still available, so
            // the part of a template that offers one is rendered too (the
            // sparse invoice's has passed).
            issue_date: today,
            due_date: due,
            amount: Decimal::new(123456, 2),
            amount_paid: Decimal::new(23456, 2),
            currency: self.config.currency.as_str().into(),
            status: Status::Open,
            paid_date: Some(today),
            language: Some(self.config.language.as_str().into()),
            tags: crate::model::ThinSlice::from(["sample".into()]),
            promise_date: Some(today),
            extra,
            origin: Origin {
                file: Arc::new(PathBuf::from("sample")),
                line: 0,
            },
        };
        let sparse = Invoice {
            number: "SAMPLE-0002".into(),
            bill_to: BillTo::new("SAMPLE-2", "Sparse Customer", "sample@example.com"),
            issue_date: due - chrono::Days::new(30),
            amount_paid: Decimal::ZERO,
            paid_date: None,
            language: None,
            tags: crate::model::ThinSlice::default(),
            promise_date: None,
            ..full.clone()
        };
        let promised = Invoice {
            number: "SAMPLE-0003".into(),
            promise_date: Some(today - chrono::Days::new(3)),
            ..sparse.clone()
        };
        let due_soon = Invoice {
            number: "SAMPLE-0004".into(),
            due_date: today + chrono::Days::new(7),
            ..full.clone()
        };
        Ledger::new(vec![full, sparse, promised, due_soon])
            .with_default_language(&self.config.language)
    }
}

/// Who an email goes to: its recipients, copies and blind copies.
#[derive(Default)]
struct Contacts<'p> {
    to: Vec<&'p str>,
    cc: Vec<&'p str>,
    bcc: Vec<&'p str>,
}

/// The feed columns a stage's emails go to (`to`, `cc`, `bcc`): reminders
/// whose stages differ in them never share a message, which has one set of
/// recipients and copies.
type ContactColumns<'s> = (Option<&'s str>, &'s [String], &'s [String]);

/// What the reminders of one message share: date, customer, template,
/// channel, language, whether a person approves it, and contacts.
type MessageKey<'p> = (
    NaiveDate,
    usize,
    &'p str,
    Channel,
    &'p str,
    bool,
    ContactColumns<'p>,
);

fn contact_columns(stage: &Stage) -> ContactColumns<'_> {
    (stage.to.as_deref(), &stage.cc, &stage.bcc)
}

/// Addresses as one field writes them: `a@x.fr, b@y.fr`.
fn joined<'p>(addresses: &[&'p str]) -> Cow<'p, str> {
    match addresses {
        [one] => Cow::Borrowed(one),
        several => Cow::Owned(several.join(", ")),
    }
}

/// Calls `refused` with each address of `field` delivery would refuse and
/// why; the valid ones are remembered in `valid`, so that an address many
/// invoices share is parsed once.
fn refused_addresses<'f>(
    field: &'f str,
    valid: &mut hashbrown::HashSet<&'f str>,
    mut refused: impl FnMut(&str, String),
) {
    for address in crate::address::split(field) {
        if valid.contains(address) {
            continue;
        }
        match crate::address::parse(address) {
            Ok(_) => {
                valid.insert(address);
            }
            Err(why) => refused(address, why),
        }
    }
}

/// The addresses of an invoice delivery accepts, each once, in its order.
pub fn valid_addresses<'i>(ledger: &Ledger, inv: &'i Invoice) -> Vec<&'i str> {
    let all_valid = ledger.emails_valid(inv);
    if all_valid && !inv.bill_to.email.contains(crate::address::SEPARATORS) {
        // One address, and a valid one: nothing to split, parse or compare.
        return vec![inv.bill_to.email.trim()];
    }
    let mut valid: Vec<&str> = Vec::new();
    for address in inv.recipients() {
        if !valid.contains(&address) && (all_valid || crate::address::parse(address).is_ok()) {
            valid.push(address);
        }
    }
    valid
}

/// Where a stage writes `key` (`to`, `cc`, `bcc`) naming `column`: on the
/// line that also names the column, else the key's line, after the stage's
/// `- id:` line; the stage's line when the file no longer says.
fn stage_key_location(policy: &Policy, stage: &Stage, key: &str, column: &str) -> Location {
    let from = stage.location.line.unwrap_or(1);
    let source = std::fs::read_to_string(&policy.file).unwrap_or_default();
    locate_yaml_key(&source, from, key, Some(column))
        .or_else(|| locate_yaml_key(&source, from, key, None))
        .map_or_else(
            || stage.location.clone(),
            |(line, col)| Location::at(&policy.file, line, col),
        )
}

/// The longest file name common file systems take (ext4, XFS, APFS, NTFS),
/// in bytes.
const FILE_NAME_MAX: usize = 255;

/// An identifier as a message quotes it: whole when short, else its start.
fn excerpt(id: &str) -> Cow<'_, str> {
    const SHOWN: usize = 40;
    match id.char_indices().nth(SHOWN) {
        Some((end, _)) => Cow::Owned(format!("{}… ({} bytes)", &id[..end], id.len())),
        None => Cow::Borrowed(id),
    }
}

/// The most invoices one grouped message lists; a customer's further
/// reminders of the day go out in further messages.
pub const MAX_INVOICES_PER_MESSAGE: usize = 100;

/// Where an invoice is written in its feed: its line, or its index in a
/// JSON array, as bad rows are reported.
fn invoice_location(config: &Config, inv: &Invoice) -> Location {
    let file = inv.origin.file.as_path();
    let format = config
        .feeds
        .iter()
        .find(|f| config.path(&f.path) == file)
        .map_or_else(|| FeedConfig::new(file.into()).format(), |f| f.format());
    match format {
        FeedFormat::Json => Location {
            index: Some(inv.origin.line),
            ..Location::file(file)
        },
        _ => Location::line(file, inv.origin.line),
    }
}

/// The template of a customer's email reminders of a day that go out as one
/// message (`contact: {combine: true}`): `templates/combined.LANG.hbs`.
pub const COMBINED: &str = "combined";

/// The template each (template, invoice language) pair of a plan's
/// messages uses, found once each (`render::Templates::find`): finding walks the
/// language fallbacks and looks templates up by name, and a plan has few
/// pairs. A writer of many messages keeps one ([`Project::message_in`]).
#[derive(Default)]
pub struct Languages<'p>(Vec<(&'p str, &'p str, Resolved<'p>)>);

impl<'p> Languages<'p> {
    fn find(
        &mut self,
        project: &'p Project,
        invoice: InvoiceId,
        template: &'p str,
    ) -> Resolved<'p> {
        let wanted = project.language_of(invoice);
        if let Some((_, _, found)) = self
            .0
            .iter()
            .find(|(t, w, _)| *t == template && *w == wanted)
        {
            return *found;
        }
        let found = project.rulebook.templates.find(template, wanted);
        self.0.push((template, wanted, found));
        found
    }

    /// The language a message of `template` to `invoice` is written in.
    fn of(&mut self, project: &'p Project, invoice: InvoiceId, template: &'p str) -> &'p str {
        self.find(project, invoice, template).language
    }
}

impl Message<'_> {
    /// Appends the message as JSON: exactly what serde writes for it (the
    /// same keys, order and omissions; a test holds them together), without
    /// going through the serializer for each of a preview's million rows.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_heading(out);
        self.write_json_text(out);
        self.write_json_end(out);
    }

    /// The first part of [`Message::write_json`]: the keys up to `currency`.
    /// Its strings almost never hold a byte JSON escapes, so they are first
    /// copied as they are and the heading is scanned once for such bytes,
    /// sixteen at a time: when all it finds are the quotes it wrote itself,
    /// that is the heading; otherwise it is written again, each string
    /// escaped. Escaping thirteen short strings one by one was a tenth of
    /// a day's preview.
    pub fn write_json_heading(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let quotes = self.write_heading::<false>(out);
        if escaped_bytes(&out[start..]) != quotes {
            out.truncate(start);
            self.write_heading::<true>(out);
        }
    }

    /// The heading, each string escaped when `ESCAPE`, copied as it is
    /// otherwise; how many quotes it wrote around keys and strings.
    fn write_heading<const ESCAPE: bool>(&self, out: &mut Vec<u8>) -> usize {
        let mut heading = Heading::<ESCAPE> { out, quotes: 0 };
        crate::text::with_iso_date(self.date, |date| heading.text("{\"date\":", date));
        heading.text(",\"invoice\":", self.invoice);
        heading.text(",\"customer_id\":", self.customer_id);
        heading.text(",\"customer_name\":", self.customer_name);
        heading.text(",\"policy\":", self.policy);
        heading.text(",\"stage\":", self.stage);
        heading.key(",\"occurrence\":");
        heading
            .out
            .extend_from_slice(itoa::Buffer::new().format(self.occurrence).as_bytes());
        heading.text(",\"message\":", &self.message);
        heading.text(",\"channel\":", self.channel.as_str());
        heading.text(",\"to\":", &self.to);
        heading.list(",\"cc\":", &self.cc);
        heading.list(",\"bcc\":", &self.bcc);
        if let Some(reply_to) = self.reply_to {
            heading.text(",\"reply_to\":", reply_to);
        }
        heading.text(",\"language\":", self.language);
        heading.text(",\"template\":", self.template);
        heading.text(",\"subject\":", &self.subject);
        heading.text(",\"amount_due\":", &self.amount_due);
        heading.text(",\"currency\":", self.currency);
        heading.quotes
    }

    /// The part of [`Message::write_json`] that every row of a grouped
    /// message shares: `send_at`, `body`, `html` and `error`.
    pub fn write_json_text(&self, out: &mut Vec<u8>) {
        for (key, value) in [
            (",\"send_at\":", &self.send_at),
            (",\"body\":", &self.body),
            (",\"html\":", &self.html),
            (",\"error\":", &self.error),
        ] {
            if let Some(value) = value {
                json_text(out, key, value);
            }
        }
    }

    /// The end of [`Message::write_json`]: `approval`, and the closing brace.
    pub fn write_json_end(&self, out: &mut Vec<u8>) {
        if let Some(approval) = self.approval {
            json_text(out, ",\"approval\":", approval);
        }
        out.push(b'}');
    }
}

/// A JSON string of `value`, as serde_json writes it: only control
/// characters, quotes and backslashes are escaped, and the runs between
/// them (found sixteen bytes at a time) are copied whole: a rendered preview
/// escapes gigabytes of message bodies, a few escapes a line.
fn json_string(out: &mut Vec<u8>, value: &str) {
    let mut rest = value.as_bytes();
    out.reserve(rest.len() + 2);
    out.push(b'"');
    while let Some(at) = first_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        let byte = rest[at];
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Where the first byte JSON escapes is, looked for sixteen bytes at a
/// time ([`escapes`]). The last bytes are looked at as the sixteen that
/// end the text, or padded to sixteen when it is shorter.
fn first_escape(bytes: &[u8]) -> Option<usize> {
    let (chunks, tail) = bytes.as_chunks::<16>();
    for (i, chunk) in chunks.iter().enumerate() {
        let found = escapes(chunk);
        if found != 0 {
            return Some(i * 16 + found.trailing_zeros() as usize);
        }
    }
    if tail.is_empty() {
        return None;
    }
    let found = match bytes.last_chunk::<16>() {
        // Their first bits are of bytes checked already.
        Some(last) => escapes(last) >> (16 - tail.len()),
        None => {
            let mut padded = [b' '; 16];
            padded[..tail.len()].copy_from_slice(tail);
            escapes(&padded)
        }
    };
    (found != 0).then(|| bytes.len() - tail.len() + found.trailing_zeros() as usize)
}

/// Whether JSON escapes `byte`: a control character, a quote or a backslash.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// The bytes of `chunk` JSON escapes, a bit each (the lowest for its first
/// byte): three comparisons of all sixteen at once.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn escapes(chunk: &[u8; 16]) -> u32 {
    // SAFETY: SSE2 is enabled for this target (the x86_64 baseline).
    unsafe { std::arch::x86_64::_mm_movemask_epi8(escape_lanes(chunk)) as u32 }
}

/// The bytes of `chunk` JSON escapes, as lanes of all ones.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn escape_lanes(chunk: &[u8; 16]) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled for this target (the x86_64 baseline),
    // and the unaligned load reads the sixteen bytes of `chunk`.
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        // Below 0x20: unchanged by the unsigned minimum with 0x1f.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        _mm_or_si128(control, _mm_or_si128(quote, backslash))
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn escapes(chunk: &[u8; 16]) -> u32 {
    escapes_bytewise(chunk)
}

/// [`escapes`], a byte at a time.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn escapes_bytewise(chunk: &[u8; 16]) -> u32 {
    (0..16).fold(0, |mask, i| mask | u32::from(escaped(chunk[i])) << i)
}

/// How many bytes of `bytes` JSON escapes, counted sixteen at a time: each
/// of sixteen counters, a byte wide, counts those in its lane for up to
/// 255 chunks, and the sixteen are summed at the end of each run of
/// chunks. (The baseline x86_64 has no instruction to count a mask's bits.)
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn escaped_bytes(bytes: &[u8]) -> usize {
    use std::arch::x86_64::{
        _mm_cvtsi128_si64, _mm_sad_epu8, _mm_setzero_si128, _mm_srli_si128, _mm_sub_epi8,
    };
    let (chunks, tail) = bytes.as_chunks::<16>();
    let mut padded = [b' '; 16];
    padded[..tail.len()].copy_from_slice(tail);
    let mut count = 0;
    for run in chunks.chunks(255).chain([std::slice::from_ref(&padded)]) {
        // SAFETY: SSE2 is enabled for this target (the x86_64 baseline).
        count += unsafe {
            // An escaped byte's lane is all ones: minus one.
            let counts = run.iter().fold(_mm_setzero_si128(), |counts, chunk| {
                _mm_sub_epi8(counts, escape_lanes(chunk))
            });
            let halves = _mm_sad_epu8(counts, _mm_setzero_si128());
            _mm_cvtsi128_si64(halves) + _mm_cvtsi128_si64(_mm_srli_si128::<8>(halves))
        } as usize;
    }
    count
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn escaped_bytes(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&byte| escaped(byte)).count()
}

/// A message's heading being written ([`Message::write_json_heading`]):
/// its strings escaped when `ESCAPE`, copied as they are otherwise, and
/// the quotes it writes around keys and strings counted.
struct Heading<'o, const ESCAPE: bool> {
    out: &'o mut Vec<u8>,
    quotes: usize,
}

impl<const ESCAPE: bool> Heading<'_, ESCAPE> {
    /// A key with its quotes and colon, and the comma or brace before it:
    /// `,"name":`, `{"date":`.
    fn key(&mut self, key: &str) {
        debug_assert_eq!(key.matches('"').count(), 2, "{key}");
        self.out.extend_from_slice(key.as_bytes());
        self.quotes += 2;
    }

    fn string(&mut self, value: &str) {
        if ESCAPE {
            json_string(self.out, value);
        } else {
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        }
        self.quotes += 2;
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    /// `key` and the list of `values`; nothing when there are none.
    fn list(&mut self, key: &str, values: &[&str]) {
        if values.is_empty() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.string(value);
        }
        self.out.push(b']');
    }
}

/// `key` (with its comma, quotes and colon) and the JSON string of `value`.
fn json_text(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    json_string(out, value);
}

/// Which reminders of a plan go out in one message ([`Project::messages`]).
#[derive(Debug, Default)]
pub struct Messages {
    /// How many reminders the plan has.
    reminders: usize,
    /// Each reminder's group, or [`Messages::ALONE`]; empty when none is grouped.
    group_of: Vec<u32>,
    /// The reminders of each grouped message, in plan order.
    pub groups: Vec<Vec<usize>>,
}

impl Messages {
    const ALONE: u32 = u32::MAX;

    /// The reminders (plan indexes) of the grouped message reminder `i`
    /// goes out in; `None` when it goes out alone.
    pub fn group(&self, i: usize) -> Option<&[usize]> {
        match self.group_of.get(i) {
            Some(&g) if g != Self::ALONE => Some(&self.groups[g as usize]),
            _ => None,
        }
    }

    /// Whether reminder `i` opens its message (the first of it, or alone).
    pub fn leads(&self, i: usize) -> bool {
        self.group(i).is_none_or(|g| g[0] == i)
    }

    /// Every message, as the plan indexes of its reminders, in plan order
    /// of their first.
    pub fn each(&self) -> impl Iterator<Item = Vec<usize>> + '_ {
        (0..self.reminders)
            .filter(|&i| self.leads(i))
            .map(|i| self.group(i).map_or_else(|| vec![i], <[usize]>::to_vec))
    }
}

/// A template `check` renders, and as the message of which stage.
#[derive(Clone, Copy)]
struct SampleMessage<'a> {
    name: &'a str,
    language: &'a str,
    policy: &'a Policy,
    stage: &'a Stage,
    /// Only broken promises use it: the sparse sample has a promise date.
    promised: bool,
}

/// The indexes of the invoices of [`Project::sample_ledger`].
const FULL_SAMPLE: InvoiceId = InvoiceId::from_u32(0);
const SPARSE_SAMPLE: InvoiceId = InvoiceId::from_u32(1);
/// The sparse one with a promise to pay: what a broken-promise message is about.
const SPARSE_PROMISED_SAMPLE: InvoiceId = InvoiceId::from_u32(2);
/// The full one's customer's invoice due in a week: a combined message's
/// section of invoices coming due.
const DUE_SOON_SAMPLE: InvoiceId = InvoiceId::from_u32(3);

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads a folder of these files (path, content); the folder is gone
    /// afterwards, which a loaded project no longer needs.
    fn load(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        Project::load(&Options {
            dir: dir.path().to_path_buf(),
            ..Options::default()
        })
        .unwrap()
    }

    #[test]
    fn messages_grouped_by_several_threads_are_those_one_thread_groups() {
        // Customers of few and of many invoices, statements of more than a
        // message holds, reminders of several days.
        let mut feed = String::from(HEADER);
        for i in 0..600 {
            let customer = match i % 10 {
                0..=5 => 0,
                6 | 7 => 1 + i % 5,
                _ => 10 + i,
            };
            let due = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
                + chrono::Days::new((i % 17) as u64);
            feed.push_str(&format!(
                "F{i:04},C{customer},Client {customer},c{customer}@client.example,2026-10-01,{due},{}.50\n",
                10 + i
            ));
        }
        let project = load(&[
            (
                "rules/p.yaml",
                "name: p\nstages:\n  - {id: soon, offset: -2, template: t}\n  - {id: late, offset: 1, template: st, group: customer}\n  - {id: later, offset: 8, template: st, group: customer, repeat: {every: 3}}\n",
            ),
            TEMPLATE,
            (
                "templates/st.fr.hbs",
                "---\nsubject: \"Relevé\"\n---\n{{#each invoices}}{{number}}\n{{/each}}",
            ),
            ("data/invoices.csv", &feed),
        ]);
        let plan = project.plan(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            20,
            &JournalView::default(),
        );
        let one = project.messages_in(&plan.reminders, 1);
        assert!(
            one.groups
                .iter()
                .any(|g| g.len() == MAX_INVOICES_PER_MESSAGE)
        );
        assert!(one.groups.iter().any(|g| g.len() == 1));
        assert!(one.group_of.contains(&Messages::ALONE));
        for parts in [2, 3, 7] {
            let several = project.messages_in(&plan.reminders, parts);
            assert_eq!(several.groups, one.groups, "{parts} parts");
            assert_eq!(several.group_of, one.group_of, "{parts} parts");
        }
    }

    const POLICY: (&str, &str) = (
        "rules/p.yaml",
        "name: p\nstages:\n  - {id: on_due, offset: 0, template: t}\n",
    );
    const TEMPLATE: (&str, &str) = ("templates/t.fr.hbs", "---\nsubject: \"S\"\n---\nB\n");
    const HEADER: &str = "number,customer_id,customer_name,email,issue_date,due_date,amount\n";

    /// [`escapes`] marks what a byte-by-byte test marks, for each byte
    /// value at each place, with another escape or not.
    #[test]
    fn escapes_agrees_with_a_byte_by_byte_test() {
        for byte in 0..=255u8 {
            for at in 0..16 {
                let mut chunk = [b'a'; 16];
                chunk[at] = byte;
                assert_eq!(escapes(&chunk), escapes_bytewise(&chunk), "{byte} at {at}");
                assert_eq!(escapes(&chunk) != 0, escaped(byte), "{byte} at {at}");
                chunk[15 - at] = b'\\';
                assert_eq!(escapes(&chunk), escapes_bytewise(&chunk), "{byte} at {at}");
            }
        }
    }

    /// The escaped bytes of a text are counted as a byte-by-byte test counts
    /// them: texts of 0 to 79 bytes, around 4,080 (the 255 chunks a lane's
    /// counter holds) and of 5,000, with escapes from none to most bytes.
    #[test]
    fn escaped_bytes_are_counted_one_by_one() {
        let mut next = crate::text::tests::random(11);
        for len in (0..80).chain((4070..4100).step_by(3)).chain([5000]) {
            for density in [0, 1, 10, 255] {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let byte = next() as u8;
                        if byte < density {
                            [b'"', b'\\', byte % 0x20][usize::from(byte % 3)]
                        } else {
                            byte
                        }
                    })
                    .collect();
                let one_by_one = bytes.iter().filter(|&&b| escaped(b)).count();
                assert_eq!(escaped_bytes(&bytes), one_by_one, "{len} bytes, {density}");
            }
        }
        let all_escaped = vec![b'"'; 255 * 16 * 2 + 7];
        assert_eq!(escaped_bytes(&all_escaped), all_escaped.len());
    }

    /// Every ASCII byte, at every place of a string longer than a word,
    /// is escaped as serde escapes it.
    #[test]
    fn strings_are_escaped_as_serde_escapes_them() {
        for byte in 0..=127u8 {
            for at in (0..17).filter(|&at| at != 3) {
                let mut text = "ab\u{e9}cdefghijklmnopq".to_string();
                text.insert(at, char::from(byte));
                text.push_str("\"z\\\n");
                let mut fast = Vec::new();
                json_string(&mut fast, &text);
                assert_eq!(fast, serde_json::to_vec(&text).unwrap(), "{byte} at {at}");
            }
            // And in strings shorter than a chunk, or a few chunks long,
            // alone or with a quote further on, or with every byte escaped.
            for len in 0..=50 {
                for at in 0..len {
                    let mut chars: Vec<char> = "x\u{e9}".chars().cycle().take(len).collect();
                    chars[at] = char::from(byte);
                    let mut texts = vec![chars.iter().collect::<String>()];
                    chars[len - 1 - at] = '"';
                    texts.push(chars.iter().collect());
                    texts.push(std::iter::repeat_n(char::from(byte), at).collect());
                    for text in texts {
                        let mut fast = b"[".to_vec();
                        json_string(&mut fast, &text);
                        let mut serde = b"[".to_vec();
                        serde.extend(serde_json::to_vec(&text).unwrap());
                        assert_eq!(fast, serde, "{byte} at {at} of {len}: {text:?}");
                    }
                }
            }
        }
    }

    /// [`Message::write_json`] writes what serde writes, whatever is set.
    #[test]
    fn a_message_is_written_as_serde_writes_it() {
        let message = |tricky: bool| Message {
            date: crate::model::tests::date("2026-02-28"),
            invoice: if tricky { "F\"1\\\n" } else { "F1" },
            customer_id: "C1",
            customer_name: if tricky {
                "Dupont & Fils <é>\t"
            } else {
                "Dupont"
            },
            policy: "standard",
            stage: "overdue_1",
            occurrence: 3,
            message: "F1.standard.overdue_1.3".into(),
            channel: Channel::Letter,
            to: Cow::Borrowed("a@x.fr"),
            cc: if tricky {
                vec!["b@x.fr", "c\"@x.fr"]
            } else {
                vec![]
            },
            bcc: if tricky { vec!["d@x.fr"] } else { vec![] },
            reply_to: tricky.then_some("r@x.fr"),
            language: "fr-CA",
            template: "t",
            subject: "Relance \u{1f} : « x »".into(),
            amount_due: "1234.50".into(),
            currency: "EUR",
            send_at: tricky.then(|| "2026-02-28T09:00:00+01:00".to_string()),
            body: tricky.then(|| "Madame,\r\n\"x\"".to_string()),
            html: tricky.then(|| "<p>x</p>".to_string()),
            error: tricky.then(|| "no address".to_string()),
            approval: tricky.then_some("required"),
            covers: Arc::from([]),
        };
        for tricky in [false, true] {
            let mut fast = Vec::new();
            message(tricky).write_json(&mut fast);
            let serde = serde_json::to_vec(&message(tricky)).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    /// A byte JSON escapes in any one string of a message's heading, alone
    /// or with others, is escaped; a heading without one is taken as first
    /// written: the bytes to escape it holds are exactly the quotes it wrote.
    #[test]
    fn any_one_string_of_a_heading_is_escaped() {
        let plain = Message {
            date: crate::model::tests::date("2024-02-29"),
            invoice: "F1",
            customer_id: "C1",
            customer_name: "Dupont",
            policy: "standard",
            stage: "overdue_1",
            occurrence: 12,
            message: "F1.standard.overdue_1.12".into(),
            channel: Channel::Email,
            to: Cow::Borrowed("a@x.fr"),
            cc: vec!["b@x.fr"],
            bcc: vec!["d@x.fr", "e@x.fr"],
            reply_to: Some("r@x.fr"),
            language: "fr",
            template: "t",
            subject: "Relance".into(),
            amount_due: "1234.50".into(),
            currency: "EUR",
            send_at: None,
            body: None,
            html: None,
            error: None,
            approval: None,
            covers: Arc::from([]),
        };
        // Without a list, with one list of one address, with both.
        let mut lists = plain.clone();
        (lists.cc, lists.bcc, lists.reply_to) = (Vec::new(), Vec::new(), None);
        for m in [
            &plain,
            &lists,
            &Message {
                bcc: Vec::new(),
                ..plain.clone()
            },
        ] {
            let mut heading = Vec::new();
            let quotes = m.write_heading::<false>(&mut heading);
            assert_eq!(
                escaped_bytes(&heading),
                quotes,
                "{}",
                String::from_utf8_lossy(&heading)
            );
        }
        // Short and long strings, one escape or several.
        for tricky in [
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "x\"y\"z",
            "0123456789abcdef\"",
            "\"\"",
        ] {
            for field in 0..15 {
                let mut m = plain.clone();
                match field {
                    0 => m.invoice = tricky,
                    1 => m.customer_id = tricky,
                    2 => m.customer_name = tricky,
                    3 => m.policy = tricky,
                    4 => m.stage = tricky,
                    5 => m.message = tricky.into(),
                    6 => m.to = Cow::Borrowed(tricky),
                    7 => m.cc = vec![tricky],
                    8 => m.bcc[1] = tricky,
                    9 => m.reply_to = Some(tricky),
                    10 => m.language = tricky,
                    11 => m.template = tricky,
                    12 => m.subject = tricky.into(),
                    13 => m.amount_due = tricky.into(),
                    _ => m.currency = tricky,
                }
                let mut fast = b"[".to_vec();
                m.write_json(&mut fast);
                let mut serde = b"[".to_vec();
                serde.extend(serde_json::to_vec(&m).unwrap());
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(serde).unwrap(),
                    "{tricky:?} in field {field}"
                );
            }
        }
    }

    /// The compiled subjects ([`Resolved::quick_subject`]) write what
    /// Handlebars writes: every shipped template in every language, for
    /// generated invoices of every currency the locale knows, amounts of
    /// every scale and sign, month ends and leap days, and occurrences 0 to 3.
    #[test]
    fn compiled_subjects_are_the_subjects_handlebars_renders() {
        use crate::model::tests::date;
        let project = differential::project_of_140_invoices();
        let mut compared = 0;
        for (p, policy) in project.rulebook.policies.iter().enumerate() {
            for s in 0..policy.stages.len() {
                for i in 0..project.ledger.invoices.len() {
                    let reminder = Reminder {
                        date: date("2026-12-01") + chrono::Days::new(i as u64 % 40),
                        invoice: InvoiceId::new(i),
                        policy: crate::rules::PolicyId::new(p),
                        stage: crate::rules::StageId::new(s),
                        occurrence: (i % 4) as u32,
                    };
                    let template = &policy.stages[s].template;
                    for language in ["fr", "en", "fr-CA"] {
                        let rows = std::slice::from_ref(&reminder);
                        let data = SubjectData {
                            ledger: &project.ledger,
                            invoice: reminder.invoice,
                            today: reminder.date,
                            language,
                            occurrence: reminder.occurrence,
                        };
                        let found = project.rulebook.templates.find(template, language);
                        if found.language != language {
                            continue;
                        }
                        let Some(quick) = found.quick_subject(&data) else {
                            continue;
                        };
                        let slow = project.render_with_handlebars(rows, template, language, false);
                        assert_eq!(quick, slow.unwrap().subject, "{template}.{language}");
                        compared += 1;
                    }
                }
            }
        }
        // Most of the shipped subjects are compiled.
        assert!(compared > 5000, "{compared}");
    }

    /// Every shipped template, in every language, rendered both ways for
    /// messages of one to fifteen generated invoices under every stage:
    /// what is written without Handlebars is what Handlebars writes.
    #[test]
    fn compiled_messages_are_the_messages_handlebars_renders() {
        use crate::model::tests::date;
        let project = differential::project_of_140_invoices();
        let ledger = &project.ledger;
        let templates = &project.rulebook.templates;
        let (mut compared, mut compiled) = (0, std::collections::BTreeSet::new());
        for (name, language) in templates.all() {
            for (p, policy) in project.rulebook.policies.iter().enumerate() {
                for s in 0..policy.stages.len() {
                    for first in 0..27 {
                        // A customer's invoices from `first` on, one to fifteen of them.
                        let rows: Vec<Reminder> = (first..ledger.invoices.len())
                            .step_by(9)
                            .take(1 + first % 15)
                            .map(|i| Reminder {
                                date: date("2026-12-01") + chrono::Days::new(first as u64 % 12),
                                invoice: InvoiceId::new(i),
                                policy: crate::rules::PolicyId::new(p),
                                stage: crate::rules::StageId::new((s + i) % policy.stages.len()),
                                occurrence: (i % 4) as u32,
                            })
                            .collect();
                        let lines = project.statement_lines(&rows);
                        let (today, policy) = (rows[0].date, &project.rulebook.policies[p]);
                        let Some(quick) = templates
                            .render_direct(&name, &language, ledger, &lines, policy, today)
                        else {
                            continue;
                        };
                        let slow = project.render_with_handlebars(&rows, &name, &language, true);
                        let slow = slow.unwrap_or_else(|e| panic!("{name}.{language}: {e}"));
                        assert_eq!(quick.subject, slow.subject, "{name}.{language}");
                        assert_eq!(quick.body, slow.body, "{name}.{language}");
                        assert_eq!(quick.html, slow.html, "{name}.{language}");
                        compared += 1;
                        compiled.insert((name.clone(), language.clone()));
                    }
                }
            }
        }
        // Every shipped template is compiled, and most messages are written directly.
        assert_eq!(compiled.len(), templates.all().len(), "{compiled:?}");
        assert!(compared > 5000, "{compared}");
    }

    #[test]
    fn a_promise_of_holds_yaml_stands_for_the_feeds_until_it_is_removed() {
        let feed = format!(
            "{},promise_date\nF1,C1,A,a@x.fr,2026-11-01,2026-11-30,100,2026-12-20\nF2,C1,A,a@x.fr,2026-11-01,2026-11-30,100,\n",
            HEADER.trim_end()
        );
        let holds = "promises:\n  - {invoice: F1, date: 2026-12-05}\n  - {invoice: F2, date: 2026-12-07}\n  - {invoice: F2, date: 2026-12-09, note: called again}\n";
        let mut project = load(&[
            POLICY,
            TEMPLATE,
            ("data/invoices.csv", &feed),
            ("rules/holds.yaml", holds),
        ]);
        let promise = |p: &Project, n: &str| {
            p.ledger.invoices[p.ledger.find(n).unwrap()]
                .promise_date
                .map(|d| d.to_string())
        };
        // The file's wins over the feed's; of two, the last written.
        assert_eq!(promise(&project, "F1").as_deref(), Some("2026-12-05"));
        assert_eq!(promise(&project, "F2").as_deref(), Some("2026-12-09"));
        // The same promises again: the ledger is shared, not copied.
        let before = Arc::clone(&project.ledger);
        project.apply_promises();
        assert!(Arc::ptr_eq(&before, &project.ledger));
        // The rules reloaded without them: the feed's dates come back.
        let mut rulebook = Rulebook::load(&project.config).0;
        rulebook.holds = Holds::default();
        project.rulebook = Arc::new(rulebook);
        project.apply_promises();
        assert_eq!(promise(&project, "F1").as_deref(), Some("2026-12-20"));
        assert_eq!(promise(&project, "F2"), None);
    }

    #[test]
    fn rule_errors_are_those_of_config_policies_scripts_and_templates() {
        let feed = format!("{HEADER}F1,C1,Dupont,a@b.fr,2026-12-01,2026-12-10,not a number\n");
        let bad_row = load(&[POLICY, TEMPLATE, ("data/invoices.csv", &feed)]);
        assert!(bad_row.feed_problems.has_errors());
        assert!(
            !bad_row.has_rule_errors(),
            "a bad feed row is no rule error"
        );
        for broken in [
            (
                "rules/p.yaml",
                "name: p\nstages: [{id: x, ofset: 0, template: t}]\n",
            ),
            ("rules/lib.rhai", "fn f( {"),
            ("templates/t.fr.html.hbs", "{{{customer.name}}}"),
            ("relance.yaml", "currency: euros\n"),
        ] {
            let project = load(&[POLICY, TEMPLATE, broken]);
            assert!(project.has_rule_errors(), "{broken:?}");
        }
    }

    #[test]
    fn a_missing_address_is_located_by_line_or_json_index() {
        let json = r#"[
            {"number": "F1", "customer_id": "C1", "customer_name": "A", "email": "a@b.fr",
             "issue_date": "2026-12-01", "due_date": "2026-12-10", "amount": "10"},
            {"number": "F2", "customer_id": "C2", "customer_name": "B",
             "issue_date": "2026-12-01", "due_date": "2026-12-10", "amount": "10"}
        ]"#;
        let project = load(&[
            POLICY,
            TEMPLATE,
            ("relance.yaml", "feeds: [{path: data/invoices.json}]\n"),
            ("data/invoices.json", json),
        ]);
        let today = NaiveDate::from_ymd_opt(2026, 12, 10).unwrap();
        let problems = project.check(today);
        let [warning] = problems.0.as_slice() else {
            panic!("one warning expected: {problems:?}");
        };
        assert!(!warning.is_error());
        assert!(warning.location.file.ends_with("data/invoices.json"));
        assert_eq!(
            (warning.location.line, warning.location.index),
            (None, Some(1))
        );
        assert_eq!(
            warning.message,
            "email: invoice F2 has no email address: its email reminders cannot be sent"
        );
    }
}
