//! End-to-end tests over real processes live in `tests/`; this library is empty on purpose.
