"""Controls as branches of the winning ticket (Frankle & Carbin; OpenLTH's lottery branches).

"We retain the structure of a winning ticket (i.e., the mask m) but randomly sample a new initialization":
a control of the ticket's definition shares the ticket's round 0 (it is not trained again) and at every later
round r takes the ticket's mask of round r, which the ticket writes into its run directory when it starts that
round (`masks/round_NN.safetensors`). random_reinit trains that mask from fresh weights; random_prune trains a
random mask with its per-layer counts from the ticket's rewind weights.

BERT's baselines (Chen et al.) are branches too: they share the ticket's round 0 and train one round, the ticket's
round of their sparsity (`first_round`); standard pruning takes the ticket's trained dense weights from its state.

Where the ticket has not got that far, the control waits while the ticket is being trained (its lease is live;
batched and swept together they never wait on each other), and otherwise stops with one line saying what to run
first. Waiting loses nothing: the control has done no work on that round yet.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lth.errors import UserError
from lth.lease import DirectoryLock
from lth.mask_file import load_mask, save_mask
from lth.masks import Mask
from lth.results import COST_COLUMNS, RunFiles, is_finished, read_csv_rows, round_mask_path, rounds_done
from lth.settings import BRANCH_SUFFIX, CONTROL_RUN_TYPES, STANDARD_PRUNING, TICKET_RUN_KEY
from lth.stopping import StopRequested, stop_requested


class TicketNotReady(UserError):
    """A control needs a round of its winning ticket that nobody is training."""


def ticket_wait_seconds() -> float:
    """How long a control waits for a ticket that is not (yet) being trained: $LTH_TICKET_WAIT seconds; by
    default 5 minutes inside a cluster job (the ticket's array task may start after the control's), else none."""
    text = os.environ.get("LTH_TICKET_WAIT")
    if text:
        try:
            return max(0.0, float(text))
        except ValueError:
            raise UserError(f"$LTH_TICKET_WAIT={text!r}: expected seconds, e.g. 300") from None
    in_cluster_job = any(os.environ.get(name) for name in ("SLURM_JOB_ID", "LSB_JOBID"))
    return 300.0 if in_cluster_job else 0.0


def ticket_of(run_path: Path) -> Path | None:
    """The winning ticket's run directory of a branch (None for other runs): the one its settings.json names
    (`ticket_run`, beside it), or, for a control saved before settings.json named it, the same name with
    `winning_ticket` for `<run type>-of-ticket` (the run type and control_mask are in the readable prefix, never in
    the hash)."""
    try:
        saved = json.loads(RunFiles(run_path).settings_file.read_text())
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and isinstance(saved.get(TICKET_RUN_KEY), str):
        return Path(run_path).with_name(saved[TICKET_RUN_KEY])
    for run_type in CONTROL_RUN_TYPES:
        label = f"_{run_type}{BRANCH_SUFFIX}_"
        if label in f"{run_path.name}_":
            return run_path.with_name(f"{run_path.name}_".replace(label, "_winning_ticket_", 1).rstrip("_"))
    return None


def dependency(run_path: Path) -> str | None:
    """What `lth status` says of a control's ticket: its name and how far it has got."""
    ticket = ticket_of(run_path)
    if ticket is None:
        return None
    if is_finished(ticket):
        return f"branch of {ticket.name} (finished)"
    done = rounds_done(ticket)
    reached = f"at round {max(done) + 1}" if done else ("not started" if not ticket.exists() else "in round 0")
    return f"branch of {ticket.name} ({reached})"


def keep_round_mask(run_path: Path, round_index: int, mask: Mask, run_name: str) -> None:
    """A run keeps its mask of every round (written once, at the round's start): a winning ticket's are what its
    controls branch from."""
    path = round_mask_path(run_path, round_index)
    if not path.exists():
        header = {"run": run_name, "round": round_index, "weights_remaining_pct": mask.weights_remaining_pct()}
        save_mask(path, mask, header)


@dataclass
class TicketBranch:
    """Where a control's rounds start: its winning ticket's run directory."""

    ticket_dir: Path
    control: str  # the control's run name, for messages
    poll_seconds: float = 2.0
    # How to train the ticket, for the line of a branch whose ticket nobody trains (None: the image families' way).
    train_first: str | None = None

    def start_state(
        self,
        fresh: dict,
        run_type: str,
        seed: int,
        rewind_iteration: int,
        extra_columns: dict,
        identity: set[str],
        first_round: int = 1,
    ) -> dict:
        """The control's state after round 0: the ticket's round 0, relabelled (its cost stays the ticket's).

        Read from what a ticket's run directory keeps with its results (rounds.csv, curve.csv, masks), so a
        control can start from a ticket trained on another machine or in an earlier session; the initial weights
        are the ticket's (`fresh`: the same seeds draw them), the weights at a rewind iteration k > 0 and the dense
        trained weights that standard pruning starts from come from the ticket's state. The branch trains
        `first_round` next (a BERT baseline: the round of its sparsity, none of the rounds before it).
        """
        self._await(lambda: 0 in rounds_done(self.ticket_dir), "finished round 0")
        needed = {}
        if rewind_iteration > 0:
            needed["rewind"] = f"its weights at iteration {rewind_iteration}"
        if run_type == STANDARD_PRUNING:
            needed["dense_trained"] = "its trained dense weights of round 0 (what standard pruning prunes)"
        kept = self._ticket_state(needed)
        # The ticket's identity columns go: the control's own are written with its results.
        row = {k: v for k, v in _round_rows(RunFiles(self.ticket_dir).rounds_csv)[0].items() if k not in identity}
        row |= {"run_type": run_type, "seed": seed, **extra_columns}
        row.update({column: 0.0 for column in COST_COLUMNS if row.get(column, "") != ""})
        curve = [
            {k: v for k, v in point.items() if k not in identity}
            for point in _round_rows(RunFiles(self.ticket_dir).curve_csv)
            if point["round"] == 0
        ]
        state = {
            **fresh,
            "next_round": first_round,
            "rewind": kept.get("rewind"),
            "mask": self.mask(0).state_dict(),
            "rows": [row],
            "curve": curve,
        }
        if "dense_trained" in kept:
            state["dense_trained"] = state["trained"] = kept["dense_trained"]
        return state

    def _ticket_state(self, needed: dict[str, str]) -> dict:
        """The entries of the ticket's run state (state.pt) that `needed` names (key: what it holds, for the
        message), refusing in one line where the ticket kept no state or not that entry."""
        if not needed:
            return {}
        what = " and ".join(needed.values())
        ticket = RunFiles(self.ticket_dir)
        if not ticket.has_state():
            raise UserError(
                f"{self.control}: its winning ticket {self.ticket_dir} kept no run state (state.pt), which holds "
                f"{what}; train the ticket again into another --output_dir"
            )
        state = ticket.load_state("winning ticket's run state")
        missing = [key for key in needed if state.get(key) is None]
        if missing:
            raise UserError(
                f"{self.control}: the run state of its winning ticket {self.ticket_dir} (state.pt) lacks "
                f"{' and '.join(needed[key] for key in missing)}; train the ticket again into another --output_dir"
            )
        return {key: state[key] for key in needed}

    def mask(self, round_index: int) -> Mask:
        """The ticket's mask of `round_index`, once the ticket has started that round."""
        path = round_mask_path(self.ticket_dir, round_index)
        self._await(path.exists, f"started round {round_index}")
        return load_mask(path)[0]

    def _await(self, ready: Callable[[], bool], what: str) -> None:
        if ready():
            return
        ticket = self.ticket_dir
        deadline = time.monotonic() + ticket_wait_seconds()
        announced = False
        while not ready():
            if is_finished(ticket):
                raise TicketNotReady(
                    f"{self.control}: its winning ticket {ticket} finished but kept no mask of its rounds "
                    "(trained before tickets kept them); train the ticket again into another --output_dir"
                )
            live = ticket.is_dir() and DirectoryLock(ticket).live_holder() is not None
            if not live and time.monotonic() >= deadline:
                how = self.train_first or (
                    "train the ticket first (or both in one call: --run_type winning_ticket random_reinit ...)"
                )
                raise TicketNotReady(
                    f"{self.control} needs its winning ticket {ticket} to have {what}, and nobody is training that "
                    f"ticket; {how}"
                )
            if not announced:
                print(f"{self.control}: waiting until its winning ticket {ticket.name} has {what}", flush=True)
                announced = True
            signal_name = stop_requested()
            if signal_name:
                raise StopRequested(signal_name, "while waiting for the winning ticket")
            time.sleep(self.poll_seconds)


def state_from_results(run_path: Path, fresh: dict, identity: set[str]) -> dict | None:
    """A run's state rebuilt from what its directory keeps with its results (rounds.csv, curve.csv, masks) where its
    run state did not travel (a results tree committed without state.pt, another session's checkout; BERT's state is
    hundreds of MB), from the same seeded initial weights (`fresh`). The trained weights of earlier rounds are not
    needed, only the masks they gave: it continues at its next round where it kept that round's mask (written when
    the round first started), else trains its last finished round again to regain the weights that mask comes
    from. None where round 0 would be trained again anyway (nothing finished, or no mask kept)."""
    done = rounds_done(run_path)
    start = max(done, default=-1) + 1
    while start > 0 and not round_mask_path(run_path, start).exists():
        start -= 1
    if start == 0 or not all(r in done for r in range(start)) or not round_mask_path(run_path, start - 1).exists():
        return None
    files = RunFiles(run_path)
    rows = [{k: v for k, v in row.items() if k not in identity} for row in _round_rows(files.rounds_csv)]
    curve = [{k: v for k, v in point.items() if k not in identity} for point in _round_rows(files.curve_csv)]
    return {
        **fresh,
        "next_round": start,
        "mask": load_mask(round_mask_path(run_path, start - 1))[0].state_dict(),
        "rows": [row for row in rows if row["round"] < start],
        "curve": [point for point in curve if point["round"] < start],
    }


def _round_rows(path: Path) -> list[dict]:
    """A results CSV's rows with numbers as numbers (they are written back as they were read)."""
    return [{key: _number(cell) for key, cell in row.items()} for row in read_csv_rows(path)]


def _number(cell: str):
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell
