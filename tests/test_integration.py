"""A few end-to-end studies on the real MiniLM and the real data in ../shared/data (skipped without it).

They show that study files for other tasks (pairs, string labels, regression, no header, other encodings,
N classes) run without code changes.
"""
from __future__ import annotations

import json

import pytest

from autopeft.cli import main
from tests.conftest import SHARED_DATA

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the repo")]

TASKS = {
    "rte-pairs-string-labels": ("classification", "accuracy",
                                f"{{train: {SHARED_DATA}/RTE/train.tsv, validation: {SHARED_DATA}/RTE/dev.tsv, "
                                "text: sentence1, text_pair: sentence2, label: label}"),
    "stsb-regression": ("regression", "pearson_spearman",
                        f"{{train: {SHARED_DATA}/STS-B/train.tsv, validation: {SHARED_DATA}/STS-B/dev.tsv, "
                        "text: 7, text_pair: 8, label: 9}"),
    "trec-50-classes-latin1": ("classification", "macro_f1",
                               f"{{train: {SHARED_DATA}/TREC/TREC.train, validation: {SHARED_DATA}/TREC/TREC.test, "
                               "format: tsv, delimiter: ' ', max_columns: 2, header: false, encoding: latin-1, "
                               "text: 1, label: 0}"),
    "cola-no-header-mcc": ("classification", "mcc",
                           f"{{train: {SHARED_DATA}/CoLA/train.tsv, validation: {SHARED_DATA}/CoLA/dev.tsv, "
                           "header: false, text: 3, label: 1}"),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_minilm_study_on_real_task(name, tmp_path, capsys):
    task_type, metric, data = TASKS[name]
    study = tmp_path / "study.yaml"
    study.write_text(f"""
name: {name}
model: sentence-transformers/all-MiniLM-L6-v2
task: {{type: {task_type}, metric: {metric}, data: {data}}}
search_space: {{adapters: {{lora: {{rank: [4, 8], targets: [[query, value]]}}, serial: {{size: [0, 8]}}}}, layers: top_k}}
objectives: [score, params]
proxy: {{train_examples: 96, eval_examples: 64, max_length: 64, batch_size: 16, threads: 2}}
optimizer: {{name: random}}
budget: {{trials: 1}}
storage: sqlite:///{tmp_path}/s.db
""")
    assert main(["validate", str(study)]) == 0
    assert main(["run", str(study)]) == 0
    capsys.readouterr()
    assert main(["pareto", str(study), "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert len(front) == 1 and front[0]["values"]["params"] > 0
    assert -1.0 <= front[0]["values"]["score"] <= 1.0
