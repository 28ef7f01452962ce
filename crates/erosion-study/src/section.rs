//! What each analysis hands to the study: its numbers and its report section.

use crate::context::StudyContext;
use anyhow::Result;
use erosion_forward::batch::Progress;
use erosion_report::figures::write_svg;
use erosion_report::html::{Figure, Section};
use erosion_report::npy::write_npy;

/// One analysis's output.
pub struct SectionOutput {
    /// The key of its results in results.json (`behaviour`, `gradients`, `layers`, `directions`).
    pub key: &'static str,
    /// Every number the analysis computed, with the options that made it.
    pub results: serde_json::Value,
    pub section: Section,
}

impl StudyContext {
    /// Writes an array as `.npy` under `arrays/` and returns its path relative to the report.
    pub fn save_npy<T: erosion_report::npy::NpyElement>(
        &self,
        name: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<String> {
        let rel = format!("arrays/{name}.npy");
        write_npy(&self.output_path(&rel)?, shape, data)?;
        Ok(rel)
    }

    /// Writes an SVG under `figures/` and returns the report figure that inlines it.
    pub fn save_figure(&self, name: &str, caption: &str, svg: String) -> Result<Figure> {
        let rel = format!("figures/{name}.svg");
        write_svg(&self.output_path(&rel)?, &svg)?;
        Ok(Figure {
            caption: caption.to_string(),
            svg,
            file: Some(rel),
        })
    }

    /// The progress report of one forward pass, shown however the caller's sink shows it.
    pub fn progress(&self, label: String) -> Box<dyn Progress> {
        self.progress_sink.start(&label)
    }
}
