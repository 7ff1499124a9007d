//! Fault injection against the real binary: `kill -9` while it streams an upload, applies a
//! payment webhook, generates an invoice and moves trust money; a full object store; a
//! PostgreSQL restart under load; a WebSocket client flooding frames. After each crash the
//! server is restarted and the data is checked for half-written records, money moved twice,
//! a broken audit chain and lost mail.

use std::{
    collections::{BTreeSet, HashMap},
    process::Stdio,
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use lawfirm_pro::db::Db;
use reqwest::{StatusCode, multipart};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{bin_command, fresh_database_url, problem, spawn_app};

const WHSEC: &str = "whsec_fault_injection";

/// A `lawfirm-pro serve` process on its own port.
struct Server {
    child: Child,
    base: String,
}

struct Portal {
    dir: tempfile::TempDir,
    url: String,
    password: String,
    client: reqwest::Client,
}

impl Portal {
    /// A fresh data directory and database seeded with the demo firm by the binary itself.
    async fn seeded() -> Self {
        lawfirm_pro::install_tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url(dir.path()).await;
        let out = bin_command(dir.path(), &url)
            .env("LFP_LOG", "warn")
            .arg("demo")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let password = stdout
            .split("password: ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("the demo prints its password")
            .to_owned();
        Portal {
            dir,
            url,
            password,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    async fn start(&self) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let child = bin_command(self.dir.path(), &self.url)
            .env("LFP_BIND", format!("127.0.0.1:{port}"))
            .env("LFP_PUBLIC_URL", &base)
            .env("LFP_PAYMENTS_WEBHOOK_SECRET", WHSEC)
            .env("LFP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(format!("{base}/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Server { child, base }
    }

    async fn login(&self, s: &Server, email: &str) -> String {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/login", s.base))
            .json(&json!({"email": email, "password": self.password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn call(
        &self,
        s: &Server,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .request(method, format!("{}{path}", s.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn ok(&self, s: &Server, path: &str, token: &str, body: Option<Value>) -> Value {
        let method = if body.is_some() {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let r = self.call(s, method, path, token, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn db(&self) -> Db {
        Db::connect(&self.url, 1).await.unwrap()
    }

    /// The SQLite database file, or `None` on PostgreSQL (which has no audit spool).
    fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match lawfirm_pro::db::DbKind::parse(&self.url).unwrap() {
            lawfirm_pro::db::DbKind::Sqlite { path } => Some(path),
            lawfirm_pro::db::DbKind::Postgres => {
                assert_eq!(crate::helpers::backend(), "postgres");
                None
            }
        }
    }

    /// Chained audit entries with this action, counted on a connection of the test's own.
    async fn chained(&self, action: &str) -> i64 {
        let db = self.db().await;
        let n = count(
            &db,
            &format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}'"),
        )
        .await;
        db.close().await;
        n
    }

    /// `lawfirm-pro audit verify` on the data as the crash left it; its report.
    async fn audit_verifies(&self) -> String {
        let out = bin_command(self.dir.path(), &self.url)
            .env("LFP_LOG", "warn")
            .args(["audit", "verify"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Server {
    /// SIGKILL: no graceful shutdown, no flushing, no cleanup.
    async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// A plain connection to the audit spool of the SQLite database at `db_path`.
async fn spool_conn(db_path: &std::path::Path) -> sea_orm::sqlx::SqliteConnection {
    let url = format!(
        "sqlite://{}",
        lawfirm_pro::audit::spool::path_for(db_path).display()
    );
    <sea_orm::sqlx::SqliteConnection as sea_orm::sqlx::Connection>::connect(&url)
        .await
        .unwrap()
}

async fn rows(db: &Db, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.conn()
        .query_all_raw(Statement::from_string(db.backend(), sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn count(db: &Db, sql: &str) -> i64 {
    rows(db, sql).await[0].try_get_by_index::<i64>(0).unwrap()
}

/// What must hold after any crash: no half-written record, every object of a version in
/// the store, money that adds up.
async fn assert_consistent(p: &Portal) {
    let db = p.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM document d WHERE NOT EXISTS (SELECT 1 FROM document_version v WHERE v.document_id = d.id)").await,
        0,
        "a document without a version"
    );
    for r in rows(&db, "SELECT object_key FROM document_version").await {
        let key: String = r.try_get("", "object_key").unwrap();
        let path = lawfirm_pro::storage::Storage::path(&key);
        assert!(
            p.dir.path().join("objects").join(path.as_ref()).is_file(),
            "document version without its object {key}"
        );
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM invoice i WHERE NOT EXISTS (SELECT 1 FROM invoice_line l WHERE l.invoice_id = i.id)").await,
        0,
        "an invoice without lines"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM invoice i WHERE i.subtotal_cents <> (SELECT COALESCE(SUM(l.amount_cents), 0) FROM invoice_line l WHERE l.invoice_id = i.id)").await,
        0,
        "an invoice whose lines do not add up"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM time_entry t WHERE t.invoice_id IS NOT NULL AND (SELECT COUNT(*) FROM invoice_line l WHERE l.source_id = t.id AND l.invoice_id = t.invoice_id) <> 1").await,
        0,
        "a time entry locked to an invoice that does not bill it exactly once"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM invoice i WHERE i.paid_cents <> (SELECT COALESCE(SUM(p.amount_cents), 0) FROM payment p WHERE p.invoice_id = i.id)").await,
        0,
        "an invoice whose paid amount is not the sum of its payments"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM trust_entry e WHERE e.kind = 'transfer' AND NOT EXISTS (SELECT 1 FROM payment p WHERE p.id = e.payment_id AND p.amount_cents = ABS(e.amount_cents))").await,
        0,
        "a trust transfer without its payment"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM payment p WHERE p.method = 'trust' AND NOT EXISTS (SELECT 1 FROM trust_entry e WHERE e.payment_id = p.id)").await,
        0,
        "a trust payment without its ledger entry"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM trust_account a WHERE a.balance_cents <> (SELECT COALESCE(SUM(CASE WHEN e.kind = 'deposit' THEN ABS(e.amount_cents) ELSE -ABS(e.amount_cents) END), 0) FROM trust_entry e WHERE e.client_id = a.client_id AND e.case_id = a.case_id)").await,
        0,
        "a trust balance that is not the sum of its ledger"
    );
    db.close().await;
}

fn sign(body: &str) -> String {
    crate::helpers::stripe_signature(WHSEC, chrono::Utc::now().timestamp(), body)
}

async fn post_webhook(
    client: &reqwest::Client,
    base: &str,
    body: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/api/v1/webhooks/payments"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", sign(body))
        .body(body.to_owned())
        .send()
        .await
}

/// Moments after the request left, at which the server is killed: before it is read, while
/// it runs, around the commit.
const KILL_AFTER_MS: [u64; 4] = [0, 2, 8, 30];

/// Every mail in the outbox (id, recipient, subject), as text.
async fn outbox(p: &Portal) -> BTreeSet<String> {
    use sea_orm::{FromQueryResult, JsonValue};
    let db = p.db().await;
    let ids = JsonValue::find_by_statement(Statement::from_string(
        db.backend(),
        "SELECT id, to_address, subject FROM mail_outbox",
    ))
    .all(db.conn())
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.to_string())
    .collect();
    db.close().await;
    ids
}

#[tokio::test]
async fn killed_mid_write_the_portal_keeps_no_half_record_and_moves_no_money_twice() {
    let p = Portal::seeded().await;
    let mut s = p.start().await;
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let cases = p.ok(&s, "/api/v1/cases?limit=100", &alice, None).await;
    let case = cases["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"] == "Smith v. Northwind Logistics")
        .expect("the demo case")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let today = chrono::Utc::now().date_naive();
    for minutes in [30, 45, 60] {
        p.ok(
            &s,
            &format!("/api/v1/cases/{case}/time-entries"),
            &alice,
            Some(json!({"work_date": today, "minutes": minutes, "rate_cents": 20000, "description": "Drafting"})),
        )
        .await;
    }

    // 1. A streaming upload, killed once the server has started writing the object.
    let docs_before = {
        let db = p.db().await;
        let n = count(&db, "SELECT COUNT(*) FROM document").await;
        db.close().await;
        n
    };
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let form = multipart::Form::new()
        .text("confidentiality", "shared")
        .part(
            "file",
            multipart::Part::stream(reqwest::Body::wrap_stream(rx))
                .file_name("evidence.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let upload = p
        .client
        .post(format!("{}/api/v1/cases/{case}/documents", s.base))
        .bearer_auth(&alice)
        .multipart(form)
        .send();
    let upload = tokio::spawn(upload);
    let line = b"Deposition transcript, page after page of testimony.\n".repeat(2000);
    tx.send(Ok(line.clone())).await.unwrap();
    tx.send(Ok(line.clone())).await.unwrap();
    // The object is registered before its first byte is written: wait for that, then crash.
    let db = p.db().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&db, "SELECT COUNT(*) FROM document_upload").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        let _ = tx.try_send(Ok(line.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.close().await;
    s.kill9().await;
    drop(tx);
    let _ = upload.await;
    s = p.start().await;
    assert_consistent(&p).await;
    let db = p.db().await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM document").await,
        docs_before,
        "the interrupted upload is not visible"
    );
    db.close().await;
    // The portal still takes uploads.
    let ok = p
        .client
        .post(format!("{}/api/v1/cases/{case}/documents", s.base))
        .bearer_auth(&alice)
        .multipart(
            multipart::Form::new()
                .text("confidentiality", "shared")
                .part(
                    "file",
                    multipart::Part::bytes(line.clone())
                        .file_name("evidence.txt")
                        .mime_str("text/plain")
                        .unwrap(),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_consistent(&p).await;

    // 2. Invoice generation, killed at several moments.
    let invoices_of_case = |v: &Value| -> Vec<Value> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["case_id"] == case.as_str())
            .cloned()
            .collect()
    };
    for wait in KILL_AFTER_MS {
        let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
        let listed = p.ok(&s, "/api/v1/invoices?limit=100", &alice, None).await;
        if !invoices_of_case(&listed).is_empty() {
            break;
        }
        let req = p
            .client
            .post(format!("{}/api/v1/invoices", s.base))
            .bearer_auth(&alice)
            .json(&json!({"case_id": case}))
            .send();
        let req = tokio::spawn(req);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill9().await;
        let _ = req.await;
        s = p.start().await;
        assert_consistent(&p).await;
    }
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let listed = p.ok(&s, "/api/v1/invoices?limit=100", &alice, None).await;
    let invoice = match invoices_of_case(&listed).first() {
        Some(i) => i.clone(),
        None => {
            p.ok(
                &s,
                "/api/v1/invoices",
                &alice,
                Some(json!({"case_id": case})),
            )
            .await
        }
    };
    let id = invoice["id"].as_str().unwrap().to_owned();
    let invoice = p
        .ok(&s, &format!("/api/v1/invoices/{id}"), &alice, None)
        .await;
    assert_eq!(
        invoice["total_cents"].as_i64().unwrap(),
        invoice["tax_cents"].as_i64().unwrap() + 45_000,
        "all three entries (2.25 h at 200.00) billed exactly once: {invoice}"
    );
    let sent = p
        .ok(
            &s,
            &format!("/api/v1/invoices/{id}/send"),
            &alice,
            Some(json!({})),
        )
        .await;
    let total = sent["total_cents"].as_i64().unwrap();

    // 3. A payment webhook for half the invoice, killed at several moments; the processor
    // retries (it got no 2xx), and the replay applies the money once.
    let mail_before = outbox(&p).await;
    assert!(!mail_before.is_empty(), "sending the invoice queued mail");
    let half = total / 2;
    let event = json!({"id": "evt_fault_1", "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_fault", "amount_total": half, "currency": "usd",
            "metadata": {"invoice_id": id}}}})
    .to_string();
    for wait in KILL_AFTER_MS {
        let client = p.client.clone();
        let (base, body) = (s.base.clone(), event.clone());
        let req = tokio::spawn(async move { post_webhook(&client, &base, &body).await });
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill9().await;
        let _ = req.await;
        s = p.start().await;
        assert_consistent(&p).await;
    }
    for _ in 0..2 {
        let r = post_webhook(&p.client, &s.base, &event).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the replay is accepted");
    }
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let inv = p
        .ok(&s, &format!("/api/v1/invoices/{id}"), &alice, None)
        .await;
    assert_eq!(
        inv["paid_cents"], half,
        "the webhook's money moved exactly once"
    );
    assert_eq!(inv["status"], "partially_paid");

    // 4. A trust transfer, killed at several moments.
    let john = p.ok(&s, "/api/v1/users?q=john.smith", &alice, None).await["items"][0]["id"]
        .as_str()
        .expect("the demo client")
        .to_owned();
    p.ok(
        &s,
        "/api/v1/trust/deposits",
        &alice,
        Some(json!({"client_id": john, "case_id": case, "amount_cents": 1000, "reference": "retainer"})),
    )
    .await;
    let mut transfers = 0;
    for wait in KILL_AFTER_MS {
        let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
        let req = p
            .client
            .post(format!("{}/api/v1/trust/transfers", s.base))
            .bearer_auth(&alice)
            .json(&json!({"case_id": case, "invoice_id": id, "amount_cents": 100}))
            .send();
        let req = tokio::spawn(req);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill9().await;
        if let Ok(Ok(r)) = req.await
            && r.status() == StatusCode::CREATED
        {
            transfers += 1;
        }
        s = p.start().await;
        assert_consistent(&p).await;
    }
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let ledger = p
        .ok(
            &s,
            &format!("/api/v1/trust/ledger?client_id={john}&case_id={case}"),
            &alice,
            None,
        )
        .await;
    let moved = 1000 - ledger["balance_cents"].as_i64().unwrap();
    assert!(moved % 100 == 0 && moved / 100 >= transfers, "{ledger}");
    let inv = p
        .ok(&s, &format!("/api/v1/invoices/{id}"), &alice, None)
        .await;
    assert_eq!(
        inv["paid_cents"].as_i64().unwrap(),
        half + moved,
        "what left trust arrived on the invoice"
    );

    // The audit chain verifies after every crash, and the outbox lost no mail.
    s.kill9().await;
    p.audit_verifies().await;
    let mail_after = outbox(&p).await;
    assert!(
        mail_before.is_subset(&mail_after),
        "mail lost: {:?}",
        mail_before.difference(&mail_after).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_full_object_store_refuses_the_upload_cleanly() {
    let p = Portal::seeded().await;
    // A 1 MiB file system under the object store: the test command runs as root.
    let objects = p.dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&objects)
        .status()
        .expect("mount");
    assert!(mount.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(objects.clone());

    let s = p.start().await;
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let cases = p.ok(&s, "/api/v1/cases?limit=100", &alice, None).await;
    let case = cases["items"][0]["id"].as_str().unwrap().to_owned();
    let db = p.db().await;
    let before = count(&db, "SELECT COUNT(*) FROM document").await;
    let r = p
        .client
        .post(format!("{}/api/v1/cases/{case}/documents", s.base))
        .bearer_auth(&alice)
        .multipart(
            multipart::Form::new()
                .text("confidentiality", "shared")
                .part(
                    "file",
                    multipart::Part::bytes(b"A long witness statement.\n".repeat(200_000))
                        .file_name("statement.txt")
                        .mime_str("text/plain")
                        .unwrap(),
                ),
        )
        .send()
        .await
        .unwrap();
    let body = problem(r, StatusCode::INSUFFICIENT_STORAGE).await;
    assert_eq!(body["code"], "storage_full", "{body}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM document").await, before);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM document_upload").await,
        0,
        "the partial object was removed and forgotten"
    );
    let leftovers: Vec<_> = walk(&objects);
    assert!(leftovers.is_empty(), "partial objects left: {leftovers:?}");
    // A small file still fits: the store recovers as soon as there is room.
    let r = p
        .client
        .post(format!("{}/api/v1/cases/{case}/documents", s.base))
        .bearer_auth(&alice)
        .multipart(
            multipart::Form::new()
                .text("confidentiality", "shared")
                .part(
                    "file",
                    multipart::Part::bytes(b"short note\n".to_vec())
                        .file_name("note.txt")
                        .mime_str("text/plain")
                        .unwrap(),
                ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    db.close().await;
    s.kill9().await;
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A dedicated PostgreSQL cluster (never the shared one) that the test may stop and start.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn script(args: &[&str]) -> String {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = std::process::Command::new(format!("{root}/scripts/pg-throwaway"))
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg-throwaway {args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn start() -> Self {
        let env = Self::script(&["start"]);
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .unwrap()
                .to_owned()
        };
        Cluster {
            dir: get("LFP_TEST_PG_DIR"),
            url: get("DATABASE_URL_PG"),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(format!(
            "{}/scripts/pg-throwaway",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["stop", &self.dir])
        .status();
    }
}

#[tokio::test]
async fn postgres_restarted_under_load_fails_fast_with_503_and_recovers() {
    // PostgreSQL by nature, whatever LFP_TEST_DB says: SQLite has no server to restart.
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = crate::helpers::spawn_app_on(dir, &cluster.url).await;
    let admin = app.user("admin").await;
    let load = |app: &crate::helpers::TestApp, token: String| {
        let (client, url) = (app.client.clone(), app.url("/api/v1/cases?limit=5"));
        async move {
            let r = client
                .get(url)
                .bearer_auth(token)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .expect("an answer, not a hang");
            let status = r.status();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ctype, r.text().await.unwrap())
        }
    };
    assert_eq!(load(&app, admin.access.clone()).await.0, StatusCode::OK);

    Cluster::script(&["pause", &cluster.dir]);
    // Under load while the database is away: every request answers, 503 problem+json.
    let answers =
        futures::future::join_all((0..20).map(|_| load(&app, admin.access.clone()))).await;
    let mut seen: HashMap<StatusCode, usize> = HashMap::new();
    for (status, ctype, body) in answers {
        *seen.entry(status).or_default() += 1;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    }
    Cluster::script(&["resume", &cluster.dir]);
    // And back by itself: no restart of the portal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = load(&app, admin.access.clone()).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not recover: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Writes work again too.
    let r = app
        .post(
            "/api/v1/cases",
            Some(&admin.access),
            json!({"title": "After the outage"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_websocket_flood_is_cut_off_and_others_are_unaffected() {
    let app = spawn_app().await;
    let flooder = app.user("attorney").await;
    let calm = app.user("attorney").await;
    let (mut noisy, _) = crate::live::connect(&app, &flooder.access).await;
    let (mut quiet, _) = crate::live::connect(&app, &calm.access).await;

    // Too fast: hundreds of frames at once end the connection (1008, when the close frame
    // gets through before the reset of the unread frames).
    for _ in 0..300 {
        if noisy
            .send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut pongs = 0;
    let mut close_code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), noisy.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                assert!(t.as_str().contains("pong"), "{t}");
                pongs += 1;
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                close_code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the flooder is still connected after {pongs} pongs"),
        }
    }
    assert!(pongs < 300, "every frame was answered: not cut off");
    assert!(matches!(close_code, None | Some(1008)), "{close_code:?}");

    // Too big: a frame over the limit ends the connection.
    let (mut big, _) = crate::live::connect(&app, &flooder.access).await;
    let _ = big.send(Message::Text("x".repeat(200 * 1024).into())).await;
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, big.next()).await {
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                ended = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Err(_) => break,
        }
    }
    assert!(ended, "an oversized frame ends the connection");

    // The other client still talks.
    quiet
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = crate::live::next_frame(&mut quiet, Duration::from_secs(10))
        .await
        .expect("pong");
    assert_eq!(pong["type"], "pong");
    // And the flooder may come back at a sane pace.
    let (mut again, _) = crate::live::connect(&app, &flooder.access).await;
    again
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        crate::live::next_frame(&mut again, Duration::from_secs(10))
            .await
            .expect("pong")["type"],
        "pong"
    );
}

/// An audited read answers once its entry is committed, without waiting for the disk (ADR
/// 0007; on SQLite committed to the audit spool, ADR 0008): a `kill -9` right after the
/// answers loses none of their entries.
#[tokio::test]
async fn reads_answered_before_a_kill_are_all_in_the_trail() {
    let p = Portal::seeded().await;
    let case_lists = || p.chained("case.list");
    let s = p.start().await;
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let before = case_lists().await;
    // Concurrent readers, so the writer batches several entries per commit.
    let answered = futures::future::join_all((0..40).map(|_| async {
        let r = p
            .client
            .get(format!("{}/api/v1/cases?limit=5", s.base))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        r.status() == StatusCode::OK
    }))
    .await;
    assert!(answered.iter().all(|ok| *ok), "every read answered");
    s.kill9().await;

    // On SQLite some entries may still wait in the spool (ADR 0008): the next process to open
    // the database chains them (here `audit verify`), none twice.
    let chained_at_kill = case_lists().await - before;
    assert!(chained_at_kill <= 40, "{chained_at_kill}");
    p.audit_verifies().await;
    assert_eq!(
        case_lists().await - before,
        40,
        "an answered read's entry was lost (or chained twice)"
    );
    p.audit_verifies().await;
}

/// SQLite (ADR 0008): entries a process left in the audit spool (it died before moving them)
/// are chained by the next process that opens the database, once each, also when the
/// clean-up after a move never happened. PostgreSQL has no spool.
#[tokio::test]
async fn entries_left_in_the_spool_are_chained_once_by_the_next_process() {
    use lawfirm_pro::audit::{NewEntry, spool};
    let p = Portal::seeded().await;
    let Some(path) = p.sqlite_path() else {
        return;
    };
    let left = || p.chained("test.left_behind");
    // A process appends and dies before its mover runs.
    let s = spool::Spool::open(&path, true).await.unwrap().unwrap();
    let entries = (0..3)
        .map(|i| NewEntry::new("test.left_behind", "test").resource(i))
        .collect();
    s.append(entries).await.unwrap();
    let spooled: Vec<(i64, String)> = {
        let mut c = spool_conn(&path).await;
        sea_orm::sqlx::query_as("SELECT seq, entry FROM spool ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(spooled.len(), 3);
    drop(s);
    assert_eq!(left().await, 0, "still waiting");

    // The next process to open the database chains them before it does anything else: here
    // `audit verify` checks them with the rest.
    let report = p.audit_verifies().await;
    assert_eq!(left().await, 3, "chained by the next process");
    let db = p.db().await;
    let all = count(&db, "SELECT COUNT(*) FROM audit_log").await;
    db.close().await;
    assert!(
        report.contains(&format!("{all} entries checked")),
        "{all}: {report}"
    );

    // As if a crash had come between the move's commit and the clean-up: the moved rows are
    // back in the spool. The count stored with the move keeps them from being chained again.
    {
        let s = spool::Spool::open(&path, false).await.unwrap().unwrap();
        assert_eq!(s.waiting().await.unwrap(), 0, "cleared after the move");
        let mut c = spool_conn(&path).await;
        for (seq, entry) in &spooled {
            sea_orm::sqlx::query("INSERT INTO spool (seq, entry) VALUES (?, ?)")
                .bind(seq)
                .bind(entry)
                .execute(&mut c)
                .await
                .unwrap();
        }
        assert_eq!(s.waiting().await.unwrap(), 3);
    }
    p.audit_verifies().await;
    assert_eq!(left().await, 3, "none chained twice");
    let s = spool::Spool::open(&path, false).await.unwrap().unwrap();
    assert_eq!(s.waiting().await.unwrap(), 0, "the stale rows are cleared");
}

/// A command run beside a busy server (`audit verify` chains the spool first, ADR 0008): both
/// move entries from the same spool at once; every read the server answered reaches the chain
/// once, and neither side fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_beside_a_busy_server_chains_every_read_once() {
    let p = Portal::seeded().await;
    let case_lists = || p.chained("case.list");
    let s = p.start().await;
    let alice = p.login(&s, "alice.attorney@demo.lawfirm.example").await;
    let before = case_lists().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = (0..4).map(|_| {
        let (stop, client, base, token) = (
            stop.clone(),
            p.client.clone(),
            s.base.clone(),
            alice.clone(),
        );
        tokio::spawn(async move {
            let mut answered = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = client
                    .get(format!("{base}/api/v1/cases?limit=5"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "a read beside the command");
                answered += 1;
            }
            answered
        })
    });
    let readers: Vec<_> = readers.collect();
    for _ in 0..3 {
        p.audit_verifies().await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = 0;
    for r in readers {
        answered += r.await.unwrap();
    }
    assert!(answered > 0);
    // A change after the reads, then the trail through the server, which chains what waits.
    let admin = p.login(&s, "admin@demo.lawfirm.example").await;
    let r = p
        .call(
            &s,
            reqwest::Method::GET,
            "/api/v1/audit/verify",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["ok"], true);
    assert_eq!(
        case_lists().await - before,
        answered,
        "every answered read chained once"
    );
    s.kill9().await;
}

/// A spool the database does not know (left beside a database that was replaced) is set
/// aside, not chained into this database's trail. PostgreSQL has no spool.
#[tokio::test]
async fn a_spool_from_another_database_is_set_aside() {
    use lawfirm_pro::audit::{NewEntry, spool};
    let p = Portal::seeded().await;
    let Some(path) = p.sqlite_path() else {
        return;
    };
    let spool_path = spool::path_for(&path);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", spool_path.display()));
    }
    // A new spool file: an id of its own that this database never registered.
    let s = spool::Spool::open(&path, true).await.unwrap().unwrap();
    s.append(vec![NewEntry::new("test.foreign", "test")])
        .await
        .unwrap();
    drop(s);
    p.audit_verifies().await;
    assert_eq!(p.chained("test.foreign").await, 0, "never chained here");
    let aside = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(".audit-spool.foreign-")
        })
        .count();
    assert!(aside >= 1, "set aside for the operator to look at");
    // The next start has a spool of its own again.
    let s = spool::Spool::open(&path, false).await.unwrap();
    assert!(s.is_some());
}

/// A spool row that does not parse (a damaged or foreign line) does not hold up the entries
/// after it: the chain records it as `audit.spool_unreadable` and moves on. PostgreSQL has no
/// spool.
#[tokio::test]
async fn an_unreadable_spool_row_is_chained_as_such_and_the_rest_follow() {
    use lawfirm_pro::audit::{NewEntry, spool};
    let p = Portal::seeded().await;
    let Some(path) = p.sqlite_path() else {
        return;
    };
    let s = spool::Spool::open(&path, false).await.unwrap().unwrap();
    {
        let mut c = spool_conn(&path).await;
        sea_orm::sqlx::query("INSERT INTO spool (entry) VALUES ('{\"action\": 7')")
            .execute(&mut c)
            .await
            .unwrap();
    }
    s.append(vec![NewEntry::new("test.after_garbage", "test")])
        .await
        .unwrap();
    drop(s);
    p.audit_verifies().await;
    let db = p.db().await;
    let unreadable = rows(
        &db,
        "SELECT outcome, details FROM audit_log WHERE action = 'audit.spool_unreadable'",
    )
    .await;
    assert_eq!(unreadable.len(), 1);
    let outcome: String = unreadable[0].try_get("", "outcome").unwrap();
    let details: String = unreadable[0].try_get("", "details").unwrap();
    assert_eq!(outcome, "failure");
    assert!(details.contains("\\\"action\\\": 7"), "{details}");
    let after = count(
        &db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'test.after_garbage'",
    )
    .await;
    db.close().await;
    assert_eq!(after, 1, "the entry after it is chained too");
}
