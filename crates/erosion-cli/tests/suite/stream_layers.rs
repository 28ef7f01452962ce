//! `erosion activations --stream-layers` on a synthetic Qwen2 of 2.3 GB of bf16 weights (24
//! layers of width 2048, a vocabulary of 32768): every row it writes equals the in-memory pass
//! bit for bit, and its peak resident memory (its own high-water mark, which it reports) stays
//! under a quarter of the weights while the in-memory pass needs more than the weights (they
//! are held in f32). The embedding alone would take 268 MB in f32, nearly half the bound: the
//! streamed pass reads only the rows it needs, and the unembedding a slice at a time.

use crate::util::{erosion, stderr};
use erosion_model::seed::SplitMix64;
use std::io::{BufWriter, Write};
use std::path::Path;

const LAYERS: usize = 24;
const D: usize = 2048;
const D_MLP: usize = 5632;
const HEADS: usize = 16;
const KV_HEADS: usize = 4;
const VOCAB: usize = 32768;

/// Writes a Qwen2 folder (config, the tiny ChatML tokenizer, one bf16 safetensors file written
/// tensor by tensor, so this test never holds the weights) and returns the weights' bytes.
fn synthetic_qwen2(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": VOCAB,
        "hidden_size": D, "intermediate_size": D_MLP, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": true, "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let chatml = erosion_testkit::model_fixtures().join("chat/tiny-chatml");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(chatml.join(f), dir.join(f)).unwrap();
    }
    // (name, shape, whether it is a norm gain of ones), in checkpoint order.
    let kv = KV_HEADS * D / HEADS;
    let mut tensors: Vec<(String, Vec<usize>, bool)> =
        vec![("model.embed_tokens.weight".into(), vec![VOCAB, D], false)];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for (n, shape) in [
            ("self_attn.q_proj.weight", vec![D, D]),
            ("self_attn.q_proj.bias", vec![D]),
            ("self_attn.k_proj.weight", vec![kv, D]),
            ("self_attn.k_proj.bias", vec![kv]),
            ("self_attn.v_proj.weight", vec![kv, D]),
            ("self_attn.v_proj.bias", vec![kv]),
            ("self_attn.o_proj.weight", vec![D, D]),
            ("mlp.gate_proj.weight", vec![D_MLP, D]),
            ("mlp.up_proj.weight", vec![D_MLP, D]),
            ("mlp.down_proj.weight", vec![D, D_MLP]),
        ] {
            tensors.push((format!("{p}.{n}"), shape, false));
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((format!("{p}.{n}.weight"), vec![D], true));
        }
    }
    tensors.push(("model.norm.weight".into(), vec![D], true));
    let mut header = serde_json::Map::new();
    let mut at = 0u64;
    for (name, shape, _) in &tensors {
        let bytes = 2 * shape.iter().product::<usize>() as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        at += bytes;
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let file = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    w.write_all(&header).unwrap();
    // Uniform in +-0.03 (std 0.017, about Hugging Face's 0.02 init): four bf16 values per draw.
    let mut rng = SplitMix64(22);
    let one = bf16_bits(1.0).to_le_bytes();
    for (_, shape, ones) in &tensors {
        let n: usize = shape.iter().product();
        let mut buf = Vec::with_capacity(2 * n);
        if *ones {
            (0..n).for_each(|_| buf.extend_from_slice(&one));
        }
        while buf.len() < 2 * n {
            let z = rng.next_u64();
            for k in 0..4 {
                let u = ((z >> (16 * k)) & 0xffff) as f32 / 65536.0;
                buf.extend_from_slice(&bf16_bits((2.0 * u - 1.0) * 0.03).to_le_bytes());
            }
        }
        buf.truncate(2 * n);
        w.write_all(&buf).unwrap();
    }
    w.flush().unwrap();
    at
}

/// `x` rounded to bf16 (to nearest, ties to even; `x` finite).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Runs `erosion ARGS` to its end and returns the peak resident memory it reports (its own
/// `VmHWM`; a parent's `ru_maxrss` of a child would include the test process's own peak, as
/// the child is spawned sharing its address space), failing on a non-zero exit with its stderr.
fn peak_rss(args: &[&str]) -> u64 {
    let run = erosion(args);
    let said = stderr(&run);
    assert!(run.status.success(), "{said}");
    let mib: f64 = (said.lines())
        .find_map(|l| l.strip_prefix("peak resident memory "))
        .and_then(|l| l.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no peak memory in: {said}"))
        .parse()
        .unwrap();
    (mib * 1024.0 * 1024.0) as u64
}

#[test]
fn streamed_layers_write_the_in_memory_rows_in_a_fraction_of_the_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("qwen2-2b-bf16");
    let weights = synthetic_qwen2(&model);
    let data = tmp.path().join("data.jsonl");
    let lines: Vec<String> = (0..6)
        .map(|i| {
            let user = format!("question number {i}: what is {} plus {i}?", 7 * i);
            let assistant = format!("the answer is {} and that is all", 8 * i);
            serde_json::json!({"messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant}
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let run = |out: &str, streamed: bool| {
        let out = tmp.path().join(out);
        let mut args = vec![
            "activations",
            model.to_str().unwrap(),
            data.to_str().unwrap(),
            "--hooks",
            "embed,0,11,23,hook_logits",
            "--positions",
            "all",
            "--chunk",
            "4",
            "--max-tokens",
            "64",
            "--out",
            out.to_str().unwrap(),
        ];
        if streamed {
            args.push("--stream-layers");
        }
        let peak = peak_rss(&args);
        (out, peak)
    };
    let (whole, whole_peak) = run("whole", false);
    let (streamed, streamed_peak) = run("streamed", true);
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "weights {:.0} MB; peak resident memory: in memory {:.0} MB, streamed {:.0} MB",
        mb(weights),
        mb(whole_peak),
        mb(streamed_peak)
    );
    // The measurement measures: the in-memory pass holds the weights in f32.
    assert!(whole_peak > weights, "in memory: {:.0} MB", mb(whole_peak));
    assert!(
        streamed_peak < weights / 4,
        "streamed: {:.0} MB of {:.0} MB of weights",
        mb(streamed_peak),
        mb(weights)
    );
    for file in [
        "index.npy",
        "hook_embed.npy",
        "blocks.0.hook_resid_post.npy",
        "blocks.11.hook_resid_post.npy",
        "blocks.23.hook_resid_post.npy",
        "hook_logits.npy",
    ] {
        let (a, b) = (whole.join(file), streamed.join(file));
        let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(a.len() > 128 && a == b, "{file} differs");
    }
}
