//! `Range` headers: a partial answer never reaches outside the file.
#![no_main]

use lawfirm_pro::documents::content::{RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (header, size) = input;
    if let RangeRequest::Partial(r) = parse_range(Some(header), size) {
        assert!(r.start < r.end && r.end <= size, "{r:?} of {size}");
    }
});
