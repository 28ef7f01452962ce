//! One module per subcommand.

pub mod generate;
pub mod inspect;
pub mod render;
pub mod study;
