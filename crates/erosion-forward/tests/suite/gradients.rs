//! Per-example gradients: the partial backward pass against full autograd through the whole
//! model, against central finite differences (f64), independence from batching, and
//! streaming into a file store.

use crate::gradients_util;

use candle_core::{DType, Tensor};
use erosion_data::{Sequence, ShortResponse};
use erosion_forward::gradients::{GradientComputer, LossSpan, LossSpec, ParamSelection, Reduction};
use erosion_forward::row_store::{MemoryRows, RowSink, RowStore, RowStoreWriter};
use gradients_util::*;
use rand::{Rng, SeedableRng};

/// Runs the computer on each example and compares with full autograd; returns the largest
/// relative error.
fn compare_with_full_backprop(
    model: &erosion_model::transformer::Transformer,
    params: ParamSelection,
    loss: LossSpec,
    seqs: &[Sequence],
) -> f64 {
    let gc = GradientComputer::new(model, &params, loss).unwrap();
    let names = gc.layout().names();
    let mut worst = 0f64;
    for (i, s) in seqs.iter().enumerate() {
        let got = gc.example(i, s).unwrap().unwrap();
        let (want_loss, want) =
            reference_gradient(model, &names, &s.ids, targets(loss.span, s), loss.reduction);
        assert!(
            (got.loss - want_loss).abs() < 1e-5 * (1.0 + want_loss.abs()),
            "example {i}: loss {} vs reference {want_loss}",
            got.loss
        );
        assert!(
            max_abs(&want) > 1e-3,
            "vacuous: the reference gradient is ~0"
        );
        worst = worst.max(rel_err(&got.grad, &want));
    }
    worst
}

#[test]
fn partial_backprop_equals_full_backprop_f64() {
    let window = spec(
        LossSpan::ResponseWindow { t: 4 },
        Reduction::Mean,
        ShortResponse::UseAvailable,
    );
    let (qwen, _vm) = random_model("qwen2", DType::F64, 1);
    let (llama, _vm2) = random_model("llama", DType::F64, 2);
    let seqs = sequences(&[(11, 4..10), (8, 5..8), (13, 3..13)], 37, 3);
    let cases: Vec<(
        &str,
        &erosion_model::transformer::Transformer,
        ParamSelection,
        LossSpec,
    )> = vec![
        ("o_proj, qwen2", &qwen, ParamSelection::LastOProj, window),
        (
            "q,k,v,o, llama",
            &llama,
            ParamSelection::LastAttention,
            window,
        ),
        (
            "mid layer + final norm + untied lm_head, sum over the response",
            &llama,
            named(&[
                "lm_head.weight",
                "model.layers.1.mlp.down_proj.weight",
                "model.norm.weight",
            ]),
            spec(LossSpan::Response, Reduction::Sum, ShortResponse::Error),
        ),
        (
            "tied embeddings (both uses) + a bias, whole sequence",
            &qwen,
            named(&[
                "model.layers.2.self_attn.q_proj.bias",
                "model.embed_tokens.weight",
            ]),
            spec(LossSpan::Sequence, Reduction::Mean, ShortResponse::Error),
        ),
        (
            "unembedding alone (no graph at all)",
            &llama,
            named(&["lm_head.weight"]),
            window,
        ),
    ];
    for (what, model, params, loss) in cases {
        let err = compare_with_full_backprop(model, params, loss, &seqs);
        // The rows are f32: agreement is to f32 rounding of an f64 computation.
        assert!(err < 1e-6, "{what}: relative error {err}");
    }
}

#[test]
fn partial_backprop_equals_full_backprop_on_hf_fixtures_f32() {
    // gemma2: soft-capped logits (the closed-form unembedding must follow the cap).
    for arch in ["qwen2", "llama", "mistral", "qwen3", "gemma2", "gemma3"] {
        let model = fixture_model(arch, DType::F32);
        let vocab = model.config().vocab_size;
        let seqs = sequences(&[(20, 6..19), (14, 9..14)], vocab, 4);
        let loss = spec(
            LossSpan::ResponseWindow { t: 8 },
            Reduction::Mean,
            ShortResponse::UseAvailable,
        );
        let err = compare_with_full_backprop(&model, ParamSelection::LastAttention, loss, &seqs);
        // Fused (lower) vs composite kernels and a shorter input: f32 rounding only.
        assert!(err < 1e-4, "{arch}: relative error {err}");
    }
}

#[test]
fn gradients_match_central_finite_differences() {
    let (model, _vm) = random_model("qwen2", DType::F64, 5);
    let seq = &sequences(&[(12, 5..11)], 37, 6)[0];
    let names = [
        "model.layers.1.self_attn.v_proj.bias",
        "model.layers.2.self_attn.k_proj.weight",
        "model.layers.2.self_attn.o_proj.weight",
        "model.layers.2.mlp.gate_proj.weight",
        "model.norm.weight",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for loss in [
        spec(
            LossSpan::ResponseWindow { t: 3 },
            Reduction::Mean,
            ShortResponse::Error,
        ),
        spec(LossSpan::Response, Reduction::Sum, ShortResponse::Error),
    ] {
        let gc = GradientComputer::new(&model, &named(&names), loss).unwrap();
        let g = gc.example(0, seq).unwrap().unwrap();
        let t = targets(loss.span, seq);
        for slice in &gc.layout().params {
            let base = model.parameter(&slice.name).unwrap();
            let orig = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let mut largest = 0f64;
            for _ in 0..4 {
                let i = rng.random_range(0..slice.len);
                let at = |delta: f64| {
                    let mut v = orig.clone();
                    v[i] += delta;
                    let mut m = model.clone();
                    let p = Tensor::from_vec(v, slice.shape.clone(), base.device()).unwrap();
                    m.set_parameter(&slice.name, p).unwrap();
                    reference_loss(&m, &seq.ids, t.clone(), loss.reduction)
                };
                let h = 1e-5;
                let fd = (at(h) - at(-h)) / (2.0 * h);
                let an = g.grad[slice.offset + i] as f64;
                assert!(
                    (an - fd).abs() < 1e-7 + 2e-6 * fd.abs(),
                    "{:?} {}[{i}]: backprop {an} vs finite difference {fd}",
                    loss.span,
                    slice.name
                );
                largest = largest.max(an.abs());
            }
            assert!(largest > 1e-4, "{}: probed gradients all ~0", slice.name);
        }
    }
}

#[test]
fn per_example_gradients_do_not_depend_on_batching() {
    let model = fixture_model("qwen2", DType::F32);
    let vocab = model.config().vocab_size;
    // Different lengths, so batched lower passes are padded.
    let seqs = sequences(
        &[(9, 3..9), (15, 6..15), (6, 2..6), (12, 4..12), (10, 7..10)],
        vocab,
        8,
    );
    let gc =
        GradientComputer::new(&model, &ParamSelection::LastAttention, LossSpec::default()).unwrap();
    let alone: Vec<Vec<f32>> = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| gc.example(i, s).unwrap().unwrap().grad)
        .collect();
    // Genuinely different rows (a summed batch gradient would make them equal).
    assert!(rel_err_f32(&alone[0], &alone[1]) > 0.1);
    for batch in [1, 2, 5] {
        let mut sink = MemoryRows::new(gc.dim()).unwrap();
        let mut calls = Vec::new();
        let run = gc
            .run(&seqs, batch, &mut sink, &mut |n| calls.push(n))
            .unwrap();
        assert_eq!(calls, vec![1, 2, 3, 4, 5]);
        assert_eq!(sink.n_rows(), 5);
        for (k, row) in run.rows.iter().enumerate() {
            assert_eq!(row.example, k);
            let err = rel_err_f32(sink.row(k).unwrap(), &alone[k]);
            assert!(
                err < 1e-5,
                "batch {batch}, example {k}: relative error {err}"
            );
        }
    }
}

#[test]
fn a_file_store_holds_the_same_rows_as_memory() {
    let (model, _vm) = random_model("llama", DType::F32, 9);
    let seqs = sequences(&[(10, 4..10), (7, 3..7), (9, 5..9)], 37, 10);
    let gc =
        GradientComputer::new(&model, &ParamSelection::LastOProj, LossSpec::default()).unwrap();
    let mut mem = MemoryRows::new(gc.dim()).unwrap();
    let run = gc.run(&seqs, 2, &mut mem, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grads.f32");
    let meta = serde_json::to_value(&run).unwrap();
    let mut w = RowStoreWriter::create(&path, gc.dim(), meta.clone()).unwrap();
    // Same batching as in memory: the file holds the very same bits.
    gc.run(&seqs, 2, &mut w, &mut |_| {}).unwrap();
    assert_eq!(w.n_rows(), 3);
    w.finish().unwrap();
    let store = RowStore::open(&path).unwrap();
    assert_eq!((store.n_rows(), store.dim()), (3, 16 * 16));
    assert!(
        store.rows(0..3).unwrap() == mem.data(),
        "the stored rows differ"
    );
    assert_eq!(store.meta(), &meta);
    assert_eq!(
        meta["layout"]["params"][0]["name"],
        "model.layers.2.self_attn.o_proj.weight"
    );
}

/// A streamed model's gradients (the lower blocks read from the files as each batch runs, the
/// blocks from the first chosen one on and the unembedding held) are the bits of the model
/// loaded whole; its embedding cannot be differentiated.
#[test]
fn a_streamed_model_gives_the_gradients_of_the_whole_one() {
    use candle_core::Device;
    use erosion_model::load::Checkpoint;
    let tmp = tempfile::tempdir().unwrap();
    let named =
        |names: &[&str]| ParamSelection::Named(names.iter().map(|n| n.to_string()).collect());
    let seqs = sequences(&[(9, 3..9), (12, 4..12), (6, 2..6)], 128, 5);
    for (arch, params) in [
        ("llama", ParamSelection::LastAttention),
        (
            "llama",
            named(&["model.layers.1.mlp.down_proj.weight", "lm_head.weight"]),
        ),
        ("qwen2", ParamSelection::LastOProj),
    ] {
        let folder = erosion_testkit::tiny_checkpoint(arch, tmp.path());
        let ck = Checkpoint::open(folder.to_str().unwrap()).unwrap();
        let rows = |model: &erosion_model::transformer::Transformer| {
            let gc = GradientComputer::new(model, &params, LossSpec::default()).unwrap();
            let mut sink = MemoryRows::new(gc.dim()).unwrap();
            gc.run(&seqs, 2, &mut sink, &mut |_| {}).unwrap();
            sink.data().to_vec()
        };
        let whole = rows(&ck.load_model(DType::F32, &Device::Cpu).unwrap());
        let streamed = ck.load_streamed(DType::F32, &Device::Cpu).unwrap();
        assert!(
            whole == rows(&streamed),
            "{arch} {params:?}: the gradients differ"
        );
        assert!(whole.iter().any(|&g| g != 0.0));
        if arch == "qwen2" {
            let e = GradientComputer::new(
                &streamed,
                &named(&["model.embed_tokens.weight"]),
                LossSpec::default(),
            )
            .err()
            .unwrap()
            .to_string();
            assert!(e.contains("streamed") && e.contains("embedding"), "{e}");
        }
    }
}
