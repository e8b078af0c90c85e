//! Escalation policies (`rules/*.yaml`): which invoices they cover and their stages.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};
use rhai::{Dynamic, Map};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::calendar::add_days;
use crate::calendar::{Calendar, HolidaySettings, SendWindow, Shift};
use crate::config::{Config, Contact, FirstContact};
use crate::diagnostics::{Location, Problems, key_location, locate_yaml_key, quote, shown};
use crate::diagnostics::{RuleLimits, parse_yaml, read_rule_file, yaml_files};
use crate::model::{Id, Invoice};
use crate::money::{Discount, DiscountTerms};
use crate::rules::holds::is_holds_file;
use crate::rules::script::{Expr, Scripts, StageView, date_string};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    #[default]
    DueDate,
    IssueDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Email,
    Letter,
    Sms,
    Call,
    Task,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Letter,
        Channel::Sms,
        Channel::Call,
        Channel::Task,
    ];

    /// The channel named as in the config and the journal (`email`, `letter`, …).
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Letter => "letter",
            Channel::Sms => "sms",
            Channel::Call => "call",
            Channel::Task => "task",
        }
    }
}

/// The furthest a stage may be from its anchor, in days, and the most a
/// stage may repeat or wait between repeats: ten years. A dunning ladder
/// spans weeks or months; an offset of millions of days only makes the
/// engine walk (or allocate) one occurrence per day.
pub const STAGE_DAYS: u32 = 3660;

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every: u32,
    /// How many more times at most; no max = for as long as the invoice is open.
    #[serde(default)]
    pub max: Option<u32>,
}

/// Whether a stage's reminders go out one per invoice or one per customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// One message per reminder (the default).
    #[default]
    Invoice,
    /// One message per customer, day and template for all of the customer's
    /// reminders of that day.
    Customer,
}

/// What makes a stage fire: days from the anchor, or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `offset` days from the anchor (docs/contract.md §4).
    #[default]
    Offset,
    /// `on: promise_broken`: the first evaluation day after the customer's
    /// promise to pay (plus the policy's `promise_grace`) while still open.
    PromiseBroken,
    /// The policy's `on_paid` thank-you, once a reminded invoice is paid.
    Paid,
}

/// The stage id the journal records thank-you messages under.
pub const ON_PAID: &str = "on_paid";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    applies_to: Option<String>,
    #[serde(default)]
    anchor: Anchor,
    /// Every stage's grouping, unless the stage sets its own.
    #[serde(default)]
    group: Grouping,
    #[serde(default)]
    promise_grace: u32,
    #[serde(default)]
    on_paid: Option<OnPaidFile>,
    /// The config's send window, overridden key by key.
    #[serde(default, deserialize_with = "crate::calendar::de_opt_weekdays")]
    send_days: Option<Vec<Weekday>>,
    #[serde(default)]
    holidays: Option<HolidaySettings>,
    #[serde(default, deserialize_with = "crate::calendar::de_opt_time")]
    send_time: Option<NaiveTime>,
    #[serde(default)]
    discount: Option<DiscountTerms>,
    /// The config's `contact`, overridden key by key.
    #[serde(default)]
    contact: Option<ContactFile>,
    #[serde(default)]
    first_contact: Option<FirstContact>,
    #[serde(default)]
    reply_to: Option<String>,
    stages: Vec<StageFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactFile {
    #[serde(default)]
    combine: Option<bool>,
    #[serde(default)]
    min_days_between: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnPaidFile {
    template: String,
    #[serde(default)]
    channel: Channel,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    id: String,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    on: Option<StageEvent>,
    #[serde(default)]
    channel: Channel,
    template: String,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    repeat: Option<Repeat>,
    #[serde(default)]
    shift: Shift,
    #[serde(default)]
    group: Option<Grouping>,
    #[serde(default)]
    urgent: bool,
    #[serde(default)]
    approve: bool,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    bcc: Vec<String>,
}

/// The events a stage can fire on (`on:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StageEvent {
    PromiseBroken,
}

pub struct Stage {
    pub id: String,
    /// Days from the anchor; 0 for a stage that fires on an event.
    pub offset: i64,
    pub trigger: Trigger,
    pub channel: Channel,
    pub template: String,
    pub when: Option<Expr>,
    pub repeat: Option<Repeat>,
    /// Where a date that is not a sending day moves to.
    pub shift: Shift,
    pub group: Grouping,
    /// Goes out despite `contact.min_days_between` (legal notices).
    pub urgent: bool,
    /// Waits for `relance approve` (journaled `awaiting_approval`) instead of going out.
    pub approve: bool,
    /// The feed column its message goes to, instead of `email` (which it
    /// falls back to when the column is empty).
    pub to: Option<String>,
    /// Feed columns whose addresses get a copy, and a blind copy.
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// The `- id:` line, for messages about the stage.
    pub location: Location,
    /// The `template:` line, for messages about a missing template.
    pub template_location: Location,
}

impl Stage {
    /// A stage that fires `offset` days from the anchor, in the sequence
    /// docs/contract.md §4 walks (not on an event).
    pub fn is_scheduled(&self) -> bool {
        self.trigger == Trigger::Offset
    }

    /// A stand-in for templates no stage uses (`check` renders them all).
    pub fn sample(template: &str) -> Stage {
        Stage {
            id: "sample".into(),
            offset: 0,
            trigger: Trigger::Offset,
            channel: Channel::Email,
            template: template.into(),
            when: None,
            repeat: None,
            shift: Shift::Later,
            group: Grouping::Invoice,
            urgent: false,
            approve: false,
            to: None,
            cc: Vec::new(),
            bcc: Vec::new(),
            location: Location::file(Path::new("")),
            template_location: Location::file(Path::new("")),
        }
    }

    /// The feed columns an email of this stage goes to, each with the key
    /// that names it: `to`, `cc` or `bcc`.
    pub fn contact_columns(&self) -> impl Iterator<Item = (&'static str, &str)> {
        fn named<'s>(
            key: &'static str,
            columns: &'s [String],
        ) -> impl Iterator<Item = (&'static str, &'s str)> {
            columns.iter().map(move |c| (key, c.as_str()))
        }
        named("to", self.to.as_slice())
            .chain(named("cc", &self.cc))
            .chain(named("bcc", &self.bcc))
    }

    pub fn view(&self, occurrence: u32) -> StageView {
        StageView {
            id: self.id.as_str().into(),
            offset: self.offset,
            channel: self.channel.as_str().into(),
            template: self.template.as_str().into(),
            occurrence: i64::from(occurrence),
        }
    }

    /// How many repeats after the first firing, `None` meaning unbounded.
    pub fn max_occurrence(&self) -> Option<u32> {
        match self.repeat {
            None => Some(0),
            Some(r) => r.max,
        }
    }
}

/// A policy's place in the rulebook's list (highest priority first).
pub type PolicyId = Id<Policy>;
/// A stage's place in its policy's list.
pub type StageId = Id<Stage>;

pub struct Policy {
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub applies_to: Option<Expr>,
    pub anchor: Anchor,
    /// The early-payment discount its messages may offer.
    pub discount: Option<DiscountTerms>,
    /// The stages in file order, then the `on_paid` thank-you if there is one.
    pub stages: Vec<Stage>,
    /// Days after a promised payment date before reminders resume.
    pub promise_grace: u32,
    pub window: SendWindow,
    /// The config's `contact`, `first_contact` and `reply_to`, with the policy's own keys.
    pub contact: Contact,
    pub first_contact: FirstContact,
    pub reply_to: Option<String>,
    pub file: PathBuf,
}

/// What a policy takes from the config unless it sets its own.
#[derive(Debug, Clone, Default)]
pub struct PolicyDefaults {
    pub window: SendWindow,
    pub contact: Contact,
    pub first_contact: FirstContact,
    pub reply_to: Option<String>,
}

impl PolicyDefaults {
    pub fn of(config: &Config) -> PolicyDefaults {
        PolicyDefaults {
            window: config.send_window(),
            contact: config.contact,
            first_contact: config.first_contact,
            reply_to: config.reply_to.clone(),
        }
    }
}

impl Policy {
    /// A policy with no stages, for `check`'s stand-in stages.
    pub fn sample() -> Policy {
        Policy {
            name: "sample".into(),
            description: String::new(),
            priority: 0,
            applies_to: None,
            anchor: Anchor::default(),
            discount: None,
            stages: Vec::new(),
            promise_grace: 0,
            window: SendWindow::default(),
            contact: Contact::default(),
            first_contact: FirstContact::default(),
            reply_to: None,
            file: PathBuf::new(),
        }
    }

    /// The thank-you stage (`on_paid`), if the policy has one.
    pub fn on_paid(&self) -> Option<usize> {
        self.stages.iter().position(|s| s.trigger == Trigger::Paid)
    }

    /// The `on: promise_broken` stage, if the policy has one.
    pub fn promise_broken(&self) -> Option<usize> {
        self.stages
            .iter()
            .position(|s| s.trigger == Trigger::PromiseBroken)
    }

    /// When a broken promise fires: the day after the pause, and that day
    /// moved to the next sending day; `None` without a promise.
    pub fn promise_broken_on(&self, invoice: &Invoice) -> Option<(NaiveDate, NaiveDate)> {
        let day_after = add_days(self.promise_end(invoice)?, 1);
        Some((day_after, self.calendar().shift(day_after, Shift::Later)))
    }

    /// The last day reminders are paused for a promise to pay, if the
    /// invoice carries one.
    pub fn promise_end(&self, invoice: &Invoice) -> Option<NaiveDate> {
        invoice
            .promise_date
            .map(|d| add_days(d, i64::from(self.promise_grace)))
    }

    pub fn anchor_date(&self, invoice: &Invoice) -> NaiveDate {
        match self.anchor {
            Anchor::DueDate => invoice.due_date,
            Anchor::IssueDate => invoice.issue_date,
        }
    }

    /// The date occurrence `k` of stage `s` falls on, before the calendar
    /// moves it: anchor + offset + k × every.
    pub fn scheduled_date(&self, anchor: NaiveDate, s: StageId, k: u32) -> NaiveDate {
        let stage = &self.stages[s];
        let every = stage.repeat.map_or(0, |r| i64::from(r.every));
        // Within STAGE_DAYS for a policy that loads; saturating for any other.
        let days = i64::from(k)
            .saturating_mul(every)
            .saturating_add(stage.offset);
        add_days(anchor, days)
    }

    /// The date occurrence `k` of stage `s` is reached: its scheduled date,
    /// moved to a sending day (the next one, or the previous one for a
    /// stage with `shift: earlier`).
    // Inlined: the plan asks it for every invoice and day (across modules,
    // which the optimiser does not otherwise do for it).
    #[inline]
    pub fn reach_date(&self, anchor: NaiveDate, s: StageId, k: u32) -> NaiveDate {
        self.window
            .calendar
            .shift(self.scheduled_date(anchor, s, k), self.stages[s].shift)
    }

    pub fn calendar(&self) -> &Calendar {
        &self.window.calendar
    }

    /// The early-payment discount the policy offers an invoice on `on`, if any.
    pub fn discount(&self, invoice: &Invoice, on: NaiveDate) -> Option<Discount> {
        let terms = self.discount.as_ref()?;
        Some(terms.offer(invoice.amount_due(), invoice.issue_date, on))
    }

    /// `discount` in the policy's `when` expressions: a map of the
    /// discount's figures, `()` when the policy offers none.
    pub fn discount_variable(&self, invoice: &Invoice, on: NaiveDate) -> Dynamic {
        let Some(offer) = self.discount(invoice, on) else {
            return Dynamic::UNIT;
        };
        let mut map = Map::new();
        map.insert("percent".into(), Dynamic::from(offer.percent));
        map.insert("within_days".into(), Dynamic::from(offer.within_days));
        map.insert("amount".into(), Dynamic::from(offer.amount));
        let after = Dynamic::from(offer.amount_due_after);
        map.insert("amount_due_after".into(), after);
        map.insert(
            "deadline".into(),
            Dynamic::from(date_string(offer.deadline)),
        );
        map.insert("available".into(), Dynamic::from(offer.available));
        Dynamic::from_map(map)
    }

    /// Whether any expression of the policy reads the date.
    pub fn time_dependent(&self) -> bool {
        self.applies_to.as_ref().is_some_and(|e| e.time_dependent)
            || self
                .stages
                .iter()
                .any(|s| s.when.as_ref().is_some_and(|e| e.time_dependent))
    }
}

/// `rules/*.test.yaml` (or `.test.yml`): policy tests (`relance test`),
/// never a policy.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

/// Loads every policy of `dir`, sorted by priority (highest first), then name.
/// A policy that does not load is reported and left out; the others run.
/// `defaults` are the config's send window, contact rules and reply-to,
/// which a policy may override. Each file is held to `limits` (the config's `limits:`).
pub fn load_policies(
    dir: &Path,
    scripts: &Scripts,
    defaults: &PolicyDefaults,
    limits: RuleLimits,
    problems: &mut Problems,
) -> Vec<Policy> {
    let mut policies: Vec<Policy> = Vec::new();
    for path in yaml_files(dir)
        .into_iter()
        .filter(|f| !is_holds_file(f) && !is_test_file(f))
    {
        let Some(source) = read_rule_file(&path, "policy", limits, problems) else {
            continue;
        };
        let Some(file) = parse_yaml::<PolicyFile>(&path, &source, problems) else {
            continue;
        };
        if let Some(policy) = compile_policy(file, &path, &source, scripts, defaults, problems) {
            if let Some(other) = policies.iter().find(|p| p.name == policy.name) {
                problems.error(
                    key_location(&path, &source, 1, "name", None),
                    format!(
                        "policy name {} is already used by {}",
                        quote(&policy.name),
                        other.file.display()
                    ),
                );
                continue;
            }
            policies.push(policy);
        }
    }
    policies.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    policies
}

/// Where the text of an expression starts: after `key:` and any quote.
fn expression_location(path: &Path, source: &str, from: usize, key: &str) -> Location {
    let mut loc = key_location(path, source, from, key, None);
    if let (Some(line), Some(col)) = (loc.line, loc.col) {
        let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
        // `key:` starts at `col`, counted from 1.
        let value_at = col.saturating_add(key.len());
        let after = text.get(value_at.min(text.len())..).unwrap_or("");
        let value = after.trim_start_matches([' ', '\'', '"', '|', '>']);
        let skipped = after.len().saturating_sub(value.len());
        loc.col = Some(value_at.saturating_add(1).saturating_add(skipped));
    }
    loc
}

fn compile_policy(
    file: PolicyFile,
    path: &Path,
    source: &str,
    scripts: &Scripts,
    defaults: &PolicyDefaults,
    problems: &mut Problems,
) -> Option<Policy> {
    let before = problems.len();
    let mut compiler = Compiler {
        path,
        source,
        scripts,
        problems,
    };
    let applies_to = compiler.policy_keys(&file);
    compiler.reply_to(file.reply_to.as_deref());
    let mut stages = compiler.stages(file.stages, file.anchor, file.group);
    stages.extend(file.on_paid.map(|thanks| compiler.thank_you(thanks)));
    let window = compiler.window(
        file.send_days.as_deref(),
        file.holidays.as_ref(),
        file.send_time,
        &defaults.window,
    );
    let contact = file.contact.as_ref().map_or(defaults.contact, |c| Contact {
        combine: c.combine.unwrap_or(defaults.contact.combine),
        min_days_between: c
            .min_days_between
            .unwrap_or(defaults.contact.min_days_between),
    });
    compiler.contact_pace(&stages, contact.min_days_between);
    if problems.len() > before && problems.0[before..].iter().any(|p| p.is_error()) {
        return None;
    }
    Some(Policy {
        name: file.name,
        description: file.description,
        priority: file.priority,
        applies_to,
        anchor: file.anchor,
        discount: file.discount,
        stages,
        promise_grace: file.promise_grace,
        window,
        contact,
        first_contact: file.first_contact.unwrap_or(defaults.first_contact),
        reply_to: file.reply_to.or_else(|| defaults.reply_to.clone()),
        file: path.to_path_buf(),
    })
}

/// What makes `name` no template name, if anything: a path separator (a
/// template never lives in another folder, `partials/` included), a leading
/// dot (`..`, hidden files), a control character, or nothing at all.
fn template_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("the name is empty")
    } else if name.starts_with("partials/") || name.starts_with("partials\\") {
        Some("a partial is included by templates with {{> NAME}}, it is not a message of its own")
    } else if name.contains(['/', '\\']) {
        Some("a path is not a template name (no folder, no `..`, no absolute path)")
    } else if name.starts_with('.') {
        Some("a template name does not start with a dot")
    } else if name.chars().any(char::is_control) {
        Some("a template name has no control characters")
    } else {
        None
    }
}

/// One policy file being compiled: where its keys are written, and the
/// problems found in it, in the order a reader meets them.
struct Compiler<'a> {
    path: &'a Path,
    source: &'a str,
    scripts: &'a Scripts,
    problems: &'a mut Problems,
}

impl Compiler<'_> {
    /// Where `key` is written, in the mapping that starts at line `from`.
    fn at(&self, from: usize, key: &str) -> Location {
        key_location(self.path, self.source, from, key, None)
    }

    /// The expression `src` written under `key`, compiled; a failure is reported.
    fn expression(&mut self, src: Option<&str>, from: usize, key: &str) -> Option<Expr> {
        let src = src?;
        let location = expression_location(self.path, self.source, from, key);
        let compiled = self.scripts.compile(src, location);
        compiled.map_err(|p| self.problems.push(p)).ok()
    }

    /// The policy's own keys: a name, and `applies_to` compiled.
    fn policy_keys(&mut self, file: &PolicyFile) -> Option<Expr> {
        if file.name.trim().is_empty() {
            self.problems
                .error(self.at(1, "name"), "policy name must not be empty");
        }
        let applies_to = self.expression(file.applies_to.as_deref(), 1, "applies_to");
        if let Some(terms) = &file.discount {
            self.discount(terms);
        }
        applies_to
    }

    fn discount(&mut self, terms: &DiscountTerms) {
        let from = locate_yaml_key(self.source, 1, "discount", None).map_or(1, |(line, _)| line);
        if terms.percent <= Decimal::ZERO || terms.percent >= Decimal::ONE_HUNDRED {
            self.problems.error(
                self.at(from, "percent"),
                format!(
                    "discount.percent must be more than 0 and less than 100, not {}",
                    terms.percent
                ),
            );
        }
        if terms.within_days < 0 {
            self.problems.error(
                self.at(from, "within_days"),
                format!(
                    "discount.within_days counts days from the issue date: it must not be negative, not {}",
                    terms.within_days
                ),
            );
        }
    }

    /// A policy's `reply_to:`: addresses delivery accepts.
    fn reply_to(&mut self, reply_to: Option<&str>) {
        if let Some(why) = reply_to.and_then(crate::address::refused_in) {
            self.problems.error(
                self.at(1, "reply_to"),
                format!(
                    "reply_to: {why}: expected the address replies go to (e.g. reply_to: recouvrement@example.com)"
                ),
            );
        }
    }

    /// A stage's `to:`, `cc:` and `bcc:`: column names, on an email stage
    /// (a letter, a call or a task goes to the customer its channel says).
    fn contact_columns(&mut self, s: &StageFile, from: usize) {
        let named =
            s.to.iter()
                .map(|c| ("to", c))
                .chain(s.cc.iter().map(|c| ("cc", c)))
                .chain(s.bcc.iter().map(|c| ("bcc", c)));
        for (key, column) in named {
            if column.trim().is_empty() {
                self.problems.error(
                    self.at(from, key),
                    format!(
                        "stage {}: {key}: expected the name of a feed column of email addresses, not an empty name",
                        shown(&s.id)
                    ),
                );
            } else if s.channel != Channel::Email {
                self.problems.warning(
                    self.at(from, key),
                    format!(
                        "stage {}: {key}: only an email goes to a feed column's addresses: this {} ignores it",
                        shown(&s.id),
                        s.channel.as_str()
                    ),
                );
            }
        }
    }

    /// The stages in file order, each checked against the ones before it.
    fn stages(&mut self, files: Vec<StageFile>, anchor: Anchor, group: Grouping) -> Vec<Stage> {
        if files.is_empty() {
            self.problems
                .error(self.at(1, "stages"), "a policy needs at least one stage");
        }
        let mut stages: Vec<Stage> = Vec::new();
        let mut search_from = 1;
        for s in files {
            // Stages are written in order: each one's `id:` is after the previous one's.
            let location = key_location(self.path, self.source, search_from, "id", Some(&s.id));
            search_from = location.line.unwrap_or(1).saturating_add(1);
            let stage = self.stage(s, location, &stages, anchor, group);
            stages.push(stage);
        }
        stages
    }

    /// One stage at `location`, after the stages `earlier`; `group`, the
    /// policy's grouping, unless the stage sets its own.
    fn stage(
        &mut self,
        s: StageFile,
        location: Location,
        earlier: &[Stage],
        anchor: Anchor,
        group: Grouping,
    ) -> Stage {
        let from = location.line.unwrap_or(1);
        self.stage_id(&s.id, &location, earlier);
        let trigger = match s.on {
            None => self.offset(&s, &location, anchor),
            Some(StageEvent::PromiseBroken) => self.promise_broken(&s, &location, earlier),
        };
        let offset = s.offset.unwrap_or(0);
        self.stage_days(&s, from, anchor);
        if trigger == Trigger::Offset {
            self.order(&s.id, offset, from, earlier);
        }
        let template_location = self.at(from, "template");
        self.template_name(&s.template, &template_location);
        self.contact_columns(&s, from);
        Stage {
            when: self.expression(s.when.as_deref(), from, "when"),
            template_location,
            id: s.id,
            offset,
            trigger,
            channel: s.channel,
            template: s.template,
            repeat: s.repeat,
            shift: s.shift,
            group: s.group.unwrap_or(group),
            urgent: s.urgent,
            approve: s.approve,
            to: s.to,
            cc: s.cc,
            bcc: s.bcc,
            location,
        }
    }

    /// Warns of email stages `contact.min_days_between` (`gap` days) always
    /// holds back: one written fewer days after the previous email stage, or
    /// repeating more often, waits every time, so its offset says less than
    /// what happens. Urgent stages do not wait.
    fn contact_pace(&mut self, stages: &[Stage], gap: u32) {
        let gap = i64::from(gap);
        if gap == 0 {
            return;
        }
        let emails = stages
            .iter()
            .filter(|s| s.is_scheduled() && s.channel == Channel::Email);
        let mut previous: Option<&Stage> = None;
        for stage in emails {
            let from = stage.location.line.unwrap_or(1);
            let apart = previous.and_then(|prev| stage.offset.checked_sub(prev.offset));
            if let (Some(prev), Some(apart)) = (previous, apart)
                && !stage.urgent
                && (1..gap).contains(&apart)
            {
                self.problems.warning(
                    self.at(from, "offset"),
                    format!(
                        "stage {} comes {} day(s) after {}, fewer than contact.min_days_between \
                         ({gap}): once {}'s email has gone out, {} waits until {gap} days after it; \
                         space the offsets at least {gap} days apart, or mark the stage urgent: true",
                        shown(&stage.id),
                        apart,
                        shown(&prev.id),
                        shown(&prev.id),
                        shown(&stage.id)
                    ),
                );
            }
            if let Some(r) = stage.repeat
                && !stage.urgent
                && (1..gap).contains(&i64::from(r.every))
            {
                self.problems.warning(
                    self.at(from, "repeat"),
                    format!(
                        "stage {} repeats every {} day(s), fewer than contact.min_days_between \
                         ({gap}): each repeat waits until {gap} days after the customer's last email",
                        shown(&stage.id),
                        r.every
                    ),
                );
            }
            previous = Some(stage);
        }
    }

    /// A template is a NAME, found as `templates/NAME.LANG.hbs`: a path
    /// would pass every other check and then fail every delivery.
    fn template_name(&mut self, name: &str, location: &Location) {
        if let Some(why) = template_name_problem(name) {
            self.problems.error(
                location.clone(),
                format!(
                    "template {}: {why}: a stage's template is a name, found as \
                     templates/NAME.LANG.hbs (e.g. template: overdue_friendly)",
                    quote(name)
                ),
            );
        }
    }

    /// A stage id is a plain word, not the thank-you's, and one stage's only.
    fn stage_id(&mut self, id: &str, location: &Location, earlier: &[Stage]) {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if id.is_empty() || !id.chars().all(word) {
            self.problems.error(
                location.clone(),
                format!("stage id {} must be letters, digits, _ or -", quote(id)),
            );
        }
        if id == ON_PAID {
            self.problems.error(
                location.clone(),
                "stage id on_paid is reserved for thank-you messages (the policy's `on_paid:`)",
            );
        }
        if earlier.iter().any(|o| o.id == id) {
            self.problems.error(
                location.clone(),
                format!("stage id {} is used twice in this policy", quote(id)),
            );
        }
    }

    /// A stage's offset, and its repeat's `every` and `max`, within
    /// [`STAGE_DAYS`].
    fn stage_days(&mut self, s: &StageFile, from: usize, anchor: Anchor) {
        if let Some(offset) = s.offset
            && offset.unsigned_abs() > u64::from(STAGE_DAYS)
        {
            self.problems.error(
                self.at(from, "offset"),
                format!(
                    "stage {}: offset {offset} is more than {STAGE_DAYS} days (ten years) from the \
                     {}: expected an offset between -{STAGE_DAYS} and {STAGE_DAYS}",
                    shown(&s.id),
                    anchor_name(anchor)
                ),
            );
        }
        let Some(r) = s.repeat else { return };
        if r.every == 0 {
            self.problems.error(
                self.at(from, "repeat"),
                "repeat.every must be at least 1 day",
            );
        }
        let why = [
            ("every", Some(r.every), "a repeat waits at most ten years"),
            (
                "max",
                r.max,
                "ten years of daily repeats; leave `max` out to repeat \
              for as long as the invoice is open",
            ),
        ];
        for (key, value, why) in why {
            if let Some(value) = value.filter(|v| *v > STAGE_DAYS) {
                self.problems.error(
                    self.at(from, key),
                    format!(
                        "stage {}: repeat.{key} {value} is more than {STAGE_DAYS}: expected at \
                         most {STAGE_DAYS} ({why})",
                        shown(&s.id)
                    ),
                );
            }
        }
    }

    /// A stage that fires at an offset from the anchor, which it must say.
    fn offset(&mut self, s: &StageFile, location: &Location, anchor: Anchor) -> Trigger {
        if s.offset.is_none() {
            self.problems.error(
                location.clone(),
                format!(
                    "stage {}: missing `offset` (days from the {}; negative = before)",
                    shown(&s.id),
                    anchor_name(anchor)
                ),
            );
        }
        Trigger::Offset
    }

    /// A stage `on: promise_broken`: once, on its day, the policy's only one.
    fn promise_broken(&mut self, s: &StageFile, location: &Location, earlier: &[Stage]) -> Trigger {
        let from = location.line.unwrap_or(1);
        if s.offset.is_some() {
            self.problems.error(
                self.at(from, "offset"),
                format!(
                    "stage {}: a stage `on: promise_broken` fires the first day after the \
                     promised date (plus promise_grace), not at an offset: remove `offset`",
                    shown(&s.id)
                ),
            );
        }
        if s.repeat.is_some() {
            self.problems.error(
                self.at(from, "repeat"),
                format!(
                    "stage {}: a stage `on: promise_broken` fires once: remove `repeat`",
                    shown(&s.id)
                ),
            );
        }
        if earlier.iter().any(|o| o.trigger == Trigger::PromiseBroken) {
            self.problems.error(
                location.clone(),
                "only one stage per policy can fire `on: promise_broken`",
            );
        }
        Trigger::PromiseBroken
    }

    /// A scheduled stage written before an earlier-offset one can never
    /// fire after it: stages fire in file order.
    fn order(&mut self, id: &str, offset: i64, from: usize, earlier: &[Stage]) {
        if let Some(prev) = earlier.iter().rev().find(|p| p.is_scheduled())
            && offset < prev.offset
        {
            self.problems.warning(
                self.at(from, "offset"),
                format!(
                    "stage {} (offset {}) comes after {} (offset {}): stages fire in file order, so {} can never fire after {}",
                    shown(id),
                    offset,
                    shown(&prev.id),
                    prev.offset,
                    shown(&prev.id),
                    shown(id)
                ),
            );
        }
    }

    /// The policy's `on_paid:` thank-you, as a stage after the others.
    fn thank_you(&mut self, thanks: OnPaidFile) -> Stage {
        let location = self.at(1, "on_paid");
        let template_location = self.at(location.line.unwrap_or(1), "template");
        self.template_name(&thanks.template, &template_location);
        Stage {
            id: ON_PAID.into(),
            offset: 0,
            trigger: Trigger::Paid,
            channel: thanks.channel,
            template: thanks.template,
            when: None,
            repeat: None,
            shift: Shift::Later,
            group: Grouping::Invoice,
            urgent: false,
            approve: false,
            to: None,
            cc: Vec::new(),
            bcc: Vec::new(),
            template_location,
            location,
        }
    }

    /// The config's send window, overridden key by key by the policy's.
    fn window(
        &mut self,
        send_days: Option<&[Weekday]>,
        holidays: Option<&HolidaySettings>,
        send_time: Option<NaiveTime>,
        config: &SendWindow,
    ) -> SendWindow {
        let window = SendWindow {
            calendar: match (send_days, holidays) {
                (None, None) => config.calendar.clone(),
                (days, holidays) => Calendar::new(
                    days.unwrap_or(&config.calendar.send_days()),
                    holidays.unwrap_or(&config.calendar.holidays()),
                ),
            },
            send_time: send_time.or(config.send_time),
        };
        if window.calendar.is_empty() {
            self.problems.error(
                self.at(1, "send_days"),
                "send_days is empty: no reminder of this policy could ever go out",
            );
        }
        window
    }
}

fn anchor_name(anchor: Anchor) -> &'static str {
    match anchor {
        Anchor::DueDate => "due date",
        Anchor::IssueDate => "issue date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{date, invoice};
    use crate::model::{InvoiceId, Ledger};
    use crate::rules::{CustomerView, InvoiceView, Variables};
    use std::sync::Arc;

    fn load(files: &[(&str, &str)]) -> (Vec<Policy>, Problems) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let mut problems = Problems::default();
        let policies = load_policies(
            dir.path(),
            &Scripts::empty(),
            &PolicyDefaults::default(),
            RuleLimits::default(),
            &mut problems,
        );
        (policies, problems)
    }

    #[test]
    fn check_warns_of_email_stages_the_minimum_gap_always_holds_back() {
        let policy = "name: p
contact: {min_days_between: 7}
stages:
  - {id: due_soon, offset: -2, template: t}
  - {id: letter, offset: 0, template: t, channel: letter}
  - {id: overdue_1, offset: 1, template: t}
  - {id: legal, offset: 3, template: t, urgent: true}
  - {id: overdue_2, offset: 15, template: t, repeat: {every: 5}}
";
        let (p, problems) = load(&[("p.yaml", policy)]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].contact.min_days_between, 7);
        let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("p.yaml:6:")
                && said[0].contains("stage overdue_1 comes 3 day(s) after due_soon, fewer than contact.min_days_between (7)"),
            "{said:?}"
        );
        assert!(
            said[1].contains("p.yaml:8:")
                && said[1].contains("stage overdue_2 repeats every 5 day(s)"),
            "{said:?}"
        );
        // Without a minimum gap, nothing to say.
        let (_, problems) = load(&[("p.yaml", &policy.replace("7}", "0}"))]);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn sorted_by_priority_then_name() {
        let (p, problems) = load(&[
            (
                "a.yaml",
                "name: b\npriority: 5\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
            (
                "b.yaml",
                "name: a\npriority: 5\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
            (
                "c.yaml",
                "name: c\npriority: 9\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["c", "a", "b"]
        );
    }

    #[test]
    fn errors_are_located_and_other_policies_still_load() {
        let (p, problems) = load(&[
            (
                "bad.yaml",
                "name: bad\nstages:\n  - id: one\n    offset: 1\n    template: t\n    when: 'invoice.amount_due >'\n",
            ),
            (
                "typo.yaml",
                "name: typo\nstages:\n  - id: one\n    ofset: 1\n    template: t\n",
            ),
            (
                "dup.yaml",
                "name: dup\nstages:\n  - {id: x, offset: 1, template: t}\n  - {id: x, offset: 2, template: t}\n",
            ),
            (
                "good.yaml",
                "name: good\nstages:\n  - {id: x, offset: 1, template: t}\n",
            ),
        ]);
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["good"]
        );
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("bad.yaml:6:") && m.contains("invoice.amount_due >")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("typo.yaml:4:5: stages[0]: unknown field `ofset`")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("dup.yaml:4:") && m.contains("used twice")),
            "{msgs:?}"
        );
    }

    #[test]
    fn a_discount_is_loaded_checked_and_seen_by_when() {
        let (p, problems) = load(&[(
            "a.yaml",
            "name: a\ndiscount: {percent: 2.5, within_days: 10}\nstages: [{id: s, offset: 1, template: t}]\n",
        )]);
        assert!(problems.is_empty(), "{problems:?}");
        let policy = &p[0];
        let inv = invoice("F1", "C1", "2026-11-01", "1000.00");
        // Issued 30 days before it is due, on 2026-10-02: the deadline is 2026-10-12.
        let scripts = Scripts::empty();
        let ledger = Arc::new(Ledger::new(vec![inv.clone()]));
        let view = |on: &str| InvoiceView {
            ledger: ledger.clone(),
            index: InvoiceId::new(0),
            today: date(on),
        };
        let when = scripts
            .compile(
                "discount.available && discount.amount == 25.00 && discount.amount_due_after == 975.00 \
                 && discount.deadline == \"2026-10-12\" && discount.percent == 2.5 && discount.within_days == 10",
                Location::at(Path::new("a.yaml"), 3, 1),
            )
            .unwrap();
        for (on, expected) in [("2026-10-12", true), ("2026-10-13", false)] {
            let mut scope = Variables {
                invoice: view(on),
                customer: CustomerView {
                    ledger: ledger.clone(),
                    index: 0,
                    today: date(on),
                    last_contacted: None,
                },
                today: date(on),
                sent: vec![],
            }
            .into_scope(None);
            let date = date(on);
            scope.set_value("discount", policy.discount_variable(&inv, date));
            assert_eq!(scripts.eval_bool(&when, &mut scope), Ok(expected), "{on}");
        }
        let (p, _) = load(&[(
            "b.yaml",
            "name: b\nstages: [{id: s, offset: 1, template: t}]\n",
        )]);
        assert!(p[0].discount_variable(&inv, date("2026-10-05")).is_unit());
    }

    #[test]
    fn discount_mistakes_are_located() {
        let (p, problems) = load(&[
            (
                "zero.yaml",
                "name: zero\ndescription: no percent here\ndiscount:\n  percent: 0\n  within_days: -1\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
            (
                "whole.yaml",
                "name: whole\ndiscount: {percent: 100, within_days: 0}\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
            (
                "typo.yaml",
                "name: typo\ndiscount: {percent: 2, within: 10}\nstages: [{id: s, offset: 1, template: t}]\n",
            ),
        ]);
        assert!(p.is_empty());
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has = |part: &str| msgs.iter().any(|m| m.contains(part));
        assert!(
            has("whole.yaml:2:12: discount.percent must be more than 0 and less than 100, not 100"),
            "{msgs:?}"
        );
        assert!(
            has("zero.yaml:4:3: discount.percent must be more than 0 and less than 100, not 0"),
            "{msgs:?}"
        );
        assert!(
            has(
                "zero.yaml:5:3: discount.within_days counts days from the issue date: it must not be negative, not -1"
            ),
            "{msgs:?}"
        );
        assert!(has("typo.yaml:2:"), "{msgs:?}");
        assert!(has("unknown field `within`"), "{msgs:?}");
    }

    #[test]
    fn reach_dates_with_repeats_and_month_ends() {
        let (p, _) = load(&[(
            "a.yaml",
            "name: a\nstages:\n  - {id: pre, offset: -7, template: t}\n  - {id: c, offset: 30, template: t, repeat: {every: 30, max: 3}}\n",
        )]);
        let p = &p[0];
        let anchor = NaiveDate::from_ymd_opt(2028, 1, 31).unwrap();
        assert_eq!(
            p.scheduled_date(anchor, StageId::new(0), 0).to_string(),
            "2028-01-24"
        );
        assert_eq!(
            p.scheduled_date(anchor, StageId::new(1), 0).to_string(),
            "2028-03-01"
        ); // 2028 is a leap year
        assert_eq!(
            p.scheduled_date(anchor, StageId::new(1), 2).to_string(),
            "2028-04-30"
        );
        // Sunday 30 April 2028 moves to Monday 1 May with the default calendar.
        assert_eq!(
            p.reach_date(anchor, StageId::new(1), 2).to_string(),
            "2028-05-01"
        );
        assert_eq!(p.stages[1].max_occurrence(), Some(3));
    }
}
