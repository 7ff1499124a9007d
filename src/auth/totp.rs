//! TOTP (RFC 6238) second factor: SHA-1, 6 digits, 30-second steps, ±1 step of clock skew.

use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const ISSUER: &str = "Law Firm Pro";

fn totp(secret: &[u8], account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .ok()
}

/// A fresh 160-bit secret.
pub fn generate_secret() -> Vec<u8> {
    crate::crypto::random_bytes::<20>().to_vec()
}

pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

pub fn otpauth_url(secret: &[u8], account: &str) -> Option<String> {
    totp(secret, account).and_then(|t| t.to_url().ok())
}

/// The time step a valid code belongs to (so a reused code can be refused), if any.
pub fn verify(secret: &[u8], account: &str, code: &str, unix_time: u64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, account)?;
    let step = (unix_time / 30) as i64;
    [step, step - 1, step + 1].into_iter().find(|s| {
        let candidate = t.generate(*s as u64 * 30).to_string();
        subtle::ConstantTimeEq::ct_eq(candidate.as_bytes(), code.as_bytes()).into()
    })
}

/// The current code, for tests and the demo.
pub fn current_code(secret: &[u8], unix_time: u64) -> String {
    totp(secret, "x")
        .map(|t| t.generate(unix_time).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_skew() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(current_code(secret, 59), "287082");
        assert_eq!(verify(secret, "a@b.co", "287082", 59), Some(1));
        assert_eq!(verify(secret, "a@b.co", "287082", 59 + 30), Some(1));
        assert_eq!(verify(secret, "a@b.co", "287082", 59 + 90), None);
        assert_eq!(verify(secret, "a@b.co", "28708x", 59), None);
        let url = otpauth_url(secret, "a@b.co").unwrap();
        assert!(url.starts_with("otpauth://totp/"), "{url}");
    }
}
