"""Where the learner trains: the device rule, and a CPU run through the device path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from olsim.learner.config import LearnerConfig
from olsim.learner.device import AUTO_CUDA_MIN_WORK, DeviceError, choose_device, parameters
from olsim.learner.loop import LearnerLoop
from olsim.learner.model import ModelSpec
from olsim.learner.snapshot import Snapshot
from olsim.stream.spec import StreamSpec
from olsim.stream.tasks import build_tasks


def test_auto_decides_from_the_work_per_step_not_from_the_gpu() -> None:
    spec = ModelSpec()
    crossover = -(-AUTO_CUDA_MIN_WORK // parameters(spec))  # smallest batch that goes to the GPU
    assert 256 < crossover < 4096  # between the batch sizes where the CPU and the GPU won
    assert choose_device("auto", spec, crossover - 1, cuda=True).type == "cpu"
    assert choose_device("auto", spec, crossover, cuda=True).type == "cuda"
    wide = ModelSpec(hidden=4096)  # more work per sample: the GPU pays off at smaller batches
    assert choose_device("auto", wide, 64, cuda=True).type == "cuda"
    assert choose_device("auto", wide, 64, cuda=False).type == "cpu"
    assert choose_device("cpu", wide, 4096, cuda=True).type == "cpu"


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA device"):
        choose_device("cuda", ModelSpec(), 32, cuda=False)
    with pytest.raises(ValidationError):
        LearnerConfig.model_validate({"device": "tpu"})


def _run(device: str) -> tuple[str, list[Snapshot]]:
    spec = StreamSpec(tasks="split-digits", n_tasks=2, epochs=2, rate=None)
    published: list[Snapshot] = []

    def publish(snap: Snapshot) -> int:
        published.append(snap)
        return len(published)

    loop = LearnerLoop(spec.build(seed=0), LearnerConfig(device=device), seed=0, publish=publish)
    loop.run()
    return str(loop.trainer.device), published


def test_the_learner_trains_where_it_was_told() -> None:
    device, published = _run("cpu")
    assert device == "cpu" and published
    auto_device, auto_published = _run("auto")  # batch 32: the CPU whatever the machine has
    assert auto_device == "cpu"
    assert [s.checksum for s in auto_published] == [s.checksum for s in published]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_a_cuda_learner_publishes_the_same_model_within_tolerance() -> None:
    cpu_device, on_cpu = _run("cpu")
    gpu_device, on_gpu = _run("cuda")
    assert (cpu_device, gpu_device.split(":")[0]) == ("cpu", "cuda") and len(on_cpu) == len(on_gpu)
    x = torch.from_numpy(np.concatenate([t.test.x for t in build_tasks("split-digits", n_tasks=2, seed=0)]))
    with torch.no_grad():  # rounding differs between the devices; the learnt model must not
        agree = (on_cpu[-1].build()(x).argmax(1) == on_gpu[-1].build()(x).argmax(1)).float().mean().item()
    assert agree >= 0.98
