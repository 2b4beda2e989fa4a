"""Receiver processes: N copies of the C-STORE SCP sharing one port through SO_REUSEPORT.

Each instance costs CPU under one GIL (parse, journal, index); separate processes let parallel associations use
separate cores and keep the receiver away from the analysis worker's CPU. The kernel spreads new connections
over the processes. Each process has its own journal segments (named by pid) and writes the shared index.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading

log = logging.getLogger(__name__)


def start_scp(settings, scp, port: int, reuse_port: bool):
    """Bind the SCP and serve in a background thread; returns the server (``server.server_address``)."""
    from dicom_node.scp import make_server

    server = make_server(settings, scp, port, reuse_port=reuse_port)
    threading.Thread(target=server.serve_forever, name="ldh-scp", daemon=True).start()
    return server


def _die_with_parent(parent_pid: int) -> None:
    """A receiver must never outlive the node (kill -9 of the node included): PR_SET_PDEATHSIG on Linux."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _child(settings_values: dict, port: int, conn, parent_pid: int) -> None:
    """Entry point of a receiver process (spawned: no threads or models inherited from the parent)."""
    _die_with_parent(parent_pid)
    from ai_service.config import Settings
    from ai_service.logs import configure
    from dicom_node.db import Database
    from dicom_node.inbox import Inbox
    from dicom_node.node import db_path
    from dicom_node.scp import StoreSCP

    settings = Settings(_env_file=None, **settings_values)
    configure(settings.log_level, settings.log_format)
    db = Database(db_path(settings.local_dir))
    inbox = Inbox(settings.local_dir, db, settings.node_min_free_mb)
    scp = StoreSCP(inbox, db, settings.node_allowed_host_list, settings.node_allowed_aet_list)
    server = start_scp(settings, scp, port, reuse_port=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    conn.send(server.server_address[1])
    conn.close()
    stop.wait()
    server.shutdown()


class ReceiverPool:
    """Starts, watches and stops the receiver processes."""

    def __init__(self, settings, count: int):
        self.settings = settings
        self.count = count
        self.port: int | None = None
        self.procs: list = []
        self._ctx = mp.get_context("spawn")

    def _spawn(self, port: int):
        parent, child = self._ctx.Pipe(duplex=False)
        values = self.settings.model_dump()
        proc = self._ctx.Process(target=_child, args=(values, port, child, os.getpid()), name="ldh-receiver",
                                 daemon=True)
        proc.start()
        child.close()
        if not parent.poll(60):
            proc.kill()
            raise RuntimeError("receiver process did not start")
        bound = parent.recv()
        parent.close()
        return proc, bound

    def start(self) -> int:
        proc, self.port = self._spawn(self.settings.node_port)
        self.procs = [proc]
        for _ in range(self.count - 1):
            self.procs.append(self._spawn(self.port)[0])
        return self.port

    def live_pids(self) -> set[int]:
        return {p.pid for p in self.procs if p.is_alive()}

    def replace_dead(self) -> list[int]:
        """Restart receivers that died; returns the pids of the dead ones (their journals need replay)."""
        dead = []
        for i, proc in enumerate(self.procs):
            if not proc.is_alive():
                dead.append(proc.pid)
                log.error("receiver process died; restarting it", extra={"pid": proc.pid, "code": proc.exitcode})
                self.procs[i] = self._spawn(self.port)[0]
        return dead

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.procs = []
