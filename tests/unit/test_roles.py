import pytest

from fmtune.tuning import roles
from fmtune.tuning.roles import RoleError


def test_coordinator_defaults_to_all_interfaces() -> None:
    role = roles.from_env(True, {"KERASTUNER_ORACLE_PORT": "8000"})
    assert (role.tuner_id, role.host, role.port, role.is_chief) == ("chief", "0.0.0.0", 8000, True)


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


def test_progress_lines_are_parsed() -> None:
    from fmtune.tuning.local import parse_progress

    assert parse_progress("[coordinator] 10:00:00 trial 7/20 done: val_accuracy=0.8840 (best 0.8890) [trial 06]") == (
        7,
        20,
        "0.8890",
    )
    assert parse_progress("[coordinator] 10:00:00 trial 3/20 stopped: below the median (best 0.8100) [x]") == (
        3,
        20,
        "0.8100",
    )
    assert parse_progress("[tuner0] 10:00:00 trial 3 epoch 2/8: loss=0.3") is None
