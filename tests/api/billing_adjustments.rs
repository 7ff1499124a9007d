//! Invoice discounts and surcharges (arithmetic before tax, LEDES `IF`/`IE` lines, PDF),
//! trust refunds that can never overdraw, and the monthly three-way trust reconciliation.

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use lawfirm_pro::{Config, billing::entity::trust_entry};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use serde_json::{Value, json};

use crate::billing::{
    Firm, firm, get_ok, pdf_text, post_as, send, send_invoice, simple_invoice, today,
};
use crate::helpers::{TestApp, problem, spawn_app, spawn_app_with};

fn adjustments_path(id: &str) -> String {
    format!("/api/v1/invoices/{id}/adjustments")
}

async fn adjust(app: &TestApp, f: &Firm, id: &str, body: Value, status: StatusCode) -> Value {
    post_as(app, &adjustments_path(id), &f.lead.access, body, status).await
}

async fn delete_adjustment(app: &TestApp, f: &Firm, id: &str, adj: &str) -> StatusCode {
    send(
        app,
        Method::DELETE,
        &format!("{}/{adj}", adjustments_path(id)),
        &f.lead.access,
        None,
    )
    .await
    .status()
}

/// `(subtotal, adjustments, tax, total)` of an invoice view.
fn totals(v: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
    (
        n("subtotal_cents"),
        n("adjustment_cents"),
        n("tax_cents"),
        n("total_cents"),
    )
}

/// `(kind, applies_to, amount_cents, percent_bps, stored signed amount, tax, total)`.
type AdjustmentCase = (
    &'static str,
    &'static str,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
);

#[tokio::test]
async fn adjustments_apply_before_tax_on_drafts_only() {
    // 8.25% tax. The draft: fee 7 min × $123.45 = 1440 (1440.25 rounded), expense 2500.
    let app = spawn_app_with(|c: &mut Config| c.billing.tax_rate_bps = 825).await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap().to_owned();
    assert_eq!(totals(&inv), (3940, 0, 325, 4265)); // 325.05 → 325
    assert_eq!(inv["adjustments"], json!([]));

    // A table of cases, each added alone to the draft and then removed again:
    // (kind, applies_to, amount_cents, percent_bps, stored signed amount, tax, total).
    let cases: [AdjustmentCase; 6] = [
        // 10% of 1440 = 144; taxable 3796 → tax 313.17 → 313.
        ("discount", "fees", None, Some(1000), -144, 313, 4109),
        // 33.33% of 1440 = 479.952 → 480; taxable 3460 → 285.45 → 285.
        ("discount", "fees", None, Some(3333), -480, 285, 3745),
        // 0.05% of 2500 = 1.25 → 1 on expenses; taxable 3941 → 325.13 → 325.
        ("surcharge", "expenses", None, Some(5), 1, 325, 4266),
        // Half a cent rounds up: 12.5% of 2500 = 312.5 → 313; taxable 3627 → 299.23 → 299.
        ("discount", "expenses", None, Some(1250), -313, 299, 3926),
        // A fixed amount.
        ("surcharge", "fees", Some(55), None, 55, 330, 4325),
        // The whole fee line away is allowed (taxable 2500 → 206.25 → 206).
        ("discount", "fees", Some(1440), None, -1440, 206, 2706),
    ];
    for (kind, target, amount, percent, signed, tax, total) in cases {
        let mut body = json!({"kind": kind, "applies_to": target, "description": "Courtesy"});
        if let Some(a) = amount {
            body["amount_cents"] = json!(a);
        }
        if let Some(p) = percent {
            body["percent_bps"] = json!(p);
        }
        let v = adjust(&app, &f, &id, body.clone(), StatusCode::CREATED).await;
        assert_eq!(totals(&v), (3940, signed, tax, total), "{body}");
        let adj = &v["adjustments"][0];
        assert_eq!(adj["amount_cents"], signed, "{body}");
        assert_eq!(adj["kind"], kind);
        assert_eq!(adj["applies_to"], target);
        assert_eq!(
            adj["percent_bps"],
            percent.map(Value::from).unwrap_or(Value::Null)
        );
        // The stored invoice says the same as the answer.
        let again = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.lead.access).await;
        assert_eq!(totals(&again), (3940, signed, tax, total));
        assert_eq!(
            delete_adjustment(&app, &f, &id, adj["id"].as_str().unwrap()).await,
            StatusCode::NO_CONTENT
        );
        let back = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.lead.access).await;
        assert_eq!(totals(&back), (3940, 0, 325, 4265), "after removing {body}");
    }

    // Removing a surcharge that a larger discount leans on would take the fees below zero.
    let up = adjust(&app, &f, &id, json!({"kind": "surcharge", "applies_to": "fees", "amount_cents": 100, "description": "Rush"}), StatusCode::CREATED).await;
    let down = adjust(&app, &f, &id, json!({"kind": "discount", "applies_to": "fees", "amount_cents": 1540, "description": "All of it"}), StatusCode::CREATED).await;
    assert_eq!(totals(&down), (3940, -1440, 206, 2706));
    let surcharge = up["adjustments"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        delete_adjustment(&app, &f, &id, &surcharge).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    for adj in down["adjustments"].as_array().unwrap().iter().rev() {
        assert_eq!(
            delete_adjustment(&app, &f, &id, adj["id"].as_str().unwrap()).await,
            StatusCode::NO_CONTENT
        );
    }

    // Adjustments add up; discounts can never take fees below zero.
    adjust(&app, &f, &id, json!({"kind": "discount", "applies_to": "fees", "percent_bps": 5000, "description": "Half off"}), StatusCode::CREATED).await;
    let err = adjust(&app, &f, &id, json!({"kind": "discount", "applies_to": "fees", "amount_cents": 721, "description": "Too much"}), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["errors"][0]["field"], "amount_cents", "{err}");
    let v = adjust(&app, &f, &id, json!({"kind": "discount", "applies_to": "fees", "amount_cents": 720, "description": "The rest"}), StatusCode::CREATED).await;
    assert_eq!(totals(&v), (3940, -1440, 206, 2706));
    assert_eq!(v["adjustments"].as_array().unwrap().len(), 2);

    // Bad requests name the field and change nothing.
    for (body, field) in [
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "x"}),
            "amount_cents",
        ),
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "x", "amount_cents": 1, "percent_bps": 1}),
            "amount_cents",
        ),
        (
            json!({"kind": "rebate", "applies_to": "fees", "description": "x", "amount_cents": 1}),
            "kind",
        ),
        (
            json!({"kind": "discount", "applies_to": "time", "description": "x", "amount_cents": 1}),
            "applies_to",
        ),
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "x", "percent_bps": 0}),
            "percent_bps",
        ),
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "x", "percent_bps": 10001}),
            "percent_bps",
        ),
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "x", "amount_cents": -5}),
            "amount_cents",
        ),
        (
            json!({"kind": "discount", "applies_to": "fees", "description": "  ", "amount_cents": 5}),
            "description",
        ),
    ] {
        let err = adjust(
            &app,
            &f,
            &id,
            body.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            err["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body} → {err}"
        );
    }
    // A total surcharge the client never agreed to is not smuggled in with extra fields.
    problem(
        send(&app, Method::POST, &adjustments_path(&id), &f.lead.access,
            Some(json!({"kind": "surcharge", "applies_to": "fees", "description": "x", "amount_cents": 5, "total_cents": 1}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let unchanged = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.lead.access).await;
    assert_eq!(totals(&unchanged), (3940, -1440, 206, 2706));

    // Who may: the paralegal is refused (403); people who cannot see the draft get 404.
    let body = json!({"kind": "discount", "applies_to": "expenses", "amount_cents": 1, "description": "x"});
    problem(
        send(
            &app,
            Method::POST,
            &adjustments_path(&id),
            &f.paralegal.access,
            Some(body.clone()),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    for who in [&f.client, &f.other_client, &f.outsider] {
        problem(
            send(
                &app,
                Method::POST,
                &adjustments_path(&id),
                &who.access,
                Some(body.clone()),
            )
            .await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let adj_id = unchanged["adjustments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for who in [&f.client, &f.outsider] {
        let r = send(
            &app,
            Method::DELETE,
            &format!("{}/{adj_id}", adjustments_path(&id)),
            &who.access,
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // An adjustment id of another invoice is not found through this one.
    assert_eq!(
        delete_adjustment(&app, &f, &id, &uuid::Uuid::now_v7().to_string()).await,
        StatusCode::NOT_FOUND
    );

    // Once sent, the amount is what the client saw: no more changes (409).
    let sent = send_invoice(&app, &f, &id).await;
    assert_eq!(totals(&sent), (3940, -1440, 206, 2706));
    assert_eq!(sent["balance_cents"], 2706);
    let client_view = get_ok(&app, &format!("/api/v1/invoices/{id}"), &f.client.access).await;
    assert_eq!(client_view["adjustments"].as_array().unwrap().len(), 2);
    adjust(&app, &f, &id, body, StatusCode::CONFLICT).await;
    assert_eq!(
        delete_adjustment(&app, &f, &id, &adj_id).await,
        StatusCode::CONFLICT
    );

    // Audited, with the amounts (the two extra adds and deletes are the surcharge case).
    let audit = get_ok(&app, "/api/v1/audit?action=invoice.adjust", &f.admin.access).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 10, "{audit}");
    let audit = get_ok(
        &app,
        "/api/v1/audit?action=invoice.adjustment_delete",
        &f.admin.access,
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn adjustments_export_as_ledes_invoice_lines_and_print_on_the_pdf() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let inv = simple_invoice(&app, &f).await;
    let id = inv["id"].as_str().unwrap().to_owned();
    adjust(&app, &f, &id, json!({"kind": "discount", "applies_to": "fees", "percent_bps": 1000, "description": "Courtesy discount | 10% [agreed]"}), StatusCode::CREATED).await;
    let v = adjust(&app, &f, &id, json!({"kind": "surcharge", "applies_to": "expenses", "amount_cents": 75, "description": "Courier"}), StatusCode::CREATED).await;
    assert_eq!(totals(&v), (3940, -69, 0, 3871));

    let problems = get_ok(
        &app,
        &format!("/api/v1/invoices/{id}/ledes/validate"),
        &f.lead.access,
    )
    .await;
    assert_eq!(problems, json!([]), "no problems");
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
    let rows: Vec<Vec<&str>> = text
        .split("\r\n")
        .skip(2)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_suffix("[]")
                .expect("line ends in []")
                .split('|')
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    let mut sum = 0i64;
    for r in &rows {
        assert_eq!(r.len(), 24);
        assert_eq!(r[4], "38.71", "INVOICE_TOTAL on every line");
        let cents = |s: &str| (s.parse::<f64>().unwrap() * 100.0).round() as i64;
        sum += cents(r[12]);
    }
    assert_eq!(
        sum, 3871,
        "INVOICE_TOTAL is the sum of the LINE_ITEM_TOTALs"
    );
    let issued = inv["issued_on"].as_str().unwrap().replace('-', "");
    // Line 3: the fee discount, IF, no units, all in the adjustment amount; text cleaned.
    assert_eq!(
        &rows[2][8..14],
        &["3", "IF", "0.00", "-1.44", "-1.44", issued.as_str()]
    );
    assert_eq!(rows[2][18], "Courtesy discount / 10% (agreed)");
    assert_eq!(rows[2][20], "0.00");
    assert_eq!(&rows[3][8..13], &["4", "IE", "0.00", "0.75", "0.75"]);

    let r = send(
        &app,
        Method::GET,
        &format!("/api/v1/invoices/{id}/pdf"),
        &f.lead.access,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pdf = pdf_text(&r.bytes().await.unwrap());
    for needle in [
        "Discount 10.00% on fees: Courtesy",
        "-1.44",
        "Surcharge on expenses: Courier",
        "Adjustments",
        "USD -0.69",
        "USD 38.71",
    ] {
        assert!(pdf.contains(needle), "{needle:?} in PDF text:\n{pdf}");
    }
}

async fn trust_post(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    send(app, Method::POST, path, token, Some(body)).await
}

#[tokio::test]
async fn trust_refunds_never_overdraw_and_the_month_reconciles_three_ways() {
    let app = spawn_app().await;
    let f = firm(&app).await;
    let dep = |amount: i64| json!({"client_id": f.client.id, "case_id": f.case_id, "amount_cents": amount});
    post_as(
        &app,
        "/api/v1/trust/deposits",
        &f.lead.access,
        dep(1000),
        StatusCode::CREATED,
    )
    .await;

    // Who may refund: attorneys of the case and admins; only to a client of the case.
    problem(
        trust_post(&app, "/api/v1/trust/refunds", &f.client.access, dep(100)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        trust_post(&app, "/api/v1/trust/refunds", &f.outsider.access, dep(100)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        trust_post(
            &app,
            "/api/v1/trust/refunds",
            &f.lead.access,
            json!({"client_id": f.other_client.id, "case_id": f.case_id, "amount_cents": 100}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        trust_post(&app, "/api/v1/trust/refunds", &f.lead.access, dep(0)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Money back to the client is an attorney's (or an admin's) decision: a paralegal of the
    // case may deposit but not refund.
    problem(
        trust_post(&app, "/api/v1/trust/refunds", &f.paralegal.access, dep(100)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let r = post_as(&app, "/api/v1/trust/refunds", &f.lead.access,
        json!({"client_id": f.client.id, "case_id": f.case_id, "amount_cents": 400, "reference": "check 1001"}), StatusCode::CREATED).await;
    assert_eq!(
        (
            r["kind"].as_str(),
            r["amount_cents"].as_i64(),
            r["balance_cents"].as_i64()
        ),
        (Some("refund"), Some(-400), Some(600)),
        "{r}"
    );
    problem(
        trust_post(&app, "/api/v1/trust/refunds", &f.lead.access, dep(601)).await,
        StatusCode::CONFLICT,
    )
    .await;

    // Ten concurrent refunds of 100 against 600: exactly six succeed, the balance ends at 0.
    let results = futures::future::join_all(
        (0..10).map(|_| trust_post(&app, "/api/v1/trust/refunds", &f.lead.access, dep(100))),
    )
    .await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        4,
        "{statuses:?}"
    );
    let ledger = get_ok(
        &app,
        &format!("/api/v1/trust/ledger?client_id={}", f.client.id),
        &f.client.access,
    )
    .await;
    assert_eq!(ledger["balance_cents"], 0);
    assert_eq!(ledger["items"].as_array().unwrap().len(), 8);

    // Reconciliation needs history in an ended month: move the first three entries (1000 in,
    // 400 and 100 out: balance 500) into last month, as if they had happened then.
    let conn = app.state.db.conn();
    let ids: Vec<uuid::Uuid> = trust_entry::Entity::find()
        .order_by_asc(trust_entry::Column::Id)
        .all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first_of_this_month = NaiveDate::from_ymd_opt(today().year(), today().month(), 1).unwrap();
    let last_month_end = first_of_this_month - Duration::days(1);
    let last_month = last_month_end.format("%Y-%m").to_string();
    for (i, id) in ids.iter().take(3).enumerate() {
        let at = Utc.from_utc_datetime(
            &(last_month_end - Duration::days(3 - i as i64))
                .and_hms_opt(12, 0, 0)
                .unwrap(),
        );
        trust_entry::Entity::update_many()
            .col_expr(trust_entry::Column::CreatedAt, Expr::value(at))
            .filter(trust_entry::Column::Id.eq(*id))
            .exec(conn)
            .await
            .unwrap();
    }

    let rec = |month: &str, bank: i64| json!({"month": month, "bank_balance_cents": bank, "note": "Statement 4471"});
    let ok = post_as(
        &app,
        "/api/v1/trust/reconciliations",
        &f.admin.access,
        rec(&last_month, 500),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(ok["period_end"], last_month_end.to_string());
    assert_eq!(
        (
            ok["journal_balance_cents"].as_i64(),
            ok["ledgers_total_cents"].as_i64()
        ),
        (Some(500), Some(500)),
        "{ok}"
    );
    assert_eq!(ok["balanced"], true);
    assert_eq!(
        ok["ledgers"],
        json!([{"client_id": f.client.id, "case_id": f.case_id, "balance_cents": 500}])
    );
    let off = post_as(
        &app,
        "/api/v1/trust/reconciliations",
        &f.admin.access,
        rec(&last_month, 550),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            off["balanced"].as_bool(),
            off["bank_difference_cents"].as_i64(),
            off["ledger_difference_cents"].as_i64()
        ),
        (Some(false), Some(50), Some(0))
    );
    // The month before: nothing yet.
    let before = (NaiveDate::from_ymd_opt(last_month_end.year(), last_month_end.month(), 1)
        .unwrap()
        - Duration::days(1))
    .format("%Y-%m")
    .to_string();
    let empty = post_as(
        &app,
        "/api/v1/trust/reconciliations",
        &f.admin.access,
        rec(&before, 0),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            empty["journal_balance_cents"].as_i64(),
            empty["balanced"].as_bool()
        ),
        (Some(0), Some(true))
    );
    assert_eq!(empty["ledgers"], json!([]));

    // Out-of-range balances are named, including the one with no absolute value.
    for bank in [i64::MIN, i64::MAX, -100_000_000_001] {
        let err = post_as(
            &app,
            "/api/v1/trust/reconciliations",
            &f.admin.access,
            rec(&last_month, bank),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            err["errors"][0]["field"], "bank_balance_cents",
            "{bank}: {err}"
        );
    }
    // The current month has not ended; bad months are named; only admins reconcile.
    let this_month = today().format("%Y-%m").to_string();
    for month in [this_month.as_str(), "2026-13", "last month"] {
        let err = post_as(
            &app,
            "/api/v1/trust/reconciliations",
            &f.admin.access,
            rec(month, 0),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(err["errors"][0]["field"], "month", "{month}: {err}");
    }
    for who in [&f.lead, &f.paralegal, &f.client] {
        problem(
            trust_post(
                &app,
                "/api/v1/trust/reconciliations",
                &who.access,
                rec(&last_month, 500),
            )
            .await,
            StatusCode::FORBIDDEN,
        )
        .await;
        problem(
            send(
                &app,
                Method::GET,
                "/api/v1/trust/reconciliations",
                &who.access,
                None,
            )
            .await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let list = get_ok(
        &app,
        "/api/v1/trust/reconciliations?limit=2",
        &f.admin.access,
    )
    .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["month"], before, "newest first");
    assert!(
        items[0].get("ledgers").is_none(),
        "the list carries no per-client detail"
    );
    let next = get_ok(
        &app,
        &format!(
            "/api/v1/trust/reconciliations?limit=2&cursor={}",
            list["next_cursor"].as_str().unwrap()
        ),
        &f.admin.access,
    )
    .await;
    assert_eq!(next["items"][0]["bank_balance_cents"], 500);
    assert!(next["next_cursor"].is_null());
    let audit = get_ok(
        &app,
        "/api/v1/audit?action=trust.reconcile",
        &f.admin.access,
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 3);
    let audit = get_ok(&app, "/api/v1/audit?action=trust.refund", &f.admin.access).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 7);
}
