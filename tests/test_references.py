"""Reference configurations: trained once beside the search, stored apart from it, shown flagged."""
from __future__ import annotations

import json

import optuna

from autopeft.cli import main
from autopeft.references import REFERENCES


def test_references_trained_once_and_listed(write_study, tmp_path, capsys):
    study = write_study(references="true")
    assert main(["run", str(study), "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "references (same fidelity" in out and "full fine-tuning" in out
    storage = f"sqlite:///{tmp_path}/tiny.db"
    refs = optuna.load_study(study_name="tiny.references", storage=storage).trials
    assert sorted(t.user_attrs["reference"] for t in refs) == sorted(r.name for r in REFERENCES)
    full = next(t for t in refs if t.user_attrs["reference"] == "full fine-tuning")
    assert full.values[1] == full.user_attrs["measured"]["params"] > 100_000  # every body weight
    # the search study holds only searched trials; a resume does not retrain references
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 1
    assert main(["run", str(study), "--trials", "2"]) == 0
    assert len(optuna.load_study(study_name="tiny.references", storage=storage).trials) == len(REFERENCES)
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    assert all("reference" not in p for p in json.loads(capsys.readouterr().out))
    assert main(["pareto", str(study), "--format", "json", "--with-references"]) == 0
    assert sum("reference" in p for p in json.loads(capsys.readouterr().out)) == len(REFERENCES)
