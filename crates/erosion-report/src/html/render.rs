//! HTML for the parts of a report. All text goes through [`escape`]; the markup is also
//! well-formed XML (void elements self-closed), so it can be checked by an XML parser.

use std::fmt::Write;

use anyhow::{ensure, Result};

use super::escape::{escape, inline_svg, paragraphs};
use super::model::{Figure, Section, StatTest, Table, Verdict};
use super::options::option_rows;
use crate::format::{fmt_bytes, fmt_level, fmt_number, fmt_p};
use crate::provenance::Provenance;

pub fn table(t: &Table) -> Result<String> {
    table_with(t, true)
}

/// A table; with `align_numbers`, cells that parse as numbers are right-aligned.
fn table_with(t: &Table, align_numbers: bool) -> Result<String> {
    for (i, r) in t.rows.iter().enumerate() {
        ensure!(
            r.len() == t.headers.len(),
            "table {:?}: row {i} has {} cells for {} columns",
            t.caption,
            r.len(),
            t.headers.len()
        );
    }
    let mut h = String::from("<table>\n");
    if !t.caption.is_empty() {
        let _ = writeln!(h, "<caption>{}</caption>", escape(&t.caption));
    }
    h.push_str("<thead><tr>");
    for c in &t.headers {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in &t.rows {
        h.push_str("<tr>");
        for c in r {
            // Right-align cells that are numbers.
            let num = align_numbers && c.trim().replace('\u{2212}', "-").parse::<f64>().is_ok();
            let class = if num { " class=\"num\"" } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
    Ok(h)
}

pub fn figure(f: &Figure) -> Result<String> {
    let svg = inline_svg(&f.svg, &f.caption)?;
    let mut h = format!(
        "<figure>\n<div class=\"svg-wrap\">{svg}</div>\n<figcaption>{}",
        escape(&f.caption)
    );
    if let Some(file) = &f.file {
        let _ = write!(h, " {}", file_link(file));
    }
    h.push_str("</figcaption>\n</figure>\n");
    Ok(h)
}

/// A link to a file of the output folder; a path that is not relative (a URL, an absolute
/// path) is shown as text, so the page never points outside its folder.
pub fn file_link(path: &str) -> String {
    let relative = !path.contains(':') && !path.starts_with('/') && !path.starts_with('\\');
    if relative {
        format!("<a href=\"{0}\"><code>{0}</code></a>", escape(path))
    } else {
        format!("<code>{}</code>", escape(path))
    }
}

pub fn tests(tests: &[StatTest]) -> String {
    let mut h = String::from(
        "<table class=\"tests\">\n<caption>Statistical tests</caption>\n<thead><tr><th>Test</th><th>Statistic</th>\
         <th>Value</th><th>p</th><th>Confidence interval</th><th>Details</th></tr></thead>\n<tbody>\n",
    );
    for t in tests {
        let p = t.p_value.map_or("\u{2014}".to_string(), fmt_p);
        let ci = t.ci.map_or("\u{2014}".to_string(), |c| {
            format!(
                "[{}, {}] ({})",
                fmt_number(c.lo),
                fmt_number(c.hi),
                fmt_level(c.level)
            )
        });
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&t.name),
            escape(&t.statistic_name),
            escape(&fmt_number(t.statistic)),
            escape(&p),
            escape(&ci),
            escape(&t.detail)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h
}

/// A verdict's badge; in a smoke run a grey "smoke run" in its place.
pub fn badge(v: Verdict, smoke: bool) -> String {
    if smoke {
        return "<span class=\"badge v-none\">smoke run</span>".into();
    }
    format!("<span class=\"badge {}\">{}</span>", v.class(), v.label())
}

pub fn section(i: usize, s: &Section, smoke: bool) -> Result<String> {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<section id=\"{}\">\n<h2>{}. {} {}</h2>",
        section_id(i),
        i + 1,
        escape(&s.title),
        badge(s.verdict, smoke)
    );
    let _ = writeln!(
        h,
        "<div class=\"finding\"><h3>Finding under test</h3>\n{}</div>",
        paragraphs(&s.finding)
    );
    let _ = writeln!(
        h,
        "<div class=\"compare\">\n<div class=\"ours\"><h3>Our result</h3>\n{}</div>\n\
         <div class=\"theirs\"><h3>The study reported</h3>\n{}</div>\n</div>",
        paragraphs(&s.result),
        paragraphs(&s.study_reported)
    );
    for f in &s.figures {
        h.push_str(&figure(f)?);
    }
    for t in &s.tables {
        h.push_str(&table(t)?);
    }
    if !s.tests.is_empty() {
        h.push_str(&tests(&s.tests));
    }
    if !s.notes.is_empty() {
        h.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for n in &s.notes {
            let _ = writeln!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }
    if !s.files.is_empty() {
        // Separated in the text itself, so copied or printed names do not run together.
        let links: Vec<String> = s.files.iter().map(|f| file_link(f)).collect();
        let _ = writeln!(h, "<p class=\"files\">Data: {}</p>", links.join(", "));
    }
    h.push_str("</section>\n");
    Ok(h)
}

pub fn section_id(i: usize) -> String {
    format!("finding-{}", i + 1)
}

/// A command line as a shell would read it back: arguments with special characters quoted.
fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The provenance section, last and folded (a reader opens it to check a hash, not to read
/// the results): the run, the models' and datasets' files with their hashes, and the options.
pub fn provenance(p: &Provenance) -> Result<String> {
    let mut h = String::from(
        "<section id=\"provenance\">\n<h2>Provenance</h2>\n<details>\n\
         <summary>The run, its models and datasets (files and SHA-256), and every option</summary>\n",
    );
    h.push_str(&run_table(p)?);
    h.push_str(&models_table(p)?);
    h.push_str(&datasets_table(p)?);
    let rows = option_rows(&p.options)
        .into_iter()
        .map(|(k, v)| vec![k, v])
        .collect::<Vec<_>>();
    if !rows.is_empty() {
        let options = Table {
            caption: "Options".into(),
            headers: vec!["option".into(), "value".into()],
            rows,
        };
        h.push_str(&table_with(&options, false)?);
    }
    h.push_str("</details>\n</section>\n");
    Ok(h)
}

/// The run: tool and version, git commit, creation time, command line, seed.
fn run_table(p: &Provenance) -> Result<String> {
    let commit = p.tool.git_commit.as_deref().unwrap_or("unknown");
    let rows = vec![
        vec![
            "tool".to_string(),
            format!("{} {}", p.tool.name, p.tool.version),
        ],
        vec!["git commit".to_string(), commit.to_string()],
        vec!["created (UTC)".to_string(), p.created.clone()],
        vec!["command line".to_string(), shell_join(&p.command_line)],
        vec![
            "seed".to_string(),
            p.seed.map_or("none".to_string(), |s| s.to_string()),
        ],
    ];
    let run = Table {
        caption: "Run".into(),
        headers: vec!["field".into(), "value".into()],
        rows,
    };
    table_with(&run, false)
}

/// One row per model file (the model's name and source on its first row only); a model
/// without files gets one row saying so.
fn models_table(p: &Provenance) -> Result<String> {
    let mut rows = Vec::new();
    for m in &p.models {
        if m.files.is_empty() {
            rows.push(vec![
                m.name.clone(),
                m.source.clone(),
                "(no files)".into(),
                String::new(),
                String::new(),
            ]);
        }
        for (j, f) in m.files.iter().enumerate() {
            let (name, source) = if j == 0 {
                (m.name.clone(), m.source.clone())
            } else {
                (String::new(), String::new())
            };
            rows.push(vec![
                name,
                source,
                f.path.clone(),
                fmt_bytes(f.bytes),
                f.sha256.clone(),
            ]);
        }
    }
    let headers = ["model", "source", "file", "size", "SHA-256"]
        .map(String::from)
        .to_vec();
    hash_table("Models", headers, rows)
}

/// One row per dataset file: examples, selection, size and hash.
fn datasets_table(p: &Provenance) -> Result<String> {
    let rows = p
        .datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.path.clone(),
                d.n_examples.to_string(),
                d.selection.clone(),
                fmt_bytes(d.bytes),
                d.sha256.clone(),
            ]
        })
        .collect();
    let headers = [
        "dataset",
        "file",
        "examples",
        "selection",
        "size",
        "SHA-256",
    ]
    .map(String::from)
    .to_vec();
    hash_table("Datasets", headers, rows)
}

/// A table whose last column is a hash, set in monospace and allowed to wrap.
fn hash_table(caption: &str, headers: Vec<String>, rows: Vec<Vec<String>>) -> Result<String> {
    if rows.is_empty() {
        return Ok(format!(
            "<h3>{}</h3>\n<p class=\"meta\">none recorded</p>\n",
            escape(caption)
        ));
    }
    let t = table(&Table {
        caption: caption.into(),
        headers,
        rows,
    })?;
    // Hashes are the last cell of each row: 64 hex digits.
    let mut out = String::with_capacity(t.len());
    for line in t.lines() {
        match line.rfind("<td>") {
            Some(at) if line.ends_with("</td></tr>") && is_hash(&line[at + 4..line.len() - 10]) => {
                let _ = writeln!(out, "{}<td class=\"hash\">{}", &line[..at], &line[at + 4..]);
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_join(&[
                "erosion".into(),
                "study".into(),
                "my study.toml".into(),
                "it's".into()
            ]),
            "erosion study 'my study.toml' 'it'\\''s'"
        );
    }

    #[test]
    fn links_stay_inside_the_folder() {
        assert_eq!(
            file_link("layers/s.npy"),
            "<a href=\"layers/s.npy\"><code>layers/s.npy</code></a>"
        );
        assert_eq!(file_link("https://x.org/a"), "<code>https://x.org/a</code>");
        assert_eq!(file_link("/etc/passwd"), "<code>/etc/passwd</code>");
    }
}
