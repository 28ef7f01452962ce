//! How far a recording pass must run the model: a hook at block l needs blocks `0..=l` only,
//! and the final norm and the unembedding only when a hook reads them, so a pass that records
//! early layers skips the rest of the model.

use crate::batch::Batch;
use anyhow::Result;
use erosion_model::hooks::{HookPoint, Hooks};
use erosion_model::transformer::{ForwardOptions, Transformer};

/// The part of the model a set of hook points needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Depth {
    /// Blocks to run: `0..blocks`.
    pub blocks: usize,
    /// Run the final norm (`ln_final.hook_normalized`, or the logits after it).
    pub norm: bool,
    /// Run the unembedding (`hook_logits`).
    pub logits: bool,
}

impl Depth {
    /// What `points` need in a model of `n_layers` blocks.
    pub fn of(points: &[HookPoint], n_layers: usize) -> Self {
        let blocks = points
            .iter()
            .map(|p| match p {
                HookPoint::Embed => 0,
                HookPoint::Block { layer, .. } => layer + 1,
                HookPoint::LnFinal | HookPoint::Logits => n_layers,
            })
            .max()
            .unwrap_or(0);
        let logits = points.contains(&HookPoint::Logits);
        Depth {
            blocks,
            norm: logits || points.contains(&HookPoint::LnFinal),
            logits,
        }
    }

    /// Runs batch `b` this far with `hooks` (what they record stays in them).
    pub fn run(&self, model: &Transformer, b: &Batch, hooks: &mut Hooks) -> Result<()> {
        let mut fo = ForwardOptions::fast().hooks(hooks);
        let ctx = model.context(b.mask_if_padded(), b.len(), b.seq_len())?;
        let x = model.embed(&b.ids, &mut fo)?;
        let x = model.run_layers(x, 0..self.blocks, &ctx, &mut fo)?;
        if self.norm {
            let x = model.final_norm(&x, &mut fo)?;
            if self.logits {
                model.unembed(&x, &mut fo)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erosion_model::hooks::Site;

    #[test]
    fn the_deepest_point_decides() {
        let d = |p: &[HookPoint]| Depth::of(p, 4);
        let embed = d(&[HookPoint::Embed]);
        assert_eq!((embed.blocks, embed.norm, embed.logits), (0, false, false));
        let mid = d(&[HookPoint::Embed, HookPoint::block(1, Site::Z)]);
        assert_eq!((mid.blocks, mid.norm), (2, false));
        let norm = d(&[HookPoint::LnFinal]);
        assert_eq!((norm.blocks, norm.norm, norm.logits), (4, true, false));
        let logits = d(&[HookPoint::Logits, HookPoint::Embed]);
        assert_eq!((logits.blocks, logits.norm, logits.logits), (4, true, true));
    }
}
