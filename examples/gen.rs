//! Generates a realistic relance folder for benchmarks: the shipped rules and
//! templates, and N invoices over M customers in two feeds (the standard CSV
//! and a French-dialect export). Deterministic for a seed.
//!
//! cargo run --release --example gen -- --invoices 1000000 --customers 50000 --seed 1 --out /tmp/relance-1m
//! cargo run --release --example gen -- --invoices 100000 --history --out /tmp/relance-history   # for backtest

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{Days, NaiveDate};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use rust_decimal::Decimal;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    invoices: usize,
    #[arg(long)]
    customers: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// The date the data is centred on: due dates run from 150 days before to 60 after.
    #[arg(long, default_value = "2026-12-01")]
    as_of: NaiveDate,
    /// The folder whose rules/ and templates/ are copied (default: the shipped ones).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Share of invoices written to the French-dialect feed.
    #[arg(long, default_value_t = 0.2)]
    french_share: f64,
    /// A year of history instead, for `relance backtest`: invoices issued
    /// over the 365 days before --as-of, nearly all paid since (late for the
    /// habitual late payers), with their paid dates up to --as-of.
    #[arg(long)]
    history: bool,
}

struct Customer {
    id: String,
    name: String,
    email: String,
    language: &'static str,
    currency: &'static str,
    tags: String,
    /// The key accounts' account manager, copied on their reminders (the
    /// shipped key_accounts policy's `cc:`); empty for the others.
    account_manager: String,
    /// Probability that a settled invoice was paid late.
    lateness: f64,
}

const NAMES: [&str; 24] = [
    "Durand", "Martin", "Bernard", "Petit", "Robert", "Richard", "Moreau", "Laurent", "Simon",
    "Michel", "Lefebvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
    "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent",
];
const TRADES: [&str; 12] = [
    "Menuiserie",
    "Transports",
    "Boulangerie",
    "Imprimerie",
    "Conseil",
    "Bâtiment",
    "Garage",
    "Pharmacie",
    "Architectes",
    "Informatique",
    "Traiteur",
    "Électricité",
];
const FORMS: [&str; 5] = ["SARL", "SAS", "SA", "EURL", "& Fils"];

fn customer(i: usize, rng: &mut ChaCha8Rng) -> Customer {
    let name = format!(
        "{} {} {}",
        TRADES[rng.random_range(0..TRADES.len())],
        NAMES[rng.random_range(0..NAMES.len())],
        FORMS[rng.random_range(0..FORMS.len())]
    );
    let (language, currency) = match rng.random_range(0..100) {
        0..78 => ("fr", "EUR"),
        78..88 => ("en", "EUR"),
        88..94 => ("en", "USD"),
        _ => ("fr-CA", "CAD"),
    };
    let mut tags = Vec::new();
    if rng.random_bool(0.03) {
        tags.push("key-account");
    }
    if rng.random_bool(0.02) {
        tags.push("vip");
    }
    if rng.random_bool(0.08) {
        tags.push("b2c");
    }
    if rng.random_bool(0.05) {
        tags.push("public-sector");
    }
    let habitual = rng.random_bool(0.25);
    Customer {
        id: format!("C{i:06}"),
        email: format!("compta{i}@client{}.example", i % 997),
        name,
        language,
        currency,
        account_manager: if tags.contains(&"key-account") {
            format!("am{}@atelier-durand.fr", i % 13)
        } else {
            String::new()
        },
        tags: tags.join("|"),
        lateness: if habitual { 0.8 } else { 0.1 },
    }
}

/// Writes an amount the French way: `1 234,56`.
fn french_amount(d: Decimal) -> String {
    let text = d.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{frac}")
}

/// How an invoice of a year of history was paid: most of them, on time or
/// late as their customer pays, by `as_of` (those paid later are still
/// open); a few never, void, disputed or partly paid.
fn history_payment(
    rng: &mut ChaCha8Rng,
    c: &Customer,
    due: NaiveDate,
    amount: Decimal,
    as_of: NaiveDate,
    roll: u32,
) -> (&'static str, Decimal, Option<NaiveDate>) {
    match roll {
        0..92 => {
            let delay: i64 = if rng.random_bool(c.lateness) {
                rng.random_range(3..=75)
            } else {
                rng.random_range(-20..=0)
            };
            let paid = if delay >= 0 {
                due + Days::new(delay as u64)
            } else {
                due - Days::new(delay.unsigned_abs())
            };
            if paid <= as_of {
                ("paid", amount, Some(paid))
            } else {
                ("open", Decimal::ZERO, None)
            }
        }
        92..96 => ("open", Decimal::ZERO, None),
        96..97 => ("void", Decimal::ZERO, None),
        97..98 => ("disputed", Decimal::ZERO, None),
        _ => {
            let part = (amount * Decimal::new(rng.random_range(20..80), 2)).round_dp(2);
            ("open", part, None)
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        // The policy tests are written for the sample's feeds and config.
        if entry.file_name().to_string_lossy().ends_with(".test.yaml") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let customers_count = args.customers.unwrap_or((args.invoices / 20).max(1));
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let out = &args.out;
    let repo = args
        .from
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    copy_dir(&repo.join("rules"), &out.join("rules"))?;
    copy_dir(&repo.join("templates"), &out.join("templates"))?;
    std::fs::create_dir_all(out.join("data"))?;
    std::fs::write(
        out.join("relance.yaml"),
        format!(
            "# Generated by `cargo run --release --example gen` (seed {seed}, {n} invoices, {m} customers).
timezone: Europe/Paris
language: fr
currency: EUR
company: {{name: \"Atelier Durand SARL\", email: \"compta@atelier-durand.fr\", phone: \"+33 1 23 45 67 89\",
          payment_url: \"https://pay.atelier-durand.fr\", iban: \"FR76 3000 6000 0112 3456 7890 189\",
          address: \"12 rue des Tanneurs, 69001 Lyon\"}}
feeds:
  - path: data/invoices.csv
  - path: data/export_fr.csv
    delimiter: \";\"
    decimal: \",\"
    date_format: \"%d/%m/%Y\"
    columns: {{number: \"N° facture\", customer_id: \"Code client\", customer_name: \"Raison sociale\", email: \"Courriel\",
              issue_date: \"Date facture\", due_date: \"Échéance\", amount: \"Montant TTC\", amount_paid: \"Réglé\",
              currency: \"Devise\", status: \"Statut\", paid_date: \"Date règlement\", language: \"Langue\", tags: \"Étiquettes\"}}
limits: {{max_per_run: 10000000}}
rates: {{late_interest_annual: 12.15, recovery_indemnity: 40}}
",
            seed = args.seed,
            n = args.invoices,
            m = customers_count
        ),
    )?;
    let customers: Vec<Customer> = (0..customers_count)
        .map(|i| customer(i, &mut rng))
        .collect();
    let zipf = Zipf::new(customers_count as f64, 1.07).context("zipf")?;
    let amounts = LogNormal::new(6.4, 1.1).context("lognormal")?;
    let mut main = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(out.join("data/invoices.csv"))?,
    ));
    main.write_record([
        "number",
        "customer_id",
        "customer_name",
        "email",
        "issue_date",
        "due_date",
        "amount",
        "amount_paid",
        "currency",
        "status",
        "paid_date",
        "language",
        "tags",
        "account_manager_email",
    ])?;
    let mut french =
        csv::WriterBuilder::new()
            .delimiter(b';')
            .from_writer(BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(out.join("data/export_fr.csv"))?,
            ));
    french.write_record([
        "N° facture",
        "Code client",
        "Raison sociale",
        "Courriel",
        "Date facture",
        "Échéance",
        "Montant TTC",
        "Réglé",
        "Devise",
        "Statut",
        "Date règlement",
        "Langue",
        "Étiquettes",
        "account_manager_email",
    ])?;
    for n in 0..args.invoices {
        let c = &customers[(zipf.sample(&mut rng) as usize)
            .saturating_sub(1)
            .min(customers_count - 1)];
        let (issue, due) = if args.history {
            let issue = args.as_of - Days::new(rng.random_range(0..365));
            (
                issue,
                issue + Days::new([30u64, 45, 60][rng.random_range(0..3)]),
            )
        } else {
            let offset: i64 = rng.random_range(-150..=60);
            let due = if offset >= 0 {
                args.as_of + Days::new(offset as u64)
            } else {
                args.as_of - Days::new(offset.unsigned_abs())
            };
            let terms = [30u64, 45, 60][rng.random_range(0..3)];
            (due - Days::new(terms), due)
        };
        let mut raw: f64 = amounts.sample(&mut rng);
        if rng.random_bool(0.002) {
            raw *= 80.0;
        }
        // A sampled float turned into cents once, here; relance itself never sees a float.
        let amount = Decimal::from_f64_retain(raw.max(1.0))
            .unwrap_or(Decimal::ONE)
            .round_dp(2);
        let overdue = due < args.as_of;
        let roll: u32 = rng.random_range(0..100);
        let (status, paid, paid_date) = if args.history {
            history_payment(&mut rng, c, due, amount, args.as_of, roll)
        } else if overdue && roll < 33 || !overdue && roll < 8 {
            let late = rng.random_bool(c.lateness);
            let delay: i64 = if late {
                rng.random_range(3..=75)
            } else {
                rng.random_range(-20..=0)
            };
            let date = if delay >= 0 {
                due + Days::new(delay as u64)
            } else {
                due - Days::new(delay.unsigned_abs())
            };
            ("paid", amount, Some(date.min(args.as_of)))
        } else if roll < 38 {
            let part = (amount * Decimal::new(rng.random_range(20..80), 2)).round_dp(2);
            ("open", part, None)
        } else if roll < 39 {
            ("void", Decimal::ZERO, None)
        } else if roll < 40 {
            ("disputed", Decimal::ZERO, None)
        } else {
            ("open", Decimal::ZERO, None)
        };
        let number = format!("F{:07}", n + 1);
        let is_french = rng.random_bool(args.french_share);
        if is_french {
            let d = |d: NaiveDate| d.format("%d/%m/%Y").to_string();
            french.write_record([
                &number,
                &c.id,
                &c.name,
                &c.email,
                &d(issue),
                &d(due),
                &french_amount(amount),
                &french_amount(paid),
                c.currency,
                status,
                &paid_date.map(d).unwrap_or_default(),
                c.language,
                &c.tags,
                &c.account_manager,
            ])?;
        } else {
            main.write_record([
                &number,
                &c.id,
                &c.name,
                &c.email,
                &issue.to_string(),
                &due.to_string(),
                &amount.to_string(),
                &paid.to_string(),
                c.currency,
                status,
                &paid_date.map(|d| d.to_string()).unwrap_or_default(),
                c.language,
                &c.tags,
                &c.account_manager,
            ])?;
        }
    }
    main.flush()?;
    french.flush()?;
    let mut stderr = std::io::stderr();
    writeln!(
        stderr,
        "wrote {} invoices for {customers_count} customers to {}",
        args.invoices,
        out.display()
    )?;
    Ok(())
}
