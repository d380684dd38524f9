"""BERT's settings, declared once: flags, settings.json, run names, ticket names and identity columns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from lth.arguments import fraction, non_negative_float, non_negative_int, positive_int
from lth.errors import UserError
from lth.model_identity import ModelIdentity, identify_model, model_key
from lth.settings import (
    BRANCH_SUFFIX,
    IMP_RUN_TYPES,
    PRECISIONS,
    TICKET_SUFFIX,
    Alias,
    ReportingSettings,
    Settings,
    batch_size_setting,
    checkpoint_every_setting,
    data_dir_setting,
    device_setting,
    lr_setting,
    output_dir_setting,
    quiet_setting,
    readable_name,
    run_type_setting,
    seed_setting,
    setting,
)
from lth.text.glue import GLUE_TASKS

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "bert-base-uncased"
MAX_LENGTH = 128  # tokens per example
PRUNE_RATE = 0.1  # of the original prunable weights per round
WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.1
# Runs, tickets and ensembles made with the pooler left out of pruning carry this in their names;
# the figures use it to keep them apart from the others.
KEEP_POOLER_LABEL = "keep-pooler"


def round_of_sparsity(sparsity: float, target: float, prune_rate: float = PRUNE_RATE) -> int | None:
    """The round of an IMP run to `target` whose sparsity is `sparsity` (ChenPruning: round r at
    min(r x prune_rate, target)); None where no round has it. Round 0 is the dense one."""
    rounds = math.ceil(sparsity / prune_rate - 1e-9)
    if sparsity > target + 1e-9 or abs(min(rounds * prune_rate, target) - sparsity) > 1e-9:
        return None
    return rounds


def model_label(name_or_path: str) -> str:
    """The model as run and ticket names show it: what it is (lth.model_identity), never its folder's name."""
    return model_key(name_or_path)


def percent(value: float) -> int:
    return int(round(100 * value))


@dataclass
class LotterySettings(ReportingSettings):
    PROG = "BERT/lottery_ticket_bert.py"
    DESCRIPTION = (
        "Lottery tickets in pre-trained BERT (Chen et al., NeurIPS 2020): global IMP over the encoder's linear "
        "layers and the pooler, rewinding to the pre-trained weights, until exactly --sparsity."
    )
    # run_type and ticket_sparsity are shown in a baseline's name; at their defaults (a winning ticket) they add
    # nothing, so every ticket keeps the name and hash it had before baselines existed.
    NAME_FIELDS = (
        "task",
        "model_name_or_path",
        "sparsity",
        "run_type",
        "ticket_sparsity",
        "rewind_to",
        "subset",
        "keep_pooler",
        "seed",
    )

    task: str = setting("sst2", "source task", choices=sorted(GLUE_TASKS))
    model_name_or_path: str = setting(
        DEFAULT_MODEL, "pre-trained model: hub name, local folder, or 'minilm' (offline MiniLM-L6-H384)"
    )
    sparsity: float = setting(
        0.6, "final sparsity of the prunable weights, in [0, 1) (Chen et al.: SST-2 0.6, QQP 0.9)", parse=fraction
    )
    run_type: str = run_type_setting(
        choices=IMP_RUN_TYPES,
        meanings={
            "winning_ticket": "IMP to --sparsity, survivors rewound to the pre-trained weights and initial head",
            "random_reinit": "its ticket's mask of --sparsity on the whole model re-initialised from its config",
            "random_prune": "a random mask with its ticket's per-matrix counts at --sparsity, on the pre-trained "
            "weights and initial head",
            "standard_pruning": "its ticket's fine-tuned dense model pruned once by magnitude to --sparsity, then "
            "fine-tuned from those weights without rewinding",
        },
    )
    ticket_sparsity: float | None = setting(
        None,
        "a baseline's ticket: the winning_ticket run of the same settings with this --sparsity, in the same "
        "--output_dir; the baseline takes its round at the baseline's --sparsity (default: the baseline's --sparsity)",
        parse=fraction,
    )
    rewind_to: str = setting(
        "pretrained",
        "pretrained: the pre-trained weights and initial head (Chen et al.); warmup: the weights after --warmup epochs",
        choices=("pretrained", "warmup"),
    )
    warmup: int = setting(1, "epochs before the rewind point with --rewind_to warmup", parse=non_negative_int)
    prune_step_of_original: float = setting(
        PRUNE_RATE,
        "share of the ORIGINAL prunable weights removed per round (Chen et al.: 0.1)",
        parse=fraction,
        aliases=[Alias("--prune_rate")],
    )
    keep_pooler: bool = setting(
        False,
        "leave the pooler dense and out of the global ranking (for a pooler that was never trained, as in the "
        "offline MiniLM, whose small weights global pruning would remove first)",
    )
    seed: int = seed_setting(42, "seed of the head, the subset, the batch order")
    epochs: int = setting(3, "training epochs per pruning round", parse=positive_int)
    subset: int | None = setting(
        None, "train on a seeded random subset of this many examples (default: all)", parse=positive_int
    )
    batch_size: int = batch_size_setting(32)
    lr: float = lr_setting(2e-5, "AdamW peak learning rate (linear warmup, then linear decay to 0 each round)")
    warmup_fraction: float = setting(
        WARMUP_FRACTION,
        "share of each round's iterations the learning rate warms up over (Chen et al.'s code: 0)",
        parse=fraction,
    )
    weight_decay: float = setting(
        WEIGHT_DECAY,
        "AdamW weight decay (not on biases and LayerNorm), >= 0 (Chen et al.'s code: 0)",
        parse=non_negative_float,
    )
    max_grad_norm: float = setting(
        0.0,
        "clip the gradients' global norm to this before each step (0: no clipping; Chen et al.'s code: 1)",
        parse=non_negative_float,
    )
    precision: str = setting(
        "auto",
        "training arithmetic: auto (bf16 autocast on CUDA, fp32 elsewhere), bf16 (autocast on any device), fp32",
        choices=PRECISIONS,
    )
    max_length: int = setting(MAX_LENGTH, "tokens per example (longer ones are truncated)", parse=positive_int)
    eval_every: int = setting(
        0, "evaluate on the dev set every N iterations (0: once per epoch)", parse=non_negative_int
    )
    checkpoint_every: int = checkpoint_every_setting(1000)
    data_dir: str | None = data_dir_setting("glue/SST-2 and glue/QQP (online: the hub)")
    ticket_dir: str = output_dir_setting(
        str(HERE / "models"), "where the ticket files are written", aliases=[Alias("--save_dir")]
    )
    output_dir: str = output_dir_setting(
        str(HERE / "results" / "lth"), "where run directories (CSVs, resumable state) are written"
    )
    device: str = device_setting()
    quiet: bool = quiet_setting()

    def resolve(self) -> None:
        if self.prune_step_of_original <= 0:
            raise UserError("--prune_step_of_original must be above 0 (a share of the original prunable weights)")
        if self.rewind_to == "warmup" and self.warmup == 0:
            raise UserError("--rewind_to warmup needs --warmup of at least 1 epoch")
        if not self.is_baseline():
            if self.ticket_sparsity is not None:
                raise UserError(
                    "--ticket_sparsity names a baseline's ticket; a --run_type winning_ticket run is the ticket itself "
                    "(give --run_type random_prune, random_reinit or standard_pruning, or drop --ticket_sparsity)"
                )
            return
        if self.sparsity == 0:
            raise UserError(
                f"--run_type {self.run_type} needs --sparsity above 0 (the dense round 0 is its ticket's, shared)"
            )
        if self.ticket_sparsity is None:
            self.ticket_sparsity = self.sparsity
        if self.ticket_sparsity < self.sparsity:
            raise UserError(
                f"--ticket_sparsity {self.ticket_sparsity:g} is below --sparsity {self.sparsity:g}: the baseline "
                "takes its ticket's round at its own sparsity, which that ticket never reaches"
            )

    # --- baselines: branches of the winning ticket (lth.branches) ---
    def is_baseline(self) -> bool:
        return self.run_type != "winning_ticket"

    def ticket_settings(self) -> LotterySettings:
        """The winning ticket a baseline branches from: the same settings, pruned to --ticket_sparsity."""
        return dataclasses.replace(self, run_type="winning_ticket", sparsity=self.ticket_sparsity, ticket_sparsity=None)

    def ticket_run(self) -> str | None:
        """Every baseline shares its ticket's round 0; random_prune and random_reinit take its mask too."""
        return self.ticket_settings().run_name() if self.is_baseline() else None

    def baseline_round(self) -> int:
        """The ticket's round whose sparsity is this baseline's --sparsity: the one round it trains."""
        found = round_of_sparsity(self.sparsity, self.ticket_sparsity, self.prune_step_of_original)
        if found is None:
            step = self.prune_step_of_original
            raise UserError(
                f"--sparsity {self.sparsity:g} is no round of its ticket (--ticket_sparsity {self.ticket_sparsity:g}, "
                f"--prune_step_of_original {step:g}: rounds at multiples of {step:g} up to {self.ticket_sparsity:g})"
            )
        return found

    # --- the model by content: two folders of one model are one run; two models in folders of one name are not ---
    def model_identity(self) -> ModelIdentity:
        return identify_model(self.model_name_or_path)

    def identity(self) -> dict:
        return dict(super().identity(), model_name_or_path=self.model_identity().key)

    def to_json(self) -> dict:
        return dict(super().to_json(), model_identity=self.model_identity().to_json())

    def differences(self, saved: dict) -> list[str]:
        """As Settings.differences, the model compared by the identity the run recorded (its folder may have changed
        since), or, for a settings.json written before identities were recorded, by what its folder holds now."""
        earlier = type(self).from_saved(saved)
        recorded = (saved.get("model_identity") or {}).get("key")
        before = dict(earlier.identity(), model_name_or_path=recorded) if recorded else earlier.identity()
        now = self.identity()
        return [k for k in now if before[k] != now[k]]

    def ticket_owner(self, sparsity: float) -> dict:
        """What a ticket file at `sparsity` is made of: this run's identity, less the target sparsity for the dense
        (sparsity 0) ticket, which every target shares. A ticket file of another owner is never overwritten. Only
        winning tickets write ticket files: the run type and a baseline's ticket_sparsity are not part of it (so
        ticket files written before baselines existed keep their owner)."""
        owner = self.identity()
        owner.pop("run_type")
        owner.pop("ticket_sparsity")
        if sparsity == 0:
            owner.pop("sparsity")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in owner.items()}

    def _readable(self, first: tuple, sparsity: float) -> list[tuple]:
        parts = [first, ("", model_label(self.model_name_or_path)), ("sparsity", percent(sparsity))]
        if self.is_baseline():  # e.g. random_prune-of-ticket70: the ticket that went to 70%
            parts.append(("", f"{self.run_type}{BRANCH_SUFFIX}{percent(self.ticket_sparsity)}"))
        parts.append(("rewind-", self.rewind_to))
        if self.subset:
            parts.append(("subset", self.subset))
        if self.keep_pooler:
            parts.append(("", KEEP_POOLER_LABEL))
        return [*parts, ("seed", self.seed)]

    def name_prefix(self) -> str:
        """bert-sst2_minilm_sparsity60_rewind-pretrained_subset4000_seed42; a baseline's says its run type and its
        ticket's target: bert-sst2_minilm_sparsity50_random_prune-of-ticket70_rewind-pretrained_subset4000_seed42"""
        return readable_name(self._readable(("bert-", self.task), self.sparsity))

    def ticket_path(self, sparsity: float) -> Path:
        """The ticket file of this run at `sparsity` (the target, or 0 for the dense one). The earlier study's
        name (lottery_ticket_sst2_sparsity60_seed42) is kept for its settings (bert-base-uncased, rewound to the
        pre-trained weights, whole training set); any other setting adds to it, as the run name does."""
        parts = [("lottery_ticket_", self.task)]
        if model_label(self.model_name_or_path) != DEFAULT_MODEL:
            parts.append(("", model_label(self.model_name_or_path)))
        parts.append(("sparsity", percent(sparsity)))
        if self.rewind_to != "pretrained":
            parts.append(("rewind-", self.rewind_to))
        if self.subset:
            parts.append(("subset", self.subset))
        parts.append(("seed", self.seed))
        if self.keep_pooler:
            parts.append(("", KEEP_POOLER_LABEL))
        extra = self.run_name()[len(self.name_prefix()) :]  # _h<hash> of the other non-default settings
        return Path(self.ticket_dir) / f"{readable_name(parts)}{extra}{TICKET_SUFFIX}"


@dataclass
class FewShotSettings(Settings):
    PROG = "BERT/few_shot_training.py"
    DESCRIPTION = (
        "Few-shot transfer: a ticket fine-tuned on k examples of a target task with a fresh head, headonly "
        "(encoder frozen) or full (encoder trained, mask enforced), scored on the full target dev set."
    )
    NAME_FIELDS = ("target", "checkpoint", "finetune", "fewshot_size", "seed")

    checkpoint: str = setting(
        None,
        "ticket file (lottery_ticket_*.safetensors, ensemble_ticket_*.safetensors, or an earlier .pt ticket) or "
        "earlier-format checkpoint (required)",
    )
    target: str = setting(None, "task to fine-tune and score on (required)", choices=sorted(GLUE_TASKS))
    finetune: str = setting(
        "headonly",
        "headonly: encoder frozen; full: encoder trained with the mask enforced",
        choices=("headonly", "full"),
        aliases=[Alias("--mode")],
    )
    fewshot_size: int = setting(
        128, "k: training examples drawn with --seed from the target's train split", parse=positive_int
    )
    seed: int = seed_setting(42, "seed of the k examples, the fresh head and the batch order")
    epochs: int = setting(3, "training epochs", parse=positive_int)
    batch_size: int = batch_size_setting(16)
    lr: float = lr_setting(2e-5, "AdamW peak learning rate (linear schedule, 10% warmup)")
    weight_decay: float = setting(0.01, "AdamW weight decay, >= 0", parse=non_negative_float)
    max_length: int = setting(MAX_LENGTH, "tokens per example", parse=positive_int)
    model_name_or_path: str | None = setting(None, "base model (default: the one the ticket names)")
    data_dir: str | None = data_dir_setting("glue/ (online: the hub)")
    output_dir: str = output_dir_setting(
        str(HERE / "results" / "fewshot"), "run directories and transfer.csv", aliases=[Alias("--save_dir")]
    )
    device: str = device_setting()
    quiet: bool = quiet_setting()

    def resolve(self) -> None:
        if self.checkpoint is None:
            raise UserError(f"{self.PROG}: the following arguments are required: --checkpoint (see --help)")
        if self.target is None:
            raise UserError(f"{self.PROG}: the following arguments are required: --target (see --help)")

    def name_prefix(self) -> str:
        """fewshot_qqp_from_lottery_ticket_sst2_sparsity60_seed42_full_k128_seed42"""
        return readable_name(
            [
                ("fewshot_", self.target),
                ("from_", Path(self.checkpoint).stem),
                ("", self.finetune),
                ("k", self.fewshot_size),
                ("seed", self.seed),
            ]
        )
