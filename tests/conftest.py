import os

# GUI tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _editor_home(tmp_path_factory, monkeypatch):
    """Keep the editor's settings, recent files and recovery files out of the user's home."""
    monkeypatch.setenv("NEUROCANVAS_HOME", str(tmp_path_factory.mktemp("neurocanvas-home")))
