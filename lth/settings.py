"""Settings declared once: a dataclass per entry script whose fields make everything a run is.

From one declaration come
- the command-line flags, their help and defaults, and the earlier study's flag names as aliases
  (shown in --help beside the canonical flag, each keeping its earlier meaning);
- `settings.json` (every saved setting, canonical names);
- the run directory name: a readable prefix plus, when any result-changing setting not shown in the
  prefix differs from its default, a short stable hash of those settings. A setting added later with
  a default that changes nothing therefore keeps every existing name, and every existing run resumable;
- the identity columns written into rounds.csv and curve.csv, which figures and `lth summarize`
  group by: runs are averaged over seeds only, never over any other setting.

Each field is one of three kinds:
- IDENTITY     can change a result (learning rate, iterations, run type, seed, ...);
- OPERATIONAL  where or how a run works, never what it computes (directories, device, checkpoint interval,
               --quiet, flags kept only for compatibility): saved, accepted on resume with another value;
- INPUT        a convenience resolved into other settings (e.g. --epochs into train_iterations): not saved.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lth.arguments import ArgumentParser, fraction, non_negative_int, positive_float, positive_int
from lth.energy import carbon_region
from lth.errors import UserError

IDENTITY = "identity"
OPERATIONAL = "operational"
INPUT = "input"
UNSET = object()  # an alias that is not a switch
NO_CHANGE = object()  # an alias value that leaves its setting as it is (e.g. VGG's `--pruning global`)


@dataclass(frozen=True)
class Alias:
    """An earlier flag name for a setting, with its earlier meaning.

    Plain renames take the setting's own values. `convert` maps the earlier value to the canonical one
    (e.g. VGG's --prune_iterations counted the dense round); `const` makes it a switch that sets the
    setting to that value (e.g. --random_reinit sets run_type).
    """

    flag: str
    meaning: str = ""
    convert: Callable[[Any], Any] | None = None
    const: Any = UNSET
    parse: Callable[[str], Any] | None = None
    choices: tuple | None = None

    @property
    def is_rename(self) -> bool:
        return self.convert is None and self.const is UNSET and self.parse is None and self.choices is None


def setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    choices: Iterable | None = None,
    aliases: Iterable[Alias] = (),
    kind: str = IDENTITY,
    nargs: str | None = None,
    metavar: str | None = None,
) -> Any:
    """Declare one setting (a dataclass field). `parse` turns flag text into a value and rejects bad
    values with argparse.ArgumentTypeError; list-valued settings take `nargs` and a tuple default."""
    if kind not in (IDENTITY, OPERATIONAL, INPUT):
        raise ValueError(f"unknown setting kind {kind!r}")
    metadata = {
        "help": help,
        "parse": parse,
        "choices": tuple(choices) if choices is not None else None,
        "aliases": tuple(aliases),
        "kind": kind,
        "nargs": nargs,
        "metavar": metavar,
    }
    return field(default=default, metadata=metadata)


def _canonical(value: Any) -> Any:
    """A value as it is saved and hashed: tuples as lists, floats exact (repr), NaN as text."""
    if isinstance(value, (tuple, list)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def stable_hash(values: dict) -> str:
    text = json.dumps({k: _canonical(v) for k, v in values.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def value_label(value: Any) -> str:
    """A value as it appears in run and figure names: 0.0003 -> 0p0003, True -> true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        value = f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "-".join(value_label(v) for v in value)
    return str(value).replace(".", "p").replace("/", "-").replace(" ", "-")


def readable_name(parts: list[tuple[str, Any]]) -> str:
    """A readable name from (label, value) pairs: [("lenet300-100-", "iterative"), ("trial", 0)] ->
    lenet300-100-iterative_trial0."""
    return "_".join(f"{label}{value_label(value)}" for label, value in parts)


@dataclass
class Settings:
    """Base of every entry script's settings. Subclasses declare fields with `setting(...)`, may
    override `resolve()` (derived defaults, checks across settings) and define `name_prefix()`."""

    PROG: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    # Settings shown in the readable name prefix; the hash covers the other identity settings.
    NAME_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Identity settings that only tell trials apart: never part of a figure's or summary's grouping.
    SEED_FIELDS: ClassVar[tuple[str, ...]] = ("seed", "init_seed", "data_order_seed", "transformation_seed")
    # What a setting was in runs saved before it existed, where that differs from today's default (a
    # settings.json without it was made that way).
    SAVED_BEFORE: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        self.resolve()

    # --- what a family supplies ---------------------------------------------------------
    def resolve(self) -> None:
        """Fill defaults that depend on other settings and check combinations (raise UserError naming flags)."""

    def name_prefix(self) -> str:
        raise NotImplementedError

    # --- declaration ---------------------------------------------------------------------
    @classmethod
    def declared(cls, kind: str | None = None) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if kind is None or f.metadata.get("kind") == kind]

    @classmethod
    def build_parser(cls) -> ArgumentParser:
        parser = ArgumentParser(prog=cls.PROG, description=cls.DESCRIPTION, argument_default=argparse.SUPPRESS)
        reporting = {f.name for f in dataclasses.fields(ReportingSettings)}
        run = {f.name for f in dataclasses.fields(RunSettings)}
        imp = {f.name for f in dataclasses.fields(IMPRunSettings)} - run
        pai = {f.name for f in dataclasses.fields(PruneAtInitSettings)} - imp - run

        def group(f: dataclasses.Field) -> int:
            """The IMP run's kind, then the rest of what a run is, then how it runs, then pruning at
            initialization, then what every run reports (declaration order within each)."""
            if f.name in reporting or f.name in pai:
                return 3 + (f.name in reporting)
            return 0 if f.name in imp else 1 if f.metadata["kind"] == IDENTITY else 2

        for f in sorted(cls.declared(), key=group):
            meta = f.metadata
            renames = [a.flag for a in meta["aliases"] if a.is_rename]
            flags = [f"--{f.name}", *renames]
            help_text = meta["help"]
            if renames:
                help_text += f" [earlier name{'s' if len(renames) > 1 else ''}: {', '.join(renames)}]"
            if f.default is not None and f.default != () and not isinstance(f.default, bool):
                help_text += f" (default: {value_label(f.default) if isinstance(f.default, tuple) else f.default})"
            help_text = help_text.replace("%", "%%")
            if isinstance(f.default, bool):
                action = argparse.BooleanOptionalAction if f.default else "store_true"
                parser.add_argument(*flags, dest=f.name, action=action, help=help_text)
            else:
                options = {"dest": f.name, "help": help_text, "metavar": meta["metavar"]}
                if meta["parse"] is not None:
                    options["type"] = meta["parse"]
                if meta["choices"] is not None:
                    options["choices"] = meta["choices"]
                    options.pop("metavar")
                if meta["nargs"] is not None:
                    options["nargs"] = meta["nargs"]
                parser.add_argument(*flags, **options)
            for index, alias in enumerate(a for a in meta["aliases"] if not a.is_rename):
                dest = f"{f.name}:alias{index}"
                alias_help = f"earlier flag for --{f.name}: {alias.meaning}".replace("%", "%%")
                if alias.const is not UNSET:
                    parser.add_argument(alias.flag, dest=dest, action="store_const", const=alias.const, help=alias_help)
                else:
                    parser.add_argument(
                        alias.flag,
                        dest=dest,
                        type=alias.parse or meta["parse"],
                        choices=alias.choices,
                        nargs=meta["nargs"],
                        metavar=None if alias.choices else alias.flag.lstrip("-").upper(),
                        help=alias_help,
                    )
        return parser

    @classmethod
    def from_argv(cls, argv: list[str] | None = None):
        """Parse flags (canonical or earlier names) into resolved settings; bad input raises UserError."""
        given = vars(cls.build_parser().parse_args(argv))
        values: dict[str, Any] = {}
        for f in cls.declared():
            explicit = f.name in given
            if explicit:
                values[f.name] = given[f.name]
            for index, alias in enumerate(a for a in f.metadata["aliases"] if not a.is_rename):
                key = f"{f.name}:alias{index}"
                if key not in given:
                    continue
                value = given[key] if alias.const is not UNSET else (alias.convert or (lambda v: v))(given[key])
                if value is NO_CHANGE:
                    continue
                if f.name in values and values[f.name] != value:
                    what = "--" + f.name if explicit else "another earlier flag"
                    raise UserError(
                        f"{alias.flag} asks for {f.name} {value_label(value)}, but {what} gives "
                        f"{value_label(values[f.name])}; give one of them"
                    )
                values[f.name] = value
        for f in cls.declared():
            if f.name in values and f.metadata["nargs"] is not None:
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    @classmethod
    def from_saved(cls, saved: dict):
        """Settings from a settings.json, also one written before a setting existed or under an
        earlier flag name (a missing setting takes its default)."""
        values: dict[str, Any] = {}
        for f in cls.declared():
            if f.metadata["kind"] == INPUT:
                continue
            if f.name in saved:
                values[f.name] = saved[f.name]
            else:
                for alias in f.metadata["aliases"]:
                    key = alias.flag.lstrip("-").replace("-", "_")
                    if key not in saved or saved[key] in (None, False):
                        continue
                    if alias.const is not UNSET:
                        values[f.name] = alias.const
                    elif alias.is_rename:
                        values[f.name] = saved[key]
                    break
                else:
                    if f.name in cls.SAVED_BEFORE:
                        values[f.name] = cls.SAVED_BEFORE[f.name]
            if f.name in values and f.metadata["nargs"] is not None and values[f.name] is not None:
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    # --- what the run is -----------------------------------------------------------------
    def to_json(self) -> dict:
        """settings.json: every identity and operational setting, canonical names, and the run name of the winning
        ticket a branch starts from (`ticket_run`, read by `lth status`; not a setting)."""
        saved = {f.name: _canonical(getattr(self, f.name)) for f in self.declared() if f.metadata["kind"] != INPUT}
        ticket = self.ticket_run()
        if ticket is not None:
            saved[TICKET_RUN_KEY] = ticket
        return saved

    def ticket_run(self) -> str | None:
        """The run name of the winning ticket this run branches from (its round 0 and masks, in the same
        output_dir); None for a run that branches from none."""
        return None

    def identity(self) -> dict:
        """Every setting that can change a result, in declaration order: the run's identity columns."""
        return {f.name: getattr(self, f.name) for f in self.declared(IDENTITY)}

    def condition(self) -> dict:
        """The identity less the seed: runs of one condition may be averaged."""
        return {k: v for k, v in self.identity().items() if k not in self.SEED_FIELDS}

    def defaults(self):
        """The settings a run with this name prefix has by default (derived defaults resolved)."""
        return type(self)(**{name: getattr(self, name) for name in self.NAME_FIELDS})

    def distinguishing(self) -> dict:
        """Identity settings outside the name prefix that differ from their defaults."""
        defaults = self.defaults().identity()
        return {
            k: v
            for k, v in self.identity().items()
            if k not in self.NAME_FIELDS and _canonical(v) != _canonical(defaults[k])
        }

    def run_name(self) -> str:
        """Readable prefix, plus `_h<hash>` of the distinguishing settings when there are any."""
        extra = self.distinguishing()
        return self.name_prefix() + (f"_h{stable_hash(extra)}" if extra else "")

    def differences(self, saved: dict) -> list[str]:
        """Identity settings in which a saved run differs from these settings (empty: same run)."""
        earlier = type(self).from_saved(saved).identity()
        now = self.identity()
        return [k for k in now if _canonical(earlier[k]) != _canonical(now[k])]


# --- The canonical settings every family shares: one name and one meaning everywhere ---------------

RUN_TYPES = ("winning_ticket", "random_reinit", "random_prune")
CONTROL_RUN_TYPES = ("random_reinit", "random_prune")
# Chen et al.'s comparison for BERT: the fine-tuned dense model pruned once by magnitude, then fine-tuned again from
# its trained weights, without rewinding. The IMP loop knows it for any family; BERT offers it.
STANDARD_PRUNING = "standard_pruning"
IMP_RUN_TYPES = (*RUN_TYPES, STANDARD_PRUNING)
# Where a run of each type starts, as --help says it.
RUN_TYPE_HELP = {
    "winning_ticket": "survivors rewound",
    "random_reinit": "same mask, fresh init",
    "random_prune": "random mask, same per-layer sparsity",
    STANDARD_PRUNING: "the trained dense model pruned once, fine-tuned without rewinding",
}
IMP_MODES = ("iterative", "oneshot")
# Where a control's mask of each round comes from: the winning ticket's (Frankle & Carbin's definition), or the
# control's own trained weights (the earlier study's variant, kept reachable).
CONTROL_MASKS = ("ticket", "own")
PRECISIONS = ("auto", "bf16", "fp32")  # of a forward pass: lth.training.autocast_for says what each means
TICKET_SUFFIX = ".safetensors"  # a ticket file (lth.tickets)
BRANCH_SUFFIX = "-of-ticket"  # a control of the ticket's definition: `<run type>-of-ticket` in its run name
TICKET_RUN_KEY = "ticket_run"  # settings.json of a branch: its winning ticket's run name (Settings.ticket_run)


def run_type_setting(
    aliases: Iterable[Alias] = (), choices: tuple[str, ...] = RUN_TYPES, meanings: dict[str, str] | None = None
) -> Any:
    """The run type: a winning ticket or a run that branches from one. `meanings` overrides RUN_TYPE_HELP's words
    for a family whose run types start elsewhere (BERT: from the pre-trained weights)."""
    meanings = {**RUN_TYPE_HELP, **(meanings or {})}
    return setting(
        "winning_ticket",
        ", ".join(f"{run_type} ({meanings[run_type]})" for run_type in choices),
        choices=choices,
        aliases=aliases,
    )


def control_mask_setting() -> Any:
    return setting(
        "ticket",
        "where a control's mask of each round comes from: ticket (the winning ticket's mask of that round, as "
        "Frankle & Carbin define the controls) or own (the earlier study's variant: the control prunes the "
        "weights it trained itself)",
        choices=CONTROL_MASKS,
    )


def imp_mode_setting(aliases: Iterable[Alias] = ()) -> Any:
    return setting(
        "iterative",
        "iterative: prune the last round's trained weights; oneshot: prune the dense trained weights "
        "straight to each round's target",
        choices=IMP_MODES,
        aliases=aliases,
    )


def seed_setting(default: int, help: str = "", aliases: Iterable[Alias] = ()) -> Any:
    return setting(
        default,
        help or "seed of the initial weights, validation split, data order and controls",
        parse=non_negative_int,
        aliases=aliases,
    )


def source_seed_setting(source: str) -> Any:
    """A seed of one source of randomness; None (the default) uses --seed, as runs did before it existed."""
    return setting(None, f"seed of the {source} (default: --seed)", parse=non_negative_int)


def rounds_setting(default: int, aliases: Iterable[Alias] = ()) -> Any:
    return setting(default, "pruning rounds after the dense round 0", parse=non_negative_int, aliases=aliases)


def train_iterations_setting(default: int | None, help: str = "", aliases: Iterable[Alias] = ()) -> Any:
    return setting(default, help or "training iterations per round", parse=positive_int, aliases=aliases)


def rewind_iteration_setting(aliases: Iterable[Alias] = ()) -> Any:
    return setting(
        0,
        "rewind surviving weights to this iteration of the dense run (0: the initialisation)",
        parse=non_negative_int,
        aliases=aliases,
    )


def prune_rate_setting(default: float | None, which: str, aliases: Iterable[Alias] = ()) -> Any:
    return setting(default, f"share of the remaining {which} pruned per round", parse=fraction, aliases=aliases)


def batch_size_setting(default: int, aliases: Iterable[Alias] = ()) -> Any:
    return setting(default, "training batch size", parse=positive_int, aliases=aliases)


def lr_setting(default: float | None, help: str, aliases: Iterable[Alias] = ()) -> Any:
    return setting(default, help, parse=positive_float, aliases=aliases)


def eval_every_setting(default: int, help: str = "") -> Any:
    return setting(default, help or "evaluate validation and test every N iterations", parse=positive_int)


def checkpoint_every_setting(default: int) -> Any:
    return setting(
        default,
        "save progress every N iterations inside a round (0: round ends only)",
        parse=non_negative_int,
        kind=OPERATIONAL,
    )


def data_dir_setting(holds: str = "") -> Any:
    return setting(
        None,
        f"data root{' holding ' + holds if holds else ''} (default: $LTH_DATA_DIR, else ./data)",
        kind=OPERATIONAL,
    )


def output_dir_setting(
    default: str, help: str = "where run directories are written", aliases: Iterable[Alias] = ()
) -> Any:
    return setting(default, help, kind=OPERATIONAL, aliases=aliases)


def device_setting() -> Any:
    return setting("auto", "auto (CUDA if available, else CPU), cpu, cuda or cuda:N", kind=OPERATIONAL)


def compile_setting() -> Any:
    return setting(
        False,
        "compile the network with torch.compile, its forward and backward passes (on a GPU with CUDA graphs, "
        "mode reduce-overhead); results agree with uncompiled training to float tolerance, not bit for bit",
        kind=OPERATIONAL,
    )


def quiet_setting() -> Any:
    return setting(False, "no progress bars or per-round lines", kind=OPERATIONAL)


@dataclass
class ReportingSettings(Settings):
    """What a run reports beside its results: energy and CO2e per round, and an optional experiment tracker.
    Never part of a run's identity. Entry scripts' settings derive from this."""

    energy: bool = setting(
        True,
        "measure energy and CO2e per round with codecarbon, offline (--no-energy: off; $LTH_ENERGY=off too)",
        kind=OPERATIONAL,
    )
    carbon_region: str | None = setting(
        None,
        "ISO 3166 alpha-3 country whose grid carbon intensity prices the energy, e.g. DNK "
        "(default: the world average, 475 g CO2e/kWh)",
        parse=carbon_region,
        kind=OPERATIONAL,
    )
    carbon_intensity: float | None = setting(
        None, "grid carbon intensity in g CO2e/kWh (instead of --carbon_region)", parse=positive_float, kind=OPERATIONAL
    )
    report_to: str = setting(
        "none",
        "also log the curve and the round rows as the run goes: none, or tensorboard (event files in the run directory)",
        choices=("none", "tensorboard"),
        kind=OPERATIONAL,
    )


PAI_METHODS = ("snip", "grasp", "synflow", "magnitude_init", "random")
PAI_SCOPES = ("global", "layerwise")
PAI_ABLATIONS = ("none", "shuffle", "reinit")


@dataclass
class RunSettings(ReportingSettings):
    """What every training run declares, once: its seed, its length, when it evaluates and saves progress, where it
    writes and where it runs. A family overrides a default by declaring the field again with the same factory (and
    its aliases), and adds fields of its own; the defaults here are a small study's (the Python API's)."""

    seed: int = seed_setting(0)
    train_iterations: int | None = train_iterations_setting(1000)
    eval_every: int = eval_every_setting(100)
    checkpoint_every: int = checkpoint_every_setting(0)
    output_dir: str = output_dir_setting("runs")
    device: str = device_setting()
    compile: bool = compile_setting()
    quiet: bool = quiet_setting()


@dataclass
class ImageRunSettings(RunSettings):
    """What the image families' training runs add: a seed per source of randomness, the optimiser's batch and
    learning rate, and the data root."""

    init_seed: int | None = source_seed_setting("initial weights")
    data_order_seed: int | None = source_seed_setting("order of the training batches")
    transformation_seed: int | None = source_seed_setting("augmentation and dropout draws")
    batch_size: int = batch_size_setting(60)
    lr: float | None = lr_setting(None, "learning rate")
    data_dir: str | None = data_dir_setting()


@dataclass
class IMPRunSettings(RunSettings):
    """An IMP run of an image family or of the Python API: a winning ticket or one of its controls.

    A control is a branch of the winning ticket of the same settings: at round r it takes the ticket's mask of
    round r (`control_mask` ticket). Runs saved before the setting existed pruned their own weights (`own`), and
    keep their names; runs of the ticket's definition are named `<run type>-of-ticket`.
    """

    SAVED_BEFORE = {"control_mask": "own"}

    run_type: str = run_type_setting()
    imp_mode: str = imp_mode_setting()
    rounds: int = rounds_setting(5)
    rewind_iteration: int = rewind_iteration_setting()
    control_mask: str = control_mask_setting()

    def resolve(self) -> None:
        """Checks settings a family may derive in its own resolve(): such a family fills them before calling this."""
        super().resolve()
        if not self.is_control():
            self.control_mask = "ticket"  # a ticket's own masks: one ticket, whatever the flag said
        if self.rewind_iteration >= self.train_iterations:
            raise UserError(
                f"--rewind_iteration {self.rewind_iteration} must be below the {self.train_iterations} "
                "training iterations of a round"
            )

    def is_control(self) -> bool:
        return self.run_type in CONTROL_RUN_TYPES

    def follows_ticket(self) -> bool:
        """A control that takes its masks from the winning ticket's run directory."""
        return self.is_control() and self.control_mask == "ticket"

    def run_label(self) -> str:
        """The run-type part of the name: winning_ticket, random_reinit-of-ticket, random_reinit (own masks)."""
        return f"{self.run_type}{BRANCH_SUFFIX}" if self.follows_ticket() else self.run_type

    def ticket_settings(self):
        """The winning ticket this control branches from (same settings, run type winning_ticket)."""
        return dataclasses.replace(self, run_type="winning_ticket", control_mask="ticket")

    def ticket_run(self) -> str | None:
        return self.ticket_settings().run_name() if self.follows_ticket() else None


@dataclass
class PruneAtInitSettings(IMPRunSettings):
    """Pruning at initialization as a run type of the image families: prune the initial weights to the
    weights-remaining of IMP round --pai_round with a score (lth/init_pruning.py), then train once."""

    pai_method: str = setting(
        "none", "prune at initialization with this score, then train once (none: IMP)", choices=("none", *PAI_METHODS)
    )
    pai_round: int = setting(
        0, "with --pai_method: prune to the weights remaining after this many IMP rounds", parse=non_negative_int
    )
    pai_scope: str = setting(
        "global",
        "with --pai_method: global (the score decides each layer's sparsity) or layerwise (IMP's per-layer counts)",
        choices=PAI_SCOPES,
    )
    pai_ablation: str = setting(
        "none",
        "with --pai_method: shuffle (each layer's mask moved at random, its count kept) or reinit (fresh weights)",
        choices=PAI_ABLATIONS,
    )
    synflow_iterations: int = setting(100, "SynFlow's pruning iterations", parse=positive_int)
    pai_batches: int = setting(2, "training batches SNIP and GraSP score on", parse=positive_int)

    def resolve(self) -> None:
        super().resolve()
        if self.pai_method == "none":
            return
        if self.pai_round < 1:
            raise UserError(f"--pai_method {self.pai_method} needs --pai_round N >= 1 (the IMP round to match)")
        if self.run_type != "winning_ticket" or self.rewind_iteration:
            raise UserError(
                "--pai_method prunes at initialization: give its ablations with --pai_ablation, not --run_type or --rewind_iteration"
            )
        self.rounds = 0  # pruned once, before training: the run trains its round 0 only

    def pai_label(self) -> str | None:
        """The run-type part of a PAI run's name, e.g. pai-snip-r7-global-shuffle (None for IMP runs)."""
        if self.pai_method == "none":
            return None
        label = f"pai-{self.pai_method}-r{self.pai_round}-{self.pai_scope}"
        return label + (f"-{self.pai_ablation}" if self.pai_ablation != "none" else "")


@dataclass
class ImageFamilySettings(PruneAtInitSettings, ImageRunSettings):
    """An image family's IMP entry script (LeNet, Conv, VGG): IMP and its controls, pruning at initialization, and
    the image training run's settings. A family declares its architecture, pruning rates and defaults."""
