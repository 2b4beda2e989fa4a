"""`ldh serve` fires the retraining run on LDH_PIPELINE_CRON, and never two at once.

The clock is moved with time-machine (ticking, so APScheduler's own waits stay real and short) to just before the
crontab's time; the child process is the one thing replaced: a stand-in that records its command line and
holds the run open while the next firing comes due.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading

import time_machine
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.base import STATE_STOPPED

import pipelines.retrain.scheduler as scheduler_module
from ai_service.cli import main
from dicom_node.node import Node
from pipelines.retrain.scheduler import JOB_ID

CRON = "0 3 * * *"  # daily at 03:00 UTC
START = dt.datetime(2026, 1, 5, 1, 0, tzinfo=dt.timezone.utc)
FIRST = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.timezone.utc)
JUST_BEFORE = dt.timedelta(seconds=0.5)


class StandInRun:
    """Replaces the child ``ldh pipeline run``: records each start, blocks until released, counts overlaps."""

    def __init__(self):
        self.commands: list[tuple[list[str], str]] = []
        self.running = self.most_at_once = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, argv, env, **kw):
        with self._lock:
            self.commands.append((argv, env["LDH_DATA_DIR"]))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.release()
        self.release.wait(30)
        with self._lock:
            self.running -= 1
        return subprocess.CompletedProcess(argv, 0, stdout="not enough new feedback\n", stderr="")


def test_ldh_serve_fires_the_cron_run_and_never_two_at_once(tmp_path, monkeypatch):
    run = StandInRun()
    monkeypatch.setattr(scheduler_module.subprocess, "run", run)  # the child process, for this test only
    for key, value in {"LDH_PIPELINE_CRON": CRON, "LDH_NODE_HOST": "127.0.0.1", "LDH_NODE_MIN_FREE_MB": "0",
                       "LDH_NODE_RECEIVERS": "1"}.items():
        monkeypatch.setenv(key, value)
    schedulers, nodes = [], []
    start_scheduler, node_start = scheduler_module.start_scheduler, Node.start

    def keep_scheduler(settings):
        schedulers.append(start_scheduler(settings))
        return schedulers[-1]

    def keep_node(node):
        nodes.append(node)
        return node_start(node)

    monkeypatch.setattr(scheduler_module, "start_scheduler", keep_scheduler)
    monkeypatch.setattr(Node, "start", keep_node)
    skipped, finished, failures = threading.Event(), threading.Event(), []

    def wait_for(items: list):
        while not items:
            threading.Event().wait(0.05)
        return items[0]

    def drive(clock) -> None:
        try:
            scheduler = wait_for(schedulers)
            assert scheduler.get_job(JOB_ID).next_run_time == FIRST  # 01:00 now: the crontab's next time is 03:00
            clock.move_to(FIRST - JUST_BEFORE)
            scheduler.wakeup()
            assert run.started.acquire(timeout=20), "the 03:00 run never started"
            scheduler.add_listener(lambda event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
            scheduler.add_listener(lambda event: finished.set(), EVENT_JOB_EXECUTED)
            clock.shift(dt.timedelta(days=1))  # the next 03:00 comes due while the first run still goes on
            scheduler.wakeup()
            assert skipped.wait(20), "the overlapping firing was neither run nor refused"
            run.release.set()
            assert finished.wait(20), "the first run never finished"
            clock.shift(dt.timedelta(days=1))  # with the first run over, the next 03:00 runs again
            scheduler.wakeup()
            assert run.started.acquire(timeout=20), "the run after the first one ended never started"
        except AssertionError as exc:
            failures.append(exc)
        finally:
            run.release.set()
            wait_for(nodes).request_stop()

    sigterm = signal.getsignal(signal.SIGTERM)  # `ldh serve` installs its own handler
    try:
        with time_machine.travel(START, tick=True) as clock:
            driver = threading.Thread(target=drive, args=(clock,), daemon=True)
            driver.start()
            assert main(["serve", "--receive-only", "--no-api", "--port", "0", "--data-dir", str(tmp_path)]) == 0
            driver.join(30)
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert not failures, failures[0]
    assert len(run.commands) == 2 and run.most_at_once == 1
    argv, data_dir = run.commands[0]
    assert argv[1:] == ["-m", "ai_service.cli", "pipeline", "run"] and data_dir == str(tmp_path)
    assert schedulers[0].state == STATE_STOPPED  # `ldh serve` shut its scheduler down on the way out
