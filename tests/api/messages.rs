//! Messages: sending and receiving, recipients, read receipts over WebSocket, unread counts,
//! search, threads, bulk actions, per-person delete, mail notices, rate limit — and what an
//! outsider or a removed member gets (404 everywhere, nothing in counts or search).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use lawfirm_pro::{audit::entity::entry, mail::entity as outbox};
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use crate::helpers::{Login, TestApp, problem, spawn_app};

const HANG: Duration = Duration::from_secs(30);

async fn send_req(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let what = format!("{method} {path}");
    tokio::time::timeout(HANG, app.request(method, path, Some(token), body))
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {HANG:?}"))
}

/// Assert the status (showing the body when it differs) and return the JSON body.
async fn expect(r: reqwest::Response, status: StatusCode, what: &str) -> Value {
    let got = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get_ok(app: &TestApp, path: &str, who: &Login) -> Value {
    expect(
        send_req(app, Method::GET, path, &who.access, None).await,
        StatusCode::OK,
        path,
    )
    .await
}

async fn status_of(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &Login,
    body: Option<Value>,
) -> StatusCode {
    send_req(app, method, path, &who.access, body)
        .await
        .status()
}

async fn new_case(app: &TestApp, lead: &Login, clients: &[&Login], staff: &[&Login]) -> String {
    let b = expect(
        send_req(
            app,
            Method::POST,
            "/api/v1/cases",
            &lead.access,
            Some(json!({
                "title": "Secret Matter Title",
                "client_ids": clients.iter().map(|c| c.id).collect::<Vec<_>>(),
                "staff_ids": staff.iter().map(|c| c.id).collect::<Vec<_>>(),
            })),
        )
        .await,
        StatusCode::CREATED,
        "POST /cases",
    )
    .await;
    b["id"].as_str().unwrap().to_owned()
}

async fn post_message(app: &TestApp, case: &str, who: &Login, body: Value) -> reqwest::Response {
    send_req(
        app,
        Method::POST,
        &format!("/api/v1/cases/{case}/messages"),
        &who.access,
        Some(body),
    )
    .await
}

/// Send and return the created message.
async fn say(app: &TestApp, case: &str, who: &Login, body: Value) -> Value {
    expect(
        post_message(app, case, who, body.clone()).await,
        StatusCode::CREATED,
        &format!("send {body}"),
    )
    .await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn item_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(id)
        .collect()
}

fn fields(b: &Value) -> HashSet<String> {
    b["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("validation problem lists errors: {b}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn unread(app: &TestApp, who: &Login) -> Value {
    get_ok(app, "/api/v1/messages/unread-count", who).await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, who: &Login) -> Ws {
    let r = app
        .post("/api/v1/ws-ticket", Some(&who.access), json!({}))
        .await;
    let t: Value = expect(r, StatusCode::CREATED, "ws-ticket").await;
    let url = format!(
        "{}/api/v1/ws?ticket={}",
        app.address.replace("http://", "ws://"),
        t["ticket"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let ready = next_frame(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ready["type"], "ready");
    ws
}

/// The next event frame of `kind`, skipping others; `None` on timeout.
async fn next_of(ws: &mut Ws, kind: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let f = next_frame(ws, left).await?;
        if f["type"] == kind {
            return Some(f);
        }
    }
}

async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn audit_actions(app: &TestApp, actor: &Login) -> Vec<(String, Option<String>, String)> {
    // Reads are committed by the audit writer in batches; let it finish, then chain what it
    // spooled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.state.audit.settle().await.unwrap();
    entry::Entity::find()
        .filter(entry::Column::ActorId.eq(actor.id))
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.resource_id, e.outcome))
        .collect()
}

#[tokio::test]
async fn members_send_and_receive_with_default_recipients() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let para = app.user("paralegal").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;

    let m = say(
        &app,
        &case,
        &lead,
        json!({"body": "  Please send the lease.  \n"}),
    )
    .await;
    assert_eq!(m["body"], "Please send the lease.");
    assert_eq!(m["case_id"], case.as_str());
    assert_eq!(m["sender_id"], lead.id.to_string());
    assert_eq!(m["parent_id"], Value::Null);
    assert_eq!(m["attachment_ids"], json!([]));
    assert_eq!(m["read_by"], json!([]));
    let got: HashSet<String> = m["recipient_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got,
        HashSet::from([client.id.to_string(), para.id.to_string()])
    );
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));

    for who in [&client, &para] {
        let inbox = get_ok(&app, "/api/v1/messages", who).await;
        assert_eq!(item_ids(&inbox), vec![id(&m)]);
        let one = get_ok(&app, &format!("/api/v1/messages/{}", id(&m)), who).await;
        assert_eq!(one["body"], "Please send the lease.");
        let in_case = get_ok(&app, &format!("/api/v1/cases/{case}/messages"), who).await;
        assert_eq!(item_ids(&in_case), vec![id(&m)]);
    }
    // The sender's inbox holds what they received; `box=sent` what they sent.
    assert!(item_ids(&get_ok(&app, "/api/v1/messages", &lead).await).is_empty());
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages?box=sent", &lead).await),
        vec![id(&m)]
    );
    // The client answers; only the lead is addressed.
    let reply = say(
        &app,
        &case,
        &client,
        json!({"body": "Attached soon.", "recipient_ids": [lead.id]}),
    )
    .await;
    assert_eq!(reply["recipient_ids"], json!([lead.id]));
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            &format!("/api/v1/messages/{}", id(&reply)),
            &para,
            None
        )
        .await,
        StatusCode::NOT_FOUND,
        "a member who is not a recipient does not see it"
    );
    let para_case = get_ok(&app, &format!("/api/v1/cases/{case}/messages"), &para).await;
    assert_eq!(item_ids(&para_case), vec![id(&m)]);
    let lead_case = get_ok(&app, &format!("/api/v1/cases/{case}/messages"), &lead).await;
    assert_eq!(
        item_ids(&lead_case),
        vec![id(&reply), id(&m)],
        "newest first"
    );

    let actions = audit_actions(&app, &lead).await;
    assert!(
        actions
            .iter()
            .any(|(a, r, _)| a == "message.send" && r.as_deref() == Some(&id(&m)))
    );
    let actions = audit_actions(&app, &client).await;
    assert!(
        actions
            .iter()
            .any(|(a, r, _)| a == "message.view" && r.as_deref() == Some(&id(&m)))
    );
    assert!(actions.iter().any(|(a, _, _)| a == "message.list"));
}

#[tokio::test]
async fn bad_input_and_recipients_outside_the_case_are_refused() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let stranger = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let path = format!("/api/v1/cases/{case}/messages");

    for (body, field) in [
        (
            json!({"body": "hi", "recipient_ids": [stranger.id]}),
            "recipient_ids",
        ),
        (
            json!({"body": "hi", "recipient_ids": [Uuid::new_v4()]}),
            "recipient_ids",
        ),
        (json!({"body": "hi", "recipient_ids": []}), "recipient_ids"),
        (
            json!({"body": "hi", "recipient_ids": [lead.id]}),
            "recipient_ids",
        ),
        (json!({"body": "   \n "}), "body"),
        (json!({"body": "a\u{0}b"}), "body"),
        (json!({"body": "x".repeat(20_001)}), "body"),
        (
            json!({"body": "hi", "attachment_ids": [Uuid::new_v4()]}),
            "attachment_ids",
        ),
        (
            json!({"body": "hi", "parent_id": Uuid::new_v4()}),
            "parent_id",
        ),
    ] {
        let b = problem(
            post_message(&app, &case, &lead, body.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(fields(&b).contains(field), "{body}: {b}");
    }
    // Mass assignment of server-decided fields is refused, not ignored.
    let r = post_message(
        &app,
        &case,
        &client,
        json!({"body": "hi", "sender_id": lead.id, "created_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&lead.access)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Exactly 20,000 characters is fine; nobody else on a case means no default recipients.
    say(&app, &case, &lead, json!({"body": "y".repeat(20_000)})).await;
    let lonely = new_case(&app, &lead, &[], &[]).await;
    let b = problem(
        post_message(&app, &lonely, &lead, json!({"body": "anyone?"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(fields(&b).contains("recipient_ids"));
    // Outsiders cannot post into the case (404, existence not revealed); nor without a token.
    assert_eq!(
        post_message(&app, &case, &stranger, json!({"body": "hello"}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&path, None, json!({"body": "x"})).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // An admin who is not on the case sees it but may not write in it.
    let admin = app.user("admin").await;
    assert_eq!(
        post_message(&app, &case, &admin, json!({"body": "hello"}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    for q in [
        "limit=0",
        "limit=101",
        "box=drafts",
        "box=sent&unread=true",
        "cursor=zzz",
    ] {
        assert_eq!(
            status_of(
                &app,
                Method::GET,
                &format!("/api/v1/messages?{q}"),
                &client,
                None
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}"
        );
    }
}

#[tokio::test]
async fn outsiders_and_removed_members_get_404_and_nothing_in_counts_or_search() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let outsider = app.user("client").await;
    let outsider_staff = app.user("attorney").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    new_case(&app, &outsider_staff, &[&outsider], &[]).await;
    let m = say(
        &app,
        &case,
        &lead,
        json!({"body": "The zeppelin verdict is in."}),
    )
    .await;
    let answer = say(&app, &case, &client, json!({"body": "Zeppelin thanks"})).await;
    let mid = id(&m);
    assert_eq!(unread(&app, &client).await["total"], 1);

    for who in [&outsider, &outsider_staff] {
        for (method, path, body) in [
            (Method::GET, format!("/api/v1/messages/{mid}"), None),
            (Method::POST, format!("/api/v1/messages/{mid}/read"), None),
            (Method::DELETE, format!("/api/v1/messages/{mid}"), None),
            (
                Method::POST,
                "/api/v1/messages/read".into(),
                Some(json!({"ids": [mid]})),
            ),
            (
                Method::POST,
                "/api/v1/messages/bulk-delete".into(),
                Some(json!({"ids": [mid]})),
            ),
            (Method::GET, format!("/api/v1/cases/{case}/messages"), None),
            (
                Method::GET,
                format!("/api/v1/messages?case_id={case}"),
                None,
            ),
        ] {
            let r = send_req(&app, method.clone(), &path, &who.access, body).await;
            problem(r, StatusCode::NOT_FOUND).await;
        }
        assert!(item_ids(&get_ok(&app, "/api/v1/messages?q=zeppelin", who).await).is_empty());
        assert_eq!(unread(&app, who).await["total"], 0);
    }
    let denied = audit_actions(&app, &outsider).await;
    assert!(
        denied
            .iter()
            .any(|(a, r, o)| a == "message.access" && r.as_deref() == Some(&mid) && o == "denied"),
        "{denied:?}"
    );

    // Removed from the case: the client's messages there vanish from every view.
    app.remove_member(&lead, &case, client.id).await;
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/messages/{mid}"), None),
        (
            Method::GET,
            format!("/api/v1/messages/{}", id(&answer)),
            None,
        ),
        (Method::POST, format!("/api/v1/messages/{mid}/read"), None),
        (Method::DELETE, format!("/api/v1/messages/{mid}"), None),
        (Method::GET, format!("/api/v1/cases/{case}/messages"), None),
        (
            Method::GET,
            format!("/api/v1/messages?case_id={case}"),
            None,
        ),
    ] {
        let r = send_req(&app, method.clone(), &path, &client.access, body).await;
        problem(r, StatusCode::NOT_FOUND).await;
    }
    assert!(item_ids(&get_ok(&app, "/api/v1/messages", &client).await).is_empty());
    assert!(item_ids(&get_ok(&app, "/api/v1/messages?box=sent", &client).await).is_empty());
    assert!(item_ids(&get_ok(&app, "/api/v1/messages?q=zeppelin", &client).await).is_empty());
    let u = unread(&app, &client).await;
    assert_eq!(u, json!({"total": 0, "by_case": {}}));
    let s = get_ok(&app, "/api/v1/messages/stats", &client).await;
    assert_eq!(
        (
            s["sent"].as_i64(),
            s["received"].as_i64(),
            s["unread"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );
    let d = get_ok(&app, "/api/v1/dashboard", &client).await;
    assert_eq!(d["unread_messages"], 0);
    // The lead keeps the conversation, and the record stays.
    assert_eq!(
        item_ids(&get_ok(&app, &format!("/api/v1/cases/{case}/messages"), &lead).await).len(),
        2
    );
}

#[tokio::test]
async fn read_receipts_reach_the_sender_live_and_keep_the_first_time() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let para = app.user("paralegal").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;
    let mut lead_ws = connect(&app, &lead).await;
    let mut client_ws = connect(&app, &client).await;
    let mut para_ws = connect(&app, &para).await;

    let m = say(
        &app,
        &case,
        &lead,
        json!({"body": "Only for the client", "recipient_ids": [client.id]}),
    )
    .await;
    let f = next_of(&mut client_ws, "message.created", Duration::from_secs(5))
        .await
        .expect("the recipient hears of it");
    assert_eq!(f["data"]["message_id"], id(&m).as_str());
    assert_eq!(f["case_id"], case.as_str());
    assert!(f["data"].get("body").is_none(), "no body in events");
    assert!(
        next_of(&mut lead_ws, "message.created", Duration::from_secs(5))
            .await
            .is_some(),
        "the sender's other sessions hear of it"
    );
    assert!(
        next_of(&mut para_ws, "message.created", Duration::from_millis(700))
            .await
            .is_none(),
        "a member who is not a recipient hears nothing"
    );

    let path = format!("/api/v1/messages/{}/read", id(&m));
    assert_eq!(
        status_of(&app, Method::POST, &path, &client, None).await,
        StatusCode::NO_CONTENT
    );
    let f = next_of(&mut lead_ws, "message.read", Duration::from_secs(5))
        .await
        .expect("the sender hears of the read");
    assert_eq!(f["data"]["message_ids"], json!([id(&m)]));
    assert_eq!(f["data"]["user_id"], client.id.to_string());
    assert!(
        next_of(&mut para_ws, "message.read", Duration::from_millis(500))
            .await
            .is_none()
    );
    let first = get_ok(&app, &format!("/api/v1/messages/{}", id(&m)), &lead).await;
    let read_at = first["read_by"][0]["read_at"].clone();
    assert_eq!(first["read_by"][0]["user_id"], client.id.to_string());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        status_of(&app, Method::POST, &path, &client, None).await,
        StatusCode::NO_CONTENT
    );
    let again = get_ok(&app, &format!("/api/v1/messages/{}", id(&m)), &lead).await;
    assert_eq!(
        again["read_by"][0]["read_at"], read_at,
        "the first read_at stays"
    );
    assert_eq!(again["read_by"].as_array().unwrap().len(), 1);
    assert!(
        next_of(&mut lead_ws, "message.read", Duration::from_millis(600))
            .await
            .is_none(),
        "a second marking announces nothing"
    );
    let mine = get_ok(&app, &format!("/api/v1/messages/{}", id(&m)), &client).await;
    assert_eq!(mine["read_at"], read_at);
    // The sender marking their own message: accepted, changes nothing.
    assert_eq!(
        status_of(&app, Method::POST, &path, &lead, None).await,
        StatusCode::NO_CONTENT
    );

    // A recipient sees only their own receipt, not who else has read it.
    let both = say(&app, &case, &lead, json!({"body": "For both"})).await;
    let p2 = format!("/api/v1/messages/{}/read", id(&both));
    assert_eq!(
        status_of(&app, Method::POST, &p2, &para, None).await,
        StatusCode::NO_CONTENT
    );
    let as_client = get_ok(&app, &format!("/api/v1/messages/{}", id(&both)), &client).await;
    assert_eq!(as_client["read_by"], json!([]));
    let as_lead = get_ok(&app, &format!("/api/v1/messages/{}", id(&both)), &lead).await;
    assert_eq!(as_lead["read_by"][0]["user_id"], para.id.to_string());
    let actions = audit_actions(&app, &client).await;
    assert!(
        actions
            .iter()
            .any(|(a, r, _)| a == "message.read" && r.as_deref() == Some(&id(&m)))
    );
}

#[tokio::test]
async fn unread_counts_stay_right_under_concurrent_sends() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let lead2 = app.user("attorney").await;
    let client = app.user("client").await;
    let a = new_case(&app, &lead, &[&client], &[]).await;
    let b = new_case(&app, &lead2, &[&client], &[]).await;
    let sends = (0..20).map(|i| {
        let (case, who) = if i % 4 == 0 {
            (&b, &lead2)
        } else {
            (&a, &lead)
        };
        post_message(&app, case, who, json!({"body": format!("update {i}")}))
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let u = unread(&app, &client).await;
    assert_eq!(u["total"], 20);
    assert_eq!(u["by_case"][&a], 15);
    assert_eq!(u["by_case"][&b], 5);
    assert_eq!(
        get_ok(&app, "/api/v1/dashboard", &client).await["unread_messages"],
        20
    );

    let page = get_ok(
        &app,
        &format!("/api/v1/messages?case_id={b}&unread=true&limit=100"),
        &client,
    )
    .await;
    let ids = item_ids(&page);
    assert_eq!(ids.len(), 5);
    let r = send_req(
        &app,
        Method::POST,
        "/api/v1/messages/read",
        &client.access,
        Some(json!({"ids": ids})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let u = unread(&app, &client).await;
    assert_eq!(u["total"], 15);
    assert!(u["by_case"].get(&b).is_none());
    assert!(
        item_ids(
            &get_ok(
                &app,
                &format!("/api/v1/messages?case_id={b}&unread=true"),
                &client
            )
            .await
        )
        .is_empty()
    );
    // Keyset pages walk all 20 without repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/messages?limit=7&cursor={c}"),
            None => "/api/v1/messages?limit=7".into(),
        };
        let p = get_ok(&app, &q, &client).await;
        seen.extend(item_ids(&p));
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 20);
    let s = get_ok(&app, "/api/v1/messages/stats", &client).await;
    assert_eq!(
        (
            s["received"].as_i64(),
            s["unread"].as_i64(),
            s["sent"].as_i64()
        ),
        (Some(20), Some(15), Some(0))
    );
}

#[tokio::test]
async fn search_is_newest_first_or_ranked_and_never_shows_others_messages() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let co_client = app.user("client").await;
    let other_lead = app.user("attorney").await;
    let other_client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client, &co_client], &[]).await;
    let other = new_case(&app, &other_lead, &[&other_client], &[]).await;
    let thrice = say(
        &app,
        &case,
        &lead,
        json!({"body": "Settlement: the settlement terms of the settlement", "recipient_ids": [client.id]}),
    )
    .await;
    let once = say(
        &app,
        &case,
        &lead,
        json!({"body": "The settlement draft is attached to the file for review", "recipient_ids": [client.id]}),
    )
    .await;
    let unrelated = say(
        &app,
        &case,
        &lead,
        json!({"body": "Unrelated scheduling note", "recipient_ids": [client.id]}),
    )
    .await;
    // Same term, not for the client: in the same case to someone else, and in another case.
    say(
        &app,
        &case,
        &lead,
        json!({"body": "settlement for the co-client only", "recipient_ids": [co_client.id]}),
    )
    .await;
    say(
        &app,
        &other,
        &other_lead,
        json!({"body": "settlement settlement settlement settlement"}),
    )
    .await;

    // Newest first, as the box itself; `sort=relevance` puts the best match first.
    let hits = get_ok(&app, "/api/v1/messages?q=settlement", &client).await;
    assert_eq!(
        item_ids(&hits),
        vec![id(&once), id(&thrice)],
        "newest first"
    );
    let ranked = get_ok(
        &app,
        "/api/v1/messages?q=settlement&sort=relevance",
        &client,
    )
    .await;
    assert_eq!(
        item_ids(&ranked),
        vec![id(&thrice), id(&once)],
        "most relevant first"
    );
    for bad in ["sort=oldest", "sort=relevance", "sort=relevance&q=%20"] {
        let r = app
            .get(
                &format!("/api/v1/messages?{bad}"),
                Some(client.access.as_str()),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Whole words on both backends: a prefix is not a match (on SQLite it would make the
    // engine merge every term with that prefix, firm-wide).
    assert!(item_ids(&get_ok(&app, "/api/v1/messages?q=settle", &client).await).is_empty());
    // Paging through ranked results keeps the order, even when other people's messages
    // arrive in between: a score is a function of its message alone. (With FTS5's bm25 the
    // firm-wide term statistics moved every score and the second page came back empty.)
    let p1 = get_ok(
        &app,
        "/api/v1/messages?q=settlement&sort=relevance&limit=1",
        &client,
    )
    .await;
    assert_eq!(item_ids(&p1), vec![id(&thrice)]);
    let c = p1["next_cursor"].as_str().expect("a second page");
    for n in 0..12 {
        say(
            &app,
            &other,
            &other_lead,
            json!({"body": format!("Unrelated filing reminder number {n}")}),
        )
        .await;
    }
    let p2 = get_ok(
        &app,
        &format!("/api/v1/messages?q=settlement&sort=relevance&limit=1&cursor={c}"),
        &client,
    )
    .await;
    assert_eq!(item_ids(&p2), vec![id(&once)]);
    assert!(p2["next_cursor"].is_null());
    // Search syntax in user text never errors and never widens what the caller may see
    // (PostgreSQL reads it as web-search syntax, SQLite as plain words).
    for q in [
        "settlement%20OR%20%22x",
        "-settlement",
        "%22%22%22",
        "settlement%20%7C%20co*",
    ] {
        let r = get_ok(&app, &format!("/api/v1/messages?q={q}"), &client).await;
        for got in item_ids(&r) {
            assert!(
                [id(&once), id(&thrice), id(&unrelated)].contains(&got),
                "{q}: {r}"
            );
        }
    }
    if crate::helpers::backend() == "sqlite" {
        // SQLite's full-text rows share their messages' rowids, which VACUUM keeps (backups
        // realign their copy anyway: tests/api/backup.rs).
        app.sql("VACUUM").await;
        let after = get_ok(&app, "/api/v1/messages?q=settlement", &client).await;
        assert_eq!(item_ids(&after), vec![id(&once), id(&thrice)]);
        // What no write path does, renumbering them by hand, `lawfirm-pro recount` repairs.
        app.sql("UPDATE message SET rowid = rowid + 1000").await;
        let lost = get_ok(&app, "/api/v1/messages?q=settlement", &client).await;
        assert!(item_ids(&lost).is_empty(), "out of step: {lost}");
        let lost = get_ok(
            &app,
            "/api/v1/messages?q=settlement&sort=relevance",
            &client,
        )
        .await;
        assert!(item_ids(&lost).is_empty(), "ranked, out of step: {lost}");
        let r = lawfirm_pro::db::recount::recount(&app.state.db)
            .await
            .unwrap();
        assert!(r.search_rows > 0, "{r:?}");
        let repaired = get_ok(&app, "/api/v1/messages?q=settlement", &client).await;
        assert_eq!(item_ids(&repaired), vec![id(&once), id(&thrice)]);
        let ranked = get_ok(
            &app,
            "/api/v1/messages?q=settlement&sort=relevance",
            &client,
        )
        .await;
        assert_eq!(item_ids(&ranked), vec![id(&thrice), id(&once)]);
        let again = lawfirm_pro::db::recount::recount(&app.state.db)
            .await
            .unwrap();
        assert_eq!(again.search_rows, 0, "in step after the repair");
    }
    // The sender finds their own sent messages, but never the other firm's.
    let sent = get_ok(&app, "/api/v1/messages?box=sent&q=settlement", &lead).await;
    assert_eq!(item_ids(&sent).len(), 3);
    let theirs = get_ok(&app, "/api/v1/messages?q=settlement", &other_client).await;
    assert_eq!(item_ids(&theirs).len(), 1);
}

/// Every page of `path` (ranked or not), 100 at a time.
async fn all_pages(app: &TestApp, path: &str, who: &Login) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit=100&cursor={c}"),
            None => format!("{path}&limit=100"),
        };
        let page = get_ok(app, &url, who).await;
        out.extend(item_ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// `sort=relevance` ranks the newest `RANKED_WINDOW` matches of the box searched, after the
/// box's own filters (the case asked for): each page costs the same however many messages
/// match. The newest-first search still finds every match.
#[tokio::test]
async fn a_ranked_search_ranks_the_newest_matches_of_the_box_searched() {
    use lawfirm_pro::messages::query::RANKED_WINDOW;
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    // Each sender may send 30 messages a minute: the window's worth comes from a team.
    let mut team = Vec::new();
    for _ in 0..RANKED_WINDOW / 25 {
        team.push(app.user("paralegal").await);
    }
    let old = new_case(&app, &lead, &[&client], &[]).await;
    let busy = new_case(&app, &lead, &[&client], &team.iter().collect::<Vec<_>>()).await;
    let to = |body: String| json!({"body": body, "recipient_ids": [client.id]});
    // The best match of all, sent before the window's worth of others.
    let best = id(&say(
        &app,
        &old,
        &lead,
        to("settlement settlement settlement settlement".into()),
    )
    .await);
    let mut window = Vec::new();
    for i in 0..RANKED_WINDOW {
        let body = if i == 0 {
            // The oldest message of the window, and its best match.
            "settlement settlement settlement".to_owned()
        } else {
            format!("Note {i}: the settlement draft and the filing schedule, for review")
        };
        let sender = &team[i as usize % team.len()];
        window.push(id(&say(&app, &busy, sender, to(body)).await));
    }

    let newest_first = all_pages(&app, "/api/v1/messages?q=settlement", &client).await;
    assert_eq!(
        newest_first.len(),
        window.len() + 1,
        "every match, newest first"
    );
    assert_eq!(newest_first.last(), Some(&best));

    let ranked = all_pages(
        &app,
        "/api/v1/messages?q=settlement&sort=relevance",
        &client,
    )
    .await;
    assert_eq!(
        ranked.len(),
        window.len(),
        "the window, each once, across pages"
    );
    assert_eq!(
        ranked.iter().collect::<HashSet<_>>(),
        window.iter().collect::<HashSet<_>>(),
        "the newest matches"
    );
    assert_eq!(ranked[0], window[0], "the window's best match first");
    // Filters narrow the box before the window is taken: the older case's match is ranked.
    let in_old = get_ok(
        &app,
        &format!("/api/v1/messages?q=settlement&sort=relevance&case_id={old}"),
        &client,
    )
    .await;
    assert_eq!(item_ids(&in_old), vec![best]);
}

#[tokio::test]
async fn bulk_actions_are_all_or_nothing_and_bounded() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let other_lead = app.user("attorney").await;
    let other_client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let other = new_case(&app, &other_lead, &[&other_client], &[]).await;
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(id(&say(
            &app,
            &case,
            &lead,
            json!({"body": format!("note {i}")}),
        )
        .await));
    }
    let foreign = id(&say(&app, &other, &other_lead, json!({"body": "not yours"})).await);

    for path in ["/api/v1/messages/read", "/api/v1/messages/bulk-delete"] {
        let mut ids = mine.clone();
        ids.push(foreign.clone());
        let r = send_req(
            &app,
            Method::POST,
            path,
            &client.access,
            Some(json!({"ids": ids})),
        )
        .await;
        problem(r, StatusCode::NOT_FOUND).await;
        let mut ids = mine.clone();
        ids.push(Uuid::new_v4().to_string());
        let r = send_req(
            &app,
            Method::POST,
            path,
            &client.access,
            Some(json!({"ids": ids})),
        )
        .await;
        problem(r, StatusCode::NOT_FOUND).await;
        let many: Vec<String> = (0..501).map(|_| Uuid::new_v4().to_string()).collect();
        let r = send_req(
            &app,
            Method::POST,
            path,
            &client.access,
            Some(json!({"ids": many})),
        )
        .await;
        let b = problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(fields(&b).contains("ids"));
        let r = send_req(
            &app,
            Method::POST,
            path,
            &client.access,
            Some(json!({"ids": []})),
        )
        .await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    // Nothing changed by the refused requests.
    assert_eq!(unread(&app, &client).await["total"], 3);
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages", &client).await).len(),
        3
    );
    // 500 ids is the limit, not beyond: unknown ids still make it a 404 (and not a 422).
    let mut five_hundred: Vec<String> = (0..497).map(|_| Uuid::new_v4().to_string()).collect();
    five_hundred.extend(mine.clone());
    let r = send_req(
        &app,
        Method::POST,
        "/api/v1/messages/read",
        &client.access,
        Some(json!({"ids": five_hundred})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Per-person delete: gone for the client, still there for the lead.
    let r = send_req(
        &app,
        Method::POST,
        "/api/v1/messages/bulk-delete",
        &client.access,
        Some(json!({"ids": &mine[..2]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages", &client).await),
        vec![mine[2].clone()]
    );
    assert_eq!(unread(&app, &client).await["total"], 1);
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            &format!("/api/v1/messages/{}", mine[0]),
            &client,
            None
        )
        .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(
            &app,
            Method::DELETE,
            &format!("/api/v1/messages/{}", mine[0]),
            &client,
            None
        )
        .await,
        StatusCode::NOT_FOUND,
        "already hidden"
    );
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages?box=sent", &lead).await).len(),
        3
    );
    let seen = get_ok(&app, &format!("/api/v1/messages/{}", mine[0]), &lead).await;
    assert_eq!(seen["recipient_ids"], json!([client.id]));
    // The sender hides one of their own: gone from the sent box, still in the client's inbox.
    assert_eq!(
        status_of(
            &app,
            Method::DELETE,
            &format!("/api/v1/messages/{}", mine[2]),
            &lead,
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages?box=sent", &lead).await).len(),
        2
    );
    assert_eq!(
        item_ids(&get_ok(&app, "/api/v1/messages", &client).await),
        vec![mine[2].clone()]
    );
    let actions = audit_actions(&app, &client).await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _, _)| a == "message.delete")
            .count(),
        2
    );
}

#[tokio::test]
async fn offline_recipients_get_one_mail_without_the_body() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let para = app.user("paralegal").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;
    let _para_online = connect(&app, &para).await;
    say(
        &app,
        &case,
        &lead,
        json!({"body": "The confidential zebra figure is 41,000."}),
    )
    .await;
    say(&app, &case, &lead, json!({"body": "And one more thing."})).await;
    let mails = outbox::Entity::find()
        .filter(outbox::Column::Kind.eq("message.created"))
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(
        mails.len(),
        1,
        "one mail, coalesced, and none to the online member: {mails:?}"
    );
    let m = &mails[0];
    assert_eq!(m.to_user_id, Some(client.id));
    assert_eq!(m.to_address, client.email);
    let number = get_ok(&app, &format!("/api/v1/cases/{case}"), &lead).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    for text in [&m.subject, &m.body_text] {
        assert!(
            !text.contains("zebra") && !text.contains("41,000"),
            "{text}"
        );
        assert!(!text.contains("Secret Matter Title"), "{text}");
    }
    assert!(m.subject.contains(&number));
    assert!(
        m.body_text.contains(crate::helpers::ORIGIN),
        "{}",
        m.body_text
    );
}

#[tokio::test]
async fn sending_is_rate_limited_per_person() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    for i in 0..30 {
        say(&app, &case, &lead, json!({"body": format!("n{i}")})).await;
    }
    let r = post_message(&app, &case, &lead, json!({"body": "one too many"})).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    problem(r, StatusCode::TOO_MANY_REQUESTS).await;
    // Someone else is not held back.
    say(&app, &case, &client, json!({"body": "I can still write"})).await;
    assert_eq!(unread(&app, &client).await["total"], 30);
}

#[tokio::test]
async fn replies_form_threads_within_one_case() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let para = app.user("paralegal").await;
    let case = new_case(&app, &lead, &[&client], &[&para]).await;
    let other = new_case(&app, &lead, &[&client], &[]).await;
    let root = say(&app, &case, &lead, json!({"body": "Question for you"})).await;
    let reply = say(
        &app,
        &case,
        &client,
        json!({"body": "Answer", "parent_id": id(&root), "recipient_ids": [lead.id]}),
    )
    .await;
    assert_eq!(reply["parent_id"], id(&root).as_str());
    let again = say(
        &app,
        &case,
        &lead,
        json!({"body": "Follow-up", "parent_id": id(&reply), "recipient_ids": [client.id]}),
    )
    .await;

    let r = get_ok(&app, &format!("/api/v1/messages/{}", id(&root)), &lead).await;
    assert_eq!(r["reply_count"], 1);
    let thread = get_ok(
        &app,
        &format!("/api/v1/cases/{case}/messages?thread={}", id(&root)),
        &lead,
    )
    .await;
    assert_eq!(item_ids(&thread), vec![id(&reply)]);
    let thread = get_ok(
        &app,
        &format!("/api/v1/cases/{case}/messages?thread={}", id(&reply)),
        &client,
    )
    .await;
    assert_eq!(item_ids(&thread), vec![id(&again)]);
    // The paralegal sees the root but not the replies, and counts only what they can see.
    let r = get_ok(&app, &format!("/api/v1/messages/{}", id(&root)), &para).await;
    assert_eq!(r["reply_count"], 0);
    assert!(
        item_ids(
            &get_ok(
                &app,
                &format!("/api/v1/cases/{case}/messages?thread={}", id(&root)),
                &para
            )
            .await
        )
        .is_empty()
    );
    // A parent from another case, or one the sender cannot see, is refused.
    for (c, who, parent) in [(&other, &lead, id(&root)), (&case, &para, id(&reply))] {
        let b = problem(
            post_message(&app, c, who, json!({"body": "x", "parent_id": parent})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(fields(&b).contains("parent_id"), "{b}");
    }
}

#[tokio::test]
async fn stats_measure_the_firms_first_response_to_clients() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[]).await;
    let q = say(
        &app,
        &case,
        &client,
        json!({"body": "When is the hearing?"}),
    )
    .await;
    let a = say(&app, &case, &lead, json!({"body": "Next Tuesday."})).await;
    // Time travel: the question was asked two hours before the answer.
    let backend = app.state.db.backend();
    let qid: Uuid = id(&q).parse().unwrap();
    let answered: chrono::DateTime<chrono::Utc> =
        a["created_at"].as_str().unwrap().parse().unwrap();
    sea_orm::ConnectionTrait::execute_raw(
        app.state.db.conn(),
        sea_orm::Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => "UPDATE message SET created_at = $1 WHERE id = $2",
                _ => "UPDATE message SET created_at = ? WHERE id = ?",
            },
            [(answered - chrono::Duration::hours(2)).into(), qid.into()],
        ),
    )
    .await
    .unwrap();
    for who in [&lead, &client] {
        let s = get_ok(&app, "/api/v1/messages/stats", who).await;
        let med = s["median_response_seconds"].as_f64().unwrap();
        assert!((med - 7200.0).abs() < 1.0, "{s}");
        assert_eq!(s["response_by_case"][&case]["samples"], 1);
    }
    let s = get_ok(&app, "/api/v1/messages/stats", &lead).await;
    assert_eq!(
        (
            s["sent"].as_i64(),
            s["received"].as_i64(),
            s["unread"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let outsider = app.user("attorney").await;
    let s = get_ok(&app, "/api/v1/messages/stats", &outsider).await;
    assert!(s["median_response_seconds"].is_null());
    assert_eq!(s["response_by_case"], json!({}));
}

#[tokio::test]
async fn openapi_describes_every_message_endpoint() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/api/v1/cases/{id}/messages", &["get", "post"][..]),
        ("/api/v1/messages", &["get"][..]),
        ("/api/v1/messages/{id}", &["get", "delete"][..]),
        ("/api/v1/messages/{id}/read", &["post"][..]),
        ("/api/v1/messages/read", &["post"][..]),
        ("/api/v1/messages/bulk-delete", &["post"][..]),
        ("/api/v1/messages/unread-count", &["get"][..]),
        ("/api/v1/messages/stats", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[p].get(*m).is_some(), "missing {m} {p}");
        }
    }
    let params: Vec<&str> = paths["/api/v1/messages"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in ["box", "unread", "case_id", "q", "limit", "cursor"] {
        assert!(params.contains(&want), "{params:?}");
    }
}

/// Attachments: documents of the same case that every recipient may see; nothing else.
#[tokio::test]
async fn attachments_must_be_visible_to_every_recipient() {
    let app = spawn_app().await;
    let lead = app.user("attorney").await;
    let paralegal = app.user("paralegal").await;
    let client = app.user("client").await;
    let case = new_case(&app, &lead, &[&client], &[&paralegal]).await;
    let other_case = new_case(&app, &lead, &[&client], &[]).await;
    let upload = |case: String, conf: &'static str| {
        let (app, token) = (&app, lead.access.clone());
        async move {
            let form = reqwest::multipart::Form::new()
                .text("confidentiality", conf)
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(b"%PDF-1.7\n%%EOF\n".to_vec())
                        .file_name("brief.pdf"),
                );
            let r = app
                .post_multipart(&format!("/api/v1/cases/{case}/documents"), &token, form)
                .await;
            id(&expect(r, StatusCode::CREATED, "upload").await)
        }
    };
    let shared = upload(case.clone(), "shared").await;
    let internal = upload(case.clone(), "internal").await;
    let elsewhere = upload(other_case.clone(), "shared").await;

    // A shared document goes to everyone, client included.
    let m = say(
        &app,
        &case,
        &lead,
        json!({"body": "The brief", "attachment_ids": [shared]}),
    )
    .await;
    assert_eq!(m["attachment_ids"], json!([shared]));
    let seen = get_ok(&app, &format!("/api/v1/messages/{}", id(&m)), &client).await;
    assert_eq!(seen["attachment_ids"], json!([shared]));

    // An internal document may go to staff only; with the client among the recipients (the
    // default) it is refused, as is a document of another case.
    for body in [
        json!({"body": "Notes", "attachment_ids": [internal]}),
        json!({"body": "Notes", "attachment_ids": [shared, elsewhere]}),
    ] {
        let b = problem(
            post_message(&app, &case, &lead, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(fields(&b).contains("attachment_ids"), "{b}");
    }
    let m = say(
        &app,
        &case,
        &lead,
        json!({"body": "Notes", "recipient_ids": [paralegal.id], "attachment_ids": [internal]}),
    )
    .await;
    assert_eq!(m["attachment_ids"], json!([internal]));

    // The paralegal demoted to client (still on the case as paralegal) is a client now: an
    // internal document no longer goes to them.
    let admin = app.user("admin").await;
    let r = app
        .patch(
            &format!("/api/v1/users/{}", paralegal.id),
            Some(&admin.access),
            json!({"role": "client"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let b = problem(
        post_message(
            &app,
            &case,
            &lead,
            json!({"body": "More notes", "recipient_ids": [paralegal.id], "attachment_ids": [internal]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(fields(&b).contains("attachment_ids"), "{b}");
}
