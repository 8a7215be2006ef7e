"""Where a study lives: an Optuna storage from a URL, and the recovery of trials whose process died.

Every worker of a study (processes on one machine, or machines sharing one PostgreSQL/MySQL database)
opens the same storage. A running trial writes a heartbeat every `heartbeat_s`; a trial silent for
three heartbeats is marked failed by the next worker to start a trial, and its settings are queued
again (Optuna's `RetryHeartbeatStaleTrialCallback`), so a SIGKILL loses no setting and repeats no finished one.
On this machine a dead trial is found at once: each trial records its host and pid, and a restarted
`tune` fails and re-queues trials of its own host whose process is gone, without waiting for the
heartbeat to go stale (journal files, which keep no heartbeat, rely on this alone).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path

from edgetune.atomic import process_exists
from edgetune.errors import ConfigError

log = logging.getLogger(__name__)

HOST_ATTR, PID_ATTR = "edgetune_host", "edgetune_pid"
STALE_HEARTBEATS = 3  # a heartbeat is a write to the database; three missed in a row is not a slow disk


def storage_url(storage: str | None, run_dir: Path) -> str:
    """The storage URL a study uses: the one given, else a SQLite file in the run directory."""
    if storage:
        return storage
    from edgetune.tune.config import STUDY_FILE

    return f"sqlite:///{(run_dir / STUDY_FILE).resolve()}"


def open_storage(url: str, heartbeat_s: int):
    """An Optuna storage for `url` (journal:PATH, or any SQLAlchemy URL Optuna's RDB storage takes)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(f"storage: {url!r} is not a storage URL; use sqlite:///runs/tune/study.db, "
                          "postgresql://user@host/db, mysql://user@host/db or journal:PATH")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # Heartbeats have been "experimental" since Optuna 2.8 and are what its docs recommend for this; say it once, here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        for attempt in range(5):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s,
                                  grace_period=heartbeat_s * STALE_HEARTBEATS,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
            except Exception as error:
                # Workers starting together race to create the tables: the loser finds them made, and opens again.
                racing = type(error).__name__ == "IntegrityError" or "locked" in str(error)
                if not racing or attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
    except (ImportError, ModuleNotFoundError) as error:
        raise ConfigError(f"storage: {url.split('://')[0]} needs a database driver that is not installed "
                          f"({error}); install it, e.g. psycopg2-binary for postgresql") from None
    except optuna.exceptions.StorageInternalError as error:
        raise ConfigError(f"storage: cannot open {without_password(url)}: {error}") from None
    except Exception as error:  # SQLAlchemy's OperationalError and friends: an unreachable or refused database
        if type(error).__module__.startswith("sqlalchemy"):
            raise ConfigError(f"storage: cannot open {without_password(url)}: {str(error).splitlines()[0]}") \
                from None
        raise


def without_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return f"{scheme}://{rest}"


def mark_owner(trial) -> None:
    """Record which process runs `trial`, so a restart on this host can tell whether it is still alive.

    System attributes (`_trial_id` is the storage's key for the trial; Optuna 4 dropped the public setter), so
    the record stays out of the user attributes a person reads in the trial table."""
    trial.storage.set_trial_system_attr(trial._trial_id, HOST_ATTR, socket.gethostname())
    trial.storage.set_trial_system_attr(trial._trial_id, PID_ATTR, os.getpid())


def recover_dead_trials(study) -> list[int]:
    """Fail and re-queue the running trials of this host whose process is gone; return their numbers."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    host, recovered = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.system_attrs
        if attrs.get(HOST_ATTR) != host or PID_ATTR not in attrs or process_exists(int(attrs[PID_ATTR])):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker failed (or finished) it first: it is theirs to retry
            continue
        failed = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        RetryHeartbeatStaleTrialCallback(max_retry=1)(study, failed)
        recovered.append(trial.number)
    if recovered:
        log.info("trial %s: its process is gone (killed); marked failed, its settings queued again",
                 ", ".join(map(str, recovered)))
    return recovered


def requeue(study, number: int) -> None:
    """Queue the settings of trial `number` again if it failed (it was interrupted, not wrong)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial.state == TrialState.FAIL:  # an interrupt between trials leaves the last one finished: nothing to redo
        RetryHeartbeatStaleTrialCallback(max_retry=1)(study, trial)
