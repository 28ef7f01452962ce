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

    /// Runs every batch this far, `hooks[i]` recording batch i. A streamed model
    /// ([`Transformer::is_streamed`]) runs them layer by layer, reading each block once;
    /// either way each batch computes what it would alone. A model in memory holds every
    /// batch's pass at once here: give it one batch at a time.
    pub fn run_many(
        &self,
        model: &Transformer,
        batches: &[Batch],
        hooks: &mut [Hooks],
    ) -> Result<()> {
        let mut opts: Vec<ForwardOptions> = hooks
            .iter_mut()
            .map(|h| ForwardOptions::fast().hooks(h))
            .collect();
        let inputs: Vec<_> = (batches.iter())
            .map(|b| (&b.ids, b.mask_if_padded()))
            .collect();
        let xs = model.run_batches(&inputs, self.blocks, &mut opts)?;
        if self.norm {
            for (x, o) in xs.iter().zip(&mut opts) {
                let x = model.final_norm(x, o)?;
                if self.logits {
                    model.unembed(&x, o)?;
                }
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
