"""The "Micro-expression recognition" section of benchmarks/RESULTS.md (called by ``benchmarks.report``).

MER runs take tens of minutes (flows of hundreds of clips, 60 folds per method), too long for
``make bench``; their numbers are kept in ``benchmarks/mer_results.json``: a ``setup`` text and a
list of ``runs``, each the ``results.json`` of one ``pyflowops mer`` run (predictions dropped) with
a ``label`` (what its networks are: appended to their rows) and the ``command`` that made it. The section merges the runs' rows (they share the
clips, splits and seeds: the table says so only when their clip and subject counts agree) and
judges issue 12's target: DecFlow's expression flow beats every classical method in UF1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CLASSICAL", "MER_RESULTS", "section", "verdict"]

MER_RESULTS = Path(__file__).resolve().parent / "mer_results.json"
CLASSICAL = ("farneback", "dis", "tvl1")


def verdict(rows: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """("met" | "MISSED" | "not measured", why): the best ``decflow*`` expression row against the best classical row."""
    ours = {k: v for k, v in rows.items() if k.startswith("decflow") and "facial" not in k and "head" not in k}
    classical = {k: v for k, v in rows.items() if k.split(" ")[0] in CLASSICAL}
    if not ours or not classical:
        return "not measured", "needs a decflow expression row and the classical rows"
    best_ours = max(ours, key=lambda k: ours[k]["uf1"])
    best_classical = max(classical, key=lambda k: classical[k]["uf1"])
    a, b = ours[best_ours]["uf1"], classical[best_classical]["uf1"]
    why = f"best of ours {best_ours} UF1 {a:.3f} vs best classical {best_classical} {b:.3f}"
    return ("met" if a > b else "MISSED"), why


def section(data: dict[str, Any], out: Path, path: Path = MER_RESULTS) -> list[str]:
    """Markdown lines (empty when ``path`` does not exist)."""
    del data, out
    if not path.exists():
        return []
    stored = json.loads(path.read_text())
    runs = stored["runs"]
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, m in run["methods"].items():
            network = name.startswith(("decflow", "model"))  # the label names the checkpoint
            rows[f"{name} ({run['label']})" if run.get("label") and network else name] = m
    shapes = {(r["clips"], r["subjects"]) for r in runs}
    first = runs[0]
    counts = ", ".join(f"{k} {v}" for k, v in first["class_counts"].items())
    doc = ["## Micro-expression recognition", "", stored["setup"], ""]
    if len(shapes) == 1:
        doc += [(f"{first['clips']} clips of {first['subjects']} subjects ({counts}); leave-one-subject-out, "
                 f"{first['options']['epochs']} epochs per fold, maps {first['size']}x{first['size']}."), ""]
    doc += ["| flow method | UF1 | UAR | accuracy | flow s/clip |", "|---|---|---|---|---|"]
    for name, m in sorted(rows.items(), key=lambda kv: -kv[1]["uf1"]):
        doc.append(f"| {name} | {m['uf1']:.3f} | {m['uar']:.3f} | {m['accuracy']:.3f} | "
                   f"{m['seconds_per_clip']:.3f} |")
    state, why = verdict(rows)
    doc += ["", f"Target (issue 12: our expression flow beats every classical flow method in UF1): **{state}** ({why}).",
            ""]
    doc += [f"- {run['label'] or 'run'}: `{run['command']}`" for run in runs]
    return doc + [*stored.get("notes", []), ""]
