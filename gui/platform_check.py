"""Can Qt's X11 platform plugin load? Checked before the QApplication exists.

On a fresh Debian or Ubuntu machine, PySide6's xcb plugin (``libqxcb.so``) needs system
libraries that are not installed (libxcb-cursor0, libxcb-icccm4, libxkbcommon-x11-0, ...).
Qt then prints a page of advice and aborts the process. This module finds the libraries the
plugin cannot load (``ldd``) and words one line: what is missing and the apt-get command.
It imports no Qt module, so it can run where Qt cannot start.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Every package the editor needs on Debian/Ubuntu beyond Python; README "System packages"
# gives the same line. (Found with ldd on PySide6's xcb plugin and Qt's GUI libraries.)
DEBIAN_PACKAGES = (
    "libegl1 libgl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3 libxkbcommon0 "
    "libxkbcommon-x11-0 libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 "
    "libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 "
    "libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1 "
    "libxcb-glx0"
).split()

# Package names that do not follow Debian's rule for a library's package (see _package)
_PACKAGE_OF = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libGLdispatch.so.0": "libglvnd0",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libpng16.so.16": "libpng16-16",
    "libz.so.1": "zlib1g",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbrotlidec.so.1": "libbrotli1",
    **{lib: "libc6" for lib in ("libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0",
                                "librt.so.1")},
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


def missing_libraries(ldd_output: str) -> list[str]:
    """The library names ``ldd`` reports as "not found", each once, in order."""
    seen: dict[str, None] = {}
    for name in _NOT_FOUND.findall(ldd_output):
        seen.setdefault(name, None)
    return list(seen)


def _package(library: str) -> str:
    """The Debian package that ships ``library`` (a file name such as libxcb-icccm.so.4).

    Debian names a library's package after its soname: the name before ".so", lower case,
    then the major version, with a hyphen between the two when the name ends in a digit
    (libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0).
    """
    if library in _PACKAGE_OF:
        return _PACKAGE_OF[library]
    m = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\.\d+)*", library)
    if not m:
        return library
    name, major = m.group(1).lower(), m.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def packages_for(libraries: list[str]) -> list[str]:
    out: dict[str, None] = {}
    for lib in libraries:
        out.setdefault(_package(lib), None)
    return list(out)


def message(libraries: list[str]) -> str:
    """One line: the missing libraries and the command that installs them."""
    packages = " ".join(packages_for(libraries))
    return (f"the editor cannot start: Qt's X11 (xcb) platform plugin needs system libraries "
            f"that are missing ({', '.join(libraries)}); install them with "
            f"'sudo apt-get install {packages}' (README, \"System packages\", lists all the "
            "editor needs)")


def xcb_plugin() -> Path | None:
    """PySide6's ``plugins/platforms/libqxcb.so``, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for sub in ("Qt/plugins", "plugins"):
            plugin = Path(folder) / sub / "platforms" / "libqxcb.so"
            if plugin.exists():
                return plugin
    return None


def _run_ldd(plugin: Path) -> str | None:
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def _uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt is going to start its xcb plugin in this environment."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:  # "xcb", "offscreen", "wayland;xcb", "xcb:option=..."; the first one is tried
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    if not env.get("DISPLAY"):
        return False  # no X server to talk to: not a question of missing libraries
    # In a Wayland session Qt takes its wayland plugin first, which needs none of these.
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def xcb_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                ldd: Callable[[Path], str | None] = _run_ldd,
                find_plugin: Callable[[], Path | None] = xcb_plugin) -> str | None:
    """The one-line message when Qt's xcb plugin cannot load here, else None. Anything that
    keeps the check from running (no ldd, no plugin file) gives None: Qt then speaks for
    itself. The arguments stand in for the environment, sys.platform, ldd and the plugin's
    location in tests."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or not _uses_xcb(env):
        return None
    plugin = find_plugin()
    if plugin is None:
        return None
    output = ldd(plugin)
    if not output:
        return None
    missing = missing_libraries(output)
    return message(missing) if missing else None
