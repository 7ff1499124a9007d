//! Properties of every parser of untrusted input and of the writers that put user text into
//! structured files (LEDES, iCalendar, headers): no panic on arbitrary input, round trips,
//! and the invariants the rest of the code relies on. No database: these are pure functions
//! (the unit tests next to the code cover the other half: emails, cursors, money format,
//! file names, byte ranges of chunks).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use lawfirm_pro::{
    appointments::{calendar, entity::appointment},
    billing::{
        checkout::verify_signature,
        domain::{CodeKind, UtbmsCode},
        ledes::{self, LedesInvoice, LedesLine, LineType},
        money::{Currency, Money, format_minor},
    },
    cases::conflicts::{normalize_name, similarity},
    documents::{
        content::{RangeRequest, parse_range},
        domain::{self as docs, Kind},
    },
    http::pagination::{decode_cursor, encode_cursor},
    messages::service::MessageBody,
    realtime::socket::ClientFrame,
    users::domain::{Email, PersonName, Phone, Role, TimeZoneName},
};
use proptest::prelude::*;
use uuid::Uuid;

/// Text a client can put in a JSON string: anything, weighted toward the characters that
/// break structured formats.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[|\\[\\]\\\\,;:\"'\r\n\t\u{0}\u{7f}\u{2028}\u{202e}\u{feff}a-zA-Zéß😀 ]{0,120}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn identity_parsers_never_panic_and_normalise(s in nasty()) {
        if let Ok(e) = Email::parse(&s) {
            prop_assert!(e.as_str().len() <= 254);
            prop_assert_eq!(e.as_str(), e.as_str().trim().to_lowercase());
            prop_assert!(!e.as_str().chars().any(|c| c.is_control() || c.is_whitespace()));
            // Idempotent: a stored address parses to itself.
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
        }
        if let Ok(n) = PersonName::parse(&s) {
            prop_assert!((1..=200).contains(&n.as_str().chars().count()));
            prop_assert!(!n.as_str().chars().any(char::is_control));
            prop_assert_eq!(PersonName::parse(n.as_str()).unwrap(), n);
        }
        if let Ok(p) = Phone::parse(&s) {
            prop_assert_eq!(Phone::parse(p.as_str()).unwrap(), p);
        }
        if let Ok(r) = Role::parse(&s) {
            prop_assert_eq!(r.as_str(), s.as_str());
        }
        if let Ok(tz) = TimeZoneName::parse(&s) {
            prop_assert_eq!(TimeZoneName::parse(tz.as_str()).unwrap().tz(), tz.tz());
        }
    }

    #[test]
    fn every_iana_zone_round_trips(i in 0usize..chrono_tz::TZ_VARIANTS.len()) {
        let name = chrono_tz::TZ_VARIANTS[i].name();
        let tz = TimeZoneName::parse(name).unwrap();
        prop_assert_eq!(tz.as_str(), name);
    }

    #[test]
    fn utbms_codes_have_their_shape(s in nasty(), letter in "[A-Za-z]", digits in "[0-9]{3}") {
        for kind in [CodeKind::Task, CodeKind::Activity, CodeKind::Expense] {
            if let Ok(c) = UtbmsCode::parse(kind, &s) {
                let b = c.as_str().as_bytes();
                prop_assert_eq!(b.len(), 4);
                prop_assert!(b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit));
                prop_assert_eq!(UtbmsCode::parse(kind, c.as_str()).unwrap(), c);
            }
        }
        let code = format!("{letter}{digits}");
        let padded = format!("  {code} ");
        prop_assert!(UtbmsCode::parse(CodeKind::Task, &padded).is_ok());
        let up = code.to_ascii_uppercase();
        prop_assert_eq!(UtbmsCode::parse(CodeKind::Activity, &code).is_ok(), up.starts_with('A'));
        prop_assert_eq!(UtbmsCode::parse(CodeKind::Expense, &code).is_ok(), up.starts_with('E'));
    }

    #[test]
    fn currencies_parse_case_insensitively_and_format_exactly(
        s in nasty(),
        code in "[A-Za-z]{3}",
        minor in any::<i64>(),
    ) {
        let _ = Currency::parse(&s);
        if let Ok(c) = Currency::parse(&code) {
            prop_assert_eq!(c.code(), code.to_ascii_uppercase());
            prop_assert_eq!(Currency::parse(c.code()).unwrap(), c);
            // The formatted amount has exactly `exponent` decimals and reads back exactly.
            let text = c.format(minor);
            let digits: String = text.chars().filter(|ch| ch.is_ascii_digit()).collect();
            let back = digits.parse::<i128>().unwrap() * if minor < 0 { -1 } else { 1 };
            prop_assert_eq!(back, i128::from(minor));
            match text.split_once('.') {
                Some((_, frac)) => prop_assert_eq!(frac.len(), usize::from(c.exponent())),
                None => prop_assert_eq!(c.exponent(), 0),
            }
            prop_assert!(Money::new(minor, c).display().starts_with(c.code()));
        }
    }

    #[test]
    fn minor_units_format_for_any_exponent(minor in any::<i64>(), exp in 0u8..=4) {
        let text = format_minor(minor, exp);
        prop_assert_eq!(text.starts_with('-'), minor < 0);
        let digits: String = text.chars().filter(|ch| ch.is_ascii_digit()).collect();
        prop_assert_eq!(digits.trim_start_matches('0').to_string(), minor.unsigned_abs().to_string().trim_start_matches('0').to_string());
    }

    #[test]
    fn cursors_never_panic_and_round_trip(raw in nasty(), key in (any::<String>(), any::<i64>())) {
        let _ = decode_cursor::<(String, i64)>(Some(&raw));
        let _ = decode_cursor::<(String, Uuid)>(Some(&raw));
        let back: Option<(String, i64)> = decode_cursor(Some(&encode_cursor(&key))).unwrap();
        prop_assert_eq!(back, Some(key));
    }

    #[test]
    fn range_headers_never_escape_the_file(header in prop_oneof![
        nasty(),
        "bytes=[0-9 ]{0,22}-[0-9 ]{0,22}",
        "bytes=-?[0-9]{0,6}(-[0-9]{0,6})?(,[0-9]{0,3}-[0-9]{0,3})?",
    ], size in prop_oneof![Just(0u64), 1u64..10_000, Just(u64::MAX)]) {
        match parse_range(Some(&header), size) {
            RangeRequest::Partial(r) => {
                prop_assert!(r.start < r.end, "empty range {:?}", r);
                prop_assert!(r.end <= size, "{:?} past {}", r, size);
            }
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }

    #[test]
    fn explicit_ranges_are_honoured(a in 0u64..5000, len in 0u64..5000, size in 1u64..10_000) {
        let b = a + len;
        let got = parse_range(Some(&format!("bytes={a}-{b}")), size);
        if a >= size {
            prop_assert_eq!(got, RangeRequest::Unsatisfiable);
        } else {
            prop_assert_eq!(got, RangeRequest::Partial(a..(b + 1).min(size)));
        }
    }

    #[test]
    fn sniffing_and_extension_checks_never_panic(
        head in proptest::collection::vec(any::<u8>(), 0..600),
        complete in any::<bool>(),
        name in nasty(),
    ) {
        let _ = docs::sniff(&head, complete);
        let _ = docs::looks_like_text(&head, complete);
        if let Some(ext) = docs::extension(&name) {
            prop_assert!(!ext.is_empty());
            prop_assert_eq!(ext.clone(), ext.to_ascii_lowercase());
        }
        for kind in Kind::ALL {
            // A file's own extension always fits; an executable's never fits a binary type.
            if let Some(ext) = kind.extensions().first() {
                let own = format!("x.{ext}");
                prop_assert!(docs::extension_fits(*kind, &own), "{:?} {}", kind, own);
            }
            if *kind != Kind::Text {
                prop_assert!(!docs::extension_fits(*kind, "payload.exe"));
            }
        }
        prop_assert!(!docs::extension_fits(Kind::Text, "payload.exe"));
        prop_assert!(!docs::extension_fits(Kind::Text, "invoice.pdf"));
    }

    #[test]
    fn content_disposition_is_one_safe_header(name in nasty()) {
        let h = docs::content_disposition(&name);
        prop_assert!(axum::http::HeaderValue::from_str(&h).is_ok(), "{:?}", h);
        prop_assert!(h.starts_with("attachment; filename=\""));
        prop_assert!(!h.contains(['\r', '\n']));
        // Exactly the quoted fallback and the RFC 5987 form: no injected parameters.
        prop_assert_eq!(h.matches("; ").count(), 2, "{}", h);
        let sanitized = docs::sanitize_filename(&name);
        prop_assert_eq!(docs::sanitize_filename(&sanitized), sanitized);
    }

    #[test]
    fn message_bodies_are_trimmed_bounded_and_storable(s in nasty()) {
        if let Ok(b) = MessageBody::parse(&s) {
            let b = b.into_inner();
            prop_assert!(!b.is_empty() && b.chars().count() <= 20_000);
            prop_assert!(!b.contains('\0'));
            prop_assert_eq!(b.trim(), b.as_str());
        }
    }

    #[test]
    fn conflict_names_normalise_idempotently(a in nasty(), b in nasty()) {
        let n = normalize_name(&a);
        prop_assert_eq!(normalize_name(&n), n.clone());
        // Scores are taken between normalised names (as the conflict check does).
        let (a, b) = (n, normalize_name(&b));
        let s = similarity(&a, &b);
        prop_assert!((0.0..=1.0).contains(&s), "{}", s);
        prop_assert!((s - similarity(&b, &a)).abs() < 1e-9, "{} vs {}", a, b);
    }

    #[test]
    fn webhook_signature_headers_never_panic_and_verify_only_the_right_mac(
        header in nasty(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        secret in proptest::collection::vec(any::<u8>(), 1..40),
        t in 0i64..4_000_000_000,
        skew in -1000i64..1000,
    ) {
        let _ = verify_signature(&header, &body, &secret, t);
        let sig = sign(&secret, t, &body);
        let good = format!("t={t},v1={sig}");
        prop_assert_eq!(verify_signature(&good, &body, &secret, t + skew).is_ok(), skew.abs() <= 300);
        // Rotation: any listed v1 may match, in any order, with junk around it.
        let rotated = format!(" v1=00ff, t={t} , v1={sig},v0=zz");
        prop_assert!(verify_signature(&rotated, &body, &secret, t).is_ok());
        let foreign = format!("t={t},v1={}", sign(b"other", t, &body));
        prop_assert!(verify_signature(&foreign, &body, &secret, t).is_err());
        let mut tampered = body.clone();
        tampered.push(b'x');
        prop_assert!(verify_signature(&good, &tampered, &secret, t).is_err());
    }

    #[test]
    fn websocket_client_frames_never_panic(raw in prop_oneof![
        nasty(),
        Just(r#"{"type":"resume","after":1}"#.to_string()),
        "\\{\"type\":\"(resume|subscribe|unsubscribe|ping|RESUME)\"(,\"(after|case_id)\":(-?[0-9]{1,25}|\"[0-9a-f-]{0,40}\"|null|\\[\\]))?\\}",
    ]) {
        if let Ok(f) = serde_json::from_str::<ClientFrame>(&raw) {
            // Only the four documented frames, each with its one typed field.
            match f {
                ClientFrame::Resume { .. } => prop_assert!(raw.contains("\"resume\"")),
                ClientFrame::Subscribe { .. } => prop_assert!(raw.contains("\"subscribe\"")),
                ClientFrame::Unsubscribe { .. } => prop_assert!(raw.contains("\"unsubscribe\"")),
                ClientFrame::Ping => prop_assert!(raw.contains("\"ping\"")),
            }
        }
    }

    #[test]
    fn websocket_resume_and_subscribe_round_trip(after in any::<i64>(), id in any::<u128>()) {
        let id = Uuid::from_u128(id);
        let f: ClientFrame = serde_json::from_value(serde_json::json!({"type": "resume", "after": after})).unwrap();
        let resumed = matches!(f, ClientFrame::Resume { after: a } if a == after);
        prop_assert!(resumed);
        let f: ClientFrame = serde_json::from_value(serde_json::json!({"type": "subscribe", "case_id": id})).unwrap();
        let subscribed = matches!(f, ClientFrame::Subscribe { case_id } if case_id == id);
        prop_assert!(subscribed);
    }
}

fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (2000i32..2100, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn ledes_line() -> impl Strategy<Value = LedesLine> {
    (
        (
            prop_oneof![
                Just(LineType::Fee),
                Just(LineType::Expense),
                Just(LineType::FeeAdjustment),
                Just(LineType::ExpenseAdjustment),
            ],
            0i64..1_000_000,
            0i64..1_000_000_000,
            date(),
        ),
        (
            proptest::option::of(nasty()),
            proptest::option::of(nasty()),
            nasty(),
            nasty(),
            nasty(),
            nasty(),
        ),
    )
        .prop_map(
            |((kind, units, cost, date), (task, act, tk, desc, name, class))| LedesLine {
                number: 1,
                kind,
                units_hundredths: units,
                unit_cost: cost,
                adjustment: 0,
                total: cost,
                date,
                task_code: task,
                expense_code: None,
                activity_code: act,
                timekeeper_id: tk,
                description: desc,
                timekeeper_name: name,
                timekeeper_classification: class,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn ledes_values_never_carry_delimiters(
        texts in proptest::collection::vec(nasty(), 6),
        lines in proptest::collection::vec(ledes_line(), 1..4),
        total in any::<i64>(),
        when in date(),
    ) {
        let inv = LedesInvoice {
            invoice_date: when,
            invoice_number: texts[0].clone(),
            client_id: texts[1].clone(),
            law_firm_matter_id: texts[2].clone(),
            invoice_total: total,
            billing_start: Some(when),
            billing_end: None,
            description: texts[3].clone(),
            law_firm_id: texts[4].clone(),
            client_matter_id: texts[5].clone(),
            currency: Currency::USD,
            lines: lines.clone(),
        };
        let _ = ledes::validate(&inv);
        let file = ledes::render(&inv);
        let rows: Vec<&str> = file.split("\r\n").collect();
        prop_assert_eq!(rows.len(), lines.len() + 3, "one row per line, header rows and the final CRLF");
        prop_assert_eq!(rows[0], "LEDES1998B[]");
        prop_assert_eq!(*rows.last().unwrap(), "");
        for row in &rows[1..rows.len() - 1] {
            let body = row.strip_suffix("[]").expect("every record ends with []");
            prop_assert!(!body.contains(['[', ']', '\r', '\n']), "{}", row);
            prop_assert_eq!(body.split('|').count(), 24, "{}", row);
            prop_assert!(body.is_ascii());
        }
    }

    #[test]
    fn icalendar_output_parses_and_round_trips(
        title in nasty(),
        location in proptest::option::of(nasty()),
        start in 946_684_800i64..4_102_444_800,
        minutes in 15i64..600,
        status in prop_oneof![Just("requested"), Just("confirmed"), Just("cancelled"), Just("completed"), Just("bogus")],
        sequence in any::<i32>(),
    ) {
        let starts: DateTime<Utc> = Utc.timestamp_opt(start, 0).unwrap();
        let a = appointment::Model {
            id: Uuid::new_v4(),
            attorney_id: Uuid::new_v4(),
            client_id: None,
            case_id: None,
            starts_at: starts,
            ends_at: starts + chrono::Duration::minutes(minutes),
            title: title.clone(),
            location: location.clone(),
            notes: Some("PRIVILEGED-NOTE".into()),
            status: status.into(),
            sequence,
            scheduled_at: starts,
            created_by: None,
            created_at: starts,
            updated_at: starts,
        };
        let url = url::Url::parse("https://portal.example").unwrap();
        let text = calendar::render(std::slice::from_ref(&a), &url);
        for line in text.split("\r\n") {
            // The icalendar crate folds after 75 octets, so a continuation line (its leading
            // space included) may have 76: every client reads that; what matters is the fold.
            prop_assert!(line.len() <= 76, "folded: {:?}", line);
            prop_assert!(!line.contains(['\r', '\n']));
        }
        // Notes never leave the portal (the feed URL is a bearer secret).
        prop_assert!(!text.contains("PRIVILEGED-NOTE"));
        let cal: icalendar::Calendar = text.parse().map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let events: Vec<&icalendar::Event> = cal.components.iter().filter_map(|c| c.as_event()).collect();
        prop_assert_eq!(events.len(), 1);
        let e = events[0];
        use icalendar::{Component, EventLike};
        let uid = calendar::uid(a.id, &url);
        prop_assert_eq!(e.get_uid(), Some(uid.as_str()));
        prop_assert_eq!(e.get_summary().map(str::to_owned), Some(expected_text(&title)));
        prop_assert_eq!(e.get_location().map(str::to_owned), location.as_deref().map(expected_text));
    }
}

/// What the writer promises to keep of a text: everything but `\r` and control characters
/// other than newlines.
fn expected_text(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}
