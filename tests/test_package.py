"""autopeft as an installed package: shipped files by bare name, and a wheel that works outside the checkout."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopeft.errors import ConfigError
from autopeft.resources import read_text, shipped_names
from autopeft.study import Study

REPO = Path(__file__).resolve().parents[1]


def test_bare_names_resolve_to_shipped_files(write_study, tmp_path):
    study = write_study()
    text = study.read_text().replace("search_space: space.yaml", "search_space: lora")
    study.write_text(text.replace("objectives: [score, params, memory]", "objectives: score_params_memory"))
    s = Study.from_yaml(study)
    assert [o.name for o in s.objectives] == ["score", "params", "memory"]
    assert set(s._space_spec["adapters"]) == {"lora"}
    # the default objective set is the shipped one too, wherever the study file lives
    study.write_text(text.replace("objectives: [score, params, memory]\n", ""))
    assert [o.name for o in Study.from_yaml(study).objectives] == ["score", "params"]


def test_a_path_is_the_users_file_even_beside_a_shipped_name(write_study, tmp_path):
    (tmp_path / "lora.yaml").write_text("adapters:\n  serial: {size: [0, 4]}\n")
    study = write_study()
    study.write_text(study.read_text().replace("search_space: space.yaml", "search_space: ./lora.yaml"))
    assert set(Study.from_yaml(study)._space_spec["adapters"]) == {"serial"}


def test_unknown_bare_name_is_one_line_with_the_shipped_names(write_study):
    study = write_study()
    study.write_text(study.read_text().replace("search_space: space.yaml", "search_space: lorra"))
    with pytest.raises(ConfigError) as err:
        Study.from_yaml(study)
    assert "no shipped search space named 'lorra'" in str(err.value)
    assert "did you mean 'lora'" in str(err.value) and "autopeft, decoder, lora, mixed" in str(err.value)


def test_checkout_folders_are_the_package_data():
    """One source of truth: the documented top-level folders show the package's files."""
    assert shipped_names("search_spaces") == ["autopeft", "decoder", "lora", "mixed"]
    assert shipped_names("objectives") == ["score_params", "score_params_memory"]
    for folder in ("search_spaces", "objectives", "dashboards"):
        assert (REPO / folder).resolve() == (REPO / "autopeft" / "resources" / folder).resolve()
    assert "{{css}}" in read_text("dashboards", "report.template.html")


def _venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path, tiny_model_dir):
    """Build the wheel, install it into a fresh environment and run validate -> run -> pareto -> report from a
    folder that is not the checkout, with the shipped space and objectives named by their bare names."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(REPO / "autopeft", src / "autopeft", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("autopeft-*.whl"))
    venv = tmp_path / "venv"
    # torch & co. come from the system site-packages: only autopeft itself is installed
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = _venv_env(venv)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   capture_output=True, env=env, timeout=300)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import autopeft; print(autopeft.__file__)"], capture_output=True,
                           text=True, env=env, cwd=work, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the checkout or an editable install

    train = (REPO / "studies" / "data" / "sst2" / "train.tsv").read_text().splitlines()
    dev = (REPO / "studies" / "data" / "sst2" / "dev.tsv").read_text().splitlines()
    (work / "train.tsv").write_text("\n".join(train[:33]) + "\n")
    (work / "dev.tsv").write_text("\n".join(dev[:21]) + "\n")
    (work / "study.yaml").write_text(f"""
name: wheel
model: {tiny_model_dir}
task:
  data: {{train: train.tsv, validation: dev.tsv, text: sentence, label: label}}
search_space: lora
objectives: score_params
proxy: {{train_examples: 32, max_length: 32, batch_size: 16, threads: 1, measure_memory: false}}
optimizer: {{name: random}}
budget: {{trials: 1}}
""")
    autopeft = str(venv / "bin" / "autopeft")

    def cli(*args: str) -> str:
        proc = subprocess.run([autopeft, *args], capture_output=True, text=True, env=env, cwd=work, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "search space:" in cli("validate", "study.yaml")
    assert "Pareto front" in cli("run", "study.yaml")
    assert (work / "runs" / "wheel.db").is_file()
    front = json.loads(cli("pareto", "study.yaml", "--format", "json"))
    assert len(front) == 1 and set(front[0]["values"]) == {"score", "params"}
    cli("report", "study.yaml", "-o", "report.html")
    page = (work / "report.html").read_text()
    assert "<style>" in page and "plotly" in page and "{{css}}" not in page and "{{title}}" not in page
