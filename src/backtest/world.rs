//! The feeds' invoices as they stood on a day of the past: those issued by
//! then, open until their payment, and their customers' aggregates of that day.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::model::{Invoice, InvoiceId, Ledger, Payments, Status};

/// The ledger of one day of the past, moved forward a day at a time.
/// Its invoices are the feeds' invoices, each as it stood on the day: one
/// paid later is open, with nothing paid yet; its customers' aggregates
/// count only the invoices issued by the day, open as they were, and the
/// payments made by the day. So a policy chosen by a customer's history
/// (`late_paid_ratio`, `avg_days_late`) is chosen without hindsight.
pub(super) struct World {
    /// The invoices as the feeds give them: their state of today.
    feeds: Arc<Ledger>,
    /// The day's ledger, changed in place as the days go by.
    pub(super) ledger: Arc<Ledger>,
    /// Per invoice: issued by the day.
    issued: Vec<bool>,
    /// Per customer: the payments made by the day.
    payments: Vec<Payments>,
    /// The invoices by issue date, and how many of them are issued.
    by_issue: Vec<InvoiceId>,
    issues_done: usize,
    /// The invoices with a paid date, by that date, and how many are paid.
    by_payment: Vec<InvoiceId>,
    payments_done: usize,
}

impl World {
    /// The world before any invoice of the feeds was issued.
    pub(super) fn new(feeds: &Arc<Ledger>) -> World {
        let mut ledger = Ledger::clone(feeds);
        for inv in &mut ledger.invoices {
            if inv.paid_date.is_some() {
                unpay(inv);
            }
        }
        for customer in &mut ledger.customers {
            customer.forget_invoices();
        }
        let all = (0..feeds.invoices.len()).map(InvoiceId::new);
        let mut by_issue: Vec<InvoiceId> = all.clone().collect();
        by_issue.sort_by_key(|&i| feeds.invoices[i].issue_date);
        let mut by_payment: Vec<InvoiceId> = all
            .filter(|&i| feeds.invoices[i].paid_date.is_some())
            .collect();
        by_payment.sort_by_key(|&i| feeds.invoices[i].paid_date);
        World {
            feeds: feeds.clone(),
            ledger: Arc::new(ledger),
            issued: vec![false; feeds.invoices.len()],
            payments: vec![Payments::default(); feeds.customers.len()],
            by_issue,
            issues_done: 0,
            by_payment,
            payments_done: 0,
        }
    }

    /// Moves the world to `day` (a later day than the last): the invoices
    /// issued and paid since are counted in. Returns those issued since.
    pub(super) fn advance(&mut self, day: NaiveDate) -> Vec<InvoiceId> {
        let mut issued = Vec::new();
        while let Some(&i) = self.by_issue.get(self.issues_done)
            && self.feeds.invoices[i].issue_date <= day
        {
            self.issues_done += 1;
            self.change(i, Event::Issued);
            issued.push(i);
        }
        while let Some(&i) = self.by_payment.get(self.payments_done)
            && self.feeds.invoices[i].paid_date.is_some_and(|p| p <= day)
        {
            self.payments_done += 1;
            self.change(i, Event::Paid);
        }
        issued
    }

    /// What `event` changes of invoice `i`, and of its customer's
    /// aggregates: its open amounts out as they were, back in as they are
    /// now; a payment into the customer's payment history.
    fn change(&mut self, i: InvoiceId, event: Event) {
        let ledger = Arc::make_mut(&mut self.ledger);
        let customer_index = ledger.customer_of[i.index()] as usize;
        let customer = &mut ledger.customers[customer_index];
        let inv = &mut ledger.invoices[i.index()];
        let issued = &mut self.issued[i.index()];
        if *issued && inv.is_open() {
            customer.uncount_open(inv);
        }
        match event {
            Event::Issued => *issued = true,
            Event::Paid => {
                let feed = &self.feeds.invoices[i];
                inv.status = feed.status;
                inv.amount_paid = feed.amount_paid;
                inv.paid_date = feed.paid_date;
                if let Some(paid) = feed.paid_date {
                    let payments = &mut self.payments[customer_index];
                    payments.add(feed.due_date, paid);
                    payments.set_aggregates(customer);
                }
            }
        }
        if *issued && inv.is_open() {
            customer.count_open(inv);
        }
    }
}

/// What happens to an invoice on a day of its history.
#[derive(Clone, Copy)]
enum Event {
    Issued,
    Paid,
}

/// An invoice as it stood before its payment: open, nothing paid yet.
fn unpay(inv: &mut Invoice) {
    inv.status = Status::Open;
    inv.amount_paid = Decimal::ZERO;
    inv.paid_date = None;
}
