"""Screenshots of the dashboard on a real quick run: reports/dashboard.png while the search runs,
reports/dashboard-finished.png once the run is done (about four minutes on 2 cores); with
--twelve, reports/dashboard-12hp.png instead: a finished search over 12 hyperparameters (no run,
a few seconds), to see the parallel coordinates' titles.

    python -m tests.bench.dashboard_screenshots [--data-dir DIR] [--twelve]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.browser import Output, Watched, chromium
from tests.integration.helpers import env

REPORTS = Path(__file__).resolve().parents[2] / "reports"
FINISHED_ROWS = (
    "(n) => document.querySelectorAll('#trials tbody tr span.status.COMPLETED, "
    "#trials tbody tr span.status.STOPPED').length >= n"
)


def twelve_hyperparameters() -> Path:
    """reports/dashboard-12hp.png: the page of a finished search over 12 hyperparameters."""
    from fmtune import run_state
    from fmtune.dashboard.server import serving
    from tests.unit.test_dashboard import many_hyperparameters_state

    with tempfile.TemporaryDirectory(prefix="fmtune-dashboard-") as folder:
        run_state.save(many_hyperparameters_state(), Path(folder))
        with serving(Path(folder), "127.0.0.1", 0) as server, chromium() as browser:
            page = Watched(browser)
            page.page.goto(server.url)
            page.until("() => document.querySelectorAll('#parallel-chart .axis-title').length === 13")
            REPORTS.mkdir(exist_ok=True)
            path = REPORTS / "dashboard-12hp.png"
            page.page.screenshot(path=str(path), full_page=True)
            if page.errors:
                raise SystemExit(f"console errors: {page.errors}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--in-progress-after", type=int, default=8, help="finished trials before the first shot")
    parser.add_argument("--twelve", action="store_true", help="only reports/dashboard-12hp.png (no run)")
    args = parser.parse_args()
    if args.twelve:
        print(f"wrote {twelve_hyperparameters()}")
        return
    workdir = Path(tempfile.mkdtemp(prefix="fmtune-dashboard-"))
    argv = [
        sys.executable,
        "-m",
        "fmtune",
        "tune",
        "--preset",
        "quick",
        "--workers",
        "2",
        "--fresh",
        "--workdir",
        str(workdir / "runs"),
        "--model-repo",
        str(workdir / "models"),
    ]
    if args.data_dir:
        argv += ["--data-dir", str(args.data_dir)]
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(proc)
    try:
        url = out.wait_for(r"^dashboard: (http://\S+)").group(1)
        out.wait_for(r"\[coordinator\] .*dashboard: http", timeout=300)
        with chromium() as browser:
            page = Watched(browser)
            page.page.goto(url)
            page.until(FINISHED_ROWS, args.in_progress_after, timeout=600)
            REPORTS.mkdir(exist_ok=True)
            page.page.screenshot(path=str(REPORTS / "dashboard.png"), full_page=True)
            page.until("() => ['done', 'failed'].includes(document.getElementById('phase').textContent)", timeout=900)
            page.until("() => document.getElementById('test-accuracy').textContent !== 'n/a'", timeout=60)
            page.page.screenshot(path=str(REPORTS / "dashboard-finished.png"), full_page=True)
            print(f"wrote {REPORTS / 'dashboard.png'} and {REPORTS / 'dashboard-finished.png'}")
            if page.errors:
                raise SystemExit(f"console errors: {page.errors}")
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
