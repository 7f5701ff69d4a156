"""The local model-file cache (``mlff.artifacts``): what a fetched file looks like on
disk and how an unreadable one is reported."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas2d.errors import NotFound
from atlas2d.mlff.artifacts import read_verified, write_verified

CONTENT = b"model bytes " * 100
SHA256 = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_fetched_file_has_the_mode_the_umask_gives(tmp_path: Path, umask_027: None) -> None:
    path = tmp_path / "blobs" / SHA256
    write_verified(path, [CONTENT[:500], CONTENT[500:]], SHA256, "mos2:1")
    assert path.read_bytes() == CONTENT
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 less 0o027, not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == [SHA256]  # no temporary left


def test_an_unreadable_cached_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / SHA256
    path.write_bytes(CONTENT)
    if os.geteuid() == 0:  # root reads a mode-000 file anyway
        real = Path.read_bytes

        def denied(self: Path) -> bytes:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    else:
        path.chmod(0)
    try:
        with pytest.raises(NotFound) as raised:
            read_verified(path, SHA256, "mos2:1")
    finally:
        path.chmod(0o600)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"The artifact of model mos2:1 cannot be read: {path}: ")
    assert "Permission denied" in message
