"""The report: computed infos, the self-contained HTML, rendering in headless Chromium, the live dashboard."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest

from autopeft import Study
from autopeft.cli import main
from autopeft.pareto import hypervolume_frame
from autopeft.report import (
    build_report,
    get_effect_info,
    get_hypervolume_info,
    get_layer_info,
    get_pareto_infos,
    get_points,
    render_html,
    write_report,
)
from autopeft.space import SearchSpace

NAMES = ["score", "params", "memory"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_synthetic_study(write_study, n: int = 16, reference_point: bool = True, references: bool = True,
                         seeds: bool = True) -> Study:
    """A stored study shaped like the ones ``Study.optimize`` writes (no training: values are made up from
    the configuration), optionally with two seeds, a reference point and hand-made reference trials."""
    study = Study.from_yaml(write_study())
    storage = optuna.storages.RDBStorage(study.storage_url)
    ostudy = optuna.create_study(study_name=study.cfg.name, storage=storage,
                                 directions=["maximize", "minimize", "minimize"])
    ostudy.set_user_attr("objectives", NAMES)
    ostudy.set_user_attr("model", "tiny-bert")
    if reference_point:
        ostudy.set_user_attr("reference_point", {"score": 0.4, "params": 5e4, "memory": 64 * 2**20})
    space = SearchSpace.from_spec(study._space_spec, 2)  # the space of the study file: the tests' tiny space
    rng = np.random.default_rng(0)
    for i in range(n):
        values = {p.name: p.distribution.choices[rng.integers(len(p.distribution.choices))]
                  if hasattr(p.distribution, "choices") else float(rng.uniform(1e-3, 1e-2)) for p in space.params}
        config, hparams = space.decode(values)
        params = sum(sum(s.layers.values()) * 100 for s in config.modules.values())
        score = 0.5 + 0.35 * (1 - np.exp(-params / 800)) + float(rng.normal(0, 0.02))
        memory = (8 + params / 500 + float(rng.uniform(0, 2))) * 2**20
        examples = 64 if i % 3 else 32  # two fidelities
        attrs = {"config": config.to_dict(), "hyperparameters": hparams, "fidelity": f"proxy: {examples} examples x 1 epoch(s)",
                 "measured": {"examples": examples, "epochs": 1.0, "params_pct": 100 * params / 1.2e5}}
        if seeds:
            attrs["seed"] = i % 2
        ostudy.add_trial(optuna.trial.create_trial(params=values, distributions=space.distributions,
                                                   values=[score, params, memory], user_attrs=attrs))
    if references:
        sibling = optuna.create_study(study_name=f"{study.cfg.name}.references", storage=storage,
                                      directions=["maximize", "minimize", "minimize"])
        # as Study.run_references stores them: user attr "reference" = the name
        for name, params, score, config in [
                ("LoRA (r=8, query/value)", 2048, 0.8, {"lora": {"size": 8, "layers": [0, 1]}}),
                ("full fine-tuning", 120000, 0.88, {"full_finetune": True})]:
            sibling.add_trial(optuna.trial.create_trial(
                values=[score, params, 40 * 2**20],
                user_attrs={"reference": name, "config": config, "fidelity": "proxy: 64 examples x 1 epoch(s)"}))
    return study


# ------------------------------------------------------------------ compute the info
def test_infos_from_a_synthetic_study(write_study):
    study = make_synthetic_study(write_study)
    points = get_points(study, study.load())
    refs = [p for p in points if p.reference]
    assert {p.reference for p in refs} == {"LoRA (r=8, query/value)", "full fine-tuning"}
    assert all(p.number < 0 for p in refs)  # never confused with trial numbers
    assert any(p.on_front for p in points) and not all(p.on_front for p in points)
    assert {p.group for p in points if not p.reference} == {"seed=0", "seed=1"}

    infos = get_pareto_infos(points, NAMES)
    assert [i.axes for i in infos] == [("score", "params"), ("score", "memory"), ("params", "memory"),
                                       ("score", "params", "memory")]

    series = {}
    for p in points:
        series.setdefault(p.group, []).append(p)
    hv = get_hypervolume_info(series, NAMES, ["maximize", "minimize", "minimize"],
                              study.load().user_attrs["reference_point"])
    assert not hv.frame.derived and hv.frame.reference_values()["params"] == pytest.approx(5e4)
    assert set(hv.series) == {"seed=0", "seed=1"}
    for numbers, values in hv.series.values():
        assert numbers == sorted(numbers) and len(numbers) == 8
        assert all(0 <= v <= 1 for v in values) and all(b >= a for a, b in zip(values, values[1:]))
    assert hv.references is not None and 0 < hv.references < 1  # the LoRA reference is inside the box

    layers = get_layer_info(points, 2)
    front = [p for p in points if p.on_front]
    assert layers.trials == [p.reference or f"trial {p.number}" for p in sorted(front, key=lambda p: -p.values["score"])]
    for kind, sizes in layers.sizes.items():
        assert sizes.shape == (len(front), 2)
        for row, p in zip(sizes, sorted(front, key=lambda p: -p.values["score"])):
            body = p.config.get(kind)
            assert (row > 0).sum() == (len(body["layers"]) if body else 0)

    effects = get_effect_info(points, NAMES)
    assert effects.rho.shape == (3, len(effects.parameters)) and effects.n == 16
    finite = effects.rho[np.isfinite(effects.rho)]
    assert finite.size and np.all(np.abs(finite) <= 1)
    # made-up params grow with the serial size: their rank correlation must be positive
    assert effects.rho[1, effects.parameters.index("serial.size")] > 0


def test_reference_point_is_derived_when_absent(write_study):
    study = make_synthetic_study(write_study, reference_point=False, references=False, seeds=False)
    data = build_report(study)
    assert any("derived from the data" in n for n in data.notes)
    values = np.array([[0.5, 10, 1e6], [0.9, 1e4, 2e6]])
    frame = hypervolume_frame(values, NAMES, ["maximize", "minimize", "minimize"])
    assert frame.derived and frame.reference_values()["score"] < 0.5


def test_warm_started_trials_have_their_own_marker_and_legend(write_study, tmp_path):
    """Trials a warm start enqueued are squares with their own legend entry ("warm start: <source>") in every
    Pareto plot, 2-D and 3-D; the others keep their circles. No training: made-up values as above."""
    make_synthetic_study(write_study, n=8, references=False, seeds=False)  # the source: study "tiny"
    path = write_study(name="new.yaml")
    path.write_text(path.read_text().replace("name: tiny", "name: new").replace("tiny.db", "new.db"))
    study = Study.from_yaml(path)
    assert study.warm_start(str(tmp_path / "study.yaml")) > 0
    ostudy, space = optuna.load_study(study_name="new", storage=study.storage_url), study.space
    rng = np.random.default_rng(1)

    def made_up(params: dict) -> tuple[dict, list[float]]:
        config, _ = space.decode(params)
        n = sum(sum(s.layers.values()) * 100 for s in config.modules.values())
        return config.to_dict(), [0.5 + 0.35 * (1 - np.exp(-n / 800)) + float(rng.normal(0, 0.02)), n,
                                  (8 + n / 500 + float(rng.uniform(0, 2))) * 2**20]

    warm = set()
    while any(t.state == optuna.trial.TrialState.WAITING for t in ostudy.get_trials(deepcopy=False)):
        trial = ostudy.ask(space.distributions)  # the enqueued configuration, marked by the warm start
        config, values = made_up(trial.params)
        trial.set_user_attr("config", config)
        ostudy.tell(trial, values)
        warm.add(trial.number)
    for _ in range(6):  # searched trials after them
        params = {p.name: p.distribution.choices[rng.integers(len(p.distribution.choices))]
                  if hasattr(p.distribution, "choices") else float(rng.uniform(1e-3, 1e-2)) for p in space.params}
        config, values = made_up(params)
        ostudy.add_trial(optuna.trial.create_trial(params=params, distributions=space.distributions, values=values,
                                                   user_attrs={"config": config}))
    marked = {t.number for t in ostudy.trials if t.user_attrs.get("warm_start", "").startswith("tiny trial ")}
    assert marked == warm and len(ostudy.trials) == len(warm) + 6

    figures = {f["id"]: f["figure"] for f in json.loads(build_report(study).to_json())["figures"]}
    pareto = [fid for fid in figures if fid.startswith("pareto-")]
    assert pareto == ["pareto-score-params", "pareto-score-memory", "pareto-params-memory", "pareto-3d"]
    for fid in pareto:
        traces = {t["name"]: t for t in figures[fid]["data"]}
        shown = {name: {int(n) for n in re.findall(r"<b>trial (\d+)</b>", "".join(t["text"]))}
                 for name, t in traces.items()}
        assert shown["warm start: tiny"] == warm, fid  # exactly the warm-started trials, each once
        assert all(not numbers & warm for name, numbers in shown.items() if name != "warm start: tiny"), fid
        assert set().union(*shown.values()) == set(range(len(warm) + 6)), fid
        assert traces["warm start: tiny"]["marker"]["symbol"] == "square", fid
        assert all(t["marker"]["symbol"] != "square" for name, t in traces.items() if name != "warm start: tiny")
        assert all("warm start: tiny trial" in text for text in traces["warm start: tiny"]["text"])
        assert len(traces["warm start: tiny"]["marker"]["color"]) == len(warm)  # front or faded, per point
        assert {t["type"] for t in traces.values()} == {"scatter3d" if fid == "pareto-3d" else "scatter"}


# ------------------------------------------------------------------ the HTML file
def test_report_is_self_contained(write_study, tmp_path):
    study = make_synthetic_study(write_study)
    out = write_report(study, tmp_path / "report.html")
    text = out.read_text()
    assert re.search(r"<script[^>]+src=", text) is None and re.search(r"<link[^>]+href=", text) is None
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text,
                                re.S).group(1).replace("<\\/", "</"))
    ids = [f["id"] for f in data["figures"]]
    assert ids == ["pareto-score-params", "pareto-score-memory", "pareto-params-memory", "pareto-3d",
                   "hypervolume", "layers", "parallel", "effects"]
    assert data["table"]["columns"][0] == "trial" and data["table"]["columns"][-1] == "export"
    searched = [r for r in data["table"]["rows"] if isinstance(r[0], int)]
    assert searched and all(f"--trial {r[0]} " in r[-1] for r in searched)
    three_d = data["figures"][ids.index("pareto-3d")]["figure"]["data"]
    assert {t["name"] for t in three_d} == {"Pareto front", "dominated", "hand-made references"}
    assert all(t["type"] == "scatter3d" for t in three_d)


def test_cli_report_on_a_real_study_and_bad_input(write_study, tmp_path, capsys):
    path = write_study()
    missing = tmp_path / "never.html"
    assert main(["report", str(path), "-o", str(missing)]) == 2  # nothing stored yet
    err = capsys.readouterr().err
    assert "no storage" in err and len(err.strip().splitlines()) == 1 and not missing.exists()

    assert main(["run", str(path), "--trials", "3"]) == 0
    out = tmp_path / "report.html"
    assert main(["report", str(path), "-o", str(out)]) == 0
    assert f"report written to {out}" in capsys.readouterr().out
    assert out.stat().st_size > 1_000_000  # plotly.js is inlined

    assert main(["report", str(path), "-o", str(tmp_path)]) == 2  # a directory, not a file
    assert "is a directory" in capsys.readouterr().err
    assert main(["report", str(path), "-o", str(out), "--compare", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------ real headless Chromium
def _chromium(tmp_path: Path, *args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
             # WebGL (3-D scatter, parallel coordinates) through the software rasteriser
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--virtual-time-budget=20000"]
    proc = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _status(dom: str) -> dict:
    match = re.search(r'<pre id="autopeft-status"[^>]*data-done="1"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, "the page never finished drawing (no status element)"
    import html

    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_draws_every_plot_in_chromium(write_study, tmp_path):
    study = make_synthetic_study(write_study)
    report = write_report(study, tmp_path / "report.html")
    status = _status(_chromium(tmp_path, "--dump-dom", report.as_uri()))
    assert status["errors"] == []
    assert status["plots"] == 8 and status["drawn"] == 8, status["failed"]
    assert status["resources"] == []  # self-contained: the page fetched nothing
    assert status["rows"] > 0
    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1400,4600", f"--screenshot={shot}", report.as_uri())
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the live dashboard
@pytest.fixture
def dashboard(write_study):
    from autopeft.dashboard import DashboardServer

    study = make_synthetic_study(write_study, n=6)
    server = DashboardServer(study, port=0, interval=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.headers["Content-Type"], r.read()


def test_dashboard_serves_live_data(dashboard):
    assert dashboard.server_address[0] == "127.0.0.1"
    status, kind, body = _get(dashboard.url)
    assert status == 200 and kind.startswith("text/html")
    page = body.decode()
    assert '<script src="plotly.min.js"></script>' in page and '"url": "data.json"' in page
    status, kind, body = _get(dashboard.url + "plotly.min.js")
    assert status == 200 and len(body) > 1_000_000
    before = json.loads(_get(dashboard.url + "data.json")[2])
    assert len(before["figures"]) == 8

    # a trial finishing while the page is open changes what the page polls
    ostudy = dashboard.study.load()
    last = ostudy.trials[-1]
    ostudy.add_trial(optuna.trial.create_trial(params=last.params, distributions=last.distributions,
                                               values=[0.99, 10.0, 2**20], user_attrs=last.user_attrs))
    after = json.loads(_get(dashboard.url + "data.json")[2])
    assert after["version"] != before["version"]
    assert len(after["table"]["rows"]) >= 1 and any(r[1] == 0.99 for r in after["table"]["rows"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_live_dashboard_draws_in_chromium(dashboard, tmp_path):
    status = _status(_chromium(tmp_path, "--dump-dom", dashboard.url))
    assert status["errors"] == [] and status["drawn"] == status["plots"] == 8, status
    assert all(r.startswith(dashboard.url) for r in status["resources"])  # only its own server


def test_storage_is_readable_by_optuna_dashboard(write_study):
    """README promises `optuna-dashboard URL` shows a study: check through its WSGI app (no server needed)."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard (a dev extra)")
    from wsgiref.util import setup_testing_defaults

    study = make_synthetic_study(write_study, n=4, references=False)
    app = optuna_dashboard.wsgi(study.storage_url)

    def get(path: str):
        env: dict = {}
        setup_testing_defaults(env)
        env.update(PATH_INFO=path, REQUEST_METHOD="GET")
        status = []
        body = b"".join(app(env, lambda s, headers, exc=None: status.append(s)))
        return status[0], json.loads(body)

    status, summaries = get("/api/studies")
    assert status.startswith("200")
    (summary,) = [s for s in summaries["study_summaries"] if s["study_name"] == study.cfg.name]
    assert summary["directions"] == ["maximize", "minimize", "minimize"]
    status, detail = get(f"/api/studies/{summary['study_id']}")
    assert status.startswith("200") and len(detail["trials"]) == 4
    assert {"config", "hyperparameters", "fidelity"} <= {a["key"] for a in detail["trials"][0]["user_attrs"]}


def test_cli_dashboard_without_a_stored_study_exits_2(write_study, capsys):
    assert main(["dashboard", str(write_study()), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no storage" in err and len(err.strip().splitlines()) == 1


def test_render_html_escapes_script_end():
    from autopeft.report import ReportData

    data = ReportData("x</script><b>", [("study", "</script>")], [], ["trial"], [["</script>"]])
    page = render_html(data, inline_plotly=False)
    assert page.count("</script>") == page.count("<script")
