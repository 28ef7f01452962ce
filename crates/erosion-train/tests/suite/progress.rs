//! The trainer draws nothing: a run's progress goes to the caller's sink.

use anyhow::Result;
use erosion_forward::batch::{Progress, ProgressSink};
use erosion_forward::notice::Silent;
use erosion_train::run::{train, RunSpec};
use erosion_train::Method;
use std::cell::RefCell;
use std::rc::Rc;

use crate::train::{data, options, spec, tokenizer};

/// Records what the run reports, in order.
#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    fn push(&self, event: String) {
        self.0.borrow_mut().push(event);
    }
}

impl ProgressSink for Log {
    fn start(&self, label: &str) -> Box<dyn Progress> {
        self.push(format!("start {label}"));
        Box::new(self.clone())
    }
}

impl Progress for Log {
    fn set_total(&mut self, examples: usize) {
        self.push(format!("total {examples}"));
    }
    fn advance(&mut self, examples: usize) {
        self.push(format!("+{examples}"));
    }
    fn message(&mut self, text: &str) {
        // The loss changes from run to run of the test's data; its presence is what counts.
        assert!(text.starts_with("loss "), "{text}");
        self.push("loss".into());
    }
}

/// Sequences are counted over the whole run, a resumed run starting at the steps already
/// taken; every step also reports its loss.
#[test]
fn a_run_reports_its_sequences_and_losses_to_the_callers_sink() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (tok, data, opts) = (tokenizer(), data(10), options(3, Method::Full));
    let log = Log::default();
    let out = tmp.path().join("m");
    let with_log = |stop_after| RunSpec {
        progress: &log,
        ..spec(&tok, stop_after)
    };
    train(&with_log(Some(2)), &data, &opts, &out, &mut Silent)?;
    train(&with_log(None), &data, &opts, &out, &mut Silent)?;
    let per = opts.sequences_per_step();
    let step = ["loss".to_string(), format!("+{per}")];
    let mut want = vec!["start training".to_string(), format!("total {}", 3 * per)];
    want.extend(step.iter().cloned().chain(step.iter().cloned()));
    want.extend(["start training".to_string(), format!("total {}", 3 * per)]);
    want.push(format!("+{}", 2 * per));
    want.extend(step.iter().cloned());
    assert_eq!(*log.0.borrow(), want);
    Ok(())
}
