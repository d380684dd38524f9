"""Several IMP runs of one architecture and recipe trained together in one batched step.

A Lottery Ticket study is many small, identical trainings that differ only in seed (trial), run type and IMP
mode. Here R of them share each optimiser step: their parameters are stacked along a new first dimension, one
forward pass evaluates all R networks (`torch.func.vmap` over `functional_call`), each on its own batch (its own
validation split, data order and augmentation), and the sum of their R mean losses is differentiated, so each
replicate's gradient is exactly its own loss's. The optimisers used here (Adam, SGD with momentum and weight
decay) are elementwise, so stacked parameters train as separate ones would. Masks, pruning, rewinding and the
controls are the unbatched code run per replicate (`lth.imp`), evaluation runs each replicate alone, and every
run keeps its own run directory, CSVs and state; `batched.json` beside them says how it was trained.

Resume: each run's state is saved at every round end as when trained alone; inside a round each run's progress is
saved at the same iterations, marked with the batch it belongs to. A batched job resumes from that progress only
if every run of the batch holds progress of the same round and iteration (else the round restarts from its saved
start, which gives the same results: everything in a round follows from its start). A run is never resumed by the
other path: progress or state written batched is refused by `run_imp`, and the other way round.

BatchNorm: each replicate keeps running statistics of its own (its buffers are stacked like its parameters and
updated inside the batched forward pass). Dropout: each replicate draws its masks from a generator of its own,
seeded and consumed as its run's global RNG is when trained alone, so on a CPU the masks are the ones it would
draw alone and never depend on its batch-mates (on a GPU torch's fused dropout kernel draws other numbers from
the same distribution).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from lth import provenance
from lth.energy import Reading, meter_for
from lth.errors import UserError
from lth.imp import (
    IMPRecipe,
    IMPSettings,
    capture_weights,
    finish_round,
    new_captures,
    round_start,
    starting_state,
    transformation_seed,
)
from lth.masks import Mask
from lth.results import RunDirectory, is_finished
from lth.rewinding import derived_seed, to_cpu
from lth.storage import atomic_write_json, atomic_write_text
from lth.tracking import NoTracker, tracker_for
from lth.training import autocast_for, compile_options, run_schedule, set_learning_rate


@dataclass
class Replicate:
    run: RunDirectory  # opened (its lease held)
    recipe: IMPRecipe
    cfg: IMPSettings
    state: dict | None = None
    tracker: NoTracker = field(default_factory=NoTracker)


def check_batchable(replicates: list[Replicate]) -> str:
    """Runs sharing a batch share one network shape (layers, dropout rates), schedule, rounds and rewind point;
    returns that network's description."""
    first = replicates[0]
    network = repr(first.recipe.model_factory())
    for other in replicates[1:]:
        if (
            other.recipe.arch != first.recipe.arch
            or other.recipe.schedule != first.recipe.schedule
            or other.cfg.rounds != first.cfg.rounds
            or other.cfg.rewind_iteration != first.cfg.rewind_iteration
            or repr(other.recipe.model_factory()) != network
        ):
            raise UserError(f"{other.run.name} and {first.run.name} differ in more than seed, run type and mode")
    return network


def started_alone(run: RunDirectory) -> bool:
    """A run with saved state or in-round progress but no batched.json was being trained alone."""
    saved = (run.path / "state.pt").exists() or (run.path / "progress.pt").exists()
    return saved and not (run.path / "batched.json").exists()


def run_imp_batched(replicates: list[Replicate], quiet: bool = False) -> None:
    """Run (or resume) IMP for several runs together; each ends as its own finished run directory."""
    replicates = [r for r in replicates if not is_finished(r.run.path)]
    if not replicates:
        return
    # Winning tickets first: each starts its round (and keeps its mask) before the controls that branch from it.
    replicates.sort(key=lambda r: r.cfg.ticket_dir is not None)
    architecture = check_batchable(replicates)
    # Refusals first: nothing is marked batched until the runs are known to be batchable.
    network = _network_for(architecture, replicates[0].recipe, replicates[0].recipe.batches(0)[0])
    names = sorted(r.run.name for r in replicates)
    for r in replicates:
        if started_alone(r.run):
            raise UserError(
                f"{r.run.path} was being trained alone; finish it alone (a run is never continued by another path)"
            )
        # Any batch may continue a batched run: a replicate's results do not depend on its batch-mates.
        atomic_write_json(r.run.path / "batched.json", {"batched": names, "replicates": len(names)})
        # A control whose ticket trains its round 0 in this batch starts once that round is done (round 1).
        starts_later = r.cfg.ticket_dir is not None and not r.run.has_state()
        r.state = None if starts_later else starting_state(r.run, r.recipe, r.cfg)
        provenance.record(r.run.path, r.recipe.device)
        r.tracker = tracker_for(r.run.settings, r.run.path)
    rounds = replicates[0].cfg.rounds
    try:
        for round_index in tqdm(range(rounds + 1), desc=f"{len(replicates)} runs batched", unit="round", disable=quiet):
            if round_index > 0:
                for r in replicates:
                    r.state = r.state or starting_state(r.run, r.recipe, r.cfg)
            todo = [r for r in replicates if r.state is not None and r.state["next_round"] == round_index]
            if todo:
                _batched_round(round_index, todo, network, quiet)
    finally:
        for r in replicates:
            r.tracker.close()
    for r in replicates:
        atomic_write_text(r.run.path / "finished", time.strftime("%Y-%m-%dT%H:%M:%S\n"))


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(tensors).contiguous()


class _Stacked(nn.Module):
    """The R replicates' parameters, each stacked along dimension 0, so a family's make_optimizer applies."""

    def __init__(self, names: list[str], weights: list[dict], device):
        super().__init__()
        self.names = names
        self.stacked = nn.ParameterList([nn.Parameter(_stack([w[n] for w in weights]).to(device)) for n in names])

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stacked, strict=True))


class _DrawnDropout(nn.Module):
    """Dropout whose keep-mask comes from outside the batched forward pass, drawn by the replicate's own
    generator: `x * noise`, where noise is bernoulli(1 - p) / (1 - p), as torch's CPU dropout computes it."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("noise", None, persistent=False)  # given per step through functional_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.noise is None or not self.training else x * self.noise


class _BatchedNetwork:
    """The one network every replicate is called through, built (and compiled) once per process
    (`_network_for`): each replicate's parameters and buffers go in stacked (`functional_call` under `vmap`), and
    its dropout layers multiply by keep-masks drawn outside (`draw`), from each replicate's own generator."""

    def __init__(self, recipe: IMPRecipe, example: torch.Tensor):
        device = torch.device(recipe.device)
        self.model = model = recipe.model_factory().to(device)
        self.parameter_names = [n for n, _ in model.named_parameters()]
        self.buffer_names = [n for n, _ in model.named_buffers()]
        for name, module in list(model.named_modules()):
            if type(module) is nn.Dropout and module.p > 0:
                model.set_submodule(name, _DrawnDropout(module.p))
        # (name, p, shape, dtype) in the order the forward pass calls them
        self.dropout_layers: list[tuple[str, float, torch.Size, torch.dtype]] = []
        hooks = [
            m.register_forward_pre_hook(
                lambda m, args, name=name: self.dropout_layers.append((name, m.p, args[0].shape, args[0].dtype))
            )
            for name, m in model.named_modules()
            if isinstance(m, _DrawnDropout)
        ]
        with torch.no_grad():
            model.train()(example)
        for hook in hooks:
            hook.remove()
        names = [name for name, *_ in self.dropout_layers]
        if len(set(names)) != len(names):
            raise UserError(f"{recipe.arch} calls a dropout layer twice in one pass; train its runs alone")
        self.device = device
        self._refuse_other_randomness(recipe.arch, example)
        self.single = recipe.model_factory().to(device)  # one replicate at a time: evaluation and saving
        self.losses = torch.compile(self._losses, **compile_options(device)) if recipe.compile else self._losses

    def _refuse_other_randomness(self, arch: str, example: torch.Tensor) -> None:
        """Random ops other than nn.Dropout (F.dropout, Dropout2d, ...) would draw across the whole batch."""
        one = {n: t.detach().unsqueeze(0) for n, t in self.model.named_parameters()}
        one |= {n: b.unsqueeze(0) for n, b in self.model.named_buffers()}
        one |= {f"{name}.noise": torch.ones((1, *shape), dtype=dtype, device=self.device)
                for name, _, shape, dtype in self.dropout_layers}  # fmt: skip
        try:
            with torch.no_grad():
                vmap(self._forward, randomness="error")(one, {}, example.unsqueeze(0))
        except RuntimeError as error:
            if "random" not in str(error):
                raise
            raise UserError(f"{arch} draws random numbers other than nn.Dropout's; train its runs alone") from None

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (params, buffers), (x,))

    def _losses(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each replicate's mean cross-entropy on its own batch (x, y stacked over replicates)."""
        logits = vmap(self._forward)(params, buffers, x)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).mean(dim=1)

    def generators(self, seeds: list[int], states: list | None) -> list[torch.Generator]:
        """Dropout generators, seeded per round as a run's global RNG is when trained alone (or restored)."""
        generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in seeds]
        for generator, state in zip(generators, states or [], strict=False):
            if state is not None:  # None: progress written before dropout was batched (no dropout then)
                generator.set_state(state)
        return generators

    def draw(self, generators: list[torch.Generator]) -> dict[str, torch.Tensor]:
        """One step's keep-masks, as the dropout layers' buffers, stacked over replicates; each generator draws
        layer by layer in forward order, as torch's CPU dropout draws when the run trains alone."""
        noises = {}
        for name, p, shape, dtype in self.dropout_layers:
            keep = 1.0 - p
            noises[f"{name}.noise"] = _stack(
                [
                    torch.empty(shape, dtype=dtype, device=self.device).bernoulli_(keep, generator=g).div_(keep)
                    for g in generators
                ]
            )
        return noises


_NETWORKS: dict[tuple, _BatchedNetwork] = {}


def _network_for(architecture: str, recipe: IMPRecipe, example: torch.Tensor) -> _BatchedNetwork:
    """One network per architecture (its description), device and input shape in a process, so a compiled step
    compiles once."""
    key = (architecture, str(recipe.device), recipe.compile, tuple(example.shape))
    if key not in _NETWORKS:
        _NETWORKS.clear()  # one at a time: a process trains one kind of batch after another
        _NETWORKS[key] = _BatchedNetwork(recipe, example)
    return _NETWORKS[key]


def _batched_round(round_index: int, replicates: list[Replicate], network: _BatchedNetwork, quiet: bool) -> None:
    recipe = replicates[0].recipe
    count = len(replicates)
    device = torch.device(recipe.device)
    masks, weights = [], []
    progress = [r.run.load_progress() for r in replicates]
    resumable = all(
        p is not None
        and p["round"] == round_index
        and p.get("batched")
        and p["loop"]["iteration"] == progress[0]["loop"]["iteration"]
        for p in progress
    )
    if not resumable:
        progress = [None] * count
    for r, p in zip(replicates, progress, strict=True):
        if p is not None:
            masks.append(Mask.from_state_dict(p["mask"]))
            weights.append(p["loop"]["model"])
        else:
            mask, start = round_start(r.run, round_index, r.state, r.recipe, r.cfg)
            masks.append(mask)
            weights.append({n: start[n] * mask[n] if n in mask.layers else start[n] for n in start})
    stacked = _Stacked(network.parameter_names, weights, device)
    buffers = {n: _stack([w[n] for w in weights]).to(device) for n in network.buffer_names}  # BatchNorm statistics
    optimizer = recipe.make_optimizer(stacked)
    if resumable:
        optimizer.load_state_dict(_stack_optimizer_states([p["loop"]["optimizer"] for p in progress], optimizer))
    mask_stack = {n: _stack([m[n] for m in masks]).to(device) for n in masks[0].layers}
    dropout_generators = network.generators(
        [derived_seed(transformation_seed(r.cfg), 3, round_index) for r in replicates],
        [p.get("dropout_rng") for p in progress] if resumable else None,
    )
    loss_sums = (_stack([p["loop"]["loss_sum"] for p in progress]) if resumable else torch.zeros(count)).to(device)
    loss_count = progress[0]["loop"]["loss_count"] if resumable else 0
    curves = [list(p["loop"]["curve"]) if p else [] for p in progress]
    captured = [new_captures(p) for p in progress]
    elapsed = [p["elapsed"] if p else 0.0 for p in progress]
    spent = [Reading(p.get("energy_kwh", 0.0), p.get("co2_kg", 0.0)) if p else Reading(0.0, 0.0) for p in progress]
    meter = meter_for(replicates[0].run.settings)
    schedule = dataclasses.replace(
        recipe.schedule, start_iteration=replicates[0].cfg.rewind_iteration if round_index else 0
    )
    meter.start()
    began = time.perf_counter()

    def energy_so_far(final: bool = False) -> list[Reading]:
        lap = meter.stop() if final else meter.lap()
        return [s.add(lap, share=1.0 / count) for s in spent]  # the batch's energy, shared evenly

    def alone(index: int) -> nn.Module:
        """Replicate `index` as a network of its own (the one `network.single`, loaded with its weights)."""
        network.single.load_state_dict(
            {
                **{n: p[index].detach() for n, p in stacked.as_dict().items()},
                **{n: b[index] for n, b in buffers.items()},
            }
        )
        return network.single

    def record(at: int) -> None:
        nonlocal loss_sums, loss_count
        rows = []
        for j, r in enumerate(replicates):  # all evaluated before any is kept: an interrupted evaluation keeps none
            row = {"iteration": at, "train_loss": (loss_sums[j].item() / loss_count) if loss_count else float("nan")}
            rows.append({**row, **r.recipe.evaluate(alone(j))})
        for r, curve, row in zip(replicates, curves, rows, strict=True):
            curve.append(row)
            r.tracker.log_curve(round_index, row)
        loss_sums, loss_count = torch.zeros(count, device=device), 0

    def checkpoint(at: int) -> None:
        states = _split_optimizer_state(optimizer.state_dict(), count)
        wall = (time.perf_counter() - began) / count
        energy = energy_so_far()
        for j, r in enumerate(replicates):
            loop = {"iteration": at, "model": to_cpu(alone(j).state_dict()), "optimizer": states[j],
                    "curve": list(curves[j]), "loss_sum": loss_sums[j].detach().cpu().clone(), "loss_count": loss_count}  # fmt: skip
            r.run.save_progress(
                {
                    "round": round_index,
                    "batched": True,
                    "mask": masks[j].state_dict(),
                    "loop": loop,
                    "dropout_rng": dropout_generators[j].get_state(),
                    **captured[j],
                    "elapsed": elapsed[j] + wall,
                    "energy_kwh": energy[j].energy_kwh,
                    "co2_kg": energy[j].co2_kg,
                }  # fmt: skip
            )

    def before_step(at: int) -> None:
        for j, r in enumerate(replicates):
            capture_weights(round_index, at, r.cfg, captured[j], lambda j=j: to_cpu(alone(j).state_dict()))
        set_learning_rate(optimizer, recipe.lr_at, at)

    def step(at: int) -> None:
        nonlocal loss_sums, loss_count
        batches = [r.recipe.batches(at) for r in replicates]
        x = _stack([b[0] for b in batches])
        y = _stack([b[1] for b in batches])
        network.model.train()
        with autocast_for(device):  # bf16 on a GPU, as a run alone; full precision on a CPU
            losses = network.losses(stacked.as_dict(), {**buffers, **network.draw(dropout_generators)}, x, y)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        with torch.no_grad():
            for name, param in stacked.as_dict().items():
                if name in mask_stack:
                    param.mul_(mask_stack[name])
        loss_sums += losses.detach()
        loss_count += 1

    run_schedule(
        schedule,
        progress[0]["loop"]["iteration"] if resumable else schedule.start_iteration,
        {row["iteration"] for row in curves[0]},
        step,
        record,
        checkpoint,
        before_step,
        resumed_at=progress[0]["loop"]["iteration"] if resumable else None,
        description=f"round {round_index}",
        progress=not quiet,
    )
    wall = (time.perf_counter() - began) / count  # the batch's time, shared evenly
    energy = energy_so_far(final=True)
    for j, r in enumerate(replicates):
        cost = {"wall_time_s": elapsed[j] + wall, **meter.columns(energy[j])}
        if cost["energy_method"] and meter.available:
            cost["energy_method"] += f"; shared evenly by {count} batched runs"
        row = finish_round(round_index, r.run, r.recipe, r.cfg, r.state, masks[j], to_cpu(alone(j).state_dict()),
                           curves[j], cost, captured[j])  # fmt: skip
        r.tracker.log_round(row)


def _split_optimizer_state(state: dict, count: int) -> list[dict]:
    """Per-replicate optimiser states from the stacked one (elementwise state sliced; step counts shared)."""

    def part(value, j):
        return value[j].clone() if torch.is_tensor(value) and value.dim() > 0 else value

    return [
        {
            "state": {i: {key: part(v, j) for key, v in s.items()} for i, s in state["state"].items()},
            "param_groups": state["param_groups"],
        }  # fmt: skip
        for j in range(count)
    ]


def _stack_optimizer_states(states: list[dict], optimizer: torch.optim.Optimizer) -> dict:
    merged = {"param_groups": optimizer.state_dict()["param_groups"], "state": {}}
    for index, first in states[0]["state"].items():
        merged["state"][index] = {
            key: _stack([s["state"][index][key] for s in states]) if torch.is_tensor(v) and v.dim() > 0 else v
            for key, v in first.items()
        }
    return merged


def run_lines_batched(script: str, lines: list[list[str]], quiet: bool = False) -> list:
    """`lth batch`: the runs of an image family's entry script named by `lines` (one list of flags each), trained
    together. Finished runs are skipped; runs started alone earlier are finished alone, saying so; every batched
    run's lease is held throughout."""
    import contextlib

    from lth.arguments import resolve_device
    from lth.experiment import configure_threads, imp_settings_of, seed_everything
    from lth.sweep import load_script

    module = load_script(script)
    run_alone = module.run_one if hasattr(module, "run_one") else module.main
    settings = [module.parse_args(argv) for argv in lines]
    if len({batch_key(s) for s in settings}) > 1:
        raise UserError("the lines differ in more than seed, trial, run type and IMP mode; they cannot share a batch")
    runs = [RunDirectory(s.output_dir, s) for s in settings]
    together, apart = [], []
    for argv, s, run in zip(lines, settings, runs, strict=True):
        if is_finished(run.path):
            print(f"{run.path}: finished earlier; nothing to do")
        elif started_alone(run):
            apart.append((argv, run))
        else:
            together.append((s, run))
    if together:
        configure_threads()
        device = resolve_device(together[0][0].device)
        with contextlib.ExitStack() as stack:
            replicates = []
            for s, run in together:
                stack.enter_context(run)  # the lease before the data loads
                seed_everything(s.seed)
                data = module.load_data(s.data_dir, device, s.seed)
                seed_everything(s.seed)
                extra = {"extra_columns": {"trial": s.trial}} if hasattr(s, "trial") else {}
                cfg = imp_settings_of(s, **extra)
                if hasattr(module, "dense_round_source"):  # VGG: round 0 from train.py's dense run, as alone
                    cfg.initial_state = module.dense_round_source(s, cfg)
                replicates.append(Replicate(run, module.build_recipe(s, data, device), cfg))
            print(f"training {len(replicates)} runs batched on {device}: " + ", ".join(r.run.name for r in replicates))
            run_imp_batched(replicates, quiet=together[0][0].quiet)
    for argv, run in apart:
        print(f"{run.name}: started alone earlier; training it alone", flush=True)
        run_alone(argv)
    return [run.path for run in runs]


def batch_key(settings) -> str:
    """What runs sharing a batch must agree on: every setting but seeds, run type and IMP mode, and where they run."""
    condition = {k: v for k, v in settings.condition().items() if k not in ("run_type", "control_mask", "imp_mode")}
    where = (settings.output_dir, settings.data_dir, settings.device)
    return repr((sorted(condition.items()), where))


SEVERAL = ("--seed", "--trial", "--run_type", "--imp_mode", "--mode")  # flags an entry script takes several of


def several_runs(argv: list[str] | None) -> list[list[str]] | None:
    """An entry script's command line naming several runs at once, e.g. `--trial 0 1 2 --run_type winning_ticket
    random_reinit`, as one command line per run (their cross product); None for a command line of one run."""
    import itertools
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    choices: list[tuple[str, list[str]]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in SEVERAL:
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            choices.append((argv[i - len(values) - 1], values))
        else:
            rest.append(argv[i])
            i += 1
    if all(len(values) <= 1 for _, values in choices):
        return None
    return [
        rest + [item for (flag, _), value in zip(choices, combination, strict=True) for item in (flag, value)]
        for combination in itertools.product(*(values for _, values in choices))
    ]


def main_or_batch(script: str, argv: list[str] | None, main) -> None:
    """Entry scripts: several runs named at once (e.g. `--trial 0 1 2`) train one after another on a CPU, where
    batching does not pay (benchmarks/results/batched_cpu.txt: 0.77x), and batched on a GPU; `--batch` batches them
    on a CPU too. One run goes to the script's own main. One line says which was chosen and why."""
    import sys

    from lth.arguments import resolve_device
    from lth.settings import CONTROL_RUN_TYPES

    argv = list(sys.argv[1:] if argv is None else argv)
    asked = "--batch" in argv
    argv = [arg for arg in argv if arg != "--batch"]
    lines = several_runs(argv)
    if lines is None:
        return main(argv)
    device = resolve_device(argv[argv.index("--device") + 1] if "--device" in argv[:-1] else "auto")
    if asked or device != "cpu":
        reason = "as --batch asks" if asked else f"on {device}, where one stacked step trains them all"
        print(f"{len(lines)} runs named: training them batched, {reason}", flush=True)
        return run_lines_batched(script, lines)
    print(
        f"{len(lines)} runs named: training them one after another on the CPU, where batching is slower "
        "(add --batch to batch them anyway)",
        flush=True,
    )
    # Winning tickets before the controls that branch from them.
    lines.sort(key=lambda line: _named_run_type(line) in CONTROL_RUN_TYPES)
    for line in lines:
        main(line)


def _named_run_type(argv: list[str]) -> str | None:
    return argv[argv.index("--run_type") + 1] if "--run_type" in argv[:-1] else None
