//! The portal in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! against the real application on a loopback port, on the database the suite runs on.
//!
//! Each test starts its own chromedriver on a free loopback port (in its own process group,
//! killed with everything it started when the test ends, pass or fail). A missing browser is
//! a failure, never a skip: the test command installs `chromium` and `chromium-driver`.
//! Screenshots of the main pages (desktop and phone width) land in `target/screenshots/`.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Router,
    extract::{Path, State},
    response::{Html, IntoResponse, Redirect},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Login, PASSWORD, TestApp, backend, spawn_app_with};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(20);
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);
const WEBHOOK_SECRET: &str = "whsec_browser_test";

// ---------------------------------------------------------------------------------------
// The browser.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A chromedriver of this test; dropping it kills it and every browser it started.
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Self {
        crate::helpers::install_tls();
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (scripts/test installs them as root)"
            );
        }
        let port = free_port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg("--log-level=WARNING")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: the whole tree goes when the test ends.
                .process_group(0)
                .spawn()
                .expect("start chromedriver")
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            url,
            profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh browser (own profile: no shared cookies) with a window of `size`.
    async fn browser(&self, size: (u32, u32)) -> Browser {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--lang=en-US",
            &format!("--window-size={},{}", size.0, size.1),
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session through chromedriver");
        c.set_window_size(size.0, size.1).await.unwrap();
        Browser {
            c,
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); chromium runs inside it.
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser {
    c: Client,
    _profile: tempfile::TempDir,
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    async fn go(&self, url: &str) {
        self.c.goto(url).await.expect(url);
    }

    async fn find(&self, css: &str) -> Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let src = self.c.source().await.unwrap_or_default();
                let why = src
                    .split("role=\"alert\"")
                    .nth(1)
                    .map(|t| t.chars().take(200).collect::<String>())
                    .unwrap_or_default();
                panic!("no {css} on {}: {e} {why}", self.here().await)
            }
        }
    }

    async fn here(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    /// Wait until the element's text contains `needle` (it may be replaced meanwhile).
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(e) = self.c.find(Locator::Css(css)).await {
                if let Ok(t) = e.text().await {
                    if t.contains(needle) {
                        return t;
                    }
                    last = t;
                }
            }
            if Instant::now() > deadline {
                let logs = self.console().await;
                panic!(
                    "{css} never showed {needle:?} on {} (last text: {last:?}); console: {logs}",
                    self.here().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_path(&self, prefix: &str) -> url::Url {
        let deadline = Instant::now() + WAIT;
        loop {
            let u = self.c.current_url().await.unwrap();
            if u.path().starts_with(prefix) {
                return u;
            }
            assert!(Instant::now() < deadline, "still on {u}, expected {prefix}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for the page's live connection (live.js marks `<html data-live="on">`).
    async fn wait_live(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let on = self
                .c
                .execute("return document.documentElement.dataset.live || ''", vec![])
                .await
                .unwrap();
            if on == json!("on") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the live connection never opened on {}: {}",
                self.here().await,
                self.console().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser console (errors from scripts, CSP violations).
    async fn console(&self) -> String {
        match self.c.issue_cmd(BrowserLog).await {
            Ok(v) => v.to_string(),
            Err(e) => format!("(no console log: {e})"),
        }
    }

    /// Console errors (a CSP violation or a script error is a failure).
    async fn assert_clean_console(&self) {
        let logs = self.console().await;
        if let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(&logs) {
            let severe: Vec<_> = entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .filter(|e| {
                    !e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("favicon")
                })
                .collect();
            assert!(severe.is_empty(), "console errors: {severe:?}");
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
    }

    /// Screenshots at desktop and phone width; the page must not scroll sideways on a phone.
    async fn shots(&self, name: &str) {
        self.shot(&format!("{name}-desktop")).await;
        self.c.set_window_size(PHONE.0, PHONE.1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let wide = self
            .c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        self.shot(&format!("{name}-phone")).await;
        assert!(
            wide.as_i64().unwrap_or(0) <= 1,
            "{name} scrolls sideways at phone width by {wide}px"
        );
        self.c.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    }

    async fn sign_in(&self, app: &TestApp, email: &str) {
        self.go(&app.url("/login")).await;
        self.fill("#email", email).await;
        self.fill("#password", PASSWORD).await;
        self.click("#login-form button[type=submit]").await;
        self.find("#h-cases").await;
    }

    async fn close(self) {
        let _ = self.c.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// The application, reachable at the origin the browser uses.

/// The app on a known loopback port, with `public_url` = that origin (the Origin checks of
/// forms and the CSRF rules compare against it).
async fn portal(tweak: impl FnOnce(&mut lawfirm_pro::Config)) -> TestApp {
    let port = free_port();
    spawn_app_with(move |c| {
        c.bind = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        c.booking_min_notice_minutes = 0;
        tweak(c);
    })
    .await
}

fn name(test: &str, page: &str) -> String {
    format!("{}-{test}-{page}", backend())
}

async fn new_case(app: &TestApp, lead: &Login, client: &Login, title: &str) -> String {
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": title, "client_ids": [client.id]}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let b: Value = r.json().await.unwrap();
    b["id"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// a. Messages, live, with a read receipt.

#[tokio::test]
async fn a_message_appears_live_for_the_attorney_and_the_sender_sees_it_read() {
    let app = portal(|_| {}).await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;
    let driver = Driver::start().await;

    let cb = driver.browser(DESKTOP).await;
    cb.go(&app.url("/login")).await;
    cb.shots(&name("a", "login")).await;
    cb.sign_in(&app, &client.email).await;
    cb.wait_text("#my-cases", "Estate of Doe").await;
    cb.shots(&name("a", "dashboard-client")).await;
    cb.click(&format!("#my-cases a[href='/cases/{case}']"))
        .await;
    cb.wait_path(&format!("/cases/{case}")).await;
    cb.wait_text("#thread-wrap", "No messages yet").await;
    cb.wait_live().await;

    let ab = driver.browser(DESKTOP).await;
    ab.sign_in(&app, &lead.email).await;
    ab.go(&app.url(&format!("/cases/{case}"))).await;
    ab.wait_text("#thread-wrap", "No messages yet").await;
    ab.wait_live().await;

    // The client writes; the attorney's open page shows it without a reload.
    cb.fill("#body", "Hello counsel, the will is in the safe.")
        .await;
    cb.click("#composer button[type=submit]").await;
    cb.wait_text("#thread-wrap", "the will is in the safe")
        .await;
    let marker =
        ab.c.execute("window.__notReloaded = 1; return 1", vec![])
            .await
            .unwrap();
    assert_eq!(marker, json!(1));
    ab.wait_text("#thread-wrap", "the will is in the safe")
        .await;
    ab.wait_text("#toasts", "New message").await;
    let same_page =
        ab.c.execute("return window.__notReloaded || 0", vec![])
            .await
            .unwrap();
    assert_eq!(same_page, json!(1), "the attorney's page was reloaded");

    // The attorney has seen it: the client's page shows the read receipt, live.
    let receipt = cb.wait_text("#thread-wrap .receipt", "Read by").await;
    assert!(receipt.contains("Test attorney"), "{receipt}");
    cb.shots(&name("a", "case-client")).await;
    ab.shots(&name("a", "case-attorney")).await;
    cb.assert_clean_console().await;
    ab.assert_clean_console().await;

    // Keyboard: the skip link is the first stop and leads to the content.
    cb.c.execute("document.activeElement.blur()", vec![])
        .await
        .unwrap();
    cb.find("body").await.send_keys("\u{E004}").await.unwrap(); // Tab
    let focused =
        cb.c.execute("return document.activeElement.className", vec![])
            .await
            .unwrap();
    assert_eq!(focused, json!("skip"));
    cb.close().await;
    ab.close().await;
}

// ---------------------------------------------------------------------------------------
// b, c, d. Upload a document, book an appointment, pay an invoice.

#[tokio::test]
async fn a_client_uploads_a_document_with_progress_and_by_drop() {
    let app = portal(|_| {}).await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Lease dispute").await;
    let driver = Driver::start().await;
    let cb = driver.browser(DESKTOP).await;
    let ab = driver.browser(DESKTOP).await;
    ab.sign_in(&app, &lead.email).await;
    ab.go(&app.url(&format!("/cases/{case}"))).await;
    ab.wait_live().await;

    cb.sign_in(&app, &client.email).await;
    cb.go(&app.url(&format!("/cases/{case}"))).await;
    cb.wait_text("#documents-wrap", "No documents").await;
    // The plain file input, then the upload through XHR with a progress bar.
    let file = app.data_dir.path().join("lease-scan.txt");
    std::fs::write(&file, "Lease agreement, signed 2024.\n".repeat(2000)).unwrap();
    cb.fill("#upload-title", "Signed lease").await;
    cb.find("#upload-file")
        .await
        .send_keys(&file.display().to_string())
        .await
        .unwrap();
    cb.click("#upload-form button[type=submit]").await;
    cb.wait_text("#upload-status", "Uploaded").await;
    let progress =
        cb.c.execute(
            "const p = document.getElementById('upload-progress'); return [p.value, p.max];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(progress[0], progress[1], "progress ends full: {progress}");
    cb.wait_text("#documents-wrap", "Signed lease").await;
    // The attorney's page lists it live.
    ab.wait_text("#documents-wrap", "Signed lease").await;

    // Drag-and-drop onto the zone uploads straight away.
    cb.c.execute(
        "const dt = new DataTransfer();
         dt.items.add(new File(['Photo of the damage'], 'damage.txt', {type: 'text/plain'}));
         const z = document.getElementById('dropzone');
         z.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
         z.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
         return 1;",
        vec![],
    )
    .await
    .unwrap();
    cb.wait_text("#documents-wrap", "damage.txt").await;
    ab.wait_text("#documents-wrap", "damage.txt").await;
    cb.shots(&name("b", "case-documents")).await;

    // The document opens for the client (same cookie session, no token in the URL).
    let href = cb
        .find("#documents-wrap a")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.starts_with("/api/v1/documents/"), "{href}");
    cb.assert_clean_console().await;
    cb.close().await;
    ab.close().await;
}

#[tokio::test]
async fn a_client_books_a_free_slot_in_their_own_time_zone() {
    let app = portal(|_| {}).await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    // The attorney works in Berlin; the client lives in New York.
    let rules: Vec<Value> = (1..=7)
        .map(|d| json!({"weekday": d, "start": "09:00", "end": "17:00"}))
        .collect();
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/users/{}/availability", lead.id),
            Some(&lead.access),
            Some(json!({"timezone": "Europe/Berlin", "rules": rules})),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = app
        .patch(
            "/api/v1/me",
            Some(&client.access),
            json!({"timezone": "America/New_York"}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let case = new_case(&app, &lead, &client, "Custody").await;

    let driver = Driver::start().await;
    let cb = driver.browser(DESKTOP).await;
    cb.sign_in(&app, &client.email).await;
    cb.go(&app.url(&format!("/cases/{case}"))).await;
    cb.click("#book-link").await;
    cb.wait_path(&format!("/cases/{case}/book")).await;
    cb.wait_text("#slots", "America/New_York").await;
    cb.shots(&name("c", "book")).await;
    let first = cb.find("#slots form.slot").await;
    let starts_at = first
        .find(Locator::Css("input[name=starts_at]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let label = first.text().await.unwrap();
    // Shown in the client's zone: 09:00 in Berlin is 03:00 (or 04:00 around DST) in New York.
    let t: DateTime<Utc> = starts_at.parse().unwrap();
    let local = t
        .with_timezone(&chrono_tz::America::New_York)
        .format("%H:%M")
        .to_string();
    assert!(
        label.contains(&local),
        "slot {starts_at} shown as {label:?}"
    );
    first
        .find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    cb.wait_path("/appointments/").await;
    let when = cb.wait_text("#appointment-when", &local).await;
    assert!(when.contains("EST") || when.contains("EDT"), "{when}");
    cb.shots(&name("c", "appointment")).await;
    // The calendar file downloads with the session cookie.
    let ics = cb
        .find("#ics-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let body: Value =
        cb.c.execute_async(
            "const [u, done] = arguments; fetch(u).then(r => r.text()).then(done);",
            vec![json!(ics)],
        )
        .await
        .unwrap();
    assert!(
        body.as_str().unwrap_or_default().contains("BEGIN:VEVENT"),
        "{body}"
    );
    // The matter page lists the booking.
    cb.go(&app.url(&format!("/cases/{case}"))).await;
    cb.wait_text("#appointments-wrap", &local).await;
    cb.assert_clean_console().await;
    cb.close().await;
}

/// A Stripe-compatible test processor: Checkout Sessions, a hosted page, a signed webhook.
#[derive(Clone)]
struct Processor {
    app_url: String,
    sessions: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    base: Arc<Mutex<String>>,
}

async fn processor(app_url: String) -> (String, Processor) {
    crate::helpers::install_tls();
    let p = Processor {
        app_url,
        sessions: Arc::default(),
        base: Arc::default(),
    };
    let router = Router::new()
        .route("/v1/checkout/sessions", post(create_session))
        .route("/pay/{id}", get(hosted_page).post(pay))
        .with_state(p.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
    *p.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(l, router).await });
    (base, p)
}

async fn create_session(
    State(p): State<Processor>,
    Form(form): Form<Vec<(String, String)>>,
) -> impl IntoResponse {
    let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}pay/{id}", p.base.lock().unwrap());
    p.sessions
        .lock()
        .unwrap()
        .insert(id.clone(), form.into_iter().collect());
    axum::Json(json!({"id": id, "object": "checkout.session", "url": url}))
}

async fn hosted_page(State(p): State<Processor>, Path(id): Path<String>) -> impl IntoResponse {
    let s = p
        .sessions
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let amount = s
        .get("line_items[0][price_data][unit_amount]")
        .cloned()
        .unwrap_or_default();
    let product = s
        .get("line_items[0][price_data][product_data][name]")
        .cloned()
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><title>Test processor</title><h1>Test processor</h1>\
         <p id=product>{product}</p><p id=amount>{amount}</p>\
         <form method=post><button id=pay-button>Pay</button></form>"
    ))
}

async fn pay(State(p): State<Processor>, Path(id): Path<String>) -> impl IntoResponse {
    let s = p
        .sessions
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let event = json!({
        "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": id,
            "amount_total": s["line_items[0][price_data][unit_amount]"].parse::<i64>().unwrap(),
            "currency": s["line_items[0][price_data][currency]"],
            "metadata": {"invoice_id": s["metadata[invoice_id]"]},
        }},
    })
    .to_string();
    let t = Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{event}").as_bytes());
    let sig = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    // Delivered after the redirect, as a real processor does (asynchronously).
    let app_url = p.app_url.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let r = reqwest::Client::new()
            .post(format!("{app_url}/api/v1/webhooks/payments"))
            .header("stripe-signature", sig)
            .header("content-type", "application/json")
            .body(event)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "webhook accepted");
    });
    Redirect::to(&s["success_url"])
}

#[tokio::test]
async fn a_client_pays_an_invoice_through_the_test_processor_and_sees_it_paid_live() {
    let port = free_port();
    let app_url = format!("http://127.0.0.1:{port}");
    let (base, _processor) = processor(app_url.clone()).await;
    let app = spawn_app_with(move |c| {
        c.bind = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = url::Url::parse(&format!("{app_url}/")).unwrap();
        c.billing.payments_api_base = Some(url::Url::parse(&base).unwrap());
        c.billing.payments_api_key = Some("sk_test_browser".to_string().into());
        c.billing.payments_webhook_secret = Some(WEBHOOK_SECRET.to_string().into());
    })
    .await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Contract review").await;
    // 90 minutes at $200.00 an hour, invoiced and sent through the API.
    let r = app
        .post(
            &format!("/api/v1/cases/{case}/time-entries"),
            Some(&lead.access),
            json!({"work_date": "2026-01-05", "minutes": 90, "rate_cents": 20000, "description": "Review of the contract"}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let r = app
        .post(
            "/api/v1/invoices",
            Some(&lead.access),
            json!({"case_id": case}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let inv: Value = r.json().await.unwrap();
    let inv_id = inv["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/invoices/{inv_id}/send"),
            Some(&lead.access),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    let driver = Driver::start().await;
    let cb = driver.browser(DESKTOP).await;
    cb.sign_in(&app, &client.email).await;
    cb.wait_text("#balance", "300.00").await;
    cb.go(&app.url(&format!("/cases/{case}"))).await;
    cb.click(&format!("#invoices-wrap a[href='/invoices/{inv_id}']"))
        .await;
    cb.wait_path(&format!("/invoices/{inv_id}")).await;
    cb.wait_text("#invoice-status", "sent").await;
    cb.wait_text("#invoice-detail", "USD 300.00").await;
    cb.shots(&name("d", "invoice")).await;
    cb.click("#pay-form button[type=submit]").await;
    // The processor's hosted page (another origin), then back to the portal.
    cb.wait_text("#amount", "30000").await;
    cb.shot(&name("d", "processor")).await;
    cb.click("#pay-button").await;
    cb.wait_path(&format!("/invoices/{inv_id}")).await;
    cb.wait_text("#checkout-notice", "Thank you").await;
    cb.wait_live().await;
    // The webhook arrives a moment later; the page turns to paid without a reload.
    cb.wait_text("#invoice-status", "paid").await;
    cb.wait_text("#invoice-detail", "USD 0.00").await;
    cb.shots(&name("d", "invoice-paid")).await;
    cb.assert_clean_console().await;
    cb.close().await;
}

// ---------------------------------------------------------------------------------------
// e. The attorney: intake with a conflict check, phase, time, invoice.

#[tokio::test]
async fn an_attorney_opens_a_matter_moves_its_phase_bills_time_and_sends_the_invoice() {
    let app = portal(|_| {}).await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    // An earlier matter where "Acme Holdings" was the opposing party.
    let old = new_case(&app, &lead, &client, "Older matter").await;
    let r = app
        .post(
            &format!("/api/v1/cases/{old}/parties"),
            Some(&lead.access),
            json!({"name": "Acme Holdings Ltd", "kind": "opposing_party"}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);

    let driver = Driver::start().await;
    let ab = driver.browser(DESKTOP).await;
    ab.sign_in(&app, &lead.email).await;
    ab.click("#new-case-link").await;
    ab.wait_path("/cases/new").await;
    ab.fill("#title", "Smith v. Acme").await;
    ab.select("#client", &client.id.to_string()).await;
    ab.fill("#parties", "Acme Holdings").await;
    ab.click("button[name=action][value=check]").await;
    ab.wait_text("#conflicts", "Acme Holdings Ltd").await;
    ab.shots(&name("e", "intake-conflicts")).await;
    // Opening needs the conflicts acknowledged.
    ab.click("button[name=action][value=create]").await;
    ab.wait_text("#intake-error", "review").await;
    ab.click("#acknowledge").await;
    ab.click("button[name=action][value=create]").await;
    let u = ab.wait_path("/cases/").await;
    let case = u.path().trim_start_matches("/cases/").to_owned();
    assert_ne!(case, "new");
    ab.wait_text("#h-summary", "Smith v. Acme").await;
    ab.wait_live().await;

    // The client watches the matter while the attorney moves its phase.
    let cb = driver.browser(DESKTOP).await;
    cb.sign_in(&app, &client.email).await;
    cb.go(&app.url(&format!("/cases/{case}"))).await;
    cb.wait_text("#case-phase", "intake").await;
    cb.wait_live().await;
    ab.select("#phase", "discovery").await;
    ab.click("#phase-form button[type=submit]").await;
    ab.wait_text("#case-phase", "discovery").await;
    cb.wait_text("#case-phase", "discovery").await;
    cb.wait_text("#toasts", "updated").await;

    // Time: the running timer fills the minutes; the entry is recorded.
    ab.click("#timer-start").await;
    ab.wait_text("#timer-display", "0:0").await;
    ab.click("#timer-stop").await;
    let minutes = ab.find("#minutes").await.prop("value").await.unwrap();
    assert_eq!(minutes.as_deref(), Some("1"), "a started minute counts");
    ab.fill("#minutes", "45").await;
    ab.fill("#rate", "250.00").await;
    ab.fill("#te-description", "Drafting the complaint").await;
    ab.click("#time-form button[type=submit]").await;
    ab.wait_text("#time-entries", "Drafting the complaint")
        .await;
    ab.wait_text("#time-entries", "USD 187.50").await;
    ab.shots(&name("e", "case-attorney")).await;

    // Invoice: generated as a draft, then sent; the client's page lists it live.
    ab.click("#invoice-form button[type=submit]").await;
    ab.wait_path("/invoices/").await;
    ab.wait_text("#invoice-status", "draft").await;
    ab.wait_text("#invoice-detail", "USD 187.50").await;
    ab.click("#send-form button[type=submit]").await;
    ab.wait_text("#invoice-status", "sent").await;
    ab.shots(&name("e", "invoice-sent")).await;
    cb.wait_text("#invoices-wrap", "USD 187.50").await;
    cb.shots(&name("e", "case-client")).await;
    ab.assert_clean_console().await;
    cb.assert_clean_console().await;
    ab.close().await;
    cb.close().await;
}

/// chromedriver's `POST /session/{id}/log` (`{"type": "browser"}`): the console entries.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
