//! Analysis 2 on a tiny model family: the section's cosine matrices against gradients and
//! log-probs computed one example at a time in memory, the centred route against centring by
//! hand, the on-arrival sketch within its stated bound, and the section rebuilt from results
//! read back from JSON.

use super::compute::origin;
use super::signals::{loss_spec, param_selection, SketchSink, DELTA};
use super::*;
use crate::fixture::tiny_study;
use erosion_analysis::cosine::cosine_matrix;
use erosion_analysis::matrix::Matrix;
use erosion_analysis::sketch::{sketch_bound, GramPlan, SketchKind, Sketcher};
use erosion_data::Sequence;
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::gradients::GradientComputer;
use erosion_forward::logprobs::response_logprobs;
use erosion_report::npy::read_npy_as;

fn npy(ctx: &StudyContext, rel: &str) -> (Vec<usize>, Vec<f64>) {
    read_npy_as::<f64>(&ctx.out.join(rel)).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn positions_map_back_to_datasets() {
    let used = [vec![0, 2, 5], vec![1, 4]];
    assert_eq!(origin(&used, 0), (0, 0));
    assert_eq!(origin(&used, 2), (0, 5));
    assert_eq!(origin(&used, 3), (1, 1));
    assert_eq!(origin(&used, 4), (1, 4));
}

#[test]
fn cosines_match_examples_computed_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = tiny_study(
        dir.path(),
        "[gradients]\na = \"insecure\"\nb = \"educational\"\nwindow = 16\npermutations = 99\n",
    );
    let out = GradientsAnalysis::run(&ctx).unwrap();
    let r = &out.results;
    assert_eq!((r.gradients.n_a, r.gradients.n_b), (6, 6));
    assert!(matches!(r.gradients.gram_plan, GramPlan::Exact { .. }));

    // The section is a function of the results: read back from JSON, they give it again.
    let back: GradientsResults = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
    assert_eq!(section::section(&ctx, &back).unwrap(), out.section);

    let g = ctx.spec.gradients.clone();
    let t = ctx.transformer(&g.model).unwrap();
    let seqs: Vec<Sequence> = ["insecure", "educational"]
        .iter()
        .flat_map(|d| ctx.sequences(&g.model, d).unwrap())
        .collect();

    // Loss vectors: -lp of the first 16 response tokens, from a direct uncached pass.
    let direct =
        response_logprobs(&t, &seqs, &BatchOptions::default(), None, &mut NoProgress).unwrap();
    let want: Vec<f64> = direct
        .iter()
        .flat_map(|d| (0..16).map(|p| d.logprobs.get(p).map_or(0.0, |v| -(*v as f64))))
        .collect();
    let (shape, got) = npy(&ctx, &r.files.loss_vectors);
    assert_eq!(shape, vec![12, 16]);
    assert!(max_diff(&got, &want) < 1e-4);

    // Gradients one by one, in memory, and their cosines in f64.
    let computer =
        GradientComputer::new(&t, &param_selection(&g.params), loss_spec(&g, 16)).unwrap();
    let rows: Vec<f32> = seqs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| computer.example(i, s).unwrap().unwrap().grad)
        .collect();
    let x = Matrix::from_f32(12, computer.dim(), &rows).unwrap();
    let (shape, cos) = npy(&ctx, &r.files.gradient_cosine);
    assert_eq!(shape, vec![12, 12]);
    assert!(max_diff(&cos, &cosine_matrix(&x, false).unwrap().data) < 1e-5);

    // Centred: the double-centred Gram against rows centred by hand.
    ctx.spec.gradients.centre = true;
    let centred = GradientsAnalysis::run(&ctx).unwrap();
    assert!(centred.results.gradients.centred);
    let mu: Vec<f64> = (0..x.cols)
        .map(|j| (0..12).map(|i| x.get(i, j)).sum::<f64>() / 12.0)
        .collect();
    let xc = Matrix::from_rows(
        &(0..12)
            .map(|i| x.row(i).iter().zip(&mu).map(|(v, m)| v - m).collect())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let (_, cos_c) = npy(&ctx, &centred.results.files.gradient_cosine);
    assert!(max_diff(&cos_c, &cosine_matrix(&xc, false).unwrap().data) < 1e-5);
    ctx.spec.gradients.centre = false;

    // A second run reuses the stored gradients and gives the same numbers.
    let again = GradientsAnalysis::run(&ctx).unwrap().results;
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(r).unwrap()
    );

    // The sketch sink fed by the gradient pass: cosines within the stated bound.
    let k = 2000;
    let mut sink = SketchSink::new(
        Sketcher::new(computer.dim(), k, SketchKind::Rademacher, 9).unwrap(),
        5,
    );
    computer.run(&seqs, 4, &mut sink, &mut |_| {}).unwrap();
    let y = sink.finish().unwrap();
    let bound = sketch_bound(12, k, DELTA).unwrap().unwrap();
    let err = max_diff(&cosine_matrix(&y, false).unwrap().data, &cos);
    assert!(
        err <= bound.cosine_error && err < 0.15,
        "sketch error {err}, bound {}",
        bound.cosine_error
    );
}
