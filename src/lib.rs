//! Law Firm Pro: a self-hosted client portal for law firms. `Application::build` wires the
//! configuration, database, keys and services into one router; `main.rs` only dispatches.

pub mod appointments;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod billing;
pub mod cases;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod documents;
pub mod domain;
pub mod error;
pub mod http;
pub mod limits;
pub mod mail;
pub mod messages;
pub mod realtime;
pub mod storage;
pub mod telemetry;
pub mod users;
pub mod web;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;

/// Make ring the process's rustls provider (reqwest is built without one, so the object
/// store's and any other HTTP client would panic on first use). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Everything a request handler may need. Passed by axum `State`, never global, so tests
/// can run several differently configured applications in one process. One shared allocation:
/// axum clones the state for every extractor and middleware of every request, and a clone is
/// one reference count instead of one per field (about 3 % of the server's CPU on a cheap read).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What an [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub db: db::Db,
    pub keys: Arc<crypto::Keys>,
    pub hasher: auth::password::Hasher,
    pub tokens: Arc<auth::token::TokenKeys>,
    pub audit: audit::AuditWriter,
    pub metrics: Arc<http::metrics::Metrics>,
    pub hub: realtime::hub::Hub,
    pub limits: Arc<limits::RateLimits>,
    /// Document bytes (encrypted) in the configured object store.
    pub storage: storage::Storage,
    /// Flipped once on shutdown: open WebSockets close with 1001.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// Connect, migrate and load keys: what every command that touches data needs.
    pub async fn init(config: Config) -> anyhow::Result<Self> {
        install_tls_provider();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let mut db = db::Db::connect(&config.database_url, config.db_max_connections).await?;
        if config.audit_durable_reads {
            db = db.without_lazy_commits();
        }
        db.migrate().await.context("running database migrations")?;
        let spool = match db::DbKind::parse(&config.database_url) {
            Ok(db::DbKind::Sqlite { path }) => {
                let writes = !config.audit_durable_reads;
                match audit::spool::attach(&db, &path, writes).await? {
                    Some(spool) => {
                        if writes {
                            db = db.sync_before_commit(spool.flush());
                        }
                        // Whatever a crash (or a running server) left waiting reaches the
                        // chain before this process reads or appends. If that fails, the
                        // entries stay in the spool for the next move.
                        match spool.move_onto_chain(&db).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(entries = n, "spooled audit entries chained"),
                            Err(e) => tracing::error!(
                                error = %e,
                                "moving the audit spool onto the chain failed; entries wait"
                            ),
                        }
                        writes.then_some(spool)
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let keys = crypto::Keys::load_or_create(
            &config.data_dir,
            config.master_key.as_ref(),
            config.jwt_secret.as_ref(),
        )?;
        let tokens = auth::token::TokenKeys::new(&keys, &config);
        let storage = storage::Storage::from_config(&config)?;
        let hasher = auth::password::Hasher::new(
            config.password_hash_concurrency,
            config.password_hash_queue,
            config.insecure_fast_password_hashing,
        )
        .context("starting the password-hashing threads")?;
        let metrics = Arc::new(http::metrics::Metrics::default());
        let audit = audit::AuditWriter::spawn(db.clone(), spool, metrics.audit.clone());
        let hub = realtime::hub::Hub::new(
            config.ws_max_per_user,
            config.ws_max_per_ip,
            config.ws_replay_window,
        );
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            db,
            keys: Arc::new(keys),
            hasher,
            tokens: Arc::new(tokens),
            audit,
            metrics,
            hub,
            limits: Arc::default(),
            storage,
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        })))
    }
}

/// A built server: bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let bind = config.bind;
        let state = AppState::init(config).await?;
        documents::keys::check_master_key(&state).await?;
        if state.config.public_url_guessed() {
            tracing::warn!(
                public_url = %state.config.public_url,
                "listening on every address without LFP_PUBLIC_URL: sign-in works only at the \
                 public URL; set LFP_PUBLIC_URL to the address people use"
            );
        }
        users::service::announce_first_run(&state).await?;
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until SIGTERM or Ctrl-C, then finish in-flight requests and flush the audit writer.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener, state, ..
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        // Background jobs; each stops when `state.shutdown` flips.
        let jobs = [
            realtime::hub::spawn_dispatcher(
                state.hub.clone(),
                state.db.clone(),
                state.shutdown.subscribe(),
            ),
            mail::worker::spawn(state.clone()),
            appointments::reminders::spawn(state.clone()),
            db::fts::spawn_upkeep(state.clone()),
            documents::jobs::spawn(state.clone()),
        ];
        let app = http::router(state.clone());
        let shutdown = state.shutdown.clone();
        let limits = http::serve::ServeLimits {
            header_read_timeout: std::time::Duration::from_secs(
                state.config.header_read_timeout_secs,
            ),
            ..Default::default()
        };
        http::serve::serve(listener, app, limits, async move {
            stop.await;
            // Ask open WebSockets to close, or graceful shutdown would wait on them forever.
            let _ = shutdown.send(true);
        })
        .await?;
        for job in jobs {
            // A job stuck on a slow SMTP server must not hold the exit for long; an unsent
            // mail stays leased and is retried after the lease by the next instance.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), job).await;
        }
        state.audit.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; draining");
}
