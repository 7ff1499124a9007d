//! `spawn_app()` and the client helpers every test uses.

use lawfirm_pro::{AppState, Application, Config, auth::Principal, users::service::NewUser};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ORIGIN: &str = "http://lfp.test";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    /// The PostgreSQL database this app was given for itself: dropped with the app.
    pub owned_pg_database: Option<String>,
}

/// A test's database is never read again once its app is gone. Dropping it at once keeps the
/// cluster's disk to the tests in flight; otherwise every database of the run (hundreds, each
/// a copy of the template) stays until the cluster stops.
impl Drop for TestApp {
    fn drop(&mut self) {
        let Some(name) = self.owned_pg_database.take() else {
            return;
        };
        let Ok(admin) = std::env::var("DATABASE_URL_PG") else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own.
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Bounded: a cluster that stopped answering must not hang the test run.
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(30), async {
                    let db = lawfirm_pro::db::Db::connect(&admin, 1).await?;
                    // FORCE: the app's pool and background tasks still hold connections.
                    sea_orm::ConnectionTrait::execute_unprepared(db.conn(), &statement).await?;
                    db.close().await;
                    anyhow::Ok(())
                })
                .await?
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {name}: {e:#}"),
            Err(_) => eprintln!("dropping the test database {name} panicked"),
        }
    }
}

/// Which database the suite runs on. Never silently falls back: a missing PostgreSQL fails.
pub fn backend() -> String {
    std::env::var("LFP_TEST_DB").unwrap_or_else(|_| "sqlite".into())
}

pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match backend().as_str() {
        "sqlite" => format!("sqlite://{}/lawfirm.db", dir.display()),
        "postgres" => {
            use lawfirm_pro::db::Db;
            let admin = std::env::var("DATABASE_URL_PG").expect(
                "LFP_TEST_DB=postgres needs DATABASE_URL_PG (the test command starts a cluster)",
            );
            let name = format!("lfp_test_{}", Uuid::new_v4().simple());
            let db = Db::connect(&admin, 1)
                .await
                .expect("PostgreSQL for tests is not reachable");
            sea_orm::ConnectionTrait::execute_unprepared(
                db.conn(),
                &format!("CREATE DATABASE {name}"),
            )
            .await
            .expect("create test database");
            db.close().await;
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            url.to_string()
        }
        other => panic!("LFP_TEST_DB must be sqlite or postgres, not {other}"),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A `Stripe-Signature` header value for `body` at unix time `t`, signed the way Stripe
/// signs webhooks: `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn stripe_signature(secret: &str, t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// An HTTP client for tests (ring as the TLS provider, like the server).
pub fn http() -> reqwest::Client {
    lawfirm_pro::install_tls_provider();
    reqwest::Client::new()
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    lawfirm_pro::install_tls_provider();
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(data_dir.path()).await;
    let mut app = spawn_app_at(data_dir, &database_url, tweak).await;
    if backend() == "postgres" {
        let name = url::Url::parse(&database_url).unwrap().path()[1..].to_owned();
        app.owned_pg_database = Some(name);
    }
    app
}

/// An application on a database the caller provides (e.g. a dedicated PostgreSQL cluster).
pub async fn spawn_app_on(data_dir: tempfile::TempDir, database_url: &str) -> TestApp {
    spawn_app_at(data_dir, database_url, |_| {}).await
}

async fn spawn_app_at(
    data_dir: tempfile::TempDir,
    database_url: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    // `TEST_LOG=1 cargo test …` shows the server's logs (e.g. the cause of a 500).
    if std::env::var_os("TEST_LOG").is_some() {
        lawfirm_pro::telemetry::init(lawfirm_pro::config::LogFormat::Pretty, false);
    }
    let database_url = database_url.to_owned();
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.path().to_path_buf();
    config.database_url = database_url.clone().into();
    config.public_url = url::Url::parse(ORIGIN).unwrap();
    config.insecure_fast_password_hashing = true;
    config.db_max_connections = 5;
    tweak(&mut config);
    let app = Application::build(config)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        database_url,
        data_dir,
        owned_pg_database: None,
    }
}

/// A signed-in user for tests.
#[derive(Clone, Debug)]
pub struct Login {
    pub id: Uuid,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut r = self.client.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    /// A multipart POST (a document upload) as the holder of `token`.
    pub async fn post_multipart(
        &self,
        path: &str,
        token: &str,
        form: reqwest::multipart::Form,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("multipart request sent")
    }

    /// Put `user` on `case` in case role `role`, with the bearer `token` of its lead or an admin
    /// (201 expected).
    pub async fn add_member(&self, token: &str, case: &str, user: impl ToString, role: &str) {
        let r = self
            .post(
                &format!("/api/v1/cases/{case}/members"),
                Some(token),
                json!({ "user_id": user.to_string(), "role": role }),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }

    /// Take `user` off `case` as `lead` (204 expected).
    pub async fn remove_member(&self, lead: &Login, case: &str, user: Uuid) {
        let path = format!("/api/v1/cases/{case}/members/{user}");
        let r = self
            .request(Method::DELETE, &path, Some(&lead.access), None)
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "DELETE {path}");
    }

    /// Give `user` the firm role `role` as `admin` (200 expected; their sessions end).
    pub async fn set_role(&self, admin: &Login, user: Uuid, role: &str) {
        let r = self
            .patch(
                &format!("/api/v1/users/{user}"),
                Some(&admin.access),
                json!({ "role": role }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    /// Create a user directly through the service (as the system operator).
    pub async fn create_user(&self, role: &str) -> (Uuid, String) {
        let email = format!(
            "{role}-{}@example.com",
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let u = lawfirm_pro::users::service::create_user(
            &self.state,
            &Principal::system(),
            NewUser {
                email: email.clone(),
                name: format!("Test {role}"),
                role: role.into(),
                password: Some(PASSWORD.into()),
                phone: None,
                timezone: Some("Europe/Berlin".into()),
            },
        )
        .await
        .expect("user created");
        (u.id, email)
    }

    pub async fn login_as(&self, email: &str) -> Login {
        let r = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        let b: Value = r.json().await.unwrap();
        Login {
            id: b["user"]["id"].as_str().unwrap().parse().unwrap(),
            email: email.into(),
            access: b["access_token"].as_str().unwrap().into(),
            refresh: b["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// A new user of `role`, signed in.
    pub async fn user(&self, role: &str) -> Login {
        let (_, email) = self.create_user(role).await;
        self.login_as(&email).await
    }

    /// Run SQL directly against the test database (for tampering and time travel).
    pub async fn sql(&self, sql: &str) {
        sea_orm::ConnectionTrait::execute_unprepared(self.state.db.conn(), sql)
            .await
            .expect(sql);
    }
}

/// The `id` of what a `201 Created` answer made (asserting the status).
pub async fn created_id(r: Response) -> String {
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Assert a problem+json response and return its body.
pub async fn problem(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["status"], status.as_u16(), "{b}");
    assert!(
        b["title"].is_string() && b["detail"].is_string() && b["type"].is_string(),
        "{b}"
    );
    b
}

/// The built binary with a clean environment pointed at `data_dir` and `database_url`.
/// Run the binary with `args` against this data directory and database; it must succeed.
/// Its standard output.
pub async fn run_ok(data_dir: &std::path::Path, database_url: &str, args: &[&str]) -> String {
    let out = bin_command(data_dir, database_url)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn bin_command(data_dir: &std::path::Path, database_url: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_lawfirm-pro"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LFP_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("LFP_LOG", "info");
    c
}
