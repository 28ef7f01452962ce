//! Hostile chat templates (issue 17): a template is code from the checkpoint, so rendering
//! has a fuel limit (time and the data it makes) and an output limit, and its errors name
//! where the template came from and escape what it says.

use erosion_model::chat::{ChatContext, ChatTemplate, Message, MAX_RENDERED_BYTES, RENDER_FUEL};

const ORIGIN: &str = "/models/evil/tokenizer_config.json";

fn render_err(source: &str) -> String {
    let t = ChatTemplate::from_origin(source, ORIGIN).unwrap();
    match t.render(&[Message::user("hi")], &ChatContext::default()) {
        Ok(text) => panic!("expected an error, rendered {} bytes", text.len()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn nested_loops_run_out_of_fuel() {
    let msg = render_err(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    );
    assert!(
        msg.contains(&format!("chat template from {ORIGIN} ran out of fuel"))
            && msg.contains(&RENDER_FUEL.to_string()),
        "{msg}"
    );
}

#[test]
fn a_string_doubled_in_a_loop_runs_out_of_fuel_before_memory() {
    // 2^64 bytes if nothing stopped it; fuel pays for every byte made, checked before the
    // allocation, so this stops near 2^30.
    let msg = render_err(
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}\
         {% endfor %}{{ ns.s | length }}",
    );
    assert!(msg.contains("ran out of fuel"), "{msg}");
    // The same through a macro recursing on its own output.
    let msg = render_err(
        "{% macro grow(s, n) %}{% if n %}{{ grow(s ~ s, n - 1) }}{% else %}{{ s | length }}\
         {% endif %}{% endmacro %}{{ grow('ab', 64) }}",
    );
    assert!(msg.contains("ran out of fuel"), "{msg}");
}

#[test]
fn output_past_the_limit_is_refused() {
    // 1 kB a step, 100k steps: 100 MB of output, past the limit long before the fuel.
    let msg = render_err("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
    assert!(
        msg.contains(&format!(
            "chat template from {ORIGIN} renders more than {MAX_RENDERED_BYTES} bytes"
        )),
        "{msg}"
    );
}

#[test]
fn raised_messages_and_origins_are_escaped() {
    let msg = render_err("{{ raise_exception('\x1b[31mred\x1b[0m') }}");
    assert!(
        !msg.contains('\x1b') && msg.contains("raised an exception: \\u{1b}[31mred"),
        "{msg:?}"
    );
    let t = ChatTemplate::from_origin("{{ raise_exception('x') }}", "a\x07b").unwrap();
    let msg = format!("{:#}", t.render(&[], &ChatContext::default()).unwrap_err());
    assert!(
        msg.contains("chat template from a\\u{7}b raised an exception: x"),
        "{msg:?}"
    );
}

#[test]
fn long_real_conversations_fit_the_limits() {
    // A ChatML template over 200 turns of 20 kB each (4 MB): far longer than the tests' real
    // conversations, well inside the fuel and output limits.
    let t = ChatTemplate::new(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n\
         {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let turn = "word ".repeat(4000);
    let messages: Vec<Message> = (0..200)
        .map(|i| match i % 2 {
            0 => Message::user(turn.clone()),
            _ => Message::assistant(turn.clone()),
        })
        .collect();
    let out = t.render(&messages, &ChatContext::default()).unwrap();
    assert!(out.len() > 200 * 19_000, "{}", out.len());
}
