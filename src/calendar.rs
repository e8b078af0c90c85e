//! The send window: the days reminders go out on (weekdays, bank holidays),
//! where a stage dated on another day moves to, and the local time they are sent at.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
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
    /// Every day that is not a sending day (weekday off, built-in or
    /// configured holiday) of the years around now, a bit per day from
    /// 1 January of the first: the engine asks about a day for every stage
    /// of every invoice, and Easter is not free to compute.
    closed_days: Vec<u64>,
    /// The longest run of days off in those years: the furthest the
    /// calendar can move a date.
    longest_closure: i64,
}

/// The years whose holidays [`Calendar::closed_days`] holds; others are
/// computed when asked.
const PRECOMPUTED_YEARS: std::ops::RangeInclusive<i32> = 1990..=2100;
/// How many days those years have (27 leap years among 111).
const PRECOMPUTED_DAYS: usize = 111 * 365 + 27;

/// The bit of `day` in [`Calendar::closed_days`], if its year is precomputed.
fn precomputed_index(day: NaiveDate) -> Option<usize> {
    usize::try_from(day.num_days_from_ce() - FIRST_PRECOMPUTED_DAY)
        .ok()
        .filter(|&i| i < PRECOMPUTED_DAYS)
}

/// `num_days_from_ce` of 1 January 1990.
const FIRST_PRECOMPUTED_DAY: i32 = 726_468;

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
        let mut closed_days = vec![0u64; PRECOMPUTED_DAYS.div_ceil(64)];
        let configured: BTreeSet<NaiveDate> = holidays.dates.iter().copied().collect();
        let first = NaiveDate::from_ymd_opt(*PRECOMPUTED_YEARS.start(), 1, 1).unwrap_or_default();
        let (mut run, mut longest_closure) = (0, 0);
        for (i, day) in first.iter_days().take(PRECOMPUTED_DAYS).enumerate() {
            let off = !days[day.weekday().num_days_from_monday() as usize]
                || configured.contains(&day)
                || calendars.iter().any(|c| holiday(*c, day).is_some());
            if off {
                closed_days[i / 64] |= 1 << (i % 64);
            }
            run = if off { run + 1 } else { 0 };
            longest_closure = longest_closure.max(run);
        }
        Calendar {
            send_days: days,
            calendars,
            dates: configured,
            closed_days,
            longest_closure,
        }
    }

    /// The furthest a date can move to reach a sending day, in days.
    pub fn longest_closure(&self) -> i64 {
        self.longest_closure
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

    /// The weekdays it sends on.
    pub fn send_days(&self) -> Vec<Weekday> {
        (0..7u8)
            .filter(|&i| self.send_days[usize::from(i)])
            .filter_map(|i| Weekday::try_from(i).ok())
            .collect()
    }

    /// The holidays it keeps, as configured.
    pub fn holidays(&self) -> HolidaySettings {
        HolidaySettings {
            calendars: self.calendars.clone(),
            dates: self.dates.iter().copied().collect(),
        }
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

    // Inlined: asked for every invoice and day of a plan.
    #[inline]
    pub fn is_sending_day(&self, date: NaiveDate) -> bool {
        match precomputed_index(date) {
            Some(i) => self.closed_days[i / 64] & (1 << (i % 64)) == 0,
            None => self.closed(date).is_none(),
        }
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
}

/// When reminders go out: on the calendar's sending days, at `send_time` in
/// the recipient's time zone (none: as soon as they are decided).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendWindow {
    pub calendar: Calendar,
    pub send_time: Option<NaiveTime>,
}

impl SendWindow {
    /// The moment a reminder of `date` may go out to a recipient in `tz`;
    /// `None` when no send time is set.
    pub fn send_at(&self, date: NaiveDate, tz: Tz) -> Option<DateTime<Tz>> {
        self.send_time.map(|time| local_moment(tz, date, time))
    }
}

/// `time` on `day` in `tz`, whatever the clocks do that night. When they go
/// back and the time happens twice, the first; when they jump forward over
/// it, the same reading on the clock before the jump, as much later as the
/// jump (02:30 on the night Paris goes from 02:00 to 03:00 is 03:30), so a
/// reminder is never sent before its time, nor lost.
pub fn local_moment(tz: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Tz> {
    use chrono::offset::{LocalResult, Offset};
    let local = day.and_time(time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t,
        LocalResult::None => {
            // A jump lasts at most a few hours: three hours earlier is before it.
            let before = tz
                .offset_from_local_datetime(&(local - chrono::Duration::hours(3)))
                .earliest()
                .map_or(0, |o| o.fix().local_minus_utc());
            let utc = local - chrono::Duration::seconds(i64::from(before));
            Utc.from_utc_datetime(&utc).with_timezone(&tz)
        }
    }
}

/// A time of day written `HH:MM`, as the config and `run --at` take it.
pub fn parse_time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| format!("invalid time {s:?} (expected HH:MM, e.g. \"09:00\")"))
}

/// Reads an optional `"HH:MM"` time of day.
pub fn de_opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_time(&s).map_err(serde::de::Error::custom))
        .transpose()
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

/// `date` moved by `days` (negative: earlier), clamped to the dates chrono can represent.
pub fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    let moved = if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    };
    moved.unwrap_or(if days >= 0 {
        NaiveDate::MAX
    } else {
        NaiveDate::MIN
    })
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
        // Outside the precomputed years, holidays are still found.
        assert!(!calendar.is_sending_day(d("2150-12-25")));
        assert!(calendar.is_sending_day(d("2150-12-24")));
    }

    #[test]
    fn the_precomputed_days_are_those_of_the_years() {
        let first = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
        let last = NaiveDate::from_ymd_opt(2100, 12, 31).unwrap();
        assert_eq!(first.num_days_from_ce(), FIRST_PRECOMPUTED_DAY);
        assert_eq!((last - first).num_days() as usize + 1, PRECOMPUTED_DAYS);
        assert_eq!(precomputed_index(last), Some(PRECOMPUTED_DAYS - 1));
    }

    #[test]
    fn send_times_across_daylight_saving_changes() {
        let at = |tz: Tz, day: &str, time: &str| {
            local_moment(tz, d(day), parse_time(time).unwrap())
                .with_timezone(&Utc)
                .to_rfc3339()
        };
        let paris = chrono_tz::Europe::Paris;
        let toronto = chrono_tz::America::Toronto;
        for (tz, day, time, utc) in [
            // 09:00 in Paris is 08:00 UTC in winter, 07:00 in summer.
            (paris, "2026-03-28", "09:00", "2026-03-28T08:00:00+00:00"),
            (paris, "2026-03-30", "09:00", "2026-03-30T07:00:00+00:00"),
            // Toronto moves on other dates (8 March, 1 November 2026).
            (toronto, "2026-03-06", "09:00", "2026-03-06T14:00:00+00:00"),
            (toronto, "2026-03-09", "09:00", "2026-03-09T13:00:00+00:00"),
            (toronto, "2026-11-02", "09:00", "2026-11-02T14:00:00+00:00"),
            // 02:30 does not exist in Paris on 29 March 2026: 03:30 CEST.
            (paris, "2026-03-29", "02:30", "2026-03-29T01:30:00+00:00"),
            // 02:30 happens twice on 25 October 2026: the first, still CEST.
            (paris, "2026-10-25", "02:30", "2026-10-25T00:30:00+00:00"),
        ] {
            assert_eq!(at(tz, day, time), utc, "{tz} {day} {time}");
        }
    }
}
