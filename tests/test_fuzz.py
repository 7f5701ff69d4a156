"""Seeded mutation fuzzing of ingest (issue 15, finding 9).

Mutants of a real Alexandria-format file (two relaxations from the bundled demo
dataset) and of a real vasprun.xml (Fe2O2, cut to four ionic steps) go through the
ingest service. Every mutant must be accepted, or refused with an ``Atlas2dError``
whose message is one line naming the file; never another exception (which the CLI
would print as a traceback), never a partial write (row counts unchanged after a
refusal), and a mutant accepted twice adds nothing the second time. A few refused
mutants also go through the installed ``atlas2d ingest`` (exit code 1, one line).

The counts are printed (``pytest -s``) and recorded as the test's ``fuzz_counts``
property.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import json
import lzma
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import Atlas2dError
from atlas2d.io.readers import ReadOptions
from atlas2d.services.ingest import ALREADY_PRESENT, ingest_file
from tests.conftest import VASP_DATA
from tests.services.test_ingest import atlas2d_command

SEED = 15
N_ALEXANDRIA = 160
N_VASPRUN = 160
N_THROUGH_THE_COMMAND = 6
TABLES = ("sources", "materials", "relaxations", "frames", "energy_entries")

# Values a mutant puts where the file had another: non-finite and huge numbers, numbers
# as strings or booleans, nothing, empty, NUL and a lone surrogate.
JSON_VALUES: list[Any] = [
    float("nan"),
    float("inf"),
    -float("inf"),
    1e308,
    -1e308,
    10**400,
    "1.5",
    True,
    None,
    "",
    "\x00",
    "\ud800",
    0,
    [],
    {},
]
JSON_KEYS = ["", "\x00", "\udc80", "energy", "stress", "steps", "1.5"]
XML_VALUES = [
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "1" * 400,
    "1.5",
    "abc",
    "",
    "T",
    "1.0 2.0",
    "\x00",
]
XML_ATTRIBUTES = ["", "stress", "forces", "basis", "positions", "int", "string", "logical", "x"]
ENTITIES = (
    '<!DOCTYPE modeling [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>',
    '<!DOCTYPE modeling [<!ENTITY a "1.0 "><!ENTITY b "&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;">]>',
)


@dataclass
class Mutant:
    label: str
    name: str
    content: bytes


@dataclass
class Outcome:
    accepted: int = 0
    refused: int = 0
    traceback: list[str] = field(default_factory=list)
    multi_line: list[str] = field(default_factory=list)
    partial_write: list[str] = field(default_factory=list)
    refused_mutants: list[tuple[Mutant, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "traceback": len(self.traceback),
            "multi-line refusal": len(self.multi_line),
            "partial write": len(self.partial_write),
        }


# --- the two real files -------------------------------------------------------------


@lru_cache(maxsize=1)
def alexandria_base() -> dict[str, Any]:
    """Two relaxations (3 and 6 sites, 6 steps each) of the bundled demo dataset."""
    data = resources.files("atlas2d.demo") / "data" / "demo_2d_relaxations.json.xz"
    document = json.loads(lzma.decompress(data.read_bytes()))
    base = {}
    for key in ("demo-2d-0001", "demo-2d-0067"):
        run = document[key][0]
        base[key] = [{**run, "steps": run["steps"][:6]}]
    return base


@lru_cache(maxsize=1)
def vasprun_base() -> bytes:
    """The real Fe2O2 vasprun.xml, cut to its first four ionic steps, each with only its
    last SCF step (the one the reader uses)."""
    root = ET.fromstring(gzip.decompress((VASP_DATA / "Fe2O2_relax_vasprun.xml.gz").read_bytes()))
    for calculation in root.findall("calculation")[4:]:
        root.remove(calculation)
    for calculation in root.findall("calculation"):
        for scstep in calculation.findall("scstep")[:-1]:
            calculation.remove(scstep)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# --- mutations --------------------------------------------------------------------------


_DUPLICATED = "\x01 duplicated keys"
"""Marks an object written from a list of (key, value) pairs, so that a key can repeat."""


def dump_json(value: Any) -> str:
    """JSON as Python's json writes it (NaN, Infinity, big integers, \\u escapes); an
    object ``{_DUPLICATED: pairs}`` is written from its pairs."""
    if isinstance(value, dict):
        pairs = value[_DUPLICATED] if _DUPLICATED in value else value.items()
        return "{" + ",".join(f"{json.dumps(k)}:{dump_json(v)}" for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_json(v) for v in value) + "]"
    return json.dumps(value)


def _json_slots(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document."""
    stack = [value]
    while stack:
        container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, child in items:
            yield container, key
            if isinstance(child, (dict, list)):
                stack.append(child)


def _flip(rng: random.Random, content: bytes) -> bytes:
    mutated = bytearray(content)
    for _ in range(rng.randint(1, 4)):
        mutated[rng.randrange(len(mutated))] ^= rng.randint(1, 255)
    return bytes(mutated)


def _truncate(rng: random.Random, content: bytes) -> bytes:
    return content[: rng.randrange(len(content))]


def _gzip(content: bytes) -> bytes:
    return gzip.compress(content, mtime=0)  # the same bytes at every run


def _wrap(rng: random.Random, mutant: Mutant) -> Mutant:
    """The mutant compressed, sometimes with its compressed stream damaged too."""
    suffix, compress = rng.choice([("gz", _gzip), ("bz2", bz2.compress), ("xz", lzma.compress)])
    content = compress(mutant.content)
    damage = rng.random()
    if damage < 0.2:
        content, how = _truncate(rng, content), "truncated "
    elif damage < 0.4:
        content, how = _flip(rng, content), "flipped "
    else:
        how = ""
    return Mutant(f"{mutant.label} in {how}{suffix}", f"{mutant.name}.{suffix}", content)


def json_mutant(rng: random.Random) -> Mutant:
    document = copy.deepcopy(alexandria_base())
    operation = rng.choice(["flip", "truncate", "delete", "duplicate", "replace", "rekey"])
    slots = list(_json_slots(document))
    container, key = rng.choice(slots)
    if operation == "flip":
        content = _flip(rng, dump_json(document).encode())
        label = "byte flips"
    elif operation == "truncate":
        content = _truncate(rng, dump_json(document).encode())
        label = "truncation"
    elif operation == "delete":
        del container[key]
        content, label = dump_json(document).encode(), f"deleted {key!r}"
    elif operation == "duplicate":
        if isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]))
        else:
            pairs = [*container.items(), (key, copy.deepcopy(container[key]))]
            container.clear()
            container[_DUPLICATED] = pairs
        content, label = dump_json(document).encode(), f"duplicated {key!r}"
    elif operation == "replace":
        value = rng.choice(JSON_VALUES)
        container[key] = value
        content, label = dump_json(document).encode(), f"{key!r} = {value!r:.20}"
    else:
        if isinstance(container, dict):
            new_key = rng.choice(JSON_KEYS)
            container[new_key] = container.pop(key)
            label = f"key {key!r} renamed {new_key!r}"
        else:
            container[key] = rng.choice(JSON_VALUES)
            label = f"item {key} replaced"
        content = dump_json(document).encode()
    mutant = Mutant(f"alexandria: {label}", "alex.json", content)
    return _wrap(rng, mutant) if rng.random() < 0.15 else mutant


def xml_mutant(rng: random.Random) -> Mutant:
    base = vasprun_base()
    operation = rng.choice(
        ["flip", "truncate", "delete", "duplicate", "text", "attribute", "entity"]
    )
    if operation == "flip":
        content, label = _flip(rng, base), "byte flips"
    elif operation == "truncate":
        content, label = _truncate(rng, base), "truncation"
    elif operation == "entity":
        declaration = rng.choice(ENTITIES)
        reference = "&xxe;" if "xxe" in declaration else "&c;"
        text_ = base.decode().replace("<modeling>", f"{declaration}\n<modeling>", 1)
        anchor = rng.choice(['<i name="e_fr_energy">', "<v>", '<i type="int" name="NSW">'])
        content = text_.replace(anchor, anchor + reference, 1).encode()
        label = f"entity {reference} in {anchor}"
    else:
        root = ET.fromstring(base)
        parents = {child: parent for parent in root.iter() for child in parent}
        element = rng.choice(list(parents))
        parent = parents[element]
        if operation == "delete":
            parent.remove(element)
            label = f"deleted <{element.tag} {element.attrib}>"
        elif operation == "duplicate":
            parent.insert(list(parent).index(element), copy.deepcopy(element))
            label = f"duplicated <{element.tag} {element.attrib}>"
        elif operation == "text":
            value = rng.choice(XML_VALUES)
            tokens = (element.text or "").split()
            if tokens and rng.random() < 0.5:
                tokens[rng.randrange(len(tokens))] = value
                element.text = " ".join(tokens)
            else:
                element.text = value
            label = f"text of <{element.tag} {element.attrib}> with {value[:10]!r}"
        else:
            value = rng.choice(XML_ATTRIBUTES)
            name = rng.choice([*element.attrib, "name", "type"])
            element.set(name, value)
            label = f"<{element.tag}> {name}={value!r}"
        content = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    mutant = Mutant(f"vasprun: {label}", "Fe2O2_relax_vasprun.xml", content)
    return _wrap(rng, mutant) if rng.random() < 0.15 else mutant


def mutants() -> list[Mutant]:
    rng = random.Random(SEED)
    return [json_mutant(rng) for _ in range(N_ALEXANDRIA)] + [
        xml_mutant(rng) for _ in range(N_VASPRUN)
    ]


# --- the test ----------------------------------------------------------------------------


def _row_counts(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
    with sessions.begin() as session:
        return tuple(session.execute(text(query)).one())


def run_mutant(
    sessions: sessionmaker[Session], mutant: Mutant, path: Path, outcome: Outcome
) -> None:
    before = _row_counts(sessions)
    where = f"{mutant.label} ({path})"
    try:
        ingest_file(sessions, path, ReadOptions())
    except Atlas2dError as err:
        outcome.refused += 1
        message = str(err)
        if "\n" in message or str(path) not in message:
            outcome.multi_line.append(f"{where}: {message!r}")
        outcome.refused_mutants.append((mutant, message))
        if _row_counts(sessions) != before:
            outcome.partial_write.append(f"{where}: rows written before the refusal")
        return
    except Exception as err:  # the CLI would print this as a traceback
        outcome.traceback.append(f"{where}: {type(err).__name__}: {str(err)[:160]!r}")
        if _row_counts(sessions) != before:
            outcome.partial_write.append(f"{where}: rows written before the traceback")
        return
    outcome.accepted += 1
    after = _row_counts(sessions)
    again = ingest_file(sessions, path, ReadOptions())
    if again.status != ALREADY_PRESENT or _row_counts(sessions) != after:
        outcome.partial_write.append(f"{where}: ingesting it again wrote rows")


@pytest.fixture(scope="module")
def fuzz_database_url(database_server: Engine) -> Iterator[str]:
    """A database of its own for the installed command (which commits)."""
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_fuzz")
    yield url
    _drop_database(database_server, url)


@pytest.mark.slow
def test_every_mutant_is_accepted_or_refused_in_one_line(
    sessions: sessionmaker[Session],
    fuzz_database_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    outcome = Outcome()
    for index, mutant in enumerate(mutants()):
        path = tmp_path / f"{index:03d}" / mutant.name
        path.parent.mkdir()
        path.write_bytes(mutant.content)
        run_mutant(sessions, mutant, path, outcome)

    # A few refusals through the installed command: exit code 1 and one line on stderr.
    command_failures = []
    chosen = [m for m in outcome.refused_mutants if m[0].label.startswith("alexandria")][:3]
    chosen += [m for m in outcome.refused_mutants if m[0].label.startswith("vasprun")][:3]
    for number, (mutant, _) in enumerate(chosen[:N_THROUGH_THE_COMMAND]):
        path = tmp_path / f"command-{number}" / mutant.name
        path.parent.mkdir()
        path.write_bytes(mutant.content)
        done = atlas2d_command(fuzz_database_url, "ingest", str(path))
        lines = done.stderr.strip().splitlines()
        if done.returncode != 1 or len(lines) != 1 or not lines[0].startswith("error:"):
            command_failures.append(f"{mutant.label}: rc {done.returncode}, {done.stderr!r}")

    counts = outcome.counts()
    record_property("fuzz_counts", counts)
    print(f"\nfuzz counts (seed {SEED}, {N_ALEXANDRIA} + {N_VASPRUN} mutants): {counts}")
    problems = outcome.traceback + outcome.multi_line + outcome.partial_write + command_failures
    assert not problems, f"{counts}\n" + "\n".join(problems[:40])
    assert outcome.accepted > 0 and outcome.refused > 0  # both paths were exercised
    assert len(chosen) == N_THROUGH_THE_COMMAND
