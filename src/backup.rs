//! `lawfirm-pro backup DIR` and `lawfirm-pro restore DIR`.
//!
//! A backup is a directory holding a consistent copy of the database (SQLite: `VACUUM INTO`,
//! one read transaction; PostgreSQL: `pg_dump`, one snapshot), the local object store and,
//! on request, the keys, plus `manifest.json` with the size and SHA-256 of every file. The
//! manifest is written last: a directory without one is an interrupted backup.
//!
//! Order matters for consistency while the server writes: the database is copied before the
//! objects. A document becomes visible only after its object is fully stored, so every object
//! the copied database refers to already exists when the objects are copied.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail, ensure};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Config,
    db::{Db, DbKind},
};

const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
const SQLITE_FILE: &str = "database/lawfirm.db";
const PG_FILE: &str = "database/lawfirm.dump";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub app_version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `sqlite` or `postgres`: a backup restores onto the same kind of database.
    pub database: String,
    pub includes_keys: bool,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BackupOptions {
    /// Copy `keys/` too. Off by default: a backup holding the master key next to the
    /// encrypted documents protects them no better than the backup medium does.
    pub include_keys: bool,
}

/// Take a backup of a running (or stopped) portal into `dir`, which must be empty or absent.
pub async fn backup(
    config: &Config,
    db: &Db,
    dir: &Path,
    opts: BackupOptions,
) -> anyhow::Result<Manifest> {
    if dir.exists() {
        ensure!(
            std::fs::read_dir(dir)?.next().is_none(),
            "{} is not empty: back up into a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("database"))
        .with_context(|| format!("creating {}", dir.display()))?;

    let database = match DbKind::parse(&config.database_url).map_err(anyhow::Error::msg)? {
        DbKind::Sqlite { path } => {
            let target = dir.join(SQLITE_FILE);
            // Read entries waiting in the audit spool (ADR 0008) as they are now, before the
            // copy: each one is either chained in the copy already or chained into it below.
            let held = match crate::audit::spool::Spool::open(&path, false).await? {
                Some(spool) => Some(spool.hold().await?),
                None => None,
            };
            // One read transaction: a consistent snapshot while writers go on (WAL mode).
            db.conn()
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "VACUUM INTO ?",
                    [target.to_string_lossy().into_owned().into()],
                ))
                .await
                .context("copying the SQLite database (VACUUM INTO)")?;
            if let Some(held) = held {
                chain_spool_into(held, &target).await?;
            }
            rebuild_fts(&target).await?;
            "sqlite"
        }
        DbKind::Postgres => {
            run_pg_tool(
                "pg_dump",
                &[
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    &format!("--file={}", dir.join(PG_FILE).display()),
                ],
                "",
                &config.database_url,
            )
            .await?;
            "postgres"
        }
    };

    let data_dir = config.data_dir.clone();
    let dir_owned = dir.to_path_buf();
    let include_keys = opts.include_keys;
    let files = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<FileEntry>> {
        let objects = data_dir.join("objects");
        if objects.is_dir() {
            copy_tree(&objects, &dir_owned.join("objects"))?;
        }
        if include_keys && data_dir.join("keys").is_dir() {
            copy_tree(&data_dir.join("keys"), &dir_owned.join("keys"))?;
        }
        hash_tree(&dir_owned)
    })
    .await??;

    let manifest = Manifest {
        format: FORMAT,
        app_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::db::now(),
        database: database.into(),
        includes_keys: include_keys,
        files,
    };
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    Ok(manifest)
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub files_verified: usize,
    pub database: String,
    pub keys_restored: bool,
}

/// Restore `dir` into the configured, empty database and data directory. Every file is
/// checked against the manifest before anything is written. Migrations are not run here:
/// the next start (or `lawfirm-pro migrate`) brings an older backup up to date.
pub async fn restore(config: &Config, dir: &Path) -> anyhow::Result<RestoreReport> {
    let manifest = verify(dir)?;
    let kind = DbKind::parse(&config.database_url).map_err(anyhow::Error::msg)?;
    let objects = config.data_dir.join("objects");
    ensure!(
        !objects.exists() || std::fs::read_dir(&objects)?.next().is_none(),
        "{} is not empty: restore into an empty data directory",
        objects.display()
    );

    match (&kind, manifest.database.as_str()) {
        (DbKind::Sqlite { path }, "sqlite") => {
            for p in [path.clone(), crate::audit::spool::path_for(path)] {
                ensure!(
                    !p.exists(),
                    "{} already exists: restore into an empty data directory",
                    p.display()
                );
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            // Copy then rename: a crash mid-copy leaves no database that looks complete.
            let tmp = path.with_extension("db.restoring");
            std::fs::copy(dir.join(SQLITE_FILE), &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
        }
        (DbKind::Postgres, "postgres") => {
            let db = Db::connect(&config.database_url, 1).await?;
            let tables = db
                .conn()
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT count(*) AS n FROM information_schema.tables \
                     WHERE table_schema = current_schema()",
                ))
                .await?
                .map(|r| r.try_get::<i64>("", "n"))
                .transpose()?
                .unwrap_or(0);
            db.close().await;
            ensure!(
                tables == 0,
                "the target PostgreSQL database is not empty ({tables} tables): restore into a new database"
            );
            run_pg_tool(
                "pg_restore",
                &[
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--single-transaction",
                    &dir.join(PG_FILE).to_string_lossy(),
                ],
                "--dbname=",
                &config.database_url,
            )
            .await?;
        }
        (_, other) => bail!(
            "this backup holds a {other} database but DATABASE_URL points to another kind; \
             restore onto the same kind of database"
        ),
    }

    let (src, data_dir) = (dir.to_path_buf(), config.data_dir.clone());
    let keys_restored = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        if src.join("objects").is_dir() {
            copy_tree(&src.join("objects"), &data_dir.join("objects"))?;
        }
        let keys = data_dir.join("keys");
        if src.join("keys").is_dir() {
            ensure!(
                !keys.exists() || std::fs::read_dir(&keys)?.next().is_none(),
                "{} already holds keys; remove them or restore without the backup's keys",
                keys.display()
            );
            copy_tree(&src.join("keys"), &keys)?;
            return Ok(true);
        }
        Ok(false)
    })
    .await??;

    Ok(RestoreReport {
        files_verified: manifest.files.len(),
        database: manifest.database,
        keys_restored,
    })
}

/// Check every file of a backup against its manifest; list every problem found.
pub fn verify(dir: &Path) -> anyhow::Result<Manifest> {
    let raw = std::fs::read(dir.join(MANIFEST)).with_context(|| {
        format!(
            "{} has no manifest.json: not a backup, or an interrupted one",
            dir.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&raw).context("manifest.json is malformed")?;
    ensure!(
        manifest.format == FORMAT,
        "backup format {} is not supported by this version (expects {FORMAT})",
        manifest.format
    );
    let mut problems = Vec::new();
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            problems.push(format!("{}: path escapes the backup directory", f.path));
            continue;
        }
        match hash_file(&dir.join(rel)) {
            Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
            Ok(_) => problems.push(format!("{}: contents differ from the manifest", f.path)),
            Err(e) => problems.push(format!("{}: {e}", f.path)),
        }
    }
    ensure!(
        problems.is_empty(),
        "the backup is damaged:\n  {}",
        problems.join("\n  ")
    );
    Ok(manifest)
}

/// Chain into the copy at `path` the spooled entries it does not hold yet.
async fn chain_spool_into(held: crate::audit::spool::Held, path: &Path) -> anyhow::Result<()> {
    use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Delete)
                .foreign_keys(true),
        )
        .await
        .context("opening the database copy")?;
    let copy = sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
    let chained = held
        .chain_into(&copy)
        .await
        .context("chaining the audit spool into the copy");
    copy.close().await?;
    let n = chained?;
    if n > 0 {
        tracing::info!(entries = n, "spooled audit entries chained into the backup");
    }
    Ok(())
}

/// `VACUUM` may renumber implicit rowids, and external-content FTS5 indexes refer to rowids, as
/// do the message search rows and the members' case search rows (`case_member_fts`): rebuild
/// them in the copy from the copy's own rows.
async fn rebuild_fts(path: &Path) -> anyhow::Result<()> {
    use sea_orm::sqlx::{
        ConnectOptions, Connection,
        sqlite::{SqliteConnectOptions, SqliteJournalMode},
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Delete)
        .connect()
        .await
        .context("opening the database copy")?;
    // External content only (`content='table'`); contentless and self-contained indexes
    // carry their own keys.
    let names: Vec<(String,)> = sea_orm::sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND sql LIKE 'CREATE VIRTUAL TABLE%fts5%' \
         AND instr(sql, 'content=''') > 0 AND instr(sql, 'content=''''') = 0",
    )
    .fetch_all(&mut conn)
    .await?;
    for (name,) in names {
        let quoted = name.replace('"', "\"\"");
        // The name comes from sqlite_master of our own copy, quoted as an identifier.
        sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{quoted}\"(\"{quoted}\") VALUES ('rebuild')"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("rebuilding the search index {name}"))?;
    }
    // Message search rows sit under their message's rowid (ADR 0004), member case search rows
    // under their user's and membership's: rebuilt from the copy's own rows if any is out of
    // step (`VACUUM INTO` may renumber rowids).
    for (count, rebuild, _) in crate::db::recount::SQLITE_ROWID_KEYED {
        let (off,): (i64,) = sea_orm::sqlx::query_as(count)
            .fetch_one(&mut conn)
            .await
            .context("checking the search rows keyed by rowid")?;
        if off > 0 {
            for &sql in rebuild {
                sea_orm::sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .context("rebuilding the search rows keyed by rowid")?;
            }
        }
    }
    conn.close().await?;
    Ok(())
}

/// `DATABASE_URL` for a PostgreSQL client tool without its password, and the password apart:
/// a command line is readable by every local user (`ps`, `/proc/<pid>/cmdline`) while the
/// tool runs, its environment only by the same user. The password may sit in the URL's user
/// part or in a `password=` parameter; either way it leaves the URL.
fn without_password(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut u = url::Url::parse(url).context("DATABASE_URL is not a URL")?;
    let mut password = u.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    if password.is_some() {
        u.set_password(None)
            .map_err(|()| anyhow::anyhow!("DATABASE_URL cannot lose its password"))?;
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((_, p)) = pairs.iter().find(|(k, _)| k == "password") {
        password = Some(p.clone());
        let kept: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "password").collect();
        if kept.is_empty() {
            u.set_query(None);
        } else {
            u.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok((u.into(), password))
}

/// Run a PostgreSQL client tool; `url` (the database) is the last argument, its password goes
/// in `PGPASSWORD` ([`without_password`]).
async fn run_pg_tool(program: &str, args: &[&str], url_arg: &str, url: &str) -> anyhow::Result<()> {
    let (url, password) = without_password(url)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).arg(format!("{url_arg}{url}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    run(program, cmd).await
}

async fn run(program: &str, mut cmd: tokio::process::Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program} (is the PostgreSQL client installed?)"))?;
    if !out.status.success() {
        // Its stderr names the problem; the connection URL (with any password) is not echoed.
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ty.is_file() {
            match std::fs::copy(&src, &dst) {
                Ok(_) => {}
                // Purged between listing and copying: it is no longer referenced either.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("copying {}", src.display())),
            }
        }
    }
    Ok(())
}

fn hash_tree(root: &Path) -> anyhow::Result<Vec<FileEntry>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel: PathBuf = path.strip_prefix(root)?.to_path_buf();
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if rel == MANIFEST || rel.starts_with('.') {
                    continue;
                }
                let (size, sha256) = hash_file(&path)?;
                out.push(FileEntry {
                    path: rel,
                    size,
                    sha256,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Streamed: memory does not grow with file size.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_tools_get_the_url_without_its_password() {
        let cases = [
            (
                "postgres://lfp:s%40cret%2F1@db.example:5432/firm?sslmode=require",
                "postgres://lfp@db.example:5432/firm?sslmode=require",
                Some("s@cret/1"),
            ),
            (
                "postgres://lfp@db.example/firm?password=p%26w&sslmode=verify-full",
                "postgres://lfp@db.example/firm?sslmode=verify-full",
                Some("p&w"),
            ),
            (
                "postgres://lfp@db.example/firm?password=only",
                "postgres://lfp@db.example/firm",
                Some("only"),
            ),
            (
                "postgresql://127.0.0.1/firm",
                "postgresql://127.0.0.1/firm",
                None,
            ),
        ];
        for (url, bare, password) in cases {
            let (u, p) = without_password(url).unwrap();
            assert_eq!((u.as_str(), p.as_deref()), (bare, password), "{url}");
            assert!(!u.contains("cret") && !u.contains("p%26w"), "{u}");
        }
    }

    #[test]
    fn verify_names_every_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects/ab")).unwrap();
        std::fs::write(dir.path().join("objects/ab/one"), b"one").unwrap();
        std::fs::write(dir.path().join("objects/ab/two"), b"two").unwrap();
        let files = hash_tree(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let manifest = Manifest {
            format: FORMAT,
            app_version: "test".into(),
            created_at: crate::db::now(),
            database: "sqlite".into(),
            includes_keys: false,
            files,
        };
        std::fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        assert!(verify(dir.path()).is_ok());

        std::fs::write(dir.path().join("objects/ab/two"), b"tampered").unwrap();
        std::fs::remove_file(dir.path().join("objects/ab/one")).unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("objects/ab/two: contents differ"), "{err}");
        assert!(err.contains("objects/ab/one:"), "{err}");
    }

    #[test]
    fn manifest_paths_cannot_escape_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            format: FORMAT,
            app_version: "test".into(),
            created_at: crate::db::now(),
            database: "sqlite".into(),
            includes_keys: false,
            files: vec![FileEntry {
                path: "../etc/passwd".into(),
                size: 0,
                sha256: String::new(),
            }],
        };
        std::fs::write(
            dir.path().join(MANIFEST),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let err = verify(dir.path()).unwrap_err().to_string();
        assert!(err.contains("escapes"), "{err}");
    }
}
