//! `relance report`: where the money stands on a date (open amounts aged by days past due, disputed, held, DSO; per customer), the coming days' reminders and the customers to watch, as a table, JSON or one self-contained HTML page.

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{Datelike, NaiveDate};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Serialize, Serializer};

use crate::calendar::add_days;
use crate::impact::HORIZON_DAYS;
use crate::journal::JournalView;
use crate::locale::{format_money, format_number, is_french, money};
use crate::model::{Payments, Status};
use crate::project::Project;
use crate::text::{clean_line, table};

/// The days of `invoiced_90_days`, and the factor of DSO.
const DSO_DAYS: i64 = 90;

/// What `relance report --format json` prints; the HTML page and the table
/// show the same values.
#[derive(Debug, Clone, Serialize)]
pub struct Receivables {
    pub as_of: NaiveDate,
    /// By currency code, in alphabetical order: amounts of different
    /// currencies are never added up.
    pub currencies: BTreeMap<String, CurrencyTotals>,
    /// Each customer with open invoices, once per currency: the largest
    /// open amount first.
    pub customers: Vec<CustomerReceivables>,
    /// The reminders of the next 14 days from `as_of`, by day, policy and stage.
    pub upcoming: Vec<Upcoming>,
    /// Customers who paid at least half of their settled invoices late.
    pub to_watch: Vec<ToWatch>,
}

/// The amounts of one currency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CurrencyTotals {
    /// What is due on open invoices: the buckets' total. Held invoices are
    /// in it; disputed ones are not.
    pub open: Total,
    pub buckets: Buckets,
    /// What is due on disputed invoices.
    pub disputed: Total,
    /// What is due on open invoices a hold of `rules/holds.yaml` holds on `as_of`.
    pub held: Total,
    /// The amounts of the invoices issued in the 90 days up to `as_of`
    /// (`as_of` included), void ones excluded; credit notes count negative.
    pub invoiced_90_days: Total,
    /// Days sales outstanding: `open` ÷ `invoiced_90_days` × 90, to one
    /// decimal (half away from zero); `None` when nothing was invoiced, or
    /// when either total is too large to compute.
    #[serde(serialize_with = "days")]
    pub dso: Option<Decimal>,
    /// The totals above (JSON names) too large to compute exactly, shown as
    /// `null`: the sum passes what a decimal holds. Absent when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub too_large: Vec<&'static str>,
}

impl CurrencyTotals {
    /// The names of the totals too large to compute (see [`CurrencyTotals::too_large`]).
    fn overflowed(&self) -> Vec<&'static str> {
        let totals = [
            ("open", self.open),
            ("disputed", self.disputed),
            ("held", self.held),
            ("invoiced_90_days", self.invoiced_90_days),
        ];
        totals
            .into_iter()
            .chain(self.buckets.all())
            .filter(|(_, total)| total.exact().is_none())
            .map(|(name, _)| name)
            .collect()
    }
}

/// A sum of amounts, exact or not at all: once it passes what a decimal
/// holds (about 7.9 × 10²⁸) it is too large, and is shown as such (JSON
/// `null`), never as a wrong number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Total(Option<Decimal>);

impl Default for Total {
    fn default() -> Total {
        Total(Some(Decimal::ZERO))
    }
}

impl Total {
    fn add(&mut self, amount: Decimal) {
        self.0 = self.0.and_then(|total| total.checked_add(amount));
    }

    /// The total, `None` when it is too large to compute.
    pub fn exact(self) -> Option<Decimal> {
        self.0
    }

    /// As the table writes it: the amount, or `too large`.
    fn text(self) -> String {
        self.0.map_or_else(|| TOO_LARGE.to_string(), money)
    }
}

impl Serialize for Total {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(amount) => s.serialize_str(&money(amount)),
            None => s.serialize_none(),
        }
    }
}

/// A total too large to compute, in the table.
const TOO_LARGE: &str = "too large";

/// What is due on open invoices, by days past their due date on `as_of`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Buckets {
    /// Not due yet, or due on `as_of`.
    pub not_due: Total,
    #[serde(rename = "1-30")]
    pub days_1_30: Total,
    #[serde(rename = "31-60")]
    pub days_31_60: Total,
    #[serde(rename = "61-90")]
    pub days_61_90: Total,
    pub over_90: Total,
}

impl Buckets {
    /// The bucket of an invoice `days_late` days past due.
    fn of(&mut self, days_late: i64) -> &mut Total {
        match days_late {
            ..=0 => &mut self.not_due,
            1..=30 => &mut self.days_1_30,
            31..=60 => &mut self.days_31_60,
            61..=90 => &mut self.days_61_90,
            _ => &mut self.over_90,
        }
    }

    /// The buckets in order, with their JSON names.
    pub fn all(&self) -> [(&'static str, Total); 5] {
        [
            ("not_due", self.not_due),
            ("1-30", self.days_1_30),
            ("31-60", self.days_31_60),
            ("61-90", self.days_61_90),
            ("over_90", self.over_90),
        ]
    }

    fn add(&mut self, days_late: i64, due: Decimal) -> Decimal {
        self.of(days_late).add(due);
        due
    }
}

/// One customer's open invoices in one currency.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerReceivables {
    pub customer_id: String,
    pub customer_name: String,
    pub currency: String,
    pub open: Total,
    pub buckets: Buckets,
    /// Days past due of its oldest open invoice; 0 when none is late.
    pub oldest_days_late: i64,
}

/// How many reminders of one stage go out on one day.
#[derive(Debug, Clone, Serialize)]
pub struct Upcoming {
    pub date: NaiveDate,
    pub policy: String,
    pub stage: String,
    pub count: usize,
}

/// A customer who pays late as a habit: a candidate for a deposit or a
/// direct debit.
#[derive(Debug, Clone, Serialize)]
pub struct ToWatch {
    pub customer_id: String,
    pub customer_name: String,
    /// Its invoices with a paid date.
    pub settled: i64,
    /// Those paid after their due date.
    pub paid_late: i64,
    /// Days between due date and payment over the settled invoices (early
    /// counts 0): the `customer.avg_days_late` scripts see.
    #[serde(serialize_with = "plain")]
    pub average_days_late: Decimal,
}

fn plain<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

fn days<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

/// The receivables of `project` on `as_of`, and its reminders of the 14
/// days from `as_of` planned against `journal` as `preview` plans them.
/// The feeds are read as they are now: `as_of` sets the day invoices are
/// aged on, the 90 days of DSO and the holds in force.
pub fn receivables(project: &Project, journal: &JournalView, as_of: NaiveDate) -> Receivables {
    let ledger = &project.ledger;
    let holds = &project.rulebook.holds;
    let window_start = add_days(as_of, 1 - DSO_DAYS);
    let mut currencies: BTreeMap<String, CurrencyTotals> = BTreeMap::new();
    let mut customers: BTreeMap<(usize, &str), CustomerReceivables> = BTreeMap::new();
    let mut payments: Vec<Payments> = vec![Payments::default(); ledger.customers.len()];
    for (i, inv) in ledger.invoices.iter().enumerate() {
        let customer = ledger.customer_of[i] as usize;
        if let Some(paid) = inv.paid_date {
            payments[customer].add(inv.due_date, paid);
        }
        let invoiced =
            inv.status != Status::Void && (window_start..=as_of).contains(&inv.issue_date);
        let disputed = inv.status == Status::Disputed && inv.amount_due() > Decimal::ZERO;
        if !(inv.is_open() || invoiced || disputed) {
            continue;
        }
        let totals = currencies.entry(inv.currency.to_string()).or_default();
        if invoiced {
            totals.invoiced_90_days.add(inv.amount);
        }
        if disputed {
            totals.disputed.add(inv.amount_due());
        }
        if !inv.is_open() {
            continue;
        }
        let late = inv.days_overdue(as_of);
        let due = totals.buckets.add(late, inv.amount_due());
        totals.open.add(due);
        if holds.active(inv, as_of).is_some() {
            totals.held.add(due);
        }
        let row = customers
            .entry((customer, &inv.currency))
            .or_insert_with(|| CustomerReceivables {
                customer_id: inv.bill_to.id.to_string(),
                customer_name: ledger.customers[customer].name.to_string(),
                currency: inv.currency.to_string(),
                open: Total::default(),
                buckets: Buckets::default(),
                oldest_days_late: 0,
            });
        row.buckets.add(late, due);
        row.open.add(due);
        row.oldest_days_late = row.oldest_days_late.max(late);
    }
    for totals in currencies.values_mut() {
        totals.dso = totals
            .open
            .exact()
            .zip(totals.invoiced_90_days.exact())
            .and_then(|(open, invoiced)| dso(open, invoiced));
        totals.too_large = totals.overflowed();
    }
    let mut customers: Vec<CustomerReceivables> = customers.into_values().collect();
    customers.sort_by(|a, b| {
        (&a.currency, std::cmp::Reverse(a.open), &a.customer_id).cmp(&(
            &b.currency,
            std::cmp::Reverse(b.open),
            &b.customer_id,
        ))
    });
    let mut to_watch: Vec<ToWatch> = ledger
        .customers
        .iter()
        .zip(&payments)
        .filter(|(_, p)| p.settled() > 0 && p.late().saturating_mul(2) >= p.settled())
        .map(|(c, p)| ToWatch {
            customer_id: c.id.to_string(),
            customer_name: c.name.to_string(),
            settled: p.settled(),
            paid_late: p.late(),
            average_days_late: c.avg_days_late,
        })
        .collect();
    to_watch.sort_by(|a, b| {
        (b.average_days_late, b.paid_late, &a.customer_id).cmp(&(
            a.average_days_late,
            a.paid_late,
            &b.customer_id,
        ))
    });
    Receivables {
        as_of,
        currencies,
        customers,
        upcoming: upcoming(project, journal, as_of),
        to_watch,
    }
}

/// DSO: `open` × 90 ÷ `invoiced`, multiplied first so that nothing is lost
/// to an early rounding, then rounded to one decimal, half away from zero
/// (45.25 days is 45.3).
fn dso(open: Decimal, invoiced: Decimal) -> Option<Decimal> {
    if invoiced <= Decimal::ZERO {
        return None;
    }
    let days = open
        .checked_mul(Decimal::from(DSO_DAYS))?
        .checked_div(invoiced)?;
    let mut rounded = days.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(1);
    Some(rounded)
}

/// The plan of the 14 days from `as_of`, counted by day, policy and stage
/// (stages in their policy's order).
fn upcoming(project: &Project, journal: &JournalView, as_of: NaiveDate) -> Vec<Upcoming> {
    let plan = project.plan(as_of, HORIZON_DAYS, journal);
    let mut counts: BTreeMap<(NaiveDate, &str, usize), (&str, usize)> = BTreeMap::new();
    for r in &plan.reminders {
        let policy = &project.rulebook.policies[r.policy];
        let stage = &policy.stages[r.stage];
        counts
            .entry((r.date, &policy.name, r.stage.index()))
            .or_insert((&stage.id, 0))
            .1 += 1;
    }
    counts
        .into_iter()
        .map(|((date, policy, _), (stage, count))| Upcoming {
            date,
            policy: policy.to_string(),
            stage: stage.to_string(),
            count,
        })
        .collect()
}

/// The report as tables for people (amounts exact, as in JSON).
pub fn write_table(out: &mut dyn Write, r: &Receivables) -> io::Result<()> {
    writeln!(out, "Receivables as of {}\n", r.as_of)?;
    let bucket_titles = ["NOT DUE", "1-30", "31-60", "61-90", "OVER 90"];
    let mut header = vec!["CURRENCY", "OPEN"];
    header.extend(bucket_titles);
    header.extend(["DISPUTED", "HELD", "INVOICED 90 DAYS", "DSO"]);
    let rows: Vec<Vec<String>> = r
        .currencies
        .iter()
        .map(|(currency, t)| {
            let mut row = vec![currency.clone(), t.open.text()];
            row.extend(t.buckets.all().iter().map(|(_, a)| a.text()));
            row.extend([
                t.disputed.text(),
                t.held.text(),
                t.invoiced_90_days.text(),
                t.dso.map_or_else(|| "-".to_string(), |d| d.to_string()),
            ]);
            row
        })
        .collect();
    section(out, &header, rows)?;
    for (currency, t) in &r.currencies {
        if !t.too_large.is_empty() {
            writeln!(
                out,
                "{currency}: {} cannot be computed exactly: the sum passes what a decimal holds \
                 (about 7.9e28), so no number is shown",
                t.too_large.join(", ")
            )?;
        }
    }

    writeln!(out, "\nCustomers")?;
    let mut header = vec!["CUSTOMER", "NAME", "CURRENCY", "OPEN"];
    header.extend(bucket_titles);
    header.push("OLDEST DAYS LATE");
    let rows = r
        .customers
        .iter()
        .map(|c| {
            let mut row = vec![
                clean_line(&c.customer_id),
                clean_line(&c.customer_name),
                c.currency.clone(),
                c.open.text(),
            ];
            row.extend(c.buckets.all().iter().map(|(_, a)| a.text()));
            row.push(c.oldest_days_late.to_string());
            row
        })
        .collect();
    section(out, &header, rows)?;

    let last = add_days(r.as_of, i64::from(HORIZON_DAYS) - 1);
    writeln!(out, "\nReminders from {} to {last}", r.as_of)?;
    let rows = r
        .upcoming
        .iter()
        .map(|u| {
            vec![
                u.date.to_string(),
                u.policy.clone(),
                u.stage.clone(),
                u.count.to_string(),
            ]
        })
        .collect();
    section(out, &["DATE", "POLICY", "STAGE", "REMINDERS"], rows)?;

    writeln!(
        out,
        "\nTo watch: paid at least half of their settled invoices late (a deposit or direct debit?)"
    )?;
    let rows = r
        .to_watch
        .iter()
        .map(|w| {
            vec![
                clean_line(&w.customer_id),
                clean_line(&w.customer_name),
                w.settled.to_string(),
                w.paid_late.to_string(),
                w.average_days_late.to_string(),
            ]
        })
        .collect();
    section(
        out,
        &[
            "CUSTOMER",
            "NAME",
            "SETTLED",
            "PAID LATE",
            "AVERAGE DAYS LATE",
        ],
        rows,
    )
}

/// A table, or `none` without rows.
fn section(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    match rows.is_empty() {
        true => writeln!(out, "none"),
        false => table(out, header, &rows),
    }
}

/// The words of the page in French or English.
struct Words {
    french: bool,
    title: &'static str,
    as_of: &'static str,
    upcoming: &'static str,
    no_reminder: &'static str,
    aging: &'static str,
    totals: &'static str,
    currency: &'static str,
    open: &'static str,
    disputed: &'static str,
    held: &'static str,
    invoiced: &'static str,
    dso: &'static str,
    customers: &'static str,
    customer: &'static str,
    oldest: &'static str,
    to_watch: &'static str,
    to_watch_why: &'static str,
    settled: &'static str,
    paid_late: &'static str,
    average_late: &'static str,
    none: &'static str,
    reminders: &'static str,
    /// A total too large to compute.
    too_large: &'static str,
    /// French puts a space before a colon.
    colon: &'static str,
    buckets: [&'static str; 5],
}

impl Words {
    fn of(language: &str) -> Words {
        match is_french(language) {
            true => Words {
                french: true,
                title: "Encours clients",
                as_of: "au",
                upcoming: "Relances des 14 prochains jours",
                no_reminder: "Aucune relance prévue sur ces 14 jours.",
                aging: "Ancienneté des montants dus",
                totals: "Totaux par devise",
                currency: "Devise",
                open: "Encours",
                disputed: "En litige",
                held: "Suspendu",
                invoiced: "Facturé sur 90 jours",
                dso: "DSO (jours)",
                customers: "Clients",
                customer: "Client",
                oldest: "Retard le plus ancien (jours)",
                to_watch: "À surveiller",
                to_watch_why: "Clients qui ont payé en retard au moins la moitié de leurs factures réglées : \
                               candidats à un acompte ou au prélèvement.",
                settled: "Factures réglées",
                paid_late: "Payées en retard",
                average_late: "Retard moyen (jours)",
                none: "Aucun.",
                reminders: "relance(s)",
                too_large: "trop grand pour être calculé",
                colon: " : ",
                buckets: [
                    "Non échu",
                    "1 à 30 j",
                    "31 à 60 j",
                    "61 à 90 j",
                    "Plus de 90 j",
                ],
            },
            false => Words {
                french: false,
                title: "Receivables",
                as_of: "as of",
                upcoming: "Reminders of the next 14 days",
                no_reminder: "No reminder planned in these 14 days.",
                aging: "Aging of the amounts due",
                totals: "Totals by currency",
                currency: "Currency",
                open: "Open",
                disputed: "Disputed",
                held: "Held",
                invoiced: "Invoiced in 90 days",
                dso: "DSO (days)",
                customers: "Customers",
                customer: "Customer",
                oldest: "Oldest days late",
                to_watch: "To watch",
                to_watch_why: "Customers who paid at least half of their settled invoices late: \
                               candidates for a deposit or a direct debit.",
                settled: "Settled invoices",
                paid_late: "Paid late",
                average_late: "Average days late",
                none: "None.",
                reminders: "reminder(s)",
                too_large: "too large to compute",
                colon: ": ",
                buckets: [
                    "Not due",
                    "1–30 days",
                    "31–60 days",
                    "61–90 days",
                    "Over 90 days",
                ],
            },
        }
    }

    /// `7 déc.` or `Dec 7`: a day of the chart.
    fn day(&self, date: NaiveDate) -> String {
        const FR: [&str; 12] = [
            "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
            "nov.", "déc.",
        ];
        const EN: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = date.month0() as usize;
        match self.french {
            true => format!("{} {}", date.day(), FR[month]),
            false => format!("{} {}", EN[month], date.day()),
        }
    }
}

/// The styles of the report: scoped to its section, so that the console
/// can embed it in a page of its own.
const CSS: &str = "\
.rv{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2430;max-width:1100px;margin:0 auto;padding:1rem;line-height:1.4}
.rv h1{font-size:1.4rem;margin:0 0 1rem}
.rv h2{font-size:1.1rem;margin:1.8rem 0 .6rem;border-bottom:1px solid #d8dde6;padding-bottom:.2rem}
.rv h3{font-size:1rem;margin:.8rem 0 .3rem}
.rv table{border-collapse:collapse;width:100%;font-size:.9rem}
.rv th,.rv td{padding:.3rem .5rem;border-bottom:1px solid #e6e9ef;text-align:left;vertical-align:top}
.rv th{font-weight:600;color:#3a4454}
.rv .n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.rv .charts{display:flex;flex-wrap:wrap;gap:1.5rem}
.rv figure{margin:0}
.rv svg{max-width:100%;height:auto}
.rv .legend{font-size:.85rem;margin:.3rem 0}
.rv .legend span{margin-right:1rem;white-space:nowrap}
.rv .muted{color:#5b6575}
@media print{.rv{max-width:none;padding:0;font-size:10pt}.rv h2{break-after:avoid}.rv figure,.rv tr{break-inside:avoid}.rv a{color:inherit;text-decoration:none}}
";

/// The colours of the stages in the chart of the coming days.
const STAGE_COLOURS: [&str; 8] = [
    "#2f6fb3", "#e08a1e", "#c23b3b", "#3d9a5b", "#7b52ab", "#8c6d3f", "#d15ca8", "#5f7480",
];
/// The colours of the buckets, from not due to over 90 days.
const BUCKET_COLOURS: [&str; 5] = ["#3d9a5b", "#a3b92b", "#e0b21e", "#e07a1e", "#c23b3b"];

/// The overview as one self-contained HTML page (inline CSS and SVG charts; prints well), in `language` ("fr"/"en").
pub fn receivables_html(r: &Receivables, language: &str) -> String {
    let words = Words::of(language);
    let lang = if words.french { "fr" } else { "en" };
    html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (words.title) " " (words.as_of) " " (r.as_of) }
                style { "body{margin:0;background:#fff}" }
            }
            body { (fragment(r, &words, language)) }
        }
    }
    .into_string()
}

/// The same body without `<html>`/`<head>`, for the console to embed in its overview page.
pub fn receivables_fragment(r: &Receivables, language: &str) -> String {
    fragment(r, &Words::of(language), language).into_string()
}

fn fragment(r: &Receivables, w: &Words, language: &str) -> Markup {
    let money_of = |amount: Total, currency: &str| format_total(amount, currency, language, w);
    html! {
        section.rv {
            style { (PreEscaped(CSS)) }
            h1 { (w.title) " " span.muted { (w.as_of) " " (crate::locale::format_date(r.as_of, language)) } }
            h2 { (w.upcoming) }
            (upcoming_chart(r, w))
            h2 { (w.aging) }
            @if r.currencies.is_empty() {
                p.muted { (w.none) }
            }
            div.charts {
                @for (currency, totals) in &r.currencies {
                    figure {
                        h3 { (currency) " · " (w.open) (w.colon) (money_of(totals.open, currency)) }
                        (aging_chart(&totals.buckets, currency, w, language))
                    }
                }
            }
            h2 { (w.totals) }
            @if r.currencies.is_empty() {
                p.muted { (w.none) }
            } @else {
                table {
                    thead { tr {
                        th { (w.currency) } th.n { (w.open) }
                        @for title in w.buckets { th.n { (title) } }
                        th.n { (w.disputed) } th.n { (w.held) } th.n { (w.invoiced) } th.n { (w.dso) }
                    } }
                    tbody {
                        @for (currency, t) in &r.currencies {
                            tr {
                                td { (currency) }
                                td.n { (money_of(t.open, currency)) }
                                @for (_, amount) in t.buckets.all() { td.n { (money_of(amount, currency)) } }
                                td.n { (money_of(t.disputed, currency)) }
                                td.n { (money_of(t.held, currency)) }
                                td.n { (money_of(t.invoiced_90_days, currency)) }
                                td.n { (t.dso.map_or_else(|| "—".to_string(), |d| format_number(d, language))) }
                            }
                        }
                    }
                }
            }
            h2 { (w.customers) }
            @if r.customers.is_empty() {
                p.muted { (w.none) }
            } @else {
                table {
                    thead { tr {
                        th { (w.customer) } th { (w.currency) } th.n { (w.open) }
                        @for title in w.buckets { th.n { (title) } }
                        th.n { (w.oldest) }
                    } }
                    tbody {
                        @for c in &r.customers {
                            tr {
                                td { (c.customer_name) " " span.muted { "(" (c.customer_id) ")" } }
                                td { (c.currency) }
                                td.n { (money_of(c.open, &c.currency)) }
                                @for (_, amount) in c.buckets.all() { td.n { (money_of(amount, &c.currency)) } }
                                td.n { (c.oldest_days_late) }
                            }
                        }
                    }
                }
            }
            h2 { (w.to_watch) }
            p.muted { (w.to_watch_why) }
            @if r.to_watch.is_empty() {
                p.muted { (w.none) }
            } @else {
                table {
                    thead { tr {
                        th { (w.customer) } th.n { (w.settled) } th.n { (w.paid_late) } th.n { (w.average_late) }
                    } }
                    tbody {
                        @for t in &r.to_watch {
                            tr {
                                td { (t.customer_name) " " span.muted { "(" (t.customer_id) ")" } }
                                td.n { (t.settled) }
                                td.n { (t.paid_late) }
                                td.n { (format_number(t.average_days_late, language)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A total as the page writes it: the amount, or that it is too large to compute.
fn format_total(amount: Total, currency: &str, language: &str, w: &Words) -> String {
    match amount.exact() {
        Some(amount) => format_money(amount, currency, language),
        None => w.too_large.to_string(),
    }
}

/// One day's bar of the chart of the coming days.
struct DayBar {
    day: NaiveDate,
    /// Its left edge.
    x: i64,
    total: usize,
    /// Its top, where its total is written.
    top: i64,
    /// Each stage's part, bottom up: top, height, colour, tooltip.
    parts: Vec<(i64, i64, &'static str, String)>,
}

/// A stacked bar per day of the 14 from `as_of`: its reminders by stage,
/// each stage in its colour, with a legend.
fn upcoming_chart(r: &Receivables, w: &Words) -> Markup {
    const WIDTH: i64 = 760;
    const HEIGHT: i64 = 230;
    const LEFT: i64 = 40;
    const BOTTOM: i64 = 34;
    const TOP: i64 = 14;
    let mut stages: Vec<&str> = Vec::new();
    for u in &r.upcoming {
        if !stages.contains(&u.stage.as_str()) {
            stages.push(&u.stage);
        }
    }
    let colour = |stage: &str| {
        let i = stages.iter().position(|s| *s == stage).unwrap_or(0);
        STAGE_COLOURS[i % STAGE_COLOURS.len()]
    };
    let most = r
        .upcoming
        .iter()
        .fold(BTreeMap::<NaiveDate, usize>::new(), |mut days, u| {
            *days.entry(u.date).or_default() += u.count;
            days
        })
        .into_values()
        .max()
        .unwrap_or(0);
    if most == 0 {
        return html! { p.muted { (w.no_reminder) } };
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let plot = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / i64::from(HORIZON_DAYS);
    let bar = slot * 7 / 10;
    let y_of = |n: i64| TOP + plot - n.saturating_mul(plot) / count(most);
    let bars: Vec<DayBar> = (0..i64::from(HORIZON_DAYS))
        .map(|i| {
            let day = add_days(r.as_of, i);
            let mut below = 0;
            let mut parts = Vec::new();
            for u in r.upcoming.iter().filter(|u| u.date == day) {
                let (bottom, top) = (y_of(below), y_of(below + count(u.count)));
                below += count(u.count);
                parts.push((
                    top,
                    bottom - top,
                    colour(&u.stage),
                    format!(
                        "{} · {} · {}{}{} {}",
                        w.day(day),
                        u.policy,
                        u.stage,
                        w.colon,
                        u.count,
                        w.reminders
                    ),
                ));
            }
            DayBar {
                day,
                x: LEFT + i * slot + (slot - bar) / 2,
                total: usize::try_from(below).unwrap_or(0),
                top: y_of(below),
                parts,
            }
        })
        .collect();
    let ticks = [0, count(most) / 2, count(most)];
    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width=(WIDTH) height=(HEIGHT) role="img" aria-label=(w.upcoming) {
                title { (w.upcoming) }
                @for tick in ticks {
                    line x1=(LEFT) x2=(WIDTH) y1=(y_of(tick)) y2=(y_of(tick)) stroke="#e6e9ef" {}
                    text x=(LEFT - 6) y=(y_of(tick) + 4) text-anchor="end" font-size="11" fill="#5b6575" { (tick) }
                }
                @for b in &bars {
                    @for (top, height, fill, tip) in &b.parts {
                        rect x=(b.x) y=(top) width=(bar) height=(height) fill=(fill) { title { (tip) } }
                    }
                    text x=(b.x + bar / 2) y=(HEIGHT - BOTTOM + 16) text-anchor="middle" font-size="11" fill="#3a4454" { (w.day(b.day)) }
                    @if b.total > 0 {
                        text x=(b.x + bar / 2) y=(b.top - 3) text-anchor="middle" font-size="10" fill="#3a4454" { (b.total) }
                    }
                }
            }
            p.legend {
                @for stage in &stages {
                    span {
                        svg width="10" height="10" { rect width="10" height="10" fill=(colour(stage)) {} }
                        " " (stage)
                    }
                }
            }
        }
    }
}

/// A horizontal bar per bucket, scaled on the largest, with its amount.
fn aging_chart(buckets: &Buckets, currency: &str, w: &Words, language: &str) -> Markup {
    const WIDTH: i64 = 520;
    const LABEL: i64 = 110;
    const AMOUNT: i64 = 120;
    const ROW: i64 = 26;
    let all = buckets.all();
    let largest = all
        .iter()
        .filter_map(|(_, a)| a.exact())
        .max()
        .unwrap_or(Decimal::ZERO);
    let room = WIDTH - LABEL - AMOUNT;
    // A total too large to compute draws no bar.
    let length = |amount: Total| -> i64 {
        let Some(amount) = amount.exact() else {
            return 0;
        };
        if largest <= Decimal::ZERO || amount <= Decimal::ZERO {
            return 0;
        }
        amount
            .checked_mul(Decimal::from(room))
            .and_then(|a| a.checked_div(largest))
            .and_then(|a| a.round().to_i64())
            .unwrap_or(0)
            .max(1)
    };
    let shown = |amount: Total| format_total(amount, currency, language, w);
    let height = ROW * 5 + 4;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (WIDTH) " " (height)} width=(WIDTH) height=(height) role="img" aria-label={(w.aging) " " (currency)} {
            title { (w.aging) " " (currency) }
            @for (i, (_, amount)) in all.iter().enumerate() {
                @let y = i64::try_from(i).unwrap_or(0) * ROW + 2;
                text x=(LABEL - 8) y=(y + 16) text-anchor="end" font-size="12" fill="#3a4454" { (w.buckets[i]) }
                rect x=(LABEL) y=(y + 3) width=(length(*amount)) height=(ROW - 8) fill=(BUCKET_COLOURS[i]) {
                    title { (w.buckets[i]) (w.colon) (shown(*amount)) }
                }
                text x=(LABEL + length(*amount) + 6) y=(y + 16) font-size="12" fill="#1d2430" { (shown(*amount)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn dso_is_rounded_to_a_tenth_half_away_from_zero() {
        assert_eq!(dso(d("100"), d("0")), None);
        assert_eq!(dso(d("100"), d("-5")), None);
        assert_eq!(dso(d("500"), d("1000")).unwrap().to_string(), "45.0");
        // 1 × 90 ÷ 3 = 30 exactly; 1 × 90 ÷ 7 = 12.857… → 12.9
        assert_eq!(dso(d("1"), d("3")).unwrap().to_string(), "30.0");
        assert_eq!(dso(d("1"), d("7")).unwrap().to_string(), "12.9");
        // 45.25 → 45.3 (half away from zero, not to even)
        assert_eq!(dso(d("45.25"), d("90")).unwrap().to_string(), "45.3");
    }

    #[test]
    fn buckets_by_days_past_due() {
        let mut b = Buckets::default();
        for (days, amount) in [
            (-3, "1"),
            (0, "2"),
            (1, "4"),
            (30, "8"),
            (31, "16"),
            (60, "32"),
            (61, "64"),
            (90, "128"),
            (91, "256"),
        ] {
            b.add(days, d(amount));
        }
        let amounts: Vec<String> = b
            .all()
            .iter()
            .map(|(_, a)| a.exact().unwrap().to_string())
            .collect();
        assert_eq!(amounts, ["3", "12", "48", "192", "256"]);
    }
}
