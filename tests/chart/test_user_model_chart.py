"""A user's own model and images through the chart: model.hypermodel (from an image built FROM
fmtune's, or one module given as model.source and mounted from a ConfigMap) and data.*."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .test_chart import by_kind, config_map, job, notes, pod_specs
from .tools import CHART, KUBERNETES_VERSIONS, helm, objects, render, validator

pytestmark = pytest.mark.timeout(300)

PLUGINS = "/opt/fmtune/plugins"
HYPERMODEL = "my_model:build_model"
# Text that careless quoting in the ConfigMap would mangle: an indented first line,
# tabs, trailing blanks, quotes, template braces, non-ASCII, and no final newline.
SOURCE = (
    "    # my_model: a build_model(hp) for fmtune, passed with --set-file  \n"
    '"""An indented comment first: YAML must not take its indent for the block\'s."""\n'
    "import os\n"
    "\n"
    "def build_model(hp):\t# {{ not a template }}\n"
    '    return {"units": hp, "é": "ü"}\n'
    "\n"
    "WHERE = os.path.dirname(__file__)"
)
# Every data value, rendered into the experiment's data section (a folder on the chart's claim).
DATA = (
    "--set", "data.kind=folder",
    "--set", "data.path=images/clothes/",
    "--set", "data.imageSize={64,48}",
    "--set", "data.colorMode=rgb",
    "--set-json", "data.testFraction=0.25",
    "--set-json", "data.valFraction=0.15",
    "--set", "data.classNames={shirt,shoe,bag}",
    "--set", "data.name=clothes",
    "--set", "data.flipInvariant=false",
    "--set", "data.darkBackground=true",
)  # fmt: skip


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_bytes(SOURCE.encode())
    return path


def user_model(source_file: Path, hypermodel: str = HYPERMODEL) -> tuple[str, ...]:
    return ("--set-file", f"model.source={source_file}", "--set", f"model.hypermodel={hypermodel}")


def model_config_map(docs: list[dict]) -> dict | None:
    found = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "fmtune-model"]
    return found[0] if found else None


def experiment(docs: list[dict]) -> dict:
    return dict(yaml.safe_load(config_map(docs)["data"]["experiment.yaml"]))


def pod(docs: list[dict], component: str) -> tuple[dict, dict]:
    """The pod template's metadata and spec of the coordinator or the workers."""
    template = job(docs, component)["spec"]["template"]
    return template["metadata"], template["spec"]


def env(spec: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}


def mounts(spec: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}


def volumes(spec: dict) -> dict[str, dict]:
    return {v["name"]: v for v in spec["volumes"]}


@pytest.mark.parametrize("major", [3, 4])
def test_the_source_is_kept_under_the_module_name(major: int, source_file: Path) -> None:
    docs = objects(render(major, "default", *user_model(source_file)).stdout)
    cm = model_config_map(docs)
    assert cm is not None and cm["data"] == {"my_model.py": SOURCE}  # byte for byte


@pytest.mark.parametrize(
    "text",
    [
        "import keras\n\n\ndef build_model(hp):\n    return keras.Sequential()\n",  # a literal block
        "    # an indented first line, in a literal block with an indentation indicator\nx = 1\n",
        "x = 1  \n" + "y = '" + "long line " * 30 + "'\n",  # trailing blanks: a folded quoted string
        "x = 1",
    ],
)
@pytest.mark.parametrize("major", [3, 4])
def test_any_module_text_survives_the_configmap(major: int, text: str, tmp_path: Path) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(text)
    cm = model_config_map(objects(render(major, "default", *user_model(path)).stdout))
    assert cm is not None and cm["data"] == {"my_model.py": text}


@pytest.mark.parametrize("component", ["coordinator", "worker"])
def test_the_coordinator_and_every_worker_mount_it_read_only_on_pythonpath(component: str, source_file: Path) -> None:
    docs = objects(render(4, "default", *user_model(source_file)).stdout)
    metadata, spec = pod(docs, component)
    mount = mounts(spec)[PLUGINS]
    assert mount["readOnly"] is True
    assert volumes(spec)[mount["name"]] == {"name": mount["name"], "configMap": {"name": "fmtune-model"}}
    assert env(spec)["PYTHONPATH"] == PLUGINS
    checksum = hashlib.sha256(SOURCE.encode()).hexdigest()
    assert metadata["annotations"]["checksum/model-source"] == checksum
    assert job(docs, component)["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/fmtune:0.1.0"


def test_only_the_pods_that_run_the_model_get_it(source_file: Path) -> None:
    docs = objects(render(4, "default", *user_model(source_file), "--set", "tensorboard.enabled=true").stdout)
    for name, spec in pod_specs(docs):
        has_it = PLUGINS in mounts(spec)
        assert has_it is name.startswith(("fmtune-coordinator-", "fmtune-workers-")), name
        assert ("PYTHONPATH" in env(spec)) is has_it, name


def test_the_module_imports_by_its_name_from_the_mounted_directory(source_file: Path, tmp_path: Path) -> None:
    """What kubelet does with the ConfigMap (one file per key) and what Python does with the pod's
    PYTHONPATH: `my_model:build_model` resolves."""
    docs = objects(render(4, "default", *user_model(source_file)).stdout)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (tmp_path / "elsewhere").mkdir()  # not where the file given to --set-file is
    for key, text in (model_config_map(docs) or {})["data"].items():
        (plugins / key).write_text(text)
    _, spec = pod(docs, "worker")
    pythonpath = str(env(spec)["PYTHONPATH"]).replace(PLUGINS, str(plugins))
    module, attr = experiment(docs)["search"]["hypermodel"].split(":")
    probe = f"import {module}; print({module}.{attr}(3)['units'], {module}.WHERE)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path / "elsewhere",
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", str(plugins)]


@pytest.mark.parametrize("major", [3, 4])
def test_the_experiment_config_names_the_hypermodel(major: int, source_file: Path) -> None:
    docs = objects(render(major, "default", *user_model(source_file)).stdout)
    assert experiment(docs)["search"] == {"hypermodel": HYPERMODEL}
    # From an image (the first way): no ConfigMap, nothing mounted, the image the values give.
    image = ("--set", "image.repository=registry.example/me/fmtune-mine", "--set", "image.tag=1.2")
    docs = objects(render(major, "default", "--set", "model.hypermodel=my_package.models:build_model", *image).stdout)
    assert experiment(docs)["search"] == {"hypermodel": "my_package.models:build_model"}
    assert model_config_map(docs) is None
    for component in ("coordinator", "worker"):
        metadata, spec = pod(docs, component)
        assert spec["containers"][0]["image"] == "registry.example/me/fmtune-mine:1.2"
        assert PLUGINS not in mounts(spec) and "PYTHONPATH" not in env(spec)
        assert "checksum/model-source" not in metadata["annotations"]


def test_the_rendered_config_loads_as_the_pods_load_it(source_file: Path, tmp_path: Path) -> None:
    """`fmtune coordinator --preset P --config experiment.yaml`, as in the pods."""
    from fmtune import config

    docs = objects(render(4, "default", *user_model(source_file), "--set", "experiment.preset=standard").stdout)
    path = tmp_path / "experiment.yaml"
    path.write_text(config_map(docs)["data"]["experiment.yaml"])
    preset = job(docs, "coordinator")["spec"]["template"]["spec"]["containers"][0]["args"][2]
    cfg = config.load(preset, path, environ={})
    assert (cfg.search.hypermodel, cfg.search.model) == (HYPERMODEL, HYPERMODEL)
    assert cfg.data is None  # no data values: the preset's IDX dataset, as before


def test_the_defaults_add_nothing() -> None:
    docs = objects(render().stdout)
    assert model_config_map(docs) is None
    assert "search" not in experiment(docs) and "data" not in experiment(docs)
    for component in ("coordinator", "worker"):
        metadata, spec = pod(docs, component)
        assert "checksum/model-source" not in metadata["annotations"]
        assert "PYTHONPATH" not in env(spec)
        assert not [path for path in mounts(spec) if path.startswith(("/data/images", PLUGINS))]


def test_a_changed_source_reaches_new_pods_and_changes_no_experiment_field(source_file: Path, tmp_path: Path) -> None:
    """Jobs are named per revision (every upgrade runs new pods, which mount the ConfigMap as it is
    then); the pods carry the source's checksum; the experiment config stays the same."""
    before = objects(render(4, "default", *user_model(source_file)).stdout)
    changed = tmp_path / "changed.py"
    changed.write_text(SOURCE + "\nVERSION = 2\n")
    after = objects(render(4, "default", *user_model(changed)).stdout)
    assert model_config_map(after)["data"]["my_model.py"].endswith("VERSION = 2\n")  # type: ignore[index]
    for component in ("coordinator", "worker"):
        old, new = pod(before, component)[0], pod(after, component)[0]
        assert old["annotations"]["checksum/model-source"] != new["annotations"]["checksum/model-source"]
        assert old["annotations"]["checksum/config"] == new["annotations"]["checksum/config"]
        assert job(after, component)["metadata"]["name"].endswith("-r1")  # fmtune.jobSuffix: the revision
    assert config_map(before) == config_map(after)


def data_section(*args: str) -> dict | None:
    return experiment(objects(render(4, "default", *args).stdout)).get("data")


def test_the_data_values_map_to_the_config_data_section() -> None:
    from fmtune.data.source import DataSourceConfig

    section = data_section(*DATA)
    assert section == {
        "kind": "folder",
        "path": "/data/images/clothes",
        "name": "clothes",
        "image_size": [64, 48],
        "color_mode": "rgb",
        "test_fraction": 0.25,
        "val_fraction": 0.15,
        "class_names": ["shirt", "shoe", "bag"],
        "flip_invariant": False,
        "dark_background": True,
    }
    source = DataSourceConfig.model_validate(section)  # what the pods' config holds
    assert source.image_size == (64, 48) and source.class_names == ("shirt", "shoe", "bag")


@pytest.mark.parametrize("component", ["coordinator", "worker"])
def test_a_relative_path_is_read_only_from_the_charts_claim(component: str) -> None:
    _, spec = pod(objects(render(4, "default", *DATA).stdout), component)
    mount = mounts(spec)["/data/images/clothes"]
    assert mount == {"name": "data", "mountPath": "/data/images/clothes", "subPath": "images/clothes", "readOnly": True}
    assert volumes(spec)["data"]["persistentVolumeClaim"]["claimName"] == "fmtune-data"


@pytest.mark.parametrize(
    ("args", "section", "volume"),
    [
        # A claim of images by name, an .npz in it.
        (
            ("--set", "data.kind=npz", "--set", "data.volume=my-images", "--set", "data.path=sets/x.npz"),
            {"kind": "npz", "path": "/data/images/sets/x.npz"},
            {"persistentVolumeClaim": {"claimName": "my-images", "readOnly": True}},
        ),
        # Any volume source: the class folders at its root.
        (
            ("--set", "data.kind=folder", "--set", "data.volume.hostPath.path=/srv/images"),
            {"kind": "folder", "path": "/data/images"},
            {"hostPath": {"path": "/srv/images"}},
        ),
        # A loader reads what it likes (here from the volume); the module may be model.source's.
        (
            ("--set", "data.kind=loader", "--set", "data.loader=my_model:load_data", "--set", "data.volume=pics"),
            {"kind": "loader", "loader": "my_model:load_data"},
            {"persistentVolumeClaim": {"claimName": "pics", "readOnly": True}},
        ),
        # A path inside the image: nothing mounted.
        (
            ("--set", "data.kind=npz", "--set", "data.path=/opt/data/x.npz"),
            {"kind": "npz", "path": "/opt/data/x.npz"},
            None,
        ),
        # An IDX dataset: not downloaded, as the chart's default dataset is not.
        (
            ("--set", "data.kind=idx", "--set", "data.name=mnist"),
            {"kind": "idx", "name": "mnist", "download": False},
            None,
        ),
    ],
)
def test_data_from_a_volume_or_the_image(args: tuple[str, ...], section: dict, volume: dict | None) -> None:
    from fmtune.data.source import DataSourceConfig

    docs = objects(render(4, "default", *args).stdout)
    assert experiment(docs)["data"] == section
    DataSourceConfig.model_validate(section)
    for component in ("coordinator", "worker"):
        _, spec = pod(docs, component)
        if volume is None:
            assert not [path for path in mounts(spec) if path.startswith("/data/images")]
            assert "images" not in volumes(spec)
        else:
            assert mounts(spec)["/data/images"] == {"name": "images", "mountPath": "/data/images", "readOnly": True}
            assert volumes(spec)["images"] == {"name": "images", **volume}


def test_the_data_values_go_over_experiment_overrides_data() -> None:
    section = data_section(
        "--set", "data.kind=folder", "--set", "data.path=/x", "--set", "experiment.overrides.data.dark_background=true"
    )
    assert section == {"kind": "folder", "path": "/x", "dark_background": True}


USER_VALUES = (
    "--set", "data.kind=folder",
    "--set", "data.volume.hostPath.path=/srv/images",
    "--set", "data.volume.hostPath.type=Directory",
    "--set", "data.path=clothes",
    "--set", "data.imageSize={64,64}",
    "--set", "data.classNames={shirt,shoe}",
)  # fmt: skip


@pytest.mark.parametrize("data", [DATA, USER_VALUES])
@pytest.mark.parametrize("major", [3, 4])
def test_lint_strict_with_a_user_model_and_data(major: int, data: tuple[str, ...], source_file: Path) -> None:
    argv = [helm(major), "lint", "--strict", str(CHART), *user_model(source_file), *data]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("data", [DATA, USER_VALUES])
def test_helm3_and_helm4_render_a_user_model_the_same(data: tuple[str, ...], source_file: Path) -> None:
    args = (*user_model(source_file), *data)
    assert objects(render(3, "default", *args).stdout) == objects(render(4, "default", *args).stdout)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("data", [DATA, USER_VALUES])
def test_strict_schema_validation_with_a_user_model_and_data(
    data: tuple[str, ...], version: str, source_file: Path
) -> None:
    manifest = render(4, "default", *user_model(source_file), *data).stdout
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", version, "-"], input=manifest, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "value"),
    [
        # The schema.
        (["--set", "model.hypermodel=path/to/my_model.py:build_model"], "model.hypermodel"),
        (["--set", "model.hypermodel=my_model"], "model.hypermodel"),
        (["--set", "model.source.text=x"], "model.source"),
        (["--set", "data.kind=csv"], "data.kind"),
        (["--set", "data.kind=folder", "--set", "data.path=x", "--set", "data.imageSize={0,64}"], "data.imageSize"),
        (["--set", "data.kind=folder", "--set", "data.path=x", "--set", "data.imageSize={64}"], "data.imageSize"),
        (["--set", "data.kind=folder", "--set", "data.path=x", "--set", "data.colorMode=cmyk"], "data.colorMode"),
        (
            ["--set", "data.kind=folder", "--set", "data.path=x", "--set-json", "data.testFraction=0.5"],
            "data.testFraction",
        ),
        (["--set", "data.kind=folder", "--set", "data.path=x", "--set", "data.classNames={one}"], "data.classNames"),
        (["--set", "data.kind=folder", "--set", "data.volume=Not_A_Claim"], "data.volume"),
        (["--set", "data.kind=folder", "--set", "data.volume.name=x"], "data.volume"),
        (["--set", "data.kind=loader", "--set", "data.loader=no-colon"], "data.loader"),
        (["--set", "data.bogus=1"], "bogus"),
        # The templates: values that depend on each other.
        (["--set", "model.hypermodel=my_model.py:build_model"], "model.hypermodel"),
        (["--set", "data.path=images"], "data.kind"),
        (["--set", "data.kind=npz", "--set", "data.path=x.npz", "--set", "data.imageSize={8,8}"], "data.imageSize"),
        (["--set", "data.kind=loader", "--set", "data.loader=m:f", "--set", "data.path=x"], "data.path"),
        (["--set", "data.kind=idx"], "data.name"),
        (["--set", "data.kind=folder"], "data.path"),
        (["--set", "data.kind=npz"], "data.path"),
        (["--set", "data.kind=loader"], "data.loader"),
        (["--set", "data.kind=folder", "--set", "data.path=images/../models"], "data.path"),
        (["--set", "data.kind=folder", "--set", "data.path=models/x"], "data.path"),
        (["--set", "data.kind=folder", "--set", "data.path=./"], "data.path"),  # the whole claim
    ],
)
@pytest.mark.parametrize("major", [3, 4])
def test_bad_values_fail_naming_the_value(major: int, args: list[str], value: str) -> None:
    done = render(major, "default", *args, check=False)
    assert done.returncode != 0 and names(done.stderr, value), done.stderr


def names(stderr: str, value: str) -> bool:
    """Whether an error (not a warning) names the value: helm 3 says data.kind, helm 4 /data/kind."""
    errors = "\n".join(line for line in stderr.splitlines() if "warning" not in line)
    pointer = "/" + value.replace(".", "/")
    return value in errors or f"{pointer}'" in errors or f"{pointer}/" in errors


@pytest.mark.parametrize("major", [3, 4])
def test_a_source_needs_a_hypermodel_naming_a_single_module(major: int, source_file: Path) -> None:
    alone = render(major, "default", "--set-file", f"model.source={source_file}", check=False)
    assert alone.returncode != 0 and "model.source is set but model.hypermodel is not" in alone.stderr, alone.stderr
    package = render(major, "default", *user_model(source_file, "pkg.my_model:build_model"), check=False)
    assert package.returncode != 0, package.stderr
    assert "model.hypermodel" in package.stderr and "single module" in package.stderr, package.stderr


def test_the_notes_show_both_ways_and_what_an_upgrade_does(source_file: Path) -> None:
    default = notes()
    assert "--set model.hypermodel=my_package.models:build_model" in default
    assert (
        "--set-file model.source=./my_model.py" in default and "--set model.hypermodel=my_model:build_model" in default
    )
    assert "new Jobs" in default and "experiment.overrides.name" in default
    mine = notes(*user_model(source_file), *DATA)
    assert f"my_model.py in the ConfigMap\nfmtune-model, mounted read-only at {PLUGINS}" in mine
    assert "Images: data.kind folder, read at /data/images/clothes." in mine
    assert "--set-file model.source" not in mine  # the hint is for those who have not chosen
