"""Storage faults a user meets: a SQLite folder that does not exist yet, a database lost in the middle of a run."""
from __future__ import annotations

import psycopg
import pytest
from clirunner import Command, run_cli, stored_trials, training_trial, wait_until
from sqlalchemy.engine import make_url
from test_workers import slow_study

from autopeft.storage import mask_url


def test_a_missing_sqlite_folder_is_created_and_said(write_study, tmp_path):
    folder = tmp_path / "new" / "deeper"
    r = run_cli("run", str(write_study()), "--trials", "1", "--storage", f"sqlite:///{folder}/tiny.db")
    assert r.code == 0, r.err
    assert (folder / "tiny.db").is_file()
    said = [line for line in r.err_lines if "created the folder" in line]
    assert len(said) == 1 and str(folder) in said[0], r.err


def _admin(url: str):
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname="postgres",
                           autocommit=True), u.database


@pytest.mark.postgres
def test_postgres_lost_mid_run_ends_in_one_line_exit_2_and_resumes(write_study, postgres_db):
    """The database stops answering while a trial trains (here: it refuses connections and every session is cut,
    as in a restart): one line naming the storage (password masked) and how to resume, exit 2, no traceback;
    finished trials are all there when it is back, and the same command resumes."""
    study = slow_study(write_study)
    env = {"AUTOPEFT_STORAGE": postgres_db}
    cmd = Command(["run", str(study), "--trials", "50"], env=env)
    wait_until(lambda: any(t.state.name == "COMPLETE" for t in stored_trials(postgres_db)) and
               training_trial(postgres_db), timeout=300, what="a finished trial and one in training")
    done = {t.number for t in stored_trials(postgres_db) if t.state.name == "COMPLETE"}
    admin, name = _admin(postgres_db)
    with admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        r = cmd.wait(300)
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    assert r.code == 2, r.err
    assert "Traceback" not in r.err and "Exception in thread" not in r.err, r.err
    errors = [line for line in r.err_lines if line.startswith("error:")]
    assert errors == r.err_lines[-1:], r.err
    assert f"lost the storage '{mask_url(postgres_db)}'" in errors[0] and "rerun" in errors[0], errors[0]
    assert make_url(postgres_db).password not in r.err
    after = {t.number for t in stored_trials(postgres_db) if t.state.name == "COMPLETE"}
    assert done <= after
    resumed = run_cli("run", str(study), "--trials", str(len(after) + 1), env=env)
    assert resumed.code == 0, resumed.err
