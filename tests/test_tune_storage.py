"""A tune study outlives its processes: resumed after SIGKILL mid-trial, shared by two workers, and run
against a real PostgreSQL server (the storage several machines would share)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgetune.configuration import build_config
from edgetune.data.config import DataConfig
from edgetune.tune.config import TuneConfig
from postgres_server import postgres_url  # noqa: F401 - the fixture
from tune_helpers import environment, start, tiny_tune_values, tune_command

pytestmark = pytest.mark.slow  # real worker processes, each importing torch


def load(run_dir: Path):
    import optuna

    return optuna.load_study(study_name="edgetune-tune", storage=f"sqlite:///{run_dir / 'study.db'}")


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"the tune process ended (exit {process.returncode}) before {what}:\n"
                        f"{log.read_text()[-3000:] if log else ''}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def states(study) -> dict[int, str]:
    return {trial.number: trial.state.name for trial in study.get_trials(deepcopy=False)}


def test_sigkill_mid_trial_resumes_keeping_finished_trials(tmp_path, tiny_bert_dir, small_banking77):
    from optuna.trial import TrialState

    run_dir, log = tmp_path / "run", tmp_path / "first.log"
    command = tune_command(small_banking77["train"], run_dir, tiny_bert_dir, 3, "--pick", "most-accurate")
    first = start(command, log)
    try:
        def a_later_trial_training() -> bool:
            if not (run_dir / "study.db").exists():
                return False
            try:
                found = states(load(run_dir))
            except KeyError:  # the file is there, the study not yet: the worker is between the two
                return False
            running = [number for number, state in found.items() if state == "RUNNING"]
            return found.get(0) == "COMPLETE" and len(running) == 1 and running[0] < 2 \
                and (run_dir / "trials" / f"{running[0]:04d}").is_dir()

        # Killed at once: tiny trials end within a second on a quiet machine.
        wait_for(a_later_trial_training, 400, "trial 1 started after trial 0 finished", first, log)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    before = load(run_dir)
    found = states(before)
    killed = [number for number, state in found.items() if state == "RUNNING"]
    # SIGKILL: nothing could record the running trial's end; every earlier one had finished.
    assert len(killed) == 1 and killed[0] == max(found), found
    killed = killed[0]
    assert all(state == "COMPLETE" for number, state in found.items() if number != killed), found
    finished_before = {trial.number: trial.datetime_start for trial in before.trials if trial.number != killed}

    # The same command again: the dead trial is failed and re-queued at once (its pid is gone), finished ones kept.
    second = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    after = load(run_dir)
    trials = after.get_trials(deepcopy=False)
    for number, started in finished_before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].datetime_start == started
        assert f"trial {number:>3} " not in second.stdout  # a finished trial was not run again
    assert trials[killed].state == TrialState.FAIL
    retried = [trial for trial in trials if trial.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].params == trials[killed].params
    assert retried[0].state == TrialState.COMPLETE
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    assert len(complete) == 3 and len(trials) == 4  # 3 finished, none repeated; the killed one failed
    assert (run_dir / "bundle" / "manifest.json").is_file()


def test_two_workers_share_one_study(tmp_path, tiny_bert_dir, small_banking77):
    from optuna.trial import TrialState

    run_dir = tmp_path / "run"
    command = tune_command(small_banking77["train"], run_dir, tiny_bert_dir, 4, "--worker-only")
    workers = [start(command, tmp_path / "worker-a.log")]
    time.sleep(2)
    workers.append(start(command, tmp_path / "worker-b.log"))
    try:
        for worker in workers:
            assert worker.wait(timeout=900) == 0, (tmp_path / "worker-a.log").read_text()[-2000:] + \
                (tmp_path / "worker-b.log").read_text()[-2000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    trials = load(run_dir).get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    # Each trial is one row, run by one worker; a worker does not start a trial while the others' running
    # ones fill the budget, so at most one extra trial can slip in when both ask at the same instant.
    assert 4 <= len(complete) <= 5 and len(trials) == len(complete)
    owners = {trial.system_attrs["edgetune_pid"] for trial in complete}
    assert owners == {worker.pid for worker in workers}, "both workers ran trials"
    # A final run without --worker-only finds the budget spent, runs nothing and writes the result.
    final = subprocess.run(command[:-1], env=environment(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert len(load(run_dir).get_trials(deepcopy=False)) == len(trials)
    assert (run_dir / "front.html").is_file() and (run_dir / "bundle").is_dir()


def test_a_study_in_postgresql(postgres_url, tmp_path, tiny_bert_dir, small_banking77):  # noqa: F811
    import optuna

    from edgetune.tune.search import tune

    values = tiny_tune_values(tiny_bert_dir, 2, storage=postgres_url, study="shared")
    result = tune(DataConfig(train=str(small_banking77["train"])), build_config(TuneConfig, values, "tune"),
                  tmp_path / "run")
    assert [row["state"] for row in result.trials] == ["complete", "complete"]
    assert not (tmp_path / "run" / "study.db").exists()
    stored = optuna.load_study(study_name="shared", storage=postgres_url)
    assert len(stored.trials) == 2 and all(len(trial.values) == 2 for trial in stored.trials)
    assert os.path.isdir(result.files["bundle"])
