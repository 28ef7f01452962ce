//! The exact distribution of the number a judge model's reply begins with.
//!
//! For a judge prompt x and n in 0..=100,
//!
//!   P(n) = sum over token paths t_1..t_k spelling n (see [`super::digits`]) of
//!          p(t_1..t_k | x) * [ends inside t_k ? 1 : sum_{u: u does not start with a digit} p(u | x, t_1..t_k)].
//!
//! The paths form a prefix tree ([`super::tree`]): an edge is a digit-bearing token, and a node
//! whose digits are a number of the scale and whose last token does not end the number is a
//! prefix to extend; its next-token distribution gives its end mass and its children. Digit
//! strings that are no number of the scale ("05", "101") are not extended: their mass is
//! non-number mass.
//!
//! A node whose path probability is under `min_prefix_prob` is not extended; its probability
//! is added to `unexpanded`, which bounds the mass left out of sum_n P(n). With
//! `min_prefix_prob = 0` every prefix is extended and P(n) is exact (up to float rounding).

use anyhow::{bail, Result};
use erosion_model::transformer::Transformer;

use super::digits::{is_score, parse, DigitToken, DigitVocab, MAX_SCORE};
pub use super::tree::TreeOptions;
use super::tree::{walk, Prefix};

/// The judge's number distribution after one prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct NumberProbs {
    /// P(n) for n = 0..=100 (101 entries).
    pub p: Vec<f64>,
    /// Probability of the prefixes left unexpanded.
    pub unexpanded: f64,
    /// Next-token log-probabilities after the prompt (the reply's first token), `[vocab]`.
    pub first: Vec<f64>,
    /// Tree nodes run through the model (prefixes extended).
    pub nodes: usize,
}

/// Walks the tree after `prompt` (ids, the judge's generation prompt included).
pub fn number_probs(
    model: &Transformer,
    vocab: &DigitVocab,
    prompt: &[u32],
    opts: &TreeOptions,
) -> Result<NumberProbs> {
    if vocab.starts_digit.len() != model.config().vocab_size {
        bail!(
            "the digit vocabulary has {} ids, the judge model {}",
            vocab.starts_digit.len(),
            model.config().vocab_size
        );
    }
    let mut p = vec![0.0; MAX_SCORE as usize + 1];
    let w = walk(
        model,
        prompt,
        opts,
        |node: Option<&Prefix<String>>, lp, children| {
            let Some(node) = node else {
                expand(None, lp, &vocab.first, &mut p, children);
                return;
            };
            // The number ends here when the next token does not start with a digit.
            let end: f64 = lp
                .iter()
                .zip(&vocab.starts_digit)
                .filter(|(_, &d)| !d)
                .map(|(l, _)| l.exp())
                .sum();
            p[parse(&node.state) as usize] += node.log_p.exp() * end;
            expand(Some(node), lp, &vocab.next, &mut p, children);
        },
    )?;
    Ok(NumberProbs {
        p,
        unexpanded: w.unexpanded,
        first: w.first,
        nodes: w.nodes,
    })
}

/// The children of `node` (the root: None; next-token log-probs `lp`) over `edges`: a number
/// ending inside the token is counted in `p`, a prefix to extend is pushed onto `children`.
fn expand(
    node: Option<&Prefix<String>>,
    lp: &[f64],
    edges: &[DigitToken],
    p: &mut [f64],
    children: &mut Vec<Prefix<String>>,
) {
    let spelled = node.map_or("", |n| n.state.as_str());
    for t in edges {
        let digits = format!("{spelled}{}", t.digits);
        if !is_score(&digits) {
            continue;
        }
        let child = Prefix::child(node, t.id, lp[t.id as usize], digits);
        if t.ends {
            p[parse(&child.state) as usize] += child.log_p.exp();
        } else {
            children.push(child);
        }
    }
}
