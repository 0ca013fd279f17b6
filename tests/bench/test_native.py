"""What executes a process's CPU, read from perf (bench.native, ``bench.exchange --perf``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import native
from bench.exchange import parse_args

REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Overhead  Shared Object
# ........  .......................................
#
    47.34%  libpython3.11.so.1.0
    17.21%  [kernel.kallsyms]
     9.79%  _rust.abi3.so
     7.99%  libc.so.6
     5.91%  libsqlite3.so.0.8.6
     3.66%  libcrypto.so.3
     3.34%  etree.cpython-311-x86_64-linux-gnu.so
     0.45%  _sqlite3.cpython-311-x86_64-linux-gnu.so
     0.30%  loop.cpython-311-x86_64-linux-gnu.so
"""


def test_a_report_is_added_up_by_what_executes_it() -> None:
    kinds = native.by_kind(native.parse_report(REPORT))
    assert kinds[native.INTERPRETER] == pytest.approx(47.34)
    assert kinds["the kernel"] == pytest.approx(17.21)
    assert kinds["SQLite"] == pytest.approx(5.91 + 0.45)
    assert kinds["lxml (evidence schemas)"] == pytest.approx(3.34)
    assert kinds[native.OTHER] == pytest.approx(0.30)
    assert sum(kinds.values()) == pytest.approx(95.99)


def test_the_table_says_what_no_change_to_the_python_can_remove() -> None:
    kinds = native.by_kind(native.parse_report(REPORT))
    lines = native.table({"provider": 2.0}, {"provider": kinds})
    assert lines[1].split()[-2:] == ["47.3", "0.95"]  # the interpreter's share and its ms
    # 2 ms, less the interpreter's 47.34% and the C library's 7.99%: 0.89 ms; 1.05 with libc.
    assert lines[-1].startswith("outside the interpreter: 0.89 ms per exchange")
    assert "(1.05 ms with the C library)" in lines[-1]


def test_perf_is_off_by_default() -> None:
    assert not parse_args([]).perf
    assert parse_args(["--perf"]).perf


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf is not installed (linux-perf)")
def test_a_hashing_process_and_a_python_loop_are_told_apart(tmp_path: Path) -> None:
    hashing = "import hashlib\nwhile True: hashlib.sha256(bytes(1 << 20)).digest()"
    looping = "n = 0\nwhile True: n = (n + 1) % 7"
    busy = {
        name: subprocess.Popen([sys.executable, "-c", code])
        for name, code in (("hashing", hashing), ("looping", looping))
    }
    try:
        with native.recording({n: p.pid for n, p in busy.items()}, 2, tmp_path) as kinds:
            pass
    finally:
        for process in busy.values():
            process.kill()
            process.wait()
    assert kinds["hashing"]["OpenSSL (TLS, hashlib)"] > 50
    assert kinds["looping"][native.INTERPRETER] > 80
