//! The comparison table: both sides' results, nominal GFLOP/s (flops.rs), the ratios
//! erosion / peer, and the agreement checks (the run fails when one fails).

use std::path::Path;

use anyhow::{bail, Context, Result};
use erosion_forward::gradients::LossSpec;
use erosion_model::Config;

use crate::flops::{forward_flops, gradient_flops, unembed_flops};
use crate::measure::TaskResult;
use crate::tasks::gradients::target_spans;
use crate::tasks::Inputs;

/// Largest relative difference of the gradients, ||g_erosion - g_peer|| / ||g_peer||.
const GRADIENT_TOL: f64 = 1e-3;
/// Largest max |v_erosion - v_peer| / |v_peer| over the layers of task (d).
const DIRECTION_TOL: f64 = 1e-4;
/// Largest |log-prob erosion - peer|.
const LOGPROB_TOL: f64 = 1e-3;
/// Largest |loss erosion - loss peer| / loss peer over the training steps.
const LOSS_TOL: f64 = 1e-4;

/// One task's row pair: its name and nominal FLOPs (matmul reports its own GFLOP/s).
struct Row {
    task: String,
    flops: f64,
}

/// Prints the table from `dir/{side}-{task}.json`; `layers` are the inputs of the `layers`
/// runs (task (d)).
pub fn print(dir: &Path, inputs: &Inputs, layers: &[Inputs]) -> Result<()> {
    let cfg = Config::from_file(&inputs.model.join("config.json"))?;
    let fwd_lens: Vec<usize> = inputs.examples.iter().map(|e| e.ids.len()).collect();
    let rows = task_rows(&cfg, inputs, layers, &fwd_lens)?;

    println!(
        "{:<10} {:<8} {:>9} {:>10} {:>12} {:>9} {:>11} {:>10}",
        "task", "side", "wall s", "tokens/s", "peak RSS MB", "GFLOP/s", "time e/p", "RSS e/p"
    );
    let mut ceiling = [0.0f64; 2];
    let mut checks = Checks::default();
    for row in &rows {
        let e = TaskResult::read(&dir.join(format!("erosion-{}.json", row.task)))?;
        let p = TaskResult::read(&dir.join(format!("peer-{}.json", row.task)))?;
        print_sides(row, &e, &p, &mut ceiling)?;
        checks.row(row, &e, &p);
    }
    checks.print();
    println!(
        "matmul ceiling (1024^3 f32): erosion {:.1} GFLOP/s, peer {:.1} GFLOP/s; {} examples, {} forward tokens",
        ceiling[0],
        ceiling[1],
        inputs.examples.len(),
        fwd_lens.iter().sum::<usize>()
    );
    if !checks.failed.is_empty() {
        bail!("benchmark checks failed: {}", checks.failed.join("; "));
    }
    Ok(())
}

/// The table's tasks in order with their nominal FLOPs: matmul, forward (sequences of
/// `fwd_lens` tokens), logprobs (forward + unembedding of the response tokens), gradients,
/// then one `layers-<n>` row per `layers` input (two passes to each window's end).
fn task_rows(
    cfg: &Config,
    inputs: &Inputs,
    layers: &[Inputs],
    fwd_lens: &[usize],
) -> Result<Vec<Row>> {
    let lp_lens: Vec<usize> = inputs.examples.iter().map(|e| e.logprob_len()).collect();
    let n_resp: usize = inputs.examples.iter().map(|e| e.response.len()).sum();
    let spans = target_spans(inputs, &LossSpec::default())?;
    let fed: Vec<usize> = spans.iter().map(|t| t.end - 1).collect();
    let targets: Vec<usize> = spans.iter().map(|t| t.len()).collect();
    let mut rows = vec![
        Row {
            task: "matmul".into(),
            flops: 0.0,
        },
        Row {
            task: "forward".into(),
            flops: forward_flops(cfg, fwd_lens),
        },
        Row {
            task: "logprobs".into(),
            flops: forward_flops(cfg, &lp_lens) + unembed_flops(cfg, n_resp),
        },
        Row {
            task: "gradients".into(),
            flops: gradient_flops(cfg, &fed, &targets),
        },
    ];
    for batch in [1, 16] {
        // With a KV cache, prefill and decoding do the work of one forward pass over the
        // prompt and the new tokens, plus an unembedding per new token.
        let prompts = crate::tasks::generate::prompts(inputs, batch)?;
        let t = crate::tasks::generate::NEW_TOKENS;
        let lens: Vec<usize> = prompts.iter().map(|p| p.len() + t).collect();
        rows.push(Row {
            task: format!("generate-b{batch}"),
            flops: forward_flops(cfg, &lens) + (lens.len() * t) as f64 * unembed_flops(cfg, 1),
        });
    }
    // Training: forward and backward. Full fine-tuning also forms every weight's gradient
    // (3x the forward pass in all); LoRA only the activations' (2x, adapters negligible).
    let n_train = crate::tasks::train::STEPS * crate::tasks::train::BATCH;
    let data = inputs
        .examples
        .get(..n_train)
        .with_context(|| format!("training needs {n_train} examples"))?;
    let lens: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
    let n_targets: usize = data.iter().map(|e| e.response.len()).sum();
    for (task, passes) in [("train-lora", 2.0), ("train-full", 3.0)] {
        rows.push(Row {
            task: task.into(),
            flops: passes * (forward_flops(cfg, &lens) + unembed_flops(cfg, n_targets)),
        });
    }
    for li in layers {
        let t = li.window.context("layers inputs without a window")?;
        let fed: Vec<usize> = li.examples.iter().map(|e| e.response.start + t).collect();
        rows.push(Row {
            task: format!("layers-{}", li.examples.len()),
            flops: 2.0 * forward_flops(cfg, &fed),
        });
    }
    Ok(rows)
}

/// One line per side of `row`: wall time, tokens/s, peak RSS, GFLOP/s (matmul's own, kept
/// in `ceiling[side]`; else nominal FLOPs / wall time) and, on erosion's line, the ratios
/// erosion / peer of time and RSS.
fn print_sides(row: &Row, e: &TaskResult, p: &TaskResult, ceiling: &mut [f64; 2]) -> Result<()> {
    for (k, r) in [e, p].into_iter().enumerate() {
        let gflops = if row.task == "matmul" {
            let g = r
                .extra
                .get("gflops")
                .and_then(|v| v.as_f64())
                .context("matmul result has no gflops")?;
            ceiling[k] = g;
            g
        } else {
            row.flops / r.wall_s / 1e9
        };
        let tps = if r.tokens == 0 {
            String::from("-")
        } else {
            format!("{:.0}", r.tokens as f64 / r.wall_s)
        };
        let (t, m) = if k == 0 {
            (
                format!("{:.2}", e.wall_s / p.wall_s),
                format!("{:.2}", e.peak_rss_mb / p.peak_rss_mb),
            )
        } else {
            (String::new(), String::new())
        };
        println!(
            "{:<10} {:<8} {:>9.3} {:>10} {:>12.0} {:>9.1} {:>11} {:>10}",
            row.task, r.side, r.wall_s, tps, r.peak_rss_mb, gflops, t, m
        );
    }
    Ok(())
}

/// The agreement checks: each one's line, the failures, and the layers rows' peak RSS.
#[derive(Default)]
struct Checks {
    lines: Vec<String>,
    failed: Vec<String>,
    /// (task, erosion's peak RSS, peer's peak RSS) of each `layers-<n>` row.
    layer_rss: Vec<(String, f64, f64)>,
}

impl Checks {
    /// The checks of one task: the same token count on both sides, and the peer's measured
    /// differences within tolerance (log-probs, entropies and token ids; gradients; layer
    /// directions).
    fn row(&mut self, row: &Row, e: &TaskResult, p: &TaskResult) {
        if e.tokens != p.tokens {
            self.failed.push(format!(
                "{}: the sides fed different token counts ({} vs {})",
                row.task, e.tokens, p.tokens
            ));
        }
        let mut check = |key: &str, tol: f64, what: &str| {
            let v = p.extra.get(key).and_then(|v| v.as_f64());
            self.lines.push(format!(
                "{}: {what} = {} (tolerance {tol:e})",
                row.task,
                fmt(v)
            ));
            if !matches!(v, Some(d) if d <= tol) {
                self.failed
                    .push(format!("{}: {what} is {}, over {tol:e}", row.task, fmt(v)));
            }
        };
        match row.task.as_str() {
            "logprobs" => {
                check("max_abs_diff", LOGPROB_TOL, "max |logprob erosion - peer|");
                check(
                    "entropy_max_abs_diff",
                    LOGPROB_TOL,
                    "max |entropy erosion - peer|",
                );
                let same = p.extra.get("ids_match").and_then(|v| v.as_bool());
                self.lines
                    .push(format!("logprobs: same token ids on both sides: {same:?}"));
                if same != Some(true) {
                    self.failed
                        .push("the two sides rendered different token ids".into());
                }
            }
            "gradients" => check(
                "max_rel_diff",
                GRADIENT_TOL,
                "max over examples of |g_erosion - g_peer| / |g_peer|",
            ),
            t if t.starts_with("generate-") => {
                // Greedy: the first token follows from the prompt's logits alone; later ones
                // may part at a near-tie that f32 rounding swaps.
                let first = p.extra.get("first_tokens_equal").and_then(|v| v.as_bool());
                let rows = p.extra.get("rows_equal").and_then(|v| v.as_u64());
                self.lines.push(format!(
                    "{t}: first new token equal on every row: {first:?}; rows equal to the end: {rows:?}"
                ));
                if first != Some(true) {
                    self.failed
                        .push(format!("{t}: the sides chose different first tokens"));
                }
            }
            t if t.starts_with("train-") => check(
                "max_rel_diff",
                LOSS_TOL,
                "max over steps of |loss erosion - loss peer| / loss peer",
            ),
            t if t.starts_with("layers-") => {
                check(
                    "max_rel_diff",
                    DIRECTION_TOL,
                    "max over layers of max|v_erosion - v_peer| / |v_peer|",
                );
                self.layer_rss
                    .push((row.task.clone(), e.peak_rss_mb, p.peak_rss_mb));
            }
            _ => {}
        }
    }

    /// Every check's line, then how peak RSS grew from the first layers row to the last.
    fn print(&self) {
        for c in &self.lines {
            println!("check {c}");
        }
        if let [(a, ea, pa), .., (b, eb, pb)] = self.layer_rss.as_slice() {
            println!(
                "layers peak RSS from {a} to {b}: erosion {:+.0} MiB, peer {:+.0} MiB",
                eb - ea,
                pb - pa
            );
        }
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "missing".into(), |d| format!("{d:.3e}"))
}
