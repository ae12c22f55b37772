"""Where the learner trains: ``cpu``, ``cuda``, or ``auto`` (decided from the work per step).

A small model's training step on a GPU is launch-bound: for the MLP 64-256-10 an H200 takes about
0.65 ms per step whatever the batch (a reference measurement: 51k samples/s at batch 32, 369k at
256, 6.0M at 4096), while this project's 2-core CPU did 134k, 788k and 1.2M samples/s. The GPU
only wins once a CPU step costs more than that launch floor, so ``auto`` decides from the work in
one step (batch size x trainable parameters), not from whether a GPU exists: below
:data:`AUTO_CUDA_MIN_WORK` it stays on the CPU. The constant is the crossover those figures give
(CPU at ~1.2M samples/s of a 19k-parameter MLP reaches 0.65 ms per step at ~780 samples:
780 x 19,210 ~ 1.5e7); `olsim bench learner` measures samples/s per device and batch size on the
machine at hand, to check it there.
"""

from __future__ import annotations

from typing import Literal

import torch

from olsim.learner.model import ModelSpec, build_model

Device = Literal["auto", "cpu", "cuda"]
AUTO_CUDA_MIN_WORK = 15_000_000  # batch size x trainable parameters per step


class DeviceError(ValueError):
    """The requested device cannot be used; the message is one line meant for users."""


def parameters(spec: ModelSpec) -> int:
    """Trainable parameters of the model ``spec`` describes.

    >>> parameters(ModelSpec())
    19210
    """
    return sum(p.numel() for p in build_model(spec).parameters() if p.requires_grad)


def choose_device(
    requested: Device, spec: ModelSpec, batch_size: int, cuda: bool | None = None
) -> torch.device:
    """The device to train on; ``cuda`` says whether a CUDA device is usable (default: ask torch).

    >>> choose_device("auto", ModelSpec(), 32, cuda=True).type  # launch-bound on a GPU: stay
    'cpu'
    >>> choose_device("auto", ModelSpec(), 4096, cuda=True).type
    'cuda'
    >>> choose_device("auto", ModelSpec(), 4096, cuda=False).type
    'cpu'
    """
    available = torch.cuda.is_available() if cuda is None else cuda
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda":
        if not available:
            raise DeviceError("device 'cuda' requested but torch sees no CUDA device (use auto or cpu)")
        return torch.device("cuda")
    if available and batch_size * parameters(spec) >= AUTO_CUDA_MIN_WORK:
        return torch.device("cuda")
    return torch.device("cpu")


__all__ = ["AUTO_CUDA_MIN_WORK", "Device", "DeviceError", "choose_device", "parameters"]
