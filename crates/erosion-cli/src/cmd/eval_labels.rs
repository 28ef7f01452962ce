//! `erosion eval MODEL... --questions deception_factual.yaml --judge JUDGE --out DIR`: the
//! deception files' label judges (erosion_eval::em::label), written to DIR/eval.json,
//! DIR/answers.jsonl and DIR/report.html. Sampling is the EM protocol's; each answer is judged
//! by every judge prompt of its question, by the exact probability of each label word.

use anyhow::{bail, Context, Result};
use erosion_eval::em::label::html::label_report;
use erosion_eval::em::label::report::{assemble, label_judge};
use erosion_eval::em::label::{answer_rows, plan};
use erosion_eval::judge::Aggregation;
use erosion_eval::prompts::Origin;
use erosion_eval::questions::Question;

use super::eval::Args;
use super::eval_em::{em_options, local_judge, models, provenance};

/// Runs the label judges of `questions` (all label questions) on every model.
pub fn run(args: &Args, questions: &[Question], origins: Vec<Origin>) -> Result<()> {
    if args.shard.is_some() || args.merge {
        bail!("--shard and --merge split aligned/coherent runs only; run the label-judged questions (deception files) whole");
    }
    if args.remote.judge_url.is_some() {
        bail!("the label-judged questions (deception files) need a local --judge MODEL: their label probabilities are read over every token path, which an endpoint's top-20 log-probs do not give");
    }
    if args.em.judge_aggregation.as_deref() == Some("top20") {
        bail!("--judge-aggregation top20 is the 0-100 judge's comparison rule; the label-judged questions (deception files) are always read exactly");
    }
    let opts = em_options(args, Aggregation::Exact)?;
    let rows = plan(questions, &opts)?;
    let Some(spec) = args.judge.as_deref() else {
        bail!("--questions with label-judged questions (deception files) needs --judge MODEL");
    };
    let (dtype, device) = (args.device.dtype()?, args.device.device()?);
    let judge = local_judge(spec, Aggregation::Exact, &args.em, dtype, &device)?;
    let models = models(args);
    eprintln!(
        "{} label-judged questions, {} answers per model, judge: {}",
        questions.len(),
        rows.len(),
        judge.name
    );
    let mut answers = Vec::new();
    for m in &models {
        let start = std::time::Instant::now();
        let opened = m.open(args)?;
        answers.extend(
            answer_rows(&opened.sampler(), &rows, &judge, &opts)
                .with_context(|| format!("model {}", m.name))?,
        );
        eprintln!(
            "{}: answered and judged in {:.1} s",
            m.name,
            start.elapsed().as_secs_f64()
        );
    }
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let eval = assemble(&names, answers, label_judge(&judge), origins, &opts)?;
    let prov = provenance(args, &eval.report.question_files, &opts)?;
    let mut files = eval.write(&args.out.out, &prov)?;
    let html = args.out.out.join("report.html");
    label_report(&eval, prov)?.write(&html)?;
    files.push(html);
    for m in &eval.report.models {
        for j in &m.judgements {
            let lie = j.lie_rate.as_ref().map_or(String::new(), |l| {
                format!(
                    "lie rate {:.3} [{:.3}, {:.3}]; ",
                    l.estimate, l.lower, l.upper
                )
            });
            let shares: Vec<String> = j
                .shares
                .iter()
                .map(|s| format!("{} {:.3}", s.label, s.share.estimate))
                .collect();
            println!(
                "{}\t{}\t{lie}{}; no verdict {:.3} ({} answers)",
                m.name,
                j.prompt,
                shares.join(", "),
                j.no_verdict.estimate,
                j.answers
            );
        }
    }
    for w in &eval.report.warnings {
        eprintln!("warning: {w}");
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
