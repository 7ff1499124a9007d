//! Documents: streamed encrypted uploads, byte-exact and ranged downloads, type checks,
//! confidentiality as each role and an attacker sees it, versions, legal holds, deletion,
//! search, statistics, sweeps and master-key rotation.

use std::collections::HashSet;

use lawfirm_pro::{Application, Config};
use reqwest::{StatusCode, multipart};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Login, TestApp, problem, spawn_app, spawn_app_with};

async fn expect(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn new_case(app: &TestApp, lead: &Login, clients: &[&Login], staff: &[&Login]) -> String {
    let b = expect(
        app.post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({
                "title": "Doe v. Roe",
                "client_ids": clients.iter().map(|l| l.id).collect::<Vec<_>>(),
                "staff_ids": staff.iter().map(|l| l.id).collect::<Vec<_>>(),
            }),
        )
        .await,
        StatusCode::CREATED,
        "create case",
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

pub(crate) fn form(
    name: &str,
    bytes: Vec<u8>,
    conf: Option<&str>,
    title: Option<&str>,
) -> multipart::Form {
    // File names go as raw UTF-8, as browsers send them.
    let mut f = multipart::Form::new().percent_encode_noop();
    if let Some(t) = title {
        f = f.text("title", t.to_owned());
    }
    if let Some(c) = conf {
        f = f.text("confidentiality", c.to_owned());
    }
    f.part(
        "file",
        multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

async fn upload_raw(
    app: &TestApp,
    token: &str,
    case: &str,
    name: &str,
    bytes: Vec<u8>,
    conf: Option<&str>,
) -> reqwest::Response {
    app.post_multipart(
        &format!("/api/v1/cases/{case}/documents"),
        token,
        form(name, bytes, conf, None),
    )
    .await
}

async fn upload(
    app: &TestApp,
    token: &str,
    case: &str,
    name: &str,
    bytes: Vec<u8>,
    conf: &str,
) -> Value {
    expect(
        upload_raw(app, token, case, name, bytes, Some(conf)).await,
        StatusCode::CREATED,
        &format!("upload {name}"),
    )
    .await
}

pub(crate) fn pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend((0..n).map(|i| (i * 7 % 251) as u8));
    v
}

async fn content(app: &TestApp, token: &str, id: &str, range: Option<&str>) -> reqwest::Response {
    let mut r = app
        .client
        .get(app.url(&format!("/api/v1/documents/{id}/content")))
        .bearer_auth(token);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    r.send().await.unwrap()
}

async fn ids_at(app: &TestApp, token: &str, path: &str) -> HashSet<String> {
    let b = expect(app.get(path, Some(token)).await, StatusCode::OK, path).await;
    b["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {b}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The document, its content and its versions all answer 404 to `who`.
async fn not_found_by_id(app: &TestApp, who: &Login, doc: &str) {
    for path in [
        format!("/api/v1/documents/{doc}"),
        format!("/api/v1/documents/{doc}/content"),
        format!("/api/v1/documents/{doc}/versions"),
    ] {
        problem(
            app.get(&path, Some(&who.access)).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

/// Run `sql` (PostgreSQL's `$n` placeholders; `?` on SQLite) with `values`.
async fn execute<const N: usize>(app: &TestApp, sql: &str, values: [sea_orm::Value; N]) {
    let backend = app.state.db.backend();
    let mut sql = sql.to_owned();
    if backend != DbBackend::Postgres {
        for n in (1..=N).rev() {
            sql = sql.replace(&format!("${n}"), "?");
        }
    }
    app.state
        .db
        .conn()
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap();
}

fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.data_dir.path().join("objects"), &mut out);
    out
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .state
        .db
        .conn()
        .query_one_raw(Statement::from_string(app.state.db.backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn streamed_upload_downloads_byte_exact_with_ranges_and_safe_headers() {
    let app = spawn_app().await;
    let (lead, client, admin) = (
        app.user("attorney").await,
        app.user("client").await,
        app.user("admin").await,
    );
    let case = new_case(&app, &lead, &[&client], &[]).await;
    // Three chunks and a bit, so ranges cross chunk boundaries.
    let bytes = pdf(200_000);
    let d = upload(
        &app,
        &lead.access,
        &case,
        "Brief – final.pdf",
        bytes.clone(),
        "shared",
    )
    .await;
    let id = d["id"].as_str().unwrap().to_owned();
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(d["content_type"], "application/pdf");
    assert_eq!(d["size"], bytes.len());
    assert_eq!(d["sha256"], sha);
    assert_eq!(d["version"], 1);
    assert_eq!(d["confidentiality"], "shared");
    assert_eq!(d["uploaded_by"], lead.id.to_string());
    assert_eq!(d["title"], "Brief – final.pdf");
    assert!(d["created_at"].is_string() && d["filename"].is_string());

    let r = content(&app, &client.access, &id, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-length"], bytes.len().to_string().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "private, no-store");
    assert_eq!(h["etag"], format!("\"{sha}\"").as_str());
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"Brief - final.pdf\""),
        "{cd}"
    );
    assert!(
        cd.contains("filename*=UTF-8''Brief%20%E2%80%93%20final.pdf"),
        "{cd}"
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    let r = content(&app, &client.access, &id, Some("bytes=65530-140000")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 65530-140000/{}", bytes.len()).as_str()
    );
    assert_eq!(r.headers()["content-length"], "74471");
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        bytes[65530..=140000].to_vec()
    );

    let r = content(&app, &client.access, &id, Some("bytes=-10")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.bytes().await.unwrap().to_vec(),
        bytes[bytes.len() - 10..].to_vec()
    );

    let r = content(&app, &client.access, &id, Some("bytes=9999999-")).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );

    // Every successful content read is in the audit trail, with the reader.
    let b = expect(
        app.get(
            &format!("/api/v1/audit?action=document.download&resource_id={id}&limit=100"),
            Some(&admin.access),
        )
        .await,
        StatusCode::OK,
        "audit",
    )
    .await;
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{b}");
    assert!(items.iter().all(|e| e["actor_id"] == client.id.to_string()));
}

#[tokio::test]
async fn stored_objects_hold_only_ciphertext() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let marker = "PRIVILEGED-SETTLEMENT-FIGURE-4711";
    let text = format!("{marker}\n").repeat(5000);
    let d = upload(
        &app,
        &lead.access,
        &case,
        "notes.txt",
        text.clone().into_bytes(),
        "internal",
    )
    .await;
    assert_eq!(d["content_type"], "text/plain");
    let files = stored_files(&app);
    assert_eq!(files.len(), 1, "{files:?}");
    let raw = std::fs::read(&files[0]).unwrap();
    assert!(raw.len() > text.len());
    assert!(!raw.windows(marker.len()).any(|w| w == marker.as_bytes()));
    // Object keys are random, never the user's file name.
    assert!(!files[0].to_string_lossy().contains("notes"));
    let r = content(&app, &lead.access, d["id"].as_str().unwrap(), None).await;
    assert_eq!(r.text().await.unwrap(), text);
}

#[tokio::test]
async fn types_are_decided_from_bytes_and_names_are_sanitised() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0".repeat(10);
    let exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0\xb8\0\0\0".repeat(10);
    for (name, bytes) in [
        ("tool", elf.clone()),
        ("invoice.pdf", exe.clone()),
        ("x.exe", exe),
    ] {
        let r = upload_raw(&app, &lead.access, &case, name, bytes, None).await;
        problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    // Text that turns binary after the head.
    let mut sneaky = b"plain text ".repeat(10_000);
    sneaky.extend_from_slice(&[0, 0, 0xff]);
    let r = upload_raw(&app, &lead.access, &case, "a.txt", sneaky, None).await;
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Accepted bytes under a name claiming another type: 422.
    for (name, bytes) in [
        ("contract.docx", pdf(100)),
        ("notes.pdf", b"just words".to_vec()),
        ("page.html", b"hello there".to_vec()),
    ] {
        let r = upload_raw(&app, &lead.access, &case, name, bytes, None).await;
        let b = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(b["errors"][0]["field"], "file", "{name}: {b}");
    }
    // Nothing of the refused uploads is left behind.
    assert!(stored_files(&app).is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_upload").await, 0);

    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01".to_vec();
    let d = upload(
        &app,
        &lead.access,
        &case,
        "..\\..\\scan\u{202E}gnp.png",
        png,
        "shared",
    )
    .await;
    assert_eq!(d["filename"], "scangnp.png");
    assert_eq!(d["content_type"], "image/png");
    let d = upload(
        &app,
        &lead.access,
        &case,
        "CON.csv",
        b"a,b\n1,2\n".to_vec(),
        "shared",
    )
    .await;
    assert_eq!(d["filename"], "_CON.csv");
    assert_eq!(d["content_type"], "text/csv");
    let d = upload(
        &app,
        &lead.access,
        &case,
        "/etc/mail.eml",
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody".to_vec(),
        "shared",
    )
    .await;
    assert_eq!(d["filename"], "mail.eml");
    assert_eq!(d["content_type"], "message/rfc822");
    let d = upload(
        &app,
        &lead.access,
        &case,
        "memo.rtf",
        b"{\\rtf1\\ansi hello}".to_vec(),
        "shared",
    )
    .await;
    assert_eq!(d["content_type"], "application/rtf");
    // Bad form input.
    let r = app
        .post(
            &format!("/api/v1/cases/{case}/documents"),
            Some(&lead.access),
            json!({"file": "x"}),
        )
        .await;
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // A body that says multipart but is not (no boundary line): 400, like malformed JSON.
    let r = app
        .client
        .post(app.url(&format!("/api/v1/cases/{case}/documents")))
        .bearer_auth(&lead.access)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("this is not a multipart body")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .post_multipart(
            &format!("/api/v1/cases/{case}/documents"),
            &lead.access,
            multipart::Form::new().text("title", "no file"),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r = app
        .post_multipart(
            &format!("/api/v1/cases/{case}/documents"),
            &lead.access,
            form("a.pdf", pdf(10), Some("secret"), None),
        )
        .await;
    let b = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(b["errors"][0]["field"], "confidentiality");
    assert!(
        stored_files(&app).len() == 4,
        "refused form left an object behind"
    );
}

#[tokio::test]
async fn too_large_uploads_are_413_with_no_record_and_no_object() {
    let app = spawn_app_with(|c| c.max_upload_bytes = 1024 * 1024).await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let r = upload_raw(
        &app,
        &lead.access,
        &case,
        "big.pdf",
        pdf(3 * 1024 * 1024),
        None,
    )
    .await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_upload").await, 0);
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
    // Exactly at the limit is fine; the body limit of the route allows it.
    let d = upload(
        &app,
        &lead.access,
        &case,
        "edge.pdf",
        pdf(1024 * 1024 - 9),
        "shared",
    )
    .await;
    assert_eq!(d["size"], 1024 * 1024);
}

#[tokio::test]
async fn confidentiality_decides_who_sees_what_and_strangers_get_404() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let para = app.user("paralegal").await;
    let client = app.user("client").await;
    let other_client = app.user("client").await;
    let outsider = app.user("attorney").await;
    let removed = app.user("paralegal").await;
    let admin = app.user("admin").await;
    let case = new_case(&app, &lead, &[&client], &[&para, &removed]).await;
    let _other = new_case(&app, &outsider, &[&other_client], &[]).await;

    // Clients may only upload shared documents.
    for conf in ["internal", "privileged"] {
        let r = upload_raw(&app, &client.access, &case, "x.pdf", pdf(10), Some(conf)).await;
        problem(r, StatusCode::FORBIDDEN).await;
    }
    // A paralegal may not file privileged material.
    let r = upload_raw(
        &app,
        &para.access,
        &case,
        "x.pdf",
        pdf(10),
        Some("privileged"),
    )
    .await;
    problem(r, StatusCode::FORBIDDEN).await;
    assert!(stored_files(&app).is_empty());

    let shared = upload(&app, &client.access, &case, "id.pdf", pdf(10), "shared").await;
    let internal = upload(
        &app,
        &para.access,
        &case,
        "memo zebra.txt",
        b"zebra notes".to_vec(),
        "internal",
    )
    .await;
    let privileged = upload(
        &app,
        &lead.access,
        &case,
        "strategy zebra.txt",
        b"zebra plan".to_vec(),
        "privileged",
    )
    .await;
    let [s, i, pr] =
        [&shared, &internal, &privileged].map(|d| d["id"].as_str().unwrap().to_owned());

    // Live events reach only those who may see the document.
    for (audience, n) in [("case", 1), ("case_staff", 1), ("users", 1)] {
        let sql = format!(
            "SELECT COUNT(*) FROM event WHERE kind = 'document.created' AND audience = '{audience}'"
        );
        assert_eq!(count(&app, &sql).await, n, "{audience}");
    }
    let row = app
        .state
        .db
        .conn()
        .query_one_raw(Statement::from_string(
            app.state.db.backend(),
            "SELECT user_ids FROM event WHERE kind = 'document.created' AND audience = 'users'",
        ))
        .await
        .unwrap()
        .unwrap();
    let users: String = row.try_get_by_index(0).unwrap();
    assert_eq!(
        users,
        format!("{{\"attorneys\":[\"{}\"]}}", lead.id),
        "privileged: attorneys on the case only"
    );

    let list = format!("/api/v1/cases/{case}/documents?limit=100");
    let search = "/api/v1/documents/search?q=zebra&limit=100";
    let all: HashSet<String> = [s.clone(), i.clone(), pr.clone()].into();
    assert_eq!(ids_at(&app, &lead.access, &list).await, all);
    // Privileged is "attorneys on the case only": an admin sees every case's shared and internal
    // documents, not its privileged ones — in lists, search, statistics, the dashboard and by
    // id alike — until they are an attorney on the case.
    let mut not_privileged: HashSet<String> = [s.clone(), i.clone()].into();
    assert_eq!(ids_at(&app, &admin.access, &list).await, not_privileged);
    assert_eq!(
        ids_at(&app, &admin.access, search).await,
        [i.clone()].into()
    );
    let admin_stats = async || -> Value {
        app.get("/api/v1/documents/stats", Some(&admin.access))
            .await
            .json()
            .await
            .unwrap()
    };
    assert_eq!(admin_stats().await["total"]["count"], 2);
    let dashboard: Value = app
        .get("/api/v1/dashboard", Some(&admin.access))
        .await
        .json()
        .await
        .unwrap();
    let recent: HashSet<String> = dashboard["recent_documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recent, not_privileged, "{dashboard}");
    not_found_by_id(&app, &admin, &pr).await;
    let r = upload_raw(
        &app,
        &admin.access,
        &case,
        "x.pdf",
        pdf(10),
        Some("privileged"),
    )
    .await;
    problem(r, StatusCode::FORBIDDEN).await;
    app.add_member(&lead.access, &case, admin.id, "attorney")
        .await;
    not_privileged.insert(pr.clone());
    assert_eq!(ids_at(&app, &admin.access, &list).await, not_privileged);
    assert_eq!(
        ids_at(&app, &admin.access, search).await,
        [i.clone(), pr.clone()].into()
    );
    assert_eq!(admin_stats().await["total"]["count"], 3);
    let r = app
        .get(&format!("/api/v1/documents/{pr}"), Some(&admin.access))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        ids_at(&app, &para.access, &list).await,
        [s.clone(), i.clone()].into()
    );
    assert_eq!(
        ids_at(&app, &client.access, &list).await,
        [s.clone()].into()
    );
    assert_eq!(
        ids_at(&app, &lead.access, search).await,
        [i.clone(), pr.clone()].into()
    );
    assert_eq!(ids_at(&app, &para.access, search).await, [i.clone()].into());
    assert!(ids_at(&app, &client.access, search).await.is_empty());
    // The role on the case decides, not the firm role: an attorney on it as a paralegal sees
    // internal but not privileged material, in search and statistics alike.
    let as_para = app.user("attorney").await;
    app.add_member(&lead.access, &case, as_para.id, "paralegal")
        .await;
    assert_eq!(
        ids_at(&app, &as_para.access, search).await,
        [i.clone()].into()
    );
    assert_eq!(
        ids_at(&app, &as_para.access, &list).await,
        [s.clone(), i.clone()].into()
    );
    let stats: Value = app
        .get("/api/v1/documents/stats", Some(&as_para.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"]["count"], 2, "{stats}");
    // Filters.
    assert_eq!(
        ids_at(
            &app,
            &lead.access,
            &format!("{list}&confidentiality=privileged")
        )
        .await,
        [pr.clone()].into()
    );
    assert_eq!(
        ids_at(
            &app,
            &lead.access,
            &format!("{list}&content_type=application/pdf")
        )
        .await,
        [s.clone()].into()
    );
    assert_eq!(
        ids_at(&app, &lead.access, &format!("{list}&q=plan")).await,
        [pr.clone()].into()
    );
    problem(
        app.get(&format!("{list}&limit=0"), Some(&lead.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    problem(
        app.get(&format!("{list}&confidentiality=x"), Some(&lead.access))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Privileged: invisible to the paralegal and the client, as if it did not exist.
    for who in [&para, &client] {
        not_found_by_id(&app, who, &pr).await;
    }
    problem(
        app.get(&format!("/api/v1/documents/{i}"), Some(&client.access))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Remove a member: they lose everything at once.
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{case}/members/{}", removed.id),
            Some(&lead.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for who in [&outsider, &other_client, &removed] {
        for id in [&s, &i, &pr] {
            for path in [
                format!("/api/v1/documents/{id}"),
                format!("/api/v1/documents/{id}/content"),
            ] {
                problem(
                    app.get(&path, Some(&who.access)).await,
                    StatusCode::NOT_FOUND,
                )
                .await;
            }
        }
        problem(
            app.get(&list, Some(&who.access)).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert!(ids_at(&app, &who.access, search).await.is_empty());
        let st = expect(
            app.get("/api/v1/documents/stats", Some(&who.access)).await,
            StatusCode::OK,
            "stats",
        )
        .await;
        assert_eq!(st["total"]["count"], 0, "{st}");
        let r = upload_raw(&app, &who.access, &case, "x.pdf", pdf(10), None).await;
        problem(r, StatusCode::NOT_FOUND).await;
        let r = app
            .patch(
                &format!("/api/v1/documents/{s}"),
                Some(&who.access),
                json!({"title": "mine"}),
            )
            .await;
        problem(r, StatusCode::NOT_FOUND).await;
    }

    // Stats count only what the caller sees.
    let st = expect(
        app.get("/api/v1/documents/stats", Some(&para.access)).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    assert_eq!(st["total"]["count"], 2, "{st}");
    assert_eq!(st["by_type"]["text/plain"]["count"], 1, "{st}");
    assert_eq!(st["by_case"][&case]["count"], 2, "{st}");
    let st = expect(
        app.get("/api/v1/documents/stats", Some(&lead.access)).await,
        StatusCode::OK,
        "stats",
    )
    .await;
    assert_eq!(st["total"]["count"], 3);
    assert_eq!(st["total"]["bytes"], 19 + 11 + 10);

    // Only staff change documents; confidentiality changes are audited.
    let r = app
        .patch(
            &format!("/api/v1/documents/{s}"),
            Some(&client.access),
            json!({"title": "x"}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = app
        .patch(
            &format!("/api/v1/documents/{s}"),
            Some(&lead.access),
            json!({"confidentiality": "nope"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r = app
        .patch(
            &format!("/api/v1/documents/{s}"),
            Some(&lead.access),
            json!({"owner": "x"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let d = expect(
        app.patch(
            &format!("/api/v1/documents/{s}"),
            Some(&lead.access),
            json!({"confidentiality": "internal", "title": "ID card"}),
        )
        .await,
        StatusCode::OK,
        "patch",
    )
    .await;
    assert_eq!(d["confidentiality"], "internal");
    assert_eq!(d["title"], "ID card");
    problem(
        app.get(&format!("/api/v1/documents/{s}"), Some(&client.access))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let b = expect(
        app.get(
            &format!("/api/v1/audit?action=document.update&resource_id={s}"),
            Some(&admin.access),
        )
        .await,
        StatusCode::OK,
        "audit",
    )
    .await;
    assert_eq!(
        b["items"][0]["details"]["confidentiality"],
        json!(["shared", "internal"]),
        "{b}"
    );

    // The client's dashboard shows the documents they may see; staff see the latest five.
    let dash = expect(
        app.get("/api/v1/dashboard", Some(&client.access)).await,
        StatusCode::OK,
        "dash",
    )
    .await;
    assert!(
        dash["recent_documents"].as_array().unwrap().is_empty(),
        "{dash}"
    );
    let dash = expect(
        app.get("/api/v1/dashboard", Some(&lead.access)).await,
        StatusCode::OK,
        "dash",
    )
    .await;
    let recent = dash["recent_documents"].as_array().unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0]["id"], pr.as_str());
    assert_eq!(recent[0]["case_id"], case.as_str());
}

#[tokio::test]
async fn versions_legal_holds_and_soft_delete() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let para = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;
    let d = upload(&app, &lead.access, &case, "draft.pdf", pdf(100), "shared").await;
    let id = d["id"].as_str().unwrap().to_owned();
    let v2 = b"second version, as text".to_vec();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/documents/{id}/versions")))
        .bearer_auth(&client.access)
        .multipart(form("draft v2.txt", v2.clone(), None, None))
        .send()
        .await
        .unwrap();
    let d2 = expect(r, StatusCode::CREATED, "new version").await;
    assert_eq!(d2["version"], 2);
    assert_eq!(d2["content_type"], "text/plain");
    assert_eq!(d2["id"], id.as_str());
    let b = expect(
        app.get(
            &format!("/api/v1/documents/{id}/versions"),
            Some(&lead.access),
        )
        .await,
        StatusCode::OK,
        "versions",
    )
    .await;
    let versions: Vec<i64> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);
    assert_eq!(
        content(&app, &lead.access, &id, None)
            .await
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        v2
    );
    let r = app
        .client
        .get(app.url(&format!("/api/v1/documents/{id}/content?version=1")))
        .bearer_auth(&lead.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), pdf(100));
    let r = app
        .get(
            &format!("/api/v1/documents/{id}/content?version=9"),
            Some(&lead.access),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND).await;

    // Legal hold: attorneys and admins only; while on, nobody deletes.
    for who in [&para, &client] {
        let r = app
            .post(
                &format!("/api/v1/documents/{id}/legal-hold"),
                Some(&who.access),
                json!({"on": true}),
            )
            .await;
        problem(r, StatusCode::FORBIDDEN).await;
    }
    let h = expect(
        app.post(
            &format!("/api/v1/documents/{id}/legal-hold"),
            Some(&lead.access),
            json!({"on": true}),
        )
        .await,
        StatusCode::OK,
        "hold",
    )
    .await;
    assert_eq!(h["legal_hold"], true);
    // While on, nobody who may delete does; who may not hears that first (the client did not
    // upload it).
    for (who, status) in [
        (&lead, StatusCode::CONFLICT),
        (&para, StatusCode::CONFLICT),
        (&client, StatusCode::FORBIDDEN),
    ] {
        let r = app
            .request(
                reqwest::Method::DELETE,
                &format!("/api/v1/documents/{id}"),
                Some(&who.access),
                None,
            )
            .await;
        problem(r, status).await;
    }
    expect(
        app.post(
            &format!("/api/v1/documents/{id}/legal-hold"),
            Some(&lead.access),
            json!({"on": false}),
        )
        .await,
        StatusCode::OK,
        "release",
    )
    .await;
    // A hold on the case covers its documents.
    let h = expect(
        app.post(
            &format!("/api/v1/cases/{case}/legal-hold"),
            Some(&lead.access),
            json!({"on": true}),
        )
        .await,
        StatusCode::OK,
        "case hold",
    )
    .await;
    assert_eq!(h["on"], true);
    let r = app
        .post(
            &format!("/api/v1/cases/{case}/legal-hold"),
            Some(&para.access),
            json!({"on": false}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            Some(&lead.access),
            None,
        )
        .await;
    problem(r, StatusCode::CONFLICT).await;
    let got = expect(
        app.get(&format!("/api/v1/documents/{id}"), Some(&client.access))
            .await,
        StatusCode::OK,
        "get",
    )
    .await;
    assert_eq!(got["legal_hold"], true);
    // The client's own upload, which they may delete, is held too.
    let held = upload(&app, &client.access, &case, "held.pdf", pdf(7), "shared").await;
    let delete_held = async || {
        app.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/documents/{}", held["id"].as_str().unwrap()),
            Some(&client.access),
            None,
        )
        .await
    };
    problem(delete_held().await, StatusCode::CONFLICT).await;
    expect(
        app.post(
            &format!("/api/v1/cases/{case}/legal-hold"),
            Some(&lead.access),
            json!({"on": false}),
        )
        .await,
        StatusCode::OK,
        "case release",
    )
    .await;
    assert_eq!(
        delete_held().await.status(),
        StatusCode::NO_CONTENT,
        "released, their own"
    );

    // Delete: uploader or staff. A client may not delete the firm's upload.
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            Some(&client.access),
            None,
        )
        .await;
    problem(r, StatusCode::FORBIDDEN).await;
    let own = upload(&app, &client.access, &case, "mine.pdf", pdf(5), "shared").await;
    let own = own["id"].as_str().unwrap().to_owned();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/documents/{own}"),
            Some(&client.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/documents/{id}"),
            Some(&para.access),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for d in [&id, &own] {
        problem(
            app.get(&format!("/api/v1/documents/{d}"), Some(&lead.access))
                .await,
            StatusCode::NOT_FOUND,
        )
        .await;
        problem(
            content(&app, &lead.access, d, None).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert!(
        ids_at(
            &app,
            &lead.access,
            &format!("/api/v1/cases/{case}/documents")
        )
        .await
        .is_empty()
    );

    // Purge after retention removes rows and objects; the sweep leaves held documents alone.
    let kept = upload(&app, &lead.access, &case, "kept.pdf", pdf(5), "shared").await;
    let kept = kept["id"].as_str().unwrap().to_owned();
    let objects_before = stored_files(&app).len();
    assert_eq!(objects_before, 5, "v1, v2, held, mine, kept");
    let later = lawfirm_pro::db::now() + chrono::Duration::days(31);
    let report = lawfirm_pro::documents::jobs::run_once(&app.state, later)
        .await
        .unwrap();
    assert_eq!(report.purged_documents, 3);
    assert_eq!(stored_files(&app).len(), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document").await, 1);
    let r = content(&app, &lead.access, &kept, None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Discarding an upload whose version committed (as after a commit that reported an error
/// but happened) leaves the bytes: a version owns them.
#[tokio::test]
async fn a_committed_versions_bytes_are_never_discarded() {
    use lawfirm_pro::documents::entity::version;
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let d = upload(&app, &lead.access, &case, "kept.pdf", pdf(500), "shared").await;
    let v = version::Entity::find()
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap();
    let files = stored_files(&app);
    assert_eq!(files.len(), 1);
    lawfirm_pro::documents::upload::discard(&app.state, &v.object_key).await;
    assert_eq!(stored_files(&app), files);
    let r = content(&app, &lead.access, d["id"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// The sweeper and a slow upload's commit race for the upload's registration; whoever takes it
/// decides. An upload the sweeper took (it started over a day ago) is refused on commit — never
/// a document whose bytes the sweeper removed — and an object that finished writing after the
/// sweeper's removal is removed by the refused request itself.
#[tokio::test]
async fn an_upload_the_sweeper_took_never_becomes_a_document() {
    use lawfirm_pro::{
        auth::Principal,
        documents::{service, upload},
        error::Error,
    };
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let case_id: uuid::Uuid = case.parse().unwrap();
    let stored = |name: &'static str| {
        let state = app.state.clone();
        async move {
            let body =
                futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(pdf(300)))]);
            upload::ingest(&state, name, body).await.unwrap()
        }
    };
    let as_lead = Principal {
        user_id: lead.id,
        role: lawfirm_pro::users::domain::Role::Attorney,
        ..Principal::system()
    };
    let create = |file| {
        service::create_document(
            &app.state,
            &as_lead,
            case_id,
            service::NewDocument {
                title: None,
                confidentiality: Some("shared".into()),
                file,
            },
        )
    };

    // The sweeper runs (as a day later) between the upload and its commit.
    let slow = stored("slow.pdf").await;
    assert_eq!(stored_files(&app).len(), 1);
    let later = lawfirm_pro::db::now() + chrono::Duration::days(2);
    let r = lawfirm_pro::documents::jobs::run_once(&app.state, later)
        .await
        .unwrap();
    assert_eq!(r.abandoned_objects, 1);
    let refused = create(slow).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert!(stored_files(&app).is_empty());

    // Another discard claimed it to remove the object (perhaps before this upload finished
    // writing it): the commit is refused and the refused request removes the object too; the
    // row stays with the claimer, and a claim past its lease (the claimer stopped) is the
    // sweeper's.
    let claimed = stored("claimed.pdf").await;
    let key = claimed.object_key.clone();
    let claim_at = async |ago: chrono::Duration| {
        let at = lawfirm_pro::db::now() - ago;
        let sql = "UPDATE document_upload SET claimed_at = $1 WHERE object_key = $2";
        execute(&app, sql, [at.into(), key.clone().into()]).await;
    };
    claim_at(chrono::Duration::minutes(1)).await;
    let refused = create(claimed).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert!(stored_files(&app).is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_upload").await, 1);
    claim_at(chrono::Duration::hours(1)).await;
    let r = lawfirm_pro::documents::jobs::run_once(&app.state, later)
        .await
        .unwrap();
    assert_eq!(r.abandoned_objects, 1);
    assert!(stored_files(&app).is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_upload").await, 0);

    // The sweeper took the registration while the object was still being written: its removal
    // found nothing, the object appeared after. The refused commit removes it.
    let late = stored("late.pdf").await;
    app.sql("DELETE FROM document_upload").await;
    assert_eq!(stored_files(&app).len(), 1);
    let refused = create(late).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    assert!(stored_files(&app).is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document").await, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM document_version").await,
        0
    );

    // An upload nobody raced becomes a document as always.
    let fine = create(stored("fine.pdf").await).await.unwrap();
    let r = content(&app, &lead.access, &fine.id.to_string(), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A new version the sweeper took is refused the same way; the document keeps version 1.
    let v2 = stored("v2.pdf").await;
    lawfirm_pro::documents::jobs::run_once(&app.state, later)
        .await
        .unwrap();
    let refused = service::add_version(&app.state, &as_lead, fine.id, v2).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    let versions = count(&app, "SELECT COUNT(*) FROM document_version").await;
    assert_eq!(versions, 1);
    assert_eq!(stored_files(&app).len(), 1, "only version 1's bytes");
}

#[tokio::test]
async fn abandoned_uploads_are_swept() {
    let app = spawn_app().await;
    use object_store::ObjectStoreExt;
    let key = "documents/abandoned0000000000000000000000";
    app.state
        .storage
        .store()
        .put(
            &object_store::path::Path::from(key),
            b"partial".to_vec().into(),
        )
        .await
        .unwrap();
    let started = lawfirm_pro::db::now() - chrono::Duration::days(2);
    let sql = "INSERT INTO document_upload (object_key, started_at) VALUES ($1, $2)";
    execute(&app, sql, [key.into(), started.into()]).await;
    assert_eq!(stored_files(&app).len(), 1);
    let r = lawfirm_pro::documents::jobs::run_once(&app.state, lawfirm_pro::db::now())
        .await
        .unwrap();
    assert_eq!(r.abandoned_objects, 1);
    assert!(stored_files(&app).is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM document_upload").await, 0);
}

#[tokio::test]
async fn key_rotation_rewraps_keys_and_documents_stay_readable() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let bytes = pdf(150_000);
    let d = upload(
        &app,
        &lead.access,
        &case,
        "a.pdf",
        bytes.clone(),
        "privileged",
    )
    .await;
    let id = d["id"].as_str().unwrap().to_owned();
    let stored_before: Vec<Vec<u8>> = stored_files(&app)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let old_key = std::fs::read_to_string(app.data_dir.path().join("keys/master.key")).unwrap();

    let report = lawfirm_pro::documents::keys::rotate_master_key(&app.state, None)
        .await
        .unwrap();
    assert_eq!(report.data_keys, 1);
    let new_key = std::fs::read_to_string(app.data_dir.path().join("keys/master.key")).unwrap();
    assert_ne!(old_key, new_key);
    // Content is untouched: only the wrapped keys changed.
    let stored_after: Vec<Vec<u8>> = stored_files(&app)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(stored_before, stored_after);
    // Running again is harmless (nothing left to re-wrap with the now-current key).

    // A server does not start with a key that does not open the stored keys: as after a
    // rotation interrupted between its commit and installing the new key file…
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.data_dir = app.data_dir.path().to_path_buf();
    config.database_url = app.database_url.clone().into();
    config.insecure_fast_password_hashing = true;
    config.db_max_connections = 3;
    let keys = app.data_dir.path().join("keys");
    std::fs::write(keys.join("master.key.next"), &new_key).unwrap();
    std::fs::write(keys.join("master.key"), &old_key).unwrap();
    let refused = Application::build(config.clone()).await.err().unwrap();
    assert!(refused.to_string().contains("keys rotate"), "{refused:#}");
    // … or with a wrong key.
    std::fs::remove_file(keys.join("master.key.next")).unwrap();
    let refused = Application::build(config.clone()).await.err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("does not open the stored document keys"),
        "{refused:#}"
    );
    std::fs::write(keys.join("master.key"), &new_key).unwrap();

    // A server started with the new key reads the document.
    let second = Application::build(config).await.unwrap();
    let addr = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until(std::future::pending()));
    let login: Value = app
        .client
        .post(format!("{addr}/api/v1/auth/login"))
        .json(&json!({"email": lead.email, "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .get(format!("{addr}/api/v1/documents/{id}/content"))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    // The old server still holds the retired key in memory: it can no longer open the key.
    let r = content(&app, &lead.access, &id, None).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// Streams 64 MiB through the server (generated on the fly, never held by the client) and
/// checks the process does not grow by anything like the file size. Run alone, since other
/// tests in the same process allocate too: `scripts/test` (CI) runs it as its own phase,
/// `cargo test --test api -- --ignored --exact documents::memory_does_not_grow_with_file_size`.
#[tokio::test]
#[ignore]
async fn memory_does_not_grow_with_file_size() {
    const SIZE: usize = 64 * 1024 * 1024;
    let app = spawn_app_with(|c| c.max_upload_bytes = 100 * 1024 * 1024).await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let rss = || {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let piece: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut head = b"%PDF-1.7\n".to_vec();
    head.extend_from_slice(&piece[..65536 - 9]);
    let chunks = std::iter::once(head)
        .chain(std::iter::repeat_n(piece.clone(), SIZE / 65536 - 1))
        .map(Ok::<_, std::io::Error>);
    let mut hasher = Sha256::new();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let before = rss();
    let part = multipart::Part::stream_with_length(body, SIZE as u64)
        .file_name("big.pdf")
        .mime_str("application/pdf")
        .unwrap();
    let r = app
        .post_multipart(
            &format!("/api/v1/cases/{case}/documents"),
            &lead.access,
            multipart::Form::new().part("file", part),
        )
        .await;
    let d = expect(r, StatusCode::CREATED, "big upload").await;
    let after_upload = rss();
    let mut r = content(&app, &lead.access, d["id"].as_str().unwrap(), None).await;
    let mut n = 0usize;
    while let Some(c) = r.chunk().await.unwrap() {
        hasher.update(&c);
        n += c.len();
    }
    let after_download = rss();
    assert_eq!(n, SIZE);
    assert_eq!(
        hex::encode(hasher.finalize()),
        d["sha256"].as_str().unwrap()
    );
    let grew = after_upload.max(after_download).saturating_sub(before);
    println!("RSS before {before}, after upload {after_upload}, after download {after_download}");
    assert!(
        grew < (SIZE as u64) / 4,
        "process grew by {grew} bytes for a {SIZE}-byte file"
    );
}

#[tokio::test]
async fn the_sweep_job_ends_with_the_server_even_when_started_late() {
    let app = spawn_app().await;
    // Shutdown has begun before the job subscribes: it must still see it.
    app.state.shutdown.send_replace(true);
    let job = lawfirm_pro::documents::jobs::spawn(app.state.clone());
    tokio::time::timeout(std::time::Duration::from_secs(5), job)
        .await
        .expect("the sweep job ended, not slept for its 15 minutes")
        .unwrap();
}

/// The search index follows a document's indexed text and only that: a new title and a new
/// version's file name are found, the old ones no longer; confidentiality and a legal hold
/// (no indexed text) change nothing in what the search finds.
#[tokio::test]
async fn document_search_follows_title_and_version_changes() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let case = new_case(&app, &lead, &[], &[]).await;
    let d = upload(
        &app,
        &lead.access,
        &case,
        "aardvark notes.pdf",
        pdf(100),
        "internal",
    )
    .await;
    let id = d["id"].as_str().unwrap().to_owned();
    let found = |q: &'static str| {
        let (app, token) = (&app, lead.access.clone());
        async move { ids_at(app, &token, &format!("/api/v1/documents/search?q={q}")).await }
    };
    let just = |id: &str| HashSet::from([id.to_owned()]);
    assert_eq!(found("aardvark").await, just(&id));

    let r = app
        .patch(
            &format!("/api/v1/documents/{id}"),
            Some(&lead.access),
            json!({"title": "Pangolin memo"}),
        )
        .await;
    expect(r, StatusCode::OK, "rename").await;
    assert_eq!(found("pangolin").await, just(&id));
    // The file name is still indexed; the old title was the file name. (Names carry a space:
    // PostgreSQL's parser reads "aardvark.pdf" as one file-name token, SQLite's as two words.)
    assert_eq!(found("aardvark").await, just(&id));

    let r = app
        .client
        .post(app.url(&format!("/api/v1/documents/{id}/versions")))
        .bearer_auth(&lead.access)
        .multipart(form("narwhal brief.pdf", pdf(120), None, None))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::CREATED, "new version").await;
    assert_eq!(found("narwhal").await, just(&id));
    assert!(found("aardvark").await.is_empty(), "old file name gone");
    assert_eq!(found("pangolin").await, just(&id));

    let r = app
        .patch(
            &format!("/api/v1/documents/{id}"),
            Some(&lead.access),
            json!({"confidentiality": "privileged"}),
        )
        .await;
    expect(r, StatusCode::OK, "confidentiality").await;
    let r = app
        .post(
            &format!("/api/v1/documents/{id}/legal-hold"),
            Some(&lead.access),
            json!({"on": true}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(found("narwhal").await, just(&id));
    assert_eq!(found("pangolin").await, just(&id));
}
