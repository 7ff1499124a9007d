//! `lawfirm-pro backup` while the portal serves and writes, then `lawfirm-pro restore` into
//! an empty database and data directory: every row and every object survives the trip.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use lawfirm_pro::db::Db;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, JsonValue, Statement};
use serde_json::json;

use crate::helpers::{TestApp, backend, fresh_database_url, spawn_app};

fn command(data_dir: &std::path::Path, database_url: &str) -> tokio::process::Command {
    let mut c = crate::helpers::bin_command(data_dir, database_url);
    c.env("LFP_LOG", "warn");
    c
}

/// Every row of every table, as sorted JSON text per table (order-independent comparison).
async fn snapshot(db: &Db) -> BTreeMap<String, Vec<String>> {
    let tables_sql = match db.backend() {
        // FTS shadow tables hold derived index data: compared through their source tables.
        DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%fts%' ORDER BY name"
        }
        _ => {
            "SELECT table_name AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    let tables = db
        .conn()
        .query_all_raw(Statement::from_string(db.backend(), tables_sql))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let name: String = t.try_get("", "name").unwrap();
        // Derived columns (tsvector) have no JSON form; text casts keep the comparison exact.
        let sql = match db.backend() {
            DbBackend::Postgres => format!("SELECT to_jsonb(t)::text AS row FROM \"{name}\" t"),
            _ => format!("SELECT * FROM \"{name}\""),
        };
        let rows = JsonValue::find_by_statement(Statement::from_string(db.backend(), sql))
            .all(db.conn())
            .await
            .unwrap_or_else(|e| panic!("reading {name}: {e}"));
        let mut rows: Vec<String> = rows.into_iter().map(|r| r.to_string()).collect();
        rows.sort();
        out.insert(name, rows);
    }
    out
}

fn object_hashes(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `lawfirm-pro restore` of `backup` into a new data directory and database, which must
/// succeed with the audit chain verified; the target and its `DATABASE_URL`.
async fn restore_verified(backup: &std::path::Path) -> (tempfile::TempDir, String) {
    let target = tempfile::tempdir().unwrap();
    let target_url = fresh_database_url(target.path()).await;
    let out = command(target.path(), &target_url)
        .arg("restore")
        .arg(backup)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "restore: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain ok"), "{stdout}");
    (target, target_url)
}

async fn populate(app: &TestApp) {
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    for i in 0..3 {
        let r = app
            .post(
                "/api/v1/cases",
                Some(&attorney.access),
                json!({"title": format!("Matter {i}"), "client_ids": [client.id]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let case: serde_json::Value = r.json().await.unwrap();
        let r = app
            .post(
                &format!("/api/v1/cases/{}/messages", case["id"].as_str().unwrap()),
                Some(&attorney.access),
                json!({"body": format!("Zeppelin notice {i}")}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Stored objects (encrypted documents) are opaque files under data/objects.
    let objects = app.data_dir.path().join("objects/ab");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(objects.join("object-1"), b"sealed bytes \x00\x01\x02").unwrap();
    std::fs::write(objects.join("object-2"), vec![7u8; 200_000]).unwrap();
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_every_row_and_object() {
    let app = spawn_app().await;
    populate(&app).await;
    let data_dir = app.data_dir.path().to_path_buf();
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_path = backup_dir.path().join("b1");

    if backend() == "sqlite" {
        // Message search rows out of step with their messages' rowids in the original (what a
        // renumbering VACUUM would leave): the copy must not inherit that.
        app.sql("UPDATE message SET rowid = rowid + 1000").await;
        // Members' case search rows keyed by rowids that no longer hold.
        app.sql("UPDATE case_member SET rowid = rowid + 1000").await;
    }

    // 1. Quiet portal: the restored copy equals the original exactly.
    let out = command(&data_dir, &app.database_url)
        .arg("backup")
        .arg(&backup_path)
        .arg("--include-keys")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_path.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["database"], backend());
    assert!(
        manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "objects/ab/object-2" && f["size"] == 200_000)
    );

    let (target, target_url) = restore_verified(&backup_path).await;

    app.state.audit.settle().await.unwrap();
    let mut original = snapshot(&app.state.db).await;
    let restored_db = Db::connect(&target_url, 2).await.unwrap();
    let mut restored = snapshot(&restored_db).await;
    // SQLite: the restored firm starts an audit spool of its own (ADR 0008) and registers it
    // beside the original's row, which it keeps.
    if let (Some(o), Some(r)) = (
        original.remove("audit_spool"),
        restored.remove("audit_spool"),
    ) {
        assert!(o.iter().all(|row| r.contains(row)), "{o:?} in {r:?}");
        assert_eq!(r.len(), o.len() + 1, "{r:?}");
    }
    assert!(
        original["legal_case"].len() >= 3,
        "populated: {:?}",
        original.keys()
    );
    assert_eq!(restored, original, "every row of every table survives");
    if backend() == "sqlite" {
        // Search indexes follow the copied rows (VACUUM INTO may renumber rowids).
        let count = |sql: &'static str| {
            let db = &restored_db;
            async move {
                db.conn()
                    .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get_by_index::<i64>(0)
                    .unwrap()
            }
        };
        let by_index = count(
            "SELECT count(*) FROM legal_case c JOIN legal_case_fts f ON f.rowid = c.rowid \
             WHERE legal_case_fts MATCH 'matter' AND c.title LIKE 'Matter%'",
        )
        .await;
        let by_scan = count("SELECT count(*) FROM legal_case WHERE title LIKE 'Matter%'").await;
        assert_eq!(by_index, by_scan);
        assert!(by_scan >= 3);
        let messages = count(
            "SELECT count(*) FROM message m JOIN message_fts f ON f.rowid = m.rowid \
             WHERE message_fts MATCH 'zeppelin' AND f.message_id = m.id",
        )
        .await;
        assert_eq!(messages, 3, "each message's search row under its rowid");
        let rows = count("SELECT count(*) FROM message_fts").await;
        assert_eq!(rows, 3, "no stale rows beside them");
        let stale = count(lawfirm_pro::cases::search_index::SQLITE_OUT_OF_STEP).await;
        assert_eq!(
            stale, 0,
            "one members' case search row per membership, under its key"
        );
        let by_member =
            count("SELECT count(*) FROM case_member_fts WHERE case_member_fts MATCH 'matter'")
                .await;
        let memberships = count(
            "SELECT count(*) FROM case_member m JOIN legal_case c ON c.id = m.case_id \
             WHERE c.title LIKE 'Matter%'",
        )
        .await;
        assert_eq!(by_member, memberships);
        assert!(memberships >= 3);
    }
    restored_db.close().await;
    assert_eq!(
        object_hashes(&target.path().join("objects")),
        object_hashes(&data_dir.join("objects")),
        "every object survives byte for byte"
    );
    assert_eq!(
        std::fs::read(target.path().join("keys/master.key")).unwrap(),
        std::fs::read(data_dir.join("keys/master.key")).unwrap()
    );

    // 2. Restoring over existing data is refused; a damaged backup is refused before writing.
    let out = command(target.path(), &target_url)
        .arg("restore")
        .arg(&backup_path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "restore over existing data refused");
    std::fs::write(backup_path.join("objects/ab/object-1"), b"tampered").unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let fresh_url = fresh_database_url(fresh.path()).await;
    let out = command(fresh.path(), &fresh_url)
        .arg("restore")
        .arg(&backup_path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("objects/ab/object-1"), "{stderr}");
    assert!(!fresh.path().join("objects").exists(), "nothing written");

    // 3. Busy portal: writers keep going during the backup; the copy is a consistent
    //    snapshot (its audit chain verifies; every row in it is a row of the original).
    let attorney = app.user("attorney").await;
    let client = app.user("client").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, address, token, client_id) = (
            stop.clone(),
            app.address.clone(),
            attorney.access.clone(),
            client.id,
        );
        tokio::spawn(async move {
            let http = crate::helpers::http();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{address}/api/v1/cases"))
                    .bearer_auth(&token)
                    .json(&json!({"title": format!("Busy {n}"), "client_ids": [client_id]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let busy_path = backup_dir.path().join("b2");
    let out = command(&data_dir, &app.database_url)
        .arg("backup")
        .arg(&busy_path)
        .arg("--include-keys")
        .output()
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(written > 0, "the writer ran during the backup");

    let busy_target = tempfile::tempdir().unwrap();
    let busy_url = fresh_database_url(busy_target.path()).await;
    let out = command(busy_target.path(), &busy_url)
        .arg("restore")
        .arg(&busy_path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("audit chain ok"), "{stdout}");
    let original = snapshot(&app.state.db).await;
    let restored_db = Db::connect(&busy_url, 2).await.unwrap();
    let restored = snapshot(&restored_db).await;
    restored_db.close().await;
    for (table, rows) in &restored {
        let all = &original[table];
        for row in rows {
            // Rows that change after creation (sessions, throttles, audit head) may differ;
            // the restored firm registers an audit spool of its own (SQLite, ADR 0008).
            if matches!(
                table.as_str(),
                "session"
                    | "audit_spool"
                    | "audit_head"
                    | "login_throttle"
                    | "refresh_token"
                    | "app_user"
                    | "ws_ticket"
                    | "case_number_seq"
            ) {
                continue;
            }
            assert!(
                all.binary_search(row).is_ok(),
                "{table}: restored row not in the original: {row}"
            );
        }
    }
}

/// SQLite (ADR 0008): an entry acknowledged from the audit spool but not chained yet when a
/// backup is taken is on the restored chain, and still reaches the live chain once.
#[tokio::test]
async fn a_backup_holds_the_read_entries_still_waiting_in_the_spool() {
    let app = spawn_app().await;
    let Some(spool) = app.state.audit.spool().cloned() else {
        assert_eq!(backend(), "postgres", "SQLite spools read entries");
        return;
    };
    // Appended as the audit writer does, without waking its mover: still waiting below.
    spool
        .append(vec![lawfirm_pro::audit::NewEntry::new(
            "test.spooled_at_backup",
            "test",
        )])
        .await
        .unwrap();
    let backup_dir = tempfile::tempdir().unwrap();
    let backup_path = backup_dir.path().join("b");
    let out = command(app.data_dir.path(), &app.database_url)
        .arg("backup")
        .arg(&backup_path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        spool.waiting().await.unwrap(),
        1,
        "the backup moved nothing"
    );

    let (_target, target_url) = restore_verified(&backup_path).await;
    let sql = "SELECT count(*) FROM audit_log WHERE action = 'test.spooled_at_backup'";
    let count = |db: Db| async move {
        let n = db
            .conn()
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        db.close().await;
        n
    };
    assert_eq!(count(Db::connect(&target_url, 1).await.unwrap()).await, 1);
    app.state.audit.settle().await.unwrap();
    assert_eq!(
        count(app.state.db.clone()).await,
        1,
        "and once on the live chain"
    );
}
