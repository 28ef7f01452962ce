//! Writes the organism's corpus and tokenizer: `cargo run -p erosion-organism --example
//! write_world -- <dir> [seed]`. The files land in `<dir>/data` and `<dir>/tokenizer`.

use anyhow::{Context, Result};
use erosion_organism::corpus::{Corpus, Sizes};
use erosion_organism::tokenizer::{build_for, TokenizerOptions};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().context("usage: write_world <dir> [seed]")?);
    let seed = match args.next() {
        Some(s) => s
            .parse()
            .with_context(|| format!("seed `{s}` is not a u64"))?,
        None => 0,
    };
    let corpus = Corpus::generate(Sizes::default(), seed);
    let files = corpus.write_jsonl(&dir.join("data"))?;
    let tok = build_for(&corpus, TokenizerOptions::default(), &dir.join("tokenizer"))?;
    println!(
        "wrote {} files to {} and a tokenizer of {} tokens",
        files.len(),
        dir.join("data").display(),
        tok.get_vocab_size(true)
    );
    Ok(())
}
