//! Benchmark harness (filled in by the benchmark issues).
