//! Forgotten passwords: a signed link by mail (through the outbox), valid for an hour and
//! for one use. The link carries no stored secret: it is bound to a fingerprint of the
//! password hash it was issued against, so any password change (this link's own use
//! included) makes it stop working.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{service::revoke_user_sessions, token::PASSWORD_RESET_TTL_SECS};
use crate::{
    AppState,
    audit::{NewEntry, Outcome, service::append_in},
    error::{Error, Result},
    http::extract::RequestMeta,
    limits::Action,
    users,
};

/// A short fingerprint of a stored password hash (or of "no password yet").
fn fingerprint(hash: Option<&str>) -> String {
    let d = Sha256::new()
        .chain_update(b"password-reset\0")
        .chain_update(hash.unwrap_or_default().as_bytes())
        .finalize();
    hex::encode(&d[..16])
}

/// Ask for a reset link. The answer is the same whether or not the address belongs to an
/// active account (nothing leaks about who has one); only a real account gets a mail.
#[tracing::instrument(skip_all)]
pub async fn request_reset(state: &AppState, meta: &RequestMeta, email: &str) -> Result<()> {
    state.limits.check(
        Action::PasswordReset,
        meta.ip.as_deref().unwrap_or("unknown"),
    )?;
    let user = users::service::find_by_email(&state.db, email)
        .await?
        .filter(|u| u.status == "active");
    let Some(user) = user else {
        state
            .audit
            .record(
                NewEntry::new("user.password_reset_request", "user")
                    .meta(meta)
                    .outcome(Outcome::Failure),
            )
            .await?;
        return Ok(());
    };
    // Requests from many addresses must not flood one inbox: past a few mails an hour the
    // answer stays the same but no mail goes out.
    if state
        .limits
        .check(Action::PasswordResetMail, &user.id.to_string())
        .is_err()
    {
        state
            .audit
            .record(
                NewEntry::new("user.password_reset_request", "user")
                    .meta(meta)
                    .resource(user.id)
                    .outcome(Outcome::Failure)
                    .details(serde_json::json!({ "reason": "mail_limit" })),
            )
            .await?;
        return Ok(());
    }
    let token = state
        .tokens
        .issue_password_reset(user.id, &fingerprint(user.password_hash.as_deref()))?;
    let base = state.config.public_url.as_str().trim_end_matches('/');
    let txn = state.db.begin_write().await?;
    crate::mail::enqueue_in(
        &*txn,
        crate::mail::NewMail {
            kind: "password_reset",
            to_address: user.email.clone(),
            to_user_id: Some(user.id),
            subject: "Reset your password".into(),
            text: format!(
                "Hello {},\n\nSomeone (hopefully you) asked to reset the password of your \
                 client portal account. Choose a new password here (the link works once, for \
                 {} minutes):\n\n{base}/reset?token={token}\n\nIf you did not ask for this, \
                 ignore this message: your password stays as it is.\n",
                user.name,
                PASSWORD_RESET_TTL_SECS / 60,
            ),
            attachments: Vec::new(),
        },
    )
    .await?;
    append_in(
        &*txn,
        vec![
            // No actor: anyone may ask for a link to someone's address.
            NewEntry::new("user.password_reset_request", "user")
                .meta(meta)
                .resource(user.id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Whether a reset link still works (for showing the form or a readable "expired" page).
pub async fn check_token(state: &AppState, token: &str) -> Result<Uuid> {
    Ok(link_user(state, token).await?.id)
}

/// The active account a link was issued for, read once: the caller compares-and-sets the
/// very hash whose fingerprint matched here, so a concurrent password change spends it.
async fn link_user(state: &AppState, token: &str) -> Result<users::entity::user::Model> {
    let (user_id, fp) = state
        .tokens
        .verify_password_reset(token.trim())
        .ok_or(Error::NotFound)?;
    let user = users::service::find_active(&state.db, user_id)
        .await?
        .ok_or(Error::NotFound)?;
    if fingerprint(user.password_hash.as_deref()) != fp {
        return Err(Error::NotFound);
    }
    Ok(user)
}

/// Set a new password through a reset link: every session of the account ends.
/// An unknown, expired or already used link answers `NotFound`.
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    state: &AppState,
    meta: &RequestMeta,
    token: &str,
    new: SecretString,
) -> Result<()> {
    let failed = |why: &str| {
        NewEntry::new("user.password_reset", "user")
            .meta(meta)
            .outcome(Outcome::Failure)
            .details(serde_json::json!({ "reason": why }))
    };
    let user = match link_user(state, token).await {
        Ok(u) => u,
        Err(Error::NotFound) => {
            state.audit.record(failed("invalid_link")).await?;
            return Err(Error::NotFound);
        }
        Err(e) => return Err(e),
    };
    super::password::check_policy(new.expose_secret(), &user.email)
        .map_err(|m| Error::invalid("password", m))?;
    let hash = state.hasher.hash(&new).await?;
    let txn = state.db.begin_write().await?;
    // Only if the hash is still the one the link was issued for: single use under races.
    if !users::service::replace_password_hash(&*txn, user.id, user.password_hash.as_deref(), &hash)
        .await?
    {
        drop(txn);
        state.audit.record(failed("link_spent")).await?;
        return Err(Error::NotFound);
    }
    let revoked = revoke_user_sessions(&*txn, user.id, None, "password_reset").await?;
    super::service::security_notice_in(
        &*txn,
        &user,
        "Your password was reset through an emailed link",
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("user.password_reset", "user")
                .meta(meta)
                .actor(Some(user.id))
                .resource(user.id)
                .details(serde_json::json!({ "sessions_revoked": revoked })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_change_with_the_hash() {
        assert_eq!(fingerprint(Some("a")), fingerprint(Some("a")));
        assert_ne!(fingerprint(Some("a")), fingerprint(Some("b")));
        assert_ne!(fingerprint(Some("")), fingerprint(Some("a")));
        assert_eq!(fingerprint(None).len(), 32);
    }
}
