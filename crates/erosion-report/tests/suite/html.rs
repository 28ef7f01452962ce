//! The HTML report: every part present, all text escaped, nothing loaded from outside,
//! and the page well-formed (checked with an XML parser).

use erosion_report::figures::{annotated_matrix_svg, AnnotatedMatrix, ColorScale};
use erosion_report::html::{Figure, Interval, Report, Section, StatTest, Table, Verdict};
use erosion_report::provenance::{DatasetHash, FileHash, FileSetHash, Provenance, ToolInfo};
use quick_xml::events::Event;

const EVIL: &str = "<script>alert('x')</script> & \"quoted\"";

fn provenance() -> Provenance {
    Provenance {
        tool: ToolInfo {
            name: "erosion".into(),
            version: "0.1.0".into(),
            git_commit: Some("0123456789abcdef0123".into()),
        },
        created: "2026-11-03T14:05:09Z".into(),
        command_line: vec!["erosion".into(), "study".into(), "my study.toml".into()],
        seed: Some(1234),
        options: serde_json::json!({"window": 64, "pooling": "flatten", "note": EVIL}),
        models: vec![FileSetHash {
            name: "instruct".into(),
            source: "Qwen/Qwen2.5-Coder-32B-Instruct".into(),
            files: vec![
                FileHash {
                    path: "model-00001.safetensors".into(),
                    sha256: "ab".repeat(32),
                    bytes: 4_900_000_000,
                },
                FileHash {
                    path: "config.json".into(),
                    sha256: "cd".repeat(32),
                    bytes: 700,
                },
            ],
        }],
        datasets: vec![DatasetHash {
            name: "toxic".into(),
            path: "data/toxic.jsonl".into(),
            sha256: "ef".repeat(32),
            bytes: 12_345,
            n_examples: 200,
            selection: "first 200".into(),
        }],
    }
}

fn figure() -> Figure {
    let svg = annotated_matrix_svg(&AnnotatedMatrix {
        title: "k x k <cosines>".into(),
        row_labels: vec!["PC0".into()],
        col_labels: vec!["PC0".into()],
        row_title: "insecure".into(),
        col_title: "toxic".into(),
        values: vec![vec![0.9]],
        scale: ColorScale::Diverging { limit: Some(1.0) },
        decimals: 2,
        colorbar_label: "cosine".into(),
        note: None,
    })
    .unwrap();
    Figure {
        caption: format!("Directions {EVIL}"),
        svg,
        file: Some("directions/cos.svg".into()),
    }
}

fn report() -> Report {
    let mut s1 = Section::new(
        "One direction governs alignment",
        "Top directions of two domains align.",
        &format!("Our cosine is 0.90. {EVIL}"),
        "0.90 between insecure component 1 and toxic component 0.",
        Verdict::Reproduced,
    );
    s1.figures.push(figure());
    s1.tables.push(Table {
        caption: "Cosines".into(),
        headers: vec!["pair".into(), "cos".into()],
        rows: vec![
            vec!["1 vs 0".into(), "0.9012".into()],
            vec![EVIL.into(), "\u{2212}0.5".into()],
        ],
    });
    s1.tests.push(StatTest {
        name: "random-subspace baseline".into(),
        statistic_name: "max |cos|".into(),
        statistic: 0.9012,
        p_value: Some(0.00004),
        ci: Some(Interval {
            lo: 0.85,
            hi: 0.93,
            level: 0.95,
        }),
        detail: "10,000 random 5-dim subspaces of R^5120".into(),
    });
    s1.notes.push("sign convention: |cos|".into());
    s1.files.push("directions/cos.npy".into());
    s1.files.push("https://example.org/not-a-link".into());
    let s2 = Section::new("Behaviour reverts to base", "f", "r", "s", Verdict::Partly);
    let s3 = Section::new(
        "Opposing learning signals",
        "f",
        "r",
        "s",
        Verdict::NotReproduced,
    );
    let s4 = Section::new("Layer-wise erosion", "f", "r", "s", Verdict::NotRun);
    Report::new(&format!("Study {EVIL}"))
        .summary("Two of four findings reproduced.\n\nSecond paragraph.")
        .provenance(provenance())
        .section(s1)
        .section(s2)
        .section(s3)
        .section(s4)
}

/// Parses the page as XML; returns all text content joined.
fn parse(html: &str) -> String {
    let mut r = quick_xml::Reader::from_str(html);
    r.config_mut().check_end_names = true;
    let (mut text, mut depth) = (String::new(), 0);
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed at {}: {e}", r.buffer_position()))
        {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth -= 1,
            Event::Text(t) => text.push_str(&t.unescape().unwrap()),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0);
    text
}

#[test]
fn every_part_is_present() {
    let html = report().to_html().unwrap();
    let text = parse(&html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for want in [
        "Study <script>alert('x')</script> & \"quoted\"",
        "Two of four findings reproduced.",
        "Second paragraph.",
        "Provenance",
        "erosion 0.1.0",
        "0123456789abcdef0123",
        "2026-11-03T14:05:09Z",
        "erosion study 'my study.toml'",
        "1234",
        "Qwen/Qwen2.5-Coder-32B-Instruct",
        "model-00001.safetensors",
        "4.9 GB",
        &"ab".repeat(32),
        "data/toxic.jsonl",
        "first 200",
        &"ef".repeat(32),
        "window",
        "flatten",
        "Finding under test",
        "Our result",
        "The study reported",
        "0.90 between insecure component 1 and toxic component 0.",
        "random-subspace baseline",
        "max |cos|",
        "0.9012",
        "4.0e\u{2212}5",
        "[0.8500, 0.9300] (95%)",
        "10,000 random 5-dim subspaces of R^5120",
        "sign convention: |cos|",
        "directions/cos.npy",
        "Directions <script>",
    ] {
        assert!(text.contains(want), "missing {want:?}");
    }
    // Each section: anchor, numbered title and its verdict badge; the summary links to it.
    for (i, (title, badge, class)) in [
        ("One direction governs alignment", "reproduced", "v-yes"),
        ("Behaviour reverts to base", "partly reproduced", "v-partly"),
        ("Opposing learning signals", "not reproduced", "v-no"),
        ("Layer-wise erosion", "not run", "v-none"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("finding-{}", i + 1);
        assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
        assert!(
            html.contains(&format!("<a href=\"#{id}\">{title}</a>")),
            "{id} link"
        );
        assert!(html.contains(&format!(
            "<h2>{}. {title} <span class=\"badge {class}\">{badge}</span></h2>",
            i + 1
        )));
    }
    // The figure is inline.
    assert_eq!(html.matches("<svg ").count(), 1);
    assert!(html.contains("k x k &lt;cosines&gt;"));
    assert!(html.contains("<a href=\"directions/cos.svg\">"));
    // Numbers are right-aligned.
    assert!(html.contains("<td class=\"num\">0.9012</td>"));
    assert!(html.contains("<td class=\"num\">\u{2212}0.5</td>"));
    // Results first, provenance last and folded; no raw JSON.
    let (first, prov) = (
        html.find("finding-1\">").unwrap(),
        html.find("id=\"provenance\"").unwrap(),
    );
    assert!(first < prov, "provenance before the first finding");
    assert!(html[prov..].contains("<details>") && !html.contains("<pre>"));
    assert!(
        html.contains("<td>window</td><td class=\"num\">64</td>")
            || html.contains("<td>window</td><td>64</td>")
    );
    // Data files are separated in the text, not only by margins.
    assert!(html.contains("<code>directions/cos.npy</code></a>, <code>https://"));
    // Hashes wrap.
    assert!(html.contains(&format!("<td class=\"hash\">{}</td>", "ab".repeat(32))));
}

#[test]
fn text_is_escaped() {
    let html = report().to_html().unwrap();
    assert!(!html.contains("<script"));
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;")
    );
    // Options are escaped too (a value with quotes and angle brackets).
    assert!(html.contains("<td>note</td><td>&lt;script&gt;"));
}

#[test]
fn page_is_self_contained() {
    let html = report().to_html().unwrap();
    // The one URL in the input, a data file path, is shown as text and never as a link.
    let shown = "<code>https://example.org/not-a-link</code>";
    assert_eq!(html.matches(shown).count(), 1);
    let lower = html.replace(shown, "").to_ascii_lowercase();
    for bad in [
        "<script", "<link", "<img", "<iframe", "src=", "@import", "url(", "http://", "https://",
        "xlink:",
    ] {
        assert!(!lower.contains(bad), "found {bad:?}");
    }
    // Every link is an in-page anchor or a relative file.
    for part in html.split("href=\"").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        assert!(target.starts_with('#') || !target.contains(':'), "{target}");
    }
    assert!(html.contains("<style>"));
}

#[test]
fn bad_parts_are_errors_naming_them() {
    let mut r = report();
    r.sections[0].tables[0].rows.push(vec!["one cell".into()]);
    let msg = format!("{:#}", r.to_html().unwrap_err());
    assert!(msg.contains("Cosines") && msg.contains("row 2"), "{msg}");

    let mut r = report();
    r.sections[0].figures[0].svg = "<svg><script>alert(1)</script></svg>".into();
    let msg = format!("{:#}", r.to_html().unwrap_err());
    assert!(
        msg.contains("script") && msg.contains("One direction"),
        "{msg}"
    );

    let mut r = report();
    r.sections[0].figures[0].svg = "not an svg".into();
    assert!(r.to_html().is_err());
}

#[test]
fn minimal_report_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("report.html");
    Report::new("Empty").write(&p).unwrap();
    let html = std::fs::read_to_string(&p).unwrap();
    let text = parse(&html);
    assert!(text.contains("Empty") && text.contains("Summary"));
    assert!(!html.contains("Provenance"));
    // Provenance without models or datasets says so.
    let mut bare = provenance();
    bare.models.clear();
    bare.datasets.clear();
    let html = Report::new("x").provenance(bare).to_html().unwrap();
    assert_eq!(html.matches("none recorded").count(), 2);

    report().write(&p).unwrap();
    assert!(std::fs::read_to_string(&p).unwrap().contains("finding-4"));
    // A smoke run says so at the top and shows no verdict badge.
    let html = report().smoke_run("too small a model").to_html().unwrap();
    assert!(html.contains("Smoke run: verdicts not meaningful.</strong> too small a model"));
    assert!(!html.contains("badge v-yes") && !html.contains("badge v-partly"));
    assert_eq!(html.matches(">smoke run</span>").count(), 8);
    // The report serialises (to be kept in results.json if wanted) and reads back.
    let r = report();
    let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
