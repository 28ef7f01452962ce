//! `erosion`: measure how fine-tuning erodes the safety alignment of language models.

mod alloc;
mod args;
mod cmd;
mod layer;
mod probe;
mod progress;

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
    /// Per-token log-probabilities of one reply under several models: a table, JSON or a heatmap.
    Logprobs(cmd::logprobs::Args),
    /// Activations at named hook points over a dataset into .npy files (resumable).
    Activations(cmd::activations::Args),
    /// Run a study (STUDY.toml): the paper's four analyses and any others it names (evaluation,
    /// causal, drift, protection), results.json and report.html.
    Study(cmd::study::Args),
    /// Grow the model organism on this CPU (cached), evaluate it and run the study on it.
    Demo(cmd::demo::Args),
    /// Fine-tune a checkpoint on a chat dataset (full or LoRA) into a Hugging Face folder.
    Train(cmd::train::Args),
    /// Behavioural evaluation: refusal, compliance and insecure-code rates, P("Sure"), the two-turn test.
    Eval(cmd::eval::Args),
    /// Causal test: steer along (or ablate) the alignment direction beside a random control.
    Steer(cmd::steer::Args),
    /// An OpenAI-compatible HTTP server for a checkpoint, with per-request steering.
    Serve(cmd::serve::Args),
    /// Drift: a probe set's projection on the alignment directions and its margin across checkpoints.
    Drift(cmd::drift::Args),
}

/// The library's notices (progress lines, failures, files replaced), one line each on stderr.
pub(crate) fn notice_on_stderr(line: &str) {
    eprintln!("{line}");
}

fn main() {
    alloc::keep_freed_pages();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Train(_) | Command::Demo(_))
        && std::env::var_os("CANDLE_NUM_THREADS").is_none()
    {
        // Training shares each step between worker threads (data parallelism), which beats
        // candle splitting every small kernel across threads; set before candle starts its pool.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Render(args) => cmd::render::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Logprobs(args) => cmd::logprobs::run(args),
        Command::Activations(args) => cmd::activations::run(args),
        Command::Study(args) => cmd::study::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Steer(args) => cmd::steer::run(args),
        Command::Drift(args) => cmd::drift::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::PathBuf;

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("erosion").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn every_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every flag and argument of every command, subcommands included, says what it is.
    #[test]
    fn every_flag_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !["help", "version"].contains(&id)
                    && arg.get_help().is_none()
                    && !arg.is_hide_set()
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "erosion", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:#?}");
    }

    /// The harmful examples' file as each command that takes one parsed it.
    fn harmful_files(flag: &str) -> Vec<Option<PathBuf>> {
        let steer = ["steer", "m", "--out", "o", flag, "h.jsonl"];
        let steer = parse(&[&steer[..], &["--reject", "r", "--benign", "b"][..]].concat());
        let drift = parse(&["drift", "c", "--out", "o", flag, "h.jsonl"]);
        // --monitor requires the probe's three files: the old spelling must satisfy it too.
        let train = ["train", "m", "d.jsonl", "--out", "o", "--monitor", "5"];
        let train = [
            &train[..],
            &[flag, "h.jsonl", "--directions", "d", "--reject", "r"][..],
        ];
        let train = parse(&train.concat());
        match (steer, drift, train) {
            (Command::Steer(s), Command::Drift(d), Command::Train(t)) => {
                vec![s.harmful, d.probe.harmful, t.probe.harmful]
            }
            _ => unreachable!("parsed as the named commands"),
        }
    }

    /// `--toxic`, the flag's spelling before this release, still parses as `--harmful` but is
    /// not shown in the help.
    #[test]
    fn toxic_is_a_hidden_alias_of_harmful() {
        let want = vec![Some(PathBuf::from("h.jsonl")); 3];
        assert_eq!(harmful_files("--harmful"), want);
        assert_eq!(harmful_files("--toxic"), want);
        let mut cli = Cli::command();
        for name in ["steer", "drift", "train"] {
            let help = cli
                .find_subcommand_mut(name)
                .expect("a command")
                .render_long_help()
                .to_string();
            assert!(help.contains("--harmful"), "{name}: {help}");
            assert!(!help.contains("--toxic"), "{name}: {help}");
        }
    }

    /// A shared group keeps each command's own defaults.
    #[test]
    fn shared_sampling_flags_keep_each_commands_default() {
        let generate = parse(&["generate", "m", "--prompt", "hi"]);
        let eval = parse(&["eval", "m", "--organism", "--out", "o"]);
        match (generate, eval) {
            (Command::Generate(g), Command::Eval(e)) => {
                assert_eq!(g.sampling.max_new_tokens, 64);
                assert_eq!(e.sampling.max_new_tokens, 128);
                assert_eq!(g.model.model, "m");
            }
            _ => unreachable!("parsed as the named commands"),
        }
    }
}
