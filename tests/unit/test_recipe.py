"""`make weights` (models/recipe.py): its commands are the CLI's, it resumes, and --check compares with the
shipped figures."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from models.recipe import ENSEMBLES, SHIPPED, Recipe, check, main
from tests.conftest import shared_data
from tests.integration.test_readme_commands import parse_without_running


def test_every_step_is_a_command_the_cli_accepts(tmp_path):
    steps = Recipe(tmp_path / "out", tmp_path / "data").steps()
    commands = [step.command() for step in steps if step.call is None]
    assert len(commands) >= 20 and {c[0] for c in commands} == {"extract", "train", "export-checkpoint",
                                                                 "build-ensemble", "calibrate-motion", "set-threshold"}
    for argv in commands:
        parse_without_running(argv)


def test_a_stopped_training_run_resumes_and_a_finished_one_is_skipped(tmp_path):
    recipe = Recipe(tmp_path, tmp_path / "data")
    step = recipe.train("lenet", "--net", "lenet", "--epochs", "20")
    run = recipe.run_dir("lenet")
    assert not step.done() and step.command()[:2] == ["train", "--net"]
    run.mkdir(parents=True)
    (run / "checkpoint_last.pt").write_bytes(b"")
    assert step.command() == ["train", "--resume", "--out", str(run), "--threads", "2", "--quiet"]
    (run / "metrics.json").write_text(json.dumps({"epochs": [], "test": {}}))
    assert step.done()


def test_done_steps_are_skipped_and_the_rest_listed_in_a_dry_run(tmp_path, capsys):
    data = shared_data()
    out = tmp_path / "out"
    assert main(["--out", str(out), "--data", str(data), "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("labels and splits") and not any(line.endswith(": done") for line in printed)
    assert not out.exists()  # a dry run writes nothing
    recipe = Recipe(out, data)
    recipe.write_labels_and_splits()  # what the first step does: done now
    split = pd.read_csv(recipe.split_rt)
    assert (split.loc[split.group.str.startswith("real_talking:"), "split"] == "train").all()
    assert set(pd.read_csv(recipe.split).group) < set(split.group)
    main(["--out", str(out), "--data", str(data), "--dry-run"])
    assert capsys.readouterr().out.splitlines()[0].endswith("labels and splits: done")


def test_check_passes_on_the_shipped_figures_and_names_what_moved(tmp_path, capsys):
    for name in ENSEMBLES:
        shutil.copy(SHIPPED / name, tmp_path / name)
    assert check(tmp_path) == []
    data = json.loads((tmp_path / "ensemble.json").read_text())
    data["metrics"]["test"]["video"]["roc_auc"] -= 0.05
    (tmp_path / "ensemble.json").write_text(json.dumps(data))
    (tmp_path / "ensemble_nets.json").unlink()
    failures = check(tmp_path)
    assert len(failures) == 2 and failures[0].startswith("ensemble.json: test ROC-AUC")
    assert "ensemble_nets.json: not built yet" in failures[1]
    assert "-0.050" in capsys.readouterr().out


def test_a_missing_data_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--data", str(tmp_path / "nowhere")]) == 2
    assert "give the shared data folder with --data" in capsys.readouterr().err


@pytest.mark.parametrize("name", ENSEMBLES)
def test_the_shipped_ensembles_record_the_figures_check_compares(name):
    from models.recipe import ensemble_figures

    figures = ensemble_figures(SHIPPED / name)
    assert {"threshold", "val ROC-AUC", "test ROC-AUC", "selection_dev FPR"} <= set(figures)
