//! The socket-free request path of the server: one reply line per request, well-formed lines, output caps, leak check.
//! See `dflockd::fuzzing::session` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::session(data));
