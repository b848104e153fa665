"""One report from the benchmarks' parts: reports/bench.json and reports/bench.md.

Each part (accuracy, elpv, precision, serving, capacity, efficiency) writes its own JSON and Markdown, so one
part can be re-run alone; this gathers whatever parts are there. Run by `make bench` last.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTS = ("accuracy", "elpv", "precision", "serving", "capacity", "efficiency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    present = [p for p in PARTS if (args.out / f"{p}.json").exists()]
    combined = {p: json.loads((args.out / f"{p}.json").read_text()) for p in present}
    (args.out / "bench.json").write_text(json.dumps(combined, indent=2))
    sections = [(args.out / f"{p}.md").read_text().replace("\n# ", "\n## ").replace("# ", "## ", 1) for p in present]
    missing = [p for p in PARTS if p not in present]
    note = f"\nNot measured in this run: {', '.join(missing)}.\n" if missing else ""
    text = (
        "# fmtune benchmarks\n\nEvery figure below was measured by `make bench` on the machine named in each section.\n"
    )
    (args.out / "bench.md").write_text(text + note + "\n" + "\n".join(sections))
    print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.json'} ({', '.join(present)})")


if __name__ == "__main__":
    main()
