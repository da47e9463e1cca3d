"""The synthetic-data ablation table: val macro-F1 and per-class F1 of runs, side by side.

Reads each run's ``history.jsonl`` (written by ``waferscope train``) and reports the epoch chosen
on val (the best ``score``, as the trainer selects it). Usage, from the repository root:

    python benchmarks/synth_ablation.py trainer/runs/synth-ablation-without \\
        trainer/runs/synth-ablation-with trainer/runs/synth-ablation-mixing
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def best_row(run_dir: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "score" in r]
    if not rows:
        raise SystemExit(f"{run_dir}: no evaluated epoch yet")
    best = max(rows, key=lambda r: r["score"])
    best["epochs_run"] = len(rows)
    return best


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    runs = {Path(a).name: best_row(Path(a)) for a in argv}
    classes = sorted(
        {k[len("val_f1_") :] for r in runs.values() for k in r if k.startswith("val_f1_")}
    )
    print("| metric (val) | " + " | ".join(runs) + " |")
    print("| --- |" + " ---: |" * len(runs))
    print("| best epoch / run | " + " | ".join(
        f"{int(r['epoch'])} / {r['epochs_run']}" for r in runs.values()) + " |")  # fmt: skip
    for key, label in (("val_macro_f1", "macro-F1"), ("val_accuracy", "accuracy")):
        print(f"| {label} | " + " | ".join(f"{r[key]:.4f}" for r in runs.values()) + " |")
    for name in classes:
        cells = " | ".join(f"{r.get('val_f1_' + name, float('nan')):.3f}" for r in runs.values())
        print(f"| F1 {name} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
