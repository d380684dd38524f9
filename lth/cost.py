"""`lth cost`: what a ticket's sparsity buys, measured: size, FLOPs, bytes on disk and latency, dense against sparse.

Counted per layer (every nn.Linear and nn.Conv2d) and in total, as ShrinkBench does:
- size / size_nz      parameters and nonzero parameters (the whole model; per layer its weight and bias);
- flops / flops_nz    multiply-accumulates of one forward pass of one example (ShrinkBench's count): a linear layer
                      in x out per position (per token for BERT), a convolution Cin/groups x kh x kw x Cout per output
                      pixel; `_nz` counts the nonzero weights only. Attention's own matrix products (BERT's QK^T and
                      AV) and elementwise work are not layers and are not counted.
- bytes               on disk: dense fp32, dense fp16, bitmask + fp32 nonzero values (lth's ticket layout: one bit per
                      prunable weight), and CSR (fp32 values, int32 column indices and row pointers; a convolution's
                      weight as Cout x (Cin kh kw)); unpruned tensors count dense in every layout.

Latency: the model as it is (dense, pruned weights zero) against the same model whose linear layers multiply by their
weight in torch's sparse CSR layout (`torch.sparse.mm`); convolutions stay dense in both (core torch has no sparse
convolution on CPU), so for a conv net only its linear layers change. Timed with torch.utils.benchmark (median of
`blocked_autorange`) at each batch size and thread count, on the machine named in the report. Where a CUDA device of
compute capability 8.0 or more is present and every linear mask is 2:4 (at most 2 of each 4 consecutive inputs kept),
the semi-structured path (`torch.sparse.to_sparse_semi_structured`, fp16) is timed too; otherwise the report says why
it was skipped. Slowdowns are reported as measured: the speedup column is dense time / sparse time, below 1 slower.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

from lth.errors import UserError
from lth.masks import Mask

LAYER_TYPES = (nn.Linear, nn.Conv2d)


# --- counting ----------------------------------------------------------------------------------------
def layer_positions(model: nn.Module, example: dict | torch.Tensor) -> dict[str, int]:
    """How many times each linear/conv layer applies its weight in one forward pass of ONE example (tokens for a
    linear layer on a sequence, output pixels for a convolution)."""
    positions: dict[str, int] = {}
    hooks = []

    def hook(name):
        def record(module, inputs, output):
            batch = output.shape[0]
            if isinstance(module, nn.Conv2d):
                positions[name] = positions.get(name, 0) + output.shape[-1] * output.shape[-2]
            else:
                positions[name] = positions.get(name, 0) + output.numel() // (output.shape[-1] * batch)

        return record

    for name, module in model.named_modules():
        if isinstance(module, LAYER_TYPES):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            run_model(model, example)
    finally:
        for handle in hooks:
            handle.remove()
    return positions


def run_model(model: nn.Module, inputs):
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def one_example(inputs):
    if isinstance(inputs, dict):
        return {k: v[:1] for k, v in inputs.items()}
    return inputs[:1]


def weight_bytes(weight: torch.Tensor, keep: torch.Tensor | None) -> dict[str, int]:
    numel = weight.numel()
    nonzero = int(keep.sum()) if keep is not None else int(torch.count_nonzero(weight))
    rows = weight.shape[0] if weight.dim() >= 2 else 1
    return {
        "bytes_fp32": 4 * numel,
        "bytes_fp16": 2 * numel,
        "bytes_bitmask": (math.ceil(numel / 8) + 4 * nonzero) if keep is not None else 4 * numel,
        "bytes_csr": (8 * nonzero + 4 * (rows + 1)) if keep is not None and weight.dim() >= 2 else 4 * numel,
    }


def count(model: nn.Module, mask: Mask, example) -> tuple[list[dict], dict]:
    """Per-layer rows and the model's totals (see the module's docstring)."""
    positions = layer_positions(model, one_example(example))
    modules = dict(model.named_modules())
    rows = []
    for name, applied in positions.items():
        module = modules[name]
        weight = module.weight.detach()
        keep = mask.layers.get(f"{name}.weight")
        nonzero = int(keep.sum()) if keep is not None else int(torch.count_nonzero(weight))
        # A weight's entries are its multiply-accumulates per position (a grouped convolution's weight already
        # holds Cin/groups inputs per output channel).
        per_position, nonzero_per_position = weight.numel(), nonzero
        bias = module.bias.numel() if module.bias is not None else 0
        row = {
            "layer": name,
            "type": type(module).__name__,
            "shape": list(weight.shape),
            "pruned": keep is not None,
            "weights_remaining_pct": 100 * nonzero / max(weight.numel(), 1),
            "size": weight.numel() + bias,
            "size_nz": nonzero + bias,
            "flops": applied * per_position,
            "flops_nz": applied * nonzero_per_position,
        }
        row.update(weight_bytes(weight, keep))
        if bias:
            for key in ("bytes_fp32", "bytes_bitmask", "bytes_csr"):
                row[key] += 4 * bias
            row["bytes_fp16"] += 2 * bias
        rows.append(row)
    total = {"size": 0, "size_nz": 0, "bytes_fp32": 0, "bytes_fp16": 0, "bytes_bitmask": 0, "bytes_csr": 0}
    counted = {f"{r['layer']}.weight" for r in rows} | {f"{r['layer']}.bias" for r in rows}
    for name, param in model.named_parameters():
        keep = mask.layers.get(name)
        total["size"] += param.numel()
        total["size_nz"] += int(keep.sum()) if keep is not None else int(torch.count_nonzero(param))
        if name not in counted:  # embeddings, LayerNorm, BatchNorm: dense in every layout
            for key, value in weight_bytes(param.detach(), None).items():
                total[key] += value
    for row in rows:
        for key in ("bytes_fp32", "bytes_fp16", "bytes_bitmask", "bytes_csr"):
            total[key] += row[key]
    total["flops"] = sum(r["flops"] for r in rows)
    total["flops_nz"] = sum(r["flops_nz"] for r in rows)
    total["weights_remaining_pct"] = 100 * (1 - mask.sparsity())
    return rows, total


# --- sparse execution ----------------------------------------------------------------------------------
class CSRLinear(nn.Module):
    """A linear layer whose weight is held in torch's sparse CSR layout: y = (W x^T)^T + b."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with warnings.catch_warnings():  # torch calls its CSR support beta; what it computes is checked in latency()
            warnings.simplefilter("ignore", UserWarning)
            self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = linear.bias.detach() if linear.bias is not None else None
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def with_sparse_linears(model: nn.Module, mask: Mask, make=CSRLinear) -> nn.Module:
    """A copy of `model` whose pruned linear layers run sparse (`make(linear)`); everything else as it was."""
    sparse = copy.deepcopy(model)
    for name, module in list(sparse.named_modules()):
        if isinstance(module, nn.Linear) and f"{name}.weight" in mask.layers:
            parent_name, _, child = name.rpartition(".")
            parent = sparse.get_submodule(parent_name) if parent_name else sparse
            setattr(parent, child, make(module))
    return sparse.eval()


def is_two_four(mask: Mask, names: list[str]) -> bool:
    """Every group of 4 consecutive inputs of each linear weight keeps at most 2."""
    for name in names:
        keep = mask.layers[name]
        if keep.shape[-1] % 4:
            return False
        if bool((keep.reshape(-1, 4).sum(dim=1) > 2).any()):
            return False
    return True


def time_forward(model: nn.Module, inputs, threads: int, min_run_time: float) -> float:
    """Median seconds of one forward pass (torch.utils.benchmark)."""
    from torch.utils import benchmark

    timer = benchmark.Timer(
        stmt="run(model, inputs)",
        globals={"run": run_model, "model": model, "inputs": inputs},
        num_threads=threads,
    )
    with torch.no_grad():
        return timer.blocked_autorange(min_run_time=min_run_time).median


def semi_structured_latency(model: nn.Module, mask: Mask, make_inputs, batch_sizes, min_run_time) -> dict:
    """The 2:4 path on a CUDA device of capability >= 8.0; otherwise why it was skipped."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device here (2:4 semi-structured sparsity needs compute capability >= 8.0)"}
    capability = torch.cuda.get_device_capability()
    if capability < (8, 0):
        return {"skipped": f"CUDA device of compute capability {capability[0]}.{capability[1]} (needs >= 8.0)"}
    linears = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = [n for n in linears if n in mask.layers]
    if not names or not is_two_four(mask, names):
        return {"skipped": "the masks are not 2:4 (IMP's masks are unstructured)"}
    from torch.sparse import to_sparse_semi_structured

    dense = copy.deepcopy(model).half().cuda().eval()
    sparse = copy.deepcopy(dense)
    for name, module in sparse.named_modules():
        if isinstance(module, nn.Linear) and f"{name}.weight" in mask.layers:
            module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()))
    rows = {}
    for batch in batch_sizes:
        inputs = make_inputs(batch)
        inputs = {k: v.cuda() for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.half().cuda()
        dense_s = time_forward(dense, inputs, 1, min_run_time)
        sparse_s = time_forward(sparse, inputs, 1, min_run_time)
        rows[str(batch)] = {"dense_s": dense_s, "sparse_2to4_s": sparse_s, "speedup": dense_s / sparse_s}
    return {"device": torch.cuda.get_device_name(), "batches": rows}


def machine() -> dict:
    from lth.provenance import device_name

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": device_name("cpu"),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15min": load,
    }


def latency(model, mask, make_inputs, batch_sizes, threads, min_run_time) -> list[dict]:
    sparse = with_sparse_linears(model, mask)
    rows = []
    for thread_count in threads:
        for batch in batch_sizes:
            inputs = make_inputs(batch)
            with torch.no_grad():  # the sparse copy computes what the dense model does
                reference, result = run_model(model, inputs), run_model(sparse, inputs)
            reference = getattr(reference, "logits", reference)
            result = getattr(result, "logits", result)
            if not torch.allclose(reference, result, rtol=1e-3, atol=1e-4):
                raise RuntimeError("the sparse model's output differs from the dense model's")
            dense_s = time_forward(model, inputs, thread_count, min_run_time)
            sparse_s = time_forward(sparse, inputs, thread_count, min_run_time)
            rows.append(
                {
                    "threads": thread_count,
                    "batch": batch,
                    "dense_ms": 1000 * dense_s,
                    "sparse_csr_ms": 1000 * sparse_s,
                    "speedup": dense_s / sparse_s,
                }
            )
    return rows


def cost_report(model, mask, make_inputs, batch_sizes=(1, 64), threads=None, min_run_time=0.5) -> dict:
    model = model.eval()
    threads = threads or sorted({1, os.cpu_count() or 1})
    layers, total = count(model, mask, make_inputs(1))
    return {
        "machine": machine(),
        "total": total,
        "layers": layers,
        "latency": latency(model, mask, make_inputs, list(batch_sizes), list(threads), min_run_time),
        "latency_note": "sparse: linear layers in torch sparse CSR (torch.sparse.mm); convolutions dense in both",
        "semi_structured_2to4": semi_structured_latency(model, mask, make_inputs, list(batch_sizes), min_run_time),
    }


# --- what `lth cost` reads ---------------------------------------------------------------------------
def token_inputs(vocab_size: int, sequence_length: int):
    def make(batch: int) -> dict:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(5, vocab_size, (batch, sequence_length), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    return make


def image_inputs(shape: tuple[int, ...]):
    def make(batch: int) -> torch.Tensor:
        return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(batch))

    return make


IMAGE_SHAPES = {"Lenet-300-100": (1, 28, 28), "CNN": (3, 32, 32), "VGG": (3, 32, 32)}


def load_for_cost(source: str | os.PathLike, sequence_length: int = 32):
    """(model, mask, input maker, what it is) of an export folder, a run directory or a BERT ticket file."""
    from lth.export import BUILD_FILE, MASK_FILE, load_exported_image_model, read_source
    from lth.mask_file import load_mask

    path = Path(source)
    if path.is_dir() and (path / MASK_FILE).is_file():
        mask, _ = load_mask(path / MASK_FILE)
        if (path / BUILD_FILE).is_file():
            build = json.loads((path / BUILD_FILE).read_text())
            return load_exported_image_model(path), mask, image_inputs(IMAGE_SHAPES[build["family"]]), str(path)
        if (path / "config.json").is_file():
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(path)
            return model, mask, token_inputs(model.config.vocab_size, sequence_length), str(path)
        raise UserError(f"{path} holds a mask but neither config.json nor {BUILD_FILE}: not an lth export")
    exported = read_source(path, None, None)
    if exported.kind == "bert":
        inputs = token_inputs(exported.model.config.vocab_size, sequence_length)
    else:
        inputs = image_inputs(IMAGE_SHAPES[exported.family])
    return exported.model, exported.mask, inputs, str(path)


def format_report(report: dict, what: str) -> str:
    m = report["machine"]
    load = m["load_average_1_5_15min"]
    lines = [
        f"cost of {what}",
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
        + (f", load average {load[0]:.2f} (other work on the machine slows every timing)" if load else ""),
        "",
        f"{'layer':<48} {'remain%':>8} {'size':>11} {'size_nz':>11} {'flops':>13} {'flops_nz':>13}",
    ]
    for row in report["layers"]:
        lines.append(
            f"{row['layer']:<48} {row['weights_remaining_pct']:8.2f} {row['size']:>11,} {row['size_nz']:>11,} "
            f"{row['flops']:>13,} {row['flops_nz']:>13,}"
        )
    t = report["total"]
    lines += [
        f"{'total (all parameters; FLOPs of the layers above)':<48} {t['weights_remaining_pct']:8.2f} "
        f"{t['size']:>11,} {t['size_nz']:>11,} {t['flops']:>13,} {t['flops_nz']:>13,}",
        "",
        f"bytes on disk: dense fp32 {t['bytes_fp32']:,}, dense fp16 {t['bytes_fp16']:,}, bitmask + nonzero fp32 "
        f"{t['bytes_bitmask']:,} ({t['bytes_bitmask'] / t['bytes_fp32']:.1%} of fp32), CSR {t['bytes_csr']:,} "
        f"({t['bytes_csr'] / t['bytes_fp32']:.1%})",
        "",
        f"latency ({report['latency_note']}; median, torch.utils.benchmark):",
        f"{'threads':>7} {'batch':>6} {'dense ms':>10} {'sparse ms':>10} {'speedup':>8}",
    ]
    for row in report["latency"]:
        verdict = "faster" if row["speedup"] > 1 else "SLOWER"
        lines.append(
            f"{row['threads']:>7} {row['batch']:>6} {row['dense_ms']:10.3f} {row['sparse_csr_ms']:10.3f} "
            f"{row['speedup']:7.2f}x {verdict}"
        )
    semi = report["semi_structured_2to4"]
    lines.append(f"2:4 semi-structured: {semi.get('skipped') or json.dumps(semi)}")
    return "\n".join(lines)


def cost_command(source, batch_sizes, threads, min_run_time, output) -> dict:
    model, mask, make_inputs, what = load_for_cost(source)
    report = cost_report(model, mask, make_inputs, batch_sizes, threads, min_run_time)
    print(format_report(report, what))
    if output:
        from lth.storage import atomic_write_json

        atomic_write_json(output, dict(report, source=what))
    return report
