//! Reading a document's bytes: the whole file or one HTTP range, decrypting only the chunks
//! the range touches, streamed to the client. Every read is audited.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::GetOptions;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{entity::version, service, upload::key_context};
use crate::{
    AppState,
    auth::Principal,
    error::{Error, Result},
    storage::{
        Storage,
        chunks::{self, ChunkCipher, DataKey, TAG},
    },
};

/// What `Range` asked for, against a file of known size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    Partial(Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`). Several ranges or another unit: the whole file
/// (a server may ignore `Range`); a range past the end: unsatisfiable.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size)),
            Err(_) => None,
        },
        (false, _) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), _) if b.is_empty() => Some((s, size)),
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeRequest::Full,
        Some((s, _)) if s >= size => RangeRequest::Unsatisfiable,
        Some((s, e)) => RangeRequest::Partial(s..e),
    }
}

/// A readable version and how much of it is sent.
pub struct Content {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub version: i32,
    /// `Some` for a 206 answer.
    pub range: Option<Range<u64>>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

pub enum ContentResult {
    Ok(Content),
    /// 416, with the size for `Content-Range: bytes */size`.
    Unsatisfiable(u64),
}

/// `GET /documents/{id}/content[?version=N]`.
pub async fn open(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    version_no: Option<i32>,
    range_header: Option<&str>,
) -> Result<ContentResult> {
    let conn = state.db.conn();
    let (d, a) = service::load_visible(state, conn, p, id).await?;
    let wanted = version_no.unwrap_or(d.version);
    let Some(v) = version::Entity::find()
        .filter(version::Column::DocumentId.eq(id))
        .filter(version::Column::Version.eq(wanted))
        .one(conn)
        .await?
    else {
        return Err(Error::NotFound);
    };
    let size = v.size as u64;
    let range = match parse_range(range_header, size) {
        RangeRequest::Unsatisfiable => return Ok(ContentResult::Unsatisfiable(size)),
        RangeRequest::Full => None,
        RangeRequest::Partial(r) => Some(r),
    };
    let entry = service::read_entry(
        p,
        &a,
        &d,
        "document.download",
        serde_json::json!({
            "version": v.version,
            "range": range.as_ref().map(|r| [r.start, r.end]),
        }),
    );
    // The object is opened (a round trip on S3) while the entry commits; no byte is sent
    // before both are done.
    let open = async {
        let key = DataKey::unwrap(&state.keys.master, &v.wrapped_key, &key_context(v.id))
            .ok_or_else(|| anyhow::anyhow!("data key of version {} does not unwrap", v.id))?;
        let prefix: [u8; 8] = v
            .nonce_prefix
            .as_slice()
            .try_into()
            .map_err(|_| anyhow::anyhow!("nonce prefix of version {} malformed", v.id))?;
        decrypt_stream(
            state.storage.clone(),
            v.object_key.clone(),
            ChunkCipher::new(&key, prefix),
            size,
            range.clone().unwrap_or(0..size),
        )
        .await
    };
    let body = state.audit.while_reading(entry, open).await?;
    Ok(ContentResult::Ok(Content {
        filename: v.filename,
        content_type: v.content_type,
        size,
        sha256: v.sha256,
        version: v.version,
        range,
        body,
    }))
}

/// Fetch only the stored bytes of the chunks covering `want`, open them one by one and cut
/// the plaintext to the range. A chunk that fails to open ends the stream with an error.
pub async fn decrypt_stream(
    storage: Storage,
    object_key: String,
    cipher: ChunkCipher,
    size: u64,
    want: Range<u64>,
) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
    let span = chunks::span(size, want);
    let got = storage
        .store()
        .get_opts(
            &Storage::path(&object_key),
            GetOptions::new().with_range(Some(span.stored.clone())),
        )
        .await
        .map_err(|e| anyhow::Error::new(e).context("reading a stored document"))?;
    let inner = got.into_stream().map_err(std::io::Error::other).boxed();
    struct St {
        inner: BoxStream<'static, std::io::Result<Bytes>>,
        buf: BytesMut,
        index: u64,
        skip: usize,
        left: u64,
    }
    let last_index = chunks::chunk_count(size) - 1;
    let state = St {
        inner,
        buf: BytesMut::new(),
        index: span.first_chunk,
        skip: span.skip,
        left: span.len,
    };
    let last_chunk = span.last_chunk;
    let cipher = std::sync::Arc::new(cipher);
    Ok(futures::stream::try_unfold(state, move |mut st| {
        let cipher = cipher.clone();
        async move {
            if st.index > last_chunk {
                return Ok(None);
            }
            let need = chunks::plain_len_of(size, st.index) + TAG;
            while st.buf.len() < need {
                match st.inner.next().await {
                    Some(piece) => st.buf.extend_from_slice(&piece?),
                    None => return Err(std::io::Error::other("stored document is truncated")),
                }
            }
            let sealed = st.buf.split_to(need);
            let plain = cipher
                .open(st.index as u32, st.index == last_index, &sealed)
                .ok_or_else(|| std::io::Error::other("stored document failed authentication"))?;
            let from = st.skip.min(plain.len());
            let to = (from as u64 + st.left).min(plain.len() as u64) as usize;
            let out = Bytes::copy_from_slice(&plain[from..to]);
            st.skip = 0;
            st.left -= out.len() as u64;
            st.index += 1;
            Ok(Some((out, st)))
        }
    })
    .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial(0..5));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Partial(5..10));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial(7..10));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial(0..10));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Partial(8..10));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=x-y"), 10), Full);
    }
}
