//! Login, token refresh and rotation, logout, password change, TOTP and sessions.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, JoinType},
};
use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

use super::{
    Principal,
    entity::{refresh_token as rt, session},
    throttle, totp,
};
use crate::{
    AppState,
    audit::{NewEntry, Outcome, service::append_in},
    crypto::{random_token, token_hash},
    db::{Db, now},
    error::{AuthFailure, Error, Result},
    http::{
        extract::RequestMeta,
        pagination::{Limit, Page, decode_cursor, page_from},
    },
    users::{
        self,
        service::{UserView, find_by_email},
    },
};

pub async fn find_session(db: &Db, id: Uuid) -> Result<Option<session::Model>> {
    Ok(session::Entity::find_by_id(id).one(db.conn()).await?)
}

/// How a request names its session: by id (from a verified access token) or by the secret
/// in its cookie.
pub enum SessionKey<'a> {
    Id(Uuid),
    Cookie(&'a str),
}

/// What authenticating a request decides on, from its session and that session's user:
/// nothing secret. The password hash and TOTP secret stay in the database, and the row is
/// six columns instead of two whole models (decoding them was about 2 % of the server's CPU
/// per request; docs/benchmarks.md, round 22).
#[derive(Debug, sea_orm::FromQueryResult)]
pub struct SessionCheck {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: DateTime<Utc>,
}

/// The session and its user, only while that user is active: one statement per request,
/// which every authenticated request makes.
pub async fn session_with_active_user(
    db: &Db,
    key: SessionKey<'_>,
) -> Result<Option<SessionCheck>> {
    // Scoped: `ExprTrait` also gives every type a `max`, which would shadow `Ord::max` here.
    use sea_orm::sea_query::ExprTrait;
    use users::entity::user;
    let mut q = session::Entity::find().select_only();
    QueryTrait::query(&mut q).join(
        JoinType::InnerJoin,
        user::Entity,
        Expr::col((user::Entity, user::Column::Id))
            .equals((session::Entity, session::Column::UserId)),
    );
    q = match key {
        SessionKey::Id(id) => q.filter(session::Column::Id.eq(id)),
        SessionKey::Cookie(c) => q.filter(session::Column::CookieHash.eq(token_hash(c))),
    };
    Ok(q.column_as(session::Column::Id, "session_id")
        .column(session::Column::UserId)
        .column(user::Column::Role)
        .column(session::Column::ExpiresAt)
        .column(session::Column::RevokedAt)
        .column(session::Column::LastUsedAt)
        .filter(user::Column::Status.eq(users::domain::UserStatus::Active.as_str()))
        .into_model::<SessionCheck>()
        .one(db.conn())
        .await?)
}

/// Record that a session was used now (at most once a minute: reads must not become writes).
pub async fn touch_session(db: &Db, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    let txn = db.begin_write().await?;
    session::Entity::update_many()
        .col_expr(session::Column::LastUsedAt, Expr::value(now))
        .filter(session::Column::Id.eq(id))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

pub struct LoginInput {
    pub email: String,
    pub password: SecretString,
    pub totp_code: Option<String>,
    /// Web pages: a cookie session instead of a refresh token.
    pub cookie: bool,
}

/// What a successful login or refresh hands out.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    /// The refresh token (API sessions) or the cookie value (web sessions).
    pub secret: String,
    pub session_id: Uuid,
    pub user: UserView,
}

fn login_entry(
    meta: &RequestMeta,
    actor: Option<Uuid>,
    outcome: Outcome,
    reason: &str,
) -> NewEntry {
    NewEntry::new("auth.login", "user")
        .meta(meta)
        .actor(actor)
        .outcome(outcome)
        .details(serde_json::json!({ "reason": reason }))
}

/// The throttle keys of one login attempt: the account (by email) and the client's address.
struct Attempt<'a> {
    meta: &'a RequestMeta,
    acct_key: String,
    ip_key: Option<String>,
    /// The account being signed in to, once known (the resource of failure entries).
    target: Option<Uuid>,
    t: DateTime<Utc>,
}

impl<'a> Attempt<'a> {
    fn new(meta: &'a RequestMeta, email: &str) -> Self {
        Self {
            meta,
            acct_key: throttle::account_key(email),
            ip_key: meta.ip.as_deref().map(throttle::ip_key),
            target: None,
            t: now(),
        }
    }

    /// Seconds to wait when the account or the address is locked out (audited as throttled).
    async fn throttled(&self, state: &AppState, at: DateTime<Utc>) -> Result<()> {
        let mut wait = throttle::locked_for(&state.db, &self.acct_key, at).await?;
        if let Some(k) = &self.ip_key {
            wait = wait.max(throttle::locked_for(&state.db, k, at).await?);
        }
        if let Some(secs) = wait {
            state
                .audit
                .record(login_entry(self.meta, None, Outcome::Denied, "throttled"))
                .await?;
            return Err(Error::RateLimited {
                retry_after_secs: secs,
            });
        }
        Ok(())
    }

    /// A failed attempt counts against the account and the address.
    async fn fail(&self, state: &AppState, reason: &str, actor: Option<Uuid>) -> Result<()> {
        throttle::record_failure(
            &state.db,
            &self.acct_key,
            throttle::ACCOUNT_MAX_FAILURES,
            self.t,
        )
        .await?;
        if let Some(k) = &self.ip_key {
            throttle::record_failure(&state.db, k, throttle::IP_MAX_FAILURES, self.t).await?;
        }
        // The attacked account is the resource, so the trail shows who was targeted.
        let mut entry = login_entry(self.meta, actor, Outcome::Failure, reason);
        if let Some(id) = self.target {
            entry = entry.resource(id);
        }
        state.audit.record(entry).await?;
        Ok(())
    }
}

pub async fn login(state: &AppState, meta: &RequestMeta, input: LoginInput) -> Result<Issued> {
    let mut attempt = Attempt::new(meta, &input.email);
    attempt.throttled(state, attempt.t).await?;

    let user = find_by_email(&state.db, &input.email).await?;
    // Unknown emails are verified against a dummy hash: same work, same answer.
    let ok = match state
        .hasher
        .verify(
            &input.password,
            user.as_ref().and_then(|u| u.password_hash.as_deref()),
        )
        .await
    {
        Ok(ok) => ok,
        // Too many logins already wait for the hasher: shed this one, unchecked (the same
        // for known and unknown emails), and leave a trace of it.
        Err(e @ super::password::HashError::Busy) => {
            state
                .audit
                .record(login_entry(meta, None, Outcome::Denied, "overloaded"))
                .await?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    attempt.target = user.as_ref().map(|u| u.id);
    // Guesses queued behind the hasher while the account got locked learn nothing.
    if let Some(secs) = throttle::locked_for(&state.db, &attempt.acct_key, now()).await? {
        if !ok {
            throttle::record_failure(
                &state.db,
                &attempt.acct_key,
                throttle::ACCOUNT_MAX_FAILURES,
                now(),
            )
            .await?;
        }
        state
            .audit
            .record(login_entry(meta, None, Outcome::Denied, "throttled"))
            .await?;
        return Err(Error::RateLimited {
            retry_after_secs: secs,
        });
    }
    let Some(user) = user.filter(|_| ok) else {
        attempt.fail(state, "bad_credentials", None).await?;
        return Err(Error::Unauthorized(AuthFailure::InvalidCredentials));
    };
    second_factor(
        state,
        &attempt,
        user,
        input.totp_code.as_deref(),
        input.cookie,
    )
    .await
}

/// The second step of a web sign-in, after the password was accepted: the user id comes from
/// the signed pending-login ticket the first step handed out (so the password never travels
/// back through the page), the code from the form. Throttled and audited like a login.
pub async fn login_with_ticket(
    state: &AppState,
    meta: &RequestMeta,
    ticket: &str,
    totp_code: &str,
) -> Result<Issued> {
    let Some((user_id, step)) = state.tokens.verify_pending_login(ticket) else {
        return Err(Error::Unauthorized(AuthFailure::InvalidCredentials));
    };
    // A ticket whose sign-in already happened (the account's TOTP step moved on) is spent.
    let Some(user) = users::service::find_active(&state.db, user_id)
        .await?
        .filter(|u| u.totp_last_step == step)
    else {
        return Err(Error::Unauthorized(AuthFailure::InvalidCredentials));
    };
    let mut attempt = Attempt::new(meta, &user.email);
    attempt.target = Some(user.id);
    attempt.throttled(state, attempt.t).await?;
    second_factor(state, &attempt, user, Some(totp_code), true).await
}

/// A short-lived signed ticket for the TOTP step of a web sign-in whose password was right
/// (call only after `login` answered `TotpRequired`/`InvalidTotp`, which it does only then).
/// Single use: bound to the account's last used TOTP step, which a sign-in moves on.
pub fn pending_login_ticket(state: &AppState, user: &users::entity::user::Model) -> Result<String> {
    Ok(state
        .tokens
        .issue_pending_login(user.id, user.totp_last_step)?)
}

/// After the password: the account must be active, the TOTP code right and unused; then a
/// session opens.
async fn second_factor(
    state: &AppState,
    attempt: &Attempt<'_>,
    user: users::entity::user::Model,
    totp_code: Option<&str>,
    cookie: bool,
) -> Result<Issued> {
    let (meta, t) = (attempt.meta, attempt.t);
    if user.status != "active" {
        state
            .audit
            .record(login_entry(
                meta,
                Some(user.id),
                Outcome::Failure,
                "disabled",
            ))
            .await?;
        return Err(Error::Unauthorized(AuthFailure::InvalidCredentials));
    }
    let mut totp_step = None;
    if user.totp_enabled {
        let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) else {
            state
                .audit
                .record(login_entry(
                    meta,
                    Some(user.id),
                    Outcome::Failure,
                    "totp_required",
                ))
                .await?;
            return Err(Error::Unauthorized(AuthFailure::TotpRequired));
        };
        match users::service::check_totp(state, &user, code, t)? {
            Some(step) => totp_step = Some(step),
            None => {
                attempt.fail(state, "bad_totp", Some(user.id)).await?;
                return Err(Error::Unauthorized(AuthFailure::InvalidTotp));
            }
        }
    }
    throttle::clear(&state.db, &attempt.acct_key).await?;

    let txn = state.db.begin_write().await?;
    if let Some(step) = totp_step {
        // Conditional update: a code's step can be used once, even by two racing logins.
        if !users::service::consume_totp_step(&*txn, user.id, step).await? {
            drop(txn);
            attempt.fail(state, "totp_reused", Some(user.id)).await?;
            return Err(Error::Unauthorized(AuthFailure::InvalidTotp));
        }
    }
    let issued = open_session(state, &*txn, &user, meta, cookie, t).await?;
    append_in(
        &*txn,
        vec![login_entry(meta, Some(user.id), Outcome::Success, "ok").resource(user.id)],
    )
    .await?;
    txn.commit().await?;
    Ok(issued)
}

async fn open_session<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    user: &users::entity::user::Model,
    meta: &RequestMeta,
    cookie: bool,
    t: DateTime<Utc>,
) -> Result<Issued> {
    let id = Uuid::now_v7();
    let secret = random_token();
    session::ActiveModel {
        id: Set(id),
        user_id: Set(user.id),
        kind: Set(if cookie { "cookie" } else { "api" }.into()),
        cookie_hash: Set(cookie.then(|| token_hash(&secret))),
        created_at: Set(t),
        last_used_at: Set(t),
        expires_at: Set(t + Duration::days(state.config.refresh_token_ttl_days)),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        ip: Set(meta.ip.clone()),
        user_agent: Set(meta.user_agent.clone()),
    }
    .insert(conn)
    .await?;
    if !cookie {
        insert_refresh(conn, id, &secret, t).await?;
    }
    Ok(Issued {
        access_token: state.tokens.issue(user.id, id)?,
        expires_in: state.tokens.ttl_secs,
        secret,
        session_id: id,
        user: UserView::from(user.clone()),
    })
}

async fn insert_refresh<C: ConnectionTrait>(
    conn: &C,
    session_id: Uuid,
    token: &str,
    t: DateTime<Utc>,
) -> Result<()> {
    rt::ActiveModel {
        token_hash: Set(token_hash(token)),
        session_id: Set(session_id),
        created_at: Set(t),
        used_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Revoke sessions of `user_id` matching `filter`, and tell open sockets to re-check theirs.
async fn revoke<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    filter: sea_orm::Condition,
    reason: &str,
    t: DateTime<Utc>,
) -> Result<u64> {
    let r = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(t))
        .col_expr(session::Column::RevokedReason, Expr::value(reason))
        .filter(filter)
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    if r.rows_affected > 0 {
        crate::realtime::emit_in(
            conn,
            crate::realtime::NewEvent {
                kind: "session.revoked",
                case_id: None,
                audience: crate::realtime::Audience::Users(vec![user_id]),
                data: serde_json::json!({}),
            },
        )
        .await?;
    }
    Ok(r.rows_affected)
}

/// Revoke every live session of a user (disable, password change), except `keep`.
pub async fn revoke_user_sessions<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<u64> {
    let mut c = sea_orm::Condition::all().add(session::Column::UserId.eq(user_id));
    if let Some(k) = keep {
        c = c.add(session::Column::Id.ne(k));
    }
    revoke(conn, user_id, c, reason, now()).await
}

/// Rotate a refresh token. Presenting one that was already used revokes its whole family.
pub async fn refresh(state: &AppState, meta: &RequestMeta, token: &str) -> Result<Issued> {
    let source = meta.ip.as_deref().unwrap_or("unknown");
    state.limits.check(crate::limits::Action::Refresh, source)?;
    let t = now();
    let invalid = Error::Unauthorized(AuthFailure::InvalidToken);
    let hash = token_hash(token);
    let txn = state.db.begin_write().await?;
    let Some(row) = rt::Entity::find_by_id(hash.clone()).one(&*txn).await? else {
        drop(txn);
        state
            .audit
            .record(
                NewEntry::new("auth.refresh", "session")
                    .meta(meta)
                    .outcome(Outcome::Failure),
            )
            .await?;
        return Err(invalid);
    };
    let sess = session::Entity::find_by_id(row.session_id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    // Claim the token atomically; losing the race is the same as presenting a used token.
    let claimed = rt::Entity::update_many()
        .col_expr(rt::Column::UsedAt, Expr::value(t))
        .filter(rt::Column::TokenHash.eq(hash))
        .filter(rt::Column::UsedAt.is_null())
        .exec(&*txn)
        .await?
        .rows_affected
        == 1;
    let entry = NewEntry::new("auth.refresh", "session")
        .meta(meta)
        .actor(Some(sess.user_id))
        .resource(sess.id);
    if !claimed {
        revoke(
            &*txn,
            sess.user_id,
            sea_orm::Condition::all().add(session::Column::Id.eq(sess.id)),
            "refresh_reuse",
            t,
        )
        .await?;
        append_in(
            &*txn,
            vec![
                entry
                    .outcome(Outcome::Denied)
                    .details(serde_json::json!({"reason": "reuse; family revoked"})),
            ],
        )
        .await?;
        txn.commit().await?;
        return Err(invalid);
    }
    let user = users::service::find_active(&state.db, sess.user_id).await?;
    let (Some(user), true) = (user, sess.revoked_at.is_none() && sess.expires_at > t) else {
        drop(txn);
        state.audit.record(entry.outcome(Outcome::Failure)).await?;
        return Err(invalid);
    };
    let secret = random_token();
    insert_refresh(&*txn, sess.id, &secret, t).await?;
    let mut am: session::ActiveModel = sess.clone().into();
    am.last_used_at = Set(t);
    am.ip = Set(meta.ip.clone());
    am.update(&*txn).await?;
    append_in(&*txn, vec![entry]).await?;
    txn.commit().await?;
    Ok(Issued {
        access_token: state.tokens.issue(user.id, sess.id)?,
        expires_in: state.tokens.ttl_secs,
        secret,
        session_id: sess.id,
        user: UserView::from(user),
    })
}

/// Revoke the caller's session, and the one the refresh token belongs to if it is theirs.
pub async fn logout(state: &AppState, p: &Principal, refresh_token: Option<&str>) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let mut ids: Vec<Uuid> = p.session_id.into_iter().collect();
    if let Some(tok) = refresh_token
        && let Some(row) = rt::Entity::find_by_id(token_hash(tok)).one(&*txn).await?
    {
        ids.push(row.session_id);
    }
    let c = sea_orm::Condition::all()
        .add(session::Column::Id.is_in(ids))
        .add(session::Column::UserId.eq(p.user_id));
    revoke(&*txn, p.user_id, c, "logout", now()).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("auth.logout", "session")
                .by(p)
                .resource(p.session_id.unwrap_or_default()),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// A session as its owner sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub kind: String,
    pub device: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub current: bool,
}

pub async fn list_sessions(
    db: &Db,
    p: &Principal,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<SessionView>> {
    let after: Option<Uuid> = decode_cursor(cursor)?;
    let mut q = session::Entity::find()
        .filter(session::Column::UserId.eq(p.user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now()));
    if let Some(a) = after {
        q = q.filter(session::Column::Id.lt(a));
    }
    let rows = q
        .order_by_desc(session::Column::Id)
        .limit(limit.get() + 1)
        .all(db.conn())
        .await?;
    let items = rows
        .into_iter()
        .map(|s| SessionView {
            current: Some(s.id) == p.session_id,
            id: s.id,
            kind: s.kind,
            device: s.user_agent,
            ip: s.ip,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
        })
        .collect();
    Ok(page_from(items, limit, |s: &SessionView| s.id))
}

pub async fn revoke_session(state: &AppState, p: &Principal, id: Uuid) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let c = sea_orm::Condition::all()
        .add(session::Column::Id.eq(id))
        .add(session::Column::UserId.eq(p.user_id));
    let exists = session::Entity::find()
        .filter(c.clone())
        .one(&*txn)
        .await?
        .is_some();
    if !exists {
        return Err(Error::NotFound);
    }
    revoke(&*txn, p.user_id, c, "revoked_by_user", now()).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("session.revoke", "session")
                .by(p)
                .resource(id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

pub async fn change_password(
    state: &AppState,
    p: &Principal,
    current: SecretString,
    new: SecretString,
) -> Result<()> {
    let user = users::service::find_active(&state.db, p.user_id)
        .await?
        .ok_or(Error::NotFound)?;
    confirm_password(state, p, &user, &current, "user.password_change").await?;
    use secrecy::ExposeSecret;
    super::password::check_policy(new.expose_secret(), &user.email)
        .map_err(|m| Error::invalid("new_password", m))?;
    let hash = state.hasher.hash(&new).await?;
    let txn = state.db.begin_write().await?;
    users::service::set_password_hash(&*txn, p.user_id, &hash).await?;
    let revoked = revoke_user_sessions(&*txn, p.user_id, p.session_id, "password_changed").await?;
    security_notice_in(&*txn, &user, "Your password was changed").await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("user.password_change", "user")
                .by(p)
                .resource(p.user_id)
                .details(serde_json::json!({"sessions_revoked": revoked})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Re-authentication for account changes: the caller's current password, throttled like
/// sign-in guesses (a stolen session must not take the account over). A wrong one is
/// audited under `action` and answers 403.
async fn confirm_password(
    state: &AppState,
    p: &Principal,
    user: &users::entity::user::Model,
    current: &SecretString,
    action: &str,
) -> Result<()> {
    let key = throttle::account_key(&user.email);
    if let Some(secs) = throttle::locked_for(&state.db, &key, now()).await? {
        return Err(Error::RateLimited {
            retry_after_secs: secs,
        });
    }
    if state
        .hasher
        .verify(current, user.password_hash.as_deref())
        .await?
    {
        return Ok(());
    }
    throttle::record_failure(&state.db, &key, throttle::ACCOUNT_MAX_FAILURES, now()).await?;
    state
        .audit
        .record(
            NewEntry::new(action, "user")
                .by(p)
                .resource(p.user_id)
                .outcome(Outcome::Denied),
        )
        .await?;
    Err(Error::Forbidden("The current password is wrong."))
}

/// Tell the account's owner, in the same transaction as the change, that their sign-in
/// security changed: if it was not them, they learn of it (no secrets in the mail).
pub(crate) async fn security_notice_in<C: ConnectionTrait>(
    conn: &C,
    user: &users::entity::user::Model,
    what: &str,
) -> Result<()> {
    crate::mail::enqueue_in(
        conn,
        crate::mail::NewMail {
            kind: "security_notice",
            to_address: user.email.clone(),
            to_user_id: Some(user.id),
            subject: "Your account's sign-in settings changed".into(),
            text: format!(
                "Hello {},\n\n{what} on your client portal account just now.\n\nIf this was \
                 you, there is nothing to do. If it was not, reset your password from the sign-in \
                 page at once and contact the firm.\n",
                user.name
            ),
            attachments: Vec::new(),
        },
    )
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    /// Base32 secret, for manual entry.
    pub secret: String,
    pub otpauth_url: String,
}

/// `POST /me/totp/setup`. The contract takes no body; the web page asks for the current
/// password first ([`totp_setup_confirmed`]) and every change is mailed to the owner.
pub async fn totp_setup(state: &AppState, p: &Principal) -> Result<TotpSetup> {
    let user = users::service::find_active(&state.db, p.user_id)
        .await?
        .ok_or(Error::NotFound)?;
    totp_setup_for(state, p, user).await
}

/// Two-factor setup after re-entering the current password (the web page).
pub async fn totp_setup_confirmed(
    state: &AppState,
    p: &Principal,
    current: &SecretString,
) -> Result<TotpSetup> {
    let user = users::service::find_active(&state.db, p.user_id)
        .await?
        .ok_or(Error::NotFound)?;
    confirm_password(state, p, &user, current, "user.totp_setup").await?;
    totp_setup_for(state, p, user).await
}

async fn totp_setup_for(
    state: &AppState,
    p: &Principal,
    user: users::entity::user::Model,
) -> Result<TotpSetup> {
    if user.totp_enabled {
        return Err(Error::Conflict(
            "Two-factor authentication is already enabled; disable it first.".into(),
        ));
    }
    let secret = totp::generate_secret();
    let url = totp::otpauth_url(&secret, &user.email)
        .ok_or_else(|| anyhow::anyhow!("building otpauth url"))?;
    let sealed = state
        .keys
        .master
        .seal(&secret, &users::service::totp_context(user.id));
    let txn = state.db.begin_write().await?;
    users::service::set_totp(&*txn, user.id, Some(sealed), false).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("user.totp_setup", "user")
                .by(p)
                .resource(user.id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(TotpSetup {
        secret: totp::base32(&secret),
        otpauth_url: url,
    })
}

/// Enable (`enable = true`) or disable 2FA; either needs a valid, unused code.
pub async fn totp_toggle(state: &AppState, p: &Principal, code: &str, enable: bool) -> Result<()> {
    let user = users::service::find_active(&state.db, p.user_id)
        .await?
        .ok_or(Error::NotFound)?;
    match (enable, user.totp_enabled, user.totp_secret.is_some()) {
        (true, true, _) => {
            return Err(Error::Conflict(
                "Two-factor authentication is already enabled.".into(),
            ));
        }
        (true, false, false) => return Err(Error::Conflict("Call /me/totp/setup first.".into())),
        (false, false, _) => {
            return Err(Error::Conflict(
                "Two-factor authentication is not enabled.".into(),
            ));
        }
        _ => {}
    }
    // Codes are six digits: guesses with a stolen access token count against the same
    // per-account limit as password guesses.
    let key = throttle::account_key(&user.email);
    if let Some(secs) = throttle::locked_for(&state.db, &key, now()).await? {
        return Err(Error::RateLimited {
            retry_after_secs: secs,
        });
    }
    let Some(step) = users::service::check_totp(state, &user, code, now())? else {
        throttle::record_failure(&state.db, &key, throttle::ACCOUNT_MAX_FAILURES, now()).await?;
        return Err(Error::invalid("code", "is not a valid one-time code"));
    };
    let txn = state.db.begin_write().await?;
    if !users::service::consume_totp_step(&*txn, user.id, step).await? {
        return Err(Error::invalid(
            "code",
            "has already been used; wait for the next one",
        ));
    }
    if enable {
        users::service::set_totp(&*txn, user.id, user.totp_secret.clone(), true).await?;
    } else {
        users::service::set_totp(&*txn, user.id, None, false).await?;
    }
    let (action, notice) = if enable {
        ("user.totp_enable", "Two-step verification was turned on")
    } else {
        ("user.totp_disable", "Two-step verification was turned off")
    };
    security_notice_in(&*txn, &user, notice).await?;
    append_in(
        &*txn,
        vec![NewEntry::new(action, "user").by(p).resource(user.id)],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
