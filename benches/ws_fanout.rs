//! WebSocket fan-out benchmark (not a test): how many live connections the server holds per
//! 100 MB of RSS, and how long one event takes to reach 1,000 and 10,000 sockets.
//!
//! Run: `cargo bench --bench ws_fanout -- 1000 10000` (socket counts; default 1000 10000).
//! It starts the release binary on a temporary SQLite database, signs in one client, opens the
//! sockets over loopback, measures the server's RSS from /proc, then changes the case status
//! five times and reports p50/p99 delivery latency (POST answered → frame received).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_lawfirm-pro");
const PASSWORD: &str = "correct horse battery staple";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn create_user(dir: &std::path::Path, role: &str, email: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "user",
            "create",
            "--role",
            role,
            "--email",
            email,
            "--name",
            role,
            "--password-stdin",
        ])
        .env("LFP_DATA_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .await
        .unwrap();
    assert!(child.wait().await.unwrap().success());
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> (String, String) {
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

#[tokio::main]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1000, 10_000]
    } else {
        counts
    };
    for n in counts {
        run(n).await;
    }
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), "attorney", "lead@bench.example").await;
    create_user(dir.path(), "client", "client@bench.example").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(BIN)
        .env("LFP_DATA_DIR", dir.path())
        .env("LFP_BIND", format!("127.0.0.1:{port}"))
        .env("LFP_WS_MAX_PER_USER", (n + 10).to_string())
        .env("LFP_WS_MAX_PER_IP", (n + 10).to_string())
        .env("LFP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    lawfirm_pro::install_tls_provider();
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (lead, _) = login(&http, &base, "lead@bench.example").await;
    let (client, client_id) = login(&http, &base, "client@bench.example").await;
    let case: Value = http
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(&lead)
        .json(&json!({"title": "Bench matter", "client_ids": [client_id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case_id = case["id"].as_str().unwrap().to_owned();
    let idle_rss = rss_kib(pid);

    let mut sockets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let batch = futures::future::join_all(chunk.iter().map(|_| async {
            let t: Value = http
                .post(format!("{base}/api/v1/ws-ticket"))
                .bearer_auth(&client)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let url = format!(
                "ws://127.0.0.1:{port}/api/v1/ws?ticket={}",
                t["ticket"].as_str().unwrap()
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("upgrade");
            let _ready = ws.next().await;
            ws
        }))
        .await;
        sockets.extend(batch);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_rss = rss_kib(pid);
    let per_conn_kib = (held_rss.saturating_sub(idle_rss)) as f64 / n as f64;

    let mut latencies = Vec::new();
    for (i, status) in ["pending", "open", "pending", "open", "pending"]
        .iter()
        .enumerate()
    {
        let start = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/cases/{case_id}/status"))
            .bearer_auth(&lead)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "status change {i}");
        let got = futures::future::join_all(sockets.iter_mut().map(|ws| async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => {
                        return Some(start.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(Some(Ok(_))) => continue,
                    _ => return None,
                }
            }
        }))
        .await;
        latencies.extend(got.into_iter().flatten());
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "sockets={n} idle_rss_mib={:.1} held_rss_mib={:.1} kib_per_conn={:.1} conns_per_100mb={:.0} \
         fanout_ms_p50={:.1} p99={:.1} max={:.1} delivered={}/{}",
        idle_rss as f64 / 1024.0,
        held_rss as f64 / 1024.0,
        per_conn_kib,
        if per_conn_kib > 0.0 {
            100.0 * 1024.0 / per_conn_kib
        } else {
            f64::INFINITY
        },
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len(),
        n * 5,
    );
    drop(sockets);
    let _ = server.kill().await;
}
