"""What executes a process's CPU, by shared object: the interpreter, the C library, the kernel
and each compiled library.

Asked of the gateways by ``bench.exchange --perf``: a profile by Python function says where the
interpreter goes, not how much of a gateway's CPU any change to its Python could remove. That is
what runs outside the interpreter: signatures, TLS, SQLite, the kernel's network and disk work.
``perf record`` samples each process (every thread, on-CPU only) while the row's load runs, and
``perf report --sort dso`` gives each shared object's share of the samples.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.load import debian_tool, family

INTERPRETER = "the interpreter (libpython)"
C_LIBRARY = "the C library (libc)"
# (what executes, substrings of its shared objects' names), first match wins; the rest is OTHER.
KINDS = [
    (INTERPRETER, ("libpython",)),
    (C_LIBRARY, ("libc.so", "libc-")),
    ("the kernel", ("[kernel",)),
    ("cryptography (signatures)", ("_rust.abi3",)),
    ("OpenSSL (TLS, hashlib)", ("libcrypto", "libssl", "_ssl.", "_hashlib.")),
    ("SQLite", ("sqlite",)),
    ("lxml (evidence schemas)", ("etree.", "objectify.", "libxml", "libxslt")),
]
OTHER = "other extension modules"
_LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S.*?)\s*$")


def perf_path() -> str:
    """perf, from Debian's packages; installed when missing, as the benchmark installs wrk."""
    return debian_tool("perf", "linux-perf", otherwise="or leave out --perf")


def parse_report(text: str) -> dict[str, float]:
    """``perf report --sort dso --stdio``'s lines: shared object -> percent of the samples."""
    shares: dict[str, float] = {}
    for line in text.splitlines():
        found = _LINE.match(line)
        if found and not line.lstrip().startswith("#"):
            dso = found.group(2)
            shares[dso] = shares.get(dso, 0.0) + float(found.group(1))
    return shares


def by_kind(shares: dict[str, float]) -> dict[str, float]:
    """The shares of :func:`parse_report` added up by what executes them (:data:`KINDS`)."""
    kinds = {kind: 0.0 for kind, _ in KINDS} | {OTHER: 0.0}
    for dso, share in shares.items():
        kind = next((k for k, names in KINDS if any(n in dso for n in names)), OTHER)
        kinds[kind] += share
    return kinds


@contextlib.contextmanager
def recording(
    pids: dict[str, int], seconds: int, folder: Path
) -> Iterator[dict[str, dict[str, float]]]:
    """Sample each process (with its workers) for ``seconds`` while the block runs; the mapping
    yielded is filled on leaving, name -> :func:`by_kind`."""
    perf = perf_path()
    folder.mkdir(parents=True, exist_ok=True)
    started = {
        name: subprocess.Popen(
            [
                perf,
                "record",
                "-q",
                "-F",
                "999",
                "-p",
                ",".join(map(str, family(pid))),
                "-o",
                str(folder / f"{name}.data"),
                "--",
                "sleep",
                str(seconds),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    found: dict[str, dict[str, float]] = {}
    try:
        yield found
    finally:
        for process in started.values():
            process.wait()
    for name in started:
        report = subprocess.run(
            [perf, "report", "-i", str(folder / f"{name}.data"), "--sort", "dso", "--stdio"],
            capture_output=True,
            text=True,
            check=True,
        )
        found[name] = by_kind(parse_report(report.stdout))


def table(cpu_ms: dict[str, float], kinds: dict[str, dict[str, float]]) -> list[str]:
    """Lines: each kind's share and CPU ms per exchange for each process, then what runs
    outside the interpreter and the C library, i.e. what no change to the Python can remove."""
    names = list(kinds)
    lines = [f"{'executed by':<34}" + "".join(f"{name + ' %':>16}{'ms':>8}" for name in names)]
    for kind in [*(k for k, _ in KINDS), OTHER]:
        cells = "".join(
            f"{kinds[n][kind]:>16.1f}{kinds[n][kind] * cpu_ms[n] / 100:>8.2f}" for n in names
        )
        lines.append(f"{kind:<34}{cells}")
    native = sum(
        (100 - kinds[n][INTERPRETER] - kinds[n][C_LIBRARY]) * cpu_ms[n] / 100 for n in names
    )
    with_libc = native + sum(kinds[n][C_LIBRARY] * cpu_ms[n] / 100 for n in names)
    lines.append(
        f"outside the interpreter: {native:.2f} ms per exchange, all processes together"
        f" ({with_libc:.2f} ms with the C library)"
    )
    return lines
