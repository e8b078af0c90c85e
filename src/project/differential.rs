//! Templates a user may write, generated from a grammar, rendered both by the direct path and by Handlebars: the messages must be the same.

use std::fmt::Write;

use super::*;
use crate::model::tests::{date, invoice};

/// A small deterministic generator (SplitMix64): the same templates on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// What `this` is where an expression is written.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Root,
    /// An invoice of `invoices`, `due_soon` or `overdue`.
    Line,
    /// One of `totals`.
    Total,
}

const TEXTS: &[&str] = &[
    "Hello ",
    "a & b",
    "<p>",
    "</p>\n",
    "\"quoted\"",
    "l'aîné ",
    "`tick`",
    "a=b",
    "\n",
    "  ",
    "\t",
    " — ",
    " }} ",
    " { ",
    " } ",
    "x\r\n",
    "\\{{invoice.number}}",
    "€ 12,50",
    ".",
    "  \n",
];

const LITERALS: &[&str] = &[
    "\"EUR\"",
    "\"usd\"",
    "\" chf \"",
    "'x'",
    "\"2026-02-29\"",
    "\"2026-12-01\"",
    "\"12.5\"",
    "\" 3 \"",
    "\"\"",
    "0",
    "1",
    "-1",
    "2",
    "2.50",
    "1e3",
    "12.15",
    "true",
    "false",
    "null",
    "\"day\"",
    "\"days\"",
    "\"<b>&amp;\"",
    "\"overdue_2\"",
    "\"open\"",
    "\"fr\"",
    "\"1234.565\"",
    "\"7\"",
    "7",
    "0.00",
];

/// The invoice's fields every invoice has.
const INVOICE_FIELDS: &[&str] = &[
    "number",
    "customer_id",
    "customer_name",
    "email",
    "issue_date",
    "due_date",
    "amount",
    "amount_paid",
    "amount_due",
    "currency",
    "status",
    "language",
    "days_overdue",
];

/// Fields some invoices lack, or that only Handlebars writes.
const ODD_INVOICE_FIELDS: &[&str] = &[
    "paid_date",
    "promise_date",
    "tags",
    "extra.some_column",
    "extra.other_column",
    "extra.missing",
    "missing",
    "number.x",
    "this.number",
    "[number]",
];

const ROOT_PATHS: &[&str] = &[
    "customer.id",
    "customer.name",
    "customer.email",
    "customer.language",
    "customer.open_count",
    "customer.total_due",
    "customer.overdue_count",
    "customer.late_paid_ratio",
    "customer.avg_days_late",
    "stage.id",
    "stage.offset",
    "stage.channel",
    "stage.template",
    "stage.occurrence",
    "policy.name",
    "policy.description",
    "company.name",
    "company.iban",
    "company.payment_url",
    "rates.late_interest_annual",
    "rates.recovery_indemnity",
    "today",
    "language",
    "this.language",
    "@root.today",
    "this.invoice.number",
    "@root.invoice.number",
    "@root.customer.name",
];

/// Paths that are missing for some messages (false to `{{#if}}`).
const MAYBE_ROOT_PATHS: &[&str] = &[
    "discount.percent",
    "discount.within_days",
    "discount.amount",
    "discount.amount_due_after",
    "discount.deadline",
    "discount.available",
    "discount",
    "invoice.paid_date",
    "invoice.promise_date",
    "customer.missing",
    "company.missing",
    "stage.missing",
    "invoice.missing",
    "company.name.length",
    "invoice.number.x",
    "this.this",
    "invoice.this.number",
    "invoices",
    "totals",
    "due_soon",
    "overdue",
    "this",
    "@root",
    "invoice",
];

/// Paths that are odd, missing, whole objects or lists, or climb.
const ODD_ROOT_PATHS: &[&str] = &[
    "customer.tags",
    "invoice.tags",
    "invoice.extra.some_column",
    "invoice.extra.missing",
    "this.this",
    "this",
    "@root",
    "invoice",
    "customer",
    "company",
    "invoices",
    "totals",
    "number",
    "invoice.number.x",
    "invoice.this.number",
    "invoice.[number]",
    "[invoice].number",
    "invoices.[0].number",
    "invoices.0.number",
    "./invoice.number",
    "invoice/number",
    "invoices.length",
    "nothing",
    "../invoice.number",
    "discount.amount",
    "invoice.paid_date",
];

const LINE_PATHS: &[&str] = &[
    "stage.id",
    "stage.offset",
    "stage.occurrence",
    "stage.channel",
    "this.stage.template",
    "@root.company.name",
    "@root.invoice.currency",
    "@root.language",
    "@root.today",
    "@root.customer.name",
];

const MAYBE_LINE_PATHS: &[&str] = &[
    "discount.percent",
    "discount.amount",
    "discount.deadline",
    "discount.available",
    "this.discount.within_days",
    "discount",
    "paid_date",
    "promise_date",
    "this.promise_date",
    "invoice",
    "invoice.number",
    "company.name",
    "this.this.number",
    "today",
    "stage.missing",
    "this",
    "stage",
];

const LINE_ODD: &[&str] = &[
    "../invoice.number",
    "../company.name",
    "this",
    "invoice.number",
    "company.name",
    "this.this.number",
    "today",
    "../language",
    "tags",
    "extra.some_column",
    "stage",
    "discount.amount",
    "paid_date",
];

const TOTAL_PATHS: &[&str] = &[
    "currency",
    "amount_due",
    "count",
    "this.currency",
    "this.amount_due",
    "this.count",
    "@root.today",
    "@root.invoice.number",
];

const TOTAL_ODD: &[&str] = &["../language", "number", "this", "@root", "missing"];

struct Generator {
    rng: Rng,
    /// Whether partials may be included (not inside a partial).
    partials: bool,
    /// How often (percent) a choice is odd: a construct the direct path
    /// leaves to Handlebars, a value missing, arguments of the wrong type.
    odd: usize,
    /// Whether this is an HTML body, where `{{{…}}}` is escaped like `{{…}}`.
    html: bool,
}

impl Generator {
    fn odd(&mut self) -> bool {
        self.rng.chance(self.odd)
    }

    /// A path that is there for every message, or (odd) any path.
    fn path(&mut self, scope: Scope) -> String {
        if self.odd() {
            return self.odd_path(scope);
        }
        let r = &mut self.rng;
        match scope {
            Scope::Root => match r.below(10) {
                0..=4 => format!("invoice.{}", r.pick(INVOICE_FIELDS)),
                _ => r.pick(ROOT_PATHS).to_string(),
            },
            Scope::Line => match r.below(10) {
                // A bare `days_overdue` calls the helper.
                0..=3 => match r.pick(INVOICE_FIELDS) {
                    "days_overdue" => "this.days_overdue".to_string(),
                    field => field.to_string(),
                },
                4..=6 => format!("this.{}", r.pick(INVOICE_FIELDS)),
                _ => r.pick(LINE_PATHS).to_string(),
            },
            Scope::Total => r.pick(TOTAL_PATHS).to_string(),
        }
    }

    fn odd_path(&mut self, scope: Scope) -> String {
        let r = &mut self.rng;
        match scope {
            Scope::Root => match r.below(4) {
                0 => format!("invoice.{}", r.pick(ODD_INVOICE_FIELDS)),
                _ => r.pick(ODD_ROOT_PATHS).to_string(),
            },
            Scope::Line => match r.below(4) {
                0 => r.pick(ODD_INVOICE_FIELDS).to_string(),
                _ => r.pick(LINE_ODD).to_string(),
            },
            Scope::Total => r.pick(TOTAL_ODD).to_string(),
        }
    }

    /// A path for `{{#if}}`: it may well be missing.
    fn maybe_path(&mut self, scope: Scope) -> String {
        match (scope, self.rng.below(3)) {
            (Scope::Root, 0) => self.rng.pick(MAYBE_ROOT_PATHS).to_string(),
            (Scope::Line, 0) => self.rng.pick(MAYBE_LINE_PATHS).to_string(),
            _ => self.path(scope),
        }
    }

    /// A path to an amount, a date, a number, an invoice, or anything.
    fn typed(&mut self, scope: Scope, kind: &str) -> String {
        if self.odd() {
            return self.odd_path(scope);
        }
        let r = &mut self.rng;
        let choices: &[&str] = match (kind, scope) {
            ("amount", Scope::Root) => &[
                "invoice.amount_due",
                "invoice.amount",
                "invoice.amount_paid",
                "customer.total_due",
                "rates.recovery_indemnity",
                "customer.late_paid_ratio",
                "@root.invoice.amount",
            ],
            ("amount", Scope::Line) => &[
                "amount_due",
                "this.amount",
                "amount_paid",
                "@root.invoice.amount_due",
            ],
            ("amount", Scope::Total) => &["amount_due", "this.amount_due", "count"],
            ("date", Scope::Root) => &["invoice.due_date", "invoice.issue_date", "today"],
            ("date", Scope::Line) => &["due_date", "this.issue_date", "@root.today"],
            ("date", Scope::Total) => &["@root.today"],
            ("number", Scope::Root) => &[
                "invoice.days_overdue",
                "customer.open_count",
                "customer.overdue_count",
                "customer.avg_days_late",
                "stage.offset",
                "stage.occurrence",
                "rates.late_interest_annual",
                "customer.late_paid_ratio",
            ],
            ("number", Scope::Line) => &["days_overdue", "stage.occurrence", "this.stage.offset"],
            ("number", Scope::Total) => &["count", "this.count"],
            ("whole", Scope::Root) => &[
                "invoice.days_overdue",
                "customer.open_count",
                "customer.overdue_count",
                "stage.offset",
                "stage.occurrence",
            ],
            ("whole", Scope::Line) => &["days_overdue", "stage.occurrence", "this.stage.offset"],
            ("whole", Scope::Total) => &["count", "this.count"],
            ("text", Scope::Root) => &[
                "invoice.status",
                "invoice.currency",
                "stage.id",
                "language",
                "customer.language",
                "stage.channel",
                "invoice.number",
                "invoice.due_date",
                "today",
            ],
            ("text", Scope::Line) => &[
                "status",
                "currency",
                "stage.id",
                "this.language",
                "due_date",
                "number",
            ],
            ("text", Scope::Total) => &["currency", "this.currency"],
            ("invoice", Scope::Root) => &["invoice", "@root.invoice", "this.invoice"],
            ("invoice", Scope::Line) => &["this", "@root.invoice"],
            ("invoice", Scope::Total) => &["@root.invoice"],
            _ => &[],
        };
        r.pick(choices).to_string()
    }

    fn literal(&mut self) -> String {
        self.rng.pick(LITERALS).to_string()
    }

    /// `@index`, `@first`, `@last` inside `{{#each}}`; anywhere (odd) or another one.
    fn local(&mut self, scope: Scope) -> String {
        if scope == Scope::Root || self.odd() {
            return self
                .rng
                .pick(&["@index", "@first", "@last", "@key", "@../index", "@root"])
                .to_string();
        }
        self.rng.pick(&["@index", "@first", "@last"]).to_string()
    }

    fn argument(&mut self, scope: Scope, depth: usize) -> String {
        match self.rng.below(20) {
            0..=10 => self.path(scope),
            11..=15 => self.literal(),
            16..=17 if depth < 2 => format!("({})", self.call(scope, depth + 1)),
            _ if scope != Scope::Root || self.odd() => self.local(scope),
            _ => self.literal(),
        }
    }

    /// A helper with its arguments, mostly of the types it takes.
    fn call(&mut self, scope: Scope, depth: usize) -> String {
        let helpers: &[&str] = if self.odd() {
            &[
                "gte",
                "lt",
                "and",
                "or",
                "not",
                "len",
                "lookup",
                "unknown_helper",
                "if",
                "log",
            ]
        } else {
            &[
                "money",
                "date",
                "percent",
                "plural",
                "days_overdue",
                "late_interest",
                "recovery_indemnity",
                "eq",
                "ne",
                "gt",
                "total_claimed",
            ]
        };
        let name = self.rng.pick(helpers);
        let nested = depth < 2 && self.rng.chance(15);
        let mut args: Vec<String> = match name {
            "money" => {
                let mut a = vec![if nested {
                    format!("(late_interest {} 12)", self.typed(scope, "invoice"))
                } else {
                    self.typed(scope, "amount")
                }];
                match self.rng.below(4) {
                    0 => a.push(
                        self.rng
                            .pick(&[
                                "\"EUR\"",
                                "\"usd\"",
                                "\" chf \"",
                                "\"JPY\"",
                                "'XOF'",
                                "\"<b>\"",
                            ])
                            .into(),
                    ),
                    1 => a.push(self.typed(scope, "text")),
                    _ => {}
                }
                a
            }
            "date" => vec![self.typed(scope, "date")],
            "percent" => vec![self.typed(scope, "number")],
            "plural" => vec![
                if nested {
                    format!("(days_overdue {})", self.typed(scope, "invoice"))
                } else {
                    self.typed(scope, "number")
                },
                self.rng.pick(&["\"day\"", "\"jour\"", "\"<i>&\""]).into(),
                self.rng.pick(&["\"days\"", "\"jours\"", "'s'"]).into(),
            ],
            "days_overdue" | "recovery_indemnity" => vec![self.typed(scope, "invoice")],
            "total_claimed" if scope == Scope::Root => vec!["invoice".into()],
            "total_claimed" => vec!["@root.invoice".into()],
            "late_interest" => vec![
                self.typed(scope, "invoice"),
                self.rng
                    .pick(&[
                        "rates.late_interest_annual",
                        "@root.rates.late_interest_annual",
                        "12",
                        "\"8.5\"",
                        "0",
                    ])
                    .into(),
            ],
            "eq" | "ne" => match self.rng.below(4) {
                0 => vec![self.typed(scope, "number"), self.typed(scope, "number")],
                1 if depth < 2 => {
                    vec![format!("({})", self.call(scope, depth + 1)), self.literal()]
                }
                _ => vec![
                    self.typed(scope, "text"),
                    self.rng
                        .pick(&[
                            "\"open\"",
                            "\"overdue_2\"",
                            "\"fr\"",
                            "\"EUR\"",
                            "\"email\"",
                            "\"\"",
                        ])
                        .into(),
                ],
            },
            "gt" => vec![
                self.typed(scope, "whole"),
                self.rng.pick(&["0", "1", "-1", "30", "2"]).into(),
            ],
            _ => (0..1 + self.rng.below(2))
                .map(|_| self.argument(scope, depth))
                .collect(),
        };
        // Odd arguments: one replaced, dropped or added.
        if self.odd() {
            match self.rng.below(3) {
                0 if !args.is_empty() => {
                    let i = self.rng.below(args.len());
                    args[i] = self.argument(scope, depth);
                }
                1 => {
                    args.pop();
                }
                _ => args.push(self.argument(scope, depth)),
            }
        }
        let mut call = name.to_string();
        for a in args {
            call.push(' ');
            call.push_str(&a);
        }
        call
    }

    fn expression(&mut self, scope: Scope) -> String {
        if self.odd() {
            return match self.rng.below(3) {
                0 => self.local(scope),
                1 => self.literal(),
                _ => self.odd_path(scope),
            };
        }
        match self.rng.below(10) {
            0..=5 => self.path(scope),
            _ => self.call(scope, 0),
        }
    }

    /// `{{X}}` in one of the ways a user writes it.
    fn mustache(&mut self, x: &str) -> String {
        let unescaped = self.html || self.odd();
        match self.rng.below(12) {
            0 if unescaped => format!("{{{{{{{x}}}}}}}"),
            1 if unescaped && !x.contains(' ') => format!("{{{{&{x}}}}}"),
            6 if unescaped => format!("{{{{~{{{x}}}~}}}}"),
            2 => format!("{{{{~{x}}}}}"),
            3 => format!("{{{{{x}~}}}}"),
            4 => format!("{{{{~{x}~}}}}"),
            5 => format!("{{{{ {x} }}}}"),
            _ => format!("{{{{{x}}}}}"),
        }
    }

    fn condition(&mut self, scope: Scope) -> String {
        match self.rng.below(20) {
            0..=11 => self.maybe_path(scope),
            12..=16 => format!("({})", self.call(scope, 1)),
            17..=18 if scope != Scope::Root || self.odd() => self.local(scope),
            _ => self.literal(),
        }
    }

    /// `{{#NAME ARG}}…{{else}}…{{/NAME}}`, with whitespace control or on lines of their own.
    fn block(&mut self, name: &str, arg: &str, scope: Scope, inner: Scope, depth: usize) -> String {
        let (open, close) = match self.rng.below(7) {
            0 => (
                format!("{{{{~#{name} {arg}~}}}}"),
                format!("{{{{~/{name}~}}}}"),
            ),
            1 => (
                format!("{{{{~#{name} {arg}}}}}"),
                format!("{{{{/{name}~}}}}"),
            ),
            // Standalone lines, which Handlebars takes out with their line break.
            2 => (
                format!("\n{{{{#{name} {arg}}}}}\n"),
                format!("\n{{{{/{name}}}}}\n"),
            ),
            3 => (
                format!("\n  {{{{#{name} {arg}}}}}  \n"),
                format!("\n\t{{{{/{name}}}}}\n"),
            ),
            4 => (
                format!("{{{{#{name} {arg}}}}}\n"),
                format!("{{{{/{name}}}}}\n"),
            ),
            _ => (format!("{{{{#{name} {arg}}}}}"), format!("{{{{/{name}}}}}")),
        };
        let mut out = open;
        out += &self.elements(inner, depth + 1);
        if self.rng.chance(40) {
            match self.rng.below(8) {
                0 => out += "{{~else~}}",
                1 => out += "{{^}}",
                2 => out += "\n{{else}}\n",
                3 if (name == "if" || name == "unless") && self.odd() => {
                    let c = self.condition(scope);
                    let _ = write!(out, "{{{{else if {c}}}}}");
                }
                _ => out += "{{else}}",
            }
            out += &self.elements(scope, depth + 1);
        }
        out + close.as_str()
    }

    fn partial(&mut self, scope: Scope) -> String {
        let p = match scope {
            Scope::Root => self.rng.pick(&["p0", "p1", "p3", "p5"]),
            _ => self.rng.pick(&["p0", "p2", "p4"]),
        };
        if self.odd() {
            let p = format!("p{}", self.rng.below(6));
            return match self.rng.below(5) {
                0 => format!("{{{{> {p} invoice}}}}"),
                1 => format!("{{{{> {p} x=invoice.number}}}}"),
                2 => format!("\n  {{{{> {p}}}}}\n"),
                3 => "{{> missing_partial}}".to_string(),
                _ => format!("{{{{#> {p}}}}}fallback{{{{/{p}}}}}"),
            };
        }
        match self.rng.below(4) {
            0 => format!("\n{{{{> {p}}}}}\n"),
            1 => format!("{{{{~> {p}~}}}}"),
            _ => format!("{{{{> {p}}}}}"),
        }
    }

    fn element(&mut self, scope: Scope, depth: usize) -> String {
        let deeper = depth < 3;
        match self.rng.below(100) {
            0..=27 => self.rng.pick(TEXTS).to_string(),
            28..=59 => {
                let x = self.expression(scope);
                self.mustache(&x)
            }
            60..=71 if deeper => {
                let name = if self.rng.chance(75) { "if" } else { "unless" };
                let c = self.condition(scope);
                self.block(name, &c, scope, scope, depth)
            }
            72..=79 if deeper => {
                let (list, inner) = match self.rng.below(10) {
                    0..=3 => ("invoices", Scope::Line),
                    4 => ("due_soon", Scope::Line),
                    5 => ("overdue", Scope::Line),
                    6..=7 => ("totals", Scope::Total),
                    _ => ("@root.invoices", Scope::Line),
                };
                if self.odd() {
                    let (list, inner) = match self.rng.below(5) {
                        0 => ("company", Scope::Root),
                        1 => ("invoice", Scope::Root),
                        2 => ("invoices as |line|", Scope::Line),
                        3 => ("../invoices", Scope::Line),
                        _ => ("nothing", Scope::Line),
                    };
                    return self.block("each", list, scope, inner, depth);
                }
                self.block("each", list, scope, inner, depth)
            }
            80..=81 if deeper && self.odd() => {
                let (arg, inner) = match scope {
                    Scope::Root => ("invoice", Scope::Line),
                    _ => ("@root", Scope::Root),
                };
                self.block("with", arg, scope, inner, depth)
            }
            82..=84 => self
                .rng
                .pick(&[
                    "{{! a comment }}",
                    "{{!-- {{invoice.number}} }} --}}",
                    "{{~! trimmed ~}}",
                    "\n{{! standalone }}\n",
                ])
                .to_string(),
            85..=90 if self.partials => self.partial(scope),
            91..=92 if self.odd() => {
                "{{{{raw}}}}{{invoice.number}} & <{{/x}}>{{{{/raw}}}}".to_string()
            }
            93..=94 => format!("\\{{{{{}}}}}", self.path(scope)),
            95..=96 if self.odd() => self
                .rng
                .pick(&[
                    "{{#if invoice.number}}{{else if customer.name}}x{{/if}}",
                    "{{^invoice.paid_date}}unpaid{{/invoice.paid_date}}",
                    "{{#invoice.number}}[{{.}}]{{/invoice.number}}",
                    "{{#eq invoice.status \"open\"}}open{{else}}other{{/eq}}",
                    "{{\"text\"}}",
                    "{{[invoice].[number]}}",
                    "{{#if invoice.amount_due includeZero=true}}z{{/if}}",
                    "{{> p1 this}}",
                    "{{#each invoices}}{{@index}}:{{@first}}{{/each}}",
                    "{{#each totals}}{{#if @first}}{{currency}}{{/if}}{{/each}}",
                    "{{*decorator}}",
                    "{{#*inline \"p0\"}}inline{{/inline}}{{> p0}}",
                    "{{lookup invoice \"number\"}}",
                    "{{invoice.number.[0]}}",
                    "{{.}}",
                    "{{./invoice.number}}",
                    "{{this/invoice/number}}",
                ])
                .to_string(),
            _ => self.rng.pick(TEXTS).to_string(),
        }
    }

    fn elements(&mut self, scope: Scope, depth: usize) -> String {
        let n = 1 + self.rng.below(if depth == 0 { 8 } else { 4 });
        (0..n).map(|_| self.element(scope, depth)).collect()
    }

    /// A subject: one line, as YAML's double quotes have it.
    fn subject(&mut self) -> String {
        let source: String = self.elements(Scope::Root, 1).replace(['\n', '\r'], " ");
        let quoted = source.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{quoted}\"")
    }
}

/// What the direct path wrote where Handlebars wrote something else (or failed).
struct Divergence {
    template: String,
    part: &'static str,
    direct: String,
    handlebars: String,
}

/// A folder's templates (`tNNNN.LANG.hbs`, some with an HTML body) and
/// partials `p0`…`p5`, generated from `seed`.
fn generated_templates(seed: u64, count: usize) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("partials")).unwrap();
    let mut g = Generator {
        rng: Rng(seed),
        partials: false,
        odd: 0,
        html: false,
    };
    for language in ["en", "fr"] {
        for p in 0..6 {
            let source = match p {
                0 => "Kind regards & <thanks>\n".to_string(),
                1 => "{{company.name}} — {{invoice.number}}\n".to_string(),
                2 => "{{number}}: {{money amount_due currency}}".to_string(),
                3 => format!("{{{{> p0}}}}{}", g.elements(Scope::Root, 1)),
                4 => format!("  {}\nline two\n", g.elements(Scope::Line, 1)),
                _ => g.elements(Scope::Root, 1),
            };
            let file = templates.join(format!("partials/p{p}.{language}.hbs"));
            std::fs::write(file, source).unwrap();
        }
    }
    g.partials = true;
    let mut names = Vec::new();
    for t in 0..count {
        let language = ["en", "fr"][t % 2];
        let name = format!("t{t:04}");
        // Most templates are what the direct path writes, a value missing
        // here and there; some are full of what it leaves to Handlebars.
        g.odd = [0, 0, 1, 3, 25][t % 5];
        g.html = false;
        let text = format!(
            "---\nsubject: {}\n---\n{}",
            g.subject(),
            g.elements(Scope::Root, 0)
        );
        std::fs::write(templates.join(format!("{name}.{language}.hbs")), text).unwrap();
        if g.rng.chance(50) {
            g.html = true;
            let html = g.elements(Scope::Root, 0);
            std::fs::write(templates.join(format!("{name}.{language}.html.hbs")), html).unwrap();
        }
        names.push((name, language.to_string()));
    }
    (dir, names)
}

/// The sample folder's config, rules, scripts and templates, with a ledger of
/// 140 invoices of 9 customers (extra columns, promises, b2c tags, every
/// currency the locale knows, names to escape): what the tests comparing
/// the compiled messages with Handlebars render.
pub(super) fn project_of_140_invoices() -> Project {
    let mut project = Project::load(&Options {
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        ..Options::default()
    })
    .unwrap();
    let currencies = ["EUR", "USD", "CAD", "GBP", "CHF", "JPY", "XOF"];
    let amounts = ["0.01", "1234.565", "99.999", "1000000", "7", "0.5", "0"];
    let dues = [
        "2026-12-01",
        "2028-02-29",
        "2026-01-31",
        "2027-03-01",
        "2026-11-15",
        "2026-12-09",
    ];
    let languages = [None, Some("en"), Some("fr-CA"), Some("fr")];
    let mut invoices = Vec::new();
    for i in 0..140 {
        let mut inv = invoice(
            &format!("G-{i:03}"),
            &format!("C{}", i % 9),
            dues[i % dues.len()],
            amounts[i % amounts.len()],
        );
        inv.currency = currencies[i % 3 * (i % 5) % currencies.len()].into();
        inv.amount_paid = ["0", "0.005", "3.1"][i % 3].parse().unwrap();
        inv.language = languages[i % languages.len()].map(Into::into);
        std::sync::Arc::make_mut(&mut inv.bill_to).name =
            format!("Client n° {} <b>&</b> \"Fils\" l'aîné `=`", i % 9).into();
        if i % 7 == 0 {
            inv.promise_date = Some(date("2026-11-20"));
        }
        if i % 9 == 4 {
            inv.tags = crate::model::ThinSlice::from(["b2c".into()]);
        }
        if i % 4 == 1 {
            let value = ["2026-12-24", "a & <b>", "", " 12.5 "][i % 8 / 2];
            inv.extra.insert("some_column".into(), value.into());
        }
        invoices.push(inv);
    }
    project.ledger = Arc::new(Ledger::new(invoices).with_default_language("fr"));
    project
}

/// The sample folder's config, rules and scripts, with the templates of
/// `dir` and [`project_of_140_invoices`]'s ledger.
fn project_with(dir: &std::path::Path) -> Project {
    let mut project = project_of_140_invoices();
    let mut problems = Problems::default();
    let rulebook = Arc::get_mut(&mut project.rulebook).unwrap();
    rulebook.templates = Templates::load(
        &dir.join("templates"),
        &project.config,
        &rulebook.scripts,
        &mut problems,
    );
    project
}

/// Renders every template both ways for three messages each (one
/// invoice; four of a customer; nine of a customer), returning what
/// differed and how many messages the direct path wrote.
fn compare(project: &Project, names: &[(String, String)]) -> (Vec<Divergence>, usize) {
    let (ledger, templates) = (&project.ledger, &project.rulebook.templates);
    let policies = &project.rulebook.policies;
    let mut divergences = Vec::new();
    let mut direct_written = 0;
    for (t, (name, language)) in names.iter().enumerate() {
        let p = t % policies.len();
        for (first, count) in [(t * 7 % 140, 1), (t % 9, 4), (t * 5 % 27, 9)] {
            let rows: Vec<Reminder> = (first..ledger.invoices.len())
                .step_by(9)
                .take(count)
                .map(|i| Reminder {
                    date: date("2026-12-01") + chrono::Days::new(t as u64 % 12),
                    invoice: InvoiceId::new(i),
                    policy: crate::rules::PolicyId::new(p),
                    stage: crate::rules::StageId::new((t + i) % policies[p].stages.len()),
                    occurrence: (i % 4) as u32,
                })
                .collect();
            let lines = project.statement_lines(&rows);
            let today = rows[0].date;
            let Some(direct) =
                templates.render_direct(name, language, ledger, &lines, &policies[p], today)
            else {
                continue;
            };
            direct_written += 1;
            let mut differ = |part, direct: &str, handlebars: String| {
                if direct != handlebars {
                    divergences.push(Divergence {
                        template: format!("{name}.{language} ({count} invoices)"),
                        part,
                        direct: direct.to_string(),
                        handlebars,
                    });
                }
            };
            match project.render_with_handlebars(&rows, name, language, true) {
                Ok(slow) => {
                    differ("subject", &direct.subject, slow.subject);
                    differ("body", &direct.body, slow.body);
                    let html = |h: Option<String>| h.unwrap_or_else(|| "(none)".into());
                    differ("html", &html(direct.html), html(slow.html));
                }
                Err(e) => differ("error", "a message", e.to_string()),
            }
        }
    }
    (divergences, direct_written)
}

fn report(dir: &std::path::Path, divergences: &[Divergence]) -> String {
    let mut out = format!("{} divergences\n", divergences.len());
    let mut shown = Vec::new();
    for d in divergences {
        let stem = d.template.split(' ').next().unwrap_or_default();
        if shown.contains(&stem) || shown.len() == 12 {
            continue;
        }
        shown.push(stem);
        let source = |ext: &str| {
            std::fs::read_to_string(dir.join(format!("templates/{stem}.{ext}"))).unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "== {} {}\n-- direct:\n{:?}\n-- handlebars:\n{:?}\n-- text:\n{}\n-- html:\n{}",
            d.template,
            d.part,
            d.direct,
            d.handlebars,
            source("hbs"),
            source("html.hbs"),
        );
    }
    out
}

/// Five thousand generated templates, each rendered for three messages:
/// whatever the direct path writes, Handlebars writes the same (and where
/// Handlebars fails, the direct path has left the message to it).
#[test]
fn generated_templates_are_written_as_handlebars_writes_them() {
    let (dir, names) = generated_templates(16, 5000);
    let project = project_with(dir.path());
    let (divergences, written) = compare(&project, &names);
    assert!(
        divergences.is_empty(),
        "{}",
        report(dir.path(), &divergences)
    );
    // Enough of them are written directly for the comparison to mean something.
    assert!(written > 4000, "{written}");
}

/// Template `t0000.en` of this text (front matter included) and HTML body,
/// compared both ways: what differed.
fn divergences_of(text: &str, html: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("t0000.en.hbs"), text).unwrap();
    if let Some(html) = html {
        std::fs::write(templates.join("t0000.en.html.hbs"), html).unwrap();
    }
    let project = project_with(dir.path());
    let names = [("t0000".to_string(), "en".to_string())];
    let (divergences, _) = compare(&project, &names);
    divergences
        .iter()
        .map(|d| {
            format!(
                "{} {}: {:?} / {:?}",
                d.template, d.part, d.direct, d.handlebars
            )
        })
        .collect()
}

/// Handlebars skips `this` inside a path: `invoice.this.number` is the
/// invoice's number, not a missing value.
#[test]
fn a_this_inside_a_path_is_left_to_handlebars() {
    let text = "---\nsubject: \"{{#if this.this}}yes{{/if}}\"\n---\n{{#if invoice.this.number}}yes{{/if}}\n";
    assert_eq!(divergences_of(text, None), Vec::<String>::new());
}

/// A partial included with whitespace control (`{{~> p1~}}`) gets the
/// parts of the context it reads, as one included without.
#[test]
fn a_partial_included_with_whitespace_control_reads_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("partials")).unwrap();
    std::fs::write(templates.join("partials/p1.en.hbs"), "{{company.name}}").unwrap();
    std::fs::write(
        templates.join("t0000.en.hbs"),
        "---\nsubject: \"S\"\n---\nA {{~> p1~}} B\n",
    )
    .unwrap();
    let project = project_with(dir.path());
    let rows = [Reminder {
        date: date("2026-12-01"),
        invoice: InvoiceId::new(0),
        policy: crate::rules::PolicyId::new(0),
        stage: crate::rules::StageId::new(0),
        occurrence: 0,
    }];
    let found = project.rulebook.templates.find("t0000", "en");
    let message = project.render_message(&rows, "t0000", found, true).unwrap();
    assert_eq!(message.body, "AAtelier Durand SARLB\n");
}
