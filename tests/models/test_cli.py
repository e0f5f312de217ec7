"""The ``pyflowops`` command line: ``info`` reports, ``bench`` runs suites and the report, bad input exits 2."""

import json

import pytest

from pyflowops_models.cli import main


def test_info_lists_backends_and_models(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "cpu" in info["backends"] and info["models"] == ["raft", "gma", "decflow", "srflownet"]


def test_bench_runs_the_suites_then_the_report(tmp_path, capsys):
    # a stand-in checkout: one benchmark suite and a report module that lists the JSON files it merges
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "test_corr.py").write_text("def test_one(benchmark):\n    benchmark(sum, [1, 2])\n")
    (bench / "report.py").write_text(
        "import sys, json\nfrom pathlib import Path\nargs = sys.argv[1:]\nout = Path(args[args.index('--out') + 1])\n"
        "out.write_text(' '.join(Path(a).name for a in args[:args.index('--out')]))\n")
    out = tmp_path / "R.md"
    assert main(["bench", "--repo", str(tmp_path), "--suites", "corr", "--out", str(out)]) == 0
    assert out.read_text() == "corr.json"
    assert json.loads((bench / ".raw" / "corr.json").read_text())["benchmarks"][0]["name"] == "test_one"
    assert f"wrote {out}" in capsys.readouterr().err


def test_bench_says_what_is_missing(tmp_path, capsys):
    assert main(["bench", "--repo", str(tmp_path)]) == 2
    assert "no benchmarks/ folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--suites", "corr,warp"])
    assert "unknown suite(s) warp" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
