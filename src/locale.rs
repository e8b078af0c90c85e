//! Numbers, money and dates written the way a language writes them (`1 234,56 €`, `€1,234.56`).

use chrono::{Datelike, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

/// Whether a message in `language` is written in French (`fr`, `fr-CA`…).
pub fn is_french(language: &str) -> bool {
    // Its first subtag, compared in place: a message asks for each amount and date.
    language
        .strip_prefix("fr")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// Writes a decimal the way a language does: French groups thousands with
/// spaces and uses a decimal comma, English uses commas and a dot. Plain
/// spaces, not no-break ones: what docs/contract.md §5 shows, and what survives every mail client.
pub fn format_number(value: Decimal, language: &str) -> String {
    let mut out = String::new();
    push_number(&mut out, value, is_french(language));
    out
}

/// [`format_number`] onto the end of `out`: a message's every amount is
/// written without a `String` of its own.
fn push_number(out: &mut String, value: Decimal, french: bool) {
    let (mut itoa, mut wide) = (itoa::Buffer::new(), String::new());
    let magnitude = Magnitude::of(value, &mut itoa, &mut wide);
    let int = magnitude.int;
    out.reserve(int.len() + int.len() / 3 + magnitude.scale + 2);
    if value.is_sign_negative() && !value.is_zero() {
        out.push('-');
    }
    // The digits are ASCII: groups of three from the right, the first one shorter.
    let mut group = match int.len() % 3 {
        0 => 3.min(int.len()),
        short => short,
    };
    out.push_str(&int[..group]);
    while group < int.len() {
        out.push(if french { ' ' } else { ',' });
        out.push_str(&int[group..group + 3]);
        group += 3;
    }
    magnitude.push_fraction(out, if french { ',' } else { '.' });
}

/// Formats money for a language: French groups with spaces and puts the
/// symbol after, English groups with commas and puts it before.
pub fn format_money(amount: Decimal, currency: &str, language: &str) -> String {
    let places = match currency {
        "JPY" | "KRW" | "CLP" | "ISK" => 0,
        _ => 2,
    };
    let mut rounded = if amount.scale() > places {
        amount.round_dp_with_strategy(places, RoundingStrategy::MidpointNearestEven)
    } else {
        amount
    };
    rounded.rescale(places);
    let french = is_french(language);
    let symbol = match (currency, french) {
        ("EUR", _) => "€",
        ("USD", false) => "$",
        ("USD", true) => "$ US",
        ("CAD", false) => "CA$",
        ("CAD", true) => "$ CA",
        ("GBP", _) => "£",
        ("JPY", _) => "¥",
        _ => currency,
    };
    let mut out = String::with_capacity(24);
    if french {
        push_number(&mut out, rounded, true);
        out.push(' ');
        out.push_str(symbol);
    } else {
        if rounded.is_sign_negative() && !rounded.is_zero() {
            out.push('-');
        }
        out.push_str(symbol);
        if symbol == currency {
            out.push(' ');
        }
        push_number(&mut out, rounded.abs(), false);
    }
    out
}

/// A percentage: `12,15 %` in French, `12.15%` in English.
pub fn format_percent(rate: Decimal, language: &str) -> String {
    let french = is_french(language);
    let mut out = String::with_capacity(12);
    push_number(&mut out, rate.normalize(), french);
    out.push_str(if french { " %" } else { "%" });
    out
}

const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A long date: `1er novembre 2026` in French, `November 1, 2026` in English.
pub fn format_date(date: NaiveDate, language: &str) -> String {
    let month = date.month0() as usize;
    let mut number = itoa::Buffer::new();
    let mut out = String::with_capacity(24);
    if is_french(language) {
        out.push_str(match date.day() {
            1 => "1er",
            day => number.format(day),
        });
        out.push(' ');
        out.push_str(MONTHS_FR[month]);
        out.push(' ');
    } else {
        out.push_str(MONTHS_EN[month]);
        out.push(' ');
        out.push_str(number.format(date.day()));
        out.push_str(", ");
    }
    out.push_str(number.format(date.year()));
    out
}

/// An amount as text with at least cents: the form amounts take in JSON output.
pub fn money(d: Decimal) -> String {
    decimal_text(with_cents(d))
}

/// `d` as `Decimal`'s `Display` writes it: the digits of its mantissa with
/// its scale's places after a point (a `0` before it for a fraction), and a
/// `-` when it is negative (`-0.00` too). A preview writes a million
/// amounts: `Display` took a fifth of their formatting.
pub fn decimal_text(d: Decimal) -> String {
    let (mut itoa, mut wide) = (itoa::Buffer::new(), String::new());
    let magnitude = Magnitude::of(d, &mut itoa, &mut wide);
    let mut out = String::with_capacity(magnitude.int.len() + magnitude.scale + 2);
    if d.is_sign_negative() {
        out.push('-');
    }
    out.push_str(magnitude.int);
    magnitude.push_fraction(&mut out, '.');
    out
}

/// A decimal's magnitude as `Display` writes it (`0.05`, `1234.50`), in
/// parts taken from the digits of its mantissa: its integer part, then
/// `scale` digits after the point, the first of them zeros the mantissa
/// lacks (`0.05` is mantissa 5 with one zero). Written by the caller,
/// grouped or not, without a copy of the text first.
struct Magnitude<'d> {
    int: &'d str,
    /// The places after the point: none, no point.
    scale: usize,
    zeros: usize,
    fraction: &'d str,
}

impl<'d> Magnitude<'d> {
    /// From `itoa`'s digits when the mantissa fits 64 bits (every amount of
    /// an invoice), else from `Display`'s text, kept in `wide`.
    fn of(d: Decimal, itoa: &'d mut itoa::Buffer, wide: &'d mut String) -> Self {
        let scale = d.scale() as usize;
        let Ok(mantissa) = u64::try_from(d.mantissa().unsigned_abs()) else {
            *wide = d.abs().to_string();
            let (int, fraction) = wide.split_once('.').unwrap_or((wide.as_str(), ""));
            // As `Display` wrote it: its places are those it wrote.
            return Magnitude {
                int,
                scale: fraction.len(),
                zeros: 0,
                fraction,
            };
        };
        let digits = itoa.format(mantissa);
        match digits.len().checked_sub(scale).filter(|&int| int > 0) {
            Some(int) => {
                let (int, fraction) = digits.split_at(int);
                Magnitude {
                    int,
                    scale,
                    zeros: 0,
                    fraction,
                }
            }
            None => Magnitude {
                int: "0",
                scale,
                zeros: scale - digits.len(),
                fraction: digits,
            },
        }
    }

    /// The point (`.` or `,`) and the fraction's digits, if it has any places.
    fn push_fraction(&self, out: &mut String, point: char) {
        if self.scale > 0 {
            out.push(point);
            (0..self.zeros).for_each(|_| out.push('0'));
            out.push_str(self.fraction);
        }
    }
}

/// An exact amount with at least cents, grouped the way `language` writes
/// numbers (`5 600,00` in French, `5,600.00` in English), without a currency:
/// for tables that have a currency column.
pub fn format_amount(d: Decimal, language: &str) -> String {
    format_number(with_cents(d), language)
}

/// Amounts show at least cents: 100 is 100.00, 99.995 stays exact.
pub fn with_cents(mut d: Decimal) -> Decimal {
    if d.scale() < 2 {
        d.rescale(2);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`decimal_text`] writes what `Display` writes, for every scale, signs
    /// (negative zero too), mantissas of one digit to the widest, and those
    /// past 64 bits.
    #[test]
    fn decimals_are_written_as_display_writes_them() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut cases: Vec<Decimal> = vec![
            Decimal::ZERO,
            Decimal::MAX,
            Decimal::MIN,
            Decimal::from_i128_with_scale(i128::from(u64::MAX), 3),
            Decimal::from_i128_with_scale(i128::from(u64::MAX) + 1, 28),
        ];
        let mut negative_zero = Decimal::new(0, 2);
        negative_zero.set_sign_negative(true);
        cases.push(negative_zero);
        for scale in 0..=28 {
            for digits in 0..=20u32 {
                let m = i128::from(next() % 10u64.saturating_pow(digits).max(1));
                for m in [m, -m, 1, -1, 0] {
                    cases.push(Decimal::from_i128_with_scale(m, scale));
                }
            }
        }
        for d in cases {
            assert_eq!(decimal_text(d), d.to_string(), "{d:?}");
            // The same digits, grouped: by commas and a point in English,
            // by spaces and a comma in French.
            let digits = d.abs().to_string();
            let sign = if d.is_sign_negative() && !d.is_zero() {
                "-"
            } else {
                ""
            };
            let english = format_number(d, "en");
            assert_eq!(english.replace(',', ""), format!("{sign}{digits}"), "{d:?}");
            let french = format_number(d, "fr");
            assert_eq!(
                french.replace(' ', "").replace(',', "."),
                format!("{sign}{digits}"),
                "{d:?}"
            );
            let int = digits.split('.').next().unwrap_or_default().len();
            assert_eq!(english.matches(',').count(), (int - 1) / 3, "{d:?}");
        }
    }

    /// French is a language whose first subtag is `fr`.
    #[test]
    fn french_is_fr_and_its_regions() {
        for (language, french) in [
            ("fr", true),
            ("fr-CA", true),
            ("fr-", true),
            ("fry", false),
            ("en", false),
            ("en-fr", false),
            ("", false),
            ("f", false),
        ] {
            assert_eq!(is_french(language), french, "{language}");
            assert_eq!(
                is_french(language),
                language.split('-').next() == Some("fr")
            );
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn money_in_french_and_english() {
        for (amount, currency, language, written) in [
            ("1234.56", "EUR", "fr", "1 234,56 €"),
            ("1234.56", "EUR", "en", "€1,234.56"),
            ("1234.56", "EUR", "fr-CA", "1 234,56 €"),
            ("1234567.5", "USD", "en", "$1,234,567.50"),
            ("12", "CAD", "fr-CA", "12,00 $ CA"),
            ("-40", "EUR", "fr", "-40,00 €"),
            ("0.125", "EUR", "en", "€0.12"), // half to even
            ("999.995", "CHF", "en", "CHF 1,000.00"),
            ("100", "CHF", "fr", "100,00 CHF"),
            ("-1234.5", "USD", "en", "-$1,234.50"),
            ("1234567.891", "EUR", "fr", "1 234 567,89 €"),
            // Rounded to zero: no sign, in either language.
            ("-0.001", "EUR", "en", "€0.00"),
            ("-0.001", "EUR", "fr", "0,00 €"),
            ("1234.5", "JPY", "en", "¥1,234"),
            ("1235.5", "JPY", "fr", "1 236 ¥"),
            ("-5", "XYZ", "en", "-XYZ 5.00"),
            ("100", "EUR", "en", "€100.00"),
            ("100000", "GBP", "en", "£100,000.00"),
            ("1000", "EUR", "fr", "1 000,00 €"),
        ] {
            let amount = amount.parse().unwrap();
            assert_eq!(
                format_money(amount, currency, language),
                written,
                "{amount} {currency} {language}"
            );
        }
        assert_eq!(format_percent("12.150".parse().unwrap(), "fr"), "12,15 %");
        assert_eq!(format_percent("12.15".parse().unwrap(), "en"), "12.15%");
    }

    #[test]
    fn amounts_for_tables_are_exact_and_grouped_without_a_currency() {
        let a = |s: &str, l: &str| format_amount(s.parse().unwrap(), l);
        assert_eq!(a("5600", "fr"), "5 600,00");
        assert_eq!(a("5600", "en"), "5,600.00");
        assert_eq!(a("1234567.891", "fr-CA"), "1 234 567,891");
        assert_eq!(a("0", "en"), "0.00");
    }

    #[test]
    fn long_dates() {
        assert_eq!(format_date(d("2026-11-01"), "fr"), "1er novembre 2026");
        assert_eq!(format_date(d("2026-12-24"), "fr"), "24 décembre 2026");
        assert_eq!(format_date(d("2026-11-01"), "en"), "November 1, 2026");
        assert_eq!(format_date(d("2028-02-29"), "en-GB"), "February 29, 2028");
        // Every day of five years, leap days too, as chrono writes them.
        let mut day = d("2024-01-01");
        while day < d("2029-01-01") {
            assert_eq!(format_date(day, "en"), day.format("%B %-d, %Y").to_string());
            let french = format_date(day, "fr");
            let number = if day.day() == 1 {
                "1er".into()
            } else {
                day.day().to_string()
            };
            assert!(french.starts_with(&format!("{number} ")), "{french}");
            assert!(french.ends_with(&format!(" {}", day.year())), "{french}");
            day = day.succ_opt().unwrap();
        }
    }
}
