//! What changes a study after it is read: the defaults chosen from the datasets it declares,
//! and a run's overrides (fewer examples, another checkpoint for a model).

use super::{AnalysisName, StudySpec};
use anyhow::{bail, Context, Result};
use erosion_data::Role;

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Aligned => "aligned",
        Role::Misaligned => "misaligned",
    }
}

impl StudySpec {
    /// Fills the options whose defaults depend on the datasets the file declares: `[gradients]`
    /// `a` and `b` are the first dataset of role `misaligned` and the first of role `aligned`
    /// (else the paper's `insecure` and `educational`, when the study has datasets so named).
    pub fn choose_defaults(&mut self) -> Result<()> {
        self.declared_datasets()?;
        if !self.analyses.contains(&AnalysisName::Gradients) {
            return Ok(());
        }
        let choose = |role: Role, paper: &str| {
            let by_role = self.datasets.iter().find(|d| d.role == Some(role));
            let by_name = || self.datasets.iter().find(|d| d.name == paper);
            by_role.or_else(by_name).map(|d| d.name.clone())
        };
        for (field, role, paper) in [
            ("a", Role::Misaligned, "insecure"),
            ("b", Role::Aligned, "educational"),
        ] {
            let slot = match field {
                "a" => &mut self.gradients.a,
                _ => &mut self.gradients.b,
            };
            if slot.is_none() {
                *slot = Some(choose(role, paper).with_context(|| {
                    format!(
                        "[gradients] {field} is not set, and no dataset can be its default: none has \
                         role = \"{}\" (nor is one named `{paper}`, as in the paper); set [gradients] \
                         {field} = \"NAME\", or give a dataset that role",
                        role_name(role)
                    )
                })?);
            }
        }
        Ok(())
    }

    /// At most `n` examples of every dataset: the same study, quicker.
    pub fn limit_examples(&mut self, n: usize) {
        for d in &mut self.datasets {
            d.limit = Some(d.limit.map_or(n, |l| l.min(n)));
        }
    }

    /// Points model `name` (base, instruct, a fine-tune or a compared model) at `path`.
    pub fn set_model(&mut self, name: &str, path: &str) -> Result<()> {
        let m = &mut self.models;
        let slot = match name {
            "base" => &mut m.base,
            "instruct" => &mut m.instruct,
            _ => match m
                .finetuned
                .iter_mut()
                .chain(m.compared.iter_mut())
                .find(|x| x.name == name)
            {
                Some(x) => &mut x.path,
                None => {
                    let names: Vec<String> = m
                        .all()
                        .into_iter()
                        .map(|(n, _)| n)
                        .chain(m.compared.iter().map(|x| x.name.clone()))
                        .collect();
                    bail!(
                        "the study has no model `{name}` (it has: {})",
                        names.join(", ")
                    );
                }
            },
        };
        *slot = path.to_string();
        Ok(())
    }
}
