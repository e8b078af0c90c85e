//! What the rows of one customer must agree on: totals that can be computed
//! exactly, and one name and one address.
// Money and counts from the feeds: no operation may overflow unchecked.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use rust_decimal::Decimal;

use crate::diagnostics::{Location, Problem, quote};
use crate::model::{Invoice, Origin, Shared};

/// The customers seen so far in the feeds, by the number the interner gave
/// each customer id (divided by the number of threads checking them: each
/// thread checks every so-many-th customer).
#[derive(Default)]
pub(super) struct Customers {
    by_number: Vec<Option<Seen>>,
    /// How many have a kept row: the next one's place in the ledger.
    kept: u32,
}

struct Seen {
    /// Its place in the ledger's customers: the order of their first kept rows.
    index: u32,
    /// The first row's name and address, and where it is (located only
    /// for a problem: a location apiece would take a million invoices'
    /// customers megabytes).
    name: Shared,
    email: Shared,
    first: Origin,
    /// The sum of the magnitudes of the amounts due of its rows kept so
    /// far: while it is exact, so is every total of any of them.
    magnitude: Decimal,
    /// Whether its rows were found to disagree (said once per customer).
    warned: bool,
}

impl Customers {
    /// The customer's total with this invoice added, or the bad row it makes
    /// when that total is past what a decimal holds exactly.
    /// `locate` says where a row is: asked only for a problem (building a
    /// location for each of a million rows costs more than the check).
    pub(super) fn total_with(
        &self,
        customer: u32,
        invoice: &Invoice,
        locate: &dyn Fn(&Origin) -> Location,
    ) -> Result<Decimal, Problem> {
        let due = invoice
            .amount
            .checked_sub(invoice.amount_paid)
            .unwrap_or(Decimal::MAX)
            .abs();
        let seen = self.seen(customer);
        let before = seen.map_or(Decimal::ZERO, |s| s.magnitude);
        before.checked_add(due).ok_or_else(|| {
            let first = seen
                .map(|s| format!(" (its first invoice is at {})", locate(&s.first)))
                .unwrap_or_default();
            Problem::error(
                locate(&invoice.origin),
                format!(
                    "amount: the invoices of customer {} add up to more than relance computes \
                     exactly ({}){first}",
                    quote(&invoice.bill_to.id),
                    Decimal::MAX
                ),
            )
        })
    }

    /// Asks the processor to start reading what it has of `customer`.
    pub(super) fn prefetch(&self, customer: u32) {
        if let Some(seen) = self.by_number.get(customer as usize) {
            crate::model::prefetch(seen);
        }
    }

    fn seen(&self, customer: u32) -> Option<&Seen> {
        self.by_number.get(customer as usize)?.as_ref()
    }

    /// Records a kept invoice: its customer's place in the ledger, and a
    /// warning the first time a customer's rows give another name or
    /// address than its first row.
    pub(super) fn keep(
        &mut self,
        customer: u32,
        invoice: &Invoice,
        total: Decimal,
        locate: &dyn Fn(&Origin) -> Location,
    ) -> (u32, Option<Problem>) {
        let customer = customer as usize;
        if self.by_number.len() <= customer {
            self.by_number
                .resize_with(customer.saturating_add(1), || None);
        }
        let Some(seen) = &mut self.by_number[customer] else {
            let index = self.kept;
            self.kept = self.kept.saturating_add(1);
            self.by_number[customer] = Some(Seen {
                index,
                name: invoice.bill_to.name.clone(),
                email: invoice.bill_to.email.clone(),
                first: invoice.origin.clone(),
                magnitude: total,
                warned: false,
            });
            return (index, None);
        };
        seen.magnitude = total;
        if seen.email.is_empty() {
            seen.email = invoice.bill_to.email.clone();
        }
        if seen.warned {
            return (seen.index, None);
        }
        let mut differences = Vec::new();
        // Interned: the same text is almost always the same allocation.
        let same = |a: &Shared, b: &Shared| Shared::ptr_eq(a, b) || a == b;
        if !same(&seen.name, &invoice.bill_to.name) {
            differences.push(format!(
                "customer_name {} here, {} there",
                quote(&invoice.bill_to.name),
                quote(&seen.name)
            ));
        }
        if !invoice.bill_to.email.is_empty()
            && !same(&seen.email, &invoice.bill_to.email)
            && !same_addresses(&seen.email, &invoice.bill_to.email)
        {
            differences.push(format!(
                "email {} here, {} there",
                quote(&invoice.bill_to.email),
                quote(&seen.email)
            ));
        }
        if differences.is_empty() {
            return (seen.index, None);
        }
        seen.warned = true;
        let warning = Problem::warning(
            locate(&invoice.origin),
            format!(
                "customer {} has rows that disagree with its first row at {}: {} \
                 (one customer_id is one customer: are these two companies?)",
                quote(&invoice.bill_to.id),
                locate(&seen.first),
                differences.join("; ")
            ),
        );
        (seen.index, Some(warning))
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
