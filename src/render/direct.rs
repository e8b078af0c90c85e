//! Whole messages (subject, body, HTML body) written straight from the
//! ledger: Handlebars' own parse of a template, compiled once to a few
//! nodes that read the invoice, customer, statement and company without
//! building the JSON context, and with the same helpers. A template using
//! anything else, or a message reaching a missing value or an error, is
//! rendered by Handlebars (which then says what went wrong).

use std::borrow::Cow;

use chrono::NaiveDate;
use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, JsonRender, JsonTruthy, Path, Template};
use rhai::Dynamic;
use rust_decimal::Decimal;
use serde_json::Value;

use super::context::{CUSTOMER_FIELDS, Parts, StatementLine};
use super::helpers::{decimal_of_text, from_dynamic};
use crate::locale::{format_date, format_money, format_percent, is_french, money};
use crate::model::{CustomerId, InvoiceField, Ledger};
use crate::money::Discount;
use crate::rules::{
    BUILT_IN_FUNCTIONS, CustomerView, InvoiceView, Policy, RESERVED_NAMES, Scripts, Stage,
};

/// What a compiled template does, in order.
#[derive(Debug, Clone)]
enum Node {
    Text(Box<str>),
    /// A value written (escaped in an HTML body).
    Value(Expr),
    /// `{{#if}}` (or `{{#unless}}` when not `positive`) with its `{{else}}`.
    If {
        condition: Expr,
        positive: bool,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    /// `{{#each LIST}}…{{else}}…{{/each}}`.
    Each {
        list: Expr,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
enum Expr {
    /// A path from the root (`@root.…`) or from the current block's item.
    Path {
        root: bool,
        segments: Vec<Segment>,
        /// As written: a script helper gets the message's typed invoice
        /// for `invoice`.
        raw: Box<str>,
    },
    /// `@index`, `@first`, `@last` of the nearest `{{#each}}`.
    Local(Local),
    Literal(Value),
    Call(Helper, Vec<Expr>),
}

const INVOICE: Segment = Segment::known("invoice", None, Some(Root::Invoice));
const NUMBER: Segment = Segment::known("number", Some(InvoiceField::Number), None);
const CURRENCY: Segment = Segment::known("currency", Some(InvoiceField::Currency), None);
const AMOUNT_DUE: Segment = Segment::known("amount_due", Some(InvoiceField::AmountDue), None);

/// One name of a path, with the invoice or customer field, or the root
/// object, it names looked up once.
#[derive(Debug, Clone)]
struct Segment {
    name: Cow<'static, str>,
    field: Option<InvoiceField>,
    customer_field: Option<usize>,
    root: Option<Root>,
}

impl Segment {
    /// A name the helpers read.
    const fn known(name: &'static str, field: Option<InvoiceField>, root: Option<Root>) -> Segment {
        Segment {
            name: Cow::Borrowed(name),
            field,
            customer_field: None,
            root,
        }
    }

    fn of(name: &str) -> Segment {
        Segment {
            name: Cow::Owned(name.to_string()),
            field: InvoiceField::ALL.into_iter().find(|f| f.name() == name),
            customer_field: CUSTOMER_FIELDS.iter().position(|f| *f == name),
            root: Root::of(name),
        }
    }
}

/// What a name of the context's root gives: found once when a template
/// is compiled, not by comparing names for every message.
#[derive(Debug, Clone, Copy)]
enum Root {
    Invoice,
    Customer,
    Stage,
    Policy,
    Company,
    Rates,
    Discount,
    List(List),
    Today,
    Language,
}

impl Root {
    fn of(name: &str) -> Option<Root> {
        Some(match name {
            "invoice" => Root::Invoice,
            "customer" => Root::Customer,
            "stage" => Root::Stage,
            "policy" => Root::Policy,
            "company" => Root::Company,
            "rates" => Root::Rates,
            "discount" => Root::Discount,
            "invoices" => Root::List(List::Invoices),
            "due_soon" => Root::List(List::DueSoon),
            "overdue" => Root::List(List::Overdue),
            "totals" => Root::List(List::Totals),
            "today" => Root::Today,
            "language" => Root::Language,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Local {
    Index,
    First,
    Last,
}

#[derive(Debug, Clone)]
enum Helper {
    Money,
    Date,
    Percent,
    Plural,
    DaysOverdue,
    LateInterest,
    RecoveryIndemnity,
    /// relance's `eq` (true) and `ne` (false).
    Equal(bool),
    Greater,
    /// A function of `rules/*.rhai`.
    Script(Box<str>),
}

/// A template compiled to nodes.
#[derive(Debug, Clone)]
pub(super) struct Program {
    nodes: Vec<Node>,
    /// The length of its text outside and inside `{{#each}}` blocks, to
    /// size a message's text at once.
    text: usize,
    each_text: usize,
}

/// The length of the text of `nodes`: outside and inside `{{#each}}`.
fn text_lengths(nodes: &[Node], inside: bool) -> (usize, usize) {
    let mut lengths = (0, 0);
    let mut add = |(outside, each): (usize, usize)| {
        lengths.0 += outside;
        lengths.1 += each;
    };
    for node in nodes {
        match node {
            Node::Text(text) if inside => add((0, text.len())),
            Node::Text(text) => add((text.len(), 0)),
            Node::Value(_) => {}
            Node::If {
                then, otherwise, ..
            } => {
                add(text_lengths(then, inside));
                add(text_lengths(otherwise, inside));
            }
            Node::Each {
                body, otherwise, ..
            } => {
                add(text_lengths(body, true));
                add(text_lengths(otherwise, inside));
            }
        }
    }
    lengths
}

/// Handlebars' helpers that scripts may still name (relance's own, and
/// Handlebars' others, are the names scripts may not take).
const HANDLEBARS_ONLY: [&str; 3] = ["len", "log", "raw"];

/// Whether `{{name}}` alone would call a helper rather than read a value:
/// Handlebars' or relance's (`days_between`, a script's only, is among
/// them: such a template is left to Handlebars, which is always right).
fn is_helper(name: &str) -> bool {
    RESERVED_NAMES.contains(&name)
        || BUILT_IN_FUNCTIONS.contains(&name)
        || HANDLEBARS_ONLY.contains(&name)
}

impl Program {
    /// Compiles template `name` of `registry` (partials included in place);
    /// `None` when it uses anything this module does not write.
    pub(super) fn compile(registry: &Handlebars, name: &str, scripts: &Scripts) -> Option<Self> {
        let template = registry.get_template(name)?;
        let compiler = Compiler { registry, scripts };
        let nodes = compiler.nodes(template, 0)?;
        let (text, each_text) = text_lengths(&nodes, false);
        Some(Program {
            nodes,
            text,
            each_text,
        })
    }
}

struct Compiler<'a> {
    registry: &'a Handlebars<'a>,
    scripts: &'a Scripts,
}

impl Compiler<'_> {
    fn is_script(&self, name: &str) -> bool {
        self.scripts.functions.iter().any(|(f, _, _)| f == name)
    }

    fn nodes(&self, template: &Template, depth: usize) -> Option<Vec<Node>> {
        // A partial including itself is refused at load; this bounds the rest.
        if depth > 8 {
            return None;
        }
        let mut nodes = Vec::new();
        for element in &template.elements {
            match element {
                TemplateElement::RawString(text) => nodes.push(Node::Text(text.as_str().into())),
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) => {
                    if h.block || !h.hash.is_empty() || h.block_param.is_some() {
                        return None;
                    }
                    if h.params.is_empty() {
                        let path = match &h.name {
                            Parameter::Path(Path::Relative((_, raw))) => raw.as_str(),
                            Parameter::Name(name) => name.as_str(),
                            _ => return None,
                        };
                        if is_helper(path) || self.is_script(path) {
                            return None;
                        }
                        nodes.push(Node::Value(path_expr(path)?));
                    } else {
                        nodes.push(Node::Value(self.call(&h.name, &h.params)?));
                    }
                }
                TemplateElement::HelperBlock(h) => {
                    // An `{{else if …}}` chain is left to Handlebars.
                    if !h.hash.is_empty()
                        || h.block_param.is_some()
                        || h.params.len() != 1
                        || h.chain
                    {
                        return None;
                    }
                    let then = match &h.template {
                        Some(t) => self.nodes(t, depth)?,
                        None => Vec::new(),
                    };
                    let otherwise = match &h.inverse {
                        Some(t) => self.nodes(t, depth)?,
                        None => Vec::new(),
                    };
                    let argument = self.param(&h.params[0])?;
                    let Parameter::Name(name) = &h.name else {
                        return None;
                    };
                    nodes.push(match name.as_str() {
                        "if" | "unless" => Node::If {
                            condition: argument,
                            positive: name == "if",
                            then,
                            otherwise,
                        },
                        "each" => Node::Each {
                            list: argument,
                            body: then,
                            otherwise,
                        },
                        _ => return None,
                    });
                }
                TemplateElement::PartialExpression(p) => {
                    // The current context, no arguments, not indented.
                    if !p.params.is_empty()
                        || !p.hash.is_empty()
                        || p.template.is_some()
                        || p.indent.as_deref().is_some_and(|i| !i.is_empty())
                    {
                        return None;
                    }
                    let name = match &p.name {
                        Parameter::Name(name) => name.as_str(),
                        Parameter::Path(Path::Relative((_, raw))) => raw.as_str(),
                        _ => return None,
                    };
                    let partial = self.registry.get_template(name)?;
                    nodes.extend(self.nodes(partial, depth + 1)?);
                }
                _ => return None,
            }
        }
        Some(nodes)
    }

    fn param(&self, p: &Parameter) -> Option<Expr> {
        match p {
            Parameter::Path(Path::Relative((_, raw))) => path_expr(raw),
            Parameter::Path(Path::Local((0, name, _))) => Some(Expr::Local(match name.as_str() {
                "index" => Local::Index,
                "first" => Local::First,
                "last" => Local::Last,
                _ => return None,
            })),
            Parameter::Literal(value) => Some(Expr::Literal(value.clone())),
            Parameter::Subexpression(s) => match s.as_element() {
                TemplateElement::Expression(h)
                    if !h.params.is_empty() && h.hash.is_empty() && !h.block =>
                {
                    self.call(&h.name, &h.params)
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn call(&self, name: &Parameter, params: &[Parameter]) -> Option<Expr> {
        let Parameter::Name(name) = name else {
            return None;
        };
        let helper = match name.as_str() {
            "money" => Helper::Money,
            "date" => Helper::Date,
            "percent" => Helper::Percent,
            "plural" => Helper::Plural,
            "days_overdue" => Helper::DaysOverdue,
            "late_interest" => Helper::LateInterest,
            "recovery_indemnity" => Helper::RecoveryIndemnity,
            "eq" => Helper::Equal(true),
            "ne" => Helper::Equal(false),
            "gt" => Helper::Greater,
            other if self.is_script(other) => Helper::Script(other.into()),
            _ => return None,
        };
        let params: Option<Vec<Expr>> = params.iter().map(|p| self.param(p)).collect();
        Some(Expr::Call(helper, params?))
    }
}

/// `invoice.number`, `this.number`, `@root.rates.x`, `number`: anything
/// climbing out of a block (`../`) or indexing (`[0]`) is left to Handlebars.
fn path_expr(raw: &str) -> Option<Expr> {
    if raw.contains(['/', '[', ']']) || raw.is_empty() {
        return None;
    }
    let mut segments: Vec<&str> = raw.split('.').collect();
    let root = segments[0] == "@root";
    if root || segments[0] == "this" {
        segments.remove(0);
    }
    // Handlebars skips a `this` further on (`invoice.this.number` is the
    // invoice's number): left to it.
    if segments
        .iter()
        .any(|s| s.is_empty() || s.starts_with('@') || *s == "this")
    {
        return None;
    }
    Some(Expr::Path {
        root,
        segments: segments.into_iter().map(Segment::of).collect(),
        raw: raw.into(),
    })
}

/// What one message is written from: what [`super::message_context`] is
/// built from.
pub struct MessageData<'a> {
    pub ledger: &'a std::sync::Arc<Ledger>,
    pub lines: &'a [StatementLine<'a>],
    pub policy: &'a Policy,
    pub today: NaiveDate,
    pub language: &'a str,
    pub parts: Parts,
    pub company: &'a Value,
    pub rates: &'a Value,
    pub scripts: &'a Scripts,
}

/// The statement of a grouped message, as `statement_json` shows it.
struct Statement {
    discounts: Vec<Option<Discount>>,
    due_soon: Vec<usize>,
    overdue: Vec<usize>,
    /// (currency, amount due or `None` past a decimal's range, count), by currency.
    totals: Vec<(Box<str>, Option<Decimal>, usize)>,
}

impl Statement {
    fn of(data: &MessageData) -> Statement {
        let mut totals: std::collections::BTreeMap<&str, (Option<Decimal>, usize)> =
            std::collections::BTreeMap::new();
        let (mut due_soon, mut overdue) = (Vec::new(), Vec::new());
        let mut discounts = Vec::with_capacity(data.lines.len());
        for (i, line) in data.lines.iter().enumerate() {
            let inv = &data.ledger.invoices[line.invoice];
            let total = totals
                .entry(&inv.currency)
                .or_insert((Some(Decimal::ZERO), 0));
            total.0 = total.0.and_then(|sum| sum.checked_add(inv.amount_due()));
            total.1 += 1;
            discounts.push(line.policy.discount(inv, data.today));
            match inv.days_overdue(data.today) < 1 {
                true => due_soon.push(i),
                false => overdue.push(i),
            }
        }
        Statement {
            discounts,
            due_soon,
            overdue,
            totals: totals
                .into_iter()
                .map(|(c, (due, count))| (c.into(), due, count))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum List {
    Invoices,
    DueSoon,
    Overdue,
    Totals,
}

/// An object of the context.
#[derive(Clone, Copy)]
enum Object<'a> {
    Root,
    /// The message's invoice (its fields of `fields`), or a statement's
    /// line (every field, with its stage and discount).
    Invoice {
        line: Option<usize>,
        fields: u32,
    },
    Customer,
    Stage(&'a Stage, u32),
    Policy,
    Discount(&'a Discount),
    Total(usize),
}

/// A value of the context, or one a helper gives.
#[derive(Clone)]
enum Val<'a> {
    Str(Cow<'a, str>),
    /// A date, which the context has as its `YYYY-MM-DD` text: written or
    /// compared as that text, given to `date` without it.
    Date(NaiveDate),
    /// A JSON number's exact text.
    Num(Cow<'a, str>),
    /// A whole number of the context (days, counts), as its text reads.
    Int(i64),
    /// An amount with at least cents, as `amount_json`'s text reads.
    Amount(Decimal),
    Bool(bool),
    Null,
    Object(Object<'a>),
    List(List),
    Json(Cow<'a, Value>),
}

/// Why a message is left to Handlebars.
#[derive(Debug, PartialEq)]
enum Unwritten {
    /// A value the context does not have: false to `#if`, an error elsewhere.
    Missing,
    /// Something this module does not write, or a helper failing.
    Other,
}

use Unwritten::{Missing, Other};

type Result<T> = std::result::Result<T, Unwritten>;

/// The innermost `{{#each}}`'s item and place.
#[derive(Clone, Copy)]
struct Scope<'a> {
    item: Object<'a>,
    index: usize,
    len: usize,
}

/// The discount of the root and the statement of one message, computed once
/// for its subject and bodies.
pub struct Prepared<'a> {
    data: &'a MessageData<'a>,
    root_discount: Option<Discount>,
    statement: Option<Statement>,
    root_currency: Cow<'a, str>,
}

impl<'a> Prepared<'a> {
    pub fn of(data: &'a MessageData<'a>) -> Prepared<'a> {
        let first = &data.ledger.invoices[data.lines[0].invoice];
        Prepared {
            data,
            root_discount: data
                .parts
                .has(Parts::DISCOUNT)
                .then(|| data.policy.discount(first, data.today))
                .flatten(),
            statement: data
                .parts
                .has(Parts::STATEMENT)
                .then(|| Statement::of(data)),
            root_currency: Writer::plain(data).root_invoice_currency(),
        }
    }
}

impl Program {
    /// The text of this template for one message; `None` when Handlebars
    /// must render it (a value missing, a helper failing).
    pub(super) fn render(&self, prepared: &Prepared, html: bool) -> Option<String> {
        let writer = Writer {
            data: prepared.data,
            root_discount: prepared.root_discount.as_ref(),
            statement: prepared.statement.as_ref(),
            html,
            root_currency: &prepared.root_currency,
        };
        let lines = prepared.data.lines.len();
        let mut out = String::with_capacity(self.text * 5 / 4 + self.each_text * lines * 3 / 2);
        let scope = Scope {
            item: Object::Root,
            index: 0,
            len: 0,
        };
        writer.write(&self.nodes, scope, None, &mut out).ok()?;
        Some(out)
    }
}

struct Writer<'a> {
    data: &'a MessageData<'a>,
    root_discount: Option<&'a Discount>,
    statement: Option<&'a Statement>,
    html: bool,
    /// The currency `money` writes an amount in when given none, as
    /// [`Writer::root_invoice_currency`] finds it: once per message, not
    /// once per amount.
    root_currency: &'a str,
}

impl<'a> Writer<'a> {
    /// A writer of text (not HTML) without the root's discount, the
    /// statement and the root currency: only for finding that currency
    /// ([`Prepared::of`]), which reads the root invoice's fields alone. A
    /// `money` helper it wrote would have no currency.
    fn plain(data: &'a MessageData<'a>) -> Self {
        Writer {
            data,
            root_discount: None,
            statement: None,
            html: false,
            root_currency: "",
        }
    }

    fn write(
        &self,
        nodes: &'a [Node],
        scope: Scope<'a>,
        each: Option<Scope<'a>>,
        out: &mut String,
    ) -> Result<()> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Value(expr) => {
                    let value = self.eval(expr, scope, each).map_err(|_| Other)?;
                    let text = rendered(&value)?;
                    if self.html {
                        push_escaped(out, &text);
                    } else {
                        out.push_str(&text);
                    }
                }
                Node::If {
                    condition,
                    positive,
                    then,
                    otherwise,
                } => {
                    let value = match self.eval(condition, scope, each) {
                        Ok(value) => self.truthy(&value),
                        // A value missing is false to `#if`, as in Handlebars.
                        Err(Missing) if matches!(condition, Expr::Path { .. }) => false,
                        Err(_) => return Err(Other),
                    };
                    let chosen = if value == *positive { then } else { otherwise };
                    self.write(chosen, scope, each, out)?;
                }
                Node::Each {
                    list,
                    body,
                    otherwise,
                } => {
                    let Ok(Val::List(list)) = self.eval(list, scope, each) else {
                        return Err(Other);
                    };
                    let items = self.items(list)?;
                    if items.is_empty() {
                        self.write(otherwise, scope, each, out)?;
                    }
                    let len = items.len();
                    for (index, item) in items.into_iter().enumerate() {
                        let inner = Scope { item, index, len };
                        self.write(body, inner, Some(inner), out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn items(&self, list: List) -> Result<Vec<Object<'a>>> {
        let statement = self.statement.ok_or(Other)?;
        Ok(match list {
            List::Invoices => (0..self.data.lines.len()).map(line).collect(),
            List::DueSoon => statement.due_soon.iter().map(|&i| line(i)).collect(),
            List::Overdue => statement.overdue.iter().map(|&i| line(i)).collect(),
            List::Totals => (0..statement.totals.len()).map(Object::Total).collect(),
        })
    }

    /// Whether `#if` takes the value as true, as Handlebars does.
    fn truthy(&self, value: &Val) -> bool {
        match value {
            Val::Str(s) => !s.is_empty(),
            Val::Date(_) => true,
            Val::Num(n) => n.parse::<f64>().is_ok_and(f64::is_normal),
            Val::Int(i) => *i != 0,
            Val::Amount(d) => d.to_string().parse::<f64>().is_ok_and(f64::is_normal),
            Val::Bool(b) => *b,
            Val::Null => false,
            Val::Object(_) => true,
            Val::List(list) => self.items(*list).is_ok_and(|items| !items.is_empty()),
            Val::Json(v) => v.is_truthy(false),
        }
    }

    fn eval(&self, expr: &'a Expr, scope: Scope<'a>, each: Option<Scope<'a>>) -> Result<Val<'a>> {
        match expr {
            Expr::Literal(value) => Ok(Val::Json(Cow::Borrowed(value))),
            Expr::Local(local) => {
                let each = each.ok_or(Other)?;
                Ok(match local {
                    Local::Index => int(each.index),
                    Local::First => Val::Bool(each.index == 0),
                    Local::Last => Val::Bool(each.index + 1 == each.len),
                })
            }
            Expr::Path { root, segments, .. } => {
                let mut value = Val::Object(if *root { Object::Root } else { scope.item });
                for segment in segments {
                    value = self.field(value, segment)?;
                }
                Ok(value)
            }
            Expr::Call(helper, params) => {
                // Helpers take three arguments at most: no list to allocate.
                let mut args = [Val::Null, Val::Null, Val::Null];
                if params.len() > args.len() {
                    return Err(Other);
                }
                for (arg, p) in args.iter_mut().zip(params) {
                    *arg = self.eval(p, scope, each).map_err(|_| Other)?;
                }
                let args = &args[..params.len()];
                self.call(helper, params, args)
            }
        }
    }

    /// `object.name`, as the JSON context has it.
    fn field(&self, object: Val<'a>, segment: &Segment) -> Result<Val<'a>> {
        let name = &*segment.name;
        let data = self.data;
        let parts = data.parts;
        let ledger: &'a Ledger = data.ledger;
        let first = data.lines[0];
        let object = match object {
            Val::Object(object) => object,
            Val::Json(Cow::Borrowed(value)) => return json_field(value, name),
            Val::Str(_)
            | Val::Num(_)
            | Val::Int(_)
            | Val::Amount(_)
            | Val::Date(_)
            | Val::Bool(_)
            | Val::Null => {
                return Err(Missing);
            }
            _ => return Err(Other),
        };
        let present = |part: u8| {
            if parts.has(part) {
                Ok(())
            } else {
                Err(Missing)
            }
        };
        Ok(match object {
            Object::Root => match segment.root.ok_or(Missing)? {
                Root::Invoice => {
                    present(Parts::INVOICE)?;
                    Val::Object(Object::Invoice {
                        line: None,
                        fields: parts.invoice_fields(),
                    })
                }
                Root::Customer => {
                    present(Parts::CUSTOMER)?;
                    Val::Object(Object::Customer)
                }
                Root::Stage => {
                    present(Parts::STAGE)?;
                    Val::Object(Object::Stage(first.stage, first.occurrence))
                }
                Root::Policy => {
                    present(Parts::POLICY)?;
                    Val::Object(Object::Policy)
                }
                Root::Company => {
                    present(Parts::COMPANY)?;
                    Val::Json(Cow::Borrowed(data.company))
                }
                Root::Rates => {
                    present(Parts::RATES)?;
                    Val::Json(Cow::Borrowed(data.rates))
                }
                Root::Discount => Val::Object(Object::Discount(self.root_discount.ok_or(Missing)?)),
                Root::List(list) => {
                    self.statement.ok_or(Missing)?;
                    Val::List(list)
                }
                Root::Today => Val::Date(data.today),
                Root::Language => Val::Str(Cow::Borrowed(data.language)),
            },
            Object::Invoice { line, fields } => {
                let index = self.invoice_at(line);
                match (line, name) {
                    (Some(i), "stage") => {
                        let l = &data.lines[i];
                        return Ok(Val::Object(Object::Stage(l.stage, l.occurrence)));
                    }
                    (Some(i), "discount") => {
                        let offer = self.statement.ok_or(Other)?.discounts[i].as_ref();
                        return Ok(Val::Object(Object::Discount(offer.ok_or(Missing)?)));
                    }
                    _ => {}
                }
                invoice_field(ledger, index, data.today, fields, segment.field)?
            }
            Object::Customer => {
                let customer = ledger.customer_index(first.invoice);
                let fields = parts.customer_fields();
                customer_field(ledger, customer, data.today, fields, segment.customer_field)?
            }
            Object::Stage(stage, occurrence) => match name {
                "id" => Val::Str(Cow::Borrowed(&stage.id)),
                "offset" => int(stage.offset),
                "channel" => Val::Str(Cow::Borrowed(stage.channel.as_str())),
                "template" => Val::Str(Cow::Borrowed(&stage.template)),
                "occurrence" => int(occurrence),
                _ => return Err(Missing),
            },
            Object::Policy => match name {
                "name" => Val::Str(Cow::Borrowed(&data.policy.name)),
                "description" => Val::Str(Cow::Borrowed(&data.policy.description)),
                _ => return Err(Missing),
            },
            Object::Discount(offer) => match name {
                "percent" => exact(offer.percent.to_string()),
                "within_days" => int(offer.within_days),
                "amount" => amount(offer.amount),
                "amount_due_after" => amount(offer.amount_due_after),
                "deadline" => Val::Date(offer.deadline),
                "available" => Val::Bool(offer.available),
                _ => return Err(Missing),
            },
            Object::Total(i) => {
                let (currency, due, count) = &self.statement.ok_or(Other)?.totals[i];
                match name {
                    "currency" => Val::Str(Cow::Borrowed(currency)),
                    "amount_due" => due.map_or(Val::Null, amount),
                    "count" => int(*count),
                    _ => return Err(Missing),
                }
            }
        })
    }

    fn call(&self, helper: &Helper, params: &[Expr], args: &[Val<'a>]) -> Result<Val<'a>> {
        let data = self.data;
        let arg = |i: usize| args.get(i).ok_or(Other);
        let language = data.language;
        Ok(match helper {
            Helper::Money => {
                let amount = decimal(arg(0)?)?;
                let currency = match args.get(1) {
                    Some(c) => Cow::Owned(rendered(c)?.trim().to_ascii_uppercase()),
                    None => Cow::Borrowed(self.root_currency),
                };
                Val::Str(format_money(amount, &currency, language).into())
            }
            Helper::Date => {
                let date = match arg(0)? {
                    Val::Date(date) => plain(*date)?,
                    Val::Str(text) => text.parse::<NaiveDate>().map_err(|_| Other)?,
                    _ => return Err(Other),
                };
                Val::Str(format_date(date, language).into())
            }
            Helper::Percent => Val::Str(format_percent(decimal(arg(0)?)?, language).into()),
            Helper::Plural => {
                let count = decimal(arg(0)?)?;
                let singular = if is_french(language) {
                    count.abs() < Decimal::TWO
                } else {
                    count.abs() == Decimal::ONE
                };
                let word = rendered(arg(if singular { 1 } else { 2 })?)?;
                Val::Str(format!("{count} {word}").into())
            }
            Helper::DaysOverdue => {
                let due = self.invoice_due_date(arg(0)?)?;
                int((data.today - due).num_days())
            }
            Helper::LateInterest => {
                let invoice = arg(0)?;
                let due_date = self.invoice_due_date(invoice)?;
                let rate = decimal(arg(1)?)?;
                let amount_due = decimal(&self.field(invoice.clone(), &AMOUNT_DUE)?)?;
                let interest = crate::money::late_interest(amount_due, due_date, data.today, rate)
                    .map_err(|_| Other)?;
                amount(interest)
            }
            Helper::RecoveryIndemnity => {
                let invoice = arg(0)?;
                self.invoice_due_date(invoice)?;
                // The helper finds the invoice by its number: a ledger's
                // numbers are unique, so it is this one.
                self.field(invoice.clone(), &NUMBER).map_err(|_| Other)?;
                let &Val::Object(Object::Invoice { line, .. }) = invoice else {
                    return Err(Other);
                };
                let index = self.invoice_at(line);
                let tags = data.ledger.customer_tags(index);
                amount(crate::money::recovery_indemnity(
                    data.scripts.rates().recovery_indemnity,
                    tags,
                ))
            }
            Helper::Equal(equal) => {
                let text = |v: &Val<'a>| match v {
                    Val::Date(d) => Val::Str(d.to_string().into()),
                    other => other.clone(),
                };
                let (x, y) = (text(arg(0)?), text(arg(1)?));
                let number = |v: &Val| matches!(v, Val::Num(_) | Val::Int(_) | Val::Amount(_));
                let same = match (&x, &y) {
                    _ if number(&x) && number(&y) => decimal(&x)? == decimal(&y)?,
                    (Val::Str(a), Val::Str(b)) => a == b,
                    (Val::Str(a), Val::Json(b)) | (Val::Json(b), Val::Str(a)) => {
                        b.as_str().ok_or(Other)? == &**a
                    }
                    _ => return Err(Other),
                };
                Val::Bool(same == *equal)
            }
            Helper::Greater => {
                let whole = |v: &Val| match v {
                    Val::Num(n) => n.parse::<i64>().ok(),
                    Val::Int(i) => Some(*i),
                    Val::Json(j) => j.as_i64(),
                    _ => None,
                };
                let (x, y) = (whole(arg(0)?), whole(arg(1)?));
                Val::Bool(x.ok_or(Other)? > y.ok_or(Other)?)
            }
            Helper::Script(name) => {
                let first = data.lines[0];
                // As the script helper: `invoice` and `customer` are the
                // message's, typed; anything else is left to Handlebars.
                enum View {
                    Invoice,
                    Customer,
                }
                let view = |p: &Expr| match p {
                    Expr::Path { raw, .. } if &**raw == "invoice" => Some(View::Invoice),
                    Expr::Path { raw, .. } if &**raw == "customer" => Some(View::Customer),
                    _ => None,
                };
                if !params.iter().all(|p| view(p).is_some()) {
                    return Err(Other);
                }
                let dynamics = || {
                    params
                        .iter()
                        .map(|p| match view(p) {
                            Some(View::Invoice) => Dynamic::from(InvoiceView {
                                ledger: data.ledger.clone(),
                                index: first.invoice,
                                today: data.today,
                            }),
                            _ => Dynamic::from(CustomerView {
                                ledger: data.ledger.clone(),
                                index: data.ledger.customer_index(first.invoice),
                                today: data.today,
                                last_contacted: None,
                            }),
                        })
                        .collect()
                };
                let result = data.scripts.call(name, &dynamics).map_err(|_| Other)?;
                Val::Json(Cow::Owned(from_dynamic(result)))
            }
        })
    }

    /// The root invoice's currency, as `money` without a currency reads it.
    fn root_invoice_currency(&self) -> Cow<'a, str> {
        match self
            .field(Val::Object(Object::Root), &INVOICE)
            .and_then(|i| self.field(i, &CURRENCY))
        {
            Ok(Val::Str(c)) => c,
            _ => Cow::Borrowed("EUR"),
        }
    }

    /// The due date of an invoice of the context, which the money helpers
    /// also need its `amount_due` for: both must be in its context, as
    /// Handlebars' helpers read them there, which the object's fields say
    /// without the amount being made.
    fn invoice_due_date(&self, invoice: &Val<'a>) -> Result<NaiveDate> {
        let &Val::Object(Object::Invoice { line, fields }) = invoice else {
            return Err(Other);
        };
        let needed = InvoiceField::AmountDue.bit() | InvoiceField::DueDate.bit();
        if fields & needed != needed {
            return Err(Other);
        }
        plain(self.data.ledger.invoices[self.invoice_at(line)].due_date)
    }

    /// The invoice of statement line `line`, or the message's first.
    fn invoice_at(&self, line: Option<usize>) -> crate::model::InvoiceId {
        self.data.lines[line.unwrap_or(0)].invoice
    }
}

/// A field of a JSON object of the context (company, rates).
fn json_field<'a>(value: &'a Value, name: &str) -> Result<Val<'a>> {
    match value {
        Value::Object(map) => map
            .get(name)
            .map(|v| Val::Json(Cow::Borrowed(v)))
            .ok_or(Missing),
        Value::Array(_) => Err(Other),
        _ => Err(Missing),
    }
}

/// A date whose text reads back as itself (`YYYY-MM-DD`): Handlebars'
/// helpers parse the text; a year past 9999 is left to them.
fn plain(date: NaiveDate) -> Result<NaiveDate> {
    use chrono::Datelike;
    match (0..=9999).contains(&date.year()) {
        true => Ok(date),
        false => Err(Other),
    }
}

fn line<'a>(i: usize) -> Object<'a> {
    Object::Invoice {
        line: Some(i),
        fields: InvoiceField::EVERY,
    }
}

/// An exact number, as `exact_number` puts it in the context.
fn exact<'a>(text: String) -> Val<'a> {
    match text.parse::<serde_json::Number>() {
        Ok(_) => Val::Num(text.into()),
        Err(_) => Val::Str(text.into()),
    }
}

/// A whole number of the context; as its text past an `i64`.
fn int<'a, T: TryInto<i64> + ToString + Copy>(n: T) -> Val<'a> {
    match n.try_into() {
        Ok(i) => Val::Int(i),
        Err(_) => Val::Num(n.to_string().into()),
    }
}

/// An amount as `amount_json` has it: its text (at least cents) read back
/// is the same decimal, so it is kept as one; a zero, which may carry a
/// sign, as its text.
fn amount<'a>(d: Decimal) -> Val<'a> {
    match d.is_zero() {
        true => exact(money(d)),
        false => Val::Amount(crate::locale::with_cents(d)),
    }
}

/// The exact decimal a value holds, as the helpers read it.
fn decimal(value: &Val) -> Result<Decimal> {
    match value {
        Val::Num(text) => decimal_of_text(text, true),
        Val::Int(i) => Some(Decimal::from(*i)),
        Val::Amount(d) => Some(*d),
        Val::Str(text) => decimal_of_text(text, false),
        Val::Json(v) => match &**v {
            Value::Number(n) => decimal_of_text(n.as_str(), true),
            Value::String(s) => decimal_of_text(s, false),
            _ => None,
        },
        _ => None,
    }
    .ok_or(Other)
}

/// A value as Handlebars writes it; objects and lists are left to it.
/// What Handlebars' `html_escape` makes of `text`, onto the end of `out`:
/// the same entities, without a `String` for every value.
fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest
        .bytes()
        .position(|b| matches!(b, b'<' | b'>' | b'"' | b'&' | b'\'' | b'`' | b'='))
    {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'&' => "&amp;",
            b'\'' => "&#x27;",
            b'`' => "&#x60;",
            _ => "&#x3D;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

fn rendered<'v>(value: &'v Val) -> Result<Cow<'v, str>> {
    Ok(match value {
        Val::Str(s) | Val::Num(s) => Cow::Borrowed(&**s),
        Val::Date(d) => Cow::Owned(d.to_string()),
        Val::Int(i) => Cow::Owned(i.to_string()),
        Val::Amount(d) => Cow::Owned(crate::locale::decimal_text(*d)),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Val::Null => Cow::Borrowed(""),
        Val::Json(v) if v.is_string() => Cow::Borrowed(v.as_str().unwrap_or_default()),
        Val::Json(v) if !v.is_object() && !v.is_array() => Cow::Owned(v.render()),
        _ => return Err(Other),
    })
}

#[inline(always)]
fn invoice_field<'a>(
    ledger: &'a Ledger,
    index: crate::model::InvoiceId,
    today: NaiveDate,
    fields: u32,
    field: Option<InvoiceField>,
) -> Result<Val<'a>> {
    use InvoiceField::*;
    let field = field.ok_or(Missing)?;
    if fields & field.bit() == 0 {
        return Err(Missing);
    }
    let inv = &ledger.invoices[index];
    let date = Val::Date;
    Ok(match field {
        Number => Val::Str(Cow::Borrowed(&inv.number)),
        CustomerId => Val::Str(Cow::Borrowed(&inv.bill_to.id)),
        CustomerName => Val::Str(Cow::Borrowed(&inv.bill_to.name)),
        Email => Val::Str(Cow::Borrowed(&inv.bill_to.email)),
        IssueDate => date(inv.issue_date),
        DueDate => date(inv.due_date),
        Amount => amount(inv.amount),
        AmountPaid => amount(inv.amount_paid),
        AmountDue => amount(inv.amount_due()),
        Currency => Val::Str(Cow::Borrowed(&inv.currency)),
        Status => Val::Str(Cow::Borrowed(inv.status.as_str())),
        PaidDate => date(inv.paid_date.ok_or(Missing)?),
        Language => Val::Str(Cow::Borrowed(ledger.language_of(index))),
        PromiseDate => date(inv.promise_date.ok_or(Missing)?),
        DaysOverdue => int(inv.days_overdue(today)),
        Tags | Extra => return Err(Other),
    })
}

#[inline(always)]
fn customer_field<'a>(
    ledger: &'a Ledger,
    customer: usize,
    today: NaiveDate,
    fields: u32,
    field: Option<usize>,
) -> Result<Val<'a>> {
    let bit = field.ok_or(Missing)?;
    if fields & (1 << bit) == 0 {
        return Err(Missing);
    }
    let c = &ledger.customers[CustomerId::new(customer)];
    Ok(match bit {
        0 => Val::Str(Cow::Borrowed(&c.id)),
        1 => Val::Str(Cow::Borrowed(&c.name)),
        2 => Val::Str(Cow::Borrowed(&c.email)),
        3 => Val::Str(Cow::Borrowed(
            ledger.customer_language(CustomerId::new(customer)),
        )),
        5 => int(c.open_count),
        6 => amount(c.total_due),
        7 => int(c.overdue_count(today)),
        8 => exact(c.late_paid_ratio.to_string()),
        9 => exact(c.avg_days_late.to_string()),
        _ => return Err(Other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text, of every special character, plain ASCII and wider
    /// characters side by side, is escaped as Handlebars escapes it.
    #[test]
    fn values_are_escaped_as_handlebars_escapes_them() {
        const PIECES: [&str; 12] = [
            "<", ">", "\"", "&", "'", "`", "=", "a", "é", "€", " ", "&amp;",
        ];
        let mut out = String::from("kept ");
        for text in crate::text::tests::random_texts(&PIECES, 12, 5_000) {
            out.truncate("kept ".len());
            push_escaped(&mut out, &text);
            assert_eq!(
                out,
                format!("kept {}", handlebars::html_escape(&text)),
                "{text:?}"
            );
        }
    }
}
