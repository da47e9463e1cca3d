"""Active-learning label curves on WM-811K val: random vs entropy vs entropy + k-center.

Simulation: the shipped engine embeds every map of ``wm811k/val.npz`` (never the test split) and
gives its class probabilities (onnxruntime, cached in a temp folder). Val is split in half,
stratified: the *pool* whose labels are revealed batch by batch, and the *held-out* half that
scores. After each batch a cheap model is fitted on the revealed labels -- multinomial logistic
regression on the frozen embeddings (torch, L-BFGS), a proxy for fine-tuning the engine -- and
its macro-F1 on the held-out half is recorded. Selectors (the hub's own functions from
``waferscope.hub.review_policy``): ``random``; ``entropy`` (the engine's normalised entropy,
highest first, as the hub queue ranks results); ``entropy_kcenter`` (the top entropy candidates,
``candidates`` x batch of them, thinned by k-center greedy on the embeddings with the labelled
maps as the initial centres).

    nice -n 10 .venv/bin/python benchmarks/active_learning.py --out benchmarks/results

writes ``active_learning.csv`` (selector, seed, labels, macro_f1) and ``active_learning.png``,
and prints, per selector, the labels needed to reach the target macro-F1 (a fraction of the
F1 the same proxy reaches with the whole pool labelled).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from waferscope.hub.review_policy import k_center_greedy, normalized_entropy
from waferscope.protocols.datasets import load_labelled_arrays
from waferscope.protocols.encoding import encode_dense
from waferscope.protocols.inference import load_bundle
from waferscope.protocols.inference.onnx_runtime import OnnxRuntimeRunner

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "edge" / "src" / "waferscope" / "edge" / "bundles" / "default"
SELECTORS = ("random", "entropy", "entropy_kcenter")
F32 = npt.NDArray[np.float32]


def engine_outputs(
    val: Path, bundle: Path, cache: Path, limit: int | None
) -> tuple[F32, F32, np.ndarray, list[str]]:
    """(embeddings, probabilities, targets, class names) of the val maps, cached on disk."""
    arrays = load_labelled_arrays(val)
    n = len(arrays.targets) if limit is None else min(limit, len(arrays.targets))
    b = load_bundle(bundle)
    key = hashlib.sha256(f"{val}:{b.manifest_sha256}:{n}".encode()).hexdigest()[:16]
    path = cache / f"al-{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["emb"], z["prob"], z["y"], list(arrays.class_names)
    order = np.random.default_rng(0).permutation(len(arrays.targets))[:n]
    runner = OnnxRuntimeRunner(b.engine_path, threads=2)
    embs, probs = [], []
    t0 = time.perf_counter()
    for start in range(0, n, 64):
        idx = order[start : start + 64]
        batch = np.stack([encode_dense(arrays.maps[i], b.encoding) for i in idx])
        out = runner.run(batch)
        logits = out.pattern_logits - out.pattern_logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        probs.append(p / p.sum(axis=1, keepdims=True))
        embs.append(out.embedding)
    print(f"embedded {n} val maps in {time.perf_counter() - t0:.0f} s")
    emb, prob, y = np.concatenate(embs), np.concatenate(probs), arrays.targets[order].astype(int)
    np.savez(path, emb=emb, prob=prob, y=y)
    return emb, prob, y, list(arrays.class_names)


def stratified_halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pool, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        half = len(idx) // 2
        pool.extend(idx[:half])
        held.extend(idx[half:])
    return np.array(sorted(pool)), np.array(sorted(held))


def fit_predict(x: F32, y: np.ndarray, test: F32, classes: int) -> np.ndarray:
    """Multinomial logistic regression (L2) on standardised embeddings, L-BFGS."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    lin = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=0.5, max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin(torch.from_numpy((test - mean) / std)).argmax(dim=1).numpy()


def macro_f1(y: np.ndarray, pred: np.ndarray, classes: int) -> float:
    f1s = []
    for c in range(classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def choose(
    selector: str,
    rng: np.random.Generator,
    unlabelled: np.ndarray,
    labelled: np.ndarray,
    emb: F32,
    entropy: np.ndarray,
    batch: int,
    candidates: int,
) -> np.ndarray:
    if selector == "random":
        return rng.choice(unlabelled, size=min(batch, len(unlabelled)), replace=False)
    ranked = unlabelled[np.argsort(-entropy[unlabelled], kind="stable")]
    if selector == "entropy":
        return ranked[:batch]
    top = ranked[: batch * candidates]
    picks = k_center_greedy(emb[top], batch, centers=emb[labelled])
    return top[np.array(picks, dtype=int)]


def simulate(
    selector: str, seed: int, emb: F32, prob: F32, y: np.ndarray, args: argparse.Namespace
) -> list[tuple[int, float]]:
    classes = prob.shape[1]
    pool, held = stratified_halves(y, seed)
    entropy = np.array([normalized_entropy(p.astype(np.float64)) for p in prob])
    rng = np.random.default_rng(seed)
    labelled = rng.choice(pool, size=args.start, replace=False)
    curve = []
    while True:
        pred = fit_predict(emb[labelled], y[labelled], emb[held], classes)
        curve.append((len(labelled), macro_f1(y[held], pred, classes)))
        if len(labelled) >= args.budget:
            return curve
        unlabelled = np.setdiff1d(pool, labelled)
        pick = choose(
            selector, rng, unlabelled, labelled, emb, entropy, args.batch, args.candidates
        )
        labelled = np.concatenate([labelled, pick])


def draw_png(rows: list[tuple[str, int, int, float]], target: float, out: Path) -> None:
    from PIL import Image, ImageDraw

    w, h, m = 900, 560, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [r[2] for r in rows]
    x_max = max(xs)
    y_lo = min(r[3] for r in rows)
    y_lo = max(0.0, np.floor(y_lo * 10) / 10)

    def pt(n: float, f1: float) -> tuple[float, float]:
        return m + (w - 2 * m) * n / x_max, h - m - (h - 2 * m) * (f1 - y_lo) / (1 - y_lo)

    d.rectangle([m, m, w - m, h - m], outline="black")
    for k in range(6):
        f1 = y_lo + (1 - y_lo) * k / 5
        d.text((8, pt(0, f1)[1] - 6), f"{f1:.2f}", fill="black")
        n = x_max * k / 5
        d.text((pt(n, y_lo)[0] - 10, h - m + 8), f"{n:.0f}", fill="black")
    d.line([pt(0, target), pt(x_max, target)], fill=(160, 160, 160), width=1)
    d.text((w - m - 150, pt(0, target)[1] - 14), f"target {target:.3f}", fill=(100, 100, 100))
    colours = {
        "random": (120, 120, 120),
        "entropy": (30, 100, 200),
        "entropy_kcenter": (200, 60, 30),
    }
    for i, sel in enumerate(SELECTORS):
        pts: dict[int, list[float]] = {}
        for s, _, n, f1 in rows:
            if s == sel:
                pts.setdefault(n, []).append(f1)
        line = [pt(n, float(np.mean(v))) for n, v in sorted(pts.items())]
        d.line(line, fill=colours[sel], width=3)
        d.text((m + 10, m + 10 + 16 * i), f"{sel} (mean over seeds)", fill=colours[sel])
    d.text((w // 2 - 120, h - 24), "labels revealed (WM-811K val pool)", fill="black")
    d.text(
        (m, 20),
        "macro-F1 on the held-out half of val (logistic regression on engine embeddings)",
        fill="black",
    )
    img.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("WAFER_DATA_DIR", REPO.parent / "shared" / "data"))
    ap.add_argument("--val", type=Path, default=data / "wm811k" / "val.npz")
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--limit", type=int, default=None, help="Use this many val maps (random).")
    ap.add_argument("--start", type=int, default=20, help="Random labels before selection.")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=4, help="entropy_kcenter: top-k x batch.")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.95, help="Fraction of the full-pool F1.")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = Path(tempfile.gettempdir()) / "waferscope-al-cache"
    cache.mkdir(exist_ok=True)
    emb, prob, y, _names = engine_outputs(args.val, args.bundle, cache, args.limit)
    classes = prob.shape[1]
    full = []
    for seed in range(args.seeds):
        pool, held = stratified_halves(y, seed)
        full.append(macro_f1(y[held], fit_predict(emb[pool], y[pool], emb[held], classes), classes))
    target = args.target * float(np.mean(full))
    print(f"{len(y)} maps; full-pool proxy macro-F1 {np.mean(full):.3f}; target {target:.3f}")
    rows: list[tuple[str, int, int, float]] = []
    for sel in SELECTORS:
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            for n, f1 in simulate(sel, seed, emb, prob, y, args):
                rows.append((sel, seed, n, f1))
            print(f"{sel} seed {seed}: {time.perf_counter() - t0:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "active_learning.csv").open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["selector", "seed", "labels", "macro_f1"])
        wr.writerows([(s, seed, n, f"{f1:.4f}") for s, seed, n, f1 in rows])
    draw_png(rows, target, args.out / "active_learning.png")
    print("| selector | labels to target (per seed) | mean | F1 at budget (mean) |")
    print("| --- | --- | --- | --- |")
    for sel in SELECTORS:
        need, last = [], []
        for seed in range(args.seeds):
            pts = [(n, f1) for s, sd, n, f1 in rows if s == sel and sd == seed]
            hit = next((n for n, f1 in pts if f1 >= target), None)
            need.append(hit)
            last.append(pts[-1][1])
        shown = ", ".join("—" if v is None else str(v) for v in need)
        got = [v for v in need if v is not None]
        mean = f"{np.mean(got):.0f}" if len(got) == len(need) else "not all reached"
        print(f"| {sel} | {shown} | {mean} | {np.mean(last):.3f} |")


if __name__ == "__main__":
    main()
