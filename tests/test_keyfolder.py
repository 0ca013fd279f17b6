"""Keys and secrets on disk: private from the first byte, whole or absent, never overwritten."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from exchange import keyfolder
from exchange.consent.service import ConsentService
from exchange.consent.settings import ConsentSettings
from exchange.errors import Error, NotFound
from exchange.sample import federation
from exchange.trust.keys import load_private_key, private_key_pem


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: nothing here may rely on the operator's."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_folders_are_0700_and_secrets_0600_whatever_the_umask(tmp_path: Path) -> None:
    folder = keyfolder.create(tmp_path / "role")
    assert mode(folder) == 0o700
    keyfolder.write_private(folder / "token", b"t")
    assert mode(folder / "token") == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["token"]  # no temporary file left


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    keyfolder.write_private(tmp_path / "ca.key", b"first")
    with pytest.raises(FileExistsError, match=r"File exists: '.*ca\.key'"):
        keyfolder.write_private(tmp_path / "ca.key", b"second")
    assert (tmp_path / "ca.key").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]


def test_a_secret_is_made_once_and_then_read(tmp_path: Path) -> None:
    first = keyfolder.secret(tmp_path / "data" / "session.key")
    assert len(first) == 32
    assert keyfolder.secret(tmp_path / "data" / "session.key") == first
    assert mode(tmp_path / "data" / "session.key") == 0o600
    assert mode(tmp_path / "data") == 0o700


def test_a_new_key_comes_with_its_csr(tmp_path: Path) -> None:
    csr_path = keyfolder.new_key(tmp_path / "tsa", "tsa", label="tsa1")
    key = load_private_key(tmp_path / "tsa" / "tsa.key")
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.public_key() == key.public_key()
    assert csr.is_signature_valid
    assert mode(tmp_path / "tsa" / "tsa.key") == 0o600


def test_missing_files_are_named_with_what_to_do(tmp_path: Path) -> None:
    keyfolder.new_key(tmp_path, "consent", label="consent")
    with pytest.raises(NotFound, match=r"consent\.pem is missing; have it certified"):
        keyfolder.ec_pair(tmp_path, "consent", hint="have it certified")


def test_a_signing_key_must_be_ec(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keyfolder.write_private(tmp_path / "idp.key", private_key_pem(key))
    with pytest.raises(Error, match="must hold an EC key"):
        keyfolder.ec_key(tmp_path / "idp.key")


def test_every_roles_keys_secrets_and_database_are_private(tmp_path: Path) -> None:
    layout = federation.create(tmp_path / "f", federation.Ports(*range(20000, 20010)))
    ConsentService(ConsentSettings.load(layout.consent)).close()  # makes its database
    private = [
        p
        for p in layout.base.rglob("*")
        if p.suffix in (".key", ".db", ".db-wal", ".db-shm") or p.name == "admin-token"
    ]
    databases = {p.name for p in private if p.suffix == ".db"}
    assert {"central.db", "gateway.db", "consent.db", "population.db"} <= databases
    for path in private:  # the sample registers too: they hold people's records
        assert mode(path) == 0o600, path
        assert mode(path.parent) == 0o700, path.parent
