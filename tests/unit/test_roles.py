from pathlib import Path

import pytest

from fmtune.tuning import roles
from fmtune.tuning.roles import RoleError


def test_coordinator_defaults_to_loopback() -> None:
    role = roles.from_env(True, {"KERASTUNER_ORACLE_PORT": "8000"})
    assert (role.tuner_id, role.host, role.port, role.is_chief) == ("chief", "127.0.0.1", 8000, True)


def test_worker_contract() -> None:
    env = {"KERASTUNER_TUNER_ID": "tuner3", "KERASTUNER_ORACLE_IP": "fmtune-oracle", "KERASTUNER_ORACLE_PORT": "8000"}
    role = roles.from_env(False, env)
    assert role.address == "fmtune-oracle:8000" and role.env() == env


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KERASTUNER_ORACLE_IP": "h", "KERASTUNER_ORACLE_PORT": "1"}, "KERASTUNER_TUNER_ID is not set"),
        (
            {"KERASTUNER_TUNER_ID": "chief-helper", "KERASTUNER_ORACLE_IP": "h", "KERASTUNER_ORACLE_PORT": "1"},
            "must not contain 'chief'",
        ),
        ({"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_PORT": "1"}, "KERASTUNER_ORACLE_IP is not set"),
        (
            {"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "h", "KERASTUNER_ORACLE_PORT": "http"},
            "must be a port number",
        ),
    ],
)
def test_worker_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(RoleError, match=message):
        roles.from_env(False, env)


def test_coordinator_must_be_chief() -> None:
    with pytest.raises(RoleError, match="needs KERASTUNER_TUNER_ID=chief"):
        roles.from_env(True, {"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_PORT": "1"})


def test_worker_ids_are_stable() -> None:
    assert roles.worker_id(4) == "tuner4"
    assert roles.free_port() > 0


def test_progress_bar_follows_the_coordinators_state(tmp_path: Path) -> None:
    from fmtune import run_state
    from fmtune.run.local import ProgressBar

    bar = ProgressBar(tmp_path, total=20)
    bar.refresh()  # no state yet: nothing to show, nothing raised
    assert bar.progress.tasks[0].completed == 0
    state = run_state.RunState(experiment="x", config_digest="d", max_trials=20, objective="val_accuracy")
    run_state.save(state.model_copy(update={"trials_finished": 7, "best_score": 0.889}), tmp_path)
    bar.refresh()
    task = bar.progress.tasks[0]
    assert (task.completed, task.total, task.fields["best"]) == (7, 20, "0.8890")
