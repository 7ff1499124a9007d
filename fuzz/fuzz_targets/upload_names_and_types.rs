//! Uploads: type sniffing of the first bytes, file-name sanitising, extension checks and the
//! `Content-Disposition` header built from the name.
#![no_main]

use lawfirm_pro::documents::domain::{self, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8], bool)| {
    let (name, head, complete) = input;
    let _ = domain::sniff(head, complete);
    let clean = domain::sanitize_filename(name);
    assert_eq!(domain::sanitize_filename(&clean), clean);
    assert!(!clean.contains(['/', '\\', '\0']));
    for kind in Kind::ALL {
        let _ = domain::extension_fits(*kind, name);
    }
    let header = domain::content_disposition(name);
    assert!(!header.contains(['\r', '\n']));
});
