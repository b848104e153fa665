"""Runs made by hand, added to the accuracy report (reports/accuracy.json, .md and .png) beside the
bench's own, so that a long run measured once need not be measured again to be reported.

A run made by hand is one fresh ``fmtune tune`` in its own directory, under GNU time, with nothing
else running, just as the bench starts it:

    /usr/bin/time -v fmtune tune --preset mnist --set seed=S --workers 2 --fresh \\
        --workdir DIR/runs --model-repo DIR/models > DIR/log 2>&1

Its wall time is GNU time's (the whole process, as the bench's), and it started that long before its
log was last written. A baseline is tests/bench/baselines.py's JSON record, as the bench keeps it.

    python -m tests.bench.adopt mnist --run DIR [--run DIR ...] [--baseline FILE ...] [--replace]

With --replace, the preset's runs and baselines in the report are replaced (its vanilla side-by-side
stays); otherwise these are added to them.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from tests.bench.accuracy import finished
from tests.bench.accuracy_report import PRESETS, new_entry, run_row, summary, write

GNU_TIME_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)")
GNU_TIME_STATUS = re.compile(r"Exit status: (\d+)")


def wall_seconds(log: Path) -> float:
    """The wall time GNU time (``-v``) reported at the end of ``log``.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "log"
    >>> _ = log.write_text("...\\n\\tElapsed (wall clock) time (h:mm:ss or m:ss): 29:41.52\\n\\tExit status: 0\\n")
    >>> wall_seconds(log)
    1781.52
    """
    text = log.read_text(errors="replace")
    wall, status = GNU_TIME_WALL.findall(text), GNU_TIME_STATUS.findall(text)
    if not wall or not status:
        raise SystemExit(f"{log}: no report from GNU time at its end; run fmtune under /usr/bin/time -v")
    if status[-1] != "0":
        raise SystemExit(f"{log}: fmtune tune exited {status[-1]}")
    seconds = 0.0
    for part in wall[-1].split(":"):
        seconds = seconds * 60 + float(part)
    return round(seconds, 2)


def adopted_run(directory: Path, preset: str) -> dict[str, Any]:
    """The bench's row for one run made by hand in ``directory``."""
    log = directory / "log"
    wall = wall_seconds(log)
    res, counted = finished(directory)
    if res.experiment != preset:
        raise SystemExit(f"{directory}: a run of preset {res.experiment!r}, not {preset!r}")
    return {**run_row(res, wall, log.stat().st_mtime - wall, counted, PRESETS[preset]), "by_hand": True}


def adopted_baseline(file: Path, preset: str) -> dict[str, Any]:
    record = json.loads(file.read_text())
    if record.get("preset") != preset or "baseline" not in record:
        raise SystemExit(f"{file}: not a baseline record of preset {preset!r} (tests/bench/baselines.py)")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=list(PRESETS))
    parser.add_argument("--run", type=Path, action="append", default=[], help="a run's directory (DIR above)")
    parser.add_argument("--baseline", type=Path, action="append", default=[], help="a baseline's JSON record")
    parser.add_argument("--replace", action="store_true", help="replace the preset's runs and baselines")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()

    runs = [adopted_run(d, args.preset) for d in args.run]
    baselines = [adopted_baseline(f, args.preset) for f in args.baseline]
    report = json.loads((args.out / "accuracy.json").read_text())
    preset = PRESETS[args.preset]
    kept = report["presets"].get(args.preset)
    entry = kept if kept and not args.replace else new_entry(preset) | {"vanilla": (kept or {}).get("vanilla")}
    report["presets"][args.preset] = entry
    entry["runs"] += runs
    for record in baselines:
        entry.setdefault("baselines", {}).setdefault(record["baseline"], []).append(record)
    if not entry["runs"]:
        raise SystemExit(f"{args.preset}: no runs to report")
    entry["budget_minutes"] = entry["runs"][-1]["budget_minutes"] or preset.budget_minutes
    entry["summary"] = summary(entry["runs"], preset)
    write(report, args.out)
    print(f"{args.preset}: {len(runs)} run(s) and {len(baselines)} baseline(s) added to {args.out / 'accuracy.md'}")


if __name__ == "__main__":
    main()
