import os

# GUI tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _editor_home(tmp_path_factory, monkeypatch):
    """Keep the editor's settings, recent files and recovery files out of the user's home."""
    monkeypatch.setenv("NEUROCANVAS_HOME", str(tmp_path_factory.mktemp("neurocanvas-home")))


def array_module(name: str):
    """numpy, or cupy through ``kernels.backend``; skips the test when there is no GPU."""
    from kernels import backend

    if name == "numpy":
        return backend.get_xp("cpu")
    if not backend.gpu_available():
        pytest.skip(f"cupy: {backend.gpu_missing_reason()}")
    return backend.get_xp("gpu")


@pytest.fixture(params=[pytest.param("numpy", id="numpy"),
                        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a computing test runs on: numpy, and cupy where a GPU is there."""
    return array_module(request.param)


@pytest.fixture
def torch():
    """The torch module; the test is skipped where torch is not installed."""
    from tests.torch_ref import need_torch

    return need_torch()
