//! The context a message's templates see: its invoice, customer, stage and
//! policy, the statement of a grouped message (its invoices coming due and
//! overdue), company, rates and discount, amounts as exact numbers, and only
//! the parts a subject names.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{Number, Value, json};

use crate::config::{Config, Rates};
use crate::locale::money;
use crate::model::{CustomerId, InvoiceField, InvoiceId, Ledger};
use crate::money::Discount;
use crate::rules::{CustomerView, InvoiceView, Policy, Stage};

/// Everything a template sees for one message, plus the typed views its
/// script helpers need.
pub struct MessageContext {
    pub json: Value,
    pub invoice: InvoiceView,
    pub customer: CustomerView,
}

/// An exact JSON number for a template context. serde_json's
/// `arbitrary_precision` keeps its text, so it renders as written (`1234.00`),
/// while `#if`, `eq` and `gt` see a number: `0.00` is false, `1234.00` equals
/// `1234`. As a string it would be truthy and compare as text.
pub(super) fn exact_number(text: String) -> Value {
    match text.parse::<Number>() {
        Ok(n) => Value::Number(n),
        // A decimal's text is always a JSON number; keep the text if not.
        Err(_) => Value::String(text),
    }
}

/// An amount for a template context: an exact number with at least cents.
pub(super) fn amount_json(d: Decimal) -> Value {
    exact_number(money(d))
}

/// The fields a customer shows to templates, in the order of `customer_json`.
pub(super) const CUSTOMER_FIELDS: [&str; 10] = [
    "id",
    "name",
    "email",
    "language",
    "tags",
    "open_count",
    "total_due",
    "overdue_count",
    "late_paid_ratio",
    "avg_days_late",
];

/// Every field of `CUSTOMER_FIELDS`, as a mask for `customer_json`.
const ALL_CUSTOMER_FIELDS: u32 = (1 << CUSTOMER_FIELDS.len()) - 1;

/// The JSON an invoice shows to templates: the [`InvoiceField`]s in the set
/// `fields` (of their bits).
pub fn invoice_json(ledger: &Ledger, index: InvoiceId, today: NaiveDate, fields: u32) -> Value {
    use InvoiceField::*;
    let inv = &ledger.invoices[index];
    let mut map = serde_json::Map::new();
    for field in InvoiceField::ALL {
        if fields & field.bit() == 0 {
            continue;
        }
        let value = match field {
            Number => json!(inv.number),
            CustomerId => json!(inv.bill_to.id),
            CustomerName => json!(inv.bill_to.name),
            Email => json!(inv.bill_to.email),
            IssueDate => json!(inv.issue_date.to_string()),
            DueDate => json!(inv.due_date.to_string()),
            Amount => amount_json(inv.amount),
            AmountPaid => amount_json(inv.amount_paid),
            AmountDue => amount_json(inv.amount_due()),
            Currency => json!(inv.currency),
            Status => json!(inv.status.as_str()),
            // An optional date the invoice lacks is left out rather than
            // null: in strict mode `{{invoice.paid_date}}` is then an error
            // (a null would render blank in a customer's mailbox), while
            // `{{#if invoice.paid_date}}` still works.
            PaidDate => match inv.paid_date {
                Some(d) => json!(d.to_string()),
                None => continue,
            },
            Language => json!(ledger.language_of(index)),
            Tags => json!(inv.tags),
            PromiseDate => match inv.promise_date {
                Some(d) => json!(d.to_string()),
                None => continue,
            },
            DaysOverdue => json!(inv.days_overdue(today)),
            // Every extra column of every feed, empty where this invoice's feed
            // lacks it, so that one template serves invoices from all feeds.
            Extra => Value::Object(
                ledger
                    .extra_columns
                    .iter()
                    .map(|c| {
                        let v = inv.extra.get(c).unwrap_or("");
                        (c.clone(), Value::String(v.to_string()))
                    })
                    .collect(),
            ),
        };
        map.insert(field.name().to_string(), value);
    }
    Value::Object(map)
}

/// The JSON a customer shows to templates; `fields` selects by bit (in the
/// order of `CUSTOMER_FIELDS`).
fn customer_json(ledger: &Ledger, customer: CustomerId, today: NaiveDate, fields: u32) -> Value {
    let c = &ledger.customers[customer];
    let mut map = serde_json::Map::new();
    for (bit, name) in CUSTOMER_FIELDS.iter().enumerate() {
        if fields & (1 << bit) == 0 {
            continue;
        }
        let value = match bit {
            0 => json!(c.id),
            1 => json!(c.name),
            2 => json!(c.email),
            3 => json!(ledger.customer_language(customer)),
            4 => json!(c.tags),
            5 => json!(c.open_count),
            6 => amount_json(c.total_due),
            7 => json!(c.overdue_count(today)),
            8 => exact_number(c.late_paid_ratio.to_string()),
            _ => exact_number(c.avg_days_late.to_string()),
        };
        map.insert((*name).to_string(), value);
    }
    Value::Object(map)
}

/// What a message context holds: some of its top-level objects (invoice,
/// customer, stage, policy, company, rates, discount) and some fields of the invoice. A
/// subject names few of them, and building only those makes a preview of a
/// million reminders several times cheaper; a body always gets everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    objects: u8,
    invoice_fields: u32,
    customer_fields: u32,
}

impl Parts {
    pub(super) const INVOICE: u8 = 1;
    pub(super) const CUSTOMER: u8 = 2;
    pub(super) const STAGE: u8 = 4;
    pub(super) const POLICY: u8 = 8;
    pub(super) const COMPANY: u8 = 16;
    pub(super) const STATEMENT: u8 = 32;
    pub(super) const RATES: u8 = 64;
    pub(super) const DISCOUNT: u8 = 128;
    const NONE: Parts = Parts {
        objects: 0,
        invoice_fields: 0,
        customer_fields: 0,
    };
    pub const ALL: Parts = Parts {
        objects: 255,
        invoice_fields: InvoiceField::EVERY,
        customer_fields: ALL_CUSTOMER_FIELDS,
    };
    const NAMED: [(&'static str, u8); 11] = [
        ("invoice", Parts::INVOICE),
        ("customer", Parts::CUSTOMER),
        ("stage", Parts::STAGE),
        ("policy", Parts::POLICY),
        ("company", Parts::COMPANY),
        ("invoices", Parts::STATEMENT),
        ("totals", Parts::STATEMENT),
        ("due_soon", Parts::STATEMENT),
        ("overdue", Parts::STATEMENT),
        ("rates", Parts::RATES),
        ("discount", Parts::DISCOUNT),
    ];

    pub(super) fn has(self, object: u8) -> bool {
        self.objects & object != 0
    }

    /// The fields of the invoice it holds, by [`InvoiceField::bit`].
    pub(super) fn invoice_fields(self) -> u32 {
        self.invoice_fields
    }

    /// The fields of the customer it holds, by bit in `CUSTOMER_FIELDS`.
    pub(super) fn customer_fields(self) -> u32 {
        self.customer_fields
    }

    /// The parts a template's source names. Anything that can reach a part
    /// without naming it (partials, `this`, `@root`, `lookup`, blocks that
    /// change the context) means everything, and so does passing a whole
    /// invoice or customer to a helper.
    pub fn used_by(source: &str) -> Parts {
        Parts::used_by_with(source, &HashMap::new())
    }

    /// The parts a template's source names, with those of the partials it
    /// includes (`partials`: the ones known so far; an unknown partial, or
    /// one given its own context, may read anything).
    pub(super) fn used_by_with(
        source: &str,
        partials: &HashMap<String, (PathBuf, Parts)>,
    ) -> Parts {
        if [
            "this", "@root", "../", "lookup", "{{#with", "{{#each", "{{#>", "{{~#>",
        ]
        .iter()
        .any(|w| source.contains(w))
        {
            return Parts::ALL;
        }
        let mut included = Parts::NONE;
        // `{{~> NAME}}` includes it too, trimming the text before.
        let includes = source.match_indices("{{>").map(|(at, _)| at + 3);
        let trimmed = source.match_indices("{{~>").map(|(at, _)| at + 4);
        for start in includes.chain(trimmed) {
            let call = &source[start..];
            let call = &call[..call.find("}}").unwrap_or(call.len())];
            let mut words = call.split_whitespace();
            let found = match (words.next(), words.next()) {
                (Some(name), None) => partials.get(name).map(|(_, parts)| *parts),
                _ => None,
            };
            match found {
                Some(parts) => included = included.union(parts),
                None => return Parts::ALL,
            }
        }
        let mut parts = Parts {
            objects: 0,
            invoice_fields: fields_used(
                source,
                "invoice",
                &InvoiceField::ALL.map(InvoiceField::name),
            ),
            customer_fields: fields_used(source, "customer", &CUSTOMER_FIELDS),
        };
        for (name, object) in Parts::NAMED {
            if names_in_expressions(source, name) {
                parts.objects |= object;
            }
        }
        // `money` reads the invoice's currency, `days_overdue` its due date.
        if source.contains("money") || source.contains("days_overdue") {
            parts.objects |= Parts::INVOICE;
            parts.invoice_fields |= 1 << 5 | 1 << 9;
        }
        parts.union(included)
    }

    pub(super) fn union(self, other: Parts) -> Parts {
        Parts {
            objects: self.objects | other.objects,
            invoice_fields: self.invoice_fields | other.invoice_fields,
            customer_fields: self.customer_fields | other.customer_fields,
        }
    }
}

/// Whether `name` is a word of the `{{…}}` expressions of `source`: the
/// text around them may say "overdue" or "invoice" without reading them,
/// and `days_overdue` or `this.invoice` is not the top-level `overdue` or
/// `invoice`.
fn names_in_expressions(source: &str, name: &str) -> bool {
    let part_of_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let inside = &rest[open + 2..];
        let end = inside.find("}}").unwrap_or(inside.len());
        let expression = &inside[..end];
        let named = expression.match_indices(name).any(|(at, _)| {
            let before = expression[..at].chars().next_back();
            let after = expression[at + name.len()..].chars().next();
            !before.is_some_and(|c| part_of_word(c) || c == '.') && !after.is_some_and(part_of_word)
        });
        if named {
            return true;
        }
        rest = &inside[end..];
    }
    false
}

/// The fields of `object` (by bit, in the order of `fields`) that a
/// template's source reads as `object.field`; all of them when it passes the
/// whole object to a helper (`{{days_overdue invoice}}` reads only the due
/// date) or names a field this list lacks.
fn fields_used(source: &str, object: &str, fields: &[&str]) -> u32 {
    let all = (1u32 << fields.len()) - 1;
    let mut used = 0;
    for (at, _) in source.match_indices(object) {
        let after = &source[at + object.len()..];
        match after.strip_prefix('.') {
            Some(field) => {
                let name: String = field
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used |= fields
                    .iter()
                    .position(|f| *f == name)
                    .map_or(all, |bit| 1 << bit);
            }
            // Part of a longer word (`invoices`, `customer_name`): not this object.
            None if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') => {}
            None if object == "invoice" && source[..at].trim_end().ends_with("days_overdue") => {
                used |= 1 << 5
            }
            None => used = all,
        }
    }
    used
}

/// `rates` in templates: `late_interest_annual` (absent when the config has
/// none, so that using it is an error `check` finds) and `recovery_indemnity`.
pub(super) fn rates_json(rates: &Rates) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(rate) = rates.late_interest_annual {
        map.insert(
            "late_interest_annual".into(),
            exact_number(rate.to_string()),
        );
    }
    map.insert(
        "recovery_indemnity".into(),
        amount_json(rates.recovery_indemnity),
    );
    Value::Object(map)
}

/// `discount` in templates: the figures of [`Discount`], amounts exact.
fn discount_json(offer: &Discount) -> Value {
    json!({
        "percent": exact_number(offer.percent.to_string()),
        "within_days": offer.within_days,
        "amount": amount_json(offer.amount),
        "amount_due_after": amount_json(offer.amount_due_after),
        "deadline": offer.deadline.to_string(),
        "available": offer.available,
    })
}

/// One invoice of a message and the stage it is at, under its policy: a
/// message grouped per customer (or combined) has several, any other one.
#[derive(Clone, Copy)]
pub struct StatementLine<'a> {
    pub invoice: InvoiceId,
    pub policy: &'a Policy,
    pub stage: &'a Stage,
    pub occurrence: u32,
}

fn stage_json(stage: &Stage, occurrence: u32) -> Value {
    json!({
        "id": stage.id,
        "offset": stage.offset,
        "channel": stage.channel.as_str(),
        "template": stage.template,
        "occurrence": occurrence,
    })
}

/// What a statement shows: `invoices` (each invoice with its `stage`, and
/// its `discount` when its policy offers one), the same split into
/// `due_soon` (not yet late) and `overdue` (a day late or more), and
/// `totals` (amount due and count per currency, by currency).
struct Statement {
    invoices: Vec<Value>,
    due_soon: Vec<Value>,
    overdue: Vec<Value>,
    totals: Value,
}

fn statement_json(ledger: &Ledger, lines: &[StatementLine], today: NaiveDate) -> Statement {
    // `None` past what a decimal holds: the feeds refuse the row that would
    // take one customer there, but a statement is not bound to one customer.
    let mut totals: BTreeMap<&str, (Option<Decimal>, usize)> = BTreeMap::new();
    let (mut due_soon, mut overdue) = (Vec::new(), Vec::new());
    let invoices = lines
        .iter()
        .map(|line| {
            let inv = &ledger.invoices[line.invoice];
            let total = totals
                .entry(&inv.currency)
                .or_insert((Some(Decimal::ZERO), 0));
            total.0 = total.0.and_then(|sum| sum.checked_add(inv.amount_due()));
            total.1 += 1;
            let mut json = invoice_json(ledger, line.invoice, today, InvoiceField::EVERY);
            json["stage"] = stage_json(line.stage, line.occurrence);
            if let Some(offer) = line.policy.discount(inv, today) {
                json["discount"] = discount_json(&offer);
            }
            let section = match inv.days_overdue(today) < 1 {
                true => &mut due_soon,
                false => &mut overdue,
            };
            section.push(json.clone());
            json
        })
        .collect();
    let totals = totals
        .into_iter()
        .map(|(currency, (due, count))| {
            json!({"currency": currency, "amount_due": due.map_or(Value::Null, amount_json), "count": count})
        })
        .collect();
    Statement {
        invoices,
        due_soon,
        overdue,
        totals: Value::Array(totals),
    }
}

/// Builds the context of a message about `lines` (the first leads: it is
/// the message's `invoice` and `stage`): `parts` of invoice, customer,
/// stage, policy, company, the statement (`invoices`, `due_soon`,
/// `overdue`, `totals`), rates and discount, plus `today` and `language`.
pub fn message_context(
    ledger: &Arc<Ledger>,
    lines: &[StatementLine],
    policy: &Policy,
    today: NaiveDate,
    language: &str,
    config: &Config,
    parts: Parts,
) -> MessageContext {
    let StatementLine {
        invoice: index,
        stage,
        occurrence,
        ..
    } = lines[0];
    let customer_index = ledger.customer_index(index);
    let mut root = serde_json::Map::new();
    if parts.has(Parts::INVOICE) {
        root.insert(
            "invoice".into(),
            invoice_json(ledger, index, today, parts.invoice_fields),
        );
    }
    if parts.has(Parts::CUSTOMER) {
        root.insert(
            "customer".into(),
            customer_json(
                ledger,
                CustomerId::new(customer_index),
                today,
                parts.customer_fields,
            ),
        );
    }
    if parts.has(Parts::STAGE) {
        root.insert("stage".into(), stage_json(stage, occurrence));
    }
    if parts.has(Parts::STATEMENT) {
        let statement = statement_json(ledger, lines, today);
        root.insert("invoices".into(), Value::Array(statement.invoices));
        root.insert("due_soon".into(), Value::Array(statement.due_soon));
        root.insert("overdue".into(), Value::Array(statement.overdue));
        root.insert("totals".into(), statement.totals);
    }
    if parts.has(Parts::POLICY) {
        root.insert(
            "policy".into(),
            json!({"name": policy.name, "description": policy.description}),
        );
    }
    if parts.has(Parts::COMPANY) {
        root.insert("company".into(), json!(config.company));
    }
    if parts.has(Parts::RATES) {
        root.insert("rates".into(), rates_json(&config.rates));
    }
    // Only under a policy with a discount: `{{#if discount}}` tells.
    if parts.has(Parts::DISCOUNT)
        && let Some(offer) = policy.discount(&ledger.invoices[index], today)
    {
        root.insert("discount".into(), discount_json(&offer));
    }
    root.insert("today".into(), Value::String(today.to_string()));
    root.insert("language".into(), Value::String(language.to_string()));
    MessageContext {
        json: Value::Object(root),
        invoice: InvoiceView {
            ledger: ledger.clone(),
            index,
            today,
        },
        customer: CustomerView {
            ledger: ledger.clone(),
            index: customer_index,
            today,
            // What the journal knows is the engine's: templates do not see it.
            last_contacted: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn subjects_get_only_what_they_name() {
        let p = Parts::used_by(
            "Facture {{invoice.number}} du {{date invoice.due_date}} — {{company.name}}",
        );
        assert_eq!(p.objects, Parts::INVOICE | Parts::COMPANY);
        assert_eq!(p.invoice_fields, 1 << 0 | 1 << 5);
        assert_eq!(
            Parts::used_by("{{money invoice.amount_due}}").invoice_fields,
            1 << 5 | 1 << 8 | 1 << 9
        );
        assert_eq!(
            Parts::used_by("{{late_fee invoice}}").invoice_fields,
            InvoiceField::EVERY
        );
        assert_eq!(
            Parts::used_by("{{days_overdue invoice}} days").invoice_fields,
            1 << 5 | 1 << 9
        );
        let p =
            Parts::used_by("{{customer.name}} owes {{money customer.total_due}} on {{invoices}}");
        assert_eq!(p.customer_fields, 1 << 1 | 1 << 6);
        assert_eq!(
            p.invoice_fields,
            1 << 5 | 1 << 9,
            "`invoices` is not `invoice`"
        );
        assert_eq!(
            Parts::used_by("{{score customer}}").customer_fields,
            ALL_CUSTOMER_FIELDS
        );
        assert_eq!(Parts::used_by("{{> header}}"), Parts::ALL);
        assert_eq!(Parts::used_by("{{~> header~}}"), Parts::ALL);
        assert_eq!(Parts::used_by("{{~#> layout}}x{{/layout}}"), Parts::ALL);
        assert_eq!(Parts::used_by("Hello").objects, 0);
    }

    #[test]
    fn only_expressions_name_a_part_not_the_text_around_them() {
        let p = Parts::used_by("Invoice {{invoice.number}} is overdue");
        assert_eq!(
            p.objects,
            Parts::INVOICE,
            "the word in the text reads nothing"
        );
        let p = Parts::used_by("{{#if overdue}}Overdue{{else}}Due{{/if}} — {{customer.name}}");
        assert_eq!(p.objects, Parts::STATEMENT | Parts::CUSTOMER);
        let p = Parts::used_by("{{plural invoice.days_overdue \"day\" \"days\"}} late");
        assert_eq!(
            p.objects,
            Parts::INVOICE,
            "a field's name is not the section"
        );
        assert_eq!(
            Parts::used_by("{{due_soon.length}}").objects,
            Parts::STATEMENT
        );
    }

    #[test]
    fn subjects_get_the_rates_and_discount_they_name() {
        let p = Parts::used_by("{{money (late_interest invoice rates.late_interest_annual)}}");
        assert_eq!(p.objects, Parts::INVOICE | Parts::RATES);
        assert_eq!(p.invoice_fields, InvoiceField::EVERY);
        let p = Parts::used_by("{{#if discount.available}}-{{percent discount.percent}}{{/if}}");
        assert_eq!(p.objects, Parts::DISCOUNT);
        assert!(Parts::ALL.has(Parts::RATES) && Parts::ALL.has(Parts::DISCOUNT));
    }

    #[test]
    fn the_discount_shows_exact_figures() {
        let offer = crate::money::DiscountTerms {
            percent: "2".parse().unwrap(),
            within_days: 10,
        }
        .offer("1840.00".parse().unwrap(), d("2026-11-23"), d("2026-12-01"));
        assert_eq!(
            discount_json(&offer).to_string(),
            r#"{"amount":36.80,"amount_due_after":1803.20,"available":true,"deadline":"2026-12-03","percent":2,"within_days":10}"#
        );
    }
}
