//! `applies_to` expressions of a customer's fields and constants, and script
//! functions adding up an invoice's money, decided without the interpreter.
//!
//! A preview decides which policy each customer's invoices follow: Rhai
//! took 1.7 µs a customer for `customer.late_paid_ratio >= 0.5 &&
//! !customer.tags.contains("key-account")`, a tenth of a day-one preview's
//! planning at a million invoices. Expressions of that shape (comparisons of
//! `customer.` fields with literals, `customer.tags.contains("…")`, `!`,
//! `&&`, `||`, parentheses) are read here once, type-checked, and decided
//! natively; any other is left to Rhai, as is every expression of a
//! rulebook whose `.rhai` files define a function these names could reach.
//! A test compares both on generated customers.
//!
//! A rendered preview calls the shipped `total_claimed(invoice)` for every
//! formal notice and collection hand-off: 13,400 instructions a call in
//! Rhai, a ninth of rendering. A function whose body only adds and
//! subtracts its invoice's amounts, `late_interest` and
//! `recovery_indemnity` of it and decimal literals ([`MoneySum`]) is
//! read from Rhai's own parse of it and computed here, in 2,350
//! instructions a call (most of them the interest's rounding); whatever fails
//! (an overflow, a rate not set) is left to Rhai, which says why.

use chrono::NaiveDate;
use rhai::{AST, ASTNode, Expr, FnCallExpr, Stmt};
use rust_decimal::Decimal;

use crate::config::Rates;
use crate::model::{Customer, Invoice};

/// A yes/no expression decided natively.
#[derive(Debug, Clone, PartialEq)]
pub struct Native(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    /// A number compared with another.
    Numbers(Number, Compare, Number),
    /// A text compared with another (`==` or `!=` only).
    Texts(Text, Compare, Text),
    /// `customer.tags.contains("…")`.
    HasTag(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Number {
    Literal(Decimal),
    OpenCount,
    TotalDue,
    LatePaidRatio,
    AvgDaysLate,
}

#[derive(Debug, Clone, PartialEq)]
enum Text {
    Literal(String),
    Id,
    Name,
    Email,
}

impl Native {
    /// The expression, when it has the shape this module decides; `None`
    /// for any other (Rhai decides it).
    pub fn parse(source: &str) -> Option<Native> {
        let mut parser = Parser {
            tokens: tokens(source)?,
            at: 0,
        };
        let node = parser.or()?;
        (parser.at == parser.tokens.len()).then_some(Native(node))
    }

    /// Whether the expression holds for `customer`.
    pub fn holds(&self, customer: &Customer) -> bool {
        self.0.holds(customer)
    }
}

impl Node {
    fn holds(&self, c: &Customer) -> bool {
        match self {
            Node::Not(inner) => !inner.holds(c),
            Node::And(a, b) => a.holds(c) && b.holds(c),
            Node::Or(a, b) => a.holds(c) || b.holds(c),
            Node::Numbers(a, compare, b) => {
                let (a, b) = (a.value(c), b.value(c));
                match compare {
                    Compare::Eq => a == b,
                    Compare::Ne => a != b,
                    Compare::Lt => a < b,
                    Compare::Le => a <= b,
                    Compare::Gt => a > b,
                    Compare::Ge => a >= b,
                }
            }
            Node::Texts(a, compare, b) => (a.value(c) == b.value(c)) == (*compare == Compare::Eq),
            Node::HasTag(tag) => c.tags.iter().any(|t| **t == **tag),
        }
    }
}

impl Number {
    fn value(&self, c: &Customer) -> Decimal {
        match self {
            Number::Literal(d) => *d,
            Number::OpenCount => Decimal::from(c.open_count),
            Number::TotalDue => c.total_due,
            Number::LatePaidRatio => c.late_paid_ratio,
            Number::AvgDaysLate => c.avg_days_late,
        }
    }
}

impl Text {
    fn value<'c>(&'c self, c: &'c Customer) -> &'c str {
        match self {
            Text::Literal(s) => s,
            Text::Id => &c.id,
            Text::Name => &c.name,
            Text::Email => &c.email,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Number(Decimal),
    Text(String),
    Symbol(&'static str),
}

/// The expression's tokens; `None` at anything this module does not read.
fn tokens(source: &str) -> Option<Vec<Token>> {
    const SYMBOLS: [&str; 13] = [
        "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", ".", "-",
    ];
    let mut tokens = Vec::new();
    let mut rest = source;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return Some(tokens);
        };
        if first.is_ascii_alphabetic() || first == '_' {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            tokens.push(Token::Word(rest[..end].to_string()));
            rest = &rest[end..];
        } else if first.is_ascii_digit() {
            // Digits, and a fraction: Rhai reads `10` as an integer and `0.5`
            // as a decimal; both compare as the same number with any other.
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let literal = &rest[..end];
            if literal.ends_with('.') || literal.matches('.').count() > 1 {
                return None;
            }
            tokens.push(Token::Number(literal.parse().ok()?));
            rest = &rest[end..];
        } else if first == '"' {
            // A plain string: no escapes, no interpolation.
            let end = rest[1..].find('"')? + 1;
            let text = &rest[1..end];
            if text.contains(['\\', '\n', '\r']) {
                return None;
            }
            tokens.push(Token::Text(text.to_string()));
            rest = &rest[end + 1..];
        } else {
            let symbol = SYMBOLS.iter().find(|s| rest.starts_with(**s))?;
            tokens.push(Token::Symbol(symbol));
            rest = &rest[symbol.len()..];
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// What an operand of the expression is, as far as it is read.
enum Operand {
    /// True or false.
    Condition(Node),
    Number(Number),
    Text(Text),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, symbol: &str) -> bool {
        let here = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        if here {
            self.at += 1;
        }
        here
    }

    fn word(&mut self, word: &str) -> Option<()> {
        match self.peek() {
            Some(Token::Word(w)) if w == word => {
                self.at += 1;
                Some(())
            }
            _ => None,
        }
    }

    fn or(&mut self) -> Option<Node> {
        let mut node = self.and()?;
        while self.eat("||") {
            node = Node::Or(Box::new(node), Box::new(self.and()?));
        }
        Some(node)
    }

    fn and(&mut self) -> Option<Node> {
        let mut node = self.comparison()?;
        while self.eat("&&") {
            node = Node::And(Box::new(node), Box::new(self.comparison()?));
        }
        Some(node)
    }

    fn comparison(&mut self) -> Option<Node> {
        let left = self.unary()?;
        let compare = [
            ("==", Compare::Eq),
            ("!=", Compare::Ne),
            ("<=", Compare::Le),
            (">=", Compare::Ge),
            ("<", Compare::Lt),
            (">", Compare::Gt),
        ]
        .into_iter()
        .find(|(symbol, _)| self.eat(symbol))
        .map(|(_, compare)| compare);
        let Some(compare) = compare else {
            return match left {
                Operand::Condition(node) => Some(node),
                Operand::Number(_) | Operand::Text(_) => None,
            };
        };
        match (left, self.unary()?) {
            (Operand::Number(a), Operand::Number(b)) => Some(Node::Numbers(a, compare, b)),
            (Operand::Text(a), Operand::Text(b))
                if matches!(compare, Compare::Eq | Compare::Ne) =>
            {
                Some(Node::Texts(a, compare, b))
            }
            // Yes/no values, texts ordered, a number and a text: Rhai's.
            _ => None,
        }
    }

    fn unary(&mut self) -> Option<Operand> {
        if self.eat("!") {
            return match self.unary()? {
                Operand::Condition(node) => Some(Operand::Condition(Node::Not(Box::new(node)))),
                Operand::Number(_) | Operand::Text(_) => None,
            };
        }
        if self.eat("-") {
            return match self.tokens.get(self.at)? {
                Token::Number(n) => {
                    let n = -*n;
                    self.at += 1;
                    Some(Operand::Number(Number::Literal(n)))
                }
                _ => None,
            };
        }
        if self.eat("(") {
            let node = self.or()?;
            return self.eat(")").then_some(Operand::Condition(node));
        }
        match self.tokens.get(self.at)?.clone() {
            Token::Number(n) => {
                self.at += 1;
                Some(Operand::Number(Number::Literal(n)))
            }
            Token::Text(t) => {
                self.at += 1;
                Some(Operand::Text(Text::Literal(t)))
            }
            Token::Word(w) if w == "customer" => {
                self.at += 1;
                self.customer_field()
            }
            Token::Word(_) | Token::Symbol(_) => None,
        }
    }

    /// What follows `customer`: `.field`, or `.tags.contains("…")`.
    fn customer_field(&mut self) -> Option<Operand> {
        if !self.eat(".") {
            return None;
        }
        let Some(Token::Word(field)) = self.peek().cloned() else {
            return None;
        };
        self.at += 1;
        Some(match field.as_str() {
            "open_count" => Operand::Number(Number::OpenCount),
            "total_due" => Operand::Number(Number::TotalDue),
            "late_paid_ratio" => Operand::Number(Number::LatePaidRatio),
            "avg_days_late" => Operand::Number(Number::AvgDaysLate),
            "id" => Operand::Text(Text::Id),
            "name" => Operand::Text(Text::Name),
            "email" => Operand::Text(Text::Email),
            "tags" => {
                if !self.eat(".") {
                    return None;
                }
                self.word("contains")?;
                if !self.eat("(") {
                    return None;
                }
                let Some(Token::Text(tag)) = self.peek().cloned() else {
                    return None;
                };
                self.at += 1;
                if !self.eat(")") {
                    return None;
                }
                Operand::Condition(Node::HasTag(tag))
            }
            _ => return None,
        })
    }
}

/// A script function of one invoice whose body adds and subtracts terms of
/// its money: computed as Rhai computes it, with the same checked sums.
#[derive(Debug, Clone, PartialEq)]
pub struct MoneySum(Sum);

#[derive(Debug, Clone, PartialEq)]
enum Sum {
    Term(Term),
    Add(Box<Sum>, Box<Sum>),
    Subtract(Box<Sum>, Box<Sum>),
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Amount,
    AmountPaid,
    AmountDue,
    /// `late_interest(invoice, rate)`: at the configured rate when `None`.
    LateInterest(Option<Decimal>),
    RecoveryIndemnity,
    Literal(Decimal),
}

impl MoneySum {
    /// Function `name` of one parameter of `library`, when its body has
    /// this shape; `None` for any other.
    pub fn of(library: &AST, name: &str) -> Option<MoneySum> {
        // (`clone_functions_only_filtered` keeps every function when
        // the module it merges into is empty: Rhai 1.27.)
        let mut only = library.clone();
        only.clear_statements();
        only.retain_functions(|_, _, n, arity| n == name && arity == 1);
        let function = only.iter_fn_def().next()?;
        let [invoice] = function.params.as_slice() else {
            return None;
        };
        // A parameter named `rates` would hide the configured rates.
        if function.this_type.is_some() || invoice == "rates" {
            return None;
        }
        // The body's statements: what the walk meets first, at its top.
        let mut body = Vec::new();
        only.walk(&mut |path: &[ASTNode]| {
            if let [ASTNode::Stmt(statement)] = path {
                body.push((*statement).clone());
            }
            true
        });
        match body.as_slice() {
            [Stmt::Expr(expr)] => sum(expr, invoice).map(MoneySum),
            [Stmt::FnCall(call, _)] => call_sum(call, invoice).map(MoneySum),
            _ => None,
        }
    }

    /// Its value for `invoice` of a customer tagged `tags` on `today`;
    /// `None` where Rhai would fail (and then says why).
    pub fn value<'t>(
        &self,
        invoice: &Invoice,
        tags: impl Iterator<Item = &'t str>,
        today: NaiveDate,
        rates: &Rates,
    ) -> Option<Decimal> {
        self.0.value(&Money {
            invoice,
            today,
            rates,
            indemnity: crate::money::recovery_indemnity(rates.recovery_indemnity, tags),
        })
    }
}

/// What a [`MoneySum`]'s terms read.
struct Money<'a> {
    invoice: &'a Invoice,
    today: NaiveDate,
    rates: &'a Rates,
    /// `recovery_indemnity(invoice)`.
    indemnity: Decimal,
}

impl Sum {
    fn value(&self, m: &Money) -> Option<Decimal> {
        match self {
            Sum::Term(term) => term.value(m),
            Sum::Add(a, b) => a.value(m)?.checked_add(b.value(m)?),
            Sum::Subtract(a, b) => a.value(m)?.checked_sub(b.value(m)?),
        }
    }
}

impl Term {
    fn value(&self, m: &Money) -> Option<Decimal> {
        let inv = m.invoice;
        Some(match self {
            Term::Amount => inv.amount,
            Term::AmountPaid => inv.amount_paid,
            Term::AmountDue => inv.amount_due(),
            Term::LateInterest(rate) => {
                let rate = rate.or(m.rates.late_interest_annual)?;
                crate::money::late_interest(inv.amount_due(), inv.due_date, m.today, rate).ok()?
            }
            Term::RecoveryIndemnity => m.indemnity,
            Term::Literal(d) => *d,
        })
    }
}

/// `a + b` and `a - b` of terms, as Rhai parsed them.
fn sum(expr: &Expr, invoice: &str) -> Option<Sum> {
    match expr {
        Expr::FnCall(call, _) => call_sum(call, invoice),
        _ => term(expr, invoice).map(Sum::Term),
    }
}

/// [`sum`] of an operator or a function call (which Rhai also makes a
/// statement of its own, when it is the whole body).
fn call_sum(call: &FnCallExpr, invoice: &str) -> Option<Sum> {
    if let [a, b] = call.args.as_slice() {
        let operation = match call.op_token {
            Some(rhai::Token::Plus) => Sum::Add,
            Some(rhai::Token::Minus) => Sum::Subtract,
            _ => return call_term(call, invoice).map(Sum::Term),
        };
        return Some(operation(
            Box::new(sum(a, invoice)?),
            Box::new(sum(b, invoice)?),
        ));
    }
    call_term(call, invoice).map(Sum::Term)
}

fn term(expr: &Expr, invoice: &str) -> Option<Term> {
    match expr {
        Expr::DynamicConstant(value, _) => value.as_decimal().ok().map(Term::Literal),
        Expr::Dot(dot, _, _) if is_variable(&dot.lhs, invoice) => match property(&dot.rhs)? {
            "amount" => Some(Term::Amount),
            "amount_paid" => Some(Term::AmountPaid),
            "amount_due" => Some(Term::AmountDue),
            _ => None,
        },
        Expr::FnCall(call, _) => call_term(call, invoice),
        _ => None,
    }
}

/// `recovery_indemnity(invoice)`, `late_interest(invoice, rate)`.
fn call_term(call: &FnCallExpr, invoice: &str) -> Option<Term> {
    if call.op_token.is_some() || call.capture_parent_scope {
        return None;
    }
    match (call.name.as_str(), call.args.as_slice()) {
        ("recovery_indemnity", [i]) if is_variable(i, invoice) => Some(Term::RecoveryIndemnity),
        ("late_interest", [i, rate]) if is_variable(i, invoice) => match rate {
            Expr::DynamicConstant(value, _) => {
                Some(Term::LateInterest(Some(value.as_decimal().ok()?)))
            }
            Expr::Dot(dot, _, _)
                if is_variable(&dot.lhs, "rates")
                    && property(&dot.rhs) == Some("late_interest_annual") =>
            {
                Some(Term::LateInterest(None))
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_variable(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Variable(v, _, _) if v.1 == name)
}

fn property(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Property(p, _) => Some(p.2.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_it_reads_and_those_it_leaves_to_rhai() {
        for read in [
            "customer.tags.contains(\"key-account\")",
            "customer.late_paid_ratio >= 0.5 && customer.avg_days_late >= 10\n  && !customer.tags.contains(\"key-account\")",
            "!(customer.open_count > 3 || customer.total_due < -100.25)",
            "customer.id == \"C1\" || customer.email != \"\"",
            "(customer.open_count >= 2)",
        ] {
            assert!(Native::parse(read).is_some(), "{read}");
        }
        for left in [
            "customer.tags.len() > 1",
            "customer.name < \"M\"",
            "customer.open_count",
            "customer.open_count == \"3\"",
            "!customer.open_count",
            "customer.tags.contains(\"a\\\"b\")",
            "customer.language == \"fr\"",
            // Time-dependent: decided for each invoice, by Rhai.
            "customer.overdue_count >= 1",
            "is_key(customer)",
            "customer.open_count > 1_000",
            "customer.open_count > 0x10",
            "customer.total_due > 1e3",
            "customer.open_count > 2.",
            "customer.tags.contains(\"x\") == true",
            "customer.open_count > 1 +",
            "(customer.open_count > 1",
            "customer.open_count > 1 && ",
            "`customer`",
            "customer.open_count > 3 // more",
        ] {
            assert_eq!(Native::parse(left), None, "{left}");
        }
    }
}
