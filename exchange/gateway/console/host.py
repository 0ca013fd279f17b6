"""The gateway host's CPU, memory and disk (environmental monitoring), read where the kernel
keeps them: ``/proc/loadavg``, ``/proc/meminfo`` and :func:`shutil.disk_usage` of the data
folder. On a system without ``/proc`` the figures it lacks are None."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Host:
    cpus: int | None
    load_1m: float | None
    load_5m: float | None
    load_15m: float | None
    memory_total: int | None  # bytes
    memory_available: int | None
    disk_total: int  # bytes, of the file system holding the data folder
    disk_free: int
    process_memory: int | None  # resident bytes of this process

    @property
    def disk_used_percent(self) -> float:
        return 100 * (self.disk_total - self.disk_free) / self.disk_total if self.disk_total else 0

    @property
    def memory_used_percent(self) -> float | None:
        if not self.memory_total or self.memory_available is None:
            return None
        return 100 * (self.memory_total - self.memory_available) / self.memory_total

    def document(self) -> dict[str, object]:
        return {
            **asdict(self),
            "disk_used_percent": round(self.disk_used_percent, 1),
            "memory_used_percent": None
            if self.memory_used_percent is None
            else round(self.memory_used_percent, 1),
        }


def _kib_fields(path: Path) -> dict[str, int]:
    """``Name: 123 kB`` lines as bytes."""
    found: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            found[name.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return found


def read(data_dir: Path, *, proc: Path = Path("/proc")) -> Host:
    try:
        load: tuple[float, ...] = tuple(
            float(v) for v in (proc / "loadavg").read_text().split()[:3]
        )
    except (OSError, ValueError):
        load = ()
    memory = _kib_fields(proc / "meminfo")
    process = _kib_fields(proc / "self" / "status")
    disk = shutil.disk_usage(data_dir)
    return Host(
        cpus=os.cpu_count(),
        load_1m=load[0] if len(load) == 3 else None,
        load_5m=load[1] if len(load) == 3 else None,
        load_15m=load[2] if len(load) == 3 else None,
        memory_total=memory.get("MemTotal"),
        memory_available=memory.get("MemAvailable"),
        disk_total=disk.total,
        disk_free=disk.free,
        process_memory=process.get("VmRSS"),
    )
