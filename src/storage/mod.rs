//! Where document bytes live: an `object_store` backend (a local directory by default, any
//! S3-compatible store by configuration) holding only ciphertext ([`chunks`]). Object keys
//! are random; nothing about a file's name or owner can be read from the store.

pub mod chunks;

use std::sync::Arc;

use anyhow::Context;
use object_store::{ObjectStore, local::LocalFileSystem, path::Path, prefix::PrefixStore};

use crate::Config;

/// The configured object store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// `LFP_OBJECT_STORE=s3://bucket/prefix` (credentials, region and endpoint from the standard
    /// `AWS_*` variables), otherwise `data_dir/objects`.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = match config.object_store.as_deref() {
            Some(url) => s3(url)?,
            None => {
                let dir = config.data_dir.join("objects");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                // Synced before a write returns, as S3 is durable when it answers: the version
                // row that names the bytes commits (and syncs) right after.
                Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .with_context(|| format!("object directory {}", dir.display()))?
                        .with_fsync(true),
                )
            }
        };
        Ok(Self { store })
    }

    pub fn from_store(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A fresh random key for a new object (128 random bits; never derived from user input).
    pub fn new_key() -> String {
        format!(
            "documents/{}",
            hex::encode(crate::crypto::random_bytes::<16>())
        )
    }

    pub fn path(key: &str) -> Path {
        Path::from(key)
    }

    /// Remove an object; a missing one is fine (deletes are retried by the sweeper).
    pub async fn remove(&self, key: &str) -> anyhow::Result<()> {
        use object_store::ObjectStoreExt;
        match self.store.delete(&Self::path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Check the form of `LFP_OBJECT_STORE` (at start-up, before anything connects).
pub fn parse_store_url(url: &str) -> Result<(String, String), String> {
    let u = url::Url::parse(url).map_err(|e| format!("`{url}`: {e}"))?;
    if u.scheme() != "s3" {
        return Err("must be an s3://bucket/prefix URL (unset for the local directory)".into());
    }
    let bucket = u
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| "names no bucket (s3://bucket/prefix)".to_string())?
        .to_string();
    let prefix = u.path().trim_matches('/').to_string();
    Ok((bucket, prefix))
}

fn s3(url: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let (bucket, prefix) =
        parse_store_url(url).map_err(|m| anyhow::anyhow!("LFP_OBJECT_STORE {m}"))?;
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .context("LFP_OBJECT_STORE: configuring the S3 client")?;
    Ok(if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!(
            parse_store_url("s3://docs/firm/a").unwrap(),
            ("docs".into(), "firm/a".into())
        );
        assert_eq!(
            parse_store_url("s3://docs").unwrap(),
            ("docs".into(), String::new())
        );
        assert!(parse_store_url("file:///tmp").is_err());
        assert!(parse_store_url("nonsense").is_err());
    }

    #[test]
    fn keys_are_random() {
        assert_ne!(Storage::new_key(), Storage::new_key());
        assert!(Storage::new_key().starts_with("documents/"));
    }
}
