"""Tokenised splits and what is drawn from them: seeded (stratified) subsets and length-bucketed, dynamically
padded batches. Below both the data reading (autopeft/data.py, which makes EncodedSplits) and the trainers and
their activation cache (which batch them).
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # torch is imported where it is used: reading a study file must not wait for it
    import torch


@dataclass
class EncodedSplit:
    """Token ids of one split (unpadded) plus its labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: torch.Tensor
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def regression(self) -> bool:
        return bool(self.labels.is_floating_point())

    def select(self, indices: list[int]) -> "EncodedSplit":
        """The rows at ``indices``, in that order."""
        import torch

        return EncodedSplit(
            input_ids=[self.input_ids[i] for i in indices],
            token_type_ids=None if self.token_type_ids is None else [self.token_type_ids[i] for i in indices],
            labels=self.labels[torch.as_tensor(indices, dtype=torch.long)],
            lengths=[self.lengths[i] for i in indices],
        )

    def subset(self, n: int, seed: int) -> "EncodedSplit":
        """A seeded random subset of ``n`` rows (file order kept).

        Classification subsets are stratified by label, with at least one row of every
        class when ``n`` allows, so that a tiny search budget still sees all classes.
        ``n >= len(self)`` returns ``self``.
        """
        if n >= len(self):
            return self
        labels = None if self.regression else [int(y) for y in self.labels.tolist()]
        return self.select(stratified_sample(labels, len(self), n, seed))


def stratified_sample(labels: list | None, total: int, n: int, seed: int) -> list[int]:
    """Sorted indices of a seeded random sample of ``n`` of ``total`` rows.

    With ``labels`` (one per row) the sample is stratified: every label keeps its share (largest remainder),
    with at least one row of every label when ``n`` allows. ``labels=None`` samples plainly (regression).
    """
    if n < 1:
        raise ValueError(f"subset size must be at least 1, got {n}")
    rng = random.Random(seed)
    if labels is None:
        return sorted(rng.sample(range(total), n))
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        groups[y].append(i)
    classes = sorted(groups)
    for c in classes:
        rng.shuffle(groups[c])
    if n < len(classes):
        chosen = sorted(rng.sample(classes, n))
        return sorted(groups[c][0] for c in chosen)
    # Largest-remainder allocation with a floor of one row per class.
    exact = {c: n * len(groups[c]) / total for c in classes}
    quota = {c: max(1, int(exact[c])) for c in classes}
    while sum(quota.values()) > n:
        c = max((c for c in classes if quota[c] > 1), key=lambda c: quota[c] - exact[c])
        quota[c] -= 1
    order = sorted(classes, key=lambda c: (-(exact[c] - int(exact[c])), c))
    while sum(quota.values()) < n:
        for c in order:
            if sum(quota.values()) >= n:
                break
            if quota[c] < len(groups[c]):
                quota[c] += 1
    return sorted(i for c in classes for i in groups[c][: quota[c]])


def iter_batches(
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    shuffle: bool,
    seed: int,
    bucket: bool = True,
    with_index: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Dynamically padded batches, bucketed by length so little compute goes to padding.

    With ``shuffle`` the rows are shuffled (seeded), sorted by length within chunks of
    ``50 * batch_size``, cut into batches, and the batch order shuffled again, so batches
    hold similar lengths yet come in random order. Without ``shuffle`` and with ``bucket``
    rows are sorted by length within chunks of file order; ``bucket=False`` and
    ``shuffle=False`` keep file order. Every row appears exactly once; the last batch may
    be smaller. ``with_index`` adds an ``index`` tensor of the rows' positions in ``split``
    so that predictions can be mapped back.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(split)))
    if shuffle:
        rng.shuffle(order)
    if bucket:
        chunk = 50 * batch_size
        order = [
            i
            for start in range(0, len(order), chunk)
            for i in sorted(order[start : start + chunk], key=lambda i: split.lengths[i])
        ]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if shuffle and bucket:
        rng.shuffle(batches)
    for rows in batches:
        yield _collate(split, rows, pad_id, with_index)


def _collate(split: EncodedSplit, rows: list[int], pad_id: int, with_index: bool) -> dict[str, torch.Tensor]:
    import torch

    width = max(split.lengths[i] for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if split.token_type_ids is not None else None
    for r, i in enumerate(rows):
        n = split.lengths[i]
        input_ids[r, :n] = torch.tensor(split.input_ids[i], dtype=torch.long)
        attention[r, :n] = 1
        if types is not None:
            types[r, :n] = torch.tensor(split.token_type_ids[i], dtype=torch.long)  # type: ignore[index]
    index = torch.tensor(rows, dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention}
    if types is not None:
        batch["token_type_ids"] = types
    batch["labels"] = split.labels[index]
    if with_index:
        batch["index"] = index
    return batch
