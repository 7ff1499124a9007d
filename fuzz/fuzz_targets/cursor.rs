//! Pagination cursors are client-supplied: decoding never panics, whatever the key type.
#![no_main]

use lawfirm_pro::http::pagination::decode_cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = decode_cursor::<(String, i64)>(Some(s));
    let _ = decode_cursor::<(String, uuid::Uuid)>(Some(s));
    let _ = decode_cursor::<serde_json::Value>(Some(s));
});
