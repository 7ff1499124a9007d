//! Chunked AES-256-GCM for stored documents. Each document version has its own random data
//! key (wrapped by the master key) and a random nonce prefix; the plaintext is cut into
//! fixed-size chunks sealed one by one, so any byte range can be decrypted alone and files of
//! any size stream through a fixed amount of memory.
//!
//! Chunk `i` uses nonce `prefix ‖ i` and authenticates `i` and a "last chunk" flag as
//! associated data: a reordered, duplicated, truncated or extended object fails to open.

use std::ops::Range;

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use secrecy::{ExposeSecret, SecretBox};

use crate::crypto::{MasterKey, random_bytes};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// AES-GCM tag appended to every chunk.
pub const TAG: usize = 16;
/// Ciphertext bytes of every chunk but possibly the last.
pub const CT_CHUNK: u64 = (CHUNK + TAG) as u64;

/// A per-version data key. Only ever stored wrapped by the master key.
pub struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(random_bytes::<32>())))
    }

    /// The key sealed by the master key, bound to `context` (the version it belongs to).
    pub fn wrap(&self, master: &MasterKey, context: &[u8]) -> Vec<u8> {
        master.seal(self.0.expose_secret(), context)
    }

    pub fn unwrap(master: &MasterKey, wrapped: &[u8], context: &[u8]) -> Option<Self> {
        let raw = master.open(wrapped, context)?;
        let arr: [u8; 32] = raw.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(arr))))
    }
}

/// Seals and opens the chunks of one object.
pub struct ChunkCipher {
    cipher: Aes256Gcm,
    prefix: [u8; 8],
}

impl ChunkCipher {
    pub fn new(key: &DataKey, prefix: [u8; 8]) -> Self {
        Self {
            cipher: Aes256Gcm::new_from_slice(key.0.expose_secret()).expect("32-byte key"),
            prefix,
        }
    }

    fn nonce(&self, index: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&self.prefix);
        n[8..].copy_from_slice(&index.to_be_bytes());
        n
    }

    fn aad(index: u32, last: bool) -> [u8; 9] {
        let mut a = [0u8; 9];
        a[..4].copy_from_slice(b"lfp1");
        a[4..8].copy_from_slice(&index.to_be_bytes());
        a[8] = last as u8;
        a
    }

    pub fn seal(&self, index: u32, last: bool, plain: &[u8]) -> Vec<u8> {
        self.cipher
            .encrypt(
                &Nonce::try_from(&self.nonce(index)[..]).expect("12-byte nonce"),
                Payload {
                    msg: plain,
                    aad: &Self::aad(index, last),
                },
            )
            .expect("AES-GCM encryption of one chunk cannot fail")
    }

    pub fn open(&self, index: u32, last: bool, sealed: &[u8]) -> Option<Vec<u8>> {
        self.cipher
            .decrypt(
                &Nonce::try_from(&self.nonce(index)[..]).expect("12-byte nonce"),
                Payload {
                    msg: sealed,
                    aad: &Self::aad(index, last),
                },
            )
            .ok()
    }
}

/// Turns a stream of plaintext pieces into sealed chunks. A full chunk is only sealed once
/// more input arrives, so the last chunk (possibly full, possibly empty) carries the flag.
pub struct Encryptor {
    cipher: ChunkCipher,
    index: u32,
    buf: Vec<u8>,
}

impl Encryptor {
    pub fn new(cipher: ChunkCipher) -> Self {
        Self {
            cipher,
            index: 0,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Feed plaintext; returns the chunks that became complete (usually none or one).
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<Vec<u8>>, TooManyChunks> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.buf.len() == CHUNK {
                out.push(self.cipher.seal(self.index, false, &self.buf));
                self.index = self.index.checked_add(1).ok_or(TooManyChunks)?;
                self.buf.clear();
            }
            let n = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(out)
    }

    /// Seal what is left as the final chunk.
    pub fn finish(self) -> Vec<u8> {
        self.cipher.seal(self.index, true, &self.buf)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("object too large for the chunk counter")]
pub struct TooManyChunks;

/// Chunks of a plaintext of `size` bytes (an empty file still has one, empty, chunk).
pub fn chunk_count(size: u64) -> u64 {
    if size == 0 {
        1
    } else {
        size.div_ceil(CHUNK as u64)
    }
}

/// Stored bytes for a plaintext of `size` bytes.
pub fn ciphertext_len(size: u64) -> u64 {
    size + chunk_count(size) * TAG as u64
}

/// Plaintext length of chunk `index` of a `size`-byte plaintext.
pub fn plain_len_of(size: u64, index: u64) -> usize {
    let start = index * CHUNK as u64;
    size.saturating_sub(start).min(CHUNK as u64) as usize
}

/// Which chunks (and which stored bytes) serve the plaintext range `want` (non-empty, in bounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub first_chunk: u64,
    pub last_chunk: u64,
    /// Stored byte range to fetch.
    pub stored: Range<u64>,
    /// Plaintext bytes to drop from the first decrypted chunk.
    pub skip: usize,
    /// Plaintext bytes to emit in total.
    pub len: u64,
}

pub fn span(size: u64, want: Range<u64>) -> Span {
    debug_assert!(want.start <= want.end && want.end <= size);
    let c = CHUNK as u64;
    let first_chunk = want.start / c;
    let last_chunk = if want.end == 0 {
        0
    } else {
        ((want.end - 1) / c).max(first_chunk)
    };
    let stored_end = (first_chunk..=last_chunk)
        .map(|i| plain_len_of(size, i) as u64 + TAG as u64)
        .sum::<u64>()
        + first_chunk * CT_CHUNK;
    Span {
        first_chunk,
        last_chunk,
        stored: first_chunk * CT_CHUNK..stored_end,
        skip: (want.start - first_chunk * c) as usize,
        len: want.end - want.start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cipher() -> ChunkCipher {
        ChunkCipher::new(&DataKey(SecretBox::new(Box::new([9u8; 32]))), [3u8; 8])
    }

    fn encrypt(data: &[u8], piece: usize) -> Vec<u8> {
        let mut e = Encryptor::new(cipher());
        let mut out = Vec::new();
        for p in data.chunks(piece.max(1)) {
            for c in e.push(p).unwrap() {
                out.extend(c);
            }
        }
        out.extend(e.finish());
        out
    }

    /// Decrypt `want` of a stored object the way downloads do: only the chunks in the span.
    fn read_range(stored: &[u8], size: u64, want: Range<u64>) -> Option<Vec<u8>> {
        let s = span(size, want);
        let bytes = &stored[s.stored.start as usize..s.stored.end as usize];
        let c = cipher();
        let last = chunk_count(size) - 1;
        let mut out = Vec::new();
        let mut off = 0;
        for i in s.first_chunk..=s.last_chunk {
            let n = plain_len_of(size, i) + TAG;
            let plain = c.open(i as u32, i == last, &bytes[off..off + n])?;
            off += n;
            out.extend(plain);
        }
        Some(out[s.skip..s.skip + s.len as usize].to_vec())
    }

    #[test]
    fn sizes_line_up_with_chunk_boundaries() {
        for size in [
            0u64,
            1,
            CHUNK as u64 - 1,
            CHUNK as u64,
            CHUNK as u64 + 1,
            3 * CHUNK as u64,
        ] {
            let data = vec![7u8; size as usize];
            let stored = encrypt(&data, 1000);
            assert_eq!(stored.len() as u64, ciphertext_len(size), "size {size}");
            assert_eq!(read_range(&stored, size, 0..size).unwrap(), data);
        }
    }

    #[test]
    fn tampering_truncation_and_reordering_are_detected() {
        let data: Vec<u8> = (0..(2 * CHUNK + 10)).map(|i| i as u8).collect();
        let stored = encrypt(&data, 4096);
        let size = data.len() as u64;
        let mut flipped = stored.clone();
        flipped[10] ^= 1;
        assert!(read_range(&flipped, size, 0..size).is_none());
        // Dropping the final chunk: the new last chunk was not sealed as last.
        let truncated = &stored[..2 * CT_CHUNK as usize];
        let c = cipher();
        assert!(c.open(1, true, &truncated[CT_CHUNK as usize..]).is_none());
        // Swapping chunks 0 and 1.
        let mut swapped = stored[CT_CHUNK as usize..2 * CT_CHUNK as usize].to_vec();
        swapped.extend_from_slice(&stored[..CT_CHUNK as usize]);
        assert!(c.open(0, false, &swapped[..CT_CHUNK as usize]).is_none());
    }

    #[test]
    fn wrapped_keys_open_only_with_their_context() {
        use base64::Engine;
        let master = MasterKey::from_base64(&secrecy::SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
        ))
        .unwrap();
        let k = DataKey::generate();
        let w = k.wrap(&master, b"v:1");
        assert!(DataKey::unwrap(&master, &w, b"v:2").is_none());
        let k2 = DataKey::unwrap(&master, &w, b"v:1").unwrap();
        assert_eq!(k.0.expose_secret(), k2.0.expose_secret());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_range_round_trips(
            size in 0usize..(3 * CHUNK + 100),
            piece in 1usize..70_000,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let stored = encrypt(&data, piece);
            prop_assert_eq!(stored.len() as u64, ciphertext_len(size as u64));
            let (mut s, mut e) = (a % (size as u64 + 1), b % (size as u64 + 1));
            if s > e { std::mem::swap(&mut s, &mut e); }
            let got = read_range(&stored, size as u64, s..e).unwrap();
            prop_assert_eq!(&got[..], &data[s as usize..e as usize]);
        }
    }
}
