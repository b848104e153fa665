"""A real browser for tests: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("FMTUNE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium browser; fails, naming the fix, where there is none."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise AssertionError("playwright is not installed: pip install playwright (make test does)") from exc
    if not CHROMIUM.is_file():
        raise AssertionError(f"{CHROMIUM} is missing: run scripts/install-apt.sh chromium=/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page with its console errors, uncaught exceptions and dialogs recorded."""

    def __init__(self, browser: Any, width: int = 1400, height: int = 1000):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def until(self, script: str, arg: Any = None, timeout: float = 60) -> Any:
        """Wait until the JavaScript expression ``script`` (a function of ``arg``) is truthy."""
        return self.page.wait_for_function(script, arg=arg, timeout=timeout * 1000).json_value()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


class Output:
    """A process's output, read by a thread (so its pipe never fills) and searchable as it comes."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # the end
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                ended = bool(self.lines) and self.lines[-1] == ""
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    raise AssertionError(f"never saw {pattern!r}:\n{self.text()[-4000:]}")
                self._changed.wait(left)

    def text(self) -> str:
        return "".join(self.lines)


# Each parallel-coordinates title as drawn: its text box (before its rotation) carried through the
# element's transform onto the page, as four corners; the chart's own box, and its heading's.
TITLE_BOXES = """() => {
  const chart = document.querySelector('#parallel-chart .main-svg').getBoundingClientRect();
  const titles = [...document.querySelectorAll('#parallel-chart .axis-title')].map((t) => {
    const b = t.getBBox(), m = t.getScreenCTM();
    const corners = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => { const p = new DOMPoint(x, y).matrixTransform(m); return [p.x, p.y]; });
    return { text: t.textContent, corners };
  });
  const heading = document.querySelector('#parallel-chart .gtitle').getBoundingClientRect();
  const title = [[heading.left, heading.top], [heading.right, heading.top], [heading.right, heading.bottom],
    [heading.left, heading.bottom]];
  return { chart: [chart.left, chart.top, chart.right, chart.bottom], titles, title };
}"""


def overlapping(p: list[list[float]], q: list[list[float]], slack: float = 0.5) -> bool:
    """Whether two convex quadrilaterals overlap by more than ``slack`` pixels (separating axes)."""
    for poly in (p, q):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            nx, ny = y2 - y1, x1 - x2
            norm = (nx * nx + ny * ny) ** 0.5 or 1.0
            a = [(nx * x + ny * y) / norm for x, y in p]
            b = [(nx * x + ny * y) / norm for x, y in q]
            if max(a) <= min(b) + slack or max(b) <= min(a) + slack:
                return False
    return True
