//! Properties of the money rules, checked on generated values against an
//! independent computation in whole cents (i128 arithmetic, half-to-even
//! rounding by hand): interest, the recovery indemnity, the early-payment
//! discount, and amounts read back from what they print.

use chrono::NaiveDate;
use proptest::prelude::*;
use relance::internals::{
    DiscountTerms, format_amount, late_interest, parse_amount, parse_decimal, recovery_indemnity,
};
use rust_decimal::Decimal;

/// `numerator / denominator` rounded half to even, for a positive denominator.
fn divide_half_even(numerator: i128, denominator: i128) -> i128 {
    let (q, r) = (
        numerator.div_euclid(denominator),
        numerator.rem_euclid(denominator),
    );
    match (2 * r).cmp(&denominator) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn cents(value: i128) -> Decimal {
    Decimal::from_i128_with_scale(value, 2)
}

fn date(days_from_2000: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Days::new(days_from_2000 as u64)
}

proptest! {
    /// Interest = due × rate% × days / 365, to the cent, half to even: with
    /// the amount in cents and the rate in hundredths of a percent, exactly
    /// `cents × rate × days / (365 × 100 × 100)` cents.
    #[test]
    fn late_interest_is_exact_to_the_cent(
        due_cents in 0i64..10_000_000_000,
        rate_hundredths in 0i64..5_000,
        days_late in -30i64..4_000,
        due_day in 0i64..20_000,
    ) {
        let due_date = date(due_day);
        let on = due_date + chrono::Duration::days(days_late);
        let interest = late_interest(
            cents(due_cents.into()),
            due_date,
            on,
            Decimal::new(rate_hundredths, 2),
        ).unwrap();
        let days = i128::from(days_late.max(0));
        let expected = divide_half_even(i128::from(due_cents) * i128::from(rate_hundredths) * days, 365 * 100 * 100);
        prop_assert_eq!(interest, cents(expected));
        prop_assert_eq!(interest.scale(), 2);
    }

    /// A negative rate is refused, never turned into a credit.
    #[test]
    fn a_negative_rate_is_refused(due_cents in 1i64..1_000_000, rate in 1i64..10_000) {
        let day = date(0);
        prop_assert!(late_interest(cents(due_cents.into()), day, day + chrono::Days::new(30), Decimal::new(-rate, 2)).is_err());
    }

    /// The indemnity is owed in full by businesses, not at all by consumers
    /// (any of the customer's tags is `b2c`).
    #[test]
    fn the_indemnity_is_all_or_nothing(
        indemnity_cents in 0i64..100_000,
        tags in proptest::collection::vec("[a-z0-9-]{1,8}", 0..4),
        consumer in any::<bool>(),
    ) {
        let mut tags = tags;
        tags.retain(|t| t != "b2c");
        if consumer {
            tags.push("b2c".into());
        }
        let owed = recovery_indemnity(cents(indemnity_cents.into()), tags.iter().map(String::as_str));
        prop_assert_eq!(owed, if consumer { Decimal::ZERO } else { cents(indemnity_cents.into()) });
    }

    /// The discount is `due × percent / 100` to the cent, half to even; what
    /// is left plus the discount is the amount due; it is available up to and
    /// including the deadline, `within_days` after the issue date.
    #[test]
    fn the_discount_is_exact_and_adds_up(
        due_cents in 0i64..10_000_000_000_000,
        percent_hundredths in 0i64..10_000,
        within_days in 0i64..120,
        issue_day in 0i64..20_000,
        paid_after in 0i64..200,
    ) {
        let terms = DiscountTerms { percent: Decimal::new(percent_hundredths, 2), within_days };
        let issue = date(issue_day);
        let on = issue + chrono::Days::new(paid_after as u64);
        let offer = terms.offer(cents(due_cents.into()), issue, on);
        let expected = divide_half_even(i128::from(due_cents) * i128::from(percent_hundredths), 100 * 100);
        prop_assert_eq!(offer.amount, cents(expected));
        prop_assert_eq!(offer.amount + offer.amount_due_after, cents(due_cents.into()));
        prop_assert_eq!(offer.deadline, issue + chrono::Days::new(within_days as u64));
        prop_assert_eq!(offer.available, paid_after <= within_days);
    }

    /// A decimal printed the way the config and templates write it reads
    /// back as the same number, scale included.
    #[test]
    fn decimals_read_back_what_they_print(mantissa in any::<i64>(), scale in 0u32..10) {
        let d = Decimal::new(mantissa, scale);
        prop_assert_eq!(parse_decimal(&d.to_string()), Some(d));
    }

    /// An amount a feed writes in either dialect (`1234.56`; `1 234,56` as
    /// relance itself prints French amounts) reads back exact.
    #[test]
    fn feed_amounts_read_back_in_both_dialects(value in -1_000_000_000_000i64..1_000_000_000_000, scale in 0u32..5) {
        let d = Decimal::new(value, scale);
        prop_assert_eq!(parse_amount(&d.to_string(), '.'), Ok(d));
        let french = format_amount(d, "fr");
        let read = parse_amount(&french, ',').map_err(|e| format!("{french:?}: {e}"));
        prop_assert_eq!(read.map(|r| r.normalize()), Ok(d.normalize()));
    }
}

#[test]
fn half_to_even_rounding_by_hand_is_right() {
    assert_eq!(divide_half_even(5, 10), 0);
    assert_eq!(divide_half_even(15, 10), 2);
    assert_eq!(divide_half_even(25, 10), 2);
    assert_eq!(divide_half_even(26, 10), 3);
    assert_eq!(divide_half_even(-15, 10), -2);
}

/// Ties are where half-to-even and half-up part: generated values rarely
/// land on one, so two are pinned here (0.5 cent → 0, 1.5 cents → 2).
#[test]
fn interest_ties_round_half_to_even() {
    let due_date = date(0);
    let on = due_date + chrono::Days::new(10);
    let interest = |due: i64| late_interest(cents(due.into()), due_date, on, Decimal::ONE).unwrap();
    assert_eq!(interest(1_825), cents(0));
    assert_eq!(interest(5_475), cents(2));
    assert_eq!(divide_half_even(1_825 * 100 * 10, 365 * 100 * 100), 0);
}
