//! End-to-end tests of breakwater through real hyper, axum and tonic, on 127.0.0.1: see
//! `tests/`. This library is empty; the servers the tests call are in the `loopback` crate.
