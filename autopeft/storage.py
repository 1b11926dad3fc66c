"""Optuna storages chosen by URL, with passwords masked in anything shown to the user."""
from __future__ import annotations

import logging
import os
import random
import re
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
import sqlalchemy.exc

from .errors import StorageError

logger = logging.getLogger(__name__)

#: environment variable that overrides the storage URL of every study (keeps passwords out of YAML)
STORAGE_ENV = "AUTOPEFT_STORAGE"
#: defaults of the study YAML's ``recovery`` block: a running trial whose worker sent no heartbeat for GRACE_S
#: is failed (and may be retried) by the next worker that looks
HEARTBEAT_S = 10
GRACE_S = 30

# scheme://userinfo@rest; greedy up to the last '@' so an unescaped '@' in a password is masked too
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@(?P<rest>.*)$", re.S)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|pass)=)([^&#\s]*)")


def _has_password(userinfo: str) -> bool:
    """``user:password`` (a user name has no '/': ``sqlite:///a:b@c.db`` is a path, not a login)."""
    return ":" in userinfo and "/" not in userinfo.split(":", 1)[0]


def url_secrets(url: str) -> list[str]:
    """The passwords a storage URL carries (userinfo and ``?password=``), raw and percent-decoded."""
    found: list[str] = []
    m = _USERINFO.match(url)
    if m and _has_password(m["userinfo"]):
        found.append(m["userinfo"].split(":", 1)[1])
    found += [v for _, v in _QUERY_SECRET.findall(url)]
    return [s for secret in found if secret for s in {secret, unquote(secret)}]


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (also ``?password=``)."""
    m = _USERINFO.match(url)
    if m and _has_password(m["userinfo"]):
        url = f"{m['scheme']}{m['userinfo'].split(':', 1)[0]}:***@{m['rest']}"
    return _QUERY_SECRET.sub(r"\1***", url)


def redact(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with every password of ``url`` replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+", lambda m: mask_url(m.group()), text)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def storage_exists(url: str) -> bool:
    path = sqlite_path(url)
    return path.exists() if path is not None else True


def open_storage(url: str, create: bool = True, heartbeat: int = HEARTBEAT_S,
                 grace: int = GRACE_S) -> optuna.storages.RDBStorage:
    """Open (and for SQLite, when ``create``, make the folder of) an RDB storage; one-line error if unreachable.

    Trials run under it beat every ``heartbeat`` seconds; one silent for ``grace`` seconds counts as stale.
    """
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            raise StorageError(f"storage '{url}' does not exist", "run 'autopeft run STUDY' first or pass --storage")
        if create and not path.parent.is_dir():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of '{url}' ({exc.strerror})",
                                   "choose a writable path") from None
            logger.info("created the folder %s for the storage %s", path.parent, url)
    elif not re.match(r"^[a-z0-9+]+://", url):
        raise StorageError(f"'{mask_url(url)}' is not a storage URL", "use sqlite:///path.db or postgresql://user@host/db")
    try:
        return _rdb_storage(url, path is None, heartbeat, grace)
    except ImportError as exc:
        raise StorageError(f"no database driver for '{mask_url(url)}' ({redact(str(exc), url)})",
                           "pip install 'psycopg[binary]' for PostgreSQL") from None
    except Exception as exc:  # sqlalchemy's OperationalError & co: the server is unreachable
        # driver messages may quote the DSN: redact before anything reaches the user
        first = redact(str(exc).strip().splitlines()[0], url) if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage '{mask_url(url)}' ({first[:200]})",
                           "check the URL, that the server runs and the credentials") from None


def storage_lost(exc: BaseException) -> bool:
    """True for an error of a database that stopped answering (server stopped, connection cut, SQLite file removed,
    unreadable or replaced), as opposed to a bug. optuna wraps such errors in a StorageInternalError."""
    if isinstance(exc, optuna.exceptions.StorageInternalError):
        exc = exc.__cause__
    lost = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
            sqlalchemy.exc.TimeoutError)
    # a bare DatabaseError is e.g. SQLite's "file is not a database"; its subclasses (IntegrityError, DataError,
    # ProgrammingError, ...) are bugs and stay tracebacks
    return isinstance(exc, lost) or type(exc) is sqlalchemy.exc.DatabaseError


def lost_storage_error(url: str, exc: BaseException) -> StorageError:
    """The one-line error for ``exc`` (see storage_lost) on the storage ``url``, password masked."""
    if isinstance(exc, StorageError):  # raised by open_storage: its problem already names the URL, masked
        detail = exc.problem
    else:
        cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ else exc
        text = str(getattr(cause, "orig", None) or cause).strip()
        detail = redact(text.splitlines()[0], url)[:200] if text else type(cause).__name__
    return StorageError(f"lost the storage '{mask_url(url)}' ({detail})",
                        "check that the database is reachable (server running, file in place and writable), then "
                        "rerun the same command to resume: finished trials are kept")


def _rdb_storage(url: str, server: bool, heartbeat: int, grace: int, attempts: int = 5) -> optuna.storages.RDBStorage:
    kwargs = {"pool_pre_ping": True} if server else {"connect_args": {"timeout": 60}}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                                  grace_period=grace)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as exc:
            # workers that start together on a fresh database all create optuna's tables; all but one collide
            # (duplicate pg_type / relation; SQLite: "table ... already exists") and find the tables there on the
            # next try. Any other OperationalError is a database that is not there: no retry.
            collided = not isinstance(exc, sqlalchemy.exc.OperationalError) or "already exists" in str(exc)
            if not collided or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def default_storage(url_from_yaml: str | None, name: str) -> str:
    """The storage URL of a study: $AUTOPEFT_STORAGE, else the YAML's ``storage``, else ``runs/NAME.db``."""
    return os.environ.get(STORAGE_ENV) or url_from_yaml or f"sqlite:///runs/{name}.db"
