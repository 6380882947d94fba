"""llmsize: infer how big a closed language model is from its prices and speeds.

The Python API, for a notebook or a script (the command line calls the same code)::

    import llmsize

    tree = llmsize.infer(overrides={"sampler.draws": 500})  # an ArviZ DataTree
    tree["posterior"]["total_b"]                             # sizes in billions
    llmsize.report(tree, "reports/mine")                     # the pages, as `llmsize infer`
    tree = llmsize.load("reports/default/posterior.nc")      # a saved run
    result = llmsize.compare(["models/default.toml", "models/chatgpt_20b.toml"])
    result.evidence                                          # a pandas table
    result = llmsize.calibrate(families=["mixtral-8x7b"], simulations=0)
    result.classes                                           # coverage per class

Errors are :class:`llmsize.exceptions.LlmsizeError` (the line the command prints).
Heavy imports wait for the first call, so ``import llmsize`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmsize.version import __version__

__all__ = ["__version__", "calibrate", "compare", "infer", "load", "report"]

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from llmsize.pipeline import InferenceResult
    from llmsize.studies.calibration.runner import CalibrationResult
    from llmsize.studies.compare.runner import CompareResult


def _override_list(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """``{"sampler.draws": 100, "mbu.alpha": 4.0}`` (or ``["sampler.draws=100"]``) as
    the ``KEY=VALUE`` strings of ``--set``; a string value is written as a TOML string.
    """
    import json

    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return [str(o) for o in overrides]
    out = []
    for key, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)
        else:
            text = json.dumps(value, default=str)
        out.append(f"{key}={text}")
    return out


def infer(
    hypothesis: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    out: str | Path | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    cores: int | None = None,
    progress: bool = False,
) -> xr.DataTree:
    """Fit a hypothesis to the data and return the run's ArviZ DataTree.

    ``hypothesis``: a hypothesis file (default ``models/default.toml`` of the working
    folder, else the bundled one); ``data``: a data folder (default ``data``, else the
    bundled data); ``overrides``: settings as ``--set`` takes them, a mapping
    (``{"sampler.draws": 100}``) or ``KEY=VALUE`` strings. The tree holds every group
    of the run (posterior, prior, predictive draws, log-likelihood) and, on its root,
    what made it (hypothesis, data sha256, seed, package versions). With ``out``, the
    report is also written there, as ``llmsize infer --out`` does; without, nothing is
    written (:func:`report` writes it later).
    """
    from llmsize.inputs.bundled import default_data_dir, default_hypothesis
    from llmsize.inputs.checks import RunRequest
    from llmsize.pipeline import fit_only, run_request

    request = RunRequest(
        data_dir=Path(data) if data is not None else default_data_dir(),
        hypothesis_path=Path(hypothesis) if hypothesis is not None else default_hypothesis(),
        draws=draws, tune=tune, chains=chains, seed=seed,
        overrides=_override_list(overrides), cores=cores,
    )  # fmt: skip
    shown: dict[str, Any] = {
        "hypothesis": hypothesis,
        "data": data,
        "overrides": overrides,
        "out": out,
    }
    shown |= {"draws": draws, "tune": tune, "chains": chains, "seed": seed}
    command = _command("infer", shown)
    if out is None:
        return fit_only(request, command=command, progress=progress)
    result = run_request(request, out_dir=Path(out), command=command, progress=progress)
    return result.tree


def load(path: str | Path) -> xr.DataTree:
    """The DataTree of a saved run (a report's ``posterior.nc``)."""
    from llmsize.outputs.io import load_run

    return load_run(path)


def report(
    tree: xr.DataTree | str | Path, out: str | Path, *, data: str | Path | None = None
) -> InferenceResult:
    """Write the report of a run (a DataTree of :func:`infer` or :func:`load`, or the
    path of a ``posterior.nc``) to ``out`` without sampling, as ``llmsize report``.

    ``data``: the folder the run was fitted on (default: the one it recorded, else the
    bundled data); its sha256 must be the run's. Returns the run's diagnostics and
    headline lines.
    """
    from llmsize.outputs.io import load_run
    from llmsize.pipeline import render_report

    source = "<tree>"
    if isinstance(tree, str | Path):
        source = str(tree)
        tree = load_run(tree)
    return render_report(
        tree, Path(out), data_dir=Path(data) if data is not None else None, source=source
    )


def _command(name: str, shown: Mapping[str, Any]) -> str:
    """How a call is recorded in the pages it writes: ``llmsize.compare(...)``."""
    return (
        f"llmsize.{name}("
        + ", ".join(
            f"{k}={str(v) if isinstance(v, Path) else v!r}"
            for k, v in shown.items()
            if v is not None
        )
        + ")"
    )


def compare(
    hypotheses: Sequence[str | Path],
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    out: str | Path = "reports/compare",
    reference: str | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    seed: int | None = None,
    cores: int | None = None,
    progress: bool = False,
    cv_folds: int | None = None,
) -> CompareResult:
    """Fit several hypothesis files to the same data and compare them, as ``llmsize
    compare`` does: the report goes to ``out``, and the fits and tables come back.

    Each hypothesis samples with its own ``[sampler]`` table unless ``draws``,
    ``tune``, ``chains`` or ``seed`` say otherwise; ``reference`` (default
    ``default`` when present, else the first) is the one Bayes factors are against.
    Hypotheses of another model structure are cross-validated on the known sizes
    in ``cv_folds`` folds (default 5; 0: not at all).
    """
    from llmsize.inputs.bundled import default_data_dir
    from llmsize.studies.compare.runner import CompareSettings
    from llmsize.studies.compare.runner import compare as run

    paths = [Path(h) for h in ([hypotheses] if isinstance(hypotheses, str | Path) else hypotheses)]
    settings = CompareSettings.from_options(
        draws=draws, tune=tune, chains=chains, seed=seed, cores=cores, progress=progress,
        cv_folds=cv_folds,
    )  # fmt: skip
    shown: dict[str, Any] = {
        "hypotheses": [str(p) for p in paths],
        "data": data,
        "overrides": overrides,
    }
    shown |= {"out": out, "reference": reference, "draws": draws, "tune": tune}
    return run(
        paths,
        data_dir=Path(data) if data is not None else default_data_dir(),
        out_dir=Path(out),
        settings=settings,
        overrides=_override_list(overrides),
        reference=reference,
        command=_command("compare", shown | {"chains": chains, "seed": seed, "cv_folds": cv_folds}),
    )


def calibrate(  # noqa: PLR0913 (one keyword per option of `llmsize calibrate`)
    hypothesis: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    out: str | Path | None = None,
    families: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    workers: int = 2,
    scheduler: str | None = None,
    simulations: int = 100,
    progress: bool = False,
) -> CalibrationResult:
    """Refit the hypothesis with each hold-out of models of known size and score the
    intervals, as ``llmsize calibrate`` does; writes ``out`` (default
    ``reports/calibration-<hypothesis name>``) and returns its tables.

    ``families``: only the hold-outs of these names (or holding out these families);
    ``kinds``: ``"family"`` and/or ``"ladder"``; ``variants``: ``"full"``,
    ``"no_speed"``, ``"no_price"``; ``simulations``: simulation-based calibration runs.
    """
    from llmsize.inputs.bundled import default_data_dir, default_hypothesis
    from llmsize.studies.calibration.runner import calibrate as run

    return run(
        data_dir=Path(data) if data is not None else default_data_dir(),
        hypothesis_path=Path(hypothesis) if hypothesis is not None else default_hypothesis(),
        out_dir=Path(out) if out is not None else None,
        overrides=_override_list(overrides),
        draws=draws,
        tune=tune,
        chains=chains,
        workers=workers,
        scheduler=scheduler,
        only=list(families or []),
        kinds=list(kinds or []),
        variants=list(variants or []),
        simulations=simulations,
        progress=progress,
    )
