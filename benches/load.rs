//! Load benchmark (not a test): the main read and write paths under `wrk` on loopback, against
//! a firm made by `lawfirm-pro demo --scale N`, plus the same read paths' own SQL replayed
//! directly against the same database at the same concurrency (the ≥ 50 % target's baseline),
//! each right after its path's HTTP run so that both meet the machine at the same speed.
//!
//! Run (needs `wrk` on PATH; see docs/benchmarks.md and scripts/bench):
//!   cargo bench --bench load -- [--db sqlite|postgres://…/dbname] [--scale N] [-c 16] [-d 10]
//!                               [--only TEXT] [--rate R]
//!
//! `BENCH_SERVER_BIN=path` serves the HTTP runs from another build of the server.
//! `--only TEXT` keeps the read paths whose "name as" contains TEXT (e.g. `inbox client`) and
//! skips the writes and the login flood: for before/after comparisons of one path. `--rate R`
//! runs the open loop at R requests/s instead of half the measured maximum, so two builds are
//! compared at the same offered load.
//!
//! The database and data directory live under `bench-data/` and are reused between runs of
//! the same backend and scale (generation happens once). Results print as Markdown.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use lawfirm_pro::db::{Db, Logged};
use lawfirm_pro::{Application, Config};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_lawfirm-pro");

struct Args {
    db: String,
    scale: u32,
    conns: usize,
    secs: u64,
    only: Option<String>,
    rate: Option<f64>,
}

fn args() -> Args {
    let mut a = Args {
        db: "sqlite".into(),
        scale: 1,
        conns: 16,
        secs: 10,
        only: None,
        rate: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--db" => a.db = next,
            "--scale" => a.scale = next.parse().expect("--scale N"),
            "-c" => a.conns = next.parse().expect("-c N"),
            "-d" => a.secs = next.parse().expect("-d SECONDS"),
            "--only" => a.only = Some(next),
            "--rate" => a.rate = Some(next.parse().expect("--rate REQUESTS_PER_SECOND")),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The 1/5/15-minute load averages (other work on the same cores skews every number).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The firm's directory and database URL; generates the firm the first time.
async fn prepare(a: &Args) -> (PathBuf, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let kind = if a.db == "sqlite" { "sqlite" } else { "pg" };
    let dir = root.join(format!("{kind}-scale{}", a.scale));
    std::fs::create_dir_all(&dir).unwrap();
    let url = if a.db == "sqlite" {
        format!("sqlite://{}/lawfirm.db", dir.display())
    } else {
        a.db.clone()
    };
    let logins = dir.join("logins.txt");
    if !logins.exists() {
        eprintln!("generating scale {} into {} …", a.scale, dir.display());
        let started = Instant::now();
        let out = tokio::process::Command::new(BIN)
            .args(["demo", "--scale", &a.scale.to_string()])
            .env("LFP_DATA_DIR", &dir)
            .env("DATABASE_URL", &url)
            // Not sqlx's slow-statement warnings: the bulk inserts are slow by design.
            .env("LFP_LOG", "warn,sqlx::query=error")
            .stderr(Stdio::inherit())
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "demo --scale failed");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("{text}(wall {:.1} s)", started.elapsed().as_secs_f64());
        std::fs::write(&logins, text).unwrap();
    }
    let text = std::fs::read_to_string(&logins).unwrap();
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("password line")
        .to_string();
    (dir, url, password)
}

struct Server {
    child: tokio::process::Child,
    base: String,
    startup: Duration,
}

async fn start_server(dir: &Path, url: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    // BENCH_SERVER_BIN runs another build (before/after comparisons on the same firm).
    let bin = std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| BIN.to_owned());
    let child = tokio::process::Command::new(bin)
        .env("LFP_DATA_DIR", dir)
        .env("DATABASE_URL", url)
        .env("LFP_BIND", format!("127.0.0.1:{port}"))
        .env("LFP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Server {
        child,
        base,
        startup: started.elapsed(),
    }
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let r = http.get(url).bearer_auth(token).send().await.unwrap();
    r.json().await.unwrap()
}

async fn login(http: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let b: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    b["access_token"]
        .as_str()
        // bench-data/ remembers a firm by its logins.txt alone: a new, empty database (a
        // fresh throwaway PostgreSQL cluster) behind an old logins.txt ends up here.
        .unwrap_or_else(|| {
            panic!(
                "login {email}: {b}\n(is the firm of bench-data/*/logins.txt in this database? \
                 delete that directory to generate it again)"
            )
        })
        .to_owned()
}

#[derive(Clone, Debug, Default)]
struct Stat {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * mult
}

/// One `wrk` run; `lua` (optional) sets method, body and headers.
async fn wrk(url: &str, token: &str, conns: usize, secs: u64, lua: Option<&str>) -> Stat {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args([
        "-t",
        &conns.clamp(1, 2).to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{secs}s"),
        "--latency",
        "-H",
        &format!("Authorization: Bearer {token}"),
    ]);
    let script;
    if let Some(body) = lua {
        script = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(script.path(), body).unwrap();
        cmd.args(["-s", script.path().to_str().unwrap()]);
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .await
        .expect("wrk on PATH (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = Stat::default();
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            s.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            s.p50_ms = ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            s.p99_ms = ms(v);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            s.errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    s
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Wait until the server has worked off what an overloaded run left queued (wrk gives up on a
/// request after 2 s, the server does not): `/readyz` (one database round trip through the
/// pool) answers within 50 ms, or 60 s passed. Without this, one path that saturates the
/// server would show up as the latency of the paths measured after it.
async fn settle(http: &reqwest::Client, base: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let t = Instant::now();
        let ok = http
            .get(format!("{base}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok && t.elapsed() < Duration::from_millis(50) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("server still busy after 60 s");
}

/// Open loop at a fixed rate (what wrk cannot do): request `i` is due at `i / rate` seconds and
/// its latency counts from that due time, not from when it was sent, so a stalled server shows
/// up as latency instead of silently lowering the rate (no coordinated omission). Every
/// response body is read to the end.
async fn open_loop(http: &reqwest::Client, url: &str, token: &str, rate: f64, secs: u64) -> Stat {
    let rate = rate.max(1.0);
    let n = (rate * secs as f64).round().max(1.0) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        tasks.spawn(async move {
            let ok = match http.get(url).bearer_auth(token).send().await {
                Ok(r) => {
                    let status = r.status();
                    r.bytes().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            (due.elapsed().as_secs_f64() * 1000.0, ok)
        });
    }
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (ms, ok) = r.unwrap();
        lat.push(ms);
        errors += u64::from(!ok);
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Stat {
        rps: lat.len() as f64 / took,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        errors,
    }
}

/// What the server timed itself (its `/metrics` histograms): for requests (every route but
/// `/healthz` and `/metrics`), audit batch commits and audit moves, how many in all and how
/// many took over 10 ms. The difference of two scrapes around an open-loop run says whether
/// its tail was spent inside the server or outside it (load generator, kernel, scheduler),
/// and how much of it the audit writer could explain.
#[derive(Clone, Copy, Default)]
struct Timed {
    requests: (f64, f64),
    appends: (f64, f64),
    moves: (f64, f64),
}

impl std::ops::Sub for Timed {
    type Output = Timed;
    fn sub(self, o: Timed) -> Timed {
        let d = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0, a.1 - b.1);
        Timed {
            requests: d(self.requests, o.requests),
            appends: d(self.appends, o.appends),
            moves: d(self.moves, o.moves),
        }
    }
}

async fn server_timed(http: &reqwest::Client, base: &str) -> Timed {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut t = Timed::default();
    for line in text.lines() {
        if line.contains("route=\"/healthz\"") || line.contains("route=\"/metrics\"") {
            continue;
        }
        let Some((name, value)) = line.split_once(['{', ' ']) else {
            continue;
        };
        let slot = match name.trim_end_matches("_count").trim_end_matches("_bucket") {
            "http_request_duration_seconds" => &mut t.requests,
            "audit_append_duration_seconds" => &mut t.appends,
            "audit_move_duration_seconds" => &mut t.moves,
            _ => continue,
        };
        let value: f64 = value.rsplit(' ').next().unwrap().parse().unwrap();
        if name.ends_with("_count") {
            slot.0 += value;
        } else if name.ends_with("_bucket") && line.contains("le=\"0.01\"") {
            // Within 10 ms; turned into "over" below.
            slot.1 -= value;
        }
    }
    for slot in [&mut t.requests, &mut t.appends, &mut t.moves] {
        slot.1 += slot.0;
    }
    t
}

/// Replay `stmts` (one request's SELECTs, in order, each on the pool it ran on in the server)
/// from `conns` tasks for `secs` seconds.
async fn replay(db: &Arc<Db>, stmts: Arc<Vec<Logged>>, conns: usize, secs: u64) -> Stat {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (db, stmts) = (db.clone(), stmts.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                for s in stmts.iter() {
                    let conn = if s.custom_plan {
                        db.custom_plans()
                    } else {
                        db.conn()
                    };
                    conn.query_all_raw(s.statement.clone())
                        .await
                        .expect("replayed SQL");
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by(f64::total_cmp);
    Stat {
        rps: all.len() as f64 / secs as f64,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        errors: 0,
    }
}

struct Ids {
    client_case: String,
    attorney_case: String,
}

fn read_paths(ids: &Ids) -> Vec<(&'static str, &'static str, String)> {
    let (cc, ac) = (&ids.client_case, &ids.attorney_case);
    vec![
        ("dashboard", "client", "/api/v1/dashboard".into()),
        ("dashboard", "attorney", "/api/v1/dashboard".into()),
        ("case list", "client", "/api/v1/cases".into()),
        ("case list", "attorney", "/api/v1/cases".into()),
        (
            "case list, filtered",
            "attorney",
            "/api/v1/cases?status=open&priority=high&sort=-opened_at".into(),
        ),
        ("case search", "attorney", "/api/v1/cases?q=contract".into()),
        ("case detail", "client", format!("/api/v1/cases/{cc}")),
        ("case detail", "attorney", format!("/api/v1/cases/{ac}")),
        ("inbox", "client", "/api/v1/messages".into()),
        ("inbox", "attorney", "/api/v1/messages".into()),
        (
            "inbox unread",
            "attorney",
            "/api/v1/messages?unread=true".into(),
        ),
        (
            "message search",
            "attorney",
            "/api/v1/messages?q=settlement".into(),
        ),
        (
            "message search, ranked",
            "attorney",
            "/api/v1/messages?q=settlement&sort=relevance".into(),
        ),
        (
            "documents",
            "client",
            format!("/api/v1/cases/{cc}/documents"),
        ),
        (
            "document search",
            "attorney",
            "/api/v1/documents/search?q=memorandum".into(),
        ),
    ]
}

/// The read paths whose "name as" contains `only` (all without it).
fn chosen_paths(ids: &Ids, only: Option<&str>) -> Vec<(&'static str, &'static str, String)> {
    read_paths(ids)
        .into_iter()
        .filter(|(name, who, _)| only.is_none_or(|o| format!("{name} {who}").contains(o)))
        .collect()
}

#[tokio::main]
async fn main() {
    lawfirm_pro::install_tls_provider();
    let a = args();
    let (dir, url, password) = prepare(&a).await;
    let attorney = "attorney0@scale.lawfirm.example";
    let client = "client0@scale.lawfirm.example";
    let backend = if a.db == "sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "\n### {backend}, scale {}, {} connections, {} s per run\n",
        a.scale, a.conns, a.secs
    );
    println!("load average at the start: {}\n", loadavg());

    // Baseline: each read path's own SELECTs, captured from one request to an in-process
    // server on the same database, and replayed directly (same number of connections) right
    // after that path's HTTP run, so both meet the machine at the same speed.
    let http = reqwest::Client::new();
    let (ids, captured) = {
        let mut config = Config::defaults();
        config.data_dir = dir.clone();
        config.database_url = url.clone().into();
        config.bind = "127.0.0.1:0".parse().unwrap();
        let app = Application::build(config).await.unwrap();
        let state = app.state().clone();
        let ibase = format!("http://127.0.0.1:{}", app.port());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async move {
            let _ = stop_rx.await;
        }));
        let itokens: BTreeMap<&str, String> = [
            ("client", login(&http, &ibase, client, &password).await),
            ("attorney", login(&http, &ibase, attorney, &password).await),
        ]
        .into_iter()
        .collect();
        let first_case = async |who: &str| {
            let v = get_json(&http, &format!("{ibase}/api/v1/cases"), &itokens[who]).await;
            v["items"][0]["id"].as_str().unwrap().to_owned()
        };
        let ids = Ids {
            client_case: first_case("client").await,
            attorney_case: first_case("attorney").await,
        };
        let mut captured = BTreeMap::new();
        for (name, who, path) in chosen_paths(&ids, a.only.as_deref()) {
            let go = || {
                http.get(format!("{ibase}{path}"))
                    .bearer_auth(&itokens[who])
                    .send()
            };
            go().await.unwrap();
            state.db.statements().start();
            go().await.unwrap();
            let stmts: Vec<Logged> = state
                .db
                .statements()
                .stop_logged()
                .into_iter()
                .filter(|s| {
                    let l = s.statement.sql.trim_start().to_lowercase();
                    (l.starts_with("select") || l.starts_with("with")) && !l.contains("audit_head")
                })
                .collect();
            captured.insert((name, who), Arc::new(stmts));
        }
        let _ = stop_tx.send(());
        let _ = running.await;
        (ids, captured)
    };
    let replay_db = Arc::new(
        Db::connect(&url, a.conns as u32)
            .await
            .expect("opening the database for the replay"),
    );

    // Start-up on the existing database, and idle memory.
    let mut server = start_server(&dir, &url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.child.id().unwrap();
    let idle_rss = rss_kib(pid);
    println!(
        "start-up to /healthz: {:.0} ms; idle RSS: {:.1} MiB\n",
        server.startup.as_secs_f64() * 1000.0,
        idle_rss as f64 / 1024.0
    );
    let base = server.base.clone();
    let tokens: BTreeMap<&str, String> = [
        ("client", login(&http, &base, client, &password).await),
        ("attorney", login(&http, &base, attorney, &password).await),
    ]
    .into_iter()
    .collect();

    // Reads over HTTP, at fixed concurrency and at concurrency 1 (latency).
    let mut sql_stats = Vec::new();
    // Then an open loop at half the measured maximum: the "p99 at half of max throughput".
    println!(
        "| path | as | req/s | p50 ms | p99 ms | non-2xx | p50 ms at c=1 | ½-max rate | p50 ms | p99 ms | in server > 10 ms | /healthz p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut audit_lines = Vec::new();
    for (name, who, path) in chosen_paths(&ids, a.only.as_deref()) {
        let full = format!("{base}{path}");
        settle(&http, &base).await;
        let s = wrk(&full, &tokens[who], a.conns, a.secs, None).await;
        // Requests wrk gave up on may still be running; the replay must not share the machine.
        settle(&http, &base).await;
        let stmts = captured[&(name, who)].clone();
        let n = stmts.len();
        sql_stats.push((
            name,
            who,
            n,
            replay(&replay_db, stmts, a.conns, a.secs).await,
            s.rps,
        ));
        settle(&http, &base).await;
        let one = wrk(&full, &tokens[who], 1, a.secs.min(5), None).await;
        settle(&http, &base).await;
        let rate = a.rate.unwrap_or(s.rps / 2.0);
        let before = server_timed(&http, &base).await;
        let half = open_loop(&http, &full, &tokens[who], rate, a.secs).await;
        let after = server_timed(&http, &base).await;
        let during = after - before;
        // The floor: the same open loop against a route that does no work.
        settle(&http, &base).await;
        let floor = open_loop(&http, &format!("{base}/healthz"), "", rate, a.secs).await;
        println!(
            "| {name} | {who} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.0}/s{} | {:.2} | {:.2} | {:.2} % | {:.2} |",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            one.p50_ms,
            rate.max(1.0),
            if half.errors > 0 {
                format!(" ({} non-2xx)", half.errors)
            } else {
                String::new()
            },
            half.p50_ms,
            half.p99_ms,
            100.0 * during.requests.1 / during.requests.0.max(1.0),
            floor.p99_ms
        );
        audit_lines.push(format!(
            "| {name} | {who} | {:.0} | {:.0} | {:.0} | {:.0} |",
            during.appends.0, during.appends.1, during.moves.0, during.moves.1
        ));
    }

    // Writes and a login flood (not with --only: those compare one read path).
    if a.only.is_none() {
        // Writes.
        let ac = &ids.attorney_case;
        let today = chrono::Utc::now().date_naive();
        let writes = [
            (
                "send message",
                "attorney",
                format!("/api/v1/cases/{ac}/messages"),
                r#"wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"body":"benchmark message about the settlement"}'"#
                    .to_string(),
            ),
            (
                "status change",
                "attorney",
                format!("/api/v1/cases/{ac}/status"),
                r#"wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    local phases = {"discovery", "negotiation"}
    local i = 0
    request = function()
      i = i + 1
      return wrk.format(nil, nil, nil, '{"phase":"' .. phases[i % 2 + 1] .. '"}')
    end"#
                    .to_string(),
            ),
            (
                "time entry",
                "attorney",
                format!("/api/v1/cases/{ac}/time-entries"),
                format!(
                    r#"wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{{"work_date":"{today}","minutes":30,"rate_cents":25000,"description":"benchmark work","billable":true}}'"#
                ),
            ),
        ];
        for (name, who, path, lua) in &writes {
            settle(&http, &base).await;
            let s = wrk(
                &format!("{base}{path}"),
                &tokens[who],
                a.conns,
                a.secs,
                Some(lua),
            )
            .await;
            println!(
                "| {name} (write) | {who} | {:.0} | {:.2} | {:.2} | {} | |",
                s.rps, s.p50_ms, s.p99_ms, s.errors
            );
        }

        // A login flood beside a read path: p99 of the read alone, then with the flood.
        let victim = format!("{base}/api/v1/cases");
        settle(&http, &base).await;
        let alone = wrk(&victim, &tokens["client"], a.conns / 2, a.secs, None).await;
        let flood_lua = format!(
            r#"wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{{"email":"client1@scale.lawfirm.example","password":"{password}"}}'"#
        );
        let flood_url = format!("{base}/api/v1/auth/login");
        let flood = {
            let (u, t, c, d, l) = (
                flood_url.clone(),
                tokens["client"].clone(),
                a.conns / 2,
                a.secs,
                flood_lua.clone(),
            );
            tokio::spawn(async move { wrk(&u, &t, c, d, Some(&l)).await })
        };
        let during = wrk(&victim, &tokens["client"], a.conns / 2, a.secs, None).await;
        let flood = flood.await.unwrap();
        println!(
            "\nlogin flood ({} logins/s, {} non-2xx): client case list p99 {:.2} ms alone → {:.2} ms \
             during the flood ({:.1}×); req/s {:.0} → {:.0}",
            flood.rps as u64,
            flood.errors,
            alone.p99_ms,
            during.p99_ms,
            during.p99_ms / alone.p99_ms,
            alone.rps,
            during.rps
        );
    }
    println!(
        "RSS after the runs: {:.1} MiB; load average: {}",
        rss_kib(pid) as f64 / 1024.0,
        loadavg()
    );
    server.child.kill().await.ok();

    println!("\n| path | as | SELECTs | SQL req/s | SQL p50 ms | SQL p99 ms | HTTP / SQL |");
    println!("|---|---|---|---|---|---|---|");
    for (name, who, n, s, h) in sql_stats {
        println!(
            "| {name} | {who} | {n} | {:.0} | {:.2} | {:.2} | {:.0} % |",
            s.rps,
            s.p50_ms,
            s.p99_ms,
            100.0 * h / s.rps
        );
    }
    // After the other tables: printed between them, the write rows would land under its header.
    println!(
        "\nThe audit writer during the ½-max runs (SQLite: batch commits to the spool, moves \
         onto the chain):\n\n| path | as | batch commits | over 10 ms | moves | over 10 ms |\n\
         |---|---|---|---|---|---|"
    );
    for line in audit_lines {
        println!("{line}");
    }
    println!("\nload average at the end: {}", loadavg());
}
