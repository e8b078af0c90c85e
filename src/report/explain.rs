//! `relance explain`: one invoice's decision on a date as a value (policy chosen and why, every stage, what fires), and that value as text.

use std::io::{self, Write};

use chrono::NaiveDate;
use serde::Serialize;

use crate::engine::{PolicyTrace, Reminder, Restart, StageTrace, Trace, Verdict};
use crate::error::{Error, Result};
use crate::journal::{JournalView, Mark, State};
use crate::locale::{format_money, money};
use crate::model::Status;
use crate::project::{Message, Project};
use crate::rules::Anchor;
use crate::text::{stage_label, table, weekday};

/// What `explain` says of an invoice on a date. Its JSON (`explain --format
/// json`) has the keys of the serialised fields; the others are what the
/// text for people adds.
#[derive(Debug, Serialize)]
pub struct Explanation<'p> {
    pub invoice: &'p str,
    pub as_of: String,
    pub open: bool,
    pub status: &'static str,
    pub amount_due: String,
    pub currency: &'p str,
    pub days_overdue: i64,
    /// The policy chosen; `None` when none applies.
    pub policy: Option<&'p str>,
    /// Every policy, highest priority first, with its `applies_to` value.
    pub policies: Vec<PolicyTrace>,
    pub stages: Vec<StageTrace>,
    /// Why nothing goes out on the date, if so.
    pub blocked: Option<String>,
    /// The ladder restarted at the invoice's first contact (`first_contact: restart`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_contact: Option<Restart>,
    /// The reminder that fires, as the message it goes out in.
    pub fires: Option<Message<'p>>,
    /// Stage ids overtaken by the one that fires; `None` when not decided
    /// (a disputed or void invoice).
    pub skipped: Option<Vec<String>>,
    pub errors: Option<Vec<String>>,
    /// What the journal holds for the invoice.
    pub journal: &'p [Mark],
    #[serde(skip)]
    people: ForPeople<'p>,
}

/// What the text adds to the JSON.
#[derive(Debug)]
struct ForPeople<'p> {
    customer_name: &'p str,
    customer_id: &'p str,
    /// The amount due as the invoice's messages write it (`100,00 €`).
    due: String,
    due_date: NaiveDate,
    hold: Option<String>,
    /// Where the promise to pay comes from when `rules/holds.yaml` records it.
    promise: Option<String>,
    settled: bool,
    /// For each of `policies`: whether it has an `applies_to`.
    has_applies_to: Vec<bool>,
    /// The chosen policy's anchor: its name and date.
    anchor: Option<(&'static str, NaiveDate)>,
    /// The chosen policy sends a thank-you (`on_paid`).
    thanks: bool,
}

/// Explains invoice `number` on `date` against `journal`: the same decision
/// the daemon and `preview` make, with its trace.
pub fn explain<'p>(
    project: &'p Project,
    number: &str,
    date: NaiveDate,
    journal: &'p JournalView,
) -> Result<Explanation<'p>> {
    let index = project
        .ledger
        .find(number)
        .ok_or_else(|| Error::UnknownInvoice(number.to_string()))?;
    let inv = &project.ledger.invoices[index];
    let marks = journal.marks(&inv.number);
    let mut trace = Trace::default();
    // An open invoice is decided by the firing rules, a paid one may be owed its thank-you.
    let outcome = (inv.is_open() || inv.is_settled()).then(|| {
        project
            .evaluator()
            .evaluate_in(index, date, journal, Some(&mut trace))
    });
    let chosen = outcome.as_ref().and_then(|o| o.policy);
    let policy = chosen.map(|p| &project.rulebook.policies[p]);
    // What fires, as the message it goes out in: grouped with the customer's
    // other reminders of the day when its stage says so, as the daemon sends it.
    let fires = outcome.as_ref().and_then(|o| o.fire).map(|f| {
        let planned = Reminder {
            date,
            invoice: index,
            policy: chosen.unwrap_or_default(),
            stage: f.stage,
            occurrence: f.occurrence,
        };
        project.as_sent(&planned, journal)
    });
    let has_applies_to = trace
        .policies
        .iter()
        .map(|p| {
            project
                .rulebook
                .policies
                .iter()
                .any(|q| q.name == p.policy && q.applies_to.is_some())
        })
        .collect();
    let Trace {
        policies,
        stages,
        blocked,
        restart,
    } = trace;
    Ok(Explanation {
        invoice: &inv.number,
        as_of: date.to_string(),
        open: inv.is_open(),
        status: inv.status.as_str(),
        amount_due: money(inv.amount_due()),
        currency: &inv.currency,
        days_overdue: inv.days_overdue(date),
        policy: policy.map(|p| p.name.as_str()),
        policies,
        stages,
        blocked,
        first_contact: restart,
        fires,
        skipped: outcome.as_ref().map(|o| {
            o.skipped
                .iter()
                .map(|s| policy.map_or(String::new(), |p| p.stages[s.stage].id.clone()))
                .collect()
        }),
        errors: outcome
            .as_ref()
            .map(|o| o.errors.iter().map(ToString::to_string).collect()),
        journal: marks,
        people: ForPeople {
            customer_name: &inv.bill_to.name,
            customer_id: &inv.bill_to.id,
            due: format_money(inv.amount_due(), &inv.currency, project.language_of(index)),
            due_date: inv.due_date,
            hold: project
                .rulebook
                .holds
                .active(inv, date)
                .map(|h| h.describe()),
            promise: project.rulebook.holds.promise(&inv.number).map(|p| {
                let note = match p.note.is_empty() {
                    true => String::new(),
                    false => format!(": {}", p.note),
                };
                format!(
                    "promise to pay by {} recorded at {}{note} (it stands for the feed's promise_date)",
                    p.date, p.location
                )
            }),
            settled: inv.is_settled(),
            has_applies_to,
            anchor: policy.map(|p| match p.anchor {
                Anchor::DueDate => ("due_date", inv.due_date),
                Anchor::IssueDate => ("issue_date", inv.issue_date),
            }),
            thanks: policy.is_some_and(|p| p.on_paid().is_some()),
        },
    })
}

impl Explanation<'_> {
    /// The explanation for people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let people = &self.people;
        let date = &self.as_of;
        writeln!(
            out,
            "Invoice {} — {} ({})",
            self.invoice, people.customer_name, people.customer_id
        )?;
        writeln!(
            out,
            "  {} due {} ({} day(s) {}), status {}, as of {date}",
            people.due,
            people.due_date,
            self.days_overdue.abs(),
            if self.days_overdue >= 0 {
                "overdue"
            } else {
                "to go"
            },
            self.status
        )?;
        if let Some(hold) = &people.hold {
            writeln!(out, "  {hold}")?;
        }
        if let Some(promise) = &people.promise {
            writeln!(out, "  {promise}")?;
        }
        if self.status == Status::Disputed.as_str() {
            writeln!(
                out,
                "  Disputed: nothing fires while the status is disputed; when it changes, its stages resume where they are."
            )?;
            return Ok(());
        }
        if !self.open {
            return self.write_not_open(out);
        }
        writeln!(out, "\nPolicies, highest priority first:")?;
        for (p, has_applies_to) in self.policies.iter().zip(&people.has_applies_to) {
            let verdict = match &p.applies {
                None => "not evaluated (a higher policy was chosen)".to_string(),
                Some(Ok(true)) if !has_applies_to => {
                    "no applies_to: covers every invoice → CHOSEN".to_string()
                }
                Some(Ok(true)) => "applies_to holds → CHOSEN".to_string(),
                Some(Ok(false)) => "applies_to is false".to_string(),
                Some(Err(e)) => format!("applies_to failed: {e}"),
            };
            writeln!(
                out,
                "  {:<20} priority {:>4}  {verdict}",
                p.policy, p.priority
            )?;
        }
        let errors = self.errors.iter().flatten();
        let (Some(policy), Some((anchor, anchored_on))) = (self.policy, people.anchor) else {
            if self.errors.as_ref().is_none_or(Vec::is_empty) {
                writeln!(out, "\nNo policy matched: this invoice gets no reminder.")?;
            } else {
                writeln!(
                    out,
                    "\nAn applies_to failed, so no policy can be chosen: this invoice gets no reminder until it is fixed."
                )?;
                for e in errors {
                    writeln!(out, "error: {e}")?;
                }
            }
            return Ok(());
        };
        writeln!(
            out,
            "\nStages of {policy} (offsets from {anchor} {anchored_on}):"
        )?;
        self.write_stages(out)?;
        if let Some(restart) = &self.first_contact {
            writeln!(out, "\n{restart}.")?;
        }
        if let Some(blocked) = &self.blocked {
            writeln!(out, "\nOn {date}: nothing goes out: {blocked}.")?;
        }
        match &self.fires {
            Some(r) if r.error.is_some() => writeln!(
                out,
                "\nOn {date}: {} ({}) fires but cannot be sent: {}",
                stage_label(r.stage, r.occurrence),
                r.channel.as_str(),
                r.error.as_deref().unwrap_or_default()
            )?,
            Some(r) if r.approval.is_some() => writeln!(
                out,
                "\nOn {date}: {} ({}) to {} needs approval: {}\n  Journaled awaiting_approval, it goes out \
                 once `relance approve {}` is given (`relance reject` drops it); the later stages \
                 keep their own dates.",
                stage_label(r.stage, r.occurrence),
                r.channel.as_str(),
                r.to,
                r.subject,
                r.invoice
            )?,
            Some(r) => writeln!(
                out,
                "\nOn {date}: sends {} ({}) to {}{}: {}",
                stage_label(r.stage, r.occurrence),
                r.channel.as_str(),
                r.to,
                copies(r),
                r.subject
            )?,
            None if self.blocked.is_some() => {}
            None => writeln!(out, "\nOn {date}: nothing fires.")?,
        }
        for e in errors {
            writeln!(out, "error: {e}")?;
        }
        Ok(())
    }

    /// A paid, void or credit invoice: its thank-you, if one is owed.
    fn write_not_open(&self, out: &mut dyn Write) -> io::Result<()> {
        match (&self.fires, self.policy) {
            (Some(r), _) => writeln!(
                out,
                "  Paid, after a reminder: on {} the thank-you ({}, {}) goes to {}: {}",
                self.as_of,
                r.template,
                r.channel.as_str(),
                r.to,
                r.subject
            ),
            (None, Some(policy)) if self.people.settled => {
                self.write_stages(out)?;
                if !self.people.thanks {
                    writeln!(
                        out,
                        "  Paid; policy {policy} sends no thank-you (no on_paid)."
                    )?;
                }
                Ok(())
            }
            _ => writeln!(
                out,
                "  Not open (paid, void, credit or nothing left to pay): no reminder."
            ),
        }
    }

    fn write_stages(&self, out: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                vec![
                    stage_label(&s.stage, s.occurrence),
                    s.date.map_or("-".to_string(), |d| d.to_string()),
                    if s.reached {
                        "reached".into()
                    } else {
                        "not reached".into()
                    },
                    s.journal
                        .map_or("-".to_string(), |j| j.as_str().to_string()),
                    verdict_text(s, self.blocked.as_deref()),
                ]
            })
            .collect();
        table(
            out,
            &["STAGE", "DATE", "REACHED", "JOURNAL", "VERDICT"],
            &rows,
        )
    }
}

/// Explains one stage occurrence in words; `blocked` is why nothing goes
/// out on the date, if so.
/// The copies of an email as explain writes them after its recipients:
/// ` (cc a@x.fr, bcc b@y.fr)`, or nothing.
fn copies(r: &Message) -> String {
    let parts: Vec<String> = [("cc", &r.cc), ("bcc", &r.bcc)]
        .into_iter()
        .filter(|(_, addresses)| !addresses.is_empty())
        .map(|(key, addresses)| format!("{key} {}", addresses.join(", ")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn verdict_text(s: &StageTrace, blocked: Option<&str>) -> String {
    let moved = match (s.moved_from, &s.moved_because) {
        (Some(from), Some(why)) => format!("moved from {} {from} ({why}); ", weekday(from)),
        (Some(from), None) => format!("moved from {} {from}; ", weekday(from)),
        _ => String::new(),
    };
    let when = match &s.when {
        None => String::new(),
        Some(Ok(v)) => format!("when = {v}; "),
        Some(Err(e)) => format!("when failed: {e}; "),
    };
    let what = match s.verdict {
        Verdict::NotReached => "not reached yet".to_string(),
        Verdict::InJournal => match s.journal {
            // Decided: the later stages follow their own dates meanwhile.
            Some(State::AwaitingApproval) => {
                "in the journal, awaiting approval (relance approve); later stages follow their own dates"
                    .to_string()
            }
            Some(State::Approved) => {
                "in the journal, approved: goes out at the next pass".to_string()
            }
            j => format!(
                "already in the journal ({})",
                j.map_or("?", |j| j.as_str())
            ),
        },
        Verdict::Passed => {
            "passed: a later stage is already in the journal, a policy never steps back".to_string()
        }
        Verdict::Fires => "FIRES".to_string(),
        // The later stage may have been reached days after this one (a
        // catch-up): only its being reached by the evaluation date matters.
        Verdict::Skipped => "skipped: overtaken by a later stage".to_string(),
        Verdict::Waiting => "waiting: reached, but its `when` is false".to_string(),
        Verdict::OnePerDay => {
            "waiting: this invoice already had a reminder on this date (one a day)".to_string()
        }
        Verdict::Held => format!("waiting: {}", blocked.unwrap_or("held")),
        Verdict::NoPromise => "no promise to pay in the feed".to_string(),
        Verdict::Earlier => format!(
            "not listed, with the {} before it: reached long ago; a catch-up journals only a stage's latest occurrences",
            s.occurrence
        ),
    };
    format!("{moved}{when}{what}")
}
