"""Reading files: decompression within a size limit, and streaming where a format allows."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlas2d.config import Settings, get_settings
from atlas2d.errors import InvalidInput
from atlas2d.io.readers import InputFile, ReadOptions, read_file
from atlas2d.io.records import ParsedFile
from tests.conftest import VASP_DATA
from tests.support.synthetic import alexandria_document, synthetic_trajectories

FE2O2 = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    # preset 0: a 256 KiB dictionary, so that what is measured is the content, not the
    # decoder's dictionary (8 MiB at xz's default preset).
    "xz": lambda content: lzma.compress(content, preset=0),
}


def peak_memory(read: Callable[[], object]) -> tuple[object, int]:
    """What ``read()`` returns or raises, and the most memory Python held meanwhile
    (bytes, numpy arrays included). A first read of a real file beforehand keeps
    one-off costs (lazy imports, cached settings) out of the figure; ASE's OUTCAR
    reader is imported up front for the same reason."""
    import ase.io.vasp  # noqa: F401

    read_file(FE2O2, ReadOptions())
    tracemalloc.start()
    try:
        try:
            outcome: object = read()
        except InvalidInput as err:
            outcome = err
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def limit_1_mb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ATLAS2D_MAX_DECOMPRESSED_MB=1 for this test (settings are cached per process)."""
    monkeypatch.setenv("ATLAS2D_MAX_DECOMPRESSED_MB", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_limit_is_a_setting_with_a_sane_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLAS2D_MAX_DECOMPRESSED_MB", raising=False)
    assert Settings().max_decompressed_mb == 2048
    monkeypatch.setenv("ATLAS2D_MAX_DECOMPRESSED_MB", "16")
    assert Settings().max_decompressed_mb == 16


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_a_decompression_bomb_is_refused_before_it_is_held(
    suffix: str, limit_1_mb: None, tmp_path: Path
) -> None:
    bomb = tmp_path / f"alex.json.{suffix}"
    bomb.write_bytes(COMPRESSORS[suffix](b"{" + b" " * (16 << 20) + b"}"))  # 16 MB of JSON
    assert bomb.stat().st_size < 64 << 10
    refused, peak = peak_memory(lambda: read_file(bomb, ReadOptions()))
    assert isinstance(refused, InvalidInput)
    message = str(refused)
    assert str(bomb) in message and "ATLAS2D_MAX_DECOMPRESSED_MB" in message
    assert "more than 1 MB" in message and "\n" not in message
    assert peak < 4 << 20  # the 16 MB were never held


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("vasprun.xml.gz", b"<modeling>" + b" " * (16 << 20) + b"</modeling>"),
        ("OUTCAR.gz", b" vasp.6.4.2\n" + b" " * (16 << 20)),
    ],
    ids=["vasprun", "OUTCAR"],
)
def test_a_bomb_is_refused_while_it_streams(
    name: str, content: bytes, limit_1_mb: None, tmp_path: Path
) -> None:
    """vasprun.xml and OUTCAR are parsed as they are decompressed: the limit stops them
    midway, with the same message."""
    bomb = tmp_path / name
    bomb.write_bytes(gzip.compress(content))
    refused, peak = peak_memory(lambda: read_file(bomb, ReadOptions()))
    assert isinstance(refused, InvalidInput)
    assert "ATLAS2D_MAX_DECOMPRESSED_MB" in str(refused) and str(bomb) in str(refused)
    assert peak < 4 << 20


def test_a_plain_file_over_the_limit_is_refused(limit_1_mb: None, tmp_path: Path) -> None:
    big = tmp_path / "alex.json"
    big.write_bytes(b"{" + b" " * (2 << 20) + b"}")
    with pytest.raises(InvalidInput, match="ATLAS2D_MAX_DECOMPRESSED_MB"):
        read_file(big, ReadOptions())


def test_a_streamed_file_is_not_limited_while_a_file_read_whole_is(
    limit_1_mb: None, tmp_path: Path
) -> None:
    """An Alexandria trajectory file is read in batches (memory follows the batch), so
    the limit applies only where a file is held whole: a hull JSON, or ``read_file``."""
    trajectories = synthetic_trajectories(40, 20, 12, seed=3)
    streamed = tmp_path / "alex.json.gz"
    content = json.dumps(alexandria_document(trajectories)).encode()
    streamed.write_bytes(gzip.compress(content))
    assert len(content) > 2 << 20
    with InputFile(streamed, ReadOptions()) as reading:
        assert reading.streamed
        keys = [t.material_key for b in reading.batches(40) for t in b.trajectories]
        assert reading.sha256() == hashlib.sha256(content).hexdigest()
    assert keys == [t.material_key for t in trajectories]
    with pytest.raises(InvalidInput, match="more than 1 MB, the limit set by ATLAS2D_MAX"):
        read_file(streamed, ReadOptions())  # held whole
    hull = tmp_path / "hull.json"
    hull.write_bytes(b'{"entries": [' + b" " * (2 << 20) + b"]}")
    with (
        pytest.raises(InvalidInput, match="more than 1 MB, the limit set by ATLAS2D_MAX"),
        InputFile(hull, ReadOptions()) as reading,
    ):
        assert not reading.streamed
        list(reading.batches(40))


def test_a_vasprun_is_parsed_as_a_stream(tmp_path: Path) -> None:
    """A 10 MB vasprun.xml (the 28 steps of Fe2O2 twenty times over) is never held whole."""
    text = gzip.decompress(FE2O2.read_bytes())
    first, last = text.index(b"<calculation>"), text.rindex(b"</calculation>") + 14
    content = text[:first] + text[first:last] * 20 + text[last:]
    path = tmp_path / "vasprun.xml.gz"
    path.write_bytes(gzip.compress(content))
    parsed, peak = peak_memory(lambda: read_file(path, ReadOptions(material_key="Fe2O2")))
    assert isinstance(parsed, ParsedFile) and parsed.trajectories[0].n_frames == 560
    assert len(content) > 10 << 20 and peak < len(content) // 3
    assert parsed.sha256 == hashlib.sha256(content).hexdigest()  # of the decompressed content


def test_an_xz_file_declaring_a_huge_dictionary_is_refused(tmp_path: Path) -> None:
    """A 68-byte .xz whose header asks for a 1 GiB dictionary: the decoder would allocate
    it all before producing a byte."""
    content = bytearray(lzma.compress(b"{}", filters=[{"id": lzma.FILTER_LZMA2, "preset": 0}]))
    block_header = slice(12, 20)  # size, flags, filter 0x21 (LZMA2), 1 property byte, padding
    assert content[14:16] == b"\x21\x01"
    content[16] = 36  # LZMA2 dictionary size 2 << (36 // 2 + 11) = 1 GiB
    content[20:24] = struct.pack("<I", zlib.crc32(content[block_header]))
    bomb = tmp_path / "alex.json.xz"
    bomb.write_bytes(content)
    refused, peak = peak_memory(lambda: read_file(bomb, ReadOptions()))
    assert isinstance(refused, InvalidInput)
    assert "needs more than 256 MiB of memory" in str(refused) and str(bomb) in str(refused)
    assert peak < 64 << 20
