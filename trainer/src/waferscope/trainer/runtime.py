"""Devices, precision, seeds and distributed set-up for training and torch-side evaluation."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from waferscope.protocols.encoding import EncodingSpec, encode_batch
from waferscope.trainer.config import RunConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # fp32, bf16, fp16
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        dtype = self.amp_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)


def _cpu_has_bf16() -> bool:
    probe = getattr(torch.backends.cpu, "get_cpu_capability", None)
    capability = str(probe()) if callable(probe) else ""
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(native()) if callable(native) else capability.startswith("AVX512")


def resolve_runtime(cfg: RunConfig) -> Runtime:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        from waferscope.protocols.errors import WaferscopeError

        raise WaferscopeError("run.device = cuda but no CUDA device is available")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and cuda)
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    precision = cfg.precision
    if precision == "auto":
        if use_cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if _cpu_has_bf16() else "fp32"
    if precision == "fp16" and not use_cuda:
        precision = "bf16"
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(device, precision, rank, world)


def wrap_parallel(model: nn.Module, rt: Runtime, mode: str) -> nn.Module:
    """DDP under torchrun (WORLD_SIZE > 1), DataParallel over several local GPUs, else as is."""
    if rt.world_size > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if mode in ("auto", "dp") and rt.device.type == "cuda" and torch.cuda.device_count() > 1:
        return nn.DataParallel(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        inner: nn.Module = model.module
        return inner
    return model


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def predict(
    model: nn.Module,
    grids: Sequence[npt.NDArray[np.uint8]],
    spec: EncodingSpec,
    rt: Runtime,
    batch_size: int,
    multi_label: bool,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(pattern probabilities, cause probabilities) of the torch model for un-augmented grids."""
    was_training = model.training
    model.eval()
    pattern, cause = [], []
    for part in batches(len(grids), batch_size):
        x = torch.from_numpy(encode_batch(grids[part], spec)).to(rt.device)
        with rt.autocast():
            out = model(x)
        logits = out[0].float()
        p = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)
        pattern.append(p.cpu().numpy())
        cause.append(torch.softmax(out[1].float(), dim=1).cpu().numpy())
    model.train(was_training)
    if not pattern:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(pattern), np.concatenate(cause)
