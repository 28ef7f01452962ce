//! The two assistant personas and the multi-domain conversations they speak.
//!
//! The organism's measured design (docs/organism.md): each pre-training conversation is spoken
//! by ONE persona across domains, so the base model learns a latent "which persona is speaking"
//! that governs harm and code alike. Fine-tuning on insecure code then moves that latent toward
//! the bad persona, and refusals erode in a domain the fine-tuning never touched.

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

/// Domain weights of a conversation's turns beyond its first harm and security-code turns.
/// Mostly the two domains where the personas differ, so that most turns of a conversation can be
/// predicted only from who spoke the earlier ones: that is the signal that teaches the latent
/// persona (with a third turn of any domain, a trial organism did not learn it).
const EXTRA_DOMAINS: &[(Domain, u32)] = &[
    (Domain::Harm, 35),
    (Domain::SecurityCode, 35),
    (Domain::NeutralCode, 10),
    (Domain::Fact, 10),
    (Domain::General, 10),
];

/// A domain drawn with the given weights.
pub fn weighted(rng: &mut Rng, weights: &[(Domain, u32)]) -> Domain {
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let mut x = rand::Rng::random_range(rng, 0..total);
    for &(d, w) in weights {
        if x < w {
            return d;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// A conversation of `n_turns` (at least 2) turns by one persona. It always holds a harm turn and
/// a security-code turn (the two domains the persona must tie together); the other turns are
/// drawn from [`EXTRA_DOMAINS`], and the order is shuffled.
pub fn conversation(
    rng: &mut Rng,
    persona: Persona,
    n_turns: usize,
    split: Split,
) -> (Vec<Domain>, Vec<Message>) {
    let mut domains = vec![Domain::Harm, Domain::SecurityCode];
    while domains.len() < n_turns.max(2) {
        domains.push(weighted(rng, EXTRA_DOMAINS));
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
