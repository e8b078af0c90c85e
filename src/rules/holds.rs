//! `rules/holds.yaml`: invoices and customers that get no reminder for now, and promises to pay.

use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::diagnostics::{
    Location, Problems, RuleLimits, key_location, locate_yaml_key, parse_yaml, quote,
    read_rule_file, yaml_files,
};
use crate::model::{Invoice, InvoiceId, Ledger};

mod edit;

pub use edit::{
    HoldEntryView, HoldsFile, NewHold, NewPromise, PromiseView, add_hold, add_promise,
    read_holds_file, remove_hold,
};

/// `rules/holds.yaml`: invoices and customers that get no reminder for now.
pub(crate) fn is_holds_file(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|n| n.to_str()),
        Some("holds.yaml" | "holds.yml")
    )
}

/// `rules/holds.yaml` as written. A list left empty (`holds:` with no
/// entry, as removing the last one from the console leaves it) is no list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldsDocument {
    #[serde(default)]
    holds: Option<Vec<HoldEntry>>,
    #[serde(default)]
    promises: Option<Vec<PromiseEntry>>,
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
    /// What the console names it by; a hold written by hand without one is
    /// named after what it holds (see [`hold_ids`]).
    #[serde(default)]
    id: Option<String>,
}

/// One promise to pay as written under `promises:`. The date is read as
/// it is written, so that a date that is none is an error of its own entry
/// rather than of the whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromiseEntry {
    #[serde(default)]
    invoice: Option<String>,
    #[serde(default)]
    date: Option<serde_yaml::Value>,
    #[serde(default)]
    note: String,
}

/// A promise to pay recorded in `rules/holds.yaml` (after a phone call,
/// from the console): it stands for the feed's `promise_date` of its invoice.
#[derive(Debug, Clone)]
pub struct Promise {
    pub invoice: String,
    pub date: NaiveDate,
    pub note: String,
    /// Its `- invoice:` line.
    pub location: Location,
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
    /// The promises to pay of `promises:`, in the order written.
    pub promises: Vec<Promise>,
    // foldhash rather than SipHash: every decision of every invoice asks.
    by_invoice: hashbrown::HashMap<String, Vec<usize>>,
    by_customer: hashbrown::HashMap<String, Vec<usize>>,
    /// Which numbers and customer ids may be held: most invoices are not,
    /// and are told so without hashing their number and customer id.
    may_hold: Signatures,
}

/// A set of texts known only by a signature of each (its length and last
/// byte, one of 256): a text whose signature is not in the set is surely
/// not one of them; one whose signature is may be.
#[derive(Debug, Default, Clone)]
struct Signatures([u64; 4]);

impl Signatures {
    fn of(text: &str) -> usize {
        let last = usize::from(text.as_bytes().last().copied().unwrap_or(0));
        (text.len().wrapping_mul(31) ^ last) & 255
    }

    fn add(&mut self, text: &str) {
        let s = Self::of(text);
        self.0[s / 64] |= 1 << (s % 64);
    }

    fn may_contain(&self, text: &str) -> bool {
        let s = Self::of(text);
        self.0[s / 64] & (1 << (s % 64)) != 0
    }
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
        let mut ids: Vec<&str> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let Some(id) = &entry.id else { continue };
            let location = key_location(path, source, search_from, "id", Some(id));
            search_from = location.line.map_or(search_from, |l| l + 1);
            if !is_plain_id(id) {
                problems.error(
                    location,
                    format!(
                        "holds[{i}]: id {}: expected letters, digits, `.`, `_` or `-` (it names the hold in the console's links)", quote(id)
                    ),
                );
            } else if ids.contains(&id.as_str()) {
                problems.error(
                    location,
                    format!(
                        "holds[{i}]: id {} is the id of an earlier hold: give each its own",
                        quote(id)
                    ),
                );
            }
            ids.push(id);
        }
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
                HoldTarget::Invoice(n) => {
                    self.may_hold.add(n);
                    self.by_invoice.entry(n.clone()).or_default().push(index)
                }
                HoldTarget::Customer(c) => {
                    self.may_hold.add(c);
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

    /// Adds the promises of `entries`, written in `source` (the text of
    /// `path`) from line `from` on, each located at its `- invoice:` line;
    /// an entry without an invoice or a date is reported and left out.
    fn add_promises(
        &mut self,
        entries: Vec<PromiseEntry>,
        path: &Path,
        source: &str,
        from: usize,
        problems: &mut Problems,
    ) {
        let mut search_from = from;
        for (i, entry) in entries.into_iter().enumerate() {
            let invoice = entry.invoice.as_deref().map(str::trim).unwrap_or("");
            let location = key_location(path, source, search_from, "invoice", Some(invoice));
            let from_entry = location.line.unwrap_or(search_from);
            search_from = location.line.map_or(search_from, |l| l + 1);
            if invoice.is_empty() {
                problems.error(
                    location,
                    format!("promises[{i}]: say which invoice is promised: `invoice: NUMBER`"),
                );
                continue;
            }
            let written = match &entry.date {
                None | Some(serde_yaml::Value::Null) => {
                    problems.error(
                        location,
                        format!(
                            "promises[{i}]: invoice {invoice}: say when it will be paid: `date: YYYY-MM-DD`"
                        ),
                    );
                    continue;
                }
                Some(serde_yaml::Value::String(s)) => s.trim().to_string(),
                Some(other) => {
                    crate::text::clean_line(serde_yaml::to_string(other).unwrap_or_default().trim())
                }
            };
            let Ok(date) = NaiveDate::parse_from_str(&written, "%Y-%m-%d") else {
                let at = key_location(path, source, from_entry, "date", None);
                problems.error(
                    at,
                    format!(
                        "promises[{i}]: date {}: expected a date written YYYY-MM-DD (2026-12-18)",
                        crate::diagnostics::quote(&written)
                    ),
                );
                continue;
            };
            self.promises.push(Promise {
                invoice: invoice.to_string(),
                date,
                note: entry.note.trim().to_string(),
                location,
            });
        }
    }

    /// The promise to pay `rules/holds.yaml` records for invoice `number`:
    /// the last one written when there are several (the newest decision).
    pub fn promise(&self, number: &str) -> Option<&Promise> {
        self.promises.iter().rev().find(|p| p.invoice == number)
    }

    /// The hold that stops `invoice`'s reminders on `date`, if any: the one
    /// that lasts longest when several do.
    pub fn active(&self, invoice: &Invoice, date: NaiveDate) -> Option<&Hold> {
        if self.list.is_empty() {
            return None;
        }
        let (number, customer) = (&*invoice.number, &*invoice.bill_to.id);
        if !self.may_hold.may_contain(number) && !self.may_hold.may_contain(customer) {
            return None;
        }
        let on_invoice = self.by_invoice.get(number);
        let on_customer = self.by_customer.get(customer);
        on_invoice
            .into_iter()
            .chain(on_customer)
            .flatten()
            .map(|&i| &self.list[i])
            .filter(|h| h.holds_on(date))
            .max_by_key(|h| h.until.unwrap_or(NaiveDate::MAX))
    }
}

/// The invoices of one ledger that a hold names, by number or by customer:
/// the only ones [`Holds::active`] may find held. Found once for a plan,
/// so that its millions of decisions do not each read an invoice's number
/// and customer id (two cache misses) to be told they are not held.
#[derive(Debug, Default)]
pub struct Held(Vec<u64>);

impl Held {
    /// Whether a hold may stop `invoice`'s reminders (on some date).
    pub fn may_hold(&self, invoice: InvoiceId) -> bool {
        let i = invoice.index();
        self.0
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    fn add(&mut self, i: usize) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }
}

impl Holds {
    /// The invoices of `ledger` some hold names.
    pub fn held_in(&self, ledger: &Ledger) -> Held {
        if self.list.is_empty() {
            return Held::default();
        }
        let mut held = Held(vec![0; ledger.invoices.len().div_ceil(64)]);
        for number in self.by_invoice.keys() {
            if let Some(invoice) = ledger.find(number) {
                held.add(invoice.index());
            }
        }
        if !self.by_customer.is_empty() {
            let customers: Vec<bool> = ledger
                .customers
                .iter()
                .map(|c| self.by_customer.contains_key(&*c.id))
                .collect();
            for i in 0..ledger.invoices.len() {
                let customer = ledger.customer_index(InvoiceId::new(i));
                if customers.get(customer).is_some_and(|&held| held) {
                    held.add(i);
                }
            }
        }
        held
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
        holds.read(&path, &source, problems);
    }
    holds
}

impl Holds {
    /// Adds the holds and promises of `source`, the text of holds file `path`.
    fn read(&mut self, path: &Path, source: &str, problems: &mut Problems) -> Option<Lists> {
        // An empty holds file holds nothing (a policy file must say something).
        if source.trim().is_empty() {
            return Some(Lists::default());
        }
        let file = parse_yaml::<HoldsDocument>(path, source, problems)?;
        let lists = Lists {
            holds: file.holds.unwrap_or_default(),
            promises: file.promises.unwrap_or_default(),
        };
        // Each list's entries are searched for from its own key on, so that
        // a promise's `invoice:` is never taken for a hold's.
        let start = |key| locate_yaml_key(source, 1, key, None).map_or(1, |(line, _)| line);
        self.add(lists.holds.clone(), path, source, start("holds"), problems);
        self.add_promises(
            lists.promises.clone(),
            path,
            source,
            start("promises"),
            problems,
        );
        Some(lists)
    }
}

/// The two lists of a holds file as written.
#[derive(Default)]
struct Lists {
    holds: Vec<HoldEntry>,
    promises: Vec<PromiseEntry>,
}

/// Whether `id` is made of the characters a hold's id may have: those that
/// need no escaping in a link or a file.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The id of each hold: its own `id:`, else one made of what it holds
/// (`invoice-F2026-0075`, `customer-C003`; characters other than letters,
/// digits, `.`, `_` and `-` written `_`), with `-2`, `-3`… when an earlier
/// hold or an `id:` already has it. An id written in the file never
/// changes; a made one changes only when an earlier hold of the same
/// target is removed.
pub fn hold_ids(entries: &[HoldEntry]) -> Vec<String> {
    let mut taken: hashbrown::HashSet<String> =
        entries.iter().filter_map(|e| e.id.clone()).collect();
    entries
        .iter()
        .map(|e| match &e.id {
            Some(id) => id.clone(),
            None => {
                let id = free_id(&made_id(e), &taken);
                taken.insert(id.clone());
                id
            }
        })
        .collect()
}

/// `invoice-NUMBER` or `customer-ID`, in plain characters.
fn made_id(entry: &HoldEntry) -> String {
    let (kind, what) = match (&entry.invoice, &entry.customer) {
        (Some(n), _) => ("invoice", n.trim()),
        (None, Some(c)) => ("customer", c.trim()),
        (None, None) => ("hold", ""),
    };
    let plain: String = what
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                true => c,
                false => '_',
            },
        )
        .collect();
    format!("{kind}-{plain}")
}

/// `base`, or `base-2`, `base-3`… the first that is not taken.
fn free_id(base: &str, taken: &hashbrown::HashSet<String>) -> String {
    (1..)
        .map(|n| match n {
            1 => base.to_string(),
            n => format!("{base}-{n}"),
        })
        .find(|id| !taken.contains(id))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Signatures;

    /// A text added is always found (no false "surely not"), whatever its
    /// length and last byte; most others are told apart without a lookup.
    #[test]
    fn a_signature_set_never_misses_what_it_holds() {
        let held = ["F2026-0075", "C002", "", "é", "x".repeat(300).as_str()].map(String::from);
        let mut set = Signatures::default();
        for text in &held {
            set.add(text);
        }
        for text in &held {
            assert!(set.may_contain(text), "{text:?}");
        }
        let others = (0..1000).map(|i| format!("F{i:07}"));
        assert!(others.filter(|n| set.may_contain(n)).count() < 100);
        assert!(!Signatures::default().may_contain("F2026-0075"));
    }
}
