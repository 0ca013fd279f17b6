"""What executes a process's CPU, by shared object: the interpreter, the C library, the kernel
and each compiled library.

Asked of the gateways by ``bench.exchange --perf``: a profile by Python function says where the
interpreter goes, not how much of a gateway's CPU runs outside it (signatures, TLS, SQLite, the
kernel's network and disk work), which making the Python leaner leaves as it is unless it also
asks for less of that work. ``perf record`` samples each process (every thread, on-CPU only,
the ``cpu-clock`` event, which every machine has and counts once) while the row's load runs, and
``perf report --sort dso`` gives each shared object's share of the samples.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.load import debian_tool, family

INTERPRETER = "the interpreter"
C_LIBRARY = "the C library (libc)"
KERNEL = "the kernel"
# (what executes, substrings of its shared objects' names), first match wins; the rest is OTHER.
# The interpreter is also the executable itself, where Python is built without libpython.
KINDS = [
    (INTERPRETER, ("libpython",)),
    (C_LIBRARY, ("libc.so", "libc-")),
    (KERNEL, ("[kernel",)),  # and every other [name] but [unknown]: modules, [vdso]
    ("cryptography (signatures)", ("_rust.abi3",)),
    ("OpenSSL (TLS, hashlib)", ("libcrypto", "libssl", "_ssl.", "_hashlib.")),
    ("SQLite", ("sqlite",)),
    ("lxml (evidence schemas)", ("etree.", "objectify.", "libxml", "libxslt")),
]
OTHER = "other native code"
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


def by_kind(shares: dict[str, float], *, executable: str) -> dict[str, float]:
    """The shares of :func:`parse_report` added up by what executes them (:data:`KINDS`), in
    percent of all samples (whatever perf left unlisted is spread, not lost). ``executable``
    is the process's program (``/proc/<pid>/exe``'s name): the interpreter where libpython is
    linked in."""
    total = sum(shares.values())
    if total <= 0:
        raise ValueError("perf took no samples of the process")
    kinds = {kind: 0.0 for kind, _ in KINDS} | {OTHER: 0.0}
    for dso, share in shares.items():
        kinds[_kind(dso, executable)] += 100 * share / total
    return kinds


def _kind(dso: str, executable: str) -> str:
    if dso == executable:
        return INTERPRETER
    if dso.startswith("[") and dso != "[unknown]":
        return KERNEL
    return next((kind for kind, names in KINDS if any(n in dso for n in names)), OTHER)


@dataclass
class Recording:
    """``perf record`` running on some processes (see :func:`start`)."""

    perf: str
    folder: Path
    started: dict[str, subprocess.Popen[bytes]]
    executables: dict[str, str]

    def executed_by(self) -> dict[str, dict[str, float]]:
        """Once perf is done: name -> :func:`by_kind`. A perf that failed stops the benchmark
        with what it said."""
        found = {}
        for name, process in self.started.items():
            _, said = process.communicate()
            if process.returncode != 0:
                sys.exit(f"perf record failed on {name}: {said.decode(errors='replace')}")
            data = str(self.folder / f"{name}.data")
            report = subprocess.run(
                [self.perf, "report", "-i", data, "--sort", "dso", "--stdio"],
                capture_output=True,
                text=True,
                check=False,
            )
            if report.returncode != 0:
                sys.exit(f"perf report failed on {name}: {report.stderr}")
            shares = parse_report(report.stdout)
            if not any(dso.startswith("[kernel") for dso in shares):
                print(f"perf saw no kernel time in {name}: is it allowed to?", file=sys.stderr)
            found[name] = by_kind(shares, executable=self.executables[name])
        return found


def start(pids: dict[str, int], seconds: int, folder: Path) -> Recording:
    """Sample each process, with its workers, for the next ``seconds``."""
    perf = perf_path()
    folder.mkdir(parents=True, exist_ok=True)
    started = {
        name: subprocess.Popen(
            [
                *(perf, "record", "-q", "-e", "cpu-clock", "-F", "999"),
                *("-p", ",".join(map(str, family(pid))), "-o", str(folder / f"{name}.data")),
                *("--", "sleep", str(seconds)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, pid in pids.items()
    }
    executables = {name: Path(f"/proc/{pid}/exe").resolve().name for name, pid in pids.items()}
    return Recording(perf, folder, started, executables)


def table(cpu_ms: dict[str, float], kinds: dict[str, dict[str, float]]) -> list[str]:
    """Lines: each kind's share and CPU ms per exchange for each process, then what ran outside
    the interpreter and the C library in all."""
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
        f" ({with_libc:.2f} ms with the C library); sampling adds a little CPU to this row"
    )
    return lines
