"""A real, small engine bundle for the tests of every part and the benchmarks, built with torch.

The edge and the hub never import torch; tests may. The network has the shape the bundle contract
assumes (``waferscope.protocols.bundle``): convolutions → last feature map → global average
pool (embedding) → dense layers → a pattern and a root-cause linear layer. It is trained for a
few seconds on real WM-811K maps so that its predictions mean something, exported to ONNX with
the contract's I/O names and a dynamic batch, quantised to INT8 QDQ (static, calibrated on real
maps encoded with protocols' encoding v1), and described by a manifest written with
protocols' bundle helpers.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from sample_wafers import encoded_maps
from torch import nn

from waferscope.protocols.bundle import (
    INPUT_NAME,
    OUTPUT_NAMES,
    HeadWeights,
    describe_file,
    encoding_descriptor,
    write_manifest,
)
from waferscope.protocols.encoding import V1
from waferscope.protocols.pb.bundle_pb2 import BundleFileRole, BundleManifest

PATTERNS = (
    "Center",
    "Donut",
    "Edge-Loc",
    "Edge-Ring",
    "Loc",
    "Near-full",
    "Random",
    "Scratch",
    "none",
)
CAUSES = (
    "cmp",
    "deposition",
    "edge_process",
    "handling_scratch",
    "particles",
    "probe_test",
    "no_process_cause",
)
RECIPE_VERSION = "4"  # bump when the recipe below changes (invalidates the on-disk cache)
HEAD_ACTIVATION = "silu"


class TinyWaferNet(nn.Module):
    """A small CNN with the bundle contract's outputs."""

    def __init__(self, channels: int = 32, hidden: int = 48) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.dense = nn.Linear(channels, hidden)
        self.act = nn.SiLU()
        self.pattern = nn.Linear(hidden, len(PATTERNS))
        self.cause = nn.Linear(hidden, len(CAUSES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        fm = self.features(x)
        emb = fm.mean(dim=(2, 3))
        h = self.act(self.dense(emb))
        return self.pattern(h), self.cause(h), fm, emb

    def head_weights(self) -> HeadWeights:
        def np_(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        return HeadWeights.from_arrays(
            [(np_(self.dense.weight), np_(self.dense.bias), HEAD_ACTIVATION)],
            pattern=(np_(self.pattern.weight), np_(self.pattern.bias)),
            cause=(np_(self.cause.weight), np_(self.cause.bias)),
        )


def train(x: np.ndarray, y: np.ndarray, epochs: int = 6, seed: int = 0) -> TinyWaferNet:
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    net = TinyWaferNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    cause_target = torch.from_numpy((y % len(CAUSES)).astype(np.int64))
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            idx = perm[start : start + 64]
            p, c, _, _ = net(xt[idx])
            loss = nn.functional.cross_entropy(p, yt[idx]) + 0.2 * nn.functional.cross_entropy(
                c, cause_target[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def export_onnx(net: TinyWaferNet, path: Path, size: int = V1.size) -> None:
    dummy = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(net, dummy, path)


def _export(net: TinyWaferNet, dummy: torch.Tensor, path: Path) -> None:
    torch.onnx.export(
        net,
        (dummy,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
        opset_version=17,
        dynamo=False,
    )


def quantize_int8(fp32: Path, int8: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{INPUT_NAME: calibration[i : i + 16]} for i in range(0, len(calibration), 16)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    prepped = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepped))
    quantize_static(
        str(prepped),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    prepped.unlink()


def write_bundle(net: TinyWaferNet, folder: Path, calibration: np.ndarray, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(net, folder / "model.fp32.onnx")
    quantize_int8(folder / "model.fp32.onnx", folder / "model.int8.onnx", calibration)
    net.head_weights().save(folder / "head.npz")
    manifest = BundleManifest(
        model_version=version,
        pattern_classes=list(PATTERNS),
        root_cause_classes=list(CAUSES),
        taxonomy_ref="wm811k-root-causes@1",
        producer="waferscope tests (tiny CNN)",
    )
    encoding_descriptor(V1, manifest)
    manifest.created_time.GetCurrentTime()
    manifest.files.extend(
        [
            describe_file(folder, "model.int8.onnx", BundleFileRole.BUNDLE_FILE_ROLE_ENGINE_ONNX),
            describe_file(
                folder, "model.fp32.onnx", BundleFileRole.BUNDLE_FILE_ROLE_REFERENCE_ONNX
            ),
            describe_file(folder, "head.npz", BundleFileRole.BUNDLE_FILE_ROLE_HEAD_WEIGHTS),
        ]
    )
    write_manifest(folder, manifest)
    return folder


def build(val_npz: Path, folder: Path, version: str = "tiny-test-1") -> tuple[Path, Path]:
    """Build (or reuse) the bundle and save the torch weights next to it: (bundle, weights)."""
    x, y = encoded_maps(val_npz, 2700)
    net = train(x, y)
    write_bundle(net, folder, x[:256], version)
    weights = folder.parent / f"{folder.name}.torch.pt"
    torch.save(net.state_dict(), weights)
    return folder, weights


def load_torch(weights: Path) -> TinyWaferNet:
    net = TinyWaferNet()
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()


def cached_bundle(val_npz: Path, cache_root: Path) -> tuple[Path, Path]:
    """The bundle built once per recipe and shared by test workers and runs (file lock)."""
    key = hashlib.sha256(
        (RECIPE_VERSION + Path(__file__).read_text(encoding="utf-8")).encode()
    ).hexdigest()[:12]
    folder = cache_root / f"waferscope-test-bundle-{key}"
    cache_root.mkdir(parents=True, exist_ok=True)
    with (cache_root / f"waferscope-test-bundle-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        weights = folder.parent / f"{folder.name}.torch.pt"
        if not ((folder / "manifest.json").is_file() and weights.is_file()):
            for stale in cache_root.glob("waferscope-test-bundle-*"):  # older recipes
                if not stale.name.startswith(folder.name):
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    elif stale.suffix != ".lock":
                        stale.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            tmp = cache_root / f"{folder.name}.building"
            shutil.rmtree(tmp, ignore_errors=True)
            _, tmp_weights = build(val_npz, tmp)
            tmp_weights.replace(weights)
            tmp.replace(folder)
    return folder, weights
