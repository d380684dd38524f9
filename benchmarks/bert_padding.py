"""BERT fine-tuning speed: the toolkit's dynamic padding with length-grouped batches vs padding every
sequence to 128 as the earlier study did; same model (MiniLM-L6-H384, offline), same data (real
SST-2 train), same number of steps, same machine, in one run.

    python benchmarks/bert_padding.py                  # 30 steps each, batch 32
    python benchmarks/bert_padding.py --steps 100 --model_name_or_path bert-base-uncased --device cuda

Baseline (the earlier study): the tokenizer pads to max_length 128, a torch DataLoader shuffles a
TensorDataset, AdamW (torch's default implementation), the loss read with .item() every step.
Toolkit: one padded id tensor on the device, LengthGroupedBatches (each batch cut to its longest
sequence), the core training loop lth.training.train_round with the mask enforcer, fused AdamW.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # lth, where the repository is not installed
from lth.families import family_module  # noqa: E402
from lth.masks import Mask  # noqa: E402
from lth.text.data import LengthGroupedBatches  # noqa: E402
from lth.training import RoundSchedule, autocast_for, train_round  # noqa: E402

load_task_data = family_module(REPO / "BERT", "data").load_task_data
classifier_factory = family_module(REPO / "BERT", "model").classifier_factory
load_tokenizer = family_module(REPO / "BERT", "model").load_tokenizer
bert_prunable_names = family_module(REPO / "BERT", "pruning").bert_prunable_names
bert_step_loss = family_module(REPO / "BERT", "trainer").bert_step_loss
linear_schedule = family_module(REPO / "BERT", "trainer").linear_schedule
make_adamw = family_module(REPO / "BERT", "trainer").make_adamw


def baseline(model, data, steps: int, batch_size: int, lr: float, seed: int, device: str) -> float:
    """The earlier study's loop: everything padded to 128, DataLoader shuffling, .item() per step."""
    ids = data.train.batch(torch.arange(len(data.train)), pad_to=128)
    dataset = torch.utils.data.TensorDataset(
        ids["input_ids"].cpu(), ids["attention_mask"].cpu(), ids["token_type_ids"].cpu(), ids["labels"].cpu()
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    lr_at = linear_schedule(lr, steps)
    model.train()
    started, step = time.perf_counter(), 0
    while step < steps:
        for input_ids, attention, types, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            batch = [t.to(device) for t in (input_ids, attention, types, labels)]
            with autocast_for(device):
                logits = model(input_ids=batch[0], attention_mask=batch[1], token_type_ids=batch[2]).logits
                loss = F.cross_entropy(logits.float(), batch[3])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # the earlier loop logged the loss every step
            step += 1
            if step == steps:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def toolkit(
    model,
    data,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    precision: str = "auto",
    progress: bool = True,
) -> float:
    """Seconds for `steps` of the toolkit's training step (lth.training.train_round) at `precision`."""
    names = bert_prunable_names(model)
    mask = Mask.dense(model, names).to(device)
    batches = LengthGroupedBatches(data.train, batch_size, seed=seed)
    started = time.perf_counter()
    train_round(
        model,
        make_adamw(model, lr),
        batches,
        bert_step_loss,
        lambda m: {},
        RoundSchedule(steps, eval_every=steps),
        enforce_mask=mask.enforcer(model),
        lr_at=linear_schedule(lr, steps),
        description="toolkit",
        device=device,
        precision=precision,
        progress=progress,
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model_name_or_path", default="minilm")
    parser.add_argument(
        "--data_dir", default=None, help="data root with glue/SST-2 (default: $LTH_DATA_DIR, else ../shared/data)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or __import__("os").environ.get("LTH_DATA_DIR") or str(REPO.parent / "shared" / "data")

    tokenizer = load_tokenizer(args.model_name_or_path)
    data = load_task_data("sst2", tokenizer, data_dir, max_length=128, device=args.device)
    mean_tokens = float(data.train.lengths.float().mean())
    print(f"SST-2 train: {len(data.train)} sentences, {mean_tokens:.1f} tokens on average (128 with fixed padding)")
    timings = {}
    for name, run in (("padded to 128 (earlier study)", baseline), ("dynamic + length-grouped (toolkit)", toolkit)):
        torch.manual_seed(args.seed)
        model = classifier_factory(args.model_name_or_path)().to(args.device)
        warm = data.train.batch(torch.arange(4))  # first-call costs (allocator, kernels) out of the timing
        with autocast_for(args.device):
            model(input_ids=warm["input_ids"], attention_mask=warm["attention_mask"]).logits.sum().backward()
        model.zero_grad(set_to_none=True)
        timings[name] = run(model, data, args.steps, args.batch_size, args.lr, args.seed, args.device)
        print(
            f"{name:<36} {args.steps} steps in {timings[name]:7.2f} s ({1000 * timings[name] / args.steps:7.1f} ms/step)"
        )
    base, fast = timings.values()
    print(
        f"speed-up: {base / fast:.1f}x  (model {args.model_name_or_path}, batch {args.batch_size}, device {args.device}, "
        f"{torch.get_num_threads()} threads)"
    )
    return {"baseline_s": base, "toolkit_s": fast, "ratio": base / fast}


if __name__ == "__main__":
    main()
