"""The words and defaults atlas2d is made of, each defined once.

Every name a user can type (a split, a rule, an engine…) is a ``Literal`` alias here,
with the tuple of its values beside it (``typing.get_args``), so that the database
CHECKs, the services' validation and the CLI's choices all read the same list. The
thesis's defaults (ecut, outlier filters, FIRE settings) are here too, with their units.
Migrations keep their own copies: a migration must not change when this file does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

# --- data --------------------------------------------------------------------------

InputFormat = Literal["vasprun", "outcar", "extxyz", "alexandria-traj", "alexandria-hull"]
"""File formats ``atlas2d ingest`` reads."""
INPUT_FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)

ReadFormat = Literal["auto", "vasp", InputFormat]
"""What ``--format`` accepts: a format, ``vasp`` (vasprun.xml or OUTCAR, whatever the
file is called) or ``auto`` (guessed from the file name)."""
READ_FORMATS: tuple[ReadFormat, ...] = get_args(ReadFormat)

SourceFormat = Literal[InputFormat, "records", "labeller"]
"""How an ingested file was read. ``labeller``: reference data made by ``atlas2d label``
(a stand-in for DFT, never real DFT); ``records``: structures without labels."""
SOURCE_FORMATS: tuple[SourceFormat, ...] = get_args(SourceFormat)

Method = Literal["dft", "ml"]
"""Who relaxed a structure: DFT (or the reference labeller) or a model version."""
METHODS: tuple[Method, ...] = get_args(Method)

DFT: Method = "dft"
"""The energy source of DFT results, in hulls and stable lists (else a model version)."""

# --- training sets -------------------------------------------------------------------

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)

HELD_OUT_SPLIT: Split = "test"
"""The split relaxed, evaluated and predicted when none is given."""

Rule = Literal["ecut", "wang", "all"]
"""How steps are chosen from a relaxation: the thesis's energy-change rule, Wang et
al.'s steps {0, ⌊N/3⌋, N−1}, or every step."""
RULES: tuple[Rule, ...] = get_args(Rule)

OutlierScope = Literal["material", "frame"]
"""``material``: a relaxation with any offending frame is dropped whole (the thesis);
``frame``: only offending frames go."""
OUTLIER_SCOPES: tuple[OutlierScope, ...] = get_args(OutlierScope)

GroupBy = Literal["material", "formula", "chemsys"]
"""What lands in one split together."""
GROUP_BYS: tuple[GroupBy, ...] = get_args(GroupBy)

OutlierFilter = Literal["max_sites", "isolated", "energy_per_atom", "max_force", "max_stress"]
OUTLIER_FILTERS: tuple[OutlierFilter, ...] = get_args(OutlierFilter)

DEFAULT_RULE: Rule = "ecut"
DEFAULT_ECUT_EV_PER_ATOM = 0.01
DEFAULT_OUTLIER_SCOPE: OutlierScope = "material"
DEFAULT_GROUP_BY: GroupBy = "material"
DEFAULT_SPLIT_PERCENT = (90.0, 5.0, 5.0)
"""train, val, test (percent)."""
DEFAULT_MAX_SITES = 20
DEFAULT_MIN_ENERGY_PER_ATOM_EV = -20.0
DEFAULT_MAX_ENERGY_PER_ATOM_EV = 0.0
DEFAULT_MAX_FORCE_EV_PER_A = 20.0
DEFAULT_MAX_STRESS_KBAR = 500.0
DEFAULT_ISOLATED_CUTOFF_A = 5.0

ExportFormat = Literal["mace", "matgl", "extxyz"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)

# --- models --------------------------------------------------------------------------

Architecture = Literal["m3gnet", "mace"]
"""The force fields ``atlas2d train`` trains."""
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)

CLUSTER_EXPANSION = "cluster-expansion"
"""The architecture of a cluster expansion (``atlas2d alloys fit-ce``): an icet model of
alloy formation energies, registered as a model version, not a force field."""
ModelArchitecture = Literal[Architecture, "cluster-expansion"]
"""Every architecture the registry holds."""
MODEL_ARCHITECTURES: tuple[ModelArchitecture, ...] = (*ARCHITECTURES, "cluster-expansion")

AlloyPrototype = Literal["2H", "1T"]
"""The MX2 layers alloys are enumerated and expanded on: trigonal-prismatic (2H) or
octahedral (1T) metal coordination."""
ALLOY_PROTOTYPES: tuple[AlloyPrototype, ...] = get_args(AlloyPrototype)
DEFAULT_ALLOY_MAX_SITES = 9
"""Metal sites per enumerated supercell at most (``alloys enumerate``)."""
DEFAULT_CE_CUTOFFS_A = (10.0, 6.5)
"""Cluster-expansion cutoffs (Å): pairs, triplets, … (``alloys fit-ce``)."""
CeFitMethod = Literal["lasso", "ardr", "least-squares"]
CE_FIT_METHODS: tuple[CeFitMethod, ...] = get_args(CeFitMethod)
DEFAULT_CE_FIT_METHOD: CeFitMethod = "lasso"

ModelStatus = Literal["training", "ready", "failed"]
MODEL_STATUSES: tuple[ModelStatus, ...] = get_args(ModelStatus)

ActivityStatus = Literal["running", "succeeded", "failed"]
"""An activity (one run of a command that writes): ``failed`` also when interrupted."""
ACTIVITY_STATUSES: tuple[ActivityStatus, ...] = get_args(ActivityStatus)

EvaluationKind = Literal["relaxation", "direct", "stability", "alloy"]
"""``alloy``: formation energies of alloys against DFT (``atlas2d alloys compare``)."""
EVALUATION_KINDS: tuple[EvaluationKind, ...] = get_args(EvaluationKind)

Device = Literal["cpu", "cuda"]
DEVICES: tuple[Device, ...] = get_args(Device)
DEFAULT_DEVICE: Device = "cpu"

# --- relaxation ----------------------------------------------------------------------

Engine = Literal["ase", "batched"]
"""``ase``: one structure at a time with ASE's FIRE; ``batched``: many per model call."""
ENGINES: tuple[Engine, ...] = get_args(Engine)
DEFAULT_ENGINE: Engine = "ase"

DEFAULT_CHUNK_SIZE: dict[Engine, int] = {"ase": 32, "batched": 512}
"""Materials relaxed and committed together by default: the batched engine needs many
per model call to be fast; one structure at a time gains nothing from large chunks and
an interruption loses less."""

DEFAULT_MAX_ATOMS: dict[Device, int] = {"cpu": 2_000, "cuda": 50_000}
"""Atoms per model call of the batched engine: the CPU gains little beyond a few
thousand; a GPU holds far more."""

StartFrom = Literal["first", "final"]
"""Which DFT frame a relaxation starts from: step 0 of the first DFT relaxation, or the
last step of the last one."""
STARTS: tuple[StartFrom, ...] = get_args(StartFrom)
DEFAULT_START: StartFrom = "first"

SQL_TIMEOUT_MAX_S = 2_147_483
"""The longest ``atlas2d sql`` timeout: PostgreSQL's ``statement_timeout`` is at most
2³¹ − 1 ms (about 24.8 days)."""

FIRE_FMAX_EV_PER_A = 0.1
"""The thesis's force criterion: converged when every atom's force is below it."""
FIRE_MAX_STEPS = 1000

# --- labelling -----------------------------------------------------------------------

LABEL_FMAX_EV_PER_A = 0.05
LABEL_MAX_STEPS = 500
"""The reference labeller's FIRE settings (``atlas2d label``): eV/Å and steps."""
DEFAULT_LABEL_CHUNK_SIZE = 16
"""Structures labelled and committed together: an interruption loses at most these."""


# --- candidate generation -------------------------------------------------------------

Generator = Literal["substitute", "decorate", "file", "enumerate"]
"""How a candidate pool was made: data-mined species substitution of prototype layers
(Hautier et al.'s model shipped with pymatgen), element combinations put on a
prototype's symmetry orbits, structures read from a file (an active-learning
campaign's ``--generator file:PATH``), or the symmetry-distinct alloy configurations of
an MX2 layer (``atlas2d alloys enumerate``, icet)."""
GENERATORS: tuple[Generator, ...] = get_args(Generator)

CandidateOutcome = Literal[
    "generated",
    "charge_imbalanced",
    "too_close",
    "duplicate_in_pool",
    "duplicate_of_stored",
    "over_limit",
    "stored",
]
"""What became of each generated structure, in the order a pool counts them
(``over_limit``: not judged, ``--max-candidates`` were stored already)."""
CANDIDATE_OUTCOMES: tuple[CandidateOutcome, ...] = get_args(CandidateOutcome)

DEFAULT_SUBSTITUTION_THRESHOLD = 1e-3
"""Smallest substitution probability kept (pymatgen's ``SubstitutionPredictor`` default)."""
DEFAULT_MAX_CANDIDATES = 10_000
"""Candidates stored per pool at most (the most probable first)."""
DEFAULT_PROTOTYPE_MAX_EHULL_EV = 0.1
"""Prototype layers: at most this far above the DFT hull (eV/atom)."""
DEFAULT_MIN_DISTANCE_FACTOR = 0.7
"""A candidate is rejected when two atoms are closer than this × the sum of their
covalent radii."""
GENERATED_KEY_PREFIX = "gen"
"""Keys of generated materials: ``gen-<pool>-<hash>``."""


# --- active-learning campaigns ---------------------------------------------------------

AlStage = Literal["generate", "relax", "select", "label", "measure", "retrain", "done"]
"""An iteration's stages, in order (``done``: finished)."""
AL_STAGES: tuple[AlStage, ...] = get_args(AlStage)
AlStatus = Literal["running", "waiting", "done", "failed"]
"""An iteration's status: ``waiting`` for VASP labels (the ``vasp`` labeller)."""
AL_STATUSES: tuple[AlStatus, ...] = get_args(AlStatus)
AlCampaignStatus = Literal["created", "running", "waiting", "done", "failed"]
AL_CAMPAIGN_STATUSES: tuple[AlCampaignStatus, ...] = get_args(AlCampaignStatus)
AlDecision = Literal["filtered", "selected", "not_selected", "control"]
"""What the filter and the policy decided for one relaxed candidate: above the
threshold, taken within the budget, passed but beyond the budget, or drawn at random
for the control group."""
AL_DECISIONS: tuple[AlDecision, ...] = get_args(AlDecision)
AlLabelStatus = Literal["pending", "labelled", "failed"]
AL_LABEL_STATUSES: tuple[AlLabelStatus, ...] = get_args(AlLabelStatus)
AlSelection = Literal["lowest-ehull", "uncertainty"]
"""Which passing candidates the budget takes: lowest ML e_above_hull first, or largest
committee disagreement first."""
AL_SELECTIONS: tuple[AlSelection, ...] = get_args(AlSelection)
Labeller = Literal["reference", "vasp"]
"""Who labels: the reference labeller (CHGNet, a stand-in for DFT) in-process, or VASP
through input folders written for the user's cluster."""
LABELLERS: tuple[Labeller, ...] = get_args(Labeller)
Retrain = Literal["finetune", "scratch"]
RETRAIN_MODES: tuple[Retrain, ...] = get_args(Retrain)

DEFAULT_AL_THRESHOLD_EV = 0.6
"""The thesis's pre-filter: candidates more than 600 meV/atom above the model's hull
are dropped (eV/atom)."""
DEFAULT_AL_BUDGET = 50
"""Labels per iteration."""
DEFAULT_AL_STABLE_THRESHOLD_EV = 0.0
"""A labelled candidate is a hit when its DFT e_above_hull is at most this (eV/atom)."""
DEFAULT_AL_MAX_CANDIDATES = 200
"""Candidates generated per iteration at most."""


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``counted(1, "candidate")`` → ``"1 candidate"``; 2 → ``"2 candidates"``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def or_list(values: Sequence[str]) -> str:
    """A vocabulary in a sentence: ``("a", "b", "c")`` → ``"a, b or c"``."""
    if len(values) < 2:
        return "".join(values)
    return f"{', '.join(values[:-1])} or {values[-1]}"
