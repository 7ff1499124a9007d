//! Master-key rotation (`lawfirm-pro keys rotate`): every document data key (and every TOTP
//! secret) is unwrapped with the current master key and wrapped with a new one in one
//! transaction. Document content is never re-encrypted: only the small wrapped keys change.
//!
//! With the key in `data_dir/keys/master.key`, the new key is first written to
//! `master.key.next`, the database is re-wrapped, the old key is kept as
//! `master.key.retired-<time>` and `master.key.next` atomically replaces `master.key`. An
//! interrupted rotation is finished by running the command again (it resumes with
//! `master.key.next`; rows already wrapped with it are left alone).

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{entity::version, upload::key_context};
use crate::{AppState, audit::NewEntry, crypto::MasterKey};

#[derive(Debug)]
pub struct RotationReport {
    pub data_keys: usize,
    pub totp_secrets: usize,
    /// Where the new key was stored, or `None` when it came from the operator.
    pub key_file: Option<std::path::PathBuf>,
}

/// Re-wrap every version's data key from `old` to `new` (idempotent).
pub async fn rewrap_data_keys<C: sea_orm::ConnectionTrait>(
    conn: &C,
    old: &MasterKey,
    new: &MasterKey,
) -> crate::error::Result<usize> {
    let rows: Vec<(Uuid, Vec<u8>)> = version::Entity::find()
        .select_only()
        .column(version::Column::Id)
        .column(version::Column::WrappedKey)
        .into_tuple()
        .all(conn)
        .await?;
    let mut n = 0;
    for (id, wrapped) in rows {
        let ctx = key_context(id);
        if new.open(&wrapped, &ctx).is_some() {
            continue;
        }
        let raw = old
            .open(&wrapped, &ctx)
            .ok_or_else(|| anyhow::anyhow!("data key of version {id} opens with neither key"))?;
        version::Entity::update_many()
            .col_expr(
                version::Column::WrappedKey,
                Expr::value(new.seal(&raw, &ctx)),
            )
            .filter(version::Column::Id.eq(id))
            .exec(conn)
            .await?;
        n += 1;
    }
    Ok(n)
}

/// Refuse to serve with a master key that does not open the stored document keys: a rotation
/// interrupted after its commit (the database holds keys wrapped with `master.key.next`,
/// `master.key` is still the old one) or a wrong `LFP_MASTER_KEY` would otherwise start a
/// server whose every download fails. One row is enough: a rotation re-wraps all in one
/// transaction.
pub async fn check_master_key(state: &AppState) -> anyhow::Result<()> {
    let next = state.config.data_dir.join("keys").join("master.key.next");
    if state.config.master_key.is_none() && next.exists() {
        anyhow::bail!(
            "{} exists: a master-key rotation was interrupted. Run `lawfirm-pro keys rotate` to \
             finish it (it resumes with that key), then start the server",
            next.display()
        );
    }
    let row: Option<(Uuid, Vec<u8>)> = version::Entity::find()
        .select_only()
        .column(version::Column::Id)
        .column(version::Column::WrappedKey)
        .into_tuple()
        .one(state.db.conn())
        .await?;
    if let Some((id, wrapped)) = row
        && state.keys.master.open(&wrapped, &key_context(id)).is_none()
    {
        anyhow::bail!(
            "the master key does not open the stored document keys (version {id}): a wrong \
             LFP_MASTER_KEY or keys/master.key, or a rotation whose new key was not installed"
        );
    }
    Ok(())
}

/// Rotate to `new_key` (base64), or to a generated key when the master key lives in the
/// data directory. With `LFP_MASTER_KEY` configured, the operator must supply the new key
/// and then update the setting. Stop the server(s) first: a running server keeps the old key.
pub async fn rotate_master_key(
    state: &AppState,
    new_key: Option<SecretString>,
) -> anyhow::Result<RotationReport> {
    let dir = state.config.data_dir.join("keys");
    let next_path = dir.join("master.key.next");
    let (new_b64, key_file) = match (&state.config.master_key, new_key) {
        (Some(_), None) => anyhow::bail!(
            "LFP_MASTER_KEY is set: give the new key on standard input (--new-key-stdin), then update the setting"
        ),
        (Some(_), Some(k)) => (k, None),
        (None, given) => {
            let k = if next_path.exists() {
                // An interrupted rotation: finish it with the key it started.
                SecretString::from(
                    std::fs::read_to_string(&next_path)
                        .with_context(|| format!("reading {}", next_path.display()))?,
                )
            } else {
                let k = given.unwrap_or_else(crate::crypto::generate_master_key_base64);
                crate::crypto::write_private(&next_path, k.expose_secret().trim().as_bytes())
                    .with_context(|| format!("writing {}", next_path.display()))?;
                k
            };
            (k, Some(dir.join("master.key")))
        }
    };
    let new = MasterKey::from_base64(&new_b64).map_err(|e| anyhow::anyhow!("new key {e}"))?;
    let old = &state.keys.master;
    let txn = state.db.begin_write().await?;
    let data_keys = rewrap_data_keys(&*txn, old, &new).await?;
    let totp_secrets = crate::users::service::reseal_totp_secrets(&*txn, old, &new).await?;
    crate::audit::service::append_in(
        &*txn,
        vec![
            NewEntry::new("keys.rotate", "key").details(serde_json::json!({
                "data_keys": data_keys, "totp_secrets": totp_secrets,
            })),
        ],
    )
    .await?;
    txn.commit().await?;
    if let Some(current) = &key_file {
        let retired = dir.join(format!(
            "master.key.retired-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        let old_text =
            std::fs::read(current).with_context(|| format!("reading {}", current.display()))?;
        crate::crypto::write_private(&retired, &old_text)
            .with_context(|| format!("writing {}", retired.display()))?;
        std::fs::rename(&next_path, current)
            .with_context(|| format!("installing the new key as {}", current.display()))?;
    }
    Ok(RotationReport {
        data_keys,
        totp_secrets,
        key_file,
    })
}
