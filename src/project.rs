//! A whole relance folder loaded: config, rulebook (policies, scripts, templates) and ledger.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::Config;
use crate::diagnostics::{Location, Problem, Problems};
use crate::engine::{Evaluator, Planned};
use crate::feed::{feeds_for, load_feeds};
use crate::model::{Invoice, Ledger, Origin, Status};
use crate::policy::{Channel, Policy, Stage, load_policies};
use crate::render::{Message, Parts, Templates, message_context};
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
        let scripts = Arc::new(Scripts::load(&rules, &mut problems));
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
        let load = Self::read_feeds(&config, options);
        Ok(Project {
            ledger: Arc::new(Ledger::with_index(load.invoices, load.index)),
            config,
            rulebook,
            problems,
            feed_problems: load.problems,
            bad_rows: load.bad_rows,
            unreadable_feeds: load.unreadable,
        })
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
        let inv = &self.ledger.invoices[invoice];
        inv.language
            .as_deref()
            .or(self.ledger.customer(invoice).language.as_deref())
            .unwrap_or(&self.config.language)
    }

    /// Renders planned reminders in parallel, in order.
    pub fn reminders(&self, planned: &[Planned], body: bool) -> Vec<Reminder<'_>> {
        use rayon::prelude::*;
        planned.par_iter().map(|p| self.reminder(p, body)).collect()
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
                "{}:{}: email: invoice {} has no email address",
                inv.origin.file.display(),
                inv.origin.line,
                inv.number
            ));
        }
        reminder
    }

    fn render(&self, planned: &Planned, language: &str, body: bool) -> Result<Message, Problem> {
        let policy = &self.rulebook.policies[planned.policy];
        let stage = &policy.stages[planned.stage];
        let templates = &self.rulebook.templates;
        let parts = if body {
            Parts::ALL
        } else {
            templates.subject_parts(&stage.template, language)
        };
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
    /// and expressions run once against a sample invoice so that a missing
    /// variable or an unknown property is found before a customer sees it.
    pub fn check(&self, today: NaiveDate) -> Problems {
        let mut problems = self.problems.clone();
        problems.extend(self.feed_problems.clone());
        let sample = Arc::new(self.sample_ledger(today));
        for policy in &self.rulebook.policies {
            let mut scope = Variables {
                invoice: InvoiceView {
                    ledger: sample.clone(),
                    index: 0,
                    today,
                },
                customer: CustomerView {
                    ledger: sample.clone(),
                    index: 0,
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
                    if let Err(e) = self.rulebook.scripts.eval_bool(expr, &mut scope) {
                        problems
                            .error(e.location, format!("{} (with a sample invoice)", e.message));
                    }
                }
            }
        }
        // Every template in every language, rendered once: under the first stage
        // that uses it, or a stand-in stage for templates no stage uses yet.
        let stand_in = Policy {
            name: "sample".into(),
            description: String::new(),
            priority: 0,
            applies_to: None,
            anchor: Default::default(),
            stages: Vec::new(),
            file: PathBuf::new(),
        };
        for (name, language) in self.rulebook.templates.all() {
            let used = self
                .rulebook
                .policies
                .iter()
                .find_map(|p| p.stages.iter().find(|s| s.template == name).map(|s| (p, s)));
            let sample_stage;
            let (policy, stage) = match used {
                Some(found) => found,
                None => {
                    sample_stage = Stage {
                        id: "sample".into(),
                        offset: 0,
                        channel: Channel::Email,
                        template: name.clone(),
                        when: None,
                        repeat: None,
                        location: Location::file(Path::new("")),
                        template_location: Location::file(Path::new("")),
                    };
                    (&stand_in, &sample_stage)
                }
            };
            let context = message_context(
                &sample,
                0,
                policy,
                stage,
                0,
                today,
                &language,
                &self.config,
                Parts::ALL,
            );
            if let Err(problem) = self
                .rulebook
                .templates
                .render(&name, &language, context, true)
            {
                problems.push(problem);
            }
        }
        problems
    }

    /// One invoice with every field set (and every extra column the feeds
    /// have), for rendering templates in `check`.
    fn sample_ledger(&self, today: NaiveDate) -> Ledger {
        let mut extra = std::collections::BTreeMap::new();
        for column in &self.ledger.extra_columns {
            extra.insert(column.clone(), String::new());
        }
        let due = today - chrono::Days::new(10);
        Ledger::new(vec![Invoice {
            number: "SAMPLE-0001".into(),
            customer_id: "SAMPLE".into(),
            customer_name: "Sample Customer".into(),
            email: "sample@example.com".into(),
            issue_date: due - chrono::Days::new(30),
            due_date: due,
            amount: rust_decimal::Decimal::new(123456, 2),
            amount_paid: rust_decimal::Decimal::ZERO,
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
        }])
    }
}
