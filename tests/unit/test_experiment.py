"""The experiment's config in its directory: written by ``fmtune tune``, published by the
coordinator, and checked by every worker (``fmtune.run.experiment``)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from fmtune import config
from fmtune.config import ExperimentConfig
from fmtune.run import experiment
from fmtune.run.experiment import ConfigChanged, ConfigMismatch, ConfigNotPublished


def make(tmp_path: Path, *assignments: str) -> ExperimentConfig:
    return config.load("quick", None, [f"workdir={tmp_path / 'runs'}", "name=exp", *assignments], environ={})


class FakeTime:
    """A clock that only moves when slept on, and runs ``on_sleep`` at every sleep."""

    def __init__(self, on_sleep: object = None):
        self.now, self.slept, self.on_sleep = 0.0, 0, on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)
        self.slept += 1
        if callable(self.on_sleep):
            self.on_sleep(self.slept)


def test_docstring_examples() -> None:
    result = doctest.testmod(experiment)
    assert result.attempted > 0 and result.failed == 0


def test_the_message_names_both_digests_and_every_key_that_differs(tmp_path: Path) -> None:
    mine = make(tmp_path, "search.max_trials=3", "seed=1")
    theirs = make(tmp_path, "search.max_trials=5", "search.hyperparameters.units=[32, 64]")
    assert experiment.mismatch(mine, mine.model_copy(), tmp_path / "config.yaml") is None
    message = experiment.mismatch(mine, theirs, tmp_path / "config.yaml")
    assert message is not None
    assert mine.digest() in message and theirs.digest() in message and str(tmp_path / "config.yaml") in message
    assert "search.max_trials (coordinator: 5, this process: 3)" in message
    assert "seed (coordinator: 42, this process: 1)" in message
    assert "search.hyperparameters.units.values (coordinator: [32, 64], this process: None)" in message
    assert "workdir" not in message and "search.epochs" not in message


def test_many_differences_are_counted_beyond_the_first_few(tmp_path: Path) -> None:
    theirs = make(tmp_path, "seed=2", "val_fraction=0.2", "download=false", "retrain.label_smoothing=0.1")
    mine = make(
        tmp_path, "search.max_trials=1", "search.epochs=1", "retrain.max_epochs=1", "retrain.patience=2", "name=b"
    )
    found = experiment.differences(theirs.model_dump(mode="json"), mine.model_dump(mode="json"))
    assert len(found) > experiment.SHOWN_KEYS
    message = experiment.mismatch(mine, theirs, tmp_path)
    assert message is not None and message.endswith(f"and {len(found) - experiment.SHOWN_KEYS} more")


def test_prepare_writes_the_config_and_refuses_another_one_unless_fresh(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    path = experiment.prepare(cfg)
    assert path == cfg.experiment_dir / "config.yaml" and config.load_resolved(path) == cfg
    assert experiment.prepare(cfg) == path  # the same experiment resumes
    changed = make(tmp_path, "search.max_trials=99")
    with pytest.raises(ConfigChanged, match=r"already exists in .* with a different config; pass --fresh"):
        experiment.prepare(changed)
    assert config.load_resolved(path) == cfg
    (cfg.experiment_dir / "results.json").write_text("{}")
    experiment.prepare(changed, fresh=True)
    assert config.load_resolved(path) == changed and not (cfg.experiment_dir / "results.json").exists()


def test_publish_writes_only_a_config_that_is_not_there_yet(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    path = experiment.publish(cfg)
    assert config.load_resolved(path) == cfg
    written = path.stat().st_ino
    experiment.publish(cfg)
    assert path.stat().st_ino == written  # not rewritten
    upgraded = make(tmp_path, "search.max_trials=99")
    experiment.publish(upgraded)  # a restarted coordinator with a new config replaces it
    assert config.load_resolved(path) == upgraded
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_a_worker_with_the_published_config_goes_on_at_once(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    experiment.publish(cfg)
    fake = FakeTime()
    experiment.await_published(cfg, clock=fake.clock, sleep=fake.sleep)
    assert fake.slept == 0


def test_a_worker_waits_for_its_coordinator_to_publish(tmp_path: Path) -> None:
    cfg = make(tmp_path, "fault_tolerance.coordinator_timeout_seconds=30")
    fake = FakeTime(lambda n: n == 10 and experiment.publish(cfg))
    experiment.await_published(cfg, clock=fake.clock, sleep=fake.sleep)
    assert fake.slept == 10


def test_an_earlier_config_is_waited_out_until_the_coordinator_replaces_it(tmp_path: Path) -> None:
    """The pods of an upgraded release start together: a worker may see the last run's config."""
    cfg = make(tmp_path, "search.max_trials=20")
    experiment.publish(make(tmp_path, "search.max_trials=10"))
    fake = FakeTime(lambda n: n == 5 and experiment.publish(cfg))
    experiment.await_published(cfg, timeout=10, clock=fake.clock, sleep=fake.sleep)
    assert fake.slept == 5


def test_a_different_config_still_there_at_the_end_is_refused(tmp_path: Path) -> None:
    cfg = make(tmp_path, "search.max_trials=20", "fault_tolerance.coordinator_timeout_seconds=3")
    theirs = make(tmp_path, "search.max_trials=10")
    experiment.publish(theirs)
    fake = FakeTime()
    with pytest.raises(ConfigMismatch) as refused:
        experiment.await_published(cfg, clock=fake.clock, sleep=fake.sleep)
    assert 3 <= fake.now < 3.5
    message = str(refused.value)
    assert f"this process's config {cfg.digest()} is not the experiment's config {theirs.digest()}" in message
    assert "search.max_trials (coordinator: 10, this process: 20)" in message


def test_a_published_config_this_process_cannot_load_is_refused(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    path = experiment.published(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(cfg.to_yaml() + "from_a_newer_fmtune: 1\n")
    fake = FakeTime()
    with pytest.raises(ConfigMismatch, match="not one this process can run: from_a_newer_fmtune: Extra inputs"):
        experiment.await_published(cfg, timeout=1, clock=fake.clock, sleep=fake.sleep)


def test_no_config_published_in_time_means_no_coordinator(tmp_path: Path) -> None:
    cfg = make(tmp_path, "fault_tolerance.coordinator_timeout_seconds=3")
    fake = FakeTime()
    with pytest.raises(ConfigNotPublished) as gave_up:
        experiment.await_published(cfg, clock=fake.clock, sleep=fake.sleep)
    assert str(gave_up.value) == (
        f"the coordinator did not answer within 3s: no config published at {cfg.experiment_dir / 'config.yaml'} "
        f"(is a coordinator running for experiment 'exp' in {cfg.workdir}?)"
    )


def seeded(tmp_path: Path, seed: object, *assignments: str) -> ExperimentConfig:
    args = [f"workdir={tmp_path / 'runs'}", "name=exp", *assignments]
    return config.load("quick", None, args, environ={}, seed=seed)  # type: ignore[arg-type]


def test_a_new_experiment_draws_its_own_seed_and_a_resumed_one_keeps_it(tmp_path: Path) -> None:
    first = seeded(tmp_path, experiment.seed_for())
    others = {seeded(tmp_path / str(i), experiment.seed_for()).seed for i in range(5)}
    assert len(others | {first.seed}) > 1  # new experiments differ (2**31 seeds: equal ones are a failure)
    experiment.prepare(first)
    assert seeded(tmp_path, experiment.seed_for()).seed == first.seed  # resumed: the seed it began with
    assert seeded(tmp_path, experiment.seed_for()).digest() == first.digest()
    fresh = {seeded(tmp_path, experiment.seed_for(fresh=True)).seed for _ in range(3)}
    assert fresh - {first.seed}  # --fresh starts over, with a new seed


def test_a_seed_set_in_any_layer_is_kept(tmp_path: Path) -> None:
    assert seeded(tmp_path, experiment.seed_for(), "seed=7").seed == 7
    assert config.load("quick", None, ["seed=0"], environ={}, seed=lambda cfg: 99).seed == 0
    assert config.load("quick", None, [], environ={"FMTUNE_SEED": "5"}, seed=lambda cfg: 99).seed == 5
    assert config.load("quick", None, [], environ={}).seed == 42  # no seed source: the default


def test_a_worker_takes_the_seed_its_coordinator_published(tmp_path: Path) -> None:
    coordinators = seeded(tmp_path, lambda cfg: 1234)
    fake = FakeTime(lambda n: n == 4 and experiment.publish(coordinators))
    mine = seeded(tmp_path, experiment.published_seed(clock=fake.clock, sleep=fake.sleep))
    assert mine.seed == 1234 and fake.slept == 4
    experiment.await_published(mine, clock=fake.clock, sleep=fake.sleep)  # the same config: no mismatch


def test_a_worker_without_a_seed_gives_up_when_nothing_is_published(tmp_path: Path) -> None:
    fake = FakeTime()
    with pytest.raises(ConfigNotPublished, match="the coordinator did not answer within 2s"):
        seeded(tmp_path, experiment.published_seed(timeout=2, clock=fake.clock, sleep=fake.sleep))
    assert 2 <= fake.now < 2.5
