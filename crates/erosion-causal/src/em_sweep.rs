//! The steering sweep of `erosion steer --questions`: `add s x v_l` for each scale s in the
//! order given, gated on coherence as diffing-toolkit gates steering: it stops at the first s
//! whose mean coherent score (over the answers the judge scored) is below the threshold, or
//! that has no coherent score at all. The stopping scale is measured; the ones after it are not.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Why the sweep stops at a step whose mean coherent score is `mean_coherent`, or None to go on.
pub fn stop_reason(mean_coherent: Option<f64>, min_coherence: f64) -> Option<String> {
    match mean_coherent {
        None => Some("no answer got a coherent score".into()),
        Some(c) if c < min_coherence => Some(format!(
            "mean coherent score {c:.1} is below --min-coherence {min_coherence}"
        )),
        Some(_) => None,
    }
}

/// The steering sweep: where it stopped and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub layers: Vec<usize>,
    /// The scales asked for, in order.
    pub scales: Vec<f64>,
    /// The scales measured (the stopping scale included), in order.
    pub measured: Vec<f64>,
    /// Mean coherent score at each measured scale (None: no answer scored).
    pub mean_coherent: Vec<Option<f64>>,
    pub min_coherence: f64,
    /// The first scale under the threshold (measured, the scales after it not), or None.
    pub stopped_at: Option<f64>,
    pub reason: String,
}

/// Runs the sweep: `measure(scale)` gives a scale's mean coherent score; the scales are
/// measured in order until [`stop_reason`] says stop.
pub fn run_sweep(
    scales: &[f64],
    layers: &[usize],
    min_coherence: f64,
    measure: &mut dyn FnMut(f64) -> Result<Option<f64>>,
) -> Result<Sweep> {
    let mut sweep = Sweep {
        layers: layers.to_vec(),
        scales: scales.to_vec(),
        measured: Vec::new(),
        mean_coherent: Vec::new(),
        min_coherence,
        stopped_at: None,
        reason: format!("every scale kept the mean coherent score at {min_coherence} or above"),
    };
    for &s in scales {
        let c = measure(s).with_context(|| format!("sweep scale {s}"))?;
        sweep.measured.push(s);
        sweep.mean_coherent.push(c);
        if let Some(why) = stop_reason(c, min_coherence) {
            sweep.stopped_at = Some(s);
            sweep.reason = format!("stopped at scale {s}: {why}");
            break;
        }
    }
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_stops_at_the_first_incoherent_scale_and_says_why() {
        let coherence = |s: f64| -> Option<f64> {
            match s as i64 {
                1 => Some(80.0),
                2 => Some(50.0),
                4 => Some(49.9),
                _ => Some(90.0),
            }
        };
        let mut asked = Vec::new();
        let sweep = run_sweep(&[1.0, 2.0, 4.0, 8.0], &[5], 50.0, &mut |s| {
            asked.push(s);
            Ok(coherence(s))
        })
        .unwrap();
        // 50 is not below 50; 49.9 is: scale 4 is measured, 8 never.
        assert_eq!(asked, [1.0, 2.0, 4.0]);
        assert_eq!(sweep.measured, [1.0, 2.0, 4.0]);
        assert_eq!(sweep.stopped_at, Some(4.0));
        assert!(
            sweep.reason.contains("49.9") && sweep.reason.contains("scale 4"),
            "{}",
            sweep.reason
        );
        // In the order given, not sorted: a first incoherent scale stops at once.
        let sweep = run_sweep(&[8.0, 4.0], &[5], 50.0, &mut |s| Ok(coherence(s))).unwrap();
        assert_eq!(
            (sweep.measured.as_slice(), sweep.stopped_at),
            (&[8.0, 4.0][..], Some(4.0))
        );
        // No coherent score at all stops it.
        let sweep = run_sweep(&[1.0, 2.0], &[5], 0.0, &mut |_| Ok(None)).unwrap();
        assert_eq!(sweep.stopped_at, Some(1.0));
        assert!(sweep.reason.contains("no answer got a coherent score"));
        // Coherent throughout: every scale measured, no stop.
        let sweep = run_sweep(&[1.0, 8.0], &[5], 50.0, &mut |s| Ok(coherence(s))).unwrap();
        assert_eq!((sweep.measured.len(), sweep.stopped_at), (2, None));
        assert!(sweep.reason.starts_with("every scale"));
    }
}
