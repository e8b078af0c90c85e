//! Sending days: the weekdays and bank holidays on which reminders go out, and
//! where a stage whose date falls on another day moves to.
//!
//! Groundwork for the calendar of issue 6 (`send_days`, `holidays`, `shift`):
//! tested here, not yet consulted by the engine, so today every day is a
//! sending day as SPEC §4 describes.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Deserializer, Serialize};

/// Built-in bank-holiday calendars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum Holidays {
    /// France: the eleven public holidays (fixed days, Easter Monday,
    /// Ascension, Whit Monday).
    FR,
    /// Canada: the federal general holidays of the Canada Labour Code, with a
    /// holiday that falls on a weekend observed on the next working day.
    CA,
}

/// Where a stage whose date is not a sending day goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shift {
    /// To the next sending day (the default: never earlier than the policy says).
    #[default]
    Later,
    /// To the previous sending day: for notes before the due date, so that a
    /// "due in two days" reminder never arrives after the due date.
    Earlier,
}

/// The `holidays:` setting: built-in calendars plus dates of the company's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidaySettings {
    #[serde(default)]
    pub calendars: Vec<Holidays>,
    #[serde(default)]
    pub dates: Vec<NaiveDate>,
}

/// The days reminders may go out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Indexed by `Weekday::num_days_from_monday`.
    send_days: [bool; 7],
    calendars: Vec<Holidays>,
    dates: BTreeSet<NaiveDate>,
}

/// Monday to Friday: the default sending days.
pub const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(&WEEKDAYS, &HolidaySettings::default())
    }
}

impl Calendar {
    pub fn new(send_days: &[Weekday], holidays: &HolidaySettings) -> Calendar {
        let mut days = [false; 7];
        for d in send_days {
            days[d.num_days_from_monday() as usize] = true;
        }
        let mut calendars = holidays.calendars.clone();
        calendars.sort();
        calendars.dedup();
        Calendar {
            send_days: days,
            calendars,
            dates: holidays.dates.iter().copied().collect(),
        }
    }

    /// Every day of the year is a sending day.
    pub fn every_day() -> Calendar {
        Calendar::new(
            &[
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ],
            &HolidaySettings::default(),
        )
    }

    /// Whether no day of the week is a sending day (a configuration error).
    pub fn is_empty(&self) -> bool {
        !self.send_days.contains(&true)
    }

    /// Why `date` is not a sending day, or `None` when it is one.
    pub fn closed(&self, date: NaiveDate) -> Option<String> {
        if !self.send_days[date.weekday().num_days_from_monday() as usize] {
            return Some("not a sending day".into());
        }
        if self.dates.contains(&date) {
            return Some("a holiday in the config".into());
        }
        self.calendars
            .iter()
            .find_map(|c| holiday(*c, date))
            .map(|name| format!("bank holiday: {name}"))
    }

    pub fn is_sending_day(&self, date: NaiveDate) -> bool {
        self.closed(date).is_none()
    }

    /// The sending day a stage dated `date` goes out on.
    pub fn shift(&self, date: NaiveDate, shift: Shift) -> NaiveDate {
        // A year always holds a sending day unless no weekday is one, which
        // the config's validation refuses; the bound only keeps a bad
        // calendar from looping.
        let mut day = date;
        for _ in 0..=366 {
            if self.is_sending_day(day) {
                return day;
            }
            let next = match shift {
                Shift::Later => day.checked_add_days(Days::new(1)),
                Shift::Earlier => day.checked_sub_days(Days::new(1)),
            };
            match next {
                Some(n) => day = n,
                None => break,
            }
        }
        date
    }

    /// The first sending day on or after `date`.
    pub fn next_sending_day(&self, date: NaiveDate) -> NaiveDate {
        self.shift(date, Shift::Later)
    }
}

/// The name of the bank holiday on `date` in a built-in calendar.
pub fn holiday(calendar: Holidays, date: NaiveDate) -> Option<&'static str> {
    let year = date.year();
    let easter = computus::gregorian_naive(year).ok();
    let from_easter = |days: i64| easter.map(|e| e + chrono::Duration::days(days));
    match calendar {
        Holidays::FR => {
            let fixed = match (date.month(), date.day()) {
                (1, 1) => Some("New Year's Day"),
                (5, 1) => Some("Labour Day"),
                (5, 8) => Some("Victory in Europe Day"),
                (7, 14) => Some("Bastille Day"),
                (8, 15) => Some("Assumption"),
                (11, 1) => Some("All Saints' Day"),
                (11, 11) => Some("Armistice Day"),
                (12, 25) => Some("Christmas Day"),
                _ => None,
            };
            fixed.or_else(|| {
                [
                    (1, "Easter Monday"),
                    (39, "Ascension Day"),
                    (50, "Whit Monday"),
                ]
                .into_iter()
                .find(|(days, _)| from_easter(*days) == Some(date))
                .map(|(_, name)| name)
            })
        }
        Holidays::CA => {
            const FIXED: [(u32, u32, &str); 6] = [
                (1, 1, "New Year's Day"),
                (7, 1, "Canada Day"),
                (9, 30, "National Day for Truth and Reconciliation"),
                (11, 11, "Remembrance Day"),
                (12, 25, "Christmas Day"),
                (12, 26, "Boxing Day"),
            ];
            // A fixed holiday on a weekend is also observed on the next working
            // day not already taken (Christmas on a Saturday: Monday 27, and
            // Boxing Day on the Sunday: Tuesday 28).
            let weekend = |d: NaiveDate| matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
            let mut fixed: Vec<(NaiveDate, &'static str)> = FIXED
                .iter()
                .filter_map(|(m, d, name)| Some((NaiveDate::from_ymd_opt(year, *m, *d)?, *name)))
                .collect();
            for (day, name) in fixed.clone() {
                if weekend(day) {
                    let mut on = day;
                    while weekend(on) || fixed.iter().any(|(t, _)| *t == on) {
                        on = on.succ_opt()?;
                    }
                    fixed.push((on, name));
                }
            }
            let nth_monday = |month: u32, n: u8| {
                NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Mon, n)
            };
            // Victoria Day: the Monday before 25 May.
            let victoria = NaiveDate::from_ymd_opt(year, 5, 24)
                .map(|d| d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday())));
            fixed
                .iter()
                .find(|(day, _)| *day == date)
                .map(|(_, name)| *name)
                .or_else(|| (from_easter(-2) == Some(date)).then_some("Good Friday"))
                .or_else(|| (victoria == Some(date)).then_some("Victoria Day"))
                .or_else(|| (nth_monday(9, 1) == Some(date)).then_some("Labour Day"))
                .or_else(|| (nth_monday(10, 2) == Some(date)).then_some("Thanksgiving"))
        }
    }
}

/// Reads `send_days: [mon, tue, …]` (three letters or the full English name, any case).
pub fn de_weekdays<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            n.parse::<Weekday>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{n:?} is not a day of the week (expected mon, tue, wed, thu, fri, sat or sun)"
                ))
            })
        })
        .collect()
}

/// Reads an optional `send_days:` (absent = inherit).
pub fn de_opt_weekdays<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Weekday>>, D::Error> {
    de_weekdays(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn names(calendar: Holidays, year: i32) -> Vec<(String, &'static str)> {
        let mut day = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
        let mut found = Vec::new();
        while day.year() == year {
            if let Some(name) = holiday(calendar, day) {
                found.push((day.format("%m-%d").to_string(), name));
            }
            day = day.succ_opt().unwrap();
        }
        found
    }

    #[test]
    fn french_holidays_of_2026() {
        let days: Vec<String> = names(Holidays::FR, 2026)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        // Easter 2026 is 5 April.
        assert_eq!(
            days,
            [
                "01-01", "04-06", "05-01", "05-08", "05-14", "05-25", "07-14", "08-15", "11-01",
                "11-11", "12-25"
            ]
        );
    }

    #[test]
    fn canadian_federal_holidays_with_observed_days() {
        let days = names(Holidays::CA, 2027);
        let dates: Vec<&str> = days.iter().map(|(d, _)| d.as_str()).collect();
        // 2027: Easter 28 March; Canada Day a Thursday; Christmas a Saturday
        // (observed Monday 27) and Boxing Day a Sunday (observed Tuesday 28).
        assert_eq!(
            dates,
            [
                "01-01", "03-26", "05-24", "07-01", "09-06", "09-30", "10-11", "11-11", "12-25",
                "12-26", "12-27", "12-28"
            ]
        );
        assert_eq!(
            holiday(Holidays::CA, d("2027-12-27")),
            Some("Christmas Day")
        );
        assert_eq!(holiday(Holidays::CA, d("2027-12-28")), Some("Boxing Day"));
    }

    #[test]
    fn weekends_and_holidays_move_stages() {
        let calendar = Calendar::new(
            &WEEKDAYS,
            &HolidaySettings {
                calendars: vec![Holidays::FR],
                dates: vec![d("2026-12-24")],
            },
        );
        // Saturday 5 December 2026.
        assert_eq!(
            calendar.closed(d("2026-12-05")).as_deref(),
            Some("not a sending day")
        );
        assert_eq!(
            calendar.shift(d("2026-12-05"), Shift::Later),
            d("2026-12-07")
        );
        assert_eq!(
            calendar.shift(d("2026-12-05"), Shift::Earlier),
            d("2026-12-04")
        );
        // Christmas Eve (the config's) then Christmas (FR), then the weekend.
        assert_eq!(
            calendar.shift(d("2026-12-24"), Shift::Later),
            d("2026-12-28")
        );
        assert_eq!(
            calendar.shift(d("2026-12-25"), Shift::Earlier),
            d("2026-12-23")
        );
        assert_eq!(
            calendar.closed(d("2026-12-25")).as_deref(),
            Some("bank holiday: Christmas Day")
        );
        assert_eq!(
            calendar.shift(d("2026-12-07"), Shift::Later),
            d("2026-12-07")
        );
        assert!(Calendar::every_day().is_sending_day(d("2026-12-05")));
    }
}
