//! Notices: the lines a long run reports to whoever runs it (a section starting, an analysis
//! that failed, a folder replaced). Library code never prints: it hands each line to the
//! caller's [`Notify`]. The `erosion` binary prints them on stderr; a library user may pass
//! [`Silent`] or a closure that keeps them.
//!
//! The same pattern as [`crate::batch::Progress`], which counts the examples of one pass;
//! notices are whole lines over a whole run.

/// Receives a run's notices, one line each (no trailing newline).
pub trait Notify {
    fn notice(&mut self, line: &str);
}

/// Drops every notice.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Notify for Silent {
    fn notice(&mut self, _: &str) {}
}

/// A closure called with each line.
impl<F: FnMut(&str)> Notify for F {
    fn notice(&mut self, line: &str) {
        self(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closure_receives_the_lines_and_silent_drops_them() {
        let mut lines = Vec::new();
        let mut keep = |l: &str| lines.push(l.to_string());
        let sinks: [&mut dyn Notify; 2] = [&mut keep, &mut Silent];
        for s in sinks {
            s.notice("== one");
        }
        assert_eq!(lines, ["== one"]);
    }
}
