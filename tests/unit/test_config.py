from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmtune import config
from fmtune.cli import app
from fmtune.config import Choice, ConfigError, FloatRange, IntRange


@pytest.mark.parametrize("name", config.PRESETS)
def test_presets_are_valid(name: str) -> None:
    cfg = config.load(name, environ={})
    assert cfg.name == name


def test_quick_is_an_mlp_and_standard_a_cnn() -> None:
    assert config.load("quick", environ={}).search.family == "mlp"
    assert config.load("standard", environ={}).search.family == "cnn"


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
