//! Cases: numbering, access by membership, roles, transitions, timeline, events, listing,
//! deadlines, dashboards, conflict checks and statistics — as a client and an attacker see them.

use std::collections::{HashMap, HashSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use lawfirm_pro::{auth::Principal, cases::entity::legal_case, users::service::NewUser};
use reqwest::{Method, StatusCode};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Login, TestApp, problem, spawn_app};

/// A request that has not answered in this long is stuck (e.g. a lock waiting on itself).
const HANG: StdDuration = StdDuration::from_secs(20);

async fn app() -> TestApp {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK, "server answers");
    app
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Any request, failing (instead of hanging the suite) when the server does not answer.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let what = format!("{method} {path}");
    tokio::time::timeout(HANG, app.request(method, path, Some(token), body))
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {HANG:?} (server stuck?)"))
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app, Method::GET, path, token, None).await
}
async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app, Method::POST, path, token, Some(body)).await
}
async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app, Method::PATCH, path, token, Some(body)).await
}
async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app, Method::DELETE, path, token, None).await
}

/// Assert the status (showing the body when it differs) and return the JSON body.
async fn expect(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// Assert a problem+json answer; `what` names the request in failure messages.
async fn refused(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    assert_eq!(r.status(), status, "{what}");
    problem(r, status).await
}

fn error_fields(b: &Value) -> HashSet<String> {
    b["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("validation problem lists errors: {b}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// A signed-in user of `role` with a chosen display name.
async fn named(app: &TestApp, role: &str, name: &str) -> Login {
    let email = format!(
        "{role}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..10]
    );
    lawfirm_pro::users::service::create_user(
        &app.state,
        &Principal::system(),
        NewUser {
            email: email.clone(),
            name: name.into(),
            role: role.into(),
            password: Some(crate::helpers::PASSWORD.into()),
            phone: None,
            timezone: None,
        },
    )
    .await
    .expect("user created");
    app.login_as(&email).await
}

async fn create_case(app: &TestApp, token: &str, body: Value) -> Value {
    expect(
        post(app, "/api/v1/cases", token, body.clone()).await,
        StatusCode::CREATED,
        &format!("POST /cases {body}"),
    )
    .await
}

/// A case titled `title` with these clients and staff.
async fn case_with(
    app: &TestApp,
    lead: &Login,
    title: &str,
    clients: &[&Login],
    staff: &[&Login],
) -> Value {
    create_case(
        app,
        &lead.access,
        json!({
            "title": title,
            "client_ids": clients.iter().map(|l| l.id).collect::<Vec<_>>(),
            "staff_ids": staff.iter().map(|l| l.id).collect::<Vec<_>>(),
        }),
    )
    .await
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {v}"))
        .to_owned()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

fn set(items: &[&Value]) -> HashSet<String> {
    items.iter().map(|v| id_of(v)).collect()
}

/// `GET /cases?query` (must be 200); one page of items and the next cursor.
async fn list_page(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let b = expect(
        get(app, &format!("/api/v1/cases?{query}"), token).await,
        StatusCode::OK,
        &format!("GET /cases?{query}"),
    )
    .await;
    assert!(b.get("next_cursor").is_some(), "{b}");
    (
        b["items"].as_array().unwrap().clone(),
        b["next_cursor"].as_str().map(str::to_owned),
    )
}

/// Every case id `GET /cases?query` returns (one page of 100 is enough for these tests).
async fn listed(app: &TestApp, token: &str, query: &str) -> HashSet<String> {
    let (items, next) = list_page(app, token, &format!("limit=100&{query}")).await;
    assert!(next.is_none(), "more than 100 cases?");
    ids(&items).into_iter().collect()
}

async fn audit(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let b = expect(
        get(app, &format!("/api/v1/audit?limit=100&{query}"), admin).await,
        StatusCode::OK,
        query,
    )
    .await;
    b["items"].as_array().unwrap().clone()
}

async fn dashboard(app: &TestApp, token: &str) -> Value {
    expect(
        get(app, "/api/v1/dashboard", token).await,
        StatusCode::OK,
        "GET /dashboard",
    )
    .await
}

async fn timeline(app: &TestApp, token: &str, case: &str) -> Vec<Value> {
    let b = expect(
        get(
            app,
            &format!("/api/v1/cases/{case}/timeline?limit=100"),
            token,
        )
        .await,
        StatusCode::OK,
        "timeline",
    )
    .await;
    b["items"].as_array().unwrap().clone()
}

async fn change(app: &TestApp, token: &str, case: &str, body: Value) -> reqwest::Response {
    post(app, &format!("/api/v1/cases/{case}/status"), token, body).await
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Move a case's opening time (time travel, directly in the database).
async fn set_opened_at(app: &TestApp, case: &str, at: DateTime<Utc>) {
    legal_case::Entity::update_many()
        .col_expr(legal_case::Column::OpenedAt, Expr::value(at))
        .filter(legal_case::Column::Id.eq(case.parse::<Uuid>().unwrap()))
        .exec(app.state.db.conn())
        .await
        .expect("backdate case");
}

// ---------------------------------------------------------------------------------------------
// 1. Creation

#[tokio::test]
async fn attorney_creates_a_case_with_members_number_and_statute_deadline() {
    let app = app().await;
    let attorney = named(&app, "attorney", "Alice Advocate").await;
    let client = named(&app, "client", "Carl Client").await;
    let paralegal = named(&app, "paralegal", "Paula Paralegal").await;
    let sol = today() + Duration::days(400);

    let c = create_case(
        &app,
        &attorney.access,
        json!({
            "title": "Smith v. Jones",
            "description": "Wrongful dismissal",
            "practice_area": "employment",
            "client_ids": [client.id],
            "staff_ids": [paralegal.id],
            "priority": "high",
            "statute_of_limitations": sol,
        }),
    )
    .await;

    let number = c["number"].as_str().unwrap();
    let (year, seq) = number.split_once('-').expect("number is YYYY-NNNN");
    assert_eq!(year, Utc::now().year().to_string(), "{number}");
    assert!(
        seq.len() == 4 && seq.chars().all(|ch| ch.is_ascii_digit()),
        "{number}"
    );
    assert_eq!(c["status"], "open");
    assert_eq!(c["phase"], "intake");
    assert_eq!(c["title"], "Smith v. Jones");
    assert_eq!(c["priority"], "high");
    assert!(c["closed_at"].is_null(), "{c}");
    assert!(c["opened_at"].is_string(), "{c}");

    let members = c["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{c}");
    for m in members {
        let keys: HashSet<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["user_id", "name", "role"] {
            assert!(keys.contains(k), "member lacks {k}: {m}");
        }
    }
    let role_of = |u: Uuid| {
        members
            .iter()
            .find(|m| m["user_id"] == u.to_string())
            .unwrap_or_else(|| panic!("{u} is a member: {c}"))
    };
    assert_eq!(role_of(attorney.id)["role"], "lead_attorney");
    assert_eq!(role_of(attorney.id)["name"], "Alice Advocate");
    assert_eq!(role_of(client.id)["role"], "client");
    assert_eq!(role_of(client.id)["name"], "Carl Client");
    assert_eq!(role_of(paralegal.id)["role"], "paralegal");

    assert_eq!(c["next_deadline"]["due_on"], sol.to_string(), "{c}");
    assert_eq!(c["next_deadline"]["kind"], "statute_of_limitations", "{c}");
    assert_eq!(c["statute_of_limitations"], sol.to_string(), "{c}");

    // The members see it the same way.
    let id = id_of(&c);
    for who in [&client, &paralegal] {
        let got = expect(
            get(&app, &format!("/api/v1/cases/{id}"), &who.access).await,
            StatusCode::OK,
            "member reads",
        )
        .await;
        assert_eq!(got["number"], c["number"]);
        assert_eq!(got["members"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn only_attorneys_and_admins_create_and_input_is_validated() {
    let app = app().await;
    let attorney = app.user("attorney").await;
    let admin = app.user("admin").await;
    let client = app.user("client").await;
    let paralegal = app.user("paralegal").await;

    for who in [&client, &paralegal] {
        refused(
            post(
                &app,
                "/api/v1/cases",
                &who.access,
                json!({"title": "Mine", "client_ids": [client.id]}),
            )
            .await,
            StatusCode::FORBIDDEN,
            "non-attorney creates",
        )
        .await;
    }
    // An admin creating a case leads it.
    let c = create_case(
        &app,
        &admin.access,
        json!({"title": "Admin matter", "client_ids": [client.id]}),
    )
    .await;
    assert!(
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == admin.id.to_string() && m["role"] == "lead_attorney"),
        "{c}"
    );

    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"client_ids": [client.id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "missing title",
    )
    .await;
    assert!(error_fields(&b).contains("title"), "{b}");
    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "   ", "client_ids": [client.id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "blank title",
    )
    .await;
    assert!(error_fields(&b).contains("title"), "{b}");

    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "client_ids": [Uuid::new_v4()]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown client",
    )
    .await;
    assert!(error_fields(&b).contains("client_ids"), "{b}");
    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "client_ids": [paralegal.id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "staff user as client",
    )
    .await;
    assert!(error_fields(&b).contains("client_ids"), "{b}");
    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "client_ids": [client.id], "staff_ids": [client.id]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "client as staff",
    )
    .await;
    assert!(error_fields(&b).contains("staff_ids"), "{b}");
    refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "client_ids": [client.id], "colour": "red"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown field",
    )
    .await;
    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "client_ids": [client.id], "priority": "whenever"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad priority",
    )
    .await;
    assert!(error_fields(&b).contains("priority"), "{b}");
    refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "X", "statute_of_limitations": "2026-02-30"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "impossible date",
    )
    .await;
    // No refused request consumed a case.
    let (items, _) = list_page(&app, &admin.access, "limit=100").await;
    assert_eq!(items.len(), 1, "only the admin's case exists");
}

/// PostgreSQL cannot hold a NUL in text: the fuzzer once turned one in `practice_area` into
/// a 500. Every way in (JSON body, nested JSON, query filter) is a 422 naming the field,
/// and the case is left as it was.
#[tokio::test]
async fn nul_characters_are_refused_with_the_field_named_and_nothing_changes() {
    let app = app().await;
    let attorney = named(&app, "attorney", "Nora Nul").await;
    let client = named(&app, "client", "Ned Nul").await;
    let c = create_case(
        &app,
        &attorney.access,
        json!({"title": "Clean", "practice_area": "employment", "client_ids": [client.id]}),
    )
    .await;
    let id = id_of(&c);
    for (body, field) in [
        (json!({"practice_area": "\u{0}\u{1e}x"}), "practice_area"),
        (json!({"description": "line\u{0}"}), "description"),
        (json!({"title": "T\u{0}"}), "title"),
    ] {
        let b = refused(
            patch(
                &app,
                &format!("/api/v1/cases/{id}"),
                &attorney.access,
                body.clone(),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "NUL in a patch",
        )
        .await;
        assert!(error_fields(&b).contains(field), "{body} -> {b}");
    }
    // A control character other than NUL in the label is refused by the case rules too.
    let b = refused(
        patch(
            &app,
            &format!("/api/v1/cases/{id}"),
            &attorney.access,
            json!({"practice_area": "a\u{1e}b"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "control character in practice_area",
    )
    .await;
    assert!(error_fields(&b).contains("practice_area"), "{b}");
    let b = refused(
        post(
            &app,
            "/api/v1/cases",
            &attorney.access,
            json!({"title": "New", "client_ids": [client.id], "parties": [{"name": "ok", "kind": "opposing_party"}, {"name": "\u{0}", "kind": "opposing_party"}]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NUL in a nested field",
    )
    .await;
    assert!(error_fields(&b).contains("parties[1].name"), "{b}");
    // Next to a part only the target type skips (an out-of-range number in an unknown
    // field), the NUL is found all the same; the field is then the whole body.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nul\u{0}@example.com", "password": "irrelevant"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let raw = r#"{"email":"nul\u0000@example.com","password":"irrelevant","x":1e400}"#;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    let b = refused(
        r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NUL beside an unreadable part",
    )
    .await;
    assert!(error_fields(&b).contains("body"), "{b}");
    // A label is counted as stored: 'İ' lowers to two characters, 100 of them are too many.
    let b = refused(
        patch(
            &app,
            &format!("/api/v1/cases/{id}"),
            &attorney.access,
            json!({"practice_area": "İ".repeat(100)}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "practice_area longer once lowered",
    )
    .await;
    assert!(error_fields(&b).contains("practice_area"), "{b}");
    let b = refused(
        get(&app, "/api/v1/cases?practice_area=a%00b", &attorney.access).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NUL in a filter",
    )
    .await;
    assert!(error_fields(&b).contains("practice_area"), "{b}");

    let got = expect(
        get(&app, &format!("/api/v1/cases/{id}"), &attorney.access).await,
        StatusCode::OK,
        "case unchanged",
    )
    .await;
    assert_eq!(got["title"], "Clean");
    assert_eq!(got["practice_area"], "employment");
    let (items, _) = list_page(&app, &attorney.access, "limit=100").await;
    assert_eq!(items.len(), 1, "the refused creation made nothing");
}

// ---------------------------------------------------------------------------------------------
// 2. Number allocation under concurrency

#[tokio::test]
async fn concurrent_creation_allocates_unique_consecutive_numbers() {
    let app = app().await;
    let a1 = app.user("attorney").await;
    let a2 = app.user("attorney").await;
    let client = app.user("client").await;

    let reqs = (0..20).map(|i| {
        let token = if i % 2 == 0 {
            a1.access.clone()
        } else {
            a2.access.clone()
        };
        let app = &app;
        async move {
            post(
                app,
                "/api/v1/cases",
                &token,
                json!({"title": format!("Concurrent {i}"), "client_ids": [client.id]}),
            )
            .await
        }
    });
    let responses = futures::future::join_all(reqs).await;
    let mut seqs = Vec::new();
    let mut numbers = HashSet::new();
    let year = Utc::now().year().to_string();
    for r in responses {
        let b = expect(r, StatusCode::CREATED, "concurrent POST /cases").await;
        let n = b["number"].as_str().unwrap().to_owned();
        let (y, s) = n.split_once('-').unwrap();
        assert_eq!(y, year);
        seqs.push(s.parse::<u32>().unwrap());
        assert!(numbers.insert(n.clone()), "duplicate number {n}");
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "numbers 1..=20 without gaps"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Access follows membership

#[tokio::test]
async fn outsiders_get_404_and_never_see_other_cases_anywhere() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client_a = named(&app, "client", "Ada Clientone").await;
    let client_b = named(&app, "client", "Bruno Cavendish-Blake").await;
    let paralegal = app.user("paralegal").await;

    let a = case_with(&app, &lead, "Alpha matter", &[&client_a], &[&paralegal]).await;
    let b = create_case(
        &app,
        &lead.access,
        json!({"title": "Zanzibar shipping dispute", "description": "quixotic cargo", "client_ids": [client_b.id], "practice_area": "maritime"}),
    )
    .await;
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let b_number = b["number"].as_str().unwrap().to_owned();
    expect(
        post(&app, &format!("/api/v1/cases/{b_id}/deadlines"), &lead.access, json!({"title": "Secret hearing", "due_on": today() + Duration::days(10), "kind": "hearing"})).await,
        StatusCode::CREATED,
        "deadline on B",
    )
    .await;
    expect(
        post(
            &app,
            &format!("/api/v1/cases/{b_id}/parties"),
            &lead.access,
            json!({"name": "Bartholomew Quibble", "kind": "opposing_party"}),
        )
        .await,
        StatusCode::CREATED,
        "party on B",
    )
    .await;

    // Unknown and invisible cases answer the same.
    let unknown = refused(
        get(
            &app,
            &format!("/api/v1/cases/{}", Uuid::new_v4()),
            &client_a.access,
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown case",
    )
    .await;
    for who in [&client_a, &paralegal] {
        for path in [
            format!("/api/v1/cases/{b_id}"),
            format!("/api/v1/cases/{b_id}/timeline"),
            format!("/api/v1/cases/{b_id}/deadlines"),
            format!("/api/v1/cases/{b_id}/parties"),
        ] {
            let p = refused(
                get(&app, &path, &who.access).await,
                StatusCode::NOT_FOUND,
                &path,
            )
            .await;
            assert_eq!(
                p["title"], unknown["title"],
                "{path}: same answer as an unknown case"
            );
            assert_eq!(
                p["detail"], unknown["detail"],
                "{path}: same answer as an unknown case"
            );
        }
    }

    // Lists, searches and filters.
    let only_a: HashSet<String> = [a_id.clone()].into();
    for who in [&client_a, &paralegal] {
        for q in [
            String::new(),
            "status=open".into(),
            "phase=intake".into(),
            "practice_area=maritime".into(),
            format!("client_id={}", client_b.id),
            format!("attorney_id={}", lead.id),
            format!("q={}", enc("Zanzibar")),
            format!("q={}", enc("quixotic")),
            format!("q={}", enc(&b_number)),
            "sort=number".into(),
            "sort=-opened_at".into(),
        ] {
            let got = listed(&app, &who.access, &q).await;
            assert!(!got.contains(&b_id), "B listed for an outsider with ?{q}");
            assert!(got.is_subset(&only_a), "?{q}: {got:?}");
        }
        assert_eq!(listed(&app, &who.access, "").await, only_a);
        let d = dashboard(&app, &who.access).await;
        let dash_ids: HashSet<String> = ids(d["cases"].as_array().unwrap()).into_iter().collect();
        assert_eq!(dash_ids, only_a, "dashboard cases: {d}");
        assert!(
            !d.to_string().contains(&b_id) && !d.to_string().contains(&b_number),
            "dashboard leaks B: {d}"
        );
    }
    // The paralegal's dashboard deadlines and statistics cover only their cases.
    let d = dashboard(&app, &paralegal.access).await;
    assert!(
        d["deadlines_next_30_days"].as_array().unwrap().is_empty(),
        "{d}"
    );
    let stats = expect(
        get(&app, "/api/v1/stats/cases", &paralegal.access).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert!(
        stats["by_practice_area"].get("maritime").is_none(),
        "{stats}"
    );

    // Conflict checks by the paralegal find B's client and party, but not B's id.
    let r = expect(
        post(
            &app,
            "/api/v1/conflict-checks",
            &paralegal.access,
            json!({"names": ["Bruno Cavendish Blake", "Bartholomew Quibble"]}),
        )
        .await,
        StatusCode::OK,
        "conflict check",
    )
    .await;
    let matches = r["matches"].as_array().unwrap();
    assert!(matches.len() >= 2, "{r}");
    assert!(
        !r.to_string().contains(&b_id),
        "conflict check leaks the case id of B: {r}"
    );
    // The client may not run them at all.
    refused(
        post(
            &app,
            "/api/v1/conflict-checks",
            &client_a.access,
            json!({"names": ["Bruno"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "client conflict check",
    )
    .await;

    // The admin sees all, and reading a case they are not on is audited as admin access.
    assert_eq!(
        listed(&app, &admin.access, "").await,
        [a_id.clone(), b_id.clone()].into()
    );
    expect(
        get(&app, &format!("/api/v1/cases/{b_id}"), &admin.access).await,
        StatusCode::OK,
        "admin reads",
    )
    .await;
    expect(
        get(&app, &format!("/api/v1/cases/{b_id}"), &lead.access).await,
        StatusCode::OK,
        "lead reads",
    )
    .await;
    let reads = audit(
        &app,
        &admin.access,
        &format!("action=case.read&resource_id={b_id}"),
    )
    .await;
    let by_admin: Vec<&Value> = reads
        .iter()
        .filter(|e| e["actor_id"] == admin.id.to_string())
        .collect();
    assert_eq!(by_admin.len(), 1, "{reads:?}");
    assert_eq!(
        by_admin[0]["details"]["admin_access"], true,
        "{:?}",
        by_admin[0]
    );
    let by_lead: Vec<&Value> = reads
        .iter()
        .filter(|e| e["actor_id"] == lead.id.to_string())
        .collect();
    assert_eq!(by_lead.len(), 1, "{reads:?}");
    assert_ne!(
        by_lead[0]["details"]["admin_access"], true,
        "a member's read is not admin access"
    );

    // The outsiders' attempts are audited as denials.
    assert_denials_audited(&app, &admin, &b_id, &[&client_a, &paralegal], 4).await;
}

/// Changing requests by non-members are 404 too, answer promptly, and change nothing.
#[tokio::test]
async fn outsiders_cannot_change_a_case_they_do_not_see() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let outsider_attorney = app.user("attorney").await;
    let client_a = app.user("client").await;
    let client_b = app.user("client").await;
    let paralegal = app.user("paralegal").await;
    case_with(&app, &lead, "A", &[&client_a], &[&paralegal]).await;
    let b = case_with(&app, &lead, "B", &[&client_b], &[]).await;
    let b_id = id_of(&b);

    for who in [&client_a, &paralegal, &outsider_attorney] {
        let attempts: Vec<(Method, String, Option<Value>)> = vec![
            (
                Method::POST,
                format!("/api/v1/cases/{b_id}/status"),
                Some(json!({"status": "pending"})),
            ),
            (
                Method::PATCH,
                format!("/api/v1/cases/{b_id}"),
                Some(json!({"title": "pwned"})),
            ),
            (
                Method::POST,
                format!("/api/v1/cases/{b_id}/timeline"),
                Some(json!({"kind": "note", "note": "hi", "client_visible": true})),
            ),
            (
                Method::POST,
                format!("/api/v1/cases/{b_id}/deadlines"),
                Some(json!({"title": "x", "due_on": today(), "kind": "filing"})),
            ),
            (
                Method::POST,
                format!("/api/v1/cases/{b_id}/parties"),
                Some(json!({"name": "x", "kind": "witness"})),
            ),
            (
                Method::POST,
                format!("/api/v1/cases/{b_id}/members"),
                Some(
                    json!({"user_id": who.id, "role": if who.id == client_a.id { "client" } else { "paralegal" }}),
                ),
            ),
            (
                Method::DELETE,
                format!("/api/v1/cases/{b_id}/members/{}", client_b.id),
                None,
            ),
        ];
        for (m, path, body) in attempts {
            let what = format!("{} {m} {path}", who.email);
            refused(
                send(&app, m, &path, &who.access, body).await,
                StatusCode::NOT_FOUND,
                &what,
            )
            .await;
        }
    }
    let after = expect(
        get(&app, &format!("/api/v1/cases/{b_id}"), &lead.access).await,
        StatusCode::OK,
        "lead reads B",
    )
    .await;
    assert_eq!(after["status"], "open");
    assert_eq!(after["title"], "B");
    assert_eq!(after["members"].as_array().unwrap().len(), 2, "{after}");
    assert!(after["next_deadline"].is_null(), "{after}");
    let admin = app.user("admin").await;
    assert_denials_audited(
        &app,
        &admin,
        &b_id,
        &[&client_a, &paralegal, &outsider_attorney],
        7,
    )
    .await;
}

/// Each of `who` has at least `each` `case.access` denials on `case` in the audit trail
/// (denials may be written just after the answer, so wait a little for them).
async fn assert_denials_audited(
    app: &TestApp,
    admin: &Login,
    case: &str,
    who: &[&Login],
    each: usize,
) {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let denied = audit(
            app,
            &admin.access,
            &format!("action=case.access&outcome=denied&resource_id={case}"),
        )
        .await;
        let short: Vec<(&str, usize)> = who
            .iter()
            .map(|w| {
                (
                    w.email.as_str(),
                    denied
                        .iter()
                        .filter(|e| e["actor_id"] == w.id.to_string())
                        .count(),
                )
            })
            .filter(|(_, n)| *n < each)
            .collect();
        if short.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "denials not audited (want {each} each): {short:?}; {denied:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Roles on a visible case

#[tokio::test]
async fn roles_on_a_case_decide_what_members_may_do() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let co_counsel = app.user("attorney").await;
    let client = app.user("client").await;
    let client2 = app.user("client").await;
    let paralegal = app.user("paralegal").await;
    let new_paralegal = named(&app, "paralegal", "Nina Newcomer").await;

    let c = case_with(&app, &lead, "Roles", &[&client], &[&paralegal, &co_counsel]).await;
    let id = id_of(&c);
    let role_of = |c: &Value, u: Uuid| {
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_id"] == u.to_string())
            .map(|m| m["role"].clone())
    };
    assert_eq!(role_of(&c, co_counsel.id), Some(json!("attorney")));

    // The client sees the case but changes nothing.
    expect(
        get(&app, &format!("/api/v1/cases/{id}"), &client.access).await,
        StatusCode::OK,
        "client reads",
    )
    .await;
    expect(
        get(
            &app,
            &format!("/api/v1/cases/{id}/timeline"),
            &client.access,
        )
        .await,
        StatusCode::OK,
        "client timeline",
    )
    .await;
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            format!("/api/v1/cases/{id}/status"),
            Some(json!({"status": "pending"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/cases/{id}"),
            Some(json!({"title": "mine now"})),
        ),
        (
            Method::POST,
            format!("/api/v1/cases/{id}/deadlines"),
            Some(json!({"title": "x", "due_on": today(), "kind": "filing"})),
        ),
        (Method::GET, format!("/api/v1/cases/{id}/deadlines"), None),
        (
            Method::POST,
            format!("/api/v1/cases/{id}/parties"),
            Some(json!({"name": "x", "kind": "witness"})),
        ),
        (Method::GET, format!("/api/v1/cases/{id}/parties"), None),
        (
            Method::POST,
            format!("/api/v1/cases/{id}/members"),
            Some(json!({"user_id": client2.id, "role": "client"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/cases/{id}/members/{}", paralegal.id),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/cases/{id}/timeline"),
            Some(json!({"kind": "note", "note": "x", "client_visible": true})),
        ),
    ];
    for (m, path, body) in attempts {
        let what = format!("client {m} {path}");
        refused(
            send(&app, m, &path, &client.access, body).await,
            StatusCode::FORBIDDEN,
            &what,
        )
        .await;
    }
    let still = expect(
        get(&app, &format!("/api/v1/cases/{id}"), &lead.access).await,
        StatusCode::OK,
        "read",
    )
    .await;
    assert_eq!(still["status"], "open");
    assert_eq!(still["title"], "Roles");
    assert_eq!(still["members"].as_array().unwrap().len(), 4);

    // A paralegal member may change the status and edit.
    let changed = expect(
        change(&app, &paralegal.access, &id, json!({"status": "pending"})).await,
        StatusCode::OK,
        "paralegal status",
    )
    .await;
    assert_eq!(changed["status"], "pending");
    let edited = expect(
        patch(
            &app,
            &format!("/api/v1/cases/{id}"),
            &paralegal.access,
            json!({"description": "Updated"}),
        )
        .await,
        StatusCode::OK,
        "paralegal patch",
    )
    .await;
    assert_eq!(edited["description"], "Updated");

    // Only the lead attorney and admins manage members.
    for who in [&co_counsel, &paralegal] {
        refused(
            post(
                &app,
                &format!("/api/v1/cases/{id}/members"),
                &who.access,
                json!({"user_id": new_paralegal.id, "role": "paralegal"}),
            )
            .await,
            StatusCode::FORBIDDEN,
            "non-lead adds member",
        )
        .await;
        refused(
            delete(
                &app,
                &format!("/api/v1/cases/{id}/members/{}", client.id),
                &who.access,
            )
            .await,
            StatusCode::FORBIDDEN,
            "non-lead removes",
        )
        .await;
    }
    let m = expect(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &lead.access,
            json!({"user_id": new_paralegal.id, "role": "paralegal"}),
        )
        .await,
        StatusCode::CREATED,
        "lead adds",
    )
    .await;
    assert_eq!(m["user_id"], new_paralegal.id.to_string());
    assert_eq!(m["role"], "paralegal");
    assert_eq!(m["name"], "Nina Newcomer");
    expect(
        get(&app, &format!("/api/v1/cases/{id}"), &new_paralegal.access).await,
        StatusCode::OK,
        "new member reads",
    )
    .await;

    refused(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &admin.access,
            json!({"user_id": new_paralegal.id, "role": "paralegal"}),
        )
        .await,
        StatusCode::CONFLICT,
        "existing member",
    )
    .await;
    refused(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &lead.access,
            json!({"user_id": client2.id, "role": "attorney"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "client as attorney",
    )
    .await;
    refused(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &lead.access,
            json!({"user_id": client2.id, "role": "lead_attorney"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "second lead",
    )
    .await;
    refused(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &lead.access,
            json!({"user_id": Uuid::new_v4(), "role": "client"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown user",
    )
    .await;

    expect(
        delete(
            &app,
            &format!("/api/v1/cases/{id}/members/{}", new_paralegal.id),
            &admin.access,
        )
        .await,
        StatusCode::NO_CONTENT,
        "admin removes",
    )
    .await;
    refused(
        get(&app, &format!("/api/v1/cases/{id}"), &new_paralegal.access).await,
        StatusCode::NOT_FOUND,
        "removed paralegal",
    )
    .await;
    for who in [&lead, &admin] {
        refused(
            delete(
                &app,
                &format!("/api/v1/cases/{id}/members/{}", lead.id),
                &who.access,
            )
            .await,
            StatusCode::CONFLICT,
            "remove lead",
        )
        .await;
    }

    // A removed client loses the case at once, everywhere.
    expect(
        post(
            &app,
            &format!("/api/v1/cases/{id}/members"),
            &lead.access,
            json!({"user_id": client2.id, "role": "client"}),
        )
        .await,
        StatusCode::CREATED,
        "add client2",
    )
    .await;
    assert!(listed(&app, &client.access, "").await.contains(&id));
    expect(
        delete(
            &app,
            &format!("/api/v1/cases/{id}/members/{}", client.id),
            &lead.access,
        )
        .await,
        StatusCode::NO_CONTENT,
        "lead removes client",
    )
    .await;
    refused(
        get(&app, &format!("/api/v1/cases/{id}"), &client.access).await,
        StatusCode::NOT_FOUND,
        "removed client reads",
    )
    .await;
    refused(
        get(
            &app,
            &format!("/api/v1/cases/{id}/timeline"),
            &client.access,
        )
        .await,
        StatusCode::NOT_FOUND,
        "removed client timeline",
    )
    .await;
    assert!(listed(&app, &client.access, "").await.is_empty());
    assert!(
        dashboard(&app, &client.access).await["cases"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    expect(
        get(&app, &format!("/api/v1/cases/{id}"), &client2.access).await,
        StatusCode::OK,
        "client2 reads",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Transitions and the timeline

fn assert_entry_shape(e: &Value) {
    let keys: HashSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "id",
        "kind",
        "from",
        "to",
        "note",
        "actor_id",
        "at",
        "client_visible",
    ] {
        assert!(keys.contains(k), "timeline entry lacks {k}: {e}");
    }
}

fn has_entry(entries: &[Value], kind: &str, from: &str, to: &str) -> bool {
    entries
        .iter()
        .any(|e| e["kind"] == kind && e["from"] == from && e["to"] == to)
}

#[tokio::test]
async fn status_and_phase_transitions_follow_the_rules_and_write_the_timeline() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let c = case_with(&app, &lead, "Transitions", &[&client], &[]).await;
    let id = id_of(&c);
    let go = |body: Value| change(&app, &lead.access, &id, body);

    let b = expect(
        go(json!({"status": "pending", "note": "waiting on documents"})).await,
        StatusCode::OK,
        "open→pending",
    )
    .await;
    assert_eq!(b["status"], "pending");
    assert!(b["members"].is_array(), "the updated case object: {b}");
    let b = expect(
        go(json!({"status": "open"})).await,
        StatusCode::OK,
        "pending→open",
    )
    .await;
    assert_eq!(b["status"], "open");
    let b = expect(
        go(json!({"phase": "investigation"})).await,
        StatusCode::OK,
        "phase",
    )
    .await;
    assert_eq!(b["phase"], "investigation");
    assert_eq!(b["status"], "open");

    refused(
        go(json!({"status": "open"})).await,
        StatusCode::CONFLICT,
        "same status",
    )
    .await;
    refused(
        go(json!({"phase": "investigation"})).await,
        StatusCode::CONFLICT,
        "same phase",
    )
    .await;
    refused(
        go(json!({"phase": "closed"})).await,
        StatusCode::CONFLICT,
        "phase closed directly",
    )
    .await;
    refused(
        go(json!({"status": "intake"})).await,
        StatusCode::CONFLICT,
        "open→intake",
    )
    .await;
    let p = refused(
        go(json!({"status": "shut"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad status",
    )
    .await;
    assert!(error_fields(&p).contains("status"), "{p}");
    let p = refused(
        go(json!({"phase": "limbo"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad phase",
    )
    .await;
    assert!(error_fields(&p).contains("phase"), "{p}");
    refused(
        go(json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "nothing",
    )
    .await;
    refused(
        go(json!({"note": "just a note"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "note only",
    )
    .await;
    refused(
        go(json!({"status": "closed", "hack": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown field",
    )
    .await;

    let b = expect(
        go(json!({"status": "closed"})).await,
        StatusCode::OK,
        "close",
    )
    .await;
    assert_eq!(b["status"], "closed");
    assert_eq!(b["phase"], "closed");
    assert!(b["closed_at"].is_string(), "{b}");
    refused(
        go(json!({"phase": "discovery"})).await,
        StatusCode::CONFLICT,
        "phase while closed",
    )
    .await;
    refused(
        go(json!({"status": "pending"})).await,
        StatusCode::CONFLICT,
        "closed→pending",
    )
    .await;
    let b = expect(
        go(json!({"status": "open"})).await,
        StatusCode::OK,
        "reopen",
    )
    .await;
    assert_eq!(b["status"], "open");
    assert_eq!(b["phase"], "intake");
    assert!(b["closed_at"].is_null(), "{b}");

    let staff = timeline(&app, &lead.access, &id).await;
    for e in &staff {
        assert_entry_shape(e);
    }
    for (kind, from, to) in [
        ("status", "open", "pending"),
        ("status", "pending", "open"),
        ("phase", "intake", "investigation"),
        ("status", "open", "closed"),
        ("phase", "investigation", "closed"),
        ("status", "closed", "open"),
        ("phase", "closed", "intake"),
    ] {
        assert!(
            has_entry(&staff, kind, from, to),
            "timeline has {kind} {from}→{to}: {staff:?}"
        );
    }
    let pending = staff
        .iter()
        .find(|e| e["kind"] == "status" && e["to"] == "pending")
        .unwrap();
    assert_eq!(pending["note"], "waiting on documents");
    assert_eq!(pending["actor_id"], lead.id.to_string());
    assert_eq!(pending["client_visible"], true);
    // Newest first.
    let ats: Vec<DateTime<Utc>> = staff
        .iter()
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ats.windows(2).all(|w| w[0] >= w[1]),
        "timeline newest first: {ats:?}"
    );
    // Refused changes wrote nothing.
    assert_eq!(
        staff
            .iter()
            .filter(|e| e["kind"] == "status" || e["kind"] == "phase")
            .count(),
        7,
        "{staff:?}"
    );

    // The client sees the client-visible changes.
    let seen = timeline(&app, &client.access, &id).await;
    assert!(has_entry(&seen, "status", "open", "pending"), "{seen:?}");

    // An internal change and an internal note: staff see them, the client does not.
    expect(
        go(json!({"phase": "discovery", "note": "privileged strategy", "client_visible": false}))
            .await,
        StatusCode::OK,
        "internal phase",
    )
    .await;
    let note = expect(
        post(
            &app,
            &format!("/api/v1/cases/{id}/timeline"),
            &lead.access,
            json!({"kind": "note", "note": "internal memo", "client_visible": false}),
        )
        .await,
        StatusCode::CREATED,
        "internal note",
    )
    .await;
    assert_entry_shape(&note);
    assert_eq!(note["kind"], "note");
    assert_eq!(note["client_visible"], false);
    let milestone = expect(
        post(
            &app,
            &format!("/api/v1/cases/{id}/timeline"),
            &lead.access,
            json!({"kind": "milestone", "note": "Complaint filed", "client_visible": true}),
        )
        .await,
        StatusCode::CREATED,
        "milestone",
    )
    .await;
    refused(
        post(
            &app,
            &format!("/api/v1/cases/{id}/timeline"),
            &lead.access,
            json!({"kind": "status", "note": "fake"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "status entries only via /status",
    )
    .await;

    let staff = timeline(&app, &lead.access, &id).await;
    assert!(
        has_entry(&staff, "phase", "intake", "discovery"),
        "{staff:?}"
    );
    assert!(
        staff.iter().any(|e| e["id"] == note["id"]),
        "staff see the internal note"
    );
    let seen = timeline(&app, &client.access, &id).await;
    assert!(
        !has_entry(&seen, "phase", "intake", "discovery"),
        "client sees an internal change: {seen:?}"
    );
    assert!(
        !seen.iter().any(|e| e["id"] == note["id"]),
        "client sees the internal note"
    );
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains("privileged strategy")
    );
    assert!(
        !serde_json::to_string(&seen)
            .unwrap()
            .contains("internal memo")
    );
    assert!(
        seen.iter().any(|e| e["id"] == milestone["id"]),
        "client sees the milestone"
    );
    assert!(seen.iter().all(|e| e["client_visible"] == true), "{seen:?}");
}

// ---------------------------------------------------------------------------------------------
// 6. Events for live delivery

async fn case_events(app: &TestApp, case: &str) -> Vec<Value> {
    let backend = app.state.db.backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT data FROM event WHERE kind = 'case.updated' AND case_id = $1 ORDER BY id"
        }
        _ => "SELECT data FROM event WHERE kind = 'case.updated' AND case_id = ? ORDER BY id",
    };
    let id: Uuid = case.parse().unwrap();
    let rows = app
        .state
        .db
        .conn()
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await
        .expect("events query");
    rows.iter()
        .map(|r| serde_json::from_str(&r.try_get::<String>("", "data").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_status_change_writes_a_case_updated_event() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let c = case_with(&app, &lead, "Events", &[&client], &[]).await;
    let other = case_with(&app, &lead, "Other", &[&client], &[]).await;
    let id = id_of(&c);

    let total = || async {
        let row = app
            .state
            .db
            .conn()
            .query_one_raw(Statement::from_string(
                app.state.db.backend(),
                "SELECT COUNT(*) AS n FROM event WHERE kind = 'case.updated'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    let before_total = total().await;
    let before = case_events(&app, &id).await;
    expect(
        change(&app, &lead.access, &id, json!({"status": "pending"})).await,
        StatusCode::OK,
        "status",
    )
    .await;
    assert_eq!(
        total().await,
        before_total + 1,
        "one more case.updated event"
    );
    let after = case_events(&app, &id).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let last = after.last().unwrap();
    assert_eq!(last["status"], "pending", "{last}");
    assert_eq!(
        case_events(&app, &id_of(&other)).await.len(),
        1,
        "only the creation event on the other case"
    );

    // A refused change writes no event.
    refused(
        change(&app, &lead.access, &id, json!({"status": "pending"})).await,
        StatusCode::CONFLICT,
        "same",
    )
    .await;
    refused(
        change(&app, &client.access, &id, json!({"status": "open"})).await,
        StatusCode::FORBIDDEN,
        "client",
    )
    .await;
    assert_eq!(total().await, before_total + 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Listing: filters, full text, sorting, keyset pagination

#[tokio::test]
async fn list_filters_narrow_the_visible_cases() {
    let app = app().await;
    let admin = app.user("admin").await;
    let att1 = app.user("attorney").await;
    let att2 = app.user("attorney").await;
    let cl1 = app.user("client").await;
    let cl2 = app.user("client").await;

    let mk = |lead: &Login, body: Value| {
        let token = lead.access.clone();
        let app = &app;
        async move { create_case(app, &token, body).await }
    };
    let c1 = mk(&att1, json!({"title": "Alpha", "practice_area": "employment", "priority": "high", "client_ids": [cl1.id]})).await;
    let c2 = mk(&att1, json!({"title": "Beta", "practice_area": "family", "priority": "low", "client_ids": [cl2.id]})).await;
    let c3 = mk(&att1, json!({"title": "Gamma", "practice_area": "employment", "priority": "urgent", "client_ids": [cl1.id], "staff_ids": [att2.id]})).await;
    let c4 = mk(&att2, json!({"title": "Delta", "client_ids": [cl2.id]})).await;
    expect(
        change(
            &app,
            &att1.access,
            &id_of(&c2),
            json!({"status": "pending"}),
        )
        .await,
        StatusCode::OK,
        "c2 pending",
    )
    .await;
    expect(
        change(
            &app,
            &att1.access,
            &id_of(&c3),
            json!({"phase": "discovery"}),
        )
        .await,
        StatusCode::OK,
        "c3 discovery",
    )
    .await;
    set_opened_at(
        &app,
        &id_of(&c1),
        Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap(),
    )
    .await;
    set_opened_at(
        &app,
        &id_of(&c2),
        Utc.with_ymd_and_hms(2025, 4, 2, 9, 30, 0).unwrap(),
    )
    .await;

    let check = |query: &'static str, want: HashSet<String>| {
        let token = admin.access.clone();
        let app = &app;
        async move {
            let got = listed(app, &token, query).await;
            assert_eq!(got, want, "?{query}");
        }
    };
    check("", set(&[&c1, &c2, &c3, &c4])).await;
    check("status=pending", set(&[&c2])).await;
    check("status=open", set(&[&c1, &c3, &c4])).await;
    check("status=closed", HashSet::new()).await;
    check("phase=discovery", set(&[&c3])).await;
    check("phase=intake", set(&[&c1, &c2, &c4])).await;
    check("priority=high", set(&[&c1])).await;
    check("priority=normal", set(&[&c4])).await;
    check("practice_area=employment", set(&[&c1, &c3])).await;
    check("practice_area=employment&priority=urgent", set(&[&c3])).await;
    check("opened_from=2025-03-01&opened_to=2025-03-31", set(&[&c1])).await;
    check("opened_to=2025-03-10", set(&[&c1])).await;
    check("opened_from=2025-03-11&opened_to=2025-12-31", set(&[&c2])).await;
    check("opened_to=2025-12-31", set(&[&c1, &c2])).await;
    let later = listed(&app, &admin.access, &format!("opened_from={}", today())).await;
    assert_eq!(later, set(&[&c3, &c4]));
    let q = format!("client_id={}", cl1.id);
    assert_eq!(
        listed(&app, &admin.access, &q).await,
        set(&[&c1, &c3]),
        "?{q}"
    );
    let q = format!("client_id={}", cl2.id);
    assert_eq!(
        listed(&app, &admin.access, &q).await,
        set(&[&c2, &c4]),
        "?{q}"
    );
    let q = format!("attorney_id={}", att2.id);
    assert_eq!(
        listed(&app, &admin.access, &q).await,
        set(&[&c3, &c4]),
        "?{q}"
    );
    let q = format!("attorney_id={}", att1.id);
    assert_eq!(
        listed(&app, &admin.access, &q).await,
        set(&[&c1, &c2, &c3]),
        "?{q}"
    );
    // A client id is not an attorney: nothing.
    let q = format!("attorney_id={}", cl1.id);
    assert!(listed(&app, &admin.access, &q).await.is_empty(), "?{q}");
    // att1 only sees their own three, whatever the filter.
    let q = format!("client_id={}", cl2.id);
    assert_eq!(
        listed(&app, &att1.access, &q).await,
        set(&[&c2]),
        "att1 ?{q}"
    );

    // Sorting.
    let (items, _) = list_page(&app, &admin.access, "sort=opened_at&limit=100").await;
    assert_eq!(ids(&items)[..2], [id_of(&c1), id_of(&c2)], "oldest first");
    let (items, _) = list_page(&app, &admin.access, "sort=-opened_at&limit=100").await;
    assert_eq!(ids(&items)[2..], [id_of(&c2), id_of(&c1)], "oldest last");
    let (items, _) = list_page(&app, &admin.access, "sort=number&limit=100").await;
    let numbers: Vec<String> = items
        .iter()
        .map(|c| c["number"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(numbers, sorted, "sort=number ascending");
    assert_eq!(
        ids(&items),
        [id_of(&c1), id_of(&c2), id_of(&c3), id_of(&c4)]
    );
    let (items, _) = list_page(&app, &admin.access, "limit=100").await;
    let updated: Vec<DateTime<Utc>> = items
        .iter()
        .map(|c| c["updated_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] >= w[1]),
        "default sort is -updated_at: {updated:?}"
    );

    // Invalid parameters.
    for q in [
        "sort=title",
        "sort=--number",
        "status=shut",
        "phase=limbo",
        "priority=meh",
        "limit=0",
        "limit=101",
        "opened_from=2025-13-01",
        "client_id=not-a-uuid",
        "cursor=garbage",
    ] {
        let r = get(&app, &format!("/api/v1/cases?{q}"), &admin.access).await;
        let status = r.status();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY
                || (q.starts_with("cursor") && status == StatusCode::BAD_REQUEST),
            "?{q}: {status}"
        );
        problem(r, status).await;
    }
}

#[tokio::test]
async fn full_text_search_over_number_title_and_description() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let a = create_case(
        &app,
        &lead.access,
        json!({"title": "Zephyrine Holdings breach", "description": "contract dispute over shipments", "client_ids": [client.id]}),
    )
    .await;
    let b = create_case(
        &app,
        &lead.access,
        json!({"title": "Harbour lease", "description": "The landlord mentions kumquat orchards", "client_ids": [client.id]}),
    )
    .await;
    let (a_id, b_id) = (id_of(&a), id_of(&b));

    for (q, want) in [
        ("Zephyrine", vec![&a_id]),
        ("zephyrine", vec![&a_id]),
        ("ZEPHYRINE holdings", vec![&a_id]),
        ("kumquat", vec![&b_id]),
        ("shipments", vec![&a_id]),
        ("nothingmatcheshere", vec![]),
    ] {
        let got = listed(&app, &lead.access, &format!("q={}", enc(q))).await;
        let want: HashSet<String> = want.into_iter().cloned().collect();
        assert_eq!(got, want, "q={q}");
    }
    for c in [&a, &b] {
        let n = c["number"].as_str().unwrap();
        let got = listed(&app, &lead.access, &format!("q={}", enc(n))).await;
        assert_eq!(got, [id_of(c)].into(), "q={n}");
    }
    // Operators and punctuation never break the query.
    for q in [
        "\"",
        "\"\"",
        "*",
        "**",
        "OR",
        "AND",
        "NOT",
        "zephyrine OR kumquat",
        "\"unterminated",
        "a*b",
        "NEAR(",
        "NEAR(a b)",
        "-",
        "-zephyrine",
        ":",
        "title:zephyrine",
        "'",
        "\\",
        "%",
        "_",
        "(",
        ")",
        "^",
        "!",
        "&",
        "|",
        "<->",
        "a & b | !c",
        "'; DROP TABLE legal_case; --",
        "zephyrine*",
        "\t",
        "a\u{7f}b",
        "José",
        "日本語",
    ] {
        let r = get(&app, &format!("/api/v1/cases?q={}", enc(q)), &lead.access).await;
        assert!(
            r.status() == StatusCode::OK || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
            "q={q:?}: {}",
            r.status()
        );
    }
    let long = "x".repeat(201);
    refused(
        get(&app, &format!("/api/v1/cases?q={long}"), &lead.access).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "long q",
    )
    .await;

    // An edited title is searchable, the old one is not.
    expect(
        patch(
            &app,
            &format!("/api/v1/cases/{a_id}"),
            &lead.access,
            json!({"title": "Quillfeather Holdings breach"}),
        )
        .await,
        StatusCode::OK,
        "rename",
    )
    .await;
    assert_eq!(
        listed(&app, &lead.access, "q=Quillfeather").await,
        [a_id.clone()].into()
    );
    assert!(listed(&app, &lead.access, "q=Zephyrine").await.is_empty());
}

/// A NUL byte in `q` is refused or finds nothing, but is never a server error.
#[tokio::test]
async fn search_text_with_a_nul_byte_is_not_a_server_error() {
    let app = app().await;
    let lead = app.user("attorney").await;
    create_case(&app, &lead.access, json!({"title": "Zephyrine"})).await;
    for q in ["\u{0}", "zephyrine\u{0}", "\"\u{0}\"*"] {
        let r = get(&app, &format!("/api/v1/cases?q={}", enc(q)), &lead.access).await;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
            "q={q:?}: {status} {body}"
        );
    }
}

/// Walk every page of `GET /cases?query&limit=2`; the ids in order.
async fn walk(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let q = match &cursor {
            Some(c) => format!("limit=2&{query}&cursor={}", enc(c)),
            None => format!("limit=2&{query}"),
        };
        let (items, next) = list_page(app, token, &q).await;
        assert!(items.len() <= 2);
        out.extend(ids(&items));
        match next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn keyset_pagination_walks_every_case_once_in_every_sort() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let mut all = HashSet::new();
    for i in 0..7 {
        all.insert(id_of(
            &create_case(
                &app,
                &lead.access,
                json!({"title": format!("Page {i}"), "client_ids": [client.id]}),
            )
            .await,
        ));
    }
    // Same opened_at for several cases: ties are broken by id.
    let ids_vec: Vec<String> = all.iter().cloned().collect();
    let same = Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap();
    for id in &ids_vec[..4] {
        set_opened_at(&app, id, same).await;
    }
    for sort in [
        "",
        "sort=number",
        "sort=-number",
        "sort=opened_at",
        "sort=-opened_at",
        "sort=updated_at",
        "sort=-updated_at",
    ] {
        let got = walk(&app, &lead.access, sort).await;
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), unique.len(), "{sort}: duplicates {got:?}");
        assert_eq!(unique, all, "{sort}: every case once");
    }
    let (first, _) = list_page(&app, &lead.access, "sort=number&limit=100").await;
    assert_eq!(
        walk(&app, &lead.access, "sort=number").await,
        ids(&first),
        "pages follow the sort"
    );
}

#[tokio::test]
async fn pagination_is_stable_while_cases_are_created() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let other = app.user("attorney").await;
    let client = app.user("client").await;
    let mut original = HashSet::new();
    for i in 0..6 {
        original.insert(id_of(
            &create_case(
                &app,
                &lead.access,
                json!({"title": format!("Orig {i}"), "client_ids": [client.id]}),
            )
            .await,
        ));
    }
    for sort in ["", "sort=number", "sort=-opened_at"] {
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut n = 0;
        loop {
            let q = match &cursor {
                Some(c) => format!("limit=2&{sort}&cursor={}", enc(c)),
                None => format!("limit=2&{sort}"),
            };
            let (items, next) = list_page(&app, &client.access, &q).await;
            seen.extend(ids(&items));
            // Someone creates cases between the first page fetches.
            if n < 6 {
                for who in [&lead, &other] {
                    n += 1;
                    create_case(
                        &app,
                        &who.access,
                        json!({"title": format!("Inserted {n}"), "client_ids": [client.id]}),
                    )
                    .await;
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(seen.len() < 200, "pagination does not end");
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{sort}: duplicates while inserting: {seen:?}"
        );
        let missed: Vec<&String> = original.difference(&unique).collect();
        assert!(
            missed.is_empty(),
            "{sort}: missed cases present from the start: {missed:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Deadlines and dashboards

#[tokio::test]
async fn deadlines_next_deadline_and_dashboards() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let c = case_with(&app, &lead, "Deadlines", &[&client], &[]).await;
    let id = id_of(&c);
    let path = format!("/api/v1/cases/{id}/deadlines");

    let add = |title: &str, due: NaiveDate, kind: &str| {
        let body = json!({"title": title, "due_on": due, "kind": kind});
        let (app, path, token) = (&app, path.clone(), lead.access.clone());
        async move {
            expect(
                post(app, &path, &token, body).await,
                StatusCode::CREATED,
                "add deadline",
            )
            .await
        }
    };
    let d40 = add("Trial", today() + Duration::days(40), "hearing").await;
    let d10 = add("File motion", today() + Duration::days(10), "filing").await;
    let past = add("Old internal", today() - Duration::days(5), "internal").await;
    for d in [&d40, &d10, &past] {
        for k in ["id", "title", "due_on", "kind"] {
            assert!(d.get(k).is_some(), "deadline lacks {k}: {d}");
        }
    }
    assert_eq!(d10["kind"], "filing");
    assert_eq!(d10["due_on"], (today() + Duration::days(10)).to_string());

    for body in [
        json!({"title": "x", "due_on": today(), "kind": "birthday"}),
        json!({"title": "", "due_on": today(), "kind": "filing"}),
        json!({"title": "x", "due_on": "2026-02-30", "kind": "filing"}),
        json!({"title": "x", "kind": "filing"}),
    ] {
        refused(
            post(&app, &path, &lead.access, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("bad deadline {body}"),
        )
        .await;
    }

    let b = expect(
        get(&app, &path, &lead.access).await,
        StatusCode::OK,
        "list deadlines",
    )
    .await;
    let order: Vec<String> = ids(b["items"].as_array().unwrap());
    assert_eq!(
        order,
        [id_of(&past), id_of(&d10), id_of(&d40)],
        "soonest first"
    );

    let got = expect(
        get(&app, &format!("/api/v1/cases/{id}"), &lead.access).await,
        StatusCode::OK,
        "case",
    )
    .await;
    assert_eq!(
        got["next_deadline"]["id"], d10["id"],
        "next deadline is the soonest future one: {got}"
    );
    let (items, _) = list_page(&app, &lead.access, "").await;
    assert_eq!(
        items[0]["next_deadline"]["id"], d10["id"],
        "also in the list"
    );

    // Staff dashboard.
    let d = dashboard(&app, &lead.access).await;
    for k in [
        "cases",
        "cases_by_status",
        "deadlines_next_30_days",
        "todays_appointments",
        "unbilled_minutes",
        "unread_messages",
        "upcoming_appointments",
        "recent_documents",
    ] {
        assert!(d.get(k).is_some(), "staff dashboard lacks {k}: {d}");
    }
    assert_eq!(d["cases_by_status"]["open"], 1, "{d}");
    let upcoming: Vec<String> = ids(d["deadlines_next_30_days"].as_array().unwrap());
    assert!(
        upcoming.contains(&id_of(&d10)),
        "10 days out is listed: {d}"
    );
    assert!(!upcoming.contains(&id_of(&d40)), "40 days out is not: {d}");
    assert!(!upcoming.contains(&id_of(&past)), "past ones are not: {d}");

    // Client dashboard.
    let d = dashboard(&app, &client.access).await;
    for k in [
        "cases",
        "unread_messages",
        "upcoming_appointments",
        "outstanding_balance_cents",
        "currency",
        "recent_documents",
    ] {
        assert!(d.get(k).is_some(), "client dashboard lacks {k}: {d}");
    }
    for k in [
        "cases_by_status",
        "deadlines_next_30_days",
        "todays_appointments",
        "unbilled_minutes",
    ] {
        assert!(
            d.get(k).is_none(),
            "client dashboard has staff field {k}: {d}"
        );
    }
    let cases = d["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    for k in ["id", "number", "title", "status", "phase", "updated_at"] {
        assert!(cases[0].get(k).is_some(), "dashboard case lacks {k}: {d}");
    }
    assert!(d["outstanding_balance_cents"].is_i64(), "{d}");
    assert!(d["unread_messages"].is_i64(), "{d}");

    // Each read was audited before its answer came back: the entries are there at once.
    let admin = app.user("admin").await;
    let reads = audit(&app, &admin.access, "action=dashboard.read").await;
    for who in [&lead, &client] {
        let mine: Vec<&Value> = reads
            .iter()
            .filter(|e| e["actor_id"] == who.id.to_string())
            .collect();
        assert_eq!(mine.len(), 1, "{reads:?}");
        assert_eq!(mine[0]["details"]["cases"], 1, "{:?}", mine[0]);
    }
}

/// Every page of `GET /deadlines?{query}` as `token`, following `next_cursor` from `cursor`.
async fn deadline_pages(
    app: &TestApp,
    token: &str,
    query: &str,
    cursor: Option<&str>,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = cursor.map(str::to_owned);
    loop {
        let mut path = format!("/api/v1/deadlines?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let b = expect(get(app, &path, token).await, StatusCode::OK, &path).await;
        all.extend(b["items"].as_array().unwrap().iter().cloned());
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

/// The dashboard shows the first 50 deadlines of the next 30 days and a cursor; `GET
/// /deadlines` pages through the rest (and any window) in due order, only the caller's cases,
/// staff only, audited.
#[tokio::test]
async fn the_dashboard_shows_fifty_deadlines_and_the_deadline_list_pages_the_rest() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let outsider = app.user("attorney").await;
    let mine = id_of(&case_with(&app, &lead, "Busy month", &[&client], &[&paralegal]).await);
    let theirs = id_of(&case_with(&app, &outsider, "Elsewhere", &[], &[]).await);

    // 56 open deadlines in the window, several on one day (ordered by id there), one done,
    // one beyond 30 days, one past, and one on a case the lead is not on.
    let add = |case: String, token: String, title: String, due: NaiveDate| {
        let app = &app;
        async move {
            expect(
                post(
                    app,
                    &format!("/api/v1/cases/{case}/deadlines"),
                    &token,
                    json!({"title": title, "due_on": due, "kind": "filing"}),
                )
                .await,
                StatusCode::CREATED,
                "add deadline",
            )
            .await
        }
    };
    let mut open: Vec<(NaiveDate, String)> = Vec::new();
    for i in 0..56i64 {
        let due = today() + Duration::days(i % 8);
        let d = add(mine.clone(), lead.access.clone(), format!("Step {i}"), due).await;
        open.push((due, id_of(&d)));
    }
    let done = add(mine.clone(), lead.access.clone(), "Done".into(), today()).await;
    expect(
        patch(
            &app,
            &format!("/api/v1/cases/{mine}/deadlines/{}", id_of(&done)),
            &lead.access,
            json!({"completed": true}),
        )
        .await,
        StatusCode::OK,
        "complete",
    )
    .await;
    let far = add(
        mine.clone(),
        lead.access.clone(),
        "Far".into(),
        today() + Duration::days(31),
    )
    .await;
    add(
        mine.clone(),
        lead.access.clone(),
        "Past".into(),
        today() - Duration::days(1),
    )
    .await;
    let other = add(
        theirs.clone(),
        outsider.access.clone(),
        "Not yours".into(),
        today(),
    )
    .await;
    open.sort();
    let truth: Vec<String> = open.iter().map(|(_, id)| id.clone()).collect();

    for who in [&lead, &paralegal] {
        // The dashboard: the first 50, soonest first, and where the rest continue.
        let d = dashboard(&app, &who.access).await;
        let shown = ids(d["deadlines_next_30_days"].as_array().unwrap());
        assert_eq!(shown, truth[..50], "the first fifty in due order");
        let cursor = d["deadlines_next_cursor"].as_str().expect("a cursor: {d}");
        let rest = deadline_pages(&app, &who.access, "days=30", Some(cursor)).await;
        assert_eq!(
            ids(&rest),
            truth[50..],
            "the list continues where it stopped"
        );

        // The whole window in pages of 5 (breaking inside days) is the same list, each row as
        // the dashboard's.
        let all = deadline_pages(&app, &who.access, "days=30&limit=5", None).await;
        assert_eq!(ids(&all), truth);
        for k in ["id", "case_id", "case_number", "title", "due_on", "kind"] {
            assert!(all[0].get(k).is_some(), "deadline lacks {k}: {}", all[0]);
        }
        assert_eq!(all[0]["case_id"], mine.as_str());
        // A wider window adds the far one, never the done, past or other case's.
        let wide = ids(&deadline_pages(&app, &who.access, "days=60&limit=100", None).await);
        assert_eq!(wide.len(), 57, "{wide:?}");
        assert_eq!(wide.last(), Some(&id_of(&far)));
        assert!(!wide.contains(&id_of(&done)) && !wide.contains(&id_of(&other)));
        // Today only.
        let today_only = deadline_pages(&app, &who.access, "days=0&limit=100", None).await;
        assert_eq!(ids(&today_only), truth[..7]);
    }

    // Fewer than fifty: all of them and a null cursor, present for staff.
    let d = dashboard(&app, &outsider.access).await;
    assert_eq!(
        ids(d["deadlines_next_30_days"].as_array().unwrap()),
        [id_of(&other)]
    );
    assert!(
        d["deadlines_next_cursor"].is_null() && d.get("deadlines_next_cursor").is_some(),
        "{d}"
    );
    assert_eq!(
        ids(&deadline_pages(&app, &outsider.access, "days=30", None).await),
        [id_of(&other)],
        "an attorney sees only their own cases' deadlines"
    );
    // An admin sees every case's, in the same order, page by page and from the dashboard on.
    let every = ids(&deadline_pages(&app, &admin.access, "days=30&limit=100", None).await);
    assert_eq!(every.len(), 57);
    assert!(every.contains(&id_of(&other)));
    assert_eq!(
        ids(&deadline_pages(&app, &admin.access, "days=30&limit=5", None).await),
        every
    );
    let d = dashboard(&app, &admin.access).await;
    let mut seen = ids(d["deadlines_next_30_days"].as_array().unwrap());
    let cursor = d["deadlines_next_cursor"].as_str().expect("a cursor");
    seen.extend(ids(&deadline_pages(
        &app,
        &admin.access,
        "days=30&limit=3",
        Some(cursor),
    )
    .await));
    assert_eq!(seen, every);

    // Clients have no deadline list; bad windows, limits and cursors are refused by name.
    refused(
        get(&app, "/api/v1/deadlines", &client.access).await,
        StatusCode::FORBIDDEN,
        "client",
    )
    .await;
    let d = dashboard(&app, &client.access).await;
    assert!(d.get("deadlines_next_cursor").is_none(), "{d}");
    for (query, field) in [
        ("days=-1", "days"),
        ("days=3661", "days"),
        ("days=x", "days"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WzFd", "cursor"),
    ] {
        let b = refused(
            get(&app, &format!("/api/v1/deadlines?{query}"), &lead.access).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            query,
        )
        .await;
        assert!(error_fields(&b).contains(field), "{query}: {b}");
    }
    let r = app.get("/api/v1/deadlines", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Each page read is audited with the cases it showed.
    let entries = audit(&app, &admin.access, "action=case.deadlines_list").await;
    let by_outsider: Vec<&Value> = entries
        .iter()
        .filter(|e| e["actor_id"] == outsider.id.to_string())
        .collect();
    assert_eq!(by_outsider.len(), 1, "{entries:?}");
    assert_eq!(by_outsider[0]["details"]["case_ids"], json!([theirs]));
    assert_eq!(by_outsider[0]["details"]["deadlines"], 1);
}

#[tokio::test]
async fn completing_a_deadline_takes_it_off_next_deadline_and_the_dashboard() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let outsider = app.user("attorney").await;
    let c = case_with(&app, &lead, "Done deadlines", &[&client], &[&paralegal]).await;
    let id = id_of(&c);
    let path = format!("/api/v1/cases/{id}/deadlines");
    let soon = expect(
        post(
            &app,
            &path,
            &lead.access,
            json!({"title": "File reply", "due_on": today() + Duration::days(3), "kind": "filing"}),
        )
        .await,
        StatusCode::CREATED,
        "add soon",
    )
    .await;
    let later = expect(
        post(
            &app,
            &path,
            &lead.access,
            json!({"title": "Hearing", "due_on": today() + Duration::days(20), "kind": "hearing"}),
        )
        .await,
        StatusCode::CREATED,
        "add later",
    )
    .await;
    assert!(soon["completed_at"].is_null(), "open when added: {soon}");
    let one = format!("{path}/{}", id_of(&soon));

    // The case's client may not change it (403: they see the case); an outsider learns
    // nothing (404); bad bodies are refused.
    for (who, status) in [
        (&client, StatusCode::FORBIDDEN),
        (&outsider, StatusCode::NOT_FOUND),
    ] {
        let r = patch(&app, &one, &who.access, json!({"completed": true})).await;
        assert_eq!(r.status(), status, "{}", r.text().await.unwrap());
    }
    let other = format!("{path}/{}", Uuid::new_v4());
    refused(
        patch(&app, &other, &lead.access, json!({"completed": true})).await,
        StatusCode::NOT_FOUND,
        "unknown deadline",
    )
    .await;
    for body in [
        json!({}),
        json!({"completed": "yes"}),
        json!({"completed": true, "title": "x"}),
    ] {
        refused(
            patch(&app, &one, &lead.access, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("bad body {body}"),
        )
        .await;
    }

    // A paralegal of the case marks it done: the next deadline moves on, everywhere.
    let done = expect(
        patch(&app, &one, &paralegal.access, json!({"completed": true})).await,
        StatusCode::OK,
        "complete",
    )
    .await;
    assert!(done["completed_at"].is_string(), "{done}");
    let again = expect(
        patch(&app, &one, &lead.access, json!({"completed": true})).await,
        StatusCode::OK,
        "complete twice",
    )
    .await;
    assert_eq!(
        again["completed_at"], done["completed_at"],
        "idempotent: {again}"
    );
    let got = expect(
        get(&app, &format!("/api/v1/cases/{id}"), &lead.access).await,
        StatusCode::OK,
        "case",
    )
    .await;
    assert_eq!(got["next_deadline"]["id"], later["id"], "{got}");
    let d = dashboard(&app, &lead.access).await;
    let upcoming = ids(d["deadlines_next_30_days"].as_array().unwrap());
    assert!(
        !upcoming.contains(&id_of(&soon)) && upcoming.contains(&id_of(&later)),
        "{d}"
    );
    let listed = expect(get(&app, &path, &lead.access).await, StatusCode::OK, "list").await;
    let row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == soon["id"])
        .cloned()
        .unwrap();
    assert_eq!(
        row["completed_at"], done["completed_at"],
        "done ones stay listed: {listed}"
    );

    // Reopened, it is the next deadline again.
    let open = expect(
        patch(&app, &one, &lead.access, json!({"completed": false})).await,
        StatusCode::OK,
        "reopen",
    )
    .await;
    assert!(open["completed_at"].is_null(), "{open}");
    let got = expect(
        get(&app, &format!("/api/v1/cases/{id}"), &lead.access).await,
        StatusCode::OK,
        "case",
    )
    .await;
    assert_eq!(got["next_deadline"]["id"], soon["id"], "{got}");

    // One entry per change (the repeated completion wrote none).
    let entries = audit(&app, &admin.access, &format!("case_id={id}")).await;
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("case.deadline_"))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "case.deadline_completed")
            .count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "case.deadline_reopened")
            .count(),
        1,
        "{actions:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Conflict checks

#[tokio::test]
async fn conflict_checks_match_tricky_names_and_hide_foreign_case_ids() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let outsider = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let john = named(&app, "client", "John Smith").await;
    let jane = named(&app, "client", "Jane Doe").await;

    let p = case_with(&app, &lead, "Smith matter", &[&john], &[]).await;
    let q = case_with(&app, &lead, "Doe matter", &[&jane], &[]).await;
    let (p_id, p_number) = (id_of(&p), p["number"].as_str().unwrap().to_owned());
    for (name, kind) in [
        ("José Álvarez-Ruiz", "opposing_party"),
        ("O'Brien & Partners LLP", "opposing_counsel"),
        ("Catherine Zeta-Jones", "witness"),
    ] {
        let b = expect(
            post(
                &app,
                &format!("/api/v1/cases/{p_id}/parties"),
                &lead.access,
                json!({"name": name, "kind": kind}),
            )
            .await,
            StatusCode::CREATED,
            "add party",
        )
        .await;
        assert_eq!(b["name"], name);
        assert_eq!(b["kind"], kind);
    }
    refused(
        post(
            &app,
            &format!("/api/v1/cases/{p_id}/parties"),
            &lead.access,
            json!({"name": "X", "kind": "judge"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad party kind",
    )
    .await;
    let parties = expect(
        get(&app, &format!("/api/v1/cases/{p_id}/parties"), &lead.access).await,
        StatusCode::OK,
        "parties",
    )
    .await;
    assert_eq!(parties["items"].as_array().unwrap().len(), 3);

    let run = |token: &str, names: Value| {
        let (app, token) = (&app, token.to_owned());
        async move {
            let b = expect(
                post(
                    app,
                    "/api/v1/conflict-checks",
                    &token,
                    json!({"names": names}),
                )
                .await,
                StatusCode::OK,
                "conflict check",
            )
            .await;
            b["matches"].as_array().unwrap().clone()
        }
    };
    let matches = run(
        &outsider.access,
        json!([
            "jose alvarez ruiz",
            "Zeta Jones, Catherine",
            "Jon Smith",
            "Obrien Partners, LLP"
        ]),
    )
    .await;
    let sims: Vec<f64> = matches
        .iter()
        .map(|m| m["similarity"].as_f64().unwrap())
        .collect();
    assert!(
        sims.windows(2).all(|w| w[0] >= w[1]),
        "ranked highest first: {sims:?}"
    );
    let find = |name: &str| {
        matches
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} found: {matches:?}"))
            .clone()
    };
    for (name, role) in [
        ("José Álvarez-Ruiz", "opposing_party"),
        ("Catherine Zeta-Jones", "witness"),
        ("John Smith", "client"),
        ("O'Brien & Partners LLP", "opposing_counsel"),
    ] {
        let m = find(name);
        assert_eq!(m["role"], role, "{m}");
        assert_eq!(m["case_number"], p_number.as_str(), "{m}");
        assert!(
            m["similarity"].as_f64().unwrap() >= 0.8 && m["similarity"].as_f64().unwrap() <= 1.0,
            "{m}"
        );
        assert!(
            m.get("case_id").is_none(),
            "case id of a case the caller is not on: {m}"
        );
        assert!(m.get("title").is_none(), "{m}");
    }
    assert!(
        !serde_json::to_string(&matches).unwrap().contains(&p_id),
        "no case id anywhere"
    );
    assert!(
        !matches.iter().any(|m| m["name"] == "Jane Doe"),
        "{matches:?}"
    );

    let exact = run(&outsider.access, json!(["John Smith"])).await;
    assert!(
        exact
            .iter()
            .any(|m| m["name"] == "John Smith" && m["similarity"].as_f64().unwrap() >= 0.99),
        "{exact:?}"
    );
    assert!(
        !exact.iter().any(|m| m["name"] == "Jane Doe"),
        "Jane Doe is not John Smith: {exact:?}"
    );
    let none = run(&outsider.access, json!(["Xavier Quellington"])).await;
    assert!(none.is_empty(), "{none:?}");

    // Members of the case (and admins) get the case id.
    for who in [&lead, &admin] {
        let mine = run(&who.access, json!(["Catherine Zeta Jones"])).await;
        let m = mine
            .iter()
            .find(|m| m["name"] == "Catherine Zeta-Jones")
            .unwrap();
        assert_eq!(m["case_id"], p_id.as_str(), "{m}");
    }
    let jane_check = run(&paralegal.access, json!(["Doe, Jane"])).await;
    let m = jane_check
        .iter()
        .find(|m| m["name"] == "Jane Doe")
        .expect("Jane Doe found");
    assert_eq!(m["case_number"], q["number"]);
    assert!(m.get("case_id").is_none(), "{m}");

    // Who may run them, and what they must give.
    let client = app.user("client").await;
    refused(
        post(
            &app,
            "/api/v1/conflict-checks",
            &client.access,
            json!({"names": ["John Smith"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "client",
    )
    .await;
    refused(
        post(
            &app,
            "/api/v1/conflict-checks",
            &john.access,
            json!({"names": ["Jane Doe"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "client of a case",
    )
    .await;
    for body in [
        json!({"names": []}),
        json!({}),
        json!({"names": ["!!!"]}),
        json!({"names": "John"}),
    ] {
        refused(
            post(&app, "/api/v1/conflict-checks", &lead.access, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{body}"),
        )
        .await;
    }

    // Every check is audited (6 ran successfully above).
    let entries = audit(&app, &admin.access, "action=conflict.check").await;
    let ok: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "success")
        .collect();
    assert_eq!(ok.len(), 6, "{entries:?}");
    assert!(ok.iter().any(|e| e["actor_id"] == outsider.id.to_string()));
    assert!(ok.iter().any(|e| e["actor_id"] == paralegal.id.to_string()));
}

// ---------------------------------------------------------------------------------------------
// 10. Statistics

/// Months are the firm's (`LFP_TIMEZONE`): a case opened at 01:00 on the first of this month
/// in the firm's zone counts in this month, though UTC still has it in the previous one.
#[tokio::test]
async fn case_statistics_count_months_in_the_firms_time_zone() {
    let app = crate::helpers::spawn_app_with(|c| c.timezone = "Etc/GMT-12".parse().unwrap()).await;
    let lead = app.user("attorney").await;
    let case = create_case(
        &app,
        &lead.access,
        json!({"title": "Month edge", "client_ids": []}),
    )
    .await;
    let today = app.state.config.today();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let at = app.state.config.start_of(first) + Duration::hours(1);
    let month = first.format("%Y-%m").to_string();
    assert_ne!(
        at.format("%Y-%m").to_string(),
        month,
        "UTC's previous month"
    );
    legal_case::Entity::update_many()
        .col_expr(legal_case::Column::OpenedAt, Expr::value(at))
        .filter(legal_case::Column::Id.eq(id_of(&case).parse::<Uuid>().unwrap()))
        .exec(app.state.db.conn())
        .await
        .unwrap();
    let s = expect(
        get(&app, "/api/v1/stats/cases", &lead.access).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    let last = s["per_month"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["month"], month, "{s}");
    assert_eq!(last["opened"], 1, "{s}");
}

#[tokio::test]
async fn case_statistics_for_staff_only() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let idle = app.user("paralegal").await;
    let a = create_case(
        &app,
        &lead.access,
        json!({"title": "S1", "practice_area": "employment", "client_ids": [client.id]}),
    )
    .await;
    create_case(
        &app,
        &lead.access,
        json!({"title": "S2", "client_ids": [client.id]}),
    )
    .await;

    let s = expect(
        get(&app, "/api/v1/stats/cases", &lead.access).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    assert_eq!(s["total"], 2, "{s}");
    assert_eq!(s["by_status"]["open"], 2, "{s}");
    assert_eq!(s["by_phase"]["intake"], 2, "{s}");
    assert_eq!(s["by_practice_area"]["employment"], 1, "{s}");
    let pa_sum: i64 = s["by_practice_area"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(pa_sum, 2, "every case counted once by practice area: {s}");
    let months = s["per_month"].as_array().unwrap();
    assert_eq!(months.len(), 12, "{s}");
    let this_month = Utc::now().format("%Y-%m").to_string();
    let last = months.last().unwrap();
    assert_eq!(last["month"], this_month, "{s}");
    assert_eq!(last["opened"], 2, "{s}");
    assert!(s["median_days_open"].is_null(), "no closed case yet: {s}");

    expect(
        change(&app, &lead.access, &id_of(&a), json!({"status": "closed"})).await,
        StatusCode::OK,
        "close",
    )
    .await;
    let s = expect(
        get(&app, "/api/v1/stats/cases", &lead.access).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    assert!(s["median_days_open"].is_number(), "{s}");
    assert!(s["median_days_open"].as_f64().unwrap() >= 0.0, "{s}");
    assert_eq!(s["by_status"]["closed"], 1, "{s}");
    assert_eq!(s["by_phase"]["closed"], 1, "{s}");
    assert_eq!(
        s["per_month"].as_array().unwrap().last().unwrap()["closed"],
        1,
        "{s}"
    );

    let s = expect(
        get(&app, "/api/v1/stats/cases", &idle.access).await,
        StatusCode::OK,
        "idle stats",
    )
    .await;
    assert_eq!(s["total"], 0, "a paralegal on no case counts nothing: {s}");
    refused(
        get(&app, "/api/v1/stats/cases", &client.access).await,
        StatusCode::FORBIDDEN,
        "client stats",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 11. Large pages carry their members

#[tokio::test]
async fn a_page_of_thirty_cases_has_every_member() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let mut clients = HashMap::new();
    for i in 0..30 {
        let client = app.user("client").await;
        let c = create_case(
            &app,
            &lead.access,
            json!({"title": format!("Bulk {i}"), "client_ids": [client.id], "staff_ids": [paralegal.id]}),
        )
        .await;
        clients.insert(id_of(&c), client.id.to_string());
    }
    let (items, next) = list_page(&app, &lead.access, "limit=30").await;
    assert_eq!(items.len(), 30);
    assert!(next.is_none());
    for c in &items {
        let members = c["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{c}");
        let roles: HashSet<&str> = members
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["lead_attorney", "client", "paralegal"].into());
        let client = members.iter().find(|m| m["role"] == "client").unwrap();
        assert_eq!(
            client["user_id"],
            clients[&id_of(c)].as_str(),
            "each case has its own client"
        );
        assert!(
            members
                .iter()
                .all(|m| m["name"].as_str().is_some_and(|n| !n.is_empty())),
            "{c}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Editing details

#[tokio::test]
async fn patch_edits_details_but_never_status() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let c = case_with(&app, &lead, "Before", &[&client], &[]).await;
    let id = id_of(&c);
    let path = format!("/api/v1/cases/{id}");

    let b = expect(
        patch(&app, &path, &lead.access, json!({"title": "After", "description": "More", "priority": "urgent", "practice_area": "Tax"})).await,
        StatusCode::OK,
        "patch",
    )
    .await;
    assert_eq!(b["title"], "After");
    assert_eq!(b["description"], "More");
    assert_eq!(b["priority"], "urgent");
    assert_eq!(
        b["members"].as_array().unwrap().len(),
        2,
        "the full case object: {b}"
    );
    let (before, after): (DateTime<Utc>, DateTime<Utc>) = (
        c["updated_at"].as_str().unwrap().parse().unwrap(),
        b["updated_at"].as_str().unwrap().parse().unwrap(),
    );
    assert!(after > before, "updated_at moves: {before} → {after}");

    for body in [
        json!({"status": "closed"}),
        json!({"phase": "trial"}),
        json!({"number": "1999-0001"}),
        json!({"title": ""}),
        json!({"priority": "meh"}),
    ] {
        refused(
            patch(&app, &path, &lead.access, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("PATCH {body}"),
        )
        .await;
    }
    let now = expect(
        get(&app, &path, &client.access).await,
        StatusCode::OK,
        "read",
    )
    .await;
    assert_eq!(now["status"], "open");
    assert_eq!(now["phase"], "intake");
    assert_eq!(now["number"], c["number"]);
    assert_eq!(now["title"], "After");

    let entries = audit(
        &app,
        &app.user("admin").await.access,
        &format!("action=case.update&resource_id={id}"),
    )
    .await;
    assert_eq!(entries.len(), 1, "the change is audited: {entries:?}");
}

/// The statute of limitations is a deadline: changing it must not leave the case showing the
/// old date as its statute-of-limitations deadline.
#[tokio::test]
async fn patching_the_statute_of_limitations_moves_its_deadline() {
    let app = app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let first = today() + Duration::days(300);
    let sooner = today() + Duration::days(20);
    let c = create_case(
        &app,
        &lead.access,
        json!({"title": "SOL", "client_ids": [client.id], "statute_of_limitations": first}),
    )
    .await;
    let id = id_of(&c);
    let b = expect(
        patch(
            &app,
            &format!("/api/v1/cases/{id}"),
            &lead.access,
            json!({"statute_of_limitations": sooner}),
        )
        .await,
        StatusCode::OK,
        "patch SOL",
    )
    .await;
    assert_eq!(b["statute_of_limitations"], sooner.to_string());
    assert_eq!(b["next_deadline"]["kind"], "statute_of_limitations", "{b}");
    assert_eq!(
        b["next_deadline"]["due_on"],
        sooner.to_string(),
        "next deadline follows the new statute of limitations: {b}"
    );
    let list = expect(
        get(&app, &format!("/api/v1/cases/{id}/deadlines"), &lead.access).await,
        StatusCode::OK,
        "deadlines",
    )
    .await;
    let sol: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "statute_of_limitations")
        .collect();
    assert_eq!(sol.len(), 1, "one statute-of-limitations deadline: {list}");
    assert_eq!(sol[0]["due_on"], sooner.to_string(), "{list}");
}

/// The dashboard reads its parts at once, each on a pooled connection: with a pool smaller
/// than its parts and several dashboards at a time they queue for connections, and every one
/// still answers (no part holds a connection while it waits for another).
#[tokio::test]
async fn dashboards_answer_together_on_a_two_connection_pool() {
    let app = crate::helpers::spawn_app_with(|c| c.db_max_connections = 2).await;
    let (lead, client) = (app.user("attorney").await, app.user("client").await);
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Pool matter", "client_ids": [client.id]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let all = futures::future::join_all((0..8).map(|i| {
        let token = if i % 2 == 0 {
            &lead.access
        } else {
            &client.access
        };
        app.get("/api/v1/dashboard", Some(token))
    }));
    let answers = tokio::time::timeout(HANG, all)
        .await
        .expect("every dashboard answered");
    for (i, r) in answers.into_iter().enumerate() {
        assert_eq!(r.status(), StatusCode::OK, "dashboard {i}");
        let d: Value = r.json().await.unwrap();
        assert_eq!(d["cases"].as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d.get("unbilled_minutes").is_some(), i % 2 == 0, "{d}");
    }
}
