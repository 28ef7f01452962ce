//! `erosion serve MODEL [--directions NAME=FILE.npy ...]`: an OpenAI-compatible HTTP server
//! (chat and text completions, streaming, log-probs) with per-request steering
//! (erosion_serve; the `steering` field is documented there and in the README).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use erosion_eval::judge::digits::surfaces;
use erosion_model::LoadedModel;
use erosion_serve::{Directions, Limits, ServeOptions, Served};

use crate::args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A direction requests may steer along, as NAME=FILE.npy: shape [d_model] (any layer) or
    /// [n_layers + 1, d_model] (per residual point, as `erosion steer` writes directions.npy).
    #[arg(long, value_name = "NAME=FILE")]
    pub directions: Vec<String>,
    /// Address to bind (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 (also read from EROSION_API_KEY).
    #[arg(long, env = "EROSION_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The name clients give as `model` (default: the checkpoint's file or folder name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Most new tokens per answer (the default of max_tokens).
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Most tokens in one prompt.
    #[arg(long, default_value_t = 4096)]
    pub max_prompt_tokens: usize,
    /// Most answers decoded together.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Most answers waiting; requests beyond it get 429.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Seconds one request may take, waiting included (then 504).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
}

/// The longest --timeout.
const MAX_TIMEOUT_S: u64 = 365 * 24 * 3600;

pub fn run(args: Args) -> Result<()> {
    if args.max_batch == 0 || args.queue < args.max_batch || args.max_tokens == 0 {
        bail!("--max-batch and --max-tokens must be at least 1, and --queue at least --max-batch");
    }
    // 0 would time every request out; a deadline past what a clock holds would panic in
    // each request's handler.
    if !(1..=MAX_TIMEOUT_S).contains(&args.timeout) {
        bail!(
            "--timeout {}: it must be 1 to {MAX_TIMEOUT_S} seconds (a year)",
            args.timeout
        );
    }
    let spec = &args.model.model;
    let name = args.served_model_name.clone().unwrap_or_else(|| {
        let p = Path::new(spec.trim_end_matches('/'));
        p.file_stem()
            .map_or_else(|| spec.clone(), |s| s.to_string_lossy().into_owned())
    });
    let dev = &args.model.device;
    let loaded = LoadedModel::open(spec, Some(&name), dev.dtype()?, &dev.device()?)?;
    let cfg = loaded.model.config().clone();
    let mut directions = Directions::default();
    for d in &args.directions {
        let (n, file) = d
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .with_context(|| format!("--directions {d}: expected NAME=FILE.npy"))?;
        directions.load(n, Path::new(file), cfg.num_hidden_layers, cfg.hidden_size)?;
    }
    let served = Served {
        name,
        surfaces: surfaces(&loaded.tokenizer, cfg.vocab_size),
        loaded,
        directions,
        limits: Limits {
            max_tokens: args.max_tokens,
            max_prompt_tokens: args.max_prompt_tokens,
            max_batch: args.max_batch,
            queue_rows: args.queue,
            timeout: Duration::from_secs(args.timeout),
            max_body_bytes: args.max_body_bytes,
            ..Limits::default()
        },
    };
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
    };
    let model_name = served.name.clone();
    erosion_serve::run(served, &opts, |addr| {
        // One line on stdout, read by scripts that start the server on port 0.
        println!("serving {model_name} on http://{addr}/v1");
        eprintln!(
            "auth: {}",
            if opts.api_key.is_some() {
                "bearer key required"
            } else {
                "none (no --api-key)"
            }
        );
    })
}
