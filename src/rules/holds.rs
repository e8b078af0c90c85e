//! `rules/holds.yaml`: invoices and customers that get no reminder for now.

use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::diagnostics::{
    Location, Problems, RuleLimits, key_location, parse_yaml, read_rule_file, yaml_files,
};
use crate::model::Invoice;

/// `rules/holds.yaml`: invoices and customers that get no reminder for now.
pub(crate) fn is_holds_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("holds.yaml" | "holds.yml")
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsFile {
    #[serde(default)]
    holds: Vec<HoldEntry>,
}

/// One hold as written under `holds:` (in `rules/holds.yaml`, or in a
/// policy test's case).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldEntry {
    #[serde(default)]
    invoice: Option<String>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    until: Option<NaiveDate>,
    #[serde(default)]
    reason: String,
}

/// What a hold stops: one invoice, or every invoice of a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldTarget {
    Invoice(String),
    Customer(String),
}

/// A stop on reminders, from `rules/holds.yaml`.
#[derive(Debug, Clone)]
pub struct Hold {
    pub target: HoldTarget,
    /// The last day it holds (inclusive); none: until it is removed.
    pub until: Option<NaiveDate>,
    pub reason: String,
    /// Its `- invoice:` or `- customer:` line.
    pub location: Location,
}

impl Hold {
    pub fn holds_on(&self, date: NaiveDate) -> bool {
        self.until.is_none_or(|until| date <= until)
    }

    /// "held until 2026-12-15: contested delivery", as `explain` says it.
    pub fn describe(&self) -> String {
        let whom = match &self.target {
            HoldTarget::Invoice(_) => String::new(),
            HoldTarget::Customer(c) => format!(" (customer {c})"),
        };
        let until = match self.until {
            Some(d) => format!("held until {d}"),
            None => "held until the hold is removed".to_string(),
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        format!("{until}{whom}{reason}")
    }
}

/// Every hold, found by invoice number or customer id.
#[derive(Debug, Default, Clone)]
pub struct Holds {
    pub list: Vec<Hold>,
    // foldhash rather than SipHash: every decision of every invoice asks.
    by_invoice: hashbrown::HashMap<String, Vec<usize>>,
    by_customer: hashbrown::HashMap<String, Vec<usize>>,
}

impl Holds {
    /// Adds the holds of `entries`, written in `source` (the text of
    /// `path`) from line `from` on: each located at its `- invoice:` or
    /// `- customer:` line; an entry that does not make sense is reported
    /// and left out.
    pub fn add(
        &mut self,
        entries: Vec<HoldEntry>,
        path: &Path,
        source: &str,
        from: usize,
        problems: &mut Problems,
    ) {
        let mut search_from = from;
        for (i, entry) in entries.into_iter().enumerate() {
            let key = if entry.invoice.is_some() {
                "invoice"
            } else {
                "customer"
            };
            let value = entry.invoice.as_deref().or(entry.customer.as_deref());
            let location = key_location(path, source, search_from, key, value);
            search_from = location.line.map_or(search_from, |l| l + 1);
            let target = match (entry.invoice, entry.customer) {
                (Some(n), None) if !n.trim().is_empty() => {
                    HoldTarget::Invoice(n.trim().to_string())
                }
                (None, Some(c)) if !c.trim().is_empty() => {
                    HoldTarget::Customer(c.trim().to_string())
                }
                (Some(_), Some(_)) => {
                    problems.error(
                        location,
                        format!(
                            "holds[{i}]: give `invoice` or `customer`, not both (write two holds)"
                        ),
                    );
                    continue;
                }
                _ => {
                    problems.error(
                        location,
                        format!(
                            "holds[{i}]: say what is held: `invoice: NUMBER` or `customer: ID`"
                        ),
                    );
                    continue;
                }
            };
            let index = self.list.len();
            match &target {
                HoldTarget::Invoice(n) => self.by_invoice.entry(n.clone()).or_default().push(index),
                HoldTarget::Customer(c) => {
                    self.by_customer.entry(c.clone()).or_default().push(index)
                }
            }
            self.list.push(Hold {
                target,
                until: entry.until,
                reason: entry.reason.trim().to_string(),
                location,
            });
        }
    }

    /// The hold that stops `invoice`'s reminders on `date`, if any: the one
    /// that lasts longest when several do.
    pub fn active(&self, invoice: &Invoice, date: NaiveDate) -> Option<&Hold> {
        if self.list.is_empty() {
            return None;
        }
        let on_invoice = self.by_invoice.get(&*invoice.number);
        let on_customer = self.by_customer.get(&*invoice.customer_id);
        on_invoice
            .into_iter()
            .chain(on_customer)
            .flatten()
            .map(|&i| &self.list[i])
            .filter(|h| h.holds_on(date))
            .max_by_key(|h| h.until.unwrap_or(NaiveDate::MAX))
    }
}

/// Loads `rules/holds.yaml` (or `.yml`) if there is one. Mistakes are
/// located; an entry that does not make sense is reported and left out.
/// The file is held to `limits` (the config's `limits:`).
pub fn load_holds(dir: &Path, limits: RuleLimits, problems: &mut Problems) -> Holds {
    let mut holds = Holds::default();
    for path in yaml_files(dir).into_iter().filter(|f| is_holds_file(f)) {
        let Some(source) = read_rule_file(&path, "holds", limits, problems) else {
            continue;
        };
        // An empty holds file holds nothing (a policy file must say something).
        if source.trim().is_empty() {
            continue;
        }
        let Some(file) = parse_yaml::<HoldsFile>(&path, &source, problems) else {
            continue;
        };
        holds.add(file.holds, &path, &source, 1, problems);
    }
    holds
}
