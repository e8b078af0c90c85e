//! The money rules of late payment: interest, the fixed recovery indemnity and the early-payment discount.
//!
//! Scripts and templates both call these functions, so a formal notice and a
//! `when` that reads the same figure always agree to the cent.
// Money and counts from the feeds: no operation may overflow unchecked.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer};

/// The tag of consumers, who owe no recovery indemnity (it applies between businesses).
pub const CONSUMER_TAG: &str = "b2c";

/// Rounded half to even to the cent, and written with two decimals (`9.99`, `0.00`).
pub fn to_cents(amount: Decimal) -> Decimal {
    let mut cents = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    cents.rescale(2);
    cents
}

/// The days of interest on `on`: from the day after the due date to `on`
/// inclusive, none until the due date has passed.
pub fn days_late(due_date: NaiveDate, on: NaiveDate) -> i64 {
    on.signed_duration_since(due_date).num_days().max(0)
}

/// Simple interest on `amount_due` at `annual_rate_percent` a year for the
/// days late on `on`, counted actual/365 (a leap year's 29 February is one
/// more day, the year still 365), exact until rounded half to even to the
/// cent. Scripts and templates both refuse what it refuses.
pub fn late_interest(
    amount_due: Decimal,
    due_date: NaiveDate,
    on: NaiveDate,
    annual_rate_percent: Decimal,
) -> Result<Decimal, InterestError> {
    if annual_rate_percent.is_sign_negative() && !annual_rate_percent.is_zero() {
        return Err(InterestError::NegativeRate);
    }
    let days = Decimal::from(days_late(due_date, on));
    amount_due
        .checked_mul(annual_rate_percent)
        .and_then(|d| d.checked_mul(days))
        .and_then(|d| d.checked_div(Decimal::new(36_500, 0)))
        .map(to_cents)
        .ok_or(InterestError::TooLarge)
}

/// Why [`late_interest`] cannot compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    #[error("the interest rate is negative")]
    NegativeRate,
    /// The amount is too large to compute exactly.
    #[error("the amount is too large")]
    TooLarge,
}

/// The sum of amounts, exactly; `None` past what a decimal holds.
pub fn checked_sum(amounts: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    amounts
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, a| sum.checked_add(a))
}

/// A decimal written with a dot (`12.15`, `40`, `1.5e1`), as the config
/// and templates give them.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// The recovery indemnity of one invoice: the configured amount, or nothing
/// when its customer is tagged as a consumer (a customer's tags are those
/// of all its invoices).
pub fn recovery_indemnity<'t>(
    indemnity: Decimal,
    tags: impl IntoIterator<Item = &'t str>,
) -> Decimal {
    if tags.into_iter().any(|t| t == CONSUMER_TAG) {
        Decimal::ZERO
    } else {
        indemnity
    }
}

/// A policy's early-payment discount: `discount: {percent: 2, within_days: 10}`,
/// `percent` off the amount due when paid within `within_days` of the issue date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountTerms {
    #[serde(deserialize_with = "crate::money::de_decimal")]
    pub percent: Decimal,
    pub within_days: i64,
}

/// The discount an invoice is offered on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    pub percent: Decimal,
    pub within_days: i64,
    /// `amount_due × percent / 100`, rounded half to even to the cent.
    pub amount: Decimal,
    /// What settles the invoice when the discount is taken.
    pub amount_due_after: Decimal,
    /// The last day to pay with the discount: issue date + `within_days`.
    pub deadline: NaiveDate,
    /// Whether the deadline has not passed on the evaluation date.
    pub available: bool,
}

impl DiscountTerms {
    /// The discount on `amount_due` of an invoice issued on `issue_date`, as of `on`.
    pub fn offer(&self, amount_due: Decimal, issue_date: NaiveDate, on: NaiveDate) -> Discount {
        // `percent` is under 100 (checked when the policy loads): the
        // discount is below the amount due, no overflow whatever the feed
        // holds, and the product is exact for any amount.
        let rate = self.percent.saturating_mul(Decimal::new(1, 2));
        let amount = to_cents(amount_due.saturating_mul(rate));
        let deadline = crate::calendar::add_days(issue_date, self.within_days);
        Discount {
            percent: self.percent,
            within_days: self.within_days,
            amount,
            amount_due_after: amount_due.saturating_sub(amount),
            deadline,
            available: on <= deadline,
        }
    }
}

/// An exact decimal from YAML: `12.15` and `"12.15"` alike. YAML reads an
/// unquoted 12.15 as a float; asking for a string gets its text as written,
/// so the value never passes through a float.
pub fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    parse_decimal_or_explain(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

pub fn de_opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_decimal_or_explain(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// A decimal written with a dot (`12.15`, `40`, `1.5e1`).
fn parse_decimal_or_explain(text: &str) -> Result<Decimal, String> {
    parse_decimal(text).ok_or_else(|| {
        format!(
            "expected a decimal number such as 12.15, found {:?}",
            text.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn interest(amount: &str, due: &str, on: &str, rate: &str) -> String {
        late_interest(dec(amount), d(due), d(on), dec(rate))
            .unwrap()
            .to_string()
    }

    #[test]
    fn interest_counts_actual_days_over_365() {
        // 1000 × 12.15 % × 30 / 365 = 9.98630… → 9.99
        assert_eq!(
            interest("1000.00", "2026-11-01", "2026-12-01", "12.15"),
            "9.99"
        );
        // One day: the day after the due date.
        assert_eq!(interest("36500", "2026-11-01", "2026-11-02", "10"), "10.00");
        assert_eq!(
            interest("1000.00", "2026-11-01", "2026-11-01", "12.15"),
            "0.00"
        );
        assert_eq!(
            interest("1000.00", "2026-11-01", "2026-10-01", "12.15"),
            "0.00"
        );
        assert_eq!(interest("1000.00", "2026-11-01", "2026-12-01", "0"), "0.00");
        // An integer rate is the same rate.
        assert_eq!(interest("1000", "2026-11-01", "2026-12-01", "12"), "9.86");
    }

    #[test]
    fn interest_rounds_exact_midpoints_half_to_even() {
        // 10 % over 73 days is exactly 2 % of the amount.
        assert_eq!(interest("1.25", "2026-01-01", "2026-03-15", "10"), "0.02"); // 0.025
        assert_eq!(interest("1.75", "2026-01-01", "2026-03-15", "10"), "0.04"); // 0.035
        assert_eq!(
            interest("1000.25", "2026-01-01", "2026-03-15", "10"),
            "20.00"
        ); // 20.005
        assert_eq!(
            interest("1000.75", "2026-01-01", "2026-03-15", "10"),
            "20.02"
        ); // 20.015
        // Just above a midpoint rounds up: 20.0050274 (1000.2514 is not an amount, but exact).
        assert_eq!(
            interest("1000.2514", "2026-01-01", "2026-03-15", "10"),
            "20.01"
        );
    }

    #[test]
    fn a_leap_day_is_one_more_day_of_interest_over_365() {
        assert_eq!(days_late(d("2028-02-28"), d("2028-03-01")), 2);
        assert_eq!(days_late(d("2027-02-28"), d("2027-03-01")), 1);
        // A whole leap year late: 366/365 of the annual rate.
        // 36500 × 10 % × 366 / 365 = 3660
        assert_eq!(
            interest("36500", "2027-12-31", "2028-12-31", "10"),
            "3660.00"
        );
        assert_eq!(
            interest("36500", "2026-12-31", "2027-12-31", "10"),
            "3650.00"
        );
    }

    #[test]
    fn absurd_amounts_are_refused_not_wrapped() {
        assert!(
            late_interest(Decimal::MAX, d("2026-01-01"), d("2026-12-01"), dec("12.15")).is_err()
        );
    }

    #[test]
    fn consumers_owe_no_indemnity() {
        let forty = dec("40");
        assert_eq!(recovery_indemnity(forty, ["vip"]), forty);
        assert_eq!(recovery_indemnity(forty, []), forty);
        assert_eq!(recovery_indemnity(forty, ["vip", "b2c"]), Decimal::ZERO);
        // Tags are matched as written, like `tags.contains("b2c")` in scripts.
        assert_eq!(recovery_indemnity(forty, ["B2C", "b2c-pending"]), forty);
    }

    #[test]
    fn discount_amounts_and_deadline() {
        let terms = DiscountTerms {
            percent: dec("2"),
            within_days: 10,
        };
        let offer = terms.offer(dec("1840.00"), d("2026-11-23"), d("2026-12-03"));
        assert_eq!(offer.amount.to_string(), "36.80");
        assert_eq!(offer.amount_due_after.to_string(), "1803.20");
        assert_eq!(offer.deadline, d("2026-12-03"));
        assert!(offer.available, "the deadline day itself still counts");
        assert!(
            !terms
                .offer(dec("1840.00"), d("2026-11-23"), d("2026-12-04"))
                .available
        );
        // 2 % of 0.25 is 0.005: half to even gives 0.00, of 0.75 0.015 gives 0.02.
        assert_eq!(
            terms
                .offer(dec("0.25"), d("2026-01-01"), d("2026-01-01"))
                .amount
                .to_string(),
            "0.00"
        );
        assert_eq!(
            terms
                .offer(dec("0.75"), d("2026-01-01"), d("2026-01-01"))
                .amount
                .to_string(),
            "0.02"
        );
        let fraction = DiscountTerms {
            percent: dec("1.5"),
            within_days: 0,
        };
        let offer = fraction.offer(dec("99.99"), d("2026-01-01"), d("2026-01-01"));
        // 1.49985 → 1.50
        assert_eq!(offer.amount.to_string(), "1.50");
        assert_eq!(offer.amount_due_after.to_string(), "98.49");
        assert!(offer.available);
    }

    #[test]
    fn discount_deadlines_cross_month_ends_and_leap_days() {
        let terms = |within_days| DiscountTerms {
            percent: dec("2"),
            within_days,
        };
        let deadline = |days, issued| terms(days).offer(dec("100"), d(issued), d(issued)).deadline;
        assert_eq!(deadline(10, "2026-01-25"), d("2026-02-04"));
        assert_eq!(deadline(1, "2026-02-28"), d("2026-03-01"));
        assert_eq!(deadline(1, "2028-02-28"), d("2028-02-29"));
        assert_eq!(deadline(10, "2026-12-25"), d("2027-01-04"));
        assert_eq!(deadline(30, "2028-01-31"), d("2028-03-01"));
    }
}
