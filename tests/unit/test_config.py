from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmtune import config
from fmtune.cli import app
from fmtune.config import ConfigError
from fmtune.spaces import Choice, FloatRange, IntRange


@pytest.mark.parametrize("name", config.PRESETS)
def test_presets_are_valid(name: str) -> None:
    cfg = config.load(name, environ={})
    assert cfg.name == name


def test_presets_are_defined_by_their_budgets() -> None:
    presets = {name: config.load(name, environ={}) for name in config.PRESETS}
    assert {name: cfg.budget_minutes for name, cfg in presets.items()} == {"quick": 4, "standard": 60, "mnist": 30}
    assert presets["quick"].search.family == "mlp" and presets["standard"].search.family == "vgg"
    assert all(cfg.search.asha.enabled and cfg.retrain.schedule == "cosine" for cfg in presets.values())


def test_one_early_stopping_rule_at_most() -> None:
    with pytest.raises(ConfigError, match="choose one early-stopping rule"):
        config.load("quick", None, ["fault_tolerance.median_stopping.enabled=true"], environ={})


def test_budget_flag_takes_durations() -> None:
    result = CliRunner().invoke(app, ["config", "--set", "budget_minutes=90"])
    assert result.exit_code == 0 and "budget_minutes: 90" in result.output
    result = CliRunner().invoke(app, ["tune", "--budget", "soon"])
    assert result.exit_code == 2 and "is not a duration" in result.output


def test_layers_file_env_and_set_in_order(tmp_path: Path) -> None:
    file = tmp_path / "exp.yaml"
    file.write_text("search:\n  max_trials: 7\n  epochs: 3\nseed: 5\n")
    env = {"FMTUNE_SEARCH__EPOCHS": "4", "FMTUNE_DATA_DIR": "/data", "FMTUNE_UNRELATED": "x"}
    cfg = config.load("quick", file, ["seed=9"], environ=env)
    assert cfg.search.max_trials == 7  # file over preset
    assert cfg.search.epochs == 4  # env over file
    assert cfg.seed == 9  # --set over everything
    assert cfg.data_dir == Path("/data")
    assert cfg.search.family == "mlp"  # preset kept where nothing overrides it


def test_hyperparameter_shorthand() -> None:
    cfg = config.load(
        "quick",
        None,
        [
            "search.hyperparameters.units=[64, 128]",
            "search.hyperparameters.dropout={min: 0.1, max: 0.3}",
            "search.hyperparameters.num_layers={min: 1, max: 2}",
            "search.hyperparameters.learning_rate=0.001",
        ],
        environ={},
    )
    hps = cfg.search.hyperparameters
    assert hps["units"] == Choice(values=[64, 128])
    assert hps["dropout"] == FloatRange(min=0.1, max=0.3)
    assert hps["num_layers"] == IntRange(min=1, max=2)
    assert hps["learning_rate"].value == 0.001  # type: ignore[union-attr]
    assert "batch_size" in hps  # the preset's own override survives


def test_one_message_per_bad_field() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(
            "quick",
            None,
            ["search.max_trials=0", "search.algorithm=annealing", "val_fraction=2", "nonsense=1"],
            environ={},
        )
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    for field in ("search.max_trials", "search.algorithm", "val_fraction", "nonsense"):
        assert field in text


def test_unknown_hyperparameter_is_named() -> None:
    with pytest.raises(ConfigError, match=r"search\.hyperparameters\.filters: not a hyperparameter of 'mlp'"):
        config.load("quick", None, ["search.hyperparameters.filters=[32]"], environ={})


def test_bad_range_is_named() -> None:
    with pytest.raises(ConfigError, match=r"search.hyperparameters.units.*min \(9\) must not exceed max \(2\)"):
        config.load("quick", None, ["search.hyperparameters.units={min: 9, max: 2}"], environ={})


def test_grid_needs_a_finite_space() -> None:
    with pytest.raises(ConfigError, match="grid search needs a finite value set for 'learning_rate'"):
        config.load("quick", None, ["search.algorithm=grid"], environ={})
    cfg = config.load(
        "quick", None, ["search.algorithm=grid", "search.hyperparameters.learning_rate=[0.001, 0.01]"], environ={}
    )
    assert cfg.search.algorithm == "grid"


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        config.load("quick", tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load("quick", bad, environ={})
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        config.load("quick", bad, environ={})


def test_digest_follows_settings() -> None:
    a = config.load("quick", environ={})
    assert a.digest() == config.load("quick", environ={}).digest()
    assert a.digest() != config.load("quick", None, ["seed=1"], environ={}).digest()


def test_cli_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["tune", "--set", "search.max_trials=-1", "--set", "search.epochs=0", "--workdir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2
    assert "search.max_trials" in result.output and "search.epochs" in result.output
    assert not (tmp_path / "runs").exists()


def test_cli_prints_resolved_config() -> None:
    result = CliRunner().invoke(app, ["config", "--preset", "standard", "--set", "search.max_trials=3"])
    assert result.exit_code == 0, result.output
    assert config.validate(__import__("yaml").safe_load(result.output)).search.max_trials == 3


def test_unknown_augmentation_is_named() -> None:
    cfg = config.load("quick", None, ["retrain.augment=[flip, shift]"], environ={})
    assert cfg.retrain.augment == ["flip", "shift"]
    with pytest.raises(ConfigError, match=r"retrain\.augment\.0"):
        config.load("quick", None, ["retrain.augment=[rotate]"], environ={})


def test_flags_are_typed_and_over_everything(tmp_path: Path) -> None:
    cfg = config.load(
        "quick",
        None,
        ["name=from-set"],
        environ={"FMTUNE_NAME": "from-env"},
        flags={"name": "from-flag", "workdir": tmp_path, "search.max_trials": 3, "model_repo": None},
    )
    assert (cfg.name, cfg.workdir, cfg.search.max_trials) == ("from-flag", tmp_path, 3)
    assert cfg.model_repo == Path("models")  # a flag not given (None) changes nothing


def test_a_resolved_config_is_read_exactly(tmp_path: Path) -> None:
    cfg = config.load("quick", None, ["search.max_trials=3"], environ={})
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = config.load_resolved(path)
    assert again == cfg and again.digest() == cfg.digest()


BAD_FILES = {
    "not UTF-8 text": b"name: \xff\xfe\x00bad\n",
    "not valid YAML": b"search: [unclosed\n",
    "mapping at the top level": b"- a list\n",
    "dataset: unknown dataset 'imagenet'": b"dataset: imagenet\n",
    "search.max_trials": b"search: {max_trials: many}\n",
    "search.hyperparameters.units": b"search: {hyperparameters: {units: {min: 9, max: 2}}}\n",
    "nonsense": b"nonsense: 1\n",
}


@pytest.mark.parametrize("command", ["config", "tune", "coordinator", "worker"])
@pytest.mark.parametrize("problem", sorted(BAD_FILES))
def test_every_malformed_config_exits_2_naming_the_problem(tmp_path: Path, command: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(BAD_FILES[problem])
    extra = ["--workdir", str(tmp_path / "runs")] if command == "tune" else []
    result = CliRunner().invoke(app, [command, "--config", str(path), *extra])
    assert result.exit_code == 2, result.output
    assert problem in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "runs").exists()


def test_resolved_goes_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config.load("quick", environ={}).to_yaml())
    result = CliRunner().invoke(app, ["worker", "--resolved", str(path), "--set", "seed=1"])
    assert result.exit_code == 2 and "--resolved: give it alone" in result.output


def test_the_readme_example_is_a_valid_config_and_matches_the_quick_preset() -> None:
    import re

    import yaml

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Configuration") :]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    cfg = config.validate(example)
    quick = config.load("quick", environ={})
    assert (cfg.budget_minutes, cfg.search.asha, cfg.retrain.schedule) == (
        quick.budget_minutes,
        quick.search.asha,
        quick.retrain.schedule,
    )


def test_a_users_hypermodel_leaves_the_presets_family_space_out() -> None:
    cfg = config.load("quick", assignments=["search.hypermodel=my_model:build_model"], environ={})
    assert cfg.search.hypermodel == "my_model:build_model" and cfg.search.hyperparameters == {}
    assert cfg.search.model == "my_model:build_model"
    with pytest.raises(config.ConfigError, match=r"search\.hyperparameters: only for the built-in families"):
        config.load(
            "quick",
            assignments=["search.hypermodel=my_model:build_model", "search.hyperparameters.units=[32]"],
            environ={},
        )
    preset = config.load("standard", assignments=["search.precision=auto"], environ={})
    assert preset.search.precision == "auto"
    mine = config.load("standard", assignments=["search.hypermodel=my_model:build_model"], environ={})
    assert mine.search.precision == "float32"
    with pytest.raises(config.ConfigError, match=r"search\.precision: only for the built-in families"):
        config.load(
            "quick", assignments=["search.hypermodel=my_model:build_model", "search.precision=auto"], environ={}
        )
