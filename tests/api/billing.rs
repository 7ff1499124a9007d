//! Billing: time and expenses, invoices (exact arithmetic, numbering, locking, visibility),
//! payments, trust accounting under concurrency, LEDES, PDF, card checkout and webhooks.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use lawfirm_pro::{Config, auth::Principal, users::service::NewUser};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Login, TestApp, problem, spawn_app, spawn_app_with};

pub(crate) async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let what = format!("{method} {path}");
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        app.request(method, path, Some(token), body),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} did not answer (server stuck?)"))
}

pub(crate) async fn expect(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

pub(crate) async fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    expect(
        send(app, Method::GET, path, token, None).await,
        StatusCode::OK,
        path,
    )
    .await
}

pub(crate) async fn post_as(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Value,
    status: StatusCode,
) -> Value {
    let what = format!("POST {path} {body}");
    expect(
        send(app, Method::POST, path, token, Some(body)).await,
        status,
        &what,
    )
    .await
}

pub(crate) async fn named(app: &TestApp, role: &str, name: &str) -> Login {
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

/// A firm: admin, lead attorney, paralegal, a client on one case, another client elsewhere.
pub(crate) struct Firm {
    pub(crate) admin: Login,
    pub(crate) lead: Login,
    pub(crate) paralegal: Login,
    pub(crate) client: Login,
    pub(crate) other_client: Login,
    pub(crate) outsider: Login,
    pub(crate) case_id: String,
    pub(crate) other_case_id: String,
}

pub(crate) async fn firm(app: &TestApp) -> Firm {
    let admin = named(app, "admin", "Ada Admin").await;
    let lead = named(app, "attorney", "Jane Smith").await;
    let paralegal = named(app, "paralegal", "Paul Para").await;
    let client = named(app, "client", "Carla Client").await;
    let other_client = named(app, "client", "Otto Other").await;
    let outsider = named(app, "attorney", "Owen Outsider").await;
    let case = post_as(
        app,
        "/api/v1/cases",
        &lead.access,
        json!({"title": "Smith v. Jones", "client_ids": [client.id], "staff_ids": [paralegal.id]}),
        StatusCode::CREATED,
    )
    .await;
    let other = post_as(
        app,
        "/api/v1/cases",
        &lead.access,
        json!({"title": "Other matter", "client_ids": [other_client.id]}),
        StatusCode::CREATED,
    )
    .await;
    Firm {
        admin,
        lead,
        paralegal,
        client,
        other_client,
        outsider,
        case_id: case["id"].as_str().unwrap().into(),
        other_case_id: other["id"].as_str().unwrap().into(),
    }
}

pub(crate) fn today() -> chrono::NaiveDate {
    Utc::now().date_naive()
}

pub(crate) async fn entry(app: &TestApp, token: &str, case: &str, body: Value) -> Value {
    post_as(
        app,
        &format!("/api/v1/cases/{case}/time-entries"),
        token,
        body,
        StatusCode::CREATED,
    )
    .await
}

/// One 7-minute entry at $123.45/h with codes, one expense; returns the draft invoice.
pub(crate) async fn simple_invoice(app: &TestApp, f: &Firm) -> Value {
    entry(
        app,
        &f.lead.access,
        &f.case_id,
        json!({"work_date": today(), "minutes": 7, "rate_cents": 12345, "description": "Call with client",
               "task_code": "L110", "activity_code": "A106", "billable": true}),
    )
    .await;
    post_as(
        app,
        &format!("/api/v1/cases/{}/expenses", f.case_id),
        &f.paralegal.access,
        json!({"incurred_on": today(), "amount_cents": 2500, "description": "Court copies", "expense_code": "E101"}),
        StatusCode::CREATED,
    )
    .await;
    post_as(
        app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": f.case_id}),
        StatusCode::CREATED,
    )
    .await
}

pub(crate) async fn send_invoice(app: &TestApp, f: &Firm, id: &str) -> Value {
    post_as(
        app,
        &format!("/api/v1/invoices/{id}/send"),
        &f.lead.access,
        json!({}),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn time_entries_round_exactly_resolve_rates_and_respect_roles() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let path = format!("/api/v1/cases/{}/time-entries", f.case_id);
    let e = entry(&app, &f.lead.access, &f.case_id,
        json!({"work_date": "2026-11-02", "minutes": 7, "rate_cents": 12345, "description": "Call"})).await;
    assert_eq!(
        e["amount_cents"], 1440,
        "7 min × 123.45/h = 14.4025 → 14.40: {e}"
    );
    assert_eq!(e["currency"], "USD");
    assert_eq!(e["timekeeper_id"], f.lead.id.to_string());
    assert_eq!(e["billable"], true);

    // No explicit rate and none configured → 422 naming rate_cents.
    let b = problem(
        send(
            &app,
            Method::POST,
            &path,
            &f.paralegal.access,
            Some(json!({"work_date": "2026-11-02", "minutes": 30, "description": "Research"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "rate_cents", "{b}");
    // Default rate (admin only), then a case override wins over it.
    let rate_path = format!("/api/v1/users/{}/rate", f.paralegal.id);
    problem(
        send(
            &app,
            Method::PUT,
            &rate_path,
            &f.lead.access,
            Some(json!({"rate_cents": 9000})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect(
        send(
            &app,
            Method::PUT,
            &rate_path,
            &f.admin.access,
            Some(json!({"rate_cents": 9000})),
        )
        .await,
        StatusCode::OK,
        "user rate",
    )
    .await;
    let e = entry(
        &app,
        &f.paralegal.access,
        &f.case_id,
        json!({"work_date": "2026-11-02", "minutes": 30, "description": "Research"}),
    )
    .await;
    assert_eq!(
        (e["rate_cents"].as_i64(), e["amount_cents"].as_i64()),
        (Some(9000), Some(4500))
    );
    let case_rate = format!("/api/v1/cases/{}/rates/{}", f.case_id, f.paralegal.id);
    problem(
        send(
            &app,
            Method::PUT,
            &case_rate,
            &f.paralegal.access,
            Some(json!({"rate_cents": 7000})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect(
        send(
            &app,
            Method::PUT,
            &case_rate,
            &f.lead.access,
            Some(json!({"rate_cents": 7000})),
        )
        .await,
        StatusCode::OK,
        "case rate",
    )
    .await;
    let e = entry(
        &app,
        &f.paralegal.access,
        &f.case_id,
        json!({"work_date": "2026-11-02", "minutes": 1, "description": "Email"}),
    )
    .await;
    assert_eq!(
        (e["rate_cents"].as_i64(), e["amount_cents"].as_i64()),
        (Some(7000), Some(117)),
        "116.67 → 117"
    );
    let e = entry(&app, &f.paralegal.access, &f.case_id, json!({"work_date": "2026-11-02", "minutes": 1, "rate_cents": 30, "description": "Half a cent"})).await;
    assert_eq!(e["amount_cents"], 1, "0.5 rounds half up");

    // Clients: 403 on their own case, 404 elsewhere; outsiders 404.
    let body =
        json!({"work_date": "2026-11-02", "minutes": 5, "rate_cents": 1, "description": "x"});
    problem(
        send(
            &app,
            Method::POST,
            &path,
            &f.client.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &path,
            &f.other_client.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &path,
            &f.outsider.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(&app, Method::GET, &path, &f.client.access, None).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Mass assignment: fields that are not input are refused.
    let mut sneaky = body.clone();
    sneaky["invoice_id"] = json!(Uuid::new_v4());
    problem(
        send(&app, Method::POST, &path, &f.lead.access, Some(sneaky)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Validation: codes by shape, minutes range.
    let b = problem(send(&app, Method::POST, &path, &f.lead.access,
        Some(json!({"work_date": "2026-11-02", "minutes": 0, "rate_cents": -1, "description": " ",
                    "task_code": "X1", "activity_code": "L110"}))).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for fld in [
        "minutes",
        "rate_cents",
        "description",
        "task_code",
        "activity_code",
    ] {
        assert!(fields.contains(&fld), "{fld} in {b}");
    }
    let b = problem(send(&app, Method::POST, &format!("/api/v1/cases/{}/expenses", f.case_id), &f.lead.access,
        Some(json!({"incurred_on": "2026-11-02", "amount_cents": 0, "description": "x", "expense_code": "A101"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(b["errors"].as_array().unwrap().len(), 2, "{b}");

    // Keyset pagination walks every entry once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("{path}?limit=2&cursor={c}"),
            None => format!("{path}?limit=2"),
        };
        let page = get_ok(&app, &q, &f.lead.access).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.into()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    seen.dedup();
    assert_eq!(seen.len(), 4);
    problem(
        send(
            &app,
            Method::GET,
            &format!("{path}?limit=0"),
            &f.lead.access,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // The staff dashboard counts unbilled billable minutes on the caller's cases.
    let d = get_ok(&app, "/api/v1/dashboard", &f.lead.access).await;
    assert_eq!(d["unbilled_minutes"], 7 + 30 + 1 + 1, "{d}");
    let d = get_ok(&app, "/api/v1/dashboard", &f.outsider.access).await;
    assert_eq!(d["unbilled_minutes"], 0, "{d}");
}

#[tokio::test]
async fn invoices_sum_rounded_lines_lock_entries_and_hide_drafts_from_clients() {
    let app = spawn_app_with(|c: &mut Config| c.billing.tax_rate_bps = 825).await;
    let f = firm(&app).await;
    for _ in 0..3 {
        entry(
            &app,
            &f.lead.access,
            &f.case_id,
            json!({"work_date": today(), "minutes": 7, "rate_cents": 12345, "description": "Call"}),
        )
        .await;
    }
    let unbillable = entry(&app, &f.lead.access, &f.case_id,
        json!({"work_date": today(), "minutes": 60, "rate_cents": 10000, "description": "Admin", "billable": false})).await;
    // Who may invoice: paralegal 403, client 403 (own case) / 404 (other), outsider 404.
    let body = json!({"case_id": f.case_id});
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.paralegal.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.client.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.other_client.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.outsider.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // Mass assignment of status/totals is refused.
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.lead.access,
            Some(json!({"case_id": f.case_id, "status": "paid"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Nothing to bill on the other case → 422.
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.lead.access,
            Some(json!({"case_id": f.other_case_id})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    let inv = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        body.clone(),
        StatusCode::CREATED,
    )
    .await;
    let id = inv["id"].as_str().unwrap().to_owned();
    assert_eq!(inv["status"], "draft");
    assert_eq!(
        inv["lines"].as_array().unwrap().len(),
        3,
        "the unbillable entry stays out: {inv}"
    );
    assert!(
        inv["lines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["amount_cents"] == 1440 && l["kind"] == "fee")
    );
    assert_eq!(
        inv["subtotal_cents"], 4320,
        "sum of rounded lines, not round(4320.75)"
    );
    assert_eq!(inv["tax_cents"], 356, "8.25% of 43.20 = 3.564 → 3.56");
    assert_eq!(inv["total_cents"], 4676);
    assert_eq!(inv["balance_cents"], 4676);
    assert_eq!(inv["currency"], "USD");
    assert!(
        inv["number"]
            .as_str()
            .unwrap()
            .starts_with(&format!("INV-{}-", today().format("%Y")))
    );
    // Nothing left to bill: a second draft is empty → 422.
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.lead.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Clients never see drafts; others never see it at all.
    let inv_path = format!("/api/v1/invoices/{id}");
    problem(
        send(&app, Method::GET, &inv_path, &f.client.access, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(
            &app,
            Method::GET,
            &format!("{inv_path}/pdf"),
            &f.client.access,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let list = get_ok(&app, "/api/v1/invoices", &f.client.access).await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    get_ok(&app, &inv_path, &f.paralegal.access).await;
    problem(
        send(&app, Method::GET, &inv_path, &f.outsider.access, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Entries on the invoice are locked; the unbilled one is not.
    let entries = get_ok(
        &app,
        &format!("/api/v1/cases/{}/time-entries", f.case_id),
        &f.lead.access,
    )
    .await;
    let billed: Vec<&Value> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["locked"] == true)
        .collect();
    assert_eq!(billed.len(), 3);
    let billed_id = billed[0]["id"].as_str().unwrap().to_owned();
    problem(
        send(
            &app,
            Method::PATCH,
            &format!("/api/v1/time-entries/{billed_id}"),
            &f.lead.access,
            Some(json!({"minutes": 8})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        send(
            &app,
            Method::DELETE,
            &format!("/api/v1/time-entries/{billed_id}"),
            &f.lead.access,
            None,
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    expect(
        send(
            &app,
            Method::PATCH,
            &format!(
                "/api/v1/time-entries/{}",
                unbillable["id"].as_str().unwrap()
            ),
            &f.lead.access,
            Some(json!({"minutes": 61})),
        )
        .await,
        StatusCode::OK,
        "unbilled entry editable",
    )
    .await;

    // Send: the client sees it now, a live event and a mail exist; a second send → 409.
    let sent = send_invoice(&app, &f, &id).await;
    assert_eq!(sent["status"], "sent");
    problem(
        send(
            &app,
            Method::POST,
            &format!("{inv_path}/send"),
            &f.lead.access,
            Some(json!({})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &format!("{inv_path}/send"),
            &f.paralegal.access,
            Some(json!({})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let seen = get_ok(&app, &inv_path, &f.client.access).await;
    assert_eq!(seen["total_cents"], 4676);
    problem(
        send(&app, Method::GET, &inv_path, &f.other_client.access, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let list = get_ok(&app, "/api/v1/invoices", &f.client.access).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list = get_ok(&app, "/api/v1/invoices", &f.other_client.access).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    let conn = app.state.db.conn();
    use sea_orm::{ConnectionTrait, Statement};
    let mails = conn
        .query_all_raw(Statement::from_string(
            app.state.db.backend(),
            "SELECT to_address, subject, body_text FROM mail_outbox WHERE kind = 'invoice.sent'",
        ))
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    let to: String = mails[0].try_get("", "to_address").unwrap();
    let text: String = mails[0].try_get("", "body_text").unwrap();
    assert_eq!(to, f.client.email);
    assert!(
        text.contains("USD 46.76") && text.contains(&format!("/invoices/{id}")),
        "{text}"
    );
    assert!(!text.contains("Call"), "no line detail in mail: {text}");
    // One event for the legal team, one for the invoice's client.
    let events = conn
        .query_all_raw(Statement::from_string(
            app.state.db.backend(),
            "SELECT audience FROM event WHERE kind = 'invoice.sent' ORDER BY id",
        ))
        .await
        .unwrap();
    let audiences: Vec<String> = events
        .iter()
        .map(|r| r.try_get("", "audience").unwrap())
        .collect();
    assert_eq!(audiences, ["case_staff", "users"]);

    // Overdue is computed on read.
    app.sql(&format!(
        "UPDATE invoice SET due_on = '2020-01-01' WHERE number = '{}'",
        inv["number"].as_str().unwrap()
    ))
    .await;
    assert_eq!(
        get_ok(&app, &inv_path, &f.client.access).await["status"],
        "overdue"
    );
    let l = get_ok(&app, "/api/v1/invoices?status=overdue", &f.lead.access).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let l = get_ok(&app, "/api/v1/invoices?status=sent", &f.lead.access).await;
    assert!(l["items"].as_array().unwrap().is_empty());

    // Void releases the entries: editable again, and a new draft can take them.
    let voided = post_as(
        &app,
        &format!("{inv_path}/void"),
        &f.lead.access,
        json!({}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(voided["status"], "void");
    expect(
        send(
            &app,
            Method::PATCH,
            &format!("/api/v1/time-entries/{billed_id}"),
            &f.lead.access,
            Some(json!({"minutes": 8})),
        )
        .await,
        StatusCode::OK,
        "released entry editable",
    )
    .await;
    let again = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        body,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(again["lines"].as_array().unwrap().len(), 3);
    assert_ne!(again["number"], inv["number"]);
}

#[tokio::test]
async fn payments_move_status_and_refuse_overpayment() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap().to_owned();
    assert_eq!(inv["total_cents"], 3940);
    let pay = format!("/api/v1/invoices/{id}/payments");
    // A draft takes no payments.
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.lead.access,
            Some(json!({"amount_cents": 100, "method": "check"})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    send_invoice(&app, &f, &id).await;
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.client.access,
            Some(json!({"amount_cents": 100, "method": "check"})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.other_client.access,
            Some(json!({"amount_cents": 100, "method": "check"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.lead.access,
            Some(json!({"amount_cents": 100, "method": "bitcoin"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.lead.access,
            Some(json!({"amount_cents": -5, "method": "cash"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let p = post_as(
        &app,
        &pay,
        &f.paralegal.access,
        json!({"amount_cents": 940, "method": "check", "reference": "chk 1001"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(p["invoice"]["status"], "partially_paid");
    assert_eq!(p["invoice"]["balance_cents"], 3000);
    let b = problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.lead.access,
            Some(json!({"amount_cents": 3001, "method": "wire"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "amount_cents");
    let p = post_as(
        &app,
        &pay,
        &f.lead.access,
        json!({"amount_cents": 3000, "method": "wire"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(p["invoice"]["status"], "paid");
    assert_eq!(p["invoice"]["paid_cents"], 3940);
    problem(
        send(
            &app,
            Method::POST,
            &pay,
            &f.lead.access,
            Some(json!({"amount_cents": 1, "method": "cash"})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    // A paid invoice cannot be voided.
    problem(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/invoices/{id}/void"),
            &f.lead.access,
            Some(json!({})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    let audit = get_ok(&app, "/api/v1/audit?action=payment.record", &f.admin.access).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    // Billing summary: client position and staff aging.
    let s = get_ok(&app, "/api/v1/billing/summary", &f.client.access).await;
    assert_eq!(
        (
            s["outstanding_cents"].as_i64(),
            s["paid_this_year_cents"].as_i64()
        ),
        (Some(0), Some(3940)),
        "{s}"
    );
    assert_eq!(s["invoices"].as_array().unwrap().len(), 1);
    let s = get_ok(&app, "/api/v1/billing/summary", &f.lead.access).await;
    assert!(s["aging"]["days_0_30_cents"].is_i64(), "{s}");
}

#[tokio::test]
async fn concurrent_trust_transfers_never_overdraw() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    entry(
        &app,
        &f.lead.access,
        &f.case_id,
        json!({"work_date": today(), "minutes": 60, "rate_cents": 10000, "description": "Hearing"}),
    )
    .await;
    let inv = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": f.case_id}),
        StatusCode::CREATED,
    )
    .await;
    let id = inv["id"].as_str().unwrap().to_owned();
    send_invoice(&app, &f, &id).await;
    // Deposits: staff only, and only for a client of the case.
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/trust/deposits",
            &f.client.access,
            Some(json!({"client_id": f.client.id, "case_id": f.case_id, "amount_cents": 1000})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/trust/deposits",
            &f.lead.access,
            Some(
                json!({"client_id": f.other_client.id, "case_id": f.case_id, "amount_cents": 1000}),
            ),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let d = post_as(&app, "/api/v1/trust/deposits", &f.lead.access,
        json!({"client_id": f.client.id, "case_id": f.case_id, "amount_cents": 1000, "reference": "retainer"}), StatusCode::CREATED).await;
    assert_eq!(d["balance_cents"], 1000);

    let transfers = (0..10).map(|_| {
        send(
            &app,
            Method::POST,
            "/api/v1/trust/transfers",
            &f.lead.access,
            Some(json!({"case_id": f.case_id, "invoice_id": id, "amount_cents": 300})),
        )
    });
    let results = futures::future::join_all(transfers).await;
    let mut ok = 0;
    for r in results {
        match r.status() {
            StatusCode::CREATED => ok += 1,
            StatusCode::CONFLICT => {}
            s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(ok, 3, "1000 covers exactly three transfers of 300");
    let ledger = get_ok(
        &app,
        &format!(
            "/api/v1/trust/ledger?client_id={}&case_id={}",
            f.client.id, f.case_id
        ),
        &f.lead.access,
    )
    .await;
    assert_eq!(ledger["balance_cents"], 100);
    assert_eq!(ledger["items"].as_array().unwrap().len(), 4);
    let inv = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.lead.access).await;
    assert_eq!(inv["paid_cents"], 900);
    assert_eq!(inv["status"], "partially_paid");
    // Clients read their own ledger only.
    let own = get_ok(&app, "/api/v1/trust/ledger", &f.client.access).await;
    assert_eq!(own["balance_cents"], 100);
    problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/trust/ledger?client_id={}", f.client.id),
            &f.other_client.access,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let theirs = get_ok(&app, "/api/v1/trust/ledger", &f.other_client.access).await;
    assert_eq!(theirs["balance_cents"], 0);
    assert!(theirs["items"].as_array().unwrap().is_empty());
    problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/trust/ledger?case_id={}", f.case_id),
            &f.outsider.access,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // A payment "by trust" goes through the same account.
    problem(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/invoices/{id}/payments"),
            &f.lead.access,
            Some(json!({"amount_cents": 200, "method": "trust"})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    post_as(
        &app,
        &format!("/api/v1/invoices/{id}/payments"),
        &f.lead.access,
        json!({"amount_cents": 100, "method": "trust"}),
        StatusCode::CREATED,
    )
    .await;
    let s = get_ok(&app, "/api/v1/billing/summary", &f.client.access).await;
    assert_eq!(s["trust_balance_cents"], 0);
    assert_eq!(s["outstanding_cents"], 10000 - 1000);
    let d = get_ok(&app, "/api/v1/dashboard", &f.client.access).await;
    assert_eq!(
        (
            d["outstanding_balance_cents"].as_i64(),
            d["currency"].as_str()
        ),
        (Some(9000), Some("USD")),
        "{d}"
    );
    let d = get_ok(&app, "/api/v1/dashboard", &f.other_client.access).await;
    assert_eq!(d["outstanding_balance_cents"], 0);
}

#[tokio::test]
async fn invoice_numbers_are_unique_and_sequential_under_concurrency() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let mut cases = Vec::new();
    for i in 0..6 {
        let c = post_as(
            &app,
            "/api/v1/cases",
            &f.lead.access,
            json!({"title": format!("Matter {i}"), "client_ids": [f.client.id]}),
            StatusCode::CREATED,
        )
        .await;
        let cid = c["id"].as_str().unwrap().to_owned();
        entry(
            &app,
            &f.lead.access,
            &cid,
            json!({"work_date": today(), "minutes": 6, "rate_cents": 10000, "description": "Work"}),
        )
        .await;
        cases.push(cid);
    }
    let creations = cases.iter().map(|c| {
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.lead.access,
            Some(json!({"case_id": c})),
        )
    });
    let mut numbers = Vec::new();
    for r in futures::future::join_all(creations).await {
        let b = expect(r, StatusCode::CREATED, "concurrent invoice").await;
        numbers.push(b["number"].as_str().unwrap().to_owned());
    }
    numbers.sort();
    let year = today().format("%Y");
    let expected: Vec<String> = (1..=6).map(|n| format!("INV-{year}-{n:04}")).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn ledes_export_is_exact_and_the_validator_explains_problems() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap();
    let number = inv["number"].as_str().unwrap();
    let case = get_ok(
        &app,
        &format!("/api/v1/cases/{}", f.case_id),
        &f.lead.access,
    )
    .await;
    let case_number = case["number"].as_str().unwrap();
    let r = send(
        &app,
        Method::GET,
        &format!("/api/v1/invoices/{id}/ledes"),
        &f.lead.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let d = today().format("%Y%m%d");
    let short = |u: Uuid| u.simple().to_string()[..20].to_ascii_uppercase();
    let (client, tk) = (short(f.client.id), short(f.lead.id));
    let expected = format!(
        "LEDES1998B[]\r\n\
INVOICE_DATE|INVOICE_NUMBER|CLIENT_ID|LAW_FIRM_MATTER_ID|INVOICE_TOTAL|BILLING_START_DATE|BILLING_END_DATE|INVOICE_DESCRIPTION|LINE_ITEM_NUMBER|EXP/FEE/INV_ADJ_TYPE|LINE_ITEM_NUMBER_OF_UNITS|LINE_ITEM_ADJUSTMENT_AMOUNT|LINE_ITEM_TOTAL|LINE_ITEM_DATE|LINE_ITEM_TASK_CODE|LINE_ITEM_EXPENSE_CODE|LINE_ITEM_ACTIVITY_CODE|TIMEKEEPER_ID|LINE_ITEM_DESCRIPTION|LAW_FIRM_ID|LINE_ITEM_UNIT_COST|TIMEKEEPER_NAME|TIMEKEEPER_CLASSIFICATION|CLIENT_MATTER_ID[]\r\n\
{d}|{number}|{client}|{case_number}|39.40|{d}|{d}|Legal services: Smith v. Jones|1|F|0.12|-0.41|14.40|{d}|L110||A106|{tk}|Call with client|Law Firm Pro|123.45|Smith, Jane|AS|[]\r\n\
{d}|{number}|{client}|{case_number}|39.40|{d}|{d}|Legal services: Smith v. Jones|2|E|1.00|0.00|25.00|{d}||E101|||Court copies|Law Firm Pro|25.00|||[]\r\n"
    );
    assert_eq!(text, expected);
    let problems = get_ok(
        &app,
        &format!("/api/v1/invoices/{id}/ledes/validate"),
        &f.lead.access,
    )
    .await;
    assert_eq!(problems, json!([]));

    // An entry without UTBMS codes: the validator names the line and field, export → 422.
    let other = post_as(
        &app,
        "/api/v1/cases",
        &f.lead.access,
        json!({"title": "Uncoded", "client_ids": [f.client.id]}),
        StatusCode::CREATED,
    )
    .await;
    let oid = other["id"].as_str().unwrap();
    entry(&app, &f.lead.access, oid, json!({"work_date": today(), "minutes": 60, "rate_cents": 10000, "description": "Misc | work"})).await;
    let bad = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": oid}),
        StatusCode::CREATED,
    )
    .await;
    let bid = bad["id"].as_str().unwrap();
    let problems = get_ok(
        &app,
        &format!("/api/v1/invoices/{bid}/ledes/validate"),
        &f.lead.access,
    )
    .await;
    let list: Vec<(Value, String)> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].clone(), p["field"].as_str().unwrap().to_owned()))
        .collect();
    assert!(
        list.contains(&(json!(1), "LINE_ITEM_TASK_CODE".into())),
        "{problems}"
    );
    assert!(
        list.contains(&(json!(1), "LINE_ITEM_ACTIVITY_CODE".into())),
        "{problems}"
    );
    assert!(
        problems[0]["message"].as_str().unwrap().contains("UTBMS"),
        "{problems}"
    );
    let b = problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/invoices/{bid}/ledes"),
            &f.lead.access,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"lines[1].LINE_ITEM_TASK_CODE"), "{b}");
    // Taxed invoices cannot be LEDES 1998B: the total is not the sum of lines.
    // Clients see neither drafts' LEDES nor others'.
    problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/invoices/{id}/ledes"),
            &f.client.access,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let audit = get_ok(&app, "/api/v1/audit?action=invoice.ledes", &f.admin.access).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_pdf_carries_the_invoice_as_extractable_text() {
    let app =
        spawn_app_with(|c: &mut Config| c.billing.firm_name = "Müller & Partners LLP".into()).await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap();
    send_invoice(&app, &f, id).await;
    let r = send(
        &app,
        Method::GET,
        &format!("/api/v1/invoices/{id}/pdf"),
        &f.client.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    let text = pdf_text(&bytes);
    for needle in [
        "Muller & Partners LLP",
        inv["number"].as_str().unwrap(),
        "Carla Client",
        "Smith v. Jones",
        "Call with client",
        "L110 A106",
        "E101",
        "Court copies",
        "123.45",
        "14.40",
        "USD 39.40",
        "Payment instructions",
    ] {
        assert!(text.contains(needle), "{needle:?} in PDF text:\n{text}");
    }
    problem(
        send(
            &app,
            Method::GET,
            &format!("/api/v1/invoices/{id}/pdf"),
            &f.other_client.access,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// The text of a PDF as poppler's `pdftotext -layout` extracts it.
pub(crate) fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoice.pdf");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) must be installed for the billing tests");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

type Seen = Arc<
    Mutex<
        Vec<(
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        )>,
    >,
>;

/// A stand-in for the card processor that records each request as Stripe would receive it.
pub(crate) async fn fake_processor() -> (String, Seen) {
    use axum::{
        Router,
        body::Bytes,
        extract::State,
        http::{HeaderMap, Method as M, Uri},
        response::Json as J,
    };
    let seen: Seen = Arc::default();
    async fn any(
        State(seen): State<Seen>,
        method: M,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> J<Value> {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        seen.lock().unwrap().push((
            method.to_string(),
            uri.path().to_owned(),
            h("authorization"),
            h("idempotency-key"),
            h("content-type"),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        J(
            json!({"id": "cs_test_123", "object": "checkout.session", "mode": "payment",
                 "url": "https://checkout.stripe.test/c/pay/cs_test_123"}),
        )
    }
    let app = Router::new().fallback(any).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

const WHSEC: &str = "whsec_test_secret";

fn sign(body: &str, t: i64, secret: &str) -> String {
    crate::helpers::stripe_signature(secret, t, body)
}

async fn webhook(app: &TestApp, body: &str, sig: Option<String>) -> reqwest::Response {
    let mut r = app
        .client
        .post(app.url("/api/v1/webhooks/payments"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = sig {
        r = r.header("Stripe-Signature", s);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn card_checkout_and_signed_webhooks() {
    let (base, seen) = fake_processor().await;
    let app = spawn_app_with(move |c: &mut Config| {
        c.billing.payments_api_base = Some(url::Url::parse(&base).unwrap());
        c.billing.payments_api_key = Some("sk_test_abc".to_string().into());
        c.billing.payments_webhook_secret = Some(WHSEC.to_string().into());
    })
    .await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap().to_owned();
    let checkout = format!("/api/v1/invoices/{id}/checkout");
    // Drafts are invisible to the client; staff may not check out.
    problem(
        send(
            &app,
            Method::POST,
            &checkout,
            &f.client.access,
            Some(json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    send_invoice(&app, &f, &id).await;
    problem(
        send(
            &app,
            Method::POST,
            &checkout,
            &f.lead.access,
            Some(json!({})),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        send(
            &app,
            Method::POST,
            &checkout,
            &f.other_client.access,
            Some(json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let b = expect(
        send(
            &app,
            Method::POST,
            &checkout,
            &f.client.access,
            Some(json!({})),
        )
        .await,
        StatusCode::OK,
        "checkout",
    )
    .await;
    assert_eq!(
        b["checkout_url"],
        "https://checkout.stripe.test/c/pay/cs_test_123"
    );
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let (method, path, auth, idem, ctype, body) = &reqs[0];
    assert_eq!(method, "POST");
    assert_eq!(path, "/v1/checkout/sessions");
    assert_eq!(auth.as_deref(), Some("Bearer sk_test_abc"));
    assert!(idem.as_deref().is_some_and(|k| !k.is_empty()));
    assert_eq!(ctype.as_deref(), Some("application/x-www-form-urlencoded"));
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(form["mode"], "payment");
    assert_eq!(form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(form["line_items[0][price_data][unit_amount]"], "3940");
    assert!(
        form["line_items[0][price_data][product_data][name]"]
            .contains(inv["number"].as_str().unwrap())
    );
    assert_eq!(form["line_items[0][quantity]"], "1");
    assert_eq!(form["metadata[invoice_id]"], id);
    assert_eq!(form["client_reference_id"], id);
    assert!(form["success_url"].starts_with("http://lfp.test/"));
    assert!(form["cancel_url"].starts_with("http://lfp.test/"));

    // Webhooks: bad, missing and stale signatures → 400; valid → applied once.
    let event = json!({"id": "evt_1", "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_test_123", "amount_total": 3940, "currency": "usd", "metadata": {"invoice_id": id}}}}).to_string();
    let now = Utc::now().timestamp();
    assert_eq!(
        webhook(&app, &event, None).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        webhook(&app, &event, Some(sign(&event, now, "wrong")))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        webhook(&app, &event, Some(sign(&event, now - 301, WHSEC)))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let tampered = event.replace("3940", "9999");
    assert_eq!(
        webhook(&app, &tampered, Some(sign(&event, now, WHSEC)))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.lead.access).await["paid_cents"],
        0
    );
    let r = webhook(&app, &event, Some(sign(&event, now, WHSEC))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    let r = webhook(&app, &event, Some(sign(&event, now, WHSEC))).await;
    assert_eq!(r.status(), StatusCode::OK, "duplicates are acknowledged");
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    let inv = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.client.access).await;
    assert_eq!(
        (inv["paid_cents"].as_i64(), inv["status"].as_str()),
        (Some(3940), Some("paid"))
    );
    // Wrong currency: acknowledged, not applied.
    let eur = json!({"id": "evt_2", "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_2", "amount_total": 1, "currency": "eur", "metadata": {"invoice_id": id}}}}).to_string();
    let r = webhook(&app, &eur, Some(sign(&eur, now, WHSEC))).await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "rejected");
    // Paid: nothing to check out.
    problem(
        send(
            &app,
            Method::POST,
            &checkout,
            &f.client.access,
            Some(json!({})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn webhooks_without_a_secret_do_not_exist() {
    let app = spawn_app().await;
    let body = r#"{"id":"evt_1","type":"x","data":{"object":{}}}"#;
    let r = webhook(&app, body, Some(sign(body, Utc::now().timestamp(), WHSEC))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_drafts_never_bill_an_entry_twice_and_changes_are_audited() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    for d in ["2026-10-01", "2026-10-02", "2026-10-20"] {
        entry(
            &app,
            &f.lead.access,
            &f.case_id,
            json!({"work_date": d, "minutes": 60, "rate_cents": 10000, "description": "Work"}),
        )
        .await;
    }
    // `through` takes only entries on or before the date.
    let early = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": f.case_id, "through": "2026-10-01"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(early["lines"].as_array().unwrap().len(), 1);
    assert_eq!(
        (early["period_start"].as_str(), early["period_end"].as_str()),
        (Some("2026-10-01"), Some("2026-10-01"))
    );
    let drafts = (0..4).map(|_| {
        send(
            &app,
            Method::POST,
            "/api/v1/invoices",
            &f.lead.access,
            Some(json!({"case_id": f.case_id})),
        )
    });
    let mut lines = 0;
    let mut created = 0;
    for r in futures::future::join_all(drafts).await {
        match r.status() {
            StatusCode::CREATED => {
                created += 1;
                lines += r.json::<Value>().await.unwrap()["lines"]
                    .as_array()
                    .unwrap()
                    .len();
            }
            StatusCode::UNPROCESSABLE_ENTITY => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(
        (created, lines),
        (1, 2),
        "the remaining two entries are billed exactly once"
    );
    let id = early["id"].as_str().unwrap();
    send_invoice(&app, &f, id).await;
    post_as(
        &app,
        "/api/v1/trust/deposits",
        &f.lead.access,
        json!({"client_id": f.client.id, "case_id": f.case_id, "amount_cents": 500}),
        StatusCode::CREATED,
    )
    .await;
    post_as(
        &app,
        "/api/v1/trust/transfers",
        &f.lead.access,
        json!({"case_id": f.case_id, "invoice_id": id, "amount_cents": 500}),
        StatusCode::CREATED,
    )
    .await;
    // Transfers from another case's invoice are refused.
    problem(
        send(
            &app,
            Method::POST,
            "/api/v1/trust/transfers",
            &f.lead.access,
            Some(json!({"case_id": f.other_case_id, "invoice_id": id, "amount_cents": 1})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    for action in [
        "time_entry.create",
        "invoice.create",
        "invoice.send",
        "trust.deposit",
        "trust.transfer",
        "payment.record",
    ] {
        let a = get_ok(
            &app,
            &format!("/api/v1/audit?action={action}"),
            &f.admin.access,
        )
        .await;
        let items = a["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{action} audited");
        assert_eq!(items[0]["actor_id"], f.lead.id.to_string(), "{action}");
    }
    let ok = get_ok(&app, "/api/v1/audit/verify", &f.admin.access).await;
    assert_eq!(ok["ok"], true, "{ok}");
}

/// A case with more unbilled entries than one statement can bind (15 columns a line: 2,184
/// lines fill SQLite's 32,766 parameters) is invoiced whole.
#[tokio::test]
async fn an_invoice_of_thousands_of_entries_is_drafted_whole() {
    use lawfirm_pro::billing::entity::time_entry;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let app = spawn_app().await;
    let f = firm(&app).await;
    let case: Uuid = f.case_id.parse().unwrap();
    let t = lawfirm_pro::db::now();
    let rows: Vec<time_entry::ActiveModel> = (0..2_500)
        .map(|i| time_entry::ActiveModel {
            id: Set(Uuid::now_v7()),
            case_id: Set(case),
            timekeeper_id: Set(f.lead.id),
            work_date: Set(today()),
            minutes: Set(6),
            rate_cents: Set(10_000),
            description: Set(format!("Review, item {i}")),
            task_code: Set(None),
            activity_code: Set(None),
            billable: Set(true),
            invoice_id: Set(None),
            created_at: Set(t),
            updated_at: Set(t),
        })
        .collect();
    for chunk in rows.chunks(500) {
        time_entry::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(app.state.db.conn())
            .await
            .unwrap();
    }
    let inv = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": f.case_id}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(inv["lines"].as_array().unwrap().len(), 2_500);
    // 6 minutes at $100/h is $10.00 a line.
    assert_eq!(inv["subtotal_cents"], 2_500 * 1_000);
}

/// "Today" is the firm's (`LFP_TIMEZONE`), not UTC's: a deadline due today is listed as due
/// today and on the case, and an invoice is dated today, in the firm's time zone. The zone is
/// picked so that the firm's date differs from UTC's whenever the test runs.
#[tokio::test]
async fn today_is_the_firms_date_not_utcs() {
    use chrono::Timelike;
    // Away from the two moments either zone's date changes against UTC's (00:00 and 12:00
    // UTC), so that the dates computed here and by the server agree.
    let secs = Utc::now().num_seconds_from_midnight() % 43_200;
    if secs > 43_200 - 30 {
        tokio::time::sleep(std::time::Duration::from_secs(31)).await;
    }
    let now = Utc::now();
    let (zone, shift) = if now.hour() < 12 {
        ("Etc/GMT+12", -1) // UTC-12: still yesterday
    } else {
        ("Etc/GMT-12", 1) // UTC+12: already tomorrow
    };
    let app = spawn_app_with(|c| c.timezone = zone.parse().unwrap()).await;
    let firm_today = now.date_naive() + chrono::Duration::days(shift);
    assert_eq!(app.state.config.today(), firm_today);
    let f = firm(&app).await;
    post_as(
        &app,
        &format!("/api/v1/cases/{}/deadlines", f.case_id),
        &f.lead.access,
        json!({"title": "File the answer", "due_on": firm_today, "kind": "filing"}),
        StatusCode::CREATED,
    )
    .await;
    let due = get_ok(&app, "/api/v1/deadlines?days=0", &f.lead.access).await;
    assert_eq!(due["items"].as_array().unwrap().len(), 1, "{due}");
    let case = get_ok(
        &app,
        &format!("/api/v1/cases/{}", f.case_id),
        &f.lead.access,
    )
    .await;
    assert_eq!(
        case["next_deadline"]["due_on"],
        firm_today.to_string(),
        "{case}"
    );
    let inv = simple_invoice(&app, &f).await;
    assert_eq!(inv["issued_on"], firm_today.to_string());
    // The case opened just now was opened today, by the firm's calendar.
    let opened = get_ok(
        &app,
        &format!("/api/v1/cases?opened_from={firm_today}&opened_to={firm_today}"),
        &f.lead.access,
    )
    .await;
    let ids: Vec<&str> = opened["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&f.case_id.as_str()), "{opened}");
}

/// Receivables aging counts each open invoice in the bucket of its age in days, edges
/// included (30 is 0–30, 31 is 31–60, …), and overdue is what is past its due date.
#[tokio::test]
async fn aging_puts_each_balance_in_its_bucket() {
    use lawfirm_pro::billing::entity::invoice;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = spawn_app().await;
    let f = firm(&app).await;
    let today = app.state.config.today();
    let ages = [0, 30, 31, 60, 61, 90, 91, 200];
    let mut total = 0;
    for age in ages {
        let inv = simple_invoice(&app, &f).await;
        let id = inv["id"].as_str().unwrap().to_owned();
        send_invoice(&app, &f, &id).await;
        total = inv["total_cents"].as_i64().unwrap();
        invoice::ActiveModel {
            id: Set(id.parse().unwrap()),
            issued_on: Set(today - chrono::Duration::days(age)),
            due_on: Set(today - chrono::Duration::days(age) + chrono::Duration::days(30)),
            ..Default::default()
        }
        .update(app.state.db.conn())
        .await
        .unwrap();
    }
    let s = get_ok(&app, "/api/v1/billing/summary", &f.lead.access).await;
    let a = &s["aging"];
    assert_eq!(
        [
            a["days_0_30_cents"].as_i64(),
            a["days_31_60_cents"].as_i64(),
            a["days_61_90_cents"].as_i64(),
            a["days_over_90_cents"].as_i64(),
        ],
        [
            Some(2 * total),
            Some(2 * total),
            Some(2 * total),
            Some(2 * total)
        ],
        "{s}"
    );
    assert_eq!(s["outstanding_cents"], 8 * total, "{s}");
    // Due 30 days after issue: overdue from age 31 on (six of them).
    assert_eq!(s["overdue_cents"], 6 * total, "{s}");
}

/// A time entry is changed by whoever recorded it, the case's lead attorney or an admin; the
/// rest of the legal team may read it but not rewrite someone else's minutes or rate.
#[tokio::test]
async fn time_entries_are_changed_by_their_timekeeper_the_lead_or_an_admin() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let second = named(&app, "attorney", "Sam Second").await;
    post_as(
        &app,
        &format!("/api/v1/cases/{}/members", f.case_id),
        &f.lead.access,
        json!({"user_id": second.id, "role": "attorney"}),
        StatusCode::CREATED,
    )
    .await;
    let body =
        json!({"work_date": today(), "minutes": 30, "rate_cents": 20000, "description": "Draft"});
    let leads = entry(&app, &f.lead.access, &f.case_id, body.clone()).await;
    let paras = entry(&app, &f.paralegal.access, &f.case_id, body).await;
    let path = |e: &Value| format!("/api/v1/time-entries/{}", e["id"].as_str().unwrap());
    let patch = async |who: &Login, e: &Value| {
        send(
            &app,
            Method::PATCH,
            &path(e),
            &who.access,
            Some(json!({"rate_cents": 1})),
        )
        .await
        .status()
    };
    assert_eq!(patch(&f.paralegal, &leads).await, StatusCode::FORBIDDEN);
    assert_eq!(patch(&second, &leads).await, StatusCode::FORBIDDEN);
    let r = send(&app, Method::DELETE, &path(&leads), &second.access, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(patch(&f.paralegal, &paras).await, StatusCode::OK);
    assert_eq!(patch(&f.lead, &paras).await, StatusCode::OK);
    assert_eq!(patch(&f.admin, &leads).await, StatusCode::OK);
    let r = send(
        &app,
        Method::DELETE,
        &path(&paras),
        &f.paralegal.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The lead's entry kept its rate until the admin changed it.
    let list = get_ok(
        &app,
        &format!("/api/v1/cases/{}/time-entries", f.case_id),
        &f.lead.access,
    )
    .await;
    let rates: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rate_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(rates, vec![1], "{list}");
}
