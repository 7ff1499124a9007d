//! `Stripe-Signature` headers from the network: parsing never panics and a forged header
//! never verifies.
#![no_main]

use lawfirm_pro::billing::checkout::verify_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8], i64)| {
    let (header, body, now) = input;
    // The fuzzer does not know the secret: nothing it writes may pass.
    assert!(verify_signature(header, body, b"whsec_fuzz_secret_not_in_input", now).is_err());
});
