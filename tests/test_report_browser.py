"""The HTML report in a real browser: headless Chromium runs the page's script, we read the
DOM it leaves (--dump-dom) and compare the grid with the JSON report, and take a
screenshot (kept as <pytest basetemp>/report.png for a person to look at).

Needs Debian's `chromium` package (apt-get install -y chromium); CI installs it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from orchestrator.report import to_html
from tests.test_reports import realistic_report

WINDOW = (1400, 1000)
FAILED_JOB = "cp311-manylinux_2_31_x86_64"
# The page's light-theme cell backgrounds (report.css --failed-bg and --ok-bg).
FAILED_BG = (0xFD, 0xE2, 0xE1)
OK_BG = (0xDC, 0xF3, 0xE3)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the HTML report test: apt-get install -y chromium")


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    cmd = [
        _chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


class _Dom(HTMLParser):
    """Elements with an id or a data-job attribute, their attributes and text, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, Any]] = []
        self.html_class = ""
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.html_class = a.get("class", "")
        for el in self._open:
            el["depth"] += 1
        if "id" in a or "data-job" in a:
            el = {"tag": tag, "attrs": a, "text": [], "depth": 0}
            self.elements.append(el)
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        for el in list(self._open):
            if el["depth"] == 0:
                self._open.remove(el)
            else:
                el["depth"] -= 1

    def handle_data(self, data: str) -> None:
        for el in self._open:
            el["text"].append(data)

    def by_id(self, ident: str) -> dict[str, Any]:
        found = [e for e in self.elements if e["attrs"].get("id") == ident]
        assert found, f"no element #{ident} in the DOM"
        return found[0]

    def cells(self) -> list[dict[str, str]]:
        return [
            e["attrs"]
            for e in self.elements
            if e["tag"] == "td" and "cell" in e["attrs"].get("class", "")
        ]


def _dom(tmp_path: Path, url: str) -> _Dom:
    dom = _Dom()
    dom.feed(_browser(tmp_path, "--dump-dom", url).stdout)
    assert "js" in dom.html_class.split(), "the page's script did not run"
    return dom


@pytest.fixture
def page(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    report = realistic_report()
    path = tmp_path / "report.html"
    path.write_text(to_html(report), encoding="utf-8")
    return report, path


def test_grid_matches_the_report_and_the_failure_comes_first(
    page: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    report, path = page
    dom = _dom(tmp_path, path.as_uri())

    cells = {c["data-job"]: c for c in dom.cells() if c.get("data-status") != "none"}
    assert set(cells) == {j["id"] for j in report["jobs"]}
    for job in report["jobs"]:
        cell = cells[job["id"]]
        assert (
            cell["data-status"],
            cell["data-python"],
            cell["data-arch"],
            cell["data-policy"],
        ) == (
            job["status"],
            job["python"],
            job["arch"],
            job["policy"],
        )
        assert f"st-{job['status']}" in cell["class"].split()
    # Failures above the grid, and the first one opened in the panel.
    order = [
        e["attrs"].get("id") for e in dom.elements if e["attrs"].get("id") in ("failures", "matrix")
    ]
    assert order == ["failures", "matrix"]
    problems = [
        e["attrs"]["data-job"]
        for e in dom.elements
        if e["tag"] == "li" and "data-job" in e["attrs"]
    ]
    assert problems == [FAILED_JOB]
    assert dom.by_id("panel")["attrs"]["data-job"] == FAILED_JOB
    detail = dom.by_id(f"detail-{FAILED_JOB}")
    assert "shown" in detail["attrs"]["class"].split()
    text = "".join(detail["text"])
    assert "needs GLIBC_2.34 > 2.31" in text and "memcpy@GLIBC_2.34 from libc.so.6" in text
    assert "selected" in cells[FAILED_JOB]["class"].split()
    shown = [
        e["attrs"]["id"] for e in dom.elements if "shown" in e["attrs"].get("class", "").split()
    ]
    assert shown == [f"detail-{FAILED_JOB}"]


def test_an_address_fragment_opens_that_job(
    page: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    report, path = page
    ok_job = next(j for j in report["jobs"] if j["status"] == "ok" and j["emulated"])
    dom = _dom(tmp_path, f"{path.as_uri()}#job={ok_job['id']}")
    assert dom.by_id("panel")["attrs"]["data-job"] == ok_job["id"]
    text = "".join(dom.by_id(f"detail-{ok_job['id']}")["text"])
    assert ok_job["wheel"]["filename"] in text and "imports ok" in text and "yes (QEMU)" in text


def test_screenshot(
    page: tuple[dict[str, Any], Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _report, path = page
    shot = tmp_path / "report.png"
    _browser(tmp_path, f"--screenshot={shot}", path.as_uri())

    width, height, pixels = _read_png(shot.read_bytes())
    assert (width, height) == WINDOW
    # The coloured cells are there: some failed-red and more ok-green background.
    failed = sum(1 for p in pixels if _near(p, FAILED_BG))
    ok = sum(1 for p in pixels if _near(p, OK_BG))
    assert failed > 2000 and ok > 3 * 2000, (failed, ok)
    shutil.copy(shot, tmp_path_factory.getbasetemp() / "report.png")


def _near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 3 for a, b in zip(pixel, colour, strict=True))


def _read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit RGB/RGBA, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    channels = 4 if colour == 6 else 3
    rows = _unfilter(zlib.decompress(idat), width * channels, channels, height)
    pixels = [(r[i], r[i + 1], r[i + 2]) for r in rows for i in range(0, len(r), channels)]
    return width, height, pixels


def _unfilter(raw: bytes, stride: int, bpp: int, height: int) -> list[bytes]:
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, up_left = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, up_left)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return rows


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


# --- a failed verification: the cause is on screen without scrolling -----------------------

PIP_ERROR = "ERROR: Package 'pyyaml' requires a different Python: 3.9.2 not in '>=3.10'"
# Measures the page after its script ran and leaves the numbers in the DOM for --dump-dom.
PROBE = """<script>
window.addEventListener("load", function () {
  var cause = document.querySelector("#failures .cause");
  var log = document.querySelector(".detail.shown pre.log");
  var r = cause.getBoundingClientRect();
  var probe = document.createElement("div");
  probe.id = "probe";
  probe.setAttribute("data-cause", [r.left, r.top, r.right, r.bottom].join(","));
  probe.setAttribute("data-viewport", window.innerWidth + "," + window.innerHeight);
  probe.setAttribute("data-log-at-end", log.scrollTop + log.clientHeight >= log.scrollHeight - 2);
  probe.setAttribute("data-log-scrolls", log.scrollHeight > log.clientHeight);
  document.body.appendChild(probe);
});
</script>"""


def _failed_verification_report() -> dict[str, Any]:
    from orchestrator.report.cause import first_error_line

    report = realistic_report()
    job = next(j for j in report["jobs"] if j["status"] == "failed")
    log = [
        "==> [  30.1s] verify",
        "$ python -m pip install /orch/verify/depsdemo-1.0-cp311-cp311-manylinux_2_31_x86_64.whl",
        *(
            f"  setuptools licence notice, line {i}: permission is hereby granted"
            for i in range(40)
        ),
        PIP_ERROR,
    ]
    job.update(
        failed_stage="verify",
        error="verification failed in orch-local/runtime: verify: install failed with exit "
        "code 1; see the log",
        cause=first_error_line(log),
        log_tail=log[-25:],
        audit=None,
    )
    return report


def test_failed_verification_shows_the_pip_error_without_scrolling(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "failed.html"
    page.write_text(to_html(_failed_verification_report()).replace("</body>", PROBE + "</body>"))

    dom = _dom(tmp_path, page.as_uri())
    failures = "".join(dom.by_id("failures")["text"])
    assert PIP_ERROR in failures, failures
    probe = dom.by_id("probe")["attrs"]
    left, top, right, bottom = (float(x) for x in probe["data-cause"].split(","))
    width, height = (int(x) for x in probe["data-viewport"].split(","))
    assert 0 <= top < bottom <= height and 0 <= left < right <= width, probe
    # The log tail in the panel scrolls, and opens at its end (the pip line).
    assert probe["data-log-scrolls"] == "true" and probe["data-log-at-end"] == "true", probe

    shot = tmp_path / "failed.png"
    _browser(tmp_path, f"--screenshot={shot}", page.as_uri())
    w, _h, pixels = _read_png(shot.read_bytes())
    box = [
        pixels[y * w + x]
        for y in range(int(top) + 1, int(bottom) - 1)
        for x in range(int(left) + 1, int(right) - 1)
    ]
    # The cause box is painted where the probe found it: its background, and dark text on it.
    assert sum(_near(p, FAILED_BG) for p in box) > len(box) // 2, "no cause box on screen"
    assert any(sum(p) < 200 for p in box), "no text in the cause box"
    shutil.copy(shot, tmp_path_factory.getbasetemp() / "failed-verification.png")
