"""Calibration refits: every hold-out refitted with its sizes withheld, and scored.

Each hold-out (:mod:`.holdouts`: a group of same-size families, or a lab's own-API
ladder with one of its sizes kept) has its sizes removed, the model is refitted, and
the posterior of every held-out size is compared with the truth. The same is done
with every speed removed and with the held-out models' prices removed, to show what
each kind of evidence adds; the baselines (:mod:`.baselines`) are scored on the same
models, and simulation-based calibration (:mod:`.sbc`) runs in the same queue.

Fits are independent, so they run in parallel on a Dask cluster (:mod:`.store`);
each result is written to disk as soon as it arrives, and a rerun skips what is
already there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from llmsize.exceptions import DataError
from llmsize.inputs.data import Dataset, load_dataset
from llmsize.inputs.hypothesis import Hypothesis
from llmsize.physics.design import Design, build_design
from llmsize.studies.calibration.baselines import price_ratio_baseline, size_tier_baseline
from llmsize.studies.calibration.holdouts import (
    KINDS,
    VARIANT_LABELS,
    VARIANTS,
    Holdout,
    as_holdout,
    build_holdouts,
    classify,
    holdout_design,
    holdout_epochs,
    holdout_prices,
    model_families,
    select_holdouts,
)
from llmsize.studies.calibration.metrics import metrics
from llmsize.studies.calibration.sbc import SBC_SETTINGS, sbc_collect, sbc_tasks
from llmsize.studies.calibration.store import result_path, run_key, run_parallel

log = logging.getLogger(__name__)


def fit_holdout(
    data_dir: str, hyp_json: str, holdout: Holdout | str, variant: str, settings: dict
) -> list[dict]:
    """Refit with ``holdout`` (a :class:`Holdout`, its JSON, or one family's name)
    withheld and score its models (runs in a worker).
    """
    import warnings

    from llmsize.inference.model import build_model
    from llmsize.inference.sampling import SampleSettings, sample_posterior
    from llmsize.inputs.hypothesis import Hypothesis
    from llmsize.outputs.summary import divergences

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    hyp = Hypothesis.model_validate_json(hyp_json)
    data = load_dataset(data_dir)
    h = as_holdout(data, holdout)
    design = holdout_design(data, hyp, h, variant)
    model = build_model(design, hyp)
    trace = sample_posterior(model, SampleSettings(**settings))
    post = trace["posterior"].to_dataset()
    n_div = divergences(trace)
    known = data.known_models.set_index("model")
    held = set(h.held_out)
    rows = []
    for m in (m for m in design.unknown if m in held):
        true_total = float(known.loc[m, "total_params_b"])
        true_active = float(known.loc[m, "active_params_b"])
        tot = post["params_total_b"].sel(unknown_model=m).values
        act = post["params_active_b"].sel(unknown_model=m).values
        row = {
            "holdout": h.name,
            "kind": h.kind,
            "variant": variant,
            "model": m,
            "true_total_b": true_total,
            "true_active_b": true_active,
            "divergences": n_div,
        }
        for name, draws, truth in (("total", tot, true_total), ("active", act, true_active)):
            flat = draws.reshape(-1)
            q = np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95])
            row.update(
                {
                    f"{name}_q05": q[0],
                    f"{name}_q25": q[1],
                    f"{name}_q50": q[2],
                    f"{name}_q75": q[3],
                    f"{name}_q95": q[4],
                    f"{name}_pit": float(np.mean(flat <= truth)),
                    f"{name}_r_hat": _rhat(draws),
                }
            )
        rows.append(row)
    return rows


def _rhat(draws: np.ndarray) -> float:
    import arviz as az
    import xarray as xr

    da = xr.DataArray(draws, dims=("chain", "draw"))
    return float(az.rhat(xr.Dataset({"x": da}))["x"])


def collect(
    out_dir: Path, data: Dataset, design: Design, holdouts: Iterable[Holdout], key: str = ""
) -> pd.DataFrame:
    """Gather the written fits and the baselines into one table: one row per (held-out
    model, hold-out, method), with the hold-out's kind and split and the model's
    family, lab and classes (architecture, price regime, era).
    """
    fam = model_families(data)
    known = data.known_models.set_index("model")
    rows = []
    for h in holdouts:
        epochs = holdout_epochs(data, design, h)
        scored = [m for m in dict.fromkeys(epochs["model"]) if m in set(h.held_out)]
        base = {
            "holdout": h.name,
            "kind": h.kind,
            "split": h.split,
            "anchor": h.anchor or "",
            "holdout_sha256": h.digest()[:12],
        }

        def tags(m: str, _ep=epochs) -> dict:
            return {"family": fam.get(m, m), **classify(data, _ep, m)}

        for variant in VARIANTS:
            path = result_path(out_dir, h, variant, key)
            if path.exists():
                for r in json.loads(path.read_text(encoding="utf-8")):
                    rows.append(
                        {**base, **tags(r["model"]), **r, "method": VARIANT_LABELS[variant]}
                    )
        ratio = price_ratio_baseline(data, design, scored, epochs=epochs)
        tiers = size_tier_baseline(
            dataclasses.replace(data, prices=holdout_prices(data, h)), scored
        )
        for label, est in (
            ("baseline: price ratio to a reference model", ratio),
            ("baseline: provider size tiers", tiers),
        ):
            for m, n in est.items():
                rows.append(
                    {
                        **base,
                        **tags(m),
                        "variant": "baseline",
                        "method": label,
                        "model": m,
                        "true_total_b": float(known.loc[m, "total_params_b"]),
                        "true_active_b": float(known.loc[m, "active_params_b"]),
                        "total_q50": n,
                    }
                )
    table = pd.DataFrame(rows)
    for col in (
        "holdout",
        "kind",
        "split",
        "model",
        "method",
        "variant",
        "true_total_b",
        "true_active_b",
        "total_q05",
        "total_q50",
        "total_q95",
        "total_pit",
        "active_q05",
        "active_q50",
        "active_q95",
        "active_pit",
    ):
        if col not in table:
            table[col] = np.nan
    return table


#: Most workers of the local Dask cluster (each is a process with a compiled model).
MAX_WORKERS = 64
#: Most simulation-based calibration runs of one call.
MAX_SIMULATIONS = 100_000


def check_calibration(
    *,
    data_dir: Path,
    out_dir: Path,
    hypothesis_files: Iterable[Path] = (),
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    workers: int = 1,
    simulations: int = 0,
) -> None:
    """Refuse settings and an output folder ``calibrate`` cannot use, before any fit.

    The refits' sampler settings (:func:`llmsize.inputs.hypothesis.check_sampler_options`),
    the cluster's size and the number of SBC runs in range, and the output folder
    (:func:`llmsize.outputs.folders.check_output_dir`; a calibration writes its
    files into the folder, keeping the fits of earlier runs, so an existing
    folder is written into, never replaced). Raises
    :class:`~llmsize.exceptions.LlmsizeError`.
    """
    from llmsize.inputs.hypothesis import check_sampler_options, check_whole_number
    from llmsize.outputs.folders import check_output_dir

    check_sampler_options(draws=draws, tune=tune, chains=chains)
    check_whole_number("--workers", workers, 1, MAX_WORKERS)
    check_whole_number("--sbc", simulations, 0, MAX_SIMULATIONS)
    check_output_dir(out_dir, data_dir=data_dir, hypothesis_files=hypothesis_files, replaces=False)


def run_calibration(
    *,
    data_dir: Path,
    hyp: Hypothesis,
    out_dir: Path,
    settings: dict,
    scheduler: str | None = None,
    workers: int = 2,
    variants: Iterable[str] = VARIANTS,
    kinds: Iterable[str] = KINDS,
    only: Iterable[str] | None = None,
    simulations: int = 0,
    sbc_settings: dict | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[pd.DataFrame, pd.DataFrame] | None]:
    """Refit every hold-out of ``kinds`` (or ``only`` those named so, or holding out a
    family named so) under each variant, and run ``simulations`` SBC refits; return
    (table, metrics, SBC ranks and tests or None).

    Hold-out and SBC fits go to the same Dask cluster in one queue, the long SBC
    batches first, so neither kind waits for the other's stragglers.
    """
    from llmsize.outputs.folders import output_error

    check_calibration(
        data_dir=data_dir,
        out_dir=out_dir,
        draws=settings.get("draws"),
        tune=settings.get("tune"),
        chains=settings.get("chains"),
        workers=workers,
        simulations=simulations,
    )
    data = load_dataset(data_dir)
    design = build_design(data, hyp)
    holdouts = build_holdouts(data, design, kinds, hyp.calibration.prior_families)
    if only:
        holdouts = select_holdouts(holdouts, only)
    if not holdouts:
        raise DataError(
            f"no hold-out of kind {', '.join(kinds)} in this data (a lab ladder needs "
            "labs.csv and a lab's own prices for two known sizes)",
            field="kind",
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, out_dir) from None
    hyp_json = hyp.model_dump_json()
    key = run_key(hyp_json, data.digest, settings)
    tasks = [
        (
            fit_holdout,
            (str(data_dir), hyp_json, h.to_json(), v, settings),
            result_path(out_dir, h, v, key),
        )
        for h in holdouts
        for v in variants
    ]
    sbc_todo: list[tuple[Callable, tuple, Path]] = []
    if simulations:
        sbc_settings = {**settings, **(sbc_settings or SBC_SETTINGS)}
        sbc_todo = sbc_tasks(
            data_dir, hyp_json, data_digest=data.digest, out_dir=out_dir,
            simulations=simulations, settings=sbc_settings,
        )  # fmt: skip
    run_parallel(sbc_todo + tasks, scheduler=scheduler, workers=workers, progress=progress)
    table = collect(out_dir, data, design, holdouts, key)
    sbc = sbc_collect(sbc_todo, simulations) if simulations else None
    return table, metrics(table), sbc
