"""The HTML leaderboard: a self-contained page with one row per method, the per-run detail and the
ROC / faithfulness plots embedded. Checked statically (always) and in headless Chromium (when a
Chromium binary is on PATH; CI installs only Python packages, so there it is skipped)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmark.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS = ("random", "eap")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chromium-headless-shell",
            "headless_shell")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A tiny results directory (toy case, two methods), its plots, and the HTML leaderboard."""
    out = tmp_path_factory.mktemp("report") / "res"
    assert main(["benchmark", "--cases", "toy", "--methods", *METHODS, "--out", str(out), "-n", "8"]) == 0
    assert main(["eval", "roc", str(out)]) == 0
    assert main(["eval", "faithfulness", str(out), "-n", "8"]) == 0
    assert main(["leaderboard", "--out", str(out), "--format", "html"]) == 0
    return out


class _Page(HTMLParser):
    """Rows of each table (by id), images with their figure captions, and external references."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self.external: list[str] = []
        self._table = self._row = self._cell = None
        self._in_body = False
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "table":
            self._table = a.get("id")
            self.rows.setdefault(self._table, [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append({"src": a.get("src", ""), "alt": a.get("alt", ""), "caption": None})
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "figcaption" and self._caption is not None:
            self.images[-1]["caption"] = "".join(self._caption).strip()
            self._caption = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_html_leaderboard_is_self_contained_with_rows_and_plots(report):
    page = _parse(report / "leaderboard.html")
    assert page.external == []  # nothing fetched from anywhere: the page works offline, as one file
    methods = [row[1] for row in page.rows["leaderboard"]]
    assert sorted(methods) == sorted(METHODS)  # one row per method (one model kind, one variant each here)
    assert [row[2] for row in page.rows["leaderboard"]] == methods  # variant label: the method's name
    assert sorted(row[2] for row in page.rows["runs"]) == sorted(METHODS)
    assert all(row[5] == "ok" for row in page.rows["runs"])  # case, model, method, variant, params, status
    eap = next(row for row in page.rows["leaderboard"] if row[1] == "eap")
    assert float(eap[5]) >= 0.99  # edge AUROC (after model, method, variant, n_cases, n_runs)

    assert len(page.images) == 2
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix):], validate=True).startswith(PNG_MAGIC)
        assert img["caption"] and img["alt"] == img["caption"]
    captions = " | ".join(img["caption"] for img in page.images)
    assert "toy/toy/roc_edges.png" in captions and "toy/toy/faithfulness.png" in captions
    assert "edge ROC" in captions and "faithfulness" in captions
    # the embedded bytes are the plots that `eval roc` / `eval faithfulness` wrote
    roc = next(img for img in page.images if "roc_edges" in img["caption"])
    assert base64.b64decode(roc["src"].split(",", 1)[1]) == (report / "toy" / "toy" / "roc_edges.png").read_bytes()


def test_embedded_plots_take_only_the_case_plots(tmp_path):
    from benchmark.commands.leaderboard import _embedded_plots

    png = PNG_MAGIC + b"\0" * 16
    (tmp_path / "3" / "tracr").mkdir(parents=True)
    (tmp_path / "3" / "tracr" / "faithfulness.png").write_bytes(png)
    (tmp_path / "3" / "tracr" / "roc_edges.png").write_bytes(png)
    (tmp_path / "4" / "siit").mkdir(parents=True)
    (tmp_path / "4" / "siit" / "roc_edges.png").write_bytes(b"not a png")  # corrupt: left out
    (tmp_path / "wandb" / "run-1" / "media").mkdir(parents=True)
    (tmp_path / "wandb" / "run-1" / "media" / "x.png").write_bytes(png)  # not a case plot: left out
    plots = _embedded_plots(str(tmp_path))
    assert list(plots) == ["case 3 (tracr): edge ROC (eval roc) \u2014 3/tracr/roc_edges.png",
                           "case 3 (tracr): faithfulness curve (eval faithfulness) \u2014 3/tracr/faithfulness.png"]
    assert all(v.startswith("data:image/png;base64,") for v in plots.values())


def _chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


# written into a copy of the page: after `load`, Chromium records what it rendered into the DOM,
# which --dump-dom then prints (the page itself carries no script)
_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete}));
  const rows = [...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.cells[1].textContent);
  const pre = document.createElement('pre'); pre.id = 'probe';
  const svg = document.getElementById('cost-quality').getBoundingClientRect();
  const heat = [...document.querySelectorAll('table.heatmap tbody td')].map(td => getComputedStyle(td).backgroundColor);
  const th = [...document.querySelectorAll('#leaderboard thead th')].find(h => h.textContent === 'edge_auroc');
  th.click(); const up = [...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.cells[5].textContent);
  th.click(); const down = [...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.cells[5].textContent);
  const points = document.querySelectorAll('#cost-quality circle, #cost-quality rect').length;
  pre.textContent = JSON.stringify({imgs, rows, title: document.title, svg: {w: svg.width, h: svg.height}, heat,
                                    up, down, points, details: document.querySelectorAll('details').length});
  document.body.appendChild(pre);
});</script>"""


def test_html_leaderboard_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium binary on PATH (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    probed = tmp_path / "probed.html"
    probed.write_text((report / "leaderboard.html").read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"),
                      encoding="utf-8")
    dom = subprocess.run(flags + ["--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<pre id="probe">' in dom.stdout, dom.stdout[-2000:]
    probe = json.loads(_unescape(dom.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0]))
    assert probe["title"] == "circuit-bench leaderboard"
    assert sorted(probe["rows"]) == sorted(METHODS)
    assert len(probe["imgs"]) == 2
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 100 for i in probe["imgs"]), probe["imgs"]
    # issue 22: the cost-quality plot (inline SVG, one point per variant plus the frame), the heatmap
    # (one coloured cell per case and variant), the sortable table, the per-case detail behind a click
    assert probe["svg"]["w"] > 300 and probe["svg"]["h"] > 200 and probe["points"] == len(METHODS) + 1
    assert len(probe["heat"]) == 1 + len(METHODS)  # case column + one cell per variant (one case: toy)
    assert len(set(probe["heat"][1:])) == len(METHODS)  # eap (1.0) and random (~0.5) differ in colour
    assert [float(x) for x in probe["up"]] == sorted(float(x) for x in probe["up"])
    assert probe["down"] == probe["up"][::-1] and probe["details"] >= 2

    # and the page as a user sees it: a screenshot that is not blank (text, tables and plots drawn)
    shot = tmp_path / "leaderboard.png"
    # tall enough for the whole page: tables, cost-quality plot, heatmap and the embedded plots at the end
    run = subprocess.run(flags + ["--hide-scrollbars", "--window-size=1400,2600", f"--screenshot={shot}",
                                  (report / "leaderboard.html").as_uri()], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2600, 1400)
    dark = (pixels.mean(axis=-1) < 0.5).mean()
    colour = (pixels.max(axis=-1) - pixels.min(axis=-1) > 0.3).mean()  # the plots' coloured curves
    assert dark > 0.002 and colour > 0.0005, (dark, colour)
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 50


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)
