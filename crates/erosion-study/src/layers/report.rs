//! Analysis 3's outputs: `.npy` arrays, figures, tables, tests, notes, verdict and results.

use super::relative::{combine, DEEP_MAX, TRACKS_EARLY_MIN};
use super::stream::file_stem;
use super::{DatasetLayers, LEVEL};
use crate::context::StudyContext;
use crate::section::SectionOutput;
use crate::spec::{LayerIndexing, Pooling};
use anyhow::Result;
use erosion_analysis::layers::direction_cosines;
use erosion_analysis::stats::ConfidenceInterval;
use erosion_data::ShortResponse;
use erosion_report::figures::{layer_projection_svg, LayerProjections, LineSeries};
use erosion_report::format::{fmt_ci_sig4, fmt_sig4};
use erosion_report::html::{Interval, Section, StatTest, Table};
use serde_json::json;

const TITLE: &str = "3. Alignment erodes layer by layer";
const FINDING: &str = "Projecting each model's response-window hidden states onto the per-layer alignment \
direction v_l = mu_l(instruct) - mu_l(base), the misaligned model tracks the instruct model in early layers \
and falls toward (and below) the base model in deep layers.";
const REPORTED: &str = "Giordani 2025: with z = the hidden states of the first T response tokens (the text: \
T = 64 flattened into one vector; the code: T = 10, each token a row, i.e. mean pooling), s_l = mean \
projection onto v_l / |v_l| plotted against the layer for base, instruct and misaligned (Qwen2.5-Coder-32B \
family): the misaligned model tracks instruct in early layers and falls toward, and below, base in deep layers.";

fn layer_list(l: &[usize]) -> String {
    match (l.first(), l.last()) {
        (Some(a), Some(b)) if l.len() > 2 && b - a + 1 == l.len() => format!("{a}-{b}"),
        _ => l
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn lower(c: &[Option<ConfidenceInterval>]) -> Vec<f64> {
    c.iter()
        .map(|c| c.as_ref().map_or(f64::NAN, |c| c.lower))
        .collect()
}
fn upper(c: &[Option<ConfidenceInterval>]) -> Vec<f64> {
    c.iter()
        .map(|c| c.as_ref().map_or(f64::NAN, |c| c.upper))
        .collect()
}
fn estimate(c: &[Option<ConfidenceInterval>]) -> Vec<f64> {
    c.iter()
        .map(|c| c.as_ref().map_or(f64::NAN, |c| c.estimate))
        .collect()
}

pub(super) fn section(
    ctx: &StudyContext,
    models: &[String],
    results: &[DatasetLayers],
    dim: usize,
) -> Result<SectionOutput> {
    let spec = &ctx.spec.layers;
    let finetuned = &models[2.min(models.len())..];
    let n_rows = results[0].norms.len();
    let xs: Vec<f64> = (0..n_rows).map(|l| l as f64).collect();
    let band = format!(
        "{:.0}% bootstrap CI over examples ({} resamples, v_l fixed)",
        LEVEL * 100.0,
        spec.bootstrap
    );
    let verdict = combine(&results.iter().map(|r| r.verdict).collect::<Vec<_>>());
    let mut section = Section::new(TITLE, FINDING, "", REPORTED, verdict);
    let mut per_dataset = serde_json::Map::new();
    let mut sentences = Vec::new();
    let mut test_rows = Vec::new();

    for r in results {
        let stem = format!("layers_{}", file_stem(&r.name));
        let flat = |rows: &[Vec<f64>]| rows.iter().flatten().copied().collect::<Vec<f64>>();
        let ci_lo: Vec<Vec<f64>> = r.score_ci.iter().map(|c| lower(c)).collect();
        let ci_hi: Vec<Vec<f64>> = r.score_ci.iter().map(|c| upper(c)).collect();
        let mut files = vec![
            ctx.save_npy(
                &format!("{stem}_scores"),
                &[models.len(), n_rows],
                &flat(&r.scores),
            )?,
            ctx.save_npy(
                &format!("{stem}_scores_ci_lower"),
                &[models.len(), n_rows],
                &flat(&ci_lo),
            )?,
            ctx.save_npy(
                &format!("{stem}_scores_ci_upper"),
                &[models.len(), n_rows],
                &flat(&ci_hi),
            )?,
            ctx.save_npy(&format!("{stem}_direction_norms"), &[n_rows], &r.norms)?,
        ];
        // Unit directions v_l / |v_l| (zero rows where unusable), f32. // [n_rows, dim]
        let units: Vec<f32> = r
            .units
            .iter()
            .flat_map(|u| match u {
                Some(u) => u.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                None => vec![0.0; dim],
            })
            .collect();
        files.push(ctx.save_npy(&format!("{stem}_unit_directions"), &[n_rows, dim], &units)?);
        if !finetuned.is_empty() {
            let est: Vec<Vec<f64>> = r.relative.iter().map(|c| estimate(c)).collect();
            let lo: Vec<Vec<f64>> = r.relative.iter().map(|c| lower(c)).collect();
            let hi: Vec<Vec<f64>> = r.relative.iter().map(|c| upper(c)).collect();
            let shape = [finetuned.len(), n_rows];
            files.push(ctx.save_npy(&format!("{stem}_relative"), &shape, &flat(&est))?);
            files.push(ctx.save_npy(&format!("{stem}_relative_ci_lower"), &shape, &flat(&lo))?);
            files.push(ctx.save_npy(&format!("{stem}_relative_ci_upper"), &shape, &flat(&hi))?);
        }

        // Figures: s_l with bands; r_l of the fine-tuned models.
        let series: Vec<LineSeries> = models
            .iter()
            .enumerate()
            .map(|(m, name)| LineSeries {
                name: name.clone(),
                x: xs.clone(),
                y: r.scores[m].clone(),
                lower: Some(ci_lo[m].clone()),
                upper: Some(ci_hi[m].clone()),
            })
            .collect();
        let fig = LayerProjections {
            title: format!("Mean projection on the alignment direction: {}", r.name),
            y_label: "s_l = mean z . v_l / |v_l|".into(),
            series,
            band_label: Some(band.clone()),
        };
        section.figures.push(ctx.save_figure(
            &format!("layers_{}", file_stem(&r.name)),
            &format!(
                "s_l per layer on `{}` for every model ({} examples; layer 0 = embeddings).",
                r.name, r.n_examples
            ),
            layer_projection_svg(&fig)?,
        )?);
        if !finetuned.is_empty() {
            let mut series: Vec<LineSeries> = finetuned
                .iter()
                .zip(&r.relative)
                .map(|(name, c)| LineSeries {
                    name: name.clone(),
                    x: xs.clone(),
                    y: estimate(c),
                    lower: Some(lower(c)),
                    upper: Some(upper(c)),
                })
                .collect();
            series.push(LineSeries::new(
                "base (r = 0)",
                xs.clone(),
                vec![0.0; n_rows],
            ));
            series.push(LineSeries::new(
                "instruct (r = 1)",
                xs.clone(),
                vec![1.0; n_rows],
            ));
            // The layer figure's integer layer ticks and zero line (r = 0 is base).
            let chart = LayerProjections {
                title: format!("Relative position between base and instruct: {}", r.name),
                y_label: "r_l = (s_l - s_l base) / (s_l instruct - s_l base)".into(),
                series,
                band_label: Some(format!("{:.0}% paired bootstrap CI", LEVEL * 100.0)),
            };
            section.figures.push(ctx.save_figure(
                &format!("layers_relative_{}", file_stem(&r.name)),
                &format!(
                    "r_l of each fine-tuned model on `{}`: 0 = base, 1 = instruct.",
                    r.name
                ),
                layer_projection_svg(&chart)?,
            )?);
        }

        // Per-layer table.
        let mut headers = vec!["layer".to_string(), "|v_l|".to_string()];
        headers.extend(models.iter().map(|m| format!("s_l {m} [CI]")));
        headers.extend(finetuned.iter().map(|m| format!("r_l {m} [CI]")));
        let rows = (0..n_rows)
            .map(|l| {
                let mut row = vec![l.to_string(), fmt_sig4(r.norms[l])];
                row.extend(
                    r.score_ci
                        .iter()
                        .map(|c| c[l].as_ref().map_or("n/a".into(), fmt_ci_sig4)),
                );
                row.extend(
                    r.relative
                        .iter()
                        .map(|c| c[l].as_ref().map_or("n/a".into(), fmt_ci_sig4)),
                );
                row
            })
            .collect();
        section.tables.push(Table {
            caption: format!("Scores per layer on `{}`", r.name),
            headers,
            rows,
        });

        // The early-vs-deep tests.
        let mut tests_json = Vec::new();
        for (k, t) in r.tests.iter().enumerate() {
            let name = &finetuned[k];
            match t {
                Ok(t) => {
                    let role = if t.under_test {
                        "under test"
                    } else {
                        "control"
                    };
                    test_rows.push(vec![
                        r.name.clone(),
                        format!("{name} ({role})"),
                        layer_list(&t.early_layers),
                        fmt_ci_sig4(&t.early),
                        layer_list(&t.deep_layers),
                        fmt_ci_sig4(&t.deep),
                        fmt_ci_sig4(&t.drop),
                        t.verdict.label().to_string(),
                    ]);
                    section.tests.push(StatTest {
                        name: format!("paired bootstrap: fall of `{name}` from early to deep layers on `{}`", r.name),
                        statistic_name: "r(early) - r(deep)".into(),
                        statistic: t.drop.estimate,
                        p_value: None,
                        ci: Some(Interval { lo: t.drop.lower, hi: t.drop.upper, level: t.drop.level }),
                        detail: format!(
                            "{role}; r(early layers {}) = {}, r(deep layers {}) = {}; {} paired examples, {} resamples, seed {}; directions v_l held fixed",
                            layer_list(&t.early_layers), fmt_ci_sig4(&t.early), layer_list(&t.deep_layers), fmt_ci_sig4(&t.deep),
                            t.n_paired, t.drop.n_resamples, t.drop.seed
                        ),
                    });
                    sentences.push(format!(
                        "On `{}`, `{name}` ({role}) sits at r = {} of the way from base to instruct in early layers {} and r = {} in deep layers {}: a fall of {} ({}).",
                        r.name, fmt_ci_sig4(&t.early), layer_list(&t.early_layers), fmt_ci_sig4(&t.deep), layer_list(&t.deep_layers),
                        fmt_ci_sig4(&t.drop), t.verdict.label()
                    ));
                    tests_json.push(serde_json::to_value(t)?);
                }
                Err(e) => {
                    sentences.push(format!(
                        "On `{}`, no early-vs-deep test for `{name}`: {e}.",
                        r.name
                    ));
                    tests_json.push(json!({ "model": name, "error": e }));
                }
            }
        }
        let unusable: Vec<usize> = (0..n_rows).filter(|&l| !r.usable[l]).collect();
        if !unusable.is_empty() {
            section.notes.push(format!(
                "`{}`: layers {} have no alignment direction (base and instruct means coincide, |v_l| ~ 0; e.g. a shared embedding table): s_l and r_l are undefined there.",
                r.name, layer_list(&unusable)
            ));
        }
        let skipped: Vec<String> = models
            .iter()
            .zip(&r.skipped)
            .filter(|(_, s)| !s.is_empty())
            .map(|(m, s)| format!("{m}: {}", s.len()))
            .collect();
        if !skipped.is_empty() {
            section.notes.push(format!(
                "`{}`: examples left out by the short-response policy ({}).",
                r.name,
                skipped.join(", ")
            ));
        }
        per_dataset.insert(
            r.name.clone(),
            json!({
                "examples": r.n_examples,
                "seed": r.seed,
                "recorded": models.iter().zip(&r.recorded).map(|(m, n)| (m.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "skipped_examples": models.iter().zip(&r.skipped).map(|(m, s)| (m.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
                "usable_layers": r.usable,
                "direction_norms": r.norms,
                "scores": models.iter().zip(&r.scores).map(|(m, s)| (m.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
                "score_ci": models.iter().zip(&r.score_ci).map(|(m, c)| (m.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
                "relative": finetuned.iter().zip(&r.relative).map(|(m, c)| (m.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
                "tests": tests_json,
                "verdict": r.verdict,
                "files": files,
            }),
        );
        section.files.extend(files);
    }

    // Directions found on different datasets, compared layer by layer (signed: v_l has a sign).
    let mut cosines_json = Vec::new();
    if results.len() >= 2 {
        let mut series = Vec::new();
        let mut all = Vec::new();
        let mut headers = vec!["layer".to_string()];
        for a in 0..results.len() {
            for b in a + 1..results.len() {
                let (ra, rb) = (&results[a], &results[b]);
                let cos = (0..n_rows)
                    .map(|l| match (&ra.units[l], &rb.units[l]) {
                        (Some(x), Some(y)) => Ok(direction_cosines(
                            std::slice::from_ref(x),
                            std::slice::from_ref(y),
                        )?[0]),
                        _ => Ok(f64::NAN),
                    })
                    .collect::<Result<Vec<f64>>>()?;
                let label = format!("{} vs {}", ra.name, rb.name);
                headers.push(label.clone());
                series.push(LineSeries::new(&label, xs.clone(), cos.clone()));
                cosines_json.push(json!({ "a": ra.name, "b": rb.name, "cosine": cos }));
                all.extend(cos);
            }
        }
        let n_pairs = series.len();
        let file = ctx.save_npy("layers_direction_cosines", &[n_pairs, n_rows], &all)?;
        let rows = (0..n_rows)
            .map(|l| {
                std::iter::once(l.to_string())
                    .chain((0..n_pairs).map(|p| fmt_sig4(all[p * n_rows + l])))
                    .collect()
            })
            .collect();
        section.tables.push(Table {
            caption: "Cosine between the alignment directions v_l of two datasets, per layer"
                .into(),
            headers,
            rows,
        });
        let chart = LayerProjections {
            title: "Alignment directions of different datasets".into(),
            y_label: "cos(v_l on A, v_l on B)".into(),
            series,
            band_label: None,
        };
        section.figures.push(ctx.save_figure(
            "layers_direction_cosines",
            "Per-layer cosine between the alignment directions found on different datasets (signed: v_l points from base to instruct).",
            layer_projection_svg(&chart)?,
        )?);
        section.files.push(file);
    }

    if !test_rows.is_empty() {
        section.tables.insert(
            0,
            Table {
                caption: "Relative position r (0 = base, 1 = instruct) in early and deep layers, with 95% CIs".into(),
                headers: ["dataset", "model", "early layers", "r early", "deep layers", "r deep", "fall r early - r deep", "verdict"]
                    .map(String::from)
                    .to_vec(),
                rows: test_rows,
            },
        );
    }
    if finetuned.is_empty() {
        sentences.push("The study names no fine-tuned model, so there is nothing to place between base and instruct.".into());
    }
    section.result = sentences.join(" ");
    section.notes.splice(0..0, notes(ctx, models, dim));

    let results_json = json!({
        "options": {
            "datasets": results.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            "window": spec.window,
            "offset": spec.offset,
            "pooling": spec.pooling,
            "short": spec.short,
            "indexing": spec.indexing,
            "bootstrap": spec.bootstrap,
            "level": LEVEL,
            "study_seed": ctx.spec.seed,
        },
        "models": models,
        "model_under_test": finetuned.first(),
        "n_layers": n_rows,
        "pooled_dim": dim,
        "verdict_rule": {
            "relative_position": "r_l = (s_l^m - s_l^base) / (s_l^instruct - s_l^base) over paired examples",
            "early_deep": "first and last max(1, floor(n/3)) usable block layers (1..=L)",
            "tracks_early_min": TRACKS_EARLY_MIN,
            "deep_max": DEEP_MAX,
            "reproduced": "r(early) >= tracks_early_min, CI of r(early) - r(deep) above 0, r(deep) <= deep_max",
            "partly": "CI of r(early) - r(deep) above 0 only",
            "not_reproduced": "CI of r(early) - r(deep) reaches 0",
            "datasets": "all reproduced -> reproduced; all not reproduced -> not reproduced; else partly",
        },
        "datasets": per_dataset,
        "direction_cosines": cosines_json,
        "verdict": verdict,
    });
    Ok(SectionOutput {
        key: "layers",
        results: results_json,
        section,
    })
}

/// The choices of this analysis, in words.
fn notes(ctx: &StudyContext, models: &[String], dim: usize) -> Vec<String> {
    let spec = &ctx.spec.layers;
    let d = ctx.models[0].checkpoint.config.hidden_size;
    let pooling = match spec.pooling {
        Pooling::Flatten => format!("flatten (the study's text): the T x d window concatenated into one vector of {dim} values"),
        Pooling::Mean => format!("mean (the study's code, tokens as rows): the mean of the T token vectors, {dim} values (the mean of per-token projections equals the projection of the mean)"),
    };
    let short = match spec.short {
        ShortResponse::Error => "error: a response shorter than offset + T stops the analysis".to_string(),
        ShortResponse::Skip => "skip: such examples are left out (per model, listed in results.json)".to_string(),
        // Refused by the spec's validation: the layers read one example at a time.
        ShortResponse::TruncateToShortest => "truncate_to_shortest: not supported".to_string(),
        ShortResponse::UseAvailable => match spec.pooling {
            Pooling::Flatten => "truncate: the tokens there are; flatten pooling fills the missing positions with 0, which pulls those coordinates of the means toward 0".to_string(),
            Pooling::Mean => "truncate: the tokens there are are averaged".to_string(),
        },
    };
    let indexing = match spec.indexing {
        LayerIndexing::ResidualStream => "residual stream: layer 0 = token embeddings, layer l = output of block l-1 (the last layer is before the final norm)",
        LayerIndexing::HfHiddenStates => "Hugging Face hidden_states (the study's code): layer 0 = embeddings, layer l = output of block l-1, except the last, taken after the final norm",
    };
    let under_test = models
        .get(2)
        .map_or("none (no fine-tuned model)".to_string(), |m| {
            format!("`{m}` (the first fine-tuned model of the study file)")
        });
    vec![
        format!(
            "Window: the first T = {} response tokens after skipping {} (the hidden state at each token's own position, i.e. after reading it); d = {d}.",
            spec.window, spec.offset
        ),
        format!("Pooling: {pooling}."),
        format!("Short responses: {short}."),
        format!("Layer indexing: {indexing}; every layer 0..=L is measured."),
        format!(
            "Confidence bands: percentile bootstrap of the mean of per-example projections onto v_l / |v_l| (erosion_analysis::layers::score_ci; {} resamples at {:.0}%), conditional on v_l. \
             The projections come from a second pass that replays the cached windows from disk once v_l is known. The alternative that also re-estimates v_l in every resample \
             (paired_bootstrap) needs n x n Gram matrices of all pooled vectors per layer and model, which this streaming design does not hold; the bands therefore leave out \
             the sampling error of v_l itself and are somewhat narrow, and since v_l is estimated on the same examples, s_instruct - s_base = |v_l| is biased upward when n is small against the dimension.",
            spec.bootstrap, LEVEL * 100.0
        ),
        format!(
            "Relative position r_l = (s_l - s_l base) / (s_l instruct - s_l base): 0 = base, 1 = instruct; its CIs resample examples jointly for base, instruct and the model (paired: only examples all three recorded). \
             Model under test: {under_test}; the other fine-tuned models are controls, shown beside it."
        ),
        format!(
            "Verdict rule (per dataset, on the model under test): early layers = the first third, deep layers = the last third of the usable block layers 1..=L \
             (max(1, floor(n/3)) each; layer 0, the embedding table, is left out: a fine-tune of the instruct model keeps its embeddings nearly unchanged, which would make early tracking trivial). \
             Reproduced if r(early) >= {TRACKS_EARLY_MIN}, the {:.0}% CI of r(early) - r(deep) lies above 0, and r(deep) <= {DEEP_MAX} (at least half way back to base, or below it); \
             Partly if the fall is significant but one of the other two fails; Not reproduced if the CI of the fall reaches 0. Over datasets: reproduced if every dataset reproduces it, \
             not reproduced if none does even partly, partly otherwise.",
            LEVEL * 100.0
        ),
        format!(
            "Activations: each model's windows on each dataset are cached ({}), keyed by the model's weights, the dataset, its rendering and these window options; a stopped study resumes from the cache.",
            ctx.cache.root().display()
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_layer_lists() {
        assert_eq!(fmt_sig4(0.12345), "0.1235");
        assert_eq!(fmt_sig4(52.94), "52.94");
        assert_eq!(fmt_sig4(-3.8), "-3.800");
        assert_eq!(fmt_sig4(12346.0), "1.235e4");
        assert_eq!(fmt_sig4(f64::NAN), "n/a");
        assert_eq!(fmt_sig4(0.0), "0.000");
        assert_eq!(layer_list(&[1, 2, 3, 4]), "1-4");
        assert_eq!(layer_list(&[3]), "3");
        assert_eq!(layer_list(&[1, 2]), "1, 2");
        assert_eq!(layer_list(&[1, 5, 9]), "1, 5, 9");
    }
}
