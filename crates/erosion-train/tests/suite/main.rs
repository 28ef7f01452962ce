//! This crate's integration tests, linked into one test binary.

mod protect;
mod train;
