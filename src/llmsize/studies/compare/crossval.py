"""Grouped K-fold cross-validation on the known sizes: evidence for a hypothesis of
another structure than the reference's.

A hypothesis that changes the model itself (``dense_only`` pins the active
fraction, ``hidden_size`` adds a likelihood) has no Bayes factor here
(:mod:`llmsize.studies.compare.runner` says why). What it can be scored on is
what the tool is for: the size of a model it has not seen. The families of known
size (same-size siblings merged, as the calibration's hold-outs are,
:func:`llmsize.studies.calibration.holdouts.family_holdouts`) are dealt into K
folds; each fold's sizes are withheld (their prices stay), every hypothesis is
refitted, and each held-out model scores the log posterior density of its true
log10 total size, and of its active size.

The density at the truth comes from the posterior draws by a Gaussian kernel
density estimate (:func:`log_density_at`, Scott's bandwidth, evaluated in logs so
a truth far in the tail gets a large negative score, not minus infinity). Summed
over held-out models it is an expected log predictive density (ELPD) of sizes; the
difference from the reference's, its standard error over the paired models and
the stacking weights come from arviz-stats (:func:`cv_table`).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llmsize.inputs.data import Dataset, load_dataset
from llmsize.inputs.hypothesis import Hypothesis
from llmsize.physics.design import Design
from llmsize.studies.calibration.holdouts import Holdout, family_holdouts, holdout_design
from llmsize.studies.calibration.store import result_path, run_parallel

log = logging.getLogger(__name__)

#: NUTS settings of each fold's refit: those of a calibration refit
#: (``llmsize calibrate``'s defaults), one thread each, two fits at a time.
CV_SETTINGS = {"draws": 1000, "tune": 1000, "chains": 2, "cores": 1, "prior_draws": 1}

#: Folds of ``llmsize compare`` by default.
DEFAULT_FOLDS = 5


def folds(data: Dataset, design: Design, k: int) -> list[Holdout]:
    """The families of known size in ``k`` folds of about equal numbers of models.

    Each group of same-size families stays in one fold. Groups are dealt largest
    first to the fold with the fewest models so far (ties: the lower fold; groups
    of one size: by name), so the split is fixed by the data alone.
    """
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    groups = sorted(family_holdouts(data, design), key=lambda h: (-len(h.held_out), h.name))
    if len(groups) < k:
        raise ValueError(f"{len(groups)} groups of families of known size; fewer than {k} folds")
    members: list[list[Holdout]] = [[] for _ in range(k)]
    counts = [0] * k
    for g in groups:
        i = min(range(k), key=lambda j: (counts[j], j))
        members[i].append(g)
        counts[i] += len(g.held_out)
    return [
        Holdout(
            kind="fold",
            name=f"fold-{i + 1}-of-{k}",
            families=tuple(sorted(f for g in fold for f in g.families)),
            held_out=tuple(m for g in fold for m in g.held_out),
        )
        for i, fold in enumerate(members)
    ]


def log_density_at(draws: np.ndarray, truth: float) -> float:
    """Log density at ``truth`` of a Gaussian kernel density estimate of ``draws``.

    Scott's rule sets the bandwidth (``1.06 sd n^-1/5``, floored at a millionth
    of the scale so a pinned quantity stays finite); the sum over kernels is taken
    in logs, so a truth many bandwidths away scores a large negative number.
    """
    x = np.asarray(draws, dtype=np.float64).reshape(-1)
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    h = max(1.06 * sd * x.size ** (-0.2), 1e-6 * max(1.0, abs(float(np.mean(x)))))
    z = (truth - x) / h
    log_k = -0.5 * z**2 - math.log(h) - 0.5 * math.log(2 * math.pi)
    top = float(np.max(log_k))
    return top + math.log(float(np.mean(np.exp(log_k - top))))


def fit_fold(data_dir: str, hyp_json: str, holdout_json: str, settings: dict) -> list[dict]:
    """Refit ``hyp_json`` with the fold's sizes withheld; score each held-out model
    (runs in a worker).
    """
    import warnings

    from llmsize.inference.model import build_model
    from llmsize.inference.sampling import SampleSettings, sample_posterior
    from llmsize.outputs.summary import divergences

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    hyp = Hypothesis.model_validate_json(hyp_json)
    data = load_dataset(data_dir)
    fold = Holdout.from_json(holdout_json)
    design = holdout_design(data, hyp, fold, "full")
    trace = sample_posterior(build_model(design, hyp), SampleSettings(**settings))
    post = trace["posterior"].to_dataset()
    n_div = divergences(trace)
    known = data.known_models.set_index("model")
    held = set(fold.held_out)
    rows = []
    for m in (m for m in design.unknown if m in held):
        row: dict[str, object] = {
            "hypothesis": hyp.name,
            "fold": fold.name,
            "model": m,
            "divergences": n_div,
        }
        for name in ("total", "active"):
            truth = float(known.loc[m, f"{name}_params_b"])
            draws = np.log10(post[f"params_{name}_b"].sel(unknown_model=m).values)
            q05, q95 = np.quantile(draws, [0.05, 0.95])
            row.update(
                {
                    f"true_{name}_b": truth,
                    f"lpd_{name}": log_density_at(draws, math.log10(truth)),
                    f"covered_{name}": bool(q05 <= math.log10(truth) <= q95),
                    f"r_hat_{name}": _rhat(draws),
                }
            )
        rows.append(row)
    return rows


def _rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of one quantity's (chain, draw) draws."""
    import arviz_stats  # noqa: F401 (registers the .azstats accessor)

    da = xr.DataArray(np.asarray(draws, dtype=np.float64), dims=("chain", "draw"))
    return float(da.azstats.rhat())


def cross_validate(
    data: Dataset,
    hyps: list[Hypothesis],
    *,
    k: int = DEFAULT_FOLDS,
    design: Design | None = None,
    settings: dict | None = None,
    workers: int = 2,
    progress: bool = False,
) -> pd.DataFrame:
    """Refit every hypothesis on every fold; one row per hypothesis and held-out model.

    ``data.root`` is the data folder each worker loads; ``design`` is the first
    hypothesis' design of ``data`` where the caller has it (else it is built here),
    and fixes the folds. The fits run on a Dask cluster of ``workers`` processes
    (:func:`llmsize.studies.calibration.store.run_parallel`).
    """
    import json

    from llmsize.physics.design import build_design

    settings = {**CV_SETTINGS, **(settings or {})}
    if design is None:
        design = build_design(data, hyps[0])
    parts = folds(data, design, k)
    with tempfile.TemporaryDirectory(prefix="llmsize-cv-") as tmp:
        tasks = [
            (
                fit_fold,
                (
                    str(data.root),
                    hyp.model_dump_json(),
                    fold.to_json(),
                    {**settings, "seed": hyp.sampler.seed,
                     "target_accept": hyp.sampler.target_accept,
                     "adaptation": hyp.sampler.adaptation},
                ),
                result_path(Path(tmp), fold, hyp.name),
            )
            for hyp in hyps
            for fold in parts
        ]  # fmt: skip
        run_parallel(tasks, workers=workers, progress=progress)
        rows = [r for _, _, path in tasks for r in json.loads(path.read_text())]
    return pd.DataFrame(rows)


def cv_table(pointwise: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per hypothesis: the ELPD of held-out total sizes and its standard error, the
    difference from ``reference`` over the same held-out models with the standard
    error of that paired difference, the stacking weight (arviz-stats ``compare``),
    the coverage of the 90% intervals, and the worst R-hat and the divergences of
    its fold fits. Only models every hypothesis scored are counted.
    """
    from arviz_stats import compare
    from arviz_stats.utils import ELPDData

    lpd = pointwise.pivot_table(index="model", columns="hypothesis", values="lpd_total")
    lpd = lpd.dropna()
    names = list(dict.fromkeys(pointwise["hypothesis"]))
    n = len(lpd)
    elpd = {
        name: ELPDData(
            elpd=float(lpd[name].sum()),
            se=float(math.sqrt(n) * lpd[name].std(ddof=1)),
            p=0.0,
            n_samples=0,
            n_data_points=n,
            scale="log",
            warning=False,
            good_k=0.7,
            elpd_i=xr.DataArray(
                lpd[name].to_numpy(), dims=["model"], coords={"model": lpd.index.to_numpy()}
            ),
        )
        for name in names
    }
    weights = compare(elpd, method="stacking")["weight"]
    out = []
    for name in names:
        rows = pointwise[(pointwise["hypothesis"] == name) & pointwise["model"].isin(lpd.index)]
        diff = (lpd[name] - lpd[reference]).to_numpy()
        out.append(
            {
                "hypothesis": name,
                "cv_models": n,
                "elpd_cv": elpd[name].elpd,
                "elpd_cv_se": elpd[name].se,
                "elpd_cv_diff": float(diff.sum()),
                "elpd_cv_diff_se": float(math.sqrt(n) * diff.std(ddof=1)) if n > 1 else math.nan,
                "cv_weight": float(weights[name]),
                "cv_coverage_90": float(rows["covered_total"].mean()),
                "cv_max_r_hat": float(rows[["r_hat_total", "r_hat_active"]].max().max()),
                "cv_divergences": int(rows.groupby("fold")["divergences"].first().sum()),
            }
        )
    return pd.DataFrame(out)
