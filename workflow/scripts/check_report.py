#!/usr/bin/env python3
"""Check a Snakemake HTML report: every embedded image decodes and renders in headless Chromium.

    python workflow/scripts/check_report.py results/report.html [--screenshot shot.png]

Snakemake 9's report is a single-page React app whose results (data URIs) sit in a
``<script id="results">`` block; images appear only after navigating to them. Three checks:

1. static: every image result's data URI decodes to a valid PNG/JPEG/SVG (Pillow verifies PNGs);
2. rendered: a copy of the report with a probe script appended is opened in headless Chromium;
   the probe waits for the app, shows every image result through the app's own ``setView``
   (as a click would), and records each ``<img>``'s naturalWidth (0 = broken image), plus any
   broken ``<img>`` on the landing page; Chromium's ``--dump-dom`` hands the record back;
3. screenshot: the probed page, left showing a rendered figure inside the app, saved as a PNG
   that must not be blank (kept as evidence; taken in the same Chromium run).

Only Debian's ``chromium`` and the Python standard library (+ Pillow, installed with matplotlib)
are needed. Exit status 0 = all good, 1 = a check failed, 2 = usage error / no Chromium.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]
PROBE_ID = "tsdcls-image-check"
RETRIES = 3
# Appended before </body>: runs after the app's own scripts, so `app` and `results` exist.
PROBE_SCRIPT = """
<script>
(async function () {
  const out = {app: false, images: [], landing_broken: [], errors: []};
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function settle(img) {
    if (!img.complete) {
      await new Promise((r) => { img.addEventListener("load", r); img.addEventListener("error", r); });
    }
  }
  try {
    for (let i = 0; i < 200 && typeof app === "undefined"; i++) await sleep(50);
    out.app = typeof app !== "undefined";
    await sleep(200);
    for (const img of document.querySelectorAll("img")) {
      await settle(img);
      if (img.naturalWidth === 0) out.landing_broken.push((img.getAttribute("src") || "").slice(0, 60));
    }
    if (out.app) {
      const paths = Object.keys(results).filter((p) => (results[p].mime_type || "").startsWith("image/"));
      for (const path of paths) {
        const uri = results[path].data_uri;
        app.setView({content: "img", contentPath: uri});
        let img;
        for (let i = 0; i < 100 && !img; i++) {
          await sleep(20);
          img = Array.from(document.querySelectorAll("#app img")).find((el) => el.getAttribute("src") === uri);
        }
        if (!img) { out.images.push({path: path, found: false, width: 0, height: 0}); continue; }
        await settle(img);
        out.images.push({path: path, found: true, width: img.naturalWidth, height: img.naturalHeight});
      }
      // leave a figure that did render on screen for the screenshot
      const good = out.images.find((item) => item.width > 0);
      if (good) { app.setView({content: "img", contentPath: results[good.path].data_uri}); await sleep(200); }
    }
  } catch (e) {
    out.errors.push(String(e));
  }
  const pre = document.createElement("pre");
  pre.id = "PROBE_ID";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
""".replace("PROBE_ID", PROBE_ID)


@dataclass
class Report:
    """What the checks found; ``ok`` is the verdict."""

    images: dict[str, str] = field(default_factory=dict)  # result path -> mime type
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def embedded_results(text: str) -> dict[str, dict]:
    """The report's ``var results = {...};`` object."""
    match = re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', text, re.S)
    if not match:
        raise ValueError("no <script id=\"results\"> block: not a Snakemake 9 HTML report?")
    return json.loads(match.group(1))


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """(mime type, bytes) of a ``data:<mime>;...;base64,<payload>`` URI."""
    header, sep, payload = uri.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise ValueError(f"not a base64 data URI: {uri[:60]!r}")
    return header[5:].split(";")[0], base64.b64decode(payload, validate=True)


def check_image_bytes(mime: str, blob: bytes) -> str | None:
    """None when the bytes are a valid image of that type, else what is wrong."""
    if mime == "image/svg+xml":
        return None if b"<svg" in blob[:4096] else "SVG without an <svg> element"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        signatures = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
        sig = signatures.get(mime)
        return None if sig is None or blob.startswith(sig) else f"bytes do not start like {mime}"
    try:
        with Image.open(io.BytesIO(blob)) as image:
            image.verify()
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
            if image.width == 0 or image.height == 0:
                return "image has zero size"
    except Exception as err:  # noqa: BLE001 - any decoder error means a broken image
        return f"does not decode as {mime}: {err}"
    return None


def static_check(text: str, report: Report) -> None:
    results = embedded_results(text)
    if not results:
        report.problems.append("the report holds no results (no report() outputs?)")
    for path, entry in results.items():
        mime = entry.get("mime_type", "")
        try:
            uri_mime, blob = decode_data_uri(entry["data_uri"])
        except (ValueError, KeyError, binascii.Error) as err:
            report.problems.append(f"{path}: data URI does not decode: {err}")
            continue
        if not blob:
            report.problems.append(f"{path}: empty file embedded")
        if mime.startswith("image/"):
            report.images[path] = mime
            problem = check_image_bytes(uri_mime, blob)
            if problem:
                report.problems.append(f"{path}: {problem}")
        if not entry.get("caption"):
            report.notes.append(f"{path}: no caption")


def find_chromium(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(chromium: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def rendered_check(text: str, chromium: str, workdir: Path, screenshot: Path, report: Report,
                   timeout: float) -> None:
    """One Chromium run on the probed copy: the probe's record via --dump-dom, and a screenshot
    of the app showing the last image result."""
    probe = workdir / "probe.html"
    marker = text.rfind("</body>")
    if marker < 0:
        report.problems.append("report has no </body>")
        return
    probe.write_text(text[:marker] + PROBE_SCRIPT + text[marker:], encoding="utf-8")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    match = None
    for attempt in range(RETRIES):  # a first-ever start (font cache, profile) can miss the budget
        screenshot.unlink(missing_ok=True)
        proc = run_chromium(
            chromium,
            ["--window-size=1400,1000", "--virtual-time-budget=60000", f"--screenshot={screenshot.resolve()}",
             "--dump-dom", probe.as_uri()],
            workdir / f"profile-{attempt}",
            timeout,
        )
        match = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', proc.stdout, re.S)
        if match:
            break
    if not match:
        report.problems.append(
            f"Chromium did not finish the probe in {RETRIES} tries (exit {proc.returncode}, "
            f"{len(proc.stdout)} bytes of DOM): {proc.stderr.strip()[-300:]}"
        )
        return
    found = json.loads(html.unescape(match.group(1)))
    if not found["app"]:
        report.problems.append("the report's React app did not start in Chromium")
    report.problems += [f"probe error: {err}" for err in found["errors"]]
    report.problems += [f"broken image on the landing page: {src}" for src in found["landing_broken"]]
    rendered = {item["path"]: item for item in found["images"]}
    for path in report.images:
        item = rendered.get(path)
        if item is None or not item["found"]:
            report.problems.append(f"{path}: the app did not show it")
        elif item["width"] == 0 or item["height"] == 0:
            report.problems.append(f"{path}: broken image in Chromium (naturalWidth 0)")
        else:
            report.notes.append(f"{path}: rendered {item['width']}x{item['height']} px")
    if not screenshot.is_file():
        report.problems.append(f"no screenshot written (exit {proc.returncode})")
        return
    blank = screenshot_is_blank(screenshot)
    if blank:
        report.problems.append(f"screenshot {screenshot} is blank: {blank}")
    else:
        report.notes.append(f"screenshot: {screenshot}")


def screenshot_is_blank(path: Path) -> str | None:
    """None when the page shows something; else why it looks blank (one colour, no detail)."""
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        gray = image.convert("L")
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        spread = ImageStat.Stat(gray).stddev[0]
    if colours is not None and len(colours) < 8:
        return f"only {len(colours)} colours"
    if spread < 2.0:
        return f"grey-level std {spread:.2f} < 2"
    return None


def check_report(report_path: Path, screenshot: Path | None = None, chromium: str | None = None,
                 timeout: float = 120.0) -> Report:
    """Run every check; Chromium checks are skipped (with a problem) only when it is missing."""
    report = Report()
    text = report_path.read_text(encoding="utf-8")
    static_check(text, report)
    browser = find_chromium(chromium)
    if browser is None:
        report.problems.append("Chromium not found (install Debian's `chromium`)")
        return report
    with tempfile.TemporaryDirectory(prefix="check-report-") as tmp:
        shot = screenshot or report_path.with_suffix(".screenshot.png")
        rendered_check(text, browser, Path(tmp), shot, report, timeout)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the HTML report (snakemake --report X.html)")
    parser.add_argument("--screenshot", type=Path, help="where to keep the screenshot "
                        "(default: <report>.screenshot.png)")
    parser.add_argument("--chromium", help="Chromium executable (default: search PATH)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per Chromium run")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"check_report: {args.report}: no such file", file=sys.stderr)
        return 2
    if find_chromium(args.chromium) is None:
        print("check_report: Chromium not found; install Debian's `chromium` "
              "(make test-system-deps)", file=sys.stderr)
        return 2
    try:
        result = check_report(args.report, args.screenshot, args.chromium, args.timeout)
    except (ValueError, subprocess.TimeoutExpired) as err:
        print(f"check_report: {args.report}: {err}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"ok: {note}")
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    print(f"{len(result.images)} images checked: {'all render' if result.ok else 'FAILED'}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
