"""benchmarks/report_mer.py: the stored MER runs merged into one table, and issue 12's verdict."""

from __future__ import annotations

import json

from benchmarks import report_mer


def _run(label, rows):
    return {"label": label, "command": f"pyflowops mer ... ({label})", "clips": 12, "subjects": 4, "size": 48,
            "class_counts": {"negative": 4, "positive": 4, "surprise": 4}, "options": {"epochs": 30},
            "methods": {name: {"uf1": uf1, "uar": uf1, "accuracy": uf1, "seconds_per_clip": 0.1}
                        for name, uf1 in rows.items()}}


def test_rows_of_several_runs_merge_and_the_verdict_compares_the_best_rows(tmp_path):
    path = tmp_path / "mer.json"
    path.write_text(json.dumps({"setup": "Setup text.", "notes": ["A note."], "runs": [
        _run("recipe", {"dis": 0.8, "tvl1": 0.7, "gt-expression": 1.0}),
        _run("fine-tuned", {"decflow": 0.85, "decflow-facial": 0.9})]}))
    text = "\n".join(report_mer.section({}, tmp_path, path))
    assert "| decflow (fine-tuned) | 0.850 |" in text and "| dis | 0.800 |" in text  # labels name networks only
    assert "12 clips of 4 subjects (negative 4, positive 4, surprise 4)" in text
    assert "**met** (best of ours decflow (fine-tuned) UF1 0.850 vs best classical dis 0.800)" in text
    assert text.index("gt-expression") < text.index("decflow-facial (fine-tuned)") < text.index("| dis |")
    assert "A note." in text


def test_a_miss_and_missing_rows():
    rows = {"decflow": {"uf1": 0.3}, "decflow-facial": {"uf1": 0.95}, "dis": {"uf1": 0.8}}
    assert report_mer.verdict(rows)[0] == "MISSED"  # the facial row is not the expression flow
    assert report_mer.verdict({"dis": {"uf1": 0.8}})[0] == "not measured"


def test_no_stored_runs_no_section(tmp_path):
    assert report_mer.section({}, tmp_path, tmp_path / "none.json") == []
