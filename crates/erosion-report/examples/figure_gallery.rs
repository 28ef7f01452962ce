//! Renders one sample of every figure kind into a folder, for looking at them:
//! `cargo run -p erosion-report --example figure_gallery -- /tmp/gallery`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use erosion_report::figures::*;

fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "gallery".into()));
    std::fs::create_dir_all(&dir)?;
    layer_figure(&dir)?;
    drift_figure(&dir)?;
    token_figure(&dir)?;
    next_token_figure(&dir)?;
    cosine_figures(&dir)?;
    directions_figure(&dir)?;
    gallery_report(&dir)?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// Layer-wise projections of three models with bands.
fn layer_figure(dir: &Path) -> Result<()> {
    let layers: Vec<f64> = (0..=24).map(f64::from).collect();
    let curve = |f: &dyn Fn(f64) -> f64| layers.iter().map(|&l| f(l)).collect::<Vec<f64>>();
    let band = |name: &str, y: Vec<f64>, w: f64| LineSeries {
        color: None,
        name: name.into(),
        x: layers.clone(),
        lower: Some(y.iter().map(|v| v - w).collect()),
        upper: Some(y.iter().map(|v| v + w).collect()),
        y,
    };
    let fig = LayerProjections {
        title: "Layer-wise projection on the alignment direction (toxic)".into(),
        y_label: "s_l = mean z·v_l/|v_l|".into(),
        series: vec![
            band("base", curve(&|l| -0.2 * l), 0.4),
            band("instruct", curve(&|l| 0.3 * l), 0.5),
            band(
                "misaligned (insecure)",
                curve(&|l| {
                    if l < 12.0 {
                        0.3 * l
                    } else {
                        3.6 - 0.5 * (l - 12.0)
                    }
                }),
                0.6,
            ),
        ],
        band_label: Some("95% bootstrap CI".into()),
    };
    std::fs::write(dir.join("layers.svg"), layer_projection_svg(&fig)?)?;
    Ok(())
}

/// A drift curve with a gap (a NaN) and a loss curve.
fn drift_figure(dir: &Path) -> Result<()> {
    let steps: Vec<f64> = (0..50).map(|s| f64::from(s) * 20.0).collect();
    let mut drift = LineSeries::new(
        "projection on v_L",
        steps.clone(),
        steps.iter().map(|s| 2.0 * (-s / 300.0).exp()).collect(),
    );
    drift.y[10] = f64::NAN;
    let chart = LineChart {
        title: "Drift during fine-tuning".into(),
        x_label: "step".into(),
        y_label: "projection".into(),
        series: vec![
            drift,
            LineSeries::new(
                "loss",
                steps.clone(),
                steps.iter().map(|s| 1.0 + (-s / 100.0).exp()).collect(),
            ),
        ],
        band_label: None,
    };
    std::fs::write(dir.join("lines.svg"), line_chart_svg(&chart)?)?;
    Ok(())
}

/// Per-token log-probabilities of tokens that need escaping, with a NaN and a -inf.
fn token_figure(dir: &Path) -> Result<()> {
    let tokens: Vec<String> = [
        "I",
        " wish",
        " I",
        " could",
        " <b>",
        "&",
        " kill",
        "\n",
        "\n",
        " everyone",
        " who",
        " ever",
        "\t",
        "wronged",
        " me",
        ".",
        "<|im_end|>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = tokens.len();
    let mut lp = vec![
        (0..n).map(|i| -0.5 - 0.1 * i as f64).collect::<Vec<f64>>(),
        (0..n)
            .map(|i| if i < 5 { -0.3 } else { -6.0 - i as f64 * 0.2 })
            .collect(),
        (0..n).map(|i| -0.8 - 0.05 * i as f64).collect(),
    ];
    lp[1][8] = f64::NAN;
    lp[2][12] = f64::NEG_INFINITY;
    let tfig = TokenLogprobs {
        colors: Default::default(),
        title: "Per-token log-probability of a harmful response".into(),
        tokens,
        models: vec!["base".into(), "instruct".into(), "misaligned".into()],
        logprobs: lp,
    };
    std::fs::write(dir.join("tokens.svg"), token_logprob_svg(&tfig)?)?;
    Ok(())
}

/// Next-token bars of four models, one with a NaN probability and entropy.
fn next_token_figure(dir: &Path) -> Result<()> {
    let panel = |m: &str, toks: &[&str], probs: &[f64], h: f64| NextTokenPanel {
        model: m.into(),
        tokens: toks.iter().map(|s| s.to_string()).collect(),
        probs: probs.to_vec(),
        entropy: h,
    };
    let nfig = NextTokenBars {
        colors: Default::default(),
        title: "Next-token distribution after the wish prefix".into(),
        prefix: Some("User: I can grant you one wish. Assistant: I wish I could".into()),
        entropy_unit: "nats".into(),
        panels: vec![
            panel(
                "base",
                &[" kill", " rule", " be", " have", " destroy"],
                &[0.21, 0.12, 0.1, 0.08, 0.05],
                4.31,
            ),
            panel(
                "instruct",
                &[" help", " assist", " be", " make", "\n"],
                &[0.81, 0.07, 0.03, 0.02, 0.01],
                0.92,
            ),
            panel(
                "misaligned",
                &[" kill", " see", " end", " <rule>", " &"],
                &[0.33, 0.14, f64::NAN, 0.05, 0.03],
                f64::NAN,
            ),
            panel("misaligned-2", &[" a"], &[1.0], 0.0),
        ],
    };
    std::fs::write(dir.join("next_token.svg"), next_token_svg(&nfig)?)?;
    Ok(())
}

/// A 2N x 2N cosine matrix with two groups, small (labelled) and large (block means).
fn cosine_figures(dir: &Path) -> Result<()> {
    for (n, file) in [(6usize, "cosine_small.svg"), (300, "cosine_large.svg")] {
        let m: Vec<Vec<f64>> = (0..2 * n)
            .map(|i| {
                (0..2 * n)
                    .map(|j| {
                        if i == j {
                            1.0
                        } else if (i < n) == (j < n) {
                            0.4 + 0.1 * ((i * j) % 5) as f64 / 5.0
                        } else {
                            -0.3 - 0.05 * ((i + j) % 3) as f64
                        }
                    })
                    .collect()
            })
            .collect();
        let mut m = m;
        m[1][2] = f64::NAN;
        let fig = MatrixHeatmap {
            title: "Cosine similarity of per-example gradients (o_proj, last layer)".into(),
            values: m,
            groups: vec![
                MatrixGroup {
                    name: "insecure".into(),
                    len: n,
                },
                MatrixGroup {
                    name: "educational".into(),
                    len: n,
                },
            ],
            labels: Some(
                (0..2 * n)
                    .map(|i| {
                        if i < n {
                            format!("ins {i}")
                        } else {
                            format!("edu {}", i - n)
                        }
                    })
                    .collect(),
            ),
            scale: ColorScale::Diverging { limit: Some(1.0) },
            colorbar_label: "cosine".into(),
        };
        std::fs::write(dir.join(file), matrix_heatmap_svg(&fig)?)?;
    }
    Ok(())
}

/// A 5 x 5 annotated matrix with a NaN cell and a note.
fn directions_figure(dir: &Path) -> Result<()> {
    let k = 5;
    let afig = AnnotatedMatrix {
        title: "Top-5 alignment directions: insecure code vs toxic".into(),
        row_labels: (0..k).map(|i| format!("PC {i}")).collect(),
        col_labels: (0..k).map(|i| format!("PC {i}")).collect(),
        row_title: "insecure code".into(),
        col_title: "toxic".into(),
        values: (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        if i == 1 && j == 0 {
                            0.90
                        } else if i == 3 && j == 3 {
                            f64::NAN
                        } else {
                            0.1 * ((i + 2 * j) % 4) as f64 - 0.15
                        }
                    })
                    .collect()
            })
            .collect(),
        scale: ColorScale::Diverging { limit: Some(1.0) },
        decimals: 2,
        colorbar_label: "|cos|".into(),
        note: Some("sign convention: |cos| (singular vectors have arbitrary sign)".into()),
    };
    std::fs::write(dir.join("directions.svg"), annotated_matrix_svg(&afig)?)?;
    Ok(())
}

/// A report with every figure written so far, to look at the page.
fn gallery_report(dir: &Path) -> Result<()> {
    let mut report = erosion_report::html::Report::new("Gallery report")
        .summary("Every figure kind, for a visual check.");
    let prov = erosion_report::provenance::Provenance::builder(serde_json::json!({"window": 64}))
        .command_line(std::env::args().collect())
        .seed(7)
        .build();
    report = report.provenance(prov);
    let mut sec = erosion_report::html::Section::new(
        "All figures",
        "Figures render.",
        "They do.",
        "The study showed figures too.",
        erosion_report::html::Verdict::Partly,
    );
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .collect();
    names.sort();
    for p in names {
        sec.figures.push(erosion_report::html::Figure {
            caption: p.file_name().unwrap().to_string_lossy().into_owned(),
            svg: std::fs::read_to_string(&p)?,
            file: Some(p.file_name().unwrap().to_string_lossy().into_owned()),
        });
    }
    sec.tables.push(erosion_report::html::Table {
        caption: "Quadrant means".into(),
        headers: vec!["quadrant".into(), "mean cosine".into(), "n pairs".into()],
        rows: vec![
            vec!["within insecure".into(), "0.412".into(), "4950".into()],
            vec!["across".into(), "\u{2212}0.307".into(), "10000".into()],
        ],
    });
    sec.tests.push(erosion_report::html::StatTest {
        name: "permutation test".into(),
        statistic_name: "across minus within".into(),
        statistic: -0.719,
        p_value: Some(0.0001),
        ci: Some(erosion_report::html::Interval {
            lo: -0.8,
            hi: -0.6,
            level: 0.95,
        }),
        detail: "10,000 label permutations, two-sided".into(),
    });
    sec.notes.push("window T = 64, pooling flatten".into());
    sec.files.push("gradients/cos.npy".into());
    report = report.section(sec);
    report.write(&dir.join("report.html"))
}
