"""Bad input, one table: every case exits 2 with one line (no traceback) naming the problem and the fix, and
leaves every file it could touch — the study's storage (a copy holding a finished trial), exports, data — as it was.

Each case runs the real CLI in a fresh process (see clirunner.py); add a row here for every new kind of bad input.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from clirunner import run_cli

GOOD = "{study}"


@dataclass
class Case:
    id: str
    change: str | tuple[str, str] | list[tuple[str, str]] | None  # full YAML text, or (old, new) edits of the good one
    words: str  # what the one line must say (case-insensitive)
    args: list[str] = field(default_factory=lambda: ["run", GOOD])
    setup: Callable[[Path], None] | None = None  # prepares files in the study's folder
    env: dict[str, str] = field(default_factory=dict)
    fresh: bool = False  # a new interpreter: ``env`` holds a variable read at import time


def _append(path: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / path).write_text((d / path).read_text() + text)


def _symlinked_export(d: Path) -> None:
    (d / "outside.txt").write_text("not yours\n")
    (d / "out").mkdir()
    (d / "out" / "autopeft.yaml").symlink_to(d / "outside.txt")


SPACE = ("search_space: space.yaml", "search_space: {}")
CASES = [
    # ---- YAML
    Case("empty file", "", "empty"),
    Case("malformed yaml", "name: [unclosed\n", "malformed YAML"),
    Case("not a mapping", "- a\n- b\n", "mapping"),
    Case("duplicate key", ("budget: {trials: 3}", "budget: {trials: 3}\nbudget: {trials: 5}"), "duplicate key 'budget'"),
    Case("misspelt key", ("budget: {trials: 3}", "budjet: {trials: 3}"), "did you mean 'budget'"),
    Case("python object tag", ("name: tiny", "name: !!python/object/apply:os.system ['touch pwned']"),
         "YAML tag '!!python/object/apply:os.system' is not allowed"),
    Case("unknown optimizer", ("optimizer: {name: random}", "optimizer: {name: bayes}"), "unknown optimizer"),
    Case("optimizer as an import path", ("optimizer: {name: random}", "optimizer: {name: optuna.samplers.TPESampler}"),
         "unknown optimizer"),
    Case("adapter kind as an import path", (SPACE[0], "search_space: {adapters: {'peft:LoraConfig': {rank: [4]}}}"),
         "peft:LoraConfig"),
    Case("bad duration", ("budget: {trials: 3}", "budget: {trials: 3, time: soon}"), "duration"),
    Case("trials not a number", ("budget: {trials: 3}", "budget: {trials: many}"), "budget.trials"),
    Case("name with a path", ("name: tiny", "name: ../tiny"), "name"),
    Case("unknown device", ("name: tiny", "name: tiny\ndevice: tpu"), "device"),
    Case("grace shorter than heartbeat", ("name: tiny", "name: tiny\nrecovery: {heartbeat: 5, grace: 4}"), "grace"),
    Case("unknown optimizer option", ("optimizer: {name: random}", "optimizer: {name: tpe, options: {n_eii: 3}}"),
         "n_eii"),
    Case("unknown metric", ("type: classification", "type: classification\n  metric: acuracy"),
         "did you mean 'accuracy'"),
    # ---- search space
    Case("unknown adapter kind", (SPACE[0], "search_space: {adapters: {lorra: {rank: [4]}}}"), "did you mean 'lora'"),
    Case("negative size", (SPACE[0], "search_space: {adapters: {serial: {size: [-4]}}}"), "negative"),
    Case("layer out of range", (SPACE[0], "search_space: {adapters: {serial: {size: [4]}}, layers: [0, 9]}"),
         "out of range"),
    Case("rank larger than the layer", (SPACE[0], "search_space: {adapters: {lora: {rank: [0, 512]}}}"), "rank"),
    Case("unknown target module", (SPACE[0], "search_space: {adapters: {lora: {rank: [4], targets: [[query, vaule]]}}}"),
         "vaule"),
    Case("missing space file", (SPACE[0], "search_space: nospace.yaml"), "nospace.yaml"),
    # a search space or objectives file: the error names that file and the line, before anything loads
    Case("unknown key in a search space file", (SPACE[0], "search_space: myspace.yaml"),
         "myspace.yaml:4: unknown key(s) ['layer']",
         setup=lambda d: (d / "myspace.yaml").write_text("adapters:\n  lora: {rank: [0, 4]}\n\nlayer: all\n")),
    # ---- objectives
    Case("unknown objective", ("objectives: [score, params, memory]", "objectives: [score, parms]"),
         "did you mean 'params'"),
    Case("one objective", ("objectives: [score, params, memory]", "objectives: [score]"), "2 or 3"),
    Case("memory objective without measuring it", ("threads: 1}", "threads: 1, measure_memory: false}"),
         "measure_memory is false but 'memory' is an objective"),
    Case("no score", ("objectives: [score, params, memory]", "objectives: [params, memory]"), "score"),
    Case("wrong direction", ("objectives: [score, params, memory]", "objectives: [score, {name: params, direction: "
                                                                    "maximize}]"), "minimize"),
    Case("unknown objective in an objectives file", ("objectives: [score, params, memory]", "objectives: my.yaml"),
         "my.yaml:4: unknown objective 'parms'",
         setup=lambda d: (d / "my.yaml").write_text("# mine\nobjectives:\n  - score\n  - parms\n")),
    Case("wrong direction in an objectives file", ("objectives: [score, params, memory]", "objectives: my.yaml"),
         "my.yaml:3: objective 'params' can only be minimized",
         setup=lambda d: (d / "my.yaml").write_text("- score\n- name: params\n  direction: maximize\n")),
    Case("other objectives than the stored study", ("objectives: [score, params, memory]", "objectives: [score, params]"),
         "optimises"),
    # ---- data
    Case("missing data file", ("train: train.tsv", "train: nothere.tsv"), "nothere.tsv"),
    Case("missing column", ("text: sentence", "text: sentense"), "sentense"),
    Case("validation share out of range", ("validation: dev.tsv", "validation: 120%"), "between 0 and 100%"),
    Case("missing data set folder", ("train: train.tsv, validation: dev.tsv", "dataset: ./no_such_set"),
         "does not exist"),
    Case("label unseen in training", None, "7", args=["validate", GOOD], setup=_append("dev.tsv", "one more\t7\n")),
    Case("header-only training file", None, "train", setup=lambda d: (d / "train.tsv").write_text("sentence\tlabel\n")),
    # ---- model
    Case("missing model folder", ("model: ", "model: /nonexistent/model/dir #"), "does not exist"),
    Case("folder that holds no model", ("model: ", "model: {dir}/notamodel #"), "notamodel",
         setup=lambda d: (d / "notamodel").mkdir()),
    # without HF_HUB_OFFLINE=1 huggingface_hub first retries the unreachable hub for ~45 s, logging each attempt
    Case("hub id not available offline", ("model: ", "model: nobody/no-such-model-xyz #"), "no-such-model-xyz",
         env={"HF_HUB_OFFLINE": "1"}, fresh=True),
    # online, but the hub is unreachable: one quick look at it, not huggingface_hub's retries (fresh: HF_ENDPOINT is
    # read when huggingface_hub is imported)
    Case("hub unreachable", ("model: ", "model: someone/nonexistent-model #"), "hub http://127.0.0.1:9 is unreachable",
         args=["validate", GOOD], env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}, fresh=True),
    # ---- storage
    Case("unreachable server, password in the URL",
         ("storage: sqlite:///", "storage: postgresql://user:secret@127.0.0.1:1/db #"), "cannot open storage"),
    Case("not a storage URL", None, "not a storage URL", args=["run", GOOD, "--storage", "runs/tiny.db"]),
    Case("bad URL in $AUTOPEFT_STORAGE", None, "not a storage URL", env={"AUTOPEFT_STORAGE": "mysql:/oops"}),
    Case("storage folder not writable", None, "cannot create the folder",
         args=["run", GOOD, "--storage", "sqlite:////proc/autopeft/tiny.db"]),
    Case("no such study in the storage", ("name: tiny", "name: other"), "no study named 'other'",
         args=["status", GOOD]),
    Case("no storage yet", None, "no storage", args=["pareto", GOOD, "--storage", "sqlite:///{dir}/none.db"]),
    # ---- command line
    Case("zero trials", None, "--trials", args=["run", GOOD, "--trials", "0"]),
    Case("--trials not a number", None, "--trials", args=["run", GOOD, "--trials", "abc"]),
    Case("zero workers", None, "--workers", args=["run", GOOD, "--workers", "0"]),
    Case("negative timeout", None, "--timeout", args=["worker", GOOD, "--timeout", "-5"]),
    Case("unknown command", None, "invalid choice", args=["frobnicate", GOOD]),
    Case("missing study file", None, "does not exist", args=["run", "{dir}/nope.yaml"]),
    Case("export of a trial that does not exist", None, "trial 999 does not exist",
         args=["export", GOOD, "--trial", "999", "-o", "{dir}/out"]),
    Case("export onto a file", None, "not a directory", args=["export", GOOD, "--trial", "0", "-o", "{dir}/dev.tsv"]),
    Case("export through a symlink leading outside", None, "symbolic link",
         args=["export", GOOD, "--trial", "0", "-o", "{dir}/out"], setup=_symlinked_export),
]


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory, tiny_model_dir) -> Path:
    """A storage holding the tiny study with one finished trial; each case gets a copy."""
    from autopeft.cli import main

    from conftest import REPO, TINY_SPACE

    d = tmp_path_factory.mktemp("stored")
    train = (REPO / "studies" / "data" / "sst2" / "train.tsv").read_text().splitlines()
    dev = (REPO / "studies" / "data" / "sst2" / "dev.tsv").read_text().splitlines()
    (d / "train.tsv").write_text("\n".join(train[:65]) + "\n")
    (d / "dev.tsv").write_text("\n".join(dev[:41]) + "\n")
    (d / "space.yaml").write_text(TINY_SPACE)
    (d / "study.yaml").write_text(
        f"name: tiny\nmodel: {tiny_model_dir}\n"
        "task: {type: classification, data: {train: train.tsv, validation: dev.tsv, text: sentence, label: label}}\n"
        "search_space: space.yaml\nobjectives: [score, params, memory]\n"
        "proxy: {train_examples: 64, epochs: 1, max_length: 32, batch_size: 16, threads: 1}\n"
        f"optimizer: {{name: random}}\nstorage: sqlite:///{d}/tiny.db\n")
    assert main(["run", str(d / "study.yaml"), "--trials", "1"]) == 0
    return d / "tiny.db"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case: Case, write_study, tmp_path, stored_study):
    good = write_study().read_text()
    edits = [case.change] if isinstance(case.change, tuple) else case.change or []
    text = case.change if isinstance(case.change, str) else good
    for old, new in edits if isinstance(edits, list) else []:
        assert old in text, f"{case.id}: '{old}' not in the study file"
        text = text.replace(old, new.replace("{dir}", str(tmp_path)))
    study = write_study(text, name="case.yaml")
    shutil.copy(stored_study, tmp_path / "tiny.db")
    if case.setup:
        case.setup(tmp_path)
    before = _files(tmp_path)
    args = [a.replace(GOOD, str(study)).replace("{dir}", str(tmp_path)) for a in case.args]

    r = run_cli(*args, env=case.env, fresh=case.fresh)

    assert r.code == 2, f"{case.id}: exit {r.code}\n{r.err}"
    # the progress lines a run starts with (what loads, then what was loaded) may come before the error
    lines = [x for x in r.err_lines if not re.match(r"study '[^']*': loading model |loaded ", x)]
    assert len(lines) == 1 and "Traceback" not in r.err, f"{case.id}:\n{r.err}"
    line = lines[0]
    assert line.startswith("error: ") and case.words.lower() in line.lower(), f"{case.id}: {line}"
    problem, _, fix = line.partition(" — ")
    assert problem and fix.strip(), f"{case.id}: no fix named in: {line}"
    assert "secret" not in r.err + r.out
    assert _files(tmp_path) == before, f"{case.id}: files were written or changed"


def test_suggest_is_the_one_did_you_mean():
    """errors.suggest writes the fix of every unknown-name error: a close guess, or else the list."""
    from autopeft.errors import suggest

    assert suggest("lorra", ["serial", "lora"], "known kinds") == "did you mean 'lora'?"
    assert suggest("zzz", ["serial", "lora"], "known kinds") == "known kinds: serial, lora"
    assert suggest("lorra", ["serial", "lora"], "known kinds", always=True) == "did you mean 'lora'? known kinds: serial, lora"
    assert suggest("zzz", ["q"], "valid targets", listed="q, all-linear") == "valid targets: q, all-linear"
    assert suggest("mc", ["mcc", "f1"], "known metrics", cutoff=0.9) == "known metrics: mcc, f1"
    assert suggest(3, [], "allowed") == "allowed: "
