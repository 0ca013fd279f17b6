"""What executes a process's CPU, read from perf (bench.native, ``bench.exchange --perf``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import native
from bench.exchange import parse_args

# As perf prints it, with the interpreter once in libpython and once linked into the program.
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Overhead  Shared Object
# ........  .......................................
#
    40.00%  libpython3.11.so.1.0
    15.00%  [kernel.kallsyms]
    10.00%  _rust.abi3.so
     8.00%  libc.so.6
     6.00%  libsqlite3.so.0.8.6
     4.00%  libcrypto.so.3
     3.00%  etree.cpython-311-x86_64-linux-gnu.so
     2.50%  python3.11
     2.00%  _sqlite3.cpython-311-x86_64-linux-gnu.so
     1.00%  libssl.so.3
     1.00%  _hashlib.cpython-311-x86_64-linux-gnu.so
     0.50%  [vdso]
     0.50%  [unknown]
     0.50%  loop.cpython-311-x86_64-linux-gnu.so
"""
# 94.00% listed: each share below is of that, as perf leaves the smallest objects out.
LISTED = 94.0


def test_a_report_is_added_up_by_what_executes_it() -> None:
    kinds = native.by_kind(native.parse_report(REPORT), executable="python3.11")
    expected = {
        native.INTERPRETER: 40.0 + 2.5,
        native.C_LIBRARY: 8.0,
        native.KERNEL: 15.0 + 0.5,
        "cryptography (signatures)": 10.0,
        "OpenSSL (TLS, hashlib)": 4.0 + 1.0 + 1.0,
        "SQLite": 6.0 + 2.0,
        "lxml (evidence schemas)": 3.0,
        native.OTHER: 0.5 + 0.5,  # [unknown] and uvloop
    }
    assert kinds == pytest.approx({k: 100 * v / LISTED for k, v in expected.items()})


def test_a_process_perf_took_no_samples_of_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        native.by_kind(native.parse_report("# nothing\n"), executable="python3.11")


def test_the_table_says_what_ran_outside_the_interpreter() -> None:
    kinds = native.by_kind(native.parse_report(REPORT), executable="python3")
    lines = native.table({"provider": 2.0}, {"provider": kinds})
    assert lines[1].split()[-2:] == ["42.6", "0.85"]  # 40 of 94 listed, of 2 ms
    # The program is python3 here, so python3.11's 2.5 are someone else's code. Without the
    # interpreter (40) and libc (8): 46 of 94 of 2 ms, i.e. 0.98 ms; 1.15 ms with the C library.
    assert lines[-1].startswith("outside the interpreter: 0.98 ms per exchange")
    assert "(1.15 ms with the C library)" in lines[-1]


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
        kinds = native.start({n: p.pid for n, p in busy.items()}, 1, tmp_path).executed_by()
    finally:
        for process in busy.values():
            process.kill()
            process.wait()
    assert kinds["hashing"]["OpenSSL (TLS, hashlib)"] > 50
    assert kinds["looping"][native.INTERPRETER] > 80
