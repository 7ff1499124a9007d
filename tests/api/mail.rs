//! The mail outbox and its SMTP worker, against a real SMTP server on loopback (Python's
//! aiosmtpd, started by each test; the test fails if it is not installed).

use std::{path::PathBuf, time::Duration};

use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app, spawn_app_with};
use lawfirm_pro::mail::{self, entity as outbox};

/// An SMTP sink: every message it receives lands as a file in a Maildir.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let mut child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!(
                    "the SMTP sink exited ({status}); is aiosmtpd installed (scripts/test installs it)? {err}"
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "SMTP sink did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Messages received so far, as raw text.
    fn messages(&self) -> Vec<String> {
        let new: PathBuf = self.dir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }

    async fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages arrived",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn outbox_rows(app: &crate::helpers::TestApp) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn invitations_and_bookings_are_delivered_over_smtp() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(url.into());
        c.job_interval = Duration::from_millis(200);
    })
    .await;
    let admin = app.user("admin").await;
    let r = app
        .post(
            "/api/v1/invitations",
            Some(&admin.access),
            json!({"email": "new.client@example.com", "role": "client"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let inv: Value = r.json().await.unwrap();
    // With a mailer the link goes to the invitee alone, never to whoever invites.
    assert!(inv["id"].is_string() && inv["expires_at"].is_string());
    assert!(inv.get("token").is_none(), "{inv}");

    let msgs = sink.wait_for(1, Duration::from_secs(10)).await;
    let m = &msgs[0];
    assert_eq!(header(m, "To"), Some("new.client@example.com"));
    // Quoted-printable bodies break long lines with `=` and may encode `=` itself as `=3D`.
    let body = m
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let token = body
        .split("invitation?token=")
        .nth(1)
        .and_then(|t| {
            t.split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
                .next()
        })
        .filter(|t| t.len() >= 32)
        .unwrap_or_else(|| panic!("no invitation link in {m}"));
    let row = outbox_rows(&app)
        .await
        .into_iter()
        .find(|r| r.kind == "invitation")
        .unwrap();
    assert_eq!(
        header(m, "Message-ID").unwrap(),
        mail::message_id(row.id, &app.state.config.public_url)
    );
    // The mailed link opens the invitation.
    let r = app
        .post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": token, "name": "New Client", "password": "a long and unusual passphrase 7"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Once delivered, the stored copy no longer holds the link.
    let mut tries = 0;
    let row = loop {
        let row = outbox::Entity::find_by_id(row.id)
            .one(app.state.db.conn())
            .await
            .unwrap()
            .unwrap();
        if row.status == mail::STATUS_SENT || tries > 100 {
            break row;
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row.status, mail::STATUS_SENT);
    assert!(!row.body_text.contains(token), "{}", row.body_text);
    assert!(row.body_text.contains("removed after sending"));

    // Booking mails carry the .ics.
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let r = app
        .post(
            "/api/v1/cases",
            Some(&attorney.access),
            json!({"title": "Matter", "client_ids": [client.id]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let start = (chrono::Utc::now() + chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(15, 0, 0)
        .unwrap()
        .and_utc();
    let r = app
        .post("/api/v1/appointments", Some(&attorney.access), json!({"attorney_id": attorney.id, "client_id": client.id,
            "starts_at": start, "ends_at": start + chrono::Duration::minutes(30), "title": "Kick-off"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let msgs = sink.wait_for(3, Duration::from_secs(10)).await;
    let to_client = msgs
        .iter()
        .find(|m| header(m, "To") == Some(client.email.as_str()))
        .expect("client mailed");
    assert!(
        to_client.contains("text/calendar") && to_client.contains("appointment.ics"),
        "{to_client}"
    );
    // Sent rows are marked so, with a time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = outbox_rows(&app).await;
        if rows
            .iter()
            .all(|r| r.status == "sent" && r.sent_at.is_some())
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_claim_whose_worker_died_is_resent_with_the_same_message_id() {
    // Instance A has no SMTP: it queues a mail and "crashes" holding a short lease on it.
    let a = spawn_app().await;
    let txn = a.state.db.begin_write().await.unwrap();
    let id = mail::enqueue_in(
        &*txn,
        mail::NewMail {
            kind: "test",
            to_address: "someone@example.com".into(),
            to_user_id: None,
            subject: "Crash test".into(),
            text: "body".into(),
            attachments: Vec::new(),
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let claimed = mail::worker::claim_due(&a.state, lawfirm_pro::db::now(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    // A second claim while the lease holds gets nothing.
    assert!(
        mail::worker::claim_due(&a.state, lawfirm_pro::db::now(), Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty()
    );

    // Instance B, on the same database with SMTP, waits out the lease and sends it.
    let sink = SmtpSink::start().await;
    let (url, db) = (sink.url(), a.database_url.clone());
    let b = spawn_app_with(|c| {
        c.smtp_url = Some(url.into());
        c.database_url = db.into();
        c.job_interval = Duration::from_millis(200);
    })
    .await;
    // Until just before the lease expires, B leaves the row alone.
    let lease_end = claimed[0].locked_until.unwrap();
    let before = (lease_end - lawfirm_pro::db::now() - chrono::Duration::milliseconds(500))
        .to_std()
        .expect("instance B started within the lease");
    tokio::time::sleep(before).await;
    assert!(
        sink.messages().is_empty(),
        "sent while another worker held the lease"
    );
    let msgs = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        header(&msgs[0], "Message-ID").unwrap(),
        mail::message_id(id, &b.state.config.public_url)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 1, "sent once");
    let row = outbox::Entity::find_by_id(id)
        .one(b.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("sent", 2));
}

#[tokio::test]
async fn failures_back_off_then_give_up() {
    // Nothing listens on this port: every attempt fails (transiently).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        c.job_interval = Duration::from_millis(200);
        c.mail_max_attempts = 2;
    })
    .await;
    let admin = app.user("admin").await;
    let r = app
        .post(
            "/api/v1/invitations",
            Some(&admin.access),
            json!({"email": "x@example.com", "role": "client"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let wait_until = |pred: fn(&outbox::Model) -> bool| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let rows = outbox_rows(app).await;
                if let Some(r) = rows.into_iter().find(pred) {
                    return r;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "condition not reached"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let row =
        wait_until(|r| r.attempts == 1 && r.last_error.is_some() && r.locked_until.is_none()).await;
    assert_eq!(row.status, "pending");
    // Backed off: the next attempt is ~30 s away, not immediate.
    assert!(row.next_attempt_at > lawfirm_pro::db::now() + chrono::Duration::seconds(20));
    // Time travel past the back-off: the second failure is final.
    outbox::ActiveModel {
        id: Set(row.id),
        next_attempt_at: Set(lawfirm_pro::db::now()),
        ..Default::default()
    }
    .update(app.state.db.conn())
    .await
    .unwrap();
    let row = wait_until(|r| r.status == "failed").await;
    assert_eq!(row.attempts, 2);
}

#[tokio::test]
async fn admins_alone_see_the_outbox() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let r = app
        .post(
            "/api/v1/invitations",
            Some(&attorney.access),
            json!({"email": "c@example.com", "role": "client"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for who in [&attorney, &client] {
        problem(
            app.get("/api/v1/admin/mail", Some(&who.access)).await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    problem(
        app.get("/api/v1/admin/mail", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Without SMTP the mail waits, visible to admins, body and link withheld.
    let r = app
        .get("/api/v1/admin/mail?status=pending", Some(&admin.access))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "invitation");
    assert_eq!(items[0]["to_address"], "c@example.com");
    assert!(items[0].get("body_text").is_none() && !b.to_string().contains("token="));
    problem(
        app.get("/api/v1/admin/mail?limit=101", Some(&admin.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get("/api/v1/admin/mail?status=bogus", Some(&admin.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_share_a_mail() {
    let app = spawn_app().await;
    let txn = app.state.db.begin_write().await.unwrap();
    for i in 0..30 {
        mail::enqueue_in(
            &*txn,
            mail::NewMail {
                kind: "test",
                to_address: format!("p{i}@example.com"),
                to_user_id: None,
                subject: "s".into(),
                text: "t".into(),
                attachments: Vec::new(),
            },
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    let now = lawfirm_pro::db::now();
    let lease = Duration::from_secs(60);
    let (a, b) = futures::future::join(
        mail::worker::claim_due(&app.state, now, lease),
        mail::worker::claim_due(&app.state, now, lease),
    )
    .await;
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut ids: Vec<_> = a.iter().chain(b.iter()).map(|r| r.id).collect();
    assert_eq!(ids.len(), 30, "{} + {}", a.len(), b.len());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "a mail was claimed twice");
    assert!(
        mail::worker::claim_due(&app.state, now, lease)
            .await
            .unwrap()
            .is_empty()
    );
}
