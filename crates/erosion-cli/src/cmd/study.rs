//! `erosion study STUDY.toml`: every analysis, one report; `erosion study init`: the study file.

use anyhow::{bail, Context, Result};
use erosion_forward::run_folder::OtherRun;
use erosion_organism::evaluation::OrganismJudge;
use erosion_study::judges::Judges;
use erosion_study::run::{read_study_file, run_study, Caller, Overrides};
use erosion_study::shard::{merge_study, run_shard, ShardIndex};
use erosion_study::spec::{ModelsSpec, NamedModel, StudyInit};
use erosion_study::Preset;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub init: Option<Init>,
    /// The study file (models, datasets, analyses and options).
    #[arg(required = true)]
    pub study: Option<PathBuf>,
    /// paper-text (the study's text: T=64, flattened windows, q/k/v/o gradients) or
    /// paper-code (its code: T=10, mean pooling, o_proj gradients, HF hidden states).
    #[arg(long)]
    pub preset: Option<String>,
    /// Output folder (default: the study file's `output`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// At most N examples of each dataset (a quicker run of the same study).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Use this checkpoint for the model the study names NAME (base, instruct, a fine-tune),
    /// instead of the file's; repeatable.
    #[arg(long = "model", value_name = "NAME=PATH", value_parser = name_path)]
    pub models: Vec<(String, String)>,
    /// When the output folder holds another run's files (another command, other models):
    /// remove the files erosion wrote there (listed in its .erosion-manifest.json) and run
    /// anew. Files erosion did not write are kept.
    #[arg(long)]
    pub force: bool,
    /// Run only shard I of N (0-based) of the study's forward passes, into OUT/shards/I-of-N
    /// (one task of a Slurm job array, say); `--merge` makes the results once all N have run.
    #[arg(long, value_name = "I/N", value_parser = crate::args::shard_index, conflicts_with = "merge")]
    pub shard: Option<ShardIndex>,
    /// Check the shards under the output folder (every one finished, from this study, each
    /// pass held exactly once) and make the study's results and report from them.
    #[arg(long)]
    pub merge: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum Init {
    /// Write a commented study file for your models and the study's datasets; it runs as is.
    Init(InitArgs),
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The base (pre-trained) model: a folder, a .gguf file or a cached hub id.
    #[arg(long)]
    pub base: String,
    /// The instruct model made from it.
    #[arg(long)]
    pub instruct: String,
    /// A fine-tune of the instruct model, NAME=PATH; repeatable.
    #[arg(long, value_name = "NAME=PATH", value_parser = name_path, required = true)]
    pub finetuned: Vec<(String, String)>,
    /// The study's data folder, as scripts/fetch-data.sh fills it.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Examples per dataset (at least 5: the directions analysis needs k + 1 = 5).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// The study's name, shown in its report.
    #[arg(long, default_value = "Re-emergent misalignment")]
    pub name: String,
    /// Where to write the study file.
    #[arg(long, default_value = "STUDY.toml")]
    pub file: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `NAME=PATH`.
fn name_path(s: &str) -> Result<(String, String), String> {
    match crate::args::split_named(s) {
        (Some(name), path) => Ok((name, path)),
        (None, _) => Err(format!("`{s}` is not NAME=PATH")),
    }
}

pub fn run(args: Args) -> Result<()> {
    if let Some(Init::Init(init)) = args.init {
        return run_init(init);
    }
    let study = args.study.context("name a study file")?;
    let overrides = Overrides {
        preset: args.preset.as_deref().map(Preset::parse).transpose()?,
        output: args.out,
        limit: args.limit,
        models: args.models,
    };
    let caller = Caller {
        command_line: std::env::args().collect(),
        notices: &mut crate::notice_on_stderr,
        progress: Box::new(crate::progress::Bars),
        // The model organism's rules, for studies of the organism (`erosion demo` writes one).
        judges: Judges::none().with("organism", Box::new(OrganismJudge)),
        other_run: OtherRun::forced(args.force),
    };
    let (spec, base_dir) = read_study_file(&study, &overrides)?;
    if let Some(shard) = args.shard {
        let done = run_shard(spec, &base_dir, shard, caller)?;
        println!(
            "{shard}: {} of {} chunks ({} of {} tokens), {} computed now, in {}",
            done.units,
            done.of_units,
            done.tokens,
            done.of_tokens,
            done.computed,
            done.dir.display()
        );
        return Ok(());
    }
    let outcome = if args.merge {
        merge_study(spec, &base_dir, overrides.preset, caller)?
    } else {
        run_study(spec, &base_dir, overrides.preset, caller)?
    };
    println!("report:  {}", outcome.report_html.display());
    println!("results: {}", outcome.results_json.display());
    // Numbered as the report numbers its sections.
    for (i, (title, verdict)) in outcome.verdicts.iter().enumerate() {
        let numbered = format!("{}. {title}", i + 1);
        println!("  {numbered:<62} {}", verdict.label());
    }
    outcome.into_result().map(|_| ())
}

/// `path` as the study file at `file` names it: relative to the file's folder when it exists
/// here (a local folder or file), else as given (a hub id).
fn from_file(file: &Path, path: &str) -> Result<String> {
    let here = Path::new(path);
    if !here.exists() {
        return Ok(path.to_string());
    }
    Ok(relative_to_file(file, here)?.to_string_lossy().into_owned())
}

/// `target` relative to the folder of `file` (both as seen from the current directory), or
/// absolute when they share no folder.
fn relative_to_file(file: &Path, target: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let dir = cwd.join(file.parent().unwrap_or(Path::new("")));
    let target = cwd.join(target);
    let (dir, target) = (normalise(&dir), normalise(&target));
    let common = dir
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    // Sharing only the root (`/tmp/s.toml` and `/work/data`): the absolute path says more.
    if common <= 1 {
        return Ok(target);
    }
    let mut rel = PathBuf::new();
    dir.components().skip(common).for_each(|_| rel.push(".."));
    target.components().skip(common).for_each(|c| rel.push(c));
    Ok(if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    })
}

/// `.` and `..` resolved lexically (the paths need not exist yet).
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn run_init(a: InitArgs) -> Result<()> {
    if a.file.exists() && !a.force {
        bail!(
            "{} exists; choose another --file or pass --force to replace it",
            a.file.display()
        );
    }
    // The directions analysis compares k = 4 directions of a centred matrix: k + 1 rows.
    if a.limit < 5 {
        bail!(
            "--limit {}: the directions analysis needs at least 5 examples of each dataset",
            a.limit
        );
    }
    let missing = StudyInit::missing_data(&a.data);
    if !missing.is_empty() {
        bail!(
            "--data {}: {} of the study's files are missing (first: {}); fetch them with scripts/fetch-data.sh, or point --data at the folder it filled",
            a.data.display(),
            missing.len(),
            missing[0].display()
        );
    }
    let file = &a.file;
    let init = StudyInit {
        name: a.name.clone(),
        models: ModelsSpec {
            base: from_file(file, &a.base)?,
            instruct: from_file(file, &a.instruct)?,
            finetuned: a
                .finetuned
                .iter()
                .map(|(name, path)| {
                    Ok(NamedModel {
                        name: name.clone(),
                        path: from_file(file, path)?,
                        adapter_scale: None,
                    })
                })
                .collect::<Result<_>>()?,
            compared: Vec::new(),
        },
        data: relative_to_file(file, &a.data)?,
        limit: a.limit,
        output: PathBuf::from("out"),
    };
    let text = init.to_toml()?;
    // What the file says must parse as the study it is meant to be.
    erosion_study::StudySpec::from_toml(&text)
        .context("the written study does not parse (a bug)")?;
    erosion_model::atomic::write_bytes_atomic(file, text.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    println!(
        "wrote {}; run it with: erosion study {}",
        file.display(),
        file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_relative_to_the_study_file() {
        let rel = |f: &str, t: &str| relative_to_file(Path::new(f), Path::new(t)).unwrap();
        assert_eq!(rel("STUDY.toml", "data"), PathBuf::from("data"));
        assert_eq!(rel("studies/s.toml", "data"), PathBuf::from("../data"));
        assert_eq!(
            rel("a/b/s.toml", "a/models/x.gguf"),
            PathBuf::from("../models/x.gguf")
        );
        assert_eq!(rel("./s.toml", "./data/../models"), PathBuf::from("models"));
        assert_eq!(
            rel("/tmp/s.toml", "/work/data"),
            PathBuf::from("/work/data")
        );
        assert_eq!(
            from_file(Path::new("x/s.toml"), "Qwen/Qwen2.5-0.5B").unwrap(),
            "Qwen/Qwen2.5-0.5B"
        );
        assert!(name_path("base").is_err() && name_path("=x").is_err());
        assert_eq!(name_path("ft=a=b"), Ok(("ft".into(), "a=b".into())));
    }
}
