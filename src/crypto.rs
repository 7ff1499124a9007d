//! Keys the server owns: the master key that encrypts secrets at rest (TOTP seeds now,
//! document data keys later) and the access-token signing key. Either comes from
//! configuration or is generated on first start and persisted (mode 0600) in the data dir.

use std::path::Path;

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// 32 random bytes from the OS generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A random token for people to carry (refresh tokens, invitations, tickets): 256 bits, URL-safe.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// How bearer secrets are stored: only their SHA-256, so a database leak yields nothing usable.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The AES-256-GCM key that wraps secrets at rest.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    pub fn from_base64(s: &SecretString) -> Result<Self, String> {
        let bytes = B64
            .decode(s.expose_secret().trim())
            .map_err(|_| "must be 32 bytes in base64".to_string())?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes in base64".to_string())?;
        Ok(Self(SecretBox::new(Box::new(arr))))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.expose_secret()).expect("32-byte key")
    }

    /// nonce ‖ ciphertext+tag. `context` binds the ciphertext to its purpose (and row),
    /// so a value copied into another column or row fails to decrypt.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce_bytes = random_bytes::<12>();
        let nonce = Nonce::try_from(&nonce_bytes[..]).expect("12-byte nonce");
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM encryption of a small buffer cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher()
            .decrypt(
                &Nonce::try_from(nonce).ok()?,
                aes_gcm::aead::Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .ok()
    }
}

/// The keys the server needs, resolved from config or the data dir.
pub struct Keys {
    pub master: MasterKey,
    pub jwt: SecretBox<Vec<u8>>,
}

impl Keys {
    pub fn load_or_create(
        data_dir: &Path,
        master: Option<&SecretString>,
        jwt: Option<&SecretString>,
    ) -> anyhow::Result<Self> {
        let master = match master {
            Some(k) => {
                MasterKey::from_base64(k).map_err(|e| anyhow::anyhow!("LFP_MASTER_KEY {e}"))?
            }
            None => {
                let s = load_or_generate(data_dir, "master.key", true)?;
                MasterKey::from_base64(&s).map_err(|e| anyhow::anyhow!("master.key {e}"))?
            }
        };
        let jwt = match jwt {
            Some(s) => s.expose_secret().as_bytes().to_vec(),
            None => {
                let s = load_or_generate(data_dir, "jwt.key", false)?;
                B64.decode(s.expose_secret().trim())?
            }
        };
        Ok(Self {
            master,
            jwt: SecretBox::new(Box::new(jwt)),
        })
    }
}

fn load_or_generate(data_dir: &Path, name: &str, warn: bool) -> anyhow::Result<SecretString> {
    use anyhow::Context;
    let dir = data_dir.join("keys");
    let path = dir.join(name);
    if path.exists() {
        let s = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(SecretString::from(s));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let s = B64.encode(random_bytes::<32>());
    write_private(&path, s.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    if warn {
        tracing::warn!(
            path = %path.display(),
            "generated a new master key: back it up with the database; without it encrypted secrets cannot be read"
        );
    }
    Ok(SecretString::from(s))
}

/// A new random master key in the form the key file and `LFP_MASTER_KEY` hold.
pub fn generate_master_key_base64() -> SecretString {
    SecretString::from(B64.encode(random_bytes::<32>()))
}

/// Create `path` with owner-only permissions; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_same_context() {
        let k = MasterKey::from_base64(&SecretString::from(B64.encode([7u8; 32]))).unwrap();
        let sealed = k.seal(b"seed", b"user:1");
        assert_eq!(k.open(&sealed, b"user:1").unwrap(), b"seed");
        assert!(k.open(&sealed, b"user:2").is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.open(&tampered, b"user:1").is_none());
    }

    #[test]
    fn keys_persist_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keys::load_or_create(dir.path(), None, None).unwrap();
        let b = Keys::load_or_create(dir.path(), None, None).unwrap();
        assert_eq!(a.jwt.expose_secret(), b.jwt.expose_secret());
        let sealed = a.master.seal(b"x", b"c");
        assert_eq!(b.master.open(&sealed, b"c").unwrap(), b"x");
    }
}
