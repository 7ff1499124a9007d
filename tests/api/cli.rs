//! The binary as a newcomer runs it: first start prints a setup link that creates the first
//! admin; SIGTERM stops it gracefully; bad configuration stops it with one line.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn command(data_dir: &std::path::Path, database_url: &str) -> tokio::process::Command {
    crate::helpers::bin_command(data_dir, database_url)
}

#[tokio::test]
async fn first_start_prints_a_setup_link_that_creates_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = command(dir.path(), &url)
        .env("LFP_BIND", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut token = None;
    let mut listening = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(listening && token.is_some()) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("start-up output")
            .unwrap()
            .expect("more output");
        if let Some(i) = line.find("/setup?token=") {
            token = Some(line[i + "/setup?token=".len()..].trim().to_owned());
        }
        listening |= line.contains("listening");
    }
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::http();
    let accept = |body: serde_json::Value| {
        client
            .post(format!("{base}/api/v1/auth/accept-invitation"))
            .json(&body)
            .send()
    };
    let token = token.unwrap();
    // The setup invitation names no email: the person holding the link must give one.
    let r = accept(
        json!({"token": token, "name": "Ann Admin", "password": "correct horse battery staple"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = accept(json!({"token": token, "email": "ann@firm.example", "name": "Ann Admin", "password": "correct horse battery staple"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["role"],
        "admin"
    );
    let r = accept(json!({"token": token, "email": "eve@firm.example", "name": "Eve", "password": "correct horse battery staple"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the link works once");
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "ann@firm.example", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // SIGTERM: graceful stop, exit 0.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // A second start has users: no new setup link.
    let out = command(dir.path(), &url)
        .args(["migrate"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("setup?token="));
}

#[tokio::test]
async fn bad_configuration_stops_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("LFP_BINDD", "x"),
        ("DATABASE_URL", "mysql://nope"),
        ("LFP_MAX_UPLOAD_BYTES", "lots"),
    ] {
        let out = command(dir.path(), "sqlite://unused.db")
            .env(key, value)
            .arg("migrate")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let run = |email: &'static str, password: &'static str| {
        let mut c = command(dir.path(), &url);
        c.args([
            "user",
            "create",
            "--role",
            "attorney",
            "--email",
            email,
            "--name",
            "Bo Barrister",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        async move {
            use tokio::io::AsyncWriteExt;
            let mut child = c.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(password.as_bytes())
                .await
                .unwrap();
            child.wait_with_output().await.unwrap()
        }
    };
    let ok = run("bo@firm.example", "correct horse battery staple\n").await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("created attorney bo@firm.example"));
    let weak = run("cy@firm.example", "password1234\n").await;
    assert_eq!(weak.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    let dup = run("BO@firm.example", "another good passphrase\n").await;
    assert_eq!(dup.status.code(), Some(2));
}

#[tokio::test]
async fn demo_seeds_a_firm_whose_printed_logins_work() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let out = command(dir.path(), &url)
        .arg("demo")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let password = text
        .split("password: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    assert!(text.contains("john.smith@demo.lawfirm.example"));
    // A second run refuses rather than adding to a firm with people in it.
    let again = command(dir.path(), &url)
        .arg("demo")
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("already has 7 users"), "{why}");

    let config = {
        let mut c = lawfirm_pro::Config::defaults();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c.data_dir = dir.path().to_path_buf();
        c.database_url = url.clone().into();
        c
    };
    let app = lawfirm_pro::Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = crate::helpers::http();
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "john.smith@demo.lawfirm.example", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"]
        .as_str()
        .expect("the printed password works");
    let cases: serde_json::Value = client
        .get(format!("{base}/api/v1/cases"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cases["items"].as_array().unwrap().len(),
        1,
        "John sees his own matter only: {cases}"
    );
}

/// Logs are stderr in both formats: a command's stdout (the demo's logins, a backup's
/// summary) stays what the command prints, so scripts can read it.
#[tokio::test]
async fn json_logs_go_to_stderr_and_leave_stdout_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let out = command(dir.path(), &url)
        .env("LFP_LOG_FORMAT", "json")
        .arg("demo")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("password: "), "{stdout}");
    assert!(
        stdout.lines().all(|l| !l.trim_start().starts_with('{')),
        "no log line on stdout: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "WARN"),
        "the first start's new-key warning, as JSON on stderr: {stderr}"
    );
}
