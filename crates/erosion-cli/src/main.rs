//! `erosion`: measure how fine-tuning erodes the safety alignment of language models.

mod cmd;
mod device;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "erosion", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, sizes, dtype, layers, chat template and special tokens of a checkpoint.
    Inspect(cmd::inspect::Args),
    /// Render a dataset's examples with the model's chat template, marking the response span.
    Render(cmd::render::Args),
    /// Generate a reply to a prompt, using the chat template.
    Generate(cmd::generate::Args),
    /// Run a study (STUDY.toml): the four analyses of the paper, results.json and report.html.
    Study(cmd::study::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Render(args) => cmd::render::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Study(args) => cmd::study::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
