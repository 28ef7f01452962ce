//! One module per subcommand.

pub mod demo;
pub mod drift;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod render;
pub mod steer;
pub mod study;
pub mod train;
