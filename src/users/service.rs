//! The rules for accounts: who may create, see and change whom.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    domain::{Email, PersonName, Phone, Role, TimeZoneName, UserStatus},
    entity::{invitation, user},
};
use crate::{
    AppState,
    audit::{NewEntry, Outcome, service::append_in},
    auth::{Principal, password::check_policy, service::revoke_user_sessions, totp},
    crypto::{random_token, token_hash},
    db::{Db, is_unique_violation, now},
    error::{Error, Result, Validator},
    http::{
        extract::RequestMeta,
        pagination::{Limit, Page, decode_cursor, page_from},
    },
};

/// A user as the API shows it. Never carries the password hash or TOTP secret.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub phone: Option<String>,
    pub timezone: String,
    pub totp_enabled: bool,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for UserView {
    fn from(m: user::Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            name: m.name,
            role: Role::parse(&m.role).unwrap_or(Role::Client),
            phone: m.phone,
            timezone: m.timezone,
            totp_enabled: m.totp_enabled,
            status: UserStatus::parse(&m.status).unwrap_or(UserStatus::Disabled),
            created_at: m.created_at,
        }
    }
}

pub async fn find_by_email(db: &Db, raw: &str) -> Result<Option<user::Model>> {
    let Ok(email) = Email::parse(raw) else {
        return Ok(None);
    };
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db.conn())
        .await?)
}

/// The user `id`, only while active: the one place that says what "active" means here.
fn active(id: Uuid) -> sea_orm::Select<user::Entity> {
    user::Entity::find_by_id(id).filter(user::Column::Status.eq(UserStatus::Active.as_str()))
}

pub async fn find_active(db: &Db, id: Uuid) -> Result<Option<user::Model>> {
    Ok(active(id).one(db.conn()).await?)
}

/// An active user's name and time zone: what a web page shows of its viewer, without reading
/// the row's secrets on every page.
pub async fn name_and_zone_of_active(db: &Db, id: Uuid) -> Result<Option<(String, String)>> {
    Ok(active(id)
        .select_only()
        .column(user::Column::Name)
        .column(user::Column::Timezone)
        .into_tuple()
        .one(db.conn())
        .await?)
}

/// Binds a sealed TOTP secret to its user, so it cannot be copied to another account.
pub fn totp_context(user_id: Uuid) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

/// Master-key rotation: seal every TOTP secret under `new` (secrets already sealed under
/// `new`, from an interrupted earlier run, are left alone). Returns how many were resealed.
pub async fn reseal_totp_secrets<C: ConnectionTrait>(
    conn: &C,
    old: &crate::crypto::MasterKey,
    new: &crate::crypto::MasterKey,
) -> Result<usize> {
    let rows: Vec<(Uuid, Option<Vec<u8>>)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::TotpSecret)
        .filter(user::Column::TotpSecret.is_not_null())
        .into_tuple()
        .all(conn)
        .await?;
    let mut n = 0;
    for (id, sealed) in rows {
        let Some(sealed) = sealed else { continue };
        let ctx = totp_context(id);
        if new.open(&sealed, &ctx).is_some() {
            continue;
        }
        let secret = old
            .open(&sealed, &ctx)
            .ok_or_else(|| anyhow::anyhow!("TOTP secret of {id} opens with neither key"))?;
        user::Entity::update_many()
            .col_expr(
                user::Column::TotpSecret,
                Expr::value(new.seal(&secret, &ctx)),
            )
            .filter(user::Column::Id.eq(id))
            .exec(conn)
            .await?;
        n += 1;
    }
    Ok(n)
}

/// The step of a valid code newer than the last one used, if the code is good.
pub fn check_totp(
    state: &AppState,
    u: &user::Model,
    code: &str,
    t: DateTime<Utc>,
) -> Result<Option<i64>> {
    let Some(sealed) = &u.totp_secret else {
        return Ok(None);
    };
    let secret = state
        .keys
        .master
        .open(sealed, &totp_context(u.id))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "TOTP secret of {} does not decrypt (master key changed?)",
                u.id
            )
        })?;
    Ok(totp::verify(&secret, &u.email, code, t.timestamp() as u64)
        .filter(|s| u.totp_last_step.is_none_or(|last| *s > last)))
}

/// Record a code's step as used; false if it (or a later one) already was.
pub async fn consume_totp_step<C: ConnectionTrait>(conn: &C, id: Uuid, step: i64) -> Result<bool> {
    let r = user::Entity::update_many()
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(id))
        .filter(
            sea_orm::Condition::any()
                .add(user::Column::TotpLastStep.is_null())
                .add(user::Column::TotpLastStep.lt(step)),
        )
        .exec(conn)
        .await?;
    Ok(r.rows_affected == 1)
}

pub async fn set_totp<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    secret: Option<Vec<u8>>,
    enabled: bool,
) -> Result<()> {
    user::Entity::update_many()
        .col_expr(user::Column::TotpSecret, Expr::value(secret))
        .col_expr(user::Column::TotpEnabled, Expr::value(enabled))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash<C: ConnectionTrait>(conn: &C, id: Uuid, hash: &str) -> Result<()> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Replace the password hash only if it is still `old` (a password-reset link is single use:
/// of two racing uses, one finds the hash already changed). True when it was replaced.
pub async fn replace_password_hash<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    old: Option<&str>,
    new: &str,
) -> Result<bool> {
    let mut q = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(new))
        .col_expr(user::Column::UpdatedAt, Expr::value(now()))
        .filter(user::Column::Id.eq(id));
    q = match old {
        Some(h) => q.filter(user::Column::PasswordHash.eq(h)),
        None => q.filter(user::Column::PasswordHash.is_null()),
    };
    Ok(q.exec(conn).await?.rows_affected == 1)
}

/// Input for a new account, as received (validated here).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: String,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
}

struct ValidUser {
    email: Email,
    name: PersonName,
    role: Role,
    phone: Option<Phone>,
    timezone: TimeZoneName,
}

fn validate_new(input: &NewUser, password_required: bool) -> Result<ValidUser> {
    let mut v = Validator::default();
    let email = v.check("email", Email::parse(&input.email));
    let name = v.check("name", PersonName::parse(&input.name));
    let role = v.check("role", Role::parse(&input.role));
    let phone = match &input.phone {
        Some(p) if !p.trim().is_empty() => v.check("phone", Phone::parse(p)).map(Some),
        _ => Some(None),
    };
    let timezone = v.check(
        "timezone",
        TimeZoneName::parse(input.timezone.as_deref().unwrap_or("UTC")),
    );
    match &input.password {
        Some(pw) => {
            v.check("password", check_policy(pw, &input.email));
        }
        None if password_required => v.push("password", "is required"),
        None => {}
    }
    v.finish()?;
    Ok(ValidUser {
        email: email.expect("checked"),
        name: name.expect("checked"),
        role: role.expect("checked"),
        phone: phone.expect("checked"),
        timezone: timezone.expect("checked"),
    })
}

/// Insert a validated user and its audit entry in the caller's transaction.
async fn insert_user<C: ConnectionTrait>(
    conn: &C,
    v: ValidUser,
    password_hash: Option<String>,
    entry: NewEntry,
) -> Result<user::Model> {
    let t = now();
    let id = Uuid::now_v7();
    let m = user::ActiveModel {
        id: Set(id),
        email: Set(v.email.as_str().to_owned()),
        name: Set(v.name.as_str().to_owned()),
        role: Set(v.role.as_str().to_owned()),
        status: Set(UserStatus::Active.as_str().to_owned()),
        phone: Set(v.phone.map(|p| p.as_str().to_owned())),
        timezone: Set(v.timezone.as_str().to_owned()),
        password_hash: Set(password_hash),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict("A user with this email already exists.".into())
        } else {
            e.into()
        }
    })?;
    append_in(
        conn,
        vec![
            entry
                .resource(id)
                .details(serde_json::json!({"email": m.email, "role": m.role})),
        ],
    )
    .await?;
    Ok(m)
}

async fn hash_opt(state: &AppState, pw: &Option<String>) -> Result<Option<String>> {
    match pw {
        Some(pw) => Ok(Some(
            state.hasher.hash(&SecretString::from(pw.clone())).await?,
        )),
        None => Ok(None),
    }
}

/// `POST /users` (admin) and `lawfirm-pro user create` (system).
pub async fn create_user(state: &AppState, p: &Principal, input: NewUser) -> Result<UserView> {
    if !p.is_admin() {
        return Err(Error::Forbidden("Only admins may create users."));
    }
    let v = validate_new(&input, false)?;
    let hash = hash_opt(state, &input.password).await?;
    let txn = state.db.begin_write().await?;
    let m = insert_user(&*txn, v, hash, NewEntry::new("user.create", "user").by(p)).await?;
    txn.commit().await?;
    Ok(m.into())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Registration {
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
    pub name: String,
}

/// `POST /auth/register`: clients sign themselves up, only where the firm allows it.
pub async fn register(state: &AppState, meta: &RequestMeta, r: Registration) -> Result<UserView> {
    if !state.config.open_registration {
        return Err(Error::Forbidden(
            "Self-registration is closed; ask your firm for an invitation.",
        ));
    }
    let source = meta.ip.as_deref().unwrap_or("unknown");
    state
        .limits
        .check(crate::limits::Action::Register, source)?;
    let input = NewUser {
        email: r.email,
        name: r.name,
        role: Role::Client.as_str().into(),
        password: Some(r.password),
        phone: None,
        timezone: None,
    };
    let v = validate_new(&input, true)?;
    let hash = hash_opt(state, &input.password).await?;
    let txn = state.db.begin_write().await?;
    let m = insert_user(
        &*txn,
        v,
        hash,
        NewEntry::new("user.register", "user").meta(meta),
    )
    .await?;
    txn.commit().await?;
    Ok(m.into())
}

/// `GET /users/{id}`: admins see anyone; everyone sees themselves.
pub async fn get_user(state: &AppState, p: &Principal, id: Uuid) -> Result<UserView> {
    if !p.is_admin() && p.user_id != id {
        return Err(Error::Forbidden("Only admins may read other users."));
    }
    let m = user::Entity::find_by_id(id)
        .one(state.db.conn())
        .await?
        .ok_or(Error::NotFound)?;
    Ok(m.into())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct UserFilter {
    /// Matches name or email (case-insensitive substring).
    pub q: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /users`: staff search the directory (non-admins see active users only), by name.
pub async fn list_users(state: &AppState, p: &Principal, f: UserFilter) -> Result<Page<UserView>> {
    if !p.is_staff() {
        return Err(Error::Forbidden("Only staff may list users."));
    }
    let limit = Limit::parse(f.limit)?;
    let after: Option<(String, Uuid)> = decode_cursor(f.cursor.as_deref())?;
    let mut q = user::Entity::find();
    if let Some(r) = f.role.as_deref().filter(|s| !s.is_empty()) {
        let r = Role::parse(r).map_err(|m| Error::invalid("role", m))?;
        q = q.filter(user::Column::Role.eq(r.as_str()));
    }
    let status = match f.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(UserStatus::parse(s).map_err(|m| Error::invalid("status", m))?),
        None => None,
    };
    let status = if p.is_admin() {
        status
    } else {
        Some(UserStatus::Active)
    };
    if let Some(s) = status {
        q = q.filter(user::Column::Status.eq(s.as_str()));
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if text.chars().count() > 100 || text.chars().any(char::is_control) {
            return Err(Error::invalid("q", "must be at most 100 characters"));
        }
        let pattern = format!(
            "%{}%",
            text.to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        q = q.filter(
            sea_orm::Condition::any()
                .add(
                    Expr::expr(Func::lower(Expr::col(user::Column::Name)))
                        .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')),
                )
                .add(
                    Expr::col(user::Column::Email)
                        .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
                ),
        );
    }
    if let Some((name, id)) = after {
        q = q.filter(
            sea_orm::Condition::any()
                .add(user::Column::Name.gt(name.clone()))
                .add(
                    sea_orm::Condition::all()
                        .add(user::Column::Name.eq(name))
                        .add(user::Column::Id.gt(id)),
                ),
        );
    }
    let rows = q
        .order_by_asc(user::Column::Name)
        .order_by_asc(user::Column::Id)
        .limit(limit.get() + 1)
        .all(state.db.conn())
        .await?;
    let items: Vec<UserView> = rows.into_iter().map(Into::into).collect();
    let page = page_from(items, limit, |u: &UserView| (u.name.clone(), u.id));
    // Clients' names, emails and phones are client data: which ones the page shows (not the
    // look-ahead row) is audited, as a case list names its cases.
    let clients: Vec<Uuid> = page
        .items
        .iter()
        .filter(|u| u.role == Role::Client)
        .map(|u| u.id)
        .collect();
    if !clients.is_empty() {
        state
            .audit
            .record(
                NewEntry::new("user.list", "user")
                    .by(p)
                    .details(serde_json::json!({
                        "count": page.items.len(),
                        "client_ids": clients,
                        "q": f.q,
                        "role": f.role,
                    })),
            )
            .await?;
    }
    Ok(page)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role: Option<String>,
    pub status: Option<String>,
}

/// `PATCH /users/{id}` (admin): role, status, name. Disabling ends every session at once.
pub async fn update_user(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    patch: UserPatch,
) -> Result<UserView> {
    if !p.is_admin() {
        return Err(Error::Forbidden("Only admins may change users."));
    }
    let mut v = Validator::default();
    let name = patch
        .name
        .as_deref()
        .and_then(|n| v.check("name", PersonName::parse(n)));
    let role = patch
        .role
        .as_deref()
        .and_then(|r| v.check("role", Role::parse(r)));
    let status = patch
        .status
        .as_deref()
        .and_then(|s| v.check("status", UserStatus::parse(s)));
    v.finish()?;
    if id == p.user_id
        && (role.is_some_and(|r| r != Role::Admin) || status == Some(UserStatus::Disabled))
    {
        return Err(Error::Conflict(
            "Admins cannot demote or disable themselves.".into(),
        ));
    }
    let txn = state.db.begin_write().await?;
    let m = user::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    let before = UserView::from(m.clone());
    let mut am: user::ActiveModel = m.into();
    if let Some(n) = &name {
        am.name = Set(n.as_str().to_owned());
    }
    if let Some(r) = role {
        am.role = Set(r.as_str().to_owned());
    }
    if let Some(s) = status {
        am.status = Set(s.as_str().to_owned());
    }
    am.updated_at = Set(now());
    let m = am.update(&*txn).await?;
    let mut revoked = 0;
    if status == Some(UserStatus::Disabled) || role.is_some_and(|r| r != before.role) {
        revoked = revoke_user_sessions(&*txn, id, None, "account_changed").await?;
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("user.update", "user")
                .by(p)
                .resource(id)
                .details(serde_json::json!({
                    "role": [before.role, role.unwrap_or(before.role)],
                    "status": [before.status, status.unwrap_or(before.status)],
                    "name_changed": name.is_some(),
                    "sessions_revoked": revoked,
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(m.into())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    pub name: Option<String>,
    /// Empty string clears it.
    pub phone: Option<String>,
    pub timezone: Option<String>,
}

/// `PATCH /me`: a person edits their own profile (never their role or status).
pub async fn update_me(state: &AppState, p: &Principal, patch: MePatch) -> Result<UserView> {
    let mut v = Validator::default();
    let name = patch
        .name
        .as_deref()
        .and_then(|n| v.check("name", PersonName::parse(n)));
    let phone = match patch.phone.as_deref().map(str::trim) {
        Some("") => Some(None),
        Some(ph) => v.check("phone", Phone::parse(ph)).map(Some),
        None => None,
    };
    let tz = patch
        .timezone
        .as_deref()
        .and_then(|t| v.check("timezone", TimeZoneName::parse(t)));
    v.finish()?;
    let txn = state.db.begin_write().await?;
    let m = user::Entity::find_by_id(p.user_id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    let mut am: user::ActiveModel = m.into();
    if let Some(n) = name {
        am.name = Set(n.as_str().to_owned());
    }
    if let Some(ph) = phone {
        am.phone = Set(ph.map(|x| x.as_str().to_owned()));
    }
    if let Some(tz) = tz {
        am.timezone = Set(tz.as_str().to_owned());
    }
    am.updated_at = Set(now());
    let m = am.update(&*txn).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("user.update_profile", "user")
                .by(p)
                .resource(p.user_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(m.into())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InvitationInput {
    pub email: String,
    pub role: String,
    pub case_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationCreated {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// Present only when no mailer is configured: hand it to the invitee yourself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /invitations`: admins invite anyone; attorneys invite clients.
pub async fn create_invitation(
    state: &AppState,
    p: &Principal,
    input: InvitationInput,
) -> Result<InvitationCreated> {
    state
        .limits
        .check(crate::limits::Action::Invitation, &p.user_id.to_string())?;
    let mut v = Validator::default();
    let email = v.check("email", Email::parse(&input.email));
    let role = v.check("role", Role::parse(&input.role));
    v.finish()?;
    let (email, role) = (email.expect("checked"), role.expect("checked"));
    match (p.role, role) {
        (Role::Admin, _) | (Role::Attorney, Role::Client) => {}
        (Role::Attorney, _) => return Err(Error::Forbidden("Attorneys may invite clients only.")),
        _ => return Err(Error::Forbidden("Your role may not invite people.")),
    }
    if find_by_email(&state.db, email.as_str()).await?.is_some() {
        return Err(Error::Conflict(
            "A user with this email already exists.".into(),
        ));
    }
    if let Some(case_id) = input.case_id {
        let a = crate::cases::access::require(state, state.db.conn(), p, case_id).await?;
        if !a.is_lead(p) {
            return Err(Error::Forbidden(
                "Only the case's lead attorney or an admin may invite to it.",
            ));
        }
    }
    let txn = state.db.begin_write().await?;
    let (id, token, expires_at) =
        insert_invitation(state, &*txn, p, email.as_str(), role, input.case_id).await?;
    // Mailed only if the invitation commits (same transaction); the worker delivers it.
    let base = state.config.public_url.as_str().trim_end_matches('/');
    crate::mail::enqueue_in(
        &*txn,
        crate::mail::NewMail {
            kind: "invitation",
            to_address: email.as_str().to_owned(),
            to_user_id: None,
            subject: "You are invited to your law firm's client portal".into(),
            text: format!(
                "Hello,\n\nYou have been invited to the client portal. Choose your name and \
                 password here (the link works once, until {}):\n\n{base}/invitation?token={token}\n\n\
                 If you did not expect this, ignore this message.\n",
                expires_at.format("%Y-%m-%d %H:%M UTC"),
            ),
            attachments: Vec::new(),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(InvitationCreated {
        id,
        expires_at,
        // With a mailer the link goes to the invitee alone: whoever invites must not be able
        // to accept in their place (an account in someone else's name).
        token: state.config.smtp_url.is_none().then_some(token),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AcceptInvitation {
    pub token: String,
    /// Only for the first-run setup invitation, which names no email.
    pub email: Option<String>,
    pub name: String,
    #[schema(format = Password)]
    pub password: String,
}

async fn insert_invitation<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    email: &str,
    role: Role,
    case_id: Option<Uuid>,
) -> Result<(Uuid, String, DateTime<Utc>)> {
    let token = random_token();
    let t = now();
    let id = Uuid::now_v7();
    let expires_at = t + Duration::hours(state.config.invitation_ttl_hours);
    invitation::ActiveModel {
        id: Set(id),
        email: Set(email.to_owned()),
        role: Set(role.as_str().to_owned()),
        case_id: Set(case_id),
        token_hash: Set(token_hash(&token)),
        invited_by: Set(p.actor_id()),
        expires_at: Set(expires_at),
        accepted_at: Set(None),
        accepted_user_id: Set(None),
        created_at: Set(t),
    }
    .insert(conn)
    .await?;
    append_in(
        conn,
        vec![
            NewEntry::new("invitation.create", "invitation")
                .by(p)
                .resource(id)
                .details(serde_json::json!({
                    "email": email, "role": role.as_str(), "case_id": case_id
                })),
        ],
    )
    .await?;
    Ok((id, token, expires_at))
}

/// Whether an invitation link can still be used (not accepted, not expired), so its page can
/// say so before anyone fills in the form.
pub async fn invitation_is_open(state: &AppState, token: &str) -> Result<bool> {
    Ok(invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(token_hash(token.trim())))
        .one(state.db.conn())
        .await?
        .is_some_and(|i| i.accepted_at.is_none() && i.expires_at > now()))
}

/// `POST /auth/accept-invitation`: single use, before expiry; sets name and password.
pub async fn accept_invitation(
    state: &AppState,
    meta: &RequestMeta,
    a: AcceptInvitation,
) -> Result<UserView> {
    let inv = invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(token_hash(a.token.trim())))
        .one(state.db.conn())
        .await?;
    let Some(inv) = inv.filter(|i| i.accepted_at.is_none() && i.expires_at > now()) else {
        state
            .audit
            .record(
                NewEntry::new("invitation.accept", "invitation")
                    .meta(meta)
                    .outcome(Outcome::Failure),
            )
            .await?;
        return Err(Error::NotFound);
    };
    let email = if inv.email.is_empty() {
        a.email.unwrap_or_default()
    } else {
        inv.email.clone()
    };
    let input = NewUser {
        email,
        name: a.name,
        role: inv.role.clone(),
        password: Some(a.password),
        phone: None,
        timezone: None,
    };
    let v = validate_new(&input, true)?;
    let hash = hash_opt(state, &input.password).await?;
    let txn = state.db.begin_write().await?;
    // Claim the invitation first: two racing accepts cannot both succeed.
    let claimed = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(now()))
        .filter(invitation::Column::Id.eq(inv.id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .exec(&*txn)
        .await?
        .rows_affected
        == 1;
    // A setup link (no email) only works while the firm has no users at all.
    let setup_spent = inv.email.is_empty() && user::Entity::find().count(&*txn).await? > 0;
    if !claimed || setup_spent {
        return Err(Error::NotFound);
    }
    // The case row before the audit head (insert_user appends an entry), in the order every
    // other write to a case takes them: the reverse can deadlock on PostgreSQL.
    if let Some(case_id) = inv.case_id {
        crate::cases::members::lock_case(&*txn, case_id).await?;
    }
    let m = insert_user(
        &*txn,
        v,
        hash,
        NewEntry::new("invitation.accept", "user").meta(meta),
    )
    .await?;
    invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedUserId, Expr::value(m.id))
        .filter(invitation::Column::Id.eq(inv.id))
        .exec(&*txn)
        .await?;
    join_invited_case(&*txn, &inv, &m, meta).await?;
    txn.commit().await?;
    Ok(m.into())
}

/// The case an invitation names (`POST /invitations {case_id}`): the new user joins it in the
/// acceptance's transaction, as the member role their firm role fits (admins see every case
/// and join none), if whoever invited them still may add people to it (an active admin, or
/// its lead attorney, as when they invited). If not, the account is made without the case
/// and the audit entry says so: an invitation does not outlive its inviter's authority.
async fn join_invited_case<C: ConnectionTrait>(
    conn: &C,
    inv: &invitation::Model,
    user: &user::Model,
    meta: &RequestMeta,
) -> Result<()> {
    use crate::cases::{access::membership, domain::MemberRole, entity::legal_case};
    let Some(case_id) = inv.case_id else {
        return Ok(());
    };
    let role = match Role::parse(&user.role) {
        Ok(Role::Client) => MemberRole::Client,
        Ok(Role::Paralegal) => MemberRole::Paralegal,
        Ok(Role::Attorney) => MemberRole::Attorney,
        _ => return Ok(()),
    };
    let may = match inv.invited_by {
        Some(by) => match active_roles(conn, &[by]).await?.get(&by) {
            Some(Role::Admin) => legal_case::Entity::find_by_id(case_id).count(conn).await? > 0,
            // As `CaseAccess::is_lead`: still an attorney in the firm, not only on the case.
            Some(Role::Attorney) => {
                membership(conn, case_id, by).await? == Some(MemberRole::LeadAttorney)
            }
            Some(_) => false,
            None => false,
        },
        None => false,
    };
    let entry = NewEntry::new("case.member_add", "case")
        .meta(meta)
        .actor(Some(user.id));
    let details = serde_json::json!({"invitation_id": inv.id, "invited_by": inv.invited_by});
    if may {
        return crate::cases::members::insert_member(conn, case_id, user.id, role, entry, details)
            .await;
    }
    append_in(
        conn,
        vec![
            entry
                .resource(case_id)
                .case(case_id)
                .outcome(Outcome::Failure)
                .details(serde_json::json!({
                    "user_id": user.id, "role": role, "invitation_id": inv.id,
                    "invited_by": inv.invited_by,
                    "reason": "whoever invited them may no longer add people to this case",
                })),
        ],
    )
    .await?;
    Ok(())
}

/// On a start with no users, print a one-time link that makes the first admin. The setup
/// invitation names no email: whoever holds the link chooses it.
pub async fn announce_first_run(state: &AppState) -> anyhow::Result<()> {
    if user::Entity::find().count(state.db.conn()).await? > 0 {
        return Ok(());
    }
    let txn = state.db.begin_write().await?;
    let (id, token, expires_at) =
        insert_invitation(state, &*txn, &Principal::system(), "", Role::Admin, None).await?;
    txn.commit().await?;
    tracing::info!(invitation = %id, "no users yet: printed a one-time setup link");
    let base = state.config.public_url.as_str().trim_end_matches('/');
    eprintln!(
        "\n  No users yet. Create the first admin (link valid until {}):\n\n    {base}/setup?token={token}\n\n  \
         or: curl -X POST {base}/api/v1/auth/accept-invitation -H 'content-type: application/json' \\\n        \
         -d '{{\"token\":\"{token}\",\"email\":\"you@firm.example\",\"name\":\"Your Name\",\"password\":\"…\"}}'\n  \
         or: lawfirm-pro user create --role admin --email you@firm.example --name 'Your Name' --password-stdin\n",
        expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    Ok(())
}

/// Names and roles of the given users, in one query (for member lists and conflict checks).
pub async fn names_of<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, (String, Role)>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    // Only what is returned: no password hash or TOTP secret is read to show a name.
    let rows: Vec<(Uuid, String, String)> = user::Entity::find()
        .select_only()
        .columns([user::Column::Id, user::Column::Name, user::Column::Role])
        .filter(user::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, role)| (id, (name, Role::parse(&role).unwrap_or(Role::Client))))
        .collect())
}

/// Active users among `ids` with their roles (to validate case membership requests).
pub async fn active_roles<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Role>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = user::Entity::find()
        .filter(user::Column::Id.is_in(ids.to_vec()))
        .filter(user::Column::Status.eq(UserStatus::Active.as_str()))
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|u| Role::parse(&u.role).ok().map(|r| (u.id, r)))
        .collect())
}

/// Every client's id and name, for firm-wide conflict checks.
pub async fn all_clients(db: &Db) -> Result<Vec<(Uuid, String)>> {
    let rows: Vec<(Uuid, String)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Name)
        .filter(user::Column::Role.eq(Role::Client.as_str()))
        .into_tuple()
        .all(db.conn())
        .await?;
    Ok(rows)
}

/// Active clients, by name, for whoever may open a matter for one (attorneys and admins,
/// the same rule as `POST /cases`).
pub async fn client_choices(state: &AppState, p: &Principal) -> Result<Vec<(Uuid, String)>> {
    if !matches!(p.role, Role::Admin | Role::Attorney) {
        return Err(Error::Forbidden("Only attorneys and admins open matters."));
    }
    Ok(user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Name)
        .filter(user::Column::Role.eq(Role::Client.as_str()))
        .filter(user::Column::Status.eq(UserStatus::Active.as_str()))
        .order_by_asc(user::Column::Name)
        .into_tuple()
        .all(state.db.conn())
        .await?)
}

/// Email addresses of the active users among `ids`, in one query (for mail notices).
pub async fn active_emails_of<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, String)> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .column(user::Column::Email)
        .filter(user::Column::Id.is_in(ids.to_vec()))
        .filter(user::Column::Status.eq(UserStatus::Active.as_str()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}
