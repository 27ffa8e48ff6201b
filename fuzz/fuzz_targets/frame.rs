//! Framing: arbitrary bytes in arbitrary chunkings agree with the reference framer.
//! See `dflockd::fuzzing::frame` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::frame(data));
