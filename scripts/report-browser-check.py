#!/usr/bin/env python3
"""Opens report.html files in headless Chromium at given window widths and fails on what a
reader would see break: horizontal overflow (the page, or a figure, table or image wider than
its column, or content hidden behind a scroll bar), images that do not load, links to local
files that do not exist, and console messages (the reports run no scripts, so any message is
an error). Standard library only.

usage: report-browser-check.py CHROMIUM WIDTH[,WIDTH...] REPORT.html...

The page's own script would be the only way to measure layout with --dump-dom, so a copy of
each report gets a small measuring script; the copy sits beside the report (same folder, so
relative links resolve the same) and is removed afterwards. The script writes its findings
into the DOM, which --dump-dom prints.
"""

import html.parser
import json
import os
import re
import subprocess
import sys
import urllib.parse

# Pixels of slack before a width counts as overflow (sub-pixel rounding, borders).
TOLERANCE = 2

MEASURE = r"""
<script>
(function () {
  const found = [];
  // Resources that fail (an <img> whose file is missing) fire 'error' on the element, seen
  // only in the capture phase.
  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) found.push('failed to load ' + (t.src || t.href));
    else found.push('script error: ' + e.message);
  }, true);
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    const label = el.getAttribute('aria-label') || (el.querySelector && el.querySelector('caption') || {}).textContent;
    if (label) s += ' "' + label.trim().slice(0, 60) + '"';
    const sec = el.closest('section[id]');
    if (sec) s += ' in section#' + sec.id;
    return s;
  };
  window.addEventListener('load', () => {
    // Folded parts (provenance) must fit too when a reader opens them.
    for (const d of document.querySelectorAll('details')) d.open = true;
    const tol = TOLERANCE;
    const root = document.documentElement;
    if (root.scrollWidth > root.clientWidth + tol)
      found.push('the page is ' + root.scrollWidth + ' px wide in a ' + root.clientWidth + ' px window');
    for (const el of document.querySelectorAll('body *')) {
      const cs = getComputedStyle(el);
      if (cs.display === 'none' || el.id === 'erosion-browser-check') continue;
      if (['auto', 'scroll', 'hidden', 'clip'].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + tol)
        found.push(name(el) + ' hides ' + (el.scrollWidth - el.clientWidth) + ' px of its content (' + el.scrollWidth + ' px in ' + el.clientWidth + ' px)');
    }
    for (const el of document.querySelectorAll('svg, img, table, pre, figure, video, canvas')) {
      const p = el.parentElement;
      if (!p || (el.tagName === 'svg' && el.parentElement.closest('svg'))) continue;
      const ps = getComputedStyle(p), r = el.getBoundingClientRect(), pr = p.getBoundingClientRect();
      const right = pr.right - parseFloat(ps.paddingRight) - parseFloat(ps.borderRightWidth);
      if (r.width > 0 && r.right > right + tol)
        found.push(name(el) + ' is ' + Math.round(r.width) + ' px wide and sticks out of its ' + Math.round(right - pr.left) + ' px container by ' + Math.round(r.right - right) + ' px');
    }
    for (const img of document.images)
      if (!img.complete || img.naturalWidth === 0) found.push('image not shown: ' + img.src);
    const out = document.createElement('pre');
    out.id = 'erosion-browser-check';
    out.textContent = JSON.stringify(found);
    document.body.appendChild(out);
  });
})();
</script>
""".replace("TOLERANCE", str(TOLERANCE))


class Links(html.parser.HTMLParser):
    """The page's ids and its local references (href/src without a scheme)."""

    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == "id" and v:
                self.ids.add(v)
            if k in ("href", "src") and v is not None:
                self.refs.append((tag, v))


def broken_links(report):
    """Links to files that do not exist and anchors that name no id."""
    p = Links()
    with open(report, encoding="utf-8") as f:
        p.feed(f.read())
    problems = []
    for tag, ref in p.refs:
        url = urllib.parse.urlsplit(ref)
        if url.scheme or url.netloc:
            continue  # not a local file; reports should have none, but that is not layout
        if not url.path:
            if url.fragment and url.fragment not in p.ids:
                problems.append(f"<{tag}> links to #{url.fragment}, which no element has")
            continue
        target = os.path.join(os.path.dirname(report), urllib.parse.unquote(url.path))
        if not os.path.exists(target):
            problems.append(f"<{tag}> links to {ref}, which does not exist")
    return problems


def measure(chromium, report, width):
    """Findings of the measuring script, and console lines from Chromium's log."""
    folder = os.path.dirname(os.path.abspath(report))
    copy = os.path.join(folder, ".browser-check-" + os.path.basename(report))
    with open(report, encoding="utf-8") as f:
        page = f.read()
    # First thing in <head>, so its error handlers see everything after it.
    page, n = re.subn(r"<head>", lambda m: "<head>" + MEASURE, page, count=1)
    if n == 0:
        page = MEASURE + page
    with open(copy, "w", encoding="utf-8") as f:
        f.write(page)
    try:
        run = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", f"--window-size={width},900",
             "--virtual-time-budget=5000", "--dump-dom", "file://" + copy],
            capture_output=True, text=True, timeout=120)
    finally:
        os.remove(copy)
    m = re.search(r'<pre id="erosion-browser-check">(.*?)</pre>', run.stdout, re.S)
    if not m:
        tail = run.stderr.strip().splitlines()[-5:]
        return [f"Chromium printed no measurements (exit {run.returncode}): " + " | ".join(tail)]
    found = json.loads(html.unescape(m.group(1)))
    # Chromium logs every console message as INFO:CONSOLE, whatever its level.
    for line in run.stderr.splitlines():
        if ":CONSOLE" in line:
            found.append("console: " + line.split("] ", 1)[-1])
    return found


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    chromium, widths, reports = sys.argv[1], [int(w) for w in sys.argv[2].split(",")], sys.argv[3:]
    failures = 0
    for report in reports:
        problems = [f"links: {p}" for p in broken_links(report)]
        for w in widths:
            problems += [f"{w} px: {p}" for p in measure(chromium, report, w)]
        # One problem at two widths is still worth both lines: it says where it starts.
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        print(f"{report}: {status}")
        for p in problems:
            print(f"  {p}")
        failures += len(problems)
    if failures:
        sys.exit(f"{failures} problem(s) in {len(reports)} report(s)")


if __name__ == "__main__":
    main()
