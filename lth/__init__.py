"""Lottery Ticket Hypothesis toolkit: masks, pruning, rewinding, the IMP loop, results and resume.

Each mechanism lives here once; the family folders (Lenet-300-100, CNN, VGG, BERT) hold only their
architectures, data recipes, pruning rates, training recipes and figures.
"""

__version__ = "0.1.0"
