//! The lock, semaphore and signal engine against a shadow model: FIFO, capacity, one reply per request, leak check.
//! See `dflockd::fuzzing::engine` for the input format and the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dflockd::fuzzing::engine(data));
