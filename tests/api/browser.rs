//! The portal in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! against the real server on a loopback port. Each journey signs in through the forms,
//! clicks and types like a person, and waits for what must appear without a reload (the
//! live updates of `/static/live.js`). Screenshots of the main pages go to
//! `target/screenshots/` (desktop and phone width).
//!
//! Needs `chromedriver` on PATH and Chromium (Debian: `chromium chromium-driver`; the test
//! command installs them). A missing browser fails the test, it never skips.

use std::{path::PathBuf, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::{Login, PASSWORD, TestApp, backend, http, spawn_app_with};

/// How long to wait for something to appear (a page load, a live update). Generous: the
/// machine may be busy; the wait ends as soon as the element is there.
const WAIT: Duration = Duration::from_secs(30);

/// One chromedriver for a test, on a free loopback port. Its process group (chromedriver and
/// the browsers it started) is killed when it is dropped, even if the test panicked.
pub struct Chromedriver {
    child: tokio::process::Child,
    url: String,
    profiles: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Chromedriver {
    pub async fn start() -> Self {
        lawfirm_pro::install_tls_provider();
        let port = free_port();
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is not installed (Debian: apt-get install chromium chromium-driver; scripts/test does)");
        let url = format!("http://127.0.0.1:{port}");
        let probe = http();
        for _ in 0..200 {
            if let Ok(r) = probe.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                return Self {
                    child,
                    url,
                    profiles: tempfile::tempdir().unwrap(),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    /// A new browser with a fresh profile (its own cookies: one person).
    pub async fn browser(&self) -> Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("chromedriver starts a Chromium session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// The server on a loopback port whose public URL is that address: the browser's `Origin`
/// is then our own, as behind a real deployment.
pub async fn spawn_browser_app() -> TestApp {
    let port = free_port();
    spawn_app_with(|c| {
        c.bind = ([127, 0, 0, 1], port).into();
        c.public_url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    })
    .await
}

/// Save a screenshot as `target/screenshots/<backend>-<name>.png`.
pub async fn screenshot(b: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{}-{name}.png", backend())), png).unwrap();
}

/// Desktop and phone-width screenshots of the current page.
pub async fn screenshots(b: &Client, name: &str) {
    screenshot(b, name).await;
    b.set_window_size(390, 844).await.unwrap();
    screenshot(b, &format!("{name}-phone")).await;
    b.set_window_size(1280, 900).await.unwrap();
}

async fn explain(b: &Client, what: &str, e: impl std::fmt::Display) -> ! {
    let here = b
        .current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    let src = b.source().await.unwrap_or_default();
    let alert = src
        .split("role=\"alert\"")
        .nth(1)
        .map(|t| t.chars().take(200).collect::<String>())
        .unwrap_or_default();
    panic!("{what} did not appear on {here}: {e} {alert}")
}

pub async fn wait_for(b: &Client, css: &str) -> fantoccini::elements::Element {
    match b.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => explain(b, css, e).await,
    }
}

pub async fn wait_for_xpath(b: &Client, xpath: &str) -> fantoccini::elements::Element {
    match b
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(e) => e,
        Err(e) => explain(b, xpath, e).await,
    }
}

pub async fn fill(b: &Client, css: &str, text: &str) {
    let el = wait_for(b, css).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

pub async fn click(b: &Client, css: &str) {
    wait_for(b, css).await.click().await.unwrap();
}

/// Sign in through the form; ends on the dashboard.
pub async fn sign_in(b: &Client, app: &TestApp, email: &str) {
    b.goto(&app.url("/login")).await.unwrap();
    fill(b, "#email", email).await;
    fill(b, "#password", PASSWORD).await;
    click(b, "#login-form button[type=submit]").await;
    wait_for(b, "#my-cases").await;
}

/// Mark the page so that a later check can tell it was not reloaded in between.
pub async fn mark_page(b: &Client) {
    b.execute("window.lfpMark = 'still here'; return null;", vec![])
        .await
        .unwrap();
}

pub async fn assert_not_reloaded(b: &Client) {
    let v = b
        .execute("return window.lfpMark ?? null;", vec![])
        .await
        .unwrap();
    assert_eq!(v, Value::from("still here"), "the page was reloaded");
}

/// The live connection is up (live.js sets `data-live` on the root element).
pub async fn wait_live(b: &Client) {
    wait_for(b, "html[data-live='on']").await;
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

/// Journey a (and the live half of e): the client writes, the attorney sees it appear live in
/// another browser, the client sees the read receipt live; the attorney moves the phase and
/// the client sees it change live.
#[tokio::test]
async fn message_receipt_and_phase_change_appear_live_in_the_other_browser() {
    let app = spawn_browser_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case_id = new_case(&app, &lead, &client, "Estate of Doe").await;
    let driver = Chromedriver::start().await;
    let (cb, ab) = (driver.browser().await, driver.browser().await);

    cb.goto(&app.url("/login")).await.unwrap();
    wait_for(&cb, "#login-form").await;
    screenshots(&cb, "login").await;
    sign_in(&cb, &app, &client.email).await;
    sign_in(&ab, &app, &lead.email).await;

    // The client's dashboard lists the matter; the link leads to it.
    wait_for_xpath(
        &cb,
        "//section[@id='my-cases']//a[contains(., 'Estate of Doe')]",
    )
    .await;
    screenshots(&cb, "dashboard").await;
    click(&cb, &format!("#my-cases a[href='/cases/{case_id}']")).await;
    wait_for(&cb, "#case-page").await;

    ab.goto(&app.url(&format!("/cases/{case_id}")))
        .await
        .unwrap();
    wait_for(&ab, "#case-page").await;
    wait_live(&ab).await;
    wait_live(&cb).await;
    mark_page(&ab).await;

    // The client sends a message from the composer (a plain form post).
    fill(&cb, "#body", "Could we meet next week about the will?").await;
    click(&cb, "#composer button[type=submit]").await;
    wait_for_xpath(
        &cb,
        "//ol[@id='thread']/li[p[@class='body'][contains(., 'meet next week')]]/p[@class='receipt']",
    )
    .await;
    wait_live(&cb).await;
    mark_page(&cb).await;

    // The attorney's page shows it without a reload; seeing it marks it read, and the
    // client's page shows the receipt, again without a reload.
    wait_for_xpath(
        &ab,
        "//ol[@id='thread']//p[@class='body'][contains(., 'meet next week')]",
    )
    .await;
    assert_not_reloaded(&ab).await;
    wait_for_xpath(
        &cb,
        "//ol[@id='thread']//p[@class='receipt'][contains(., 'Read by Test attorney')]",
    )
    .await;
    assert_not_reloaded(&cb).await;

    // The attorney moves the matter to discovery; the client sees the new phase live.
    click(&ab, "#phase option[value='discovery']").await;
    click(&ab, "#phase-form button[type=submit]").await;
    wait_for_xpath(&ab, "//span[@id='case-phase'][.='discovery']").await;
    wait_for_xpath(&cb, "//span[@id='case-phase'][.='discovery']").await;
    assert_not_reloaded(&cb).await;
    screenshots(&cb, "case-client").await;
    screenshots(&ab, "case-attorney").await;

    // On the inbox page, the attorney's answer appears without a reload, and so does the
    // unread count in the navigation.
    cb.goto(&app.url("/messages")).await.unwrap();
    wait_for(&cb, "#message-search").await;
    wait_live(&cb).await;
    mark_page(&cb).await;
    let r = app
        .post(
            &format!("/api/v1/cases/{case_id}/messages"),
            Some(&lead.access),
            json!({"body": "Next Tuesday at ten works for me."}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    wait_for_xpath(
        &cb,
        "//ol[@id='inbox']//p[@class='body'][contains(., 'Next Tuesday')]",
    )
    .await;
    wait_for_xpath(
        &cb,
        "//span[@id='nav-unread'][starts-with(normalize-space(.), '1')]",
    )
    .await;
    assert_not_reloaded(&cb).await;

    // What another client may not see is a plain 404 page in the browser too.
    let other = app.user("client").await;
    let ob = driver.browser().await;
    sign_in(&ob, &app, &other.email).await;
    wait_for_xpath(&ob, "//section[@id='my-cases']//p[@class='empty']").await;
    ob.goto(&app.url(&format!("/cases/{case_id}")))
        .await
        .unwrap();
    wait_for_xpath(&ob, "//h1[.='Not found']").await;
    let source = ob.source().await.unwrap();
    assert!(
        !source.contains("Estate of Doe"),
        "a stranger sees the matter"
    );

    for b in [cb, ab, ob] {
        b.close().await.unwrap();
    }
}

const WHSEC: &str = "whsec_browser_test";

/// A stand-in for a Stripe-compatible processor: creates checkout sessions, serves the hosted
/// payment page, and on "Pay" sends a correctly signed `checkout.session.completed` webhook
/// to the portal before redirecting back to the portal's success URL.
async fn fake_processor(portal: String) -> String {
    use axum::{
        Router,
        extract::{Path, State},
        response::{Html, Json, Redirect},
        routing::{get, post},
    };
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    type Sessions = Arc<Mutex<HashMap<String, HashMap<String, String>>>>;
    #[derive(Clone)]
    struct S {
        base: String,
        portal: String,
        sessions: Sessions,
    }
    async fn create(State(s): State<S>, body: String) -> Json<Value> {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
        s.sessions.lock().unwrap().insert(id.clone(), form);
        Json(json!({"id": id, "object": "checkout.session", "url": format!("{}/pay/{id}", s.base)}))
    }
    async fn page(State(s): State<S>, Path(id): Path<String>) -> Html<String> {
        let amount =
            s.sessions.lock().unwrap()[&id]["line_items[0][price_data][unit_amount]"].clone();
        Html(format!(
            "<!doctype html><title>Test processor</title><h1>Pay {amount} cents</h1>\
             <form method=post action=/pay/{id}><button id=pay-now>Pay now</button></form>"
        ))
    }
    async fn pay(State(s): State<S>, Path(id): Path<String>) -> Redirect {
        let form = s.sessions.lock().unwrap()[&id].clone();
        let event = json!({"id": format!("evt_{id}"), "type": "checkout.session.completed",
            "data": {"object": {"id": id,
                "amount_total": form["line_items[0][price_data][unit_amount]"].parse::<i64>().unwrap(),
                "currency": form["line_items[0][price_data][currency]"],
                "metadata": {"invoice_id": form["metadata[invoice_id]"]}}}})
        .to_string();
        let sig = crate::helpers::stripe_signature(WHSEC, chrono::Utc::now().timestamp(), &event);
        let r = http()
            .post(format!("{}/api/v1/webhooks/payments", s.portal))
            .header("content-type", "application/json")
            .header("Stripe-Signature", sig)
            .body(event)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "webhook refused: {}", r.status());
        Redirect::to(&form["success_url"])
    }
    lawfirm_pro::install_tls_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = S {
        base: base.clone(),
        portal,
        sessions: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/checkout/sessions", post(create))
        .route("/pay/{id}", get(page).post(pay))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Journeys b to e: the attorney opens a matter through the conflict check, records time,
/// generates and sends the invoice; the client uploads a document, books an appointment from
/// free slots in their own time zone, and pays the invoice through the processor while the
/// attorney watches it turn paid live.
#[tokio::test]
async fn attorney_opens_and_bills_a_matter_client_uploads_books_and_pays() {
    let port = free_port();
    let portal = format!("http://127.0.0.1:{port}");
    let processor = fake_processor(portal.clone()).await;
    let app = spawn_app_with(|c| {
        c.bind = ([127, 0, 0, 1], port).into();
        c.public_url = url::Url::parse(&portal).unwrap();
        c.billing.payments_api_base = Some(url::Url::parse(&processor).unwrap());
        c.billing.payments_api_key = Some("sk_test_browser".to_string().into());
        c.billing.payments_webhook_secret = Some(WHSEC.to_string().into());
    })
    .await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    // An earlier matter with a recorded opposing party, for the conflict check to find.
    let earlier = new_case(&app, &lead, &client, "Doe v. Roe").await;
    let r = app
        .post(
            &format!("/api/v1/cases/{earlier}/parties"),
            Some(&lead.access),
            json!({"name": "Richard Roe", "kind": "opposing_party"}),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    // The attorney sees clients every day 09:00-12:00 New York time.
    let rules: Vec<Value> = (1..=7)
        .map(|d| json!({"weekday": d, "start": "09:00", "end": "12:00"}))
        .collect();
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/users/{}/availability", lead.id),
            Some(&lead.access),
            Some(json!({"timezone": "America/New_York", "rules": rules})),
        )
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);

    let driver = Chromedriver::start().await;
    let (ab, cb) = (driver.browser().await, driver.browser().await);
    sign_in(&ab, &app, &lead.email).await;
    sign_in(&cb, &app, &client.email).await;

    // e. A new matter: the conflict check runs first and finds the earlier opposing party.
    click(&ab, "#new-case-link").await;
    fill(&ab, "#title", "Doe v. Roe II").await;
    click(&ab, "#client_id option:nth-child(2)").await;
    fill(&ab, "#parties", "Richard Roe").await;
    click(&ab, "#new-case-form button[type=submit]").await;
    wait_for_xpath(&ab, "//section[@id='conflicts']//td[.='Richard Roe']").await;
    screenshots(&ab, "new-case-conflicts").await;
    click(&ab, "#reviewed").await;
    click(&ab, "#new-case-form button[type=submit]").await;
    let h1 = wait_for_xpath(&ab, "//h1[contains(., 'Doe v. Roe II')]").await;
    let heading = h1.text().await.unwrap();
    let url = ab.current_url().await.unwrap();
    let case_id = url.path().trim_start_matches("/cases/").to_owned();
    assert!(uuid::Uuid::parse_str(&case_id).is_ok(), "{url}");

    // Time, with the running timer filling in the field, then a plain edit.
    click(&ab, "#timer").await;
    let v = wait_for(&ab, "#hours").await.prop("value").await.unwrap();
    assert_eq!(v.as_deref(), Some("0:01"), "the timer fills in the time");
    click(&ab, "#timer").await;
    fill(&ab, "#hours", "1.5").await;
    fill(&ab, "#rate", "250").await;
    fill(&ab, "#description", "Reviewed the estate documents").await;
    click(&ab, "#time-form button[type=submit]").await;
    wait_for(&ab, "#page-done").await;
    click(&ab, "#invoice-form button[type=submit]").await;
    wait_for_xpath(&ab, "//dd[@id='invoice-status'][.='draft']").await;
    wait_for_xpath(&ab, "//td[.='Reviewed the estate documents']").await;
    wait_for_xpath(&ab, "//td[.='1:30 h']").await;
    wait_for_xpath(&ab, "//td[@class='amount'][.='375.00 USD']").await;
    click(&ab, "#send-form button[type=submit]").await;
    wait_for_xpath(&ab, "//dd[@id='invoice-status'][.='sent']").await;
    screenshots(&ab, "invoice-attorney").await;
    let invoice_url = ab.current_url().await.unwrap();

    // b. The client uploads a document through the file input (drag-and-drop uses the same
    // upload); the list shows it without a reload.
    cb.goto(&app.url(&format!("/cases/{case_id}")))
        .await
        .unwrap();
    wait_for_xpath(&cb, &format!("//h1[.='{heading}']")).await;
    mark_page(&cb).await;
    let file = app.data_dir.path().join("passport-scan.txt");
    std::fs::write(&file, "Passport scan, page 1\n").unwrap();
    let input = wait_for(&cb, "#upload-form input[type=file]").await;
    input.send_keys(&file.display().to_string()).await.unwrap();
    fill(&cb, "#doc-title", "Passport").await;
    click(&cb, "#upload-form button[type=submit]").await;
    wait_for_xpath(&cb, "//div[@id='documents-wrap']//a[.='Passport']").await;
    let done = cb
        .execute(
            "return document.getElementById('upload-progress').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(done.as_f64(), Some(100.0), "the progress bar ends full");
    assert_not_reloaded(&cb).await;
    // The sent invoice is on the client's matter page.
    wait_for_xpath(
        &cb,
        "//div[@id='invoices-wrap']//td[@class='status'][.='sent']",
    )
    .await;

    // c. Booking: slots in the client's zone (Europe/Berlin), not the attorney's.
    click(&cb, "#book-link").await;
    let tz = wait_for(&cb, "#tz").await.text().await.unwrap();
    assert_eq!(tz, "Europe/Berlin");
    let first = wait_for(&cb, "button.slot").await;
    let label = first.text().await.unwrap();
    let hour: u32 = label[..2].parse().unwrap();
    assert!(
        (14..=17).contains(&hour),
        "09:00-12:00 New York is afternoon in Berlin, got {label}"
    );
    screenshots(&cb, "book").await;
    first.click().await.unwrap();
    wait_for_xpath(&cb, "//h1[.='Appointment requested']").await;
    let when = wait_for(&cb, "#booked-when time")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        when.contains(&label[..5]) && (when.contains("CET") || when.contains("CEST")),
        "{when}"
    );
    let ics = cb
        .execute(
            "return fetch(document.getElementById('ics-link').href).then(r => r.text());",
            vec![],
        )
        .await
        .unwrap();
    let ics = ics.as_str().unwrap_or_default();
    assert!(
        ics.contains("BEGIN:VEVENT") && ics.contains("DTSTART"),
        "{ics}"
    );

    // d. Paying online: the attorney watches the matter; the client pays on the
    // processor's page and comes back to the invoice, which shows paid.
    ab.goto(&app.url(&format!("/cases/{case_id}")))
        .await
        .unwrap();
    wait_for(&ab, "#invoices-wrap").await;
    wait_live(&ab).await;
    mark_page(&ab).await;
    cb.goto(invoice_url.as_str()).await.unwrap();
    wait_for(&cb, "#pay-form").await;
    screenshots(&cb, "invoice-client").await;
    click(&cb, "#pay-form button[type=submit]").await;
    click(&cb, "#pay-now").await;
    wait_for_xpath(&cb, "//dd[@id='invoice-status'][.='paid']").await;
    wait_for(&cb, "#invoice-notice").await;
    assert!(
        cb.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("checkout=success")
    );
    wait_for_xpath(
        &ab,
        "//div[@id='invoices-wrap']//td[@class='status'][.='paid']",
    )
    .await;
    assert_not_reloaded(&ab).await;

    // e. The client's inbox and profile (the navigation marks where they are).
    cb.goto(&app.url("/messages")).await.unwrap();
    wait_for(&cb, "#message-search").await;
    wait_for(&cb, "nav a[aria-current='page'][href='/messages']").await;
    screenshots(&cb, "messages").await;
    cb.goto(&app.url("/profile")).await.unwrap();
    wait_for(&cb, "#profile-form").await;
    screenshots(&cb, "profile").await;
    for (path, name) in [("/documents", "documents"), ("/invoices", "invoices")] {
        cb.goto(&app.url(path)).await.unwrap();
        wait_for(&cb, &format!("nav a[aria-current='page'][href='{path}']")).await;
        screenshots(&cb, name).await;
    }

    // f. The staff pages of this matter and firm, and the admin's (each must render).
    let manage = format!("/cases/{case_id}/manage");
    for (path, name) in [
        ("/staff", "staff-hub"),
        (manage.as_str(), "staff-manage"),
        ("/staff/deadlines", "staff-deadlines"),
        ("/staff/availability", "staff-availability"),
    ] {
        ab.goto(&app.url(path)).await.unwrap();
        wait_for(&ab, "main h1").await;
        screenshots(&ab, name).await;
    }
    let admin = app.user("admin").await;
    let xb = driver.browser().await;
    sign_in(&xb, &app, &admin.email).await;
    for (path, name) in [
        ("/staff/users", "staff-users"),
        ("/staff/audit", "staff-audit"),
    ] {
        xb.goto(&app.url(path)).await.unwrap();
        wait_for(&xb, "main h1").await;
        screenshots(&xb, name).await;
    }

    for b in [ab, cb, xb] {
        b.close().await.unwrap();
    }
}
