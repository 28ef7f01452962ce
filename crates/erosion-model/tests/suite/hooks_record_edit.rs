//! Hook points: recording (all or selected positions), edits (add, project out, replace,
//! custom), their restriction to positions, their order, and name validation.

use crate::transformer_util;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use erosion_model::hooks::{Edit, HookPoint, Hooks, Positions, Site};
use erosion_model::transformer::{ForwardOptions, Transformer};
use transformer_util::*;

fn data(vocab: u32) -> (Tensor, Tensor) {
    let seqs: Vec<Vec<u32>> = random_ids(3, 8, vocab, 21)
        .into_iter()
        .zip([8, 5, 3])
        .map(|(s, n)| s[..n].to_vec())
        .collect();
    pad(&seqs, false)
}

fn run(model: &Transformer, ids: &Tensor, mask: &Tensor, hooks: Option<&mut Hooks>) -> Tensor {
    let mut opts = ForwardOptions::fast();
    opts.hooks = hooks;
    model.forward(ids, Some(mask), &mut opts).unwrap()
}

#[test]
fn recording_selected_positions_equals_slicing_the_full_record() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let points = [
        "blocks.1.hook_resid_post",
        "blocks.0.attn.hook_z",
        "blocks.1.attn.hook_pattern",
        "blocks.0.mlp.hook_post",
    ];
    let mut full = model.hooks();
    for p in points {
        full.record(p, Positions::All).unwrap();
    }
    run(&model, &ids, &mask, Some(&mut full));
    let full = full.take_cache();
    let windows = [2..6, 1..5, 0..3];
    let mut some = model.hooks();
    for p in points {
        some.record(p, Positions::windows(&windows)).unwrap();
    }
    run(&model, &ids, &mask, Some(&mut some));
    let some = some.take_cache();
    for p in points {
        let rec = some.get(p).unwrap();
        let rows = rec.rows.as_ref().unwrap();
        assert_eq!(rows.len(), 4 + 4 + 3);
        assert_eq!(rec.tensor.dim(0).unwrap(), rows.len());
        let seq_dim = HookPoint::parse(p, 2).unwrap().seq_dim();
        for (r, &(b, pos)) in rows.iter().enumerate() {
            let whole = full
                .tensor(p)
                .unwrap()
                .i(b)
                .unwrap()
                .narrow(seq_dim - 1, pos, 1)
                .unwrap()
                .squeeze(seq_dim - 1)
                .unwrap();
            assert_eq!(
                max_abs_diff(&rec.tensor.i(r).unwrap(), &whole),
                0.0,
                "{p} row {r}"
            );
        }
    }
    // Shapes as documented.
    let (hq, hd) = (
        model.config().num_attention_heads,
        model.config().head_dim(),
    );
    assert_eq!(
        full.tensor("blocks.0.attn.hook_z").unwrap().dims(),
        &[3, 8, hq, hd]
    );
    assert_eq!(
        full.tensor("blocks.1.attn.hook_pattern").unwrap().dims(),
        &[3, hq, 8, 8]
    );
    assert_eq!(
        some.tensor("blocks.1.hook_resid_post").unwrap().dims(),
        &[11, model.config().hidden_size]
    );
}

#[test]
fn adding_then_subtracting_a_vector_restores_every_activation() {
    let cfg = tiny_config("qwen2");
    let (model, _) = random_model(&cfg, DType::F64, 31).unwrap();
    let (ids, mask) = data(40);
    let clean = run(&model, &ids, &mask, None);
    let v = Tensor::randn(0f64, 1., cfg.hidden_size, &Device::Cpu).unwrap();

    let mut hooks = model.hooks();
    hooks
        .edit(HookPoint::resid_pre(1), Edit::add(&v, 3.0), Positions::All)
        .unwrap();
    let steered = run(&model, &ids, &mask, Some(&mut hooks));
    assert!(
        masked_max_diff(&steered, &clean, &mask) > 1e-2,
        "adding the vector must change the logits"
    );

    hooks
        .edit(HookPoint::resid_pre(1), Edit::add(&v, -3.0), Positions::All)
        .unwrap();
    hooks
        .record(HookPoint::resid_post(2), Positions::All)
        .unwrap();
    let restored = run(&model, &ids, &mask, Some(&mut hooks));
    let mut reference = model.hooks();
    reference
        .record(HookPoint::resid_post(2), Positions::All)
        .unwrap();
    run(&model, &ids, &mask, Some(&mut reference));
    let point = HookPoint::resid_post(2).to_string();
    let err = max_abs_diff(
        hooks.cache().tensor(&point).unwrap(),
        reference.cache().tensor(&point).unwrap(),
    );
    assert!(err < 1e-12, "resid_post differs by {err} after +v -v");
    assert!(max_abs_diff(&restored, &clean) < 1e-12);
}

#[test]
fn projecting_out_leaves_no_component_along_the_directions() {
    let model = load_fixture("llama", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let d = model.config().hidden_size;
    let dirs = Tensor::randn(0f32, 1., (2, d), &Device::Cpu).unwrap();
    let site = HookPoint::resid_mid(1);
    let basis = {
        // The span of `dirs`, orthonormal, to measure components independently of the edit.
        let dot = |x: &Tensor, y: &Tensor| {
            (x * y)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let unit = |x: Tensor| (&x / dot(&x, &x).sqrt()).unwrap();
        let a = unit(dirs.i(0).unwrap());
        let b = dirs.i(1).unwrap();
        let b = unit((&b - (&a * dot(&b, &a)).unwrap()).unwrap());
        Tensor::stack(&[a, b], 0).unwrap()
    };
    let component = |x: &Tensor| max_abs(&x.broadcast_matmul(&basis.t().unwrap()).unwrap());

    let mut before = model.hooks();
    before.record(site, Positions::All).unwrap();
    run(&model, &ids, &mask, Some(&mut before));
    let x = before.cache().tensor(&site.to_string()).unwrap().clone();
    assert!(component(&x) > 0.1);

    let mut hooks = model.hooks();
    hooks
        .edit(site, Edit::project_out(&dirs).unwrap(), Positions::All)
        .unwrap();
    hooks.record(site, Positions::All).unwrap(); // after the edit: sees the edited value
    hooks
        .record(HookPoint::resid_post(1), Positions::All)
        .unwrap();
    let logits = run(&model, &ids, &mask, Some(&mut hooks));
    let y = hooks.cache().tensor(&site.to_string()).unwrap();
    assert!(
        component(y) < 1e-5 * max_abs(&x),
        "component left: {}",
        component(y)
    );
    // Only the component was removed: x - y lies in the span.
    let removed = (&x - y).unwrap();
    let rest = (removed.clone()
        - removed
            .broadcast_matmul(&basis.t().unwrap())
            .unwrap()
            .broadcast_matmul(&basis)
            .unwrap())
    .unwrap();
    assert!(max_abs(&rest) < 1e-5 * max_abs(&x));
    assert!(logits
        .to_vec3::<f32>()
        .unwrap()
        .concat()
        .concat()
        .iter()
        .all(|v| v.is_finite()));
}

#[test]
fn an_edit_at_one_position_changes_only_that_position_and_later_ones() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let clean = run(&model, &ids, &mask, None);
    let v = Tensor::ones(model.config().hidden_size, DType::F32, &Device::Cpu).unwrap();
    let mut hooks = model.hooks();
    let only = Positions::PerExample(vec![vec![4], vec![], vec![]]);
    hooks
        .edit(HookPoint::resid_pre(0), Edit::add(&v, 5.0), only)
        .unwrap();
    let edited = run(&model, &ids, &mask, Some(&mut hooks));
    assert_eq!(
        max_abs_diff(&edited.i((0, ..4)).unwrap(), &clean.i((0, ..4)).unwrap()),
        0.0,
        "causal: earlier positions"
    );
    assert_eq!(
        max_abs_diff(&edited.i(1..).unwrap(), &clean.i(1..).unwrap()),
        0.0,
        "other examples"
    );
    for p in 4..8 {
        assert!(
            max_abs_diff(&edited.i((0, p)).unwrap(), &clean.i((0, p)).unwrap()) > 1e-3,
            "position {p}"
        );
    }
}

#[test]
fn replacing_with_another_runs_activation_patches_it_in() {
    let model = load_fixture("mistral", DType::F32).unwrap();
    let a = Tensor::from_vec(random_ids(2, 6, 128, 41).concat(), (2, 6), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(random_ids(2, 6, 128, 42).concat(), (2, 6), &Device::Cpu).unwrap();
    let mut rec = model.hooks();
    rec.record(HookPoint::resid_post(0), Positions::All)
        .unwrap();
    let logits_a = model
        .forward(&a, None, &mut ForwardOptions::fast().hooks(&mut rec))
        .unwrap();
    let resid_a = rec
        .take_cache()
        .tensor(&HookPoint::resid_post(0).to_string())
        .unwrap()
        .clone();

    let mut patch = model.hooks();
    patch
        .edit(
            HookPoint::resid_post(0),
            Edit::replace(&resid_a),
            Positions::All,
        )
        .unwrap();
    let patched = model
        .forward(&b, None, &mut ForwardOptions::fast().hooks(&mut patch))
        .unwrap();
    assert_eq!(max_abs_diff(&patched, &logits_a), 0.0);

    // Patched at the last position only: the other positions keep b's logits.
    let logits_b = model
        .forward(&b, None, &mut ForwardOptions::fast())
        .unwrap();
    let mut patch = model.hooks();
    patch
        .edit(
            HookPoint::resid_post(0),
            Edit::replace(&resid_a),
            Positions::Same(vec![5]),
        )
        .unwrap();
    let patched = model
        .forward(&b, None, &mut ForwardOptions::fast().hooks(&mut patch))
        .unwrap();
    assert_eq!(
        max_abs_diff(
            &patched.i((.., ..5)).unwrap(),
            &logits_b.i((.., ..5)).unwrap()
        ),
        0.0
    );
    assert!(max_abs_diff(&patched.i((.., 5)).unwrap(), &logits_b.i((.., 5)).unwrap()) > 1e-3);
}

#[test]
fn custom_edits_run_in_order_with_records() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let z = HookPoint::block(1, Site::Z);
    let mut hooks = model.hooks();
    hooks.record(z, Positions::All).unwrap();
    hooks
        .edit(z, Edit::custom(|t| Ok((t * 2.0)?)), Positions::All)
        .unwrap();
    hooks
        .record(HookPoint::attn_out(1), Positions::All)
        .unwrap();
    run(&model, &ids, &mask, Some(&mut hooks));
    let z0 = hooks.cache().tensor(&z.to_string()).unwrap().clone();
    let out2 = hooks
        .cache()
        .tensor("blocks.1.hook_attn_out")
        .unwrap()
        .clone();
    let mut plain = model.hooks();
    plain
        .record(HookPoint::attn_out(1), Positions::All)
        .unwrap();
    plain.record(z, Positions::All).unwrap();
    run(&model, &ids, &mask, Some(&mut plain));
    let out1 = plain.cache().tensor("blocks.1.hook_attn_out").unwrap();
    // o_proj has no bias in Qwen2: doubling z doubles attn_out.
    assert!(max_abs_diff(&out2, &(out1 * 2.0).unwrap()) < 1e-5);
    assert!(max_abs_diff(&out2, out1) > 0.1);
    // The record registered before the edit saw z unedited.
    assert_eq!(
        max_abs_diff(&z0, plain.cache().tensor(&z.to_string()).unwrap()),
        0.0
    );
}

#[test]
fn rotary_and_pattern_hooks_show_what_they_name() {
    let model = load_fixture("llama", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let mut hooks = model.hooks();
    for site in [Site::Q, Site::RotQ, Site::K, Site::RotK, Site::Pattern] {
        hooks
            .record(HookPoint::block(0, site), Positions::All)
            .unwrap();
    }
    run(&model, &ids, &mask, Some(&mut hooks));
    let c = hooks.take_cache();
    let get = |s: &str| c.tensor(&format!("blocks.0.attn.{s}")).unwrap().clone();
    // Position 0 has angle 0: RoPE leaves it unchanged; later positions are rotated.
    assert!(
        max_abs_diff(
            &get("hook_rot_q").i((.., 0)).unwrap(),
            &get("hook_q").i((.., 0)).unwrap()
        ) < 1e-6
    );
    assert!(
        max_abs_diff(
            &get("hook_rot_k").i((.., 3)).unwrap(),
            &get("hook_k").i((.., 3)).unwrap()
        ) > 1e-3
    );
    assert_eq!(
        get("hook_k").dims(),
        &[
            3,
            8,
            model.config().num_kv_heads(),
            model.config().head_dim()
        ]
    );
    // Rows of the pattern sum to 1 and put no weight on pads (example 2 has 3 tokens) or the future.
    let pattern = get("hook_pattern");
    let sums = pattern.sum(D::Minus1).unwrap();
    assert!(max_abs_diff(&sums, &sums.ones_like().unwrap()) < 1e-5);
    assert_eq!(max_abs(&pattern.i((2, .., ..3, 3..)).unwrap()), 0.0);
    assert_eq!(max_abs(&pattern.i((0, .., 2, 3..)).unwrap()), 0.0);
}

#[test]
fn empty_hooks_change_nothing_and_bad_names_are_explained() {
    let model = load_fixture("qwen2", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let mut empty = model.hooks();
    assert!(empty.is_empty());
    assert_eq!(
        max_abs_diff(
            &run(&model, &ids, &mask, Some(&mut empty)),
            &run(&model, &ids, &mask, None)
        ),
        0.0
    );

    let mut hooks = model.hooks();
    let e = hooks
        .record("blocks.0.hook_resid", Positions::All)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown hook point `blocks.0.hook_resid`")
            && e.contains("blocks.{l}.hook_resid_post"),
        "{e}"
    );
    let e = hooks
        .record("blocks.2.hook_resid_pre", Positions::All)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 2") && e.contains("2 layers"), "{e}");
    assert!(hooks
        .record(HookPoint::resid_pre(9), Positions::All)
        .is_err());
    // A position past the sequence is reported with the hook's name.
    hooks
        .record("hook_embed", Positions::Same(vec![8]))
        .unwrap();
    let mut opts = ForwardOptions::fast().hooks(&mut hooks);
    let e = format!(
        "{:#}",
        model.forward(&ids, Some(&mask), &mut opts).unwrap_err()
    );
    assert!(e.contains("hook_embed") && e.contains("position 8"), "{e}");
    let cache = hooks.take_cache();
    assert!(cache.tensor("hook_logits").is_err());
}

/// A step a family's blocks do not compute (Llama has no post-norms, no q/k norms) is not a
/// hook point of that model: recording there recorded nothing, silently; now it is refused.
/// Gemma 3's blocks have both, and record them.
#[test]
fn hooks_at_steps_a_model_lacks_are_refused() {
    let llama = load_fixture("llama", DType::F32).unwrap();
    for name in [
        "blocks.0.ln1_post.hook_normalized",
        "blocks.1.ln2_post.hook_normalized",
        "blocks.0.attn.q_norm.hook_normalized",
    ] {
        let mut hooks = llama.hooks();
        let err = hooks.record(name, Positions::All).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("not a hook point"),
            "{err}"
        );
        let zero = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let edit = Edit::Replace { value: zero };
        assert!(hooks.edit(name, edit, Positions::All).is_err(), "{name}");
    }
    let gemma = load_fixture("gemma3", DType::F32).unwrap();
    let (ids, mask) = data(128);
    let mut hooks = gemma.hooks();
    hooks
        .record("blocks.0.ln1_post.hook_normalized", Positions::All)
        .unwrap()
        .record("blocks.0.attn.k_norm.hook_normalized", Positions::All)
        .unwrap();
    run(&gemma, &ids, &mask, Some(&mut hooks));
    let cache = hooks.take_cache();
    assert!(cache.tensor("blocks.0.ln1_post.hook_normalized").is_ok());
    assert!(cache.tensor("blocks.0.attn.k_norm.hook_normalized").is_ok());
}
