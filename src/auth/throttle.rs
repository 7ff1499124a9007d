//! Login throttling, kept in the database so every instance sees the same counts.
//!
//! Per account: 5 failures within 15 minutes lock it for 1 minute, doubling with each further
//! lock up to 1 hour; after a quiet 15 minutes the count starts over, so an attacker can delay
//! but never permanently lock out the real owner. Per source IP: 30 failures per 15 minutes.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect,
    sea_query::OnConflict,
};

use super::entity::login_throttle as lt;
use crate::db::Db;

pub const ACCOUNT_MAX_FAILURES: i32 = 5;
pub const IP_MAX_FAILURES: i32 = 30;
pub const WINDOW: Duration = Duration::minutes(15);
const BASE_LOCK_SECS: i64 = 60;
const MAX_LOCK_SECS: i64 = 3600;

/// Hashed, so an arbitrary (attacker-chosen) login name makes a short, fixed-size key.
pub fn account_key(email: &str) -> String {
    format!(
        "acct:{}",
        crate::crypto::token_hash(&email.trim().to_lowercase())
    )
}

pub fn ip_key(ip: &str) -> String {
    format!("ip:{ip}")
}

/// Seconds until `key` may try again, if it is locked now.
pub async fn locked_for(
    db: &Db,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>, sea_orm::DbErr> {
    let row = lt::Entity::find_by_id(key.to_owned())
        .one(db.conn())
        .await?;
    Ok(row
        .and_then(|r| r.locked_until)
        .filter(|u| *u > now)
        .map(|u| (u - now).num_seconds().max(1) as u64))
}

/// Count a failure; lock the key when it reaches `max` within the window.
pub async fn record_failure(
    db: &Db,
    key: &str,
    max: i32,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin_write().await?;
    // Make sure the row exists, then lock it: concurrent failures are counted one by one
    // (PostgreSQL row lock; SQLite has one writer at a time).
    lt::Entity::insert(lt::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(0),
        window_started_at: Set(now),
        locked_until: Set(None),
        lock_count: Set(0),
    })
    .on_conflict(OnConflict::column(lt::Column::Key).do_nothing().to_owned())
    .exec_without_returning(&*txn)
    .await?;
    let mut q = lt::Entity::find_by_id(key.to_owned());
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    let row = q.one(&*txn).await?;
    match row {
        None => return Err(sea_orm::DbErr::RecordNotFound(key.to_owned())),
        Some(r) => {
            // An hour without a lock forgets earlier locks; 15 quiet minutes forget failures.
            let mut locks = if r.locked_until.is_none_or(|u| now - u > Duration::hours(1)) {
                0
            } else {
                r.lock_count
            };
            let (mut failures, mut window) = if now - r.window_started_at > WINDOW {
                (0, now)
            } else {
                (r.failures, r.window_started_at)
            };
            failures += 1;
            let mut locked_until = r.locked_until;
            if failures >= max {
                let secs = (BASE_LOCK_SECS << locks.min(10)).min(MAX_LOCK_SECS);
                locked_until = Some(now + Duration::seconds(secs));
                locks += 1;
                failures = 0;
                window = now;
            }
            let mut am: lt::ActiveModel = r.into();
            am.failures = Set(failures);
            am.window_started_at = Set(window);
            am.locked_until = Set(locked_until);
            am.lock_count = Set(locks);
            am.update(&*txn).await?;
        }
    }
    txn.commit().await
}

/// A successful login clears the account's record (not the IP's).
pub async fn clear(db: &Db, key: &str) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin_write().await?;
    lt::Entity::delete_by_id(key.to_owned()).exec(&*txn).await?;
    txn.commit().await
}

/// Test support: end a lock now while keeping its count, as if the lock had run out.
#[doc(hidden)]
pub async fn expire_lock_for_tests(db: &Db, key: &str) {
    if let Ok(Some(r)) = lt::Entity::find_by_id(key.to_owned()).one(db.conn()).await {
        let just_now = crate::db::now() - Duration::seconds(1);
        let mut am: lt::ActiveModel = r.into();
        am.locked_until = Set(Some(just_now));
        am.window_started_at = Set(just_now);
        let _ = am.update(db.conn()).await;
    }
}
