//! The options of per-example gradients: loss spans and reductions, the short-response
//! policies, errors on bad examples, and the choice and layout of weights.

use crate::gradients_util;

use candle_core::DType;
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::gradients::{GradientComputer, LossSpan, LossSpec, ParamSelection, Reduction};
use erosion_forward::row_store::MemoryRows;
use gradients_util::*;

/// Example `index`'s gradient under `spec` (it must not be skipped).
fn gradient(
    model: &erosion_model::transformer::Transformer,
    params: &ParamSelection,
    spec: LossSpec,
    index: usize,
    s: &Sequence,
) -> erosion_forward::gradients::ExampleGradient {
    GradientComputer::new(model, params, spec)
        .unwrap()
        .example(index, s)
        .unwrap()
        .expect("the example is not skipped")
}

#[test]
fn sequence_span_is_the_transformers_loss_and_sum_is_n_times_mean() {
    let (model, _vm) = random_model("qwen2", DType::F64, 11);
    let s = &sequences(&[(10, 4..10)], 37, 12)[0];
    let mean = gradient(
        &model,
        &ParamSelection::LastOProj,
        spec(LossSpan::Sequence, Reduction::Mean, ShortResponse::Error),
        0,
        s,
    );
    // transformers' loss with labels = input_ids: mean over positions 1..n, computed by hand
    // from the full logits.
    let want = reference_loss(&model, &s.ids, 1..10, Reduction::Mean);
    assert!((mean.loss - want).abs() < 1e-12, "{} vs {want}", mean.loss);
    assert_eq!(mean.per_token.len(), 9);
    let sum = gradient(
        &model,
        &ParamSelection::LastOProj,
        spec(LossSpan::Sequence, Reduction::Sum, ShortResponse::Error),
        0,
        s,
    );
    assert!((sum.loss - 9.0 * mean.loss).abs() < 1e-10);
    let scaled: Vec<f32> = mean.grad.iter().map(|g| g * 9.0).collect();
    assert!(rel_err_f32(&sum.grad, &scaled) < 1e-6);
}

#[test]
fn short_responses_follow_the_policy() {
    let (model, _vm) = random_model("llama", DType::F32, 13);
    // Example 1's response has 3 tokens, fewer than T = 5.
    let seqs = sequences(&[(10, 3..10), (7, 4..7), (12, 5..12)], 37, 14);
    let window = LossSpan::ResponseWindow { t: 5 };
    let p = ParamSelection::LastOProj;

    let gc = GradientComputer::new(
        &model,
        &p,
        spec(window, Reduction::Mean, ShortResponse::Error),
    )
    .unwrap();
    let mut sink = MemoryRows::new(gc.dim()).unwrap();
    let err = gc
        .run(&seqs, 2, &mut sink, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("example 1") && err.contains("T = 5"), "{err}");
    assert_eq!(
        sink.n_rows(),
        0,
        "spans are checked before anything is computed"
    );

    let gc = GradientComputer::new(
        &model,
        &p,
        spec(window, Reduction::Mean, ShortResponse::Skip),
    )
    .unwrap();
    let mut sink = MemoryRows::new(gc.dim()).unwrap();
    let run = gc.run(&seqs, 2, &mut sink, &mut |_| {}).unwrap();
    assert_eq!(sink.n_rows(), 2);
    assert_eq!(
        run.rows.iter().map(|r| r.example).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(run.skipped.len(), 1);
    assert_eq!(run.skipped[0].example, 1);

    let use_avail = spec(window, Reduction::Mean, ShortResponse::UseAvailable);
    let gc = GradientComputer::new(&model, &p, use_avail).unwrap();
    let mut sink = MemoryRows::new(gc.dim()).unwrap();
    let run = gc.run(&seqs, 3, &mut sink, &mut |_| {}).unwrap();
    let r = &run.rows[1];
    assert_eq!((r.example, r.n_tokens, r.short), (1, 3, true));
    assert_eq!((run.rows[0].n_tokens, run.rows[0].short), (5, false));
    // The short example's loss is the mean over its whole response.
    let whole = gradient(
        &model,
        &p,
        spec(LossSpan::Response, Reduction::Mean, ShortResponse::Error),
        1,
        &seqs[1],
    );
    assert!(rel_err_f32(sink.row(1).unwrap(), &whole.grad) < 1e-5);
    assert!((r.loss - whole.loss).abs() < 1e-6);
}

#[test]
fn bad_spans_and_tokens_are_errors_naming_the_example() {
    let (model, _vm) = random_model("llama", DType::F32, 15);
    let gc =
        GradientComputer::new(&model, &ParamSelection::LastOProj, LossSpec::default()).unwrap();
    let bad = |ids: Vec<u32>, response| {
        let seqs = vec![
            Sequence {
                ids: vec![1, 2, 3, 4],
                response: 2..4,
                end_of_turn: None,
            },
            Sequence {
                ids,
                response,
                end_of_turn: None,
            },
        ];
        let mut sink = MemoryRows::new(gc.dim()).unwrap();
        gc.run(&seqs, 1, &mut sink, &mut |_| {})
            .unwrap_err()
            .to_string()
    };
    let e = bad(vec![1, 2, 3], 0..2);
    assert!(e.contains("example 1") && e.contains("token 0"), "{e}");
    let e = bad(vec![1, 2, 3], 1..5);
    assert!(e.contains("example 1") && e.contains("outside"), "{e}");
    let e = bad(vec![1, 2, 3], 3..3);
    assert!(e.contains("example 1") && e.contains("no tokens"), "{e}");
    let e = bad(vec![1, 99, 3], 1..3);
    assert!(e.contains("example 1") && e.contains("99"), "{e}");
    let mut wrong = MemoryRows::new(gc.dim() + 1).unwrap();
    let e = gc
        .run(&[], 1, &mut wrong, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("o_proj"), "{e}");
    let zero = LossSpec {
        span: LossSpan::ResponseWindow { t: 0 },
        ..LossSpec::default()
    };
    assert!(
        GradientComputer::new(&model, &ParamSelection::LastOProj, zero)
            .unwrap()
            .example(
                0,
                &Sequence {
                    ids: vec![1, 2],
                    response: 1..2,
                    end_of_turn: None
                }
            )
            .is_err()
    );
}

#[test]
fn unknown_names_list_the_weights_of_their_layer() {
    let (qwen, _vm) = random_model("qwen2", DType::F32, 16);
    let err = |names: &[&str]| {
        GradientComputer::new(&qwen, &named(names), LossSpec::default())
            .err()
            .expect("should fail")
            .to_string()
    };
    let e = err(&["model.layers.1.self_attn.oproj.weight"]);
    assert!(
        e.contains("model.layers.1.self_attn.o_proj.weight")
            && e.contains("model.layers.1.self_attn.q_proj.bias")
            && e.contains("model.layers.1.post_attention_layernorm.weight")
            && !e.contains("model.layers.2."),
        "{e}"
    );
    let e = err(&["model.layers.7.self_attn.o_proj.weight"]);
    assert!(
        e.contains("3 layers") && e.contains("model.layers.2.mlp.up_proj.weight"),
        "{e}"
    );
    let e = err(&["model.layers.2.self_attn.o_proj.bias"]); // qwen2 has no o_proj bias
    assert!(e.contains("model.layers.2.self_attn.o_proj.weight"), "{e}");
    let e = err(&["lm_head.weight"]);
    assert!(
        e.contains("tied") && e.contains("model.embed_tokens.weight"),
        "{e}"
    );
    let e = err(&["norm.weight"]);
    assert!(
        e.contains("model.norm.weight") && e.contains("model.embed_tokens.weight"),
        "{e}"
    );
    let e = err(&["model.norm.weight", "model.norm.weight"]);
    assert!(e.contains("twice"), "{e}");
    assert!(err(&[]).contains("no weights"));
}

#[test]
fn layout_is_checkpoint_order_row_major_and_the_model_is_untouched() {
    let (model, varmap) = random_model("qwen2", DType::F32, 17);
    let before: Vec<f32> = model
        .parameter("model.layers.2.self_attn.v_proj.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scrambled = named(&[
        "model.layers.2.self_attn.o_proj.weight",
        "model.layers.2.self_attn.k_proj.weight",
        "model.layers.2.self_attn.v_proj.weight",
        "model.layers.2.self_attn.q_proj.weight",
    ]);
    let gc = GradientComputer::new(&model, &scrambled, LossSpec::default()).unwrap();
    let last =
        GradientComputer::new(&model, &ParamSelection::LastAttention, LossSpec::default()).unwrap();
    assert_eq!(gc.layout(), last.layout());
    let l = gc.layout();
    assert_eq!(
        l.names(),
        ["q", "k", "v", "o"]
            .map(|p| format!("model.layers.2.self_attn.{p}_proj.weight"))
            .to_vec()
    );
    // hidden 16, 4 heads of 4, 2 kv heads: q [16, 16], k/v [8, 16], o [16, 16].
    let shapes: Vec<(Vec<usize>, usize, usize)> = l
        .params
        .iter()
        .map(|p| (p.shape.clone(), p.offset, p.len))
        .collect();
    assert_eq!(
        shapes,
        vec![
            (vec![16, 16], 0, 256),
            (vec![8, 16], 256, 128),
            (vec![8, 16], 384, 128),
            (vec![16, 16], 512, 256)
        ]
    );
    assert_eq!(l.dim, 768);
    assert_eq!(gc.first_differentiable_layer(), 2);

    // Row-major: entry [r, c] of v_proj's gradient is at offset + r * 16 + c, checked against
    // the reference gradient tensor's own indexing.
    let s = &sequences(&[(9, 3..9)], 37, 18)[0];
    let g = gc.example(0, s).unwrap().unwrap().grad;
    let (_, want) = reference_gradient(
        &model,
        &["model.layers.2.self_attn.v_proj.weight"],
        &s.ids,
        3..9,
        Reduction::Mean,
    );
    let v = l.slice("model.layers.2.self_attn.v_proj.weight").unwrap();
    for (r, c) in [(0, 0), (3, 11), (7, 15)] {
        let (a, b) = (g[v.offset + r * 16 + c] as f64, want[r * 16 + c]);
        assert!(
            (a - b).abs() < 1e-5 * (1.0 + b.abs()),
            "[{r}, {c}]: {a} vs {b}"
        );
    }

    // Computing gradients changed neither the model nor its VarMap.
    let after: Vec<f32> = model
        .parameter("model.layers.2.self_attn.v_proj.weight")
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(varmap.all_vars().len(), model.parameter_names().len());

    let stage = |names: &[&str]| {
        GradientComputer::new(&model, &named(names), LossSpec::default())
            .unwrap()
            .first_differentiable_layer()
    };
    assert_eq!(stage(&["model.norm.weight"]), 3);
    assert_eq!(
        stage(&["model.norm.weight", "model.layers.1.mlp.up_proj.weight"]),
        1
    );
    assert_eq!(stage(&["model.embed_tokens.weight"]), 0);
}
