//! What the rows of one customer must agree on: totals that can be computed
//! exactly, and one name and one address.
// Money and counts from the feeds: no operation may overflow unchecked.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use rust_decimal::Decimal;

use crate::diagnostics::{Location, Problem, quote};
use crate::model::{Invoice, Shared};

/// The customers seen so far in the feeds, in the order of their rows.
#[derive(Default)]
pub(super) struct Customers {
    by_id: hashbrown::HashMap<Shared, Seen>,
}

struct Seen {
    /// The first row's name and address, and where it is.
    name: Shared,
    email: Shared,
    first: Location,
    /// The sum of the magnitudes of the amounts due of its rows kept so
    /// far: while it is exact, so is every total of any of them.
    magnitude: Decimal,
    /// Whether its rows were found to disagree (said once per customer).
    warned: bool,
}

impl Customers {
    /// The customer's total with this invoice added, or the bad row it makes
    /// when that total is past what a decimal holds exactly.
    /// `at` says where the row is: asked only for a problem (building a
    /// location for each of a million rows costs more than the check).
    pub(super) fn total_with(
        &self,
        invoice: &Invoice,
        at: &dyn Fn() -> Location,
    ) -> Result<Decimal, Problem> {
        let due = invoice
            .amount
            .checked_sub(invoice.amount_paid)
            .unwrap_or(Decimal::MAX)
            .abs();
        let before = self
            .by_id
            .get(&*invoice.customer_id)
            .map_or(Decimal::ZERO, |s| s.magnitude);
        before.checked_add(due).ok_or_else(|| {
            let first = self
                .by_id
                .get(&*invoice.customer_id)
                .map(|s| format!(" (its first invoice is at {})", s.first))
                .unwrap_or_default();
            Problem::error(
                at(),
                format!(
                    "amount: the invoices of customer {} add up to more than relance computes \
                     exactly ({}){first}",
                    quote(&invoice.customer_id),
                    Decimal::MAX
                ),
            )
        })
    }

    /// Records a kept invoice; a warning the first time a customer's rows
    /// give another name or address than its first row.
    pub(super) fn keep(
        &mut self,
        invoice: &Invoice,
        total: Decimal,
        at: &dyn Fn() -> Location,
    ) -> Option<Problem> {
        let Some(seen) = self.by_id.get_mut(&*invoice.customer_id) else {
            self.by_id.insert(
                invoice.customer_id.clone(),
                Seen {
                    name: invoice.customer_name.clone(),
                    email: invoice.email.clone(),
                    first: at(),
                    magnitude: total,
                    warned: false,
                },
            );
            return None;
        };
        seen.magnitude = total;
        if seen.email.is_empty() {
            seen.email = invoice.email.clone();
        }
        if seen.warned {
            return None;
        }
        let mut differences = Vec::new();
        // Interned: the same text is almost always the same allocation.
        let same = |a: &Shared, b: &Shared| Shared::ptr_eq(a, b) || a == b;
        if !same(&seen.name, &invoice.customer_name) {
            differences.push(format!(
                "customer_name {} here, {} there",
                quote(&invoice.customer_name),
                quote(&seen.name)
            ));
        }
        if !invoice.email.is_empty()
            && !same(&seen.email, &invoice.email)
            && !same_addresses(&seen.email, &invoice.email)
        {
            differences.push(format!(
                "email {} here, {} there",
                quote(&invoice.email),
                quote(&seen.email)
            ));
        }
        if differences.is_empty() {
            return None;
        }
        seen.warned = true;
        Some(Problem::warning(
            at(),
            format!(
                "customer {} has rows that disagree with its first row at {}: {} \
                 (one customer_id is one customer: are these two companies?)",
                quote(&invoice.customer_id),
                seen.first,
                differences.join("; ")
            ),
        ))
    }
}

/// The same addresses, whatever their order, case or spacing.
fn same_addresses(a: &str, b: &str) -> bool {
    let set = |s: &str| {
        let mut all: Vec<String> = crate::address::split(s).map(str::to_lowercase).collect();
        all.sort();
        all.dedup();
        all
    };
    set(a) == set(b)
}
