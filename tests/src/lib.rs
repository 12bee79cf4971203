//! End-to-end tests over real processes live in this package's `tests/` folder (one file per
//! scenario); the library is empty on purpose. The dev-dependencies on `conveyor-api` and
//! `conveyor-worker` make `cargo test` build their binaries before the tests run.
