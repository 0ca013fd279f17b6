"""Several processes of one gateway on one machine (``workers = N``, N > 1).

A parent process binds every listener (consumer, provider, preview) once per worker with
``SO_REUSEPORT`` and keeps those sockets open for as long as it runs; worker *i* inherits its own
set and serves it, so the kernel spreads new connections over the workers, a port already taken
is refused at start, and connections that arrive while a worker is being started again wait in
its socket's queue instead of being refused. Each worker is an ordinary gateway process (TLS,
the peer certificate in the scope, health: exactly as with one process) that is replica
``<replica>-w<i>`` with its own audit chain, so the same worker continues the same chain after a
restart. Metrics are written by every worker to a private folder under the data folder
(prometheus_client's multiprocess mode; cleaned at start) and read back whole by each worker's
``/metrics``.

The parent starts the workers, starts again one that dies (at once if it had run for a while,
after a growing pause if it keeps dying young), forwards SIGTERM and SIGINT to them, and exits
once they have all stopped. Workers run in their own process group (a terminal's Ctrl-C reaches
the parent alone, which passes it on once) and stop by themselves if the parent goes away.

What is not shared: each worker has its own database connections, caches, trust view and
revocation feed follower. With SQLite, every worker writes the one database file, and SQLite
admits one writer at a time: see docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import Conflict
from exchange.gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when it is imported
BACKLOG = 2048
LIVED = 10.0  # seconds: a worker that ran this long is started again at once
LONGEST_PAUSE = 30.0  # seconds between starts of a worker that keeps dying young


def replica(settings: GatewaySettings, index: int) -> str:
    """Worker ``index``'s replica name (stable, so that its audit chain continues)."""
    return f"{settings.replica}-w{index}"


def hold(path: Path, what: str) -> int:
    """An exclusive lock on ``path``, held until this process ends (the descriptor stays open;
    the kernel lets go when the process dies, however it dies).

    Listeners bound with ``SO_REUSEPORT`` do not fail when a second copy of the same gateway
    binds the same ports: the kernel would share connections between two processes writing one
    audit chain. The lock refuses the second copy instead.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"{what} is already running on this machine ({path} is locked)") from None
    os.set_inheritable(fd, False)
    return fd


def gateway_lock(settings: GatewaySettings) -> int:
    """The lock of the process that stands for this replica of the gateway: its only process,
    or the parent of its workers (replicas sharing a data folder each take their own)."""
    return hold(
        settings.data_dir / f"gateway-{settings.replica}.lock",
        f"replica {settings.replica} of gateway {settings.id}",
    )


def chain_lock(settings: GatewaySettings) -> int:
    """The lock of this process's audit chain (one writer per chain)."""
    return hold(
        settings.data_dir / f"serving-{settings.replica}.lock",
        f"replica {settings.replica} of gateway {settings.id}",
    )


def metrics_folder(settings: GatewaySettings) -> Path:
    return settings.data_dir / "metrics"


def addresses(settings: GatewaySettings) -> list[tuple[str, int]]:
    """Every listener's address, in the order of :func:`exchange.gateway.runner.prepare`."""
    found = [(listen.host, listen.port) for listen in (settings.consumer, settings.provider)]
    if settings.preview is not None and settings.identity is not None:
        found.append((settings.preview.host, settings.preview.port))
    return found


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def inherited(fds: str, ports: Sequence[int]) -> list[socket.socket]:
    """The listening sockets a worker was handed (``"5,6,7"``), checked against its settings."""
    sockets = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    bound = [sock.getsockname()[1] for sock in sockets]
    if len(sockets) != len(ports) or any(p and p != b for p, b in zip(ports, bound, strict=True)):
        raise RuntimeError(f"sockets for ports {bound} handed to listeners on {list(ports)}")
    return sockets


def announce_ready(fd: int, index: int) -> None:
    """Tell the parent that worker ``index`` serves."""
    os.write(fd, f"{index}\n".encode())
    os.close(fd)


def parent_watch(parent: int) -> Callable[[], Coroutine[Any, Any, None]]:
    """A worker's background job: stop gracefully once the parent that started it is gone."""

    async def watch() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1)
        log.warning("gateway.worker_orphaned", parent=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    return watch


@dataclass
class _Worker:
    index: int
    sockets: list[socket.socket]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = 0.0
    due: float = 0.0  # when to start it again, after it died


def _pause(worker: _Worker, *, lived: float) -> float:
    """Seconds before a worker that died is started again: none if it had run for a while,
    else 1, 2, 4, ... up to LONGEST_PAUSE (a worker that cannot start must not spin)."""
    return 0.0 if lived >= LIVED else min(max(1.0, 2 * worker.pause), LONGEST_PAUSE)


class Supervisor:
    """The parent of a gateway's workers."""

    def __init__(self, config: Path, settings: GatewaySettings) -> None:
        self.config = config.resolve()
        self.settings = settings
        self.signals: list[int] = []

    def run(self) -> int:
        settings = self.settings
        # Once here, so that workers never race each other through a migration.
        engine = build_engine(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous)
        migrate.upgrade("gateway", engine)
        engine.dispose()
        folder = metrics_folder(settings)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        workers = [
            _Worker(i, [bind(host, port) for host, port in addresses(settings)])
            for i in range(1, settings.workers + 1)
        ]
        ready_in, self.ready_out = os.pipe()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda number, _: self.signals.append(number))
        try:
            for worker in workers:
                self._start(worker)
            return self._supervise(workers, ready_in)
        except BaseException:
            # A start that fails (no process can be made) must not leave the others serving.
            self._stop(workers, signal.SIGTERM)
            raise
        finally:
            os.close(ready_in)
            os.close(self.ready_out)
            for worker in workers:
                for sock in worker.sockets:
                    sock.close()

    def _start(self, worker: _Worker) -> None:
        fds = [sock.fileno() for sock in worker.sockets]
        name = replica(self.settings, worker.index)
        worker.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exchange.cli",
                "gateway",
                "serve",
                "--config",
                str(self.config),
                "--worker",
                str(worker.index),
                "--listen-fds",
                ",".join(map(str, fds)),
                "--ready-fd",
                str(self.ready_out),
                "--parent-pid",
                str(os.getpid()),
            ],
            env={
                **os.environ,
                "EXCHANGE_GATEWAY_REPLICA": name,
                METRICS_ENV: str(metrics_folder(self.settings)),
            },
            pass_fds=(*fds, self.ready_out),
            process_group=0,
        )
        worker.started = time.monotonic()
        log.info(
            "gateway.worker_started", worker=worker.index, replica=name, pid=worker.process.pid
        )

    def _supervise(self, workers: list[_Worker], ready_in: int) -> int:
        ready: set[int] = set()
        starting = True
        while not self.signals:
            readable, _, _ = select.select([ready_in], [], [], 0.2)
            if readable:
                ready |= {int(i) for i in os.read(ready_in, 4096).split()}
            if starting and len(ready) == len(workers):
                starting = False
                log.info("gateway.workers_ready", gateway=self.settings.id, workers=len(workers))
            now = time.monotonic()
            for worker in workers:
                process = worker.process
                if process is not None and process.poll() is not None:
                    if starting:
                        log.error("gateway.worker_failed_to_start", worker=worker.index)
                        self._stop(workers, signal.SIGTERM)
                        return 1
                    worker.pause = _pause(worker, lived=now - worker.started)
                    worker.due = now + worker.pause
                    worker.process = None
                    log.warning(
                        "gateway.worker_died",
                        worker=worker.index,
                        status=process.returncode,
                        again_in=worker.pause,
                    )
                if worker.process is None and now >= worker.due:
                    try:
                        self._start(worker)
                    except OSError as exc:  # out of processes or files, for now: try again
                        worker.pause = _pause(worker, lived=0.0)
                        worker.due = now + worker.pause
                        log.error(
                            "gateway.worker_not_started",
                            worker=worker.index,
                            cause=type(exc).__name__,
                            again_in=worker.pause,
                        )
        self._stop(workers, self.signals[0])
        return 0

    def _stop(self, workers: list[_Worker], number: int) -> None:
        """Pass the signal on and wait until every worker has stopped; a second signal is passed
        on too (a worker stops at once on its second)."""
        forwarded = len(self.signals)
        running = [w.process for w in workers if w.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(number)
        # New connections are refused from now on (the workers close their own copies as they
        # stop), not accepted into a queue that nobody will serve.
        for worker in workers:
            for sock in worker.sockets:
                sock.close()
        while any(p.poll() is None for p in running):
            if len(self.signals) > forwarded:
                forwarded = len(self.signals)
                for process in running:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(self.signals[-1])
            time.sleep(0.05)
