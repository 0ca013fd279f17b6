"""A role's folder of private keys and secrets, shared by every role's ``files.py``.

Folders this module makes are 0700; private keys and secrets are 0600 from the moment they
exist (never widened by the umask), written whole or not at all (a temporary file in the same
folder, synced, then linked into place), and never overwritten. An existing folder's mode is
left as the operator set it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.errors import Error, NotFound
from exchange.trust.keys import (
    PrivateKey,
    build_csr,
    csr_pem,
    generate_key,
    load_certificate,
    load_private_key,
    private_key_pem,
)


def create(folder: Path) -> Path:
    """``folder``, made 0700 if it did not exist."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (0600); ``FileExistsError`` if it exists."""
    create(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp makes it 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and refuses an existing name
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    finally:
        Path(temporary).unlink()
    _sync(path.parent)


def secret(path: Path, size: int = 32) -> bytes:
    """The secret kept in ``path``, made (random, 0600) on first use. Replicas starting together
    agree: whoever links the file first wins, the others read it."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            write_private(path, secrets.token_bytes(size))
    return path.read_bytes()


def write_key(path: Path, key: PrivateKey) -> None:
    write_private(path, private_key_pem(key))


def new_key(folder: Path, name: str, *, label: str) -> Path:
    """Generate ``<name>.key`` (EC P-256) and its CSR ``<name>.csr`` labelled ``label``; return the
    CSR's path. The central authority sets the certificate's real subject."""
    key = generate_key()
    write_key(create(folder) / f"{name}.key", key)
    csr = folder / f"{name}.csr"
    csr.write_text(csr_pem(build_csr(key, label)))
    return csr


def require(folder: Path, names: Iterable[str], *, hint: str) -> None:
    """:class:`NotFound` naming the first of ``names`` missing from ``folder``, and ``hint``."""
    for name in names:
        if not (folder / name).exists():
            raise NotFound(f"{folder / name} is missing; {hint}")


def pair(folder: Path, name: str, *, hint: str) -> tuple[PrivateKey, x509.Certificate]:
    """``<name>.key`` and its certificate ``<name>.pem``, once both are there."""
    require(folder, (f"{name}.key", f"{name}.pem"), hint=hint)
    return load_private_key(folder / f"{name}.key"), load_certificate(folder / f"{name}.pem")


def ec_pair(
    folder: Path, name: str, *, hint: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """:func:`pair` for a key that signs JWS (ES256): it must be an EC key."""
    key, certificate = pair(folder, name, hint=hint)
    return _ec(key, folder / f"{name}.key"), certificate


def ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return _ec(load_private_key(path), path)


def _ec(key: PrivateKey, path: Path) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise Error(f"{path} must hold an EC key (it signs ES256)")
    return key


def _sync(folder: Path) -> None:
    """Make a new name in ``folder`` survive a power loss."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
