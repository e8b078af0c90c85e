//! Subjects of plain text, fields and the `date`, `money` and `days_overdue`
//! helpers, compiled once and written straight from the invoice: the text
//! Handlebars renders, without building a JSON context for every reminder.

use chrono::NaiveDate;

use crate::locale::{format_date, format_money};
use crate::model::{InvoiceId, Ledger};

/// A value a subject shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Number,
    CustomerId,
    CustomerName,
    Email,
    Currency,
    Status,
    Language,
    IssueDate,
    DueDate,
    DaysOverdue,
    /// `customer.name`, `customer.id`: the customer's, which may differ from
    /// the invoice's own text when a customer's rows disagree.
    TheCustomerName,
    TheCustomerId,
    /// The message's own `language` and `today`.
    MessageLanguage,
    Today,
}

/// An amount `money` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amount {
    Whole,
    Paid,
    Due,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Text(Box<str>),
    Field(Field),
    /// `{{date invoice.due_date}}`, `{{date invoice.issue_date}}`.
    Date(Field),
    /// `{{money invoice.amount_due}}`: in the invoice's currency.
    Money(Amount),
    /// `{{stage.occurrence}}`.
    Occurrence,
    /// `{{#if (gt stage.occurrence N)}}…{{else}}…{{/if}}`, as the shipped
    /// collection hand-off says "follow-up n° 2".
    IfOccurrenceAbove(u32, Vec<Step>, Vec<Step>),
}

/// A subject compiled to steps; `None` from [`CompiledSubject::compile`]
/// when it uses anything else (blocks, other helpers, optional fields,
/// whitespace control, escapes), which Handlebars then renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CompiledSubject(Vec<Step>);

/// What one reminder's subject is written from.
pub struct SubjectData<'a> {
    pub ledger: &'a Ledger,
    pub invoice: InvoiceId,
    pub today: NaiveDate,
    pub language: &'a str,
    pub occurrence: u32,
}

impl CompiledSubject {
    /// Compiles `source`; `is_helper` tells a name a script function
    /// answers to (`{{today}}` would call it rather than read the date).
    pub(super) fn compile(source: &str, is_helper: impl Fn(&str) -> bool) -> Option<Self> {
        // Escapes, raw output, and the lines Handlebars takes out around a
        // block standing alone on its own: left to Handlebars.
        if source.contains(['\\', '\n', '\r']) || source.contains("{{{") {
            return None;
        }
        let mut tokens = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                tokens.push(Token::Text(&rest[..open]));
            }
            let inside = &rest[open + 2..];
            let close = inside.find("}}")?;
            tokens.push(Token::Expression(&inside[..close]));
            rest = &inside[close + 2..];
        }
        if rest.contains("}}") {
            return None;
        }
        if !rest.is_empty() {
            tokens.push(Token::Text(rest));
        }
        let mut tokens = tokens.into_iter();
        let (steps, end) = steps(&mut tokens, &is_helper)?;
        end.is_none().then_some(CompiledSubject(steps))
    }

    /// The subject as Handlebars writes it before it is folded to one line.
    pub(super) fn render(&self, data: &SubjectData) -> String {
        let mut out = String::with_capacity(96);
        write(&self.0, data, &mut out);
        out
    }
}

fn write(steps: &[Step], data: &SubjectData, out: &mut String) {
    let inv = &data.ledger.invoices[data.invoice];
    for step in steps {
        match step {
            Step::Text(text) => out.push_str(text),
            Step::Field(field) => match field {
                Field::Number => out.push_str(&inv.number),
                Field::CustomerId => out.push_str(&inv.bill_to.id),
                Field::CustomerName => out.push_str(&inv.bill_to.name),
                Field::Email => out.push_str(&inv.bill_to.email),
                Field::Currency => out.push_str(&inv.currency),
                Field::Status => out.push_str(inv.status.as_str()),
                Field::Language => out.push_str(data.ledger.language_of(data.invoice)),
                Field::IssueDate => out.push_str(&inv.issue_date.to_string()),
                Field::DueDate => out.push_str(&inv.due_date.to_string()),
                Field::DaysOverdue => out.push_str(&inv.days_overdue(data.today).to_string()),
                Field::TheCustomerName => out.push_str(&data.ledger.customer(data.invoice).name),
                Field::TheCustomerId => out.push_str(&data.ledger.customer(data.invoice).id),
                Field::MessageLanguage => out.push_str(data.language),
                Field::Today => out.push_str(&data.today.to_string()),
            },
            Step::Date(field) => {
                let date = match field {
                    Field::IssueDate => inv.issue_date,
                    _ => inv.due_date,
                };
                out.push_str(&format_date(date, data.language));
            }
            Step::Money(amount) => {
                let amount = match amount {
                    Amount::Whole => inv.amount,
                    Amount::Paid => inv.amount_paid,
                    Amount::Due => inv.amount_due(),
                };
                out.push_str(&format_money(amount, &inv.currency, data.language));
            }
            Step::Occurrence => out.push_str(&data.occurrence.to_string()),
            Step::IfOccurrenceAbove(above, then, otherwise) => {
                let chosen = if data.occurrence > *above {
                    then
                } else {
                    otherwise
                };
                write(chosen, data, out);
            }
        }
    }
}

enum Token<'s> {
    Text(&'s str),
    Expression(&'s str),
}

/// What ends a run of steps: `{{else}}` or `{{/if}}`; `None` at the end.
#[derive(PartialEq)]
enum End {
    Else,
    EndIf,
}

/// The steps up to the next `{{else}}` or `{{/if}}` (which is returned)
/// or the end; `None` when something is not compiled.
fn steps<'s>(
    tokens: &mut impl Iterator<Item = Token<'s>>,
    is_helper: &impl Fn(&str) -> bool,
) -> Option<(Vec<Step>, Option<End>)> {
    let mut steps = Vec::new();
    while let Some(token) = tokens.next() {
        let inside = match token {
            Token::Text(text) => {
                steps.push(Step::Text(text.into()));
                continue;
            }
            Token::Expression(inside) => inside.trim_matches(|c: char| c.is_ascii_whitespace()),
        };
        match inside {
            "else" => return Some((steps, Some(End::Else))),
            "/if" => return Some((steps, Some(End::EndIf))),
            _ => {}
        }
        let Some(condition) = inside.strip_prefix("#if ") else {
            steps.push(expression(inside, is_helper)?);
            continue;
        };
        let above = occurrence_above(condition)?;
        let (then, end) = steps_of(tokens, is_helper)?;
        let otherwise = match end {
            End::Else => match steps_of(tokens, is_helper)? {
                (otherwise, End::EndIf) => otherwise,
                (_, End::Else) => return None,
            },
            End::EndIf => Vec::new(),
        };
        steps.push(Step::IfOccurrenceAbove(above, then, otherwise));
    }
    Some((steps, None))
}

/// [`steps`] that must end with `{{else}}` or `{{/if}}`.
fn steps_of<'s>(
    tokens: &mut impl Iterator<Item = Token<'s>>,
    is_helper: &impl Fn(&str) -> bool,
) -> Option<(Vec<Step>, End)> {
    let (steps, end) = steps(tokens, is_helper)?;
    Some((steps, end?))
}

/// `(gt stage.occurrence N)` → N; `stage.occurrence` (true when not 0) → 0.
fn occurrence_above(condition: &str) -> Option<u32> {
    let condition = condition.trim_matches(|c: char| c.is_ascii_whitespace());
    if condition == "stage.occurrence" {
        return Some(0);
    }
    let inner = condition.strip_prefix('(')?.strip_suffix(')')?;
    let mut words = inner.split_ascii_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("gt"), Some("stage.occurrence"), Some(n), None)
            if n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            n.parse().ok()
        }
        _ => None,
    }
}

/// One `{{…}}` of a subject as a step, if it is one of the few compiled.
fn expression(inside: &str, is_helper: &impl Fn(&str) -> bool) -> Option<Step> {
    let mut words = inside.split_ascii_whitespace();
    let (first, second, third) = (words.next()?, words.next(), words.next());
    if third.is_some() {
        return None;
    }
    match (first, second) {
        ("date", Some(path)) => match field(path, is_helper)? {
            f @ (Field::IssueDate | Field::DueDate) => Some(Step::Date(f)),
            _ => None,
        },
        ("money", Some(path)) => Some(Step::Money(match path {
            "invoice.amount" => Amount::Whole,
            "invoice.amount_paid" => Amount::Paid,
            "invoice.amount_due" => Amount::Due,
            _ => return None,
        })),
        ("days_overdue", Some("invoice")) => Some(Step::Field(Field::DaysOverdue)),
        ("stage.occurrence", None) => Some(Step::Occurrence),
        (path, None) => field(path, is_helper).map(Step::Field),
        _ => None,
    }
}

fn field(path: &str, is_helper: &impl Fn(&str) -> bool) -> Option<Field> {
    Some(match path {
        "invoice.number" => Field::Number,
        "invoice.customer_id" => Field::CustomerId,
        "invoice.customer_name" => Field::CustomerName,
        "invoice.email" => Field::Email,
        "invoice.currency" => Field::Currency,
        "invoice.status" => Field::Status,
        "invoice.language" => Field::Language,
        "invoice.issue_date" => Field::IssueDate,
        "invoice.due_date" => Field::DueDate,
        "invoice.days_overdue" => Field::DaysOverdue,
        "customer.name" => Field::TheCustomerName,
        "customer.id" => Field::TheCustomerId,
        "stage.occurrence" => return None,
        "language" if !is_helper("language") => Field::MessageLanguage,
        "today" if !is_helper("today") => Field::Today,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiles(source: &str) -> bool {
        CompiledSubject::compile(source, |_| false).is_some()
    }

    #[test]
    fn text_fields_and_three_helpers_compile_anything_else_does_not() {
        assert!(compiles(
            "Facture {{invoice.number}} : échéance le {{date invoice.due_date}}"
        ));
        assert!(compiles(
            "{{customer.name}}, {{money invoice.amount_due}}, {{days_overdue invoice}} j"
        ));
        assert!(compiles("no expression at all"));
        assert!(compiles(
            "Recouvrement{{#if (gt stage.occurrence 0)}} (suivi n° {{stage.occurrence}}){{/if}} : x"
        ));
        assert!(compiles("{{#if stage.occurrence}}a{{else}}b{{/if}}"));
        for other in [
            "{{#if overdue}}a{{/if}}",
            "{{#if stage.occurrence}}a",
            "a{{/if}}",
            "{{#if stage.occurrence}}a{{else}}b{{else}}c{{/if}}",
            "{{#if (gt stage.occurrence -1)}}a{{/if}}",
            "{{money invoice.amount_due \"USD\"}}",
            "{{date invoice.paid_date}}",
            "{{invoice.extra.po}}",
            "{{{invoice.number}}}",
            "\\{{invoice.number}}",
            "{{~invoice.number}}",
            "{{stage.id}}",
            "{{invoice.number",
            "a }} b",
            "a\n{{#if stage.occurrence}}\nb\n{{/if}}",
        ] {
            assert!(!compiles(other), "{other}");
        }
        // A script function named like a root field is called, not read.
        assert!(CompiledSubject::compile("{{today}}", |name| name == "today").is_none());
    }
}
