//! Short-lived access tokens: HS256 JWTs with the algorithm pinned, issuer and audience
//! checked, and the session they belong to, which is checked on every request.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{config::Config, crypto::Keys};

const ISSUER: &str = "lawfirm-pro";
const AUDIENCE: &str = "lawfirm-pro-api";
/// Pending web sign-ins (password accepted, TOTP code still due): never an access token.
const PENDING_AUDIENCE: &str = "lawfirm-pro-pending-login";
/// How long the TOTP step of a web sign-in may take.
pub const PENDING_LOGIN_TTL_SECS: i64 = 300;
/// Password-reset links: never an access token or a pending sign-in either.
const RESET_AUDIENCE: &str = "lawfirm-pro-password-reset";
/// How long a password-reset link works.
pub const PASSWORD_RESET_TTL_SECS: i64 = 3600;

#[derive(Debug, Serialize, Deserialize)]
struct ResetClaims {
    sub: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// Fingerprint of the password hash the link was issued against: once the password
    /// changes (this link used, or any other change) the link stops working.
    pwd: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PendingClaims {
    sub: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// The account's last used TOTP step when issued: a sign-in consumes a step, so the
    /// ticket stops working once it has been used.
    stp: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    /// The session this token was issued for; revoked sessions invalidate their tokens at once.
    pub sid: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pending_validation: Validation,
    reset_validation: Validation,
    pub ttl_secs: i64,
    /// For binding CSRF tokens to cookie sessions.
    csrf_key: Vec<u8>,
}

impl TokenKeys {
    pub fn new(keys: &Keys, config: &Config) -> Self {
        let secret = keys.jwt.expose_secret();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let mut pending_validation = validation.clone();
        pending_validation.set_audience(&[PENDING_AUDIENCE]);
        let mut reset_validation = validation.clone();
        reset_validation.set_audience(&[RESET_AUDIENCE]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            pending_validation,
            reset_validation,
            ttl_secs: config.access_token_ttl_secs,
            csrf_key: {
                use sha2::{Digest, Sha256};
                Sha256::new()
                    .chain_update(b"csrf\0")
                    .chain_update(secret)
                    .finalize()
                    .to_vec()
            },
        }
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_secs,
            jti: Uuid::new_v4(),
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Only HS256 with our key, issuer and audience; `alg: none` and RS/ES confusion fail here.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }

    /// A signed pending-login ticket: the user whose password was accepted, for a few minutes.
    pub fn issue_pending_login(
        &self,
        user_id: Uuid,
        last_step: Option<i64>,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = PendingClaims {
            sub: user_id,
            iss: ISSUER.into(),
            aud: PENDING_AUDIENCE.into(),
            iat: now,
            exp: now + PENDING_LOGIN_TTL_SECS,
            stp: last_step,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user (and the TOTP step it was issued at) of a valid, unexpired pending-login
    /// ticket (an access token is not one).
    pub fn verify_pending_login(&self, token: &str) -> Option<(Uuid, Option<i64>)> {
        decode::<PendingClaims>(token, &self.decoding, &self.pending_validation)
            .ok()
            .map(|d| (d.claims.sub, d.claims.stp))
    }

    /// A MAC over `data` for one `purpose` (e.g. the conflict-check review on the new-matter
    /// form): pages put it in a hidden field and check it on submit, so a value the server
    /// showed cannot be forged. Domain-separated from the CSRF tokens by the purpose prefix.
    pub fn form_mac(&self, purpose: &str, data: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(b"form\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a [`Self::form_mac`].
    pub fn verify_form_mac(&self, purpose: &str, data: &[u8], given: &str) -> bool {
        use subtle::ConstantTimeEq;
        let want = self.form_mac(purpose, data);
        want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
    }

    /// A signed password-reset token for `user_id`, bound to a fingerprint of the current hash.
    pub fn issue_password_reset(&self, user_id: Uuid, fingerprint: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = ResetClaims {
            sub: user_id,
            iss: ISSUER.into(),
            aud: RESET_AUDIENCE.into(),
            iat: now,
            exp: now + PASSWORD_RESET_TTL_SECS,
            pwd: fingerprint.to_owned(),
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user and password fingerprint of a valid, unexpired password-reset token.
    pub fn verify_password_reset(&self, token: &str) -> Option<(Uuid, String)> {
        decode::<ResetClaims>(token, &self.decoding, &self.reset_validation)
            .ok()
            .map(|d| (d.claims.sub, d.claims.pwd))
    }

    /// The CSRF token of a cookie session: HMAC-like digest of its id, so it needs no storage.
    pub fn csrf_token(&self, session_id: Uuid) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.csrf_key).expect("any key length");
        mac.update(session_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};

    fn keys() -> TokenKeys {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load_or_create(dir.path(), None, None).unwrap();
        TokenKeys::new(&k, &Config::defaults())
    }

    #[test]
    fn pending_login_tickets_are_not_access_tokens() {
        let k = keys();
        let u = Uuid::new_v4();
        let t = k.issue_pending_login(u, Some(7)).unwrap();
        assert_eq!(k.verify_pending_login(&t), Some((u, Some(7))));
        assert!(
            k.verify(&t).is_none(),
            "a pending ticket is no access token"
        );
        let access = k.issue(u, Uuid::new_v4()).unwrap();
        assert_eq!(k.verify_pending_login(&access), None);
        assert_eq!(k.verify_pending_login(&format!("{t}x")), None);
    }

    #[test]
    fn round_trip_and_tampering() {
        let k = keys();
        let (u, s) = (Uuid::new_v4(), Uuid::new_v4());
        let t = k.issue(u, s).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!((c.sub, c.sid), (u, s));
        // Flip the payload: signature no longer matches.
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = serde_json::json!(Uuid::new_v4());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(payload.to_string()),
            parts[2]
        );
        assert!(k.verify(&forged).is_none());
        // alg=none with no signature.
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(k.verify(&none).is_none());
        // Another key.
        assert!(keys().verify(&t).is_none());
    }

    #[test]
    fn expired_and_wrong_audience_are_refused() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        let mk = |exp: i64, aud: &str| {
            let c = Claims {
                sub: Uuid::new_v4(),
                sid: Uuid::new_v4(),
                iss: ISSUER.into(),
                aud: aud.into(),
                iat: now,
                exp,
                jti: Uuid::new_v4(),
            };
            encode(&Header::new(Algorithm::HS256), &c, &k.encoding).unwrap()
        };
        assert!(k.verify(&mk(now + 60, AUDIENCE)).is_some());
        assert!(k.verify(&mk(now - 1, AUDIENCE)).is_none());
        assert!(k.verify(&mk(now + 60, "other")).is_none());
    }
}
