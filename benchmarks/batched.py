"""Time R runs trained batched against the same R runs trained one after another, in one run, on one machine.

LeNet-300-100 on real MNIST (or Conv-2 on CIFAR-10 with --model conv2): R runs that differ in seed and run type,
one round of --iterations each, evaluated every --eval_every iterations, through the toolkit's own paths
(`run_imp` per run, `run_imp_batched` for all), each uncompiled and with --compile (torch.compile; CUDA graphs on a
GPU). Prints the times and their ratios against the runs one after another, uncompiled.

    python benchmarks/batched.py [--runs 10] [--iterations 500] [--model lenet|conv2] [--device cpu|cuda]

`--suite gpu` is the issue's GPU measurement in one command of a few minutes (`--synthetic`: random data of the
real shapes, so no dataset has to travel to a lent GPU): 20 LeNet runs and 10 Conv-2 runs
(each way), the single-run Conv-2 step against its arithmetic time, and the paper-scale protocols extrapolated
from the measured iterations (saying so). `--suite smoke` runs the same code at a tiny scale (CPU, for testing).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lth.api import StudySettings  # noqa: E402
from lth.batched import Replicate, run_imp_batched  # noqa: E402
from lth.batches import ShuffledBatches  # noqa: E402
from lth.datasets import ImageData, load_cifar10, load_mnist, random_images, resolve_data_root  # noqa: E402
from lth.families import family_module  # noqa: E402
from lth.imp import IMPRecipe, IMPSettings, run_imp  # noqa: E402
from lth.pruning import LayerwisePruning, conv_fc_rates  # noqa: E402
from lth.results import RunDirectory  # noqa: E402
from lth.training import RoundSchedule, autocast_for, image_evaluator  # noqa: E402

RUN_TYPES = ("winning_ticket", "random_reinit")
# The protocols the issue sets targets for: (runs, rounds + 1, iterations per round, target in seconds).
WAYS = ["alone", "batched", "alone+compile", "batched+compile"]
PROTOCOLS = {"lenet": (20, 21, 50_000, 300.0), "conv2": (10, 21, 20_000, 1800.0)}


def model_factory(name: str):
    if name == "lenet":
        return family_module(REPO / "Lenet-300-100", "models").LeNet300100
    build_model = family_module(REPO / "CNN", "models").build_model
    return lambda: build_model("Conv-2", 0.0)


def recipes(name: str, data, runs: int, iterations: int, eval_every: int, device: str, compile: bool = False):
    factory = model_factory(name)
    out = []
    for index in range(runs):
        seed, run_type = index // len(RUN_TYPES), RUN_TYPES[index % len(RUN_TYPES)]
        recipe = IMPRecipe(
            arch=name,
            model_factory=factory,
            policy=LayerwisePruning(conv_fc_rates(factory(), 0.1, 0.2)),
            make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1.2e-3),
            batches=ShuffledBatches(data.train_x, data.train_y, 60, seed=seed),
            evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y, batch_size=1000),
            schedule=RoundSchedule(iterations, eval_every=eval_every),
            device=device,
            compile=compile,
        )
        settings = StudySettings(name=f"bench-{name}", seed=seed, run_type=run_type, rounds=0, energy=False)
        out.append((recipe, IMPSettings(rounds=0, seed=seed, run_type=run_type), settings))
    return out


def synthetic(name: str, device: str) -> ImageData:
    """Random data of the real dataset's shapes and sizes (55k/45k train, 5k validation, 10k test): timings do not
    depend on pixel values, and no dataset has to travel to a lent GPU."""
    if name == "lenet":
        return random_images((1, 28, 28), (55_000, 5_000, 10_000), device)
    return random_images((3, 32, 32), (45_000, 5_000, 10_000), device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_alone(jobs, root: Path, device: str) -> float:
    synchronize(device)
    started = time.perf_counter()
    for recipe, cfg, settings in jobs:
        with RunDirectory(root, settings) as run:
            run_imp(run, recipe, cfg, quiet=True)
    synchronize(device)
    return time.perf_counter() - started


def time_batched(jobs, root: Path, device: str) -> float:
    runs = [RunDirectory(root, settings).open() for _, _, settings in jobs]
    synchronize(device)
    started = time.perf_counter()
    try:
        run_imp_batched([Replicate(run, recipe, cfg) for run, (recipe, cfg, _) in zip(runs, jobs, strict=True)], True)
    finally:
        for run in runs:
            run.close()
    synchronize(device)
    return time.perf_counter() - started


def compare(model: str, data, runs: int, iterations: int, eval_every: int, device: str, ways: list[str]) -> dict:
    """Seconds for R runs of one round each way ('alone', 'batched', either with '+compile'), each after a warm-up."""
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in ways:
            compiled = way.endswith("+compile")
            jobs = recipes(model, data, runs, iterations, eval_every, device, compiled)
            timer = time_alone if way.startswith("alone") else time_batched
            # Untimed warm-up of the same shapes: compiling, capturing CUDA graphs and kernel selection happen once
            warm = recipes(
                model, data, runs if timer is time_batched else 1, 2 * eval_every, eval_every, device, compiled
            )
            try:  # device time is scarce: a way that fails is reported, and the others are still measured
                timer(warm, Path(tmp) / f"warm-{way}", device)
                times[way] = timer(jobs, Path(tmp) / way, device)
            except Exception as error:
                print(f"  {way}: failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}", flush=True)
    return times


def report(model: str, runs: int, iterations: int, eval_every: int, times: dict) -> list[str]:
    if not times:
        return [f"{runs} {model} runs: no way finished"]
    base = times.get("alone") or next(iter(times.values()))
    lines = [f"{runs} {model} runs x 1 round of {iterations} iterations, evaluated every {eval_every}:"]
    for way, seconds in times.items():
        per_iteration = seconds / (runs * iterations) * 1000
        lines.append(
            f"  {way:18s} {seconds:8.2f} s  ({per_iteration:.3f} ms per run-iteration)  {base / seconds:5.2f}x"
        )
    return lines


def extrapolate(model: str, runs: int, iterations: int, times: dict) -> str:
    """The issue's protocol, from the fastest way measured: per run-iteration time x the protocol's iterations."""
    total_runs, rounds, round_iterations, target = PROTOCOLS[model]
    if not times:
        return "  nothing to extrapolate from"
    way, seconds = min(times.items(), key=lambda item: item[1])
    estimate = seconds / (runs * iterations) * total_runs * rounds * round_iterations
    verdict = "within" if estimate <= target else "over"
    return (
        f"  extrapolated ({way}, from the measured iterations; pruning between rounds not included): "
        f"{total_runs} runs x {rounds} rounds x {round_iterations} iterations = {estimate / 60:.1f} min, "
        f"{verdict} the target of {target / 60:.0f} min"
    )


def step_against_arithmetic(data, iterations: int, device: str) -> list[str]:
    """One Conv-2 run's training step (the toolkit's loop, bf16 autocast on a GPU) against the time its
    arithmetic takes at this device's measured dense matmul rate (bf16 on a GPU, float32 on a CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model_factory("conv2")().to(device)
    x, y = data.train_x[:60], data.train_y[:60]
    with FlopCounterMode(display=False) as counter, autocast_for(device):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    flops = counter.get_total_flops()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    size = 8192 if device.startswith("cuda") else 1024
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    synchronize(device)
    started, repeats = time.perf_counter(), 20 if device.startswith("cuda") else 3
    for _ in range(repeats):
        a @ b
    synchronize(device)
    rate = 2 * size**3 * repeats / (time.perf_counter() - started)
    arithmetic_ms = flops / rate * 1000
    lines = [f"Conv-2 step (batch 60): {flops / 1e9:.3f} GFLOP forward + backward; dense {dtype} matmul rate "
             f"{rate / 1e12:.1f} TFLOP/s, so {arithmetic_ms:.3f} ms of arithmetic"]  # fmt: skip
    # A round of 2N iterations less one of N: the steps alone (set-up, evaluation, pruning and files cancel out)
    short = compare("conv2", data, 1, iterations, iterations, device, ["alone", "alone+compile"])
    long = compare("conv2", data, 1, 2 * iterations, 2 * iterations, device, ["alone", "alone+compile"])
    for way in [w for w in short if w in long]:
        step_ms = (long[way] - short[way]) / iterations * 1000
        lines.append(
            f"  {way:18s} {step_ms:.3f} ms per step, {step_ms / arithmetic_ms:.1f}x its arithmetic (target 3x)"
        )
    return lines


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["gpu", "smoke"], default=None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--eval_every", type=int, default=None, help="default: once at the start and the end")
    parser.add_argument("--model", choices=["lenet", "conv2"], default="lenet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--synthetic", action="store_true", help="random data of MNIST's and CIFAR-10's shapes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = resolve_data_root(args.data_dir)

    def load(model: str) -> ImageData:
        if args.synthetic:
            return synthetic(model, device)
        return (load_mnist if model == "lenet" else load_cifar10)(root, device, val_size=5000, seed=0)

    device = "cuda" if args.suite == "gpu" else args.device
    data_kind = "synthetic data of the real shapes" if args.synthetic else f"real data from {root}"
    print(f"{device} ({device_name(device)}), {args.threads} CPU thread(s), torch {torch.__version__}, {data_kind}",
          flush=True)  # fmt: skip
    if args.suite is None:
        data = load(args.model)
        eval_every = args.eval_every or args.iterations
        times = compare(args.model, data, args.runs, args.iterations, eval_every, device, WAYS)
        print("\n".join(report(args.model, args.runs, args.iterations, eval_every, times)))
        return
    # (runs, iterations, evaluated every) per model: the protocols' evaluation cadence, a few minutes in all
    scale = {"gpu": {"lenet": (20, 1000, 100), "conv2": (10, 1000, 100), "step": 500},
             "smoke": {"lenet": (3, 20, 10), "conv2": (2, 10, 5), "step": 10}}[args.suite]  # fmt: skip
    mnist, cifar = load("lenet"), load("conv2")
    if args.suite == "smoke":  # evaluation on 500 + 500 images: the code path, not the cost
        mnist, cifar = (
            dataclasses.replace(
                d, val_x=d.val_x[:500], val_y=d.val_y[:500], test_x=d.test_x[:500], test_y=d.test_y[:500]
            )
            for d in (mnist, cifar)
        )
    for model, data in (("lenet", mnist), ("conv2", cifar)):
        runs, iterations, eval_every = scale[model]
        times = compare(model, data, runs, iterations, eval_every, device, WAYS)
        print("\n".join(report(model, runs, iterations, eval_every, times)))
        print(extrapolate(model, runs, iterations, times), flush=True)
    print("\n".join(step_against_arithmetic(cifar, scale["step"], device)))


if __name__ == "__main__":
    main()
