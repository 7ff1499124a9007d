//! Documents on a case: upload, versions, reading, changing, holds, deletion, listing, search
//! and statistics. Every function takes the acting principal and decides visibility itself.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, JoinType, Query, SelectStatement},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    domain::Confidentiality,
    entity::{case_hold, document, member_document, upload, version},
    upload::Stored,
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    cases::{
        access::{self, CaseAccess},
        domain::MemberRole,
        entity::member,
    },
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, decode_cursor, page_from},
    realtime::{self, Audience, NewEvent},
    users::domain::Role,
};

/// A document as the API shows it (the facts of its latest version).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub title: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub version: i32,
    pub confidentiality: Confidentiality,
    pub uploaded_by: Uuid,
    /// On hold by itself or through its case.
    pub legal_hold: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: i32,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// A stored confidentiality; unknown values are treated as the most restrictive.
fn stored_conf(stored: &str) -> Confidentiality {
    Confidentiality::parse(stored).unwrap_or(Confidentiality::Privileged)
}

fn conf_of(d: &document::Model) -> Confidentiality {
    stored_conf(&d.confidentiality)
}

fn view(d: document::Shown, case_held: bool) -> DocumentView {
    DocumentView {
        id: d.id,
        case_id: d.case_id,
        confidentiality: stored_conf(&d.confidentiality),
        title: d.title,
        filename: d.filename,
        content_type: d.content_type,
        size: d.size,
        sha256: d.sha256,
        version: d.version,
        uploaded_by: d.uploaded_by,
        legal_hold: d.legal_hold || case_held,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// Views of many documents with their case holds in one query.
async fn views<C: ConnectionTrait>(
    conn: &C,
    docs: Vec<document::Shown>,
) -> Result<Vec<DocumentView>> {
    let mut case_ids: Vec<Uuid> = docs.iter().map(|d| d.case_id).collect();
    case_ids.sort();
    case_ids.dedup();
    let held: std::collections::HashSet<Uuid> = if case_ids.is_empty() {
        Default::default()
    } else {
        case_hold::Entity::find()
            .select_only()
            .column(case_hold::Column::CaseId)
            .filter(case_hold::Column::CaseId.is_in(case_ids))
            .into_tuple::<Uuid>()
            .all(conn)
            .await?
            .into_iter()
            .collect()
    };
    Ok(docs
        .into_iter()
        .map(|d| {
            let on_hold = held.contains(&d.case_id);
            view(d, on_hold)
        })
        .collect())
}

async fn case_held<C: ConnectionTrait>(conn: &C, case_id: Uuid) -> Result<bool> {
    Ok(case_hold::Entity::find_by_id(case_id)
        .one(conn)
        .await?
        .is_some())
}

/// A live document the caller may see, with their access to its case; otherwise `NotFound`
/// (and a denial in the audit trail when it exists).
pub(super) async fn load_visible<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<(document::Model, CaseAccess)> {
    let Some(d) = document::Entity::find_by_id(id)
        .filter(document::Column::DeletedAt.is_null())
        .one(conn)
        .await?
    else {
        return Err(Error::NotFound);
    };
    let a = access::require(state, conn, p, d.case_id).await?;
    if !conf_of(&d).visible_to(p.role, a.role) {
        return Err(state.audit.deny_hidden(
            p,
            NewEntry::new("document.access", "document")
                .resource(id)
                .case(d.case_id),
        ));
    }
    Ok((d, a))
}

/// Who receives live events about a document of this confidentiality.
async fn audience<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    c: Confidentiality,
) -> Result<Audience> {
    Ok(match c {
        Confidentiality::Shared => Audience::Case,
        Confidentiality::Internal => Audience::CaseStaff,
        // The same rule as reading it ([`Confidentiality::visible_to`]): attorneys on the case
        // who are still attorneys (or admins) in the firm, not a demoted account's case row.
        Confidentiality::Privileged => {
            let members = access::members_of(conn, case_id).await?;
            let ids: Vec<Uuid> = members.iter().map(|(u, _)| *u).collect();
            let firm = crate::users::service::active_roles(conn, &ids).await?;
            Audience::Attorneys(
                members
                    .into_iter()
                    .filter(|(u, r)| firm.get(u).is_some_and(|f| c.visible_to(*f, Some(*r))))
                    .map(|(u, _)| u)
                    .collect(),
            )
        }
    })
}

async fn emit<C: ConnectionTrait>(
    conn: &C,
    kind: &'static str,
    d: &document::Model,
    data: serde_json::Value,
) -> Result<()> {
    let audience = audience(conn, d.case_id, conf_of(d)).await?;
    realtime::emit_in(
        conn,
        NewEvent {
            kind,
            case_id: Some(d.case_id),
            audience,
            data,
        },
    )
    .await?;
    Ok(())
}

fn check_title(v: &mut Validator, s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        v.push("title", "must not be empty");
        None
    } else if t.chars().count() > 300 || t.chars().any(char::is_control) {
        v.push(
            "title",
            "must be at most 300 characters without control characters",
        );
        None
    } else {
        Some(t.to_string())
    }
}

/// Whether a caller may put a document of this confidentiality on a case they can see.
fn may_file(p: &Principal, a: &CaseAccess, c: Confidentiality) -> Result<()> {
    if c == Confidentiality::Shared {
        return Ok(());
    }
    if !a.is_staff(p) {
        return Err(Error::Forbidden(
            "Clients may only upload documents shared with the client.",
        ));
    }
    if !c.visible_to(p.role, a.role) {
        return Err(Error::Forbidden(
            "Only attorneys on the case may file privileged documents.",
        ));
    }
    Ok(())
}

/// Before reading an upload's body: the case must be visible (404 otherwise) and, when the
/// form already named it, the confidentiality allowed (403). Nothing is stored yet.
pub async fn precheck_upload(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    confidentiality: Option<&str>,
) -> Result<()> {
    let a = access::require(state, state.db.conn(), p, case_id).await?;
    if let Some(c) = confidentiality.and_then(|c| Confidentiality::parse(c).ok()) {
        may_file(p, &a, c)?;
    }
    state
        .limits
        .check(crate::limits::Action::Upload, &p.user_id.to_string())
}

/// Before reading a new version's body: the document must be visible.
pub async fn precheck_version(state: &AppState, p: &Principal, id: Uuid) -> Result<()> {
    load_visible(state, state.db.conn(), p, id).await?;
    state
        .limits
        .check(crate::limits::Action::Upload, &p.user_id.to_string())
}

/// The form of an upload after its file has been stored.
pub struct NewDocument {
    pub title: Option<String>,
    pub confidentiality: Option<String>,
    pub file: Stored,
}

async fn insert_version<C: ConnectionTrait>(
    conn: &C,
    document_id: Uuid,
    number: i32,
    s: &Stored,
    p: &Principal,
    t: DateTime<Utc>,
) -> Result<()> {
    version::ActiveModel {
        id: Set(s.version_id),
        document_id: Set(document_id),
        version: Set(number),
        object_key: Set(s.object_key.clone()),
        filename: Set(s.filename.clone()),
        content_type: Set(s.kind.mime().into()),
        size: Set(s.size as i64),
        sha256: Set(s.sha256.clone()),
        wrapped_key: Set(s.wrapped_key.clone()),
        nonce_prefix: Set(s.nonce_prefix.to_vec()),
        uploaded_by: Set(p.user_id),
        created_at: Set(t),
    }
    .insert(conn)
    .await
    .map_err(|e| {
        // Two versions sent at once (on PostgreSQL both read the document before either
        // commits) claim the same number: the second is told to send again, not given a 500.
        if crate::db::is_unique_violation(&e) {
            Error::Conflict(
                "Another version of this document was added at the same moment; send it again."
                    .into(),
            )
        } else {
            e.into()
        }
    })?;
    // The object now belongs to a version: taking its unclaimed registration is what keeps
    // discards away (upload::discard). None means a discard claimed it first (the sweeper, for
    // an upload older than a day) and is removing the object: this version must not point at it.
    let claimed = upload::Entity::delete_many()
        .filter(upload::Column::ObjectKey.eq(s.object_key.clone()))
        .filter(upload::Column::ClaimedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected;
    if claimed != 1 {
        return Err(Error::Conflict(
            "The upload was started too long ago and has been discarded; send the file again."
                .into(),
        ));
    }
    Ok(())
}

/// `POST /cases/{id}/documents`: the stored file becomes a visible document, or is discarded.
pub async fn create_document(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewDocument,
) -> Result<DocumentView> {
    let key = input.file.object_key.clone();
    let r = create_inner(state, p, case_id, input).await;
    if r.is_err() {
        super::upload::discard(state, &key).await;
    }
    r
}

async fn create_inner(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewDocument,
) -> Result<DocumentView> {
    let mut v = Validator::default();
    let conf = v.check(
        "confidentiality",
        Confidentiality::parse(input.confidentiality.as_deref().unwrap_or("shared")),
    );
    let s = input.file;
    let title = match input.title.as_deref() {
        Some(t) => check_title(&mut v, t),
        None => Some(s.filename.chars().take(300).collect()),
    };
    v.finish()?;
    let (conf, title) = (conf.expect("checked"), title.expect("checked"));
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    may_file(p, &a, conf)?;
    let t = crate::db::now();
    let id = Uuid::now_v7();
    let d = document::ActiveModel {
        id: Set(id),
        case_id: Set(case_id),
        title: Set(title),
        filename: Set(s.filename.clone()),
        content_type: Set(s.kind.mime().into()),
        size: Set(s.size as i64),
        sha256: Set(s.sha256.clone()),
        version: Set(1),
        confidentiality: Set(conf.as_str().into()),
        uploaded_by: Set(p.user_id),
        legal_hold: Set(false),
        search_text: Set(if s.kind.is_text() {
            s.search_text.clone()
        } else {
            String::new()
        }),
        deleted_at: Set(None),
        deleted_by: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(&*txn)
    .await?;
    insert_version(&*txn, id, 1, &s, p, t).await?;
    emit(
        &*txn,
        "document.created",
        &d,
        serde_json::json!({"document_id": id, "title": d.title, "content_type": d.content_type}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("document.upload", "document")
                .by(p)
                .resource(id)
                .case(case_id)
                .details(serde_json::json!({
                    "version": 1, "size": s.size, "sha256": s.sha256,
                    "content_type": d.content_type, "confidentiality": conf,
                })),
        ],
    )
    .await?;
    let held = case_held(&*txn, case_id).await?;
    txn.commit().await?;
    Ok(view(d.into(), held))
}

/// `POST /documents/{id}/versions`: a new latest version; history is kept.
pub async fn add_version(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    s: Stored,
) -> Result<DocumentView> {
    let key = s.object_key.clone();
    let r = async {
        let txn = state.db.begin_write().await?;
        let (d, _) = load_visible(state, &*txn, p, id).await?;
        let t = crate::db::now();
        let number = d.version + 1;
        insert_version(&*txn, id, number, &s, p, t).await?;
        let mut am: document::ActiveModel = d.clone().into();
        am.filename = Set(s.filename.clone());
        am.content_type = Set(s.kind.mime().into());
        am.size = Set(s.size as i64);
        am.sha256 = Set(s.sha256.clone());
        am.version = Set(number);
        am.search_text = Set(if s.kind.is_text() {
            s.search_text.clone()
        } else {
            String::new()
        });
        am.updated_at = Set(t);
        let d = am.update(&*txn).await?;
        emit(
            &*txn,
            "document.updated",
            &d,
            serde_json::json!({"document_id": id, "change": "version", "version": number}),
        )
        .await?;
        append_in(
            &*txn,
            vec![
                NewEntry::new("document.version_add", "document")
                    .by(p)
                    .resource(id)
                    .case(d.case_id)
                    .details(serde_json::json!({
                        "version": number, "size": s.size, "sha256": s.sha256,
                        "content_type": d.content_type,
                    })),
            ],
        )
        .await?;
        let held = case_held(&*txn, d.case_id).await?;
        txn.commit().await?;
        Ok(view(d.into(), held))
    }
    .await;
    if r.is_err() {
        super::upload::discard(state, &key).await;
    }
    r
}

/// `GET /documents/{id}`.
pub async fn get_document(state: &AppState, p: &Principal, id: Uuid) -> Result<DocumentView> {
    let conn = state.db.conn();
    let (d, a) = load_visible(state, conn, p, id).await?;
    let entry = read_entry(p, &a, &d, "document.read", serde_json::json!({}));
    let held = state
        .audit
        .while_reading(entry, case_held(conn, d.case_id))
        .await?;
    Ok(view(d.into(), held))
}

/// The audit entry of an authorised read of one document.
pub(super) fn read_entry(
    p: &Principal,
    a: &CaseAccess,
    d: &document::Model,
    action: &str,
    mut details: serde_json::Value,
) -> NewEntry {
    if a.admin_access(p) {
        details["admin_access"] = true.into();
    }
    NewEntry::new(action, "document")
        .by(p)
        .resource(d.id)
        .case(d.case_id)
        .details(details)
}

/// `GET /documents/{id}/versions`, newest first.
pub async fn versions(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<VersionView>> {
    let conn = state.db.conn();
    let (d, a) = load_visible(state, conn, p, id).await?;
    let after: Option<i32> = decode_cursor(cursor)?;
    let mut q = version::Entity::find().filter(version::Column::DocumentId.eq(id));
    if let Some(n) = after {
        q = q.filter(version::Column::Version.lt(n));
    }
    let read = async {
        Ok(q.order_by_desc(version::Column::Version)
            .limit(limit.get() + 1)
            .all(conn)
            .await?)
    };
    let entry = read_entry(p, &a, &d, "document.versions_read", serde_json::json!({}));
    let rows = state.audit.while_reading(entry, read).await?;
    let items = rows
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            filename: v.filename,
            content_type: v.content_type,
            size: v.size,
            sha256: v.sha256,
            uploaded_by: v.uploaded_by,
            created_at: v.created_at,
        })
        .collect();
    Ok(page_from(items, limit, |v: &VersionView| v.version))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    pub title: Option<String>,
    pub confidentiality: Option<String>,
}

/// `PATCH /documents/{id}` (staff on the case). Confidentiality changes are audited with both values.
pub async fn patch_document(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    patch: DocumentPatch,
) -> Result<DocumentView> {
    let mut v = Validator::default();
    let title = patch.title.as_deref().and_then(|t| check_title(&mut v, t));
    let conf = patch
        .confidentiality
        .as_deref()
        .and_then(|c| v.check("confidentiality", Confidentiality::parse(c)));
    v.finish()?;
    let txn = state.db.begin_write().await?;
    let (d, a) = load_visible(state, &*txn, p, id).await?;
    if !a.is_staff(p) {
        return Err(Error::Forbidden(
            "Only the legal team of the case may change a document.",
        ));
    }
    if let Some(c) = conf {
        // Nobody files a document where they themselves could no longer see it.
        may_file(p, &a, c)?;
    }
    let from = conf_of(&d);
    let mut am: document::ActiveModel = d.clone().into();
    let mut changed = Vec::new();
    if let Some(t) = title.filter(|t| *t != d.title) {
        am.title = Set(t);
        changed.push("title");
    }
    if let Some(c) = conf.filter(|c| *c != from) {
        am.confidentiality = Set(c.as_str().into());
        changed.push("confidentiality");
    }
    if changed.is_empty() {
        let held = case_held(&*txn, d.case_id).await?;
        return Ok(view(d.into(), held));
    }
    am.updated_at = Set(crate::db::now());
    let d = am.update(&*txn).await?;
    emit(
        &*txn,
        "document.updated",
        &d,
        serde_json::json!({"document_id": id, "change": "details", "fields": changed}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("document.update", "document")
                .by(p)
                .resource(id)
                .case(d.case_id)
                .details(serde_json::json!({
                    "fields": changed,
                    "confidentiality": [from, conf_of(&d)],
                })),
        ],
    )
    .await?;
    let held = case_held(&*txn, d.case_id).await?;
    txn.commit().await?;
    Ok(view(d.into(), held))
}

/// `DELETE /documents/{id}`: soft delete by the uploader or staff; 409 while on hold.
pub async fn delete_document(state: &AppState, p: &Principal, id: Uuid) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let (d, a) = load_visible(state, &*txn, p, id).await?;
    // Who may comes first: the hold is not news for someone who may not delete anyway.
    if !(a.is_staff(p) || d.uploaded_by == p.user_id) {
        return Err(Error::Forbidden(
            "Only the uploader or the legal team may delete a document.",
        ));
    }
    if d.legal_hold || case_held(&*txn, d.case_id).await? {
        return Err(Error::Conflict(
            "The document is under legal hold and cannot be deleted.".into(),
        ));
    }
    let t = crate::db::now();
    let mut am: document::ActiveModel = d.clone().into();
    am.deleted_at = Set(Some(t));
    am.deleted_by = Set(p.actor_id());
    am.updated_at = Set(t);
    let d = am.update(&*txn).await?;
    emit(
        &*txn,
        "document.updated",
        &d,
        serde_json::json!({"document_id": id, "change": "deleted"}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("document.delete", "document")
                .by(p)
                .resource(id)
                .case(d.case_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalHold {
    pub on: bool,
}

fn may_hold(p: &Principal, a: &CaseAccess) -> Result<()> {
    let attorney_on_case = p.role == Role::Attorney && a.role.is_some_and(MemberRole::is_attorney);
    if p.is_admin() || attorney_on_case {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Only attorneys on the case and admins may place or lift a legal hold.",
        ))
    }
}

/// `POST /documents/{id}/legal-hold` (attorneys on the case, admins).
pub async fn set_legal_hold(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    h: LegalHold,
) -> Result<DocumentView> {
    let txn = state.db.begin_write().await?;
    let (d, a) = load_visible(state, &*txn, p, id).await?;
    may_hold(p, &a)?;
    let mut am: document::ActiveModel = d.clone().into();
    am.legal_hold = Set(h.on);
    am.updated_at = Set(crate::db::now());
    let d = am.update(&*txn).await?;
    emit(
        &*txn,
        "document.updated",
        &d,
        serde_json::json!({"document_id": id, "change": "legal_hold", "on": h.on}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("document.legal_hold", "document")
                .by(p)
                .resource(id)
                .case(d.case_id)
                .details(serde_json::json!({"on": h.on})),
        ],
    )
    .await?;
    let held = case_held(&*txn, d.case_id).await?;
    txn.commit().await?;
    Ok(view(d.into(), held))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseHoldView {
    pub case_id: Uuid,
    pub on: bool,
    pub set_by: Option<Uuid>,
    pub set_at: Option<DateTime<Utc>>,
}

/// `POST /cases/{id}/legal-hold` (extension): hold every document of a case, now and later.
pub async fn set_case_hold(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    h: LegalHold,
) -> Result<CaseHoldView> {
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    may_hold(p, &a)?;
    let existing = case_hold::Entity::find_by_id(case_id).one(&*txn).await?;
    let out = match (h.on, existing) {
        (true, Some(e)) => e,
        (true, None) => {
            case_hold::ActiveModel {
                case_id: Set(case_id),
                set_by: Set(p.actor_id()),
                set_at: Set(crate::db::now()),
            }
            .insert(&*txn)
            .await?
        }
        (false, existing) => {
            if existing.is_some() {
                case_hold::Entity::delete_by_id(case_id).exec(&*txn).await?;
            }
            append_in(
                &*txn,
                vec![
                    NewEntry::new("case.legal_hold", "case")
                        .by(p)
                        .resource(case_id)
                        .case(case_id)
                        .details(serde_json::json!({"on": false})),
                ],
            )
            .await?;
            txn.commit().await?;
            return Ok(CaseHoldView {
                case_id,
                on: false,
                set_by: None,
                set_at: None,
            });
        }
    };
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.legal_hold", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({"on": true})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(CaseHoldView {
        case_id,
        on: true,
        set_by: out.set_by,
        set_at: Some(out.set_at),
    })
}

/// Per confidentiality level, the roles on a case that let someone with this firm role see
/// it: the rule of [`Confidentiality::visible_to`] as data for SQL. A level no role sees is
/// left out.
fn roles_seeing(role: Role) -> Vec<(Confidentiality, Vec<MemberRole>)> {
    Confidentiality::ALL
        .iter()
        .map(|c| {
            let roles = MemberRole::ALL
                .iter()
                .copied()
                .filter(|r| c.visible_to(role, Some(*r)))
                .collect::<Vec<_>>();
            (*c, roles)
        })
        .filter(|(_, roles)| !roles.is_empty())
        .collect()
}

/// Live documents the caller may see, as a condition on `document`: an admin's, all but the
/// privileged ones of cases they are not an attorney on ([`admin_sees`]); anyone
/// else's, per level, those of the cases where their membership role sees that level. The
/// cases are read from the caller's membership rows inside the statement, so it is the same
/// whether they are on two cases or two thousand (no id list bound into it): on SQLite an
/// `IN (subquery)` per level, which lets a client's few cases (or a rare term's few matches)
/// drive the plan; on PostgreSQL one semi-join ([`member_sees`]).
fn visible(backend: DbBackend, p: &Principal) -> Condition {
    if p.is_admin() || backend == DbBackend::Postgres {
        return visible_per_row(p);
    }
    let live = Condition::all().add(document::Column::DeletedAt.is_null());
    let mut any = Condition::any();
    for (c, roles) in &roles_seeing(p.role) {
        // The roles are named even when all of them see the level: a membership row whose
        // role this version does not know grants nothing, as in `access::require`.
        any = any.add(
            Condition::all()
                .add(document::Column::Confidentiality.eq(c.as_str()))
                .add(
                    document::Column::CaseId.in_subquery(access::member_cases_as(p.user_id, roles)),
                ),
        );
    }
    if any.is_empty() {
        // No role sees anything: nothing is visible.
        return live.add(Expr::cust("1 = 0"));
    }
    live.add(any)
}

/// [`visible`] checked row by row: the caller's membership row of each document's case,
/// probed by its key ([`member_sees`]). PostgreSQL's only form; on SQLite the form for a walk
/// along the caller's own documents (`member_document`), which visits a few dozen rows where
/// the `IN` lists of [`visible`] would first read every case the caller is on. SQLite 3.51 may
/// plan the `EXISTS` as a join (`existsToJoin`); the walk measured well either way (round 23).
fn visible_per_row(p: &Principal) -> Condition {
    per_row(p, false)
}

/// [`visible_per_row`]; with `probe_only`, the membership check carries a `LIMIT 1`, which
/// keeps SQLite 3.51 from turning it into a join (`existsToJoin` skips subqueries with a
/// `LIMIT`) and so from choosing its own way into the documents (see [`recent_for_dashboard`]).
/// Only for SQLite: PostgreSQL plans the semi-join from statistics.
fn per_row(p: &Principal, probe_only: bool) -> Condition {
    let live = Condition::all().add(document::Column::DeletedAt.is_null());
    if p.is_admin() {
        return live.add(admin_sees(p));
    }
    let levels = roles_seeing(p.role);
    if levels.is_empty() {
        return live.add(Expr::cust("1 = 0"));
    }
    let mut probe = member_sees(p.user_id, &levels);
    if probe_only {
        probe.limit(1);
    }
    live.add(Expr::exists(probe))
}

/// An admin's documents: every case's levels an admin sees without being on it (shared,
/// internal), and the others (privileged) on the cases where their role sees them, read from
/// their own membership rows once (`IN`, not a probe per row: an admin walks the whole firm's
/// documents).
fn admin_sees(p: &Principal) -> Condition {
    let open: Vec<&str> = Confidentiality::ALL
        .iter()
        .filter(|c| c.visible_to(Role::Admin, None))
        .map(|c| c.as_str())
        .collect();
    let mut any = Condition::any().add(document::Column::Confidentiality.is_in(open));
    for (c, roles) in roles_seeing(Role::Admin) {
        if c.visible_to(Role::Admin, None) {
            continue;
        }
        any = any.add(
            Condition::all()
                .add(document::Column::Confidentiality.eq(c.as_str()))
                .add(
                    document::Column::CaseId
                        .in_subquery(access::member_cases_as(p.user_id, &roles)),
                ),
        );
    }
    any
}

/// The semi-join form of [`visible`] (PostgreSQL's only one; SQLite's for walks): the
/// caller's membership row of the document's case, the role on it deciding the level per row.
/// PostgreSQL estimates a join; the `OR` of three `IN (subquery)` arms it guessed so loosely
/// that a rare search term walked the whole id index (0.24 s instead of 0.2 ms for an attorney
/// on the scale-100 firm).
fn member_sees(
    user: Uuid,
    levels: &[(Confidentiality, Vec<MemberRole>)],
) -> sea_orm::sea_query::SelectStatement {
    let mut seen = Condition::any();
    for (c, roles) in levels {
        seen = seen.add(
            Condition::all()
                .add(
                    Expr::col((document::Entity, document::Column::Confidentiality)).eq(c.as_str()),
                )
                .add(
                    Expr::col((member::Entity, member::Column::Role))
                        .is_in(roles.iter().map(|r| r.as_str())),
                ),
        );
    }
    Query::select()
        .expr(Expr::val(1))
        .from(member::Entity)
        .cond_where(
            Condition::all()
                .add(
                    Expr::col((member::Entity, member::Column::CaseId))
                        .equals((document::Entity, document::Column::CaseId)),
                )
                .add(Expr::col((member::Entity, member::Column::UserId)).eq(user))
                .add(seen),
        )
        .to_owned()
}

/// [`visible`] within one case whose membership is already known: the levels the caller's
/// role on it sees, with no subquery at all.
fn visible_in_case(p: &Principal, case_id: Uuid, role: Option<MemberRole>) -> Condition {
    let levels: Vec<&str> = Confidentiality::ALL
        .iter()
        .filter(|c| c.visible_to(p.role, role))
        .map(|c| c.as_str())
        .collect();
    let live = Condition::all()
        .add(document::Column::DeletedAt.is_null())
        .add(document::Column::CaseId.eq(case_id));
    if levels.len() == Confidentiality::ALL.len() {
        live
    } else {
        live.add(document::Column::Confidentiality.is_in(levels))
    }
}

/// Full-text match checked on rows found otherwise (PostgreSQL's tsvector; SQLite probes its
/// index per row).
fn probe_match(backend: DbBackend, text: &str) -> sea_orm::sea_query::SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            "document.search @@ plainto_tsquery('simple', $1)",
            [text.to_owned()],
        ),
        _ => crate::db::fts::sqlite_match("document", "document_fts", text, true),
    }
}

/// Full-text match on `document`, and whether the set of matches should drive the page
/// (`true`: a rare term on SQLite). PostgreSQL: the tsvector, its planner choosing between
/// the GIN index and the walk. SQLite: a client (few visible documents) probes the index per
/// candidate row; staff get the set of matching rowids when the term is rare, or, when it is
/// common, a per-row probe along the walk of their own documents, which stops after a page,
/// since building a firm-wide set of every match costs more.
async fn text_match<C: ConnectionTrait>(
    conn: &C,
    text: &str,
    narrow: bool,
) -> Result<(sea_orm::sea_query::SimpleExpr, bool)> {
    match conn.get_database_backend() {
        DbBackend::Postgres => Ok((probe_match(DbBackend::Postgres, text), false)),
        _ if narrow => Ok((probe_match(DbBackend::Sqlite, text), false)),
        _ => {
            let common = crate::db::fts::sqlite_is_common(conn, "document_fts", text).await?;
            Ok((
                crate::db::fts::sqlite_match("document", "document_fts", text, common),
                !common,
            ))
        }
    }
}

fn check_q(v: &mut Validator, q: Option<&str>) -> Option<String> {
    let q = q.map(str::trim).filter(|s| !s.is_empty())?;
    if q.chars().count() > 200 || q.chars().any(char::is_control) {
        v.push(
            "q",
            "must be at most 200 characters, without control characters",
        );
        return None;
    }
    Some(q.to_string())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct DocumentFilter {
    /// Full text over title, file name and text content.
    pub q: Option<String>,
    /// Exact MIME type, e.g. `application/pdf`.
    pub content_type: Option<String>,
    pub confidentiality: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Newest first by id (UUIDv7, so creation order); the cursor is the last id. With `mine`,
/// the rows are walked along that member's own documents (`member_document`, the same ids in
/// the same order), so the `LIMIT` ends a walk of their documents, not of the firm's.
async fn page(
    conn: &DatabaseConnection,
    cond: Condition,
    mine: Option<Uuid>,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<DocumentView>> {
    let after: Option<Uuid> = decode_cursor(cursor)?;
    let mut q = document::Entity::find().filter(cond);
    let order = match mine {
        Some(user) => {
            QueryTrait::query(&mut q).join(
                JoinType::InnerJoin,
                member_document::Entity,
                Condition::all()
                    .add(
                        Expr::col((member_document::Entity, member_document::Column::DocumentId))
                            .equals((document::Entity, document::Column::Id)),
                    )
                    .add(
                        Expr::col((member_document::Entity, member_document::Column::UserId))
                            .eq(user),
                    ),
            );
            Expr::col((member_document::Entity, member_document::Column::DocumentId))
        }
        None => Expr::col((document::Entity, document::Column::Id)),
    };
    if let Some(a) = after {
        q = q.filter(order.clone().lt(a));
    }
    let rows = q
        .order_by_desc(order)
        .limit(limit.get() + 1)
        .into_partial_model::<document::Shown>()
        .all(conn)
        .await?;
    let items = views(conn, rows).await?;
    Ok(page_from(items, limit, |d: &DocumentView| d.id))
}

/// `GET /cases/{id}/documents`.
pub async fn list_case_documents(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    f: DocumentFilter,
) -> Result<Page<DocumentView>> {
    let limit = Limit::parse(f.limit)?;
    let mut v = Validator::default();
    let q_text = check_q(&mut v, f.q.as_deref());
    let conf = f
        .confidentiality
        .as_deref()
        .and_then(|c| v.check("confidentiality", Confidentiality::parse(c)));
    if f.content_type.as_deref().is_some_and(|c| c.len() > 100) {
        v.push("content_type", "must be at most 100 characters");
    }
    v.finish()?;
    let conn = state.db.conn();
    let a = access::require(state, conn, p, case_id).await?;
    let mut cond = visible_in_case(p, case_id, a.role);
    if let Some(c) = conf {
        cond = cond.add(document::Column::Confidentiality.eq(c.as_str()));
    }
    if let Some(ct) = f.content_type.as_deref().filter(|s| !s.is_empty()) {
        cond = cond.add(document::Column::ContentType.eq(ct.to_ascii_lowercase()));
    }
    if let Some(text) = &q_text {
        // One case's documents: its index bounds the rows, so probe each one.
        cond = cond.add(probe_match(state.db.backend(), text));
    }
    let out = page(conn, cond, None, limit, f.cursor.as_deref()).await?;
    let mut details = serde_json::json!({
        "count": out.items.len(),
        "document_ids": out.items.iter().map(|d| d.id).collect::<Vec<_>>(),
    });
    if a.admin_access(p) {
        details["admin_access"] = true.into();
    }
    state
        .audit
        .record(
            NewEntry::new("document.list", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(details),
        )
        .await?;
    Ok(out)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /documents/search?q=`: across every visible document.
pub async fn search(
    state: &AppState,
    p: &Principal,
    s: SearchParams,
) -> Result<Page<DocumentView>> {
    if s.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(Error::invalid("q", "is required"));
    }
    visible_page(state, p, s, "document.search").await
}

/// Every document the caller may see across their cases, newest first, optionally narrowed
/// by full text (the web portal's documents page; `search` is the same with `q` required).
pub async fn list_visible(
    state: &AppState,
    p: &Principal,
    s: SearchParams,
) -> Result<Page<DocumentView>> {
    visible_page(state, p, s, "document.list").await
}

async fn visible_page(
    state: &AppState,
    p: &Principal,
    s: SearchParams,
    action: &str,
) -> Result<Page<DocumentView>> {
    let limit = Limit::parse(s.limit)?;
    let mut v = Validator::default();
    let q_text = check_q(&mut v, s.q.as_deref());
    v.finish()?;
    // Planned per execution: which side drives (the caller's documents, their cases, the
    // matches) depends on who asks; a generic plan made the attorney's search 15-35 ms.
    let conn = state.db.custom_plans();
    // A client sees a handful of cases: drive from them. An admin sees nearly everything: walk the
    // firm's documents. Other staff see thousands of cases, a share of the firm's that shrinks
    // as it grows: walk their own documents newest first, unless a rare search term makes its
    // set of matches the smaller side (SQLite; PostgreSQL's planner weighs its GIN index).
    let narrow = p.sees_few_cases();
    let (text, by_matches) = match &q_text {
        Some(t) => {
            let (m, by_matches) = text_match(conn, t, narrow).await?;
            (Some(m), by_matches)
        }
        None => (None, false),
    };
    let mine = (!narrow && !p.is_admin() && !by_matches).then_some(p.user_id);
    let mut cond = match mine {
        Some(_) => visible_per_row(p),
        None => visible(conn.get_database_backend(), p),
    };
    if let Some(m) = text {
        cond = cond.add(m);
    }
    let out = page(conn, cond, mine, limit, s.cursor.as_deref()).await?;
    state
        .audit
        .record(
            NewEntry::new(action, "document")
                .by(p)
                .details(serde_json::json!({
                    "count": out.items.len(),
                    "document_ids": out.items.iter().map(|d| d.id).collect::<Vec<_>>(),
                    "admin_access": p.is_admin(),
                })),
        )
        .await?;
    Ok(out)
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct CountBytes {
    pub count: i64,
    pub bytes: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentStats {
    pub total: CountBytes,
    /// Keyed by MIME type.
    pub by_type: BTreeMap<String, CountBytes>,
    /// Keyed by case id.
    pub by_case: BTreeMap<String, CountBytes>,
}

/// `GET /documents/stats`: counts and bytes of the documents the caller may see.
pub async fn stats(state: &AppState, p: &Principal) -> Result<DocumentStats> {
    let conn = state.db.conn();
    let cond = visible(conn.get_database_backend(), p);
    let rows: Vec<(Uuid, String, i64, Option<i64>)> = document::Entity::find()
        .select_only()
        .column(document::Column::CaseId)
        .column(document::Column::ContentType)
        .column_as(Expr::col(document::Column::Id).count(), "n")
        .column_as(
            Expr::col(document::Column::Size)
                .sum()
                .cast_as(sea_orm::sea_query::Alias::new("bigint")),
            "bytes",
        )
        .filter(cond)
        .group_by(document::Column::CaseId)
        .group_by(document::Column::ContentType)
        .into_tuple()
        .all(conn)
        .await?;
    let mut out = DocumentStats {
        total: CountBytes::default(),
        by_type: BTreeMap::new(),
        by_case: BTreeMap::new(),
    };
    for (case_id, ct, n, bytes) in rows {
        let bytes = bytes.unwrap_or(0);
        for slot in [
            &mut out.total,
            out.by_type.entry(ct).or_default(),
            out.by_case.entry(case_id.to_string()).or_default(),
        ] {
            slot.count += n;
            slot.bytes += bytes;
        }
    }
    state
        .audit
        .record(
            NewEntry::new("document.stats", "document")
                .by(p)
                .details(serde_json::json!({"admin_access": p.is_admin()})),
        )
        .await?;
    Ok(out)
}

/// How many of the caller's cases the dashboard's newest documents are first looked for in:
/// those with the greatest [`member::Mirror::CaseLastDocumentId`].
const RECENT_CANDIDATE_CASES: u64 = 32;

/// The dashboard's five newest documents the caller may see (admins: of the firm, privileged
/// ones only where they are an attorney on the case).
///
/// The role on the case (a membership row joined or probed, never an `IN` list of every case
/// id) decides which confidentiality levels count, and the newest five ids are picked from the
/// index `ix_document_live_case` alone, then only those rows are read. A member's cases are
/// first narrowed to the [`RECENT_CANDIDATE_CASES`] whose greatest
/// document id is greatest (`ix_case_member_last_document`). That copy is an upper bound of the
/// case's live document ids, so the answer is complete when five were found and the fifth is
/// newer than anything a case left out can hold; otherwise (a caller whose newest cases hold
/// only documents they may not see) every case is searched.
pub async fn recent_for_dashboard(
    state: &AppState,
    p: &Principal,
) -> Result<Vec<serde_json::Value>> {
    const SHOWN: u64 = 5;
    // Planned per execution, like the search: the candidate cases' documents or the firm's.
    let conn = state.db.custom_plans();
    let backend = state.db.backend();
    // The newest visible documents, of the candidate cases only when given.
    let newest = |candidates: Option<SelectStatement>| {
        let mut ids = document::Entity::find()
            .select_only()
            .column(document::Column::Id);
        if let Some(c) = candidates {
            // The candidate cases drive: each one's documents, each probed for the caller's
            // membership row by its key. Joined instead, SQLite (no statistics: it takes an
            // attorney's 2,000 membership rows for ten) started from every membership row of
            // the caller. As a join, SQLite 3.51 read a whole index of the firm's documents
            // once per level (110 ms for an attorney at scale 100), hence the probe's `LIMIT`.
            ids = ids
                .filter(per_row(p, backend == DbBackend::Sqlite))
                .filter(document::Column::CaseId.in_subquery(c));
        } else if p.is_admin() {
            ids = ids.filter(per_row(p, backend == DbBackend::Sqlite));
        } else {
            ids = ids.filter(document::Column::DeletedAt.is_null());
            sea_orm::QueryTrait::query(&mut ids).join(
                JoinType::InnerJoin,
                member::Entity,
                Condition::all()
                    .add(
                        Expr::col((member::Entity, member::Column::CaseId))
                            .equals((document::Entity, document::Column::CaseId)),
                    )
                    .add(Expr::col((member::Entity, member::Column::UserId)).eq(p.user_id)),
            );
            let mut levels = Condition::any();
            for (c, roles) in roles_seeing(p.role) {
                levels = levels.add(
                    Condition::all()
                        .add(document::Column::Confidentiality.eq(c.as_str()))
                        .add(
                            Expr::col((member::Entity, member::Column::Role))
                                .is_in(roles.iter().map(|r| r.as_str())),
                        ),
                );
            }
            ids = ids.filter(levels);
        }
        let ids =
            sea_orm::QueryTrait::into_query(ids.order_by_desc(document::Column::Id).limit(SHOWN));
        document::Entity::find()
            .filter(document::Column::Id.in_subquery(ids))
            .order_by_desc(document::Column::Id)
            .into_partial_model::<document::Shown>()
    };
    let rows = if p.is_admin() {
        newest(None).all(conn).await?
    } else {
        let last = Expr::col((member::Entity, member::Mirror::CaseLastDocumentId));
        let by_last = || {
            member::Entity::find()
                .select_only()
                .filter(member::Column::UserId.eq(p.user_id))
                .filter(last.clone().is_not_null())
                .order_by(last.clone(), sea_orm::Order::Desc)
        };
        let candidates = sea_orm::QueryTrait::into_query(
            by_last()
                .column(member::Column::CaseId)
                .limit(RECENT_CANDIDATE_CASES),
        );
        let rows = newest(Some(candidates)).all(conn).await?;
        // The least greatest id among the candidates (`None`: every case was one); a case left
        // out holds no document above it.
        let bound: Option<Option<Uuid>> = by_last()
            .column_as(last.clone(), "last")
            .offset(RECENT_CANDIDATE_CASES - 1)
            .limit(1)
            .into_tuple()
            .one(conn)
            .await?;
        let complete = match bound.flatten() {
            None => true,
            Some(b) => rows.len() as u64 == SHOWN && rows.last().is_some_and(|d| d.id >= b),
        };
        if complete {
            rows
        } else {
            newest(None).all(conn).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id, "case_id": d.case_id, "title": d.title,
                "content_type": d.content_type, "created_at": d.created_at,
            })
        })
        .collect())
}

/// For messages with attachments: are all `document_ids` live documents of `case_id` that
/// every one of `viewers` (case members with their firm role and their role on the case) may
/// see? An empty list of ids is trivially true; an unknown, deleted or foreign id makes it
/// false.
pub async fn visible_to_all<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    document_ids: &[Uuid],
    viewers: &[(Uuid, Role, MemberRole)],
) -> Result<bool> {
    if document_ids.is_empty() {
        return Ok(true);
    }
    let mut wanted = document_ids.to_vec();
    wanted.sort();
    wanted.dedup();
    let found: HashMap<Uuid, String> = document::Entity::find()
        .select_only()
        .column(document::Column::Id)
        .column(document::Column::Confidentiality)
        .filter(document::Column::Id.is_in(wanted.clone()))
        .filter(document::Column::CaseId.eq(case_id))
        .filter(document::Column::DeletedAt.is_null())
        .into_tuple::<(Uuid, String)>()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    Ok(wanted.iter().all(|id| {
        found.get(id).is_some_and(|c| {
            let c = Confidentiality::parse(c).unwrap_or(Confidentiality::Privileged);
            viewers
                .iter()
                .all(|(_, firm, member)| c.visible_to(*firm, Some(*member)))
        })
    }))
}
