"""The first five minutes: every example opens legible, at any usual window size; work left by
a crash is offered back at start; the Examples menu, the lock sign, Save As and the settings
folder look right; a machine without Qt's X11 libraries gets one line instead of an abort."""
from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFontMetrics, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox  # noqa: E402

import main as main_module  # noqa: E402
from gui import files, platform_check, theme  # noqa: E402
from gui.canvas.look import LOD_TEXT, READABLE_ZOOM  # noqa: E402
from gui.main_window import MainWindow, start_editor  # noqa: E402
from tests.cli_helpers import ROOT  # noqa: E402

EXAMPLES = sorted((ROOT / "resources" / "examples").glob("*.ncg.json"))
MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
CNN = ROOT / "resources" / "examples" / "cnn_digits.ncg.json"
SIZES = [(1400, 900), (1024, 700)]


@pytest.fixture
def make_window(qtbot):
    """Windows that close without a save question when the test ends."""
    made = []

    def make(size=(1400, 900), show=True) -> MainWindow:
        w = MainWindow()
        made.append(w)
        w.resize(*size)
        if show:
            w.show()
            qtbot.waitExposed(w)
        return w

    yield make
    for w in made:
        w.document.undo_stack.setClean()
        w.close()
        w.deleteLater()


def settle() -> None:
    """Let queued work run: the fit after open, the dock sizes, repaints."""
    for _ in range(3):
        QApplication.processEvents()


def first_input(w: MainWindow) -> str:
    return next(nid for nid, n in w.document.graph.nodes.items() if n.type == "Input")


def in_viewport(w: MainWindow, node_id: str) -> bool:
    item = w.scene.node_item(node_id)
    on_screen = w.view.mapFromScene(item.sceneBoundingRect()).boundingRect()
    return w.view.viewport().rect().contains(on_screen)


def title_ink(w: MainWindow, node_id: str) -> int:
    """Pixels in a node's title area that have the text colour: glyphs, not the grey bar
    that stands for the text when zoomed too far out."""
    item = w.scene.node_item(node_id)
    area = w.view.mapFromScene(item.mapRectToScene(QRectF(32, 6, 100, 16))).boundingRect()
    area = area.intersected(w.view.viewport().rect())
    image = w.view.viewport().grab().toImage()
    ink = theme.current().color("text")
    count = 0
    for x in range(area.left(), area.right() + 1):
        for y in range(area.top(), area.bottom() + 1):
            c = QColor(image.pixel(x, y))
            if (abs(c.red() - ink.red()) + abs(c.green() - ink.green())
                    + abs(c.blue() - ink.blue())) < 120:
                count += 1
    return count


def wheel(w: MainWindow, delta: int) -> None:
    vp = w.view.viewport()
    pos = QPointF(vp.width() / 2, vp.height() / 2)
    ev = QWheelEvent(pos, QPointF(vp.mapToGlobal(pos.toPoint())), QPoint(), QPoint(0, delta),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)


# ---- legible on open -------------------------------------------------------------------------
def test_the_readable_zoom_draws_text():
    assert READABLE_ZOOM >= 0.6 and READABLE_ZOOM > LOD_TEXT


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.removesuffix(".ncg.json"))
def test_every_example_opens_legible(make_window, path, size):
    w = make_window(size)
    w.open_file(path)
    settle()
    assert w.view.zoom() >= 0.6 - 1e-9
    x = first_input(w)
    assert in_viewport(w, x), "the start of the graph (its first input) is in view"
    assert title_ink(w, x) > 0, "the node's title is drawn"


def test_an_example_from_the_menu_opens_legible(make_window):
    w = make_window((1024, 700))
    next(a for a in w.examples_menu.actions() if a.data() == str(CNN)).trigger()
    settle()
    assert w.view.zoom() >= READABLE_ZOOM - 1e-9 and in_viewport(w, "x")


def test_a_small_graph_is_fitted_whole(make_window):
    w = make_window((1400, 900))
    w.open_file(MLP)
    settle()
    visible = w.view.mapToScene(w.view.viewport().rect()).boundingRect()
    assert visible.contains(w.scene.nodes_rect())
    assert w.view.zoom() >= READABLE_ZOOM


def test_fit_view_never_goes_below_the_readable_zoom_and_shows_the_start(make_window):
    w = make_window((1024, 700))
    w.open_file(CNN)
    settle()
    w.view.set_zoom(0.2)
    w.view.centerOn(w.scene.node_item("loss"))
    w.actionFitView.trigger()
    assert w.view.zoom() == pytest.approx(READABLE_ZOOM)
    assert in_viewport(w, "x")


def test_fit_view_can_still_show_a_graph_whole_and_works_as_a_slot(make_window):
    from PySide6.QtGui import QAction

    from gui.canvas.view import MIN_ZOOM
    w = make_window((1024, 700))
    w.open_file(CNN)
    settle()
    w.view.fit_view(min_zoom=MIN_ZOOM)  # e.g. benchmarks: every node in view, however small
    visible = w.view.mapToScene(w.view.viewport().rect()).boundingRect()
    assert visible.contains(w.scene.nodes_rect()) and w.view.zoom() < READABLE_ZOOM
    act = QAction("Fit", w)
    act.triggered.connect(w.view.fit_view)  # as the canvas menu connects it: checked=False
    act.trigger()
    assert w.view.zoom() == pytest.approx(READABLE_ZOOM)


def test_the_fit_follows_the_window_until_the_user_zooms(make_window):
    # a window manager gives the window its size after it is shown
    w = make_window((800, 600))
    w.open_file(MLP)
    settle()
    small = w.view.zoom()
    w.resize(1400, 900)
    settle()
    assert w.view.zoom() > small, "fitted again to the final size"
    assert w.view.auto_fitting()
    wheel(w, 120)
    zoomed = w.view.zoom()
    assert not w.view.auto_fitting()
    w.resize(1100, 800)
    settle()
    assert w.view.zoom() == pytest.approx(zoomed), "the user's zoom is kept"


def test_an_edit_ends_the_fit_on_resize(make_window):
    w = make_window((1400, 900))
    w.open_file(MLP)
    settle()
    w.document.set_param("fc1", "units", 32)
    assert not w.view.auto_fitting()
    before = w.view.zoom()
    w.resize(900, 700)
    settle()
    assert w.view.zoom() == pytest.approx(before)


def test_selecting_a_node_ends_the_fit_on_resize(make_window):
    w = make_window((1024, 700))
    w.open_file(CNN)
    settle()
    w.focus_node("loss")  # a click in the problems panel
    assert not w.view.auto_fitting()
    w.resize(1100, 750)
    settle()
    assert in_viewport(w, "loss")


def test_opening_over_a_selection_still_fits_on_resize(make_window):
    w = make_window((1024, 700))
    w.open_file(MLP)
    w.scene.select_nodes(["fc1"])
    w.open_file(CNN)
    settle()
    assert w.view.auto_fitting()


def test_a_window_shown_after_open_fits_when_shown(make_window):
    w = make_window((1400, 900), show=False)
    w.open_file(CNN)
    w.show()
    settle()
    assert w.view.zoom() >= READABLE_ZOOM - 1e-9 and in_viewport(w, "x")


# ---- recovery at start -----------------------------------------------------------------------
def _dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def _leave_a_crash(units: int) -> None:
    """A recovery file as an editor that crashed leaves it."""
    saver = files.Autosaver()
    d = json.loads(MLP.read_text(encoding="utf-8"))
    d["nodes"][1]["params"]["units"] = units
    saver.write(json.dumps(d), MLP)
    meta = json.loads(saver.meta_file.read_text())
    meta["pid"] = _dead_pid()
    saver.meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize("given", [None, "cnn"], ids=["no-graph", "graph-given"])
def test_recovery_is_offered_at_start_with_or_without_a_graph(qtbot, monkeypatch, given):
    _leave_a_crash(77)
    asked = []

    def answer(*args, **kwargs):
        asked.append(args)
        return QMessageBox.Yes

    monkeypatch.setattr(QMessageBox, "question", answer)
    w = start_editor(str(CNN) if given else None)
    try:
        qtbot.waitUntil(lambda: bool(asked))
        assert "mlp_digits" in asked[0][2]
        assert w.document.graph.nodes["fc1"].params["units"] == 77
        assert w.document.dirty and w.document.path == MLP
        assert not files.pending_recoveries()
    finally:
        w.document.undo_stack.setClean()
        w.close()
        w.deleteLater()


# ---- examples menu, lock sign, Save As, settings folder --------------------------------------
def test_examples_menu_shows_titles_with_the_file_in_the_tooltip(make_window):
    w = make_window()
    actions = w.examples_menu.actions()
    assert [a.data() for a in actions] == [str(p) for p in files.examples()]
    for a, p in zip(actions, files.examples(), strict=True):
        assert a.text() == files.example_info(p).title
        assert ".json" not in a.text() and "_" not in a.text() and a.text()[0].isupper()
        assert p.name in a.toolTip()
    titles = {a.text() for a in actions}
    assert {"MLP digits", "CNN digits", "LSTM sine"} <= titles
    next(a for a in actions if a.text() == "CNN digits").trigger()
    assert w.document.path is None and "conv1" in w.document.graph.nodes


def test_example_title_prefers_a_title_key_and_survives_a_bad_file(tmp_path):
    p = tmp_path / "my_net.ncg.json"
    p.write_text(json.dumps({"format": "neurocanvas.graph", "version": 1, "name": "x-y",
                             "title": "A titled net", "description": "What it does."}))
    info = files.example_info(p)
    assert info.title == "A titled net" and "What it does." in info.tooltip
    assert "my_net.ncg.json" in info.tooltip
    bad = tmp_path / "broken_one.ncg.json"
    bad.write_text("{ not json")
    assert files.example_info(bad).title == "Broken one"


def _icon_has_ink(icon) -> bool:
    image = icon.pixmap(16, 16).toImage()
    return any(QColor.fromRgba(image.pixel(x, y)).alpha() > 0
               for x in range(image.width()) for y in range(image.height()))


def test_the_lock_sign_is_painted_and_its_text_is_in_the_font(make_window, qtbot):
    w = make_window()
    w.document.set_locked(True)
    try:
        signs = [w.lock_label, w.view._lock_label]
        for sign in signs:
            assert sign.isVisibleTo(w)
            assert _icon_has_ink(sign.icon), "a painted padlock, not a missing glyph"
            fm = QFontMetrics(sign.text_label.font())
            missing = [ch for ch in sign.text() if not fm.inFontUcs4(ord(ch))]
            assert not missing, f"characters the font cannot draw: {missing}"
    finally:
        w.document.set_locked(False)


def test_save_as_names_an_untitled_graph_after_its_file(make_window, tmp_path, monkeypatch):
    w = make_window()
    w.document.add_node("Input", (0, 0), {"shape": [4]})
    assert w.document.graph.name == "untitled"
    out = tmp_path / "spiral-net.ncg.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    assert w.save_as()
    assert w.document.graph.name == "spiral-net"
    assert json.loads(out.read_text(encoding="utf-8"))["name"] == "spiral-net"
    assert "spiral-net" in w.windowTitle() and not w.isWindowModified()


def test_save_as_keeps_a_graph_that_has_a_name(make_window, tmp_path):
    w = make_window()
    w.open_file(MLP)
    w.save_file(tmp_path / "copy.ncg.json")
    assert w.document.graph.name == "mlp-digits"


def test_the_settings_folder_has_one_neurocanvas(monkeypatch, tmp_path, qapp):
    monkeypatch.delenv("NEUROCANVAS_HOME")
    monkeypatch.setattr(files, "_data_base", lambda: tmp_path)
    old_org, old_app = qapp.organizationName(), qapp.applicationName()
    qapp.setOrganizationName("NeuroCanvas")  # what earlier versions set
    qapp.setApplicationName("NeuroCanvas")
    try:
        assert files.home() == tmp_path / "NeuroCanvas"
        settings_file = files.settings().fileName()
        assert settings_file.count("NeuroCanvas") == 1
    finally:
        qapp.setOrganizationName(old_org)
        qapp.setApplicationName(old_app)


def test_settings_in_the_old_doubled_folder_are_moved_up(monkeypatch, tmp_path):
    monkeypatch.delenv("NEUROCANVAS_HOME")
    monkeypatch.setattr(files, "_data_base", lambda: tmp_path)
    old = tmp_path / "NeuroCanvas" / "NeuroCanvas"
    (old / "recovery").mkdir(parents=True)
    (old / "settings.ini").write_text("[General]\ntheme=dark\n")
    (old / "recovery" / "autosave-1-1.ncg.json").write_text("{}")
    home = files.home()
    assert (home / "settings.ini").read_text().startswith("[General]")
    assert (home / "recovery" / "autosave-1-1.ncg.json").exists()
    assert not old.exists()


def test_neurocanvas_home_still_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROCANVAS_HOME", str(tmp_path / "elsewhere"))
    assert files.home() == tmp_path / "elsewhere"


def test_start_sets_no_organization_name(qtbot, qapp):
    old_org = qapp.organizationName()
    qapp.setOrganizationName("")
    w = start_editor(None)
    try:
        assert qapp.organizationName() == "" and qapp.applicationName() == "NeuroCanvas"
    finally:
        w.close()
        w.deleteLater()
        qapp.setOrganizationName(old_org)


# ---- fresh machines: Qt's X11 plugin cannot load ---------------------------------------------
LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd3a5f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f2b1c000000)
\tlibxkbcommon-x11.so.0 => not found
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f2b1bfd0000)
\tlibxcb-icccm.so.4 => not found
\tlibglib-2.0.so.0 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2b1bc00000)
"""
LDD_OK = "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f2b1bfd0000)\n"
X11 = {"DISPLAY": ":0"}


def check(env=X11, output=LDD_MISSING, platform="linux"):
    return platform_check.xcb_problem(env=env, platform=platform, ldd=lambda p: output,
                                      find_plugin=lambda: ROOT / "libqxcb.so")


def test_missing_libraries_are_read_from_ldd():
    assert platform_check.missing_libraries(LDD_MISSING) == [
        "libxkbcommon-x11.so.0", "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libglib-2.0.so.0"]
    assert platform_check.missing_libraries(LDD_OK) == []


def test_libraries_map_to_debian_packages():
    assert platform_check.packages_for(
        ["libxkbcommon-x11.so.0", "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libX11-xcb.so.1",
         "libEGL.so.1", "libglib-2.0.so.0", "libgthread-2.0.so.0", "libdbus-1.so.3"]) == [
        "libxkbcommon-x11-0", "libxcb-cursor0", "libxcb-icccm4", "libx11-xcb1", "libegl1",
        "libglib2.0-0", "libdbus-1-3"]


def test_the_message_is_one_line_naming_libraries_and_the_command():
    msg = check()
    assert msg is not None and "\n" not in msg
    for lib in ("libxkbcommon-x11.so.0", "libxcb-cursor.so.0", "libxcb-icccm.so.4"):
        assert lib in msg
    assert ("sudo apt-get install libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 "
            "libglib2.0-0") in msg


@pytest.mark.parametrize("env, platform", [
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland"}, "linux"),
    ({}, "linux"),  # no X server at all: another problem, Qt says so itself
    ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, "linux"),
    ({"DISPLAY": ":0"}, "darwin"),
    ({"DISPLAY": ":0"}, "win32"),
])
def test_no_check_where_xcb_is_not_the_platform(env, platform):
    assert check(env=env, platform=platform) is None


def test_the_check_runs_when_xcb_is_asked_for_and_passes_when_all_is_there():
    assert check(env={"QT_QPA_PLATFORM": "xcb"}) is not None
    assert check(output=LDD_OK) is None
    assert check(output=None) is None  # no ldd: let Qt speak


def test_main_prints_one_line_and_exits_2(monkeypatch, capsys):
    msg = check()
    monkeypatch.setattr(platform_check, "xcb_problem", lambda: msg)
    started = []
    import gui.main_window
    monkeypatch.setattr(gui.main_window, "run_editor", lambda path=None: started.append(path))
    assert main_module.open_editor(None, []) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install" in err and "libxcb-cursor.so.0" in err
    assert not started, "Qt is never started"


def test_readme_lists_the_packages_the_check_knows():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in readme.splitlines() if "apt-get install" in ln and "libxcb" in ln)
    listed = set(line.split("install", 1)[1].split())
    assert set(platform_check.DEBIAN_PACKAGES) <= listed
