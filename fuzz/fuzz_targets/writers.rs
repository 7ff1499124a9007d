//! The writers that carry user text into structured files: LEDES values never hold a
//! delimiter; iCalendar output always parses back.
#![no_main]

use chrono::{TimeZone, Utc};
use lawfirm_pro::{appointments::calendar, billing::ledes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, u16)| {
    let (a, b, max) = input;
    let v = ledes::clean(a, usize::from(max));
    assert!(!v.contains(['|', '[', ']', '\r', '\n']) && v.is_ascii());

    let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let appt = lawfirm_pro::appointments::entity::appointment::Model {
        id: uuid::Uuid::nil(),
        attorney_id: uuid::Uuid::nil(),
        client_id: None,
        case_id: None,
        starts_at: at,
        ends_at: at + chrono::Duration::hours(1),
        title: a.to_owned(),
        location: Some(b.to_owned()),
        notes: None,
        status: "confirmed".into(),
        sequence: 0,
        scheduled_at: at,
        created_by: None,
        created_at: at,
        updated_at: at,
    };
    let url = url::Url::parse("https://portal.example").unwrap();
    let text = calendar::render(&[appt], &url);
    assert!(
        text.split("\r\n")
            .all(|l| l.len() <= 76 && !l.contains('\n'))
    );
    let parsed: icalendar::Calendar = text.parse().expect("the feed parses back");
    assert_eq!(parsed.components.len(), 1);
});
