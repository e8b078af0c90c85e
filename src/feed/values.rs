//! Dates, amounts and codes as feeds write them, read into exact values.

use std::borrow::Cow;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::is_currency_code;
use crate::diagnostics::quote;

/// A date format parsed once per feed rather than once per date.
pub(super) struct DateFormat<'f> {
    /// The positions of the digits, for a format of `%Y`, `%m` and `%d` between literals.
    fixed: Option<FixedDate>,
    /// The format for chrono, for dates of any other shape. None for the
    /// default `%Y-%m-%d`, which is only read in its fixed shape (`2026-1-5`
    /// is not a date there).
    strftime: Option<Vec<chrono::format::Item<'f>>>,
}

impl<'f> DateFormat<'f> {
    pub(super) fn new(format: &'f str) -> Option<Self> {
        let items = chrono::format::StrftimeItems::new(format).parse().ok()?;
        Some(DateFormat {
            fixed: FixedDate::new(&items),
            strftime: (format != "%Y-%m-%d").then_some(items),
        })
    }

    pub(super) fn parse(&self, s: &str) -> Option<NaiveDate> {
        if let Some((year, month, day)) = self.fixed.as_ref().and_then(|f| f.fields(s)) {
            return NaiveDate::from_ymd_opt(year, month, day);
        }
        let mut parsed = chrono::format::Parsed::new();
        chrono::format::parse(&mut parsed, s, self.strftime.as_ref()?.iter()).ok()?;
        parsed.to_naive_date().ok()
    }
}

/// A date read as a feed whose `date_format` is `format` reads it; `None`
/// when `format` is not a strftime format or `s` not a date in it. (What the
/// fuzz target `date` calls: the feeds build the format once.)
pub fn parse_date(format: &str, s: &str) -> Option<NaiveDate> {
    DateFormat::new(format)?.parse(s)
}

/// A date format made of `%Y`, `%m` and `%d` (once each) and separators
/// without digits, such as `%d/%m/%Y`, at most 16 bytes long. A date of
/// exactly its shape, all digits where the format has numbers
/// (`05/01/2026`), is read by position: chrono's parser reads the same
/// numbers from it, far slower. Chrono still says which dates exist
/// ([`NaiveDate::from_ymd_opt`]) and reads the dates of any other shape
/// (`5/1/2026`).
struct FixedDate {
    len: usize,
    /// The shape as one number, a byte per byte of a date (the first the
    /// lowest): 0xFF where the date has a digit, 0 elsewhere…
    digits: u128,
    /// …and where it does not, the separator's byte, then 0 past its end.
    separators: u128,
    /// Where the year's four digits and the month's and day's two start,
    /// in bits from the first byte.
    year: u32,
    month: u32,
    day: u32,
}

/// A byte repeated across the 16 bytes of a `u128`.
const fn every_byte(byte: u8) -> u128 {
    u128::from_le_bytes([byte; 16])
}

impl FixedDate {
    fn new(items: &[chrono::format::Item]) -> Option<Self> {
        use chrono::format::{Item, Numeric};
        // Per byte of a date: `None` for a digit, else the separator's byte.
        let mut shape: Vec<Option<u8>> = Vec::new();
        let (mut year, mut month, mut day) = (None, None, None);
        for item in items {
            let (place, width) = match item {
                Item::Literal(s) if s.bytes().all(|b| b.is_ascii_punctuation()) => {
                    shape.extend(s.bytes().map(Some));
                    continue;
                }
                // Chrono reads at most 4 digits for an unsigned year, 2 for a month or day.
                Item::Numeric(Numeric::Year, _) => (&mut year, 4),
                Item::Numeric(Numeric::Month, _) => (&mut month, 2),
                Item::Numeric(Numeric::Day, _) => (&mut day, 2),
                _ => return None,
            };
            if place.replace(shape.len()..shape.len() + width).is_some() {
                return None;
            }
            shape.resize(shape.len() + width, None);
        }
        let mut digits = [0; 16];
        let mut separators = [0; 16];
        for (i, byte) in shape.iter().enumerate() {
            match byte {
                None => *digits.get_mut(i)? = 0xFF,
                Some(separator) => *separators.get_mut(i)? = *separator,
            }
        }
        let bits = |place: Option<std::ops::Range<usize>>| u32::try_from(place?.start * 8).ok();
        Some(FixedDate {
            len: shape.len(),
            digits: u128::from_le_bytes(digits),
            separators: u128::from_le_bytes(separators),
            year: bits(year)?,
            month: bits(month)?,
            day: bits(day)?,
        })
    }

    /// The year, month and day of a date of this shape; None for another shape.
    fn fields(&self, s: &str) -> Option<(i32, u32, u32)> {
        let b = s.as_bytes();
        if b.len() != self.len {
            return None;
        }
        // All the bytes are checked at once, as one number: every date of
        // a feed is, and a byte at a time took several times as long.
        let date = load_le(b);
        let separators_fit = date & !self.digits == self.separators;
        // The digits' places as they are, '0' in the others: then every byte
        // is a digit, 0x30 to 0x39, when its high half is 3 and adding 6
        // leaves it 3 (a byte of 0xFA or more, whose carry would spill into
        // the next, already fails the first test).
        let d = (date & self.digits) | (every_byte(b'0') & !self.digits);
        let high = every_byte(0xF0);
        let all_digits =
            (d & high) | ((d.wrapping_add(every_byte(6)) & high) >> 4) == every_byte(0x33);
        // The numbers read from the number already loaded, once its bytes
        // are known to be digits (their low halves), two digits at a time.
        let two = |at: u32| {
            let pair = d.checked_shr(at).unwrap_or(0) as u32;
            (pair & 0x0F) * 10 + (pair >> 8 & 0x0F)
        };
        (separators_fit && all_digits).then(|| {
            (
                (two(self.year) * 100 + two(self.year + 16)) as i32,
                two(self.month),
                two(self.day),
            )
        })
    }
}

/// The bytes of `b` (at most 16) as one little-endian number, zero past
/// its end: from two overlapping eight-byte reads when it has eight bytes
/// or more, as a date has (a copy into a buffer was a call to `memcpy`).
fn load_le(b: &[u8]) -> u128 {
    match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(first), Some(last)) if b.len() <= 16 => {
            // The last eight bytes moved down past those the first read has.
            let past = (16 - b.len()) as u32 * 8;
            let rest = u64::from_le_bytes(*last).checked_shr(past).unwrap_or(0);
            u128::from(u64::from_le_bytes(*first)) | u128::from(rest) << 64
        }
        _ => {
            let mut padded = [0; 16];
            let n = b.len().min(16);
            padded[..n].copy_from_slice(&b[..n]);
            u128::from_le_bytes(padded)
        }
    }
}

/// A currency code as relance keeps it: upper case (`usd` is `USD`).
pub(super) fn currency_code(c: &str) -> Option<Cow<'_, str>> {
    if is_currency_code(c) {
        return Some(Cow::Borrowed(c));
    }
    let upper = c.to_ascii_uppercase();
    is_currency_code(&upper).then_some(Cow::Owned(upper))
}

/// A language tag in its usual case (`FR` → `fr`, `fr-ca` → `fr-CA`):
/// tags are case-insensitive, but template files and the French/English
/// helpers are looked up by the canonical spelling, so an export writing
/// `FR` must not get English amounts or fall back to the default language.
pub(super) fn canonical_language(tag: &str) -> String {
    tag.split('-')
        .enumerate()
        .map(|(i, part)| match (i, part.len()) {
            (0, _) => part.to_ascii_lowercase(),
            (_, 2) => part.to_ascii_uppercase(), // region: CA, GB
            (_, 4) => {
                // script: Latn
                let lower = part.to_ascii_lowercase();
                lower[..1].to_ascii_uppercase() + &lower[1..]
            }
            _ => part.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A JSON number given as an amount, written the way the feed's amounts are
/// (`decimal`), for [`parse_amount`]: JSON writes numbers with a dot whatever
/// the feed's setting, and may use an exponent (`1.5E3`). A number that is no
/// exact decimal is left as written, to be reported as such.
pub(super) fn json_amount(number: &str, decimal: char) -> String {
    let exact = if number.contains(['e', 'E']) {
        Decimal::from_scientific(number)
    } else {
        Decimal::from_str_exact(number)
    };
    match exact {
        // Decimal writes digits, `-` and at most one `.`: nothing else to translate.
        Ok(d) if decimal == ',' => d.to_string().replace('.', ","),
        Ok(d) => d.to_string(),
        Err(_) => number.to_string(),
    }
}

/// Parses an amount exactly: an optional sign, the integer part, then the
/// `decimal` separator and the fraction. The integer part may group thousands
/// with one separator — a space, a no-break space, `'`, and with `decimal: ","`
/// a dot (`1 234,56`, `1.234.567,89`) — but only between groups of exactly three
/// digits: a dot in a `decimal: ","` feed (`1234.56`, `1.5`) is then refused
/// rather than silently read as 123456 or 15. With `.` a comma is refused
/// rather than guessed (is `1,5` one and a half or fifteen?).
pub fn parse_amount(s: &str, decimal: char) -> Result<Decimal, String> {
    // The common cases, `1234.56` in a feed of decimal points and `1234,56`
    // in one of decimal commas, are found in one pass over their bytes:
    // what [`amount_in_full`] accepts, read as it reads it.
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !matches!(decimal, '.' | ',') || !plain_decimal(unsigned, decimal) {
        return amount_in_full(s, unsigned, decimal);
    }
    if let Some(amount) = plain_amount(unsigned.as_bytes(), decimal as u8, s.starts_with('-')) {
        return Ok(amount);
    }
    if decimal == '.' {
        return exactly(s, s);
    }
    // As `amount_in_full` writes it for rust_decimal: `whole`, all digits,
    // is one group. Four parts in an array: its chain of iterators, shared
    // here, took this function 8 % more instructions.
    let (whole, fraction) = unsigned.split_once(decimal).unwrap_or((unsigned, ""));
    let sign = if s.starts_with('-') { "-" } else { "" };
    let point = if fraction.is_empty() { "" } else { "." };
    joined([sign, whole, point, fraction].into_iter(), |text| {
        exactly(text, s)
    })
}

/// Reads `text` (the amount `s`, rewritten for rust_decimal) exactly; an
/// error quotes `s` as the feed wrote it.
fn exactly(text: &str, s: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text)
        .map_err(|e| format!("amount {} cannot be read exactly: {e}", quote(s)))
}

/// [`parse_amount`], every rule checked in turn; `unsigned` is `s` without
/// its sign. Out of line: the quick path, which every row of a feed takes,
/// is then small enough to stay inlined where a row is read.
#[inline(never)]
fn amount_in_full(s: &str, unsigned: &str, decimal: char) -> Result<Decimal, String> {
    if decimal == '.' && s.contains(',') {
        return Err(format!(
            "expected a decimal number like 1234.56, found {} (for amounts written 1 234,56 set `decimal: \",\"` on this feed)",
            quote(s)
        ));
    }
    let invalid = || {
        format!(
            "expected a decimal number like {}, found {}",
            if decimal == ',' { "1234,56" } else { "1234.56" },
            quote(s)
        )
    };
    let (whole, fraction) = unsigned.split_once(decimal).unwrap_or((unsigned, ""));
    let separator = thousands_separator(whole, decimal).ok_or_else(invalid)?;
    // `1.2.3` is as unreadable as `abc`: say so the same way.
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || whole.is_empty() && fraction.is_empty() {
        return Err(invalid());
    }
    // Digits without separators, in a feed of decimal points, are parsed as given.
    if separator.is_none() && decimal == '.' {
        return exactly(s, s);
    }
    let sign = if s.starts_with('-') { "-" } else { "" };
    let point = if fraction.is_empty() { "" } else { "." };
    // Without a separator, `whole` is one group whatever it is split by.
    let groups = whole.split(separator.unwrap_or(decimal));
    joined(
        std::iter::once(sign).chain(groups).chain([point, fraction]),
        |text| exactly(text, s),
    )
}

/// `f` of the parts written one after the other: on the stack when they
/// fit, as an amount does (a `String` per amount of a feed of decimal
/// commas cost more than reading the amount).
fn joined<'p, R>(parts: impl Iterator<Item = &'p str> + Clone, f: impl FnOnce(&str) -> R) -> R {
    let mut buffer = [0; 64];
    let mut len = 0;
    for part in parts.clone() {
        let Some(room) = buffer.get_mut(len..len + part.len()) else {
            return f(&parts.collect::<String>());
        };
        room.copy_from_slice(part.as_bytes());
        len += part.len();
    }
    // Whole strings one after the other are a string: the other arm is
    // never taken.
    match std::str::from_utf8(&buffer[..len]) {
        Ok(text) => f(text),
        Err(_) => f(&parts.collect::<String>()),
    }
}

/// The amount `unsigned` (digits, one `decimal` point at most: see
/// [`plain_decimal`]) is, made from its digits and the place of its point:
/// what rust_decimal reads from the same text (a test holds them together),
/// without reading it a second time. `None` where that is less plain: more
/// than 18 bytes, a point first or last, a negative zero.
fn plain_amount(unsigned: &[u8], decimal: u8, negative: bool) -> Option<Decimal> {
    if unsigned.len() > 18
        || unsigned.first() == Some(&decimal)
        || unsigned.last() == Some(&decimal)
    {
        return None;
    }
    let (mut mantissa, mut scale) = (0i64, 0u32);
    for (i, &byte) in unsigned.iter().enumerate() {
        if byte == decimal {
            scale = u32::try_from(unsigned.len() - 1 - i).ok()?;
        } else {
            // Eighteen digits at most: no overflow.
            mantissa = mantissa * 10 + i64::from(byte - b'0');
        }
    }
    match (negative, mantissa) {
        (true, 0) => None,
        (true, _) => Some(Decimal::new(-mantissa, scale)),
        (false, _) => Some(Decimal::new(mantissa, scale)),
    }
}

/// Digits with at most one `decimal` separator among them, at least one digit.
fn plain_decimal(unsigned: &str, decimal: char) -> bool {
    let (mut digits, mut points) = (0, 0);
    for byte in unsigned.bytes() {
        match byte {
            b'0'..=b'9' => digits += 1,
            _ if char::from(byte) == decimal => points += 1,
            _ => return false,
        }
    }
    digits > 0 && points <= 1
}

/// The thousands separator of an amount's integer part (see
/// [`parse_amount`]): `Some(None)` for digits alone, `None` unless every
/// group after the first has exactly three digits, all split by the same
/// separator.
fn thousands_separator(whole: &str, decimal: char) -> Option<Option<char>> {
    let Some(separator) = whole.chars().find(|c| !c.is_ascii_digit()) else {
        return Some(None);
    };
    let thousands = matches!(separator, ' ' | '\u{a0}' | '\u{202f}' | '\'')
        || (separator == '.' && decimal == ',');
    let digits = |g: &str| g.bytes().all(|b| b.is_ascii_digit());
    let mut groups = whole.split(separator);
    let first = groups
        .next()
        .filter(|g| (1..=3).contains(&g.len()) && digits(g));
    (thousands && first.is_some() && groups.all(|g| g.len() == 3 && digits(g)))
        .then_some(Some(separator))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text of any length up to sixteen bytes is the number its bytes
    /// make, zero past its end.
    #[test]
    fn text_is_loaded_as_its_bytes_padded_with_zeros() {
        let text: Vec<u8> = (1..=16).collect();
        for len in 0..=16 {
            let mut padded = [0; 16];
            padded[..len].copy_from_slice(&text[..len]);
            assert_eq!(load_le(&text[..len]), u128::from_le_bytes(padded), "{len}");
        }
    }

    #[test]
    fn language_tags_get_their_canonical_case() {
        assert_eq!(canonical_language("FR"), "fr");
        assert_eq!(canonical_language("fr-ca"), "fr-CA");
        assert_eq!(canonical_language("EN-gb"), "en-GB");
        assert_eq!(canonical_language("zh-HANT-tw"), "zh-Hant-TW");
        assert_eq!(canonical_language("en"), "en");
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1234.56", '.').unwrap().to_string(), "1234.56");
        assert_eq!(
            parse_amount("1\u{202f}234,5", ',').unwrap().to_string(),
            "1234.5"
        );
        assert_eq!(
            parse_amount("1.234,56", ',').unwrap().to_string(),
            "1234.56"
        );
        assert_eq!(parse_amount("-10", '.').unwrap().to_string(), "-10");
        // Read in one pass: a sign, digits, at most one point.
        for (given, read) in [(".5", "0.5"), ("5.", "5"), ("-.5", "-0.5"), ("+3", "3")] {
            assert_eq!(
                parse_amount(given, '.').unwrap().to_string(),
                read,
                "{given}"
            );
        }
        for refused in ["", "-", ".", "1.2.3", "+-1", "1 234.5.6"] {
            assert!(parse_amount(refused, '.').is_err(), "{refused:?}");
        }
        assert!(
            parse_amount("123456789012345678901234567890.5", '.')
                .unwrap_err()
                .contains("cannot be read exactly")
        );
        assert!(parse_amount("1,5", '.').is_err());
        assert!(parse_amount("1e3", '.').is_err());
        assert_eq!(
            parse_amount("1.2.3", '.'),
            Err("expected a decimal number like 1234.56, found \"1.2.3\"".into())
        );
        assert!(parse_amount("", '.').is_err());
    }

    /// An amount longer than the stack's room is read the same way.
    #[test]
    fn long_amounts_in_a_feed_of_decimal_commas() {
        let fraction = "1".repeat(28);
        let (comma, point) = (format!("-0,{fraction}"), format!("-0.{fraction}"));
        assert_eq!(parse_amount(&comma, ','), parse_amount(&point, '.'));
        assert_eq!(parse_amount(&comma, ',').unwrap().to_string(), point);
        let long = format!("1 000 000,{}", "5".repeat(60));
        assert!(long.len() > 64);
        assert_eq!(
            parse_amount(&long, ','),
            Err(format!(
                "amount {long:?} cannot be read exactly: {}",
                Decimal::from_str_exact(&format!("1000000.{}", "5".repeat(60))).unwrap_err()
            ))
        );
    }

    /// The fixed shape's check of all bytes at once, against what chrono
    /// reads and writes back unchanged, and the dates read against
    /// chrono's, on dates of each shape and their near misses.
    #[test]
    fn dates_of_a_fixed_shape_are_read_as_chrono_reads_them() {
        // What the shape reads: a date exactly as chrono writes it, year 0 to 9999.
        fn written_back(format: &str, s: &str) -> Option<(i32, u32, u32)> {
            let date = chrono::NaiveDate::parse_from_str(s, format).ok()?;
            (date.format(format).to_string() == s && date.year() >= 0)
                .then(|| (date.year(), date.month(), date.day()))
        }
        use chrono::Datelike;
        // Dates, then as many as two characters replaced by another, by
        // nothing or by two: digits, separators and wider characters.
        let pieces = [
            "0", "1", "9", "/", "-", ".", "!", ":", "?", "", "\0", "a", "é", "٣", "😀", " ", "29",
            "3/",
        ];
        let mut random = crate::text::tests::random(7);
        let mut next = move || random() as usize;
        let formats = [
            "%Y-%m-%d",
            "%d/%m/%Y",
            "%m/%d/%Y",
            "%d.%m.%Y",
            "%Y%m%d",
            "%Y--%m--%d!!!!",
            "%Y--%m--%d!!!!!",
        ];
        let mut dates = 0;
        for format in formats {
            let fixed = DateFormat::new(format).unwrap();
            // A date is 2 bytes longer than its format: `%Y` is 4 digits.
            assert_eq!(fixed.fixed.is_some(), format.len() + 2 <= 16, "{format}");
            for _ in 0..40_000 {
                let mut text = format
                    .replace("%Y", &format!("{:04}", next() % 10_000))
                    .replace("%m", &format!("{:02}", next() % 14))
                    .replace("%d", &format!("{:02}", next() % 33));
                for _ in 0..next() % 3 {
                    let mut chars: Vec<String> = text.chars().map(String::from).collect();
                    let at = next() % chars.len();
                    chars[at] = pieces[next() % pieces.len()].to_string();
                    text = chars.concat();
                }
                let read = parse_date(format, &text);
                let chrono = chrono::NaiveDate::parse_from_str(&text, format).ok();
                if let Some(fixed) = &fixed.fixed {
                    let fields = fixed.fields(&text);
                    if let Some((y, m, d)) = fields {
                        assert_eq!(read, chrono::NaiveDate::from_ymd_opt(y, m, d), "{text:?}");
                    }
                    assert_eq!(
                        fields.filter(|&(y, m, d)| chrono::NaiveDate::from_ymd_opt(y, m, d).is_some()),
                        written_back(format, &text),
                        "{text:?} in {format}"
                    );
                }
                if format == "%Y-%m-%d" {
                    assert!(read.is_none() || read == chrono, "{text:?}");
                } else {
                    assert_eq!(read, chrono, "{text:?} in {format}");
                }
                dates += usize::from(read.is_some());
            }
        }
        assert!(dates > 50_000, "{dates}");
    }

    /// Amounts read by the quick path are read as checking every rule reads
    /// them: short texts of every kind, and long ones of digits around the
    /// eighteen a quick amount holds at most.
    #[test]
    fn plain_amounts_are_read_as_every_rule_reads_them() {
        const PIECES: [&str; 13] = [
            "0", "1", "9", "5", ",", ".", "-", "+", " ", "'", "\u{a0}", "\u{202f}", "é",
        ];
        const DIGITS: [&str; 13] = [
            "0", "1", "9", "5", "0", "1", "9", "5", "0", "9", ".", ",", "-",
        ];
        let mut plain = 0;
        // The edges of the quick path, then random texts.
        let edges = [
            "-0",
            "-0.00",
            "+0.10",
            "000.10",
            "5.",
            ".5",
            "5,",
            ",5",
            "-5.",
            "-.5",
            "999999999999999999",
            "9999999999999999999",
            "99999999999999999.9",
            "0.99999999999999999",
            "-99999999999999999",
            "-999999999999999999",
        ]
        .map(String::from);
        let texts = crate::text::tests::random_texts(&PIECES, 9, 20_000);
        let texts = texts.chain(crate::text::tests::random_texts(&DIGITS, 24, 20_000));
        for text in edges.into_iter().chain(texts) {
            for decimal in ['.', ','] {
                let unsigned = text.strip_prefix(['-', '+']).unwrap_or(&text);
                plain += usize::from(plain_decimal(unsigned, decimal));
                // To the bit: the same scale and sign, not only the same value.
                let full = amount_in_full(&text, unsigned, decimal).map(|d| d.serialize());
                let quick = parse_amount(&text, decimal).map(|d| d.serialize());
                assert_eq!(quick, full, "{text:?} {decimal}");
            }
        }
        assert!(plain > 8_000, "{plain}");
    }

    #[test]
    fn thousands_separators_only_between_groups_of_three() {
        let ok = |s: &str, decimal| parse_amount(s, decimal).unwrap().to_string();
        assert_eq!(ok("1.234.567,89", ','), "1234567.89");
        assert_eq!(ok("1 234,56", ','), "1234.56");
        assert_eq!(ok("1\u{a0}234\u{a0}567", ','), "1234567");
        assert_eq!(ok("-1'234,5", ','), "-1234.5");
        assert_eq!(ok("1.234", ','), "1234");
        assert_eq!(ok("12 345.6", '.'), "12345.6");
        assert_eq!(ok("+0,5", ','), "0.5");
        let comma = |s: &str| format!("expected a decimal number like 1234,56, found {s:?}");
        for bad in [
            "1234.56",
            "1.5",
            "1 23,4",
            "1234 567,8",
            "1.234 567",
            ",",
            "1,2,3",
            "1.234,5.6",
        ] {
            assert_eq!(parse_amount(bad, ','), Err(comma(bad)), "{bad}");
        }
        for bad in ["1 23.4", "1234 567", "1.234.567", " 123"] {
            assert!(parse_amount(bad, '.').is_err(), "{bad}");
        }
    }
}
