//! `erosion-bench`: the erosion side of the benchmark against PyTorch + transformers
//! (`bench/run.sh` runs both sides and prints the table; see bench/README.md).
//!
//! Each task runs in its own process so that its peak resident memory is its own.

mod fixtures;
mod flops;
mod measure;
mod table;
mod tasks;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

// The allocator and its settings of the `erosion` binary, so the benchmark measures what users run.
#[path = "../../erosion-cli/src/alloc.rs"]
mod alloc;

#[derive(Parser)]
#[command(about = "erosion side of the benchmark against PyTorch + transformers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Task {
    Matmul,
    Forward,
    Logprobs,
    Gradients,
    Layers,
    /// Greedy decoding, one prompt at a time.
    Generate1,
    /// Greedy decoding, sixteen prompts in one batch.
    Generate16,
    /// Optimizer steps, LoRA adapters.
    TrainLora,
    /// Optimizer steps, every weight.
    TrainFull,
}

#[derive(Subcommand)]
enum Cmd {
    /// Converts a checkpoint (e.g. the GGUF) to an f32 Hugging Face folder, once.
    Convert {
        #[arg(long)]
        src: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the "base" model of task (d): a Hugging Face folder's weights, each multiplied
    /// by `1 + scale * u` (u uniform in [-1, 1), seeded), once.
    Perturb {
        #[arg(long)]
        src: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Renders the first `n` examples of a messages JSONL into an inputs file.
    Prepare {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 16)]
        n: usize,
        #[arg(long, default_value_t = 4096)]
        max_tokens: usize,
        /// Task (d): the base model folder (from `perturb`).
        #[arg(long, requires = "window")]
        base: Option<PathBuf>,
        /// Task (d): the response window T; only examples with at least T response tokens
        /// are taken.
        #[arg(long, requires = "base")]
        window: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs one task (warm-up once, best of `reps`) and writes its result JSON.
    Run {
        #[arg(long, value_enum)]
        task: Task,
        #[arg(long)]
        inputs: PathBuf,
        /// Folder for erosion-<task>.json and the values the peer checks
        /// (erosion-<task>-values.*); task `layers` is named `layers-<n examples>`.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// The GPU check: every tiny transformers fixture in `dir` (crates/erosion-model's
    /// tests/fixtures) on `device` in f32 and bf16, and the log-probs and gradients there
    /// against the CPU; one table, failing if any check fails (scripts/gpu-check.sh).
    Fixtures {
        #[arg(long)]
        dir: PathBuf,
        /// cpu, cuda[:N] or metal (cuda/metal need the matching cargo feature)
        #[arg(long, default_value = "cuda")]
        device: String,
    },
    /// Prints the table from the results in `dir`.
    Table {
        #[arg(long)]
        inputs: PathBuf,
        /// The inputs of each `layers` run (task (d)), one row pair per file.
        #[arg(long)]
        layers: Vec<PathBuf>,
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    alloc::keep_freed_pages();
    match Cli::parse().cmd {
        Cmd::Convert { src, out } => tasks::convert(&src, &out),
        Cmd::Perturb {
            src,
            out,
            scale,
            seed,
        } => tasks::layers::perturb(&src, &out, scale, seed),
        Cmd::Prepare {
            model,
            data,
            n,
            max_tokens,
            base,
            window,
            out,
        } => {
            let opts = tasks::PrepareOptions {
                n,
                max_tokens,
                base,
                window,
            };
            tasks::prepare(&model, &data, &opts, &out)
        }
        Cmd::Run {
            task,
            inputs,
            dir,
            reps,
        } => run(task, &tasks::Inputs::read(&inputs)?, &dir, reps),
        Cmd::Fixtures { dir, device } => fixtures::run(&dir, &device),
        Cmd::Table {
            inputs,
            layers,
            dir,
        } => {
            let layers = layers
                .iter()
                .map(|p| tasks::Inputs::read(p))
                .collect::<Result<Vec<_>>>()?;
            table::print(&dir, &tasks::Inputs::read(&inputs)?, &layers)
        }
    }
}

/// Runs one task and writes `dir/erosion-<name>.json`.
fn run(task: Task, inputs: &tasks::Inputs, dir: &Path, reps: usize) -> Result<()> {
    use tasks::{forward, generate, gradients, layers, train};
    let r = match task {
        Task::Matmul => forward::matmul(reps)?,
        Task::Forward => forward::forward(inputs, reps)?,
        Task::Logprobs => {
            forward::logprobs(inputs, reps, &dir.join("erosion-logprobs-values.json"))?
        }
        Task::Gradients => {
            gradients::gradients(inputs, reps, &dir.join("erosion-gradients-values.f32"))?
        }
        Task::Layers => {
            let name = format!("layers-{}", inputs.examples.len());
            layers::layers(
                inputs,
                reps,
                &dir.join(format!("erosion-{name}-values.json")),
            )?
        }
        Task::Generate1 | Task::Generate16 => {
            let batch = if matches!(task, Task::Generate1) {
                1
            } else {
                16
            };
            let values = dir.join(format!("erosion-generate-b{batch}-values.json"));
            generate::generate(inputs, reps, batch, &values)?
        }
        Task::TrainLora | Task::TrainFull => {
            let lora = matches!(task, Task::TrainLora);
            let name = if lora { "train-lora" } else { "train-full" };
            train::train(
                inputs,
                reps,
                lora,
                &dir.join(format!("erosion-{name}-values.json")),
            )?
        }
    };
    r.write(&dir.join(format!("erosion-{}.json", r.task)))
}
