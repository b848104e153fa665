"""reports/accuracy.png: best validation accuracy against wall time, one panel per preset, with
fmtune's runs, its shorter-budget runs, the baselines and vanilla Keras Tuner."""

from __future__ import annotations

from pathlib import Path

from tests.bench.accuracy_report import best_so_far


def plot(report: dict, path: Path) -> Path:
    """Best validation accuracy against wall time, fmtune's runs and vanilla's, one panel per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = report["presets"]
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4.2), squeeze=False)
    for ax, (name, p) in zip(axes[0], presets.items(), strict=True):
        ys: list[float] = []
        for i, r in enumerate(p["runs"], 1):
            xs, bests = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            (line,) = ax.step(xs, bests, where="post", label=f"fmtune run {i}")
            ax.plot(r["wall_s"] / 60, r["test_accuracy"], "*", ms=12, color=line.get_color())
            ys += [*bests, r["test_accuracy"]]
        for r in p.get("shorter", []):
            xs, bests = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            (line,) = ax.step(xs, bests, where="post", lw=0.9, label=f"fmtune, {r['budget_minutes']:g} min budget")
            ax.plot(r["wall_s"] / 60, r["test_accuracy"], "*", ms=10, color=line.get_color())
            ys += [*bests, r["test_accuracy"]]
        for method, rows in (p.get("baselines") or {}).items():
            for j, b in enumerate(rows, 1):
                label = f"{method} run {j}"
                if b.get("trials_ended"):
                    xs, bests = zip(*best_so_far(map(tuple, b["trials_ended"])), strict=True)
                    (line,) = ax.step(xs, bests, where="post", ls="-.", lw=0.9, label=label)
                    ys += bests
                    label, colour = "_", line.get_color()
                else:
                    colour = "grey"
                ax.plot(
                    b["wall_s"] / 60,
                    b["test_accuracy"],
                    "D" if method == "centre" else "P",
                    ms=7,
                    color=colour,
                    label=label,
                )
                ys.append(b["test_accuracy"])
        if v := p.get("vanilla"):
            xs, bests = zip(*v["curve"], strict=True) if v["curve"] else ((), ())
            ax.step(xs, bests, where="post", color="black", ls="--", label="vanilla KT RandomSearch")
            ax.plot(v["wall_seconds"] / 60, v["test_accuracy"], "X", ms=10, color="black")
            ys += [*bests, v["test_accuracy"]]
        ax.axvline(p["budget_minutes"], color="grey", lw=0.8, ls=":", label="budget")
        ax.axhline(p["target_accuracy"], color="red", lw=0.8, ls=":", label="target (test)")
        ys.append(p["target_accuracy"])
        ax.set_ylim(max(min(ys), max(ys) - 0.1) - 0.005, max(ys) + 0.005)  # the last 10 points, where runs differ
        ax.set(title=f"{name} ({p['dataset']})", xlabel="minutes since start", ylabel="best val accuracy so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Best validation accuracy against wall time (markers: test accuracy at the end)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
