"""The package's import structure: no module imports itself back through others, imports inside functions
included (import-linter's contracts in pyproject.toml keep the layers; `lint-imports` runs in CI)."""
import grimp


def _cycles(graph) -> list[list[str]]:
    found = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                found.add(tuple([module, *back]))
    return sorted(found)


def test_no_import_cycles_counting_imports_inside_functions():
    graph = grimp.build_graph("autopeft", exclude_type_checking_imports=True, cache_dir=None)
    assert len(graph.modules) > 30  # the whole package was read
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    assert _cycles(graph) == []
    graph.add_import(importer="p.b", imported="p.a")
    assert _cycles(graph) == [("p.a", "p.b", "p.a"), ("p.b", "p.a", "p.b")]


def test_the_layer_contracts_in_pyproject_are_kept():
    """`lint-imports` (import-linter, in the dev extra; also run by .ci/run) against pyproject.toml's contracts."""
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
