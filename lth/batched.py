"""Several IMP runs of one architecture and recipe trained together in one batched step.

A Lottery Ticket study is many small, identical trainings that differ only in seed (trial), run type and IMP
mode. Here R of them share each optimiser step: their parameters are stacked along a new first dimension, one
forward pass evaluates all R networks (`torch.func.vmap` over `functional_call`), each on its own batch (its own
validation split, data order and augmentation), and the sum of their R mean losses is differentiated, so each
replicate's gradient is exactly its own loss's. The optimisers used here (Adam, SGD with momentum and weight
decay) are elementwise, so stacked parameters train as separate ones would.

`StackedNetworks` is the round engine (lth.engine) of the one IMP driver (`lth.imp.run_replicates`): the driver
does what a run alone does around it (masks, pruning, rewinding and the controls per replicate, start state,
resume, cost, progress records, rows, the finished and failed marks); evaluation runs each replicate alone, and
every run keeps its own run directory, CSVs and state; `batched.json` beside them says how it was trained. A run is
never resumed by the other engine: progress or state written batched is refused alone, and the other way round.

BatchNorm: each replicate keeps running statistics of its own (its buffers are stacked like its parameters and
updated inside the batched forward pass). Dropout: each replicate draws its masks from a generator of its own,
seeded and consumed as its run's global RNG is when trained alone, so on a CPU the masks are the ones it would
draw alone and never depend on its batch-mates (on a GPU torch's fused dropout kernel draws other numbers from
the same distribution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from lth.engine import RoundHooks, RoundStart, TrainedRound
from lth.errors import UserError
from lth.imp import IMPRecipe, Replicate, run_replicates
from lth.rewinding import to_cpu
from lth.training import autocast_for, compile_options, run_schedule, set_learning_rate

__all__ = ["Replicate", "StackedNetworks", "check_batchable", "run_imp_batched"]


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


def run_imp_batched(replicates: list[Replicate], quiet: bool = False) -> None:
    """Run (or resume) IMP for several runs together (the driver with the stacked engine)."""
    run_replicates(replicates, StackedNetworks(), quiet)


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
        if device.type == "cuda":  # as a run alone; the stacked 5-D training tensors have no channels-last layout
            self.single = self.single.to(memory_format=torch.channels_last)
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


class StackedNetworks:
    """The round engine of R runs trained together: one stacked step trains them all (see the module's text)."""

    batched = True

    def __init__(self) -> None:
        self.network: _BatchedNetwork | None = None

    def prepare(self, replicates: list[Replicate]) -> None:
        architecture = check_batchable(replicates)
        recipe = replicates[0].recipe
        self.network = _network_for(architecture, recipe, recipe.batches(0)[0])

    def train(
        self, round_index: int, replicates: list[Replicate], starts: list[RoundStart], hooks: RoundHooks
    ) -> list[TrainedRound]:
        network = self.network
        recipe = replicates[0].recipe
        count = len(replicates)
        device = torch.device(recipe.device)
        resumed = starts[0].resume is not None  # the driver resumes every replicate of a round or none
        loops = [s.resume["loop"] for s in starts] if resumed else None
        weights = (
            [loop["model"] for loop in loops]
            if resumed
            else [
                {n: s.weights[n] * s.mask[n] if n in s.mask.layers else s.weights[n] for n in s.weights} for s in starts
            ]  # fmt: skip
        )
        stacked = _Stacked(network.parameter_names, weights, device)
        buffers = {n: _stack([w[n] for w in weights]).to(device) for n in network.buffer_names}  # BatchNorm's
        optimizer = recipe.make_optimizer(stacked)
        if resumed:
            optimizer.load_state_dict(_stack_optimizer_states([loop["optimizer"] for loop in loops], optimizer))
        mask_stack = {n: _stack([s.mask[n] for s in starts]).to(device) for n in starts[0].mask.layers}
        dropout_generators = network.generators(
            [s.dropout_seed for s in starts], [s.resume.get("dropout_rng") for s in starts] if resumed else None
        )
        loss_sums = (_stack([loop["loss_sum"] for loop in loops]) if resumed else torch.zeros(count)).to(device)
        loss_count = loops[0]["loss_count"] if resumed else 0
        curves = [list(loop["curve"]) for loop in loops] if resumed else [[] for _ in starts]

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
            for j, r in enumerate(replicates):  # all evaluated before any is kept: an interrupted one keeps none
                row = {
                    "iteration": at,
                    "train_loss": (loss_sums[j].item() / loss_count) if loss_count else float("nan"),
                }
                rows.append({**row, **r.recipe.evaluate(alone(j))})
            for j, (curve, row) in enumerate(zip(curves, rows, strict=True)):
                curve.append(row)
                hooks.evaluated(j, row)
            loss_sums, loss_count = torch.zeros(count, device=device), 0

        def checkpoint(at: int) -> None:
            states = _split_optimizer_state(optimizer.state_dict(), count)
            hooks.checkpoint(
                [
                    {
                        "loop": {
                            "iteration": at,
                            "model": to_cpu(alone(j).state_dict()),
                            "optimizer": states[j],
                            "curve": list(curves[j]),
                            "loss_sum": loss_sums[j].detach().cpu().clone(),
                            "loss_count": loss_count,
                        },  # fmt: skip
                        "dropout_rng": dropout_generators[j].get_state(),
                    }
                    for j in range(count)
                ]
            )

        def before_step(at: int) -> None:
            for j in range(count):
                hooks.capture(j, at, lambda j=j: to_cpu(alone(j).state_dict()))
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

        start = loops[0]["iteration"] if resumed else hooks.schedule.start_iteration
        run_schedule(
            hooks.schedule,
            start,
            {row["iteration"] for row in curves[0]},
            step,
            record,
            checkpoint,
            before_step,
            resumed_at=start if resumed else None,
            description=hooks.description,
            progress=hooks.progress,
        )
        return [TrainedRound(curves[j], to_cpu(alone(j).state_dict())) for j in range(count)]


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
