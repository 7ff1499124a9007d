//! Keyset pagination: `?limit=&cursor=` in, `{items, next_cursor}` out. Cursors are opaque
//! (base64 of the last row's sort key) and stable under inserts.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::error::{Error, FieldError};

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A validated `limit` (1..=100).
#[derive(Clone, Copy, Debug)]
pub struct Limit(u64);

impl Limit {
    /// The largest page a caller may ask for.
    pub const MAX: Limit = Limit::new(MAX_LIMIT);

    /// A limit fixed in code; out of 1..=100 it fails to compile (in a `const`).
    pub const fn new(n: u64) -> Self {
        assert!(n >= 1 && n <= MAX_LIMIT, "a page limit is 1..=100");
        Self(n)
    }

    pub fn parse(raw: Option<i64>) -> Result<Self, Error> {
        match raw {
            None => Ok(Self(DEFAULT_LIMIT)),
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(Self(n as u64)),
            Some(_) => Err(Error::Validation(vec![FieldError::new(
                "limit",
                "must be between 1 and 100",
            )])),
        }
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("cursor keys serialise"))
}

pub fn decode_cursor<K: DeserializeOwned>(raw: Option<&str>) -> Result<Option<K>, Error> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        Error::Validation(vec![FieldError::new(
            "cursor",
            "is not a cursor this server issued",
        )])
    };
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map(Some).map_err(|_| bad())
}

/// Query parameters shared by every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// 1..100, default 20.
    pub limit: Option<i64>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Build a page from `limit + 1` fetched rows: the extra row only says another page exists.
pub fn page_from<T, K: Serialize>(
    mut rows: Vec<T>,
    limit: Limit,
    key: impl Fn(&T) -> K,
) -> Page<T> {
    let more = rows.len() as u64 > limit.get();
    rows.truncate(limit.get() as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&key(r)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// Keyset position in a newest-first list of time-ordered (v7) ids.
#[derive(Serialize, Deserialize)]
struct IdCursor {
    id: Uuid,
}

/// One page of `q`, newest first by its v7 `id` column (`key` reads it from a row).
pub async fn newest_by_id<E: EntityTrait, C: ConnectionTrait>(
    conn: &C,
    q: Select<E>,
    id: E::Column,
    key: impl Fn(&E::Model) -> Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<E::Model>, Error> {
    let cursor: Option<IdCursor> = decode_cursor(cursor)?;
    let q = match cursor {
        Some(c) => q.filter(id.lt(c.id)),
        None => q,
    };
    let rows = q.order_by_desc(id).limit(limit.get() + 1).all(conn).await?;
    Ok(page_from(rows, limit, |r| IdCursor { id: key(r) }))
}

/// Rows strictly after `(at, id)` in `(sort, id)` order, written so both backends bound the
/// index range on `sort` (`sort <= at` newest first) rather than filtering an OR across the
/// index.
pub fn after_in_range(
    sort: sea_orm::sea_query::Expr,
    id: sea_orm::sea_query::Expr,
    at: chrono::DateTime<chrono::Utc>,
    after: Uuid,
    desc: bool,
) -> sea_orm::Condition {
    use sea_orm::sea_query::ExprTrait;
    let (bound, beyond, id_beyond) = if desc {
        (sort.clone().lte(at), sort.lt(at), id.lt(after))
    } else {
        (sort.clone().gte(at), sort.gt(at), id.gt(after))
    };
    sea_orm::Condition::all()
        .add(bound)
        .add(sea_orm::Condition::any().add(beyond).add(id_beyond))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert_eq!(Limit::parse(Some(100)).unwrap().get(), 100);
        assert!(Limit::parse(Some(0)).is_err());
        assert!(Limit::parse(Some(101)).is_err());
    }

    #[test]
    fn page_from_sets_cursor_only_when_more() {
        let p = page_from(vec![1, 2, 3], Limit::parse(Some(2)).unwrap(), |x| *x);
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(
            decode_cursor::<i32>(p.next_cursor.as_deref()).unwrap(),
            Some(2)
        );
        let p = page_from(vec![1, 2], Limit::parse(Some(2)).unwrap(), |x| *x);
        assert!(p.next_cursor.is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_cursors_never_panic(s in ".{0,200}") {
            let _ = decode_cursor::<(i64, String)>(Some(&s));
        }

        #[test]
        fn cursors_round_trip(id in any::<i64>(), s in ".{0,40}") {
            let c = encode_cursor(&(id, s.clone()));
            prop_assert_eq!(decode_cursor::<(i64, String)>(Some(&c)).unwrap(), Some((id, s)));
        }
    }
}
