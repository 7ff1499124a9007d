//! Users: the staff directory, administration, profiles, invitations, registration, first run.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use lawfirm_pro::users::entity::invitation;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Login, PASSWORD, TestApp, problem, spawn_app, spawn_app_with};

/// A password that passes the policy and differs from the harness default.
const OTHER_PASSWORD: &str = "violet kettle marches sideways";

/// `spawn_app`, then make sure the server answers before the test starts.
async fn ready(app: TestApp) -> TestApp {
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK, "server answers");
    app
}

async fn app() -> TestApp {
    ready(spawn_app().await).await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET path` that must answer 200 with a page; returns the body.
async fn page(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let b: Value = r.json().await.unwrap();
    assert!(b["items"].is_array(), "{b}");
    assert!(
        b.get("next_cursor").is_some(),
        "next_cursor present (null or string): {b}"
    );
    b
}

fn ids(b: &Value) -> Vec<String> {
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `field` of each entry of a validation problem's `errors`.
fn error_fields(b: &Value) -> HashSet<String> {
    b["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("validation problem lists errors: {b}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

fn set(fields: &[&str]) -> HashSet<String> {
    fields.iter().map(|f| f.to_string()).collect()
}

/// Every field of the user object, and none of the secrets.
fn assert_user_shape(u: &Value) {
    for k in [
        "id",
        "email",
        "name",
        "role",
        "phone",
        "timezone",
        "totp_enabled",
        "status",
        "created_at",
    ] {
        assert!(u.get(k).is_some(), "user has `{k}`: {u}");
    }
    for k in ["password_hash", "password", "totp_secret", "totp_last_step"] {
        assert!(u.get(k).is_none(), "user must not carry `{k}`: {u}");
    }
    u["created_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .expect("created_at is RFC 3339");
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> StatusCode {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .status()
}

// ---------------------------------------------------------------------------------------
// GET /users

#[tokio::test]
async fn clients_may_not_list_users() {
    let app = app().await;
    let client = app.user("client").await;
    let b = problem(
        app.get("/api/v1/users", Some(&client.access)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b.get("items").is_none(), "{b}");
    problem(
        app.get("/api/v1/users", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn staff_list_users_and_only_admins_see_disabled_accounts() {
    let app = app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let (client_id, _) = app.create_user("client").await;
    let (gone_id, _) = app.create_user("client").await;
    let r = app
        .patch(
            &format!("/api/v1/users/{gone_id}"),
            Some(&admin.access),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let active: HashSet<String> = [admin.id, attorney.id, paralegal.id, client_id]
        .iter()
        .map(Uuid::to_string)
        .collect();

    let b = page(&app, "/api/v1/users?limit=100", &admin.access).await;
    let seen: HashSet<String> = ids(&b).into_iter().collect();
    assert!(seen.is_superset(&active), "admin sees every active user");
    assert!(
        seen.contains(&gone_id.to_string()),
        "admin sees disabled users"
    );
    assert_eq!(seen.len(), 5);
    let gone = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == gone_id.to_string())
        .unwrap();
    assert_eq!(gone["status"], "disabled");
    b["items"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(assert_user_shape);

    // An admin may also ask for the disabled ones only.
    let b = page(&app, "/api/v1/users?status=disabled", &admin.access).await;
    assert_eq!(ids(&b), vec![gone_id.to_string()]);

    for who in [&attorney, &paralegal] {
        let b = page(&app, "/api/v1/users?limit=100", &who.access).await;
        let seen: HashSet<String> = ids(&b).into_iter().collect();
        assert_eq!(seen, active, "{} sees exactly the active users", who.email);
        assert!(
            b["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["status"] == "active")
        );
        // Asking for disabled users does not reveal them either.
        let b = page(&app, "/api/v1/users?status=disabled", &who.access).await;
        assert!(!ids(&b).contains(&gone_id.to_string()), "{b}");
    }
    // Which clients a page showed, and to whom, is in the trail; a page of staff only is not.
    page(&app, "/api/v1/users?role=attorney", &paralegal.access).await;
    let log = page(&app, "/api/v1/audit?action=user.list", &admin.access).await;
    let by: Vec<(String, Vec<Value>)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor_id"].as_str().unwrap().to_owned(),
                e["details"]["client_ids"].as_array().unwrap().clone(),
            )
        })
        .collect();
    let of = |who: &Login| -> Vec<&Vec<Value>> {
        by.iter()
            .filter(|(a, _)| *a == who.id.to_string())
            .map(|(_, c)| c)
            .collect()
    };
    // Two pages each (the staff's "disabled" page shows the active ones); not the staff page.
    let shown = vec![json!(client_id.to_string())];
    for who in [&attorney, &paralegal] {
        assert_eq!(of(who), vec![&shown, &shown], "{log}");
    }
    let admin_pages = of(&admin);
    assert_eq!(admin_pages.len(), 2, "{log}");
    assert!(
        admin_pages
            .iter()
            .all(|c| c.contains(&json!(gone_id.to_string()))),
        "{log}"
    );
}

/// The directory's audit entry names the clients the page showed, not the row read ahead to
/// know whether another page follows.
#[tokio::test]
async fn a_directory_page_audits_only_the_clients_it_shows() {
    let app = app().await;
    let admin = app.user("admin").await;
    let paralegal = app.user("paralegal").await;
    app.create_user("client").await;
    app.create_user("client").await;
    let b = page(&app, "/api/v1/users?role=client&limit=1", &paralegal.access).await;
    let shown = ids(&b);
    assert_eq!(shown.len(), 1);
    assert!(b["next_cursor"].is_string(), "{b}");
    let log = page(&app, "/api/v1/audit?action=user.list", &admin.access).await;
    let entry = &log["items"][0];
    assert_eq!(entry["details"]["client_ids"], json!(shown), "{log}");
    assert_eq!(entry["details"]["count"], 1, "{log}");
}

#[tokio::test]
async fn q_filters_by_name_or_email_case_insensitively() {
    let app = app().await;
    let admin = app.user("admin").await;
    let mut made = std::collections::HashMap::new();
    for (name, email) in [
        ("Zelda Fitzgerald", "zf@alpha.example.com"),
        ("Ann Lee", "ANNA.Q@Beta.example.com"),
        ("Bob Stone", "bob@zeldaworks.example.com"),
    ] {
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin.access),
                json!({"email": email, "name": name, "role": "paralegal", "password": OTHER_PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{name}");
        let b: Value = r.json().await.unwrap();
        made.insert(name, b["id"].as_str().unwrap().to_owned());
    }
    let found = |b: &Value| -> HashSet<String> { ids(b).into_iter().collect() };
    let expect =
        |names: &[&str]| -> HashSet<String> { names.iter().map(|n| made[n].clone()).collect() };

    // Name matches "Zelda Fitzgerald"; email matches bob@zeldaworks.
    let b = page(&app, "/api/v1/users?q=ZELDA", &admin.access).await;
    assert_eq!(found(&b), expect(&["Zelda Fitzgerald", "Bob Stone"]));
    // Emails are stored lower-cased, and a mixed-case query finds them.
    let b = page(&app, "/api/v1/users?q=Anna.Q%40beta", &admin.access).await;
    assert_eq!(found(&b), expect(&["Ann Lee"]));
    let b = page(&app, "/api/v1/users?q=lEe", &admin.access).await;
    assert_eq!(found(&b), expect(&["Ann Lee"]));
    let b = page(&app, "/api/v1/users?q=no-such-person", &admin.access).await;
    assert!(found(&b).is_empty(), "{b}");
    // LIKE wildcards in the query are literal characters, not patterns.
    for wild in ["%", "_", "Ann%Lee", "Ann_Lee"] {
        let b = page(
            &app,
            &format!("/api/v1/users?q={}", enc(wild)),
            &admin.access,
        )
        .await;
        assert!(found(&b).is_empty(), "q={wild:?} matched {b}");
    }
    // Non-admin staff search the same way.
    let attorney = app.user("attorney").await;
    let b = page(&app, "/api/v1/users?q=zelda", &attorney.access).await;
    assert_eq!(found(&b), expect(&["Zelda Fitzgerald", "Bob Stone"]));
}

#[tokio::test]
async fn keyset_pagination_walks_every_user_once() {
    let app = app().await;
    let admin = app.user("admin").await;
    // Same names (the harness names users "Test <role>") make the id tie-breaker matter.
    for role in [
        "client",
        "client",
        "client",
        "attorney",
        "paralegal",
        "attorney",
    ] {
        app.create_user(role).await;
    }
    for name in ["aaron Early", "Zed Late", "Test client"] {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let r = app
            .post(
                "/api/v1/users",
                Some(&admin.access),
                json!({"email": email, "name": name, "role": "client", "password": OTHER_PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all = ids(&page(&app, "/api/v1/users?limit=100", &admin.access).await);
    assert_eq!(all.len(), 10);

    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=2&cursor={}", enc(c)),
            None => "/api/v1/users?limit=2".to_owned(),
        };
        let b = page(&app, &path, &admin.access).await;
        let got = ids(&b);
        assert!(got.len() <= 2, "{b}");
        walked.extend(got);
        pages += 1;
        assert!(pages <= 10, "pagination does not terminate");
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "no duplicates: {walked:?}");
    assert_eq!(walked, all, "pages in the same order as one big page");
    assert_eq!(pages, 5);
}

#[tokio::test]
async fn bad_limits_and_cursors_are_422() {
    let app = app().await;
    let admin = app.user("admin").await;
    for q in ["limit=0", "limit=101", "limit=-1"] {
        let b = problem(
            app.get(&format!("/api/v1/users?{q}"), Some(&admin.access))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&b), set(&["limit"]), "{q}: {b}");
    }
    problem(
        app.get("/api/v1/users?limit=lots", Some(&admin.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // Not base64; base64 of the wrong JSON shape.
    use base64::Engine;
    let wrong_shape = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\"hello\"");
    for c in ["not-a-cursor!!", wrong_shape.as_str()] {
        let b = problem(
            app.get(
                &format!("/api/v1/users?cursor={}", enc(c)),
                Some(&admin.access),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&b), set(&["cursor"]), "{c}: {b}");
    }
    page(&app, "/api/v1/users?limit=1", &admin.access).await;
    page(&app, "/api/v1/users?limit=100", &admin.access).await;
}

// ---------------------------------------------------------------------------------------
// POST /users

#[tokio::test]
async fn admin_creates_a_user_without_leaking_the_hash() {
    let app = app().await;
    let admin = app.user("admin").await;
    let r = app
        .post(
            "/api/v1/users",
            Some(&admin.access),
            json!({
                "email": "  New.Person@Example.com ",
                "name": "New Person",
                "role": "paralegal",
                "password": OTHER_PASSWORD,
                "phone": "+1 (555) 010-2030",
                "timezone": "America/New_York",
            }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("password") && !text.contains("$argon2"),
        "{text}"
    );
    let u: Value = serde_json::from_str(&text).unwrap();
    assert_user_shape(&u);
    assert_eq!(u["email"], "new.person@example.com");
    assert_eq!(u["name"], "New Person");
    assert_eq!(u["role"], "paralegal");
    assert_eq!(u["phone"], "+1 (555) 010-2030");
    assert_eq!(u["timezone"], "America/New_York");
    assert_eq!(u["totp_enabled"], false);
    assert_eq!(u["status"], "active");

    // It exists and can sign in with its password, under any capitalisation of the email.
    let r = app
        .get(
            &format!("/api/v1/users/{}", u["id"].as_str().unwrap()),
            Some(&admin.access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        login_status(&app, "NEW.person@example.com", OTHER_PASSWORD).await,
        StatusCode::OK
    );

    // The same address in other letters is the same address.
    let b = problem(
        app.post(
            "/api/v1/users",
            Some(&admin.access),
            json!({"email": "NEW.PERSON@EXAMPLE.COM", "name": "Twin", "role": "client", "password": OTHER_PASSWORD}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(!b.to_string().contains("$argon2"));
}

#[tokio::test]
async fn invalid_new_users_are_422_naming_each_field() {
    let app = app().await;
    let admin = app.user("admin").await;
    let post = |body: Value| app.post("/api/v1/users", Some(&admin.access), body);

    let b = problem(
        post(json!({"email": "not an email", "name": "Bad", "role": "root", "timezone": "Mars/Olympus", "password": "short"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        error_fields(&b),
        set(&["email", "role", "timezone", "password"]),
        "{b}"
    );

    let good = |over: Value| {
        let mut v = json!({"email": format!("{}@example.com", Uuid::new_v4().simple()), "name": "Good", "role": "client", "password": OTHER_PASSWORD});
        for (k, val) in over.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    for (over, field) in [
        (json!({"email": "ann@localhost"}), "email"),
        (json!({"role": "superuser"}), "role"),
        (json!({"timezone": "Europe/Atlantis"}), "timezone"),
        (json!({"password": "elevenchars"}), "password"),
        (json!({"password": "password1234"}), "password"),
        (
            json!({"email": "long.address.here@example.com", "password": "long.address.here@example.com"}),
            "password",
        ),
        (json!({"name": "   "}), "name"),
        (json!({"phone": "call me maybe"}), "phone"),
    ] {
        let b = problem(
            post(good(over.clone())).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&b), set(&[field]), "{over}: {b}");
    }
    // A missing required field is a 422 too, naming the field.
    let b = problem(
        post(json!({"email": "x@example.com", "role": "client"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["name"]), "{b}");

    // Nothing was created by any of these.
    let all = page(&app, "/api/v1/users?limit=100", &admin.access).await;
    assert_eq!(ids(&all), vec![admin.id.to_string()]);
}

#[tokio::test]
async fn only_admins_create_users() {
    let app = app().await;
    let admin = app.user("admin").await;
    for role in ["attorney", "paralegal", "client"] {
        let who = app.user(role).await;
        let r = app
            .post(
                "/api/v1/users",
                Some(&who.access),
                json!({"email": format!("made-by-{role}@example.com"), "name": "Sneaky", "role": "admin", "password": OTHER_PASSWORD}),
            )
            .await;
        problem(r, StatusCode::FORBIDDEN).await;
        let b = page(&app, "/api/v1/users?q=made-by", &admin.access).await;
        assert!(ids(&b).is_empty(), "{role} created a user: {b}");
    }
    let r = app
        .post("/api/v1/users", None, json!({"email": "anon@example.com", "name": "Anon", "role": "admin", "password": OTHER_PASSWORD}))
        .await;
    problem(r, StatusCode::UNAUTHORIZED).await;
}

// ---------------------------------------------------------------------------------------
// GET /users/{id}

#[tokio::test]
async fn reading_one_user() {
    let app = app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let (client_id, client_email) = app.create_user("client").await;

    let r = app
        .get(&format!("/api/v1/users/{client_id}"), Some(&admin.access))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let u: Value = r.json().await.unwrap();
    assert_user_shape(&u);
    assert_eq!(u["id"], client_id.to_string());
    assert_eq!(u["email"], client_email);
    assert_eq!(u["role"], "client");

    problem(
        app.get(
            &format!("/api/v1/users/{}", Uuid::new_v4()),
            Some(&admin.access),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        problem(
            app.get(&format!("/api/v1/users/{bad}"), Some(&admin.access))
                .await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }

    // Non-admins read only themselves.
    problem(
        app.get(
            &format!("/api/v1/users/{client_id}"),
            Some(&attorney.access),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        app.get(
            &format!("/api/v1/users/{}", admin.id),
            Some(&attorney.access),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let r = app
        .get(
            &format!("/api/v1/users/{}", attorney.id),
            Some(&attorney.access),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["id"], attorney.id.to_string());
    assert_eq!(me["role"], "attorney");

    problem(
        app.get(&format!("/api/v1/users/{client_id}"), None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// PATCH /users/{id}

#[tokio::test]
async fn admin_changes_a_role() {
    let app = app().await;
    let admin = app.user("admin").await;
    let (id, email) = app.create_user("paralegal").await;
    let r = app
        .patch(
            &format!("/api/v1/users/{id}"),
            Some(&admin.access),
            json!({"role": "attorney"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let u: Value = r.json().await.unwrap();
    assert_user_shape(&u);
    assert_eq!(u["role"], "attorney");
    assert_eq!(u["email"], email);

    let r = app
        .get(&format!("/api/v1/users/{id}"), Some(&admin.access))
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "attorney");
    // The new role is what the user acts with from now on.
    let who = app.login_as(&email).await;
    let r = app.get("/api/v1/me", Some(&who.access)).await;
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "attorney");

    let b = problem(
        app.patch(
            &format!("/api/v1/users/{id}"),
            Some(&admin.access),
            json!({"role": "overlord"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["role"]));
    let b = problem(
        app.patch(
            &format!("/api/v1/users/{id}"),
            Some(&admin.access),
            json!({"status": "banned"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["status"]));
    problem(
        app.patch(
            &format!("/api/v1/users/{}", Uuid::new_v4()),
            Some(&admin.access),
            json!({"role": "client"}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn disabling_a_user_ends_their_access_at_once() {
    let app = app().await;
    let admin = app.user("admin").await;
    let victim = app.user("attorney").await;
    assert_eq!(
        app.get("/api/v1/me", Some(&victim.access)).await.status(),
        StatusCode::OK
    );

    let r = app
        .patch(
            &format!("/api/v1/users/{}", victim.id),
            Some(&admin.access),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");

    // The access token they already hold stops working on the very next request.
    problem(
        app.get("/api/v1/me", Some(&victim.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // So does their refresh token.
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": victim.refresh}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Signing in with the right password says exactly what a wrong password for nobody says.
    let disabled = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": victim.email, "password": PASSWORD}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let nobody = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": format!("nobody-{}@example.com", Uuid::new_v4().simple()), "password": "wrong password entirely"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(disabled["detail"], nobody["detail"]);
    assert_eq!(disabled["code"], nobody["code"]);
    assert_eq!(disabled, nobody, "the whole body is the same");

    // Enabling them again lets them back in.
    let r = app
        .patch(
            &format!("/api/v1/users/{}", victim.id),
            Some(&admin.access),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let again = app.login_as(&victim.email).await;
    assert_eq!(
        app.get("/api/v1/me", Some(&again.access)).await.status(),
        StatusCode::OK
    );
    // The old token stays dead.
    problem(
        app.get("/api/v1/me", Some(&victim.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn admins_cannot_disable_or_demote_themselves() {
    let app = app().await;
    let admin = app.user("admin").await;
    let path = format!("/api/v1/users/{}", admin.id);
    problem(
        app.patch(&path, Some(&admin.access), json!({"status": "disabled"}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        app.patch(&path, Some(&admin.access), json!({"role": "client"}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    let r = app.get("/api/v1/me", Some(&admin.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        (me["role"].as_str(), me["status"].as_str()),
        (Some("admin"), Some("active"))
    );
}

#[tokio::test]
async fn patch_user_refuses_unknown_fields_and_non_admins() {
    let app = app().await;
    let admin = app.user("admin").await;
    let (id, email) = app.create_user("client").await;
    let path = format!("/api/v1/users/{id}");

    let b = problem(
        app.patch(&path, Some(&admin.access), json!({"email": "x@y.z"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["email"]), "{b}");
    let b = problem(
        app.patch(
            &path,
            Some(&admin.access),
            json!({"role": "attorney", "password_hash": "x"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["password_hash"]), "{b}");
    let u: Value = app
        .get(&path, Some(&admin.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (u["email"].as_str(), u["role"].as_str()),
        (Some(email.as_str()), Some("client")),
        "unchanged"
    );

    for role in ["attorney", "paralegal", "client"] {
        let who = app.user(role).await;
        problem(
            app.patch(&path, Some(&who.access), json!({"status": "disabled"}))
                .await,
            StatusCode::FORBIDDEN,
        )
        .await;
        // Not even on themselves.
        problem(
            app.patch(
                &format!("/api/v1/users/{}", who.id),
                Some(&who.access),
                json!({"role": "admin"}),
            )
            .await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let u: Value = app
        .get(&path, Some(&admin.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["status"], "active");
}

// ---------------------------------------------------------------------------------------
// PATCH /me

#[tokio::test]
async fn people_edit_their_own_profile() {
    let app = app().await;
    let me = app.user("client").await;
    let r = app
        .patch(
            "/api/v1/me",
            Some(&me.access),
            json!({"name": "  Renamed Person ", "phone": "+44 20 7946 0000", "timezone": "Asia/Tokyo"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let u: Value = r.json().await.unwrap();
    assert_user_shape(&u);
    assert_eq!(u["name"], "Renamed Person");
    assert_eq!(u["phone"], "+44 20 7946 0000");
    assert_eq!(u["timezone"], "Asia/Tokyo");
    assert_eq!(u["email"], me.email);

    let now: Value = app
        .get("/api/v1/me", Some(&me.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now, u, "GET /me shows the change");

    // Fields left out stay; an empty phone clears it.
    let u: Value = app
        .patch("/api/v1/me", Some(&me.access), json!({"phone": ""}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u["phone"], Value::Null);
    assert_eq!(u["name"], "Renamed Person");
    assert_eq!(u["timezone"], "Asia/Tokyo");
}

#[tokio::test]
async fn profile_edits_are_validated_and_cannot_touch_role() {
    let app = app().await;
    let me = app.user("client").await;
    let before: Value = app
        .get("/api/v1/me", Some(&me.access))
        .await
        .json()
        .await
        .unwrap();

    let b = problem(
        app.patch(
            "/api/v1/me",
            Some(&me.access),
            json!({"timezone": "Mars/Olympus"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["timezone"]));
    let b = problem(
        app.patch(
            "/api/v1/me",
            Some(&me.access),
            json!({"name": "", "phone": "no digits"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["name", "phone"]));

    for (k, v) in [
        ("role", "admin"),
        ("status", "active"),
        ("email", "new@example.com"),
    ] {
        let mut body = json!({"name": "Sneaky"});
        body[k] = json!(v);
        let b = problem(
            app.patch("/api/v1/me", Some(&me.access), body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&b), set(&[k]), "{b}");
    }
    let after: Value = app
        .get("/api/v1/me", Some(&me.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after, before, "nothing changed, least of all the role");
    assert_eq!(after["role"], "client");
}

// ---------------------------------------------------------------------------------------
// Invitations

async fn invite(app: &TestApp, token: &str, email: &str, role: &str) -> reqwest::Response {
    app.post(
        "/api/v1/invitations",
        Some(token),
        json!({"email": email, "role": role}),
    )
    .await
}

#[tokio::test]
async fn an_invited_attorney_joins_once() {
    let app = app().await;
    let admin = app.user("admin").await;
    let r = invite(
        &app,
        &admin.access,
        "Invited.Attorney@Example.com",
        "attorney",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let inv: Value = r.json().await.unwrap();
    inv["id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .expect("id is a UUID");
    let token = inv["token"]
        .as_str()
        .expect("token is returned when no mailer is configured")
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    let expires: DateTime<Utc> = inv["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - Utc::now();
    assert!(
        ttl > Duration::hours(71) && ttl <= Duration::hours(72),
        "default TTL is 72 h: {ttl}"
    );

    // An email in the body cannot redirect a named invitation to another address.
    let r = app
        .post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": token, "name": "Ivy Attorney", "password": OTHER_PASSWORD, "email": "someone.else@example.com"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: Value = r.json().await.unwrap();
    assert_user_shape(&u);
    assert_eq!(u["role"], "attorney");
    assert_eq!(u["email"], "invited.attorney@example.com");
    assert_eq!(u["name"], "Ivy Attorney");
    assert_eq!(u["status"], "active");

    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "invited.attorney@example.com", "password": OTHER_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["user"]["id"], u["id"]);
    assert_eq!(b["user"]["role"], "attorney");
    assert_eq!(
        login_status(&app, "someone.else@example.com", OTHER_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );

    // Single use.
    problem(
        app.post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": token, "name": "Again", "password": OTHER_PASSWORD}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // A made-up token is just as unknown.
    problem(
        app.post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": "made-up", "name": "X", "password": OTHER_PASSWORD}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The person now exists: inviting them again conflicts.
    problem(
        invite(
            &app,
            &admin.access,
            "INVITED.attorney@example.com",
            "client",
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn accepting_validates_the_new_account_without_using_up_the_invitation() {
    let app = app().await;
    let admin = app.user("admin").await;
    let inv: Value = invite(&app, &admin.access, "patient.person@example.com", "client")
        .await
        .json()
        .await
        .unwrap();
    let token = inv["token"].as_str().unwrap();
    let b = problem(
        app.post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": token, "name": "P", "password": "password1234"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["password"]));
    let r = app
        .post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": token, "name": "P", "password": OTHER_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "client");
}

#[tokio::test]
async fn an_expired_invitation_is_unknown() {
    let app = app().await;
    let admin = app.user("admin").await;
    let inv: Value = invite(&app, &admin.access, "late.comer@example.com", "client")
        .await
        .json()
        .await
        .unwrap();
    let id: Uuid = inv["id"].as_str().unwrap().parse().unwrap();
    let row = invitation::Entity::find_by_id(id)
        .one(app.state.db.conn())
        .await
        .unwrap()
        .expect("invitation row");
    assert_eq!(row.email, "late.comer@example.com");
    assert_eq!(row.role, "client");
    assert_eq!(row.invited_by, Some(admin.id));
    assert_ne!(
        row.token_hash,
        inv["token"].as_str().unwrap(),
        "only a hash of the token is stored"
    );
    let mut am: invitation::ActiveModel = row.into();
    am.expires_at = Set(Utc::now() - Duration::minutes(1));
    am.update(app.state.db.conn()).await.unwrap();

    problem(
        app.post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": inv["token"], "name": "Late Comer", "password": OTHER_PASSWORD}),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        login_status(&app, "late.comer@example.com", OTHER_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    let b = page(&app, "/api/v1/users?q=late.comer", &admin.access).await;
    assert!(ids(&b).is_empty(), "no account was created: {b}");
}

#[tokio::test]
async fn who_may_invite_whom() {
    let app = app().await;
    let admin = app.user("admin").await;
    let attorney = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;

    // Attorneys invite clients only.
    for role in ["paralegal", "attorney", "admin"] {
        problem(
            invite(
                &app,
                &attorney.access,
                &format!("{role}.by.attorney@example.com"),
                role,
            )
            .await,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    let r = invite(
        &app,
        &attorney.access,
        "client.by.attorney@example.com",
        "client",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let inv: Value = r.json().await.unwrap();
    assert!(
        inv["token"].is_string() && inv["expires_at"].is_string(),
        "{inv}"
    );
    let r = app
        .post(
            "/api/v1/auth/accept-invitation",
            None,
            json!({"token": inv["token"], "name": "Carla Client", "password": OTHER_PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "client");

    // Clients and paralegals invite nobody.
    for who in [&client, &paralegal] {
        for role in ["client", "admin"] {
            problem(
                invite(&app, &who.access, "anyone@example.com", role).await,
                StatusCode::FORBIDDEN,
            )
            .await;
        }
    }
    problem(
        invite(&app, "", "anyone@example.com", "client").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Admins invite any role, but not an existing account.
    for role in ["admin", "attorney", "paralegal", "client"] {
        let r = invite(
            &app,
            &admin.access,
            &format!("new.{role}@example.com"),
            role,
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{role}");
    }
    problem(
        invite(&app, &admin.access, &client.email.to_uppercase(), "client").await,
        StatusCode::CONFLICT,
    )
    .await;
    problem(
        invite(&app, &attorney.access, &client.email, "client").await,
        StatusCode::CONFLICT,
    )
    .await;

    let b = problem(
        invite(&app, &admin.access, "not-an-email", "wizard").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["email", "role"]));
}

/// An invitation to a case puts the new client on it when they accept, as long as whoever
/// invited them still leads it; a disabled inviter's invitation makes the account only.
#[tokio::test]
async fn an_invitation_to_a_case_makes_the_client_a_member() {
    let app = app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let other = app.user("attorney").await;
    let client = app.user("client").await;
    let case: Value = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Estate of Ames", "client_ids": [client.id]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let case_id = case["id"].as_str().unwrap().to_owned();
    let invite_to = async |who: &str, email: &str| {
        app.post(
            "/api/v1/invitations",
            Some(who),
            json!({"email": email, "role": "client", "case_id": case_id}),
        )
        .await
    };
    // Only its lead attorney (or an admin) invites to a case; others learn nothing of it.
    problem(
        invite_to(&other.access, "x@example.com").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let accept = async |inv: reqwest::Response, email: &str| -> Login {
        assert_eq!(inv.status(), StatusCode::CREATED);
        let inv: Value = inv.json().await.unwrap();
        let r = app
            .post(
                "/api/v1/auth/accept-invitation",
                None,
                json!({"token": inv["token"], "name": "Nora Heir", "password": OTHER_PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": OTHER_PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let b: Value = r.json().await.unwrap();
        Login {
            id: b["user"]["id"].as_str().unwrap().parse().unwrap(),
            email: email.into(),
            access: b["access_token"].as_str().unwrap().into(),
            refresh: b["refresh_token"].as_str().unwrap_or_default().into(),
        }
    };
    let heir = accept(
        invite_to(&lead.access, "nora.heir@example.com").await,
        "nora.heir@example.com",
    )
    .await;
    let seen = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&heir.access))
        .await;
    assert_eq!(seen.status(), StatusCode::OK);
    let detail: Value = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&lead.access))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        detail["members"].to_string().contains(&heir.id.to_string()),
        "{detail}"
    );

    // Invited, then the inviter is disabled: the account is made, the case is not joined.
    let pending = invite_to(&lead.access, "late.heir@example.com").await;
    let r = app
        .patch(
            &format!("/api/v1/users/{}", lead.id),
            Some(&admin.access),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let late = accept(pending, "late.heir@example.com").await;
    let r = app
        .get(&format!("/api/v1/cases/{case_id}"), Some(&late.access))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let log: Value = app
        .get(
            &format!("/api/v1/audit?action=case.member_add&resource_id={case_id}"),
            Some(&admin.access),
        )
        .await
        .json()
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["details"]["user_id"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let (heir_id, late_id) = (heir.id.to_string(), late.id.to_string());
    assert!(outcomes.contains(&(heir_id.as_str(), "success")), "{log}");
    assert!(outcomes.contains(&(late_id.as_str(), "failure")), "{log}");
}

// ---------------------------------------------------------------------------------------
// Registration

#[tokio::test]
async fn registration_is_closed_by_default() {
    let app = app().await;
    let r = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "walk.in@example.com", "password": OTHER_PASSWORD, "name": "Walk In"}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    assert_eq!(
        login_status(&app, "walk.in@example.com", OTHER_PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn open_registration_makes_clients_only() {
    let app = ready(spawn_app_with(|c| c.open_registration = true).await).await;
    let register = |body: Value| app.post("/api/v1/auth/register", None, body);

    // Asking for a role is ignored: self-registration only ever makes a client.
    let r = register(json!({"email": "Walk.In@Example.com", "password": OTHER_PASSWORD, "name": "Walk In", "role": "admin"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: Value = r.json().await.unwrap();
    assert_user_shape(&u);
    assert_eq!(u["role"], "client");
    assert_eq!(u["email"], "walk.in@example.com");
    assert_eq!(u["status"], "active");
    assert_eq!(
        login_status(&app, "walk.in@example.com", OTHER_PASSWORD).await,
        StatusCode::OK
    );

    let b = problem(
        register(json!({"email": "weak@example.com", "password": "password1234", "name": "Weak"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["password"]));
    let b = problem(
        register(json!({"email": "nope", "password": "short", "name": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["email", "password", "name"]));
    problem(
        register(
            json!({"email": "WALK.IN@example.com", "password": OTHER_PASSWORD, "name": "Twin"}),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// First run

#[tokio::test]
async fn first_start_leaves_one_setup_invitation_for_an_admin() {
    let app = app().await;
    let rows = invitation::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let setup = &rows[0];
    assert_eq!(setup.email, "", "the setup invitation names no email");
    assert_eq!(setup.role, "admin");
    assert_eq!(setup.invited_by, None, "made by the system, not a user");
    assert!(setup.accepted_at.is_none() && setup.accepted_user_id.is_none());
    assert!(setup.expires_at > Utc::now());
    assert_eq!(setup.token_hash.len(), 64, "stored as a SHA-256 hex digest");

    // Once someone exists, another start does not announce again.
    app.create_user("admin").await;
    lawfirm_pro::users::service::announce_first_run(&app.state)
        .await
        .unwrap();
    let rows = invitation::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn a_setup_invitation_needs_an_email_and_makes_an_admin() {
    let app = app().await;
    // The real setup token is only printed, so plant an invitation of the same kind (no email,
    // role admin, no inviter) whose token we know.
    let token = lawfirm_pro::crypto::random_token();
    let now = Utc::now();
    invitation::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(String::new()),
        role: Set("admin".into()),
        case_id: Set(None),
        token_hash: Set(lawfirm_pro::crypto::token_hash(&token)),
        invited_by: Set(None),
        expires_at: Set(now + Duration::hours(1)),
        accepted_at: Set(None),
        accepted_user_id: Set(None),
        created_at: Set(now),
    }
    .insert(app.state.db.conn())
    .await
    .unwrap();

    let accept = |body: Value| app.post("/api/v1/auth/accept-invitation", None, body);
    let b = problem(
        accept(json!({"token": token, "name": "First Admin", "password": OTHER_PASSWORD})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&b), set(&["email"]));

    let r = accept(json!({"token": token, "email": "Founder@Firm.example.com", "name": "First Admin", "password": OTHER_PASSWORD})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["role"], "admin");
    assert_eq!(u["email"], "founder@firm.example.com");

    let founder = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "founder@firm.example.com", "password": OTHER_PASSWORD}),
        )
        .await;
    assert_eq!(founder.status(), StatusCode::OK);
    let access = founder.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = page(&app, "/api/v1/users", &access).await;
    assert_eq!(
        ids(&b),
        vec![u["id"].as_str().unwrap().to_owned()],
        "the admin can administer"
    );

    problem(
        accept(json!({"token": token, "email": "second@firm.example.com", "name": "Second", "password": OTHER_PASSWORD})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
