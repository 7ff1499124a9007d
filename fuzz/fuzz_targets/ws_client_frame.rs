//! WebSocket client frames (resume, subscribe, unsubscribe, ping): never a panic.
#![no_main]

use lawfirm_pro::realtime::socket::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ClientFrame>(data);
});
