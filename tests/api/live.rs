//! Live events over a real WebSocket: authorised delivery, removal, resume, revocation,
//! many sockets, and two instances sharing one PostgreSQL.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Login, TestApp, created_id, spawn_app, spawn_app_with};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ticket(app: &TestApp, token: &str) -> String {
    let r = app.post("/api/v1/ws-ticket", Some(token), json!({})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn ws_url(app: &TestApp, query: &str) -> String {
    format!(
        "{}/api/v1/ws{query}",
        app.address.replace("http://", "ws://")
    )
}

/// Connect with a fresh ticket; returns the socket and the `last_event_id` it was ready at.
pub(crate) async fn connect(app: &TestApp, token: &str) -> (Ws, i64) {
    let t = ticket(app, token).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(app, &format!("?ticket={t}")))
        .await
        .expect("upgrade");
    let ready = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("ready frame");
    assert_eq!(ready["type"], "ready");
    (ws, ready["last_event_id"].as_i64().unwrap())
}

/// The next text frame, skipping pings; `None` on timeout.
pub(crate) async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).unwrap());
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                return Some(json!({"type": "closed", "code": f.map(|f| u16::from(f.code))}));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Everything a fresh socket is replayed after resuming from `last`.
async fn replay_after(app: &TestApp, token: &str, last: i64) -> Vec<Value> {
    let (mut ws, _) = connect(app, token).await;
    ws.send(Message::Text(
        json!({"type": "resume", "after": last}).to_string().into(),
    ))
    .await
    .unwrap();
    let mut replayed = Vec::new();
    while let Some(f) = next_frame(&mut ws, Duration::from_millis(800)).await {
        replayed.push(f);
    }
    replayed
}

async fn new_case(app: &TestApp, lead: &Login, clients: &[&Login], staff: &[&Login]) -> String {
    let r = app
        .post(
            "/api/v1/cases",
            Some(&lead.access),
            json!({"title": "Live matter", "client_ids": clients.iter().map(|c| c.id).collect::<Vec<_>>(),
                   "staff_ids": staff.iter().map(|c| c.id).collect::<Vec<_>>()}),
        )
        .await;
    created_id(r).await
}

async fn set_status(app: &TestApp, lead: &Login, case: &str, body: Value) {
    let r = app
        .post(
            &format!("/api/v1/cases/{case}/status"),
            Some(&lead.access),
            body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn upgrades_need_a_valid_single_use_ticket() {
    let app = spawn_app().await;
    let u = app.user("client").await;
    let err = tokio_tungstenite::connect_async(ws_url(&app, ""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let t = ticket(&app, &u.access).await;
    // A request that cannot become a socket does not spend the ticket.
    let r = app.get(&format!("/api/v1/ws?ticket={t}"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_ws, _) = tokio_tungstenite::connect_async(ws_url(&app, &format!("?ticket={t}")))
        .await
        .unwrap();
    let again = tokio_tungstenite::connect_async(ws_url(&app, &format!("?ticket={t}")))
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("401"),
        "a ticket works once: {again}"
    );
    let forged = tokio_tungstenite::connect_async(ws_url(&app, "?ticket=forged"))
        .await
        .unwrap_err();
    assert!(forged.to_string().contains("401"), "{forged}");
}

#[tokio::test]
async fn events_reach_members_only_and_internal_ones_staff_only() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let other_client = app.user("client").await;
    let para = app.user("paralegal").await;
    let outsider_para = app.user("paralegal").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;
    new_case(&app, &lead, &[&other_client], &[]).await;
    let (mut c, _) = connect(&app, &client.access).await;
    let (mut oc, _) = connect(&app, &other_client.access).await;
    let (mut p, _) = connect(&app, &para.access).await;
    let (mut op, _) = connect(&app, &outsider_para.access).await;

    set_status(
        &app,
        &lead,
        &case,
        json!({"status": "pending", "note": "Waiting on the court"}),
    )
    .await;
    for ws in [&mut c, &mut p] {
        let f = next_frame(ws, Duration::from_secs(5))
            .await
            .expect("member gets it");
        assert_eq!(f["type"], "case.updated");
        assert_eq!(f["case_id"], case.as_str());
        assert!(f["id"].as_i64().unwrap() > 0 && f["at"].is_string());
        assert_eq!(f["data"]["status"], "pending");
    }
    for ws in [&mut oc, &mut op] {
        assert!(
            next_frame(ws, Duration::from_millis(700)).await.is_none(),
            "outsiders get nothing"
        );
    }
    // Internal change: staff see it live, the client does not.
    set_status(
        &app,
        &lead,
        &case,
        json!({"phase": "discovery", "client_visible": false}),
    )
    .await;
    let f = next_frame(&mut p, Duration::from_secs(5))
        .await
        .expect("staff member gets it");
    assert_eq!(f["data"]["phase"], "discovery");
    assert!(
        next_frame(&mut c, Duration::from_millis(700))
            .await
            .is_none()
    );
}

/// An attorney demoted to client who is still on a case (nobody removed the row) gets what a
/// client gets live: no staff-only change, no privileged document; a shared change still.
/// An admin following a case they are not on is audited.
#[tokio::test]
async fn a_demoted_attorney_gets_only_what_clients_get_live() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let second = app.user("attorney").await;
    let case = new_case(&app, &lead, &[&client], &[&second]).await;
    let r = app
        .patch(
            &format!("/api/v1/users/{}", second.id),
            Some(&admin.access),
            json!({"role": "client"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let demoted = app.login_as(&second.email).await;
    let (mut d, last) = connect(&app, &demoted.access).await;
    let (mut l, _) = connect(&app, &lead.access).await;
    let (mut a, _) = connect(&app, &admin.access).await;
    a.send(Message::Text(
        json!({"type": "subscribe", "case_id": case})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let f = next_frame(&mut a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(f["type"], "subscribed");

    set_status(
        &app,
        &lead,
        &case,
        json!({"phase": "discovery", "client_visible": false}),
    )
    .await;
    let r = app
        .post_multipart(
            &format!("/api/v1/cases/{case}/documents"),
            &lead.access,
            crate::documents::form(
                "advice.pdf",
                crate::documents::pdf(50),
                Some("privileged"),
                None,
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Both reach the lead (delivery is in order), the staff change the subscribed admin.
    for kind in ["case.updated", "document.created"] {
        let f = next_frame(&mut l, Duration::from_secs(5)).await.unwrap();
        assert_eq!(f["type"], kind, "{f}");
    }
    let f = next_frame(&mut a, Duration::from_secs(5)).await.unwrap();
    assert_eq!(f["data"]["phase"], "discovery", "{f}");
    set_status(&app, &lead, &case, json!({"status": "pending"})).await;
    let f = next_frame(&mut d, Duration::from_secs(5))
        .await
        .expect("the shared change");
    assert_eq!(f["data"]["status"], "pending", "{f}");
    // Nor does a resume replay the staff's events.
    let (mut d, _) = connect(&app, &demoted.access).await;
    d.send(Message::Text(
        json!({"type": "resume", "after": last}).to_string().into(),
    ))
    .await
    .unwrap();
    let f = next_frame(&mut d, Duration::from_secs(5)).await.unwrap();
    assert_eq!(f["data"]["status"], "pending", "{f}");
    assert!(
        next_frame(&mut d, Duration::from_millis(500))
            .await
            .is_none()
    );

    let log: Value = app
        .get(
            &format!("/api/v1/audit?action=case.live_subscribe&resource_id={case}"),
            Some(&admin.access),
        )
        .await
        .json()
        .await
        .unwrap();
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!(items[0]["actor_id"], admin.id.to_string());
    assert_eq!(items[0]["details"]["admin_access"], true);
}

#[tokio::test]
async fn removal_from_a_case_stops_delivery_at_once() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let (mut c, _) = connect(&app, &client.access).await;
    app.remove_member(&lead, &case, client.id).await;
    set_status(&app, &lead, &case, json!({"status": "pending"})).await;
    assert!(
        next_frame(&mut c, Duration::from_millis(800))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events_in_order() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let (ws, last) = connect(&app, &client.access).await;
    drop(ws);
    set_status(&app, &lead, &case, json!({"status": "pending"})).await;
    set_status(
        &app,
        &lead,
        &case,
        json!({"phase": "trial", "client_visible": false}),
    )
    .await;
    set_status(&app, &lead, &case, json!({"status": "open"})).await;
    let (mut ws, _) = connect(&app, &client.access).await;
    ws.send(Message::Text(
        json!({"type": "resume", "after": last}).to_string().into(),
    ))
    .await
    .unwrap();
    let a = next_frame(&mut ws, Duration::from_secs(5)).await.unwrap();
    let b = next_frame(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (a["data"]["status"].as_str(), b["data"]["status"].as_str()),
        (Some("pending"), Some("open"))
    );
    assert!(a["id"].as_i64() < b["id"].as_i64());
    assert!(
        next_frame(&mut ws, Duration::from_millis(500))
            .await
            .is_none(),
        "the internal change is not replayed to a client"
    );
}

#[tokio::test]
async fn a_removed_client_is_not_replayed_what_was_addressed_to_them_before() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let left = new_case(&app, &lead, &[&client], &[]).await;
    let kept = new_case(&app, &lead, &[&client], &[]).await;
    let (ws, last) = connect(&app, &client.access).await;
    drop(ws);
    // Addressed to the client by name (a message's recipients) on both cases, while offline.
    for case in [&left, &kept] {
        let r = app
            .post(
                &format!("/api/v1/cases/{case}/messages"),
                Some(&lead.access),
                json!({"body": "The hearing moved to Thursday"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    app.remove_member(&lead, &left, client.id).await;

    let replayed = replay_after(&app, &client.access, last).await;
    let messages: Vec<&str> = replayed
        .iter()
        .filter(|f| f["type"] == "message.created")
        .map(|f| f["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(messages, [kept.as_str()], "{replayed:?}");
    assert!(
        replayed.iter().all(|f| f["case_id"] != left.as_str()),
        "nothing of the case they left: {replayed:?}"
    );
}

#[tokio::test]
async fn a_demoted_attorney_is_not_replayed_privileged_documents_from_before() {
    let app = spawn_app().await;
    let admin = app.user("admin").await;
    let lead = app.user("attorney").await;
    let second = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[&second]).await;
    let (ws, last) = connect(&app, &second.access).await;
    drop(ws);
    // Written for the case's attorneys while `second` is one of them, and offline.
    for conf in ["privileged", "internal"] {
        let r = app
            .post_multipart(
                &format!("/api/v1/cases/{case}/documents"),
                &lead.access,
                crate::documents::form(
                    &format!("{conf}.pdf"),
                    crate::documents::pdf(50),
                    Some(conf),
                    None,
                ),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Now a paralegal: still on the case, no longer one who may read privileged documents.
    app.set_role(&admin, second.id, "paralegal").await;
    let again = app.login_as(&second.email).await;
    let replayed = replay_after(&app, &again.access, last).await;
    let documents: Vec<&str> = replayed
        .iter()
        .filter(|f| f["type"] == "document.created")
        .map(|f| f["data"]["title"].as_str().unwrap_or_default())
        .collect();
    assert!(
        documents.len() == 1 && documents[0].starts_with("internal"),
        "the internal document only: {replayed:?}"
    );
}

#[tokio::test]
async fn resume_beyond_the_window_asks_for_a_reload() {
    let app = spawn_app_with(|c| c.ws_replay_window = 2).await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    for s in ["pending", "open", "pending"] {
        set_status(&app, &lead, &case, json!({"status": s})).await;
    }
    let (mut ws, _) = connect(&app, &client.access).await;
    ws.send(Message::Text(
        json!({"type": "resume", "after": 0}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_frame(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "resync"
    );
}

#[tokio::test]
async fn bad_client_frames_get_an_error_frame_not_a_crash() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let (mut ws, _) = connect(&app, &client.access).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(
        next_frame(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "error"
    );
    ws.send(Message::Text(
        json!({"type": "subscribe", "case_id": uuid::Uuid::new_v4()})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_frame(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "error",
        "unknown case"
    );
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "pong"
    );
}

#[tokio::test]
async fn logout_closes_the_socket() {
    let app = spawn_app().await;
    let client = app.user("client").await;
    let (mut ws, _) = connect(&app, &client.access).await;
    let r = app
        .post(
            "/api/v1/auth/logout",
            Some(&client.access),
            json!({"refresh_token": client.refresh}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let f = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(f["type"], "closed");
    assert_eq!(f["code"], 4001);
}

#[tokio::test]
async fn per_user_connection_cap() {
    let app = spawn_app_with(|c| c.ws_max_per_user = 2).await;
    let u = app.user("client").await;
    let _a = connect(&app, &u.access).await;
    let _b = connect(&app, &u.access).await;
    let t = ticket(&app, &u.access).await;
    let err = tokio_tungstenite::connect_async(ws_url(&app, &format!("?ticket={t}")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
}

#[tokio::test]
async fn a_thousand_sockets_all_receive_a_broadcast() {
    let app = spawn_app_with(|c| {
        c.ws_max_per_user = 2000;
        c.ws_max_per_ip = 5000;
    })
    .await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let mut sockets = Vec::new();
    for chunk in 0..10 {
        let batch =
            futures::future::join_all((0..100).map(|_| connect(&app, &client.access))).await;
        sockets.extend(batch.into_iter().map(|(ws, _)| ws));
        assert_eq!(sockets.len(), (chunk + 1) * 100);
    }
    set_status(&app, &lead, &case, json!({"status": "pending"})).await;
    let received = futures::future::join_all(
        sockets
            .iter_mut()
            .map(|ws| next_frame(ws, Duration::from_secs(20))),
    )
    .await;
    let got = received
        .iter()
        .filter(|f| f.as_ref().is_some_and(|f| f["type"] == "case.updated"))
        .count();
    assert_eq!(got, 1000);
}

/// Instance B of `a`: same database and keys directory, its own process state and port.
async fn second_instance(a: &TestApp) -> lawfirm_pro::Application {
    let mut config = lawfirm_pro::Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.data_dir = a.data_dir.path().to_path_buf();
    config.database_url = a.database_url.clone().into();
    config.public_url = url::Url::parse(crate::helpers::ORIGIN).unwrap();
    config.insecure_fast_password_hashing = true;
    lawfirm_pro::Application::build(config).await.unwrap()
}

#[tokio::test]
async fn a_stopped_instance_stops_reading_events() {
    let a = spawn_app().await;
    let b_app = second_instance(&a).await;
    let b_db = b_app.state().db.clone();
    let log = b_db.statements();
    let reads_events = |seen: Vec<sea_orm::Statement>| -> Vec<String> {
        seen.into_iter()
            .map(|s| s.sql)
            .filter(|sql| sql.contains("\"event\""))
            .collect()
    };
    log.start();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(b_app.run_until(async {
        let _ = stopped.await;
    }));
    let lead = a.user("attorney").await;
    let client = a.user("client").await;
    let case = new_case(&a, &lead, &[&client], &[]).await;
    // While it runs, B reads A's events (NOTIFY on PostgreSQL, its poll on SQLite): the check
    // below can only fail for the right reason.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(
        !reads_events(log.stop()).is_empty(),
        "a running instance reads events"
    );
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    log.start();
    // A NOTIFY on PostgreSQL; on SQLite a stopped dispatcher would still poll every 2 s.
    set_status(&a, &lead, &case, json!({"status": "pending"})).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let read = reads_events(log.stop());
    assert!(read.is_empty(), "a stopped instance read events: {read:?}");
}

#[tokio::test]
async fn two_instances_on_one_postgresql_deliver_across() {
    if crate::helpers::backend() != "postgres" {
        // Several instances are a PostgreSQL deployment; the PostgreSQL run of the suite checks this.
        return;
    }
    let a = spawn_app().await;
    let b_app = second_instance(&a).await;
    let b = TestApp {
        address: format!("http://127.0.0.1:{}", b_app.port()),
        client: crate::helpers::http(),
        state: b_app.state().clone(),
        database_url: a.database_url.clone(),
        data_dir: tempfile::tempdir().unwrap(),
        // `a`'s database: `a` drops it.
        owned_pg_database: None,
    };
    tokio::spawn(b_app.run_until(std::future::pending()));
    let lead = a.user("attorney").await;
    let client = a.user("client").await;
    let case = new_case(&a, &lead, &[&client], &[]).await;
    let (mut ws, _) = connect(&b, &client.access).await;
    set_status(&a, &lead, &case, json!({"status": "pending"})).await;
    let f = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("delivered through LISTEN/NOTIFY");
    assert_eq!(f["case_id"], case.as_str());
}
