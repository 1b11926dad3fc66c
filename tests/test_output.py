"""What a normal run prints: autopeft's lines only (other libraries' warnings go to the -v log), the first of
them at once."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from clirunner import run_cli


def test_first_line_comes_before_torch_is_loaded(write_study):
    """The first line names what loads and how much will run, before the slow imports (torch, transformers)."""
    study = write_study(references="true")
    script = textwrap.dedent(f"""
        import sys
        import autopeft.cli as cli
        def stop(args, cfg=None):
            print("torch loaded" if "torch" in sys.modules else "torch not loaded", file=sys.stderr)
            raise SystemExit(0)
        cli._study = stop
        cli.main(["run", {str(study)!r}, "--trials", "7"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("study 'tiny': loading model ") and "train.tsv" in lines[0], proc.stderr
    assert "5 reference configurations and 7 trials" in lines[0]
    assert lines[1] == "torch not loaded"


def test_third_party_warnings_only_in_the_verbose_log(write_study, tmp_path):
    # mobo's third trial imports botorch/gpytorch, whose torch.jit.script use warns; PYTHONWARNINGS (read at
    # start-up, hence a fresh interpreter) shows every warning, as a user's environment may
    study = write_study(text=write_study().read_text().replace("optimizer: {name: random}",
                                                               "optimizer: {name: mobo, initial_trials: 1}"))
    env = {"PYTHONWARNINGS": "always", "CUDA_HOME": str(tmp_path)}
    r = run_cli("run", str(study), env=env, fresh=True)
    assert r.code == 0, r.err
    assert "Warning" not in r.err and "warnings.warn" not in r.err, r.err
    assert r.err_lines[0].startswith("study 'tiny': loading model")
    assert r.err_lines[1].startswith("loaded ") and "64 train / 40 validation rows" in r.err_lines[1]
    assert sum(line.startswith("trial ") and "/3 (#" in line for line in r.err_lines) == 3

    (tmp_path / "tiny.db").unlink()
    r = run_cli("-v", "run", str(study), env=env, fresh=True)
    assert r.code == 0 and "DeprecationWarning: `torch.jit.script`" in r.err


def test_a_live_line_inside_trials_on_a_terminal_only(write_study):
    """On a terminal a live line (step, loss, seconds left) is redrawn inside each run and wiped before the next
    log line; piped, stderr holds plain lines only."""
    import os
    import pty

    study = write_study()
    study.write_text(study.read_text().replace("epochs: 1,", "epochs: 8,"))
    script = ("import autopeft.logs as logs, sys\nlogs.LIVE_EVERY_S = 0\nfrom autopeft.cli import main\n"
              f"sys.exit(main(['run', {str(study)!r}, '--trials', '1']))\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(300) == 0
    text = seen.decode()
    assert re.search(r"\r\x1b\[K  training: step \d+/32, loss \d\.\d{4}, \d+s left", text), text
    # the live line is wiped before the next log line, which then starts at the line's beginning
    assert re.search(r"step 32/32, loss \d\.\d{4}, 0s left\r\x1b\[Ktrial 0 ", text), text

    piped = run_cli("run", str(study), "--trials", "2")
    assert piped.code == 0 and "\r" not in piped.err and "step" not in piped.err, piped.err
