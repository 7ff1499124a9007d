//! The hub: which sockets are open on this instance, and the dispatcher that turns committed
//! event rows into frames for exactly the users who may see them (current membership).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Named, entity};
use crate::{cases::domain::MemberRole, db::Db, users::domain::Role};

/// What a connection receives from the hub.
#[derive(Clone, Debug)]
pub enum Push {
    Event(Arc<Frame>),
    /// The session behind this socket may have been revoked: re-check it.
    Recheck,
}

/// A server frame, serialised once and shared by every recipient.
#[derive(Debug)]
pub struct Frame {
    pub id: i64,
    pub json: String,
}

pub struct Conn {
    pub id: u64,
    pub user_id: Uuid,
    pub role: Role,
    pub ip: Option<String>,
    pub tx: mpsc::Sender<Push>,
    /// `None`: everything the user may see; `Some(set)`: only these cases (narrowing).
    pub cases: Arc<Mutex<Option<HashSet<Uuid>>>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    by_user: HashMap<Uuid, Vec<Conn>>,
}

/// Per-instance connection registry plus the dispatcher task that feeds it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Registry>>,
    pub max_per_user: usize,
    pub max_per_ip: usize,
    pub replay_window: u64,
}

pub const QUEUE: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    TooManyForUser,
    TooManyForIp,
}

impl Hub {
    pub fn new(max_per_user: usize, max_per_ip: usize, replay_window: u64) -> Self {
        Self {
            inner: Arc::default(),
            max_per_user,
            max_per_ip,
            replay_window,
        }
    }

    #[allow(clippy::type_complexity)]
    pub fn register(
        &self,
        user_id: Uuid,
        role: Role,
        ip: Option<String>,
    ) -> Result<(u64, mpsc::Receiver<Push>, Arc<Mutex<Option<HashSet<Uuid>>>>), Refused> {
        let mut r = self.inner.lock().expect("hub lock");
        if r.by_user.get(&user_id).map_or(0, Vec::len) >= self.max_per_user {
            return Err(Refused::TooManyForUser);
        }
        if ip.is_some()
            && r.by_user.values().flatten().filter(|c| c.ip == ip).count() >= self.max_per_ip
        {
            return Err(Refused::TooManyForIp);
        }
        r.next_id += 1;
        let id = r.next_id;
        let (tx, rx) = mpsc::channel(QUEUE);
        let cases = Arc::new(Mutex::new(None));
        r.by_user.entry(user_id).or_default().push(Conn {
            id,
            user_id,
            role,
            ip,
            tx,
            cases: cases.clone(),
        });
        Ok((id, rx, cases))
    }

    pub fn unregister(&self, user_id: Uuid, id: u64) {
        let mut r = self.inner.lock().expect("hub lock");
        if let Some(v) = r.by_user.get_mut(&user_id) {
            v.retain(|c| c.id != id);
            if v.is_empty() {
                r.by_user.remove(&user_id);
            }
        }
    }

    pub fn connection_count(&self) -> usize {
        self.inner
            .lock()
            .expect("hub lock")
            .by_user
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Hand a push to the given users' sockets. A socket whose queue is full is a slow
    /// consumer: it is dropped from the hub (its task then closes it) instead of buffering.
    fn push_to(&self, allowed: impl Fn(&Conn) -> bool, push: Push) {
        let mut r = self.inner.lock().expect("hub lock");
        for conns in r.by_user.values_mut() {
            conns.retain(|c| {
                if !allowed(c) {
                    return true;
                }
                match c.tx.try_send(push.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(user = %c.user_id, "slow WebSocket consumer disconnected");
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        r.by_user.retain(|_, v| !v.is_empty());
    }

    /// Whether the user has an open socket on this instance (other instances are not known).
    pub fn is_connected(&self, user_id: Uuid) -> bool {
        self.inner
            .lock()
            .expect("hub lock")
            .by_user
            .contains_key(&user_id)
    }

    fn connected_users(&self) -> HashSet<Uuid> {
        self.inner
            .lock()
            .expect("hub lock")
            .by_user
            .keys()
            .copied()
            .collect()
    }

    /// Deliver one committed event row to everyone on this instance who may see it now.
    pub async fn dispatch(&self, db: &Db, e: &entity::Model) -> Result<(), sea_orm::DbErr> {
        if e.kind == "session.revoked" {
            let named = Named::of(e);
            self.push_to(|c| named.ids().contains(&c.user_id), Push::Recheck);
            return Ok(());
        }
        let online = self.connected_users();
        if online.is_empty() {
            return Ok(());
        }
        let frame = Arc::new(Frame {
            id: e.id,
            json: frame_json(e),
        });
        let named = Named::of(e);
        let members_needed = match e.audience.as_str() {
            "users" => {
                if named.ids().iter().all(|u| !online.contains(u)) {
                    return Ok(());
                }
                named.needs_membership()
            }
            "case" | "case_staff" => true,
            // An audience this version does not know (a later version's) reaches nobody.
            _ => return Ok(()),
        };
        let on_case: HashMap<Uuid, MemberRole> = match e.case_id {
            Some(case_id) if members_needed => crate::cases::access::members_of(db.conn(), case_id)
                .await
                .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
                .into_iter()
                .collect(),
            _ => HashMap::new(),
        };
        self.push_to(
            |c| {
                let following = c.cases.lock().expect("subscriptions lock");
                may_see(
                    e,
                    &named,
                    c.user_id,
                    c.role,
                    on_case.get(&c.user_id).copied(),
                    following.as_ref(),
                )
            },
            Push::Event(frame),
        );
        Ok(())
    }
}

/// Whether `user` (firm role `role`, `on_case` their role on the event's case now) may get the
/// event `e`, live or in a replay: the one rule for both. `named`: the row's named audience
/// ([`Named::of`], read once per event); `following`: the socket's narrowing to some cases
/// (`None`: every case of theirs). Admins who are not members get a case's events only by
/// subscribing to it; session revocations are never forwarded.
pub(crate) fn may_see(
    e: &entity::Model,
    named: &Named,
    user: Uuid,
    role: Role,
    on_case: Option<MemberRole>,
    following: Option<&HashSet<Uuid>>,
) -> bool {
    if e.kind == "session.revoked" {
        return false;
    }
    let followed = match (following, e.case_id) {
        (Some(set), Some(case)) => set.contains(&case),
        _ => true,
    };
    match (e.audience.as_str(), e.case_id) {
        ("users", _) => followed && named.admits(user, role, on_case),
        (aud @ ("case" | "case_staff"), Some(case)) => {
            let member = on_case.is_some_and(|r| aud != "case_staff" || staff_on_case(role, r));
            let admin = role == Role::Admin && following.is_some_and(|s| s.contains(&case));
            (member && followed) || admin
        }
        // An audience this version does not know (a later version's) reaches nobody.
        _ => false,
    }
}

/// Staff on the case *and* in the firm, as `CaseAccess::is_staff` decides for HTTP: an account
/// demoted to client keeps its case row until someone removes it, and must not keep the staff's
/// events. (A change of firm role revokes the sessions, which closes the socket; the next one
/// carries the new role.)
pub(crate) fn staff_on_case(firm: Role, on_case: MemberRole) -> bool {
    firm.is_staff() && on_case.is_staff()
}

/// `{"id","type","case_id","at","data"}` — the wire form of an event.
pub fn frame_json(e: &entity::Model) -> String {
    serde_json::json!({
        "id": e.id,
        "type": e.kind,
        "case_id": e.case_id,
        "at": e.created_at,
        "data": serde_json::from_str::<serde_json::Value>(&e.data).unwrap_or_default(),
    })
    .to_string()
}

/// Run the dispatcher for this instance until `stop` turns true: PostgreSQL LISTEN/NOTIFY
/// (ids from any instance) or, on SQLite, a wake-up after each local commit followed by
/// reading new rows in id order.
pub fn spawn_dispatcher(
    hub: Hub,
    db: Db,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let run = async {
            if let Some(pool) = db.pg_pool().cloned() {
                pg_loop(hub, db, pool).await;
            } else {
                sqlite_loop(hub, db).await;
            }
        };
        // Both loops only end here; a stopped server must not keep polling or listening.
        tokio::select! {
            _ = run => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    })
}

async fn dispatch_rows(hub: &Hub, db: &Db, rows: Vec<entity::Model>) {
    for e in rows {
        if let Err(err) = hub.dispatch(db, &e).await {
            tracing::warn!(error = %err, event = e.id, "event dispatch failed");
        }
    }
}

async fn sqlite_loop(hub: Hub, db: Db) {
    let notify = db.committed();
    let mut cursor = latest_id(&db).await.unwrap_or(0);
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match entity::Entity::find()
            .filter(entity::Column::Id.gt(cursor))
            .order_by_asc(entity::Column::Id)
            .limit(500)
            .all(db.conn())
            .await
        {
            Ok(rows) if !rows.is_empty() => {
                cursor = rows.last().map(|r| r.id).unwrap_or(cursor);
                let more = rows.len() == 500;
                dispatch_rows(&hub, &db, rows).await;
                if more {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading events failed"),
        }
        // The timeout is a safety net for writes made by another process (e.g. the CLI).
        let _ = tokio::time::timeout(Duration::from_secs(2), woken).await;
    }
}

pub async fn latest_id(db: &Db) -> Result<i64, sea_orm::DbErr> {
    let row: Option<i64> = entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .order_by_desc(entity::Column::Id)
        .limit(1)
        .into_tuple()
        .one(db.conn())
        .await?;
    Ok(row.unwrap_or(0))
}

pub const PG_CHANNEL: &str = "lfp_events";

async fn pg_loop(hub: Hub, db: Db, pool: sea_orm::sqlx::PgPool) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event listener cannot connect; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen(PG_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        loop {
            match listener.recv().await {
                Ok(n) => {
                    let mut ids: Vec<i64> = n.payload().parse().into_iter().collect();
                    // Drain what else is already waiting, to read the rows in one query.
                    while ids.len() < 500 {
                        match listener.next_buffered() {
                            Some(n) => ids.extend(n.payload().parse::<i64>()),
                            None => break,
                        }
                    }
                    match entity::Entity::find()
                        .filter(entity::Column::Id.is_in(ids))
                        .order_by_asc(entity::Column::Id)
                        .all(db.conn())
                        .await
                    {
                        Ok(rows) => dispatch_rows(&hub, &db, rows).await,
                        Err(e) => tracing::warn!(error = %e, "reading notified events failed"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}
