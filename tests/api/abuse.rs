//! Abuse: floods of costly actions are cut with 429 + `Retry-After`; oversized and
//! dribbled requests do not hold the server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{PASSWORD, problem, spawn_app, spawn_app_with};

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn a_registration_flood_from_one_address_is_cut() {
    let app = spawn_app_with(|c| c.open_registration = true).await;
    let mut created = 0;
    let limited = loop {
        let r = app
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": format!("flood{created}@example.com"),
                       "password": PASSWORD, "name": "Flood"}),
            )
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_eq!(r.status(), StatusCode::CREATED);
        created += 1;
        assert!(created <= 10, "more than the burst of 10 got through");
    };
    assert_eq!(created, 10);
    assert!(retry_after(&limited) >= 1);
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    // Nothing was created by the refused attempt.
    let r = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "flood10@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn guessing_refresh_tokens_is_cut() {
    let app = spawn_app().await;
    let mut last = StatusCode::OK;
    for i in 0..61 {
        let r = app
            .post(
                "/api/v1/auth/refresh",
                None,
                json!({"refresh_token": format!("guess-{i}")}),
            )
            .await;
        last = r.status();
        if i < 60 {
            assert_eq!(last, StatusCode::UNAUTHORIZED, "attempt {i}");
        } else {
            assert!(retry_after(&r) >= 1);
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn conflict_check_floods_are_limited_per_user() {
    let app = spawn_app().await;
    let flooder = app.user("paralegal").await;
    let other = app.user("attorney").await;
    let check = |token: String| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/conflict-checks",
                Some(&token),
                json!({"names": ["Acme Corporation"]}),
            )
            .await
        }
    };
    for i in 0..30 {
        assert_eq!(
            check(flooder.access.clone()).await.status(),
            StatusCode::OK,
            "check {i}"
        );
    }
    let r = check(flooder.access.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
    // Someone else's budget is their own.
    assert_eq!(check(other.access.clone()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_dribbling_request_headers_is_disconnected() {
    let app = spawn_app_with(|c| c.header_read_timeout_secs = 1).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lfp.test\r\n")
        .await
        .unwrap();
    // Never finish the head. The server must give up on us, not wait forever.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read.is_ok(), "connection still open after 8 s");
    assert!(!text.contains("200 OK"), "{text}");

    // A prompt client on the same server is served.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

/// A body labelled multipart does not buy time: only the upload routes wait for a slow body
/// past the request timeout, and an upload that pauses longer than it still lands.
#[tokio::test]
async fn only_uploads_may_outlast_the_request_timeout() {
    let app = spawn_app_with(|c| c.request_timeout = Duration::from_secs(1)).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: lfp.test\r\n\
          Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: 1000\r\n\r\n--XYZ",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
        .await
        .expect("still waiting for the body after 6 s")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");

    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case: serde_json::Value = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Slow line", "client_ids": [client.id]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let body = format!(
        "--XYZ\r\nContent-Disposition: form-data; name=\"confidentiality\"\r\n\r\nshared\r\n\
         --XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n%PDF-1.7\n{}\r\n--XYZ--\r\n",
        "x".repeat(2_000)
    );
    let head = format!(
        "POST /api/v1/cases/{}/documents HTTP/1.1\r\nHost: lfp.test\r\n\
         Authorization: Bearer {}\r\nContent-Type: multipart/form-data; boundary=XYZ\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        case["id"].as_str().unwrap(),
        lead.access,
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    s.write_all(rest).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let huge = "a".repeat(200 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: lfp.test\r\nX-Big: {huge}\r\n\r\n");
    // The server may close while we are still writing; either way it must not answer 200.
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
    if !text.is_empty() {
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    }
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn booking_floods_are_limited_per_user() {
    let app = spawn_app().await;
    let attorney = app.user("attorney").await;
    let book = |hour: u32| {
        let (app, attorney) = (&app, &attorney);
        async move {
            app.post(
                "/api/v1/appointments",
                Some(&attorney.access),
                json!({"attorney_id": attorney.id, "title": "Block",
                       "starts_at": format!("2027-04-{:02}T{:02}:00:00Z", 1 + hour / 10, 8 + hour % 10),
                       "ends_at": format!("2027-04-{:02}T{:02}:30:00Z", 1 + hour / 10, 8 + hour % 10)}),
            )
            .await
        }
    };
    for h in 0..20 {
        assert_eq!(book(h).await.status(), StatusCode::CREATED, "booking {h}");
    }
    let r = book(20).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) >= 1);
}
