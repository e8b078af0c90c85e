//! The Rhai sandbox: one engine, expressions compiled once, invoices exposed as typed views.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use rhai::{
    AST, Array, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position,
    Scope,
};
use rust_decimal::Decimal;

use crate::config::Rates;
use crate::diagnostics::{Location, Problem, Problems, files_with_extension, quote};
use crate::model::{CustomerId, InvoiceField, InvoiceId, Ledger};
use crate::money::{self, InterestError};
use crate::rules::native::{MoneySum, Native};

/// Words that make an expression's value change from one day to the next
/// even when nothing else changes; the preview re-evaluates such expressions daily.
const TIME_WORDS: [&str; 6] = [
    "today",
    "days_overdue",
    "overdue_count",
    "late_interest",
    "discount",
    // Changes the day after a message to the customer, whichever invoice it was about.
    "last_contacted",
];

/// The customer's field that changes when another invoice of the customer
/// gets a message.
const LAST_CONTACTED: &str = "last_contacted";

/// The money functions relance provides to scripts and templates: a `.rhai`
/// function of the same name would silently take their place in one and not
/// the other.
pub const BUILT_IN_FUNCTIONS: [&str; 2] = ["late_interest", "recovery_indemnity"];

/// The other names of relance's scripts and templates (`days_between`, the
/// template helpers and Handlebars' own): every `.rhai` function is also a
/// template helper, registered last, so one of these names would quietly
/// replace `{{money …}}` or `{{#if …}}` in every message.
pub const RESERVED_NAMES: [&str; 20] = [
    "days_between",
    "money",
    "plural",
    "date",
    "percent",
    "days_overdue",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "if",
    "unless",
    "each",
    "with",
    "lookup",
];

/// Why `late_interest` cannot compute: the rate is configuration, never built in.
pub const INTEREST_RATE_NOT_SET: &str = "rates.late_interest_annual is not set in relance.yaml: \
     add the annual late-payment interest rate in percent there \
     (in France, the ECB main refinancing rate plus 10 points)";

/// An invoice as scripts see it: a cheap handle into the ledger plus the evaluation date.
#[derive(Clone)]
pub struct InvoiceView {
    pub ledger: Arc<Ledger>,
    pub index: InvoiceId,
    pub today: NaiveDate,
}

impl InvoiceView {
    /// A field of the invoice as scripts see it: text, exact decimals, dates
    /// as `YYYY-MM-DD` strings, `()` for an optional date it lacks.
    fn get(&self, field: InvoiceField) -> Dynamic {
        use InvoiceField::*;
        let i = &self.ledger.invoices[self.index];
        let text = |s: &str| Dynamic::from(ImmutableString::from(s));
        match field {
            Number => text(&i.number),
            CustomerId => text(&i.bill_to.id),
            CustomerName => text(&i.bill_to.name),
            Email => text(&i.bill_to.email),
            IssueDate => Dynamic::from(date_string(i.issue_date)),
            DueDate => Dynamic::from(date_string(i.due_date)),
            Amount => Dynamic::from(i.amount),
            AmountPaid => Dynamic::from(i.amount_paid),
            AmountDue => Dynamic::from(i.amount_due()),
            Currency => text(&i.currency),
            Status => text(i.status.as_str()),
            PaidDate => opt_date(i.paid_date),
            Language => text(self.ledger.language_of(self.index)),
            Tags => Dynamic::from(strings(&i.tags)),
            PromiseDate => opt_date(i.promise_date),
            DaysOverdue => Dynamic::from(i.days_overdue(self.today)),
            Extra => Dynamic::from(
                i.extra
                    .iter()
                    .map(|(k, v)| (k.into(), text(v)))
                    .collect::<Map>(),
            ),
        }
    }
}

/// A customer as scripts see it, with aggregates as of `today`.
#[derive(Clone)]
pub struct CustomerView {
    pub ledger: Arc<Ledger>,
    pub index: usize,
    pub today: NaiveDate,
    /// `customer.last_contacted`: the last day before `today` on which a
    /// message (any channel) was sent to the customer, about any invoice.
    pub last_contacted: Option<NaiveDate>,
}

/// The stage being evaluated.
#[derive(Clone)]
pub struct StageView {
    pub id: ImmutableString,
    pub offset: i64,
    pub channel: ImmutableString,
    pub template: ImmutableString,
    pub occurrence: i64,
}

/// A script failure, located in the expression or the `.rhai` file where it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScriptError {
    pub location: Location,
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// A compiled `applies_to` or `when` expression.
#[derive(Clone)]
pub struct Expr {
    pub source: String,
    ast: AST,
    /// Where the expression is written (its first character).
    pub location: Location,
    pub time_dependent: bool,
    /// Reads `discount`: only then is the policy's discount worked out for it.
    pub reads_discount: bool,
    /// Reads only `customer` (and constants): its value is the same for every
    /// invoice of a customer, so it can be evaluated once per customer.
    pub per_customer: bool,
    /// Reads `customer.last_contacted`: a customer's invoices are then
    /// decided together, day by day.
    pub reads_last_contacted: bool,
    /// The expression decided without the interpreter, when it reads only
    /// the customer's fields in ways [`Native`] knows.
    pub native: Option<Native>,
}

/// The engine and the functions of every `rules/*.rhai` file.
pub struct Scripts {
    engine: Engine,
    library: AST,
    /// Script functions, their arity and file; offered to templates as helpers.
    pub functions: Vec<(String, usize, PathBuf)>,
    /// Function names whose bodies read the date, directly or not.
    time_functions: Vec<String>,
    /// Function names whose bodies read `last_contacted`, directly or not.
    contact_functions: Vec<String>,
    /// Where each function is defined (its `fn` line): where an error that
    /// Rhai does not locate inside the function (an endless loop, recursion
    /// too deep) is reported.
    defined_at: Vec<(String, Location)>,
    /// The config's rates, which the money functions read.
    rates: Rates,
    /// Functions computed without the interpreter ([`MoneySum`]).
    money_sums: Vec<(String, MoneySum)>,
}

fn sandboxed_engine(rates: &Rates) -> Engine {
    let mut engine = Engine::new();
    // Bounds chosen so that any honest rule runs in microseconds while a
    // runaway loop or recursion stops within a few milliseconds.
    engine.set_max_operations(200_000);
    engine.set_max_call_levels(32);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(64 * 1024);
    engine.set_max_array_size(10_000);
    engine.set_max_map_size(10_000);
    engine.disable_symbol("eval");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.set_strict_variables(true);

    engine.register_type_with_name::<InvoiceView>("Invoice");
    for field in InvoiceField::ALL {
        engine.register_get(field.name(), move |v: &mut InvoiceView| v.get(field));
    }

    engine.register_type_with_name::<CustomerView>("Customer");
    macro_rules! customer_get {
        ($($name:literal => |$c:ident, $v:ident| $body:expr),* $(,)?) => {$(
            engine.register_get($name, |$v: &mut CustomerView| -> Dynamic {
                let $c = &$v.ledger.customers[$v.index];
                Dynamic::from($body)
            });
        )*};
    }
    customer_get! {
        "id" => |c, _v| ImmutableString::from(&*c.id),
        "name" => |c, _v| ImmutableString::from(&*c.name),
        "email" => |c, _v| ImmutableString::from(&*c.email),
        "language" => |_c, v| ImmutableString::from(v.ledger.customer_language(CustomerId::new(v.index))),
        "tags" => |c, _v| strings(&c.tags),
        "open_count" => |c, _v| c.open_count,
        "total_due" => |c, _v| c.total_due,
        "overdue_count" => |c, v| c.overdue_count(v.today),
        "late_paid_ratio" => |c, _v| c.late_paid_ratio,
        "avg_days_late" => |c, _v| c.avg_days_late,
    }
    engine.register_get("last_contacted", |v: &mut CustomerView| {
        opt_date(v.last_contacted)
    });

    engine.register_type_with_name::<StageView>("Stage");
    engine.register_get("id", |s: &mut StageView| s.id.clone());
    engine.register_get("offset", |s: &mut StageView| s.offset);
    engine.register_get("channel", |s: &mut StageView| s.channel.clone());
    engine.register_get("template", |s: &mut StageView| s.template.clone());
    engine.register_get("occurrence", |s: &mut StageView| s.occurrence);

    // Dates are ISO strings in scripts (they compare correctly as strings);
    // this gives the one piece of date arithmetic rules need.
    engine.register_fn(
        "days_between",
        |from: &str, to: &str| -> Result<i64, Box<EvalAltResult>> {
            let parse = |s: &str| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| format!("days_between: {} is not a YYYY-MM-DD date", quote(s)))
            };
            Ok((parse(to)? - parse(from)?).num_days())
        },
    );

    // The money rules. The rate is an argument (usually `rates.late_interest_annual`)
    // so that a policy can also compute at a contractual rate of its own.
    engine.register_fn("late_interest", |v: &mut InvoiceView, rate: Decimal| {
        late_interest(v, rate)
    });
    engine.register_fn("late_interest", |v: &mut InvoiceView, rate: i64| {
        late_interest(v, Decimal::from(rate))
    });
    // `rates.late_interest_annual` when the config has no rate.
    engine.register_fn(
        "late_interest",
        |_: &mut InvoiceView, _: ()| -> Result<Decimal, Box<EvalAltResult>> {
            Err(INTEREST_RATE_NOT_SET.into())
        },
    );
    let indemnity = rates.recovery_indemnity;
    engine.register_fn("recovery_indemnity", move |v: &mut InvoiceView| {
        money::recovery_indemnity(indemnity, v.ledger.customer_tags(v.index))
    });
    // `rates` is the same for every expression and function: a constant of
    // the engine rather than a variable set for each invoice.
    let mut constants = rhai::Module::new();
    constants.set_var("rates", rates_variable(rates));
    engine.register_global_module(constants.into());
    engine
}

fn late_interest(v: &InvoiceView, rate: Decimal) -> Result<Decimal, Box<EvalAltResult>> {
    let inv = &v.ledger.invoices[v.index];
    money::late_interest(inv.amount_due(), inv.due_date, v.today, rate).map_err(|e| {
        match e {
            InterestError::NegativeRate => {
                format!("late_interest: the annual rate must not be negative, not {rate}")
            }
            InterestError::TooLarge => {
                format!(
                    "late_interest: invoice {}: the amount is too large",
                    inv.number
                )
            }
        }
        .into()
    })
}

/// `rates` in scripts: `late_interest_annual` (absent when the config has
/// none) and `recovery_indemnity`.
pub fn rates_variable(rates: &Rates) -> Map {
    let mut map = Map::new();
    if let Some(rate) = rates.late_interest_annual {
        map.insert("late_interest_annual".into(), Dynamic::from(rate));
    }
    map.insert(
        "recovery_indemnity".into(),
        Dynamic::from(rates.recovery_indemnity),
    );
    map
}

pub fn date_string(d: NaiveDate) -> ImmutableString {
    // As NaiveDate displays it, YYYY-MM-DD, without `core::fmt`.
    crate::text::with_iso_date(d, |text| ImmutableString::from(text))
}

fn opt_date(d: Option<NaiveDate>) -> Dynamic {
    d.map_or(Dynamic::UNIT, |d| Dynamic::from(date_string(d)))
}

fn strings(v: &[crate::model::Shared]) -> Array {
    v.iter()
        .map(|s| Dynamic::from(ImmutableString::from(&**s)))
        .collect()
}

/// The variables every expression sees, in the order `Scope` stores them.
pub struct Variables {
    pub invoice: InvoiceView,
    pub customer: CustomerView,
    pub today: NaiveDate,
    pub sent: Array,
}

impl Variables {
    /// Sets the variables in a scope made by `into_scope` (reusing it saves
    /// its allocations on every invoice).
    pub fn apply(self, scope: &mut Scope<'static>) {
        if scope.is_empty() {
            *scope = self.into_scope(None);
            return;
        }
        scope.set_value("invoice", self.invoice);
        scope.set_value("customer", self.customer);
        scope.set_value("today", date_string(self.today));
        scope.set_value("sent", self.sent);
        // Set to the policy's discount before each `when`; none before that.
        scope.set_value("discount", ());
    }

    pub fn into_scope(self, stage: Option<StageView>) -> Scope<'static> {
        let mut scope = Scope::new();
        scope.push("invoice", self.invoice);
        scope.push("customer", self.customer);
        scope.push("today", date_string(self.today));
        scope.push("sent", self.sent);
        scope.push("discount", ());
        match stage {
            Some(s) => scope.push("stage", s),
            None => scope.push("stage", ()),
        };
        scope
    }
}

impl Scripts {
    /// Compiles every `*.rhai` file of `dir`; a file that does not compile,
    /// or is larger than `bytes` (`limits.rule_file_bytes`), is reported and
    /// left out, so that the rules that do not call it still run.
    pub fn load(dir: &Path, rates: &Rates, bytes: u64, problems: &mut Problems) -> Scripts {
        let engine = sandboxed_engine(rates);
        // Functions may read the config's `rates`, a constant of the engine.
        let mut constants = Scope::new();
        constants.push("rates", ());
        let mut library = AST::empty();
        let mut functions: Vec<(String, usize, PathBuf)> = Vec::new();
        let mut defined_at: Vec<(String, Location)> = Vec::new();
        let mut sources = Vec::new();
        for path in files_with_extension(dir, "rhai") {
            let source = match crate::diagnostics::read_within(&path, "script", bytes) {
                Ok(s) => s,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            match engine.compile_with_scope(&constants, &source) {
                Ok(mut ast) => {
                    ast.set_source(path.to_string_lossy().as_ref());
                    for f in ast.iter_functions() {
                        let reserved = if BUILT_IN_FUNCTIONS.contains(&f.name) {
                            Some("the money rules")
                        } else if RESERVED_NAMES.contains(&f.name) {
                            Some("a helper of scripts and templates")
                        } else {
                            None
                        };
                        if let Some(what) = reserved {
                            let (line, col) = find_fn(&source, f.name);
                            problems.error(
                                Location::at(&path, line, col),
                                format!(
                                    "function {} is built into relance ({what}): rename this one",
                                    f.name
                                ),
                            );
                        } else if let Some((_, _, other)) = functions
                            .iter()
                            .find(|(n, a, _)| n == f.name && *a == f.params.len())
                        {
                            let (line, col) = find_fn(&source, f.name);
                            problems.error(
                                Location::at(&path, line, col),
                                format!(
                                    "function {} is already defined in {}",
                                    f.name,
                                    other.display()
                                ),
                            );
                        } else {
                            functions.push((f.name.to_string(), f.params.len(), path.clone()));
                            let (line, col) = find_fn(&source, f.name);
                            defined_at.push((f.name.to_string(), Location::at(&path, line, col)));
                        }
                    }
                    // A .rhai file is a library of `fn`s; top-level statements never run.
                    ast.clear_statements();
                    library += ast;
                    sources.push(source);
                }
                Err(e) => {
                    let (line, col) = position(e.1);
                    problems.error(Location::at(&path, line, col), e.0.to_string());
                }
            }
        }
        let time_functions = functions_naming(&functions, &sources, &TIME_WORDS);
        let contact_functions = functions_naming(&functions, &sources, &[LAST_CONTACTED]);
        // A library redefining a money rule (an error, reported above)
        // would have Rhai call its version: then none is computed natively.
        let redefines = library
            .iter_functions()
            .any(|f| BUILT_IN_FUNCTIONS.contains(&f.name));
        let money_sums = match redefines {
            true => Vec::new(),
            false => functions
                .iter()
                .filter(|(_, arity, _)| *arity == 1)
                .filter_map(|(name, _, _)| Some((name.clone(), MoneySum::of(&library, name)?)))
                .collect(),
        };
        Scripts {
            engine,
            library,
            functions,
            time_functions,
            contact_functions,
            defined_at,
            rates: rates.clone(),
            money_sums,
        }
    }

    /// An empty library with the default rates, for tests.
    pub fn empty() -> Scripts {
        let rates = Rates::default();
        Scripts {
            engine: sandboxed_engine(&rates),
            library: AST::empty(),
            functions: Vec::new(),
            time_functions: Vec::new(),
            contact_functions: Vec::new(),
            defined_at: Vec::new(),
            rates,
            money_sums: Vec::new(),
        }
    }

    /// The config's rates, as the money functions use them.
    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    /// Compiles an expression written at `location` (its first character).
    pub fn compile(&self, source: &str, location: Location) -> Result<Expr, Problem> {
        let mut scope = Scope::new();
        for name in [
            "invoice", "customer", "today", "sent", "stage", "discount", "rates",
        ] {
            scope.push(name, ());
        }
        match self.engine.compile_expression_with_scope(&scope, source) {
            Ok(ast) => {
                let time_dependent = mentions_any(source, TIME_WORDS.iter().copied())
                    || mentions_call(source, self.time_functions.iter().map(String::as_str));
                let per_invoice = mentions_any(
                    source,
                    ["invoice", "today", "sent", "stage", "discount"].into_iter(),
                );
                let per_customer = !time_dependent && !per_invoice;
                // A function of the `.rhai` files named as a method it reads
                // would be called instead of the built-in one.
                let native =
                    per_customer && !self.functions.iter().any(|(name, ..)| name == "contains");
                Ok(Expr {
                    source: source.to_string(),
                    ast: self.library.merge(&ast),
                    time_dependent,
                    reads_discount: mentions_any(source, std::iter::once("discount")),
                    per_customer,
                    native: native.then(|| Native::parse(source)).flatten(),
                    reads_last_contacted: mentions_any(source, std::iter::once(LAST_CONTACTED))
                        || mentions_call(source, self.contact_functions.iter().map(String::as_str)),
                    location,
                })
            }
            Err(e) => {
                let (line, col) = position(e.1);
                Err(Problem::error(
                    offset_location(&location, line, col),
                    format!("in expression {}: {}", quote(source), e.0),
                ))
            }
        }
    }

    /// Evaluates a yes/no expression.
    pub fn eval_bool(&self, expr: &Expr, scope: &mut Scope) -> Result<bool, ScriptError> {
        let value = self
            .engine
            .eval_ast_with_scope::<Dynamic>(scope, &expr.ast)
            .map_err(|e| {
                let called = called_at(&expr.source, e.position());
                let stopped = self.stopped_at(&e, |engine| {
                    let _ = engine.eval_ast_with_scope::<Dynamic>(scope, &expr.ast);
                });
                self.error(&e, &expr.location, called, stopped)
            })?;
        value.as_bool().map_err(|type_name| ScriptError {
            location: expr.location.clone(),
            message: format!(
                "expression {} must be true or false, but gave a {type_name}",
                quote(&expr.source)
            ),
        })
    }

    /// Calls a function of the `.rhai` files (for template helpers) with
    /// the arguments `args` makes: made once for a [`MoneySum`], again for
    /// Rhai when that leaves the call to it, and again when the call fails
    /// and is run again to locate its failure; never copied.
    pub fn call(
        &self,
        name: &str,
        args: &dyn Fn() -> Vec<Dynamic>,
    ) -> Result<Dynamic, ScriptError> {
        if let Some(value) = self.money_sum(name, args) {
            return Ok(value);
        }
        let options = CallFnOptions::new().eval_ast(false);
        self.engine
            .call_fn_with_options::<Dynamic>(
                options,
                &mut Scope::new(),
                &self.library,
                name,
                args(),
            )
            .map_err(|e| {
                let stopped = self.stopped_at(&e, |engine| {
                    let options = CallFnOptions::new().eval_ast(false);
                    let mut scope = Scope::new();
                    let _ = engine.call_fn_with_options::<Dynamic>(
                        options,
                        &mut scope,
                        &self.library,
                        name,
                        args(),
                    );
                });
                // Rhai does not wrap an error of the function it was asked to
                // call, as it does those of the functions that one calls.
                let e = match *e {
                    ref inner if inner.is_system_exception() => e,
                    // Called with the wrong arguments: the template's mistake.
                    EvalAltResult::ErrorInFunctionCall(..)
                    | EvalAltResult::ErrorFunctionNotFound(..) => e,
                    inner => Box::new(EvalAltResult::ErrorInFunctionCall(
                        name.to_string(),
                        String::new(),
                        Box::new(inner),
                        Position::NONE,
                    )),
                };
                self.error(&e, &Location::file(Path::new("rules")), Some(name), stopped)
            })
    }

    /// Function `name`'s value for `args` without the interpreter, when it
    /// is a [`MoneySum`] called with an invoice and that computes.
    fn money_sum(&self, name: &str, args: &dyn Fn() -> Vec<Dynamic>) -> Option<Dynamic> {
        let (_, sum) = self.money_sums.iter().find(|(n, _)| n == name)?;
        let [invoice] = args().try_into().ok()?;
        let view = invoice.read_lock::<InvoiceView>()?;
        let tags = view.ledger.customer_tags(view.index);
        let value = sum.value(
            &view.ledger.invoices[view.index],
            tags,
            view.today,
            &self.rates,
        )?;
        Some(Dynamic::from(value))
    }

    /// Where a script stopped by the sandbox (an endless loop, a recursion
    /// too deep) was when it stopped: the functions it was in, outermost
    /// first, and the position in the innermost. Rhai reports such an
    /// error at the outermost call only, so on that (rare) path `run`
    /// runs the same evaluation again, deterministically, on an engine
    /// that notes each step; the everyday engine has no debugger to slow it.
    fn stopped_at(
        &self,
        err: &EvalAltResult,
        run: impl FnOnce(&Engine),
    ) -> Option<(Vec<String>, Position)> {
        if !err.is_system_exception() {
            return None;
        }
        type Site = (Vec<String>, Position);
        let site: Arc<Mutex<Option<Site>>> = Arc::default();
        let mut engine = sandboxed_engine(&self.rates);
        let noted = Arc::clone(&site);
        #[allow(deprecated)] // Rhai marks its debugger API volatile, not deprecated.
        engine.register_debugger(
            |_, debugger| debugger,
            move |context, event, _, _, pos| {
                let stack = context.debugger().map(|d| d.call_stack()).unwrap_or(&[]);
                // Steps only: leaving a function with the error is at its end.
                let step = matches!(event, rhai::debugger::DebuggerEvent::Step);
                if step
                    && !stack.is_empty()
                    && let Ok(mut site) = noted.lock()
                {
                    let same = site.as_ref().is_some_and(|(names, _)| {
                        names.len() == stack.len()
                            && stack.last().map(|f| f.fn_name.as_str())
                                == names.last().map(String::as_str)
                    });
                    match site.as_mut() {
                        // The first step on a line says where it starts.
                        Some((_, at)) if same => {
                            if at.line() != pos.line() {
                                *at = pos;
                            }
                        }
                        _ => {
                            let names = stack.iter().map(|f| f.fn_name.to_string()).collect();
                            *site = Some((names, pos));
                        }
                    }
                }
                Ok(rhai::debugger::DebuggerCommand::StepInto)
            },
        );
        run(&engine);
        site.lock().ok()?.take()
    }

    /// Locates a runtime error: inside a script function when it was thrown
    /// there, else inside the expression. `called` is the function the
    /// expression calls where the error is: Rhai passes an endless loop or
    /// a recursion too deep out of every function unwrapped, at the
    /// outermost call, so such an error is reported at that function's
    /// `fn` line in its `.rhai` file, the nearest place a person can fix.
    fn error(
        &self,
        err: &EvalAltResult,
        expr_location: &Location,
        called: Option<&str>,
        stopped: Option<(Vec<String>, Position)>,
    ) -> ScriptError {
        let mut err = err;
        let mut location = None;
        let mut chain = Vec::new();
        while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = err {
            chain.push(name.clone());
            if location.is_none() {
                let (line, col) = position(*pos);
                location = Some(offset_location(expr_location, line, col));
            }
            // Positions inside a function are positions in the .rhai file that defines it.
            if let Some((_, _, file)) = self.functions.iter().find(|(n, _, _)| n == name) {
                let (line, col) = position(inner.position());
                location = Some(Location::at(file, line, col));
            }
            err = inner;
        }
        let mut called_from = None;
        let file_of = |name: &str| {
            self.functions
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, _, file)| file)
        };
        if location.is_none() && err.is_system_exception() {
            // Where it was stopped, else the `fn` line of the function called.
            let site = stopped.and_then(|(mut names, pos)| {
                let file = file_of(names.last()?)?;
                let (line, col) = position(pos);
                // A recursion is one function, however deep.
                names.dedup();
                Some((Location::at(file, line, col), names))
            });
            let defined = || {
                let (name, defined) = self
                    .defined_at
                    .iter()
                    .find(|(n, _)| Some(n.as_str()) == called)?;
                Some((defined.clone(), vec![name.clone()]))
            };
            if let Some((at, names)) = site.or_else(defined) {
                location = Some(at);
                chain.extend(names);
                // A template helper has no expression to point back to.
                if expr_location.line.is_some() {
                    let (line, col) = position(err.position());
                    called_from = Some(offset_location(expr_location, line, col));
                }
            }
        }
        let location = location.unwrap_or_else(|| {
            let (line, col) = position(err.position());
            offset_location(expr_location, line, col)
        });
        let mut message = match err {
            EvalAltResult::ErrorTooManyOperations(_) => {
                "script stopped: too many operations (an endless loop?)".to_string()
            }
            EvalAltResult::ErrorStackOverflow(_) => {
                "script stopped: calls nested too deep (endless recursion?)".to_string()
            }
            other => {
                let text = other.to_string();
                match text.rfind(" (line ") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                }
            }
        };
        if !chain.is_empty() {
            let from = called_from.map_or_else(String::new, |at| format!(", called at {at}"));
            message = format!("{message} (in {}{from})", chain.join(" → "));
        }
        ScriptError { location, message }
    }
}

/// The name of the function called at `pos` in an expression, if a name
/// starts there (Rhai puts a call's position on its name).
fn called_at(source: &str, pos: Position) -> Option<&str> {
    let line = source.lines().nth(pos.line()?.checked_sub(1)?)?;
    let rest = line.get(pos.position()?.checked_sub(1)?..)?;
    let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn position(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(1), p.position().unwrap_or(1))
}

/// A position inside an expression, made absolute in the file that holds it.
fn offset_location(base: &Location, line: usize, col: usize) -> Location {
    let mut loc = base.clone();
    if let Some(l) = base.line {
        loc.line = Some(l + line - 1);
        loc.col = Some(if line == 1 {
            base.col.unwrap_or(1) + col - 1
        } else {
            col
        });
    }
    loc
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn mentions_any<'a>(source: &str, words: impl Iterator<Item = &'a str>) -> bool {
    let mut words = words;
    words.any(|w| {
        source
            .match_indices(w)
            .any(|(i, _)| word_at(source, i, w.len()))
    })
}

fn mentions_call<'a>(source: &str, names: impl Iterator<Item = &'a str>) -> bool {
    let mut names = names;
    names.any(|n| {
        source.match_indices(n).any(|(i, _)| {
            word_at(source, i, n.len()) && source[i + n.len()..].trim_start().starts_with('(')
        })
    })
}

fn word_at(source: &str, i: usize, len: usize) -> bool {
    !source[..i].ends_with(is_ident) && !source[i + len..].starts_with(is_ident)
}

/// The names of the `functions` whose bodies (in `sources`) name one of
/// `words`, or call a function that does.
fn functions_naming(
    functions: &[(String, usize, PathBuf)],
    sources: &[String],
    words: &[&str],
) -> Vec<String> {
    let mut naming: Vec<String> = Vec::new();
    let mut changed = true;
    while changed {
        changed = false;
        for (name, _, _) in functions {
            if naming.contains(name) {
                continue;
            }
            let body = sources
                .iter()
                .find_map(|s| fn_body(s, name))
                .unwrap_or_default();
            if mentions_any(body, words.iter().copied())
                || mentions_call(body, naming.iter().map(String::as_str))
            {
                naming.push(name.clone());
                changed = true;
            }
        }
    }
    naming
}

fn find_fn(source: &str, name: &str) -> (usize, usize) {
    let pattern = format!("fn {name}");
    source
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(&pattern).map(|c| (i + 1, c + 1)))
        .unwrap_or((1, 1))
}

/// The text of `fn name(...) { ... }`, up to the next `fn` (good enough to look for words).
fn fn_body<'s>(source: &'s str, name: &str) -> Option<&'s str> {
    let start = source.find(&format!("fn {name}"))?;
    let rest = &source[start + 3..];
    let end = rest.find("\nfn ").map_or(rest.len(), |e| e);
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{date, invoice};

    fn vars(ledger: &Arc<Ledger>, today: &str) -> Scope<'static> {
        Variables {
            invoice: InvoiceView {
                ledger: ledger.clone(),
                index: InvoiceId::new(0),
                today: date(today),
            },
            customer: CustomerView {
                ledger: ledger.clone(),
                index: 0,
                today: date(today),
                last_contacted: None,
            },
            today: date(today),
            sent: vec![],
        }
        .into_scope(None)
    }

    fn scripts_with(src: &str) -> (tempfile::TempDir, Scripts, Problems) {
        scripts_with_rates(src, &Rates::default())
    }

    fn scripts_with_rates(src: &str, rates: &Rates) -> (tempfile::TempDir, Scripts, Problems) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.rhai"), src).unwrap();
        let mut problems = Problems::default();
        let s = Scripts::load(dir.path(), rates, 1 << 20, &mut problems);
        (dir, s, problems)
    }

    fn rates(late_interest_annual: Option<&str>, recovery_indemnity: &str) -> Rates {
        Rates {
            late_interest_annual: late_interest_annual.map(|r| r.parse().unwrap()),
            recovery_indemnity: recovery_indemnity.parse().unwrap(),
        }
    }

    /// Evaluates `expr` for invoice 0 of `ledger` on `today`.
    fn eval(
        s: &Scripts,
        ledger: &Arc<Ledger>,
        today: &str,
        expr: &str,
    ) -> Result<bool, ScriptError> {
        let e = s
            .compile(expr, Location::at(Path::new("rules/p.yaml"), 1, 1))
            .unwrap_or_else(|p| panic!("{p}"));
        s.eval_bool(&e, &mut vars(ledger, today))
    }

    #[test]
    fn late_interest_and_recovery_indemnity_are_built_in() {
        let (_d, s, p) = scripts_with_rates("", &rates(Some("12.15"), "40"));
        assert!(p.is_empty(), "{p:?}");
        let ledger = Arc::new(Ledger::new(vec![invoice(
            "F1",
            "C1",
            "2026-11-01",
            "1000.00",
        )]));
        for expr in [
            // 1000 × 12.15 % × 30 / 365 = 9.986…
            "late_interest(invoice, 12.15) == 9.99",
            "late_interest(invoice, rates.late_interest_annual) == 9.99",
            "late_interest(invoice, 12) == 9.86",
            "rates.late_interest_annual == 12.15 && rates.recovery_indemnity == 40",
            "recovery_indemnity(invoice) == 40",
            "discount == ()",
        ] {
            assert_eq!(eval(&s, &ledger, "2026-12-01", expr), Ok(true), "{expr}");
        }
        assert_eq!(
            eval(
                &s,
                &ledger,
                "2026-11-01",
                "late_interest(invoice, 12.15) == 0.00"
            ),
            Ok(true),
            "no interest on the due date"
        );
        let err = eval(&s, &ledger, "2026-12-01", "late_interest(invoice, -1) > 0").unwrap_err();
        assert!(err.message.contains("must not be negative"), "{err}");
        let loc = Location::at(Path::new("p.yaml"), 1, 1);
        assert!(
            s.compile("late_interest(invoice, 1) > 0", loc.clone())
                .unwrap()
                .time_dependent
        );
        assert!(
            s.compile("discount != ()", loc.clone())
                .unwrap()
                .time_dependent
        );
        assert!(
            !s.compile("recovery_indemnity(invoice) > 0", loc)
                .unwrap()
                .time_dependent
        );
    }

    #[test]
    fn an_interest_rate_that_is_not_configured_is_a_clear_error() {
        let (_d, s, _) = scripts_with(
            "fn claimed(invoice) { late_interest(invoice, rates.late_interest_annual) }\n",
        );
        let ledger = Arc::new(Ledger::new(vec![invoice(
            "F1",
            "C1",
            "2026-11-01",
            "1000.00",
        )]));
        for expr in [
            "late_interest(invoice, rates.late_interest_annual) > 0",
            "claimed(invoice) > 0",
        ] {
            let err = eval(&s, &ledger, "2026-12-01", expr).unwrap_err();
            assert!(
                err.message
                    .contains("rates.late_interest_annual is not set in relance.yaml"),
                "{expr}: {err}"
            );
        }
    }

    #[test]
    fn consumers_owe_no_indemnity_whichever_of_their_invoices_is_tagged() {
        let (_d, s, _) = scripts_with_rates("", &rates(None, "40"));
        let mut consumer = invoice("F1", "C1", "2026-11-01", "100");
        consumer.tags = crate::model::ThinSlice::from(["b2c".into()]);
        // C2's other invoice is tagged b2c: the customer is a consumer.
        let untagged = invoice("F2", "C2", "2026-11-01", "100");
        let mut tagged = invoice("F3", "C2", "2026-11-01", "100");
        tagged.tags = crate::model::ThinSlice::from(["b2c".into()]);
        let business = invoice("F4", "C3", "2026-11-01", "100");
        let ledger = Arc::new(Ledger::new(vec![consumer, untagged, tagged, business]));
        let indemnity = |index| {
            let view = InvoiceView {
                ledger: ledger.clone(),
                index: InvoiceId::new(index),
                today: date("2026-12-01"),
            };
            let mut scope = Scope::new();
            scope.push("invoice", view);
            s.engine
                .eval_with_scope::<Decimal>(&mut scope, "recovery_indemnity(invoice)")
                .unwrap()
                .to_string()
        };
        assert_eq!(
            (0..4).map(indemnity).collect::<Vec<_>>(),
            vec!["0", "0", "0", "40"]
        );
    }

    #[test]
    fn script_functions_read_rates_but_cannot_take_a_built_in_name() {
        let (_d, s, p) = scripts_with_rates(
            "fn rate() { rates.late_interest_annual }\nfn late_interest(invoice, rate) { 0 }\nfn money(x) { x }\n",
            &rates(Some("12.15"), "40"),
        );
        let msgs: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        for expected in [
            "lib.rhai:2:1: function late_interest is built into relance (the money rules): rename this one",
            "lib.rhai:3:1: function money is built into relance (a helper of scripts and templates): rename this one",
        ] {
            assert!(msgs.iter().any(|m| m.ends_with(expected)), "{msgs:?}");
        }
        assert_eq!(
            s.call("rate", &Vec::new).unwrap().as_decimal(),
            Ok("12.15".parse().unwrap())
        );
    }

    /// Numbers below `n`, each from the last: a test's generated data is
    /// the same on every run.
    fn below(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut random = crate::text::tests::random(seed);
        move |n: u64| random() % n
    }

    /// What Rhai says of each generated customer, the native evaluation
    /// says too, for every shape it reads (numbers of both kinds compared
    /// both ways, texts, tags, negations, precedence).
    #[test]
    fn native_expressions_decide_as_rhai_does() {
        let mut next = below(0x9e37_79b9_7f4a_7c15_u64);
        let tags = ["key-account", "b2c", "vip", "Key-Account", ""];
        let invoices: Vec<_> = (0..400)
            .map(|i| invoice(&format!("F{i}"), &format!("C{}", i % 7), "2026-11-01", "1"))
            .map(|mut inv| {
                inv.bill_to = crate::model::BillTo::new(
                    format!("C{}", next(1000)),
                    ["Dupont", "Martin", ""][next(3) as usize],
                    ["a@x.example", ""][next(2) as usize],
                );
                inv
            })
            .collect();
        let mut ledger = Ledger::new(invoices);
        let today = date("2026-12-01");
        for c in &mut ledger.customers {
            c.open_count = next(6) as i64;
            c.total_due = Decimal::new(next(40_000) as i64 - 10_000, 2);
            c.late_paid_ratio = Decimal::new(next(11) as i64, 1);
            c.avg_days_late = Decimal::new(next(300) as i64, 1);
            c.tags = (0..next(3))
                .map(|_| tags[next(5) as usize].into())
                .collect();
            c.open_due_dates = vec![date("2026-11-20"), date("2026-12-01"), date("2026-12-24")]
                [..next(4) as usize]
                .to_vec();
        }
        let ledger = Arc::new(ledger);
        let (_d, s, p) = scripts_with("fn other(x) { x }\n");
        assert!(p.is_empty(), "{p:?}");
        for source in [
            "customer.late_paid_ratio >= 0.5 && customer.avg_days_late >= 10 && !customer.tags.contains(\"key-account\")",
            "customer.tags.contains(\"key-account\")",
            "customer.tags.contains(\"\")",
            "customer.open_count >= 2.5 || customer.total_due < -10",
            "customer.open_count == 3 || customer.open_count != 1 && customer.total_due > 100.05",
            "!(customer.open_count < 2) && (customer.avg_days_late <= 15 || customer.late_paid_ratio == 1)",
            "10 > customer.avg_days_late",
            "customer.id == \"C7\" || customer.name != \"Dupont\" && customer.email == \"\"",
            "!customer.tags.contains(\"vip\") && !!customer.tags.contains(\"b2c\")",
        ] {
            let native = Native::parse(source).unwrap_or_else(|| panic!("{source}"));
            let e = s
                .compile(source, Location::file(Path::new("rules/p.yaml")))
                .unwrap();
            assert_eq!(e.native.as_ref(), Some(&native), "{source}");
            for (index, customer) in ledger.customers.iter().enumerate() {
                let mut scope = vars(&ledger, "2026-12-01");
                scope.set_value(
                    "customer",
                    CustomerView {
                        ledger: ledger.clone(),
                        index,
                        today,
                        last_contacted: None,
                    },
                );
                assert_eq!(
                    s.eval_bool(&e, &mut scope),
                    Ok(native.holds(customer)),
                    "{source} for customer {index}"
                );
            }
        }
        let native = |library: &str, source: &str| {
            let (_d, s, p) = scripts_with(library);
            assert!(p.is_empty(), "{p:?}");
            let at = Location::file(Path::new("rules/p.yaml"));
            s.compile(source, at).unwrap().native
        };
        // A `.rhai` function named as a method the expression calls is
        // called instead of the built-in one: Rhai decides.
        let contains = "customer.tags.contains(\"vip\")";
        assert!(native("", contains).is_some());
        assert_eq!(native("fn contains(list, x) { true }\n", contains), None);
        // Nor is an expression that reads the invoice read natively.
        let mixed = "customer.open_count > 1 && invoice.amount > 1";
        assert_eq!(native("", mixed), None);
    }

    /// Script functions computed natively ([`MoneySum`]) give what Rhai
    /// gives, on invoices of every kind (paid in part, due or not, large
    /// enough to overflow, of consumers) with and without a configured
    /// rate; other shapes, and every function of a library redefining a
    /// money rule, are left to Rhai.
    #[test]
    fn money_sums_compute_as_rhai_does() {
        let mut next = below(0x2545_f491_4f6c_dd1d_u64);
        let huge = Decimal::MAX - Decimal::ONE;
        let invoices: Vec<_> = (0..300)
            .map(|i| {
                let due =
                    date("2026-12-01") + chrono::Days::new(next(400)) - chrono::Days::new(200);
                let mut inv = invoice(&format!("F{i}"), &format!("C{}", i % 11), "2026-11-01", "1");
                inv.due_date = due;
                inv.amount = match next(10) {
                    0 => huge,
                    _ => Decimal::new(next(5_000_000) as i64, next(3) as u32),
                };
                inv.amount_paid = match next(3) {
                    0 => inv.amount / Decimal::from(2 + next(3)),
                    _ => Decimal::ZERO,
                };
                inv
            })
            .collect();
        let mut ledger = Ledger::new(invoices);
        for c in &mut ledger.customers {
            c.tags = match next(3) {
                0 => vec!["b2c".into()],
                _ => vec!["key-account".into()],
            };
        }
        let ledger = Arc::new(ledger);
        let today = date("2026-12-01");
        let shipped = include_str!("../../rules/interest.rhai");
        let sums = [
            (shipped, "total_claimed"),
            ("fn f(i) { i.amount - i.amount_paid - 0.01 }", "f"),
            (
                "fn f(i) { (i.amount_due - 10.0) + recovery_indemnity(i) }",
                "f",
            ),
            (
                "fn f(i) { i.amount_due + (late_interest(i, 8.5) - 1.25) }",
                "f",
            ),
            ("fn f(i) { i.amount_due + i.amount_due + i.amount }", "f"),
            ("fn g(i) { 2.5 }\nfn f(i) { g(i) }", "g"),
            // Rhai's parse of it is the body: `return` at its end is dropped.
            ("fn f(i) { return i.amount_due - 0.5; }", "f"),
        ];
        for rate in [Some("12.15"), None] {
            for (library, name) in sums {
                let (dir, s, p) = scripts_with_rates(library, &rates(rate, "40"));
                assert!(p.is_empty(), "{p:?}");
                assert_eq!(s.money_sums.len(), 1, "{library}");
                let mut rhai =
                    Scripts::load(dir.path(), &rates(rate, "40"), 1 << 20, &mut p.clone());
                rhai.money_sums.clear();
                let mut native = 0;
                for index in (0..ledger.invoices.len()).map(InvoiceId::new) {
                    let args = || {
                        let ledger = ledger.clone();
                        vec![Dynamic::from(InvoiceView {
                            ledger,
                            index,
                            today,
                        })]
                    };
                    // As text: templates write its places too (1.10 is not 1.1).
                    let text = |v: Dynamic| v.as_decimal().unwrap().to_string();
                    let by_rhai = rhai.call(name, &args).map(text);
                    if let Some(value) = s.money_sum(name, &args) {
                        native += 1;
                        assert_eq!(Ok(text(value)), by_rhai, "{library}");
                    }
                    let called = s.call(name, &args).map(text);
                    assert_eq!(called, by_rhai, "{library} for {index:?}");
                }
                // Most invoices are computed natively.
                assert!(
                    native > 200 || (rate.is_none() && library.contains("rates.")),
                    "{library}: {native}"
                );
                // A customer is not an invoice: left to Rhai, which says so.
                let customer = || {
                    let ledger = ledger.clone();
                    vec![Dynamic::from(CustomerView {
                        ledger,
                        index: 0,
                        today,
                        last_contacted: None,
                    })]
                };
                assert!(s.money_sum(name, &customer).is_none());
                assert_eq!(
                    s.call(name, &customer).map(|v| v.to_string()),
                    rhai.call(name, &customer).map(|v| v.to_string())
                );
            }
        }
        for library in [
            "fn f(i) { i.amount_due * 2.0 }",
            "fn f(i) { i.amount_due + 1 }",
            "fn f(i) { late_interest(i, 8) }",
            "fn f(i) { let x = i.amount_due; x }",
            "fn f(i, j) { i.amount_due }",
            "fn f(i) { if i.amount_due > 0.0 { i.amount_due } else { 0.0 } }",
            "fn f(i) { i.days_overdue + 1.0 }",
            "fn f(i) { rates.recovery_indemnity + i.amount }",
            "fn f(i) { i.amount_due; 0.0 }",
            "fn f(rates) { late_interest(rates, rates.late_interest_annual) }",
        ] {
            let (_d, s, p) = scripts_with(library);
            assert!(p.is_empty(), "{library}: {p:?}");
            assert!(s.money_sums.is_empty(), "{library}");
        }
        let (_d, s, p) = scripts_with(
            "fn recovery_indemnity(i) { 0.0 }\nfn f(i) { i.amount_due + recovery_indemnity(i) }",
        );
        assert!(!p.is_empty());
        assert!(s.money_sums.is_empty());
    }

    #[test]
    fn a_reused_scope_forgets_the_previous_invoice_discount() {
        let ledger = Arc::new(Ledger::new(vec![invoice("F1", "C1", "2026-11-01", "1")]));
        let mut scope = vars(&ledger, "2026-10-05");
        // What the engine sets before a `when` of a policy with a discount.
        scope.set_value("discount", Map::new());
        let view = |ledger: &Arc<Ledger>| InvoiceView {
            ledger: ledger.clone(),
            index: InvoiceId::new(0),
            today: date("2026-10-05"),
        };
        Variables {
            invoice: view(&ledger),
            customer: CustomerView {
                ledger: ledger.clone(),
                index: 0,
                today: date("2026-10-05"),
                last_contacted: None,
            },
            today: date("2026-10-05"),
            sent: vec![],
        }
        .apply(&mut scope);
        assert!(scope.get_value::<()>("discount").is_some());
    }

    #[test]
    fn last_contacted_is_a_date_or_unit_and_reads_as_time() {
        let (_d, s, p) = scripts_with("fn quiet(c) { c.last_contacted == () }\n");
        assert!(p.is_empty(), "{p:?}");
        let at = Location::at(Path::new("rules/p.yaml"), 3, 10);
        let through_a_function = s.compile("quiet(customer)", at.clone()).unwrap();
        assert!(through_a_function.reads_last_contacted && through_a_function.time_dependent);
        let other = s.compile("customer.open_count > 1", at).unwrap();
        assert!(!other.reads_last_contacted && other.per_customer);
        let ledger = Arc::new(Ledger::new(vec![invoice("F1", "C1", "2026-11-01", "1")]));
        let rule =
            "customer.last_contacted == () || days_between(customer.last_contacted, today) >= 7";
        let e = s
            .compile(rule, Location::at(Path::new("rules/p.yaml"), 3, 10))
            .unwrap();
        assert!(e.time_dependent && !e.per_customer && e.reads_last_contacted);
        let holds = |last: Option<&str>| {
            let mut scope = vars(&ledger, "2026-12-10");
            let mut customer: CustomerView = scope.get_value("customer").unwrap();
            customer.last_contacted = last.map(date);
            scope.set_value("customer", customer);
            s.eval_bool(&e, &mut scope).unwrap()
        };
        assert!(holds(None), "never contacted");
        assert!(holds(Some("2026-12-03")), "7 days ago");
        assert!(!holds(Some("2026-12-04")), "6 days ago");
    }

    #[test]
    fn decimals_are_exact_and_functions_callable() {
        let (_d, s, p) = scripts_with(
            "fn fee(invoice) { (invoice.amount_due * 0.1).round(2) }\nfn stamp(today) { today }\n",
        );
        assert!(p.is_empty(), "{p:?}");
        let ledger = Arc::new(Ledger::new(vec![invoice(
            "F1",
            "C1",
            "2026-01-31",
            "100.05",
        )]));
        let mut scope = vars(&ledger, "2026-02-10");
        let loc = Location::at(Path::new("rules/p.yaml"), 3, 10);
        let e = s
            .compile(
                "fee(invoice) == 10.00 && invoice.days_overdue == 10",
                loc.clone(),
            )
            .unwrap();
        assert!(s.eval_bool(&e, &mut scope).unwrap());
        assert!(e.time_dependent);
        assert!(
            !s.compile("fee(invoice) > 1", loc.clone())
                .unwrap()
                .time_dependent
        );
        assert!(
            s.compile("stamp(today) != \"\"", loc.clone())
                .unwrap()
                .time_dependent
        );
        let fee = s
            .call("fee", &|| {
                vec![Dynamic::from(InvoiceView {
                    ledger: ledger.clone(),
                    index: InvoiceId::new(0),
                    today: date("2026-02-10"),
                })]
            })
            .unwrap();
        assert_eq!(fee.as_decimal().unwrap().to_string(), "10.00");
    }

    #[test]
    fn runaway_scripts_are_stopped_and_located() {
        let (_d, s, _) = scripts_with(
            "fn forever() { loop { } }\nfn deep(n) { deep(n + 1) }\nfn boom() { throw \"no\"; }\n",
        );
        let ledger = Arc::new(Ledger::new(vec![invoice("F1", "C1", "2026-01-31", "1")]));
        let mut scope = vars(&ledger, "2026-02-10");
        let loc = Location::at(Path::new("rules/p.yaml"), 7, 11);
        let err = s
            .eval_bool(&s.compile("forever()", loc.clone()).unwrap(), &mut scope)
            .unwrap_err();
        assert!(err.message.contains("too many operations"), "{err}");
        let err = s
            .eval_bool(&s.compile("deep(0)", loc.clone()).unwrap(), &mut scope)
            .unwrap_err();
        assert!(err.message.contains("nested too deep"), "{err}");
        let err = s
            .eval_bool(&s.compile("boom()", loc.clone()).unwrap(), &mut scope)
            .unwrap_err();
        assert!(err.location.file.ends_with("lib.rhai"), "{err}");
        assert_eq!(err.location.line, Some(3));
        let err = s
            .eval_bool(
                &s.compile("invoice.amount", loc.clone()).unwrap(),
                &mut scope,
            )
            .unwrap_err();
        assert!(err.message.contains("must be true or false"), "{err}");
    }

    #[test]
    fn compile_errors_point_into_the_yaml() {
        let s = Scripts::empty();
        let err = s
            .compile("invoice.amount >", Location::at(Path::new("p.yaml"), 4, 13))
            .err()
            .unwrap();
        assert_eq!(err.location.line, Some(4));
        assert!(err.location.col.unwrap() > 13);
        let err = s
            .compile(
                "invoce.amount > 1",
                Location::at(Path::new("p.yaml"), 4, 13),
            )
            .err()
            .unwrap();
        assert!(err.message.contains("invoce"), "{}", err.message);
        assert!(
            s.compile("eval(\"1\")", Location::at(Path::new("p.yaml"), 1, 1))
                .is_err()
        );
    }

    #[test]
    fn bad_script_file_is_reported_with_position() {
        let (_d, _s, p) = scripts_with("fn ok() { 1 }\nfn broken( { }\n");
        let msg = p.0[0].to_string();
        assert!(msg.contains("lib.rhai:2:"), "{msg}");
    }
}
