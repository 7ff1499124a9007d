//! HTTP handlers for documents. Uploads read the multipart form as a stream (the route has no
//! body limit of its own: the upload limit is enforced while streaming, see `upload`).

use axum::{
    Json,
    body::Body,
    extract::{DefaultBodyLimit, Multipart, State, multipart::MultipartRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    content::{self, ContentResult},
    domain,
    service::{
        self, CaseHoldView, DocumentFilter, DocumentPatch, DocumentStats, DocumentView, LegalHold,
        NewDocument, SearchParams, VersionView,
    },
    upload::{self, Stored},
};
use crate::{
    AppState,
    auth::AuthUser,
    error::{Error, Result as SResult},
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery},
        pagination::{Limit, Page, PageParams},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload_document, list_case_documents))
        .routes(routes!(add_version, list_versions))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(search_documents))
        .routes(routes!(document_stats))
        .routes(routes!(get_document, patch_document, delete_document))
        .routes(routes!(get_content))
        .routes(routes!(set_legal_hold))
        .routes(routes!(set_case_legal_hold))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The multipart form of an upload (documentation only; it is read as a stream).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    title: Option<String>,
    /// `shared` (default), `internal` or `privileged`; clients only `shared`.
    confidentiality: Option<String>,
}

/// Small text fields of the form are read whole, but never more than this.
const FIELD_MAX: usize = 4096;

pub(crate) async fn text_field(
    mut f: axum::extract::multipart::Field<'_>,
    name: &str,
) -> SResult<String> {
    let mut buf = Vec::new();
    while let Some(c) = f.chunk().await.map_err(|_| malformed())? {
        if buf.len() + c.len() > FIELD_MAX {
            return Err(Error::invalid(name, "is too long"));
        }
        buf.extend_from_slice(&c);
    }
    String::from_utf8(buf).map_err(|_| Error::invalid(name, "must be UTF-8 text"))
}

/// A body that is not `multipart/form-data` at all.
fn not_multipart(_: MultipartRejection) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Expected a multipart/form-data body with a `file` part.",
    )
    .with_code("unsupported_media_type")
}

/// Like malformed JSON: 400 (not 422, which names fields of a well-formed body).
fn malformed() -> Error {
    Error::Malformed("The body is not a readable multipart/form-data body.")
}

/// Read the form; the file is streamed into the store as soon as its part arrives.
/// `precheck` runs before the file's bytes are read, with the confidentiality seen so far.
/// Also the web page's upload without JavaScript (`web::client`).
pub(crate) async fn read_form<F, Fut>(
    state: &AppState,
    mp: &mut Multipart,
    precheck: F,
) -> SResult<(Option<String>, Option<String>, Option<Stored>)>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = SResult<()>>,
{
    let (mut title, mut conf, mut file) = (None, None, None::<Stored>);
    let r: SResult<()> = async {
        while let Some(field) = mp.next_field().await.map_err(|_| malformed())? {
            match field.name().unwrap_or_default() {
                "title" => title = Some(text_field(field, "title").await?),
                "confidentiality" => conf = Some(text_field(field, "confidentiality").await?),
                "file" => {
                    if file.is_some() {
                        return Err(Error::invalid("file", "give exactly one file"));
                    }
                    precheck(conf.clone()).await?;
                    let name = field.file_name().unwrap_or("document").to_string();
                    file = Some(upload::ingest(state, &name, field).await?);
                }
                _ => {
                    // Unknown parts are read and ignored (bounded like text fields).
                    let _ = text_field(field, "body").await?;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        if let Some(f) = file {
            upload::discard(state, &f.object_key).await;
        }
        return Err(e);
    }
    Ok((title, conf, file))
}

#[utoipa::path(post, path = "/cases/{id}/documents", tag = "documents", params(("id" = Uuid, Path)),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = DocumentView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn upload_document(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(case_id): ApiPath<Uuid>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let mut mp = mp.map_err(not_multipart)?;
    // The case must be visible before a single byte of the body is read.
    service::precheck_upload(&s, &p, case_id, None).await?;
    let (title, confidentiality, file) = read_form(&s, &mut mp, |c| {
        let (s, p) = (s.clone(), p.clone());
        async move { service::precheck_upload(&s, &p, case_id, c.as_deref()).await }
    })
    .await?;
    let file = file.ok_or_else(|| Error::invalid("file", "is required"))?;
    let d = service::create_document(
        &s,
        &p,
        case_id,
        NewDocument {
            title,
            confidentiality,
            file,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(d)))
}

#[utoipa::path(get, path = "/cases/{id}/documents", tag = "documents", params(("id" = Uuid, Path), DocumentFilter),
    responses((status = 200, body = Page<DocumentView>), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list_case_documents(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(case_id): ApiPath<Uuid>,
    ApiQuery(f): ApiQuery<DocumentFilter>,
) -> ApiResult<Page<DocumentView>> {
    Ok(Json(
        service::list_case_documents(&s, &p, case_id, f).await?,
    ))
}

#[utoipa::path(post, path = "/documents/{id}/versions", tag = "documents", params(("id" = Uuid, Path)),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = DocumentView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn add_version(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let mut mp = mp.map_err(not_multipart)?;
    service::precheck_version(&s, &p, id).await?;
    let (_, _, file) = read_form(&s, &mut mp, |_| async { Ok(()) }).await?;
    let file = file.ok_or_else(|| Error::invalid("file", "is required"))?;
    Ok((
        StatusCode::CREATED,
        Json(service::add_version(&s, &p, id, file).await?),
    ))
}

#[utoipa::path(get, path = "/documents/{id}/versions", tag = "documents", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<VersionView>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_versions(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<VersionView>> {
    Ok(Json(
        service::versions(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(get, path = "/documents/search", tag = "documents", params(SearchParams),
    responses((status = 200, body = Page<DocumentView>), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn search_documents(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<SearchParams>,
) -> ApiResult<Page<DocumentView>> {
    Ok(Json(service::search(&s, &p, q).await?))
}

#[utoipa::path(get, path = "/documents/stats", tag = "documents",
    responses((status = 200, body = DocumentStats)), security(("bearer" = [])))]
async fn document_stats(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<DocumentStats> {
    Ok(Json(service::stats(&s, &p).await?))
}

#[utoipa::path(get, path = "/documents/{id}", tag = "documents", params(("id" = Uuid, Path)),
    responses((status = 200, body = DocumentView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_document(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<DocumentView> {
    Ok(Json(service::get_document(&s, &p, id).await?))
}

#[utoipa::path(patch, path = "/documents/{id}", tag = "documents", params(("id" = Uuid, Path)), request_body = DocumentPatch,
    responses((status = 200, body = DocumentView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn patch_document(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<DocumentPatch>,
) -> ApiResult<DocumentView> {
    Ok(Json(service::patch_document(&s, &p, id, b).await?))
}

#[utoipa::path(delete, path = "/documents/{id}", tag = "documents", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn delete_document(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    service::delete_document(&s, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/documents/{id}/legal-hold", tag = "documents", params(("id" = Uuid, Path)), request_body = LegalHold,
    responses((status = 200, body = DocumentView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn set_legal_hold(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<LegalHold>,
) -> ApiResult<DocumentView> {
    Ok(Json(service::set_legal_hold(&s, &p, id, b).await?))
}

#[utoipa::path(post, path = "/cases/{id}/legal-hold", tag = "documents", params(("id" = Uuid, Path)), request_body = LegalHold,
    responses((status = 200, body = CaseHoldView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn set_case_legal_hold(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<LegalHold>,
) -> ApiResult<CaseHoldView> {
    Ok(Json(service::set_case_hold(&s, &p, id, b).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
struct ContentParams {
    /// A version number; the latest when absent.
    version: Option<i32>,
}

#[utoipa::path(get, path = "/documents/{id}/content", tag = "documents", params(("id" = Uuid, Path), ContentParams),
    responses((status = 200, description = "the bytes", content_type = "application/octet-stream"),
        (status = 206, description = "one range of the bytes"), (status = 404, body = Problem), (status = 416, body = Problem)),
    security(("bearer" = [])))]
async fn get_content(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ContentParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    content_response(content::open(&s, &p, id, q.version, range).await?)
}

fn content_response(r: ContentResult) -> Result<Response, ApiError> {
    let c = match r {
        ContentResult::Unsatisfiable(size) => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "The requested range is outside the file.",
            )
            .with_code("range_not_satisfiable")
            .into_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            return Ok(res);
        }
        ContentResult::Ok(c) => c,
    };
    let (status, len) = match &c.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, c.size),
    };
    let mut res = Response::new(Body::from_stream(c.body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    let hv = |s: String| {
        HeaderValue::from_str(&s).map_err(|e| Error::Internal(anyhow::anyhow!("header: {e}")))
    };
    h.insert(header::CONTENT_TYPE, hv(c.content_type)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        hv(domain::content_disposition(&c.filename))?,
    );
    h.insert(header::ETAG, hv(format!("\"{}\"", c.sha256))?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-document-version", HeaderValue::from(c.version));
    if let Some(r) = &c.range {
        h.insert(
            header::CONTENT_RANGE,
            hv(format!("bytes {}-{}/{}", r.start, r.end - 1, c.size))?,
        );
    }
    Ok(res)
}
