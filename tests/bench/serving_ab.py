"""Serving A/B: the built-in server of an earlier commit beside today's, on the same model, interleaved.

A host's speed drifts by more than a small change costs (reports/serving.md: the same build's
REST p50 moved by 0.5 ms between runs), so two benchmark runs made minutes apart cannot show
that a change left latency alone. Here both servers run at once, on the same SavedModel, and
short blocks of calls alternate between them: each pair of blocks sees the same host, and the
median of the pairs' differences is the change's cost. Both are called through today's SDK, so
what differs is the server alone.

Run with `python -m tests.bench.serving_ab --before REF` (REF: a commit, checked out in a
temporary git worktree and served from it with PYTHONPATH). Writes reports/serving_ab.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from tests.bench.serving import MODELS, export_model, images, latency_ms, start_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m tests.bench.serving_ab --before {ref}"
CASES = ("grpc_batch1", "rest_batch1", "grpc_batch64", "rest_batch64", "rest_status")


@contextlib.contextmanager
def worktree(ref: str):
    """``ref`` checked out in a temporary directory, removed afterwards; its commit id."""
    commit = subprocess.check_output(["git", "rev-parse", "--short", ref], cwd=ROOT, text=True).strip()
    where = Path(tempfile.mkdtemp(prefix=f"fmtune-{commit}-")) / "tree"
    subprocess.check_call(["git", "worktree", "add", "--detach", "-q", str(where), commit], cwd=ROOT)
    try:
        yield where, commit
    finally:
        subprocess.call(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT)


def paired(before: list[float], after: list[float]) -> dict[str, Any]:
    """Each build's median block p50, and the median of the pairs' differences with their quartiles."""
    differences = sorted(a - b for b, a in zip(before, after, strict=True))
    q1, _, q3 = statistics.quantiles(differences, n=4)
    return {
        "before_p50_ms": statistics.median(before),
        "after_p50_ms": statistics.median(after),
        "difference_ms": statistics.median(differences),
        "difference_q1_ms": q1,
        "difference_q3_ms": q3,
        "after_slower_in": sum(d > 0 for d in differences),
        "pairs": len(differences),
    }


def measure(family: str, before_src: Path, rounds: int, calls: int) -> dict[str, Any]:
    from fmtune.client import FmtuneClient

    _, _, path = export_model(family, MODELS[family])
    repo = path.parents[1]
    one, many = images(1), images(64)
    blocks: dict[str, dict[str, list[float]]] = {case: {"before": [], "after": []} for case in CASES}
    with contextlib.ExitStack() as stack:
        clients = {}
        for build, src in (("before", before_src), ("after", ROOT / "src")):
            grpc_target, rest_target = start_server(stack, repo, src=src)
            grpc = stack.enter_context(FmtuneClient(grpc_target, timeout=30))
            rest = stack.enter_context(FmtuneClient(rest_target, timeout=30))
            clients[build] = {
                "grpc_batch1": partial(grpc.predict, one),
                "rest_batch1": partial(rest.predict, one),
                "grpc_batch64": partial(grpc.predict, many),
                "rest_batch64": partial(rest.predict, many),
                "rest_status": rest.status,
            }
        for i in range(rounds):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")  # neither always goes first
            for case in CASES:
                for build in order:
                    blocks[case][build].append(latency_ms(clients[build][case], calls, warmup=10)["p50_ms"])
    return {case: paired(b["before"], b["after"]) for case, b in blocks.items()}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Serving A/B",
        "",
        f"`{report['command']}` on {report['machine']}: the built-in server at {report['before']} (before) and at "
        f"{report['after']} (after), both running, called through today's SDK in {report['rounds']} interleaved "
        f"rounds of {report['calls']} calls per case and build. Each figure is the median of the rounds' p50s; the "
        "difference is the median of the rounds' paired differences (after - before), with its quartiles.",
        "",
        "| model | case | before p50 | after p50 | difference (q1 to q3) | after slower in |",
        "|---|---|---|---|---|---|",
    ]
    for family, cases in report["models"].items():
        for case, r in cases.items():
            lines.append(
                f"| {family} | {case.replace('_', ' ')} | {r['before_p50_ms']:.3f} ms | {r['after_p50_ms']:.3f} ms "
                f"| {r['difference_ms']:+.3f} ms ({r['difference_q1_ms']:+.3f} to {r['difference_q3_ms']:+.3f}) "
                f"| {r['after_slower_in']} of {r['pairs']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit to compare today's server with")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["mlp"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    after = subprocess.check_output(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True).strip()
    with worktree(args.before) as (tree, commit):
        models = {family: measure(family, tree / "src", args.rounds, args.calls) for family in args.models}
    report = {
        "command": COMMAND.format(ref=args.before),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "before": commit,
        "after": after,
        "rounds": args.rounds,
        "calls": args.calls,
        "models": models,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_ab.json").write_text(json.dumps(report, indent=2))
    (args.out / "serving_ab.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
