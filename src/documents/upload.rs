//! Streaming ingest: bytes go from the socket through type detection, SHA-256, size counting
//! and chunk encryption straight into a multipart upload to the object store. Memory per
//! upload is bounded (one 64 KiB head, one chunk, the store's part buffer) whatever the size.
//!
//! The object is registered in `document_upload` before the first byte is written and the
//! registration is removed by the transaction that creates the version (which fails if a
//! discard claimed it first), so an upload that fails or a crash leaves nothing visible and an
//! object the sweeper removes.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::{ObjectStoreExt, WriteMultipart};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    domain::{self, Kind, Sniff},
    entity::upload,
};
use crate::{
    AppState,
    error::{Error, Result},
    storage::{
        Storage,
        chunks::{ChunkCipher, DataKey, Encryptor},
    },
};

/// Bytes looked at to decide the type (office containers name their parts near the start).
const HEAD: usize = 64 * 1024;
/// Text kept for full-text search.
pub const SEARCH_TEXT_BYTES: usize = 64 * 1024;
/// Size of the parts handed to the object store (S3 needs at least 5 MiB).
const PART: usize = 5 * 1024 * 1024;
/// After a refusal (413, 415, 422), at most this much more is read (and dropped) so the
/// client sees the answer instead of a reset connection.
const DRAIN: u64 = 16 * 1024 * 1024;

/// A fully written object, not yet attached to any document.
pub struct Stored {
    pub version_id: Uuid,
    pub object_key: String,
    pub kind: Kind,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub wrapped_key: Vec<u8>,
    pub nonce_prefix: [u8; 8],
    pub search_text: String,
}

/// The context a version's data key is sealed under: a key copied to another row fails.
pub fn key_context(version_id: Uuid) -> Vec<u8> {
    format!("document_version:{version_id}").into_bytes()
}

/// Stream one file into the store. On any failure the partial object is removed.
pub async fn ingest<S, E>(state: &AppState, raw_name: &str, body: S) -> Result<Stored>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let filename = domain::sanitize_filename(raw_name);
    let object_key = Storage::new_key();
    {
        let txn = state.db.begin_write().await?;
        upload::ActiveModel {
            object_key: Set(object_key.clone()),
            started_at: Set(crate::db::now()),
            claimed_at: Set(None),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
    }
    let version_id = Uuid::now_v7();
    let mut body = body;
    let result = write(state, &object_key, version_id, filename, &mut body).await;
    if result.is_err() {
        // Let the client finish sending (bounded), so it reads our answer, not a reset.
        drain(&mut body).await;
        discard(state, &object_key).await;
    }
    result
}

/// How long a claim on an upload holds: a discard that stopped (a crash, a failed removal)
/// between claiming an object and removing it leaves the claim, and the sweeper takes the
/// object over after this.
pub const CLAIM_LEASE: chrono::Duration = chrono::Duration::minutes(15);

/// Remove a written (or half-written) object and its registration, unless a version owns it.
///
/// The registration row decides the object's fate. A discard first claims it (`claimed_at`),
/// removes the object, and only then deletes the row; the transaction creating a version
/// deletes only an unclaimed row, and fails if there is none. So a discard that races a
/// commit — the sweeper against an upload that took a day — either claims first, and that
/// version fails (409), or finds the row gone and leaves the object to its version; a version
/// never adopts an object being removed. A discard that stops between claim and removal leaves
/// the claimed row, which the sweeper takes over once [`CLAIM_LEASE`] has passed. (Only a crash
/// of the request whose object was written after the sweep removed it, before it removes the
/// object itself, can leave one that no row names.) An error path whose commit happened after
/// all (the connection dropped after the server committed) finds a version and leaves the
/// object.
pub async fn discard(state: &AppState, object_key: &str) {
    match claim(state, object_key).await {
        Ok(Claim::Taken) => remove_claimed(state, object_key).await,
        // Another discard is removing it — but its removal may have run before this upload
        // finished writing (the sweeper against a day-long upload), and it deletes the row
        // after. Removing it here too is always safe: no version can take a claimed row.
        Ok(Claim::Busy) => {
            if let Err(e) = state.storage.remove(object_key).await {
                tracing::warn!(error = %e, "removing a claimed upload failed");
            }
        }
        // Not registered: a version owns it, or a sweep removed it — possibly while this
        // upload was still writing, so the object appeared after the sweep's removal. Nothing
        // else will remove it then.
        Ok(Claim::Gone) => match owned_by_a_version(state, object_key).await {
            Ok(false) => {
                if let Err(e) = state.storage.remove(object_key).await {
                    tracing::warn!(error = %e, "removing an unregistered upload failed");
                }
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "checking a discarded upload failed"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "claiming a discarded upload failed; the sweeper decides");
        }
    }
}

enum Claim {
    /// This call claimed it: it removes the object, then the row.
    Taken,
    /// Registered, and claimed by another discard within its lease.
    Busy,
    /// Not registered.
    Gone,
}

/// Claim the registration of `object_key` for removal (or take over a lapsed claim).
async fn claim(state: &AppState, object_key: &str) -> Result<Claim> {
    use sea_orm::{ColumnTrait, Condition, QueryFilter, sea_query::Expr};
    let now = crate::db::now();
    let txn = state.db.begin_write().await?;
    let taken = upload::Entity::update_many()
        .col_expr(upload::Column::ClaimedAt, Expr::value(now))
        .filter(upload::Column::ObjectKey.eq(object_key))
        .filter(
            Condition::any()
                .add(upload::Column::ClaimedAt.is_null())
                .add(upload::Column::ClaimedAt.lt(now - CLAIM_LEASE)),
        )
        .exec(&*txn)
        .await?
        .rows_affected;
    let out = if taken == 1 {
        Claim::Taken
    } else if upload::Entity::find_by_id(object_key.to_string())
        .one(&*txn)
        .await?
        .is_some()
    {
        Claim::Busy
    } else {
        Claim::Gone
    };
    txn.commit().await?;
    Ok(out)
}

/// Remove an object this process claimed, then its row. On failure the claimed row stays for
/// the sweeper (after [`CLAIM_LEASE`]).
async fn remove_claimed(state: &AppState, object_key: &str) {
    if let Err(e) = state.storage.remove(object_key).await {
        tracing::warn!(error = %e, "removing a discarded upload failed; the sweeper retries");
        return;
    }
    let r = async {
        let txn = state.db.begin_write().await?;
        upload::Entity::delete_by_id(object_key.to_string())
            .exec(&*txn)
            .await?;
        txn.commit().await
    }
    .await;
    if let Err(e) = r {
        // The object is gone; a sweep finds the row, removes nothing and deletes it.
        tracing::warn!(error = %e, "forgetting a removed upload failed");
    }
}

async fn owned_by_a_version(state: &AppState, object_key: &str) -> Result<bool> {
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    Ok(super::entity::version::Entity::find()
        .filter(super::entity::version::Column::ObjectKey.eq(object_key))
        .count(state.db.conn())
        .await?
        > 0)
}

struct Pipeline {
    writer: WriteMultipart,
    enc: Encryptor,
    hash: Sha256,
    size: u64,
    text: Option<TextCheck>,
    search: Vec<u8>,
}

impl Pipeline {
    async fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        self.hash.update(data);
        if let Some(t) = &mut self.text {
            t.push(data)?;
            if self.search.len() < SEARCH_TEXT_BYTES {
                let n = (SEARCH_TEXT_BYTES - self.search.len()).min(data.len());
                self.search.extend_from_slice(&data[..n]);
            }
        }
        let sealed = self
            .enc
            .push(data)
            .map_err(|e| Error::TooLarge(e.to_string()))?;
        for c in sealed {
            // Backpressure: at most two parts in flight, so memory stays flat.
            self.writer.wait_for_capacity(2).await.map_err(store_err)?;
            self.writer.write(&c);
        }
        Ok(())
    }
}

fn store_err(e: object_store::Error) -> Error {
    let e = anyhow::Error::new(e).context("writing to the object store");
    // A full disk (or quota) under a file-system store: 507, not a bug.
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    });
    if full {
        Error::StorageFull(e)
    } else {
        Error::Internal(e)
    }
}

async fn write<S, E>(
    state: &AppState,
    object_key: &str,
    version_id: Uuid,
    filename: String,
    body: &mut S,
) -> Result<Stored>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let limit = state.config.max_upload_bytes;
    let too_large = || Error::TooLarge(format!("The file is larger than {limit} bytes."));
    let read_err = |e: E| Error::invalid("file", format!("could not be read: {e}"));

    // 1. The head decides the type before anything is stored.
    let mut head: Vec<u8> = Vec::with_capacity(HEAD);
    let mut pending: Option<Bytes> = None;
    let mut ended = true;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(read_err)?;
        let room = HEAD - head.len();
        if piece.len() <= room {
            head.extend_from_slice(&piece);
        } else {
            head.extend_from_slice(&piece[..room]);
            pending = Some(piece.slice(room..));
        }
        if head.len() >= HEAD {
            ended = false;
            break;
        }
    }
    if head.len() as u64 > limit {
        return Err(too_large());
    }
    let (kind, text) = match domain::sniff(&head, ended) {
        Sniff::Known(k) => (k, None),
        Sniff::Text { email } => (
            domain::text_kind(email, &filename),
            Some(TextCheck::default()),
        ),
        Sniff::Refused(what) => {
            return Err(Error::UnsupportedMediaType(format!(
                "Files of this type ({what}) are not accepted."
            )));
        }
    };
    if !domain::extension_fits(kind, &filename) {
        return Err(Error::invalid(
            "file",
            format!(
                "the file name's extension does not match its content ({})",
                kind.mime()
            ),
        ));
    }

    // 2. Everything from here streams through the pipeline into the store.
    let key = DataKey::generate();
    let nonce_prefix = crate::crypto::random_bytes::<8>();
    let upload = state
        .storage
        .store()
        .put_multipart(&Storage::path(object_key))
        .await
        .map_err(store_err)?;
    let mut p = Pipeline {
        writer: WriteMultipart::new_with_chunk_size(upload, PART),
        enc: Encryptor::new(ChunkCipher::new(&key, nonce_prefix)),
        hash: Sha256::new(),
        size: 0,
        text,
        search: Vec::new(),
    };
    let outcome: Result<()> = async {
        p.feed(&head).await?;
        if let Some(rest) = pending.take() {
            if p.size + rest.len() as u64 > limit {
                return Err(too_large());
            }
            p.feed(&rest).await?;
        }
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(read_err)?;
            if p.size + piece.len() as u64 > limit {
                return Err(too_large());
            }
            p.feed(&piece).await?;
        }
        if let Some(t) = &p.text {
            t.finish()?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        let _ = p.writer.abort().await;
        return Err(e);
    }
    let Pipeline {
        mut writer,
        enc,
        hash,
        size,
        search,
        ..
    } = p;
    let last = enc.finish();
    writer.wait_for_capacity(2).await.map_err(store_err)?;
    writer.write(&last);
    writer.finish().await.map_err(store_err)?;
    Ok(Stored {
        version_id,
        object_key: object_key.to_string(),
        kind,
        filename,
        size,
        sha256: hex::encode(hash.finalize()),
        wrapped_key: key.wrap(&state.keys.master, &key_context(version_id)),
        nonce_prefix,
        search_text: String::from_utf8_lossy(&search).into_owned(),
    })
}

/// Read and drop what the client is still sending (bounded), so it can read our answer.
async fn drain<S, E>(body: &mut S)
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    let mut seen = 0u64;
    while let Some(Ok(piece)) = body.next().await {
        seen += piece.len() as u64;
        if seen > DRAIN {
            break;
        }
    }
}

/// Streaming check that a "text" upload stays UTF-8 without NUL bytes to the end.
#[derive(Default)]
struct TextCheck {
    carry: Vec<u8>,
}

impl TextCheck {
    fn push(&mut self, data: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        if buf.contains(&0) {
            return Err(not_text());
        }
        match std::str::from_utf8(&buf) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                self.carry = buf[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(_) => Err(not_text()),
        }
    }

    fn finish(&self) -> Result<()> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(not_text())
        }
    }
}

fn not_text() -> Error {
    Error::UnsupportedMediaType("The file starts as text but contains binary data.".into())
}
