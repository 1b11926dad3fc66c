"""Export a trial: the full re-runnable recipe plus an adapter directory PEFT or autopeft loads."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import PEFTConfig
from .adapters.io import save_adapters
from .errors import ConfigError
from .models import load_model
from .yamlio import dump_yaml

if TYPE_CHECKING:
    from .study import Study, TrialRecord

logger = logging.getLogger(__name__)

RECIPE_FILE = "autopeft.yaml"


def recipe(study: "Study", record: "TrialRecord") -> dict[str, Any]:
    """The study settings with the chosen configuration fixed; data paths made absolute so it runs anywhere."""
    cfg = study.cfg
    data = cfg.task.data.model_dump(mode="json", exclude_none=True)
    for split in ("train", "validation"):
        data[split] = str(cfg.resolve(data[split]).resolve())
    task = cfg.task.model_dump(mode="json", exclude_none=True)
    task["data"] = data
    return {
        "name": f"{cfg.name}-trial{record.number}",
        "model": cfg.model,
        "task": task,
        "adapters": record.config,
        "hyperparameters": record.hyperparameters,
        "proxy": cfg.proxy.model_dump(mode="json", exclude_none=True),
        "seed": cfg.seed,
        "device": cfg.device,
        "source": {"study": cfg.name, "trial": record.number, "values": record.values,
                   "fidelity": record.fidelity},
    }


def export_trial(study: "Study", record: "TrialRecord", directory: Path) -> Path:
    """Write ``directory/autopeft.yaml`` and the adapter files for ``record`` (configuration only)."""
    if record.state != "COMPLETE":
        raise ConfigError(f"trial {record.number} is {record.state.lower()}, not complete",
                          "export a completed trial (see 'autopeft pareto STUDY')")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"'{directory}' exists and is not a directory", "choose another -o path")
    directory.mkdir(parents=True, exist_ok=True)
    dump_yaml(recipe(study, record), directory / RECIPE_FILE)
    config = PEFTConfig.from_dict(record.config)
    num_labels = int(study.load().user_attrs.get("num_labels", 2))
    model, _ = load_model(study.cfg.model, 1 if study.cfg.task.type == "regression" else num_labels)
    save_adapters(model, config, directory, weights=False)
    logger.info("exported trial %d to %s", record.number, directory)
    return directory
