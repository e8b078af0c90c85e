//! A whole relance folder loaded: config, rulebook (policies, scripts, templates) and ledger.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::{Config, FeedConfig, FeedFormat};
use crate::diagnostics::{Location, Problem, Problems};
use crate::engine::{Evaluator, Planned};
use crate::feed::{feeds_for, load_feeds};
use crate::model::{Invoice, Ledger, NumberIndex, Origin, Status};
use crate::policy::{Channel, Policy, Stage, load_policies};
use crate::render::{Message, Templates, message_context};
use crate::script::{CustomerView, InvoiceView, Scripts, Variables};

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
}

impl Rulebook {
    pub fn load(config: &Config) -> (Rulebook, Problems) {
        let mut problems = Problems::default();
        let rules = config.path(&config.rules);
        if !rules.is_dir() {
            problems.error(Location::file(&rules), "rules folder not found");
        }
        let scripts = Arc::new(Scripts::load(&rules, &config.rates, &mut problems));
        let policies = load_policies(&rules, &scripts, &mut problems);
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
            },
            problems,
        )
    }
}

/// A reminder as `preview` and the daemon present it (SPEC §6 keys).
#[derive(Debug, Clone, Serialize)]
/// It borrows what the project holds, so that a preview of a million
/// reminders allocates only what each message adds.
pub struct Reminder<'p> {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Set when the message could not be rendered; it would not be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Project {
    pub config: Config,
    pub rulebook: Rulebook,
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
    pub fn load(options: &Options) -> Result<Project, Problem> {
        let config = Config::load(&options.dir, options.config.as_deref())?;
        let mut problems = config.validate();
        let (rulebook, rule_problems) = Rulebook::load(&config);
        problems.extend(rule_problems);
        let started = std::time::Instant::now();
        let load = Self::read_feeds(&config, options);
        tracing::debug!(invoices = load.invoices.len(), elapsed = ?started.elapsed(), "feeds read");
        Ok(Project {
            ledger: Self::ledger(&config, load.invoices, load.index),
            config,
            rulebook,
            problems,
            feed_problems: load.problems,
            bad_rows: load.bad_rows,
            unreadable_feeds: load.unreadable,
        })
    }

    /// The ledger of what the feeds gave, with the config's language as the
    /// language of invoices and customers that have none.
    pub fn ledger(config: &Config, invoices: Vec<Invoice>, index: NumberIndex) -> Arc<Ledger> {
        Arc::new(Ledger::with_index(invoices, index).with_default_language(&config.language))
    }

    /// Reads the feeds a command uses (`--feed` overrides the config's).
    pub fn read_feeds(config: &Config, options: &Options) -> crate::feed::FeedLoad {
        load_feeds(config, &feeds_for(config, &options.feeds))
    }

    pub fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            policies: &self.rulebook.policies,
            scripts: &self.rulebook.scripts,
            ledger: &self.ledger,
        }
    }

    /// The language a message to this invoice is written in, before template fallback.
    pub fn language_of(&self, invoice: usize) -> &str {
        self.ledger.language_of(invoice)
    }

    /// Renders a planned reminder (the body only when asked).
    pub fn reminder(&self, planned: &Planned, body: bool) -> Reminder<'_> {
        let inv = &self.ledger.invoices[planned.invoice];
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let wanted = self.language_of(planned.invoice);
        let language = self
            .rulebook
            .templates
            .resolve(&stage.template, wanted)
            .unwrap_or(wanted);
        let to = match stage.channel {
            Channel::Email if !inv.email.contains(';') => Cow::Borrowed(inv.email.trim()),
            Channel::Email => Cow::Owned(inv.recipients().collect::<Vec<_>>().join(", ")),
            Channel::Sms | Channel::Call => {
                Cow::Borrowed(inv.extra.get("phone").map_or("", String::as_str))
            }
            Channel::Letter | Channel::Task => Cow::Borrowed(&*inv.customer_name),
        };
        let mut reminder = Reminder {
            date: planned.date,
            invoice: &inv.number,
            customer_id: &inv.customer_id,
            customer_name: &inv.customer_name,
            policy: &policy.name,
            stage: &stage.id,
            occurrence: planned.occurrence,
            message: crate::deliver::Identity {
                invoice: inv.number.to_string(),
                policy: policy.name.clone(),
                stage: stage.id.clone(),
                occurrence: planned.occurrence,
            }
            .token(),
            channel: stage.channel,
            to,
            language,
            template: &stage.template,
            subject: String::new(),
            amount_due: crate::render::money(inv.amount_due()),
            currency: &inv.currency,
            body: None,
            html: None,
            error: None,
        };
        match self.render(planned, reminder.language, body) {
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
            reminder.error = Some(format!(
                "{}: email: invoice {} has no email address",
                self.origin(inv),
                inv.number
            ));
        }
        reminder
    }

    /// Where an invoice is written in its feed: its line, or its index in a
    /// JSON array, as bad rows are reported.
    fn origin(&self, inv: &Invoice) -> Location {
        let file = inv.origin.file.as_path();
        let format = self
            .config
            .feeds
            .iter()
            .find(|f| self.config.path(&f.path) == file)
            .map_or_else(|| FeedConfig::new(file.into()).format(), |f| f.format());
        match format {
            FeedFormat::Json => Location {
                index: Some(inv.origin.line),
                ..Location::file(file)
            },
            _ => Location::line(file, inv.origin.line),
        }
    }

    /// Whether the config, a policy, a script or a template has an error:
    /// what the daemon refuses to start with, so `preview` and `explain`
    /// must not show what the other policies would send instead.
    pub fn has_rule_errors(&self) -> bool {
        self.problems.has_errors()
    }

    fn render(&self, planned: &Planned, language: &str, body: bool) -> Result<Message, Problem> {
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let templates = &self.rulebook.templates;
        let parts = templates.parts(&stage.template, language, body);
        let context = message_context(
            &self.ledger,
            planned.invoice,
            policy,
            stage,
            planned.occurrence,
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
                    index: FULL_SAMPLE,
                    today,
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
            for stage in &policy.stages {
                if let Some(expr) = &stage.when {
                    scope.set_value("stage", stage.view(0));
                    let discount = policy.discount_variable(&sample.invoices[FULL_SAMPLE], today);
                    scope.set_value("discount", discount);
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
        let stand_in = Policy {
            name: "sample".into(),
            description: String::new(),
            priority: 0,
            applies_to: None,
            anchor: Default::default(),
            discount: None,
            stages: Vec::new(),
            file: PathBuf::new(),
        };
        for (name, language) in self.rulebook.templates.all() {
            let users: Vec<(&Policy, &Stage)> = self
                .rulebook
                .policies
                .iter()
                .filter_map(|p| p.stages.iter().find(|s| s.template == name).map(|s| (p, s)))
                .collect();
            let with_discount = users.iter().find(|(p, _)| p.discount.is_some());
            let without = users.iter().find(|(p, _)| p.discount.is_none());
            let sample_stage = Stage {
                id: "sample".into(),
                offset: 0,
                channel: Channel::Email,
                template: name.clone(),
                when: None,
                repeat: None,
                location: Location::file(Path::new("")),
                template_location: Location::file(Path::new("")),
            };
            let mut variants: Vec<(&Policy, &Stage)> =
                with_discount.into_iter().chain(without).copied().collect();
            if variants.is_empty() {
                variants.push((&stand_in, &sample_stage));
            }
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
                if let Err(mut problem) =
                    self.check_template(&sample, &name, &language, policy, stage, today)
                {
                    problem.message.push_str(&hint);
                    problems.push(problem);
                    break;
                }
            }
        }
        problems
    }

    /// Renders a template against the two sample invoices, as a message of
    /// `stage` of `policy`: the first problem, if any.
    fn check_template(
        &self,
        sample: &Arc<Ledger>,
        name: &str,
        language: &str,
        policy: &Policy,
        stage: &Stage,
        today: NaiveDate,
    ) -> Result<(), Problem> {
        let render = |invoice| {
            let context = message_context(
                sample,
                invoice,
                policy,
                stage,
                0,
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
        // The sparse invoice only where the full one renders: a mistake
        // that fails both is reported once, without a misleading hint.
        render(FULL_SAMPLE)?;
        render(SPARSE_SAMPLE).map_err(|mut problem| {
            problem.message.push_str(
                " (with a sample invoice that has no paid_date, promise_date, tags, \
                 language, extra values or payment: show an optional field only when \
                 it is there, as in {{#if invoice.promise_date}}…{{/if}})",
            );
            problem
        })?;
        Ok(())
    }

    /// Warns of each open invoice without an address when some policy sends
    /// emails: its email reminders would fail on their day, one by one,
    /// where a finance manager can fix the feed today.
    fn check_email_addresses(&self, problems: &mut Problems) {
        let sends_email = self
            .rulebook
            .policies
            .iter()
            .any(|p| p.stages.iter().any(|s| s.channel == Channel::Email));
        if !sends_email {
            return;
        }
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
        Ledger::new(vec![full, sparse]).with_default_language(&self.config.language)
    }
}

/// The indexes of the two invoices of [`Project::sample_ledger`].
const FULL_SAMPLE: usize = 0;
const SPARSE_SAMPLE: usize = 1;

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
