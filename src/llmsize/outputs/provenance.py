"""What made a run, beyond its inputs: the package versions and the git commit.

A rerun is byte-identical only with the same sampler, compiler and array
libraries, so ``posterior.nc``'s attributes and ``diagnostics.json`` name them
(:func:`llmsize.outputs.io.provenance` adds :func:`environment` to every run's
attributes). ``summary.csv`` does not: it must stay byte-identical across
machines for the same seed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import io
import os
import platform
import re
import subprocess
import tokenize
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmsize.inputs.data import Dataset

#: The distributions whose versions a run records, under ``<name>_version``
#: (``-`` as ``_``): the sampler, its compilers and the array and table libraries.
PACKAGES = (
    "pymc",
    "pytensor",
    "numba",
    "nutpie",
    "arviz",
    "arviz-stats",
    "numpy",
    "pandas",
    "xarray",
)

#: The ``llmsize`` package folder this module belongs to.
PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: Longest wait for git (seconds): provenance must never hold a run up.
GIT_TIMEOUT_S = 10.0

#: Paths a run writes in a clone: their changes do not make the tree dirty.
OUTPUT_PATHS = ("reports",)


def package_versions() -> dict[str, str]:
    """``{"python_version": "3.12.1", "pymc_version": "6.4.0", ...}``; a package
    that is not installed is left out.
    """
    out = {"python_version": platform.python_version()}
    for name in PACKAGES:
        try:
            out[f"{name.replace('-', '_')}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def source_clone() -> Path | None:
    """The git clone llmsize is imported from (``src/llmsize`` of it), or ``None``
    for an installed wheel: a clone's root holds ``.git`` and ``pyproject.toml``.
    """
    if PACKAGE_DIR.parent.name != "src":
        return None
    root = PACKAGE_DIR.parent.parent
    if (root / ".git").exists() and (root / "pyproject.toml").is_file():
        return root
    return None


def _git(root: Path, *args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(root: Path | None = None) -> dict[str, str]:
    """``{"git_commit": <40 hex digits>, "git_dirty": "true" | "false"}`` of the
    clone llmsize runs from (``root``; default :func:`source_clone`), or ``{}``
    outside a clone or without a working git.

    Dirty: a tracked file differs from the commit, outside the folders a run
    writes (:data:`OUTPUT_PATHS`); untracked files do not count (as ``git
    describe --dirty``).
    """
    root = root if root is not None else source_clone()
    if root is None:
        return {}
    commit = (_git(root, "rev-parse", "--verify", "HEAD") or "").strip()
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return {}
    excludes = [f":(exclude){p}" for p in OUTPUT_PATHS]
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes)
    out = {"git_commit": commit}
    if status is not None:
        out["git_dirty"] = "true" if status.strip() else "false"
    return out


def environment() -> dict[str, str]:
    """:func:`package_versions` and :func:`git_state`: flat string attributes, as
    netCDF stores them.
    """
    return {**package_versions(), **git_state()}


#: The modules that turn a hypothesis and data into a posterior, and a calibration's
#: hold-outs into scores (paths inside the package). A calibration made with other
#: versions of them measured another model, though its hypothesis and data digests
#: match: :func:`model_code_digest` tells them apart. Presentation (reports, pages,
#: plots, the command line) is left out, so that rewording a page keeps a
#: calibration valid, and so is the wording of these modules themselves (comments,
#: docstrings, layout: :func:`code_tokens`).
MODEL_MODULES = (
    "inputs/hypothesis.py",
    "inputs/data.py",
    "outputs/families.py",
    "physics/*.py",
    "inference/*.py",
    "studies/calibration/baselines.py",
    "studies/calibration/holdouts.py",
    "studies/calibration/metrics.py",
    "studies/calibration/refits.py",
    "studies/calibration/sbc.py",
    "studies/calibration/store.py",
)


def model_code_files(package: Path | None = None) -> list[Path]:
    """The files of :data:`MODEL_MODULES` in ``package`` (default: this llmsize),
    sorted by their path inside it.
    """
    package = package if package is not None else PACKAGE_DIR
    files: set[Path] = set()
    for pattern in MODEL_MODULES:
        found = sorted(package.glob(pattern))
        if not found:
            raise FileNotFoundError(f"{package / pattern}: no such model module")
        files.update(found)
    return sorted(files, key=lambda p: p.relative_to(package).as_posix())


def code_tokens(source: str) -> list[str]:
    """The tokens of Python ``source`` that decide what it does: no comments, no
    docstrings, no line breaks inside brackets and no trailing commas, so that
    rewording a docstring or reformatting (``ruff format``) leaves them unchanged.

    Docstrings are found by :mod:`ast` (the first string of a module, class or
    function body) and dropped by position from the :mod:`tokenize` stream; the
    tokens, not the syntax tree, are kept because their text does not change
    between Python versions.
    """
    tree = ast.parse(source)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                end = body[0].end_lineno or body[0].lineno
                doc_lines.update(range(body[0].lineno, end + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
    kept: list[tokenize.TokenInfo] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in skip:
            continue
        if tok.type in (tokenize.STRING, tokenize.NEWLINE) and tok.start[0] in doc_lines:
            continue
        if tok.type == tokenize.OP and tok.string in ")]}" and kept and kept[-1].string == ",":
            kept.pop()
        kept.append(tok)
    return [f"{tokenize.tok_name[t.type]}:{t.string}" for t in kept]


def model_code_digest(package: Path | None = None) -> str:
    """sha256 over the path and :func:`code_tokens` of every file of
    :func:`model_code_files`: what the code does, not how it is worded or laid out.
    """
    package = package if package is not None else PACKAGE_DIR
    h = hashlib.sha256()
    for path in model_code_files(package):
        rel = path.relative_to(package).as_posix().encode()
        body = "\x00".join(code_tokens(path.read_text(encoding="utf-8"))).encode()
        h.update(len(rel).to_bytes(8, "little") + rel + len(body).to_bytes(8, "little") + body)
    return h.hexdigest()


#: Data files only the report reads (families to page, public claims to mark): no fit
#: reads them, so a calibration stays valid when they change.
REPORT_ONLY_DATA = ("claims.csv", "families.csv")


def fit_data_digest(root: Path) -> str:
    """sha256 over the names and bytes of the CSV files of data folder ``root`` that a
    fit reads: every one but :data:`REPORT_ONLY_DATA` (hashed as
    :func:`llmsize.inputs.data.data_digest` hashes them all).
    """
    from llmsize.inputs.data import files_digest, read_csv_files

    files = read_csv_files(Path(root))
    return files_digest({k: v for k, v in files.items() if k not in REPORT_ONLY_DATA})


def calibration_matches(made: dict, *, model_sha256: str, data: Dataset) -> bool:
    """Whether a calibration's ``provenance.json`` (``made``) was made with this
    hypothesis' model (``model_sha256``), this model code and this data: the data a fit
    reads (``fit_data_sha256``) or, for a calibration recorded before that field, every
    data file (``data_sha256``). ``data`` is the :class:`~llmsize.inputs.data.Dataset`.
    """
    if made.get("model_sha256") != model_sha256 or made.get("code_sha256") != model_code_digest():
        return False
    if "fit_data_sha256" in made:
        return made["fit_data_sha256"] == fit_data_digest(data.root)
    return made.get("data_sha256") == data.digest
