//! Online card payments through a Stripe-compatible processor: hosted Checkout Sessions out,
//! signed `checkout.session.completed` webhooks in (idempotent by event id).

use hmac::{Hmac, Mac};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{
    domain::PaymentMethod,
    entity::webhook_event,
    invoices,
    money::Currency,
    payments::{self, Refused},
};
use crate::{
    AppState,
    audit::{NewEntry, Outcome},
    auth::Principal,
    error::{Error, Result},
};

/// How old a signed webhook may be (Stripe's default tolerance).
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutSession {
    pub checkout_url: String,
}

#[derive(Deserialize)]
struct SessionResponse {
    id: Option<String>,
    url: Option<String>,
}

/// The form fields of `POST /v1/checkout/sessions`, in Stripe's bracket notation.
pub fn session_form(
    invoice_id: Uuid,
    number: &str,
    firm: &str,
    currency: Currency,
    amount_cents: i64,
    public_url: &url::Url,
) -> Vec<(String, String)> {
    let page = |q: &str| {
        public_url
            .join(&format!("invoices/{invoice_id}?checkout={q}"))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| public_url.to_string())
    };
    vec![
        ("mode".into(), "payment".into()),
        (
            "line_items[0][price_data][currency]".into(),
            currency.code().to_ascii_lowercase(),
        ),
        (
            "line_items[0][price_data][unit_amount]".into(),
            amount_cents.to_string(),
        ),
        (
            "line_items[0][price_data][product_data][name]".into(),
            format!("Invoice {number} ({firm})"),
        ),
        ("line_items[0][quantity]".into(), "1".into()),
        ("success_url".into(), page("success")),
        ("cancel_url".into(), page("cancel")),
        ("metadata[invoice_id]".into(), invoice_id.to_string()),
        ("client_reference_id".into(), invoice_id.to_string()),
    ]
}

/// `POST /invoices/{id}/checkout` (a client of the invoice): a hosted payment page for the
/// balance due.
pub async fn checkout(state: &AppState, p: &Principal, id: Uuid) -> Result<CheckoutSession> {
    let a = invoices::require(state, state.db.conn(), p, id).await?;
    if a.staff {
        return Err(Error::Forbidden("Only the client pays an invoice online."));
    }
    let cfg = &state.config.billing;
    let (Some(base), Some(key)) = (&cfg.payments_api_base, &cfg.payments_api_key) else {
        return Err(Error::Conflict(
            "Online card payments are not configured.".into(),
        ));
    };
    let status = invoices::effective_status(&a.invoice, state.config.today());
    let balance = a.invoice.total_cents - a.invoice.paid_cents;
    if !status.is_open() || balance <= 0 {
        return Err(Error::Conflict("The invoice has nothing to pay.".into()));
    }
    let form = session_form(
        id,
        &a.invoice.number,
        &cfg.firm_name,
        invoices::currency_of(&a.invoice),
        balance,
        &state.config.public_url,
    );
    let endpoint = base
        .join("v1/checkout/sessions")
        .map_err(|e| anyhow::anyhow!("payments API base: {e}"))?;
    // Same invoice and balance → same key: a retried click reuses the processor's session.
    let idempotency_key = format!("lfp-checkout-{id}-{balance}");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let (status, body) = post_form(
        endpoint.as_str(),
        key.expose_secret(),
        &idempotency_key,
        body,
    )
    .await
    .map_err(|e| anyhow::anyhow!("payment processor: {e}"))?;
    if !status.is_success() {
        return Err(anyhow::anyhow!("payment processor answered {status}").into());
    }
    let session: SessionResponse = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("payment processor response is not a session: {e}"))?;
    let url = session
        .url
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| anyhow::anyhow!("payment processor session has no url"))?;
    state
        .audit
        .record(
            NewEntry::new("invoice.checkout", "invoice")
                .by(p)
                .resource(id)
                .case(a.invoice.case_id)
                .details(serde_json::json!({"session_id": session.id, "amount_cents": balance})),
        )
        .await?;
    Ok(CheckoutSession { checkout_url: url })
}

/// POST a form with bearer auth and an idempotency key; answer status and (bounded) body.
/// hyper over rustls with ring: the same TLS stack as the rest of the binary.
async fn post_form(
    url: &str,
    api_key: &str,
    idempotency_key: &str,
    body: String,
) -> std::result::Result<(axum::http::StatusCode, axum::body::Bytes), String> {
    use axum::http::{Request, header};
    use http_body_util::{BodyExt, Full, Limited};
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build(https);
    let req = Request::post(url)
        .header(header::AUTHORIZATION, format!("Bearer {api_key}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("Idempotency-Key", idempotency_key)
        .body(Full::new(axum::body::Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let timeout = std::time::Duration::from_secs(20);
    let res = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = res.status();
    let bytes = tokio::time::timeout(timeout, Limited::new(res.into_body(), 1 << 20).collect())
        .await
        .map_err(|_| "timed out reading the response".to_string())?
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

/// Why a webhook was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// No secret configured: the endpoint does not exist.
    Disabled,
    /// Missing/malformed/wrong signature, stale timestamp, or a body that is not an event.
    BadRequest(&'static str),
    Internal(String),
}

impl From<Error> for WebhookError {
    fn from(e: Error) -> Self {
        WebhookError::Internal(e.to_string())
    }
}

impl From<sea_orm::DbErr> for WebhookError {
    fn from(e: sea_orm::DbErr) -> Self {
        WebhookError::Internal(e.to_string())
    }
}

/// Verify `Stripe-Signature: t=<unix>,v1=<hex>` over `"{t}.{body}"`; any `v1` may match
/// (secret rotation). Constant-time comparison; `now` is injected for tests.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &[u8],
    now: i64,
) -> std::result::Result<(), &'static str> {
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => {
                if let Ok(b) = hex::decode(v) {
                    sigs.push(b)
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or("signature header has no timestamp")?;
    if sigs.is_empty() {
        return Err("signature header has no v1 signature");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "bad secret")?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if !sigs
        .iter()
        .any(|s| bool::from(s.as_slice().ct_eq(expected.as_slice())))
    {
        return Err("signature does not match");
    }
    // abs_diff: no overflow whatever `t` the header carries.
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err("signature timestamp outside the tolerance");
    }
    Ok(())
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// What happened to a verified event.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// `applied`, `duplicate`, `ignored` or `rejected` (verified but not applicable).
    pub outcome: String,
}

fn ack(outcome: &str) -> WebhookAck {
    WebhookAck {
        received: true,
        outcome: outcome.into(),
    }
}

/// `POST /webhooks/payments`: verify, record the event id once, apply completed checkouts.
pub async fn webhook(
    state: &AppState,
    signature: Option<&str>,
    body: &[u8],
) -> std::result::Result<WebhookAck, WebhookError> {
    let Some(secret) = &state.config.billing.payments_webhook_secret else {
        return Err(WebhookError::Disabled);
    };
    let signature = signature.ok_or(WebhookError::BadRequest("missing Stripe-Signature header"))?;
    if let Err(why) = verify_signature(
        signature,
        body,
        secret.expose_secret().as_bytes(),
        chrono::Utc::now().timestamp(),
    ) {
        state.audit.record_detached(
            NewEntry::new("payment.webhook", "webhook")
                .outcome(Outcome::Denied)
                .details(serde_json::json!({"reason": why})),
        );
        return Err(WebhookError::BadRequest(why));
    }
    let event: Event = serde_json::from_slice(body)
        .map_err(|_| WebhookError::BadRequest("body is not an event"))?;
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(WebhookError::BadRequest("event id is missing or too long"));
    }
    let txn = state.db.begin_write().await?;
    let inserted = webhook_event::ActiveModel {
        id: Set(event.id.clone()),
        kind: Set(event.kind.chars().take(100).collect()),
        received_at: Set(crate::db::now()),
    }
    .insert(&*txn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => return Ok(ack("duplicate")),
        Err(e) => return Err(e.into()),
    }
    if event.kind != "checkout.session.completed" {
        txn.commit().await?;
        return Ok(ack("ignored"));
    }
    let obj = &event.data.object;
    let invoice_id = obj["metadata"]["invoice_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok());
    let amount = obj["amount_total"].as_i64();
    let currency = obj["currency"]
        .as_str()
        .and_then(|c| Currency::parse(c).ok());
    let session_id = obj["id"]
        .as_str()
        .map(|s| s.chars().take(200).collect::<String>());
    let reject = |why: &str| {
        NewEntry::new("payment.webhook", "webhook")
            .outcome(Outcome::Failure)
            .details(serde_json::json!({"event_id": event.id, "reason": why}))
    };
    let (Some(invoice_id), Some(amount), Some(currency)) = (invoice_id, amount, currency) else {
        crate::audit::service::append_in(&*txn, vec![reject("incomplete session")]).await?;
        txn.commit().await?;
        return Ok(ack("rejected"));
    };
    let Some(inv) = super::entity::invoice::Entity::find_by_id(invoice_id)
        .one(&*txn)
        .await?
    else {
        crate::audit::service::append_in(&*txn, vec![reject("unknown invoice")]).await?;
        txn.commit().await?;
        return Ok(ack("rejected"));
    };
    use sea_orm::EntityTrait;
    if invoices::currency_of(&inv) != currency || amount <= 0 {
        crate::audit::service::append_in(&*txn, vec![reject("currency or amount mismatch")])
            .await?;
        txn.commit().await?;
        return Ok(ack("rejected"));
    }
    let applied = payments::apply_payment_in(
        &*txn,
        invoice_id,
        amount,
        PaymentMethod::Card,
        session_id,
        None,
    )
    .await?;
    let outcome = match applied {
        Ok(_) => "applied",
        Err(Refused::NotOpen(_)) | Err(Refused::Overpayment { .. }) => {
            // Money arrived that the invoice cannot take: keep the event, flag it for a human.
            crate::audit::service::append_in(
                &*txn,
                vec![reject("invoice not payable for this amount")],
            )
            .await?;
            tracing::warn!(invoice = %invoice_id, amount, "card payment could not be applied");
            "rejected"
        }
    };
    txn.commit().await?;
    Ok(ack(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(b"whsec", 1000, body);
        assert_eq!(verify_signature(&h, body, b"whsec", 1000), Ok(()));
        assert_eq!(verify_signature(&h, body, b"whsec", 1300), Ok(()));
        assert!(verify_signature(&h, body, b"whsec", 1301).is_err());
        assert!(verify_signature(&h, body, b"other", 1000).is_err());
        assert!(verify_signature(&h, b"{}", b"whsec", 1000).is_err());
        assert!(verify_signature("t=1000", body, b"whsec", 1000).is_err());
        assert!(verify_signature("garbage", body, b"whsec", 1000).is_err());
        // A second v1 (rotated secret) may match.
        let rotated = format!("{h},v1=00ff");
        assert_eq!(verify_signature(&rotated, body, b"whsec", 1000), Ok(()));
    }
}
