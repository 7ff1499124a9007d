//! The tamper-evident audit trail: an append-only, hash-chained log of who did what.
//!
//! Changes append their entry inside their own transaction ([`service::append_in`]), so
//! neither exists without the other. Events that change nothing (a login failure, a
//! read of client data, a denial) go through the [`AuditWriter`] task, which commits them
//! in batches under one head lock; the caller waits for its batch, so nothing is lost. On
//! SQLite those batches go to the [`spool`] first and reach the chain a moment later (ADR 0008).

pub mod entity;
pub mod routes;
pub mod service;
pub mod spool;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{auth::Principal, db::Db, http::extract::RequestMeta};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An entry before it is chained.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewEntry {
    /// When it happened; `None` means when it is chained. Set for entries that wait in the
    /// spool (ADR 0008), so they keep their own time.
    #[serde(default)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub case_id: Option<Uuid>,
    pub outcome: Outcome,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
}

impl NewEntry {
    /// `action` is `resource.verb`, e.g. `user.update`.
    pub fn new(action: &str, resource_type: &str) -> Self {
        Self {
            at: None,
            actor_id: None,
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: None,
            case_id: None,
            outcome: Outcome::Success,
            ip: None,
            user_agent: None,
            details: serde_json::json!({}),
        }
    }
    pub fn by(mut self, p: &Principal) -> Self {
        self.actor_id = p.actor_id();
        self.meta(&p.meta)
    }
    pub fn meta(mut self, m: &RequestMeta) -> Self {
        self.ip = m.ip.clone();
        self.user_agent = m.user_agent.clone();
        self
    }
    pub fn actor(mut self, id: Option<Uuid>) -> Self {
        self.actor_id = id;
        self
    }
    pub fn resource(mut self, id: impl ToString) -> Self {
        self.resource_id = Some(id.to_string());
        self
    }
    pub fn case(mut self, id: Uuid) -> Self {
        self.case_id = Some(id);
        self
    }
    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }
    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = d;
        self
    }
}

type Reply = oneshot::Sender<Result<(), String>>;

/// What the writer task is asked to do; one batch serves every message it finds waiting.
enum Msg {
    /// Append these entries; the reply comes once they are committed.
    Append(Vec<NewEntry>, Reply),
    /// Reply once everything sent before is committed and on disk (a clean stop).
    Flush(Reply),
}

/// Handle to the batching audit writer task. Cheap to clone.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    /// SQLite: where the writer's entries wait for the chain, and the database they go to.
    spool: Option<(Arc<spool::Spool>, Db)>,
}

const MAX_BATCH: usize = 256;

/// How long a clean stop waits for the last WAL sync before it gives up and says so.
const SHUTDOWN_SYNC_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The chain head the writer's last append left, and [`Db::commits`] when it last read it:
/// while no other transaction of this process has committed since, it is most likely still
/// the head (each append checks).
#[derive(Default)]
struct KnownHead {
    head: Option<service::Head>,
    commits: u64,
}

impl KnownHead {
    /// One batch. When the head is known, one statement per [`service::insert_sizes`] part
    /// (1 to 256 entries each), each checked against the stored head and moving it
    /// ([`service::append_at_head`]); otherwise, or from the first part refused, a transaction
    /// that reads and locks the head first.
    async fn append(&mut self, db: &Db, mut entries: Vec<NewEntry>) -> Result<(), sea_orm::DbErr> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(mut head) = self.head.take() {
            // SQLite: the writer slot keeps other transactions out between the check and the
            // insert. PostgreSQL has none; there the statement's own check decides.
            let slot = db.writer_slot().await;
            if db.commits() == self.commits {
                while let Some(size) = service::insert_sizes(entries.len()).next() {
                    let rest = entries.split_off(size);
                    let part = &entries;
                    let append = db.lazily(async |conn| {
                        service::append_at_head(conn, &head, part.clone()).await
                    });
                    match append.await {
                        Ok(next) => {
                            head = next;
                            entries = rest;
                        }
                        // Most likely someone appended outside this process's transactions (a
                        // command-line tool, another instance): nothing of this part was
                        // written; read the head again below.
                        Err(e) => {
                            tracing::debug!(error = %e, "one-statement audit append refused");
                            entries.extend(rest);
                            break;
                        }
                    }
                }
                if entries.is_empty() {
                    self.head = Some(head);
                    return Ok(());
                }
            }
            drop(slot);
        }
        let txn = db.begin_lazy_write().await?;
        let next = service::append_in(&*txn, entries).await?;
        txn.commit().await?;
        // Another transaction may have committed between ours and this count; then the next
        // batch reads the head again, at the cost of one refused statement at worst.
        self.head = next;
        self.commits = db.commits();
        Ok(())
    }
}

impl AuditWriter {
    /// Start the writer. With a `spool` (SQLite), entries are acknowledged once they are in
    /// the spool and a mover task of its own chains them after [`spool::MOVE_DELAY`]: on the
    /// writer's task the moves would hold up every read behind them.
    pub fn spawn(
        db: Db,
        spool: Option<Arc<spool::Spool>>,
        timings: crate::http::metrics::AuditTimings,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(4096);
        let mover = spool
            .clone()
            .map(|s| spawn_mover(s, db.clone(), timings.moved.clone()));
        let handle = Self {
            tx,
            spool: spool.clone().map(|s| (s, db.clone())),
        };
        tokio::spawn(async move {
            let mut known = KnownHead::default();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                let mut entries = Vec::new();
                let mut flush = false;
                let replies: Vec<Reply> = batch
                    .into_iter()
                    .map(|m| match m {
                        Msg::Append(e, reply) => {
                            entries.extend(e);
                            reply
                        }
                        Msg::Flush(reply) => {
                            flush = true;
                            reply
                        }
                    })
                    .collect();
                let appended = !entries.is_empty();
                let started = std::time::Instant::now();
                let mut result = match &spool {
                    Some(s) => s.append(entries).await,
                    None => known.append(&db, entries).await.map_err(Into::into),
                }
                .map_err(|e| {
                    tracing::error!(error = %e, "audit batch failed");
                    e.to_string()
                });
                // Commits only: a failed batch's time says nothing about how long one takes.
                if appended && result.is_ok() {
                    timings.append.observe(started.elapsed().as_secs_f64());
                }
                if flush {
                    result = result.and(settle_and_sync(&db, spool.as_deref()).await);
                }
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
                if let (Some(mover), true) = (&mover, appended) {
                    // Full means a move is already due, and it will take these too.
                    let _ = mover.try_send(());
                }
            }
        });
        handle
    }

    /// Append entries and wait until they are committed.
    pub async fn record_all(&self, entries: Vec<NewEntry>) -> crate::error::Result<()> {
        self.ask(|reply| Msg::Append(entries, reply)).await
    }

    /// Send one message and wait for the batch that serves it.
    async fn ask(&self, msg: impl FnOnce(Reply) -> Msg) -> crate::error::Result<()> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(msg(reply))
            .await
            .map_err(|_| anyhow::anyhow!("audit writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("audit writer stopped"))?
            .map_err(|e| anyhow::anyhow!("audit append failed: {e}").into())
    }

    pub async fn record(&self, entry: NewEntry) -> crate::error::Result<()> {
        self.record_all(vec![entry]).await
    }

    /// An authorised read: `entry` commits while `read` runs, and the answer comes back only
    /// when both are done, so nothing leaves unaudited and the caller does not wait twice.
    /// If the read fails, the entry (already queued) is usually committed all the same: the
    /// trail may show an authorised read whose answer was an error, never the reverse.
    pub async fn while_reading<T>(
        &self,
        entry: NewEntry,
        read: impl std::future::Future<Output = crate::error::Result<T>>,
    ) -> crate::error::Result<T> {
        let ((), out) = tokio::try_join!(self.record(entry), read)?;
        Ok(out)
    }

    /// A refusal answered with 404, which the caller cannot tell from a missing resource:
    /// `entry` is recorded as denied and by `p`, detached (callers may hold the write transaction the
    /// audit writer needs), and the 404 comes back for the caller to return.
    pub fn deny_hidden(&self, p: &Principal, entry: NewEntry) -> crate::error::Error {
        self.record_detached(entry.by(p).outcome(Outcome::Denied));
        crate::error::Error::NotFound
    }

    /// Queue entries without waiting: for callers that may hold the write transaction the
    /// writer needs (a denial found inside a transaction). Committed right after it ends.
    pub fn record_detached(&self, entry: NewEntry) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let (reply, _wait) = oneshot::channel();
            if tx.send(Msg::Append(vec![entry], reply)).await.is_err() {
                tracing::error!("audit writer stopped; a denial entry was not recorded");
            }
        });
    }

    /// Wait until everything sent before this call is committed and on disk.
    pub async fn shutdown(&self) {
        let _ = self.ask(Msg::Flush).await;
    }

    /// The spool this writer acknowledges from (SQLite, unless `LFP_AUDIT_DURABLE_READS`).
    pub fn spool(&self) -> Option<&Arc<spool::Spool>> {
        self.spool.as_ref().map(|(s, _)| s)
    }

    /// Chain every entry acknowledged so far (SQLite's spool), so a reader of the trail sees
    /// them all: the audit list, its verification, a user's own activity. At once elsewhere.
    pub async fn settle(&self) -> crate::error::Result<()> {
        if let Some((spool, db)) = &self.spool {
            spool.move_onto_chain(db).await?;
        }
        Ok(())
    }
}

/// A clean stop: chain what the spool holds, then wait for every sync.
async fn settle_and_sync(db: &Db, spool: Option<&spool::Spool>) -> Result<(), String> {
    if let Some(s) = spool {
        if let Err(e) = s.move_onto_chain(db).await {
            // They stay in the spool, and the next start moves them.
            tracing::error!(error = %e, "moving the spooled audit entries onto the chain failed");
        }
        if tokio::time::timeout(SHUTDOWN_SYNC_LIMIT, s.flush().wait())
            .await
            .is_err()
        {
            tracing::error!("the audit spool's last entries may not have reached the disk");
            return Err("spool sync did not finish".into());
        }
    }
    if !db.lazy_commits_synced(SHUTDOWN_SYNC_LIMIT).await {
        tracing::error!("the last audit entries may not have reached the disk");
        return Err("WAL sync did not finish".into());
    }
    Ok(())
}

/// The mover: woken after each spooled batch, it waits [`spool::MOVE_DELAY`] so one move
/// takes many batches, then chains them. A failed move is tried again each second until it
/// succeeds or the writer stops (the entries stay in the spool for the next start).
fn spawn_mover(
    spool: Arc<spool::Spool>,
    db: Db,
    timing: prometheus_client::metrics::histogram::Histogram,
) -> mpsc::Sender<()> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(spool::MOVE_DELAY).await;
            loop {
                // Each move that chained entries, on its own: not the retries' waits, not a
                // run that found the spool already emptied (by a barrier's move).
                let started = std::time::Instant::now();
                match spool.move_onto_chain(&db).await {
                    Ok(0) => break,
                    Ok(_) => {
                        timing.observe(started.elapsed().as_secs_f64());
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "moving spooled audit entries onto the chain failed");
                        if rx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn an_audited_read_answers_only_after_its_entry_is_committed() {
        let (tx, mut rx) = mpsc::channel(4);
        let writer = AuditWriter { tx, spool: None };
        let read_ran = Arc::new(AtomicBool::new(false));
        let flag = read_ran.clone();
        let answer = writer.while_reading(NewEntry::new("case.read", "case"), async move {
            flag.store(true, Ordering::SeqCst);
            Ok(7)
        });
        tokio::pin!(answer);
        // The read is done, the commit is not: no answer yet.
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), &mut answer).await;
        assert!(early.is_err(), "answered before the entry was committed");
        assert!(
            read_ran.load(Ordering::SeqCst),
            "the read ran while the entry waited"
        );
        let Some(Msg::Append(entries, reply)) = rx.recv().await else {
            panic!("the entry was queued")
        };
        assert_eq!(entries[0].action, "case.read");
        reply.send(Ok(())).unwrap();
        assert_eq!(answer.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn an_audited_read_fails_when_its_entry_cannot_be_recorded() {
        let (tx, rx) = mpsc::channel(4);
        drop(rx);
        let writer = AuditWriter { tx, spool: None };
        let answer = writer
            .while_reading(NewEntry::new("case.read", "case"), async { Ok(7) })
            .await;
        assert!(
            answer.is_err(),
            "a read whose entry was lost must not answer"
        );

        let (tx, mut rx) = mpsc::channel(4);
        let writer = AuditWriter { tx, spool: None };
        tokio::spawn(async move {
            let Some(Msg::Append(_, reply)) = rx.recv().await else {
                panic!("an append")
            };
            reply.send(Err("disk full".into())).unwrap();
        });
        let answer = writer
            .while_reading(NewEntry::new("case.read", "case"), async { Ok(7) })
            .await;
        assert!(answer.is_err(), "a failed commit fails the read");
    }
}
