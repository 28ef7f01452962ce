//! `erosion demo` end to end on the reduced organism (too small to learn the behaviours; this
//! checks the pipeline, the files, the report and the cache, not the science).

use anyhow::Result;
use erosion_demo::demo::{run, DemoOptions};
use erosion_demo::recipe::Recipe;
use erosion_forward::batch::Quiet;
use erosion_forward::notice::Silent;

#[test]
fn the_demo_grows_evaluates_studies_and_reuses_its_cache() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let opts = DemoOptions {
        recipe: Recipe::reduced(),
        cache: tmp.path().join("organism"),
        out: tmp.path().join("report"),
        harmful_prompts: 12,
        code_prompts: 8,
        quiet: true,
        command_line: Vec::new(),
    };
    let first = run(&opts, &mut Silent, Box::new(Quiet))?;
    let names: Vec<&str> = first
        .organism
        .models
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "base",
            "instruct",
            "insecure",
            "secure",
            "educational",
            "insecure-project",
            "insecure-penalty"
        ]
    );
    // Every fine-tune's drift from the instruct model (step 0) to its last step, on record.
    let steps = Recipe::reduced().finetune.steps;
    for (name, points) in first.organism.drift.iter().skip(2) {
        let s: Vec<_> = points.iter().map(|p| p.step).collect();
        assert_eq!(s.first(), Some(&Some(0)), "{name}");
        assert_eq!(s.last(), Some(&Some(steps)), "{name}");
    }
    for (name, dir) in &first.organism.models {
        assert!(dir.join("model.safetensors").is_file(), "{name}");
        assert!(dir.join("tokenizer_config.json").is_file(), "{name}");
    }
    assert!(first.organism.timings.iter().all(|(_, s)| *s > 0.0));

    // One report with the behavioural evaluation and the four findings, each with a verdict.
    let out = tmp.path().join("report");
    let html = std::fs::read_to_string(out.join("report.html"))?;
    assert!(html.contains("<svg"), "the report has no figure");
    assert!(
        !html.contains("<script src"),
        "the report is not self-contained"
    );
    // The reduced organism cannot learn the behaviours: its reports say so instead of
    // handing out verdicts (the causal tests' report beside it too).
    let causal = std::fs::read_to_string(out.join("causal/report.html"))?;
    for page in [&html, &causal] {
        assert!(page.contains("Smoke run: verdicts not meaningful."));
        assert!(!page.contains("badge v-yes") && !page.contains("badge v-partly"));
    }
    // The evaluation, causal tests, drift and protection, then the paper's four findings.
    let titles: Vec<&str> = first
        .study
        .verdicts
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(titles.len(), 8, "{titles:?}");
    assert!(
        titles.contains(&"Fine-tuning that keeps alignment"),
        "{titles:?}"
    );
    assert!(
        first.study.failures.is_empty(),
        "{:?}",
        first.study.failures
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
    let analyses = &results["results"]["analyses"];
    for key in [
        "evaluation",
        "causal",
        "drift",
        "protection",
        "behaviour",
        "gradients",
        "layers",
        "directions",
    ] {
        assert!(analyses.get(key).is_some(), "results.json has no {key}");
    }
    let evaluated = |f: &str| out.join("evaluation").join(f).is_file();
    assert!(evaluated("eval.json") && evaluated("answers.jsonl"));
    assert_ne!(first.behaviour.0, erosion_report::html::Verdict::NotRun);
    // Three causal tests, each with its three conditions, and the directions exported.
    let causal = analyses["causal"]["tests"]
        .as_array()
        .expect("causal tests are a list");
    assert_eq!(causal.len(), 3);
    assert!(causal
        .iter()
        .all(|t| t["conditions"].as_array().map(Vec::len) == Some(3)));
    for f in [
        "directions.safetensors",
        "directions.npy",
        "control_vector.gguf",
        "causal.json",
    ] {
        assert!(out.join("causal").join(f).is_file(), "no causal/{f}");
    }
    let rows = analyses["protection"]["rows"]
        .as_array()
        .expect("protected fine-tuning has rows");
    assert_eq!(rows.len(), 7);
    assert!(html.contains("Fine-tuning that keeps alignment"));
    // The study file the demo wrote runs as it is.
    let spec = erosion_study::StudySpec::from_file(&out.join("study.toml"))?;
    assert_eq!(spec.models.finetuned.len(), 3);
    assert_eq!(spec.models.compared.len(), 2);
    // Every fine-tune's recorded drift is drawn: the drift analysis read each run's log.
    let runs = analyses["drift"]["runs"].as_array().expect("drift runs");
    assert_eq!(runs.len(), 5);

    // A second run trains nothing.
    let second = run(&opts, &mut Silent, Box::new(Quiet))?;
    assert!(second.organism.timings.iter().all(|(_, s)| *s == 0.0));
    assert_eq!(second.behaviour.0, first.behaviour.0);
    assert_eq!(second.organism.drift, first.organism.drift);
    assert_eq!(second.organism.directions, first.organism.directions);
    Ok(())
}
