//! The timer wheel against a sorted-map model.
//! See `dflockd::fuzzing::timer` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::timer(data));
