"""Quality of generated maps against real ones, per class.

No Inception weights exist here (and ImageNet features say little about wafer maps), so the
Fréchet distance is computed on **this project's classifier embedding**: the 128-d ``embedding``
output of an engine bundle (the shipped INT8 engine by default). Its values are not comparable
with published FID numbers; compare them with the real-vs-real figure of the same sizes.

* ``fid``: Fréchet distance between Gaussian fits of the two embedding sets;
* ``one_nn``: leave-one-out 1-nearest-neighbour two-sample accuracy on the pooled embeddings
  (0.5 = indistinguishable, 1.0 = fully separable);
* ``precision`` / ``recall``: k-NN manifold estimates (Kynkäänniemi et al. 2019, k = 3): the
  share of generated maps inside the real manifold, and of real maps inside the generated one;
* ``ssim``: mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5, computed with scipy because
  scikit-image is not a dependency) between each generated map and its nearest real map in the
  embedding, on maps scaled to [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import linalg
from scipy.ndimage import gaussian_filter

from waferscope.protocols.encoding import encode_batch
from waferscope.trainer.synth.registry import SynthError

Grid = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]


class BundleEmbedder:
    """The ``embedding`` output of an engine bundle's ONNX model, on CPU with onnxruntime."""

    def __init__(self, bundle_dir: Path, engine: str = "int8") -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        from waferscope.protocols import bundle as contract
        from waferscope.protocols.errors import WaferscopeError
        from waferscope.protocols.pb.bundle_pb2 import BundleFileRole

        try:
            manifest = contract.verify(bundle_dir)
        except WaferscopeError as exc:
            raise SynthError(f"{bundle_dir}: not a usable engine bundle: {exc}") from None
        role = (
            BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX
            if engine == "int8"
            else BundleFileRole.BUNDLE_FILE_ROLE_REFERENCE_ONNX
        )
        self.spec = contract.encoding_of(manifest)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = bundle_dir / contract.file_for_role(manifest, role)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in self.session.get_outputs()]
        if "embedding" not in names:
            raise SynthError(f"{path}: the engine has no 'embedding' output ({names})")

    def __call__(self, grids: Sequence[Grid], batch: int = 256) -> Floats:
        out = []
        for i in range(0, len(grids), batch):
            x = encode_batch(list(grids[i : i + batch]), self.spec)
            out.append(self.session.run(["embedding"], {"input": x})[0])
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def fid(real: Floats, fake: Floats) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (rows = samples)."""
    if len(real) < 2 or len(fake) < 2:
        raise SynthError("FID needs at least two samples on each side")
    mu1, mu2 = real.mean(0), fake.mean(0)
    c1, c2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    with warnings.catch_warnings():  # fewer samples than dimensions: singular, still defined
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(c1 @ c2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(c1)) * 1e-6
            covmean = linalg.sqrtm((c1 + offset) @ (c2 + offset))
    covmean = np.real(covmean)
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def _pairwise(a: Floats, b: Floats) -> Floats:
    d: Floats = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d, 0.0))


def one_nn_accuracy(real: Floats, fake: Floats) -> float:
    """Leave-one-out 1-NN classifier accuracy telling real from fake (0.5 is ideal)."""
    pooled = np.concatenate([real, fake])
    is_real = np.r_[np.ones(len(real), bool), np.zeros(len(fake), bool)]
    d = _pairwise(pooled, pooled)
    np.fill_diagonal(d, np.inf)
    return float((is_real[d.argmin(1)] == is_real).mean())


def _radii(x: Floats, k: int) -> Floats:
    d = _pairwise(x, x)
    radii: Floats = np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    return radii


def precision_recall(real: Floats, fake: Floats, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds of each set)."""
    if min(len(real), len(fake)) <= k:
        raise SynthError(f"precision/recall needs more than k={k} samples on each side")
    r_real, r_fake = _radii(real, k), _radii(fake, k)
    precision = float((_pairwise(fake, real) <= r_real[None, :]).any(1).mean())
    recall = float((_pairwise(real, fake) <= r_fake[None, :]).any(1).mean())
    return precision, recall


def ssim(a: Grid, b: Grid, sigma: float = 1.5) -> float:
    """Mean SSIM of two equal-size grids scaled to [0, 1] (data range 1)."""
    x, y = np.asarray(a, np.float64) / 2.0, np.asarray(b, np.float64) / 2.0
    if x.shape != y.shape:
        raise SynthError(f"SSIM needs equal shapes, got {x.shape} and {y.shape}")
    c1, c2 = 0.01**2, 0.03**2
    mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    sxx = gaussian_filter(x * x, sigma) - mx * mx
    syy = gaussian_filter(y * y, sigma) - my * my
    sxy = gaussian_filter(x * y, sigma) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float((num / den).mean())


def nearest_ssim(
    real_grids: Sequence[Grid], fake_grids: Sequence[Grid], real: Floats, fake: Floats
) -> float:
    """Mean SSIM between each fake map and its nearest real map in the embedding."""
    nearest = _pairwise(fake, real).argmin(1)
    return float(
        np.mean([ssim(f, real_grids[int(j)]) for f, j in zip(fake_grids, nearest, strict=True)])
    )


def score_sets(
    real_grids: Sequence[Grid],
    fake_grids: Sequence[Grid],
    real: Floats,
    fake: Floats,
    k: int = 3,
) -> dict[str, float]:
    """All metrics for one class: FID, 1-NN accuracy, precision, recall, nearest SSIM."""
    precision, recall = precision_recall(real, fake, k)
    return {
        "n_real": float(len(real)),
        "n_fake": float(len(fake)),
        "fid": round(fid(real, fake), 3),
        "one_nn": round(one_nn_accuracy(real, fake), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "ssim": round(nearest_ssim(real_grids, fake_grids, real, fake), 4),
    }
