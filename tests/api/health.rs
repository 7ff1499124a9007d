//! The foundation: probes, metrics, problem+json for every failure, security headers, OpenAPI.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, spawn_app};

#[tokio::test]
async fn probes_answer_and_metrics_count_by_route() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.get("/api/v1/nope", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/readyz",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

/// One counter or histogram count from `/metrics`, by its full name.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[tokio::test]
async fn metrics_time_the_audit_writer() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let appends = "audit_append_duration_seconds_count";
    let moves = "audit_move_duration_seconds_count";
    let before = metric(&app, appends).await;
    let moved_before = metric(&app, moves).await;
    let r = app.get("/api/v1/cases", Some(&attorney.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // The read's entry was committed before its answer, so its batch is already timed.
    assert!(metric(&app, appends).await > before);
    if app.state.audit.spool().is_none() {
        // PostgreSQL chains at once: there is nothing to move.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(metric(&app, moves).await, 0.0);
        return;
    }
    // SQLite: the mover chains the read's entry on its own and times the move.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric(&app, moves).await <= moved_before {
        assert!(std::time::Instant::now() < deadline, "the mover ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.state.db.clone().close().await;
    let r = app.get("/readyz", None).await;
    problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_are_problem_404_with_or_without_token() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    for token in [None, Some(admin.access.as_str()), Some("garbage")] {
        let b = problem(
            app.get("/api/v1/does-not-exist", token).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(b["code"], "not_found");
    }
    problem(
        app.request(Method::DELETE, "/api/v1/auth/login", None, None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

#[tokio::test]
async fn axum_rejections_become_problems() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/login");
    // Malformed JSON → 400.
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST).await;
    // Wrong content type → 415.
    let r = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Missing field → 422 naming it.
    let b = problem(
        app.post("/api/v1/auth/login", None, json!({"email": "a@b.co"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "password", "{b}");
    // Wrong type → 422.
    let b = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": 5, "password": "x"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "email", "{b}");
    // Too large → 413, without reading it all.
    let big = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    // No error ever leaks internals.
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("line 1") && !text.to_lowercase().contains("sql"),
        "{text}"
    );
    // Routes that read the raw body or path themselves: the same problem shape.
    let r = app
        .client
        .post(app.url("/api/v1/webhooks/payments"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = app
        .client
        .get(app.url("/calendar/feed/%FF%FE.ics"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST).await;
    // A failed WebSocket upgrade (no ticket, not an upgrade).
    let r = app.get("/api/v1/ws", None).await;
    assert!(r.status().is_client_error());
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{:?}",
        r.headers()
    );
}

#[tokio::test]
async fn security_headers_on_every_response_and_no_server_header() {
    let app = spawn_app().await;
    for (path, status) in [
        ("/healthz", 200),
        ("/api/v1/me", 401),
        ("/api/v1/zzz", 404),
        ("/api/v1/openapi.json", 200),
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
            "{csp}"
        );
        assert!(h.get("server").is_none(), "{path} leaks a Server header");
    }
    let r = app.get("/api/v1/me", None).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_the_contract() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/register",
        "/api/v1/auth/accept-invitation",
        "/api/v1/me",
        "/api/v1/me/password",
        "/api/v1/me/totp/setup",
        "/api/v1/me/sessions/{id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/invitations",
        "/api/v1/audit",
        "/api/v1/audit/verify",
        "/api/v1/me/activity",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(paths["/api/v1/users/{id}"].get("patch").is_some());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let app = spawn_app().await;
    app.state.db.migrate().await.expect("second run is a no-op");
    let again = lawfirm_pro::db::Db::connect(&app.database_url, 2)
        .await
        .unwrap();
    again
        .migrate()
        .await
        .expect("third run from a new connection");
    let n = sea_orm::ConnectionTrait::query_one_raw(
        again.conn(),
        sea_orm::Statement::from_string(
            again.backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap();
    assert_eq!(
        n as usize,
        <lawfirm_pro::db::migrations::Migrator as sea_orm_migration::MigratorTrait>::migrations()
            .len()
    );
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_foreign_keys() {
    if crate::helpers::backend() != "sqlite" {
        // A PostgreSQL run has nothing to check here; the SQLite run of the suite does.
        return;
    }
    let app = spawn_app().await;
    let row = |sql: &'static str| {
        let db = app.state.db.clone();
        async move {
            sea_orm::ConnectionTrait::query_one_raw(
                db.conn(),
                sea_orm::Statement::from_string(db.backend(), sql),
            )
            .await
            .unwrap()
            .unwrap()
        }
    };
    assert_eq!(
        row("PRAGMA journal_mode")
            .await
            .try_get::<String>("", "journal_mode")
            .unwrap(),
        "wal"
    );
    assert_eq!(
        row("PRAGMA foreign_keys")
            .await
            .try_get::<i32>("", "foreign_keys")
            .unwrap(),
        1
    );
    assert!(
        row("PRAGMA busy_timeout")
            .await
            .try_get::<i32>("", "timeout")
            .unwrap()
            >= 5000
    );
}

#[tokio::test]
async fn setup_page_is_served_with_a_strict_csp() {
    let app = spawn_app().await;
    let r = app.get("/setup?token=x", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = r.text().await.unwrap();
    assert!(
        html.contains("/static/setup.js") && !html.contains("<script>"),
        "no inline script"
    );
    let js = app.get("/static/setup.js", None).await;
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        js.text()
            .await
            .unwrap()
            .contains("/api/v1/auth/accept-invitation")
    );
}
