"""The chart's logFormat: the coordinator and every worker log as it says (text by default, for
`kubectl logs`), and anything else is refused before a manifest is rendered."""

from __future__ import annotations

import pytest

from .test_chart import job
from .tools import objects, render

pytestmark = pytest.mark.timeout(300)


def log_formats(*settings: str, major: int = 4) -> dict[str, str]:
    docs = objects(render(major, "default", *settings).stdout)
    out = {}
    for component in ("coordinator", "worker"):
        (container,) = job(docs, component)["spec"]["template"]["spec"]["containers"]
        out[component] = {e["name"]: e.get("value") for e in container["env"]}["FMTUNE_LOG_FORMAT"]
    return out


@pytest.mark.parametrize("major", [3, 4])
def test_every_role_logs_as_the_values_say(major: int) -> None:
    assert log_formats(major=major) == {"coordinator": "text", "worker": "text"}
    assert log_formats("--set", "logFormat=json", major=major) == {"coordinator": "json", "worker": "json"}


@pytest.mark.parametrize("major", [3, 4])
def test_an_unknown_log_format_is_refused(major: int) -> None:
    done = render(major, "default", "--set", "logFormat=xml", check=False)
    assert done.returncode != 0 and "logFormat" in done.stderr
