"""The Conv nets' training recipe: Adam, batch 60, a fixed number of iterations per round, early
stopping read from validation loss (Frankle & Carbin)."""

from __future__ import annotations

from functools import partial

import torch
from data import augmentation
from models import build_model
from pruning import cnn_pruning

from lth.batches import ShuffledBatches
from lth.datasets import ImageData
from lth.imp import IMPRecipe
from lth.training import RoundSchedule, image_evaluator

# Evaluation batch: large batches feed a GPU; on a CPU the activations of 1,000 images fall out of cache
# and batches of about 100 evaluate about 25% faster (measured, Conv-2, 2-core EPYC).
EVAL_BATCH = {"cuda": 1000, "cpu": 100}


def evaluation_batch_size(args, device: str) -> int:
    if getattr(args, "eval_batch_size", None):
        return args.eval_batch_size
    return EVAL_BATCH["cuda" if str(device).startswith("cuda") else "cpu"]


def build_recipe(args, data: ImageData, device: str) -> IMPRecipe:
    factory = partial(build_model, args.arch, args.dropout_rate)
    return IMPRecipe(
        arch=args.arch,
        model_factory=factory,
        policy=cnn_pruning(factory(), args.conv_prune_rate, args.fc_prune_rate, args.output_prune_rate),
        make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=args.lr),
        batches=ShuffledBatches(
            data.train_x, data.train_y, args.batch_size, seed=args.seed, augment=augmentation(args.augment)
        ),
        evaluate=image_evaluator(
            data.val_x, data.val_y, data.test_x, data.test_y, batch_size=evaluation_batch_size(args, device)
        ),
        schedule=RoundSchedule(args.iterations, args.eval_every, args.checkpoint_every),
        device=device,
    )
