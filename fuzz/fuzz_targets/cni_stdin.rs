//! The CNI binary's stdin parser on arbitrary bytes: no panic, a configuration or a CNI error
//! with a spec code (1, 6 or 7). Seeds: core/tests/corpus/cni.
#![no_main]

use aipam_cni::config::parse;
use aipam_cni::env::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for command in [Command::Add, Command::Check, Command::Status] {
        if let Err(e) = parse(data, command) {
            assert!(matches!(e.code, 1 | 6 | 7));
        }
    }
});
