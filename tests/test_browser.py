"""The HTML report as a person sees it: a real headless Chromium loads it.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so the test needs nothing but
the standard library and the browser. It checks that the page logs no console error and
throws no exception, that every plot's image is decoded and has a visible, non-zero box, and
that the screenshot shows the plots: it differs from a blank page's, and each plot's own
colour is on it.

Without a browser the test is skipped on a developer's machine; with
KERASDOCTOR_REQUIRE_BROWSER=1 (which .ci/run sets, after installing Chromium) it fails.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1200
TIMEOUT_S = 60.0
FDS_3_AND_4 = (  # copies first (fd_in < fd_out), so that neither dup2 clobbers the other
    "import os, sys\n"
    "fd_in, fd_out = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2]))\n"
    "os.dup2(fd_in, 3)\n"
    "os.dup2(fd_out, 4)\n"
    "os.set_inheritable(3, True)\n"  # dup2 onto itself keeps the copy's close-on-exec
    "os.set_inheritable(4, True)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def _chromium() -> str | None:
    named = os.environ.get("KERASDOCTOR_CHROMIUM")
    if named:
        return shutil.which(named)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser_required() -> bool:
    return os.environ.get("KERASDOCTOR_REQUIRE_BROWSER", "") not in ("", "0")


class DevTools:
    """A headless Chromium and its DevTools protocol, over pipes."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--window-size={WIDTH},900",
            "about:blank",
        ]
        # the protocol is on the browser's fds 3 (in) and 4 (out): a small Python puts the
        # pipes there and execs the browser (no preexec_fn: this process has threads)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                FDS_3_AND_4,
                str(to_browser_r),
                str(from_browser_w),
                binary,
                *flags,
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort; the kill below is not
            self.call("Browser.close", session=False, timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    err = self._proc.stderr.read().decode(errors="replace")[-2000:]  # type: ignore[union-attr]
                    raise RuntimeError(f"Chromium closed the protocol pipe: {err}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = True,
        timeout: float = TIMEOUT_S,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_for(self, event: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, seen in enumerate(self.events):
            if seen.get("method") == event:
                return self.events.pop(i)
        while True:
            message = self._read_message(deadline)
            if message.get("method") == event:
                return message
            self.events.append(message)

    def open_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def load(self, url: str) -> None:
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"page script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, height: int) -> np.ndarray:
        from matplotlib.image import imread

        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"})
        img: np.ndarray = imread(io.BytesIO(base64.b64decode(shot["data"])), format="png")
        return img[..., :3]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (a failed load, CSP)."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(
                    "console: "
                    + " ".join(
                        str(a.get("value", a.get("description"))) for a in params.get("args", [])
                    )
                )
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(
                    "exception: "
                    + str(details.get("exception", {}).get("description", details.get("text")))
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append("log: " + str(params["entry"].get("text")))
        return found


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[DevTools]:
    binary = _chromium()
    if binary is None:
        message = (
            f"no Chromium ({', '.join(BROWSERS)}, or $KERASDOCTOR_CHROMIUM) on PATH for the "
            "real-browser test"
        )
        if _browser_required():
            pytest.fail(message + " (KERASDOCTOR_REQUIRE_BROWSER is set)")
        pytest.skip(message)
    browser = DevTools(binary, tmp_path / "profile")
    try:
        browser.open_page()
        yield browser
    finally:
        browser.close()


PLOT_BOXES = """
(async () => {
  const figures = [...document.querySelectorAll('figure[data-plot]')];
  await Promise.all(figures.map(f => f.querySelector('img').decode()));
  return figures.map(f => {
    const img = f.querySelector('img');
    const box = img.getBoundingClientRect();
    return {plot: f.dataset.plot, complete: img.complete, natural: [img.naturalWidth,
            img.naturalHeight], box: [box.width, box.height],
            visible: img.checkVisibility({opacityProperty: true, visibilityProperty: true})};
  });
})()
"""

# Each plot has a colour nothing else on the page uses; its pixels are only there when the
# embedded PNG was decoded and drawn: the heatmap's darkest blue, the recall bars' green,
# the prediction bars' blue, the per-feature magnitude bars' purple.
PLOT_COLOURS = {
    "confusion": (0x08, 0x30, 0x6B),
    "recall-support": (0x2E, 0x7D, 0x32),
    "distribution": (0x15, 0x65, 0xC0),
    "input": (0x6A, 0x1B, 0x9A),
}


@pytest.mark.slow
def test_the_html_report_in_a_real_browser(devtools: DevTools, tmp_path: Path) -> None:
    # the harness hears an error when there is one: else "no errors" below proves nothing
    devtools.load("data:text/html,<script>console.error('kd-canary')</script><p>x</p>")
    assert any("kd-canary" in e for e in devtools.errors()), devtools.events
    devtools.events.clear()

    page = tmp_path / "report.html"
    r = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert r.exit_code == 1, r.stderr  # collapsed: the findings fail, the report is written
    html = page.read_text(encoding="utf-8")
    expected = re.findall(r'<figure[^>]* data-plot="([^"]+)"', html)
    assert set(PLOT_COLOURS) <= {kind.split(":")[0] for kind in expected}, expected

    devtools.load(page.as_uri())
    figures = devtools.evaluate(PLOT_BOXES)
    assert [f["plot"] for f in figures] == expected
    for f in figures:
        assert f["complete"] and min(f["natural"]) > 0, f"{f['plot']}: image not decoded: {f}"
        assert min(f["box"]) >= 50 and f["visible"], f"{f['plot']}: not visible: {f}"
    height = int(devtools.evaluate("document.documentElement.scrollHeight"))
    shot = devtools.screenshot(height)
    assert devtools.errors() == [], devtools.errors()

    devtools.load("about:blank")
    blank = devtools.screenshot(height)
    assert shot.shape == blank.shape == (height, WIDTH, 3)
    changed = (np.abs(shot - blank) > 0.1).any(axis=2).mean()
    assert changed > 0.05, f"the report's screenshot is {changed:.1%} away from a blank page"
    for plot, rgb in PLOT_COLOURS.items():
        near = (np.abs(shot - np.array(rgb) / 255.0) < 0.06).all(axis=2).sum()
        assert near > 400, f"{plot}: only {near} pixels of its colour: plot not drawn?"


SAMPLE_BOXES = """
(async () => {
  const imgs = [...document.querySelectorAll('tr[data-sample] img[data-mask]')];
  await Promise.all(imgs.map(i => i.decode()));
  return imgs.map(img => {
    const box = img.getBoundingClientRect();
    return {row: img.closest('tr').dataset.sample, kind: img.dataset.mask,
            complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
            box: [box.width, box.height],
            visible: img.checkVisibility({opacityProperty: true, visibilityProperty: true})};
  });
})()
"""


@pytest.mark.slow
def test_the_dense_sample_masks_in_a_real_browser(devtools: DevTools, tmp_path: Path) -> None:
    from kerasdoctor.render.html import mask_colors

    page = tmp_path / "dense.html"
    r = run_cli(
        "diagnose",
        fixture_path("dense_unet_collapsed.keras"),
        fixture_path("dense_unet_collapsed.npz"),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert r.exit_code == 1, r.stderr
    html = page.read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-sample="(\d+)"', html)
    assert len(rows) == 6, rows

    devtools.load(page.as_uri())
    images = devtools.evaluate(SAMPLE_BOXES)
    assert len(images) == 3 * len(rows)  # input, true mask, predicted mask per sample
    assert [i["kind"] for i in images] == ["input", "true", "pred"] * len(rows)
    assert [i["row"] for i in images[::3]] == rows
    for i in images:
        where = f"sample {i['row']} {i['kind']}"
        assert i["complete"] and min(i["natural"]) > 0, f"{where}: image not decoded: {i}"
        assert min(i["box"]) >= 50 and i["visible"], f"{where}: not visible: {i}"
    height = int(devtools.evaluate("document.documentElement.scrollHeight"))
    shot = devtools.screenshot(height)
    assert devtools.errors() == [], devtools.errors()
    # the true masks' classes are drawn in their palette colours (the 32x32 masks are scaled
    # up 5x, pixelated, so each drawn label pixel is a 5x5 block of its exact colour)
    for name, color in zip(["disc", "square", "bar"], mask_colors(4)[1:]):
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0
        near = (np.abs(shot - rgb) < 0.03).all(axis=2).sum()
        assert near > 400, f"{name} ({color}): only {near} pixels of its colour: not drawn?"
