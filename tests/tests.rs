//! nexushub's integration tests: one test binary (ripgrep's layout) whose modules
//! run the real `nexushub` binary against a real rustls client trusting the
//! committed test CA (`tests/fixtures/`) and real backends on loopback port 0.
//!
//! Every test starts its own processes in its own temp dir, so they run in parallel;
//! every socket has a read timeout and every wait a deadline. Shared helpers live in
//! `support/`; `harness` and `websocket_peers` test those helpers without nexushub.

mod support;

mod apps;
mod cli;
mod fuzz_seeds;
mod harness;
mod layers;
mod logs;
mod proxy_bodies;
mod proxy_conns;
mod proxy_forwarding;
mod proxy_limits;
mod proxy_never_wrong;
mod proxy_slow;
mod proxy_smuggling;
mod proxy_status;
mod proxy_websocket;
mod websocket_peers;
mod whoami;
