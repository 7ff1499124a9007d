//! One WebSocket connection: keepalive, client frames (resume, subscribe), delivery from the
//! hub, and closing on revocation, slow consumption or shutdown. Written against any
//! `Sink`/`Stream` of messages so the logic is testable without a network.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::{
    Named, entity,
    hub::{Push, frame_json, may_see},
};
use crate::{AppState, audit::NewEntry, cases::access, users::domain::Role};

pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Client frames a connection may send: a sustained rate per second and a burst. A client
/// over it is cut off with 1008 (each frame may cost a database query); frames over the
/// size limit (`routes`) end the connection with 1009.
pub const CLIENT_FRAMES_PER_SEC: u32 = 10;
pub const CLIENT_FRAME_BURST: u32 = 50;

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    Resume { after: i64 },
    Subscribe { case_id: Uuid },
    Unsubscribe { case_id: Uuid },
    Ping,
}

pub struct Connection {
    pub state: AppState,
    pub user_id: Uuid,
    pub role: Role,
    pub session_id: Option<Uuid>,
    pub rx: mpsc::Receiver<Push>,
    pub cases: Arc<Mutex<Option<HashSet<Uuid>>>>,
    pub shutdown: watch::Receiver<bool>,
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Drive one connection until either side ends it.
pub async fn run<S, R, E>(mut sink: S, mut stream: R, mut c: Connection)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut last_sent: i64 = 0;
    let mut last_seen = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let flood = governor::RateLimiter::direct(
        governor::Quota::per_second(
            std::num::NonZeroU32::new(CLIENT_FRAMES_PER_SEC).expect("non-zero rate"),
        )
        .allow_burst(std::num::NonZeroU32::new(CLIENT_FRAME_BURST).expect("non-zero burst")),
    );
    let current = super::hub::latest_id(&c.state.db).await.unwrap_or(0);
    if sink
        .send(text(
            serde_json::json!({"type": "ready", "last_event_id": current}),
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            // `wait_for`, not `changed`: a socket upgraded during the drain subscribed after
            // the flip, and `changed` would never fire for it.
            _ = async { c.shutdown.wait_for(|s| *s).await.map(|_| ()) } => {
                let _ = sink.send(close(1001, "server shutting down")).await;
                break;
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > IDLE_TIMEOUT {
                    let _ = sink.send(close(1000, "idle")).await;
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            push = c.rx.recv() => match push {
                Some(Push::Event(frame)) => {
                    if frame.id > last_sent {
                        last_sent = frame.id;
                        if sink.send(Message::Text(frame.json.clone().into())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Push::Recheck) => {
                    if !session_alive(&c).await {
                        let _ = sink.send(close(4001, "session ended")).await;
                        break;
                    }
                }
                None => {
                    // The hub dropped us: we fell too far behind.
                    let _ = sink.send(close(1008, "too slow; reconnect and resume")).await;
                    break;
                }
            },
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                last_seen = tokio::time::Instant::now();
                if flood.check().is_err() {
                    let _ = sink.send(close(1008, "too many messages")).await;
                    break;
                }
                let reply = match msg {
                    Message::Text(t) => handle_frame(&c, t.as_str(), &mut last_sent).await,
                    Message::Binary(_) => vec![text(serde_json::json!({"type": "error", "message": "binary frames are not supported"}))],
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => Vec::new(),
                };
                let mut failed = false;
                for m in reply {
                    if sink.send(m).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}

async fn session_alive(c: &Connection) -> bool {
    let Some(sid) = c.session_id else { return true };
    match crate::auth::service::find_session(&c.state.db, sid).await {
        Ok(Some(s)) => s.revoked_at.is_none() && s.expires_at > crate::db::now(),
        Ok(None) => false,
        Err(_) => true,
    }
}

async fn handle_frame(c: &Connection, raw: &str, last_sent: &mut i64) -> Vec<Message> {
    let err = |m: &str| vec![text(serde_json::json!({"type": "error", "message": m}))];
    let frame: ClientFrame = match serde_json::from_str(raw) {
        Ok(f) => f,
        Err(_) => {
            return err("expected {\"type\":\"resume\"|\"subscribe\"|\"unsubscribe\"|\"ping\", …}");
        }
    };
    match frame {
        ClientFrame::Ping => vec![text(serde_json::json!({"type": "pong"}))],
        ClientFrame::Subscribe { case_id } => {
            let member = matches!(
                access::membership(c.state.db.conn(), case_id, c.user_id).await,
                Ok(Some(_))
            );
            if !member && c.role != Role::Admin {
                return err("case not found");
            }
            if !member {
                // An admin following a case they are not on is admin access, audited as such.
                let entry = NewEntry::new("case.live_subscribe", "case")
                    .actor(Some(c.user_id))
                    .resource(case_id)
                    .case(case_id)
                    .details(serde_json::json!({"admin_access": true}));
                if let Err(e) = c.state.audit.record(entry).await {
                    tracing::error!(error = %e, "could not audit an admin's live subscription");
                    return err("could not subscribe; try again");
                }
            }
            c.cases
                .lock()
                .expect("subscriptions lock")
                .get_or_insert_with(HashSet::new)
                .insert(case_id);
            vec![text(
                serde_json::json!({"type": "subscribed", "case_id": case_id}),
            )]
        }
        ClientFrame::Unsubscribe { case_id } => {
            let mut cases = c.cases.lock().expect("subscriptions lock");
            if let Some(set) = cases.as_mut() {
                set.remove(&case_id);
                if set.is_empty() {
                    *cases = None;
                }
            }
            vec![text(
                serde_json::json!({"type": "unsubscribed", "case_id": case_id}),
            )]
        }
        ClientFrame::Resume { after } => match replay(c, after).await {
            Ok(Some(frames)) => {
                let mut out = Vec::with_capacity(frames.len());
                for (id, json) in frames {
                    if id > *last_sent {
                        *last_sent = id;
                        out.push(Message::Text(json.into()));
                    }
                }
                out
            }
            Ok(None) => vec![text(
                serde_json::json!({"type": "resync", "reason": "too many missed events; reload"}),
            )],
            Err(_) => err("could not replay events; reload"),
        },
    }
}

/// Events after `after` that this user may see, in id order; `None` when more than the
/// window was missed (the client must reload instead).
pub async fn replay(
    c: &Connection,
    after: i64,
) -> crate::error::Result<Option<Vec<(i64, String)>>> {
    let window = c.state.hub.replay_window;
    let rows = entity::Entity::find()
        .filter(entity::Column::Id.gt(after))
        .order_by_asc(entity::Column::Id)
        .limit(window + 1)
        .all(c.state.db.conn())
        .await?;
    if rows.len() as u64 > window {
        return Ok(None);
    }
    let memberships = access::memberships_of(c.state.db.conn(), c.user_id).await?;
    let narrowed = c.cases.lock().expect("subscriptions lock").clone();
    Ok(Some(
        rows.iter()
            .filter(|e| {
                let on_case = e.case_id.and_then(|k| memberships.get(&k).copied());
                may_see(
                    e,
                    &Named::of(e),
                    c.user_id,
                    c.role,
                    on_case,
                    narrowed.as_ref(),
                )
            })
            .map(|e| (e.id, frame_json(e)))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc as chan;

    use super::*;

    async fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::Config::defaults();
        config.data_dir = dir.path().into();
        config.database_url = format!("sqlite://{}/t.db", dir.path().display()).into();
        config.insecure_fast_password_hashing = true;
        (AppState::init(config).await.unwrap(), dir)
    }

    fn text_of(m: Message) -> serde_json::Value {
        match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => serde_json::json!({"closed": f.map(|f| f.code)}),
            other => panic!("unexpected {other:?}"),
        }
    }

    type Input = chan::UnboundedSender<Result<Message, std::convert::Infallible>>;

    /// A new client's connection over plain channels: its id, its task, what it sends and
    /// where to write what it receives.
    fn open(
        state: &AppState,
    ) -> (
        Uuid,
        tokio::task::JoinHandle<()>,
        chan::UnboundedReceiver<Message>,
        Input,
    ) {
        let user = Uuid::new_v4();
        let (_id, rx, cases) = state.hub.register(user, Role::Client, None).unwrap();
        let (out_tx, out) = chan::unbounded::<Message>();
        let (input, in_rx) = chan::unbounded();
        let conn = Connection {
            state: state.clone(),
            user_id: user,
            role: Role::Client,
            session_id: None,
            rx,
            cases,
            shutdown: state.shutdown.subscribe(),
        };
        (user, tokio::spawn(run(out_tx, in_rx, conn)), out, input)
    }

    /// The connection logic over plain channels: no socket, no HTTP.
    #[tokio::test]
    async fn frames_flow_through_any_sink_and_stream() {
        let (state, _dir) = state().await;
        let (user, task, mut out, input) = open(&state);
        assert_eq!(text_of(out.next().await.unwrap())["type"], "ready");

        input
            .unbounded_send(Ok(Message::Text("{\"type\":\"ping\"}".into())))
            .unwrap();
        assert_eq!(text_of(out.next().await.unwrap())["type"], "pong");
        input
            .unbounded_send(Ok(Message::Text("nonsense".into())))
            .unwrap();
        assert_eq!(text_of(out.next().await.unwrap())["type"], "error");

        let event = entity::Model {
            id: 7,
            kind: "notification".into(),
            case_id: None,
            audience: "users".into(),
            user_ids: Some(serde_json::to_string(&[user]).unwrap()),
            data: "{\"hello\":1}".into(),
            created_at: crate::db::now(),
        };
        state.hub.dispatch(&state.db, &event).await.unwrap();
        // A second delivery of the same id (e.g. replay overlapping live) is not sent twice.
        state.hub.dispatch(&state.db, &event).await.unwrap();
        let f = text_of(out.next().await.unwrap());
        assert_eq!(
            (
                f["id"].as_i64(),
                f["type"].as_str(),
                f["data"]["hello"].as_i64()
            ),
            (Some(7), Some("notification"), Some(1))
        );
        // An event for someone else never arrives.
        let other = entity::Model {
            id: 8,
            user_ids: Some(serde_json::to_string(&[Uuid::new_v4()]).unwrap()),
            ..event
        };
        state.hub.dispatch(&state.db, &other).await.unwrap();

        state.shutdown.send(true).unwrap();
        assert_eq!(text_of(out.next().await.unwrap())["closed"], 1001);
        task.await.unwrap();
    }

    /// A socket that opens while the server drains (it subscribed after the flip) is told to
    /// go at once, not left open until its idle timeout.
    #[tokio::test]
    async fn a_socket_opened_during_shutdown_closes_at_once() {
        let (state, _dir) = state().await;
        // No receiver yet, so `send` would refuse; the value is set all the same.
        state.shutdown.send_replace(true);
        let (_user, task, mut out, _input) = open(&state);
        assert_eq!(text_of(out.next().await.unwrap())["type"], "ready");
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), out.next())
            .await
            .expect("closed within 5 s, not at the idle timeout")
            .unwrap();
        assert_eq!(text_of(closed)["closed"], 1001);
        task.await.unwrap();
    }
}
