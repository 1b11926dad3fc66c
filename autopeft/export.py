"""Export a trial: the full re-runnable recipe plus an adapter directory PEFT or autopeft loads.

A LoRA-only configuration is also a standard PEFT adapter directory: ``SEQ_CLS`` on the study's
``AutoModelForSequenceClassification`` (classification, regression), ``CAUSAL_LM`` on the decoder's
``AutoModelForCausalLM`` (the ``causal_lm`` task; ``PeftModel.from_pretrained`` then generates). Other kinds
(bottleneck, prefix) are loaded with :func:`autopeft.load_adapters`.

``export_trial(study, record, directory, train=True)`` and ``autopeft train RECIPE`` run the same function, :func:`train_recipe`,
so an exported ``autopeft.yaml`` re-runs exactly the training that produced the exported weights.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .adapters import PEFTConfig, normalise_config
from .adapters.io import save_adapters
from .config import LM_METRICS, RecipeConfig, load_recipe
from .errors import ConfigError
from .models import load_causal_lm, load_model
from .yamlio import dump_yaml

if TYPE_CHECKING:
    from .records import TrialRecord
    from .study import Study

logger = logging.getLogger(__name__)

RECIPE_FILE = "autopeft.yaml"
RESULT_FILE = "train_result.json"


def recipe(study: "Study", record: "TrialRecord") -> dict[str, Any]:
    """The study settings with the chosen configuration fixed; data paths made absolute so it runs anywhere."""
    cfg = study.cfg
    data = cfg.task.data.model_dump(mode="json", exclude_none=True)
    if cfg.task.data.dataset:  # splits are named inside it; a local source must stay findable
        local = cfg.resolve(cfg.task.data.dataset)
        data["dataset"] = str(local.resolve()) if local.exists() else cfg.task.data.dataset
    else:
        for split in ("train", "validation", "test"):
            if split in data and not cfg.task.data.share(split):
                data[split] = str(cfg.resolve(data[split]).resolve())
    task = cfg.task.model_dump(mode="json", exclude_none=True)
    task["data"] = data
    _prompt_response(task)
    model = cfg.resolve(cfg.model)
    return {
        "name": f"{cfg.name}-trial{record.number}",
        "model": str(model.resolve()) if model.is_dir() else cfg.model,  # a local model dir must stay findable
        "task": task,
        "adapters": record.config,
        "hyperparameters": record.hyperparameters,
        "proxy": cfg.proxy.model_dump(mode="json", exclude_none=True),
        "train": cfg.train.model_dump(mode="json", exclude_none=True),
        "seed": cfg.seed,
        "device": cfg.device,
        "source": {"study": cfg.name, "trial": record.number, "values": record.values,
                   "fidelity": record.fidelity,
                   # adapter parameters (what PEFT counts) and everything trained (adapters + head)
                   **{k: record.attrs["measured"][k] for k in ("params", "trainable")
                      if record.attrs.get("measured", {}).get(k) is not None}},
    }


def _prompt_response(task: dict[str, Any]) -> dict[str, Any]:
    """A dumped causal_lm task block with the reader's text/label columns under the names its YAML gives them."""
    if task.get("type") == "causal_lm":
        task["data"] = {{"text": "prompt", "label": "response"}.get(k, k): v for k, v in task["data"].items()}
    return task


def check_stays_inside(directory: Path) -> None:
    """Refuse a directory holding a symbolic link that leads outside it: writing a file of the export through it
    would change a file elsewhere (export writes only into the directory the user chose)."""
    if not directory.is_dir():
        return
    root = directory.resolve()
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise ConfigError(f"'{entry}' is a symbolic link to '{entry.resolve()}', outside '{directory}'",
                              "remove the link or export into an empty directory")


def export_trial(study: "Study", record: "TrialRecord", directory: str | Path, train: bool = False) -> Path:
    """Write ``directory/autopeft.yaml`` and the adapter files for ``record``.

    Without ``train`` only the configuration is written; with it the configuration is trained at full
    fidelity (see :func:`train_recipe`) and the weights are saved too.
    """
    if record.state != "COMPLETE":
        raise ConfigError(f"trial {record.number} is {record.state.lower()}, not complete",
                          "export a completed trial (see 'autopeft pareto STUDY')")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"'{directory}' exists and is not a directory", "choose another -o path")
    check_stays_inside(directory)
    if train:
        return export_trained(study, record, directory).directory
    directory.mkdir(parents=True, exist_ok=True)
    dump_yaml(recipe(study, record), directory / RECIPE_FILE)
    config = PEFTConfig.from_dict(record.config)
    if study.cfg.task.type == "causal_lm":
        model, _ = load_causal_lm(study.cfg.model)
    else:
        num_labels = int(study.load().user_attrs.get("num_labels", 2))
        model, _ = load_model(study.cfg.model, 1 if study.cfg.task.type == "regression" else num_labels)
    save_adapters(model, config, directory, weights=False)
    logger.info("exported trial %d to %s", record.number, directory)
    return directory


def export_trained(study: "Study", record: "TrialRecord", directory: str | Path) -> "TrainedExport":
    """``export_trial(..., train=True)``, returning what the training measured (scores by split, counts)."""
    if record.state != "COMPLETE":
        raise ConfigError(f"trial {record.number} is {record.state.lower()}, not complete",
                          "export a completed trial (see 'autopeft pareto STUDY')")
    directory = Path(directory)
    # validate model and data before anything is written
    recipe_cfg = RecipeConfig.model_validate(recipe(study, record))
    recipe_cfg.base_dir = study.cfg.base_dir
    trained = train_recipe(recipe_cfg, directory, recipe_path=directory / RECIPE_FILE)
    logger.debug("exported trial %d, trained at full fidelity, to %s", record.number, directory)
    return trained


@dataclass
class TrainedExport:
    """What :func:`train_recipe` produced: the trained model (adapters in place) and where it was saved."""

    directory: Path
    model: nn.Module
    config: PEFTConfig
    score: float
    metric: str
    examples: int
    epochs: float
    seconds: float
    params: int = 0
    trainable: int = 0
    #: the score on task.data.test, when the study has a test split (``score`` is on the validation split)
    test_score: float | None = None
    test_examples: int = 0
    #: mean validation (and test) loss: cross-entropy per response token for causal_lm, per row for classification
    loss: float | None = None
    test_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        test = {"test_score": self.test_score, "test_examples": self.test_examples} if self.test_score is not None \
            else {}
        losses = {k: v for k, v in (("loss", self.loss), ("test_loss", self.test_loss)) if v is not None}
        return {"score": self.score, "split": "validation", **test, "metric": self.metric, **losses,
                "params": self.params, "trainable": self.trainable, "train_examples": self.examples,
                "epochs": self.epochs, "seconds": round(self.seconds, 2), "config": self.config.to_dict()}

    def figures(self) -> str:
        """The scores with their splits, e.g. ``accuracy=0.8400 (validation split), accuracy=0.8100 (test split)``;
        a causal LM's show its loss and perplexity beside the metric."""
        text = f"{self._figures(self.score, self.loss)} (validation split)"
        if self.test_score is not None:
            text += f", {self._figures(self.test_score, self.test_loss)} (test split)"
        return text

    def _figures(self, score: float, loss: float | None) -> str:
        parts = [f"{self.metric}={score:.4f}"]
        if self.metric in LM_METRICS and loss is not None:
            lm = {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
            parts += [f"{name}={value:.4f}" for name, value in lm.items() if name != self.metric]
        return ", ".join(parts)


def train_recipe(recipe_cfg: RecipeConfig | str | Path, directory: str | Path,
                 recipe_path: Path | None = None) -> TrainedExport:
    """Train a recipe's configuration at full fidelity and save it to ``directory``.

    Full fidelity: the whole train split (or ``train.train_examples``), ``train.epochs`` (default: the
    proxy's, after the searched hyperparameters), every validation row, with the task's proxy trainer (a causal_lm
    recipe: the causal LM trainer, response-token loss). Writes the adapter files with weights (a PEFT adapter
    directory too for LoRA-only configurations), ``train_result.json``, and the recipe itself as ``recipe_path``
    when given.
    """
    import torch

    from .trainers import make_trainer

    if not isinstance(recipe_cfg, RecipeConfig):
        recipe_cfg = load_recipe(recipe_cfg)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"'{directory}' exists and is not a directory", "choose another -o path")
    check_stays_inside(directory)
    config = PEFTConfig.from_dict(recipe_cfg.adapters)
    # the task head is initialised at random when the model has none: seed it so a re-run trains the same model
    torch.manual_seed(recipe_cfg.seed)
    trainer = make_trainer(recipe_cfg.trainer_config())
    config = normalise_config(config, trainer.info)
    hparams = dict(recipe_cfg.hyperparameters)
    hparams.update(measure_memory=False)
    if recipe_cfg.train.epochs is not None:
        hparams["epochs"] = recipe_cfg.train.epochs
    examples = min(recipe_cfg.train.train_examples or len(trainer.train), len(trainer.train))
    logger.info("training %s on %d examples x %g epoch(s)", recipe_cfg.name, examples,
                trainer.settings(hparams).epochs)
    model, result = trainer.fit(config, hparams, seed=recipe_cfg.seed, train_examples=examples)
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    if recipe_path is not None:
        dumped = recipe_cfg.model_dump(mode="json", exclude_none=True)
        _prompt_response(dumped["task"])
        dump_yaml(dumped, recipe_path)
    save_adapters(model, config, directory, weights=True)
    test, test_loss = (None, None) if trainer.test is None else trainer.evaluate_with_loss(model, trainer.test)
    trained = TrainedExport(directory, model, config, result.score, trainer.metric_name, result.examples,
                            result.epochs, result.seconds, result.params, result.trainable, test,
                            len(trainer.test) if test is not None else 0, result.validation_loss, test_loss)
    _write_json(directory / RESULT_FILE, trained.to_dict())
    logger.info("%s: %s after %d examples x %g epoch(s)%s; saved to %s", recipe_cfg.name, trained.figures(),
                trained.examples, trained.epochs, "" if test is None else f" ({trained.test_examples} test rows)",
                directory)
    return trained


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
