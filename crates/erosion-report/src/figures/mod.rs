//! SVG figures of the study, drawn with plotters' SVG backend (no fonts needed).
//!
//! Each figure kind takes a small serialisable struct of data and titles and returns the
//! SVG text; [`write_svg`] saves it atomically. Bad input (no data, mismatched lengths) is
//! an error naming the field; NaN and infinite values are drawn as grey hatched cells or
//! as gaps in lines, never a panic. All text passes through [`style::clean_text`] (no
//! control characters) and plotters escapes XML's special characters.

pub mod annotated_matrix;
pub mod draw;
pub mod grouped_bars;
pub mod layers;
pub mod lines;
pub mod next_token;
pub mod scatter;
pub mod square_matrix;
pub mod style;
pub mod token_heatmap;

use std::path::Path;

use anyhow::Result;

pub use annotated_matrix::{annotated_matrix_svg, AnnotatedMatrix};
pub use grouped_bars::{grouped_bars_svg, Bar, BarGroup, GroupedBars};
pub use layers::{layer_projection_svg, LayerProjections};
pub use lines::{line_chart_svg, LineChart, LineSeries};
pub use next_token::{next_token_svg, NextTokenBars, NextTokenPanel};
pub use scatter::{scatter_svg, PointGroup, Scatter};
pub use square_matrix::{matrix_heatmap_svg, MatrixGroup, MatrixHeatmap};
pub use style::{ColorScale, ModelColors};
pub use token_heatmap::{running_log_joint, token_logprob_svg, TokenLogprobs};

/// Writes an SVG figure to `path` atomically.
pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    erosion_model::atomic::write_bytes_atomic(path, svg.as_bytes())
}
