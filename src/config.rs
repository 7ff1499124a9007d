//! Configuration: one typed struct, read from an optional TOML file and then from the
//! environment (`DATABASE_URL`, `LFP_*`), validated once at start-up and passed down.

use std::{net::SocketAddr, path::PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

/// `DATABASE_URL`: its `Debug` form hides the password, so printing a [`Config`] never shows
/// it (the URL itself is handed to the driver as it is).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("redacted"));
                }
                // Passwords can also come as a query parameter (`?password=`).
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "redacted".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                if !pairs.is_empty() {
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                write!(f, "{:?}", u.as_str())
            }
            Err(_) => f.write_str("\"<unparsed>\""),
        }
    }
}

/// Everything the application needs to start. Built by [`Config::load`] or by tests.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: DatabaseUrl,
    pub data_dir: PathBuf,
    /// Absolute URL under which the portal is reached (links in mail, cookie `Secure`, Origin checks).
    pub public_url: url::Url,
    pub max_upload_bytes: u64,
    pub max_json_bytes: usize,
    pub open_registration: bool,
    /// HS256 key for access tokens; generated and persisted in `data_dir` when absent.
    pub jwt_secret: Option<SecretString>,
    /// Base64 AES-256 master key for secrets at rest; generated and persisted when absent.
    pub master_key: Option<SecretString>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_days: i64,
    pub invitation_ttl_hours: i64,
    pub db_max_connections: u32,
    /// An audited read answers only once its entry is on disk, not only committed (ADR 0007).
    pub audit_durable_reads: bool,
    pub log_format: LogFormat,
    /// Concurrent Argon2 computations; each uses 19 MiB and a core. The default leaves one
    /// core free for everything else (cores - 1, at least 1), so a login flood cannot starve it.
    pub password_hash_concurrency: usize,
    /// Hash requests allowed to wait for a slot; beyond this a login answers 429 + Retry-After.
    pub password_hash_queue: usize,
    /// Lower Argon2 cost, for tests only (never settable from the environment).
    pub insecure_fast_password_hashing: bool,
    /// Live connections allowed per user and per source address on one instance.
    pub ws_max_per_user: usize,
    pub ws_max_per_ip: usize,
    /// How many missed events a reconnecting client may replay before it must reload.
    pub ws_replay_window: u64,
    /// Seconds a client has to send a request's line and headers (slowloris defence).
    pub header_read_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` is believed (comma-separated IPs).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `s3://bucket/prefix` for documents in an S3-compatible store; `None`: `data_dir/objects`.
    pub object_store: Option<String>,
    /// Days a soft-deleted document is kept before its bytes are purged.
    pub document_retention_days: i64,
    /// Outgoing mail server (`smtp://host:port`, `smtps://user:pass@host`,
    /// `smtp://host?tls=required`). Without it mail waits in the outbox.
    pub smtp_url: Option<SecretString>,
    /// `From` of outgoing mail; defaults to `Law Firm Pro <no-reply@HOST>` of the public URL.
    pub mail_from: Option<String>,
    /// The firm's time zone: what "today" is for deadlines, invoice dates and the dashboard.
    pub timezone: chrono_tz::Tz,
    /// Minutes before an appointment at which reminders go out.
    pub reminder_minutes: Vec<i64>,
    /// How far ahead clients must book, cancel or reschedule.
    pub booking_min_notice_minutes: i64,
    /// How often background jobs (mail delivery, reminders) look for work (tests: shorter).
    pub job_interval: std::time::Duration,
    /// How long a request may take, uploads excepted (not configurable from outside; tests
    /// shorten it).
    pub request_timeout: std::time::Duration,
    /// How long a claimed mail stays reserved for its worker before another may retry it.
    pub mail_lease: std::time::Duration,
    /// Delivery attempts before a mail is marked `failed`.
    pub mail_max_attempts: i32,
    /// Billing: the firm's currency, name (on invoices), tax rate and card processor.
    pub billing: BillingConfig,
    /// The firm's logo for the portal header (`LFP_FIRM_LOGO`), read and checked at start-up.
    pub firm_logo: Option<FirmLogo>,
}

/// A PNG or SVG file shown in the portal's header and served at `/static/logo`.
#[derive(Clone)]
pub struct FirmLogo {
    pub content_type: &'static str,
    pub bytes: bytes::Bytes,
}

impl std::fmt::Debug for FirmLogo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirmLogo")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl FirmLogo {
    /// Largest logo accepted: it is held in memory and sent with every page view.
    pub const MAX_BYTES: usize = 512 * 1024;

    /// Decide the type from the bytes (never the file name): PNG, or SVG markup.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(format!(
                "is larger than {} KiB; use a smaller image",
                Self::MAX_BYTES / 1024
            ));
        }
        let content_type = if infer::image::is_png(&bytes) {
            "image/png"
        } else if looks_like_svg(&bytes) {
            "image/svg+xml"
        } else {
            return Err("is neither a PNG nor an SVG image".into());
        };
        Ok(Self {
            content_type,
            bytes: bytes.into(),
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_bytes(bytes).map_err(|m| format!("{} {m}", path.display()))
    }
}

/// SVG is text: an optional BOM, XML declaration, comments or doctype, then an `<svg` element.
fn looks_like_svg(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let head: String = text
        .chars()
        .take(4096)
        .collect::<String>()
        .to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    (head.starts_with("<svg") || head.starts_with("<?xml") || head.starts_with("<!"))
        && head.contains("<svg")
        // An HTML page with an <svg> inside is not an image.
        && !head.contains("<html")
}

/// Billing settings (`LFP_CURRENCY`, `LFP_FIRM_NAME`, `LFP_TAX_RATE_BPS`, `LFP_PAYMENTS_*`).
#[derive(Clone, Debug)]
pub struct BillingConfig {
    pub currency: crate::billing::money::Currency,
    pub firm_name: String,
    /// Tax on invoices in basis points (1/100 of a percent); 0 = no tax line.
    pub tax_rate_bps: u32,
    /// Base URL of a Stripe-compatible API (`https://api.stripe.com`); checkout is off without it.
    pub payments_api_base: Option<url::Url>,
    pub payments_api_key: Option<SecretString>,
    /// Webhook signing secret; `POST /webhooks/payments` answers 404 without it.
    pub payments_webhook_secret: Option<SecretString>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            currency: crate::billing::money::Currency::USD,
            firm_name: "Law Firm Pro".into(),
            tax_rate_bps: 0,
            payments_api_base: None,
            payments_api_key: None,
            payments_webhook_secret: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Config {
    /// Whether `LFP_PUBLIC_URL` was left to default from the listening address while that
    /// listens beyond loopback: sign-in forms from any other address will be refused (their
    /// Origin is not the public URL), so the server warns at start.
    pub fn public_url_guessed(&self) -> bool {
        self.bind.ip().is_unspecified()
            && self
                .public_url
                .host()
                .is_some_and(|h| h == url::Host::<&str>::Ipv4(std::net::Ipv4Addr::LOCALHOST))
    }

    /// Today in the firm's time zone ([`Config::timezone`]).
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now()
            .with_timezone(&self.timezone)
            .date_naive()
    }

    /// The instant `day` begins in the firm's time zone (its first existing minute on a day
    /// that starts in a DST gap).
    pub fn start_of(&self, day: chrono::NaiveDate) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight");
        (0..=180)
            .find_map(|m| {
                self.timezone
                    .from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                    .earliest()
            })
            .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&chrono::Utc))
    }
}

/// The file form: every field optional, unknown keys refused. No `Debug`: it holds secrets
/// as plain strings.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    max_upload_bytes: Option<u64>,
    max_json_bytes: Option<usize>,
    open_registration: Option<bool>,
    jwt_secret: Option<String>,
    master_key: Option<String>,
    access_token_ttl_secs: Option<i64>,
    refresh_token_ttl_days: Option<i64>,
    invitation_ttl_hours: Option<i64>,
    db_max_connections: Option<u32>,
    audit_durable_reads: Option<bool>,
    log_format: Option<LogFormat>,
    password_hash_concurrency: Option<usize>,
    password_hash_queue: Option<usize>,
    ws_max_per_user: Option<usize>,
    ws_max_per_ip: Option<usize>,
    ws_replay_window: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    trusted_proxies: Option<String>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    timezone: Option<String>,
    reminder_minutes: Option<String>,
    booking_min_notice_minutes: Option<i64>,
    object_store: Option<String>,
    document_retention_days: Option<i64>,
}

/// A configuration problem, reported as one line before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("unknown setting {0} in the environment (known: {known})", known = KNOWN_ENV.join(", "))]
    UnknownEnv(String),
}

/// Every `LFP_*` variable we read. An unknown one is a typo until proven otherwise.
pub const KNOWN_ENV: &[&str] = &[
    "LFP_CONFIG",
    "LFP_BIND",
    "LFP_DATA_DIR",
    "LFP_PUBLIC_URL",
    "LFP_MAX_UPLOAD_BYTES",
    "LFP_MAX_JSON_BYTES",
    "LFP_OPEN_REGISTRATION",
    "LFP_JWT_SECRET",
    "LFP_MASTER_KEY",
    "LFP_ACCESS_TOKEN_TTL_SECS",
    "LFP_REFRESH_TOKEN_TTL_DAYS",
    "LFP_INVITATION_TTL_HOURS",
    "LFP_DB_MAX_CONNECTIONS",
    "LFP_AUDIT_DURABLE_READS",
    "LFP_LOG_FORMAT",
    "LFP_LOG",
    "LFP_PASSWORD_HASH_CONCURRENCY",
    "LFP_PASSWORD_HASH_QUEUE",
    "LFP_WS_MAX_PER_USER",
    "LFP_WS_MAX_PER_IP",
    "LFP_WS_REPLAY_WINDOW",
    "LFP_HEADER_READ_TIMEOUT_SECS",
    "LFP_TRUSTED_PROXIES",
    "LFP_SMTP_URL",
    "LFP_MAIL_FROM",
    "LFP_TIMEZONE",
    "LFP_REMINDER_MINUTES",
    "LFP_BOOKING_MIN_NOTICE_MINUTES",
    "LFP_CURRENCY",
    "LFP_FIRM_NAME",
    "LFP_FIRM_LOGO",
    "LFP_TAX_RATE_BPS",
    "LFP_PAYMENTS_API_BASE",
    "LFP_PAYMENTS_API_KEY",
    "LFP_PAYMENTS_WEBHOOK_SECRET",
    "LFP_OBJECT_STORE",
    "LFP_DOCUMENT_RETENTION_DAYS",
    // Read by the test command and the test harness, not by the server.
    "LFP_TEST_DB",
];

impl Config {
    /// Defaults for everything: SQLite and objects under `./data`.
    pub fn defaults() -> Self {
        let data_dir = PathBuf::from("./data");
        Self {
            bind: "127.0.0.1:8080".parse().expect("static address"),
            database_url: "sqlite://./data/lawfirm.db".into(),
            data_dir,
            public_url: url::Url::parse("http://127.0.0.1:8080").expect("static url"),
            max_upload_bytes: 100 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            open_registration: false,
            jwt_secret: None,
            master_key: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_days: 30,
            invitation_ttl_hours: 72,
            db_max_connections: 16,
            audit_durable_reads: false,
            log_format: LogFormat::Pretty,
            password_hash_concurrency: std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1).max(1))
                .unwrap_or(1),
            password_hash_queue: 64,
            insecure_fast_password_hashing: false,
            ws_max_per_user: 10,
            ws_max_per_ip: 200,
            ws_replay_window: 1000,
            header_read_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            smtp_url: None,
            mail_from: None,
            timezone: chrono_tz::UTC,
            reminder_minutes: vec![1440, 60],
            booking_min_notice_minutes: 120,
            job_interval: std::time::Duration::from_secs(5),
            request_timeout: std::time::Duration::from_secs(60),
            mail_lease: std::time::Duration::from_secs(300),
            mail_max_attempts: 8,
            billing: BillingConfig::default(),
            firm_logo: None,
            object_store: None,
            document_retention_days: 30,
        }
    }

    /// Load from the TOML file named by `file` (or `LFP_CONFIG`), then the environment.
    pub fn load(file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(file, &vars)
    }

    /// Pure form of [`Config::load`], so tests need not touch the process environment.
    pub fn from_sources(
        file: Option<PathBuf>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        for (key, _) in env {
            if key.starts_with("LFP_") && !KNOWN_ENV.contains(&key.as_str()) {
                return Err(ConfigError::UnknownEnv(key.clone()));
            }
        }
        let file = file.or_else(|| get("LFP_CONFIG").map(PathBuf::from));
        let fc = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                        path: path.clone(),
                        source,
                    })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::ParseFile {
                    path,
                    message: e.message().to_string(),
                })?
            }
            None => FileConfig::default(),
        };

        let mut c = Self::defaults();
        let data_dir_set = fc.data_dir.is_some() || get("LFP_DATA_DIR").is_some();
        if let Some(v) = pick(
            get("LFP_DATA_DIR"),
            fc.data_dir.map(|p| p.display().to_string()),
        ) {
            c.data_dir = PathBuf::from(v);
        }
        if let Some(v) = pick(get("LFP_BIND"), fc.bind) {
            c.bind = v.parse().map_err(|_| {
                invalid(
                    "LFP_BIND",
                    format!("`{v}` is not an address like 127.0.0.1:8080"),
                )
            })?;
            // Listening on every address says nothing about the one browsers use: the local one
            // works here (forms check that Origin is the public URL; `Config::public_url_guessed`).
            let mut shown = c.bind;
            if shown.ip().is_unspecified() {
                shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            c.public_url = url::Url::parse(&format!("http://{shown}")).expect("address url");
        }
        match pick(get("DATABASE_URL"), fc.database_url) {
            Some(v) => c.database_url = v.into(),
            None if data_dir_set => {
                c.database_url = format!("sqlite://{}/lawfirm.db", c.data_dir.display()).into()
            }
            None => {}
        }
        crate::db::DbKind::parse(&c.database_url).map_err(|m| invalid("DATABASE_URL", m))?;
        if let Some(v) = pick(get("LFP_PUBLIC_URL"), fc.public_url) {
            let u = url::Url::parse(&v)
                .map_err(|e| invalid("LFP_PUBLIC_URL", format!("`{v}`: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(invalid(
                    "LFP_PUBLIC_URL",
                    "must be an http or https URL".into(),
                ));
            }
            // A directory: links are joined as relative paths (`invoices/…`), which would
            // replace the last segment of `https://firm.example/portal`.
            let mut u = u;
            if !u.path().ends_with('/') {
                u.set_path(&format!("{}/", u.path()));
            }
            c.public_url = u;
        }
        num(
            &mut c.max_upload_bytes,
            "LFP_MAX_UPLOAD_BYTES",
            get("LFP_MAX_UPLOAD_BYTES"),
            fc.max_upload_bytes,
            1,
        )?;
        num(
            &mut c.max_json_bytes,
            "LFP_MAX_JSON_BYTES",
            get("LFP_MAX_JSON_BYTES"),
            fc.max_json_bytes,
            1024,
        )?;
        num(
            &mut c.access_token_ttl_secs,
            "LFP_ACCESS_TOKEN_TTL_SECS",
            get("LFP_ACCESS_TOKEN_TTL_SECS"),
            fc.access_token_ttl_secs,
            10,
        )?;
        if c.access_token_ttl_secs > 900 {
            return Err(invalid(
                "LFP_ACCESS_TOKEN_TTL_SECS",
                "must be at most 900 (15 minutes)".into(),
            ));
        }
        num(
            &mut c.refresh_token_ttl_days,
            "LFP_REFRESH_TOKEN_TTL_DAYS",
            get("LFP_REFRESH_TOKEN_TTL_DAYS"),
            fc.refresh_token_ttl_days,
            1,
        )?;
        num(
            &mut c.invitation_ttl_hours,
            "LFP_INVITATION_TTL_HOURS",
            get("LFP_INVITATION_TTL_HOURS"),
            fc.invitation_ttl_hours,
            1,
        )?;
        num(
            &mut c.db_max_connections,
            "LFP_DB_MAX_CONNECTIONS",
            get("LFP_DB_MAX_CONNECTIONS"),
            fc.db_max_connections,
            2,
        )?;
        num(
            &mut c.password_hash_concurrency,
            "LFP_PASSWORD_HASH_CONCURRENCY",
            get("LFP_PASSWORD_HASH_CONCURRENCY"),
            fc.password_hash_concurrency,
            1,
        )?;
        num(
            &mut c.password_hash_queue,
            "LFP_PASSWORD_HASH_QUEUE",
            get("LFP_PASSWORD_HASH_QUEUE"),
            fc.password_hash_queue,
            0,
        )?;
        if let Some(v) = pick(get("LFP_TRUSTED_PROXIES"), fc.trusted_proxies) {
            c.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse().map_err(|_| {
                        invalid("LFP_TRUSTED_PROXIES", format!("`{s}` is not an IP address"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        num(
            &mut c.ws_max_per_user,
            "LFP_WS_MAX_PER_USER",
            get("LFP_WS_MAX_PER_USER"),
            fc.ws_max_per_user,
            1,
        )?;
        num(
            &mut c.ws_max_per_ip,
            "LFP_WS_MAX_PER_IP",
            get("LFP_WS_MAX_PER_IP"),
            fc.ws_max_per_ip,
            1,
        )?;
        num(
            &mut c.ws_replay_window,
            "LFP_WS_REPLAY_WINDOW",
            get("LFP_WS_REPLAY_WINDOW"),
            fc.ws_replay_window,
            1,
        )?;
        num(
            &mut c.header_read_timeout_secs,
            "LFP_HEADER_READ_TIMEOUT_SECS",
            get("LFP_HEADER_READ_TIMEOUT_SECS"),
            fc.header_read_timeout_secs,
            1,
        )?;
        if let Some(v) = pick(get("LFP_OBJECT_STORE"), fc.object_store) {
            crate::storage::parse_store_url(&v).map_err(|m| invalid("LFP_OBJECT_STORE", m))?;
            c.object_store = Some(v);
        }
        num(
            &mut c.document_retention_days,
            "LFP_DOCUMENT_RETENTION_DAYS",
            get("LFP_DOCUMENT_RETENTION_DAYS"),
            fc.document_retention_days,
            0,
        )?;
        flag(
            &mut c.open_registration,
            "LFP_OPEN_REGISTRATION",
            get("LFP_OPEN_REGISTRATION"),
            fc.open_registration,
        )?;
        flag(
            &mut c.audit_durable_reads,
            "LFP_AUDIT_DURABLE_READS",
            get("LFP_AUDIT_DURABLE_READS"),
            fc.audit_durable_reads,
        )?;
        if let Some(v) = pick(get("LFP_LOG_FORMAT"), None) {
            c.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                _ => {
                    return Err(invalid(
                        "LFP_LOG_FORMAT",
                        format!("`{v}` is not json or pretty"),
                    ));
                }
            };
        } else if let Some(f) = fc.log_format {
            c.log_format = f;
        }
        if let Some(v) = pick(get("LFP_SMTP_URL"), fc.smtp_url) {
            let u = url::Url::parse(&v)
                .map_err(|_| invalid("LFP_SMTP_URL", "is not a URL like smtp://host:25".into()))?;
            if !matches!(u.scheme(), "smtp" | "smtps") {
                return Err(invalid(
                    "LFP_SMTP_URL",
                    "must start with smtp:// or smtps://".into(),
                ));
            }
            c.smtp_url = Some(SecretString::from(v));
        }
        if let Some(v) = pick(get("LFP_MAIL_FROM"), fc.mail_from) {
            if v.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    "LFP_MAIL_FROM",
                    format!("`{v}` is not an address like Firm <no-reply@example.com>"),
                ));
            }
            c.mail_from = Some(v);
        }
        if let Some(v) = pick(get("LFP_TIMEZONE"), fc.timezone) {
            c.timezone = v.trim().parse().map_err(|_| {
                invalid(
                    "LFP_TIMEZONE",
                    format!("`{v}` is not an IANA time zone like America/New_York"),
                )
            })?;
        }
        if let Some(v) = pick(get("LFP_REMINDER_MINUTES"), fc.reminder_minutes) {
            let mut mins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<i64>() {
                    Ok(n) if (1..=60 * 24 * 30).contains(&n) => Ok(n),
                    _ => Err(invalid(
                        "LFP_REMINDER_MINUTES",
                        format!("`{s}` is not a number of minutes between 1 and 43200"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            mins.sort_unstable_by(|a, b| b.cmp(a));
            mins.dedup();
            c.reminder_minutes = mins;
        }
        num(
            &mut c.booking_min_notice_minutes,
            "LFP_BOOKING_MIN_NOTICE_MINUTES",
            get("LFP_BOOKING_MIN_NOTICE_MINUTES"),
            fc.booking_min_notice_minutes,
            0,
        )?;
        c.jwt_secret = pick(get("LFP_JWT_SECRET"), fc.jwt_secret).map(SecretString::from);
        if let Some(s) = &c.jwt_secret {
            use secrecy::ExposeSecret;
            if s.expose_secret().len() < 32 {
                return Err(invalid(
                    "LFP_JWT_SECRET",
                    "must be at least 32 characters".into(),
                ));
            }
        }
        billing_from_env(&mut c.billing, &get)?;
        if let Some(path) = get("LFP_FIRM_LOGO").filter(|v| !v.trim().is_empty()) {
            c.firm_logo = Some(
                FirmLogo::load(std::path::Path::new(path.trim()))
                    .map_err(|m| invalid("LFP_FIRM_LOGO", m))?,
            );
        }
        c.master_key = pick(get("LFP_MASTER_KEY"), fc.master_key).map(SecretString::from);
        if let Some(k) = &c.master_key {
            crate::crypto::MasterKey::from_base64(k).map_err(|m| invalid("LFP_MASTER_KEY", m))?;
        }
        Ok(c)
    }
}

fn billing_from_env(
    b: &mut BillingConfig,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
    if let Some(v) = get("LFP_CURRENCY") {
        b.currency = crate::billing::money::Currency::parse(v.trim())
            .map_err(|m| invalid("LFP_CURRENCY", format!("`{v}` {m}")))?;
    }
    if let Some(v) = get("LFP_FIRM_NAME") {
        b.firm_name = v.trim().to_string();
    }
    if let Some(v) = get("LFP_TAX_RATE_BPS") {
        b.tax_rate_bps = v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| invalid("LFP_TAX_RATE_BPS", format!("`{v}` is not 0..10000")))?;
    }
    if let Some(v) = get("LFP_PAYMENTS_API_BASE") {
        let u = url::Url::parse(v.trim())
            .map_err(|e| invalid("LFP_PAYMENTS_API_BASE", format!("`{v}`: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(invalid(
                "LFP_PAYMENTS_API_BASE",
                "must be an http or https URL".into(),
            ));
        }
        b.payments_api_base = Some(u);
    }
    b.payments_api_key = get("LFP_PAYMENTS_API_KEY").map(SecretString::from);
    b.payments_webhook_secret = get("LFP_PAYMENTS_WEBHOOK_SECRET").map(SecretString::from);
    Ok(())
}

fn pick(env: Option<String>, file: Option<String>) -> Option<String> {
    env.filter(|v| !v.is_empty()).or(file)
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A true/false setting: the environment's value if set, else the file's, else unchanged.
fn flag(
    slot: &mut bool,
    key: &'static str,
    env: Option<String>,
    file: Option<bool>,
) -> Result<(), ConfigError> {
    if let Some(v) = pick(env, file.map(|b| b.to_string())) {
        *slot =
            parse_bool(&v).ok_or_else(|| invalid(key, format!("`{v}` is not true or false")))?;
    }
    Ok(())
}

fn num<T>(
    slot: &mut T,
    key: &'static str,
    env: Option<String>,
    file: Option<T>,
    min: T,
) -> Result<(), ConfigError>
where
    T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
{
    let value = match (env.filter(|v| !v.is_empty()), file) {
        (Some(v), _) => v
            .trim()
            .parse::<T>()
            .map_err(|_| invalid(key, format!("`{v}` is not a number")))?,
        (None, Some(v)) => v,
        (None, None) => return Ok(()),
    };
    if value < min {
        return Err(invalid(key, format!("must be at least {min}")));
    }
    *slot = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_sqlite_under_data() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(&*c.database_url, "sqlite://./data/lawfirm.db");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.max_upload_bytes, 100 * 1024 * 1024);
        assert!(!c.open_registration);
        assert!(!c.audit_durable_reads);
        let c = Config::from_sources(
            None,
            &env(&[
                ("LFP_AUDIT_DURABLE_READS", "true"),
                ("LFP_OPEN_REGISTRATION", "yes"),
            ]),
        )
        .unwrap();
        assert!(c.audit_durable_reads && c.open_registration);
    }

    #[test]
    fn data_dir_moves_the_default_database() {
        let c = Config::from_sources(None, &env(&[("LFP_DATA_DIR", "/srv/lfp")])).unwrap();
        assert_eq!(&*c.database_url, "sqlite:///srv/lfp/lawfirm.db");
    }

    #[test]
    fn unknown_env_is_refused_with_its_name() {
        let e = Config::from_sources(None, &env(&[("LFP_BINDD", "x")])).unwrap_err();
        assert!(e.to_string().contains("LFP_BINDD"), "{e}");
    }

    #[test]
    fn malformed_values_name_their_key() {
        for (k, v) in [
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "nonsense"),
            ("LFP_BIND", "localhost"),
            ("LFP_MAX_UPLOAD_BYTES", "lots"),
            ("LFP_OPEN_REGISTRATION", "maybe"),
            ("LFP_AUDIT_DURABLE_READS", "sometimes"),
            ("LFP_ACCESS_TOKEN_TTL_SECS", "3600"),
            ("LFP_JWT_SECRET", "short"),
            ("LFP_SMTP_URL", "mail.example.com"),
            ("LFP_SMTP_URL", "http://mail.example.com"),
            ("LFP_MAIL_FROM", "not an address"),
            ("LFP_TIMEZONE", "Mars/Olympus_Mons"),
            ("LFP_REMINDER_MINUTES", "60,soon"),
            ("LFP_REMINDER_MINUTES", "0"),
            ("LFP_BOOKING_MIN_NOTICE_MINUTES", "-5"),
        ] {
            let e = Config::from_sources(None, &env(&[(k, v)])).unwrap_err();
            assert!(e.to_string().starts_with(k), "{k}={v}: {e}");
        }
    }

    #[test]
    fn printing_the_configuration_never_shows_the_database_password() {
        let mut c = Config::defaults();
        for url in [
            "postgres://lfp:s3cret-pw@db.internal:5432/lawfirm",
            "postgres://db.internal/lawfirm?user=lfp&password=s3cret-pw&sslmode=require",
        ] {
            c.database_url = url.into();
            let shown = format!("{c:?}");
            assert!(!shown.contains("s3cret-pw"), "{shown}");
            assert!(
                shown.contains("db.internal"),
                "the rest stays readable: {shown}"
            );
            assert_eq!(&*c.database_url, url, "the driver gets the URL as given");
        }
    }

    #[test]
    fn listening_everywhere_defaults_the_public_url_to_loopback_and_says_so() {
        let c = Config::from_sources(None, &env(&[("LFP_BIND", "0.0.0.0:9090")])).unwrap();
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:9090/");
        assert!(c.public_url_guessed());
        let c = Config::from_sources(
            None,
            &env(&[
                ("LFP_BIND", "0.0.0.0:9090"),
                ("LFP_PUBLIC_URL", "https://portal.firm.example"),
            ]),
        )
        .unwrap();
        assert!(!c.public_url_guessed());
        let c = Config::from_sources(None, &env(&[("LFP_BIND", "127.0.0.1:9090")])).unwrap();
        assert!(!c.public_url_guessed());
    }

    #[test]
    fn links_keep_the_path_of_the_public_url() {
        for (v, base) in [
            ("https://firm.example", "https://firm.example/"),
            (
                "https://firm.example/portal",
                "https://firm.example/portal/",
            ),
            (
                "https://firm.example/portal/",
                "https://firm.example/portal/",
            ),
        ] {
            let c = Config::from_sources(None, &env(&[("LFP_PUBLIC_URL", v)])).unwrap();
            assert_eq!(c.public_url.as_str(), base);
            assert_eq!(
                c.public_url.join("invoices/1").unwrap().as_str(),
                format!("{base}invoices/1")
            );
        }
    }

    #[test]
    fn mail_and_appointment_settings() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert!(c.smtp_url.is_none());
        assert_eq!(c.reminder_minutes, vec![1440, 60]);
        assert_eq!(c.booking_min_notice_minutes, 120);
        let c = Config::from_sources(
            None,
            &env(&[
                ("LFP_SMTP_URL", "smtps://u:p@mail.example.com"),
                ("LFP_MAIL_FROM", "Firm <office@example.com>"),
                ("LFP_REMINDER_MINUTES", "15, 1440,15,60"),
                ("LFP_BOOKING_MIN_NOTICE_MINUTES", "0"),
            ]),
        )
        .unwrap();
        assert!(c.smtp_url.is_some());
        assert_eq!(c.reminder_minutes, vec![1440, 60, 15]);
        assert_eq!(c.booking_min_notice_minutes, 0);
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "bind = \"127.0.0.1:9000\"\nmax_upload_bytes = 2048\n",
        )
        .unwrap();
        let c = Config::from_sources(Some(good.clone()), &[]).unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.max_upload_bytes, 2048);
        // The environment wins over the file.
        let c =
            Config::from_sources(Some(good), &env(&[("LFP_MAX_UPLOAD_BYTES", "4096")])).unwrap();
        assert_eq!(c.max_upload_bytes, 4096);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "bnid = \"127.0.0.1:9000\"\n").unwrap();
        let e = Config::from_sources(Some(bad), &[]).unwrap_err();
        assert!(e.to_string().contains("bnid"), "{e}");
    }

    #[test]
    fn billing_settings() {
        let c = Config::from_sources(None, &[]).unwrap();
        assert_eq!(c.billing.currency.code(), "USD");
        assert_eq!(c.billing.firm_name, "Law Firm Pro");
        assert!(c.billing.payments_webhook_secret.is_none());
        let c = Config::from_sources(
            None,
            &env(&[
                ("LFP_CURRENCY", "eur"),
                ("LFP_FIRM_NAME", "Smith & Co"),
                ("LFP_TAX_RATE_BPS", "825"),
                ("LFP_PAYMENTS_API_BASE", "https://api.stripe.com"),
                ("LFP_PAYMENTS_WEBHOOK_SECRET", "whsec_x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.billing.currency.code(), "EUR");
        assert_eq!(c.billing.tax_rate_bps, 825);
        assert!(c.billing.payments_api_base.is_some());
        for (k, v) in [
            ("LFP_CURRENCY", "XYZ"),
            ("LFP_TAX_RATE_BPS", "10001"),
            ("LFP_TAX_RATE_BPS", "-1"),
            ("LFP_PAYMENTS_API_BASE", "ftp://x"),
        ] {
            let e = Config::from_sources(None, &env(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
