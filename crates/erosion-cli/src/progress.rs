//! Progress bars on the terminal: the CLI's [`ProgressSink`] for the library's forward passes
//! (the library only names each pass; drawing is the command line's business).

use erosion_forward::batch::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};

/// One indicatif bar per pass, counted in examples, with the pass's latest status (a training
/// step's loss) after it; hidden when stderr is not a terminal.
pub struct Bars;

impl ProgressSink for Bars {
    fn start(&self, label: &str) -> Box<dyn Progress> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:40} [{bar:30}] {pos}/{len} examples {elapsed}<{eta} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Box::new(Bar(bar))
    }
}

/// A bar that clears itself when its pass is over.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_total(&mut self, examples: usize) {
        self.0.set_length(examples as u64);
    }
    fn advance(&mut self, examples: usize) {
        self.0.inc(examples as u64);
    }
    fn message(&mut self, text: &str) {
        self.0.set_message(text.to_string());
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
