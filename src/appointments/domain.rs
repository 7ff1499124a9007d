//! Pure appointment rules: weekly availability in the attorney's time zone, slot computation
//! across DST changes, the 5-minute grid of claims, and which reminders are due.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::text_enum;

text_enum!(AppointmentStatus {
    Requested => "requested",
    Confirmed => "confirmed",
    Cancelled => "cancelled",
    Completed => "completed",
});

impl AppointmentStatus {
    /// Occupies the attorney's and the client's time.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Requested | Self::Confirmed)
    }
}

/// Claims are 5-minute buckets, so appointment times must sit on that grid.
pub const GRID_MINUTES: i64 = 5;
/// Slots are offered every 15 minutes from the start of each availability window.
pub const SLOT_STEP_MINUTES: i64 = 15;
/// Offered slots start this much later than the minimum notice requires, so a slot a client
/// is looking at is still bookable when they pick it a few minutes later.
pub const SLOT_CHOOSING_MINUTES: i64 = 15;
/// The longest appointment (and slot duration) accepted.
pub const MAX_DURATION_MINUTES: i64 = 12 * 60;
/// The longest range `GET /users/{id}/slots` computes.
pub const MAX_SLOT_RANGE_DAYS: i64 = 62;

/// One weekly window, `start`..`end` local time on ISO `weekday` (1 = Monday … 7 = Sunday).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rule {
    pub weekday: u8,
    /// `HH:MM`, local time.
    pub start: String,
    pub end: String,
}

/// A validated rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub weekday: u32,
    pub start: NaiveTime,
    /// `None`: until midnight (`24:00`), i.e. 00:00 of the next day.
    pub end: Option<NaiveTime>,
}

fn parse_hhmm(s: &str) -> Result<NaiveTime, String> {
    let t = NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| "must be HH:MM".to_string())?;
    if i64::from(chrono::Timelike::minute(&t)) % GRID_MINUTES != 0 {
        return Err(format!("must be on a {GRID_MINUTES}-minute boundary"));
    }
    Ok(t)
}

impl Window {
    pub fn parse(r: &Rule) -> Result<Self, String> {
        if !(1..=7).contains(&r.weekday) {
            return Err("weekday must be 1 (Monday) to 7 (Sunday)".into());
        }
        let start = parse_hhmm(&r.start).map_err(|m| format!("start {m}"))?;
        // 24:00 is how people write "until midnight".
        let end = if r.end == "24:00" {
            None
        } else {
            Some(parse_hhmm(&r.end).map_err(|m| format!("end {m}"))?)
        };
        if end.is_some_and(|e| e <= start) {
            return Err("end must be after start (windows do not span midnight)".into());
        }
        Ok(Self {
            weekday: u32::from(r.weekday),
            start,
            end,
        })
    }
}

/// A local time as an instant. Nonexistent times (spring-forward gap) become the first
/// instant after the gap; ambiguous ones (fall-back) the earlier instant for a window's start
/// and the later one for its end, so a window never shrinks because of a transition.
pub fn resolve_local(tz: Tz, date: NaiveDate, time: NaiveTime, is_end: bool) -> DateTime<Utc> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => {
            if is_end {
                a.max(b).with_timezone(&Utc)
            } else {
                a.min(b).with_timezone(&Utc)
            }
        }
        LocalResult::None => {
            // Walk forward minute by minute out of the gap (gaps are at most a few hours).
            let mut probe = naive;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            // Unreachable for real zones; fall back to reading the time as UTC.
            naive.and_utc()
        }
    }
}

/// The availability windows (as UTC intervals) intersecting `from..to`.
pub fn windows_between(
    tz: Tz,
    rules: &[Window],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let first = from.with_timezone(&tz).date_naive() - Duration::days(1);
    let last = to.with_timezone(&tz).date_naive() + Duration::days(1);
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        let wd = day.weekday().number_from_monday();
        for r in rules.iter().filter(|r| r.weekday == wd) {
            let s = resolve_local(tz, day, r.start, false);
            let e = match r.end {
                Some(end) => resolve_local(tz, day, end, true),
                None => resolve_local(tz, day + Duration::days(1), NaiveTime::MIN, true),
            };
            if e > s && e > from && s < to {
                out.push((s, e));
            }
        }
        day += Duration::days(1);
    }
    out.sort();
    out
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Free slots of `duration` in `from..to`: inside a window, starting no earlier than
/// `earliest`, overlapping nothing in `busy`. Sorted, without duplicates.
pub fn free_slots(
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    busy: &[(DateTime<Utc>, DateTime<Utc>)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    earliest: DateTime<Utc>,
    duration: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let step = Duration::minutes(SLOT_STEP_MINUTES);
    let mut out = Vec::new();
    for &(ws, we) in windows {
        let mut s = ws;
        while s + duration <= we {
            let slot = (s, s + duration);
            if s >= from
                && slot.1 <= to
                && s >= earliest
                && on_grid(s)
                && !busy.iter().any(|b| overlaps(slot, *b))
            {
                out.push(slot);
            }
            s += step;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `start..end` lies inside one availability window.
pub fn within_windows(
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> bool {
    windows.iter().any(|&(ws, we)| ws <= start && end <= we)
}

pub fn on_grid(t: DateTime<Utc>) -> bool {
    t.timestamp() % (GRID_MINUTES * 60) == 0 && t.timestamp_subsec_nanos() == 0
}

/// The 5-minute buckets `start..end` occupies (both on the grid).
pub fn buckets(start: DateTime<Utc>, end: DateTime<Utc>) -> std::ops::Range<i64> {
    let g = GRID_MINUTES * 60;
    start.timestamp().div_euclid(g)..(end.timestamp() + g - 1).div_euclid(g)
}

/// Which reminder offsets (minutes) are due for an appointment at `starts_at` whose time was
/// chosen at `scheduled_at`: the reminder moment has passed, the appointment has not begun,
/// and the moment came after the booking (nobody wants a "tomorrow" reminder for a meeting
/// booked an hour ahead). Of several due at once (the job was down) only the nearest is
/// mailed; the caller marks them all done. Returns (all due, the one to send).
pub fn due_reminders(
    offsets: &[i64],
    starts_at: DateTime<Utc>,
    scheduled_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<i64>, Option<i64>) {
    if now >= starts_at {
        return (Vec::new(), None);
    }
    let due: Vec<i64> = offsets
        .iter()
        .copied()
        .filter(|&o| {
            let moment = starts_at - Duration::minutes(o);
            moment <= now && scheduled_at < moment
        })
        .collect();
    let send = due.iter().copied().min();
    (due, send)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays_9_to_5() -> Vec<Window> {
        (1..=5)
            .map(|d| {
                Window::parse(&Rule {
                    weekday: d,
                    start: "09:00".into(),
                    end: "17:00".into(),
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn rules_are_validated() {
        let r = |w: u8, s: &str, e: &str| {
            Window::parse(&Rule {
                weekday: w,
                start: s.into(),
                end: e.into(),
            })
        };
        assert!(r(0, "09:00", "17:00").is_err());
        assert!(r(8, "09:00", "17:00").is_err());
        assert!(r(1, "17:00", "09:00").is_err());
        assert!(r(1, "9am", "17:00").is_err());
        assert!(r(1, "09:07", "17:00").is_err());
        assert!(r(1, "25:00", "26:00").is_err());
        assert!(r(7, "00:00", "24:00").is_ok());
        // Until midnight means the whole last slot of the day is bookable.
        let tz: Tz = "UTC".parse().unwrap();
        let w = windows_between(
            tz,
            &[r(3, "22:00", "24:00").unwrap()],
            t("2026-12-02T00:00:00Z"),
            t("2026-12-03T00:00:00Z"),
        );
        assert_eq!(
            w,
            vec![(t("2026-12-02T22:00:00Z"), t("2026-12-03T00:00:00Z"))]
        );
    }

    /// 09:00–17:00 New York stays 09:00–17:00 local on both sides of the November change.
    #[test]
    fn windows_follow_local_time_across_fall_back() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let w = windows_between(
            tz,
            &weekdays_9_to_5(),
            t("2026-10-30T00:00:00Z"),
            t("2026-11-03T00:00:00Z"),
        );
        // Friday 30 Oct (EDT, UTC-4) and Monday 2 Nov (EST, UTC-5).
        assert!(w.contains(&(t("2026-10-30T13:00:00Z"), t("2026-10-30T21:00:00Z"))));
        assert!(w.contains(&(t("2026-11-02T14:00:00Z"), t("2026-11-02T22:00:00Z"))));
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn windows_follow_local_time_across_spring_forward() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let w = windows_between(
            tz,
            &weekdays_9_to_5(),
            t("2026-03-06T00:00:00Z"),
            t("2026-03-10T00:00:00Z"),
        );
        assert!(w.contains(&(t("2026-03-06T14:00:00Z"), t("2026-03-06T22:00:00Z"))));
        assert!(w.contains(&(t("2026-03-09T13:00:00Z"), t("2026-03-09T21:00:00Z"))));
    }

    #[test]
    fn nonexistent_and_ambiguous_local_times() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let two_thirty = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        // 02:30 does not exist on 8 March: the window starts when the clocks read 03:00 EDT.
        assert_eq!(
            resolve_local(tz, d, two_thirty, false),
            t("2026-03-08T07:00:00Z")
        );
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let one_thirty = NaiveTime::from_hms_opt(1, 30, 0).unwrap();
        // 01:30 happens twice on 1 November: start at the first, end at the second.
        assert_eq!(
            resolve_local(tz, d, one_thirty, false),
            t("2026-11-01T05:30:00Z")
        );
        assert_eq!(
            resolve_local(tz, d, one_thirty, true),
            t("2026-11-01T06:30:00Z")
        );
        // A Sunday window 00:00-04:00 on the fall-back day lasts five real hours.
        let rules = [Window::parse(&Rule {
            weekday: 7,
            start: "00:00".into(),
            end: "04:00".into(),
        })
        .unwrap()];
        let w = windows_between(
            tz,
            &rules,
            t("2026-11-01T00:00:00Z"),
            t("2026-11-02T00:00:00Z"),
        );
        assert_eq!(
            w,
            vec![(t("2026-11-01T04:00:00Z"), t("2026-11-01T09:00:00Z"))]
        );
    }

    #[test]
    fn slots_skip_busy_time_and_respect_the_earliest_start() {
        let windows = vec![(t("2026-12-01T09:00:00Z"), t("2026-12-01T11:00:00Z"))];
        let busy = vec![(t("2026-12-01T09:30:00Z"), t("2026-12-01T10:00:00Z"))];
        let s = free_slots(
            &windows,
            &busy,
            t("2026-12-01T00:00:00Z"),
            t("2026-12-02T00:00:00Z"),
            t("2026-12-01T09:10:00Z"),
            Duration::minutes(30),
        );
        let starts: Vec<String> = s.iter().map(|x| x.0.format("%H:%M").to_string()).collect();
        assert_eq!(starts, ["10:00", "10:15", "10:30"]);
    }

    #[test]
    fn buckets_cover_exactly_the_interval() {
        let b = buckets(t("2026-12-01T09:00:00Z"), t("2026-12-01T09:30:00Z"));
        assert_eq!(b.end - b.start, 6);
        let c = buckets(t("2026-12-01T09:30:00Z"), t("2026-12-01T10:00:00Z"));
        assert_eq!(b.end, c.start, "adjacent appointments share no bucket");
    }

    #[test]
    fn reminder_due_computation() {
        let start = t("2026-12-10T10:00:00Z");
        let booked = t("2026-12-01T10:00:00Z");
        let offs = [1440, 60];
        assert_eq!(
            due_reminders(&offs, start, booked, t("2026-12-09T09:59:00Z")),
            (vec![], None)
        );
        assert_eq!(
            due_reminders(&offs, start, booked, t("2026-12-09T10:00:00Z")),
            (vec![1440], Some(1440))
        );
        // Job down all day: both due, only the nearest is sent.
        assert_eq!(
            due_reminders(&offs, start, booked, t("2026-12-10T09:30:00Z")),
            (vec![1440, 60], Some(60))
        );
        assert_eq!(
            due_reminders(&offs, start, booked, t("2026-12-10T10:00:00Z")),
            (vec![], None)
        );
        // Booked two hours ahead: no "tomorrow" reminder, the one-hour one still comes.
        let late = t("2026-12-10T08:00:00Z");
        assert_eq!(
            due_reminders(&offs, start, late, t("2026-12-10T08:05:00Z")),
            (vec![], None)
        );
        assert_eq!(
            due_reminders(&offs, start, late, t("2026-12-10T09:00:00Z")),
            (vec![60], Some(60))
        );
    }
}
