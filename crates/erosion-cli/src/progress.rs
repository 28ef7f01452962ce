//! Progress on stderr: the CLI's [`ProgressSink`] for the library's forward passes (the
//! library only names each pass; drawing is the command line's business). On a terminal, bars;
//! piped or logged (where indicatif hides its bars), a plain line every few seconds, so a log
//! of a long run shows that it is moving.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use erosion_forward::batch::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between two plain progress lines of one pass.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// One indicatif bar per pass on a terminal, counted in examples, with the pass's latest
/// status (a training step's loss) after it; plain lines when stderr is not a terminal.
pub struct Bars;

impl ProgressSink for Bars {
    fn start(&self, label: &str) -> Box<dyn Progress> {
        if !std::io::stderr().is_terminal() {
            return Box::new(Lines::new(label, LINE_EVERY, Box::new(std::io::stderr())));
        }
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

/// A pass's progress as lines: `label: 120/400 examples, 15 s (loss 2.31)` at most once per
/// `every`, and a last line when the pass ends after having printed any.
struct Lines {
    label: String,
    every: Duration,
    out: Box<dyn std::io::Write>,
    start: Instant,
    last: Instant,
    done: usize,
    total: usize,
    status: String,
    printed: bool,
}

impl Lines {
    fn new(label: &str, every: Duration, out: Box<dyn std::io::Write>) -> Self {
        let now = Instant::now();
        Lines {
            label: label.to_string(),
            every,
            out,
            start: now,
            last: now,
            done: 0,
            total: 0,
            status: String::new(),
            printed: false,
        }
    }

    fn line(&mut self) {
        let of = if self.total > 0 {
            format!("/{}", self.total)
        } else {
            String::new()
        };
        let status = if self.status.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.status)
        };
        let secs = self.start.elapsed().as_secs_f64();
        // A progress line that cannot be written is not worth failing the run for.
        let _ = writeln!(
            self.out,
            "{}: {}{of} examples, {secs:.0} s{status}",
            self.label, self.done
        );
        self.last = Instant::now();
        self.printed = true;
    }

    fn maybe_line(&mut self) {
        if self.last.elapsed() >= self.every {
            self.line();
        }
    }
}

impl Progress for Lines {
    fn set_total(&mut self, examples: usize) {
        self.total = examples;
    }
    fn advance(&mut self, examples: usize) {
        self.done += examples;
        self.maybe_line();
    }
    fn message(&mut self, text: &str) {
        self.status = text.to_string();
        self.maybe_line();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Short passes stay silent; a long one says where it ended.
        if self.printed {
            self.line();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose text the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_come_at_most_every_interval_and_end_with_the_total() {
        let out = Shared::default();
        let mut p = Lines::new("pass", Duration::from_millis(50), Box::new(out.clone()));
        p.set_total(10);
        p.advance(1);
        assert!(
            out.0.lock().unwrap().is_empty(),
            "a line before the interval"
        );
        std::thread::sleep(Duration::from_millis(60));
        p.message("loss 2.5");
        p.advance(2);
        drop(p);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("pass: 1/10 examples, 0 s (loss 2.5)"),
            "{text}"
        );
        assert!(lines[1].starts_with("pass: 3/10 examples"), "{text}");
    }

    #[test]
    fn a_short_pass_prints_nothing() {
        let out = Shared::default();
        let mut p = Lines::new("pass", Duration::from_secs(60), Box::new(out.clone()));
        p.set_total(3);
        p.advance(3);
        drop(p);
        assert!(out.0.lock().unwrap().is_empty());
    }
}
