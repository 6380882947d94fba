"""``llmsize calibrate`` and :func:`llmsize.calibrate` end to end: check, refit, score, write.

The refits themselves (Dask, resume, SBC, baselines) are in :mod:`.refits`;
this module runs them for one hypothesis and writes the folder the report quotes,
with the provenance (hypothesis, code and data digests) that decides whether a
report may quote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class CalibrationResult:
    """What a calibration wrote to ``out_dir``, as tables.

    ``table``: one row per scored (held-out model, hold-out, method); ``metrics``: the
    headline figures per method; ``classes``: coverage, error and width per class and
    split; ``sbc``: the simulation-based calibration's ranks and uniformity tests, or
    ``None`` when none was run.
    """

    out_dir: Path
    table: pd.DataFrame
    metrics: pd.DataFrame
    classes: pd.DataFrame
    sbc: tuple[pd.DataFrame, pd.DataFrame] | None


def calibrate(  # noqa: PLR0913 (one keyword per option of `llmsize calibrate`)
    *,
    data_dir: Path,
    hypothesis_path: Path,
    out_dir: Path | None = None,
    overrides: list[str] | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    workers: int = 2,
    scheduler: str | None = None,
    only: list[str] | None = None,
    kinds: list[str] | None = None,
    variants: list[str] | None = None,
    simulations: int = 100,
    progress: bool = False,
) -> CalibrationResult:
    """Check every setting and the output folder, then refit each hold-out (and each
    simulation), score them and write ``out_dir`` (default
    ``reports/calibration-<hypothesis name>``); a rerun resumes where one stopped.

    Raises :class:`~llmsize.exceptions.LlmsizeError` before any fit on bad input.
    """
    from llmsize.inputs.data import data_digest
    from llmsize.inputs.hypothesis import hypothesis_files, load_hypothesis
    from llmsize.outputs.io import write_json
    from llmsize.outputs.provenance import fit_data_digest, model_code_digest
    from llmsize.studies.calibration.holdouts import KINDS, VARIANTS
    from llmsize.studies.calibration.metrics import class_metrics
    from llmsize.studies.calibration.refits import check_calibration, run_calibration
    from llmsize.studies.calibration.report import write_outputs

    hyp = load_hypothesis(hypothesis_path, list(overrides or []))
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / f"calibration-{hyp.name}"
    check_calibration(
        data_dir=data_dir,
        hypothesis_files=hypothesis_files(hypothesis_path),
        out_dir=out_dir,
        draws=draws,
        tune=tune,
        chains=chains,
        workers=workers,
        simulations=simulations,
    )
    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": hyp.sampler.seed,
        "target_accept": hyp.sampler.target_accept,
        "adaptation": hyp.sampler.adaptation,
        "cores": 1,
        "prior_draws": 1,
    }
    table, mets, sbc = run_calibration(
        data_dir=data_dir,
        hyp=hyp,
        out_dir=out_dir,
        settings=settings,
        scheduler=scheduler,
        workers=workers,
        variants=variants or VARIANTS,
        kinds=kinds or KINDS,
        only=only or None,
        simulations=simulations,
        progress=progress,
    )
    classes = class_metrics(table)
    write_outputs(out_dir, table, mets, sbc, classes)
    write_json(
        {
            "model_sha256": hyp.model_digest(),
            "code_sha256": model_code_digest(),
            "data_sha256": data_digest(Path(data_dir)),
            "fit_data_sha256": fit_data_digest(Path(data_dir)),
        },
        out_dir / "provenance.json",
    )
    return CalibrationResult(out_dir=out_dir, table=table, metrics=mets, classes=classes, sbc=sbc)
