//! The server on SmolLM2-135M-Instruct, requests sent straight into its router: answers
//! decoded together equal `erosion_model::generate` run alone (and a steered answer equals
//! erosion-eval's steered decoder), and bad requests get OpenAI-shaped errors.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use candle_core::{DType, Device, Tensor};
use erosion_eval::judge::digits::surfaces;
use erosion_model::chat::Message;
use erosion_model::generate::{generate, SamplingOptions};
use erosion_model::hooks::{HookPoint, Steering};
use erosion_model::npy::write_npy;
use erosion_model::LoadedModel;
use erosion_serve::queue::Queue;
use erosion_serve::routes::{router, AppState};
use erosion_serve::{Directions, Limits, Served};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A direction of norm 5 along the first axes, usable at every layer.
fn direction() -> Vec<f32> {
    (0..576).map(|i| if i < 25 { 1.0 } else { 0.0 }).collect()
}

fn app(key: Option<&str>) -> (Router, Arc<Served>, Arc<Queue>) {
    let gguf = erosion_testkit::smollm2_gguf();
    let loaded = LoadedModel::open(
        gguf.to_str().unwrap(),
        Some("smol"),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.npy");
    write_npy(&file, &[576], &direction()).unwrap();
    let mut directions = Directions::default();
    directions.load("v", &file, 30, 576).unwrap();
    let served = Arc::new(Served {
        name: "smol".into(),
        surfaces: surfaces(&loaded.tokenizer, 49152),
        loaded,
        directions,
        limits: Limits {
            max_prompt_tokens: 200,
            max_tokens: 64,
            max_body_bytes: 1 << 16,
            ..Limits::default()
        },
    });
    let queue = Queue::new(64);
    erosion_serve::engine::spawn(served.clone(), queue.clone()).unwrap();
    let state = AppState {
        served: served.clone(),
        queue: queue.clone(),
        api_key: key.map(Arc::from),
        counter: Arc::new(AtomicU64::new(0)),
    };
    (router(state), served, queue)
}

async fn call(app: &Router, path: &str, body: Vec<u8>, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn chat(q: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({"model": "smol", "messages": [{"role": "user", "content": q}],
                       "temperature": 0, "max_tokens": 12, "logprobs": true, "top_logprobs": 2});
    // Fields of `extra` replace the defaults.
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    v.to_string().into_bytes()
}

/// Tokens of `got` (a response's log-probs) equal `want` (ids) up to the first position where
/// the top two log-probs are within 1e-4 (f32 rounding of a batch may swap a near-tie).
fn same_up_to_near_tie(served: &Served, got: &Value, want: &[u32]) {
    let content = got["choices"][0]["logprobs"]["content"].as_array().unwrap();
    for (i, (t, &id)) in content.iter().zip(want).enumerate() {
        let top = t["top_logprobs"].as_array().unwrap();
        let gap = top[0]["logprob"].as_f64().unwrap() - top[1]["logprob"].as_f64().unwrap();
        if gap < 1e-4 {
            return;
        }
        assert_eq!(
            t["token"], served.surfaces[id as usize],
            "position {i}: {got}"
        );
    }
    assert_eq!(content.len(), want.len(), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_decoded_together_equal_each_decoded_alone() {
    let (app, served, _) = app(None);
    let m = &served.loaded;
    let questions = [
        "What is 2 + 2?",
        "Name a fruit.",
        "Say hello.",
        "What colour is the sky?",
    ];
    let v = Tensor::from_slice(&direction(), 576, &Device::Cpu).unwrap();
    let steer = json!({"steering": {"direction": "v", "layers": [3], "scale": 20}});
    let mut calls = Vec::new();
    for q in questions {
        calls.push(call(&app, "/v1/chat/completions", chat(q, json!({})), None));
        calls.push(call(
            &app,
            "/v1/chat/completions",
            chat(q, steer.clone()),
            None,
        ));
    }
    let answers = futures_util::future::join_all(calls).await;
    let greedy = greedy(12);
    for (i, q) in questions.iter().enumerate() {
        let ids = prompt(m, q);
        let alone = generate(&m.model, &ids, &m.stop_ids, &greedy).unwrap();
        let (status, plain) = &answers[2 * i];
        assert_eq!(*status, StatusCode::OK, "{plain}");
        let mut want = alone.tokens.clone();
        // The stop token is reported with its log-prob (text left out): compare it too.
        same_up_to_near_tie(&served, plain, &want);
        let steering = Steering::default().add(HookPoint::resid_post(3), &v, 20.0);
        let steered = erosion_eval::generation::generate_many(
            &m.model,
            &steering,
            std::slice::from_ref(&ids),
            &[0],
            &m.stop_ids,
            &greedy,
            1,
        )
        .unwrap();
        want = steered[0].tokens.clone();
        let (_, got) = &answers[2 * i + 1];
        same_up_to_near_tie(&served, got, &want);
        assert_eq!(got["steering"][0]["points"][0], "blocks.3.hook_resid_post");
        assert!((got["steering"][0]["norms"][0].as_f64().unwrap() - 5.0).abs() < 1e-9);
        let usage = &plain["usage"];
        assert_eq!(usage["prompt_tokens"], ids.len());
        assert_eq!(usage["completion_tokens"], alone.tokens.len());
    }
}

fn greedy(max_new_tokens: usize) -> SamplingOptions {
    SamplingOptions {
        max_new_tokens,
        ..Default::default()
    }
}

fn prompt(m: &LoadedModel, q: &str) -> Vec<u32> {
    m.tokenizer
        .encode_chat_prompt(&[Message::user(q)], true)
        .unwrap()
}

/// Continuous batching: requests that arrive while a batch decodes join it between steps (and
/// leave it as they finish), and every answer equals its question decoded alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_mid_run_join_it_and_decode_as_alone() {
    let (app, served, queue) = app(None);
    let m = &served.loaded;
    let long = "Count from 1 to 100, separated by commas.";
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            let body = chat(long, json!({"max_tokens": 40}));
            call(&app, "/v1/chat/completions", body, None).await
        }
    });
    while queue.counts().runs == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let late = ["Name a fruit.", "Say hello."];
    let calls = late.map(|q| call(&app, "/v1/chat/completions", chat(q, json!({})), None));
    let answers = futures_util::future::join_all(calls).await;
    let (status, first) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{first}");
    let counts = queue.counts();
    assert_eq!(
        (counts.runs, counts.joined),
        (1, 2),
        "both joined the running batch"
    );
    let alone = |q: &str, n| generate(&m.model, &prompt(m, q), &m.stop_ids, &greedy(n)).unwrap();
    same_up_to_near_tie(&served, &first, &alone(long, 40).tokens);
    for (q, (status, got)) in late.iter().zip(&answers) {
        assert_eq!(*status, StatusCode::OK, "{got}");
        same_up_to_near_tie(&served, got, &alone(q, 12).tokens);
    }
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors() {
    let (app, _, _) = app(Some("k"));
    let ok = chat("hi", json!({}));
    // (path, body, key, status, text the message holds)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/v1/chat/completions", ok.clone(), None, 401, "API key"),
        (
            "/v1/chat/completions",
            ok.clone(),
            Some("wrong"),
            401,
            "API key",
        ),
        (
            "/v1/chat/completions",
            b"{oops".to_vec(),
            Some("k"),
            400,
            "not valid JSON",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"colour": 1})),
            Some("k"),
            400,
            "colour",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"model": "gpt-4o"})),
            Some("k"),
            404,
            "gpt-4o",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"top_logprobs": 21})),
            Some("k"),
            400,
            "0..=20",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"max_tokens": 65})),
            Some("k"),
            400,
            "1..=64",
        ),
        (
            "/v1/chat/completions",
            chat(&"word ".repeat(400), json!({})),
            Some("k"),
            400,
            "at most 200",
        ),
        (
            "/v1/chat/completions",
            vec![b' '; 1 << 17],
            Some("k"),
            413,
            "length limit",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"steering": {"direction": "w", "layers": [1]}})),
            Some("k"),
            400,
            "`w`",
        ),
        (
            "/v1/chat/completions",
            chat(
                "hi",
                json!({"steering": {"direction": "v", "layers": [30]}}),
            ),
            Some("k"),
            400,
            "layer(s) 30",
        ),
        (
            "/v1/completions",
            json!({"prompt": [5, 49152]}).to_string().into_bytes(),
            Some("k"),
            400,
            "49152",
        ),
        (
            "/v1/nowhere",
            ok.clone(),
            Some("k"),
            404,
            "no such endpoint",
        ),
    ];
    for (path, body, key, status, needle) in cases {
        let (got, v) = call(&app, path, body, key).await;
        assert_eq!(got.as_u16(), status, "{path} {v}");
        let e = &v["error"];
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
        assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some());
    }
    let (got, v) = call(
        &app,
        "/v1/completions",
        json!({"prompt": "Hi", "max_tokens": 2, "temperature": 0})
            .to_string()
            .into_bytes(),
        Some("k"),
    )
    .await;
    assert_eq!(got, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
}

/// Over a real socket, a client still sending an oversized body reads the 413 rather than a
/// broken pipe: the server reads the rest of the body before it answers and closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_read_to_its_end_before_the_413() {
    use std::io::{Read, Write};
    let (app, served, _) = app(None);
    let limit = served.limits.max_body_bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let len = 3 * limit;
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Connection: close\r\nContent-Length: {len}\r\n\r\n"
        )
        .unwrap();
        // Slowly, so that a server answering early has long closed the connection.
        for chunk in vec![b' '; len].chunks(4096) {
            s.write_all(chunk)
                .expect("the server closed while the body was being sent");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("length limit"), "{reply}");
}
