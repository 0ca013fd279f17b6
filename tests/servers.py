"""Run the project's real servers as child processes on loopback, for integration tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from exchange.sample import federation

EXCHANGE = [sys.executable, "-m", "exchange.cli"]


_handed_out: set[int] = set()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(offsets: Sequence[int]) -> int:
    """A first port such that it plus each offset is free (a block for the demo)."""
    for _ in range(200):
        base = free_port()
        if base + max(offsets) < 32768 and all(port_is_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free block of ports")


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel picked (bind to 0)
    can be taken by an outgoing connection before the server that was to listen on it starts."""
    low, _ = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(10000, min(low, 32768) - 1)  # noqa: S311 (not a secret)
        if port in _handed_out or not port_is_free(port):
            continue
        _handed_out.add(port)
        return port


def exchange(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``exchange`` command to completion."""
    return subprocess.run(
        [*EXCHANGE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def in_thread(app: Any) -> Iterator[int]:
    """``app`` served on a free loopback port with the roles' server settings, in a thread of
    its own; the port, once the server has started; stopped at exit."""
    import asyncio
    import threading

    import uvicorn

    from exchange import serving as server_settings

    port = free_port()
    server = uvicorn.Server(server_settings.config(app, host="127.0.0.1", port=port))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the server did not start (within 10 s)"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def serving(
    args: Sequence[str],
    *,
    health_url: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path,
    ready_within: float = 30,
    command: Sequence[str] = EXCHANGE,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``exchange <args>`` (``command`` runs ``exchange``), wait until ``health_url``
    answers 200, stop it afterwards."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, *args],
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy:\n{log.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_federation(
    stack: contextlib.ExitStack,
    layout: federation.Federation,
    ports: federation.Ports,
    *,
    logs: Path,
    central_env: dict[str, str] | None = None,
    ready_within: float = 30,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start every role of a sample federation as its own process; the stack stops them. Each
    must answer its health check ``ready_within`` seconds after it starts."""
    roles = {
        "idp": (
            ["idp", "serve", "--data-dir", str(layout.idp), "--port", str(ports.idp)],
            ports.idp,
        ),
        "tsa": (
            ["tsa", "serve", "--data-dir", str(layout.tsa), "--port", str(ports.tsa)],
            ports.tsa,
        ),
        "central": (
            [
                "central",
                "serve",
                "--data-dir",
                str(layout.central.data_dir),
                "--port",
                str(ports.central),
            ],
            ports.central,
        ),
        "consent": (["consent", "serve", "-c", str(layout.consent)], ports.consent),
        "provider": (["gateway", "serve", "-c", str(layout.provider)], ports.provider_consumer),
        "consumer": (["gateway", "serve", "-c", str(layout.consumer)], ports.consumer_consumer),
        "portal": (["portal", "serve", "-c", str(layout.portal)], ports.portal),
    }
    return {
        name: stack.enter_context(
            serving(
                args,
                health_url=f"http://127.0.0.1:{port}/health",
                env=central_env if name == "central" else None,
                log=logs / f"{name}.log",
                ready_within=ready_within,
            )
        )
        for name, (args, port) in roles.items()
    }


def id_token(idp_url: str, *, client: str, callback: str, citizen: str) -> str:
    """Sign in at the development identity provider as ``client`` would; the ID token."""
    form = {"client_id": client, "redirect_uri": callback, "state": "s", "citizen": citizen}
    chosen = httpx.post(f"{idp_url}/authorize", data=form, follow_redirects=False)
    code = parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]
    answer = httpx.post(
        f"{idp_url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client,
            "redirect_uri": callback,
        },
    )
    return str(answer.json()["id_token"])


def citizen_token(ports: federation.Ports, citizen: str, client: str) -> str:
    """An ID token for ``citizen`` issued to one of the sample federation's clients."""
    port = {
        federation.PORTAL_CLIENT_ID: ports.portal,
        federation.CONSENT_CLIENT_ID: ports.consent,
        federation.PREVIEW_CLIENT_ID: ports.preview,
    }[client]
    return id_token(
        f"http://127.0.0.1:{ports.idp}",
        client=client,
        callback=f"http://127.0.0.1:{port}/callback",
        citizen=citizen,
    )
