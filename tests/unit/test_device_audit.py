"""The device audit (tests/device_audit.py) fails where a GPU would, and only there."""

from __future__ import annotations

import pytest
import torch

from tests.device_audit import DeviceAudit, DeviceMismatch

HERE = ("/test_device_audit.py",)   # this file plays the course's code


@pytest.fixture
def audit(device_audit):
    if device_audit is not None:   # the session's audit steps aside while this one runs
        device_audit.stop()
    a = DeviceAudit(ours=HERE).start()
    yield a
    a.stop()
    if device_audit is not None:
        device_audit.start()


@pytest.fixture
def weight():
    layer = torch.nn.Linear(4, 4).to(torch.device("cpu"))   # as load_model moves a model to its device
    return layer.weight


def test_a_tensor_made_without_a_device_fails_beside_the_model(audit, weight):
    x = torch.ones(4)
    with pytest.raises(DeviceMismatch, match=r"made on the CPU at test_device_audit.py:\d+ .* in matmul"):
        weight @ x


def test_a_device_given_or_a_move_passes(audit, weight):
    weight @ torch.ones(4, device=weight.device)
    x = torch.arange(4.0)
    weight @ x.to(weight.device)
    weight @ x.to(weight)
    with pytest.raises(DeviceMismatch):   # moving a copy does not move x itself
        weight @ x


def test_scalars_indices_and_copies_pass_as_on_cuda(audit, weight):
    weight * torch.tensor(2.0)                  # a 0-dim CPU tensor beside a GPU one is allowed
    weight[torch.tensor([0, 2])]                # so is a CPU index
    weight.detach()[0] = torch.zeros(4)         # and a copy into a slice


def test_what_is_computed_from_a_stray_tensor_is_stray(audit, weight):
    y = (torch.zeros(4) + 1).exp()
    with pytest.raises(DeviceMismatch):
        weight @ y
    with pytest.raises(DeviceMismatch):          # .cpu() leaves the model's device on every machine
        weight @ (weight @ torch.ones(4, device=weight.device)).cpu()


def test_numpy_of_a_model_tensor_needs_cpu_first(audit, weight):
    with pytest.raises(DeviceMismatch, match="NumPy"):
        weight.detach().numpy()
    weight.detach().cpu().numpy()


def test_loaded_and_numpy_tensors_are_stray(audit, weight, tmp_path):
    import numpy as np

    torch.save(torch.ones(4), tmp_path / "t.pt")
    with pytest.raises(DeviceMismatch):
        weight @ torch.load(tmp_path / "t.pt")
    weight @ torch.load(tmp_path / "t.pt", map_location=weight.device)
    with pytest.raises(DeviceMismatch):
        weight @ torch.from_numpy(np.ones(4, dtype=np.float32))


def test_tensors_made_outside_the_audited_code_are_left_alone(weight):
    a = DeviceAudit(ours=("/nowhere/",))
    with a:
        weight @ torch.ones(4)   # a test's own input stands for what a user passes in
    assert not a.mismatches
