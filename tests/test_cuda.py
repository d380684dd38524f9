"""The CUDA paths (bf16 autocast, channels-last convs, data kept on the GPU) keep the LTH semantics:
exact sparsity per round, pruned weights exactly zero after training, survivors rewound exactly.
Skipped where no GPU is present (CI); run them on a GPU machine with `pytest tests/test_cuda.py`."""

from __future__ import annotations

import pytest
import torch
from conftest import family_module
from test_bert_imp import pretrained, tiny_args
from test_bert_support import bert_module, tiny_glue, tiny_model  # noqa: F401

from lth.datasets import ImageData, random_images
from lth.imp import IMPSettings, policy_for, run_imp
from lth.masks import Mask
from lth.results import RunDirectory

DEVICE = "cuda"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def synthetic_images(shape: tuple[int, ...]) -> ImageData:
    return random_images(shape, (256, 64, 64), DEVICE)


def check_masks_hold(state: dict, names: list[str]) -> Mask:
    mask = Mask.from_state_dict(state["mask"])
    for name in names:
        keep = mask[name].to(state["trained"][name].device)
        assert torch.count_nonzero(state["trained"][name][~keep]) == 0, name  # pruned stay exactly zero
        assert torch.count_nonzero(state["trained"][name][keep]) > 0.99 * keep.sum(), name  # survivors trained
    return mask


FAMILIES = {
    # folder: (image shape, flags for a few-second run)
    "Lenet-300-100": ((1, 28, 28), ["--iterations", "40", "--eval_every", "20"]),
    "CNN": ((3, 32, 32), ["--arch", "Conv-2", "--iterations", "40", "--eval_every", "20"]),
    "VGG": ((3, 32, 32), ["--width", "0.125", "--train_iterations", "40", "--eval_every", "20", "--bs", "16"]),
}


@pytest.mark.parametrize("folder", FAMILIES)
def test_image_families_prune_exactly_on_cuda(folder, tmp_path):
    shape, flags = FAMILIES[folder]
    main = family_module(folder, "main")
    trainer = family_module(folder, "trainer")
    args = main.parse_args([*flags, "--output_dir", str(tmp_path)])
    recipe = trainer.build_recipe(args, synthetic_images(shape), DEVICE)
    with RunDirectory(tmp_path, args) as run:
        torch.manual_seed(0)
        rows = run_imp(run, recipe, IMPSettings(rounds=2, seed=0), quiet=True)
        state = run.load_state()
    names = list(Mask.from_state_dict(state["mask"]).layers)
    mask = check_masks_hold(state, names)
    # The counts are the ones the policy gives on CPU: per layer (layer-wise) or in total (VGG's global).
    model = recipe.model_factory()
    expected = Mask.dense(model, names)
    for _ in range(2):
        scores = {n: torch.rand(p.shape) for n, p in model.named_parameters() if n in names}
        expected = policy_for(recipe, expected).prune(scores, expected)
    assert mask.kept() == expected.kept()
    if folder != "VGG":
        assert mask.kept_counts() == expected.kept_counts()
    assert float(rows[-1]["weights_remaining_pct"]) == pytest.approx(100 * mask.kept() / mask.total(), abs=1e-3)
    for key in ("val_accuracy", "test_accuracy_early_stop"):
        assert 0 <= float(rows[-1][key]) <= 100


def test_bert_rewinds_exactly_and_masks_hold_under_bf16_autocast(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    lth, args = tiny_args(tiny_model, tiny_glue, tmp_path, "--sparsity", "0.2", "--weight_decay", "0.1")
    reference = pretrained(tiny_model, seed=args.seed).state_dict()
    data = bert_module("data").load_task_data(
        "sst2", bert_module("model").load_tokenizer(str(tiny_model)), str(tiny_glue), seed=args.seed, device=DEVICE
    )
    factory = bert_module("model").classifier_factory(str(tiny_model))
    recipe = bert_module("trainer").build_recipe(args, data, DEVICE, factory)
    with RunDirectory(tmp_path, args) as run:
        rows = run_imp(run, recipe, IMPSettings(rounds=2, seed=args.seed), quiet=True)
        state = run.load_state()
    mask = check_masks_hold(state, recipe.prunable_names)
    assert mask.total() - mask.kept() == int(0.2 * mask.total() + 0.5)
    for name, weight in state["init"].items():  # the rewind point is the pre-trained model, bit for bit
        assert torch.equal(weight.cpu(), reference[name]), name
    for name in recipe.prunable_names:
        keep = mask[name].cpu()
        assert not torch.equal(state["trained"][name].cpu()[keep], reference[name][keep])  # survivors trained
    assert 0 <= float(rows[-1]["dev_accuracy"]) <= 100


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_batched_and_compiled_runs_keep_the_semantics_on_cuda(tmp_path, compile):
    """Conv-2 with dropout: two seeds trained batched (and, compiled, as CUDA graphs) and each alone: masks hold,
    every run's sparsity is the exact count, and the batched runs' dense round ends near the runs alone (bf16)."""
    from lth.batched import Replicate, run_imp_batched

    main = family_module("CNN", "main")
    trainer = family_module("CNN", "trainer")
    data = synthetic_images((3, 32, 32))
    flags = ["--arch", "Conv-2", "--dropout_rate", "0.5", "--iterations", "40", "--eval_every", "20"]
    flags += ["--compile"] if compile else []
    replicates, alone = [], []
    for seed in (1, 2):
        args = main.parse_args([*flags, "--seed", str(seed), "--output_dir", str(tmp_path / "batched")])
        replicates.append(Replicate(RunDirectory(tmp_path / "batched", args).open(),
                                    trainer.build_recipe(args, data, DEVICE), IMPSettings(rounds=2, seed=seed)))  # fmt: skip
        args = main.parse_args([*flags, "--seed", str(seed), "--output_dir", str(tmp_path / "alone")])
        with RunDirectory(tmp_path / "alone", args) as run:
            run_imp(run, trainer.build_recipe(args, data, DEVICE), IMPSettings(rounds=2, seed=seed), quiet=True)
            alone.append(run.load_state())
    try:
        run_imp_batched(replicates, quiet=True)
    finally:
        for r in replicates:
            r.run.close()
    for r, reference in zip(replicates, alone, strict=True):
        state = r.run.load_state()
        names = list(Mask.from_state_dict(state["mask"]).layers)
        mask = check_masks_hold(state, names)
        assert mask.kept_counts() == check_masks_hold(reference, names).kept_counts()
        dense, dense_alone = state["rows"][0], reference["rows"][0]
        assert float(dense["val_loss"]) == pytest.approx(float(dense_alone["val_loss"]), rel=0.1)
