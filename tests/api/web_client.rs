//! The portal's client and account pages over the session cookie: messages inbox, documents,
//! invoices, profile (2FA, sessions, password), forgotten password and invitations; that
//! nobody sees another client's data; CSRF refusal on every form; money formatting.

use reqwest::{Client, StatusCode, header, multipart};
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};

use crate::helpers::{Login, ORIGIN, PASSWORD, TestApp, spawn_app, spawn_app_with};
use lawfirm_pro::web::pages::money;

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

async fn sign_in_with(app: &TestApp, email: &str, password: &str) -> Client {
    let c = browser();
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("email", email), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign in {email}");
    c
}

async fn sign_in(app: &TestApp, email: &str) -> Client {
    sign_in_with(app, email, PASSWORD).await
}

async fn page(app: &TestApp, c: &Client, path: &str) -> (StatusCode, String) {
    let r = c.get(app.url(path)).send().await.unwrap();
    let s = r.status();
    if s == StatusCode::OK || s.is_client_error() {
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{path}");
    }
    (s, r.text().await.unwrap())
}

/// A form post from the page (same origin); `csrf` is added when given.
async fn post_form(
    app: &TestApp,
    c: &Client,
    path: &str,
    csrf: Option<&str>,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut all: Vec<(&str, &str)> = pairs.to_vec();
    if let Some(t) = csrf {
        all.push(("csrf", t));
    }
    c.post(app.url(path))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&all)
        .send()
        .await
        .unwrap()
}

fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    html[start..].split('"').next().unwrap().to_owned()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

/// The text between `start` and the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = html.find(start)? + start.len();
    html[i..].split(end).next()
}

async fn json_ok(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let s = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(s, status, "{what}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

async fn new_case(app: &TestApp, lead: &Login, client: &Login, title: &str) -> String {
    let b = json_ok(
        app.post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": title, "client_ids": [client.id]}),
        )
        .await,
        StatusCode::CREATED,
        "create case",
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

async fn message(app: &TestApp, from: &Login, case: &str, body: &str) {
    json_ok(
        app.post(
            &format!("/api/v1/cases/{case}/messages"),
            Some(&from.access),
            json!({ "body": body }),
        )
        .await,
        StatusCode::CREATED,
        "message",
    )
    .await;
}

async fn upload(app: &TestApp, token: &str, case: &str, name: &str, text: &str) -> String {
    // A title of words: PostgreSQL's parser keeps `zebra-will.txt` as one token, FTS5 splits it.
    let title = name.trim_end_matches(".txt").replace('-', " ");
    let form = multipart::Form::new()
        .text("confidentiality", "shared")
        .text("title", title)
        .part(
            "file",
            multipart::Part::bytes(text.as_bytes().to_vec())
                .file_name(name.to_owned())
                .mime_str("text/plain")
                .unwrap(),
        );
    let r = app
        .post_multipart(&format!("/api/v1/cases/{case}/documents"), token, form)
        .await;
    let b = json_ok(r, StatusCode::CREATED, "upload").await;
    b["id"].as_str().unwrap().to_owned()
}

/// Bill a little time on the case and draft an invoice of it; its id and number.
async fn draft_invoice(app: &TestApp, lead: &Login, case: &str, minutes: i64) -> (String, String) {
    json_ok(
        app.post(
            &format!("/api/v1/cases/{case}/time-entries"),
            Some(&lead.access),
            json!({"work_date": chrono::Utc::now().date_naive(), "minutes": minutes,
                   "rate_cents": 1_234_500, "description": "Drafting", "billable": true}),
        )
        .await,
        StatusCode::CREATED,
        "time entry",
    )
    .await;
    let inv = json_ok(
        app.post(
            "/api/v1/invoices",
            Some(&lead.access),
            json!({ "case_id": case }),
        )
        .await,
        StatusCode::CREATED,
        "invoice",
    )
    .await;
    let id = inv["id"].as_str().unwrap().to_owned();
    (id, inv["number"].as_str().unwrap().to_owned())
}

/// Bill a little time on the case and send the invoice; its id and number.
async fn sent_invoice(app: &TestApp, lead: &Login, case: &str, minutes: i64) -> (String, String) {
    let (id, number) = draft_invoice(app, lead, case, minutes).await;
    json_ok(
        app.post(
            &format!("/api/v1/invoices/{id}/send"),
            Some(&lead.access),
            json!({}),
        )
        .await,
        StatusCode::OK,
        "send",
    )
    .await;
    (id, number)
}

/// The newest outbox mail of `kind` to `to`, as its body text.
async fn mail_to(app: &TestApp, kind: &str, to: &str) -> Option<String> {
    use lawfirm_pro::mail::entity as outbox;
    outbox::Entity::find()
        .order_by_desc(outbox::Column::CreatedAt)
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.kind == kind && m.to_address == to)
        .map(|m| m.body_text)
}

/// The path (with query) of the portal link in a mail.
fn link_in(mail: &str, path: &str) -> String {
    let marker = format!("{ORIGIN}{path}");
    let start = mail.find(&marker).expect("link in mail") + ORIGIN.len();
    mail[start..].split_whitespace().next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------

/// How many documents of `case` the API lists for `who` (first page).
async fn case_documents_seen(app: &TestApp, case: &str, who: &Login) -> usize {
    json_ok(
        app.get(
            &format!("/api/v1/cases/{case}/documents"),
            Some(&who.access),
        )
        .await,
        StatusCode::OK,
        "documents",
    )
    .await["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn list_pages_show_the_clients_own_data_and_never_another_clients() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let outsider = app.user("client").await;
    let mine = new_case(&app, &lead, &client, "Estate of Zebra").await;
    let theirs = new_case(&app, &lead, &outsider, "Giraffe Holdings").await;

    message(
        &app,
        &lead,
        &mine,
        "The quarterly aardvark report is attached.",
    )
    .await;
    message(&app, &lead, &theirs, "Confidential giraffe merger terms.").await;
    let my_doc = upload(&app, &lead.access, &mine, "zebra-will.txt", "last will").await;
    upload(&app, &lead.access, &theirs, "giraffe-terms.txt", "terms").await;
    let (my_inv, my_number) = sent_invoice(&app, &lead, &mine, 600).await;
    let (their_inv, their_number) = sent_invoice(&app, &lead, &theirs, 60).await;
    json_ok(
        app.post(
            "/api/v1/trust/deposits",
            Some(&lead.access),
            json!({"client_id": client.id, "case_id": mine, "amount_cents": 123_456}),
        )
        .await,
        StatusCode::CREATED,
        "deposit",
    )
    .await;

    let c = sign_in(&app, &client.email).await;

    // Messages: the client's own, with its matter; unread count in the navigation.
    let (s, html) = page(&app, &c, "/messages").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("aardvark") && html.contains(&format!("/cases/{mine}?message=")));
    assert!(html.contains("Estate of Zebra"));
    assert!(
        !html.contains("giraffe") && !html.contains("Giraffe"),
        "{html}"
    );
    assert!(html.contains(r#"href="/messages" id="nav-messages" aria-current="page""#));
    assert!(
        html.contains(r#"id="nav-unread">1<"#),
        "unread count in nav"
    );
    // Full-text search finds it; a miss says so; unread filter.
    let (_, html) = page(&app, &c, "/messages?q=aardvark").await;
    assert!(html.contains("quarterly aardvark"));
    let (_, html) = page(&app, &c, "/messages?q=giraffe").await;
    assert!(html.contains("No messages match") && !html.contains("merger"));
    let (_, html) = page(&app, &c, "/messages?unread=1").await;
    assert!(html.contains("aardvark"));
    // A live refresh of a hidden tab (live.js says so) shows the thread without reading it.
    let r = c
        .get(app.url(&format!("/cases/{mine}")))
        .header("x-portal-refresh", "hidden")
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("aardvark"));
    let (_, html) = page(&app, &c, "/messages?unread=1").await;
    assert!(html.contains("aardvark"), "still unread: {html}");
    // Opening the matter reads the message: the unread filter is then empty.
    page(&app, &c, &format!("/cases/{mine}")).await;
    let (_, html) = page(&app, &c, "/messages?unread=1").await;
    assert!(html.contains("No unread messages"), "{html}");
    assert!(!html.contains(r#"id="nav-unread""#));
    // A search that is too long is a readable error, not a failure page.
    let (s, html) = page(&app, &c, &format!("/messages?q={}", "x".repeat(300))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"id="list-error""#) && html.contains("The search"));

    // Documents: own ones with a working download link; search; never the outsider's.
    let (s, html) = page(&app, &c, "/documents").await;
    assert_eq!(s, StatusCode::OK);
    let link = format!("/api/v1/documents/{my_doc}/content");
    assert!(html.contains(&link) && html.contains("zebra-will.txt"));
    assert!(!html.contains("giraffe-terms"));
    let r = c.get(app.url(&link)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "last will");
    let (_, html) = page(&app, &c, "/documents?q=zebra").await;
    assert!(html.contains("zebra-will.txt"), "{html}");
    let (_, html) = page(&app, &c, "/documents?q=giraffe").await;
    assert!(html.contains("No documents match") && !html.contains("giraffe-terms.txt"));

    // Invoices: own, with status, due date, total and balance; trust balance; not theirs.
    let (s, html) = page(&app, &c, "/invoices").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&format!("/invoices/{my_inv}")) && html.contains(&my_number));
    // 600 minutes at 12,345.00/h = 123,450.00
    assert!(html.contains("123,450.00 USD"), "{html}");
    assert!(html.contains("sent"));
    assert!(
        html.contains(r#"id="trust-balance">1,234.56 USD<"#),
        "{html}"
    );
    assert!(!html.contains(&their_inv) && !html.contains(&format!(">{their_number}<")));
    let (s, html) = page(&app, &c, &format!("/invoices/{their_inv}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!html.contains(&their_number));

    // The outsider sees only their own.
    let o = sign_in(&app, &outsider.email).await;
    let (_, html) = page(&app, &o, "/messages").await;
    assert!(html.contains("giraffe merger") && !html.contains("aardvark"));
    let (_, html) = page(&app, &o, "/documents").await;
    assert!(!html.contains("zebra-will") && html.contains("giraffe-terms"));
    let (_, html) = page(&app, &o, "/invoices").await;
    assert!(!html.contains(&my_inv) && html.contains("0.00 USD"));

    // Empty states say what to do next.
    let fresh = app.user("client").await;
    let f = sign_in(&app, &fresh.email).await;
    for (path, text) in [
        ("/messages", "No messages yet"),
        ("/documents", "No documents yet"),
        ("/invoices", "No invoices yet"),
    ] {
        let (s, html) = page(&app, &f, path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert!(html.contains(text), "{path}: {html}");
    }
}

#[tokio::test]
async fn inbox_and_documents_page_with_an_older_link() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Long thread").await;
    for i in 0..27 {
        message(&app, &lead, &case, &format!("Note number {i:02} here")).await;
    }
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, "/messages").await;
    assert!(html.contains("Note number 26") && !html.contains("Note number 01"));
    let older = between(&html, r#"<a href=""#, r#"" id="older-link""#)
        .map(|s| s.rsplit('"').next().unwrap().replace("&amp;", "&"))
        .expect("older link");
    assert!(older.starts_with("/messages?cursor="), "{older}");
    let (s, html) = page(&app, &c, &older).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Note number 01") && html.contains("Note number 00"));
    assert!(!html.contains("Note number 26") && !html.contains(r#"id="older-link""#));
    assert!(html.contains(r#"href="/messages">Newest messages"#));
    // A forged cursor is a readable error.
    let (s, html) = page(&app, &c, "/messages?cursor=nonsense").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
}

#[tokio::test]
async fn every_new_form_refuses_a_missing_csrf_token_or_a_foreign_origin() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, "/profile").await;
    let csrf = csrf_of(&html);
    let some_session = uuid::Uuid::new_v4().to_string();
    let revoke = format!("/profile/sessions/{some_session}/revoke");
    let signed_in_forms: [(&str, Vec<(&str, &str)>); 7] = [
        ("/profile", vec![("name", "Mallory"), ("timezone", "UTC")]),
        (
            "/profile/password",
            vec![
                ("current_password", PASSWORD),
                ("new_password", "a brand new passphrase"),
                ("new_password_again", "a brand new passphrase"),
            ],
        ),
        ("/profile/totp/setup", vec![]),
        ("/profile/totp/enable", vec![("code", "123456")]),
        ("/profile/totp/disable", vec![("code", "123456")]),
        (revoke.as_str(), vec![]),
        ("/profile/sessions/revoke-others", vec![]),
    ];
    for (path, pairs) in &signed_in_forms {
        let r = post_form(&app, &c, path, None, pairs).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token: {path}");
        assert!(r.text().await.unwrap().contains("This form has expired"));
        let mut with: Vec<(&str, &str)> = pairs.clone();
        with.push(("csrf", csrf.as_str()));
        let r = c
            .post(app.url(path))
            .header(header::ORIGIN, "http://evil.test")
            .form_body(&with)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "foreign origin: {path}");
    }
    // Nothing changed: the name and the password are what they were.
    let (_, html) = page(&app, &c, "/profile").await;
    assert!(!html.contains("Mallory") && html.contains(r#"id="totp-setup-form""#));
    sign_in(&app, &client.email).await;

    // The forms without a session must at least come from our own origin.
    for (path, pairs) in [
        ("/forgot", vec![("email", client.email.as_str())]),
        (
            "/reset",
            vec![
                ("token", "x"),
                ("password", "a brand new passphrase"),
                ("password_again", "a brand new passphrase"),
            ],
        ),
        (
            "/invitation",
            vec![
                ("token", "x"),
                ("name", "Eve"),
                ("timezone", "UTC"),
                ("password", "a brand new passphrase"),
                ("password_again", "a brand new passphrase"),
            ],
        ),
    ] {
        let r = browser()
            .post(app.url(path))
            .header(header::ORIGIN, "http://evil.test")
            .form_body(&pairs)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "foreign origin: {path}");
        assert!(r.text().await.unwrap().contains("This form has expired"));
    }
    assert!(
        mail_to(&app, "password_reset", &client.email)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn profile_saves_name_and_time_zone_and_changes_the_password() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let c = sign_in(&app, &client.email).await;
    let (s, html) = page(&app, &c, "/profile").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"href="/profile" aria-current="page""#));
    assert!(html.contains("<option selected>Europe/Berlin</option>"));
    assert!(html.contains("<option>Asia/Tokyo</option>"));
    let csrf = csrf_of(&html);

    let r = post_form(
        &app,
        &c,
        "/profile",
        Some(&csrf),
        &[("name", "Ada Client"), ("timezone", "Asia/Tokyo")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &c, &location(&r)).await;
    assert!(html.contains("Your profile was saved"));
    assert!(
        html.contains(r#"value="Ada Client""#)
            && html.contains("<option selected>Asia/Tokyo</option>")
    );
    // Dates now show in Tokyo time.
    assert!(html.contains(" JST"), "times in the new zone");
    let r = post_form(
        &app,
        &c,
        "/profile",
        Some(&csrf),
        &[("name", "Ada"), ("timezone", "Mars/Olympus")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("The time zone is not an IANA time zone")
    );
    // A NUL (which PostgreSQL cannot store) is refused and nothing changes.
    let r = post_form(
        &app,
        &c,
        "/profile",
        Some(&csrf),
        &[("name", "Ada\u{0}Evil"), ("timezone", "UTC")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, html) = page(&app, &c, "/profile").await;
    assert!(
        html.contains(r#"value="Ada Client""#)
            && html.contains("<option selected>Asia/Tokyo</option>"),
        "the refused form changed nothing"
    );
    // Without a session the same form only learns that it must sign in, not which field is wrong.
    let r = post_form(
        &app,
        &browser(),
        "/profile",
        Some(&csrf),
        &[("name", "Ada\u{0}Evil"), ("timezone", "UTC")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/login"), "{}", location(&r));

    // Wrong current password: refused readably; a weak new one too.
    let r = post_form(
        &app,
        &c,
        "/profile/password",
        Some(&csrf),
        &[
            ("current_password", "not my password at all"),
            ("new_password", "a brand new passphrase"),
            ("new_password_again", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("current password is wrong")
    );
    let r = post_form(
        &app,
        &c,
        "/profile/password",
        Some(&csrf),
        &[
            ("current_password", PASSWORD),
            ("new_password", "short"),
            ("new_password_again", "short"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains(r#"id="password-error""#));

    let other = sign_in(&app, &client.email).await;
    let r = post_form(
        &app,
        &c,
        "/profile/password",
        Some(&csrf),
        &[
            ("current_password", PASSWORD),
            ("new_password", "a brand new passphrase"),
            ("new_password_again", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // This session stays, the other one ends; the new password signs in.
    assert_eq!(page(&app, &c, "/profile").await.0, StatusCode::OK);
    assert_eq!(page(&app, &other, "/").await.0, StatusCode::SEE_OTHER);
    sign_in_with(&app, &client.email, "a brand new passphrase").await;
}

#[tokio::test]
async fn two_step_setup_with_a_qr_code_then_sign_in_needs_the_code() {
    use totp_rs::{Algorithm, Builder, Secret};
    let app = spawn_app().await;
    let client = app.user("client").await;
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, "/profile").await;
    let csrf = csrf_of(&html);
    // A stolen session alone cannot set it up: the current password is asked for again.
    for wrong in [vec![], vec![("current_password", "not my password")]] {
        let r = post_form(&app, &c, "/profile/totp/setup", Some(&csrf), &wrong).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.text().await.unwrap().contains("totp-secret"));
    }
    let r = post_form(
        &app,
        &c,
        "/profile/totp/setup",
        Some(&csrf),
        &[("current_password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("<svg role=\"img\"") && html.contains("QR code"));
    assert!(!html.contains("<script>") && !html.contains("<?xml"));
    let secret = between(&html, r#"<code id="totp-secret">"#, "<").unwrap();
    let bytes = Secret::try_from_base32(secret).unwrap();
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(bytes.as_bytes().to_vec())
        .with_account_name("test")
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    let code = |t: u64| totp.generate(t).to_string();

    // A wrong code is refused next to the form; the right one turns it on.
    let r = post_form(
        &app,
        &c,
        "/profile/totp/enable",
        Some(&csrf),
        &[("code", "000000")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains(r#"id="totp-error""#));
    // Each code's step may be used once and only after the last one used: enable with the
    // previous step's code, sign in with the current one, disable with the next one.
    let r = post_form(
        &app,
        &c,
        "/profile/totp/enable",
        Some(&csrf),
        &[("code", &code(now - 30))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&app, &c, &location(&r)).await;
    assert!(html.contains("Two-step verification is on") && html.contains("totp-disable-form"));

    // Signing in now asks for the code.
    let b = browser();
    let r = b
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("email", client.email.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="totp_code""#));
    let ticket = between(&html, r#"name="ticket" value=""#, "\"")
        .unwrap()
        .to_owned();
    let r = b
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[("ticket", ticket.as_str()), ("totp_code", &code(now))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in with the code");
    assert_eq!(page(&app, &b, "/").await.0, StatusCode::OK);

    // Turning it off needs a (fresh) code too.
    let r = post_form(
        &app,
        &c,
        "/profile/totp/disable",
        Some(&csrf),
        &[("code", &code(now + 30))],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "disabled");
    let (_, html) = page(&app, &c, "/profile").await;
    assert!(html.contains("totp-setup-form"));

    // The owner was told of both changes by mail (if it was not them, they know).
    use lawfirm_pro::mail::entity as outbox;
    let notices: Vec<String> = outbox::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "security_notice" && m.to_address == client.email)
        .map(|m| m.body_text)
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices.iter().any(|t| t.contains("turned on")));
    assert!(notices.iter().any(|t| t.contains("turned off")));
}

/// The id of the viewer's own session on their profile page.
fn current_session(html: &str) -> String {
    let list = between(html, r#"<ul class="sessions" id="sessions">"#, "</ul>").unwrap();
    let item = list
        .split("<li>")
        .find(|li| li.contains(r#"<span class="badge">this session</span>"#))
        .expect("current session listed");
    between(item, "/profile/sessions/", "/revoke")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sessions_can_be_signed_out_one_by_one_or_all_but_this_one() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let a = sign_in(&app, &client.email).await;
    let b = sign_in(&app, &client.email).await;
    let d = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &b, "/profile").await;
    let b_session = current_session(&html);
    let (_, html) = page(&app, &a, "/profile").await;
    let csrf = csrf_of(&html);
    assert!(html.contains(&b_session));

    let r = post_form(
        &app,
        &a,
        &format!("/profile/sessions/{b_session}/revoke"),
        Some(&csrf),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page(&app, &b, "/").await.0,
        StatusCode::SEE_OTHER,
        "b ended"
    );
    assert_eq!(page(&app, &d, "/").await.0, StatusCode::OK, "d still on");
    // Another user's session is not found.
    let other = app.user("client").await;
    let o = sign_in(&app, &other.email).await;
    let (_, html) = page(&app, &o, "/profile").await;
    let o_session = current_session(&html);
    let r = post_form(
        &app,
        &a,
        &format!("/profile/sessions/{o_session}/revoke"),
        Some(&csrf),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(page(&app, &o, "/").await.0, StatusCode::OK);

    // Signing out this very session from its own list ends it and drops the cookies.
    let (_, html) = page(&app, &d, "/profile").await;
    let d_session = current_session(&html);
    let r = post_form(
        &app,
        &d,
        &format!("/profile/sessions/{d_session}/revoke"),
        Some(&csrf_of(&html)),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        page(&app, &d, "/").await.0,
        StatusCode::SEE_OTHER,
        "d ended"
    );
    let e = sign_in(&app, &client.email).await;

    let r = post_form(
        &app,
        &a,
        "/profile/sessions/revoke-others",
        Some(&csrf),
        &[],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page(&app, &e, "/").await.0,
        StatusCode::SEE_OTHER,
        "e ended"
    );
    // The API session of the test login ended too; this one goes on.
    let r = app.get("/api/v1/me", Some(&client.access)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, html) = page(&app, &a, "/profile?done=revoked-others").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("You are not signed in anywhere else"));
}

#[tokio::test]
async fn forgotten_password_through_the_mailed_link() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let b = browser();
    let (s, html) = page(&app, &b, "/login").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"href="/forgot""#));
    let (s, html) = page(&app, &b, "/forgot").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"<label for="email">"#));

    // The same answer for an unknown address, and no mail for it.
    let r = post_form(
        &app,
        &b,
        "/forgot",
        None,
        &[("email", "nobody@example.com")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let unknown = r.text().await.unwrap();
    assert!(unknown.contains("If an account uses this address"));
    assert!(
        mail_to(&app, "password_reset", "nobody@example.com")
            .await
            .is_none()
    );
    let r = post_form(&app, &b, "/forgot", None, &[("email", &client.email)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let known = r.text().await.unwrap();
    assert_eq!(
        between(&known, "<main", "</main>"),
        between(&unknown, "<main", "</main>")
            .map(|s| s.replace("nobody@example.com", &client.email))
            .as_deref(),
        "same answer"
    );

    let mail = mail_to(&app, "password_reset", &client.email)
        .await
        .expect("mail in the outbox");
    let link = link_in(&mail, "/reset?token=");
    let (s, html) = page(&app, &b, &link).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let token = between(&html, r#"name="token" value=""#, "\"")
        .unwrap()
        .to_owned();

    // Mismatched or weak passwords come back readably.
    let r = post_form(
        &app,
        &b,
        "/reset",
        None,
        &[
            ("token", &token),
            ("password", "a brand new passphrase"),
            ("password_again", "different"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("The two passwords differ"));
    let r = post_form(
        &app,
        &b,
        "/reset",
        None,
        &[
            ("token", &token),
            ("password", "password1234"),
            ("password_again", "password1234"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains(r#"id="reset-error""#));

    let r = post_form(
        &app,
        &b,
        "/reset",
        None,
        &[
            ("token", &token),
            ("password", "a brand new passphrase"),
            ("password_again", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?done=reset");
    let (_, html) = page(&app, &b, "/login?done=reset").await;
    assert!(html.contains("Your password was changed"));

    // The old password no longer works, the new one does; earlier sessions ended.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": client.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/me", Some(&client.access)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    sign_in_with(&app, &client.email, "a brand new passphrase").await;

    // The link works once.
    let (s, html) = page(&app, &b, &link).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(html.contains("expired or was already used") && html.contains(r#"href="/forgot""#));
    let r = post_form(
        &app,
        &b,
        "/reset",
        None,
        &[
            ("token", &token),
            ("password", "yet another passphrase"),
            ("password_again", "yet another passphrase"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    sign_in_with(&app, &client.email, "a brand new passphrase").await;
}

#[tokio::test]
async fn an_invitation_is_accepted_once_through_its_page() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let email = "invited.client@example.com";
    json_ok(
        app.post(
            "/api/v1/invitations",
            Some(&admin.access),
            json!({"email": email, "role": "client"}),
        )
        .await,
        StatusCode::CREATED,
        "invite",
    )
    .await;
    let mail = mail_to(&app, "invitation", email)
        .await
        .expect("invitation mail");
    let link = link_in(&mail, "/invitation?token=");
    let b = browser();
    let (s, html) = page(&app, &b, &link).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(r#"<label for="timezone">"#)
            && html.contains("<option selected>UTC</option>")
    );
    let token = between(&html, r#"name="token" value=""#, "\"")
        .unwrap()
        .to_owned();
    let fields = |pw: &'static str| {
        vec![
            ("token", token.clone()),
            ("name", "Ivy Invitee".to_owned()),
            ("timezone", "America/Chicago".to_owned()),
            ("password", pw.to_owned()),
            ("password_again", pw.to_owned()),
        ]
    };
    let send = |pairs: Vec<(&'static str, String)>| {
        let b = b.clone();
        let url = app.url("/invitation");
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(url)
                .header(header::ORIGIN, ORIGIN)
                .form_body(&pairs)
                .send()
                .await
                .unwrap()
        }
    };
    // A weak password is explained, the name kept.
    let r = send(fields("password1234")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"id="invitation-error""#) && html.contains(r#"value="Ivy Invitee""#));

    let r = send(fields("a perfectly fine passphrase")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "accepted");
    assert_eq!(location(&r), "/");
    let (s, html) = page(&app, &b, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Ivy Invitee"));
    let (_, html) = page(&app, &b, "/profile").await;
    assert!(html.contains("<option selected>America/Chicago</option>"));

    // A second use fails readably: the link's page says so, and so does a replayed form.
    let (s, html) = page(&app, &browser(), &link).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(html.contains("already been used or has expired") && !html.contains("invitation-form"));
    let r = browser()
        .post(app.url("/invitation"))
        .header(header::ORIGIN, ORIGIN)
        .form_body(&[
            ("token", token.as_str()),
            ("name", "Second Try"),
            ("timezone", "UTC"),
            ("password", "another fine passphrase"),
            ("password_again", "another fine passphrase"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("already been used or has expired")
    );
    sign_in_with(&app, email, "a perfectly fine passphrase").await;
}

#[tokio::test]
async fn firm_name_and_logo_appear_in_the_header() {
    // A 1×1 PNG.
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=",
    )
    .unwrap();
    let logo = lawfirm_pro::config::FirmLogo::from_bytes(png.clone()).unwrap();
    assert_eq!(logo.content_type, "image/png");
    let app = spawn_app_with(|c| {
        c.billing.firm_name = "Smith & Jones".into();
        c.firm_logo = Some(logo);
    })
    .await;
    let b = browser();
    let (_, html) = page(&app, &b, "/login").await;
    assert!(
        html.contains("Sign in · Smith &#38; Jones")
            || html.contains("Sign in · Smith &amp; Jones"),
        "{html}"
    );
    assert!(html.contains(r#"<img src="/static/logo""#));
    let r = b.get(app.url("/static/logo")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), png.as_slice());

    // The default app has neither: no logo route content, the default name.
    let plain = spawn_app().await;
    let (_, html) = page(&plain, &b, "/login").await;
    assert!(html.contains("Sign in · Law Firm Pro") && !html.contains("/static/logo"));
    let r = b.get(plain.url("/static/logo")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // SVG is sniffed from the text; anything else stops the start with a clear error.
    let svg = lawfirm_pro::config::FirmLogo::from_bytes(
        br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>"#.to_vec(),
    )
    .unwrap();
    assert_eq!(svg.content_type, "image/svg+xml");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("logo.png");
    std::fs::write(&bad, b"GIF89a not a png").unwrap();
    let err = lawfirm_pro::Config::from_sources(
        None,
        &[("LFP_FIRM_LOGO".into(), bad.display().to_string())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("LFP_FIRM_LOGO:") && err.contains("neither a PNG nor an SVG"),
        "{err}"
    );
    let err = lawfirm_pro::Config::from_sources(
        None,
        &[(
            "LFP_FIRM_LOGO".into(),
            dir.path().join("missing.png").display().to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn money_uses_the_currency_exponent_and_groups_thousands() {
    assert_eq!(money(0, "USD"), "0.00 USD");
    assert_eq!(money(5, "USD"), "0.05 USD");
    assert_eq!(money(12_345, "USD"), "123.45 USD");
    assert_eq!(money(123_456_789, "EUR"), "1,234,567.89 EUR");
    assert_eq!(money(100_000, "USD"), "1,000.00 USD");
    assert_eq!(money(99_999, "USD"), "999.99 USD");
    assert_eq!(money(-123_456, "USD"), "-1,234.56 USD");
    assert_eq!(money(-5, "USD"), "-0.05 USD");
    assert_eq!(money(1_200, "JPY"), "1,200 JPY");
    assert_eq!(money(-7, "JPY"), "-7 JPY");
    assert_eq!(money(1_234_567, "KWD"), "1,234.567 KWD");
    assert_eq!(money(5, "BHD"), "0.005 BHD");
    assert_eq!(money(i64::MIN, "USD"), "-92,233,720,368,547,758.08 USD");
    // An unknown code keeps two decimals.
    assert_eq!(money(150, "XTS"), "1.50 XTS");
}

#[tokio::test]
async fn the_api_offers_the_same_password_reset() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    for email in ["nobody@example.com", client.email.as_str()] {
        let r = app
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({ "email": email }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{email}");
    }
    assert!(
        mail_to(&app, "password_reset", "nobody@example.com")
            .await
            .is_none()
    );
    let mail = mail_to(&app, "password_reset", &client.email)
        .await
        .unwrap();
    let link = link_in(&mail, "/reset?token=");
    let token = link.trim_start_matches("/reset?token=");
    let confirm = |password: &'static str| {
        app.post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({ "token": token, "password": password }),
        )
    };
    crate::helpers::problem(confirm("short").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        confirm("a brand new passphrase").await.status(),
        StatusCode::NO_CONTENT
    );
    crate::helpers::problem(
        confirm("yet another passphrase").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": client.email, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Many requests for one account: the answer never changes, but the inbox gets only a
    // few mails an hour (3 per account), and each refusal is audited.
    for _ in 0..5 {
        let r = app
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({ "email": client.email }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    use lawfirm_pro::mail::entity as outbox;
    let mails = outbox::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "password_reset" && m.to_address == client.email)
        .count();
    assert_eq!(mails, 3, "one account gets at most 3 reset mails an hour");
    app.state.audit.settle().await.unwrap();
    let refused = lawfirm_pro::audit::entity::entry::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "user.password_reset_request" && e.details.contains("mail_limit"))
        .count();
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn uploading_without_javascript_checks_the_token_before_the_file() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let stranger = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Plain upload").await;
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    let csrf = csrf_of(&html);
    let action = format!("/cases/{case}/documents/upload");
    assert!(html.contains(&format!(r#"action="{action}""#)), "{html}");
    let body = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let form = |first_csrf: Option<&str>, late_csrf: Option<&str>| {
        let mut f = Form::new();
        if let Some(t) = first_csrf {
            f = f.text("csrf", t.to_owned());
        }
        f = f.text("title", "Signed lease").part(
            "file",
            Part::bytes(body.clone())
                .file_name("lease.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
        if let Some(t) = late_csrf {
            f = f.text("csrf", t.to_owned());
        }
        f
    };
    let docs = |who: &Login| {
        let (app, who, case) = (&app, who.clone(), case.clone());
        async move { case_documents_seen(app, &case, &who).await }
    };

    // Refused without writing anything: no token, a wrong one, one after the file, no Origin.
    for (first, late, origin) in [
        (None, None, true),
        (Some("not-the-token"), None, true),
        (None, Some(csrf.as_str()), true),
        (Some(csrf.as_str()), None, false),
    ] {
        let mut r = c.post(app.url(&action)).multipart(form(first, late));
        if origin {
            r = r.header(header::ORIGIN, ORIGIN);
        }
        let r = r.send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{first:?} {late:?} {origin}"
        );
    }
    assert_eq!(docs(&lead).await, 0);

    // Another client with their own valid token learns nothing about the matter.
    let s = sign_in(&app, &stranger.email).await;
    let (_, own) = page(&app, &s, "/").await;
    let r = s
        .post(app.url(&action))
        .header(header::ORIGIN, ORIGIN)
        .multipart(form(Some(&csrf_of(&own)), None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The real form: back to the matter page, the document is there with the same bytes.
    let r = c
        .post(app.url(&action))
        .header(header::ORIGIN, ORIGIN)
        .multipart(form(Some(&csrf), None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/cases/{case}#documents"));
    assert_eq!(docs(&lead).await, 1);
    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert!(html.contains("Signed lease"), "{html}");
    let listed = json_ok(
        app.get(
            &format!("/api/v1/cases/{case}/documents"),
            Some(&lead.access),
        )
        .await,
        StatusCode::OK,
        "documents",
    )
    .await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .get(
            &format!("/api/v1/documents/{id}/content"),
            Some(&lead.access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // A form without a file is a readable 422, not a crash.
    let r = c
        .post(app.url(&action))
        .header(header::ORIGIN, ORIGIN)
        .multipart(Form::new().text("csrf", csrf.clone()).text("title", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("choose a file"));
}

#[tokio::test]
async fn money_is_written_in_the_readers_language() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Locale").await;
    let (invoice, _) = sent_invoice(&app, &lead, &case, 60).await;
    let c = sign_in(&app, &client.email).await;
    let path = format!("/invoices/{invoice}");
    let read = |lang: Option<&'static str>| {
        let (c, url) = (c.clone(), app.url(&path));
        async move {
            let mut r = c.get(url);
            if let Some(l) = lang {
                r = r.header(header::ACCEPT_LANGUAGE, l);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    // One hour at 12,345.00 an hour.
    let en = read(None).await;
    assert!(en.contains("12,345.00"), "{en}");
    let de = read(Some("de-DE,de;q=0.9,en;q=0.8")).await;
    assert!(
        de.contains("12.345,00") && !de.contains("12,345.00"),
        "{de}"
    );
    // An unknown language falls back to English, never to an error.
    let xx = read(Some("xx-YY, *")).await;
    assert!(xx.contains("12,345.00"));
}

#[tokio::test]
async fn the_sent_box_lists_only_what_the_caller_wrote() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let other = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Sent box").await;
    let theirs = new_case(&app, &lead, &other, "Someone else").await;
    message(&app, &client, &case, "My question about the lease").await;
    message(&app, &lead, &case, "The answer about the lease").await;
    message(&app, &other, &theirs, "A stranger writes about the lease").await;
    let c = sign_in(&app, &client.email).await;

    let (s, html) = page(&app, &c, "/messages?box=sent").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("My question about the lease"), "{html}");
    assert!(!html.contains("The answer about") && !html.contains("A stranger writes"));
    assert!(html.contains(r#"<a href="/messages?box=sent" id="sent-box" aria-current="page">"#));
    // Searching stays in the sent box (the form carries it) and unread does not apply.
    assert!(html.contains(r#"<input type="hidden" name="box" value="sent">"#));
    assert!(!html.contains(r#"name="unread""#));
    let (_, html) = page(&app, &c, "/messages?box=sent&q=question&unread=1").await;
    assert!(html.contains("My question about the lease"), "{html}");
    let (_, html) = page(&app, &c, "/messages?box=sent&q=answer").await;
    assert!(!html.contains("The answer about"));

    // The received box is the other way round.
    let (_, html) = page(&app, &c, "/messages").await;
    assert!(html.contains("The answer about the lease"));
    assert!(!html.contains("My question about") && !html.contains("A stranger writes"));

    // Someone who wrote nothing gets an empty state that says what to do.
    let l = sign_in(&app, &app.user("client").await.email).await;
    let (_, html) = page(&app, &l, "/messages?box=sent").await;
    assert!(html.contains("You have not sent a message yet"), "{html}");
}

/// Every audited read of client data is on the trail by the time its answer arrives: each
/// read below overlaps its entry's commit with the rest of its work, and none may answer
/// first. Checked right after each response, once per path and reader.
#[tokio::test]
async fn every_audited_read_is_on_the_trail_when_its_answer_arrives() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Audited reads").await;
    let doc = upload(
        &app,
        &lead.access,
        &case,
        "audited-note.txt",
        "privileged text",
    )
    .await;
    let (invoice, _) = sent_invoice(&app, &lead, &case, 60).await;
    let reads: [(&Login, String, &str); 10] = [
        (&client, format!("/api/v1/cases/{case}"), "case.read"),
        (
            &client,
            format!("/api/v1/cases/{case}/timeline"),
            "case.timeline_read",
        ),
        (
            &lead,
            format!("/api/v1/cases/{case}/deadlines"),
            "case.deadlines_read",
        ),
        (
            &lead,
            format!("/api/v1/cases/{case}/parties"),
            "case.parties_read",
        ),
        (&client, format!("/api/v1/documents/{doc}"), "document.read"),
        (
            &client,
            format!("/api/v1/documents/{doc}/versions"),
            "document.versions_read",
        ),
        (
            &client,
            format!("/api/v1/documents/{doc}/content"),
            "document.download",
        ),
        (
            &client,
            format!("/api/v1/invoices/{invoice}"),
            "invoice.read",
        ),
        (
            &client,
            format!("/api/v1/invoices/{invoice}/pdf"),
            "invoice.pdf",
        ),
        (&client, "/api/v1/dashboard".to_owned(), "dashboard.read"),
    ];
    for (who, path, action) in reads {
        let r = app.get(&path, Some(&who.access)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let trail = json_ok(
            app.get(
                &format!("/api/v1/audit?action={action}&actor_id={}", who.id),
                Some(&admin.access),
            )
            .await,
            StatusCode::OK,
            action,
        )
        .await;
        let items = trail["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{path} -> {action}: {trail}");
        assert_eq!(items[0]["outcome"], "success", "{trail}");
    }
}

/// The legal team chooses who sees an upload from the matter page, internal unless changed
/// (a privileged memo dropped on the page must not reach the client); privileged is offered
/// only to attorneys on the case; the list shows each document's audience to the team.
#[tokio::test]
async fn staff_uploads_from_the_matter_page_are_internal_unless_shared() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate plan").await;
    let s = sign_in(&app, &lead.email).await;
    let (_, html) = page(&app, &s, &format!("/cases/{case}")).await;
    assert!(
        html.contains(r#"<option value="internal" selected>"#)
            && html.contains(r#"<option value="privileged">"#),
        "{html}"
    );
    let csrf = csrf_of(&html);
    // As a browser sends the form: fields in page order, the choice before the file.
    let form = Form::new()
        .text("csrf", csrf)
        .text("confidentiality", "internal")
        .part(
            "file",
            Part::bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec())
                .file_name("memo.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        )
        .text("title", "Strategy memo");
    let r = s
        .post(app.url(&format!("/cases/{case}/documents/upload")))
        .header(header::ORIGIN, ORIGIN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let count = async |who: &Login| case_documents_seen(&app, &case, who).await;
    assert_eq!((count(&lead).await, count(&client).await), (1, 0));
    let (_, html) = page(&app, &s, &format!("/cases/{case}")).await;
    assert!(html.contains("conf-internal"), "{html}");
    // The client's page offers no choice and shows no audience.
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert!(
        !html.contains("doc-conf") && !html.contains("Strategy memo"),
        "{html}"
    );
    // A client the firm later hires as a paralegal is still a client on this matter: the
    // page is the client's, not the team's controls the services would refuse.
    let admin = app.user("admin").await;
    app.set_role(&admin, client.id, "paralegal").await;
    let c = sign_in(&app, &client.email).await;
    let (_, html) = page(&app, &c, &format!("/cases/{case}")).await;
    assert!(html.contains("upload-form"), "{html}");
    for team_only in [
        "doc-conf",
        "manage-link",
        "phase-form",
        "time-form",
        "conf-",
    ] {
        assert!(!html.contains(team_only), "{team_only}: {html}");
    }
}

/// The invoice page offers "Pay" to whoever the checkout service lets pay (a client of the
/// case, even one the firm later hired) and "Send" to whoever may issue it (an attorney or
/// admin on the case's legal team) — never by the caller's firm role alone.
#[tokio::test]
async fn the_invoice_page_offers_what_the_reader_may_do_on_this_case() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Pay button").await;
    let (sent, _) = sent_invoice(&app, &lead, &case, 60).await;
    let has = |html: &str, id: &str| html.contains(&format!(r#"id="{id}""#));

    let c = sign_in(&app, &client.email).await;
    let (s, html) = page(&app, &c, &format!("/invoices/{sent}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(has(&html, "pay-form") && !has(&html, "send-form"), "{html}");
    let l = sign_in(&app, &lead.email).await;
    let (_, html) = page(&app, &l, &format!("/invoices/{sent}")).await;
    assert!(
        !has(&html, "pay-form"),
        "the legal team does not pay: {html}"
    );

    // The client is hired as a paralegal: still the client of this case, so still pays.
    app.set_role(&admin, client.id, "paralegal").await;
    let c = sign_in(&app, &client.email).await;
    let (s, html) = page(&app, &c, &format!("/invoices/{sent}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(has(&html, "pay-form"), "{html}");

    // A draft: the lead may send it; the paralegal-client cannot see it at all.
    let (draft, _) = draft_invoice(&app, &lead, &case, 30).await;
    let (_, html) = page(&app, &l, &format!("/invoices/{draft}")).await;
    assert!(has(&html, "send-form") && !has(&html, "pay-form"), "{html}");
    let (s, _) = page(&app, &c, &format!("/invoices/{draft}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // An admin (not on the case) may issue it; a paralegal on the case may not.
    let a = sign_in(&app, &admin.email).await;
    let (_, html) = page(&app, &a, &format!("/invoices/{draft}")).await;
    assert!(has(&html, "send-form"), "{html}");
    let para = app.user("paralegal").await;
    app.add_member(&lead.access, &case, para.id, "paralegal")
        .await;
    let p = sign_in(&app, &para.email).await;
    let (s, html) = page(&app, &p, &format!("/invoices/{draft}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !has(&html, "send-form") && !has(&html, "pay-form"),
        "{html}"
    );
}
