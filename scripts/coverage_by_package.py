"""Line coverage per package of fmtune, from coverage.py's JSON report, as a Markdown table.

Usage: python scripts/coverage_by_package.py build/coverage.json > reports/coverage.md (as `make coverage` does)
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path, PurePath


def package(path: str) -> str:
    """``src/fmtune/serving/rest_api.py`` -> ``fmtune.serving``; modules at the top -> ``fmtune``."""
    parts = PurePath(path).parts
    inner = parts[parts.index("fmtune") :]
    return ".".join(inner[:2]) if len(inner) > 2 else "fmtune"


def main(report: str) -> None:
    files = json.loads(Path(report).read_text())["files"]
    statements: dict[str, int] = defaultdict(int)
    covered: dict[str, int] = defaultdict(int)
    for path, data in files.items():
        statements[package(path)] += data["summary"]["num_statements"]
        covered[package(path)] += data["summary"]["covered_lines"]
    print("# Line coverage per package\n")
    print(
        "Command: `make coverage` (the fast suite, `pytest -m 'not slow' --cov=fmtune`, with the processes the"
        " tests start measured too; generated protobuf modules left out). Reported, not enforced.\n"
    )
    print("| package | statements | covered | coverage |")
    print("|---|---|---|---|")
    for name in sorted(name for name, count in statements.items() if count):
        print(f"| {name} | {statements[name]} | {covered[name]} | {100 * covered[name] / statements[name]:.1f}% |")
    total, hit = sum(statements.values()), sum(covered.values())
    print(f"| **all** | {total} | {hit} | **{100 * hit / total:.1f}%** |")


if __name__ == "__main__":
    main(sys.argv[1])
