"""The Snakemake HTML report of the smoke run: self-contained, captioned, every image renders.

Uses the real snakemake (`--report`) on a copy of the shared smoke run and the real headless
Chromium through workflow/scripts/check_report.py; skips only when Chromium is not installed.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_snakemake

CHECK_REPORT = REPO / "workflow" / "scripts" / "check_report.py"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (make test-system-deps "
                       "installs Debian's `chromium`)"),
]


@pytest.fixture(scope="module")
def report_dir(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished smoke run with results/report.html made by the real snakemake."""
    workdir = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    run_snakemake(workdir, "--report", "results/report.html", timeout=300)
    return workdir


def _check(report: Path, screenshot: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK_REPORT), str(report), "--screenshot", str(screenshot)],
        capture_output=True, text=True, timeout=600,
    )


def _results(html: str) -> dict:
    match = re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', html, re.S)
    assert match, "no embedded results block"
    return json.loads(match.group(1))


def test_report_is_self_contained_with_captions(report_dir: Path) -> None:
    html = (report_dir / "results" / "report.html").read_text(encoding="utf-8")
    # no resource fetched from anywhere: scripts/styles inline, results as data URIs
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html)
    results = _results(html)
    images = [p for p, e in results.items() if e["mime_type"] == "image/png"]
    assert images, "no figure in the report"
    assert any(p.endswith("paper_vs_reproduced.html") for p in results), "comparison table missing"
    for path, entry in results.items():
        assert entry["data_uri"].startswith("data:"), path
        assert entry["caption"].strip(), f"{path} has no caption"
    assert "smoke" in html  # the workflow description states the run's scale


def test_every_report_image_renders_in_chromium(report_dir: Path) -> None:
    screenshot = report_dir / "results" / "report.screenshot.png"
    proc = _check(report_dir / "results" / "report.html", screenshot)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all render" in proc.stdout
    rendered = re.findall(r"ok: (\S+): rendered (\d+)x(\d+) px", proc.stdout)
    html = (report_dir / "results" / "report.html").read_text(encoding="utf-8")
    images = [p for p, e in _results(html).items() if e["mime_type"].startswith("image/")]
    assert sorted(p for p, _, _ in rendered) == sorted(images)
    assert all(int(w) > 100 and int(h) > 100 for _, w, h in rendered)
    assert screenshot.stat().st_size > 10_000


def test_check_report_catches_a_broken_image(report_dir: Path, tmp_path: Path) -> None:
    """Corrupt one embedded PNG (valid base64, not an image): both checks must flag it."""
    html = (report_dir / "results" / "report.html").read_text(encoding="utf-8")
    results = _results(html)
    victim = next(p for p, e in results.items() if e["mime_type"] == "image/png")
    uri = results[victim]["data_uri"]
    garbage = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 64).decode()
    broken = html.replace(uri, uri.split("base64,")[0] + "base64," + garbage)
    assert broken != html
    target = tmp_path / "broken.html"
    target.write_text(broken, encoding="utf-8")
    proc = _check(target, tmp_path / "broken.png")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"PROBLEM: {victim}: does not decode" in proc.stdout
    assert f"PROBLEM: {victim}: broken image in Chromium" in proc.stdout
