//! The staff pages over the session cookie: who may open them (403 for a role that never acts,
//! 404 for a matter the caller cannot see), CSRF on every form, and that each form changes
//! what the API then answers. Also the new-matter flow: parties in the same transaction and
//! no way around the conflict-check review.

use reqwest::{Client, StatusCode, header};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Login, ORIGIN, PASSWORD, TestApp, spawn_app};

fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A signed-in browser and the CSRF token its pages carry.
struct Session {
    c: Client,
    csrf: String,
}

async fn sign_in(app: &TestApp, who: &Login) -> Session {
    let c = browser();
    let r = c
        .post(app.url("/login"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[
            ("email", who.email.as_str()),
            ("password", PASSWORD),
            ("next", "/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign in {}", who.email);
    let html = c
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = html
        .find(r#"name="csrf-token" content=""#)
        .expect("csrf meta")
        + 27;
    let csrf = html[start..].split('"').next().unwrap().to_owned();
    Session { c, csrf }
}

impl Session {
    async fn get(&self, app: &TestApp, path: &str) -> (StatusCode, String) {
        let r = self.c.get(app.url(path)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// A form post with the CSRF field, from our own origin.
    async fn post(
        &self,
        app: &TestApp,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut all = pairs.to_vec();
        all.push(("csrf", self.csrf.as_str()));
        self.post_raw(app, path, &all).await
    }

    async fn post_raw(
        &self,
        app: &TestApp,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let r = self
            .c
            .post(app.url(path))
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap();
        (status, location.unwrap_or(body))
    }
}

async fn api_json(app: &TestApp, path: &str, who: &Login) -> Value {
    let r = app.get(path, Some(&who.access)).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

async fn api_post(app: &TestApp, path: &str, who: &Login, body: Value) -> Value {
    let r = app.post(path, Some(&who.access), body).await;
    assert!(r.status().is_success(), "POST {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn new_case(app: &TestApp, lead: &Login, client: &Login, title: &str) -> String {
    let b = api_post(
        app,
        "/api/v1/cases",
        lead,
        json!({"title": title, "client_ids": [client.id]}),
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

async fn case_count(app: &TestApp, who: &Login) -> usize {
    api_json(app, "/api/v1/cases", who).await["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn trust_balance(app: &TestApp, who: &Login, case: &str) -> i64 {
    api_json(app, &format!("/api/v1/trust/ledger?case_id={case}"), who).await["balance_cents"]
        .as_i64()
        .unwrap()
}

/// The value of a hidden input.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn staff_pages_answer_403_or_404_to_the_wrong_people() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let other_attorney = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;

    // Not signed in: the sign-in page, then back here.
    let r = browser().get(app.url("/staff/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );

    let manage = format!("/cases/{case}/manage");
    let trust = format!("/cases/{case}/manage/trust");
    let admin_only = ["/staff/users", "/staff/reconciliations"];

    let c = sign_in(&app, &client).await;
    for path in [
        "/staff",
        "/staff/deadlines",
        "/staff/availability",
        "/staff/audit",
        manage.as_str(),
        trust.as_str(),
    ]
    .into_iter()
    .chain(admin_only)
    {
        let (s, html) = c.get(&app, path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "client on {path}");
        assert!(html.contains("Not allowed"), "{path}: {html}");
    }

    // An attorney of another matter: the matter does not exist for them.
    let o = sign_in(&app, &other_attorney).await;
    for path in [manage.as_str(), trust.as_str()] {
        let (s, html) = o.get(&app, path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(!html.contains("Estate of Doe"));
    }
    let (s, _) = o.get(&app, "/cases/not-a-uuid/manage").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for path in admin_only {
        let (s, _) = o.get(&app, path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "attorney on {path}");
    }
    // Attorneys have availability and see their own matters' audit entries.
    for path in [
        "/staff",
        "/staff/availability",
        "/staff/audit",
        "/staff/deadlines",
    ] {
        let (s, _) = o.get(&app, path).await;
        assert_eq!(s, StatusCode::OK, "attorney on {path}");
    }

    // A paralegal: staff pages yes, admin pages and attorney-only pages no.
    let p = sign_in(&app, &paralegal).await;
    for path in [
        "/staff/users",
        "/staff/reconciliations",
        "/staff/audit",
        "/staff/availability",
    ] {
        let (s, _) = p.get(&app, path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "paralegal on {path}");
    }
    let (s, html) = p.get(&app, "/staff").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("link-users") && html.contains("link-deadlines"));
    let (s, _) = p.get(&app, &manage).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "paralegal not on the matter");

    // The lead and an admin get every page, with no-store and labelled controls.
    let l = sign_in(&app, &lead).await;
    let (s, html) = l.get(&app, &manage).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(r#"<label for="p-name">"#) && html.contains(r#"id="p-name""#));
    assert!(html.contains("No deadlines yet") && html.contains("No parties recorded"));
    let (s, _) = l.get(&app, &trust).await;
    assert_eq!(s, StatusCode::OK);
    let (_, html) = l.get(&app, &format!("/cases/{case}")).await;
    assert!(html.contains(&format!("/cases/{case}/manage")));
    let a = sign_in(&app, &admin).await;
    for path in [
        "/staff",
        "/staff/users",
        "/staff/reconciliations",
        "/staff/audit",
        "/staff/availability",
        manage.as_str(),
        trust.as_str(),
    ] {
        let r = a.c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "admin on {path}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{path}");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_staff_form_refuses_a_post_without_the_csrf_field() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;
    let a = sign_in(&app, &admin).await;
    let x = Uuid::new_v4();
    let cid = client.id.to_string();
    let paths = [
        format!("/cases/{case}/manage/details"),
        format!("/cases/{case}/manage/status"),
        format!("/cases/{case}/manage/members"),
        format!("/cases/{case}/manage/members/{}/remove", client.id),
        format!("/cases/{case}/manage/parties"),
        format!("/cases/{case}/manage/parties/{x}/remove"),
        format!("/cases/{case}/manage/deadlines"),
        format!("/cases/{case}/manage/expenses"),
        format!("/cases/{case}/manage/trust/deposit"),
        format!("/cases/{case}/manage/trust/transfer"),
        format!("/cases/{case}/manage/trust/refund"),
        format!("/staff/invoices/{x}/payment"),
        "/staff/availability".into(),
        "/staff/availability/busy".into(),
        format!("/staff/availability/busy/{x}/remove"),
        format!("/staff/users/{}/status", client.id),
        "/staff/invitations".into(),
        "/staff/audit/verify".into(),
        "/staff/reconciliations".into(),
        "/cases/new".into(),
    ];
    for path in &paths {
        let pairs = [
            ("title", "Forged"),
            ("status", "disabled"),
            ("email", "forged@example.com"),
            ("role", "admin"),
            ("name", "Forged Party"),
            ("kind", "witness"),
            ("amount", "10.00"),
            ("client_id", cid.as_str()),
        ];
        let (s, body) = a.post_raw(&app, path, &pairs).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.contains("This form has expired"), "{path}");
        // A wrong token or another origin is no better.
        let mut with_bad = pairs.to_vec();
        with_bad.push(("csrf", "0000"));
        let (s, _) = a.post_raw(&app, path, &with_bad).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path} with a wrong token");
        let r =
            a.c.post(app.url(path))
                .header(header::ORIGIN, "http://evil.test")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form(&[("csrf", a.csrf.as_str()), ("title", "Forged")]))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} cross-site");
    }
    // Nothing changed.
    let c = api_json(&app, &format!("/api/v1/cases/{case}"), &admin).await;
    assert_eq!(c["title"], "Estate of Doe");
    let u = api_json(&app, &format!("/api/v1/users/{}", client.id), &admin).await;
    assert_eq!(u["status"], "active");
    let parties = api_json(&app, &format!("/api/v1/cases/{case}/parties"), &admin).await;
    assert_eq!(parties["items"].as_array().unwrap().len(), 0);
    let mail = api_json(&app, "/api/v1/admin/mail", &admin).await;
    assert!(!mail.to_string().contains("forged@example.com"));
}

#[tokio::test]
async fn a_new_matter_needs_the_reviewed_conflict_check_and_commits_with_its_parties() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let colleague = app.user("attorney").await;
    let client = app.user("client").await;
    let other_client = app.user("client").await;
    // Another matter already knows "Acme Holdings".
    let earlier = new_case(&app, &colleague, &other_client, "Earlier matter").await;
    api_post(
        &app,
        &format!("/api/v1/cases/{earlier}/parties"),
        &colleague,
        json!({"name": "Acme Holdings", "kind": "opposing_party"}),
    )
    .await;

    let s = sign_in(&app, &lead).await;
    let cid = client.id.to_string();
    let base = [
        ("title", "Roe v. Acme"),
        ("client_id", cid.as_str()),
        ("parties", "Acme Holdings\nJane Witness"),
    ];
    // A NUL in a field with no rule of its own (the description) is refused, nothing opened.
    let mut nul = base.to_vec();
    nul.push(("description", "before\u{0}after"));
    let (st, _) = s.post(&app, "/cases/new", &nul).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(case_count(&app, &lead).await, 0);
    // Confirming without having been shown the check: the check is shown, nothing is opened.
    let mut blind = base.to_vec();
    blind.push(("reviewed", "yes"));
    let (st, html) = s.post(&app, "/cases/new", &blind).await;
    assert_eq!(st, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("Possible conflicts found") && html.contains("Acme Holdings"));
    assert!(html.contains("changed since you reviewed it"));
    assert_eq!(case_count(&app, &lead).await, 0);
    // A forged token is no better.
    let mut forged = blind.clone();
    forged.push(("review_token", "deadbeef"));
    let (st, _) = s.post(&app, "/cases/new", &forged).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(case_count(&app, &lead).await, 0);

    // The first submit shows the check and carries a token of exactly these matches.
    let (st, html) = s.post(&app, "/cases/new", &base).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Possible conflicts found") && html.contains(r#"id="reviewed""#));
    let token = hidden(&html, "review_token").expect("review token");

    // The token does not cover other parties…
    let mut changed = vec![
        ("title", "Roe v. Acme"),
        ("client_id", cid.as_str()),
        ("parties", "Acme Holdings\nJane Witness\nNew Person"),
        ("reviewed", "yes"),
    ];
    changed.push(("review_token", token.as_str()));
    let (st, _) = s.post(&app, "/cases/new", &changed).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // …nor matches that appeared since the review.
    api_post(
        &app,
        &format!("/api/v1/cases/{earlier}/parties"),
        &colleague,
        json!({"name": "Jane Witness", "kind": "witness"}),
    )
    .await;
    let mut stale = blind.clone();
    stale.push(("review_token", token.as_str()));
    let (st, html) = s.post(&app, "/cases/new", &stale).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(case_count(&app, &lead).await, 0);
    let token = hidden(&html, "review_token").expect("a fresh token");

    // Confirming what was shown opens the matter with its parties.
    let mut ok = blind.clone();
    ok.push(("review_token", token.as_str()));
    let (st, location) = s.post(&app, "/cases/new", &ok).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{location}");
    let id = location.trim_start_matches("/cases/").to_owned();
    let parties = api_json(&app, &format!("/api/v1/cases/{id}/parties"), &lead).await;
    let names: Vec<&str> = parties["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme Holdings", "Jane Witness"]);
    let created = |id: String| {
        let app = &app;
        async move {
            app.state.audit.settle().await.unwrap();
            lawfirm_pro::audit::entity::entry::Entity::find()
                .all(app.state.db.conn())
                .await
                .unwrap()
                .into_iter()
                .find(|e| {
                    e.action == "case.create" && e.resource_id.as_deref() == Some(id.as_str())
                })
                .map(|e| serde_json::from_str::<Value>(&e.details).unwrap())
                .expect("case.create entry")
        }
    };
    let d = created(id.clone()).await;
    assert_eq!(d["conflict_check"], "reviewed", "{d}");
    assert!(d["conflict_matches"].as_u64().unwrap() >= 1, "{d}");

    // Through the API, parties given at creation are checked there and then: the result
    // is in the audit entry ("Acme Holdings" is now a party of the matter above).
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Second Acme", "client_ids": [client.id],
                   "parties": [{"name": "ACME Holdings", "kind": "opposing_party"}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = created(second).await;
    assert_eq!(d["conflict_check"], "automatic", "{d}");
    assert!(d["conflict_matches"].as_u64().unwrap() >= 1, "{d}");

    // One transaction: an invalid party means no matter at all (API, extended contract).
    let before = case_count(&app, &lead).await;
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Half made", "client_ids": [client.id],
                   "parties": [{"name": "Fine Name", "kind": "witness"}, {"name": "Bad", "kind": "nemesis"}]}),
        )
        .await;
    let b = crate::helpers::problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(b.to_string().contains("parties[1].kind"), "{b}");
    assert_eq!(case_count(&app, &lead).await, before);
    // Without parties the contract is unchanged.
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Plain", "client_ids": [client.id]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn matter_forms_change_what_the_api_answers() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;
    let s = sign_in(&app, &lead).await;
    let m = |rest: &str| format!("/cases/{case}/manage{rest}");

    let (st, loc) = s
        .post(
            &app,
            &m("/details"),
            &[
                ("title", "Estate of Doe (probate)"),
                ("description", "Will contest"),
            ],
        )
        .await;
    assert_eq!(
        (st, loc.as_str()),
        (StatusCode::SEE_OTHER, m("?done=details").as_str())
    );
    let (st, loc) = s
        .post(
            &app,
            &m("/status"),
            &[
                ("status", "pending"),
                ("phase", "discovery"),
                ("note", "Waiting for the court"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    let c = api_json(&app, &format!("/api/v1/cases/{case}"), &lead).await;
    assert_eq!(
        (
            c["title"].as_str(),
            c["description"].as_str(),
            c["status"].as_str(),
            c["phase"].as_str()
        ),
        (
            Some("Estate of Doe (probate)"),
            Some("Will contest"),
            Some("pending"),
            Some("discovery")
        )
    );
    // Nothing to change: a readable error, not a 500.
    let (st, html) = s
        .post(
            &app,
            &m("/status"),
            &[("status", "pending"), ("phase", "discovery")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Choose a different status"));

    // Members.
    let pid = paralegal.id.to_string();
    let (st, _) = s
        .post(
            &app,
            &m("/members"),
            &[("user_id", &pid), ("role", "paralegal")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let c = api_json(&app, &format!("/api/v1/cases/{case}"), &lead).await;
    assert!(c["members"].to_string().contains(&pid));
    let (st, html) = s
        .post(
            &app,
            &m("/members"),
            &[("user_id", &pid), ("role", "paralegal")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("already a member"));
    // The paralegal sees the page but may not change the team (the service says 403).
    let p = sign_in(&app, &paralegal).await;
    let (st, html) = p.get(&app, &m("")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains(r#"id="member-form""#));
    let (st, _) = p
        .post(&app, &m(&format!("/members/{}/remove", client.id)), &[])
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(&app, &m(&format!("/members/{pid}/remove")), &[])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let c = api_json(&app, &format!("/api/v1/cases/{case}"), &lead).await;
    assert!(!c["members"].to_string().contains(&pid));

    // A party: the conflict check runs and its matches are shown (every test client is
    // called "Test client").
    let (st, html) = s
        .post(
            &app,
            &m("/parties"),
            &[("name", "Test Client"), ("kind", "opposing_party")],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains(r#"id="party-conflicts""#) && html.contains("Possible conflicts found"),
        "{html}"
    );
    let (st, html) = s
        .post(
            &app,
            &m("/parties"),
            &[("name", "Zebulon Quartermaine"), ("kind", "witness")],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains(r#"id="no-party-conflicts""#));
    let (st, html) = s
        .post(&app, &m("/parties"), &[("name", "  "), ("kind", "witness")])
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Party not added"));
    let parties = api_json(&app, &format!("/api/v1/cases/{case}/parties"), &lead).await;
    let items = parties["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let first = items[0]["id"].as_str().unwrap();
    let (st, _) = s
        .post(&app, &m(&format!("/parties/{first}/remove")), &[])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let parties = api_json(&app, &format!("/api/v1/cases/{case}/parties"), &lead).await;
    assert_eq!(parties["items"].as_array().unwrap().len(), 1);
    // The API removes parties too (extension), with the same rules.
    let second = parties["items"][0]["id"].as_str().unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}/parties/{second}"),
            Some(&client.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}/parties/{second}"),
            Some(&lead.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Deadlines, also on the upcoming list.
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(10)).to_string();
    let (st, _) = s
        .post(
            &app,
            &m("/deadlines"),
            &[
                ("title", "File the answer"),
                ("due_on", &due),
                ("kind", "filing"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, html) = s
        .post(
            &app,
            &m("/deadlines"),
            &[("title", "No date"), ("due_on", "soon"), ("kind", "filing")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Enter the due date"));
    let d = api_json(&app, &format!("/api/v1/cases/{case}/deadlines"), &lead).await;
    assert_eq!(d["items"][0]["title"], "File the answer");
    assert_eq!(d["items"].as_array().unwrap().len(), 1);
    let (_, html) = s.get(&app, "/staff/deadlines").await;
    assert!(html.contains("File the answer"));
    // The list across matters is a read of client data: audited with the cases it showed.
    app.state.audit.settle().await.unwrap();
    let listed = lawfirm_pro::audit::entity::entry::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "case.deadlines_list" && e.actor_id == Some(lead.id))
        .collect::<Vec<_>>();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].details.contains(&case.to_string()),
        "{:?}",
        listed[0].details
    );
    // Marked done from the page: the API shows it done and it leaves the upcoming list;
    // reopened, it comes back. A client of the case may not.
    let did = d["items"][0]["id"].as_str().unwrap().to_owned();
    let cl = sign_in(&app, &client).await;
    let (st, _) = cl
        .post(
            &app,
            &m(&format!("/deadlines/{did}")),
            &[("completed", "yes")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &app,
            &m(&format!("/deadlines/{did}")),
            &[("completed", "yes")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let d = api_json(&app, &format!("/api/v1/cases/{case}/deadlines"), &lead).await;
    assert!(d["items"][0]["completed_at"].is_string(), "{d}");
    let (_, html) = s.get(&app, "/staff/deadlines").await;
    assert!(
        !html.contains("File the answer"),
        "done deadlines leave the list"
    );
    let (_, html) = s.get(&app, &m("?done=deadline_done")).await;
    assert!(
        html.contains("Reopen") && html.contains("Deadline marked done"),
        "{html}"
    );
    let (st, _) = s
        .post(
            &app,
            &m(&format!("/deadlines/{did}")),
            &[("completed", "no")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, html) = s.get(&app, "/staff/deadlines").await;
    assert!(html.contains("File the answer"));

    // Expenses.
    let today = chrono::Utc::now().date_naive().to_string();
    let (st, _) = s
        .post(
            &app,
            &m("/expenses"),
            &[
                ("incurred_on", &today),
                ("amount", "25.50"),
                ("description", "Court fee"),
                ("expense_code", "E112"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, html) = s
        .post(
            &app,
            &m("/expenses"),
            &[
                ("incurred_on", &today),
                ("amount", "25.505"),
                ("description", "Too precise"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("an amount like 25.00"));
    let e = api_json(&app, &format!("/api/v1/cases/{case}/expenses"), &lead).await;
    assert_eq!(e["items"].as_array().unwrap().len(), 1);
    assert_eq!(e["items"][0]["amount_cents"], 2550);
    let (_, html) = s.get(&app, &m("")).await;
    assert!(html.contains("Court fee") && html.contains("25.50"));

    // Time: "1:75" is not a time (review leftover), and nothing is recorded.
    let (st, html) = s
        .post(
            &app,
            &format!("/cases/{case}/time"),
            &[
                ("hours", "1:75"),
                ("description", "Research"),
                ("rate", "200"),
                ("billable", "yes"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("below 60"), "{html}");
    for bad in ["-1:30", "1:3x", "abc"] {
        let (st, _) = s
            .post(
                &app,
                &format!("/cases/{case}/time"),
                &[("hours", bad), ("description", "Research"), ("rate", "200")],
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let t = api_json(&app, &format!("/api/v1/cases/{case}/time-entries"), &lead).await;
    assert_eq!(t["items"].as_array().unwrap().len(), 0);
    let (st, _) = s
        .post(
            &app,
            &format!("/cases/{case}/time"),
            &[
                ("hours", "1:45"),
                ("description", "Research"),
                ("rate", "200"),
                ("billable", "yes"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let t = api_json(&app, &format!("/api/v1/cases/{case}/time-entries"), &lead).await;
    assert_eq!(t["items"][0]["minutes"], 105);
}

#[tokio::test]
async fn trust_payment_and_reconciliation_forms_move_money_the_api_sees() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;
    api_post(
        &app,
        &format!("/api/v1/cases/{case}/members"),
        &lead,
        json!({"user_id": paralegal.id, "role": "paralegal"}),
    )
    .await;
    let s = sign_in(&app, &lead).await;
    let t = |rest: &str| format!("/cases/{case}/manage/trust{rest}");
    let cid = client.id.to_string();

    let (_, html) = s.get(&app, &t("")).await;
    assert!(html.contains("No trust money for this client"));
    let (st, loc) = s
        .post(
            &app,
            &t("/deposit"),
            &[
                ("client_id", &cid),
                ("amount", "500.00"),
                ("reference", "cheque 1001"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    assert_eq!(trust_balance(&app, &lead, &case).await, 50_000);
    let (st, html) = s
        .post(
            &app,
            &t("/deposit"),
            &[("client_id", &cid), ("amount", "lots")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Enter an amount"));
    let (_, html) = s.get(&app, &t("")).await;
    assert!(html.contains("500.00") && html.contains("cheque 1001"));

    // An invoice of 100.00, sent.
    api_post(&app, &format!("/api/v1/cases/{case}/time-entries"), &lead,
        json!({"work_date": chrono::Utc::now().date_naive(), "minutes": 60, "rate_cents": 10_000, "description": "Advice", "billable": true})).await;
    let inv = api_post(&app, "/api/v1/invoices", &lead, json!({"case_id": case})).await;
    let inv = inv["id"].as_str().unwrap().to_owned();
    let (_, html) = s.get(&app, &format!("/staff/invoices/{inv}/payment")).await;
    assert!(html.contains("send it first"));
    api_post(
        &app,
        &format!("/api/v1/invoices/{inv}/send"),
        &lead,
        json!({}),
    )
    .await;

    // 30.00 from trust, 20.00 by cheque.
    let (st, loc) = s
        .post(
            &app,
            &t("/transfer"),
            &[("client_id", &cid), ("invoice_id", &inv), ("amount", "30")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    assert_eq!(trust_balance(&app, &lead, &case).await, 47_000);
    let (st, loc) = s
        .post(
            &app,
            &format!("/staff/invoices/{inv}/payment"),
            &[
                ("amount", "20.00"),
                ("method", "check"),
                ("reference", "cheque 42"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    let i = api_json(&app, &format!("/api/v1/invoices/{inv}"), &lead).await;
    assert_eq!(
        (i["paid_cents"].as_i64(), i["balance_cents"].as_i64()),
        (Some(5000), Some(5000))
    );
    // Overpaying is refused readably.
    let (st, html) = s
        .post(
            &app,
            &format!("/staff/invoices/{inv}/payment"),
            &[("amount", "60.00"), ("method", "wire")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Payment not recorded"));
    // The client may see the invoice but not record payments; an outsider cannot see it.
    let c = sign_in(&app, &client).await;
    let (st, _) = c.get(&app, &format!("/staff/invoices/{inv}/payment")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = c
        .post(
            &app,
            &format!("/staff/invoices/{inv}/payment"),
            &[("amount", "1.00"), ("method", "check")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Refunds: the paralegal is refused (and not offered the form); the attorney refunds.
    let p = sign_in(&app, &paralegal).await;
    let (st, html) = p.get(&app, &t("")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains(r#"id="refund-form""#) && html.contains(r#"id="deposit-form""#));
    let (st, _) = p
        .post(
            &app,
            &t("/refund"),
            &[("client_id", &cid), ("amount", "10.00")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &app,
            &t("/refund"),
            &[
                ("client_id", &cid),
                ("amount", "10.00"),
                ("reference", "cheque 7"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(trust_balance(&app, &lead, &case).await, 46_000);
    let (st, html) = s
        .post(
            &app,
            &t("/refund"),
            &[("client_id", &cid), ("amount", "1000.00")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Nothing recorded"));
    assert_eq!(trust_balance(&app, &lead, &case).await, 46_000);

    // Reconciliation (admins): last month had no trust money, so a zero bank balance agrees.
    let (st, _) = p.get(&app, "/staff/reconciliations").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &app,
            "/staff/reconciliations",
            &[("month", "2026-01"), ("bank_balance", "0")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let a = sign_in(&app, &admin).await;
    let (_, html) = a.get(&app, "/staff/reconciliations").await;
    assert!(html.contains("No month reconciled yet"));
    let last = hidden_month(&html);
    let (st, html) = a
        .post(
            &app,
            "/staff/reconciliations",
            &[
                ("month", &last),
                ("bank_balance", "0.00"),
                ("note", "statement 12"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("{last}: balanced")));
    let (st, html) = a
        .post(
            &app,
            "/staff/reconciliations",
            &[("month", "2999-01"), ("bank_balance", "0")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("has not ended"));
    let list = api_json(&app, "/api/v1/trust/reconciliations", &admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["note"], "statement 12");
}

/// The month the reconciliation form proposes (the last one that has ended).
fn hidden_month(html: &str) -> String {
    let marker = r#"name="month" type="month" value=""#;
    let start = html.find(marker).expect("month input") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn admins_invite_and_deactivate_through_the_pages() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let a = sign_in(&app, &admin).await;

    let (st, html) = a
        .post(
            &app,
            "/staff/invitations",
            &[("email", "new.person@example.com"), ("role", "paralegal")],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Invitation mailed to new.person@example.com"));
    // The link is in the mail, not on the page.
    assert!(!html.contains("token="));
    let mail = api_json(&app, "/api/v1/admin/mail", &admin).await;
    let sent = mail["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["to_address"] == "new.person@example.com" && m["kind"] == "invitation");
    assert!(sent, "{mail}");
    let (st, html) = a
        .post(
            &app,
            "/staff/invitations",
            &[("email", "not an email"), ("role", "client")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("No invitation sent"));
    let (st, html) = a
        .post(
            &app,
            "/staff/invitations",
            &[("email", client.email.as_str()), ("role", "client")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("already exists"));
    // Attorneys invite clients through the API, but this admin page is not theirs.
    let t = sign_in(&app, &attorney).await;
    let (st, _) = t
        .post(
            &app,
            "/staff/invitations",
            &[("email", "x@example.com"), ("role", "client")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Deactivate and reactivate.
    let (_, html) = a.get(&app, "/staff/users?role=client").await;
    assert!(html.contains(&client.email) && !html.contains(&attorney.email));
    let path = format!("/staff/users/{}/status", client.id);
    let (st, _) = a.post(&app, &path, &[("status", "disabled")]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let u = api_json(&app, &format!("/api/v1/users/{}", client.id), &admin).await;
    assert_eq!(u["status"], "disabled");
    let (_, html) = a.get(&app, "/staff/users?status=disabled").await;
    assert!(html.contains(&client.email) && html.contains("Reactivate"));
    let (st, _) = a.post(&app, &path, &[("status", "active")]).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let u = api_json(&app, &format!("/api/v1/users/{}", client.id), &admin).await;
    assert_eq!(u["status"], "active");
    let (st, _) = t.post(&app, &path, &[("status", "disabled")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, html) = a.get(&app, "/staff/users?role=wizard").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("role"));
}

#[tokio::test]
async fn the_audit_viewer_filters_pages_and_verifies_the_chain() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Estate of Doe").await;
    let other = new_case(&app, &lead, &client, "Second matter").await;
    // Enough entries for more than one page (50 a page).
    for _ in 0..30 {
        app.get(&format!("/api/v1/cases/{case}"), Some(&lead.access))
            .await;
        app.get(&format!("/api/v1/cases/{other}"), Some(&lead.access))
            .await;
    }
    let a = sign_in(&app, &admin).await;

    let (st, html) = a.get(&app, "/staff/audit?action=case.create").await;
    assert_eq!(st, StatusCode::OK);
    let actions = html.matches(r#"<td class="action">"#).count();
    assert_eq!(actions, 2, "{html}");
    assert_eq!(
        html.matches(r#"<td class="action">case.create</td>"#)
            .count(),
        2
    );

    let (_, html) = a
        .get(
            &app,
            &format!("/staff/audit?case_id={other}&action=case.create"),
        )
        .await;
    assert_eq!(html.matches(r#"<td class="action">"#).count(), 1);
    let (_, html) = a
        .get(
            &app,
            &format!("/staff/audit?actor={}&action=case.create", lead.email),
        )
        .await;
    assert_eq!(html.matches(r#"<td class="action">"#).count(), 2);
    let (_, html) = a
        .get(
            &app,
            &format!("/staff/audit?actor={}&action=case.create", client.email),
        )
        .await;
    assert!(html.contains(r#"id="no-entries""#));
    let today = chrono::Utc::now().date_naive();
    let (_, html) = a
        .get(
            &app,
            &format!(
                "/staff/audit?action=case.create&from={}&to={}",
                today - chrono::Days::new(1),
                today + chrono::Days::new(1)
            ),
        )
        .await;
    assert_eq!(html.matches(r#"<td class="action">"#).count(), 2);
    let (_, html) = a
        .get(
            &app,
            &format!(
                "/staff/audit?action=case.create&to={}",
                today - chrono::Days::new(2)
            ),
        )
        .await;
    assert!(html.contains(r#"id="no-entries""#));
    let (st, html) = a.get(&app, "/staff/audit?from=2026-13-40").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("YYYY-MM-DD"));
    let (st, html) = a.get(&app, "/staff/audit?actor=nobody@example.com").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("No user has the email"));

    // Keyset pages: the older page starts below the first page's last id.
    let (_, first) = a.get(&app, "/staff/audit").await;
    let ids = |html: &str| -> Vec<i64> {
        html.split("<tr><td>")
            .skip(1)
            .filter_map(|r| r.split('<').next()?.parse().ok())
            .collect()
    };
    let page1 = ids(&first);
    assert_eq!(page1.len(), 50);
    let older = first.find(r#"" id="older""#).expect("older link");
    let start = first[..older].rfind("/staff/audit?").unwrap() + "/staff/audit".len();
    let next = first[start..older].replace("&amp;", "&");
    let (st, second) = a.get(&app, &format!("/staff/audit{next}")).await;
    assert_eq!(st, StatusCode::OK);
    let page2 = ids(&second);
    assert!(
        !page2.is_empty() && page2[0] < *page1.last().unwrap(),
        "{page1:?} {page2:?}"
    );

    // Attorneys see their matters' entries but get no verify button; a paralegal gets 403.
    let l = sign_in(&app, &lead).await;
    let (st, html) = l.get(&app, "/staff/audit?action=case.create").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!html.contains(r#"id="verify-form""#));
    let (st, _) = l.post(&app, "/staff/audit/verify", &[]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The verify button.
    let (st, html) = a.post(&app, "/staff/audit/verify", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        html.contains(r#"id="verify-ok""#) && html.contains("The chain is intact"),
        "{html}"
    );
    // An attacker with database access lifts the append-only guard and edits a row.
    if app.state.db.backend() == sea_orm::DbBackend::Postgres {
        app.sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            .await;
    } else {
        app.sql("DROP TRIGGER audit_log_no_update").await;
    }
    app.sql("UPDATE audit_log SET action = 'auth.logout' WHERE id = 2")
        .await;
    let (_, html) = a.post(&app, "/staff/audit/verify", &[]).await;
    assert!(
        html.contains(r#"id="verify-bad""#) && html.contains("broken at entry 2"),
        "{html}"
    );
}

#[tokio::test]
async fn an_attorney_sets_weekly_hours_and_time_off() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let s = sign_in(&app, &attorney).await;
    let (st, html) = s.get(&app, "/staff/availability").await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("No time off planned") && html.contains(r#"value="Europe/Berlin""#));

    let (st, loc) = s
        .post(
            &app,
            "/staff/availability",
            &[
                ("timezone", "Europe/Berlin"),
                ("start_1_0", "09:00"),
                ("end_1_0", "12:00"),
                ("start_1_1", "13:00"),
                ("end_1_1", "17:00"),
                ("start_3_0", "10:00"),
                ("end_3_0", "15:00"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    let doc = api_json(
        &app,
        &format!("/api/v1/users/{}/availability", attorney.id),
        &attorney,
    )
    .await;
    assert_eq!(doc["rules"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(
        doc["rules"][0],
        json!({"weekday": 1, "start": "09:00", "end": "12:00"})
    );
    let (_, html) = s.get(&app, "/staff/availability").await;
    assert!(html.contains(r#"name="start_1_1" value="13:00""#));

    let (st, html) = s
        .post(
            &app,
            "/staff/availability",
            &[
                ("timezone", "Mars/Olympus"),
                ("start_2_0", "09:00"),
                ("end_2_0", "08:00"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("Availability not saved") && html.contains("IANA"),
        "{html}"
    );
    let doc = api_json(
        &app,
        &format!("/api/v1/users/{}/availability", attorney.id),
        &attorney,
    )
    .await;
    assert_eq!(doc["rules"].as_array().unwrap().len(), 3);

    let day = chrono::Utc::now().date_naive() + chrono::Days::new(20);
    let (st, loc) = s
        .post(
            &app,
            "/staff/availability/busy",
            &[
                ("starts_at", &format!("{day}T09:00")),
                ("ends_at", &format!("{day}T17:00")),
                ("reason", "court"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{loc}");
    let busy = api_json(
        &app,
        &format!(
            "/api/v1/users/{}/busy?from={}&to={}",
            attorney.id,
            day,
            day + chrono::Days::new(1)
        ),
        &attorney,
    )
    .await;
    let items = busy["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    // 09:00 in Berlin is 07:00 or 08:00 UTC.
    let starts = items[0]["starts_at"].as_str().unwrap();
    assert!(
        starts.contains("T07:00:00") || starts.contains("T08:00:00"),
        "{starts}"
    );
    let (st, html) = s
        .post(
            &app,
            "/staff/availability/busy",
            &[("starts_at", "tomorrow"), ("ends_at", "")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Time off not added"));
    let id = items[0]["id"].as_str().unwrap();
    let (st, _) = s
        .post(&app, &format!("/staff/availability/busy/{id}/remove"), &[])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let busy = api_json(
        &app,
        &format!(
            "/api/v1/users/{}/busy?from={}&to={}",
            attorney.id,
            day,
            day + chrono::Days::new(1)
        ),
        &attorney,
    )
    .await;
    assert_eq!(busy["items"].as_array().unwrap().len(), 0);
}

/// A busy month: the dashboard card shows 50 deadlines and links to the full list, which
/// pages 100 at a time ("Later deadlines"), together all of them once, soonest first.
#[tokio::test]
async fn the_deadline_pages_show_a_busy_month_in_full() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &client, "Busy month").await;
    let today = chrono::Utc::now().date_naive();
    for i in 0..120u64 {
        let due = (today + chrono::Days::new(i % 30)).to_string();
        api_post(
            &app,
            &format!("/api/v1/cases/{case}/deadlines"),
            &lead,
            json!({"title": format!("Step {i:03}"), "due_on": due, "kind": "filing"}),
        )
        .await;
    }
    let s = sign_in(&app, &lead).await;
    let (st, html) = s.get(&app, "/").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(html.matches("Step ").count(), 50, "the card shows fifty");
    assert!(
        html.contains(r#"href="/staff/deadlines?days=30""#),
        "{html}"
    );

    let (st, first) = s.get(&app, "/staff/deadlines?days=30").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(first.matches("Step ").count(), 100);
    let marker = r#"id="later-deadlines" href=""#;
    let at = first.find(marker).expect("a later link") + marker.len();
    let next = first[at..first[at..].find('"').unwrap() + at].replace("&amp;", "&");
    let (st, second) = s.get(&app, &next).await;
    assert_eq!(st, StatusCode::OK, "{next}");
    assert_eq!(second.matches("Step ").count(), 20);
    assert!(
        !second.contains("later-deadlines"),
        "the last page has no later link"
    );
    let titles = |html: &str| -> Vec<String> {
        html.match_indices("Step ")
            .map(|(i, _)| html[i..i + 8].to_owned())
            .collect()
    };
    let mut all = titles(&first);
    all.extend(titles(&second));
    // Soonest first, in the order they were added within a day (time-ordered ids).
    let mut want: Vec<u64> = (0..120).collect();
    want.sort_by_key(|i| (i % 30, *i));
    let want: Vec<String> = want.iter().map(|i| format!("Step {i:03}")).collect();
    assert_eq!(all, want, "every deadline once, in due order");
    let (st, _) = s.get(&app, "/staff/deadlines?days=30&cursor=garbage").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}
