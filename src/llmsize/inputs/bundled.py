"""The bundled data and hypotheses, found from any working folder.

The repository's top-level ``data/`` and ``models/`` are the inputs of the
default run. A wheel carries copies of both (``pyproject.toml``'s
``force-include``) as ``llmsize/_bundled/data`` and ``llmsize/_bundled/models``:
inside the package, so ``importlib.resources`` finds them wherever it is
installed, and under a leading underscore, so nobody mistakes them for a
subpackage. An editable install, or ``PYTHONPATH=src``, finds the clone's own
folders beside ``src/``.

The commands' defaults (``--data data``, ``--hypothesis models/default.toml``)
are relative to the working folder; :func:`default_data_dir` and
:func:`default_hypothesis` keep them when they exist there (a clone, or a folder
a user set up the same way) and fall back to the bundled copies otherwise. A
path the user names is never replaced: a missing one is still one
``llmsize: error:`` line. Nothing here reads a file's contents.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: The defaults of ``--data`` and ``--hypothesis``, relative to the working folder.
DATA_DIR = Path("data")
DEFAULT_HYPOTHESIS = Path("models") / "default.toml"

#: Where a wheel puts the bundled folders, inside the package.
BUNDLED = "_bundled"


def _package_dir() -> Path | None:
    """The installed ``llmsize`` package folder, if it is a folder on disk (not a zip)."""
    files = importlib.resources.files("llmsize")
    return Path(str(files)) if isinstance(files, Path) else None


def bundled_root(package_dir: Path | None = None) -> Path | None:
    """The folder that holds the bundled ``data/`` and ``models/``, or ``None``.

    ``package_dir``: the ``llmsize`` package folder (default: the one imported).
    A wheel's ``llmsize/_bundled`` first; else, for a source tree
    (``src/llmsize`` of a clone, installed editable or not), the clone's root,
    recognised by its ``pyproject.toml``. Only a root holding both
    ``models/default.toml`` and ``data/`` counts.
    """
    package = package_dir if package_dir is not None else _package_dir()
    if package is None:
        return None
    candidates = [package / BUNDLED]
    if package.parent.name == "src":
        candidates.append(package.parent.parent)
    for root in candidates:
        if root.name != BUNDLED and not (root / "pyproject.toml").is_file():
            continue
        if (root / DEFAULT_HYPOTHESIS).is_file() and (root / DATA_DIR).is_dir():
            return root
    return None


def bundled_data_dir() -> Path | None:
    """The bundled data folder (absolute), or ``None`` when this install has none."""
    root = bundled_root()
    return root / DATA_DIR if root is not None else None


def bundled_models_dir() -> Path | None:
    """The bundled hypotheses' folder (absolute), or ``None`` when this install has none."""
    root = bundled_root()
    return root / DEFAULT_HYPOTHESIS.parent if root is not None else None


def default_data_dir() -> Path:
    """``data`` if the working folder has it, else the bundled copy (else ``data``,
    whose absence :func:`llmsize.inputs.data.load_dataset` reports).
    """
    if DATA_DIR.is_dir():
        return DATA_DIR
    bundled = bundled_data_dir()
    return bundled if bundled is not None else DATA_DIR


def default_hypothesis() -> Path:
    """``models/default.toml`` if the working folder has it, else the bundled copy
    (else ``models/default.toml``, whose absence the hypothesis loader reports).
    """
    if DEFAULT_HYPOTHESIS.is_file():
        return DEFAULT_HYPOTHESIS
    models = bundled_models_dir()
    return models / DEFAULT_HYPOTHESIS.name if models is not None else DEFAULT_HYPOTHESIS


def bundled_parent(name: str) -> Path | None:
    """The bundled hypothesis a missing ``extends = NAME`` falls back to, or ``None``.

    Only a bare file name (``"default.toml"``, no folder part) of a bundled
    hypothesis qualifies, so a user's ``my.toml`` that extends ``default.toml``
    works in any folder, while a path such as ``"../x.toml"`` never resolves to
    something the user did not mean.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        return None
    models = bundled_models_dir()
    if models is None:
        return None
    path = models / name
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return None
