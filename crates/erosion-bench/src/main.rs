//! `erosion-bench`: the erosion side of the benchmark against PyTorch + transformers
//! (`bench/run.sh` runs both sides and prints the table; see bench/README.md).
//!
//! Each task runs in its own process so that its peak resident memory is its own.

mod measure;
mod table;
mod tasks;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

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
    /// Renders the first `n` examples of a messages JSONL into inputs.json.
    Prepare {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 16)]
        n: usize,
        #[arg(long, default_value_t = 4096)]
        max_tokens: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs one task (warm-up once, best of `reps`) and writes its result JSON.
    Run {
        #[arg(long, value_enum)]
        task: Task,
        #[arg(long)]
        inputs: PathBuf,
        /// Folder for erosion-<task>.json (and erosion-logprobs-values.json).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Prints the table from the results in `dir`.
    Table {
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Convert { src, out } => tasks::convert(&src, &out),
        Cmd::Prepare {
            model,
            data,
            n,
            max_tokens,
            out,
        } => tasks::prepare(&model, &data, n, max_tokens, &out),
        Cmd::Run {
            task,
            inputs,
            dir,
            reps,
        } => {
            let (name, r) = match task {
                Task::Matmul => ("matmul", tasks::matmul(reps)?),
                Task::Forward => (
                    "forward",
                    tasks::forward(&tasks::Inputs::read(&inputs)?, reps)?,
                ),
                Task::Logprobs => (
                    "logprobs",
                    tasks::logprobs(
                        &tasks::Inputs::read(&inputs)?,
                        reps,
                        &dir.join("erosion-logprobs-values.json"),
                    )?,
                ),
            };
            r.write(&dir.join(format!("erosion-{name}.json")))
        }
        Cmd::Table { inputs, dir } => table::print(&dir, &tasks::Inputs::read(&inputs)?),
    }
}
