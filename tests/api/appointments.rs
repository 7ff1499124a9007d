//! Appointments: availability and slots across DST, booking without double booking (also
//! under concurrency), client rules and access, iCalendar export and feeds, reminders.

use std::time::Duration;

use chrono::{DateTime, Duration as CDuration, Utc};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{Login, TestApp, created_id, problem, spawn_app, spawn_app_with};

async fn new_case(app: &TestApp, lead: &Login, clients: &[&Login]) -> String {
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Matter", "client_ids": clients.iter().map(|c| c.id).collect::<Vec<_>>()}),
        )
        .await;
    created_id(r).await
}

/// Monday to Friday 09:00–17:00 in New York.
async fn set_ny_hours(app: &TestApp, attorney: &Login) {
    let rules: Vec<Value> = (1..=5)
        .map(|d| json!({"weekday": d, "start": "09:00", "end": "17:00"}))
        .collect();
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/users/{}/availability", attorney.id),
            Some(&attorney.access),
            Some(json!({"timezone": "America/New_York", "rules": rules})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Every free slot of the range, page by page (`limit` slots a page).
async fn slots_paged(
    app: &TestApp,
    who: &Login,
    attorney: &Login,
    range: (&str, &str, i64),
    limit: u32,
) -> Vec<(String, String)> {
    let (from, to, dur) = range;
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!(
                    "/api/v1/users/{}/slots?from={from}&to={to}&duration_minutes={dur}&limit={limit}{cursor}",
                    attorney.id
                ),
                Some(&who.access),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let b: Value = r.json().await.unwrap();
        let items = b["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize, "{b}");
        out.extend(items.iter().map(|s| {
            (
                s["starts_at"].as_str().unwrap().to_owned(),
                s["ends_at"].as_str().unwrap().to_owned(),
            )
        }));
        match b["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

async fn slots(
    app: &TestApp,
    who: &Login,
    attorney: &Login,
    from: &str,
    to: &str,
    dur: i64,
) -> Vec<(String, String)> {
    slots_paged(app, who, attorney, (from, to, dur), 100).await
}

fn on_day<'a>(s: &'a [(String, String)], day: &str) -> Vec<&'a (String, String)> {
    s.iter().filter(|(a, _)| a.starts_with(day)).collect()
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn same_instant(a: &str, b: &str) -> bool {
    ts(a) == ts(b)
}

/// A future time on the 5-minute grid, `days` ahead at `hh:mm` UTC.
fn future(days: i64, hh: u32, mm: u32) -> DateTime<Utc> {
    (Utc::now() + CDuration::days(days))
        .date_naive()
        .and_hms_opt(hh, mm, 0)
        .unwrap()
        .and_utc()
}

async fn book(app: &TestApp, who: &Login, body: Value) -> reqwest::Response {
    app.post("/api/v1/appointments", Some(&who.access), body)
        .await
}

#[tokio::test]
async fn slots_keep_local_hours_across_dst_changes() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    new_case(&app, &attorney, &[&client]).await;
    set_ny_hours(&app, &attorney).await;

    // Autumn 2027: clocks go back on Sunday 7 November.
    let s = slots(&app, &client, &attorney, "2027-11-04", "2027-11-10", 60).await;
    let fri = on_day(&s, "2027-11-05");
    let mon = on_day(&s, "2027-11-08");
    assert!(same_instant(&fri[0].0, "2027-11-05T13:00:00Z"), "{fri:?}");
    assert!(same_instant(&fri.last().unwrap().1, "2027-11-05T21:00:00Z"));
    assert!(same_instant(&mon[0].0, "2027-11-08T14:00:00Z"), "{mon:?}");
    assert!(same_instant(&mon.last().unwrap().1, "2027-11-08T22:00:00Z"));
    // 15-minute steps over 8 hours for a 60-minute slot: 29 per day; none at the weekend.
    assert_eq!(fri.len(), 29);
    assert!(on_day(&s, "2027-11-06").is_empty() && on_day(&s, "2027-11-07").is_empty());

    // Spring 2027: clocks go forward on Sunday 14 March.
    let s = slots(&app, &client, &attorney, "2027-03-11", "2027-03-17", 30).await;
    assert!(same_instant(
        &on_day(&s, "2027-03-12")[0].0,
        "2027-03-12T14:00:00Z"
    ));
    assert!(same_instant(
        &on_day(&s, "2027-03-15")[0].0,
        "2027-03-15T13:00:00Z"
    ));
    assert!(same_instant(
        &on_day(&s, "2027-03-15").last().unwrap().1,
        "2027-03-15T21:00:00Z"
    ));
    // Paged like every list: small pages add up to the same slots, each once, in order; a
    // page is 20 slots unless `limit` says otherwise.
    assert!(s.len() > 100, "{}", s.len());
    let small = slots_paged(
        &app,
        &client,
        &attorney,
        ("2027-03-11", "2027-03-17", 30),
        7,
    )
    .await;
    assert_eq!(small, s);
    let first: Value = app
        .get(
            &format!(
                "/api/v1/users/{}/slots?from=2027-03-11&to=2027-03-17&duration_minutes=30",
                attorney.id
            ),
            Some(&client.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    assert!(first["next_cursor"].is_string());

    // Busy blocks and appointments are taken out.
    let r = app
        .post(
            &format!("/api/v1/users/{}/busy", attorney.id),
            Some(&attorney.access),
            json!({"starts_at": "2027-03-15T13:00:00Z", "ends_at": "2027-03-15T15:00:00Z", "reason": "court"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "starts_at": "2027-03-15T16:00:00Z",
        "ends_at": "2027-03-15T17:00:00Z", "title": "Prep"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let s = slots(&app, &client, &attorney, "2027-03-15", "2027-03-16", 60).await;
    assert!(same_instant(&s[0].0, "2027-03-15T15:00:00Z"), "{s:?}");
    assert!(
        s.iter().all(
            |(a, b)| ts(b) <= ts("2027-03-15T16:00:00Z") || ts(a) >= ts("2027-03-15T17:00:00Z")
        )
    );

    // Bad ranges and durations.
    for q in [
        "from=2027-01-01&to=2027-03-15&duration_minutes=30",
        "from=2027-01-02&to=2027-01-01&duration_minutes=30",
        "from=2027-01-01&to=2027-01-02&duration_minutes=7",
        "from=2027-01-01&to=2027-01-02&duration_minutes=0",
        "from=yesterday&to=2027-01-02&duration_minutes=30",
        "to=2027-01-02&duration_minutes=30",
        // chrono reads such years; a day's arithmetic there overflowed (a panic, 500).
        "from=%2B262142-12-30&to=%2B262142-12-31&duration_minutes=30",
        "from=%2B262142-12-30T00:00:00Z&to=%2B262142-12-31T00:00:00Z&duration_minutes=30",
        // A list like every other: 1..100 a page, and only this server's cursors.
        "from=2027-03-15&to=2027-03-16&duration_minutes=30&limit=0",
        "from=2027-03-15&to=2027-03-16&duration_minutes=30&limit=101",
        "from=2027-03-15&to=2027-03-16&duration_minutes=30&cursor=bm90LWEtY3Vyc29y",
    ] {
        let r = app
            .get(
                &format!("/api/v1/users/{}/slots?{q}", attorney.id),
                Some(&client.access),
            )
            .await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    // A client sees slots only of attorneys on their cases.
    let stranger = app.user("client").await;
    let r = app
        .get(
            &format!(
                "/api/v1/users/{}/slots?from=2027-03-15&to=2027-03-16&duration_minutes=30",
                attorney.id
            ),
            Some(&stranger.access),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn availability_is_the_attorneys_own() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let other = app.user("attorney").await;
    let client = app.user("client").await;
    let admin = app.user("admin").await;
    let path = format!("/api/v1/users/{}/availability", attorney.id);
    let body = json!({"timezone": "Europe/Berlin", "rules": [{"weekday": 1, "start": "08:00", "end": "12:00"}]});
    let r = app
        .request(
            reqwest::Method::PUT,
            &path,
            Some(&other.access),
            Some(body.clone()),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = app
        .request(
            reqwest::Method::PUT,
            &path,
            Some(&client.access),
            Some(body.clone()),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    let r = app
        .request(
            reqwest::Method::PUT,
            &path,
            Some(&admin.access),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get(&path, Some(&attorney.access)).await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["timezone"], "Europe/Berlin");
    assert_eq!(b["rules"][0]["start"], "08:00");
    for bad in [
        json!({"timezone": "Mars/Olympus", "rules": []}),
        json!({"timezone": "UTC", "rules": [{"weekday": 8, "start": "08:00", "end": "12:00"}]}),
        json!({"timezone": "UTC", "rules": [{"weekday": 1, "start": "12:00", "end": "08:00"}]}),
        json!({"timezone": "UTC", "rules": [{"weekday": 1, "start": "8", "end": "12:00"}]}),
    ] {
        let r = app
            .request(
                reqwest::Method::PUT,
                &path,
                Some(&attorney.access),
                Some(bad),
            )
            .await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    // Busy blocks: list and delete; other users' blocks are not reachable.
    let busy = format!("/api/v1/users/{}/busy", attorney.id);
    let r = app
        .post(
            &busy,
            Some(&attorney.access),
            json!({"starts_at": "2027-01-04T09:00:00Z", "ends_at": "2027-01-04T10:00:00Z"}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let list: Value = app
        .get(&busy, Some(&attorney.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{}/busy/{id}", other.id),
            Some(&other.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("{busy}/{id}"),
            Some(&attorney.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn ten_concurrent_identical_bookings_one_wins() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    new_case(&app, &attorney, &[&client]).await;
    let (s, e) = (future(3, 15, 0), future(3, 16, 0));
    let body = json!({"attorney_id": attorney.id, "client_id": client.id, "starts_at": s, "ends_at": e, "title": "Strategy"});
    let results =
        futures::future::join_all((0..10).map(|_| book(&app, &attorney, body.clone()))).await;
    let codes: Vec<StatusCode> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CREATED).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::CONFLICT).count(),
        9,
        "{codes:?}"
    );

    // Overlapping partly → 409; adjacent → fine.
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "starts_at": future(3, 15, 55),
        "ends_at": future(3, 16, 30), "title": "Overlap"}),
    )
    .await;
    problem(r, StatusCode::CONFLICT).await;
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "starts_at": e,
        "ends_at": future(3, 16, 30), "title": "Adjacent"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The client cannot be in two places: another attorney, same time → 409.
    let other = app.user("attorney").await;
    new_case(&app, &other, &[&client]).await;
    let r = book(
        &app,
        &other,
        json!({"attorney_id": other.id, "client_id": client.id,
        "starts_at": future(3, 15, 30), "ends_at": future(3, 17, 0), "title": "Clash"}),
    )
    .await;
    problem(r, StatusCode::CONFLICT).await;
    // Concurrent bookings of one client with two attorneys: one wins.
    let (a, b) = futures::future::join(
        book(
            &app,
            &attorney,
            json!({"attorney_id": attorney.id, "client_id": client.id,
            "starts_at": future(4, 10, 0), "ends_at": future(4, 11, 0), "title": "A"}),
        ),
        book(
            &app,
            &other,
            json!({"attorney_id": other.id, "client_id": client.id,
            "starts_at": future(4, 10, 30), "ends_at": future(4, 11, 30), "title": "B"}),
        ),
    )
    .await;
    let mut codes = [a.status(), b.status()];
    codes.sort();
    assert_eq!(codes, [StatusCode::CREATED, StatusCode::CONFLICT]);

    // Cancelling frees the time at once.
    let list: Value = app
        .get("/api/v1/appointments?limit=100", Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    let first = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Strategy")
        .unwrap()
        .clone();
    let id = first["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/cancel"),
            Some(&attorney.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["sequence"], 1);
    let r = book(&app, &attorney, body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn clients_book_free_slots_of_their_attorneys_only() {
    let app = spawn_app_with(|c| c.booking_min_notice_minutes = 120).await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let other_client = app.user("client").await;
    let outsider_attorney = app.user("attorney").await;
    let case = new_case(&app, &attorney, &[&client]).await;
    let other_case = new_case(&app, &attorney, &[&other_client]).await;
    // Every day, all day (UTC), so the test does not depend on the weekday it runs.
    let rules: Vec<Value> = (1..=7)
        .map(|d| json!({"weekday": d, "start": "00:00", "end": "24:00"}))
        .collect();
    for a in [&attorney, &outsider_attorney] {
        let r = app
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/users/{}/availability", a.id),
                Some(&a.access),
                Some(json!({"timezone": "UTC", "rules": rules})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let slot = |d: i64, h: u32| {
        json!({"attorney_id": attorney.id, "case_id": case, "starts_at": future(d, h, 0),
        "ends_at": future(d, h, 30), "title": "Consultation"})
    };

    // An attorney not on the client's case does not exist for them; nor does another's case.
    let mut b = slot(2, 10);
    b["attorney_id"] = json!(outsider_attorney.id);
    problem(book(&app, &client, b).await, StatusCode::NOT_FOUND).await;
    let mut b = slot(2, 10);
    b["case_id"] = json!(other_case);
    problem(book(&app, &client, b).await, StatusCode::NOT_FOUND).await;
    // Booking for someone else, or with unknown fields (mass assignment) → refused.
    let mut b = slot(2, 10);
    b["client_id"] = json!(other_client.id);
    problem(book(&app, &client, b).await, StatusCode::FORBIDDEN).await;
    let mut b = slot(2, 10);
    b["status"] = json!("confirmed");
    let r = book(&app, &client, b).await;
    assert!(
        r.status() == StatusCode::UNPROCESSABLE_ENTITY || r.status() == StatusCode::BAD_REQUEST
    );
    // Minimum notice: 422. Off the 5-minute grid: 422.
    let soon = Utc::now() + CDuration::minutes(60);
    let soon = soon
        - CDuration::seconds(soon.timestamp() % 300)
        - CDuration::nanoseconds(soon.timestamp_subsec_nanos() as i64);
    let r = book(
        &app,
        &client,
        json!({"attorney_id": attorney.id, "starts_at": soon,
        "ends_at": soon + CDuration::minutes(30), "title": "Now"}),
    )
    .await;
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["field"], "starts_at");
    // The first offered slot leaves the notice and a quarter of an hour to choose it, so
    // a slot on screen is still bookable when it is picked; and not much more than that.
    // (15-minute slots: the last of a day starts at 23:45, so the next is never further
    // than one step away, whatever the time of day.)
    let asked_at = Utc::now();
    let today = asked_at.date_naive();
    let offered = slots(
        &app,
        &client,
        &attorney,
        &today.to_string(),
        &(today + chrono::Days::new(2)).to_string(),
        15,
    )
    .await;
    let answered_at = Utc::now();
    let first: DateTime<Utc> = offered[0].0.parse().unwrap();
    assert!(
        first - asked_at >= CDuration::minutes(135)
            && first - answered_at <= CDuration::minutes(135 + 15),
        "first slot {first}, asked at {asked_at}"
    );
    let mut b = slot(2, 10);
    b["starts_at"] = json!(future(2, 10, 3));
    problem(
        book(&app, &client, b).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Busy → not a free slot → 409.
    app.post(
        &format!("/api/v1/users/{}/busy", attorney.id),
        Some(&attorney.access),
        json!({"starts_at": future(2, 12, 0), "ends_at": future(2, 13, 0)}),
    )
    .await;
    problem(book(&app, &client, slot(2, 12)).await, StatusCode::CONFLICT).await;

    // A good booking: requested; the client may not confirm it; the attorney does.
    let r = book(&app, &client, slot(2, 10)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["status"], "requested");
    assert_eq!(a["client_id"], json!(client.id));
    let id = a["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/confirm"),
            Some(&client.access),
            json!({}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/confirm"),
            Some(&attorney.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        (a["status"].as_str(), a["sequence"].as_i64()),
        (Some("confirmed"), Some(1))
    );

    // Outsiders see nothing of it.
    for who in [&other_client, &outsider_attorney] {
        for path in [
            format!("/api/v1/appointments/{id}"),
            format!("/api/v1/appointments/{id}/ics"),
        ] {
            problem(
                app.get(&path, Some(&who.access)).await,
                StatusCode::NOT_FOUND,
            )
            .await;
        }
        let r = app
            .post(
                &format!("/api/v1/appointments/{id}/cancel"),
                Some(&who.access),
                json!({}),
            )
            .await;
        problem(r, StatusCode::NOT_FOUND).await;
        let r = app
            .patch(
                &format!("/api/v1/appointments/{id}"),
                Some(&who.access),
                json!({"title": "x"}),
            )
            .await;
        problem(r, StatusCode::NOT_FOUND).await;
        let list: Value = app
            .get("/api/v1/appointments", Some(&who.access))
            .await
            .json()
            .await
            .unwrap();
        assert!(list["items"].as_array().unwrap().is_empty());
    }

    // Reschedule re-checks conflicts: onto another appointment of the attorney → 409.
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "starts_at": future(2, 14, 0),
        "ends_at": future(2, 15, 0), "title": "Other"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .patch(
            &format!("/api/v1/appointments/{id}"),
            Some(&client.access),
            json!({"starts_at": future(2, 14, 30), "ends_at": future(2, 15, 0)}),
        )
        .await;
    problem(r, StatusCode::CONFLICT).await;
    // A client's reschedule to a free time goes back to requested.
    let r = app
        .patch(
            &format!("/api/v1/appointments/{id}"),
            Some(&client.access),
            json!({"starts_at": future(2, 16, 0), "ends_at": future(2, 16, 30)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        (a["status"].as_str(), a["sequence"].as_i64()),
        (Some("requested"), Some(2))
    );
    // The old time is free again.
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "starts_at": future(2, 10, 0),
        "ends_at": future(2, 10, 30), "title": "Reuse"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Within the minimum notice a client can no longer cancel (409); the firm can.
    let r = book(&app, &attorney, json!({"attorney_id": attorney.id, "client_id": client.id,
        "starts_at": soon + CDuration::minutes(5), "ends_at": soon + CDuration::minutes(35), "title": "Soon"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let soon_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            &format!("/api/v1/appointments/{soon_id}/cancel"),
            Some(&client.access),
            json!({}),
        )
        .await;
    problem(r, StatusCode::CONFLICT).await;
    let r = app
        .post(
            &format!("/api/v1/appointments/{soon_id}/cancel"),
            Some(&attorney.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Cancelled appointments cannot be rescheduled.
    let r = app
        .patch(
            &format!("/api/v1/appointments/{soon_id}"),
            Some(&attorney.access),
            json!({"title": "again"}),
        )
        .await;
    problem(r, StatusCode::CONFLICT).await;

    // Lists: own only, keyset-paginated, limit checked.
    let page: Value = app
        .get("/api/v1/appointments?limit=1", Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2: Value = app
        .get(
            &format!("/api/v1/appointments?limit=1&cursor={cursor}"),
            Some(&client.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(page["items"][0]["id"], page2["items"][0]["id"]);
    problem(
        app.get("/api/v1/appointments?limit=0", Some(&client.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Live events went to both participants; the dashboard shows what is coming.
    use lawfirm_pro::realtime::entity as ev;
    let events = ev::Entity::find()
        .filter(ev::Column::Kind.is_in(["appointment.created", "appointment.updated"]))
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "appointment.created"
        && e.user_ids.as_deref().is_some_and(
            |u| u.contains(&client.id.to_string()) && u.contains(&attorney.id.to_string())
        )));
    let d: Value = app
        .get("/api/v1/dashboard", Some(&client.access))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !d["upcoming_appointments"].as_array().unwrap().is_empty(),
        "{d}"
    );
    let d: Value = app
        .get("/api/v1/dashboard", Some(&attorney.access))
        .await
        .json()
        .await
        .unwrap();
    assert!(d["todays_appointments"].is_array(), "{d}");
}

/// Parse iCalendar text with Python's `icalendar` (a second, independent implementation).
fn python_parse(ics: &str) -> Value {
    use std::io::Write;
    let script = r#"
import sys, json, icalendar
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
out = []
for e in cal.walk('VEVENT'):
    out.append({"uid": str(e['UID']), "status": str(e.get('STATUS')), "sequence": int(e.get('SEQUENCE', 0)),
                "start": e.decoded('DTSTART').isoformat(), "summary": str(e['SUMMARY'])})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python icalendar could not parse the calendar (is it installed? scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn ics_export_and_secret_feed() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    new_case(&app, &attorney, &[&client]).await;
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "client_id": client.id,
        "starts_at": future(5, 9, 0), "ends_at": future(5, 10, 0),
        "title": "Deposition prep; bring exhibits, IDs \\ notes", "location": "Room 4, 2nd floor"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    let id = a["id"].as_str().unwrap().to_owned();

    let r = app
        .get(
            &format!("/api/v1/appointments/{id}/ics"),
            Some(&client.access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let ics = r.text().await.unwrap();
    assert!(ics.contains("\r\n") && !ics.replace("\r\n", "").contains('\n'));
    let events = python_parse(&ics);
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["uid"], format!("{id}@lfp.test"));
    assert_eq!(
        events[0]["summary"],
        "Deposition prep; bring exhibits, IDs \\ notes"
    );
    assert_eq!(events[0]["status"], "CONFIRMED");
    assert!(same_instant(
        events[0]["start"].as_str().unwrap(),
        &future(5, 9, 0).to_rfc3339()
    ));

    // The feed: no auth header, outside /api/v1.
    let r = app
        .post(
            "/api/v1/calendar/feed-token",
            Some(&client.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("http://lfp.test/calendar/feed/") && url.ends_with(".ics"),
        "{url}"
    );
    let path = url.trim_start_matches("http://lfp.test");
    let r = app.get(path, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let feed = python_parse(&r.text().await.unwrap());
    assert_eq!(feed[0]["uid"], format!("{id}@lfp.test"));

    // Cancelling shows in the feed: same UID, higher SEQUENCE, STATUS:CANCELLED.
    app.post(
        &format!("/api/v1/appointments/{id}/cancel"),
        Some(&attorney.access),
        json!({}),
    )
    .await;
    let feed = python_parse(&app.get(path, None).await.text().await.unwrap());
    assert_eq!(feed[0]["uid"], format!("{id}@lfp.test"));
    assert_eq!(feed[0]["status"], "CANCELLED");
    assert_eq!(feed[0]["sequence"], 1);

    // Rotating invalidates the old URL.
    let r = app
        .post(
            "/api/v1/calendar/feed-token",
            Some(&client.access),
            json!({}),
        )
        .await;
    let url2 = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(url, url2);
    problem(app.get(path, None).await, StatusCode::NOT_FOUND).await;
    assert_eq!(
        app.get(url2.trim_start_matches("http://lfp.test"), None)
            .await
            .status(),
        StatusCode::OK
    );
    problem(
        app.get("/calendar/feed/nonsense.ics", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.post("/api/v1/calendar/feed-token", None, json!({}))
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn reminders_go_out_once_per_offset_to_both_participants() {
    let app = spawn_app_with(|c| {
        c.reminder_minutes = vec![1440, 1];
        c.job_interval = Duration::from_millis(200);
    })
    .await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    new_case(&app, &attorney, &[&client]).await;
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "client_id": client.id,
        "starts_at": future(6, 9, 0), "ends_at": future(6, 10, 0), "title": "Hearing"}),
    )
    .await;
    let id: uuid::Uuid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Time travel: the appointment now starts in 30 seconds and was booked yesterday.
    use lawfirm_pro::appointments::entity::appointment;
    let now = lawfirm_pro::db::now();
    appointment::ActiveModel {
        id: Set(id),
        starts_at: Set(now + CDuration::seconds(30)),
        ends_at: Set(now + CDuration::minutes(30)),
        scheduled_at: Set(now - CDuration::days(1)),
        ..Default::default()
    }
    .update(app.state.db.conn())
    .await
    .unwrap();

    use lawfirm_pro::mail::entity as outbox;
    let reminders = || async {
        outbox::Entity::find()
            .filter(outbox::Column::Kind.eq("appointment.reminder"))
            .all(app.state.db.conn())
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reminders().await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reminder was queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Both offsets were due; one reminder per participant was sent, and never again.
    let rows = reminders().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|m| m.to_user_id == Some(client.id)));
    assert!(rows.iter().any(|m| m.to_user_id == Some(attorney.id)));
    assert!(
        lawfirm_pro::mail::attachments_of(&rows[0])[0]
            .filename
            .ends_with(".ics")
    );
    let again = lawfirm_pro::appointments::reminders::run_once(&app.state, lawfirm_pro::db::now())
        .await
        .unwrap();
    assert_eq!(again, 0);
    use lawfirm_pro::realtime::entity as ev;
    let notes = ev::Entity::find()
        .filter(ev::Column::Kind.eq("notification"))
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    let users = notes[0].user_ids.clone().unwrap();
    assert!(users.contains(&client.id.to_string()) && users.contains(&attorney.id.to_string()));
}

#[tokio::test]
async fn staff_complete_appointments_that_have_begun() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    new_case(&app, &attorney, &[&client]).await;
    let r = book(
        &app,
        &attorney,
        json!({"attorney_id": attorney.id, "client_id": client.id,
        "starts_at": future(1, 9, 0), "ends_at": future(1, 10, 0), "title": "Meeting"}),
    )
    .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Moving within its own time does not conflict with itself; an empty patch changes nothing.
    let r = app
        .patch(
            &format!("/api/v1/appointments/{id}"),
            Some(&attorney.access),
            json!({"starts_at": future(1, 9, 15), "ends_at": future(1, 10, 15)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(
            &format!("/api/v1/appointments/{id}"),
            Some(&attorney.access),
            json!({}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["sequence"], 1);
    let path = format!("/api/v1/appointments/{id}/complete");
    problem(
        app.post(&path, Some(&attorney.access), json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
    use lawfirm_pro::appointments::entity::appointment;
    let now = lawfirm_pro::db::now();
    appointment::ActiveModel {
        id: Set(id.parse().unwrap()),
        starts_at: Set(now - CDuration::minutes(30)),
        ..Default::default()
    }
    .update(app.state.db.conn())
    .await
    .unwrap();
    problem(
        app.post(&path, Some(&client.access), json!({})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let r = app.post(&path, Some(&attorney.access), json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["status"], "completed");
    // A completed appointment is no longer cancellable.
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/cancel"),
            Some(&attorney.access),
            json!({}),
        )
        .await;
    problem(r, StatusCode::CONFLICT).await;
}

/// A case led by `lead` with `clients` and other `staff` on it.
async fn case_with(app: &TestApp, lead: &Login, clients: &[&Login], staff: &[&Login]) -> String {
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Matter",
                "client_ids": clients.iter().map(|c| c.id).collect::<Vec<_>>(),
                "staff_ids": staff.iter().map(|c| c.id).collect::<Vec<_>>()}),
        )
        .await;
    created_id(r).await
}

/// Denied entries of `actor` with `action`, once the audit writer has committed them.
async fn denials(app: &TestApp, actor: &Login, action: &str, want: usize) -> Vec<String> {
    use lawfirm_pro::audit::entity::entry;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.state.audit.settle().await.unwrap();
        let rows: Vec<String> = entry::Entity::find()
            .filter(entry::Column::ActorId.eq(actor.id))
            .filter(entry::Column::Action.eq(action))
            .filter(entry::Column::Outcome.eq("denied"))
            .all(app.state.db.conn())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.resource_id)
            .collect();
        if rows.len() >= want || tokio::time::Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn staff_book_only_clients_of_their_cases() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let outsider_attorney = app.user("attorney").await;
    let outsider_paralegal = app.user("paralegal").await;
    let other_client = app.user("client").await;
    let case = case_with(&app, &attorney, &[&client], &[&paralegal]).await;
    // The outsiders work on another client's matter, not on `client`'s.
    let other_case = case_with(
        &app,
        &outsider_attorney,
        &[&other_client],
        &[&outsider_paralegal],
    )
    .await;
    let (s, e) = (future(3, 15, 0), future(3, 16, 0));
    let body = |attorney_id: uuid::Uuid, client_id: uuid::Uuid| {
        json!({"attorney_id": attorney_id, "client_id": client_id, "starts_at": s,
        "ends_at": e, "title": "Urgent: verify your account", "location": "https://evil.example"})
    };
    let count_appointments = || async {
        use lawfirm_pro::appointments::entity::appointment;
        appointment::Entity::find()
            .all(app.state.db.conn())
            .await
            .unwrap()
            .len()
    };
    let mails_to = |u: uuid::Uuid| {
        let app = &app;
        async move {
            use lawfirm_pro::mail::entity as outbox;
            outbox::Entity::find()
                .filter(outbox::Column::ToUserId.eq(u))
                .all(app.state.db.conn())
                .await
                .unwrap()
                .len()
        }
    };

    // Staff sharing no case with the client: 404, whoever the attorney; nothing booked, no mail.
    for (who, attorney_id) in [
        (&outsider_paralegal, attorney.id),
        (&outsider_paralegal, outsider_attorney.id),
        (&outsider_attorney, outsider_attorney.id),
    ] {
        let r = book(&app, who, body(attorney_id, client.id)).await;
        problem(r, StatusCode::NOT_FOUND).await;
    }
    // The same answer for no one at all and for a staff member named as the client, so the
    // answer does not tell who exists.
    for c in [uuid::Uuid::new_v4(), attorney.id] {
        let r = book(&app, &outsider_paralegal, body(attorney.id, c)).await;
        problem(r, StatusCode::NOT_FOUND).await;
    }
    // Naming a case of their own does not help with someone else's client.
    let mut b = body(outsider_attorney.id, client.id);
    b["case_id"] = json!(other_case);
    problem(
        book(&app, &outsider_attorney, b).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(count_appointments().await, 0);
    assert_eq!(mails_to(client.id).await, 0);

    // The legal team books its client: confirmed, both mailed.
    let r = book(&app, &paralegal, body(attorney.id, client.id)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["status"], "confirmed");
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(mails_to(client.id).await, 1);

    // The client is busy now, but an outsider learns nothing from a 409: still 404.
    let r = book(
        &app,
        &outsider_attorney,
        body(outsider_attorney.id, client.id),
    )
    .await;
    problem(r, StatusCode::NOT_FOUND).await;
    // Their own client, at the same time, with their own attorney: fine.
    let r = book(
        &app,
        &outsider_paralegal,
        body(outsider_attorney.id, other_client.id),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The team itself does get the 409.
    let r = book(&app, &attorney, body(attorney.id, client.id)).await;
    problem(r, StatusCode::CONFLICT).await;

    // On a case: the attorney must be on its legal team (refused otherwise), the client a
    // client of it; a case the caller is not on is 404.
    let on_case = |attorney_id: uuid::Uuid, client_id: uuid::Uuid, case_id: &str, day: i64| {
        json!({"attorney_id": attorney_id, "client_id": client_id, "case_id": case_id,
        "starts_at": future(day, 9, 0), "ends_at": future(day, 10, 0), "title": "Meeting"})
    };
    let r = book(
        &app,
        &paralegal,
        on_case(outsider_attorney.id, client.id, &case, 4),
    )
    .await;
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["field"], "attorney_id", "{p}");
    problem(
        book(
            &app,
            &paralegal,
            on_case(attorney.id, other_client.id, &case, 4),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        book(
            &app,
            &paralegal,
            on_case(attorney.id, client.id, &other_case, 4),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = book(&app, &paralegal, on_case(attorney.id, client.id, &case, 4)).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Admins book anyone with anyone.
    let r = book(
        &app,
        &admin,
        on_case(outsider_attorney.id, client.id, &case, 5),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = book(
        &app,
        &admin,
        on_case(attorney.id, other_client.id, &other_case, 6),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(count_appointments().await, 5);

    // A booked appointment cannot be moved to other people: those fields are not patchable.
    for field in ["attorney_id", "client_id", "case_id"] {
        let r = app
            .patch(
                &format!("/api/v1/appointments/{id}"),
                Some(&paralegal.access),
                json!({field: other_client.id}),
            )
            .await;
        assert!(r.status().is_client_error(), "{field}: {}", r.status());
    }
    let a: Value = app
        .get(
            &format!("/api/v1/appointments/{id}"),
            Some(&attorney.access),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&a["client_id"], &a["attorney_id"], a["sequence"].as_i64()),
        (&json!(client.id), &json!(attorney.id), Some(0))
    );

    // Every refusal is in the audit trail as denied, naming whom the caller tried to book.
    let d = denials(&app, &outsider_paralegal, "appointment.create", 4).await;
    assert_eq!(d.len(), 4, "{d:?}");
    assert_eq!(
        d.iter().filter(|r| **r == client.id.to_string()).count(),
        2,
        "{d:?}"
    );
    let d = denials(&app, &outsider_attorney, "appointment.create", 3).await;
    assert_eq!(d.len(), 3, "{d:?}");
    let d = denials(&app, &paralegal, "appointment.create", 1).await;
    assert_eq!(d, vec![other_client.id.to_string()]);

    // Reading someone else's appointment is a 404 and an audited denial too.
    for path in [
        format!("/api/v1/appointments/{id}"),
        format!("/api/v1/appointments/{id}/ics"),
    ] {
        problem(
            app.get(&path, Some(&outsider_attorney.access)).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    problem(
        app.post(
            &format!("/api/v1/appointments/{id}/cancel"),
            Some(&outsider_attorney.access),
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let d = denials(&app, &outsider_attorney, "appointment.access", 3).await;
    assert_eq!(d, vec![id.clone(); 3]);
}

#[tokio::test]
async fn clients_are_refused_other_people_and_cases_with_a_denial() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let other_attorney = app.user("attorney").await;
    new_case(&app, &attorney, &[&client]).await;
    let body = json!({"attorney_id": other_attorney.id, "starts_at": future(3, 9, 0),
        "ends_at": future(3, 10, 0), "title": "Talk"});
    problem(book(&app, &client, body).await, StatusCode::NOT_FOUND).await;
    let d = denials(&app, &client, "appointment.create", 1).await;
    assert_eq!(d, vec![other_attorney.id.to_string()]);
    // Slots of an attorney not on their cases: 404 and a denial.
    let r = app
        .get(
            &format!(
                "/api/v1/users/{}/slots?from=2027-03-15&to=2027-03-16&duration_minutes=30",
                other_attorney.id
            ),
            Some(&client.access),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
    let d = denials(&app, &client, "slots.read", 1).await;
    assert_eq!(d, vec![other_attorney.id.to_string()]);
}

#[tokio::test]
async fn feed_urls_keep_the_path_of_the_public_url() {
    // Behind a proxy at /portal (which strips the prefix before the app sees the request).
    let app = spawn_app_with(|c| {
        c.public_url = url::Url::parse("http://lfp.test/portal").unwrap();
    })
    .await;
    let client = app.user("client").await;
    let r = app
        .post(
            "/api/v1/calendar/feed-token",
            Some(&client.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("http://lfp.test/portal/calendar/feed/") && url.ends_with(".ics"),
        "{url}"
    );
    let r = app
        .get(url.trim_start_matches("http://lfp.test/portal"), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// More appointments in the next day than the job reads at once: every one gets its
/// day-before reminder in the same pass, not only the first page.
#[tokio::test]
async fn a_busy_day_gets_every_reminder_in_one_pass() {
    use lawfirm_pro::appointments::entity::reminder;
    use sea_orm::PaginatorTrait;
    let app = spawn_app_with(|c| c.job_interval = Duration::from_secs(3600)).await;
    let attorney = app.user("attorney").await;
    let now = lawfirm_pro::db::now();
    let starts = (0..510).map(|i| now + CDuration::hours(2) + CDuration::minutes(i));
    insert_slots(&app, &attorney, starts).await;
    let sent = lawfirm_pro::appointments::reminders::run_once(&app.state, now)
        .await
        .unwrap();
    // The job may have taken some of them first; between them, every one is reminded once.
    assert!(sent <= 510, "{sent}");
    let marked = reminder::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(marked, 510);
}

/// One-minute confirmed appointments of `attorney` (no client) starting at `starts`, written
/// straight to the table (booked two days ago), for tests that need thousands.
async fn insert_slots(
    app: &TestApp,
    attorney: &Login,
    starts: impl Iterator<Item = DateTime<Utc>>,
) {
    use lawfirm_pro::appointments::entity::appointment;
    let now = lawfirm_pro::db::now();
    let rows: Vec<appointment::ActiveModel> = starts
        .enumerate()
        .map(|(i, t)| appointment::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            attorney_id: Set(attorney.id),
            client_id: Set(None),
            case_id: Set(None),
            starts_at: Set(t),
            ends_at: Set(t + CDuration::minutes(1)),
            title: Set(format!("Slot {i}")),
            location: Set(None),
            notes: Set(None),
            status: Set("confirmed".into()),
            sequence: Set(0),
            scheduled_at: Set(now - CDuration::days(2)),
            created_by: Set(Some(attorney.id)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .collect();
    for chunk in rows.chunks(200) {
        appointment::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(app.state.db.conn())
            .await
            .unwrap();
    }
}

/// A calendar with more of the past 90 days than a feed holds still shows every coming
/// appointment: the feed keeps the nearest ones on both sides of now, not the oldest.
#[tokio::test]
async fn a_full_feed_keeps_the_coming_appointments() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let now = lawfirm_pro::db::now();
    let past = (1..=1_900).map(|i| now - CDuration::minutes(60 * i));
    let coming = (1..=300).map(|i| now + CDuration::minutes(60 * i));
    insert_slots(&app, &attorney, past.chain(coming)).await;
    let r = app
        .post(
            "/api/v1/calendar/feed-token",
            Some(&attorney.access),
            json!({}),
        )
        .await;
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let feed = app
        .get(url.trim_start_matches("http://lfp.test"), None)
        .await
        .text()
        .await
        .unwrap();
    let starts: Vec<&str> = feed
        .lines()
        .filter_map(|l| l.strip_prefix("DTSTART:"))
        .collect();
    let ahead = starts
        .iter()
        .filter(|s| **s >= now.format("%Y%m%dT%H%M%SZ").to_string().as_str())
        .count();
    assert_eq!(ahead, 300, "every coming appointment");
    assert_eq!(starts.len(), 800, "and the latest 500 before now");
}
