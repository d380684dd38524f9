"""Instability analysis: the barrier of identical copies is 0, the path's ends are the trained networks, masks
hold at every point, and the command runs end to end on a family's run."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, require_data, tiny_mnist
from imp_fixtures import DIGITS, digits_recipe

from lth.demo import DigitsMLP
from lth.masks import Mask
from lth.rewinding import to_cpu
from lth.stability import barrier, evaluate_point, linear_path, train_child, train_parent


def setup(k: int = 10):
    recipe = digits_recipe(iterations=40, eval_every=40)
    torch.manual_seed(0)
    init = to_cpu(DigitsMLP().state_dict())
    generator = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(p.shape, generator=generator) < 0.6 for n, p in init.items() if n.endswith("weight")})
    parent, optimizer_state = train_parent(recipe, init, k, "cpu")
    return recipe, mask, parent, optimizer_state


def test_identical_copies_have_no_barrier():
    recipe, mask, parent, state = setup()
    torch.manual_seed(5)
    a = train_child(recipe, parent, state, mask, 10, "cpu")
    torch.manual_seed(5)
    b = train_child(recipe, parent, state, mask, 10, "cpu")
    rows = linear_path(recipe, a, b, mask, 11, DIGITS.train_x, DIGITS.train_y, 10, "cpu")
    assert len(rows) == 11 and all(barrier(rows, split) == 0 for split in ("train", "val", "test"))


def test_path_ends_reproduce_the_trained_networks_and_masks_hold_everywhere():
    recipe, mask, parent, state = setup()
    other = digits_recipe(iterations=40, eval_every=40)
    other.batches.seed = 99  # another data order: SGD noise
    a = train_child(recipe, parent, state, mask, 10, "cpu")
    b = train_child(other, parent, state, mask, 10, "cpu")
    rows = linear_path(recipe, a, b, mask, 11, DIGITS.train_x, DIGITS.train_y, 10, "cpu")
    for weights, row in ((a, rows[0]), (b, rows[-1])):
        model = DigitsMLP()
        model.load_state_dict(weights)
        expected = evaluate_point(model, recipe, DIGITS.train_x, DIGITS.train_y)
        assert {key: row[key] for key in expected} == expected, "exactly the trained network's errors"
    for weights in (a, b):
        for name, keep in mask.layers.items():
            assert (weights[name][~keep] == 0).all()
    from lth.stability import interpolate

    for alpha in (0.3, 0.7):
        point = interpolate(a, b, alpha)
        assert all((point[n][~keep] == 0).all() for n, keep in mask.layers.items()), "masks hold along the path"
    assert not torch.equal(a["layers.1.weight"], b["layers.1.weight"]), "two different copies"


@pytest.mark.slow
def test_stability_command_on_a_lenet_run(tmp_path):
    from lth.cli import main as lth

    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    flags = f"--trial 0 --iterations 120 --eval_every 60 --rounds 1 --output_dir {tmp_path / 'runs'} --data_dir {tmp_path / 'data'}"
    lth(["stability", str(REPO / "Lenet-300-100" / "main.py"), "--run", flags, "--k", "0", "30", "--points", "3"])
    (target,) = (tmp_path / "runs" / "stability").iterdir()
    assert (target / "barriers.csv").read_text().count("\n") == 3
    assert (target / "path_k30.csv").read_text().count("\n") == 4
    assert (target / "instability.png").stat().st_size > 1000
    before = (target / "path_k0.csv").read_bytes()
    lth(["stability", str(REPO / "Lenet-300-100" / "main.py"), "--run", flags, "--k", "0", "30", "--points", "3"])
    assert (target / "path_k0.csv").read_bytes() == before, "a finished k is not recomputed"
