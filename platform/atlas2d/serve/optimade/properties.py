"""The properties of an OPTIMADE ``structures`` entry: what each one is in SQL (over
``materials m`` and the joins it names), its OPTIMADE type, whether filters and sort may
use it, and what ``/v1/info/structures`` says about it.

An entry is one material (``id`` is its key). Its structure is the final frame of its
last DFT relaxation, else its latest DFT energy entry (the convex-hull entry); a
material with neither has the structure fields null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROVIDER_PREFIX = "atlas2d"

Kind = Literal["string", "integer", "float", "timestamp", "list", "unknown"]
ListItem = Literal["string", "integer", "float", "element", "none"]
Join = Literal["structure", "stability"]


@dataclass(frozen=True)
class Property:
    """One entry property.

    Attributes:
        name: the OPTIMADE name (``nsites``, ``_atlas2d_e_above_hull``).
        kind: its OPTIMADE type.
        description: what ``/v1/info/structures`` says.
        sql: the SQL expression of its value (None: not queryable or sortable).
        joins: the joins ``sql`` reads beyond ``materials m``.
        item: for lists, the type of the items as filters bind them; ``element`` means
            the SQL holds atomic numbers (``smallint[]``) and filters give symbols.
        length_sql: the SQL of the list's length, where cheaper than ``cardinality``.
        unit: the unit of numbers (``eV/atom``), or None.
    """

    name: str
    kind: Kind
    description: str
    sql: str | None = None
    joins: frozenset[Join] = frozenset()
    item: ListItem = "none"
    length_sql: str | None = None
    unit: str | None = None

    @property
    def queryable(self) -> bool:
        return self.sql is not None

    @property
    def sortable(self) -> bool:
        return self.sql is not None and self.kind not in ("list", "unknown")


_S: frozenset[Join] = frozenset({"structure"})
_ST: frozenset[Join] = frozenset({"stability"})

# Layers are periodic along a and b, with vacuum along c; bulk references along all
# three; dimensionality 0 and 1 (molecules, wires) follow the same pattern.
DIMENSION_TYPES_SQL = (
    "(CASE m.dimensionality WHEN 0 THEN ARRAY[0, 0, 0] WHEN 1 THEN ARRAY[1, 0, 0]"
    " WHEN 2 THEN ARRAY[1, 1, 0] WHEN 3 THEN ARRAY[1, 1, 1] END)"
)

ENERGY_SOURCES_SQL = """ARRAY(
    SELECT DISTINCT mv.name || ':' || mv.version
    FROM relaxations r JOIN model_versions mv ON mv.id = r.model_version_id
    WHERE r.material_id = m.id AND r.method = 'ml'
    UNION
    SELECT 'dft' WHERE s.species IS NOT NULL
    ORDER BY 1)"""

PROPERTIES: tuple[Property, ...] = (
    Property("id", "string", "The material's key (e.g. an Alexandria mat_id).", "m.key"),
    Property("type", "string", "Always 'structures'."),
    Property(
        "last_modified",
        "timestamp",
        "When the material or its structure was last stored.",
        "GREATEST(m.created_at, s.created_at)",
        _S,
    ),
    Property(
        "elements",
        "list",
        "Chemical symbols of the elements, in alphabetical order.",
        "m.elements",
        item="string",
        length_sql="m.n_elements",
    ),
    Property("nelements", "integer", "Number of distinct elements.", "m.n_elements"),
    Property(
        "elements_ratios",
        "list",
        "Fraction of the sites of each element, in the order of elements"
        " (filters support LENGTH only).",
        item="float",
        length_sql="m.n_elements",
    ),
    Property(
        "chemical_formula_descriptive",
        "string",
        "The reduced formula as pymatgen writes it (MoS2, WSe2).",
        "m.formula",
    ),
    Property(
        "chemical_formula_reduced",
        "string",
        "Reduced formula with elements in alphabetical order (MoS2, Se2W).",
        "m.formula_alphabetical",
    ),
    Property(
        "chemical_formula_anonymous",
        "string",
        "Anonymous reduced formula, largest proportion first (A2B).",
        "m.formula_anonymous",
    ),
    Property(
        "dimension_types",
        "list",
        "Periodicity along each lattice vector: [1, 1, 0] for a layer (vacuum along c).",
        DIMENSION_TYPES_SQL,
        item="integer",
    ),
    Property(
        "nperiodic_dimensions",
        "integer",
        "Number of periodic dimensions: 2 for a layer, 3 for a bulk reference.",
        "m.dimensionality",
    ),
    Property("lattice_vectors", "list", "Cell vectors a, b, c as rows.", unit="Å"),
    Property("cartesian_site_positions", "list", "Cartesian positions of the sites.", unit="Å"),
    Property("nsites", "integer", "Number of sites in the cell.", "s.n_sites", _S),
    Property("species", "list", "One species per element (no disorder)."),
    Property(
        "species_at_sites",
        "list",
        "The species (chemical symbol) of each site.",
        "s.species",
        _S,
        item="element",
    ),
    Property(
        "structure_features",
        "list",
        "Always empty: no disorder, implicit atoms, attachments or assemblies.",
        "CAST(ARRAY[] AS text[])",
        item="string",
    ),
    Property(
        f"_{PROVIDER_PREFIX}_e_above_hull",
        "float",
        "DFT energy above the convex hull of its chemical system.",
        "st.e_above_hull",
        _ST,
        unit="eV/atom",
    ),
    Property(
        f"_{PROVIDER_PREFIX}_formation_energy",
        "float",
        "DFT formation energy relative to the elemental references.",
        "st.formation_energy_per_atom",
        _ST,
        unit="eV/atom",
    ),
    Property(
        f"_{PROVIDER_PREFIX}_dimensionality",
        "integer",
        "2 for a layer, 3 for a bulk reference (0, 1: molecules, wires).",
        "m.dimensionality",
    ),
    Property(
        f"_{PROVIDER_PREFIX}_spacegroup",
        "integer",
        "International space-group number, as ingested.",
        "m.spacegroup_number",
    ),
    Property(
        f"_{PROVIDER_PREFIX}_energy_sources",
        "list",
        "Who relaxed it: 'dft' and each model version (NAME:VERSION).",
        ENERGY_SOURCES_SQL,
        _S,
        item="string",
    ),
)

BY_NAME: dict[str, Property] = {p.name: p for p in PROPERTIES}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(p.name for p in PROPERTIES if p.name not in ("id", "type"))
