//! This crate's integration tests, linked into one test binary.

mod folder;
mod progress;
mod protect;
mod train;
