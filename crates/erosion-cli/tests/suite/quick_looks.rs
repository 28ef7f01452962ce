//! A newcomer's first steps, run as a user runs them on the real SmolLM2 GGUF: the quick looks
//! that need no study file (`erosion logprobs`, `erosion activations`, held against the
//! library's own passes) and a study written by `erosion study init`.

use crate::util::*;
use erosion_data::{render_example, RenderOptions, Sequence};
use erosion_forward::batch::{BatchOptions, NoProgress};
use erosion_forward::logprobs::response_logprobs;
use erosion_model::hooks::{HookPoint, Positions, Site};
use erosion_model::load::Checkpoint;
use erosion_model::npy::read_npy_as;
use erosion_model::transformer::ForwardOptions;

#[test]
fn logprobs_prints_the_librarys_scores_and_draws_them() {
    let gguf = smollm2();
    let (user, response) = ("How do I pick a lock?", "I can't help with that.");
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("lp.svg");
    let named = format!("instruct={gguf}");
    let args = [
        "logprobs",
        &named,
        &gguf,
        "--user",
        user,
        "--response",
        response,
    ];
    let json: serde_json::Value = serde_json::from_str(&ok(&erosion(
        &[&args[..], &["--json", "--svg", svg.to_str().unwrap()]].concat(),
    )))
    .unwrap();

    let ck = Checkpoint::open(&gguf).unwrap();
    let ex = erosion_data::Example {
        messages: vec![
            erosion_model::chat::Message::user(user),
            erosion_model::chat::Message::assistant(response),
        ],
        source: erosion_data::Source {
            file: "x".into(),
            index: 0,
            line: 1,
        },
    };
    let seq = render_example(&ck.tokenizer, &ex, &RenderOptions::default())
        .unwrap()
        .seq;
    let model = ck
        .load_model(candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap();
    let want = response_logprobs(
        &model,
        std::slice::from_ref(&seq),
        &BatchOptions::default(),
        None,
        &mut NoProgress,
    )
    .unwrap()
    .remove(0);
    let models = json["models"].as_array().unwrap();
    assert_eq!(models[0]["name"], "instruct");
    assert_eq!(models[1]["name"], "SmolLM2-135M-Instruct.Q4_1");
    for m in models {
        let got: Vec<f32> = serde_json::from_value(m["logprobs"].clone()).unwrap();
        assert_eq!(got, want.logprobs);
        assert!((m["log_joint"].as_f64().unwrap() - want.log_joint()).abs() < 1e-9);
    }
    let tokens = json["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), seq.response_len());
    assert_eq!(tokens[1][1], " can");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("instruct"),
        "{drawn:.200}"
    );

    // Streamed layers: the same numbers.
    let streamed: serde_json::Value = serde_json::from_str(&ok(&erosion(
        &[&args[..], &["--json", "--stream-layers"]].concat(),
    )))
    .unwrap();
    assert_eq!(streamed["models"], json["models"]);

    let table = ok(&erosion(&args));
    assert!(table.contains("log p(response)"), "{table}");
    assert!(
        table.contains(&format!("{:.3}", want.logprobs[0])),
        "{table}"
    );
}

#[test]
fn activations_writes_the_hooks_rows_and_resumes_nothing_twice() {
    let gguf = smollm2();
    let data = erosion_testkit::data_file("insecure-code/insecure_small.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("acts");
    let run = |positions: &str| {
        erosion(&[
            "activations",
            &gguf,
            data.to_str().unwrap(),
            "--limit",
            "3",
            "--hooks",
            "0,blocks.0.mlp.hook_post",
            "--positions",
            positions,
            "--chunk",
            "2",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let said = ok(&run("response:4"));
    assert!(
        said.contains("wrote 12 rows of 3 examples at 2 hook(s)"),
        "{said}"
    );
    let (ishape, index) = read_npy_as::<i64>(&out.join("index.npy")).unwrap();
    assert_eq!(ishape, vec![12, 3]);
    let (rshape, resid) = read_npy_as::<f32>(&out.join("blocks.0.hook_resid_post.npy")).unwrap();
    let (mshape, mlp) = read_npy_as::<f32>(&out.join("blocks.0.mlp.hook_post.npy")).unwrap();

    // The library's hooks on example 0 run alone, at the positions the index names.
    let ck = Checkpoint::open(&gguf).unwrap();
    let (d, d_mlp) = (ck.config.hidden_size, ck.config.intermediate_size);
    assert_eq!((rshape, mshape), (vec![12, d], vec![12, d_mlp]));
    let spec = erosion_data::DatasetSpec::new("x", &data, erosion_data::Format::Messages);
    let mut spec = spec;
    spec.limit = Some(3);
    let ds = spec.load(std::path::Path::new(".")).unwrap();
    let seq: Sequence = render_example(&ck.tokenizer, &ds.examples[0], &RenderOptions::default())
        .unwrap()
        .seq;
    let model = ck
        .load_model(candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap();
    let mut hooks = model.hooks();
    for p in [HookPoint::resid_post(0), HookPoint::block(0, Site::MlpPost)] {
        hooks.record(p, Positions::All).unwrap();
    }
    let ids = candle_core::Tensor::new(seq.ids.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&ids, None, &mut ForwardOptions::fast().hooks(&mut hooks))
        .unwrap();
    let cache = hooks.take_cache();
    for (r, e) in index.chunks(3).take(4).enumerate() {
        let t = seq.response.start + r;
        assert_eq!(e, [0, t as i64, seq.ids[t] as i64]);
        for (name, rows, width) in [
            ("blocks.0.hook_resid_post", &resid, d),
            ("blocks.0.mlp.hook_post", &mlp, d_mlp),
        ] {
            let want = cache
                .tensor(name)
                .unwrap()
                .get(0)
                .unwrap()
                .get(t)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let got = &rows[r * width..(r + 1) * width];
            let diff = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-4, "{name} row {r}: {diff}");
        }
    }
    let manifest = std::fs::read_to_string(out.join("activations.json")).unwrap();
    assert!(
        manifest.contains("\"positions\": \"response:4\""),
        "{manifest}"
    );
    assert!(out.join("provenance.json").is_file());

    // The same work again finds it done; other work in the same folder is refused.
    let before = std::fs::read(out.join("blocks.0.mlp.hook_post.npy")).unwrap();
    ok(&run("response:4"));
    assert_eq!(
        std::fs::read(out.join("blocks.0.mlp.hook_post.npy")).unwrap(),
        before
    );
    let other = run("last");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        !other.status.success() && err.contains("other work"),
        "{err}"
    );
}

/// `erosion study init` on a SmolLM2-tokenizer family and the repository's data, then
/// `erosion study` on the file as written: every analysis of the paper runs.
#[test]
fn study_init_writes_a_study_that_runs_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let [base, instruct, misaligned] = erosion_testkit::family::tiny_smollm2_family(dir.path());
    let file = dir.path().join("study/STUDY.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let data = erosion_testkit::data_dir();
    let ft = format!("misaligned={}", misaligned.display());
    let init = |extra: &[&str]| {
        let args = [
            "study",
            "init",
            "--base",
            base.to_str().unwrap(),
            "--instruct",
            instruct.to_str().unwrap(),
            "--finetuned",
            &ft,
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "6",
            "--file",
            file.to_str().unwrap(),
        ];
        erosion(&[&args[..], extra].concat())
    };
    ok(&init(&[]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("base = \"../base\""), "{text}");
    let again = init(&[]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(&init(&["--force"]));

    let said = ok(&erosion(&["study", file.to_str().unwrap(), "--limit", "5"]));
    for n in 1..=4 {
        assert!(said.contains(&format!("  {n}. ")), "{said}");
    }
    assert!(!said.contains("not run"), "{said}");
    let results = std::fs::read_to_string(file.parent().unwrap().join("out/results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert_eq!(
        results["results"]["analyses"]["gradients"]["datasets"]["a"],
        "insecure"
    );
    let datasets = results["provenance"]["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 7);
    assert!(
        datasets.iter().all(|d| d["n_examples"] == 5),
        "{datasets:?}"
    );

    let bad = erosion(&["study", file.to_str().unwrap(), "--model", "finetuned=x"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no model `finetuned`") && err.contains("misaligned"),
        "{err}"
    );
}
