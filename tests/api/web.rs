//! The web portal: sign-in form, dashboard and matter pages over the session cookie, form
//! posts with the CSRF field, and what an outsider or a cross-site form gets.

use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{Login, ORIGIN, PASSWORD, TestApp, created_id, spawn_app};

/// reqwest's `form` feature is not enabled here; encode the body ourselves.
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(app: &TestApp, email: &str) -> Client {
    let c = browser();
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("email", email), ("password", PASSWORD), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign in {email}");
    assert_eq!(r.headers()[header::LOCATION], "/");
    c
}

async fn page(app: &TestApp, c: &Client, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    html[start..].split('"').next().unwrap().to_owned()
}

async fn new_case(app: &TestApp, lead: &Login, client: &Login) -> String {
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Estate of Doe", "client_ids": [client.id]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let b: Value = r.json().await.unwrap();
    b["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn pages_need_a_session_and_keep_a_strict_csp() {
    let app = spawn_app().await;
    let c = browser();
    let r = c.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let r = c
        .get(app.url(&format!("/cases/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login?next=%2Fcases%2F")
    );
    let r = c.get(app.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<label for="email">"#) && !html.contains("<script>"));
    let js = c.get(app.url("/static/live.js")).send().await.unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.text().await.unwrap().contains("/api/v1/ws-ticket"));
}

#[tokio::test]
async fn wrong_password_and_cross_site_login_are_refused_readably() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let c = browser();
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("email", email.as_str()), ("password", "nope nope nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("not correct"));
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, "http://evil.test")
        .form_body(&[("email", email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    // An open redirect through `next` is not possible.
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[
            ("email", email.as_str()),
            ("password", PASSWORD),
            ("next", "//evil.test/x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[header::LOCATION], "/");
}

#[tokio::test]
async fn client_sees_the_matter_and_writes_through_forms() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client).await;

    let c = sign_in(&app, &client.email).await;
    let (s, html) = page(&app, &c, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Estate of Doe") && html.contains(&format!("/cases/{case}")));
    assert!(html.contains("<progress"));

    let (s, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("No messages yet"));
    // Staff-only controls are not shown to a client.
    assert!(!html.contains("phase-form"));
    let csrf = csrf_of(&html);

    // Without the form's CSRF field (or from another origin) nothing is sent.
    let r = c
        .post(app.url(&format!("/cases/{case}/messages")))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("body", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(app.url(&format!("/cases/{case}/messages")))
        .header(header::ORIGIN, "http://evil.test")
        .form_body(&[("body", "forged"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = c
        .post(app.url(&format!("/cases/{case}/messages")))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("body", "Hello <b>counsel</b>"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // An empty message comes back as a readable error next to the composer.
    let r = c
        .post(app.url(&format!("/cases/{case}/messages")))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("body", "   "), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("Message is required"));

    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert!(
        html.contains("Hello &#60;b&#62;counsel&#60;/b&#62;")
            || html.contains("Hello &lt;b&gt;counsel"),
        "escaped: {html}"
    );
    assert!(!html.contains("<b>counsel</b>"));

    // A client may not move the phase.
    let r = c
        .post(app.url(&format!("/cases/{case}/phase")))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("phase", "trial"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The attorney sees the message and moves the phase.
    let a = sign_in(&app, &lead.email).await;
    let (_, html) = page(&app, &a, &format!("/cases/{case}")).await;
    assert!(html.contains("counsel") && html.contains("phase-form"));
    let r = a
        .post(app.url(&format!("/cases/{case}/phase")))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("phase", "discovery"), ("csrf", csrf_of(&html).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert!(html.contains(r#"<span id="case-phase">discovery</span>"#));

    // Sign out ends the session: the old cookie no longer opens pages.
    let r = c
        .post(app.url("/logout"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_outsider_gets_a_not_found_page() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let other = app.user("client").await;
    let case = new_case(&app, &lead, &client).await;
    let c = sign_in(&app, &other.email).await;
    let (s, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(html.contains("Not found") && !html.contains("Estate of Doe"));
    let (s, _) = page(&app, &c, "/cases/not-a-uuid").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, html) = page(&app, &c, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("No matters yet") && !html.contains("Estate of Doe"));
}

/// Entries of `action` on the audit trail (after chaining what the SQLite spool holds).
async fn audited(app: &TestApp, action: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    app.state.audit.settle().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}'");
    let row = app
        .state
        .db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(app.state.db.backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// The caller's unread messages, in all.
async fn unread_total(app: &TestApp, who: &Login) -> i64 {
    let r = app
        .get("/api/v1/messages/unread-count", Some(&who.access))
        .await;
    r.json::<Value>().await.unwrap()["total"].as_i64().unwrap()
}

/// The matter page shows the newest 50 messages and marks only those read; older ones are a
/// link away, and are marked read when that page is shown (read receipts only for what was
/// on screen).
#[tokio::test]
async fn older_messages_are_a_page_away_and_read_when_shown() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let para = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client).await;
    app.add_member(&lead.access, &case, para.id, "paralegal")
        .await;
    // 52 messages from two senders (30 a minute each at most), the first the oldest.
    for i in 0..52 {
        let who = if i % 2 == 0 { &lead } else { &para };
        let r = app
            .post(
                &format!("/api/v1/cases/{case}/messages"),
                Some(&who.access),
                json!({"body": format!("Update number {i:02}"), "recipient_ids": [client.id]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let unread = async || unread_total(&app, &client).await;
    assert_eq!(unread().await, 52);
    let c = sign_in(&app, &client.email).await;
    let (s, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Update number 51") && !html.contains("Update number 01"));
    assert_eq!(unread().await, 2, "only the 50 shown are read");
    // The link sits above the thread, which reads oldest first.
    assert!(html.find("Older messages").unwrap() < html.find("Update number 02").unwrap());
    let marker = format!(r#"<a href="/cases/{case}?older="#);
    let start = html.find(&marker).expect("a link to older messages") + 9;
    let href = html[start..].split('"').next().unwrap().to_owned();
    let (s, older) = page(&app, &c, &href).await;
    assert_eq!(s, StatusCode::OK);
    assert!(older.contains("Update number 00") && older.contains("Update number 01"));
    assert!(!older.contains("Update number 51") && !older.contains("?older="));
    assert!(older.contains("Newest messages"));
    assert_eq!(
        unread().await,
        0,
        "the older page's messages are read once shown"
    );
    // A cursor this server did not issue is an address the page cannot read; an empty one is
    // the newest page.
    let (s, html) = page(&app, &c, &format!("/cases/{case}?older=bm90LWEtY3Vyc29y")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("Could not read the address"), "{html}");
    let (s, html) = page(&app, &c, &format!("/cases/{case}?older=")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Update number 51") && !html.contains("Newest messages"));
}

/// A message linked from the inbox opens the matter page on the page of the thread that shows
/// it (the newest page when it is there), anchored at it; only what is shown is read. A link to
/// a message the reader may not see, or of another matter, is the newest page, revealing nothing.
#[tokio::test]
async fn a_message_linked_from_the_inbox_opens_on_its_page() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let para = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client).await;
    let other = new_case(&app, &lead, &client).await;
    app.add_member(&lead.access, &case, para.id, "paralegal")
        .await;
    let send = async |who: &Login, case: &str, body: String, to: uuid::Uuid| {
        let r = app
            .post(
                &format!("/api/v1/cases/{case}/messages"),
                Some(&who.access),
                json!({"body": body, "recipient_ids": [to]}),
            )
            .await;
        created_id(r).await
    };
    let mut ids = Vec::new();
    for i in 0..52 {
        let who = if i % 2 == 0 { &lead } else { &para };
        ids.push(send(who, &case, format!("Update number {i:02}"), client.id).await);
    }
    let internal = send(&lead, &case, "Internal strategy note".into(), para.id).await;
    let elsewhere = send(&lead, &other, "About the other matter".into(), client.id).await;
    let unread = async || unread_total(&app, &client).await;
    assert_eq!(unread().await, 53);
    let c = sign_in(&app, &client.email).await;

    // The inbox links each message to its place in the thread.
    let (_, inbox) = page(&app, &c, "/messages").await;
    let link = format!("/cases/{case}?message={}#m-{}", ids[51], ids[51]);
    assert!(inbox.contains(&link), "{inbox}");

    // An old message (not among the newest 50): its page ends with it (oldest first), the
    // newest are a link away. One page is read and audited, nothing else.
    let (lists, views) = (
        audited(&app, "message.list").await,
        audited(&app, "message.view").await,
    );
    let (s, html) = page(&app, &c, &format!("/cases/{case}?message={}", ids[1])).await;
    assert_eq!(audited(&app, "message.list").await, lists + 1);
    assert_eq!(audited(&app, "message.view").await, views);
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&format!(r#"id="m-{}""#, ids[1])), "{html}");
    assert!(html.contains("Update number 00") && html.contains("Update number 01"));
    assert!(!html.contains("Update number 02") && html.contains("Newest messages"));
    assert_eq!(unread().await, 53 - 2, "only the 2 shown are read");

    // A recent one: the newest page, as without the link.
    let (_, html) = page(&app, &c, &format!("/cases/{case}?message={}", ids[41])).await;
    assert!(html.contains(&format!(r#"id="m-{}""#, ids[41])));
    assert!(html.contains("Update number 51") && !html.contains("Newest messages"));

    // Not the reader's to see, or of another matter: the newest page, nothing more.
    for m in [&internal, &elsewhere] {
        let (s, html) = page(&app, &c, &format!("/cases/{case}?message={m}")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("Update number 51") && !html.contains("Newest messages"));
        assert!(!html.contains("Internal strategy") && !html.contains("About the other"));
        assert!(!html.contains(&format!("m-{m}")));
    }
    let (s, _) = page(&app, &c, &format!("/cases/{case}?message=not-an-id")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, html) = page(&app, &c, &format!("/cases/{case}?message=")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Update number 51") && !html.contains("Newest messages"));
}

#[tokio::test]
async fn a_query_a_page_cannot_read_gets_the_portals_error_page() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let c = sign_in(&app, &lead.email).await;
    let (s, html) = page(&app, &c, "/staff/deadlines?days=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("<html") && html.contains("Could not read the address"),
        "the portal's page, not a plain-text rejection: {html}"
    );
    let (s, _) = page(&app, &c, "/staff/deadlines?days=30").await;
    assert_eq!(s, StatusCode::OK);
}

/// The value of a hidden input in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn the_totp_step_carries_a_signed_ticket_not_the_password() {
    use lawfirm_pro::auth::totp::current_code;
    let app = spawn_app().await;
    let u = app.user("client").await;
    let setup: Value = app
        .post("/api/v1/me/totp/setup", Some(&u.access), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = crate::auth::base32_decode(setup["secret"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp() as u64;
    let r = app
        .post(
            "/api/v1/me/totp/enable",
            Some(&u.access),
            json!({"code": current_code(&secret, now)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let c = browser();
    let step = |pairs: Vec<(&'static str, String)>| {
        let c = c.clone();
        let url = app.url("/login");
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.post(url)
                .header(header::ORIGIN, ORIGIN)
                .form_body(&pairs)
                .send()
                .await
                .unwrap()
        }
    };
    let r = step(vec![
        ("email", u.email.clone()),
        ("password", PASSWORD.into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="totp_code""#));
    assert!(
        !html.contains(PASSWORD),
        "the password came back in the page"
    );
    assert!(hidden(&html, "password").is_none());
    let ticket = hidden(&html, "ticket").expect("a pending-login ticket");

    // A wrong code keeps the step (same ticket); a forged or access-token ticket does not sign in.
    let r = step(vec![
        ("ticket", ticket.clone()),
        ("totp_code", "000000".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("not valid"));
    for forged in [format!("{ticket}x"), u.access.clone()] {
        let r = step(vec![
            ("ticket", forged),
            ("totp_code", current_code(&secret, now + 30)),
        ])
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Please enter your email and password again")
        );
    }
    // The right code with the ticket opens a cookie session.
    let r = step(vec![
        ("ticket", ticket.clone()),
        ("totp_code", current_code(&secret, now + 30)),
    ])
    .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "signed in with the ticket"
    );
    assert!(r.headers().get(header::SET_COOKIE).is_some());
    let (status, _) = page(&app, &c, "/").await;
    assert_eq!(status, StatusCode::OK);

    // The ticket is spent: with the next valid code it signs nobody in again.
    let r = step(vec![
        ("ticket", ticket),
        ("totp_code", current_code(&secret, now + 60)),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}
