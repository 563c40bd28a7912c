//! In-memory fake provider for engine tests and benchmarks (filled in with the run engine).
