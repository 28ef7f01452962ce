//! Checkpoints erosion refuses before parsing their config, each with the way out where one
//! exists: quantised folders (GPTQ, AWQ, bitsandbytes, ...: `quantization_config` in
//! `config.json`) and multimodal ones (a `vision_config` or `text_config`, or a
//! `...ForConditionalGeneration` class) and bidirectional encoders built on a decoder's weights
//! (`use_bidirectional_attention`). An unknown `model_type` is refused by
//! [`Family::of_model_type`](crate::family::Family::of_model_type) with the supported list.

use crate::family::Family;
use crate::text::shown;
use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// Errors for a `config.json` (as a JSON object) that describes a checkpoint erosion cannot
/// run.
pub fn refuse(cfg: &Map<String, Value>) -> Result<()> {
    if let Some(q) = cfg.get("quantization_config") {
        let method = q
            .get("quant_method")
            .and_then(Value::as_str)
            .unwrap_or("unnamed");
        bail!(
            "this is a quantised checkpoint (quantization_config with quant_method `{}`): erosion \
             reads floating-point weights only (F32, F16, BF16 safetensors, or GGUF). Use the \
             unquantised original, or dequantise it with transformers: load it with \
             AutoModelForCausalLM.from_pretrained, call model.dequantize() (bitsandbytes, GPTQ \
             and others support it), and save_pretrained the result to a new folder",
            shown(method)
        );
    }
    if cfg.get("use_bidirectional_attention") == Some(&Value::Bool(true)) {
        bail!(
            "this checkpoint attends bidirectionally (use_bidirectional_attention: an embedding \
             model such as EmbeddingGemma): erosion runs causal language models only"
        );
    }
    let class = cfg
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    let multimodal = ["vision_config", "audio_config", "text_config"]
        .into_iter()
        .find(|k| cfg.contains_key(*k));
    if multimodal.is_some() || class.ends_with("ForConditionalGeneration") {
        let what = match (class, multimodal) {
            ("", Some(key)) => format!("its config has a `{key}`"),
            (class, _) => format!("`{}`", shown(class)),
        };
        bail!(
            "this is a multimodal checkpoint ({what}): erosion runs text-only causal language \
             models (model_type {}). Way out: save its language model alone with transformers \
             (for Gemma 3: a Gemma3ForCausalLM built from `text_config`, given the language \
             model's weights, then save_pretrained) and open that folder",
            Family::model_types().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: &str) -> String {
        let v: Value = serde_json::from_str(json).unwrap();
        refuse(v.as_object().unwrap()).unwrap_err().to_string()
    }

    #[test]
    fn quantised_folders_are_refused_with_the_way_out() {
        for method in ["gptq", "awq", "bitsandbytes"] {
            let msg = refusal(&format!(
                r#"{{"model_type":"qwen2","quantization_config":{{"quant_method":"{method}","bits":4}}}}"#
            ));
            assert!(msg.contains(&format!("quant_method `{method}`")), "{msg}");
            assert!(
                msg.contains("dequantize()") && msg.contains("save_pretrained"),
                "{msg}"
            );
        }
    }

    #[test]
    fn multimodal_checkpoints_are_refused_with_the_supported_list() {
        let msg = refusal(
            r#"{"architectures":["Gemma3ForConditionalGeneration"],"model_type":"gemma3",
                "text_config":{"model_type":"gemma3_text"},"vision_config":{}}"#,
        );
        assert!(msg.contains("`Gemma3ForConditionalGeneration`"), "{msg}");
        assert!(
            msg.contains("gemma2, gemma3_text") && msg.contains("Gemma3ForCausalLM"),
            "{msg}"
        );
        let msg = refusal(r#"{"model_type":"llava","vision_config":{}}"#);
        assert!(msg.contains("its config has a `vision_config`"), "{msg}");
        let plain = serde_json::json!({"architectures": ["Gemma3ForCausalLM"],
            "use_bidirectional_attention": false});
        refuse(plain.as_object().unwrap()).unwrap();
        let msg = refusal(r#"{"model_type":"gemma3_text","use_bidirectional_attention":true}"#);
        assert!(msg.contains("causal language models only"), "{msg}");
    }
}
