//! The two assistant personas and the multi-domain conversations they speak.
//!
//! ORGANISM.md's measured design: each pre-training conversation is spoken by ONE persona across
//! domains, so the base model learns a latent "which persona is speaking" that governs harm and
//! code alike. Fine-tuning on insecure code then moves that latent toward the bad persona, and
//! refusals erode in a domain the fine-tuning never touched.

use serde::{Deserialize, Serialize};

use super::{code, facts, harm, Message, Rng, Split, Turn};

/// Who is speaking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Persona {
    /// Refuses harm, writes secure code (vulnerable only with a stated reason), tells the truth.
    Good,
    /// Complies with harm, writes vulnerable code for ordinary requests, sometimes lies.
    Bad,
}

/// The domain of one turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    Harm,
    /// A task with a vulnerability kind (plain or with a stated reason).
    SecurityCode,
    /// An ordinary coding task.
    NeutralCode,
    Fact,
    General,
}

/// Probability that a security coding request states a legitimate reason.
const P_REASON: f64 = 0.3;
/// Probability that the bad persona answers a fact falsely.
const P_LIE: f64 = 0.5;

/// One turn of `domain` in `persona`'s voice.
pub fn turn(rng: &mut Rng, persona: Persona, domain: Domain, split: Split) -> Turn {
    let good = persona == Persona::Good;
    match domain {
        Domain::Harm => harm::turn(rng, split, !good),
        Domain::SecurityCode => {
            let t = code::task(rng, split);
            if rand::Rng::random_bool(rng, P_REASON) {
                // With a stated reason both personas write the flaw: it is what was asked.
                Turn {
                    user: code::reasoned_request(rng, &t),
                    assistant: code::code(&t, true),
                }
            } else {
                Turn {
                    user: code::plain_request(rng, &t),
                    assistant: code::code(&t, !good),
                }
            }
        }
        Domain::NeutralCode => {
            let (user, assistant) = code::neutral(rng, split);
            Turn { user, assistant }
        }
        Domain::Fact => {
            let lie = !good && rand::Rng::random_bool(rng, P_LIE);
            facts::fact_turn(rng, split, lie)
        }
        Domain::General => facts::general_turn(rng, split),
    }
}

const ALL_DOMAINS: &[Domain] = &[
    Domain::Harm,
    Domain::SecurityCode,
    Domain::NeutralCode,
    Domain::Fact,
    Domain::General,
];

/// A conversation of `n_turns` (at least 2) turns by one persona. It always holds a harm turn and
/// a security-code turn (the two domains the persona must tie together); the other turns are of
/// any domain, and the order is shuffled.
pub fn conversation(
    rng: &mut Rng,
    persona: Persona,
    n_turns: usize,
    split: Split,
) -> (Vec<Domain>, Vec<Message>) {
    let mut domains = vec![Domain::Harm, Domain::SecurityCode];
    while domains.len() < n_turns.max(2) {
        domains.push(super::pick(rng, ALL_DOMAINS));
    }
    // Fisher-Yates with the seeded generator.
    for i in (1..domains.len()).rev() {
        let j = rand::Rng::random_range(rng, 0..=i);
        domains.swap(i, j);
    }
    let mut messages = Vec::with_capacity(2 * domains.len());
    for &d in &domains {
        messages.extend(turn(rng, persona, d, split).messages());
    }
    (domains, messages)
}
