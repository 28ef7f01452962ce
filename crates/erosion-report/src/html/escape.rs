//! HTML escaping and the checks that keep an inlined SVG from reaching outside the page.

use anyhow::{bail, ensure, Result};

/// Escapes text for HTML content and attribute values (`&`, `<`, `>`, `"`, `'`), and
/// replaces control characters other than tab and newline, which HTML does not allow.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Text as paragraphs: blank lines separate paragraphs, single newlines become `<br/>`.
pub fn paragraphs(s: &str) -> String {
    s.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", escape(p).replace('\n', "<br/>")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Elements an inlined figure may not contain: they run code, embed other documents or
/// load resources.
const DENIED_ELEMENTS: [&str; 8] = [
    "script",
    "foreignobject",
    "iframe",
    "image",
    "use",
    "object",
    "embed",
    "style",
];

/// Checks that `svg` is one SVG document that loads and runs nothing (no scripts, event
/// handlers, links, `url(...)` references or embedded documents), and returns it ready to
/// inline in HTML: without an XML prolog and without the `xmlns` attribute (the HTML
/// parser puts `<svg>` in the SVG namespace itself, and it keeps URLs out of the page),
/// with `role="img"` and `aria-label` for screen readers.
///
/// Every `<` in a well-formed SVG starts a tag (text holds `&lt;`), so checking tags is
/// enough.
pub fn inline_svg(svg: &str, label: &str) -> Result<String> {
    let mut s = svg.trim();
    if s.starts_with("<?xml") {
        let end = s.find("?>").map_or(s.len(), |e| e + 2);
        s = s[end..].trim_start();
    }
    ensure!(
        s.starts_with("<svg"),
        "figure {label:?}: not an SVG document (it must start with <svg)"
    );
    ensure!(
        s.ends_with("</svg>"),
        "figure {label:?}: the SVG document does not end with </svg>"
    );
    for tag in s.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        check_tag(tag).map_err(|e| anyhow::anyhow!("figure {label:?}: {e}"))?;
    }
    let root_end = s.find('>').unwrap_or(s.len());
    let mut root = s[..root_end]
        .replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .trim_end_matches('/')
        .to_string();
    // Without a viewBox a figure cannot shrink to the column: it would be clipped instead.
    if !root.contains("viewBox=") {
        if let (Some(w), Some(h)) = (attr(&root, "width"), attr(&root, "height")) {
            root.push_str(&format!(" viewBox=\"0 0 {w} {h}\""));
        }
    }
    let self_closing = s[..root_end].ends_with('/');
    Ok(format!(
        "{root} role=\"img\" aria-label=\"{}\"{}{}",
        escape(label),
        if self_closing { "/" } else { "" },
        &s[root_end..]
    ))
}

/// A number-valued attribute of a start tag (`width="640"`), if it is a plain number.
fn attr(tag: &str, name: &str) -> Option<f64> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[at..].find('"')? + at;
    tag[at..end].parse().ok().filter(|v: &f64| v.is_finite())
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.starts_with('!') || tag.starts_with('?') {
        bail!("comments, CDATA and processing instructions are not allowed");
    }
    let name: String = tag
        .trim_start_matches('/')
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '/')
        .collect::<String>()
        .to_ascii_lowercase();
    if DENIED_ELEMENTS.contains(&name.as_str()) {
        bail!("<{name}> elements are not allowed");
    }
    // Attribute names outside quotes, and all values.
    let mut in_quote: Option<char> = None;
    let mut word = String::new();
    let mut value = String::new();
    for c in tag.chars().skip_while(|c| !c.is_whitespace()) {
        match in_quote {
            Some(q) if c == q => {
                check_value(&value)?;
                value.clear();
                in_quote = None;
            }
            Some(_) => value.push(c),
            None if c == '"' || c == '\'' => in_quote = Some(c),
            None if c == '=' => {
                let attr = word.trim().to_ascii_lowercase();
                if attr.starts_with("on") || attr.ends_with("href") || attr == "src" {
                    bail!("attribute {attr:?} is not allowed");
                }
                word.clear();
            }
            None if c.is_whitespace() => word.clear(),
            None => word.push(c),
        }
    }
    Ok(())
}

fn check_value(v: &str) -> Result<()> {
    let v = v.to_ascii_lowercase();
    if v.contains("url(") || v.contains("javascript:") || v.contains("@import") {
        bail!("attribute value {v:?} references a resource");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_special() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{7}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{fffd}"
        );
        assert_eq!(
            paragraphs("a\nb\n\n\n c <"),
            "<p>a<br/>b</p>\n<p>c &lt;</p>"
        );
    }

    #[test]
    fn svg_checks() {
        let ok = "<svg width=\"2\" height=\"2\" viewBox=\"0 0 2 2\" xmlns=\"http://www.w3.org/2000/svg\">\n<text x=\"1\">on click=&lt;x&gt; url(</text>\n</svg>";
        let out = inline_svg(ok, "a \"fig\"").unwrap();
        assert!(out.starts_with("<svg width=\"2\" height=\"2\" viewBox=\"0 0 2 2\" role=\"img\" aria-label=\"a &quot;fig&quot;\">"), "{out}");
        assert!(!out.contains("http"));
        for bad in [
            "<svg><script>alert(1)</script></svg>",
            "<svg><SCRIPT src=\"x.js\"/></svg>",
            "<svg onload=\"alert(1)\"></svg>",
            "<svg><a href=\"https://x\">x</a></svg>",
            "<svg><a xlink:href=\"https://x\">x</a></svg>",
            "<svg><rect fill=\"url(https://x/p.svg#a)\"/></svg>",
            "<svg><foreignObject/></svg>",
            "<svg><image x=\"0\"/></svg>",
            "<svg><!-- x --></svg>",
            "<html></html>",
            "<svg>",
        ] {
            assert!(inline_svg(bad, "f").is_err(), "{bad}");
        }
        assert!(inline_svg("<?xml version=\"1.0\"?>\n<svg></svg>", "f").is_ok());
        // A figure without a viewBox gets one from its size, so it can shrink to the column.
        let out = inline_svg("<svg width=\"640\" height=\"200\"></svg>", "f").unwrap();
        assert!(
            out.starts_with(
                "<svg width=\"640\" height=\"200\" viewBox=\"0 0 640 200\" role=\"img\""
            ),
            "{out}"
        );
    }
}
