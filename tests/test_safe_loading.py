"""Files are read with weights_only=True: a pickle that would run code is refused in one line and nothing
runs; damaged or foreign files are one line too, and a file the user passed in is never called theirs to
delete."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lth.errors import UserError
from lth.storage import load_checkpoint
from lth.tickets import load_ticket

REPO = Path(__file__).resolve().parents[1]


class WritesAMarker:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OpensAFile:
    """Unpickling this calls open(marker, 'w'), creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Malicious files of several shapes: a ticket-like dict, the earlier study's keys, a legacy torch file,
    a newer pickle protocol, and a plain pickle."""
    files = {
        "ticket": {"format": "lth-bert-ticket", "version": 1, "masks": {}, "payload": WritesAMarker(marker)},
        "earlier": {"model_state_dict": {"bert.x": torch.ones(2)}, "mask_dict": None, "history": OpensAFile(marker)},
    }
    paths = {}
    for name, obj in files.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(obj, paths[name])
    paths["legacy"] = folder / "legacy.pt"
    torch.save({"x": WritesAMarker(marker)}, paths["legacy"], _use_new_zipfile_serialization=False)
    paths["protocol4"] = folder / "protocol4.pt"
    torch.save({"x": WritesAMarker(marker)}, paths["protocol4"], pickle_protocol=4)
    paths["plain_pickle"] = folder / "plain.pkl"
    paths["plain_pickle"].write_bytes(pickle.dumps(WritesAMarker(marker), protocol=4))
    return paths


def assert_refused(error: UserError, path: Path) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1
    assert str(path) in message and "would run code" in message and "not loaded" in message
    assert "corrupt" not in message and "delete" not in message


def test_a_crafted_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "MARKER"
    for name, path in crafted_files(tmp_path, marker).items():
        with pytest.raises(UserError) as info:
            load_ticket(path)
        assert_refused(info.value, path)
        assert str(info.value).startswith(f"--checkpoint {path} ")
        for user_file in (False, True):
            with pytest.raises(UserError) as info:
                load_checkpoint(path, "run state", user_file=user_file)
            assert_refused(info.value, path)
        assert not marker.exists(), f"{name}: the pickled call ran"


def test_the_refusal_names_what_would_have_been_called(tmp_path):
    path = crafted_files(tmp_path, tmp_path / "MARKER")["ticket"]
    with pytest.raises(UserError, match=r"\(posix\.system|\(nt\.system"):
        load_ticket(path)


def test_numpy_arrays_are_refused_but_numpy_scalars_load(tmp_path):
    import numpy as np

    torch.save({"history": {"val_acc": [np.float64(0.5), np.float32(0.25)], "seed": np.int64(3)}}, tmp_path / "s.pt")
    loaded = load_checkpoint(tmp_path / "s.pt", user_file=True)
    assert loaded["history"]["val_acc"] == [0.5, 0.25] and loaded["history"]["seed"] == 3
    torch.save({"history": np.zeros(3)}, tmp_path / "a.pt")
    with pytest.raises(UserError, match="a.pt holds pickled objects that would run code"):
        load_checkpoint(tmp_path / "a.pt")


def test_what_the_toolkit_saves_loads_safely(tmp_path):
    """Run state and progress hold tensors, optimiser state, RNG states and rows: all allowed."""
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": None,
        "rows": [{"round": 0, "val_loss": float("nan"), "run_type": "winning_ticket", "early_stop_iteration": 3}],
        "snapshots": {10: model.state_dict()},
        "loss_sum": torch.zeros(()),
    }
    torch.save(state, tmp_path / "state.pt")
    loaded = load_checkpoint(tmp_path / "state.pt", "run state")
    assert torch.equal(loaded["cpu_rng"], state["cpu_rng"]) and loaded["rows"][0]["run_type"] == "winning_ticket"
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)


def test_a_text_file_is_not_a_ticket(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes\n")
    with pytest.raises(UserError) as info:
        load_ticket(text)
    message = str(info.value)
    assert message.startswith(f"--checkpoint {text} is not a ticket file (") and "expected" in message
    assert len(message.splitlines()) == 1
    with pytest.raises(UserError, match="--ticket_b .*notes.txt is not a ticket file"):
        load_ticket(text, "--ticket_b")


def test_a_truncated_ticket_is_one_line_that_does_not_say_delete(tmp_path):
    path = tmp_path / "lottery_ticket_sst2_sparsity60_seed42.pt"
    torch.save({"format": "lth-bert-ticket", "version": 1, "masks": {"w": torch.ones(500, dtype=torch.bool)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError) as info:
        load_ticket(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(path) in message and "truncated" in message
    assert "delete" not in message.lower()
    # The toolkit's own run state keeps its advice: deleting it redoes that step.
    with pytest.raises(UserError, match="corrupt or truncated .*delete it to start that step again"):
        load_checkpoint(path, "run state")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "lth", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_lth_ticket_refuses_bad_files_in_one_line(tmp_path):
    marker = tmp_path / "MARKER"
    crafted = crafted_files(tmp_path, marker)["ticket"]
    text = tmp_path / "notes.txt"
    text.write_text("not a ticket\n")
    for path, needle in ((crafted, "would run code"), (text, "is not a ticket file")):
        result = run_cli("ticket", str(path), cwd=tmp_path)
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert str(path) in lines[0] and needle in lines[0] and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", ["ticket", "earlier", "legacy", "protocol4"])
def test_the_crafted_files_do_run_code_when_loaded_unsafely(tmp_path, name):
    """The control: what the tests above refuse would have created the marker under weights_only=False."""
    marker = tmp_path / "MARKER"
    torch.load(crafted_files(tmp_path, marker)[name], weights_only=False)
    assert marker.exists()
