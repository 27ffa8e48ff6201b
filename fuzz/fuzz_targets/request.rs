//! Framing plus parsing: every request that parses respects the field rules and survives a canonical round trip.
//! See `dflockd::fuzzing::request` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::request(data));
