"""The documented commands stay true: every one is accepted by the CLI, and the documented sequences run.

Commands are read from the fenced code blocks and inline code of README.md, every page of docs/,
models/weights/MODEL_CARD.md and models/weights/README.md, and from the Makefile: any
`.venv/bin/python cli.py ...`, `python cli.py ...`, `cli.py ...` or `deepfake-verdict ...`. A renamed or
removed command or option fails here. The README's training sequence and its Python example run verbatim.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import click
import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from pipeline.cache import default_cache_name
from pipeline.sample import astronaut_bgr, write_sample_clip

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
        "models/weights/MODEL_CARD.md", "models/weights/README.md", "Makefile")
DIST_NAME = "deepfake-verdict"  # `deepfake-detector` on PyPI is an unrelated project
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def cli_argv(text: str) -> list[str] | None:
    """The arguments after the program of a documented command line, or None when it is no CLI command."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:
        return None
    if tokens[:1] in (["cli.py"], [DIST_NAME]):
        return tokens[1:]
    if len(tokens) >= 2 and tokens[1] == "cli.py" and (tokens[0].endswith("python") or tokens[0] == "$(PY)"):
        return tokens[2:]
    return None


def documented_commands(doc: str) -> list[tuple[str, list[str]]]:
    """(where, argv) of every CLI command in a document: lines of code blocks (with `\\` continuations
    joined), inline code spans, and for the Makefile its recipe lines."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    if doc == "Makefile":
        pieces = text.splitlines()
    else:
        pieces = []
        for block in FENCE.findall(text):
            pieces += re.sub(r"\\\n\s*", " ", block).splitlines()
        pieces += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", FENCE.sub("", text))]
    commands = []
    for piece in pieces:
        argv = cli_argv(piece.strip())
        if argv:  # the bare program name (`python cli.py`) is a mention, not a command
            commands.append((f"{doc}: {piece.strip()}", argv))
    return commands


ALL_COMMANDS = [command for doc in DOCS for command in documented_commands(doc)]


def parse_without_running(argv: list[str]) -> None:
    """Parse `argv` as `cli.py` would, down to the subcommand's options; run nothing (--help prints and stops)."""
    try:
        ctx = main.make_context("cli.py", list(argv))
        rest = argv[len(argv) - len(ctx.args) - 1:]  # a group stops parsing at its command name
        name, command, args = main.resolve_command(ctx, rest)
        command.make_context(name, args, parent=ctx)
    except click.exceptions.Exit as exc:
        assert exc.exit_code == 0


def test_the_documents_hold_the_commands_this_test_checks():
    docs = {where.split(":")[0] for where, _ in ALL_COMMANDS}
    assert {"README.md", "docs/training.md", "docs/classifying.md", "docs/scaling.md", "Makefile"} <= docs <= set(DOCS)
    names = {argv[0] for _, argv in ALL_COMMANDS}
    assert {"extract", "train", "evaluate", "classify-video", "classify-image", "build-ensemble", "serve",
            "evaluate-ensemble", "make-sample"} <= names


@pytest.mark.parametrize("where, argv", ALL_COMMANDS, ids=[where for where, _ in ALL_COMMANDS])
def test_documented_command_is_accepted_by_the_cli(where, argv):
    try:
        parse_without_running(argv)
    except click.ClickException as exc:
        pytest.fail(f"{where}\n  is refused by cli.py: {exc.format_message()}")


def test_a_renamed_option_would_be_caught():
    with pytest.raises(click.NoSuchOption):
        parse_without_running(["train", "--net", "lenet", "--face", "data/faces"])
    with pytest.raises(click.UsageError, match="No such command"):
        parse_without_running(["classify", "clip.mp4"])
    with pytest.raises(click.BadParameter):
        parse_without_running(["train", "--epochs", "zero"])


def test_readme_commands_name_no_cache_hash():
    """A hash changes with extract's defaults; the README names the folder (the model card may name the
    cache the shipped models were trained on)."""
    hashed = [where for where, argv in documented_commands("README.md")
              if any(re.search(r"-[0-9a-f]{10}/?$", arg) for arg in argv)]
    assert not hashed


# -- the README's extract -> train -> evaluate sequence, verbatim, in a fresh working directory ------------
ADDED_TO_EXTRACT = ["--workers", "1", "--quiet"]  # in this process: starting two workers costs 5-15 s here
ADDED_TO_TRAIN = ["--epochs", "1", "--threads", "1", "--quiet"]  # the documented epochs would train for long


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def documented(doc: str, predicate) -> list[list[str]]:
    found = [argv for _, argv in documented_commands(doc) if predicate(argv)]
    assert found, f"{doc} no longer documents this step"
    return found


def run(argv: list[str]) -> str:
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 0, f"cli.py {shlex.join(argv)}\n{result.output}"
    return result.stdout


def cache_line(output: str) -> str:
    return re.search(r"^cache: (\S+) \(manifest.csv", output, re.M).group(1)


def write_dfdc_like_faces(folder: Path) -> None:
    """A tiny stand-in for ../shared/data/dfdc_faces: tight face crops of a real photo and metadata.csv."""
    (folder / "faces").mkdir(parents=True)
    photo, rows = astronaut_bgr(), []
    for i, (x, gain, label) in enumerate([(110, 1.0, "REAL"), (130, 0.85, "FAKE"), (120, 1.1, "REAL"),
                                          (140, 0.95, "FAKE")]):
        crop = cv2.resize(photo[0:300, x : x + 300], (224, 224), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "faces" / f"v{i}.jpg"), np.clip(crop * gain, 0, 255).astype(np.uint8))
        rows.append((f"v{i}.jpg", label, f"v{i}.mp4", "", f"v{i}.mp4", 224, 224))
    columns = ["file", "label", "video", "original", "group", "original_width", "original_height"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "metadata.csv", index=False)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A checkout-like working directory: data/raw_videos/{real,fake}/ clips of a real face, and beside it
    ../shared/data/dfdc_faces, as on the project's machine."""
    work = tmp_path / "main"
    for name, label in (("a", "real"), ("b", "real"), ("c", "fake"), ("d", "fake")):
        write_sample_clip(work / "data" / "raw_videos" / label / f"{name}.mp4", seconds=2.0, fps=15)
    write_dfdc_like_faces(tmp_path / "shared" / "data" / "dfdc_faces")
    monkeypatch.chdir(work)
    return work


def test_the_training_page_sequence_runs_verbatim_beside_another_cache(workdir):
    """docs/training.md's extract -> train -> evaluate, verbatim but for: tiny data in the inputs' places;
    `--workers 1 --quiet` added to extract (the output is the same whatever the worker count); `--epochs 1
    --threads 1 --quiet` added to train (and `--epochs 2` to the resume step). The evaluate on `other_faces/`
    (another dataset) is not run."""
    [extract] = documented("docs/training.md", lambda argv: argv[0] == "extract" and "data/raw_videos/" in argv)
    # first a cache of other settings in data/faces: `--faces data/faces` must then pick the default one
    other_cache = cache_line(run(extract + ["--redetect-every", "1"] + ADDED_TO_EXTRACT))
    assert other_cache != f"data/faces/{default_cache_name()}"
    default_cache = cache_line(run(extract + ADDED_TO_EXTRACT))
    assert default_cache == f"data/faces/{default_cache_name()}"

    trains = documented("docs/training.md", lambda argv: argv[0] == "train" and "--resume" not in argv
                        and "--init-from" not in argv and "--blend-outlines" not in argv)
    assert any(option(argv, "--faces") == "data/faces" for argv in trains)
    for argv in trains:
        run(argv + ADDED_TO_TRAIN)
    for argv in documented("docs/training.md", lambda argv: argv[0] == "train" and "--resume" in argv):
        assert "resuming" in run(argv + ADDED_TO_TRAIN + ["--epochs", "2"])
    for run_dir in [Path("runs/minivgg"), *Path("runs").glob("resnet-*")]:
        assert json.loads((run_dir / "config.json").read_text())["cache_dir"] == default_cache
    assert [e["epoch"] for e in json.loads(Path("runs/minivgg/metrics.json").read_text())["epochs"]] == [1, 2]

    evaluations = documented("docs/training.md",
                             lambda argv: argv[0] == "evaluate" and option(argv, "--faces") == "data/faces")
    for argv in evaluations:
        assert f"on {default_cache}" in run(argv)


def readme_block(heading: str, language: str) -> str:
    """The first fenced `language` block under the README's `## heading`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(rf"^```{language}\n(.*?)^```", section, re.S | re.M).group(1)


def test_the_readme_training_sequence_runs_verbatim(workdir):
    """"Train on your own data": extract -> train two nets -> build-ensemble -> set-threshold -> classify,
    verbatim but for tiny data in the inputs' places (my_videos/, the development set, clip.mp4) and the
    flags added to extract and train as above."""
    for k in range(6):
        for label in ("real", "fake"):
            write_sample_clip(workdir / "my_videos" / label / f"{label}{k}.mp4", seconds=1.4, fps=15)
    dev = workdir.parent / "shared" / "data" / "selection_dev"
    for name in ("r0.mp4", "r1.mp4", "f0.mp4"):
        write_sample_clip(dev / name, seconds=1.4, fps=15)
    pd.DataFrame({"file": ["r0.mp4", "r1.mp4", "f0.mp4"], "label": ["REAL", "REAL", "FAKE"],
                  "family": ["", "", "face swap"]}).to_csv(dev / "labels.csv", index=False)
    write_sample_clip(workdir / "clip.mp4", seconds=1.4, fps=15)
    block = re.sub(r"\\\n\s*", " ", readme_block("Train on your own data", "bash"))
    steps = [cli_argv(line) for line in block.splitlines() if cli_argv(line)]
    assert [argv[0] for argv in steps] == ["extract", "train", "train", "build-ensemble", "set-threshold",
                                           "classify-video"]
    for argv in steps:
        extra = ADDED_TO_EXTRACT if argv[0] == "extract" else ADDED_TO_TRAIN if argv[0] == "train" else []
        output = run(argv + extra)
    assert output.split()[0] in ("REAL", "FAKE") and "clip.mp4" in output
    assert json.loads(Path("runs/ensemble.json").read_text())["metrics"]["false_alarm_budget"]["max_fpr"] == 0.05


def test_the_readme_python_example_runs_verbatim(tmp_path):
    """The Python API example, as written, in a folder holding the sample clip `make demo` makes."""
    run(["make-sample", str(tmp_path / "data" / "raw_videos" / "sample_astronaut.mp4")])
    example = readme_block("Python API", "python")
    result = subprocess.run([sys.executable, "-c", example + "\nprint(report['verdict'], report['file_name'])"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] in ("REAL", "FAKE") and lines[1].startswith(lines[0].split()[0])
    assert lines[-1].endswith("sample_astronaut.mp4")


# -- the distribution and its command -------------------------------------------------------------------
def test_the_distribution_and_its_command_are_named_deepfake_verdict():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["name"] == DIST_NAME
    scripts = [line.split("=") for line in setup["options.entry_points"]["console_scripts"].strip().splitlines()]
    assert [(name.strip(), target.strip()) for name, target in scripts] == [(DIST_NAME, "cli:main")]
    assert metadata.EntryPoint(DIST_NAME, "cli:main", "console_scripts").load() is main

    installed = metadata.distribution(DIST_NAME)  # fails until the checkout is reinstalled (make setup)
    [entry] = [e for e in installed.entry_points if e.group == "console_scripts"]
    assert (entry.name, entry.value) == (DIST_NAME, "cli:main") and entry.load() is main
    script = Path(sys.executable).parent / DIST_NAME
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and f"Usage: {DIST_NAME} [OPTIONS] COMMAND" in result.stdout
