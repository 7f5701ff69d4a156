"""VASP inputs for candidates an active-learning campaign sends to DFT, and the label
ticket that lets their results find their way back.

The settings follow Alexandria's PBE relaxations: pymatgen's ``MPRelaxSet`` with
ENCUT 520 eV, PREC Accurate and ISIF 3. A layer (vacuum along c) keeps c fixed
(``LATTICE_CONSTRAINTS``, VASP ≥ 6.4) and has one k-point division along c.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas2d.errors import InvalidInput
from atlas2d.io.files import LABEL_TICKET
from atlas2d.io.validate import printable, shown

if TYPE_CHECKING:
    import ase

ENCUT_EV = 520
"""Plane-wave cutoff, eV (Alexandria, Materials Project)."""

_INCAR_SETTINGS: dict[str, Any] = {"ENCUT": ENCUT_EV, "PREC": "Accurate", "ISIF": 3}
# pymatgen writes Python booleans ("True True False"); this is VASP's own spelling.
_LAYER_CONSTRAINTS_LINE = "LATTICE_CONSTRAINTS = .TRUE. .TRUE. .FALSE."
_FIX_TICKET = (
    "write the folder again with atlas2d.io.vasp_inputs.write_vasp_inputs "
    f"or delete {LABEL_TICKET}."
)
# Incar.from_file cuts a line at "#" or "!" and VASP's SYSTEM is one line of text.
_UNSAFE_IN_INCAR = re.compile(r"[^A-Za-z0-9 _.,:/+()-]")


@dataclass(frozen=True)
class LabelTicket:
    """Which campaign iteration asked for a DFT label, and for which material.

    Attributes:
        campaign: name of the active-learning campaign.
        iteration: campaign iteration that selected the candidate (≥ 0).
        material_key: key the resulting VASP run is ingested under.
        formula: reduced formula of the structure (``Composition.reduced_formula``).
    """

    campaign: str
    iteration: int
    material_key: str
    formula: str

    def to_json(self) -> dict[str, Any]:
        """The ticket as a JSON object (what the ticket file and the source's options hold)."""
        return asdict(self)

    @classmethod
    def from_json(cls, values: Any, source: str = "label ticket") -> LabelTicket:
        """The ticket ``to_json`` wrote.

        Args:
            values: the decoded JSON object; keys other than the fields are ignored.
            source: how error messages name where ``values`` came from (a file path).

        Raises:
            InvalidInput: ``values`` is not an object, or a field is missing or of the
                wrong type.
        """
        if not isinstance(values, dict):
            raise InvalidInput(f"{source}: the ticket is not a JSON object; {_FIX_TICKET}")
        for name in ("campaign", "material_key", "formula"):
            value = values.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(
                    f"{source}: field {name!r} must be a non-empty string, "
                    f"got {printable(shown(value))}; {_FIX_TICKET}"
                )
        iteration = values.get("iteration")
        if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
            raise InvalidInput(
                f"{source}: field 'iteration' must be an integer ≥ 0, "
                f"got {printable(shown(iteration))}; {_FIX_TICKET}"
            )
        return cls(
            campaign=values["campaign"],
            iteration=iteration,
            material_key=values["material_key"],
            formula=values["formula"],
        )


def write_vasp_inputs(atoms: ase.Atoms, folder: Path, ticket: LabelTicket, layer: bool) -> Path:
    """Write INCAR, KPOINTS, POSCAR, POTCAR.spec and the label ticket into ``folder``.

    POTCAR.spec lists the POTCAR symbols of ``MPRelaxSet``, one per line, in POSCAR's
    species order; no POTCAR file is needed or written. Only the cell (Å), the
    species and the Cartesian positions (Å) of ``atoms`` are used: constraints,
    velocities and initial magnetic moments are not (MAGMOM is MPRelaxSet's). POSCAR
    groups the atoms by species in pymatgen's order, so it may list them in another
    order than ``atoms``. Writing the same input twice gives identical files; each file
    is replaced whole.

    Args:
        atoms: the structure; cell (3, 3) rows in Å, positions (N, 3) in Å.
        folder: where to write; created when missing.
        ticket: what the results will be labelled with; its formula must be the
            structure's reduced formula.
        layer: a 2D layer with its vacuum along c: c is kept fixed during the
            relaxation and the k-point grid has one division along c.

    Returns:
        The folder.

    Raises:
        InvalidInput: the ticket's formula is not the structure's.
    """
    # pymatgen's input sets take a second to import: only writers pay for them, the
    # readers that look for tickets do not.
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp.inputs import Kpoints
    from pymatgen.io.vasp.sets import MPRelaxSet

    structure = Structure(
        Lattice(atoms.cell[:]),
        atoms.get_chemical_symbols(),
        atoms.positions,
        coords_are_cartesian=True,
    )
    formula = structure.composition.reduced_formula
    if ticket.formula != formula:
        raise InvalidInput(
            f"label ticket for {printable(ticket.material_key)}: formula "
            f"{printable(shown(ticket.formula))} is not the structure's {formula!r}; "
            "make the ticket from the same structure."
        )
    input_set = MPRelaxSet(structure, user_incar_settings=_INCAR_SETTINGS)
    vasp_input = input_set.get_input_set(potcar_spec=True)

    system = _UNSAFE_IN_INCAR.sub(
        "_", f"{ticket.campaign} iteration {ticket.iteration} {ticket.material_key}"
    )
    incar = vasp_input["INCAR"]
    incar["SYSTEM"] = system
    incar_lines = [f"# atlas2d label: {system} ({formula})", incar.get_str(sort_keys=True).rstrip()]
    kpoints = vasp_input["KPOINTS"]
    if layer:
        incar_lines.append(_LAYER_CONSTRAINTS_LINE)
        divisions = [int(n) for n in kpoints.kpts[0]]
        kpoints = Kpoints.gamma_automatic(
            (divisions[0], divisions[1], 1),
            comment=f"{kpoints.comment}, one division along c (layer)",
        )

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "INCAR": "\n".join(incar_lines) + "\n",
        "KPOINTS": str(kpoints),
        "POSCAR": vasp_input["POSCAR"].get_str(),
        "POTCAR.spec": "".join(f"{symbol}\n" for symbol in input_set.potcar_symbols),
        LABEL_TICKET: json.dumps(ticket.to_json(), indent=2, sort_keys=True) + "\n",
    }
    for name, text in files.items():
        _replace(folder / name, text)
    return folder


def read_label_ticket(folder: Path) -> LabelTicket | None:
    """The label ticket in ``folder``; None when there is none.

    Raises:
        InvalidInput: the ticket is unreadable, not JSON, or a field is missing or
            of the wrong type.
    """
    path = folder / LABEL_TICKET
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(
            f"{printable(str(path))}: cannot read the label ticket ({err}); fix or delete it."
        ) from err
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidInput(
            f"{printable(str(path))}: the label ticket is not JSON ({err.msg} at line "
            f"{err.lineno}, column {err.colno}); {_FIX_TICKET}"
        ) from err
    return LabelTicket.from_json(values, source=printable(str(path)))


def _replace(path: Path, text: str) -> None:
    """Write ``text`` next to ``path`` and rename it over ``path``: a reader sees the
    old file or the new one, never half of one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8", newline="\n")
    partial.replace(path)
