//! The audit trail: what is recorded, who may read it, and that tampering is detected.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use lawfirm_pro::audit::{
    NewEntry,
    service::{Head, append_at_head, verify_chain},
};
use reqwest::{StatusCode, header::USER_AGENT};
use sea_orm::{ConnectionTrait, DbBackend};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, problem, spawn_app};

const UA: &str = "lfp-audit-tests/1.0";

/// `spawn_app`, then make sure the server answers before the test starts.
async fn app() -> TestApp {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK, "server answers");
    app
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /api/v1/audit?query` as `token`, which must answer 200; returns the entries.
async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/audit?{query}"), Some(token))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "GET /api/v1/audit?{query}");
    let b: Value = r.json().await.unwrap();
    assert!(b.get("next_cursor").is_some(), "{b}");
    b["items"].as_array().unwrap().clone()
}

async fn activity(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get("/api/v1/me/activity?limit=100", Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    b["items"].as_array().unwrap().clone()
}

async fn verify(app: &TestApp, token: &str) -> Value {
    let r = app.get("/api/v1/audit/verify", Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// A login with a recognisable User-Agent; returns the response status.
async fn login_with_ua(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header(USER_AGENT, UA)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

fn is_postgres(app: &TestApp) -> bool {
    app.state.db.backend() == DbBackend::Postgres
}

/// Let the tests below edit audit rows, as an attacker with database access could.
async fn drop_update_protection(app: &TestApp) {
    if is_postgres(app) {
        app.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await;
    } else {
        app.sql("DROP TRIGGER audit_log_no_update").await;
    }
}

async fn drop_delete_protection(app: &TestApp) {
    if is_postgres(app) {
        // One trigger guards both UPDATE and DELETE there.
        app.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await;
    } else {
        app.sql("DROP TRIGGER audit_log_no_delete").await;
    }
}

/// An admin plus a few more entries: at least 8 in the chain.
async fn busy_firm(app: &TestApp) -> crate::helpers::Login {
    let admin = app.user("admin").await;
    for role in ["attorney", "paralegal", "client"] {
        app.user(role).await;
    }
    let report = verify(app, &admin.access).await;
    assert!(report["entries_checked"].as_u64().unwrap() >= 8, "{report}");
    admin
}

fn cli(app: &TestApp) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lawfirm-pro"));
    // The server refuses LFP_* settings it does not know (e.g. LFP_TEST_PG_DIR from the test
    // command): hand it only what this run needs.
    for (k, _) in std::env::vars() {
        if k.starts_with("LFP_") || k.starts_with("DATABASE_URL") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["audit", "verify"])
        .env("DATABASE_URL", &app.database_url)
        .env("LFP_DATA_DIR", app.data_dir.path())
        .env("LFP_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

// ---------------------------------------------------------------------------------------
// What is recorded

#[tokio::test]
async fn logins_are_audited_with_outcome_ip_and_user_agent() {
    let app = app().await;
    let admin = app.user("admin").await;
    let (attorney_id, attorney_email) = app.create_user("attorney").await;
    assert_eq!(
        login_with_ua(&app, &attorney_email, PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login_with_ua(&app, &attorney_email, "not the password at all").await,
        StatusCode::UNAUTHORIZED
    );

    let logins = audit(&app, &admin.access, "action=auth.login&limit=100").await;
    assert!(
        logins.iter().all(|e| e["action"] == "auth.login"),
        "{logins:?}"
    );
    for e in &logins {
        for k in [
            "id",
            "at",
            "actor_id",
            "action",
            "resource_type",
            "resource_id",
            "outcome",
            "ip",
            "user_agent",
            "details",
        ] {
            assert!(e.get(k).is_some(), "entry has `{k}`: {e}");
        }
        let at: DateTime<Utc> = e["at"].as_str().unwrap().parse().expect("`at` is RFC 3339");
        assert!(
            e["at"].as_str().unwrap().ends_with('Z'),
            "`at` is in UTC: {e}"
        );
        assert!((Utc::now() - at).num_seconds() < 600, "{e}");
        assert!(e["id"].is_i64() && e["details"].is_object(), "{e}");
    }

    let ok = logins
        .iter()
        .find(|e| e["outcome"] == "success" && e["actor_id"] == attorney_id.to_string())
        .unwrap_or_else(|| panic!("successful login recorded: {logins:?}"));
    assert_eq!(ok["resource_type"], "user");
    assert_eq!(ok["resource_id"], attorney_id.to_string());
    assert_eq!(ok["ip"], "127.0.0.1");
    assert_eq!(ok["user_agent"], UA);

    let failed: Vec<&Value> = logins
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .collect();
    assert_eq!(failed.len(), 1, "{logins:?}");
    let failed = failed[0];
    assert_eq!(failed["ip"], "127.0.0.1");
    assert_eq!(failed["user_agent"], UA);
    assert!(
        failed["id"].as_i64() > ok["id"].as_i64(),
        "the failure came later"
    );
    // The reason is recorded, the password is not.
    assert!(failed["details"]["reason"].is_string(), "{failed}");
    assert!(
        !failed.to_string().contains("not the password at all"),
        "{failed}"
    );

    // The admin's own login is there too.
    assert!(
        logins
            .iter()
            .any(|e| e["outcome"] == "success" && e["actor_id"] == admin.id.to_string())
    );
}

#[tokio::test]
async fn audit_filters_narrow_the_list() {
    let app = app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    assert_eq!(
        login_with_ua(&app, &attorney.email, "wrong wrong wrong").await,
        StatusCode::UNAUTHORIZED
    );
    // A permission denial is an entry too.
    problem(
        app.get("/api/v1/users", Some(&client.access)).await,
        StatusCode::FORBIDDEN,
    )
    .await;

    let all = audit(&app, &admin.access, "limit=100").await;
    let actions: HashSet<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.len() >= 3,
        "several kinds of entries to filter: {actions:?}"
    );

    let logins = audit(&app, &admin.access, "action=auth.login&limit=100").await;
    assert!(logins.iter().all(|e| e["action"] == "auth.login"));
    assert_eq!(
        logins.len(),
        all.iter().filter(|e| e["action"] == "auth.login").count()
    );
    assert_eq!(logins.len(), 4, "three good logins and one bad: {logins:?}");

    let failures = audit(&app, &admin.access, "outcome=failure&limit=100").await;
    assert!(
        !failures.is_empty() && failures.iter().all(|e| e["outcome"] == "failure"),
        "{failures:?}"
    );

    let denied = audit(&app, &admin.access, "outcome=denied&limit=100").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["action"], "auth.denied");
    assert_eq!(denied[0]["actor_id"], client.id.to_string());
    assert_eq!(denied[0]["resource_id"], "GET /api/v1/users");

    let mine = audit(
        &app,
        &admin.access,
        &format!("actor_id={}&limit=100", attorney.id),
    )
    .await;
    assert!(
        !mine.is_empty()
            && mine
                .iter()
                .all(|e| e["actor_id"] == attorney.id.to_string()),
        "{mine:?}"
    );

    let routes = audit(&app, &admin.access, "resource_type=route&limit=100").await;
    assert_eq!(routes.len(), 1);
    assert!(routes.iter().all(|e| e["resource_type"] == "route"));
    let users = audit(&app, &admin.access, "resource_type=user&limit=100").await;
    assert!(
        users.len() >= 4 && users.iter().all(|e| e["resource_type"] == "user"),
        "{users:?}"
    );

    // Filters combine.
    let one = audit(
        &app,
        &admin.access,
        &format!("action=auth.login&outcome=success&actor_id={}", admin.id),
    )
    .await;
    assert_eq!(one.len(), 1, "{one:?}");
    let by_id = audit(
        &app,
        &admin.access,
        &format!(
            "resource_type=user&resource_id={}&action=auth.login",
            client.id
        ),
    )
    .await;
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0]["actor_id"], client.id.to_string());

    assert!(
        audit(&app, &admin.access, "action=no.such")
            .await
            .is_empty()
    );
    let b = problem(
        app.get("/api/v1/audit?actor_id=not-a-uuid", Some(&admin.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(b["errors"].is_array(), "{b}");

    // A time window: everything so far is before "now", nothing after.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let later = (Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        audit(&app, &admin.access, &format!("from={}", enc(&later)))
            .await
            .is_empty()
    );
    let before = audit(&app, &admin.access, &format!("to={}&limit=100", enc(&now))).await;
    assert_eq!(before.len(), all.len());
}

#[tokio::test]
async fn audit_pages_newest_first_and_cursors_survive_inserts() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    let all = audit(&app, &admin.access, "limit=100").await;
    let all_ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        all_ids.windows(2).all(|w| w[0] > w[1]),
        "newest first: {all_ids:?}"
    );
    assert!(all_ids.len() >= 8 && all_ids.len() < 100);

    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={}", enc(c)),
            None => "/api/v1/audit?limit=2".to_owned(),
        };
        let b: Value = app
            .get(&path, Some(&admin.access))
            .await
            .json()
            .await
            .unwrap();
        let items = b["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        walked.extend(items.iter().map(|e| e["id"].as_i64().unwrap()));
        pages += 1;
        if pages == 1 {
            // New entries arrive while someone is paging: they are newer, so the rest of
            // the walk is unaffected.
            app.user("client").await;
        }
        assert!(pages <= 100, "pagination terminates");
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        walked, all_ids,
        "the walk is the big page, no gaps, no duplicates"
    );
    assert_eq!(walked.iter().collect::<HashSet<_>>().len(), walked.len());

    for q in ["limit=0", "limit=101"] {
        problem(
            app.get(&format!("/api/v1/audit?{q}"), Some(&admin.access))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    problem(
        app.get("/api/v1/audit?cursor=%21%21garbage", Some(&admin.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Who may read it

#[tokio::test]
async fn only_admins_and_attorneys_read_the_audit_trail() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    for role in ["client", "paralegal"] {
        let who = app.user(role).await;
        let b = problem(
            app.get("/api/v1/audit", Some(&who.access)).await,
            StatusCode::FORBIDDEN,
        )
        .await;
        assert!(b.get("items").is_none());
    }
    problem(
        app.get("/api/v1/audit", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Attorneys see entries about their cases only, and there are no cases yet.
    let attorney = app.user("attorney").await;
    let r = app
        .get("/api/v1/audit?limit=100", Some(&attorney.access))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["items"], json!([]), "{b}");
    assert_eq!(b["next_cursor"], Value::Null);
    // Not even their own login, nor with a filter that would match it.
    let own = audit(&app, &attorney.access, &format!("actor_id={}", attorney.id)).await;
    assert!(own.is_empty(), "{own:?}");

    assert!(audit(&app, &admin.access, "limit=100").await.len() >= 8);
}

#[tokio::test]
async fn my_activity_is_only_my_own() {
    let app = app().await;
    let alice = app.user("client").await;
    let bob = app.user("attorney").await;
    for (who, name) in [(&alice, "Alice A"), (&bob, "Bob B")] {
        let r = app
            .patch("/api/v1/me", Some(&who.access), json!({"name": name}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Bob is also refused something: that entry is his, not Alice's.
    problem(
        app.post(
            "/api/v1/users",
            Some(&bob.access),
            json!({"email": "x@example.com", "name": "X", "role": "client"}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;

    let mine = activity(&app, &alice.access).await;
    assert!(
        mine.iter().all(|e| e["actor_id"] == alice.id.to_string()),
        "{mine:?}"
    );
    assert!(!mine.iter().any(|e| e["actor_id"] == bob.id.to_string()));
    assert!(
        mine.iter()
            .any(|e| e["action"] == "auth.login" && e["outcome"] == "success"),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|e| e["action"] == "user.update_profile"),
        "{mine:?}"
    );
    assert!(
        !mine.iter().any(|e| e["action"] == "auth.denied"),
        "{mine:?}"
    );
    let ids: Vec<i64> = mine.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");

    let his = activity(&app, &bob.access).await;
    assert!(
        his.iter().all(|e| e["actor_id"] == bob.id.to_string()),
        "{his:?}"
    );
    assert!(his.iter().any(|e| e["action"] == "auth.denied"), "{his:?}");
    let shared: HashSet<i64> = his.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.iter().all(|id| !shared.contains(id)));

    problem(
        app.get("/api/v1/me/activity", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.get("/api/v1/me/activity?limit=0", Some(&alice.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The hash chain

#[tokio::test]
async fn verify_reports_an_intact_chain_to_admins_only() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["first_bad_id"], Value::Null, "{report}");
    let checked = report["entries_checked"].as_u64().unwrap();
    let all = audit(&app, &admin.access, "limit=100").await;
    assert_eq!(checked, all.len() as u64, "every entry is checked");

    for role in ["attorney", "paralegal", "client"] {
        let who = app.user(role).await;
        problem(
            app.get("/api/v1/audit/verify", Some(&who.access)).await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    problem(
        app.get("/api/v1/audit/verify", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn the_database_refuses_to_change_audit_rows() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    let conn = app.state.db.conn();
    for sql in [
        "UPDATE audit_log SET action = 'auth.logout' WHERE id = 2",
        "UPDATE audit_log SET details = '{}'",
        "DELETE FROM audit_log WHERE id = 2",
        "DELETE FROM audit_log",
    ] {
        let e = conn.execute_unprepared(sql).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], true, "{report}");
}

#[tokio::test]
async fn verify_finds_an_edited_entry() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    let last = verify(&app, &admin.access).await["entries_checked"]
        .as_i64()
        .unwrap();
    let mid = last / 2;
    assert!(mid > 1 && mid < last);

    drop_update_protection(&app).await;
    app.sql(&format!(
        "UPDATE audit_log SET action = 'auth.logout' WHERE id = {mid}"
    ))
    .await;

    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_id"], mid, "{report}");
    assert_eq!(report["entries_checked"], mid - 1, "{report}");
}

#[tokio::test]
async fn verify_finds_deleted_entries() {
    let app = app().await;
    let admin = busy_firm(&app).await;
    let last = verify(&app, &admin.access).await["entries_checked"]
        .as_i64()
        .unwrap();
    drop_delete_protection(&app).await;

    // The newest entry: only the chain head remembers it existed.
    app.sql(&format!("DELETE FROM audit_log WHERE id = {last}"))
        .await;
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_id"], last, "{report}");
    assert_eq!(report["entries_checked"], last - 1, "{report}");

    // One in the middle.
    let mid = last / 2;
    app.sql(&format!("DELETE FROM audit_log WHERE id = {mid}"))
        .await;
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["first_bad_id"], mid, "{report}");
}

#[tokio::test]
async fn cli_audit_verify_exits_1_naming_the_bad_entry() {
    let app = app().await;
    let admin = busy_firm(&app).await;

    let out = cli(&app).output().await.expect("run lawfirm-pro");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("audit chain ok"), "{stdout}");

    let last = verify(&app, &admin.access).await["entries_checked"]
        .as_i64()
        .unwrap();
    let mid = last / 2 + 1;
    drop_update_protection(&app).await;
    app.sql(&format!(
        "UPDATE audit_log SET outcome = 'failure' WHERE id = {mid}"
    ))
    .await;

    let out = cli(&app).output().await.expect("run lawfirm-pro");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(&format!("entry {mid} ")),
        "names entry {mid}: {stdout}"
    );
    assert!(stdout.contains("BROKEN"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_unbroken_chain() {
    let app = app().await;
    busy_firm(&app).await;
    let before = verify_chain(&app.state.db).await.unwrap();
    assert!(before.ok);

    let mut tasks = Vec::new();
    for i in 0..40 {
        let audit = app.state.audit.clone();
        tasks.push(tokio::spawn(async move {
            audit
                .record(NewEntry::new("test.concurrent", "test").resource(i))
                .await
                .map_err(|e| e.to_string())
        }));
    }
    for i in 0..20 {
        let db = app.state.db.clone();
        tasks.push(tokio::spawn(async move {
            let txn = db.begin_write().await.map_err(|e| e.to_string())?;
            lawfirm_pro::audit::service::append_in(
                &*txn,
                vec![NewEntry::new("test.concurrent_txn", "test").resource(i)],
            )
            .await
            .map_err(|e| e.to_string())?;
            txn.commit().await.map_err(|e| e.to_string())
        }));
    }
    for r in futures::future::join_all(tasks).await {
        r.expect("task ran").expect("append succeeded");
    }

    app.state.audit.settle().await.unwrap();
    let after = verify_chain(&app.state.db).await.unwrap();
    assert!(after.ok, "{after:?}");
    assert_eq!(after.first_bad_id, None);
    assert_eq!(after.entries_checked, before.entries_checked + 60);

    let head = <lawfirm_pro::audit::entity::head::Entity as sea_orm::EntityTrait>::find_by_id(1)
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        head.last_id as u64, after.entries_checked,
        "the head is the end of the chain"
    );

    // Every append is there exactly once.
    let admin = app.user("admin").await;
    for (action, n) in [("test.concurrent", 40), ("test.concurrent_txn", 20)] {
        let got = audit(&app, &admin.access, &format!("action={action}&limit=100")).await;
        let ids: HashSet<&str> = got
            .iter()
            .map(|e| e["resource_id"].as_str().unwrap())
            .collect();
        assert_eq!((got.len(), ids.len()), (n, n), "{action}");
    }
}

#[tokio::test]
async fn attorneys_read_the_audit_entries_of_their_own_cases_only() {
    let app = crate::helpers::spawn_app().await;
    let ann = app.user("attorney").await;
    let bob = app.user("attorney").await;
    let mk = |token: String, title: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/api/v1/cases",
                    Some(&token),
                    serde_json::json!({"title": title}),
                )
                .await;
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let a_case = mk(ann.access.clone(), "Ann's matter").await;
    let b_case = mk(bob.access.clone(), "Bob's matter").await;
    let page: serde_json::Value = app
        .get("/api/v1/audit?limit=100", Some(&ann.access))
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|e| e["action"] == "case.create" && e["case_id"] == a_case.as_str()),
        "{page}"
    );
    assert!(
        items.iter().all(|e| e["case_id"] == a_case.as_str()),
        "only Ann's case: {page}"
    );
    assert!(!items.iter().any(|e| e["case_id"] == b_case.as_str()));
}

/// With `LFP_AUDIT_DURABLE_READS` (no spool), an audited read commits its entry in one
/// statement on SQLite: the audit writer knows the head it left, and the trigger
/// `audit_log_chain` checks each row against the stored head and moves it. A change appending
/// its own entry moves the head behind the writer's back; the next read still lands on the
/// chain. The trigger refuses any row that does not extend the chain at its head, and a
/// refused row leaves nothing behind. On PostgreSQL the statement moves the head in its `WITH`
/// clause and inserts only if the head was where the writer left it; an append by another
/// instance makes it write nothing, and the writer falls back to locking the head.
#[tokio::test]
async fn an_audited_read_appends_its_entry_in_one_statement() {
    let app = crate::helpers::spawn_app_with(|c| c.audit_durable_reads = true).await;
    let admin = busy_firm(&app).await;
    let attorney = app.user("attorney").await;
    let db = &app.state.db;
    let new_case = |title: &'static str| {
        let (app, token) = (&app, attorney.access.clone());
        async move {
            let r = app
                .post("/api/v1/cases", Some(&token), json!({"title": title}))
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    };
    let read = || async {
        let r = app.get("/api/v1/cases", Some(&attorney.access)).await;
        assert_eq!(r.status(), StatusCode::OK);
    };
    // The statements of one read that touch the audit tables.
    let audit_statements = || async {
        db.statements().start();
        read().await;
        db.statements()
            .stop()
            .into_iter()
            .map(|s| s.sql)
            .filter(|s| s.contains("audit_"))
            .collect::<Vec<_>>()
    };

    new_case("First matter").await;
    read().await; // the head moved with the case: this read's batch reads it
    let one = audit_statements().await;
    match db.backend() {
        DbBackend::Sqlite => {
            assert_eq!(one.len(), 1, "{one:?}");
            assert!(one[0].contains("INSERT INTO \"audit_log\""), "{one:?}");
        }
        _ => {
            assert_eq!(one.len(), 1, "{one:?}");
            assert!(
                one[0].starts_with("WITH \"moved\" AS (UPDATE \"audit_head\""),
                "{one:?}"
            );
            assert!(one[0].contains("INSERT INTO \"audit_log\""), "{one:?}");
        }
    }
    // A change appends behind the writer's back; reads after it still chain on.
    new_case("Second matter").await;
    read().await;
    read().await;
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], true, "{report}");
    let last = report["entries_checked"].as_i64().unwrap();
    let reads = audit(&app, &admin.access, "action=case.list&limit=100").await;
    assert_eq!(reads.len(), 4, "every read is on the chain");
    let head = || async {
        let row = db
            .conn()
            .query_one_raw(sea_orm::Statement::from_string(
                db.backend(),
                "SELECT last_id, last_hash FROM audit_head WHERE id = 1",
            ))
            .await
            .unwrap()
            .unwrap();
        let id: i64 = row.try_get("", "last_id").unwrap();
        let hash: String = row.try_get("", "last_hash").unwrap();
        (id, hash)
    };

    // The one-statement append checks the head it is given against the stored one: another
    // hash at the same id, or an id the chain has not reached, writes nothing (the new rows'
    // ids would not collide with any entry, so only that check refuses them).
    let (id, hash) = head().await;
    for stale in [
        Head {
            last_id: id,
            last_hash: "0".repeat(64),
        },
        Head {
            last_id: id + 1,
            last_hash: hash.clone(),
        },
    ] {
        let entry = vec![NewEntry::new("test.stale", "test")];
        let appended = append_at_head(db.conn(), &stale, entry).await;
        assert!(appended.is_err(), "{stale:?}: {appended:?}");
    }
    assert_eq!(head().await, (id, hash), "a refused append moves nothing");

    if db.backend() != DbBackend::Sqlite {
        // Another instance appends (a transaction this process does not count): the writer's
        // statement finds the head elsewhere and writes nothing, then its transaction chains on.
        let txn = sea_orm::TransactionTrait::begin(db.conn()).await.unwrap();
        lawfirm_pro::audit::service::append_in(&txn, vec![NewEntry::new("test.elsewhere", "test")])
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let refused = audit_statements().await;
        assert_eq!(refused.len(), 4, "{refused:?}");
        assert!(refused[0].starts_with("WITH \"moved\""), "{refused:?}");
        assert!(refused[1].contains("FOR UPDATE"), "{refused:?}");
        read().await; // and the next read is one statement again
        let report = verify(&app, &admin.access).await;
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["entries_checked"].as_i64().unwrap(), last + 3);
        let reads = audit(&app, &admin.access, "action=case.list&limit=100").await;
        assert_eq!(reads.len(), 6, "every read is on the chain once");
        return;
    }
    let (id, hash) = head().await;
    assert_eq!(id, last);
    let row = |id: i64, prev: &str, hash: &str| {
        format!(
            "({id}, '2026-12-01T00:00:00Z', 'case.read', 'case', 'success', '{{}}', '{prev}', '{hash}')"
        )
    };
    let insert = "INSERT INTO audit_log \
                  (id, at, action, resource_type, outcome, details, prev_hash, hash) VALUES ";
    for rows in [
        row(id + 1, "0000", "f1"), // not the head's hash: a fork
        row(id + 2, &hash, "f1"),  // skips an id
        row(id, &hash, "f1"),      // takes the last entry's place
        // The first row extends the chain, the second does not: neither lands.
        format!(
            "{}, {}",
            row(id + 1, &hash, "f1"),
            row(id + 2, "0000", "f2")
        ),
    ] {
        let sql = format!("{insert}{rows}");
        let e = db.conn().execute_unprepared(&sql).await.expect_err(&sql);
        assert!(e.to_string().contains("extend the chain"), "{sql}: {e}");
    }
    assert_eq!(head().await, (id, hash), "a refused row moves nothing");
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["entries_checked"], last);
}

/// The setting that decides whether a commit on `conn` waits for the disk: SQLite's
/// `synchronous` (1 NORMAL, 2 FULL); PostgreSQL's `synchronous_commit` and where it was set.
async fn sync_setting(db: &lawfirm_pro::db::Db, conn: &sea_orm::DatabaseConnection) -> String {
    let (sql, backend) = match db.backend() {
        DbBackend::Sqlite => ("PRAGMA synchronous", DbBackend::Sqlite),
        _ => (
            "SELECT setting || ' from ' || source FROM pg_settings WHERE name = 'synchronous_commit'",
            DbBackend::Postgres,
        ),
    };
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    match backend {
        DbBackend::Sqlite => row.try_get_by_index::<i64>(0).unwrap().to_string(),
        _ => row.try_get_by_index::<String>(0).unwrap(),
    }
}

#[tokio::test]
async fn audited_reads_commit_without_waiting_for_the_disk_and_changes_still_wait() {
    let app = app().await;
    let attorney = app.user("attorney").await;
    let db = &app.state.db;
    let r = app.get("/api/v1/cases", Some(&attorney.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    match db.backend() {
        DbBackend::Sqlite => {
            assert_eq!(sync_setting(db, db.conn()).await, "2", "FULL");
            // The read's entry went to the spool, whose commit started a sync of its WAL,
            // which finishes on its own (ADR 0008).
            let spool = app.state.audit.spool().expect("SQLite spools read entries");
            let (committed, _) = spool.sync_counts();
            assert!(committed >= 2, "the spool's creation and the read's entry");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while spool.sync_counts().1 < committed {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the spool's WAL was synced"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        _ => {
            assert_eq!(sync_setting(db, db.lazy_conn()).await, "off from client");
            assert!(
                !sync_setting(db, db.conn()).await.ends_with("from client"),
                "changes commit as the cluster says"
            );
            assert!(db.lazy_sync_counts().is_none());
        }
    }

    // LFP_AUDIT_DURABLE_READS: the writer commits on the main connections, and reads are
    // still audited.
    let strict = crate::helpers::spawn_app_with(|c| c.audit_durable_reads = true).await;
    let sdb = &strict.state.db;
    let strict_setting = sync_setting(sdb, sdb.lazy_conn()).await;
    match sdb.backend() {
        DbBackend::Sqlite => assert_eq!(strict_setting, "2", "FULL"),
        _ => assert!(!strict_setting.ends_with("from client"), "{strict_setting}"),
    }
    assert!(sdb.lazy_sync_counts().is_none());
    let admin = strict.user("admin").await;
    let lawyer = strict.user("attorney").await;
    let r = strict.get("/api/v1/cases", Some(&lawyer.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let reads = audit(&strict, &admin.access, "action=case.list&limit=10").await;
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(verify(&strict, &admin.access).await["ok"], true);
}

/// Rows of `audit_log` with this action, read straight from the database.
async fn chained(app: &TestApp, action: &str) -> i64 {
    let db = &app.state.db;
    db.conn()
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            db.backend(),
            match db.backend() {
                DbBackend::Postgres => "SELECT count(*) FROM audit_log WHERE action = $1",
                _ => "SELECT count(*) FROM audit_log WHERE action = ?",
            },
            [action.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// SQLite (ADR 0008): a read's entry is acknowledged from the audit spool and reaches the chain
/// by itself a moment later, or at once when someone reads the trail, so the trail's readers
/// never miss an answered read. PostgreSQL commits read entries directly and has no spool.
#[tokio::test]
async fn read_entries_reach_the_chain_through_the_spool() {
    let app = app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let Some(spool) = app.state.audit.spool().cloned() else {
        assert_eq!(app.state.db.backend(), DbBackend::Postgres, "SQLite spools");
        return;
    };
    let read = || async {
        let r = app.get("/api/v1/cases", Some(&attorney.access)).await;
        assert_eq!(r.status(), StatusCode::OK);
    };

    // The trail right after a read shows it: listing it first chains what waits.
    read().await;
    let listed = audit(&app, &admin.access, "action=case.list").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["actor_id"], attorney.id.to_string());
    assert_eq!(spool.waiting().await.unwrap(), 0, "moved and cleared");
    let mine = activity(&app, &attorney.access).await;
    assert!(mine.iter().any(|e| e["action"] == "case.list"), "{mine:?}");

    // With nobody reading the trail, the mover chains the next ones on its own.
    read().await;
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    read().await;
    let after = Utc::now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while chained(&app, "case.list").await < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mover chained them"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(chained(&app, "case.list").await, 3, "each once");
    // The entries keep the time of the read, not of the move.
    let listed = audit(&app, &admin.access, "action=case.list").await;
    let newest: DateTime<Utc> = listed[0]["at"].as_str().unwrap().parse().unwrap();
    assert!(
        before <= newest && newest <= after,
        "{before} <= {newest} <= {after}"
    );
    let report = verify(&app, &admin.access).await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Verification reads the head first and checks the chain up to it, so entries appended
/// meanwhile do not look like damage; a row past a head that did not move does.
#[tokio::test]
async fn verify_finds_rows_past_a_head_that_did_not_move() {
    let app = app().await;
    busy_firm(&app).await;
    app.state.audit.settle().await.unwrap();
    let report = verify_chain(&app.state.db).await.unwrap();
    assert!(report.ok, "{report:?}");
    let last = report.entries_checked as i64;
    if app.state.db.backend() == DbBackend::Sqlite {
        // The trigger refuses such a row: an attacker able to write the file drops it first.
        app.sql("DROP TRIGGER audit_log_chain").await;
    }
    app.sql(&format!(
        "INSERT INTO audit_log (id, at, action, resource_type, outcome, details, prev_hash, hash) \
         VALUES ({}, '2026-12-01T00:00:00Z', 'case.read', 'case', 'success', '{{}}', 'x', 'y')",
        last + 1
    ))
    .await;
    let report = verify_chain(&app.state.db).await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_id, Some(last + 1));
    assert_eq!(report.entries_checked as i64, last);
}
