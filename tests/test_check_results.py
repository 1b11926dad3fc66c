"""benchmarks/check_results.py: every data-backed figure in benchmarks/RESULTS.md matches its file in
benchmarks/data/, and a figure that does not is caught and named."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "check_results.py"
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=900)


@pytest.fixture(scope="module")
def check_results():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import check_results as module

    yield module
    sys.path.remove(str(REPO / "benchmarks"))


def test_every_quoted_figure_matches_the_committed_data():
    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all hold" in r.stdout


def test_a_wrong_quoted_value_is_caught_and_named(tmp_path):
    text = RESULTS.read_text()
    right = "| mobo | 0.1380 ± 0.0194 | 0.1677 ± 0.0045 | **0.1759 ± 0.0021** |"
    assert text.count(right) == 1
    wrong = tmp_path / "RESULTS.md"
    wrong.write_text(text.replace(right, right.replace("0.1759", "0.1859")))
    r = run("--results", str(wrong), "--only", "league.peft-autopeft")
    assert r.returncode == 1
    assert "FAIL league.peft-autopeft.mobo" in r.stdout
    assert "FAIL league.peft-autopeft.gp" not in r.stdout


def test_a_figure_its_data_contradict_is_caught(check_results):
    """The quoted text is where the registry says, but the file gives another value: a mismatch, with both."""
    c = check_results.Claim("speed.s5.median_ratio", "Seconds per trial", "Median ratio 3.98", "proxy_speed_s5.json",
                            lambda: f"Median ratio {check_results.json_file('proxy_speed_s5.json')['ratio_median']:.2f}")
    secs = {"Seconds per trial: naive vs proxy": check_results.normalise("... **Median ratio 3.98** (goal ≥ 3) ...")}
    problem = check_results.check_claim(c, secs)
    assert problem and "'Median ratio 3.98'" in problem and "'Median ratio 3.99'" in problem


def test_a_tolerance_claim_compares_numbers(check_results):
    c = check_results.Claim("x", "S", "took 12.0 s", "f", lambda: "took 12.04 s", tol=0.05)
    assert check_results.check_claim(c, {"S": "it took 12.0 s"}) is None
    c = check_results.Claim("x", "S", "took 12.0 s", "f", lambda: "took 12.4 s", tol=0.05)
    assert "tolerance" in check_results.check_claim(c, {"S": "it took 12.0 s"})


def test_a_section_without_data_must_say_so(check_results):
    text = RESULTS.read_text() + "\n### A new measurement\n\nIt ran 3.2× faster.\n"
    problems = check_results.audit(check_results.sections(text), check_results.CLAIMS)
    assert problems == ["section 'A new measurement' has no figure in the registry and does not say its numbers "
                        "are 'not reproducible (no data file)'"]
    marked = text.replace("It ran 3.2× faster.", "It ran 3.2× faster (not reproducible (no data file)).")
    assert check_results.audit(check_results.sections(marked), check_results.CLAIMS) == []


def test_the_replays_recompute_from_their_data(check_results):
    """--replay re-runs a saved replay's command on its CSV / log (one replay of 30 configs, about 10 s)."""
    check_results.RECOMPUTE_REPLAYS = True
    check_results.replay.cache_clear()
    try:
        secs = check_results.sections(RESULTS.read_text())
        (c,) = [c for c in check_results.CLAIMS if c.id == "s5.replay.single"]
        assert check_results.check_claim(c, secs) is None
    finally:
        check_results.RECOMPUTE_REPLAYS = False
        check_results.replay.cache_clear()
