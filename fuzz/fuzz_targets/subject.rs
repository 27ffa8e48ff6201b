//! The signal subscription index against the naive pattern matcher, queue groups included.
//! See `dflockd::fuzzing::subject` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::subject(data));
