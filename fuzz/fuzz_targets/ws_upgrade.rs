//! `ringgate::fuzzing::ws_upgrade`: see its documentation for the input layout
//! and the invariants checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringgate::fuzzing::ws_upgrade(data));
