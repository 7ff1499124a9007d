//! Sign-in, tokens, throttling, 2FA, cookie sessions and CSRF, sessions and password change.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ORIGIN, PASSWORD, problem, spawn_app};

#[tokio::test]
async fn login_returns_a_token_pair_and_the_user() {
    let app = spawn_app().await;
    let (id, email) = app.create_user("attorney").await;
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email.to_uppercase(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["token_type"], "Bearer");
    assert!(b["expires_in"].as_i64().unwrap() <= 900);
    assert_eq!(b["user"]["id"], id.to_string());
    assert_eq!(b["user"]["role"], "attorney");
    assert!(
        b.to_string().find("argon2").is_none(),
        "no hash in the response"
    );
    let me: Value = app
        .get("/api/v1/me", b["access_token"].as_str())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let a = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": "wrong password here"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let b = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong password here"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(a, b);
    assert_eq!(a["code"], "invalid_credentials");
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let u = app.user("client").await;
    let mut forged = u.access.clone();
    forged.pop();
    forged.push(if u.access.ends_with('A') { 'B' } else { 'A' });
    for bad in [
        forged.as_str(),
        "not.a.jwt",
        "",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ] {
        let b = problem(
            app.get("/api/v1/me", Some(bad)).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(b["code"], "invalid_token");
    }
    // A token from another installation (another signing key) is refused.
    let other = spawn_app().await;
    let o = other.user("client").await;
    problem(
        app.get("/api/v1/me", Some(&o.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // An expired token: issue one with a 10-second lifetime on an app configured that way.
    let short = crate::helpers::spawn_app_with(|c| c.access_token_ttl_secs = 10).await;
    let s = short.user("client").await;
    assert_eq!(
        short.get("/api/v1/me", Some(&s.access)).await.status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    problem(
        short.get("/api/v1/me", Some(&s.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let u = app.user("client").await;
    let r = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": u.refresh}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let second: Value = r.json().await.unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, u.refresh);
    let second_access = second["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/me", Some(second_access)).await.status(),
        StatusCode::OK
    );

    // The first token again: refused, and the whole family (session) dies.
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": u.refresh}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": second_refresh}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.get("/api/v1/me", Some(second_access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": "made-up"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn logout_revokes_the_session() {
    let app = spawn_app().await;
    let u = app.user("paralegal").await;
    // A body that is not JSON is 400, a field of the wrong type 422; neither signs out.
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/logout"))
            .bearer_auth(&u.access)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    problem(raw("{").await.unwrap(), StatusCode::BAD_REQUEST).await;
    let bad = problem(
        raw(r#"{"refresh_token": 5}"#).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(bad.to_string().contains("refresh_token"), "{bad}");
    assert_eq!(
        app.get("/api/v1/me", Some(&u.access)).await.status(),
        StatusCode::OK
    );
    let r = app
        .post(
            "/api/v1/auth/logout",
            Some(&u.access),
            json!({"refresh_token": u.refresh}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/api/v1/me", Some(&u.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": u.refresh}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn account_lockout_backs_off_and_recovers() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    for _ in 0..5 {
        problem(
            app.post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": "not the password"}),
            )
            .await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    // Locked: even the right password gets 429 with Retry-After.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    // Another account from the same address is unaffected.
    let (_, other) = app.create_user("client").await;
    app.login_as(&other).await;

    // Time passes (move the lock into the past): the owner gets in, and the count resets.
    app.sql("DELETE FROM login_throttle WHERE key LIKE 'acct:%'")
        .await;
    app.login_as(&email).await;

    // A second lock lasts longer (backoff doubles), capped at an hour.
    for round in 0..2 {
        for _ in 0..5 {
            app.post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": "not the password"}),
            )
            .await;
        }
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if round == 1 {
            assert!(
                retry > 60 && retry <= 3600,
                "second lock should be longer: {retry}"
            );
        }
        // Expire the lock but keep the lock count, as real waiting would.
        lawfirm_pro::auth::throttle::expire_lock_for_tests(
            &app.state.db,
            &lawfirm_pro::auth::throttle::account_key(&email),
        )
        .await;
    }
}

#[tokio::test]
async fn per_ip_throttle_stops_spraying_across_accounts() {
    let app = spawn_app().await;
    for i in 0..30 {
        let r = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": format!("spray{i}@example.com"), "password": "Winter2026!!x"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let (_, email) = app.create_user("client").await;
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn totp_enrolment_login_and_replay() {
    use lawfirm_pro::auth::totp::current_code;
    let app = spawn_app().await;
    let u = app.user("attorney").await;
    let setup: Value = app
        .post("/api/v1/me/totp/setup", Some(&u.access), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret_b32 = setup["secret"].as_str().unwrap();
    assert!(
        setup["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let secret = base32_decode(secret_b32);
    let now = chrono::Utc::now().timestamp() as u64;

    // A wrong code does not enable it.
    let b = problem(
        app.post(
            "/api/v1/me/totp/enable",
            Some(&u.access),
            json!({"code": "000000"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["errors"][0]["field"], "code");
    let r = app
        .post(
            "/api/v1/me/totp/enable",
            Some(&u.access),
            json!({"code": current_code(&secret, now)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["totp_enabled"], true);
    // The secret is stored encrypted, never in the clear.
    let row = lawfirm_pro::users::service::find_active(&app.state.db, u.id)
        .await
        .unwrap()
        .unwrap();
    let sealed = row.totp_secret.unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));

    // Password alone is no longer enough.
    let b = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": u.email, "password": PASSWORD}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(b["code"], "totp_required");
    // The next step's code works once; a replay of it is refused.
    let code = current_code(&secret, now + 30);
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": u.email, "password": PASSWORD, "totp_code": code}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b = problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": u.email, "password": PASSWORD, "totp_code": code}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(b["code"], "invalid_totp");
}

pub fn base32_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        bits = (bits << 5) | alphabet.iter().position(|a| *a == c).unwrap() as u64;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_ends_other_sessions() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let a = app.login_as(&email).await;
    let b = app.login_as(&email).await;
    let new = "an entirely new passphrase";
    problem(
        app.post(
            "/api/v1/me/password",
            Some(&a.access),
            json!({"current_password": "wrong one entirely", "new_password": new}),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let e = problem(
        app.post(
            "/api/v1/me/password",
            Some(&a.access),
            json!({"current_password": PASSWORD, "new_password": "password1234"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(e["errors"][0]["field"], "new_password");
    let r = app
        .post(
            "/api/v1/me/password",
            Some(&a.access),
            json!({"current_password": PASSWORD, "new_password": new}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/me", Some(&a.access)).await.status(),
        StatusCode::OK,
        "the caller's session stays"
    );
    problem(
        app.get("/api/v1/me", Some(&b.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": b.refresh}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": new}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn sessions_are_listed_and_revocable_only_by_their_owner() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let a = app.login_as(&email).await;
    let b = app.login_as(&email).await;
    let other = app.user("client").await;
    let list: Value = app
        .get("/api/v1/me/sessions", Some(&a.access))
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    let b_id = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone else cannot revoke it: 404, not 403.
    problem(
        app.request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{b_id}"),
            Some(&other.access),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.get("/api/v1/me", Some(&b.access)).await.status(),
        StatusCode::OK
    );
    let r = app
        .request(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{b_id}"),
            Some(&a.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    problem(
        app.get("/api/v1/me", Some(&b.access)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn cookie_sessions_require_origin_and_csrf_token_for_unsafe_requests() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD, "cookie": true}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("lfp_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let body: Value = r.json().await.unwrap();
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let cookie_header = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");

    let get = app
        .client
        .get(app.url("/api/v1/me"))
        .header("cookie", &cookie_header)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::OK);
    let patch = |origin: Option<&str>, token: Option<&str>| {
        let mut r = app
            .client
            .patch(app.url("/api/v1/me"))
            .header("cookie", &cookie_header)
            .json(&json!({"name": "Renamed"}));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    problem(
        patch(None, Some(&csrf)).await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        patch(Some("https://evil.example"), Some(&csrf))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        patch(Some(ORIGIN), None).await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    problem(
        patch(Some(ORIGIN), Some("0000")).await.unwrap(),
        StatusCode::FORBIDDEN,
    )
    .await;
    let ok = patch(Some(ORIGIN), Some(&csrf)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await.unwrap()["name"], "Renamed");
}

#[tokio::test]
async fn parallel_guessing_is_counted_and_never_errors() {
    let app = spawn_app().await;
    let (_, email) = app.create_user("client").await;
    let guesses: Vec<_> = (0..10)
        .map(|_| {
            app.post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": "parallel wrong guess"}),
            )
        })
        .collect();
    for r in futures::future::join_all(guesses).await {
        assert!(
            matches!(
                r.status(),
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{}",
            r.status()
        );
    }
    // At least five of them were counted: the account is locked now.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_setup_link_dies_once_the_firm_has_a_user() {
    use lawfirm_pro::users::entity::invitation;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = spawn_app().await;
    let token = lawfirm_pro::crypto::random_token();
    let now = chrono::Utc::now();
    invitation::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        email: Set(String::new()),
        role: Set("admin".into()),
        case_id: Set(None),
        token_hash: Set(lawfirm_pro::crypto::token_hash(&token)),
        invited_by: Set(None),
        expires_at: Set(now + chrono::Duration::hours(1)),
        accepted_at: Set(None),
        accepted_user_id: Set(None),
        created_at: Set(now),
    }
    .insert(app.state.db.conn())
    .await
    .unwrap();
    // Someone created an admin another way (e.g. `lawfirm-pro user create`).
    app.create_user("admin").await;
    let r = app
        .post("/api/v1/auth/accept-invitation", None, json!({"token": token, "email": "eve@example.com", "name": "Eve", "password": PASSWORD}))
        .await;
    problem(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn totp_guesses_with_a_stolen_token_are_throttled() {
    use lawfirm_pro::auth::totp::current_code;
    let app = spawn_app().await;
    let u = app.user("attorney").await;
    let setup: Value = app
        .post("/api/v1/me/totp/setup", Some(&u.access), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = base32_decode(setup["secret"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp() as u64;
    let r = app
        .post(
            "/api/v1/me/totp/enable",
            Some(&u.access),
            json!({"code": current_code(&secret, now)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Someone holding the access token tries to switch 2FA off by guessing codes.
    for _ in 0..5 {
        let r = app
            .post(
                "/api/v1/me/totp/disable",
                Some(&u.access),
                json!({"code": "123456"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = app
        .post(
            "/api/v1/me/totp/disable",
            Some(&u.access),
            json!({"code": current_code(&secret, now + 30)}),
        )
        .await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
}
