//! Integration tests over real TCP and Unix sockets against the real `dflockd` binary.

mod alloc;
mod auth;
mod bench_tool;
mod chaos;
mod client;
mod config;
mod deploy;
mod dflockctl;
mod disconnect;
mod fuzz_replay;
mod hostile;
mod lifecycle;
mod limits;
mod locks;
mod logging;
mod metrics;
mod pipelining;
mod protocol;
mod safety;
mod signals;
mod slow_consumers;
mod stats;
mod support;
mod timeouts;
mod tls;
mod unix;
