//! Every figure kind: well-formed XML (checked by quick-xml), titles and labels present,
//! token text escaped and whitespace shown, colours where the colour map puts them,
//! NaN/inf drawn without a panic, bad input an error.

use erosion_report::figures::*;
use quick_xml::events::Event;

/// Parses the whole document; returns the text nodes (unescaped) and the element count.
fn parse_svg(svg: &str) -> (Vec<String>, usize) {
    let mut r = quick_xml::Reader::from_str(svg);
    r.config_mut().check_end_names = true;
    let (mut texts, mut elements, mut depth, mut roots) = (Vec::new(), 0, 0i32, 0);
    loop {
        match r
            .read_event()
            .unwrap_or_else(|e| panic!("SVG is not well-formed: {e}"))
        {
            Event::Start(e) => {
                if depth == 0 {
                    assert_eq!(e.name().as_ref(), b"svg");
                    roots += 1;
                }
                depth += 1;
                elements += 1;
            }
            Event::End(_) => depth -= 1,
            Event::Empty(_) => elements += 1,
            Event::Text(t) => {
                let s = t.unescape().expect("bad entity").trim().to_string();
                if !s.is_empty() {
                    texts.push(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unclosed elements");
    assert_eq!(roots, 1, "one <svg> root");
    (texts, elements)
}

fn has_text(texts: &[String], want: &str) -> bool {
    texts.iter().any(|t| t == want)
}

fn token_fig() -> TokenLogprobs {
    TokenLogprobs {
        colors: Default::default(),
        title: "Log-probs <of> \"response\" & more".into(),
        tokens: vec![
            "I".into(),
            " <script>".into(),
            "&amp;".into(),
            "\n".into(),
            " x\u{1}".into(),
        ],
        models: vec!["base".into(), "instruct".into()],
        logprobs: vec![
            vec![-0.1, -1.0, -2.0, -0.5, -0.2],
            vec![-0.1, -9.0, -8.0, -7.0, -6.0],
        ],
    }
}

#[test]
fn token_heatmap_escapes_and_shows_tokens() {
    let svg = token_logprob_svg(&token_fig()).unwrap();
    // Raw markup from token text never reaches the document.
    assert!(!svg.contains("<script"));
    assert!(svg.contains("\u{2423}&lt;script&gt;"));
    assert!(svg.contains("&amp;amp;"));
    let (texts, _) = parse_svg(&svg);
    assert!(has_text(&texts, "Log-probs <of> \"response\" & more"));
    assert!(has_text(&texts, "base") && has_text(&texts, "instruct"));
    // Whitespace and control characters are visible symbols.
    assert!(has_text(&texts, "\u{21b5}"));
    assert!(has_text(&texts, "\u{2423}x\u{2401}"));
    // Token labels appear left to right in response order.
    let order: Vec<usize> = [
        "I",
        "\u{2423}<script>",
        "&amp;",
        "\u{21b5}",
        "\u{2423}x\u{2401}",
    ]
    .iter()
    .map(|t| {
        texts
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t} missing"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(has_text(&texts, "log p(token)"));
    assert!(has_text(&texts, "running log joint (nats)"));
    // Highest log-prob (-0.1) is viridis' yellow end, lowest (-9) its purple end.
    assert!(svg.contains("fill=\"#FDE725\""));
    assert!(svg.contains("fill=\"#440154\""));
    // Nothing missing: no "not finite" legend.
    assert!(!has_text(&texts, "not finite"));
}

#[test]
fn token_heatmap_with_nan_and_inf() {
    let mut f = token_fig();
    f.logprobs[0][1] = f64::NAN;
    f.logprobs[1][2] = f64::NEG_INFINITY;
    let svg = token_logprob_svg(&f).unwrap();
    let (texts, _) = parse_svg(&svg);
    assert!(has_text(&texts, "not finite"));
    assert!(svg.contains("fill=\"#D7D7D7\""), "missing-value fill");
    assert!(svg.contains("stroke=\"#787878\""), "hatch lines");
    // All values missing still renders.
    f.logprobs = vec![vec![f64::NAN; 5]; 2];
    parse_svg(&token_logprob_svg(&f).unwrap());
}

#[test]
fn token_heatmap_rejects_bad_input() {
    let mut f = token_fig();
    f.tokens.clear();
    f.logprobs = vec![vec![], vec![]];
    assert!(format!("{:#}", token_logprob_svg(&f).unwrap_err()).contains("no tokens"));
    let mut f = token_fig();
    f.logprobs[1].pop();
    let msg = format!("{:#}", token_logprob_svg(&f).unwrap_err());
    assert!(
        msg.contains("instruct") && msg.contains("4 log-probabilities"),
        "{msg}"
    );
    let mut f = token_fig();
    f.models.clear();
    assert!(token_logprob_svg(&f).is_err());
}

#[test]
fn long_responses_render() {
    let n = 300;
    let f = TokenLogprobs {
        colors: Default::default(),
        title: "long".into(),
        tokens: (0..n).map(|i| format!("tok{i}")).collect(),
        models: vec!["m".into()],
        logprobs: vec![(0..n).map(|i| -(i as f64) / 10.0).collect()],
    };
    let (texts, _) = parse_svg(&token_logprob_svg(&f).unwrap());
    assert!(has_text(&texts, "tok299"));
}

fn next_fig() -> NextTokenBars {
    NextTokenBars {
        colors: Default::default(),
        title: "After \"I wish I could\"".into(),
        prefix: Some("I wish I could".into()),
        entropy_unit: "nats".into(),
        panels: vec![
            NextTokenPanel {
                model: "base".into(),
                tokens: vec![" kill".into(), " <b>".into()],
                probs: vec![0.5, 0.25],
                entropy: 1.2345,
            },
            NextTokenPanel {
                model: "instruct".into(),
                tokens: vec![" help".into(), "\n".into()],
                probs: vec![0.9, f64::NAN],
                entropy: f64::NAN,
            },
        ],
    }
}

#[test]
fn next_token_bars() {
    let svg = next_token_svg(&next_fig()).unwrap();
    assert!(svg.contains("\u{2423}&lt;b&gt;"));
    let (texts, _) = parse_svg(&svg);
    assert!(has_text(&texts, "After \"I wish I could\""));
    assert!(has_text(&texts, "base  \u{b7}  H = 1.23 nats"));
    assert!(has_text(&texts, "instruct  \u{b7}  H = n/a"));
    for t in [
        "\u{2423}kill",
        "\u{2423}help",
        "\u{21b5}",
        "0.500",
        "0.250",
        "0.900",
        "n/a",
    ] {
        assert!(has_text(&texts, t), "{t} missing");
    }
    // Bars in each model's colour.
    assert!(svg.contains("fill=\"#1F77B4\"") && svg.contains("fill=\"#D62728\""));

    let mut f = next_fig();
    f.panels[1].probs.pop();
    let msg = format!("{:#}", next_token_svg(&f).unwrap_err());
    assert!(msg.contains("instruct"), "{msg}");
    f.panels.clear();
    assert!(next_token_svg(&f).is_err());
}

fn cos_fig(n: usize) -> MatrixHeatmap {
    let values = (0..2 * n)
        .map(|i| {
            (0..2 * n)
                .map(|j| if (i < n) == (j < n) { 0.5 } else { -0.5 })
                .collect()
        })
        .collect();
    MatrixHeatmap {
        title: "Gradient cosines".into(),
        values,
        groups: vec![
            MatrixGroup {
                name: "insecure".into(),
                len: n,
            },
            MatrixGroup {
                name: "educational <edu>".into(),
                len: n,
            },
        ],
        labels: Some((0..2 * n).map(|i| format!("ex{i}")).collect()),
        scale: ColorScale::Diverging { limit: Some(1.0) },
        colorbar_label: "cosine".into(),
    }
}

#[test]
fn square_matrix_heatmap() {
    let mut f = cos_fig(3);
    f.values[0][0] = 1.0;
    f.values[1][4] = -1.0;
    f.values[2][2] = f64::INFINITY;
    let svg = matrix_heatmap_svg(&f).unwrap();
    let (texts, _) = parse_svg(&svg);
    assert!(has_text(&texts, "Gradient cosines"));
    assert!(has_text(&texts, "insecure") && has_text(&texts, "educational <edu>"));
    assert!(has_text(&texts, "ex0") && has_text(&texts, "ex5"));
    assert!(has_text(&texts, "cosine") && has_text(&texts, "not finite"));
    // Diverging map: +1 dark red, -1 dark blue; the tick at 0 is labelled.
    assert!(svg.contains("fill=\"#67001F\"") && svg.contains("fill=\"#053061\""));
    assert!(has_text(&texts, "0.0"));
    // The quadrant separator: a 2-px line through the middle.
    assert!(svg.contains("stroke-width=\"2\""));
}

#[test]
fn large_matrix_is_shown_as_block_means() {
    let svg = matrix_heatmap_svg(&cos_fig(250)).unwrap();
    let (texts, elements) = parse_svg(&svg);
    // Blocks of 4 rows (3 would give 2 x 84 = 168 > 160): 2 x ceil(250 / 4) = 126.
    assert!(
        has_text(&texts, "500 x 500 shown as 126 x 126 block means"),
        "{:?}",
        &texts[..3]
    );
    assert!(elements < 160 * 160 + 2000, "{elements} elements");
    // Per-item labels are left out at this size.
    assert!(!has_text(&texts, "ex0"));
}

#[test]
fn square_matrix_rejects_bad_input() {
    let mut f = cos_fig(2);
    f.values[3].pop();
    assert!(format!("{:#}", matrix_heatmap_svg(&f).unwrap_err()).contains("row 3"));
    let mut f = cos_fig(2);
    f.groups[1].len = 3;
    assert!(format!("{:#}", matrix_heatmap_svg(&f).unwrap_err()).contains("groups cover 5"));
    let mut f = cos_fig(2);
    f.values.clear();
    assert!(matrix_heatmap_svg(&f).is_err());
}

fn small_fig() -> AnnotatedMatrix {
    AnnotatedMatrix {
        title: "Directions".into(),
        row_labels: vec!["PC0".into(), "PC1".into()],
        col_labels: vec!["PC0".into(), "PC1 & co".into()],
        row_title: "insecure".into(),
        col_title: "toxic".into(),
        values: vec![vec![0.9012, -1.0], vec![0.0, f64::NAN]],
        scale: ColorScale::Diverging { limit: Some(1.0) },
        decimals: 2,
        colorbar_label: "cosine".into(),
        note: Some("sign: first loading positive".into()),
    }
}

#[test]
fn annotated_matrix_prints_values() {
    let svg = annotated_matrix_svg(&small_fig()).unwrap();
    let (texts, _) = parse_svg(&svg);
    for t in [
        "Directions",
        "insecure",
        "toxic",
        "PC1 & co",
        "0.90",
        "\u{2212}1.00",
        "0.00",
        "n/a",
        "sign: first loading positive",
    ] {
        assert!(has_text(&texts, t), "{t} missing");
    }
    // -1 -> dark blue cell with white text; 0 -> near-white cell with dark text.
    assert!(svg.contains("fill=\"#053061\"") && svg.contains("fill=\"#F7F7F7\""));
    assert!(
        svg.contains("fill=\"#FFFFFF\""),
        "white text on the dark cell"
    );
    let mut f = small_fig();
    f.values[1].push(0.0);
    assert!(format!("{:#}", annotated_matrix_svg(&f).unwrap_err()).contains("row 1"));
    f.values.clear();
    f.row_labels.clear();
    assert!(annotated_matrix_svg(&f).is_err());
}

fn band(name: &str, y: Vec<f64>) -> LineSeries {
    let x = (0..y.len()).map(|i| i as f64).collect();
    LineSeries {
        color: None,
        name: name.into(),
        x,
        lower: Some(y.iter().map(|v| v - 0.5).collect()),
        upper: Some(y.iter().map(|v| v + 0.5).collect()),
        y,
    }
}

#[test]
fn layer_projection_with_bands() {
    let f = LayerProjections {
        title: "s_l by layer".into(),
        y_label: "s_l".into(),
        series: vec![
            band("base", vec![0.0, -1.0, -2.0, -3.0]),
            band("instruct", vec![0.0, 1.0, 2.0, 3.0]),
            band("misaligned <ft>", vec![0.0, 1.0, f64::NAN, -4.0]),
        ],
        band_label: Some("95% bootstrap CI".into()),
    };
    let svg = layer_projection_svg(&f).unwrap();
    let (texts, _) = parse_svg(&svg);
    for t in [
        "s_l by layer",
        "layer",
        "s_l",
        "base",
        "instruct",
        "misaligned <ft>",
        "shaded: 95% bootstrap CI",
        "0",
        "3",
    ] {
        assert!(has_text(&texts, t), "{t} missing");
    }
    // Bands are translucent polygons; the NaN splits the third band in two.
    assert_eq!(svg.matches("<polygon").count(), 4);
    assert!(svg.contains("opacity=\"0.18\""));
    // A dashed grey line at s = 0 (drawn as many short segments).
    assert!(svg.matches("stroke=\"#5A5A5A\"").count() > 5);
}

#[test]
fn line_chart_generic_and_errors() {
    let c = LineChart {
        title: "Drift".into(),
        x_label: "step".into(),
        y_label: "projection".into(),
        series: vec![LineSeries::new(
            "run A",
            vec![0.0, 10.0, 20.0],
            vec![1.0, f64::INFINITY, 0.5],
        )],
        band_label: None,
    };
    let (texts, _) = parse_svg(&line_chart_svg(&c).unwrap());
    assert!(has_text(&texts, "Drift") && has_text(&texts, "run A") && has_text(&texts, "step"));
    assert!(!texts.iter().any(|t| t.starts_with("shaded")));

    let mut bad = c.clone();
    bad.series[0].y.pop();
    assert!(format!("{:#}", line_chart_svg(&bad).unwrap_err()).contains("run A"));
    let mut bad = c.clone();
    bad.series.clear();
    assert!(line_chart_svg(&bad).is_err());
    let mut bad = c.clone();
    bad.series[0] = LineSeries::new("empty", vec![], vec![]);
    assert!(line_chart_svg(&bad).is_err());
    let mut bad = c;
    bad.series[0].lower = Some(vec![0.0]);
    bad.series[0].upper = Some(vec![0.0, 1.0, 2.0]);
    assert!(format!("{:#}", line_chart_svg(&bad).unwrap_err()).contains("lower"));
    // All points non-finite: renders an empty chart, no panic.
    let all_nan = LineChart {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![LineSeries::new(
            "s",
            vec![0.0, 1.0],
            vec![f64::NAN, f64::NAN],
        )],
        band_label: None,
    };
    parse_svg(&line_chart_svg(&all_nan).unwrap());
}

#[test]
fn write_svg_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fig.svg");
    let svg = annotated_matrix_svg(&small_fig()).unwrap();
    write_svg(&p, &svg).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), svg);
}
