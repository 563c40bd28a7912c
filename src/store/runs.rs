//! Run records (filled in with the run engine).
