//! The journal as `history` lists it: every row with the customer it was for, one customer's contact history.

use crate::config::Config;
use crate::error::Result;
use crate::journal::{Journal, JournalRow};
use crate::project::{Options, Project};

/// What `relance history` lists: the journal, newest first, of one invoice
/// and/or one customer when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryFilter<'a> {
    pub invoice: Option<&'a str>,
    pub customer: Option<&'a str>,
    /// Each row needs its customer (JSON and CSV show it), not only the
    /// rows of `customer`.
    pub customers: bool,
}

/// The journal's rows `filter` asks for, newest first (empty without a
/// journal), each with the customer it was for: as journaled, or, in a row
/// journaled before customers were, the customer of its invoice in the
/// feeds (`None` once the invoice has left them). The feeds are read only
/// when such a row needs its customer.
pub fn history(
    config: &Config,
    options: &Options,
    filter: HistoryFilter,
) -> Result<Vec<JournalRow>> {
    let mut rows = Journal::history_of(config, filter.invoice)?;
    let needed = filter.customers || filter.customer.is_some();
    if needed && rows.iter().any(|r| r.customer_id.is_none()) {
        let feeds = Project::read_feeds(config, options);
        let customers: hashbrown::HashMap<&str, &str> = feeds
            .invoices
            .iter()
            .map(|inv| (&*inv.number, &*inv.bill_to.id))
            .collect();
        fill_customers(&mut rows, |number| customers.get(number).copied());
    }
    if let Some(customer) = filter.customer {
        rows.retain(|r| r.customer_id.as_deref() == Some(customer));
    }
    Ok(rows)
}

/// Gives each row journaled before customers were the customer `customer_of`
/// its invoice number (the feeds', or a loaded project's ledger).
pub fn fill_customers<'a>(rows: &mut [JournalRow], customer_of: impl Fn(&str) -> Option<&'a str>) {
    for row in rows.iter_mut().filter(|r| r.customer_id.is_none()) {
        row.customer_id = customer_of(&row.identity.invoice).map(str::to_string);
    }
}
