//! HTTP handlers for billing. Each parses, calls one service function, maps the result.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    adjustments::{self, NewAdjustment},
    checkout::{self, CheckoutSession, WebhookAck, WebhookError},
    export::{self, LedesError},
    invoices::{self, InvoiceFilter, InvoiceView, NewInvoice},
    ledes::LedesProblem,
    payments::{
        self, Ledger, LedgerFilter, NewDeposit, NewPayment, NewRefund, NewTransfer, PaymentView,
        TrustEntryView,
    },
    reconcile::{self, NewReconciliation, ReconciliationView},
    summary::{self, BillingSummary},
    time::{
        self, ExpenseView, NewExpense, NewTimeEntry, RateInput, RateView, TimeEntryPatch,
        TimeEntryView,
    },
};
use crate::{
    AppState,
    auth::AuthUser,
    error::FieldError,
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery},
        pagination::{Limit, Page, PageParams},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_time_entries, create_time_entry))
        .routes(routes!(patch_time_entry, delete_time_entry))
        .routes(routes!(list_expenses, create_expense))
        .routes(routes!(delete_expense))
        .routes(routes!(set_user_rate))
        .routes(routes!(set_case_rate))
        .routes(routes!(list_invoices, create_invoice))
        .routes(routes!(get_invoice))
        .routes(routes!(send_invoice))
        .routes(routes!(void_invoice))
        .routes(routes!(add_adjustment))
        .routes(routes!(delete_adjustment))
        .routes(routes!(invoice_pdf))
        .routes(routes!(invoice_ledes))
        .routes(routes!(validate_ledes))
        .routes(routes!(record_payment))
        .routes(routes!(checkout_invoice))
        .routes(routes!(payments_webhook))
        .routes(routes!(trust_deposit))
        .routes(routes!(trust_transfer))
        .routes(routes!(trust_refund))
        .routes(routes!(list_reconciliations, create_reconciliation))
        .routes(routes!(trust_ledger))
        .routes(routes!(billing_summary))
}

type ApiResult<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

#[utoipa::path(get, path = "/cases/{id}/time-entries", tag = "billing", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<TimeEntryView>), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_time_entries(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<TimeEntryView>> {
    Ok(Json(
        time::list_time_entries(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/cases/{id}/time-entries", tag = "billing", params(("id" = Uuid, Path)), request_body = NewTimeEntry,
    responses((status = 201, body = TimeEntryView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_time_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewTimeEntry>,
) -> Created<TimeEntryView> {
    Ok((
        StatusCode::CREATED,
        Json(time::create_time_entry(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(patch, path = "/time-entries/{id}", tag = "billing", params(("id" = Uuid, Path)), request_body = TimeEntryPatch,
    responses((status = 200, body = TimeEntryView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn patch_time_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<TimeEntryPatch>,
) -> ApiResult<TimeEntryView> {
    Ok(Json(time::patch_time_entry(&s, &p, id, b).await?))
}

#[utoipa::path(delete, path = "/time-entries/{id}", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_time_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    time::delete_time_entry(&s, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/cases/{id}/expenses", tag = "billing", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<ExpenseView>), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_expenses(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<ExpenseView>> {
    Ok(Json(
        time::list_expenses(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/cases/{id}/expenses", tag = "billing", params(("id" = Uuid, Path)), request_body = NewExpense,
    responses((status = 201, body = ExpenseView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_expense(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewExpense>,
) -> Created<ExpenseView> {
    Ok((
        StatusCode::CREATED,
        Json(time::create_expense(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(delete, path = "/expenses/{id}", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_expense(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    time::delete_expense(&s, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/users/{id}/rate", tag = "billing", params(("id" = Uuid, Path)), request_body = RateInput,
    responses((status = 200, body = RateView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn set_user_rate(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<RateInput>,
) -> ApiResult<RateView> {
    Ok(Json(time::set_user_rate(&s, &p, id, b).await?))
}

#[utoipa::path(put, path = "/cases/{id}/rates/{user_id}", tag = "billing", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = RateInput,
    responses((status = 200, body = RateView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn set_case_rate(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(b): ApiJson<RateInput>,
) -> ApiResult<RateView> {
    Ok(Json(time::set_case_rate(&s, &p, id, user_id, b).await?))
}

#[utoipa::path(get, path = "/invoices", tag = "billing", params(InvoiceFilter),
    responses((status = 200, body = Page<InvoiceView>), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_invoices(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(f): ApiQuery<InvoiceFilter>,
) -> ApiResult<Page<InvoiceView>> {
    Ok(Json(invoices::list_invoices(&s, &p, f).await?))
}

#[utoipa::path(post, path = "/invoices", tag = "billing", request_body = NewInvoice,
    responses((status = 201, body = InvoiceView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_invoice(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<NewInvoice>,
) -> Created<InvoiceView> {
    Ok((
        StatusCode::CREATED,
        Json(invoices::create_invoice(&s, &p, b).await?),
    ))
}

#[utoipa::path(get, path = "/invoices/{id}", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = InvoiceView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_invoice(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<InvoiceView> {
    Ok(Json(invoices::get_invoice(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/invoices/{id}/send", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = InvoiceView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn send_invoice(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<InvoiceView> {
    Ok(Json(invoices::send_invoice(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/invoices/{id}/void", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = InvoiceView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn void_invoice(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<InvoiceView> {
    Ok(Json(invoices::void_invoice(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/invoices/{id}/adjustments", tag = "billing", params(("id" = Uuid, Path)), request_body = NewAdjustment,
    responses((status = 201, description = "The invoice with the new adjustment and recomputed totals", body = InvoiceView),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_adjustment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewAdjustment>,
) -> Created<InvoiceView> {
    Ok((
        StatusCode::CREATED,
        Json(adjustments::add(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(delete, path = "/invoices/{id}/adjustments/{adjustment_id}", tag = "billing", params(("id" = Uuid, Path), ("adjustment_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn delete_adjustment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, adjustment_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    adjustments::remove(&s, &p, id, adjustment_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn attachment(content_type: &'static str, filename: &str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/invoices/{id}/pdf", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn invoice_pdf(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let (name, bytes) = export::pdf_file(&s, &p, id).await?;
    Ok(attachment("application/pdf", &name, bytes))
}

fn problems_error(problems: Vec<LedesProblem>) -> ApiError {
    ApiError::validation(
        problems
            .into_iter()
            .map(|pr| {
                let field = match pr.line {
                    Some(n) => format!("lines[{n}].{}", pr.field),
                    None => pr.field,
                };
                FieldError::new(field, pr.message)
            })
            .collect(),
    )
    .with_detail("The invoice cannot be exported as LEDES 1998B; see errors.")
}

#[utoipa::path(get, path = "/invoices/{id}/ledes", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn invoice_ledes(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    match export::ledes_file(&s, &p, id).await {
        Ok((name, text)) => Ok(attachment("text/plain; charset=us-ascii", &name, text)),
        Err(LedesError::Problems(pr)) => Err(problems_error(pr)),
        Err(LedesError::Other(e)) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/invoices/{id}/ledes/validate", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<LedesProblem>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn validate_ledes(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Vec<LedesProblem>> {
    Ok(Json(export::ledes_problems(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/invoices/{id}/payments", tag = "billing", params(("id" = Uuid, Path)), request_body = NewPayment,
    responses((status = 201, body = PaymentView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn record_payment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewPayment>,
) -> Created<PaymentView> {
    Ok((
        StatusCode::CREATED,
        Json(payments::record_payment(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(post, path = "/invoices/{id}/checkout", tag = "billing", params(("id" = Uuid, Path)),
    responses((status = 200, body = CheckoutSession), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn checkout_invoice(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<CheckoutSession> {
    Ok(Json(checkout::checkout(&s, &p, id).await?))
}

/// Signed by the processor, not by a user: no bearer token.
#[utoipa::path(post, path = "/webhooks/payments", tag = "billing", request_body(content = String, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")),
    responses((status = 200, body = WebhookAck), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn payments_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, ApiError> {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match checkout::webhook(&s, sig, &body).await {
        Ok(a) => Ok(Json(a)),
        Err(WebhookError::Disabled) => Err(ApiError::not_found()),
        Err(WebhookError::BadRequest(why)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, why).with_code("bad_signature"))
        }
        Err(WebhookError::Internal(e)) => {
            tracing::error!(error = %e, "payment webhook failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred.",
            ))
        }
    }
}

#[utoipa::path(post, path = "/trust/deposits", tag = "billing", request_body = NewDeposit,
    responses((status = 201, body = TrustEntryView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn trust_deposit(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<NewDeposit>,
) -> Created<TrustEntryView> {
    Ok((
        StatusCode::CREATED,
        Json(payments::deposit(&s, &p, b).await?),
    ))
}

#[utoipa::path(post, path = "/trust/refunds", tag = "billing", request_body = NewRefund,
    responses((status = 201, body = TrustEntryView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn trust_refund(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<NewRefund>,
) -> Created<TrustEntryView> {
    Ok((
        StatusCode::CREATED,
        Json(payments::refund(&s, &p, b).await?),
    ))
}

#[utoipa::path(post, path = "/trust/reconciliations", tag = "billing", request_body = NewReconciliation,
    responses((status = 201, body = ReconciliationView), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_reconciliation(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<NewReconciliation>,
) -> Created<ReconciliationView> {
    Ok((
        StatusCode::CREATED,
        Json(reconcile::reconcile(&s, &p, b).await?),
    ))
}

#[utoipa::path(get, path = "/trust/reconciliations", tag = "billing", params(PageParams),
    responses((status = 200, body = Page<ReconciliationView>), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_reconciliations(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<ReconciliationView>> {
    Ok(Json(
        reconcile::list(&s, &p, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/trust/transfers", tag = "billing", request_body = NewTransfer,
    responses((status = 201, body = TrustEntryView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn trust_transfer(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<NewTransfer>,
) -> Created<TrustEntryView> {
    Ok((
        StatusCode::CREATED,
        Json(payments::transfer(&s, &p, b).await?),
    ))
}

#[utoipa::path(get, path = "/trust/ledger", tag = "billing", params(LedgerFilter),
    responses((status = 200, body = Ledger), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn trust_ledger(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(f): ApiQuery<LedgerFilter>,
) -> ApiResult<Ledger> {
    Ok(Json(payments::ledger(&s, &p, f).await?))
}

#[utoipa::path(get, path = "/billing/summary", tag = "billing", responses((status = 200, body = BillingSummary)), security(("bearer" = [])))]
async fn billing_summary(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<BillingSummary> {
    Ok(Json(summary::summary(&s, &p).await?))
}
