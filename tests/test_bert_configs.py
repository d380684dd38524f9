"""BERT sweeps and figures: config files name what the runs write, scripts are sized to them, plots draw."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch
from test_bert_support import BERT_DIR, bert_module, tiny_glue, tiny_lth_argv, tiny_model  # noqa: F401

from lth.sweep import read_config


def test_fewshot_configs_name_files_the_lth_runs_write():
    lth = bert_module("lottery_ticket_bert")
    fewshot = bert_module("few_shot_training")
    lth_lines = read_config(BERT_DIR / "configs_bert.txt")
    assert len(lth_lines) == 6
    written = set()
    for line in lth_lines:
        args = lth.parse_args(line.argv)
        for sparsity in (0.0, args.sparsity):
            written.add(args.ticket_path(sparsity).relative_to(BERT_DIR).as_posix())
    seeds = {lth.parse_args(line.argv).seed for line in lth_lines}
    ensembles = {f"models/ensemble_ticket_sst2_qqp_union_seed{s}.safetensors" for s in seeds}
    lines = read_config(BERT_DIR / "few_shot_configs.txt")
    assert len(lines) == 36
    combos = set()
    for line in lines:
        args = fewshot.parse_args(line.argv)
        assert args.checkpoint in written | ensembles, args.checkpoint
        combos.add((args.checkpoint, args.target, args.finetune, args.seed))
    assert len(combos) == 36  # 6 sources x 3 seeds x 2 modes, no duplicates
    assert ensembles <= {c[0] for c in combos}
    run_fewshot = (BERT_DIR / "run_fewshot.sh").read_text()
    for seed in seeds:  # the ensembles the script creates are the ones the configs name
        assert "ensemble_ticket_sst2_qqp_union_seed${seed}.safetensors" in run_fewshot and str(seed) in run_fewshot


def test_run_scripts_are_sized_to_their_config_files():
    for script, config in (("run_lth_bert.sh", "configs_bert.txt"), ("run_fewshot.sh", "few_shot_configs.txt")):
        text = (BERT_DIR / script).read_text()
        count = len(read_config(BERT_DIR / config))
        assert re.search(rf'#BSUB -J "\w+\[1-{count}\]', text), script
        assert f"#SBATCH --array=1-{count}" in text, script
        assert f'CONFIG="${{LTH_CONFIG:-{config}}}"' in text and 'lth sweep "$CONFIG"' in text, script


def test_plotter_draws_every_figure(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    lth = bert_module("lottery_ticket_bert")
    for task, sparsity in (("sst2", "0.2"), ("qqp", "0.3")):
        lth.main(
            tiny_lth_argv(
                tiny_model, tiny_glue, tmp_path, "--task", task, "--sparsity", sparsity, "--prune_rate", "0.15"
            )
        )
    tickets = sorted((tmp_path / "models").glob("lottery_ticket_*.safetensors"))
    transfer = tmp_path / "transfer.csv"
    rows = [
        {
            "source": f"lottery_ticket_{s}_sparsity60_seed{seed}",
            "source_kind": "ticket",
            "source_task": s,
            "source_sparsity_pct": 60.0,
            "target": t,
            "mode": m,
            "dev_accuracy": 50 + seed % 7,
            "dev_f1": 40.0 if t == "qqp" else None,
        }
        for s, t in (("sst2", "qqp"), ("qqp", "sst2"))
        for m in ("headonly", "full")
        for seed in (42, 123)
    ]
    pd.DataFrame(rows).to_csv(transfer, index=False)
    plotter = bert_module("plotter")
    written = plotter.main(
        [
            "--results_dir",
            str(tmp_path / "runs"),
            "--transfer_csv",
            str(transfer),
            "--tickets",
            *map(str, tickets),
            "--save_dir",
            str(tmp_path / "figures"),
        ]
    )
    names = {Path(p).name for p in written}
    assert {"bert_dev_metric_vs_sparsity.png", "bert_fewshot_transfer_accuracy.png", "ticket_jaccard.png"} <= names
    assert any(n.startswith("layer_sparsity_lottery_ticket_sst2_") and "_sparsity20_" in n for n in names), names
    assert all(Path(p).stat().st_size > 1000 for p in written)
    grid, rows_, columns = plotter.layer_grid(plotter.load_ticket(tickets[-1]))
    assert grid.shape == (3, 6) and rows_[-1] == "pooler" and not torch.isnan(torch.tensor(grid[:2])).any()


def test_keep_pooler_runs_and_tickets_are_never_averaged_with_the_others():
    plotter = bert_module("plotter")
    row = {"source_kind": "ticket", "source_task": "sst2", "source_sparsity_pct": 60.0}
    plain = plotter.source_label({**row, "source": "lottery_ticket_sst2_sparsity60_seed42"})
    kept = plotter.source_label({**row, "source": "lottery_ticket_sst2_sparsity60_seed42_keep-pooler"})
    assert plain == "sst2 ticket 60%" and kept == "sst2 ticket 60% (pooler kept)"
    assert plotter.pooler_note("bert-sst2_minilm_sparsity60_rewind-pretrained_subset4000_keep-pooler_seed42")
    assert not plotter.pooler_note("bert-sst2_minilm_sparsity60_rewind-pretrained_subset4000_seed42")


def test_ticket_overlap_compares_keep_pooler_tickets_on_the_encoder():
    import torch

    from lth.masks import Mask

    plotter = bert_module("plotter")
    encoder = torch.tensor([True, True, False, False])
    full = Mask({"encoder.w": encoder, "pooler.dense.weight": torch.tensor([False, False])})
    kept = Mask({"encoder.w": torch.tensor([True, False, True, False])})
    assert abs(plotter.shared_jaccard(full, kept) - 1 / 3) < 1e-12
