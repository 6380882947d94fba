"""Summaries and diagnostics of a fit: the table of ``summary.csv`` and its checks."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from llmsize.physics.design import Design

#: Thresholds every reported quantity must meet (``--strict`` enforces them).
RHAT_MAX = 1.01
ESS_BULK_MIN = 400
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Power-scaling sensitivity above this is flagged (Kallioinen et al. 2024).
PSENSE_THRESHOLD = 0.05

#: Per-model quantities of ``summary.csv``, with the posterior variable behind each.
MODEL_QUANTITIES = {
    "params_total_b": "params_total_b",
    "params_active_b": "params_active_b",
    "tokens_t": "tokens_t",
}
COLUMNS = [
    "model",
    "provider",
    "date",
    "quantity",
    "mean",
    "sd",
    "q05",
    "q25",
    "q50",
    "q75",
    "q95",
    "r_hat",
    "ess_bulk",
    "ess_tail",
]


def _stats(draws: xr.DataArray) -> dict[str, float]:
    """Mean, sd, quantiles, R-hat and ESS of one scalar quantity's draws."""
    values = draws.values
    flat = values.reshape(-1)
    out = {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1))}
    for q, name in zip(QUANTILES, ("q05", "q25", "q50", "q75", "q95"), strict=True):
        out[name] = float(np.quantile(flat, q))
    if np.ptp(flat) == 0.0:
        # A constant (e.g. a precision fixed by the data) converges trivially.
        out.update(r_hat=1.0, ess_bulk=float(flat.size), ess_tail=float(flat.size))
        return out
    ds = xr.Dataset({"x": draws})
    out["r_hat"] = float(az.rhat(ds)["x"])
    out["ess_bulk"] = float(az.ess(ds, method="bulk")["x"])
    out["ess_tail"] = float(az.ess(ds, method="tail")["x"])
    return out


def summary_table(tree: xr.DataTree, design: Design) -> pd.DataFrame:
    """One row per (unknown model, provider, date, quantity).

    Size and training tokens are per model, so they repeat across a model's
    dates; the serving precision probabilities are per date.
    """
    post = tree["posterior"].to_dataset()
    rows = []
    per_model: dict[str, dict[str, dict[str, float]]] = {}
    for model in design.unknown:
        per_model[model] = {
            q: _stats(post[var].sel(unknown_model=model)) for q, var in MODEL_QUANTITIES.items()
        }
    epoch_names = list(post["p_bits"].coords["epoch"].values)
    for e, r in enumerate(design.epochs.itertuples()):
        if r.model not in per_model:
            continue
        base = {"model": r.model, "provider": r.provider, "date": r.date.isoformat()}
        for q, stats in per_model[r.model].items():
            rows.append({**base, "quantity": q, **stats})
        for b in post["p_bits"].coords["bits"].values:
            draws = post["p_bits"].sel(epoch=epoch_names[e], bits=b)
            rows.append({**base, "quantity": f"p_bits_{b}", **_stats(draws)})
        draws = post["p_hardware"].sel(epoch=epoch_names[e]).isel(hardware=-1)
        newer = str(post["p_hardware"].coords["hardware"].values[-1])
        rows.append({**base, "quantity": f"p_hardware_{newer}", **_stats(draws)})
        rows.append(
            {**base, "quantity": "batch", **_stats(post["batch"].sel(epoch=epoch_names[e]))}
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def divergences(tree: xr.DataTree) -> int:
    """Divergent transitions after tuning."""
    return int(tree["sample_stats"]["diverging"].sum())


@dataclass(frozen=True)
class Diagnostics:
    """Convergence checks of a fit."""

    divergences: int
    draws: int
    chains: int
    max_r_hat: float
    min_ess_bulk: float
    worst_r_hat: str
    worst_ess: str
    all_max_r_hat: float
    all_min_ess_bulk: float

    @property
    def passed(self) -> bool:
        """No divergence, and every reported quantity within the R-hat and ESS thresholds."""
        return (
            self.divergences == 0
            and self.max_r_hat <= RHAT_MAX
            and self.min_ess_bulk >= ESS_BULK_MIN
        )

    def failures(self) -> list[str]:
        """Each failed check, as a sentence fragment for the pages."""
        out = []
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions (want 0)")
        if self.max_r_hat > RHAT_MAX:
            out.append(f"R-hat {self.max_r_hat:.3f} > {RHAT_MAX} ({self.worst_r_hat})")
        if self.min_ess_bulk < ESS_BULK_MIN:
            out.append(f"bulk ESS {self.min_ess_bulk:.0f} < {ESS_BULK_MIN} ({self.worst_ess})")
        return out


def parameter_draws(tree: xr.DataTree) -> xr.Dataset:
    """Draws of every sampled quantity but the discrete-choice probabilities and
    the constants a hypothesis pins (which have no R-hat).
    """
    post = tree["posterior"].to_dataset()
    keep = [
        v
        for v, a in post.data_vars.items()
        if not str(v).startswith(("p_bits", "p_hardware")) and float(a.std()) > 0
    ]
    return post[keep]


def _without_constant_warnings(fn, *args, **kwargs):
    """``fn`` with NumPy's invalid-value warnings off: an element that is constant
    across draws (a known model's entry of a per-model quantity) has no R-hat, and
    its NaN is left out below rather than printed as a warning.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return fn(*args, **kwargs)


def parameter_diagnostics(draws: xr.Dataset) -> tuple[float, float]:
    """The largest R-hat and smallest bulk ESS over every element of ``draws``
    (:func:`parameter_draws`). A plain function of a dataset, so that a worker
    process can run it (``pipeline``).
    """
    # Rank normalisation sorts every element's draws, and NumPy sorts without
    # the GIL: R-hat and bulk ESS run side by side.
    names = list(draws.data_vars)
    with ThreadPoolExecutor(max_workers=2) as pool:
        rhat_job = pool.submit(_without_constant_warnings, az.rhat, draws)
        ess_job = pool.submit(_without_constant_warnings, az.ess, draws, method="bulk")
        rhat, ess = rhat_job.result(), ess_job.result()
    r_vals = np.concatenate([rhat[v].values.reshape(-1) for v in names])
    e_vals = np.concatenate([ess[v].values.reshape(-1) for v in names])
    return (
        float(np.max(r_vals[np.isfinite(r_vals)], initial=1.0)),
        float(np.min(e_vals[np.isfinite(e_vals)], initial=np.inf)),
    )


def diagnostics(
    tree: xr.DataTree, table: pd.DataFrame, parameters: tuple[float, float] | None = None
) -> Diagnostics:
    """Divergences, and the worst R-hat and bulk ESS of the reported quantities.

    Also the worst over every parameter of the model, for the report:
    ``parameters`` when given (:func:`parameter_diagnostics`, computed
    elsewhere), else computed here.
    """
    label = table["model"] + " " + table["date"] + " " + table["quantity"]
    if len(table):
        i_r = int(table["r_hat"].to_numpy().argmax())
        i_e = int(table["ess_bulk"].to_numpy().argmin())
        max_r, worst_r = float(table["r_hat"].iloc[i_r]), str(label.iloc[i_r])
        min_e, worst_e = float(table["ess_bulk"].iloc[i_e]), str(label.iloc[i_e])
    else:
        max_r, worst_r, min_e, worst_e = 1.0, "-", float("inf"), "-"
    if parameters is None:
        parameters = parameter_diagnostics(parameter_draws(tree))
    all_r, all_e = parameters
    post = tree["posterior"]
    return Diagnostics(
        divergences=divergences(tree),
        draws=int(post.sizes["draw"]),
        chains=int(post.sizes["chain"]),
        max_r_hat=max_r,
        min_ess_bulk=min_e,
        worst_r_hat=worst_r,
        worst_ess=worst_e,
        all_max_r_hat=all_r,
        all_min_ess_bulk=all_e,
    )


def sensitivity_groups(
    tree: xr.DataTree, var_names=("params_total_b", "params_active_b", "tokens_t")
) -> dict[str, xr.Dataset]:
    """What :func:`psense_table` reads of a fit, as plain datasets (picklable,
    for a worker process): the quantities' draws, log likelihood and log prior.
    """
    post = tree["posterior"].to_dataset()
    return {
        "posterior": post[[v for v in var_names if v in post.data_vars]],
        "log_likelihood": tree["log_likelihood"].to_dataset(),
        "log_prior": tree["log_prior"].to_dataset(),
    }


def psense_of_groups(groups: dict[str, xr.Dataset]) -> pd.DataFrame:
    """:func:`psense_table` of the datasets of :func:`sensitivity_groups`."""
    return psense_table(xr.DataTree.from_dict(groups))


@contextlib.contextmanager
def _quiet_psense():
    """No warnings and no logged advice from ArviZ's psense (in whatever process
    it runs, whatever the logging set-up there).
    """
    logger = logging.getLogger("arviz_stats.psense")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def psense_table(
    tree: xr.DataTree, var_names=("params_total_b", "params_active_b", "tokens_t")
) -> pd.DataFrame:
    """Power-scaling sensitivity (ArviZ ``psense``) of per-model quantities.

    Each posterior is reweighted as if the prior (the hypothesis file's priors,
    the ``log_prior`` group) or the likelihood (every term of the
    ``log_likelihood`` group) were raised to a power near 1; the cumulative
    Jensen-Shannon distance per unit of log power is the sensitivity. Prior
    sensitivity above ``PSENSE_THRESHOLD`` with likelihood sensitivity below it
    means the conclusion is prior-driven; above on both, the prior and data
    conflict. Returns one row per (quantity, model).
    """
    from arviz_stats import psense_summary

    lik = list(tree["log_likelihood"].data_vars)
    names = [v for v in var_names if v in tree["posterior"].data_vars]
    # psense_summary logs and prints advice; the report explains the diagnosis instead.
    with _quiet_psense(), contextlib.redirect_stdout(io.StringIO()):
        table = psense_summary(
            tree, var_names=names, likelihood_var_names=lik, threshold=PSENSE_THRESHOLD
        )
    table = table.reset_index()
    label = table.columns[0]
    parts = table[label].str.extract(r"^([^\[]+)(?:\[(.*)\])?$")
    out = pd.DataFrame(
        {
            "quantity": parts[0],
            "model": parts[1],
            "prior": table["prior"].astype(float),
            "likelihood": table["likelihood"].astype(float),
            "diagnosis": table["diagnosis"].map(_diagnosis),
        }
    )
    out["driving_prior"], out["driving_prior_sensitivity"] = _driving_priors(tree, names, out)
    return out


def _driving_priors(tree: xr.DataTree, names: list[str], rows: pd.DataFrame):
    """For each (quantity, model), the one prior whose power-scaling moves it most."""
    from arviz_stats import psense

    priors = list(tree["log_prior"].data_vars)
    per_prior = {}
    with _quiet_psense(), contextlib.redirect_stdout(io.StringIO()):
        for p in priors:
            per_prior[p] = psense(tree, var_names=names, group="prior", group_var_names=[p])
    best, value = [], []
    for r in rows.itertuples():
        scores: dict[str, float] = {}
        for p, ds in per_prior.items():
            da = ds[r.quantity]
            if isinstance(r.model, str) and "unknown_model" in da.dims:
                da = da.sel(unknown_model=r.model)
            scores[p] = float(da)
        top = max(scores, key=lambda k: scores[k]) if scores else ""
        best.append(top)
        value.append(scores.get(top, float("nan")))
    return best, value


def _diagnosis(text: str) -> str:
    text = str(text)
    if "conflict" in text:
        return "prior-data conflict"
    if "strong prior" in text or "weak likelihood" in text:
        return "prior-driven"
    return "ok"
