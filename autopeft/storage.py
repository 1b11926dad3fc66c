"""Optuna storages chosen by URL, with passwords masked in anything shown to the user."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import optuna

from .errors import StorageError

#: environment variable that overrides the storage URL of every study (keeps passwords out of YAML)
STORAGE_ENV = "AUTOPEFT_STORAGE"
#: a running trial whose worker sent no heartbeat for GRACE_S is failed (and may be retried) on the next start
HEARTBEAT_S = 10
GRACE_S = 30


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def storage_exists(url: str) -> bool:
    path = sqlite_path(url)
    return path.exists() if path is not None else True


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """Open (and for SQLite, when ``create``, make the folder of) an RDB storage; one-line error if unreachable."""
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"storage '{url}' does not exist", "run 'autopeft run STUDY' first or pass --storage")
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of '{url}' ({exc.strerror})",
                                   "choose a writable path") from None
    elif not re.match(r"^[a-z0-9+]+://", url):
        raise StorageError(f"'{mask_url(url)}' is not a storage URL", "use sqlite:///path.db or postgresql://user@host/db")
    try:
        kwargs = {"pool_pre_ping": True} if path is None else {"connect_args": {"timeout": 60}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
    except ImportError as exc:
        raise StorageError(f"no database driver for '{mask_url(url)}' ({exc})",
                           "pip install 'psycopg[binary]' for PostgreSQL") from None
    except Exception as exc:  # sqlalchemy's OperationalError & co: the server is unreachable
        first = mask_url(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage '{mask_url(url)}' ({first[:200]})",
                           "check the URL, that the server runs and the credentials") from None


def default_storage(url_from_yaml: str | None, name: str) -> str:
    return os.environ.get(STORAGE_ENV) or url_from_yaml or f"sqlite:///runs/{name}.db"
