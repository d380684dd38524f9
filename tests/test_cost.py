"""`lth cost` (lth/cost.py): ShrinkBench's counts checked by hand on a small model, bytes on disk, and dense against
sparse latency that computes the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lth.cost import cost_report, count, format_report, image_inputs, is_two_four, with_sparse_linears
from lth.masks import Mask


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)  # 5x5 input -> 3x3 output
        self.fc = nn.Linear(18, 4)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def small_with_mask():
    torch.manual_seed(0)
    model = Small()
    keep_fc = torch.zeros(4, 18, dtype=torch.bool)
    keep_fc[:, :9] = True  # 36 of 72 kept
    keep_conv = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    keep_conv[0] = False  # 9 of 18 kept
    mask = Mask({"conv.weight": keep_conv, "fc.weight": keep_fc})
    mask.apply(model)
    return model, mask


def test_counts_match_shrinkbench_by_hand():
    model, mask = small_with_mask()
    layers, total = count(model, mask, torch.rand(3, 1, 5, 5))
    conv, fc = layers
    assert (conv["size"], conv["size_nz"], conv["flops"], conv["flops_nz"]) == (20, 11, 9 * 18, 9 * 9)
    assert (fc["size"], fc["size_nz"], fc["flops"], fc["flops_nz"]) == (76, 40, 72, 36)
    assert fc["bytes_fp32"] == 4 * 76 and fc["bytes_fp16"] == 2 * 76
    assert fc["bytes_bitmask"] == 9 + 4 * 36 + 4 * 4  # 72 bits, the kept values, the dense bias
    assert fc["bytes_csr"] == 8 * 36 + 4 * 5 + 4 * 4  # values + int32 column indices, row pointers, bias
    assert total["size"] == 96 and total["size_nz"] == 51 and total["flops"] == 162 + 72
    assert total["weights_remaining_pct"] == pytest.approx(100 * 45 / 90)


def test_sparse_linears_compute_what_the_dense_model_does_and_latency_is_reported_as_measured():
    model, mask = small_with_mask()
    sparse = with_sparse_linears(model, mask)
    assert sparse.fc.weight.layout == torch.sparse_csr and isinstance(sparse.conv, nn.Conv2d)
    x = torch.rand(7, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(sparse(x), model(x), atol=1e-6)
    report = cost_report(model, mask, image_inputs((1, 5, 5)), batch_sizes=(1, 4), threads=[1], min_run_time=0.01)
    assert [(r["threads"], r["batch"]) for r in report["latency"]] == [(1, 1), (1, 4)]
    for row in report["latency"]:
        assert row["speedup"] == pytest.approx(row["dense_ms"] / row["sparse_csr_ms"])
    text = format_report(report, "small")
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["cpu"] in text
    assert ("SLOWER" in text) or ("faster" in text)
    if not torch.cuda.is_available():
        assert "no CUDA device" in report["semi_structured_2to4"]["skipped"]


def test_two_four_masks_are_recognised():
    two_four = torch.tensor([[1, 1, 0, 0, 0, 1, 0, 1]], dtype=torch.bool)
    three = torch.tensor([[1, 1, 1, 0, 0, 1, 0, 1]], dtype=torch.bool)
    assert is_two_four(Mask({"w": two_four}), ["w"]) and not is_two_four(Mask({"w": three}), ["w"])
