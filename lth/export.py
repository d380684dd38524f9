"""`lth export`: a ticket or a run's round as a folder other programs load with the ecosystem's own call.

- BERT (a run directory, or a ticket file): a Hugging Face folder, `AutoModelForSequenceClassification.from_pretrained
  (folder)`, with its config and tokenizer, the pruned weights exactly zero. From a run directory the weights are the
  last finished round's trained ones (a classifier for the run's task); from a ticket file they are the ticket's
  rewind weights and head (the subnetwork to train).
- Image families (a run directory): `model.safetensors`, the trained state dict of the last finished round (pruned
  weights zero), and `lth_model.json` with the one line of Python that builds the model.

Every export also holds `mask.safetensors` (lth/mask_file.py: the mask bit-packed, with a header) and `README.md`, a
model card in the Hugging Face format (YAML front matter: base_model, library_name, tags, datasets, metrics; then weights
remaining per layer, accuracy, how it was made and how to load it). `--push_to_hub REPO` uploads the folder with
huggingface_hub where the hub can be reached, and says in one line why not where it cannot.

A run keeps the trained weights of its last finished round only (state.pt), so that is the round `--weights
trained` (the default) exports. `--weights ticket` exports the winning ticket of any round instead: the run's mask of
that round (masks/round_NN.safetensors) on the weights at its rewind point, the subnetwork to train, its card giving
the accuracy that round's training reached.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from lth.atomic import atomic_write_json, atomic_write_text
from lth.checked_load import load_checkpoint, read_json
from lth.errors import UserError
from lth.mask_file import save_mask
from lth.masks import Mask
from lth.results import RunFiles, round_mask_path

REPOSITORY = Path(__file__).resolve().parents[1]
MODEL_FILE = "model.safetensors"
MASK_FILE = "mask.safetensors"
BUILD_FILE = "lth_model.json"
# The image families' models: the run's `arch` -> (family folder, the function in its models.py that builds the
# model, that function's arguments from the run's settings).
IMAGE_MODELS = {
    "LeNet-300-100": ("Lenet-300-100", "LeNet300100", lambda s: []),
    "VGG-19": ("VGG", "vgg19", lambda s: [s.get("width", 1.0)]),
    **{
        arch: ("CNN", "build_model", lambda s, arch=arch: [arch, s.get("dropout_rate", 0.0)])
        for arch in ("Conv-2", "Conv-4", "Conv-6")
    },
}
DATASETS = {"Lenet-300-100": "mnist", "CNN": "cifar10", "VGG": "cifar10"}
GLUE_DATASETS = {"sst2": "glue (sst2)", "qqp": "glue (qqp)"}


@dataclass
class Export:
    """What an export holds before it is written."""

    kind: str  # bert | image
    model: nn.Module
    mask: Mask
    source: Path
    round: int | None
    accuracy: dict
    settings: dict
    base_model: str | None = None  # BERT: --model_name_or_path; image families: None
    base_identity: dict | None = None
    family: str | None = None
    build: str | None = None  # image families: the line of Python that builds the model
    made_from: str = ""
    extra: dict = field(default_factory=dict)


# --- reading the source ----------------------------------------------------------------------------
WEIGHTS = ("trained", "ticket")


def read_source(
    source: str | os.PathLike, round_index: int | None, model_name_or_path: str | None, weights: str = "trained"
) -> Export:
    path = Path(source)
    if path.is_file():
        if round_index is not None or weights != "trained":
            raise UserError(
                "--round and --weights are for a run directory; a ticket file is one round's ticket already"
            )
        return _from_ticket(path, model_name_or_path)
    if not path.is_dir():
        raise UserError(f"export source {path} does not exist (expected a run directory or a BERT ticket file)")
    files = RunFiles(path)
    if not files.settings_file.is_file() or not files.state_file.is_file():
        raise UserError(
            f"export source {path} is not a run directory with saved state "
            f"({files.settings_file.name}, {files.state_file.name})"
        )
    settings = read_json(files.settings_file, "settings file")
    state = load_checkpoint(files.state_file, "run state")
    rows = state.get("rows") or []
    if not rows or state.get("trained") is None:
        raise UserError(f"export source {path} has no finished round yet")
    last = int(rows[-1]["round"])
    if weights == "ticket":
        return _ticket_of_round(path, settings, state, last if round_index is None else round_index, model_name_or_path)
    if round_index is not None and round_index != last:
        raise UserError(
            f"--round {round_index}: {path} keeps the trained weights of its last finished round only (round {last}); "
            f"export --round {last}, or round {round_index}'s ticket (--weights ticket: its mask on the rewind weights)"
        )
    mask = Mask.from_state_dict(state["mask"])
    row = rows[-1]
    accuracy = {k: row[k] for k in ACCURACY_COLUMNS if isinstance(row.get(k), (int, float))}
    if "model_name_or_path" in settings:
        return _from_bert_run(path, settings, state, mask, last, accuracy, model_name_or_path)
    return _from_image_run(path, settings, state, mask, last, accuracy, str(row.get("arch")))


def _ticket_of_round(path: Path, settings: dict, state: dict, round_index: int, model_name_or_path) -> Export:
    """The winning ticket of a round: the run's mask of that round on the weights at its rewind point (a control's
    rounds start from weights of their own, so only a winning ticket's rounds are tickets)."""
    from lth.mask_file import load_mask

    if settings.get("run_type", "winning_ticket") != "winning_ticket":
        raise UserError(f"--weights ticket: {path} is a {settings['run_type']} control, not a winning ticket")
    rows = {int(row["round"]): row for row in state["rows"]}
    mask_path = round_mask_path(path, round_index)
    if round_index not in rows or not mask_path.is_file():
        raise UserError(
            f"--round {round_index}: {path} has no finished round {round_index} with its mask kept "
            f"(finished rounds: {min(rows)}-{max(rows)}; masks of every round are kept since runs write them)"
        )
    mask = load_mask(mask_path)[0]
    weights = state["rewind"] if state.get("rewind") is not None else state["init"]
    row = rows[round_index]
    accuracy = {k: row[k] for k in ACCURACY_COLUMNS if isinstance(row.get(k), (int, float))}
    trained = ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items())
    made_from = (
        f"the winning ticket of round {round_index} of the IMP run {path.name}: its mask of that round on the weights "
        f"at the rewind point, untrained; train it before use (trained in that round it reached {trained or 'n/a'})"
    )
    if "model_name_or_path" in settings:
        exported = _from_bert_run(path, settings, {"trained": weights}, mask, round_index, accuracy, model_name_or_path)
    else:
        exported = _from_image_run(
            path, settings, {"trained": weights}, mask, round_index, accuracy, str(row.get("arch"))
        )
    exported.made_from = made_from
    exported.extra["weights"] = "ticket"
    return exported


ACCURACY_COLUMNS = ("dev_accuracy", "dev_f1", "test_accuracy_early_stop", "test_accuracy_final", "val_accuracy")


def bert_classifier(base_model: str, num_labels: int = 2) -> nn.Module:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from lth.environment import hub_offline
    from lth.model_identity import resolve_model_path

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(base_model), num_labels=num_labels, local_files_only=hub_offline()
        )
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise UserError(
            f"base model {base_model} cannot be loaded ({first}); pass it as --model_name_or_path"
        ) from None


def _from_bert_run(path, settings, state, mask, last, accuracy, model_name_or_path) -> Export:
    from lth.model_identity import identify_model

    base = model_name_or_path or settings["model_name_or_path"]
    recorded = settings.get("model_identity") or {}
    found = identify_model(base)
    if recorded.get("key") and found.key != recorded["key"]:
        raise UserError(
            f"run {path} was made from the model {recorded['key']}; {base} is {found.key} "
            "(pass the run's base model as --model_name_or_path)"
        )
    model = bert_classifier(base)
    model.load_state_dict(state["trained"])
    mask.apply(model)
    return Export(
        "bert",
        model,
        mask,
        path,
        last,
        accuracy,
        settings,
        base_model=base,
        base_identity=found.to_json(),
        made_from=f"the trained weights of round {last} of the IMP run {path.name} (fine-tuned on {settings.get('task')})",
    )


def _from_ticket(path: Path, model_name_or_path: str | None) -> Export:
    from lth.tickets import load_ticket, load_ticket_into

    ticket = load_ticket(path, "export source", model_name_or_path=model_name_or_path)
    labels = int(ticket.head["classifier.weight"].shape[0]) if "classifier.weight" in ticket.head else 2
    model = bert_classifier(ticket.base_model, labels)
    load_ticket_into(model, ticket, with_head=True)
    meta = ticket.metadata
    return Export(
        "bert",
        model,
        ticket.mask,
        path,
        (meta.get("accuracy") or {}).get("round"),
        {k: v for k, v in (meta.get("accuracy") or {}).items() if k != "round"},
        meta.get("settings") or {k: meta.get(k) for k in ("task", "seed", "rewind_to", "target_sparsity")},
        base_model=ticket.base_model,
        base_identity=ticket.base_identity,
        made_from=(
            f"the {ticket.kind} {path.name}: its weights at the rewind point ({meta.get('rewind_to') or 'not recorded'})"
            f"{' and its head' if ticket.head else ' and a fresh head'}; train it (e.g. on {meta.get('task')}) before use"
        ),
        extra={"ticket_kind": ticket.kind},
    )


def build_image_model(arch: str, arguments: list) -> nn.Module:
    """An image family's model, built by its own models.py (never by code read from a file)."""
    from lth.families import family_module

    folder, function, _ = IMAGE_MODELS[arch]
    return getattr(family_module(REPOSITORY / folder, "models"), function)(*arguments)


def build_expression(arch: str, arguments: list) -> str:
    return f"{IMAGE_MODELS[arch][1]}({', '.join(map(repr, arguments))})"


def _from_image_run(path, settings, state, mask, last, accuracy, arch) -> Export:
    if arch not in IMAGE_MODELS:
        raise UserError(f"export source {path}: unknown architecture {arch!r} (expected {', '.join(IMAGE_MODELS)})")
    folder, function, arguments_of = IMAGE_MODELS[arch]
    arguments = arguments_of(settings)
    model = build_image_model(arch, arguments)
    model.load_state_dict(state["trained"])
    mask.apply(model)
    expression = build_expression(arch, arguments)
    line = (
        f"from lth.families import family_module; from safetensors.torch import load_file; "
        f"{function} = family_module('{folder}', 'models').{function}; model = {expression}; "
        f"model.load_state_dict(load_file('FOLDER/{MODEL_FILE}'))"
    )
    return Export(
        "image",
        model,
        mask,
        path,
        last,
        accuracy,
        settings,
        family=folder,
        build=line,
        made_from=f"the trained weights of round {last} of the IMP run {path.name}",
        extra={"arch": arch, "arguments": arguments},
    )


# --- writing -------------------------------------------------------------------------------------
def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"export folder {output} exists and is not empty; give a new folder")
    if not output.parent.exists():
        raise UserError(f"export folder {output}: its parent {output.parent} does not exist")


def export(
    source: str | os.PathLike,
    output: str | os.PathLike,
    round_index: int | None = None,
    model_name_or_path: str | None = None,
    push_to_hub: str | None = None,
    weights: str = "trained",
) -> Path:
    output = Path(output)
    check_output(output)
    if push_to_hub:
        hub_reachable_or_fail(push_to_hub)
    exported = read_source(source, round_index, model_name_or_path, weights)
    staging = output.with_name(f".{output.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write_export(exported, staging)
        if output.exists():
            output.rmdir()  # empty (checked above)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    print(f"exported {exported.source} (round {exported.round}) to {output}")
    if push_to_hub:
        upload(output, push_to_hub)
    return output


def write_export(exported: Export, folder: Path) -> None:
    header = {
        "source": str(exported.source),
        "round": exported.round,
        "weights_remaining_pct": {n: 100 * (1 - s) for n, s in exported.mask.layer_sparsity().items()},
        "accuracy": exported.accuracy,
        "base_model_identity": exported.base_identity,
    }
    if exported.kind == "bert":
        from transformers import AutoTokenizer

        from lth.environment import hub_offline
        from lth.model_identity import resolve_model_path

        exported.model.save_pretrained(folder, safe_serialization=True)
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(exported.base_model), local_files_only=hub_offline()
        )
        tokenizer.save_pretrained(folder)
    else:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in exported.model.state_dict().items()}
        save_file(state, str(folder / MODEL_FILE), metadata={"format": "pt"})
        atomic_write_json(
            folder / BUILD_FILE,
            {
                "family": exported.family,
                "arch": exported.extra["arch"],
                "arguments": exported.extra["arguments"],
                "load": exported.build,
            },
        )
    save_mask(folder / MASK_FILE, exported.mask, header)
    atomic_write_text(folder / "README.md", model_card(exported))


def hub_base_model(exported: Export) -> str | None:
    """The base model as the hub names it (None where it has no hub name, e.g. a local folder)."""
    from lth.model_identity import PACKAGED_HUB_NAME

    identity = exported.base_identity or {}
    if identity.get("source") == "packaged":
        return PACKAGED_HUB_NAME
    if identity.get("source") == "hub":
        return identity.get("name_or_path")
    return None


def model_card(exported: Export) -> str:
    settings = exported.settings or {}
    task = settings.get("task")
    remaining = 100 * (1 - exported.mask.sparsity())
    tags = ["lottery-ticket", "pruning", "sparse", "lth-toolkit"]
    if exported.kind == "bert":
        datasets = ["glue"] if task in GLUE_DATASETS else []
        library = "transformers"
        tags += ["text-classification", "bert"]
    else:
        datasets = [DATASETS[exported.family]]
        library = "pytorch"
        tags += ["image-classification"]
    front = ["---"]
    base = hub_base_model(exported)
    if base:
        front.append(f"base_model: {base}")
    front.append(f"library_name: {library}")
    front += ["tags:", *[f"- {t}" for t in tags]]
    if datasets:
        front += ["datasets:", *[f"- {d}" for d in datasets]]
    front += ["metrics:", "- accuracy"]
    if exported.kind == "bert" and task == "qqp":
        front.append("- f1")
    front.append("---")
    title = exported.extra.get("arch") or (exported.base_identity or {}).get("key") or exported.base_model
    lines = [
        *front,
        "",
        f"# {title}: a lottery ticket with {remaining:.2f}% of its prunable weights",
        "",
        f"Made with lth-toolkit from {exported.made_from}. Pruned weights are stored as exact zeros in a dense",
        "tensor: the file is as large as the dense model's, and the mask beside it (`mask.safetensors`, one bit per",
        "prunable weight) says which weights survive. `lth cost FOLDER` measures what the sparsity buys on your machine.",
        "",
        "## Accuracy",
        "",
    ]
    if exported.accuracy:
        split = "dev set" if exported.kind == "bert" else "test set (early stop) / end of training"
        lines += [f"- {k}: {v:.2f}% ({split})" for k, v in exported.accuracy.items()]
    else:
        lines.append("- not measured for this file (a ticket at its rewind point: train it first)")
    lines += ["", "## Weights remaining per layer", "", "| layer | weights | remaining % |", "|---|---:|---:|"]
    totals = exported.mask.total_counts()
    for name, kept in exported.mask.kept_counts().items():
        lines.append(f"| {name} | {totals[name]:,} | {100 * kept / max(totals[name], 1):.2f} |")
    lines.append(f"| all prunable weights | {exported.mask.total():,} | {remaining:.2f} |")
    lines += ["", "## How it was made", ""]
    if exported.kind == "bert":
        lines.append(
            "Iterative magnitude pruning as Chen et al. (NeurIPS 2020): global over the encoder's linear layers and "
            "the pooler, rewinding to the pre-trained weights after each round."
        )
    else:
        lines.append("Iterative magnitude pruning as Frankle & Carbin (ICLR 2019), rewinding the survivors each round.")
    if exported.base_identity:
        lines.append(f"Base model identity: `{json.dumps(exported.base_identity, sort_keys=True)}`.")
    lines += ["", "Settings:", "", "```json", json.dumps(settings, indent=1, sort_keys=True, default=str), "```", ""]
    lines += ["## How to load it", "", "```python"]
    if exported.kind == "bert":
        lines += [
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            'model = AutoModelForSequenceClassification.from_pretrained("FOLDER_OR_REPO")',
            'tokenizer = AutoTokenizer.from_pretrained("FOLDER_OR_REPO")',
        ]
    else:
        lines += [f"# from the root of the lth-toolkit repository ({exported.family}/ holds the model's code)"]
        lines.append(exported.build)
    lines += [
        "```",
        "",
        "The mask: `from lth.mask_file import load_mask; mask, header = load_mask('mask.safetensors')`.",
        "",
    ]
    return "\n".join(lines)


# --- the hub -------------------------------------------------------------------------------------
def hub_reachable_or_fail(repo: str) -> None:
    from lth.environment import hub_offline

    if hub_offline():
        reason = (
            "HF_HUB_OFFLINE is set"
            if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            else "huggingface.co cannot be reached"
        )
        raise UserError(f"--push_to_hub {repo}: {reason}; export to a folder here and upload it where a network exists")


def upload(folder: Path, repo: str) -> None:
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="lth export")
    except ImportError:
        raise UserError("--push_to_hub needs huggingface_hub (pip install huggingface_hub)") from None
    except Exception as error:  # authentication, permissions, network: one line naming the repo
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"--push_to_hub {repo}: upload failed ({first}); the export is in {folder}") from None
    print(f"uploaded {folder} to https://huggingface.co/{repo}")


def load_exported_image_model(folder: str | os.PathLike) -> nn.Module:
    """An image-family export as a model (what the one line in its model card does)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    build = read_json(folder / BUILD_FILE, "export build file")
    if build.get("arch") not in IMAGE_MODELS:
        raise UserError(f"{folder / BUILD_FILE}: unknown architecture {build.get('arch')!r}")
    model = build_image_model(build["arch"], list(build.get("arguments") or []))
    model.load_state_dict(load_file(str(folder / MODEL_FILE)))
    return model
