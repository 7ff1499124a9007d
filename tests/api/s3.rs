//! Documents on an S3-compatible store: the real binary configured with
//! `LFP_OBJECT_STORE=s3://…` and the standard `AWS_*` variables, against a local S3 server
//! (moto, installed by the test command). Nothing lands in the local object directory.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::{PASSWORD, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_lawfirm-pro");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(dir: &std::path::Path, db: &str, s3: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LFP_DATA_DIR", dir)
        .env("DATABASE_URL", db)
        .env("LFP_LOG", "warn")
        .env("LFP_OBJECT_STORE", "s3://lfp-docs/firm-a")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", s3)
        .env("AWS_ALLOW_HTTP", "true")
        .kill_on_drop(true);
    c
}

async fn wait_until_up(http: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{url} never came up");
}

async fn create_user(dir: &std::path::Path, db: &str, s3: &str, role: &str, email: &str) {
    let mut child = command(dir, db, s3)
        .args(["user", "create", "--role", role, "--email", email])
        .args(["--name", "Test Person", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success(), "user create {role}");
}

#[tokio::test]
async fn documents_round_trip_through_an_s3_compatible_store() {
    let s3_port = free_port();
    let s3 = format!("http://127.0.0.1:{s3_port}");
    let _moto = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; the test command installs it)");
    let http = crate::helpers::http();
    wait_until_up(&http, &s3).await;
    let r = http.put(format!("{s3}/lfp-docs")).send().await.unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());

    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(dir.path()).await;
    create_user(dir.path(), &db, &s3, "attorney", "lead@example.com").await;
    create_user(dir.path(), &db, &s3, "client", "client@example.com").await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = command(dir.path(), &db, &s3)
        .env("LFP_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_up(&http, &format!("{base}/healthz")).await;

    let login = |email: &'static str| {
        let (http, base) = (&http, &base);
        async move {
            let b: Value = http
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                b["access_token"].as_str().unwrap().to_owned(),
                b["user"]["id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (lead, _) = login("lead@example.com").await;
    let (client, client_id) = login("client@example.com").await;
    let case: Value = http
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(&lead)
        .json(&json!({"title": "Stored in S3", "client_ids": [client_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case_id = case["id"].as_str().unwrap();

    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let form = reqwest::multipart::Form::new()
        .text("confidentiality", "shared")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name("engagement.pdf"),
        );
    let r = http
        .post(format!("{base}/api/v1/cases/{case_id}/documents"))
        .bearer_auth(&lead)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let doc: Value = r.json().await.unwrap();

    // The client downloads exactly what was uploaded, ranges included.
    let url = format!(
        "{base}/api/v1/documents/{}/content",
        doc["id"].as_str().unwrap()
    );
    let got = http.get(&url).bearer_auth(&client).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let part = http
        .get(&url)
        .bearer_auth(&client)
        .header("range", "bytes=100000-100009")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.bytes().await.unwrap().as_ref(),
        &bytes[100_000..100_010]
    );

    // The bytes live in the bucket under the prefix, encrypted; none on local disk.
    let listing = http
        .get(format!("{s3}/lfp-docs?list-type=2&prefix=firm-a/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains("<Key>firm-a/"), "{listing}");
    assert!(
        !listing.contains("engagement"),
        "keys never carry file names: {listing}"
    );
    let local = dir.path().join("objects");
    assert!(
        !local.exists() || std::fs::read_dir(&local).unwrap().next().is_none(),
        "nothing stored locally"
    );
}
