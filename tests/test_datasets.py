"""Data as users hold it: Hugging Face ``datasets`` sources, a validation share split off train, a test split."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from autopeft.config import DataConfig  # noqa: E402
from autopeft.data import build_task_data  # noqa: E402
from autopeft.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _sst2_rows(n: int, skip: int = 0) -> dict[str, list]:
    lines = (REPO / "studies" / "data" / "sst2" / "train.tsv").read_text().splitlines()[1 + skip:1 + skip + n]
    texts, labels = zip(*(line.rsplit("\t", 1) for line in lines))
    return {"sentence": list(texts), "label": [int(y) for y in labels]}


@pytest.fixture
def saved_dataset(tmp_path) -> Path:
    """A save_to_disk DatasetDict with a ClassLabel column and train/validation/test splits."""
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(_sst2_rows(80), features=features),
        "validation": datasets.Dataset.from_dict(_sst2_rows(24, skip=80), features=features),
        "test": datasets.Dataset.from_dict(_sst2_rows(30, skip=104), features=features),
    })
    path = tmp_path / "sst2_hf"
    dd.save_to_disk(str(path))
    return path


def test_save_to_disk_folder_with_its_splits(saved_dataset, tmp_path):
    cfg = DataConfig(dataset=str(saved_dataset), test="test", text="sentence", label="label")
    td = build_task_data(cfg, "classification", tmp_path)
    assert (len(td.train), len(td.validation), len(td.test)) == (80, 24, 30)
    assert td.label_names == ["0", "1"] and td.train_label_ids == _sst2_rows(80)["label"]
    assert td.train.texts[0] == _sst2_rows(1)["sentence"][0]
    assert td.splits["test"].endswith("[test] (30 rows)")


def test_validation_share_is_stratified_seeded_and_disjoint(tmp_path):
    rows = _sst2_rows(200)
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "all.parquet"))
    cfg = DataConfig(dataset="all.parquet", validation="20%", text="sentence", label="label")
    td = build_task_data(cfg, "classification", tmp_path)
    assert (len(td.train), len(td.validation)) == (160, 40)
    whole = Counter(rows["label"])
    val = Counter(td.validation_label_ids)
    assert all(abs(val[c] - 0.2 * whole[c]) <= 1 for c in whole)  # every label keeps its share
    assert sorted(td.train.texts + td.validation.texts) == sorted(rows["sentence"])
    assert "20% of all.parquet[train]: 40 rows, stratified by label, split_seed 0" in td.splits["validation"]
    again = build_task_data(DataConfig(dataset="all.parquet", validation=0.2, text="sentence", label="label"),
                            "classification", tmp_path)
    assert again.validation.texts == td.validation.texts  # seeded: the same rows every time
    other = build_task_data(cfg.model_copy(update={"split_seed": 1}), "classification", tmp_path)
    assert other.validation.texts != td.validation.texts


def test_file_sources_take_shares_too_test_first(tmp_path):
    rows = _sst2_rows(100)
    (tmp_path / "one.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(*rows.values())))
    cfg = DataConfig(train="one.tsv", validation="20%", test="10%", text="sentence", label="label", limit_train=50)
    td = build_task_data(cfg, "classification", tmp_path)
    assert (len(td.test), len(td.validation), len(td.train)) == (10, 20, 50)
    assert not set(td.test.line_numbers) & set(td.validation.line_numbers)
    assert not set(td.train.line_numbers) & (set(td.validation.line_numbers) | set(td.test.line_numbers))
    assert "limit_train 50" in td.splits["train"]


def test_local_csv_and_json_through_load_dataset(tmp_path):
    (tmp_path / "d.csv").write_text("text,label\ngood,pos\nbad,neg\nfine,pos\nawful,neg\n")
    td = build_task_data(DataConfig(dataset="d.csv", validation="50%", text="text", label="label"),
                         "classification", tmp_path)
    assert td.label_names == ["neg", "pos"] and len(td.train) == 2 and Counter(td.validation.labels) == {"pos": 1,
                                                                                                        "neg": 1}
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"q": q, "y": y}) + "\n" for q, y in
                                              [("a", 1.5), ("b", 2.0), ("c", 0.5), ("d", 3.0)]))
    reg = build_task_data(DataConfig(dataset="d.jsonl", validation="25%", text="q", label="y"), "regression",
                          tmp_path)
    assert len(reg.train) == 3 and len(reg.validation) == 1 and reg.regression


@pytest.mark.parametrize("change, words", [
    ({"validation": "dev"}, "validation split 'dev' is not in data set"),
    ({"text": "sentense"}, "did you mean 'sentence'"),
    ({"dataset": "./nowhere"}, "does not exist"),
])
def test_dataset_errors_are_one_line(saved_dataset, tmp_path, change, words):
    cfg = DataConfig(**{"dataset": str(saved_dataset), "text": "sentence", "label": "label", **change})
    with pytest.raises(DataError) as err:
        build_task_data(cfg, "classification", tmp_path)
    assert words in str(err.value) and "\n" not in str(err.value)
    if "split" in words:
        assert "splits: train, validation, test" in str(err.value) and "validation: 20%" in str(err.value)


def test_hub_name_offline_is_one_line(tmp_path, monkeypatch):
    """An unreachable hub and HF_HUB_OFFLINE each end in one line saying which (CI sets HF_HUB_OFFLINE)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing answers there
    config = DataConfig(dataset="nobody/no-such-set", text="t", label="l")
    with pytest.raises(DataError) as err:
        build_task_data(config, "classification", tmp_path)
    assert "not in the local cache and the Hugging Face hub http://127.0.0.1:9 is unreachable" in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set"):
        build_task_data(config, "classification", tmp_path)


def test_shares_are_checked_when_the_file_is_read():
    with pytest.raises(ValueError, match="between 0 and 100%"):
        DataConfig(train="t.tsv", validation="120%", text="s", label="l")
    with pytest.raises(ValueError, match="validation: 20%"):
        DataConfig(train="t.tsv", text="s", label="l")


def test_study_on_a_saved_dataset_with_a_test_split_end_to_end(write_study, saved_dataset, tmp_path, capsys):
    """run (validation 20% of the train split, recorded), refine and export --train print test scores labelled."""
    import optuna

    from autopeft.cli import main

    study = write_study()
    study.write_text(study.read_text().replace(
        "data: {train: train.tsv, validation: dev.tsv, text: sentence, label: label}",
        f"data: {{dataset: {saved_dataset}, validation: 20%, test: test, text: sentence, label: label}}"))
    assert main(["validate", str(study)]) == 0
    out = capsys.readouterr().out
    assert "64 train / 16 validation / 30 test examples" in out and "20% of" in out
    assert main(["run", str(study), "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert "scores on the validation split at proxy" in out
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert "stratified by label, split_seed 0" in stored.user_attrs["data_splits"]["validation"]

    assert main(["refine", str(study), "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "-> mean±sd on the test split (30 rows)" in out and " -> test " in out
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    refined = [v for k, v in stored.user_attrs.items() if k.startswith("refined_")]
    assert refined and all(r["test"]["rows"] == 30 and len(r["test"]["scores"]) == 1 for r in refined)

    out_dir = tmp_path / "trained"
    assert main(["export", str(study), "--pick", "max-score", "--train", "-o", str(out_dir)]) == 0
    result = json.loads((out_dir / "train_result.json").read_text())
    assert result["split"] == "validation" and result["test_examples"] == 30 and 0 <= result["test_score"] <= 1
    assert main(["train", str(out_dir / "autopeft.yaml"), "-o", str(tmp_path / "again")]) == 0
    assert "(test split)" in capsys.readouterr().out
