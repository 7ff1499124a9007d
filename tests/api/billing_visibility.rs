//! Which invoices a client sees: only those addressed to them, on a case they are a client of,
//! once sent. A draft voided before it was sent stays invisible; a co-client on the same case
//! gets 404 everywhere (get, PDF, LEDES, checkout, payments) and nothing in lists, summary,
//! dashboard, mail or live events. Staff see what they always saw.

use std::time::Duration;

use lawfirm_pro::{Config, audit::entity::entry, realtime::entity as event};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Statement};
use serde_json::{Value, json};

use crate::billing::{
    Firm, fake_processor, firm, get_ok, named, post_as, send, send_invoice, simple_invoice,
};
use crate::helpers::{Login, TestApp, problem, spawn_app, spawn_app_with};

/// Ids of the invoices in `who`'s first page of `GET /invoices{query}`.
async fn listed(app: &TestApp, who: &Login, query: &str) -> Vec<String> {
    get_ok(app, &format!("/api/v1/invoices{query}"), &who.access).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Ids of the invoices in `who`'s billing summary, and their outstanding balance there and on
/// the dashboard.
async fn summarised(app: &TestApp, who: &Login) -> (Vec<String>, i64, i64) {
    let s = get_ok(app, "/api/v1/billing/summary", &who.access).await;
    let d = get_ok(app, "/api/v1/dashboard", &who.access).await;
    let ids = s["invoices"]
        .as_array()
        .unwrap_or_else(|| panic!("a client's summary lists invoices: {s}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    (
        ids,
        s["outstanding_cents"].as_i64().unwrap(),
        d["outstanding_balance_cents"].as_i64().unwrap(),
    )
}

/// GET `path` as `who` must answer 404.
async fn hidden(app: &TestApp, who: &Login, method: Method, path: &str) {
    let body = (method == Method::POST).then(|| json!({}));
    let r = send(app, method.clone(), path, &who.access, body).await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "{method} {path} as {}: {}",
        who.email,
        r.text().await.unwrap_or_default()
    );
}

/// The status of GET `path` as `who`.
async fn status_of(app: &TestApp, who: &Login, path: &str) -> StatusCode {
    send(app, Method::GET, path, &who.access, None)
        .await
        .status()
}

/// Denied invoice accesses audited for `who` on invoice `id`.
async fn denials(app: &TestApp, who: &Login, id: &str) -> usize {
    // Detached entries are committed by the audit writer; let it finish, then chain the spool.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.state.audit.settle().await.unwrap();
    entry::Entity::find()
        .filter(entry::Column::ActorId.eq(who.id))
        .filter(entry::Column::Action.eq("invoice.access"))
        .filter(entry::Column::Outcome.eq("denied"))
        .filter(entry::Column::ResourceId.eq(id))
        .all(app.state.db.conn())
        .await
        .unwrap()
        .len()
}

async fn void(app: &TestApp, f: &Firm, id: &str) -> Value {
    post_as(
        app,
        &format!("/api/v1/invoices/{id}/void"),
        &f.lead.access,
        json!({}),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn a_draft_voided_before_it_was_sent_stays_invisible_to_the_client() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let draft = simple_invoice(&app, &f).await;
    let never_sent = draft["id"].as_str().unwrap().to_owned();
    assert_eq!(void(&app, &f, &never_sent).await["status"], "void");

    // Everything a client could reach it by: 404 or absent, and each refusal audited.
    let path = format!("/api/v1/invoices/{never_sent}");
    for p in [path.clone(), format!("{path}/pdf"), format!("{path}/ledes")] {
        hidden(&app, &f.client, Method::GET, &p).await;
    }
    assert!(denials(&app, &f.client, &never_sent).await >= 3);
    assert!(listed(&app, &f.client, "").await.is_empty());
    assert!(listed(&app, &f.client, "?status=void").await.is_empty());
    assert_eq!(summarised(&app, &f.client).await, (vec![], 0, 0));

    // The released entries go on a new invoice that is sent, then voided: that one was the
    // client's bill, so it stays visible to them, as void.
    let again = post_as(
        &app,
        "/api/v1/invoices",
        &f.lead.access,
        json!({"case_id": f.case_id}),
        StatusCode::CREATED,
    )
    .await;
    let was_sent = again["id"].as_str().unwrap().to_owned();
    send_invoice(&app, &f, &was_sent).await;
    assert_eq!(void(&app, &f, &was_sent).await["status"], "void");
    let seen = get_ok(
        &app,
        &format!("/api/v1/invoices/{was_sent}"),
        &f.client.access,
    )
    .await;
    assert_eq!(seen["status"], "void");
    assert!(seen["sent_at"].is_string(), "{seen}");
    assert_eq!(
        status_of(&app, &f.client, &format!("/api/v1/invoices/{was_sent}/pdf")).await,
        StatusCode::OK
    );
    assert_eq!(listed(&app, &f.client, "").await, [was_sent.as_str()]);
    assert_eq!(
        listed(&app, &f.client, "?status=void").await,
        [was_sent.as_str()]
    );
    // Void invoices owe nothing: not in the summary's list or balances.
    assert_eq!(summarised(&app, &f.client).await, (vec![], 0, 0));
    // Still no trace of the never-sent one.
    hidden(&app, &f.client, Method::GET, &path).await;

    // Staff see both, as before.
    for who in [&f.lead, &f.paralegal, &f.admin] {
        assert_eq!(
            listed(&app, who, "").await,
            [was_sent.clone(), never_sent.clone()],
            "{}",
            who.email
        );
        let v = get_ok(&app, &path, &who.access).await;
        assert_eq!(
            (v["status"].as_str(), v["sent_at"].is_null()),
            (Some("void"), true)
        );
        assert_eq!(
            status_of(&app, who, &format!("{path}/pdf")).await,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_co_client_never_sees_an_invoice_addressed_to_another_client() {
    let (base, _) = fake_processor().await;
    let app = spawn_app_with(move |c: &mut Config| {
        c.billing.payments_api_base = Some(url::Url::parse(&base).unwrap());
        c.billing.payments_api_key = Some("sk_test_abc".to_string().into());
    })
    .await;
    let f = firm(&app).await;
    // Client B joins the case after client A: invoices are addressed to A, the earliest.
    let b = named(&app, "client", "Bea Second").await;
    post_as(
        &app,
        &format!("/api/v1/cases/{}/members", f.case_id),
        &f.lead.access,
        json!({"user_id": b.id, "role": "client"}),
        StatusCode::CREATED,
    )
    .await;
    let inv = simple_invoice(&app, &f).await;
    assert_eq!(inv["client_id"], json!(f.client.id), "{inv}");
    let id = inv["id"].as_str().unwrap().to_owned();
    send_invoice(&app, &f, &id).await;
    let total = inv["total_cents"].as_i64().unwrap();

    // A: the invoice is theirs everywhere.
    let path = format!("/api/v1/invoices/{id}");
    get_ok(&app, &path, &f.client.access).await;
    for p in [format!("{path}/pdf"), format!("{path}/ledes")] {
        assert_eq!(status_of(&app, &f.client, &p).await, StatusCode::OK, "{p}");
    }
    assert_eq!(listed(&app, &f.client, "").await, [id.as_str()]);
    assert_eq!(
        summarised(&app, &f.client).await,
        (vec![id.clone()], total, total)
    );
    expect_checkout(&app, &f.client, &id, StatusCode::OK).await;

    // B, a client of the same case: 404 for every way in, audited; nothing listed or owed.
    for p in [path.clone(), format!("{path}/pdf"), format!("{path}/ledes")] {
        hidden(&app, &b, Method::GET, &p).await;
    }
    hidden(&app, &b, Method::POST, &format!("{path}/checkout")).await;
    problem(
        send(
            &app,
            Method::POST,
            &format!("{path}/payments"),
            &b.access,
            Some(json!({"amount_cents": 100, "method": "check"})),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(denials(&app, &b, &id).await >= 5);
    assert!(listed(&app, &b, "").await.is_empty());
    assert!(
        listed(&app, &b, &format!("?case_id={}", f.case_id))
            .await
            .is_empty()
    );
    assert!(
        listed(&app, &b, &format!("?client_id={}", f.client.id))
            .await
            .is_empty()
    );
    assert_eq!(summarised(&app, &b).await, (vec![], 0, 0));

    // Nor is B told of it: the mail goes to A only, the live events to the legal team and A.
    let conn = app.state.db.conn();
    let mails = conn
        .query_all_raw(Statement::from_string(
            app.state.db.backend(),
            "SELECT to_address FROM mail_outbox WHERE kind = 'invoice.sent'",
        ))
        .await
        .unwrap();
    let to: Vec<String> = mails
        .iter()
        .map(|r| r.try_get("", "to_address").unwrap())
        .collect();
    assert_eq!(to, [f.client.email.as_str()]);
    let events: Vec<(String, Option<String>)> = event::Entity::find()
        .filter(event::Column::Kind.eq("invoice.sent"))
        .order_by_asc(event::Column::Id)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.audience, e.user_ids))
        .collect();
    assert_eq!(
        events,
        [
            ("case_staff".to_owned(), None),
            (
                "users".to_owned(),
                Some(json!({"members": [f.client.id]}).to_string())
            ),
        ]
    );

    // A payment is announced the same way.
    post_as(
        &app,
        &format!("{path}/payments"),
        &f.lead.access,
        json!({"amount_cents": 100, "method": "check"}),
        StatusCode::CREATED,
    )
    .await;
    let audiences: Vec<String> = event::Entity::find()
        .filter(event::Column::Kind.eq("payment.received"))
        .order_by_asc(event::Column::Id)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.audience)
        .collect();
    assert_eq!(audiences, ["case_staff", "users"]);

    // Staff of the case and admins see it as before.
    for who in [&f.lead, &f.paralegal, &f.admin] {
        get_ok(&app, &path, &who.access).await;
        assert_eq!(listed(&app, who, "").await, [id.as_str()], "{}", who.email);
    }

    // A stops being a client of the case: the membership condition still holds for them.
    let r = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/cases/{}/members/{}", f.case_id, f.client.id),
        &f.lead.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    hidden(&app, &f.client, Method::GET, &path).await;
    assert!(listed(&app, &f.client, "").await.is_empty());
    assert_eq!(summarised(&app, &f.client).await, (vec![], 0, 0));
}

async fn expect_checkout(app: &TestApp, who: &Login, id: &str, status: StatusCode) {
    let r = send(
        app,
        Method::POST,
        &format!("/api/v1/invoices/{id}/checkout"),
        &who.access,
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status(), status, "{}", r.text().await.unwrap_or_default());
}

/// The invoice goes to the case's earliest-added client, not to whichever client row the
/// database returns first; clients named together when the case is opened share one
/// `added_at`, and then the lower user id wins, whatever order they were named in.
#[tokio::test]
async fn an_invoice_is_addressed_to_one_client_chosen_deterministically() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let b = named(&app, "client", "Bea Second").await;
    let (low, high) = if f.client.id < b.id {
        (f.client.id, b.id)
    } else {
        (b.id, f.client.id)
    };
    let invoice_on = |case_id: String| {
        let (app, lead) = (&app, &f.lead);
        async move {
            crate::billing::entry(
                app,
                &lead.access,
                &case_id,
                json!({"work_date": crate::billing::today(), "minutes": 6, "rate_cents": 10000,
                       "description": "Joint call"}),
            )
            .await;
            post_as(
                app,
                "/api/v1/invoices",
                &lead.access,
                json!({"case_id": case_id}),
                StatusCode::CREATED,
            )
            .await
        }
    };
    let open = |clients: Vec<uuid::Uuid>| {
        let (app, lead) = (&app, &f.lead);
        async move {
            let case = post_as(
                app,
                "/api/v1/cases",
                &lead.access,
                json!({"title": "Joint matter", "client_ids": clients}),
                StatusCode::CREATED,
            )
            .await;
            case["id"].as_str().unwrap().to_owned()
        }
    };
    // The higher id first, the lower one added later: the earlier membership wins.
    let case = open(vec![high]).await;
    post_as(
        &app,
        &format!("/api/v1/cases/{case}/members"),
        &f.lead.access,
        json!({"user_id": low, "role": "client"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(invoice_on(case).await["client_id"], json!(high));
    // Named together: the lower id, in either order.
    for order in [vec![low, high], vec![high, low]] {
        let case = open(order.clone()).await;
        assert_eq!(invoice_on(case).await["client_id"], json!(low), "{order:?}");
    }
}
