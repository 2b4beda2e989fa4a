"""Google's Pub/Sub emulator (Debian ``google-cloud-cli-pubsub-emulator``) on 127.0.0.1, for the Cloud Healthcare
receiver's tests and benchmark. The client libraries talk to it when ``PUBSUB_EMULATOR_HOST`` names it; the
helpers here set that only around their own calls, so the process under test decides for itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

from bench.ingest import free_port

EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


@contextlib.contextmanager
def emulator_env(host: str):
    """PUBSUB_EMULATOR_HOST set for the block (the clients read it when they are created)."""
    before = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = before


class PubSubEmulator:
    def __init__(self, root: Path, project: str = "ldh-test-project"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.project = project
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> "PubSubEmulator":
        log_path = self.root / "pubsub.log"
        with open(log_path, "a") as log:
            # its own session: the launcher script's java child is stopped with it (killpg)
            self.proc = subprocess.Popen([str(EMULATOR), "--host=127.0.0.1", f"--port={self.port}"], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while "Server started" not in log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Pub/Sub emulator did not start: " + log_path.read_text()[-2000:])
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def topic_and_subscription(self, name: str, ack_deadline_s: int = 10) -> tuple[str, str]:
        """Create ``projects/P/topics/NAME`` and ``projects/P/subscriptions/NAME``; returns both paths."""
        from google.cloud import pubsub_v1

        with emulator_env(self.host):
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            topic, sub = publisher.topic_path(self.project, name), subscriber.subscription_path(self.project, name)
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=ack_deadline_s)
            subscriber.close()
        return topic, sub

    def publish(self, topic: str, messages: list[bytes], **attributes: str) -> None:
        from google.cloud import pubsub_v1

        with emulator_env(self.host):
            publisher = pubsub_v1.PublisherClient()
            for future in [publisher.publish(topic, data, **attributes) for data in messages]:
                future.result(timeout=30)

    def waiting(self, subscription: str) -> int:
        """Messages deliverable on ``subscription`` now (pulled, then handed back at once)."""
        from google.cloud import pubsub_v1

        with emulator_env(self.host):
            subscriber = pubsub_v1.SubscriberClient()
            with warnings.catch_warnings():  # deprecated for real Pub/Sub; the emulator answers at once with it
                warnings.simplefilter("ignore", DeprecationWarning)
                response = subscriber.pull(subscription=subscription, max_messages=1000, return_immediately=True,
                                           timeout=10)
            ids = [m.ack_id for m in response.received_messages]
            if ids:
                subscriber.modify_ack_deadline(subscription=subscription, ack_ids=ids, ack_deadline_seconds=0)
            subscriber.close()
        return len(ids)
