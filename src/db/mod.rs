//! The database: one SeaORM connection over SQLite (default) or PostgreSQL, the rules each
//! backend needs (WAL, foreign keys, busy timeout), migrations, and write transactions.

pub mod fts;
pub mod migrations;
pub mod recount;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionTrait,
    sqlx::{
        self,
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The size SQLite cuts a database's write-ahead log back to when it starts the log over
/// after a checkpoint. Without a limit the file keeps its largest size ever (a full-text
/// merge or a bulk import left 577 MB behind on a large firm), though only its first frames
/// are in use.
pub const WAL_SIZE_LIMIT: u64 = 64 << 20;

/// Each pooled SQLite connection's page cache, in KiB (ADR 0014). SQLite's default of 2 MB
/// holds the upper levels of a few indexes of a small firm; on a large one every key lookup
/// of a page (a membership or recipient probe per row) went back to the operating system's
/// cache through a system call: the probes of a ranked search's 250 rows took 2.6–3.0 ms
/// with 2 MB and 0.9–1.0 ms with 8 MB on the scale-100 firm (0.5–0.8 ms at scale 1 either way).
/// At most the pool's size plus the audit writer's one connection times this (17 × 8 MiB)
/// under full load; the memory returns as idle connections close.
pub const SQLITE_CACHE_KIB: u32 = 8 * 1024;

/// Which engine a `DATABASE_URL` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite { path: PathBuf },
    Postgres,
}

impl DbKind {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(format!(
                    "`{url}` names no database file (use sqlite://PATH)"
                ));
            }
            Ok(Self::Sqlite {
                path: PathBuf::from(path),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url::Url::parse(url).map_err(|e| format!("malformed PostgreSQL URL: {e}"))?;
            Ok(Self::Postgres)
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }
}

/// The shared database handle. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite allows one writer; serialising our own writers here turns lock-upgrade
    /// failures (SQLITE_BUSY inside a transaction) into an orderly queue.
    writer: Option<Arc<Mutex<()>>>,
    /// Woken after every committed write, so in-process listeners (the live-event hub on
    /// SQLite) look for new rows without polling.
    committed: Arc<tokio::sync::Notify>,
    /// Counts the transactions committed through [`WriteTxn`], so a task that remembers what
    /// it last wrote can tell whether anyone wrote since (the audit writer's chain head).
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// The audit writer's connection, whose commits do not wait for the disk (ADR 0007).
    /// `None` when reads' entries must be on disk before the answer (`LFP_AUDIT_DURABLE_READS`).
    lazy: Option<Lazy>,
    /// SQLite with an audit spool (ADR 0008): a change commits only after the spool's WAL is
    /// synced, so a change on disk implies every read entry acknowledged before it is too.
    sync_before_commit: Option<Arc<WalFlush>>,
    /// PostgreSQL: a second pool whose statements are planned for each execution's parameters,
    /// for the reads whose best plan depends on whose rows they read (ADR 0010). `None` on
    /// SQLite.
    custom_plans: Option<DatabaseConnection>,
    statements: StatementLog,
}

/// One connection whose commits are visible at once and survive a crash of this process, but
/// reach the disk just after the commit instead of inside it: SQLite `synchronous = NORMAL`
/// with a flush of the WAL started by each commit, PostgreSQL `synchronous_commit = off`
/// (its WAL writer flushes within a few hundred milliseconds). A power cut in that moment can
/// lose the newest such commits, never a part of one and never an older one (ADR 0007).
#[derive(Clone)]
struct Lazy {
    conn: DatabaseConnection,
    /// SQLite only: the WAL file to sync after each commit.
    flush: Option<Arc<WalFlush>>,
}

/// Syncs SQLite's WAL after lazy commits, one `fsync` at a time on a blocking thread; commits
/// made while one runs share the next. Also used for the audit spool's WAL (ADR 0008).
pub(crate) struct WalFlush {
    wal: PathBuf,
    /// Lazy commits counted so far.
    committed: std::sync::atomic::AtomicU64,
    /// How many of them a successful sync covered.
    synced: tokio::sync::watch::Sender<u64>,
    running: std::sync::atomic::AtomicBool,
}

impl WalFlush {
    /// A flush for the WAL file at `wal` (the database's real path plus `-wal`).
    pub(crate) fn new(wal: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            wal,
            committed: Default::default(),
            synced: tokio::sync::watch::Sender::new(0),
            running: Default::default(),
        })
    }

    /// Count one commit and start a sync that covers it.
    pub(crate) fn committed(self: &Arc<Self>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.committed.fetch_add(1, SeqCst);
        if !self.running.swap(true, SeqCst) {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.run());
        }
    }

    fn run(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        /// Clears `running` however `run` ends, so a panic cannot stop every later sync.
        struct Running<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.store(false, SeqCst);
            }
        }
        loop {
            let guard = Running(&self.running);
            let target = self.committed.load(SeqCst);
            // fsync applies to the file, whichever descriptor asks; SQLite's own is not ours.
            // While the pools are open the WAL exists, so a missing file is an error too: it
            // would mean we sync the wrong path.
            match std::fs::File::open(&self.wal).and_then(|f| f.sync_data()) {
                Ok(()) => self.synced.send_modify(|s| *s = (*s).max(target)),
                // Not counted as synced: the next commit tries again, and a clean stop that
                // waits for it gives up after a while and says so.
                Err(e) => {
                    tracing::error!(error = %e, wal = %self.wal.display(), "syncing the WAL failed")
                }
            }
            drop(guard);
            // A commit counted after `target` may have found us running and left its sync to us.
            if self.committed.load(SeqCst) == target || self.running.swap(true, SeqCst) {
                return;
            }
        }
    }

    /// Commits counted so far, and how many of them a successful sync covered.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.committed.load(std::sync::atomic::Ordering::SeqCst),
            *self.synced.borrow(),
        )
    }

    /// Resolves once every commit counted before the call is synced. A sync that failed is
    /// tried again here each second (not only by the next commit, which may never come).
    pub(crate) async fn wait(self: &Arc<Self>) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let target = self.committed.load(SeqCst);
        let mut rx = self.synced.subscribe();
        loop {
            if *rx.borrow_and_update() >= target {
                return true;
            }
            if !self.running.swap(true, SeqCst) {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.run());
            }
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await {
                return false;
            }
        }
    }

    /// Count a commit made elsewhere (another process's, on the same file) and wait for a
    /// sync that covers it: an `fsync` covers every write to the file, whoever made it.
    pub(crate) async fn sync_now(self: &Arc<Self>) -> bool {
        self.committed();
        self.wait().await
    }
}

/// The statements executed through this handle (and its transactions), recorded only while
/// switched on: tests count the queries a request makes with it (N+1 checks) and the load
/// benchmark replays a request's own SQL. Off, it costs one atomic load per statement.
#[derive(Clone, Default)]
pub struct StatementLog {
    on: Arc<std::sync::atomic::AtomicBool>,
    taken: Arc<std::sync::Mutex<Vec<Logged>>>,
}

/// One recorded statement and the pool it ran on.
#[derive(Clone, Debug)]
pub struct Logged {
    pub statement: sea_orm::Statement,
    /// Ran on [`Db::custom_plans`]' own pool (PostgreSQL), planned for its parameters.
    pub custom_plan: bool,
}

impl StatementLog {
    /// Forget what was recorded and start recording.
    pub fn start(&self) {
        self.taken.lock().expect("statement log").clear();
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stop recording and hand over what was recorded since `start`.
    pub fn stop(&self) -> Vec<sea_orm::Statement> {
        self.stop_logged()
            .into_iter()
            .map(|l| l.statement)
            .collect()
    }

    /// [`StatementLog::stop`], with the pool each statement ran on.
    pub fn stop_logged(&self) -> Vec<Logged> {
        self.on.store(false, std::sync::atomic::Ordering::SeqCst);
        std::mem::take(&mut *self.taken.lock().expect("statement log"))
    }

    fn attach(&self, conn: &mut DatabaseConnection, custom_plan: bool) {
        let log = self.clone();
        conn.set_metric_callback(move |info| {
            if log.on.load(std::sync::atomic::Ordering::Relaxed) {
                log.taken.lock().expect("statement log").push(Logged {
                    statement: info.statement.clone(),
                    custom_plan,
                });
            }
        });
    }
}

/// How long a change waits for the audit spool's sync before it gives up uncommitted (a
/// failing disk): the spool's read entries must reach the disk before a later change does.
const SPOOL_SYNC_LIMIT: Duration = Duration::from_secs(10);

/// A transaction that may write. On SQLite it holds the process-wide writer slot until the
/// transaction has really ended — also when it is dropped without commit (early return or
/// error): the rollback then runs on a task that keeps the slot until it is done, so the next
/// writer never meets a connection still holding SQLite's write lock.
pub struct WriteTxn {
    txn: Option<DatabaseTransaction>,
    slot: Option<OwnedMutexGuard<()>>,
    committed: Arc<tokio::sync::Notify>,
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// Set when the transaction runs on the lazy connection (SQLite): its commit starts a sync.
    flush: Option<Arc<WalFlush>>,
    /// Waited for before the commit (the audit spool's WAL, ADR 0008).
    sync_first: Option<Arc<WalFlush>>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        self.txn
            .as_ref()
            .expect("transaction is live until commit or drop")
    }
}

impl WriteTxn {
    pub async fn commit(mut self) -> Result<(), DbErr> {
        if let Some(first) = &self.sync_first
            && !matches!(
                tokio::time::timeout(SPOOL_SYNC_LIMIT, first.wait()).await,
                Ok(true)
            )
        {
            // Dropped uncommitted (rolled back): the caller answers 503.
            return Err(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout));
        }
        let txn = self.txn.take().expect("live transaction");
        txn.commit().await?;
        if let Some(flush) = &self.flush {
            flush.committed();
        }
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.slot.take();
        self.committed.notify_waiters();
        Ok(())
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            let slot = self.slot.take();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = txn.rollback().await {
                        tracing::warn!(error = %e, "rollback of an abandoned transaction failed");
                    }
                    drop(slot);
                });
            }
        }
    }
}

impl Db {
    /// Connect, creating a new SQLite file only where the operator can see it happen.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        match DbKind::parse(url).map_err(|m| anyhow::anyhow!("DATABASE_URL {m}"))? {
            DbKind::Sqlite { path } => {
                let exists = path.exists();
                if !exists {
                    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                    if let Some(parent) = parent {
                        std::fs::create_dir_all(parent).with_context(|| {
                            format!("DATABASE_URL: cannot create directory {}", parent.display())
                        })?;
                    }
                }
                let opts = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
                    // Negative: KiB rather than pages.
                    .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
                let pool = sqlite_pool(max_connections)
                    .connect_with(opts.clone())
                    .await
                    .with_context(|| format!("opening SQLite database {}", path.display()))?;
                // Opened on first use: commands that never audit a read never open it.
                let lazy_pool =
                    sqlite_pool(1).connect_lazy_with(opts.synchronous(SqliteSynchronous::Normal));
                // SQLite names the WAL after the database's real path (symlinks resolved).
                let mut wal = std::fs::canonicalize(&path)
                    .with_context(|| format!("resolving {}", path.display()))?
                    .into_os_string();
                wal.push("-wal");
                if !exists {
                    let abs = std::fs::canonicalize(&path).unwrap_or(path);
                    tracing::info!(path = %abs.display(), "created a new SQLite database");
                }
                let statements = StatementLog::default();
                let mut conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
                if !sqlite_plans_are_stable(&conn).await? {
                    tracing::warn!(
                        "SQLite was built without SQLITE_ENABLE_QPSG (build from the repository, \
                         whose .cargo/config.toml sets it): statements are compiled again on \
                         every execution (ADR 0012)"
                    );
                }
                statements.attach(&mut conn, false);
                let mut lazy = SqlxSqliteConnector::from_sqlx_sqlite_pool(lazy_pool);
                statements.attach(&mut lazy, false);
                Ok(Self {
                    conn,
                    writer: Some(Arc::new(Mutex::new(()))),
                    committed: Arc::default(),
                    commits: Arc::default(),
                    lazy: Some(Lazy {
                        conn: lazy,
                        flush: Some(WalFlush::new(wal.into())),
                    }),
                    sync_before_commit: None,
                    custom_plans: None,
                    statements,
                })
            }
            DbKind::Postgres => {
                let opts: PgConnectOptions = url.parse().context("DATABASE_URL")?;
                // PostgreSQL's default plan cache (`auto`): a prepared statement is planned for
                // its parameters five times, then reuses one generic plan when that is about as
                // cheap, which saves planning (0.2-1.4 ms a statement) on most reads.
                let pool = pg_pool(max_connections)
                    .connect_with(opts.clone())
                    .await
                    .context("connecting to PostgreSQL")?;
                // Reads whose best plan depends on the user take this pool, planned for each
                // execution's parameters: the data is skewed per user (an attorney has 2,000
                // cases, a client a few), and a generic plan made the attorney's document
                // search 16-37 ms instead of 2 at scale 100 (ADR 0010). Opened as needed; at
                // most half the main pool's connections, as few reads take it.
                let custom_plans = pg_pool((max_connections / 2).max(2)).connect_lazy_with(
                    opts.clone()
                        .options([("plan_cache_mode", "force_custom_plan")]),
                );
                let lazy_pool =
                    pg_pool(1).connect_lazy_with(opts.options([("synchronous_commit", "off")]));
                let statements = StatementLog::default();
                let mut conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
                statements.attach(&mut conn, false);
                let mut lazy = SqlxPostgresConnector::from_sqlx_postgres_pool(lazy_pool);
                statements.attach(&mut lazy, false);
                let mut custom_plans = SqlxPostgresConnector::from_sqlx_postgres_pool(custom_plans);
                statements.attach(&mut custom_plans, true);
                Ok(Self {
                    conn,
                    writer: None,
                    committed: Arc::default(),
                    commits: Arc::default(),
                    lazy: Some(Lazy {
                        conn: lazy,
                        flush: None,
                    }),
                    sync_before_commit: None,
                    custom_plans: Some(custom_plans),
                    statements,
                })
            }
        }
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The connection for a read whose best plan depends on whose rows it reads (a member's
    /// walk over skewed data: an attorney's thousands of rows against a client's few), planned
    /// for each execution's parameters on PostgreSQL instead of reusing a generic plan
    /// (ADR 0010). Never inside a transaction of [`Db::conn`]: read through the transaction.
    pub fn custom_plans(&self) -> &DatabaseConnection {
        self.custom_plans.as_ref().unwrap_or(&self.conn)
    }

    /// The statement log of this handle (off unless started).
    pub fn statements(&self) -> &StatementLog {
        &self.statements
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// SQLite's writer slot, held by every [`WriteTxn`]: for a write that is one statement
    /// (its own transaction) and needs no `WriteTxn`. `None` on PostgreSQL.
    pub async fn writer_slot(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.writer {
            Some(m) => Some(m.clone().lock_owned().await),
            None => None,
        }
    }

    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let slot = self.writer_slot().await;
        Ok(WriteTxn {
            txn: Some(self.conn.begin().await?),
            slot,
            committed: self.committed.clone(),
            commits: self.commits.clone(),
            flush: None,
            sync_first: self.sync_before_commit.clone(),
        })
    }

    /// The connection for appends whose commit need not wait for the disk (ADR 0007): the
    /// audit writer's entries of reads, denials and failed sign-ins. Write through
    /// [`Db::lazily`] or [`Db::begin_lazy_write`], which start the WAL sync after the commit;
    /// this handle is for reading its settings. The main connection when
    /// `LFP_AUDIT_DURABLE_READS` is set.
    pub fn lazy_conn(&self) -> &DatabaseConnection {
        self.lazy.as_ref().map_or(&self.conn, |l| &l.conn)
    }

    /// SQLite's WAL sync for lazy commits, if there is one.
    fn wal_flush(&self) -> Option<&Arc<WalFlush>> {
        self.lazy.as_ref()?.flush.as_ref()
    }

    /// [`Db::begin_write`] on [`Db::lazy_conn`].
    pub async fn begin_lazy_write(&self) -> Result<WriteTxn, DbErr> {
        let slot = self.writer_slot().await;
        Ok(WriteTxn {
            txn: Some(self.lazy_conn().begin().await?),
            slot,
            committed: self.committed.clone(),
            commits: self.commits.clone(),
            flush: self.wal_flush().cloned(),
            sync_first: None,
        })
    }

    /// Run autocommitted statements on [`Db::lazy_conn`]; when they succeed, start the WAL sync
    /// that follows each lazy commit (SQLite). A [`WriteTxn`] from [`Db::begin_lazy_write`]
    /// does this on its own commit.
    pub async fn lazily<T>(
        &self,
        statements: impl AsyncFnOnce(&DatabaseConnection) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let out = statements(self.lazy_conn()).await;
        // Even on an error: statements before the failing one may have committed.
        if let Some(flush) = self.wal_flush() {
            flush.committed();
        }
        out
    }

    /// Resolves when every lazy commit made before the call is on disk: on SQLite once a WAL
    /// sync that covers it has succeeded; at once on PostgreSQL, which flushes on its own and
    /// on a clean stop. False if that took longer than `limit` (a failing disk).
    pub async fn lazy_commits_synced(&self, limit: Duration) -> bool {
        match self.wal_flush() {
            Some(flush) => tokio::time::timeout(limit, flush.wait())
                .await
                .unwrap_or(false),
            None => true,
        }
    }

    /// Lazy commits on SQLite so far and how many are known synced, for tests and metrics.
    pub fn lazy_sync_counts(&self) -> Option<(u64, u64)> {
        Some(self.wal_flush()?.counts())
    }

    /// Every commit waits for the disk, the audit writer's included (`LFP_AUDIT_DURABLE_READS`).
    pub fn without_lazy_commits(mut self) -> Self {
        self.lazy = None;
        self
    }

    /// Make every [`Db::begin_write`] transaction wait for `flush` before it commits (the audit
    /// spool's WAL, ADR 0008). Call before the handle is cloned.
    pub(crate) fn sync_before_commit(mut self, flush: Arc<WalFlush>) -> Self {
        self.sync_before_commit = Some(flush);
        self
    }

    /// How many transactions have been committed through [`WriteTxn`] since connecting.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves after the next committed write through this handle (or its clones).
    pub fn committed(&self) -> Arc<tokio::sync::Notify> {
        self.committed.clone()
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        migrations::Migrator::up(&self.conn, None).await
    }

    /// A round trip, for readiness.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    pub async fn close(self) {
        let lazy = self.lazy.iter().map(|l| &l.conn);
        for conn in lazy.chain(&self.custom_plans).chain([&self.conn]) {
            if let Err(e) = conn.close_by_ref().await {
                tracing::warn!(error = %e, "closing a connection pool failed");
            }
        }
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY and backend-specific SQL.
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        (self.backend() == DbBackend::Postgres).then(|| self.conn.get_postgres_connection_pool())
    }
}

/// sqlx pings a pooled connection when it is taken and again when it is put back: two round
/// trips around every statement (a fifth of the server's time in a PostgreSQL load run). The
/// one on release stays (it also flushes what a cancelled query left); the one on taking is
/// kept only for a connection idle long enough for the server or a firewall to have dropped it.
const PING_IF_IDLE: Duration = Duration::from_secs(30);

fn pg_pool(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // Fail fast when the server is down: callers answer 503 and retry later.
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A local file never drops a connection: no ping when taking one (see [`PING_IF_IDLE`]).
fn sqlite_pool(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
}

/// Whether the linked SQLite keeps a statement's plan whatever values are bound (the query
/// planner stability guarantee, ADR 0012). Without it SQLite 3.51 compiles every statement
/// with a bound `LIMIT` (all of sea-orm's `one()` and pages) again on each execution.
pub async fn sqlite_plans_are_stable(conn: &DatabaseConnection) -> Result<bool, DbErr> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT sqlite_compileoption_used('ENABLE_QPSG') AS on_",
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "on_")).transpose()? == Some(1))
}

/// Now, truncated to microseconds: both backends then store and return the same instant.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// True when the error is a unique-constraint violation (the same on both backends).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build links SQLite with the query-planner stability guarantee (`.cargo/config.toml`,
    /// ADR 0012): without it every read with a bound `LIMIT` is compiled anew each time it runs.
    #[tokio::test]
    async fn sqlite_is_built_to_keep_compiled_statements() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 1).await.unwrap();
        assert!(sqlite_plans_are_stable(db.conn()).await.unwrap());
        db.close().await;
    }

    /// Every pooled connection gets the larger page cache (ADR 0014), not SQLite's 2 MB.
    #[tokio::test]
    async fn every_sqlite_connection_has_the_larger_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 3).await.unwrap();
        // Three connections at once: each a different one of the pool.
        let txns = futures::future::try_join_all((0..3).map(|_| db.conn().begin()))
            .await
            .unwrap();
        for t in &txns {
            let row = t
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA cache_size",
                ))
                .await
                .unwrap()
                .unwrap();
            let kib: i64 = row.try_get_by_index(0).unwrap();
            assert_eq!(kib, -i64::from(SQLITE_CACHE_KIB));
        }
        drop(txns);
        db.close().await;
    }

    /// A sync that failed is not counted, and whoever waits for it tries again (a commit that
    /// would start the next sync may never come): here the file appears after a failure.
    #[tokio::test]
    async fn a_failed_sync_is_retried_by_its_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db-wal");
        let flush = WalFlush::new(wal.clone());
        flush.committed();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(flush.counts(), (1, 0), "a failed sync counts nothing");
        let waiter = tokio::spawn({
            let flush = flush.clone();
            async move { flush.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "nothing synced yet");
        std::fs::write(&wal, b"frames").unwrap();
        let done = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(done, Ok(Ok(true))), "{done:?}");
        assert_eq!(flush.counts(), (1, 1));
    }

    /// After a large write is checkpointed, the next write starts the log over and cuts the
    /// file back to [`WAL_SIZE_LIMIT`] instead of leaving it at its largest size.
    #[tokio::test]
    async fn the_write_ahead_log_shrinks_back_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::connect(&format!("sqlite://{}", path.display()), 2)
            .await
            .unwrap();
        let conn = db.conn();
        conn.execute_unprepared("CREATE TABLE t (b BLOB)")
            .await
            .unwrap();
        let mib = (WAL_SIZE_LIMIT >> 20) + 8;
        conn.execute_unprepared(&format!(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
             WHERE x < {mib}) SELECT randomblob(1048576) FROM c"
        ))
        .await
        .unwrap();
        let wal = dir.path().join("t.db-wal");
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(grown > WAL_SIZE_LIMIT, "{grown}");
        conn.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
            .await
            .unwrap();
        conn.execute_unprepared("DELETE FROM t").await.unwrap();
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= WAL_SIZE_LIMIT, "{grown} -> {after}");
        db.close().await;
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            DbKind::parse("sqlite://./data/lawfirm.db").unwrap(),
            DbKind::Sqlite {
                path: "./data/lawfirm.db".into()
            }
        );
        assert_eq!(
            DbKind::parse("sqlite:///var/lib/lfp.db?mode=rwc").unwrap(),
            DbKind::Sqlite {
                path: "/var/lib/lfp.db".into()
            }
        );
        assert_eq!(
            DbKind::parse("postgres://u@h:5432/d").unwrap(),
            DbKind::Postgres
        );
        assert!(DbKind::parse("sqlite::memory:").is_err());
        assert!(DbKind::parse("mysql://x").is_err());
        assert!(DbKind::parse("postgres://u@h:notaport/d").is_err());
    }
}
