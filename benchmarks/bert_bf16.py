"""Does bf16 autocast pay for BERT fine-tuning on this CPU? Step time and accuracy, fp32 against bf16, in one run.

    OMP_NUM_THREADS=1 python benchmarks/bert_bf16.py                 # MiniLM, real SST-2, one thread
    python benchmarks/bert_bf16.py --timing_steps 40 --subset 4000 --seeds 1 2 3 --out benchmarks/results/bert-bf16

Speed: the toolkit's own training step (lth.training.train_round: length-grouped dynamic padding, fused AdamW,
the mask enforcer) on real SST-2 batches, the two precisions timed in alternation (fp32, bf16, fp32, bf16) so that
a change in the machine's load falls on both. Accuracy: a short fine-tuning run per seed and precision (a seeded
subset of SST-2's training set, one epoch, the round recipe of BERT/trainer.py), scored on the full dev set in fp32;
bf16 counts as harmless when the two means differ by less than the seeds' spread.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # lth, where the repository is not installed
from bert_padding import toolkit  # noqa: E402  (the same timed training step as the padding benchmark)

from lth.families import family_module  # noqa: E402

load_task_data = family_module(REPO / "BERT", "data").load_task_data
classifier_factory = family_module(REPO / "BERT", "model").classifier_factory
load_tokenizer = family_module(REPO / "BERT", "model").load_tokenizer
text_evaluator = family_module(REPO / "BERT", "trainer").text_evaluator


def fine_tune(data, factory, precision: str, steps: int, lr: float, seed: int, evaluate=None) -> tuple[float, dict]:
    """Seconds for `steps` training steps from the pre-trained weights at `precision`, and the dev metrics."""
    torch.manual_seed(seed)
    model = factory()
    seconds = toolkit(model, data, steps, 32, lr, seed, "cpu", precision, progress=False)
    return seconds, (evaluate(model) if evaluate else {})


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", default="minilm")
    parser.add_argument("--timing_steps", type=int, default=40, help="training steps per timing (after a warm-up)")
    parser.add_argument("--timing_repeats", type=int, default=2, help="alternations of fp32 and bf16 timings")
    parser.add_argument("--subset", type=int, default=4000, help="training examples of each accuracy run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the short accuracy runs")
    parser.add_argument("--data_dir", default=None, help="data root with glue/SST-2 (default: $LTH_DATA_DIR)")
    parser.add_argument("--out", default=None, help="folder for results.json (default: print only)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or os.environ.get("LTH_DATA_DIR") or str(REPO.parent / "shared" / "data")
    tokenizer = load_tokenizer(args.model_name_or_path)
    factory = classifier_factory(args.model_name_or_path)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    bf16_native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"torch {torch.__version__}; {machine}; oneDNN bf16 supported: {bf16_native}")

    full = load_task_data("sst2", tokenizer, data_dir)
    fine_tune(full, factory, "fp32", 3, args.lr, 0)  # first-call costs out of the timings
    fine_tune(full, factory, "bf16", 3, args.lr, 0)
    step_ms = {"fp32": [], "bf16": []}
    for _ in range(args.timing_repeats):
        for precision in step_ms:
            seconds, _ = fine_tune(full, factory, precision, args.timing_steps, args.lr, 0)
            step_ms[precision].append(1000 * seconds / args.timing_steps)
            print(f"{precision}: {step_ms[precision][-1]:.0f} ms a step of 32 (SST-2 train, length-grouped)")
    speedup = statistics.median(step_ms["fp32"]) / statistics.median(step_ms["bf16"])
    print(f"bf16 step time: {speedup:.2f}x the speed of fp32")

    accuracy = {"fp32": [], "bf16": []}
    for seed in args.seeds:
        data = load_task_data("sst2", tokenizer, data_dir, train_size=args.subset, seed=seed)
        steps = -(-len(data.train) // 32)
        for precision in accuracy:
            _, metrics = fine_tune(data, factory, precision, steps, args.lr, seed, text_evaluator(data))
            accuracy[precision].append(metrics["dev_accuracy"])
            print(f"seed {seed} {precision}: dev accuracy {metrics['dev_accuracy']:.2f}% after {steps} steps")
    summary = {
        precision: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0}
        for precision, v in accuracy.items()
    }
    gap = abs(summary["bf16"]["mean"] - summary["fp32"]["mean"])
    spread = max(summary["fp32"]["std"], summary["bf16"]["std"])
    print(
        f"dev accuracy fp32 {summary['fp32']['mean']:.2f} +- {summary['fp32']['std']:.2f}, "
        f"bf16 {summary['bf16']['mean']:.2f} +- {summary['bf16']['std']:.2f}: gap {gap:.2f} points, "
        f"{'within' if gap <= spread else 'beyond'} the seeds' spread ({spread:.2f})"
    )
    result = {
        "machine": machine,
        "torch": torch.__version__,
        "bf16_native": bool(bf16_native),
        "step_ms": step_ms,
        "bf16_speedup": speedup,
        "dev_accuracy": accuracy,
        "summary": summary,
        "settings": vars(args),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
