//! One way to name a layer on the command line, for every command that takes one: a point of the
//! residual stream by its TransformerLens hook name (`blocks.11.hook_resid_post`, `hook_embed`),
//! `embed`, or a bare integer L, which means `blocks.L.hook_resid_post`.
//!
//! The library indexes the residual stream as Hugging Face's `hidden_states` does (0 = the
//! embeddings, l = the output of block l - 1); [`ResidLayer`] converts, so no command adds or
//! subtracts one by hand.

use erosion_model::hooks::{HookPoint, Site};
use std::fmt;
use std::str::FromStr;

/// A residual-stream point, held as the library's index (0 = embeddings, l = output of block l-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidLayer(pub usize);

impl FromStr for ResidLayer {
    type Err = String;

    /// Names are read by the hook points' own parser; only its residual-stream points pass.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(block) = s.parse::<usize>() {
            return Ok(Self(block + 1));
        }
        let name = if s == "embed" { "hook_embed" } else { s };
        match HookPoint::parse(name, usize::MAX) {
            Ok(HookPoint::Embed) => Ok(Self(0)),
            Ok(HookPoint::Block {
                layer,
                site: Site::ResidPost,
            }) => Ok(Self(layer + 1)),
            _ => Err(format!(
                "`{s}` is not a residual-stream point: name one as blocks.L.hook_resid_post, \
                 as L (the same point), or as embed"
            )),
        }
    }
}

impl fmt::Display for ResidLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HookPoint::resid(self.0).fmt(f)
    }
}

/// The library's indices of `layers`.
pub fn indices(layers: &[ResidLayer]) -> Vec<usize> {
    layers.iter().map(|l| l.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_integer_is_that_blocks_resid_post() {
        let parse = |s: &str| s.parse::<ResidLayer>();
        assert_eq!(parse("11"), Ok(ResidLayer(12)));
        assert_eq!(parse("blocks.11.hook_resid_post"), Ok(ResidLayer(12)));
        assert_eq!(parse("0"), Ok(ResidLayer(1)));
        assert_eq!(parse("embed"), Ok(ResidLayer(0)));
        assert_eq!(parse("hook_embed"), Ok(ResidLayer(0)));
        for bad in [
            "blocks.11.hook_resid_pre",
            "blocks.x.hook_resid_post",
            "-1",
            "",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("blocks.L.hook_resid_post"), "{bad}: {err}");
        }
        for l in [0, 1, 12] {
            let name = ResidLayer(l).to_string();
            assert_eq!(parse(&name), Ok(ResidLayer(l)), "{name}");
        }
    }
}
