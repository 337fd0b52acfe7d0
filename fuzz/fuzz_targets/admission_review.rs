//! AdmissionReview decoding as the webhook's HTTP layer does it, on arbitrary bodies: no panic,
//! a request with a uid or a message. Seeds: core/tests/corpus/review.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match aipam_webhook::http::decode(data) {
        Ok(req) => assert!(!req.uid.is_empty()),
        Err(msg) => assert!(!msg.is_empty()),
    }
});
