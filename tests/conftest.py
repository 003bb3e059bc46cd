"""Unit tests run like notebooks: one torch thread (fast and reproducible on a loaded 2-core
box)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)
