//! What each analysis hands to the study: its numbers and its report section.

use crate::context::StudyContext;
use anyhow::Result;
use erosion_forward::batch::Progress;
use erosion_report::figures::write_svg;
use erosion_report::html::{Figure, Section};
use erosion_report::npy::write_npy;
use indicatif::{ProgressBar, ProgressStyle};

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

    /// A progress bar over examples for a forward pass (hidden when stderr is not a terminal).
    pub fn progress(&self, message: String) -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:40} [{bar:30}] {pos}/{len} examples {elapsed}<{eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message);
        Bar(bar)
    }
}

/// An indicatif bar as a forward-pass [`Progress`].
pub struct Bar(pub ProgressBar);

impl Progress for Bar {
    fn set_total(&mut self, examples: usize) {
        self.0.set_length(examples as u64);
    }
    fn advance(&mut self, examples: usize) {
        self.0.inc(examples as u64);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
