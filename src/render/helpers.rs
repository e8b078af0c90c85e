//! The Handlebars helpers: money, dates and percentages as the message's
//! language writes them, equality of exact numbers, days overdue, the money
//! rules of late payment, and the functions of `rules/*.rhai`.

use std::sync::Arc;

use chrono::NaiveDate;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, RenderErrorReason, Renderable, ScopedJson,
};
use rhai::Dynamic;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::CURRENT;
use super::context::{amount_json, exact_number};
use crate::locale::{format_date, format_money, format_percent, is_french};
use crate::money;
use crate::rules::{BUILT_IN_FUNCTIONS, INTEREST_RATE_NOT_SET, Scripts};

pub(super) fn registry(html: bool, scripts: &Arc<Scripts>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    if !html {
        hb.register_escape_fn(handlebars::no_escape);
    }
    for (name, equal) in [("eq", true), ("ne", false)] {
        hb.register_helper(name, Box::new(Equality { name, equal }));
    }
    hb.register_helper("money", Box::new(Localized(money_helper)));
    hb.register_helper("date", Box::new(Localized(date_helper)));
    hb.register_helper("percent", Box::new(Localized(percent_helper)));
    hb.register_helper("plural", Box::new(Localized(plural_helper)));
    hb.register_helper("days_overdue", Box::new(DaysOverdueHelper));
    hb.register_helper("late_interest", Box::new(LateInterestHelper));
    hb.register_helper(
        "recovery_indemnity",
        Box::new(RecoveryIndemnityHelper {
            indemnity: scripts.rates().recovery_indemnity,
        }),
    );
    // `Scripts::load` reports and leaves out functions named like these.
    debug_assert!(
        scripts
            .functions
            .iter()
            .all(|(name, _, _)| !BUILT_IN_FUNCTIONS.contains(&name.as_str()))
    );
    for (name, _, _) in &scripts.functions {
        hb.register_helper(
            name,
            Box::new(ScriptHelper {
                scripts: scripts.clone(),
                name: name.clone(),
            }),
        );
    }
    hb
}

fn fail(message: impl Into<String>) -> RenderError {
    RenderErrorReason::Other(message.into()).into()
}

fn root_str<'c>(ctx: &'c Context, path: &[&str]) -> Option<&'c str> {
    let mut v = ctx.data();
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

fn param<'a>(h: &'a Helper, i: usize, helper: &'static str) -> Result<&'a Value, RenderError> {
    match h.param(i) {
        Some(p) if !p.is_value_missing() => Ok(p.value()),
        Some(p) => Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into()),
        None => Err(RenderErrorReason::ParamNotFoundForIndex(helper, i).into()),
    }
}

/// The exact decimal a number or a numeric string holds. A number's text is
/// read as is (no float on the way, no copy).
fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        // A number keeps its text (`arbitrary_precision`), `1e3` included.
        Value::Number(n) => decimal_of_text(n.as_str(), true),
        Value::String(s) => decimal_of_text(s, false),
        _ => None,
    }
}

/// [`decimal_of`] the text of a JSON number (`number`) or string.
pub(super) fn decimal_of_text(text: &str, number: bool) -> Option<Decimal> {
    match number {
        true => money::parse_decimal(text),
        false => Decimal::from_str_exact(text.trim()).ok(),
    }
}

/// A helper that writes its parameters the way the message's language does.
struct Localized(fn(&Helper, &Context, &str) -> Result<String, RenderError>);

impl HelperDef for Localized {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let language = root_str(ctx, &["language"]).unwrap_or("en");
        Ok(ScopedJson::Derived(Value::String((self.0)(
            h, ctx, language,
        )?)))
    }
}

/// `{{money AMOUNT [CURRENCY]}}`: `1 234,56 €` in French, `€1,234.56` in English.
fn money_helper(h: &Helper, ctx: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "money")?;
    let amount = decimal_of(value)
        .ok_or_else(|| fail(format!("money: {} is not an amount", value.render())))?;
    let currency = match h.param(1) {
        // ISO 4217 codes are upper case; `"usd"` is a slip, not another currency.
        Some(_) => param(h, 1, "money")?.render().trim().to_ascii_uppercase(),
        None => root_str(ctx, &["invoice", "currency"])
            .unwrap_or("EUR")
            .to_string(),
    };
    Ok(format_money(amount, &currency, language))
}

/// `{{date DATE}}`: `1er novembre 2026` in French, `November 1, 2026` in English.
fn date_helper(h: &Helper, _: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "date")?;
    let text = value.as_str().unwrap_or_default();
    let date = text.parse::<NaiveDate>().map_err(|_| {
        let shown = value.render();
        // An empty extra column would otherwise read "date:  is not…".
        fail(match h.param(0).and_then(|p| p.relative_path()) {
            Some(path) if shown.is_empty() => format!("date: {path} is empty"),
            _ => format!("date: {shown} is not a YYYY-MM-DD date"),
        })
    })?;
    Ok(format_date(date, language))
}

/// `{{plural COUNT "jour" "jours"}}`: `1 jour`, `2 jours`. French puts 0 and
/// 1 in the singular, English only 1: a statement the day after the due date
/// must not say "1 jours de retard".
fn plural_helper(h: &Helper, _: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "plural")?;
    let count = decimal_of(value)
        .ok_or_else(|| fail(format!("plural: {} is not a number", value.render())))?;
    let word = |i: usize| Ok::<_, RenderError>(param(h, i, "plural")?.render());
    let singular = if is_french(language) {
        count.abs() < Decimal::TWO
    } else {
        count.abs() == Decimal::ONE
    };
    let word = if singular { word(1)? } else { word(2)? };
    Ok(format!("{count} {word}"))
}

/// `{{percent RATE}}`: `12,15 %` in French, `12.15%` in English.
fn percent_helper(h: &Helper, _: &Context, language: &str) -> Result<String, RenderError> {
    let value = param(h, 0, "percent")?;
    let rate = decimal_of(value)
        .ok_or_else(|| fail(format!("percent: {} is not a number", value.render())))?;
    Ok(format_percent(rate, language))
}

/// `eq` and `ne`, in place of Handlebars' own, whose JSON equality tells
/// 1234.00 from 1234 (exact numbers keep their text). When one side is a
/// number and the other a number or a numeric string (`"1234"`, an extra
/// column), they compare as decimals; anything else compares as JSON, so two
/// strings such as postcodes `"01000"` and `"1000"` stay different.
struct Equality {
    name: &'static str,
    equal: bool,
}

impl Equality {
    fn holds(&self, h: &Helper) -> Result<bool, RenderError> {
        let (x, y) = (param(h, 0, self.name)?, param(h, 1, self.name)?);
        // Two strings are never parsed: they compare as text whatever they hold.
        let decimals = (x.is_number() || y.is_number())
            .then(|| decimal_of(x).zip(decimal_of(y)))
            .flatten();
        let same = match decimals {
            Some((a, b)) => a == b,
            None => x == y,
        };
        Ok(same == self.equal)
    }
}

impl HelperDef for Equality {
    /// Also a block, as the built-in is: `{{#eq a b}}…{{else}}…{{/eq}}`.
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let holds = self.holds(h)?;
        if !h.is_block() {
            out.write(if holds { "true" } else { "false" })?;
            return Ok(());
        }
        match if holds { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }

    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(ScopedJson::Derived(Value::Bool(self.holds(h)?)))
    }
}

/// `{{days_overdue invoice}}`: days since the due date as of the message date.
struct DaysOverdueHelper;
impl HelperDef for DaysOverdueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let inv = param(h, 0, "days_overdue")?;
        let due = inv
            .get("due_date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<NaiveDate>().ok());
        let today = root_str(ctx, &["today"]).and_then(|d| d.parse::<NaiveDate>().ok());
        match (due, today) {
            (Some(due), Some(today)) => Ok(ScopedJson::Derived(json!((today - due).num_days()))),
            _ => Err(fail(
                "days_overdue: expects an invoice, as in {{days_overdue invoice}}",
            )),
        }
    }
}

/// The date a message is written on: the root `today`.
fn message_date(ctx: &Context) -> Result<NaiveDate, RenderError> {
    root_str(ctx, &["today"])
        .and_then(|d| d.parse::<NaiveDate>().ok())
        .ok_or_else(|| fail("the context has no `today` to compute from"))
}

/// What the money rules read of an invoice-shaped object of the context:
/// the message's `invoice`, or any of the `invoices` of a grouped message.
fn invoice_param<'v>(h: &'v Helper, helper: &'static str) -> Result<&'v Value, RenderError> {
    let invoice = param(h, 0, helper)?;
    if invoice.get("due_date").is_none() || invoice.get("amount_due").is_none() {
        return Err(fail(format!(
            "{helper}: expects an invoice (with its due_date and amount_due), as in {{{{{helper} invoice}}}}, not {}",
            invoice.render()
        )));
    }
    Ok(invoice)
}

/// `{{late_interest INVOICE RATE}}`: the interest on the invoice's amount
/// due at RATE percent a year, as of the message date; an exact amount.
struct LateInterestHelper;
impl HelperDef for LateInterestHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let invoice = invoice_param(h, "late_interest")?;
        // Usually `rates.late_interest_annual`, absent when the config has no rate.
        if let Some(p) = h.param(1)
            && p.is_value_missing()
            && p.relative_path()
                .is_some_and(|path| path.ends_with("late_interest_annual"))
        {
            return Err(fail(format!("late_interest: {INTEREST_RATE_NOT_SET}")));
        }
        let value = param(h, 1, "late_interest")?;
        let not_a_rate = || {
            fail(format!(
                "late_interest: the annual rate must be a percentage that is not negative, not {}",
                value.render()
            ))
        };
        let rate = decimal_of(value).ok_or_else(not_a_rate)?;
        let amount_due = invoice.get("amount_due").and_then(decimal_of);
        let due_date = invoice
            .get("due_date")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<NaiveDate>().ok());
        let (Some(amount_due), Some(due_date)) = (amount_due, due_date) else {
            return Err(fail(format!(
                "late_interest: {} has no amount_due or due_date to compute from",
                invoice.render()
            )));
        };
        let interest = money::late_interest(amount_due, due_date, message_date(ctx)?, rate)
            .map_err(|e| match e {
                money::InterestError::NegativeRate => not_a_rate(),
                money::InterestError::TooLarge => fail("late_interest: the amount is too large"),
            })?;
        Ok(ScopedJson::Derived(amount_json(interest)))
    }
}

/// `{{recovery_indemnity INVOICE}}`: the config's indemnity, or 0.00 for an
/// invoice or customer tagged b2c; an exact amount.
struct RecoveryIndemnityHelper {
    indemnity: Decimal,
}
impl HelperDef for RecoveryIndemnityHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let invoice = invoice_param(h, "recovery_indemnity")?;
        // Its customer's tags, found in the ledger by the invoice number;
        // the object's own tags for an invoice the ledger does not have.
        let number = invoice.get("number").and_then(Value::as_str);
        let indemnity = CURRENT.with(|current| match (&*current.borrow(), number) {
            (Some((view, _)), Some(number)) if let Some(i) = view.ledger.find(number) => {
                let tags = view.ledger.customer(i).tags.iter();
                money::recovery_indemnity(self.indemnity, tags.map(|t| &**t))
            }
            _ => {
                let own = invoice.get("tags").and_then(Value::as_array);
                let tags = own.into_iter().flatten().filter_map(Value::as_str);
                money::recovery_indemnity(self.indemnity, tags)
            }
        });
        Ok(ScopedJson::Derived(amount_json(indemnity)))
    }
}

/// A function of `rules/*.rhai` called from a template.
struct ScriptHelper {
    scripts: Arc<Scripts>,
    name: String,
}
impl HelperDef for ScriptHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let current = CURRENT.with(|c| c.borrow().clone());
        /// An argument: the message's invoice or customer, typed, or a value.
        enum Arg<'v> {
            View(Dynamic),
            Value(&'v Value),
        }
        let mut given = Vec::with_capacity(h.params().len());
        for (i, p) in h.params().iter().enumerate() {
            let path = p.relative_path().map(String::as_str);
            given.push(match (path, &current) {
                (Some("invoice"), Some((inv, _))) => Arg::View(Dynamic::from(inv.clone())),
                (Some("customer"), Some((_, cust))) => Arg::View(Dynamic::from(cust.clone())),
                _ => Arg::Value(param(h, i, "script function")?),
            });
        }
        let args = || {
            given
                .iter()
                .map(|arg| match arg {
                    Arg::View(view) => view.clone(),
                    Arg::Value(value) => to_dynamic(value),
                })
                .collect()
        };
        let result = self.scripts.call(&self.name, &args).map_err(|e| {
            let failed = fail(format!("{}: {}", self.name, e.message));
            super::SCRIPT_FAILURE.with(|f| *f.borrow_mut() = Some(e));
            failed
        })?;
        Ok(ScopedJson::Derived(from_dynamic(result)))
    }
}

fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        // What a script would get for the same value: an integer stays an
        // INT (`days_overdue`, `open_count`), an amount such as 1234.00 is an
        // exact Decimal, never a float nor a string.
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => decimal_of(v).map_or(Dynamic::UNIT, Dynamic::from),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from(a.iter().map(to_dynamic).collect::<rhai::Array>()),
        Value::Object(o) => Dynamic::from(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect::<rhai::Map>(),
        ),
    }
}

pub(super) fn from_dynamic(d: Dynamic) -> Value {
    // A script's decimal is a number to templates too, like the amounts:
    // `{{#if (total_claimed invoice)}}` is false for 0.00.
    if let Ok(dec) = d.as_decimal() {
        return exact_number(dec.to_string());
    }
    if let Ok(i) = d.as_int() {
        return json!(i);
    }
    if let Ok(b) = d.as_bool() {
        return json!(b);
    }
    if d.is_unit() {
        return Value::Null;
    }
    if d.is_string() {
        return Value::String(d.into_string().unwrap_or_default());
    }
    if d.is_array() {
        return Value::Array(
            d.into_array()
                .unwrap_or_default()
                .into_iter()
                .map(from_dynamic)
                .collect(),
        );
    }
    Value::String(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rates;
    use crate::render::context::rates_json;

    /// `source` rendered as text with the built-in helpers and no script.
    fn render_text(source: &str, data: &Value) -> Result<String, String> {
        registry(false, &Arc::new(Scripts::empty()))
            .render_template(source, data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn money_helpers_work_on_every_invoice_of_a_grouped_message() {
        let data = json!({
            "today": "2026-12-01",
            "rates": rates_json(&Rates {
                late_interest_annual: Some("12.15".parse().unwrap()),
                recovery_indemnity: "40".parse().unwrap(),
            }),
            "invoices": [
                {"number": "F1", "due_date": "2026-11-01", "amount_due": amount_json("1000".parse().unwrap()), "tags": []},
                {"number": "F2", "due_date": "2026-12-01", "amount_due": amount_json("500".parse().unwrap()), "tags": ["b2c"]},
            ],
        });
        let each = "{{#each invoices}}{{number}}: {{late_interest this @root.rates.late_interest_annual}} + {{recovery_indemnity this}}\n{{/each}}";
        assert_eq!(
            render_text(each, &data).unwrap(),
            "F1: 9.99 + 40.00\nF2: 0.00 + 0.00\n"
        );
        // An integer rate is a rate; 0 is no interest.
        assert_eq!(
            render_text(
                "{{late_interest invoices.[0] 12}} {{late_interest invoices.[0] 0}}",
                &data
            )
            .unwrap(),
            "9.86 0.00"
        );
        let err = render_text("{{late_interest rates 12}}", &data).unwrap_err();
        assert!(err.contains("late_interest: expects an invoice"), "{err}");
    }

    #[test]
    fn plural_puts_one_in_the_singular_and_zero_too_in_french() {
        let said = |language: &str, n: i64| {
            let data = json!({"language": language, "n": n});
            render_text(r#"{{plural n "day" "days"}}"#, &data).unwrap()
        };
        assert_eq!(said("fr", 1), "1 day");
        assert_eq!(said("fr", 0), "0 day");
        assert_eq!(said("fr", 2), "2 days");
        assert_eq!(said("en", 1), "1 day");
        assert_eq!(said("en", 0), "0 days");
        assert_eq!(said("en", 30), "30 days");
        let err =
            render_text(r#"{{plural language "a" "b"}}"#, &json!({"language": "fr"})).unwrap_err();
        assert!(err.contains("plural: fr is not a number"), "{err}");
    }

    #[test]
    fn a_missing_interest_rate_names_the_config_key() {
        let data = json!({
            "today": "2026-12-01",
            "rates": rates_json(&Rates::default()),
            "invoice": {"number": "F1", "due_date": "2026-11-01", "amount_due": amount_json(Decimal::ONE_HUNDRED), "tags": []},
        });
        assert_eq!(
            data["rates"],
            json!({"recovery_indemnity": amount_json(Decimal::new(40, 0))})
        );
        let err = render_text(
            "{{late_interest invoice rates.late_interest_annual}}",
            &data,
        )
        .unwrap_err();
        assert!(
            err.contains("late_interest: rates.late_interest_annual is not set in relance.yaml"),
            "{err}"
        );
        let err = render_text("{{late_interest invoice -1}}", &data).unwrap_err();
        assert!(err.contains("not negative"), "{err}");
    }

    #[test]
    fn amounts_are_exact_numbers_in_the_context() {
        use handlebars::JsonTruthy;
        let due = amount_json(Decimal::new(1234, 0));
        assert_eq!(due.to_string(), "1234.00");
        assert_eq!(decimal_of(&due), Some(Decimal::new(123400, 2)));
        assert!(!amount_json(Decimal::ZERO).is_truthy(false));
        assert!(amount_json(Decimal::new(1, 2)).is_truthy(false));
        // A script gets a Decimal, as for `invoice.amount_due` in a script.
        assert_eq!(to_dynamic(&due).as_decimal(), Ok(Decimal::new(123400, 2)));
        assert_eq!(to_dynamic(&json!(7)).as_int(), Ok(7));
        assert_eq!(
            from_dynamic(Dynamic::from(Decimal::new(1274, 0))),
            json!(1274)
        );
    }

    /// `source` rendered by an HTML registry without script helpers.
    fn render_html(source: &str, data: &Value) -> String {
        registry(true, &Arc::new(Scripts::empty()))
            .render_template(source, data)
            .unwrap()
    }

    #[test]
    fn eq_and_ne_compare_numbers_as_decimals() {
        let data = json!({"due": amount_json(Decimal::new(1234, 0)), "zip": "01000"});
        for (source, expected) in [
            ("{{eq due 1234}}", "true"),
            ("{{ne due 1234}}", "false"),
            ("{{eq due \"1234.000\"}}", "true"),
            ("{{eq due 1234.01}}", "false"),
            ("{{#ne due 1234}}yes{{else}}no{{/ne}}", "no"),
            ("{{eq zip \"1000\"}}", "false"),
            ("{{eq zip 1000}}", "true"),
            ("{{eq zip \"01000\"}}", "true"),
        ] {
            assert_eq!(render_html(source, &data), expected, "{source}");
        }
    }
}
