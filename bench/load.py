"""Load for the benchmarks, and what the servers spent under it.

The default generator is wrk, a compiled tool run in a process of its own (one thread), so that
the generator takes as little of the machine as possible and never shares a process or an event
loop with a server it measures. The old Python driver (aiohttp in the benchmark's own process)
is kept as an option for comparison with earlier figures; it caps a fast server well below its
rate and so flatters every ratio to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass(frozen=True)
class Load:
    """One run of load at a fixed number of clients."""

    answered: int  # 2xx answers
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # any other answer, and connections that failed or timed out
    generator_cpu: float  # CPU seconds the load generator used

    @property
    def rate(self) -> float:
        return self.answered / self.seconds


Driver = Callable[[str, dict[str, str], int, int], Load]
"""(url, headers, clients, seconds) -> what the run measured. A header whose value is
:data:`FRESH` gets a new value on every request (e.g. an ``Idempotency-Key``)."""

FRESH = "<fresh on every request>"
# wrk's per-request hook: the -H headers, and a new value for each FRESH one.
_FRESH_SCRIPT = """
math.randomseed(os.time())
local prefix = string.format("%d-%d", os.time(), math.random(1000000000))
local counter = 0
local fresh = {NAMES}
request = function()
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  for _, name in ipairs(fresh) do headers[name] = prefix .. "-" .. counter end
  return wrk.format(nil, nil, headers)
end
"""


def _fresh_script(names: list[str]) -> str:
    return _FRESH_SCRIPT.replace("{NAMES}", "{" + ", ".join(f'"{n}"' for n in names) + "}")


def wrk_path() -> str:
    """wrk, from Debian's packages; installed when missing, as CI installs PostgreSQL."""
    return debian_tool("wrk", "wrk", otherwise="or use --driver python")


def debian_tool(command: str, package: str, *, otherwise: str) -> str:
    """``command``'s path, installing Debian's ``package`` first when it is missing (as root,
    where apt-get is); where it cannot, the benchmark stops and says to install the package or
    do what ``otherwise`` says."""
    found = shutil.which(command)
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"{command} is not installed: install Debian's {package} package, {otherwise}")
    print(f"installing {command} (Debian package {package})", file=sys.stderr)
    quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=quiet, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=quiet,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return shutil.which(command) or sys.exit(f"{command} was installed but is not on PATH")


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str, generator_cpu: float = 0.0) -> Load:
    """What ``wrk --latency`` printed: answers, duration, p50/p99; errors are answers other
    than 2xx/3xx ("Non-2xx or 3xx responses") and socket errors (connect, read, write, timeout)."""
    done = re.search(r"^\s*(\d+) requests in (\S+),", output, re.MULTILINE)
    p50 = re.search(r"^\s*50(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
    if done is None or p50 is None or p99 is None:
        raise ValueError(f"unexpected output from wrk:\n{output}")
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad_answers = int(refused.group(1)) if refused else 0
    return Load(
        answered=int(done.group(1)) - bad_answers,
        seconds=_ms(done.group(2)) / 1000,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        errors=bad_answers + (sum(map(int, failed.groups())) if failed else 0),
        generator_cpu=generator_cpu,
    )


def children_cpu() -> float:
    """CPU seconds of the child processes waited for so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def wrk(url: str, headers: dict[str, str], clients: int, seconds: int) -> Load:
    """Load from wrk (one thread, ``clients`` connections kept alive) for ``seconds``."""
    command = [wrk_path(), "--latency", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "10s"]
    fresh = [name for name, value in headers.items() if value == FRESH]
    for name, value in headers.items():
        if value != FRESH:
            command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if fresh:
            script.write(_fresh_script(fresh))
            script.flush()
            command += ["-s", script.name]
        before = children_cpu()
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
        )
    return parse_wrk(done.stdout, generator_cpu=children_cpu() - before)


def python(url: str, headers: dict[str, str], clients: int, seconds: int) -> Load:
    """Load from the old driver: aiohttp in this process, ``clients`` tasks in one loop."""
    started_cpu = time.process_time()
    latencies, errors, elapsed = asyncio.run(_drive(url, headers, clients, seconds))
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    return Load(
        answered=len(latencies) - errors,
        seconds=elapsed,
        p50_ms=percentile(0.5),
        p99_ms=percentile(0.99),
        errors=errors,
        generator_cpu=time.process_time() - started_cpu,
    )


async def _drive(
    url: str, headers: dict[str, str], clients: int, seconds: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                sent = {n: uuid.uuid4().hex if v == FRESH else v for n, v in headers.items()}
                async with session.get(url, headers=sent) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - began


DRIVERS: dict[str, Driver] = {"wrk": wrk, "python": python}


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (the first is the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def family(pid: int) -> list[int]:
    """``pid`` and its children now (a gateway with workers is a parent and its workers)."""
    found = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system, every thread) a running process has used; with
    ``children``, with those of its children now running."""
    total = 0
    for member in family(pid) if children else [pid]:
        try:
            fields = _stat(member)
        except FileNotFoundError:
            if member == pid:
                raise
            continue  # a worker that stopped since it was listed
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, *, children: bool = False) -> float:
    """A running process's resident memory in MB (with its children's, with ``children``)."""
    pages = sum(int(_stat(member)[21]) for member in (family(pid) if children else [pid]))
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
