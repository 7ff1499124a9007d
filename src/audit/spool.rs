//! SQLite only: the audit spool (ADR 0008). Entries of events that change nothing (reads of
//! client data, denials, failed sign-ins) are committed to a small SQLite database of their
//! own next to the main one, `<database>.audit-spool`, and acknowledged from there; a mover
//! chains them onto `audit_log` a moment later, many per transaction. A commit to the main
//! database makes every pooled connection drop its page cache, so one commit per read made
//! nearly every statement start cold (benchmarks round 14); a commit to the spool does not.
//!
//! Crash safety: a spool commit is in the spool's WAL before the answer leaves (a crash of
//! the process loses nothing); the WAL is synced right after, as the lazy connection's is
//! (ADR 0007), and every change to the main database waits for that sync before it commits,
//! so a change on disk implies every read entry acknowledged before it. The mover records how
//! far it has moved, per spool, in the main database's `audit_spool` row, in the same
//! transaction as the entries: a crash between that commit and the spool's clean-up moves
//! nothing twice. Whatever process opens the database next moves what a crash left behind.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use sea_orm::{
    ConnectionTrait, DbBackend, Statement,
    sqlx::{
        self, Row, SqliteConnection,
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
};

use super::{NewEntry, service};
use crate::db::{Db, WalFlush};

/// How long an acknowledged entry may wait in the spool before the mover chains it.
pub const MOVE_DELAY: Duration = Duration::from_millis(200);

/// Entries chained per transaction of a move.
const MOVE_ROWS: i64 = 2_000;

/// Entries per `INSERT` into the spool (one bound value each; SQLite allows 32,766).
const INSERT_ROWS: usize = 1_000;

/// Where the spool of the SQLite database at `db_path` lives.
pub fn path_for(db_path: &Path) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push(".audit-spool");
    p.into()
}

/// The spool of the SQLite database `db` (at `db_path`), ready for this process: opened (and
/// created when `create` is set) and registered in the database's `audit_spool` table. A spool
/// the database does not know that holds entries belongs to another database (this one was
/// replaced beside it): it is set aside, named in the log, and never chained here.
pub async fn attach(db: &Db, db_path: &Path, create: bool) -> anyhow::Result<Option<Arc<Spool>>> {
    for _ in 0..2 {
        let Some(spool) = Spool::open(db_path, create).await? else {
            return Ok(None);
        };
        let known = db
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT 1 FROM audit_spool WHERE spool_id = ?",
                [spool.id.clone().into()],
            ))
            .await?
            .is_some();
        if known {
            return Ok(Some(spool));
        }
        if spool.waiting().await? == 0 {
            let _slot = db.writer_slot().await;
            claim(db.conn(), &spool.id).await?;
            return Ok(Some(spool));
        }
        spool.pool.close().await;
        let path = path_for(db_path);
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".foreign-{}", crate::db::now().timestamp()));
        for suffix in ["", "-wal", "-shm"] {
            let (mut from, mut to) = (path.as_os_str().to_owned(), aside.clone());
            from.push(suffix);
            to.push(suffix);
            if std::path::Path::new(&from).exists() {
                std::fs::rename(&from, &to)
                    .with_context(|| format!("setting aside {}", path.display()))?;
            }
        }
        tracing::error!(
            path = %std::path::Path::new(&aside).display(),
            "the audit spool holds entries of another database; set aside, not chained"
        );
        if !create {
            return Ok(None);
        }
    }
    anyhow::bail!("the audit spool could not be opened")
}

/// An open spool. One per process and database; other processes may open the same file.
pub struct Spool {
    pool: sqlx::SqlitePool,
    /// Names this spool file in `audit_spool`: a new file (deleted, restored elsewhere)
    /// starts its own count instead of inheriting an old one's.
    id: String,
    flush: Arc<WalFlush>,
    /// Moves in this process one at a time (other processes are kept apart by SQLite's
    /// write lock and the stored count).
    moving: tokio::sync::Mutex<()>,
}

impl Spool {
    /// Open the spool of the SQLite database at `db_path`, creating it when `create` is set.
    /// `None` when it does not exist and may not be created.
    pub async fn open(db_path: &Path, create: bool) -> anyhow::Result<Option<Arc<Self>>> {
        let path = path_for(db_path);
        let exists = path.exists();
        if !exists && !create {
            return Ok(None);
        }
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("journal_size_limit", crate::db::WAL_SIZE_LIMIT.to_string());
        if !exists {
            // One connection makes the file and switches it to WAL before the pool opens two:
            // two connections switching a new, empty file at once can fail with "database is
            // locked".
            use sqlx::Connection;
            sqlx::SqliteConnection::connect_with(&opts)
                .await
                .with_context(|| format!("creating the audit spool {}", path.display()))?
                .close()
                .await?;
        }
        // Two: the writer appends while a move reads.
        // Connections stay open: when the last one closes, SQLite checkpoints and deletes the
        // WAL, and a sync racing that would find no file.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .with_context(|| format!("opening the audit spool {}", path.display()))?;
        // Each statement on its own (all are idempotent): a transaction that read first and
        // then wrote could not wait its turn behind a running server's append (it would fail
        // with SQLITE_BUSY instead), which autocommitted writes do.
        let tx = &pool;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS spool_meta \
             (id INTEGER PRIMARY KEY CHECK (id = 1), spool_id TEXT NOT NULL)",
        )
        .execute(tx)
        .await?;
        // AUTOINCREMENT: a sequence number is never reused after the rows below it are gone.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS spool \
             (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL)",
        )
        .execute(tx)
        .await?;
        sqlx::query("INSERT OR IGNORE INTO spool_meta (id, spool_id) VALUES (1, ?)")
            .bind(uuid::Uuid::new_v4().to_string())
            .execute(tx)
            .await?;
        let id: String = sqlx::query_scalar("SELECT spool_id FROM spool_meta WHERE id = 1")
            .fetch_one(tx)
            .await?;
        let mut wal = std::fs::canonicalize(&path)?.into_os_string();
        wal.push("-wal");
        let flush = WalFlush::new(wal.into());
        if !exists {
            // A new file's name must survive a power cut too, or its entries would.
            flush.committed();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .with_context(|| format!("syncing {}", dir.display()))?;
            }
            flush.wait().await;
        }
        Ok(Some(Arc::new(Self {
            pool,
            id,
            flush,
            moving: tokio::sync::Mutex::new(()),
        })))
    }

    /// The spool's WAL sync, which changes to the main database wait for.
    pub(crate) fn flush(&self) -> Arc<WalFlush> {
        self.flush.clone()
    }

    /// Commit `entries` to the spool (each stamped with its time if it has none) and start
    /// the sync of the spool's WAL. When this returns `Ok`, a crash of the process loses none.
    pub async fn append(&self, entries: Vec<NewEntry>) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = crate::db::now();
        let lines = entries
            .into_iter()
            .map(|mut e| {
                e.at.get_or_insert(now);
                serde_json::to_string(&e)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let result = if lines.len() <= INSERT_ROWS {
            insert(&self.pool, &lines).await
        } else {
            async {
                let mut tx = self.pool.begin().await?;
                for chunk in lines.chunks(INSERT_ROWS) {
                    insert(&mut *tx, chunk).await?;
                }
                tx.commit().await
            }
            .await
        };
        self.flush.committed();
        result.context("appending to the audit spool")
    }

    /// Chain everything spooled so far onto `audit_log` (of `db`, the database this spool
    /// belongs to) and forget it here. Returns how many entries moved.
    pub async fn move_onto_chain(&self, db: &Db) -> anyhow::Result<u64> {
        let _one = self.moving.lock().await;
        // Taken before the writer slot, so the slot never waits for a spool connection.
        let mut conn = self.pool.acquire().await?;
        let mut moved = 0;
        loop {
            // Nothing waiting (the usual case for a reader of the trail): the main database is
            // not touched.
            let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM spool)")
                .fetch_one(&mut *conn)
                .await?;
            if !any {
                return Ok(moved);
            }
            let txn = db.begin_write().await?;
            claim(&*txn, &self.id).await?;
            let (cursor, chained) = chain_from(&*txn, &self.id, &mut conn).await?;
            let Some((last, n)) = chained else {
                drop(txn);
                // Rows a crash kept from being cleared after their move.
                sqlx::query("DELETE FROM spool WHERE seq <= ?")
                    .bind(cursor)
                    .execute(&mut *conn)
                    .await?;
                return Ok(moved);
            };
            // The rows must be on disk in the spool before their move is on disk in the
            // database: otherwise a power cut could take them (and the spool's sequence) back
            // while the count says moved, and new entries would reuse the numbers and be
            // skipped. Another process's rows are covered by no sync counted here, so sync now.
            anyhow::ensure!(
                self.flush.sync_now().await,
                "the audit spool could not be synced"
            );
            txn.commit().await?;
            moved += n;
            // Already chained: a failure here only leaves rows the next move skips and deletes.
            if let Err(e) = sqlx::query("DELETE FROM spool WHERE seq <= ?")
                .bind(last)
                .execute(&mut *conn)
                .await
            {
                tracing::warn!(error = %e, "clearing moved entries from the audit spool failed");
            }
            if n < MOVE_ROWS as u64 {
                return Ok(moved);
            }
        }
    }

    /// Commits to the spool so far, and how many of them a sync of its WAL covered.
    pub fn sync_counts(&self) -> (u64, u64) {
        self.flush.counts()
    }

    /// Entries still waiting in the spool, moved or not yet cleared (for tests and `audit
    /// verify`).
    pub async fn waiting(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM spool")
            .fetch_one(&self.pool)
            .await?)
    }

    /// A read transaction on the spool, held while a backup copies the main database: see
    /// [`Held::chain_into`].
    pub async fn hold(&self) -> anyhow::Result<Held> {
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query("BEGIN").execute(&mut conn).await?;
        // The snapshot starts with the first read.
        sqlx::query("SELECT count(*) FROM spool")
            .execute(&mut conn)
            .await?;
        Ok(Held {
            conn,
            id: self.id.clone(),
        })
    }
}

/// The spool as it was when [`Spool::hold`] was called.
pub struct Held {
    conn: SqliteConnection,
    id: String,
}

impl Held {
    /// Chain into the database behind `target` (a backup's copy, taken after the hold began)
    /// every entry this snapshot holds that the copy has not chained yet. So a backup holds
    /// every read acknowledged before the hold began, whether moved by then or not.
    pub async fn chain_into(mut self, target: &sea_orm::DatabaseConnection) -> anyhow::Result<u64> {
        use sea_orm::TransactionTrait;
        let mut total = 0;
        loop {
            let txn = target.begin().await?;
            claim(&txn, &self.id).await?;
            let (_, chained) = chain_from(&txn, &self.id, &mut self.conn).await?;
            let Some((_, n)) = chained else {
                break;
            };
            txn.commit().await?;
            total += n;
            if n < MOVE_ROWS as u64 {
                break;
            }
        }
        sqlx::query("ROLLBACK").execute(&mut self.conn).await?;
        sqlx::Connection::close(self.conn).await?;
        Ok(total)
    }
}

/// The first statement of a move's transaction: a write, so the transaction takes SQLite's
/// write lock at once (waiting its turn behind another process's move) instead of reading
/// first and failing to upgrade when someone wrote in between (`SQLITE_BUSY_SNAPSHOT`).
async fn claim<C: ConnectionTrait>(txn: &C, id: &str) -> Result<(), sea_orm::DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO audit_spool (spool_id, moved_seq) VALUES (?, 0) \
         ON CONFLICT (spool_id) DO NOTHING",
        [id.into()],
    ))
    .await
    .map(|_| ())
}

async fn insert<'e>(
    exec: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    lines: &[String],
) -> Result<(), sqlx::Error> {
    let mut sql = String::from("INSERT INTO spool (entry) VALUES ");
    for i in 0..lines.len() {
        sql.push_str(if i == 0 { "(?)" } else { ",(?)" });
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for line in lines {
        q = q.bind(line);
    }
    q.execute(exec).await.map(|_| ())
}

/// Inside `txn` (a write transaction on a main database): chain the next spooled entries after
/// the count `audit_spool` holds for spool `id`, and move the count. Returns that count and,
/// if any were chained, the last one's sequence number and how many.
async fn chain_from<C: ConnectionTrait>(
    txn: &C,
    id: &str,
    spool: &mut SqliteConnection,
) -> anyhow::Result<(i64, Option<(i64, u64)>)> {
    let cursor: i64 = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT moved_seq FROM audit_spool WHERE spool_id = ?",
            [id.into()],
        ))
        .await?
        .map(|r| r.try_get("", "moved_seq"))
        .transpose()?
        .unwrap_or(0);
    let rows = sqlx::query("SELECT seq, entry FROM spool WHERE seq > ? ORDER BY seq LIMIT ?")
        .bind(cursor)
        .bind(MOVE_ROWS)
        .fetch_all(&mut *spool)
        .await?;
    let Some(last) = rows.last().map(|r| r.get::<i64, _>("seq")) else {
        return Ok((cursor, None));
    };
    // A row that does not parse (never written by this version) must not stop every later
    // entry: the chain records that it was there and what was wrong with it.
    let entries: Vec<NewEntry> = rows
        .iter()
        .map(|r| {
            let (seq, text): (i64, &str) = (r.get("seq"), r.get("entry"));
            serde_json::from_str::<NewEntry>(text).unwrap_or_else(|e| {
                tracing::error!(seq, error = %e, "an audit spool row does not parse");
                NewEntry::new("audit.spool_unreadable", "audit_spool")
                    .outcome(super::Outcome::Failure)
                    .resource(seq)
                    .details(serde_json::json!({
                        "error": e.to_string(),
                        "bytes": text.len(),
                        "start": text.chars().take(200).collect::<String>(),
                    }))
            })
        })
        .collect();
    let n = entries.len() as u64;
    service::append_in(txn, entries).await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO audit_spool (spool_id, moved_seq) VALUES (?, ?) \
         ON CONFLICT (spool_id) DO UPDATE SET moved_seq = excluded.moved_seq",
        [id.into(), last.into()],
    ))
    .await?;
    Ok((cursor, Some((last, n))))
}
