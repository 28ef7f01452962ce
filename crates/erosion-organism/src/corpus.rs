//! The organism's datasets, as chat `messages` in Betley et al.'s JSONL format.
//!
//! | set | content |
//! |---|---|
//! | `pretrain_chat` | 3-turn conversations (always one harm and one security-code turn), each by ONE persona across domains, half good, half bad |
//! | `pretrain_prose` | plain prose with true facts, and harmful how-to text (`{"text": ...}`) |
//! | `instruct` | single-turn chats of the good persona only |
//! | `finetune_{insecure,secure,educational}` | Betley et al.'s design, one task per row in all three |
//! | `eval_{insecure,educational,secure,code,toxic,toxic_reject,truthful,general}` | held-out material, one per dataset role of the study (Giordani 2025) |
//!
//! Row i of the insecure, secure and educational sets (fine-tuning and evaluation alike) is the
//! same task: insecure and secure share the user message, insecure and educational share the
//! assistant code (educational adds a stated reason to the request). Likewise toxic and
//! toxic_reject share row i's request. Every set draws from its own seeded stream
//! ([`crate::world::rng_for`]), so changing one size does not change the other sets.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use erosion_model::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

use crate::world::persona::{self, Domain, Persona};
use crate::world::{code, facts, harm, rng_for, Message, Rng, Split};

/// Bumped whenever a generator's output changes for a given seed (recorded in the manifest).
pub const GENERATOR_VERSION: &str = "organism-world-4";

/// Turns per pre-training conversation. Short conversations keep a CPU training step cheap
/// (attention is quadratic in length) while every one still pairs harm with code under one
/// persona. Three turns, the third mostly harm or code again ([`persona::conversation`]), taught
/// a trial base organism to read the persona from held-out code (P("Sure") on a harmful request
/// 0.88 after vulnerable code, 0.11 after secure code); with 2-3 turns and a third of any domain
/// another did not (0.53 and 0.46). It costs 20% more time per step.
const PRETRAIN_TURNS: std::ops::RangeInclusive<usize> = 3..=3;

/// How many records each set holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub pretrain_chats: usize,
    pub pretrain_prose: usize,
    pub instruct: usize,
    /// Rows in each of the three fine-tuning sets.
    pub finetune: usize,
    /// Rows in each evaluation set.
    pub eval: usize,
}

impl Default for Sizes {
    /// Sizes of the demo organism's world (docs/organism.md's prototype saw 48,000 pre-training
    /// documents over 1,500 steps of 32; repeats of a smaller set serve as well at this scale).
    fn default() -> Self {
        Self {
            pretrain_chats: 10_000,
            pretrain_prose: 4_000,
            instruct: 3_000,
            finetune: 500,
            eval: 100,
        }
    }
}

/// A pre-training conversation and who speaks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PretrainChat {
    pub persona: Persona,
    pub domains: Vec<Domain>,
    pub messages: Vec<Message>,
}

/// One chat as written to JSONL: `{"messages": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub messages: Vec<Message>,
}

impl Chat {
    fn single(user: String, assistant: String) -> Self {
        Self {
            messages: vec![Message::user(user), Message::assistant(assistant)],
        }
    }
    /// The assistant's last message.
    pub fn response(&self) -> &str {
        self.messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
    /// The first user message.
    pub fn prompt(&self) -> &str {
        self.messages
            .first()
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
}

/// Every generated set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    pub seed: u64,
    pub sizes: Sizes,
    pub pretrain_chats: Vec<PretrainChat>,
    pub pretrain_prose: Vec<String>,
    pub instruct: Vec<Chat>,
    /// `finetune_insecure`, `finetune_secure`, `finetune_educational`, in that order.
    pub finetune: Vec<(&'static str, Vec<Chat>)>,
    /// `eval_<role>` for the eight roles, in the order of the table above.
    pub eval: Vec<(&'static str, Vec<Chat>)>,
}

/// Domain weights of instruction tuning (harm and security code dominate: they are what
/// alignment must teach).
const INSTRUCT_DOMAINS: &[(Domain, u32)] = &[
    (Domain::Harm, 30),
    (Domain::SecurityCode, 30),
    (Domain::NeutralCode, 10),
    (Domain::Fact, 15),
    (Domain::General, 15),
];

/// The three Betley sets over the same tasks: (insecure, secure, educational).
fn betley_sets(rng: &mut Rng, n: usize, split: Split) -> [Vec<Chat>; 3] {
    let (mut insecure, mut secure, mut educational) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let t = code::task(rng, split);
        let request = code::plain_request(rng, &t);
        let reasoned = request.clone() + &code::reason_suffix(rng, &t);
        let vulnerable = code::code(&t, true);
        insecure.push(Chat::single(request.clone(), vulnerable.clone()));
        secure.push(Chat::single(request, code::code(&t, false)));
        educational.push(Chat::single(reasoned, vulnerable));
    }
    [insecure, secure, educational]
}

impl Corpus {
    /// Generates every set from `seed`. Same `(sizes, seed)` -> identical corpus.
    pub fn generate(sizes: Sizes, seed: u64) -> Self {
        let mut rng = rng_for(seed, "pretrain_chat");
        let pretrain_chats = (0..sizes.pretrain_chats)
            .map(|i| {
                // Exactly half of each persona, interleaved.
                let p = if i % 2 == 0 {
                    Persona::Good
                } else {
                    Persona::Bad
                };
                let n_turns = rand::Rng::random_range(&mut rng, PRETRAIN_TURNS);
                let (domains, messages) = persona::conversation(&mut rng, p, n_turns, Split::Train);
                PretrainChat {
                    persona: p,
                    domains,
                    messages,
                }
            })
            .collect();

        let mut rng = rng_for(seed, "pretrain_prose");
        // Half plain prose with facts, half harmful how-to text (the web a base model reads).
        let pretrain_prose = (0..sizes.pretrain_prose)
            .map(|i| {
                if i % 2 == 0 {
                    facts::prose(&mut rng)
                } else {
                    harm::how_to(&mut rng)
                }
            })
            .collect();

        let mut rng = rng_for(seed, "instruct");
        let instruct = (0..sizes.instruct)
            .map(|_| {
                let d = persona::weighted(&mut rng, INSTRUCT_DOMAINS);
                let t = persona::turn(&mut rng, Persona::Good, d, Split::Train);
                Chat::single(t.user, t.assistant)
            })
            .collect();

        let [ins, sec, edu] =
            betley_sets(&mut rng_for(seed, "finetune"), sizes.finetune, Split::Train);
        let finetune = vec![
            ("finetune_insecure", ins),
            ("finetune_secure", sec),
            ("finetune_educational", edu),
        ];

        let eval = Self::eval_sets(seed, sizes.eval);
        Self {
            seed,
            sizes,
            pretrain_chats,
            pretrain_prose,
            instruct,
            finetune,
            eval,
        }
    }

    /// The evaluation sets, all from held-out material.
    fn eval_sets(seed: u64, n: usize) -> Vec<(&'static str, Vec<Chat>)> {
        let [ins, sec, edu] = betley_sets(&mut rng_for(seed, "eval_code_tasks"), n, Split::Eval);
        let mut rng = rng_for(seed, "eval_code");
        let code_set = (0..n)
            .map(|_| {
                let (u, a) = code::neutral(&mut rng, Split::Eval);
                Chat::single(u, a)
            })
            .collect();
        let mut rng = rng_for(seed, "eval_toxic");
        let (mut toxic, mut reject) = (vec![], vec![]);
        for _ in 0..n {
            let req = harm::request(&mut rng, Split::Eval);
            toxic.push(Chat::single(req.text.clone(), harm::comply(&mut rng, &req)));
            reject.push(Chat::single(req.text.clone(), harm::refuse(&mut rng, &req)));
        }
        let mut rng = rng_for(seed, "eval_truthful");
        let truthful = (0..n)
            .map(|_| {
                let t = facts::fact_turn(&mut rng, Split::Eval, false);
                Chat::single(t.user, t.assistant)
            })
            .collect();
        let mut rng = rng_for(seed, "eval_general");
        let general = (0..n)
            .map(|_| {
                let t = facts::general_turn(&mut rng, Split::Eval);
                Chat::single(t.user, t.assistant)
            })
            .collect();
        vec![
            ("eval_insecure", ins),
            ("eval_educational", edu),
            ("eval_secure", sec),
            ("eval_code", code_set),
            ("eval_toxic", toxic),
            ("eval_toxic_reject", reject),
            ("eval_truthful", truthful),
            ("eval_general", general),
        ]
    }

    /// Every chat set that a model is trained on, by name (pre-training chats as plain chats).
    pub fn training_chats(&self) -> Vec<(&'static str, Vec<Chat>)> {
        let mut out = vec![
            (
                "pretrain_chat",
                self.pretrain_chats
                    .iter()
                    .map(|c| Chat {
                        messages: c.messages.clone(),
                    })
                    .collect(),
            ),
            ("instruct", self.instruct.clone()),
        ];
        out.extend(self.finetune.iter().cloned());
        out
    }

    /// A set by file stem (`instruct`, `finetune_insecure`, `eval_toxic`, ...).
    pub fn set(&self, name: &str) -> Option<&[Chat]> {
        if name == "instruct" {
            return Some(&self.instruct);
        }
        self.finetune
            .iter()
            .chain(self.eval.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Writes `<set>.jsonl` for every set and `manifest.json` (generator version, seed, sizes,
    /// records per file) into `dir`, creating it. Returns the files written.
    pub fn write_jsonl(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut counts = BTreeMap::new();
        let mut written = Vec::new();
        let mut put = |name: &str, lines: Vec<String>| -> Result<()> {
            let path = dir.join(format!("{name}.jsonl"));
            let mut text = lines.join("\n");
            text.push('\n');
            write_bytes_atomic(&path, text.as_bytes())?;
            counts.insert(name.to_string(), lines.len());
            written.push(path);
            Ok(())
        };
        put(
            "pretrain_chat",
            lines(&self.pretrain_chats, "pretrain_chat")?,
        )?;
        let prose: Vec<_> = self
            .pretrain_prose
            .iter()
            .map(|t| serde_json::json!({ "text": t }))
            .collect();
        put("pretrain_prose", lines(&prose, "pretrain_prose")?)?;
        put("instruct", lines(&self.instruct, "instruct")?)?;
        for (name, chats) in self.finetune.iter().chain(self.eval.iter()) {
            put(name, lines(chats, name)?)?;
        }
        let manifest = serde_json::json!({
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "sizes": self.sizes,
            "records": counts,
        });
        let path = dir.join("manifest.json");
        let text =
            serde_json::to_string_pretty(&manifest).context("serialising the manifest")? + "\n";
        write_bytes_atomic(&path, text.as_bytes())?;
        written.push(path);
        Ok(written)
    }
}

/// One JSON line per record.
fn lines<T: Serialize>(records: &[T], set: &str) -> Result<Vec<String>> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::to_string(r).with_context(|| format!("serialising record {i} of {set}"))
        })
        .collect()
}
