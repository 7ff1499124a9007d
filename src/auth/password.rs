//! Passwords: the policy, and Argon2id hashing on the blocking pool behind a semaphore, so a
//! login flood queues instead of starving the executor or exhausting memory (19 MiB each).

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// 30,000 most common passwords (the zxcvbn project's list, MIT licence), lower-cased.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 256;

/// Why a new password is refused.
pub fn check_policy(password: &str, email: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err("must be at least 12 characters");
    }
    if n > MAX_LEN {
        return Err("must be at most 256 characters");
    }
    let lower = password.to_lowercase();
    if lower == email.trim().to_lowercase() {
        return Err("must not be your email address");
    }
    // A common password stays common with digits or symbols around it ("password1234").
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if COMMON.contains(lower.as_str()) || (!core.is_empty() && COMMON.contains(core)) {
        return Err("is too common; choose a less predictable password");
    }
    let first = lower.chars().next();
    if lower.chars().all(|c| Some(c) == first) {
        return Err("is too predictable");
    }
    Ok(())
}

/// Hashes and verifies passwords off the async executor.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    params: Params,
    /// A hash of a random password: verifying against it makes unknown emails cost the same.
    dummy: Arc<String>,
}

impl Hasher {
    pub fn new(concurrency: usize, fast_for_tests: bool) -> Self {
        // OWASP: m = 19 MiB, t = 2, p = 1. Tests may use the minimum cost to stay quick.
        let params = if fast_for_tests {
            Params::new(Params::MIN_M_COST, 1, 1, None).expect("valid params")
        } else {
            Params::new(19 * 1024, 2, 1, None).expect("valid params")
        };
        let dummy = argon(&params)
            .hash_password(crate::crypto::random_token().as_bytes())
            .expect("hashing a fixed-size input")
            .to_string();
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            params,
            dummy: Arc::new(dummy),
        }
    }

    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let params = self.params.clone();
        let pw = password.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _e = span.enter();
            argon(&params)
                .hash_password(pw.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await?
    }

    /// Verify against `hash`, or against a dummy when there is no user, in the same time.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let known = hash.is_some();
        let hash = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy.as_ref().clone());
        let pw = password.clone();
        let span = tracing::Span::current();
        let ok = tokio::task::spawn_blocking(move || {
            let _e = span.enter();
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            // Verification uses the parameters stored in the hash itself.
            Argon2::default()
                .verify_password(pw.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .await?;
        Ok(ok && known)
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(COMMON.len() >= 10_000);
        assert!(check_policy("short", "a@b.co").is_err());
        assert!(check_policy("password1234", "a@b.co").is_err());
        assert!(check_policy("qwertyuiop12", "a@b.co").is_err());
        assert!(check_policy("!!Password2024!!", "a@b.co").is_err());
        assert!(check_policy("aaaaaaaaaaaaaa", "a@b.co").is_err());
        assert!(check_policy("ann.lee@example.com", "Ann.Lee@example.com").is_err());
        assert!(check_policy("correct horse battery staple", "a@b.co").is_ok());
        assert!(check_policy(&"x1".repeat(200), "a@b.co").is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_cost_and_verify() {
        let h = Hasher::new(1, false);
        let pw = SecretString::from("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(h.verify(&pw, Some(&hash)).await.unwrap());
        assert!(
            !h.verify(
                &SecretString::from("wrong horse battery staple"),
                Some(&hash)
            )
            .await
            .unwrap()
        );
        assert!(!h.verify(&pw, None).await.unwrap());
    }
}
