"""The package's shape: layers that only import downwards, the search engine apart from the run of
an experiment, no import cycles, and Keras Tuner's internals behind one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "fmtune"
KT_DOOR = "fmtune.tuning.kt_internals"
# Keras Tuner's private attributes and hooks fmtune relies on (see fmtune.tuning.kt_internals).
KT_PRIVATE = re.compile(
    r"\b(keras_tuner\.src|LOCKS|THREADS|_retry_queue|_seed_state|_max_collisions|_duplicate|_vector_to_values|"
    r"_nonfixed_space|_random_populate_space|_random_values|_save_trial|_get_trial_dir|_get_oracle_fname|"
    r"_set_project_dir|_check_consecutive_failures|_build_hypermodel|_run_and_update_trial|_observations|"
    r"_hps|_space|_conditions|_name_scopes|_directory|_project_name)\b|\._oracle\b"
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "_pb2" not in p.name}


def imports(path: Path, known: set[str]) -> set[str]:
    """The fmtune modules a module imports, anywhere in it (lazy and type-checking imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in known}
    return found


# Lowest first; a module may import from its own layer and the ones below, never above. A module
# belongs to the first entry that names it or a package holding it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "fmtune.wire",
            "fmtune.spaces",
            "fmtune.jsonio",
            "fmtune.files",
            "fmtune.text",
            "fmtune.logs",
            "fmtune.usercode",
            "fmtune.layout",
            "fmtune.trials",
            "fmtune.devices",
            "fmtune.aio_server",
            "fmtune.presets",
        ),
    ),
    ("config and data", ("fmtune.config", "fmtune.data")),
    ("records", ("fmtune.results", "fmtune.run_state")),
    (
        "models, training, export, serving and the client",
        ("fmtune.models", "fmtune.pacing", "fmtune.training", "fmtune.export", "fmtune.serving", "fmtune.client"),
    ),
    ("search engine", ("fmtune.tuning",)),
    ("views and deployment", ("fmtune.dashboard", "fmtune.report", "fmtune.deploy", "fmtune.redeploy")),
    ("run of an experiment", ("fmtune.run",)),
    ("command line and notebook", ("fmtune.cli", "fmtune.__main__", "fmtune.predict", "fmtune.notebook")),
]
# The search engine decides; it knows nothing of what its trials train, nor of records or views.
ENGINE_MAY_IMPORT = ("fmtune.tuning", "fmtune.config", *LAYERS[0][1])


def layer_of(name: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in modules() if name != "fmtune" and layer_of(name) is None)
    assert not unplaced, f"place these in LAYERS: {unplaced}"


def test_layers_only_import_downwards() -> None:
    found = modules()
    upward = []
    for name, path in found.items():
        here = layer_of(name)
        for dep in imports(path, set(found)):
            there = layer_of(dep)
            if here is not None and there is not None and there > here:
                upward.append(f"{name} ({LAYERS[here][0]}) imports {dep} ({LAYERS[there][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_the_search_engine_imports_nothing_of_the_application() -> None:
    found = modules()
    outside = [
        f"{name} imports {dep}"
        for name, path in found.items()
        if name.startswith("fmtune.tuning")
        for dep in imports(path, set(found))
        if dep != "fmtune" and not any(dep == p or dep.startswith(p + ".") for p in ENGINE_MAY_IMPORT)
    ]
    assert not outside, "\n".join(sorted(outside))


def test_no_source_module_is_over_350_lines() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 350}
    assert not long, long


def test_no_module_imports_one_that_imports_it_back() -> None:
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    for name in graph:  # a package's __init__ re-exporting its own modules is not a cycle
        graph[name] = {d for d in graph[name] if not (d.startswith(name + ".") or name.startswith(d + "."))}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(" -> ".join([*path, dep]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_the_search_space_types_are_a_leaf() -> None:
    found = modules()
    assert imports(found["fmtune.spaces"], set(found)) == set()
    assert "keras" not in found["fmtune.spaces"].read_text()


@pytest.mark.parametrize("name", sorted(set(modules()) - {KT_DOOR}))
def test_keras_tuner_internals_stay_behind_one_module(name: str) -> None:
    path = modules()[name]
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if KT_PRIVATE.search(line.split("#")[0])
    ]
    assert not hits, "\n".join(hits)
