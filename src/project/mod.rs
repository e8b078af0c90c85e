//! A whole relance folder loaded: config, rulebook (policies, scripts, templates) and ledger.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::{Config, FeedConfig, FeedFormat};
use crate::diagnostics::{Location, Problem, Problems};
use crate::engine::{Evaluator, Reminder};
use crate::feed::{feeds_for, load_feeds};
use crate::journal::JournalView;
use crate::journal::{group_token, reminder_token};
use crate::model::{Invoice, InvoiceId, Ledger, NumberIndex, Origin, Status};
use crate::render::{Rendered, StatementLine, Templates, message_context};
use crate::rules::{
    Channel, Grouping, HoldTarget, Holds, Policy, PolicyDefaults, Stage, Trigger, load_holds,
    load_policies,
};
use crate::rules::{CustomerView, InvoiceView, Scripts, Variables};

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
        let scripts = Arc::new(Scripts::load(&rules, &config.rates, &mut problems));
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
        let rules = Self::load_rules(options)?;
        let started = std::time::Instant::now();
        let load = Self::read_feeds(&rules.config, options);
        tracing::debug!(invoices = load.invoices.len(), elapsed = ?started.elapsed(), "feeds read");
        let (ledger, mut feed_problems) = Self::ledger(&rules.config, load.invoices, load.index);
        feed_problems.extend(load.problems);
        Ok(Project {
            ledger,
            feed_problems,
            bad_rows: load.bad_rows,
            unreadable_feeds: load.unreadable,
            ..rules
        })
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
        index: NumberIndex,
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

    /// The language a message to this invoice is written in, before template fallback.
    pub fn language_of(&self, invoice: InvoiceId) -> &str {
        self.ledger.language_of(invoice)
    }

    /// Renders a planned reminder that goes out alone (the body only when asked).
    pub fn reminder(&self, planned: &Reminder, body: bool) -> Message<'_> {
        self.message(std::slice::from_ref(planned), body)
    }

    /// Renders the message carrying `rows` (one reminder, or a customer's
    /// several when grouped; the first leads): the first row's fields with
    /// the message's token, recipients, subject and (when asked) body.
    pub fn message(&self, rows: &[Reminder], body: bool) -> Message<'_> {
        let planned = &rows[0];
        let inv = &self.ledger.invoices[planned.invoice];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let mut reminder = if stage.group == Grouping::Customer {
            let token = group_token(&inv.customer_id, &stage.template, planned.date, &inv.number);
            let mut r = self.fields(planned, token, self.recipients(rows, stage.channel));
            r.covers = rows
                .iter()
                .map(|r| &*self.ledger.invoices[r.invoice].number)
                .collect();
            r
        } else {
            let token = reminder_token(&inv.number, &policy.name, &stage.id, planned.occurrence);
            self.fields(planned, token, self.recipients(rows, stage.channel))
        };
        match self.render_message(rows, reminder.language, body) {
            Ok(message) => {
                reminder.subject = message.subject;
                if body {
                    reminder.body = Some(message.body);
                    reminder.html = message.html;
                }
            }
            Err(problem) => reminder.error = Some(problem.to_string()),
        }
        if reminder.error.is_none() && stage.channel == Channel::Email && reminder.to.is_empty() {
            reminder.error = self.email_recipients(rows).err();
        }
        reminder
    }

    /// A reminder decided for its date, as it goes out: in the message it
    /// shares with its customer's other reminders of the day when its stage
    /// is grouped, which takes planning that customer's day (`explain`).
    pub fn as_sent(&self, planned: &Reminder, journal: &JournalView) -> Message<'_> {
        let stage = &self.rulebook.policies[planned.policy].stages[planned.stage];
        if stage.group != Grouping::Customer {
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

    /// The language a message of `template` to this invoice is written in:
    /// the invoice's, or the first of its fallbacks the template exists in.
    fn message_language(&self, invoice: InvoiceId, template: &str) -> &str {
        let wanted = self.language_of(invoice);
        self.rulebook
            .templates
            .resolve(template, wanted)
            .unwrap_or(wanted)
    }

    /// A planned reminder as one row of the grouped message `message`
    /// (already rendered): its own fields, and the message's token,
    /// recipients, subject, body and error.
    pub fn member<'p>(&'p self, planned: &Reminder, message: &Message<'p>) -> Message<'p> {
        let mut r = self.fields(planned, message.message.clone(), message.to.clone());
        r.subject.clone_from(&message.subject);
        r.body.clone_from(&message.body);
        r.html.clone_from(&message.html);
        r.error.clone_from(&message.error);
        r.send_at.clone_from(&message.send_at);
        r.covers = message.covers.clone();
        r
    }

    fn fields<'p>(&'p self, planned: &Reminder, message: String, to: Cow<'p, str>) -> Message<'p> {
        let inv = &self.ledger.invoices[planned.invoice];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        Message {
            date: planned.date,
            invoice: &inv.number,
            customer_id: &inv.customer_id,
            customer_name: &inv.customer_name,
            policy: &policy.name,
            stage: &stage.id,
            occurrence: planned.occurrence,
            message,
            channel: stage.channel,
            to,
            language: self.message_language(planned.invoice, &stage.template),
            template: &stage.template,
            subject: String::new(),
            amount_due: crate::locale::money(inv.amount_due()),
            currency: &inv.currency,
            send_at: self.send_at(planned).map(|t| t.to_rfc3339()),
            body: None,
            html: None,
            error: None,
            covers: Arc::from([]),
        }
    }

    /// Who a message about `rows` goes to on `channel`: the valid addresses
    /// of their invoices for an email (see [`Project::email_recipients`];
    /// none when there is none), the first phone number for a call or an
    /// SMS, the customer by name for a letter or a task.
    fn recipients(&self, rows: &[Reminder], channel: Channel) -> Cow<'_, str> {
        let inv = &self.ledger.invoices[rows[0].invoice];
        match channel {
            Channel::Email => match self.email_recipients(rows).as_deref() {
                Ok([one]) => Cow::Borrowed(one),
                Ok(several) => Cow::Owned(several.join(", ")),
                Err(_) => Cow::Borrowed(""),
            },
            Channel::Sms | Channel::Call => Cow::Borrowed(
                rows.iter()
                    .find_map(|r| self.ledger.invoices[r.invoice].extra_field("phone"))
                    .unwrap_or(""),
            ),
            Channel::Letter | Channel::Task => Cow::Borrowed(&*inv.customer_name),
        }
    }

    /// The addresses an email about `rows` goes to: the valid addresses of
    /// the first row's invoice, in its order, that every other invoice of
    /// the message carries too. Rows of one customer may give different
    /// addresses (two companies under one customer id, a contact who left):
    /// a statement goes only where every invoice in it may be read. An
    /// address delivery would refuse is left out (`check` reports it), so a
    /// message never goes to a wrong address; with none left, why.
    fn email_recipients(&self, rows: &[Reminder]) -> Result<Vec<&str>, String> {
        let valid_of = valid_addresses;
        let first = &self.ledger.invoices[rows[0].invoice];
        let mut common = valid_of(first);
        let mut others_have_some = true;
        for r in &rows[1..] {
            let theirs = valid_of(&self.ledger.invoices[r.invoice]);
            others_have_some &= !theirs.is_empty();
            common.retain(|a| theirs.contains(a));
        }
        if !common.is_empty() {
            return Ok(common);
        }
        if rows.len() > 1 && others_have_some && !valid_of(first).is_empty() {
            let numbers: Vec<&str> = rows
                .iter()
                .map(|r| &*self.ledger.invoices[r.invoice].number)
                .collect();
            return Err(format!(
                "{}: email: the invoices of this message ({}) have no address in common: a \
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
                "{}: email: invoice {} has no email address",
                self.origin(first),
                first.number
            ),
            Some((inv, address, why)) => format!(
                "{}: email: invoice {} has no valid email address: {address:?}: {why}",
                self.origin(inv),
                inv.number
            ),
        })
    }

    /// Which reminders of a plan go out together: those of a stage with
    /// `group: customer` share one message per customer, date, template,
    /// channel and language; every other reminder goes out alone.
    pub fn messages(&self, plan: &[Reminder]) -> Messages {
        let mut messages = Messages {
            reminders: plan.len(),
            ..Messages::default()
        };
        if !self
            .rulebook
            .policies
            .iter()
            .any(|p| p.stages.iter().any(|s| s.group == Grouping::Customer))
        {
            return messages;
        }
        // foldhash rather than SipHash: a preview groups a million rows.
        let mut keys: hashbrown::HashMap<(NaiveDate, usize, &str, Channel, &str), u32> =
            hashbrown::HashMap::new();
        // The few (template, invoice language) pairs a plan has, resolved
        // once each: resolving walks the language fallbacks.
        let mut resolved: Vec<(&str, &str, &str)> = Vec::new();
        for (i, planned) in plan.iter().enumerate() {
            let stage = &self.rulebook.policies[planned.policy].stages[planned.stage];
            if stage.group != Grouping::Customer {
                continue;
            }
            let wanted = self.language_of(planned.invoice);
            let language = match resolved
                .iter()
                .find(|(t, w, _)| *t == stage.template && *w == wanted)
            {
                Some((_, _, language)) => language,
                None => {
                    let language = self.message_language(planned.invoice, &stage.template);
                    resolved.push((&stage.template, wanted, language));
                    language
                }
            };
            let key = (
                planned.date,
                self.ledger.customer_index(planned.invoice),
                stage.template.as_str(),
                stage.channel,
                language,
            );
            let next = messages.groups.len() as u32;
            let entry = keys.entry(key).or_insert(next);
            // A full message starts the next one (with its own first invoice,
            // so its own id): a statement of thousands of invoices is read by
            // nobody, and its size would grow with the square of theirs.
            if messages
                .groups
                .get(*entry as usize)
                .is_some_and(|g| g.len() >= MAX_INVOICES_PER_MESSAGE)
            {
                *entry = next;
            }
            let group = *entry;
            if group == next {
                messages.groups.push(Vec::new());
            }
            messages.groups[group as usize].push(i);
            if messages.group_of.is_empty() {
                messages.group_of = vec![Messages::ALONE; plan.len()];
            }
            messages.group_of[i] = group;
        }
        messages
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
        use rayon::prelude::*;
        let messages = self.messages(plan);
        let leads: Vec<Option<Message>> = messages
            .groups
            .par_iter()
            .map(|group| {
                (group.len() > 1).then(|| {
                    let rows: Vec<Reminder> = group.iter().map(|&j| plan[j]).collect();
                    self.message(&rows, body)
                })
            })
            .collect();
        plan.par_iter()
            .enumerate()
            .map(|(i, planned)| {
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
        let path = self.config.path(&self.config.journal);
        Ok(match crate::journal::Journal::open_read_only(&path)? {
            Some(journal) => journal.view()?,
            None => JournalView::default(),
        })
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

    /// Renders the message of `rows` (the first leads) in `language`.
    fn render_message(
        &self,
        rows: &[Reminder],
        language: &str,
        body: bool,
    ) -> Result<Rendered, Problem> {
        let planned = &rows[0];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let templates = &self.rulebook.templates;
        let parts = templates.parts(&stage.template, language, body);
        let lines: Vec<StatementLine> = rows
            .iter()
            .map(|r| StatementLine {
                invoice: r.invoice,
                stage: &self.rulebook.policies[r.policy].stages[r.stage],
                occurrence: r.occurrence,
            })
            .collect();
        let context = message_context(
            &self.ledger,
            &lines,
            policy,
            planned.date,
            language,
            &self.config,
            parts,
        );
        templates.render(&stage.template, language, context, body)
    }

    /// `relance check`: every problem of the folder, with templates rendered
    /// and expressions run against sample invoices so that a missing
    /// variable or an unknown property is found before a customer sees it.
    pub fn check(&self, today: NaiveDate) -> Problems {
        let mut problems = self.problems.clone();
        problems.extend(self.feed_problems.clone());
        self.check_email_addresses(&mut problems);
        self.check_common_addresses(&mut problems);
        self.check_file_names(today, &mut problems);
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
            let users: Vec<(&Policy, &Stage)> = self
                .rulebook
                .policies
                .iter()
                .filter_map(|p| p.stages.iter().find(|s| s.template == name).map(|s| (p, s)))
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
        // that fails both is reported once, without a misleading hint.
        render(&[FULL_SAMPLE, sparse])?;
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
        // Customers share their addresses: each distinct one is parsed once.
        let mut valid: hashbrown::HashSet<&str> = hashbrown::HashSet::new();
        for inv in &self.ledger.invoices {
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
            for address in inv.recipients() {
                if valid.contains(address) {
                    continue;
                }
                match crate::address::parse(address) {
                    Ok(_) => {
                        valid.insert(address);
                    }
                    Err(why) => problems.error(
                        self.origin(inv),
                        format!(
                            "email: invoice {}: {:?}: {why}; its emails go to its other \
                             addresses, and fail when it has none",
                            excerpt(&inv.number),
                            excerpt(address)
                        ),
                    ),
                }
            }
        }
    }

    /// Warns of each customer whose open invoices, read in feed order, come
    /// to one that shares no valid address with those before it, when a
    /// stage groups emails per customer: a statement of them would have no
    /// recipient (it goes only to the addresses every invoice carries).
    fn check_common_addresses(&self, problems: &mut Problems) {
        let grouped_email = self.rulebook.policies.iter().any(|p| {
            p.stages
                .iter()
                .any(|s| s.channel == Channel::Email && s.group == Grouping::Customer)
        });
        if !grouped_email {
            return;
        }
        // Per customer: its first open invoice with an address, and the
        // addresses all of its open invoices so far have in common (`None`
        // once a warning is given: one per customer).
        let mut common: hashbrown::HashMap<usize, (InvoiceId, Option<Vec<&str>>)> =
            hashbrown::HashMap::new();
        // Customers share their addresses: each distinct field is parsed once.
        let mut parsed: hashbrown::HashMap<&str, Vec<&str>> = hashbrown::HashMap::new();
        for (i, inv) in self.ledger.invoices.iter().enumerate() {
            let id = InvoiceId::new(i);
            if !inv.is_open() {
                continue;
            }
            let customer = self.ledger.customer_index(id);
            if matches!(common.get(&customer), Some((_, None))) {
                continue;
            }
            let addresses = parsed
                .entry(&inv.email)
                .or_insert_with(|| valid_addresses(inv))
                .clone();
            if addresses.is_empty() {
                continue;
            }
            let (first, slot) = common
                .entry(customer)
                .or_insert_with(|| (id, Some(addresses.clone())));
            let Some(shared) = slot else { continue };
            shared.retain(|a| addresses.contains(a));
            if shared.is_empty() {
                let first = &self.ledger.invoices[*first];
                problems.warning(
                    self.origin(inv),
                    format!(
                        "email: invoice {} of customer {} shares no address with invoice {} \
                         ({}) and the customer's invoices between: a message grouped per \
                         customer about them would have no recipient (it goes only to the \
                         addresses every invoice in it carries)",
                        inv.number,
                        inv.customer_id,
                        first.number,
                        self.origin(first)
                    ),
                );
                *slot = None;
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
        // besides the invoice's own part.
        let mut stages: Vec<(&Stage, usize)> = Vec::new();
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
                stages.push((stage, around + own));
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
            .map(|(stage, rest)| rest + 3 * stage.template.len() + "customer...2026-12-01".len())
            .max()
            .unwrap_or(0);
        for inv in &self.ledger.invoices {
            if !inv.is_open() && !inv.is_settled() {
                continue;
            }
            if widest + 3 * (inv.number.len() + inv.customer_id.len()) <= FILE_NAME_MAX {
                continue;
            }
            // The number as a token writes it (escaped), without the
            // separators of the empty parts.
            let number = reminder_token(&inv.number, "", "", 0).len() - "...0".len();
            let longest = stages
                .iter()
                .map(|&(stage, rest)| {
                    let own = if stage.group == Grouping::Customer {
                        group_token(&inv.customer_id, &stage.template, today, &inv.number).len()
                    } else {
                        number
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
        let extra: std::collections::BTreeMap<String, String> = self
            .ledger
            .extra_columns
            .iter()
            .map(|column| (column.clone(), String::new()))
            .collect();
        let due = today - chrono::Days::new(10);
        let full = Invoice {
            number: "SAMPLE-0001".into(),
            customer_id: "SAMPLE".into(),
            customer_name: "Sample Customer".into(),
            email: "sample@example.com".into(),
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
            tags: Arc::new(["sample".into()]),
            promise_date: Some(today),
            extra,
            origin: Origin {
                file: Arc::new(PathBuf::from("sample")),
                line: 0,
            },
        };
        let sparse = Invoice {
            number: "SAMPLE-0002".into(),
            customer_id: "SAMPLE-2".into(),
            customer_name: "Sparse Customer".into(),
            issue_date: due - chrono::Days::new(30),
            amount_paid: Decimal::ZERO,
            paid_date: None,
            language: None,
            tags: Arc::new([]),
            promise_date: None,
            ..full.clone()
        };
        let promised = Invoice {
            number: "SAMPLE-0003".into(),
            promise_date: Some(today - chrono::Days::new(3)),
            ..sparse.clone()
        };
        Ledger::new(vec![full, sparse, promised]).with_default_language(&self.config.language)
    }
}

/// The addresses of an invoice delivery accepts, each once, in its order.
pub fn valid_addresses(inv: &Invoice) -> Vec<&str> {
    let mut valid: Vec<&str> = Vec::new();
    for address in inv.recipients() {
        if !valid.contains(&address) && crate::address::parse(address).is_ok() {
            valid.push(address);
        }
    }
    valid
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

    const POLICY: (&str, &str) = (
        "rules/p.yaml",
        "name: p\nstages:\n  - {id: on_due, offset: 0, template: t}\n",
    );
    const TEMPLATE: (&str, &str) = ("templates/t.fr.hbs", "---\nsubject: \"S\"\n---\nB\n");
    const HEADER: &str = "number,customer_id,customer_name,email,issue_date,due_date,amount\n";

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
