//! An operator's decisions on journaled reminders, invoice by invoice: `retry` re-queues the failed ones, `approve` and `reject` those awaiting approval.

use crate::config::Config;
use crate::error::Result;
use crate::journal::{Awaiting, Identity, Journal};

/// What a decision concerns: one invoice (its number) or, `None`, every invoice.
pub type Invoice<'a> = Option<&'a str>;

/// Which reminders awaiting approval `approve` or `reject` decides, beside
/// their invoice: only those of this stage, of this policy, when given.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwaitingFilter<'a> {
    pub stage: Option<&'a str>,
    pub policy: Option<&'a str>,
}

/// `approve`, or `reject` with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval<'a> {
    Approve,
    Reject { reason: &'a str },
}

impl Approval<'_> {
    /// The word the command prints after the count: `approved`, `rejected`.
    pub fn verb(self) -> &'static str {
        match self {
            Approval::Approve => "approved",
            Approval::Reject { .. } => "rejected",
        }
    }
}

/// The folder's journal, migrated if need be; `None` when there is none yet:
/// a decision changes rows, so it creates no journal.
pub fn existing_journal(config: &Config) -> Result<Option<Journal>> {
    Ok(match Journal::open_config_read_only(config)? {
        Some(_) => Some(Journal::open_config(config)?),
        None => None,
    })
}

/// Re-queues the failed reminders of each invoice of `invoices` (due for a
/// retry at `now`, their attempts counted afresh), in the order given, or of
/// every invoice for `None`: how many for each. Without a journal there is
/// no failed reminder.
pub fn retry<'a>(
    config: &Config,
    invoices: &[Invoice<'a>],
    now: &str,
) -> Result<Vec<(Invoice<'a>, usize)>> {
    let journal = existing_journal(config)?;
    invoices
        .iter()
        .map(|&invoice| {
            let requeued = match &journal {
                Some(journal) => journal.requeue(invoice, now)?,
                None => 0,
            };
            Ok((invoice, requeued))
        })
        .collect()
}

/// Approves or rejects the reminders awaiting approval of each invoice of
/// `invoices`, in the order given (of every invoice for `None`), with the
/// other reminders of their messages (a message is decided whole): the
/// identities decided for each. Without a journal nothing awaits approval.
pub fn decide_approvals<'a>(
    config: &Config,
    invoices: &[Invoice<'a>],
    filter: AwaitingFilter,
    approval: Approval,
    now: &str,
) -> Result<Vec<(Invoice<'a>, Vec<Identity>)>> {
    let journal = existing_journal(config)?;
    invoices
        .iter()
        .map(|&invoice| {
            let selected = Awaiting {
                invoice,
                stage: filter.stage,
                policy: filter.policy,
            };
            let decided = match (&journal, approval) {
                (None, _) => Vec::new(),
                (Some(j), Approval::Reject { reason }) => j.reject(&selected, reason, now)?,
                (Some(j), Approval::Approve) => j.approve(&selected, now)?,
            };
            Ok((invoice, decided))
        })
        .collect()
}
