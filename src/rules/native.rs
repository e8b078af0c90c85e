//! `applies_to` expressions of a customer's fields and constants, decided without the interpreter.
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

use rust_decimal::Decimal;

use crate::model::Customer;

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
