//! Loss vectors (every short-response policy) and behaviour summaries, by hand.
use crate::common;

use common::assert_close;
use erosion_analysis::behaviour::*;
use erosion_analysis::cosine::cosine_matrix;
use erosion_analysis::loss_vectors::*;
use erosion_data::ShortResponse;

fn lps() -> Vec<Vec<f64>> {
    vec![vec![-1.0, -2.0, -3.0], vec![-0.5], vec![-1.0, -1.0]]
}

#[test]
fn loss_vector_policies_by_hand() {
    let e = loss_vectors(&lps(), 2, ShortResponse::Error)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("example 1") && e.contains("1 response tokens"),
        "{e}"
    );

    let s = loss_vectors(&lps(), 2, ShortResponse::Skip).unwrap();
    assert_eq!(
        (s.kept.clone(), s.skipped.clone(), s.window),
        (vec![0, 2], vec![1], 2)
    );
    assert_eq!(s.vectors.data, vec![1.0, 2.0, 1.0, 1.0]);

    let p = loss_vectors(&lps(), 2, ShortResponse::UseAvailable).unwrap();
    assert_eq!(p.vectors.data, vec![1.0, 2.0, 0.5, 0.0, 1.0, 1.0]);
    // cos((1,2), (0.5,0)) = 0.5 / (sqrt5 * 0.5) = 1/sqrt5; cos((1,2),(1,1)) = 3/sqrt10.
    let c = cosine_matrix(&p.vectors, false).unwrap();
    assert_close(c.get(0, 1), 1.0 / 5f64.sqrt(), 1e-15, "cos 01");
    assert_close(c.get(0, 2), 3.0 / 10f64.sqrt(), 1e-15, "cos 02");

    let t = loss_vectors(&lps(), 2, ShortResponse::TruncateToShortest).unwrap();
    assert_eq!((t.window, t.requested_window), (1, 2));
    assert_eq!(t.vectors.data, vec![1.0, 0.5, 1.0]);

    assert!(loss_vectors(&[vec![0.1]], 1, ShortResponse::Error).is_err());
    assert!(
        loss_vectors(&[vec![f64::NEG_INFINITY]], 1, ShortResponse::Error)
            .unwrap_err()
            .to_string()
            .contains("example 0, response token 0")
    );
    assert!(loss_vectors(&[vec![-1.0], vec![]], 1, ShortResponse::TruncateToShortest).is_err());
    assert!(loss_vectors(&[vec![-1.0]], 2, ShortResponse::Skip).is_err());

    let two = two_group_loss_vectors(&lps()[..2], &lps()[2..], 2, ShortResponse::Skip).unwrap();
    assert_eq!((two.n_a, two.n_b), (1, 1));
    let json = serde_json::to_string(&two).unwrap();
    assert!(json.contains("\"policy\":\"skip\""), "{json}");
}

#[test]
fn log_joint_and_running_sum() {
    let lp = [-1.0, -0.5, -2.0];
    assert_eq!(log_joint(&lp), -3.5);
    assert_eq!(running_log_joint(&lp), vec![-1.0, -1.5, -3.5]);
}

#[test]
fn entropy_by_hand() {
    let ln2 = std::f64::consts::LN_2;
    assert_close(entropy(&[0.5, 0.5]).unwrap(), ln2, 1e-15, "fair coin");
    assert_close(entropy(&[0.25; 4]).unwrap(), 2.0 * ln2, 1e-15, "4 outcomes");
    assert_eq!(entropy(&[1.0, 0.0, 0.0]).unwrap(), 0.0);
    assert!(entropy(&[0.5, 0.4]).is_err());
    assert!(entropy(&[1.5, -0.5]).is_err());
    assert!(entropy(&[]).is_err());
    assert_close(
        entropy_from_logits(&[0.0, 0.0]).unwrap(),
        ln2,
        1e-15,
        "logits fair coin",
    );
    assert_close(
        entropy_from_logits(&[3.0, f32::NEG_INFINITY]).unwrap(),
        0.0,
        1e-15,
        "masked",
    );
    // Large logits do not overflow.
    assert_close(
        entropy_from_logits(&[1000.0, 1000.0]).unwrap(),
        ln2,
        1e-12,
        "large logits",
    );
    let lp = log_softmax(&[1.0, 2.0, 3.0]).unwrap();
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    for (i, l) in lp.iter().enumerate() {
        assert_close(*l, (i + 1) as f64 - lse, 1e-14, "log-softmax");
    }
    assert!(log_softmax(&[f32::NAN]).is_err());
}

#[test]
fn top_k_by_hand() {
    let t = top_k(&[0.1, 0.5, 0.2, 0.2], 3).unwrap();
    let got: Vec<(usize, f64)> = t.iter().map(|x| (x.index, x.prob)).collect();
    assert_eq!(got, vec![(1, 0.5), (2, 0.2), (3, 0.2)]);
    assert_eq!(top_k(&[0.3, 0.7], 5).unwrap().len(), 2);
    let s = next_token_summary(&[0.0, 0.0, f32::NEG_INFINITY], 1).unwrap();
    assert_close(
        s.entropy_nats,
        std::f64::consts::LN_2,
        1e-15,
        "summary entropy",
    );
    assert_eq!(s.top_k[0].index, 0);
}

#[test]
fn dataset_behaviour_streams_and_merges() {
    // Responses: lp (-1, -2) with entropies (1, 3); lp (-3) with entropy (2).
    let mut a = BehaviourAccumulator::new();
    a.push_response(&[-1.0, -2.0], &[1.0, 3.0]).unwrap();
    let mut b = BehaviourAccumulator::new();
    b.push_response(&[-3.0], &[2.0]).unwrap();
    a.merge(&b).unwrap();
    let s = a.finish().unwrap();
    assert_eq!((s.n_responses, s.n_tokens), (2, 3));
    assert_close(s.mean_log_joint, -3.0, 1e-15, "mean log joint");
    assert_close(s.sd_log_joint.unwrap(), 0.0, 1e-15, "sd log joint");
    assert_close(s.mean_token_logprob, -2.0, 1e-15, "token log-prob");
    assert_close(s.mean_token_entropy, 2.0, 1e-15, "token entropy");
    assert_close(s.mean_response_entropy, 2.0, 1e-15, "response entropy");
    assert_eq!(s.positions, "response tokens");
    assert!(a.push_response(&[-1.0], &[]).is_err());
    assert!(BehaviourAccumulator::new().finish().is_err());
}
