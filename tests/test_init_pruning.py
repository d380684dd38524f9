"""Pruning at initialization: each score against its paper's definition on a tiny network, exact counts as for
magnitude, the ablations, and separate seeds for the sources of randomness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import family_module
from imp_fixtures import DIGITS, FixtureSettings, digits_recipe
from torch import nn

from lth.batches import ShuffledBatches
from lth.demo import DigitsMLP
from lth.imp import IMPSettings, run_imp
from lth.init_pruning import PruneAtInit, grasp_scores, prune_at_init, snip_scores, synflow_scores
from lth.masks import Mask
from lth.pruning import LayerwisePruning, conv_fc_rates
from lth.results import RunDirectory
from lth.settings import PAI_METHODS
from lth.training import classification_loss


def test_synflow_scores_are_conserved_layer_to_layer_on_a_linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)
    )
    mask = Mask.dense(net)
    scores = synflow_scores(net, mask, (6,))
    with torch.no_grad():  # R: the |w| network's output sum on an all-ones input
        r = torch.ones(1, 6, dtype=torch.float64)
        for layer in (0, 2, 3):
            r = r @ net[layer].weight.double().abs().T
        total = float(r.sum())
    for name in mask:
        assert float(scores[name].double().sum()) == pytest.approx(total, rel=1e-6), name


def test_snip_scores_equal_gradient_times_weight_computed_by_hand():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    scores = snip_scores(layer, Mask({"weight": torch.ones(3, 4, dtype=torch.bool)}), [(x, y)], classification_loss)
    probabilities = torch.softmax(x @ layer.weight.detach().T, dim=1)
    gradient = (probabilities - F.one_hot(y, 3).float()).T @ x / len(x)  # d mean-CE / dW
    assert torch.allclose(scores["weight"], (gradient * layer.weight.detach()).abs(), atol=1e-6)


def test_grasp_scores_are_weight_times_hessian_gradient_product():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2, bias=False)
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    scores = grasp_scores(layer, Mask({"weight": torch.ones(2, 3, dtype=torch.bool)}), [(x, y)])
    w0 = layer.weight.detach().clone()

    def loss(flat):
        return F.cross_entropy(x @ flat.view(2, 3).T / 200.0, y)

    flat = w0.reshape(-1)
    g = torch.autograd.functional.jacobian(loss, flat)
    h = torch.autograd.functional.hessian(loss, flat)
    assert torch.allclose(scores["weight"].reshape(-1), flat * (h @ g), rtol=1e-4, atol=1e-12)


def digits_policy():
    return LayerwisePruning(conv_fc_rates(DigitsMLP(), 0.0, 0.2))


@pytest.mark.parametrize("method", PAI_METHODS)
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_every_method_prunes_exactly_to_the_target_of_imp_round_r(method, scope):
    torch.manual_seed(0)
    model = DigitsMLP()
    dense = Mask.dense(model)
    policy = digits_policy()
    batches = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 32, seed=0)
    spec = PruneAtInit(method, round=5, scope=scope, synflow_iterations=10)
    mask = prune_at_init(spec, model, dense, policy, batches, classification_loss, torch.Generator().manual_seed(0))
    expected = policy.kept_counts(dense, rounds=5)
    assert mask.kept() == sum(expected.values())
    if scope == "layerwise":
        assert mask.kept_counts() == expected
    if method == "magnitude_init":
        assert mask.equals(policy.prune({n: p.detach().abs() for n, p in model.named_parameters() if n in dense},
                                        dense, rounds=5)) or scope == "global"  # fmt: skip


def test_shuffle_keeps_each_layers_count_and_reinit_keeps_the_mask_with_fresh_weights(tmp_path):
    def run(ablation):
        cfg = IMPSettings(rounds=0, seed=3, prune_at_init=PruneAtInit("snip", round=4, ablation=ablation))
        with RunDirectory(tmp_path / ablation, FixtureSettings(name=ablation)) as run:
            run_imp(run, digits_recipe(iterations=20, eval_every=20), cfg, quiet=True)
            return run.load_state()

    plain, shuffled, fresh = run("none"), run("shuffle"), run("reinit")
    a, b, c = (Mask.from_state_dict(s["mask"]) for s in (plain, shuffled, fresh))
    assert a.kept_counts() == b.kept_counts() and not a.equals(b)
    assert a.equals(c)
    assert not torch.equal(plain["init"]["layers.1.weight"], fresh["init"]["layers.1.weight"])
    assert torch.equal(plain["init"]["layers.1.weight"], shuffled["init"]["layers.1.weight"])
    trained = plain["trained"]["layers.1.weight"]
    assert (trained[~a["layers.1.weight"]] == 0).all(), "the PAI mask holds through training"
    assert plain["rows"][0]["weights_remaining_pct"] == pytest.approx(100 * a.kept() / a.total())


def test_pai_is_a_run_type_of_each_image_family_with_its_own_name():
    for folder, cls in (("Lenet-300-100", "LenetSettings"), ("CNN", "ConvSettings"), ("VGG", "VGGSettings")):
        settings = getattr(family_module(folder, "settings"), cls)
        pai = settings.from_argv(["--pai_method", "synflow", "--pai_round", "7", "--pai_ablation", "shuffle"])
        assert pai.rounds == 0 and "pai-synflow-r7-global-shuffle" in pai.run_name()
        assert pai.run_name() != settings.from_argv(["--pai_method", "synflow", "--pai_round", "7"]).run_name()


def test_separate_seeds_change_only_their_source_and_default_to_seed():
    batches = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 16, seed=1, augment=lambda x, g: x + torch.rand(
        x.shape, generator=g))  # fmt: skip
    same_order = ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 16, seed=1, augment=batches.augment, augment_seed=9)
    assert torch.equal(batches(5)[1], same_order(5)[1]), "the same data order"
    assert not torch.equal(batches(5)[0], same_order(5)[0]), "another augmentation"
    lenet = family_module("Lenet-300-100", "settings").LenetSettings
    assert lenet.from_argv(["--data_order_seed", "42"]).run_name().startswith(lenet().run_name() + "_h")
    assert lenet.from_argv(["--init_seed", "3"]).condition() == lenet().condition(), "seeds are trials of one condition"
