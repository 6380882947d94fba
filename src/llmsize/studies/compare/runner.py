"""Compare hypotheses on the same data: ``llmsize compare FILE...``.

Every hypothesis file is fitted to the same data twice over:

- **NUTS** (nutpie) gives the posterior: gpt-3.5-turbo's size at each price
  date, the probability of each public claim, PSIS-LOO on the price and speed
  observations (one serving epoch is one observation: its prices, speeds and
  TTFTs) and power-scaling sensitivity (psense) of each size.
- **Bayes factors** of a hypothesis of the reference's compiled structure (it
  changes prior parameters, component weights or price levels, not the model),
  bridged between the reference's fit and the hypothesis' own
  (:mod:`llmsize.studies.compare.bridge`: the ratio of the two unnormalised
  posteriors at each draw is the compiled log density under the two sets of
  values; its standard error flags little overlap). A hypothesis that changes
  only prior densities is also scored by importance reweighting of the
  reference's draws alone (:mod:`llmsize.inference.evidence`, with a Pareto k on
  its weights), which fails where its prior is narrow and lies in the reference
  posterior's tail.

The two kinds answer different questions. A Bayes factor weighs each hypothesis'
priors against all the data, so a prior that puts its mass where the data are
not is penalised even if its posterior predicts well; PSIS-LOO asks how well
each posterior predicts one held-out serving epoch from the rest. The table
says where they disagree and where an estimate is unreliable.

Each fit is reduced to its tables as soon as it ends (:class:`HypothesisFit`),
so the comparison holds one fit's draws at a time.

Marginal likelihoods of structural hypotheses (another model, not only other
priors) are not estimated: such a hypothesis, and the reference, are scored by
grouped K-fold cross-validation on the known sizes instead
(:mod:`llmsize.studies.compare.crossval`: the families of known size in K folds,
each withheld and refitted, scored by the log density of each held-out model's
true size). Sequential Monte Carlo, and bridge sampling of each
fit's marginal likelihood against a Gaussian proposal, were tried and removed: on the bundled data SMC's estimates lay 17
to 74 nats below bridge sampling's and its chains spread by 7 to 22 nats
(reports/compare of 2026-11-28), and bridge sampling's repeats over random
splits spread by 0.5 to 4.4 nats, over a nat for 11 of 13 hypotheses
(reports/compare of 2026-12-03). Estimators that disagree by that much on the
real model are not evidence, though each recovered a low-dimensional
conjugate model's marginal likelihood.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from llmsize.exceptions import LlmsizeError
from llmsize.inference.evidence import (
    K_MAX,
    ReweightedEvidence,
    log_prior_ratio,
    reweightable,
    reweighted_log_bf,
)
from llmsize.inference.model import build_model
from llmsize.inference.sampling import SampleSettings, fit, log_prior
from llmsize.inputs.data import Dataset, check_unknown_models, load_dataset
from llmsize.inputs.hypothesis import (
    Hypothesis,
    check_sampler_options,
    hypothesis_files,
    load_hypothesis,
)
from llmsize.outputs.families import ABOUT_FACTOR
from llmsize.outputs.markdown import drivers
from llmsize.outputs.plots import HEADLINE_PREFIX, headline_epochs
from llmsize.outputs.summary import (
    ESS_BULK_MIN,
    PSENSE_THRESHOLD,
    RHAT_MAX,
    Diagnostics,
    diagnostics,
    psense_table,
    summary_table,
)
from llmsize.outputs.tables import billions, markdown_table
from llmsize.outputs.templating import prose, render
from llmsize.physics.design import Design, build_design
from llmsize.studies.calibration.holdouts import family_holdouts
from llmsize.studies.compare.bridge import (
    MAX_DRAWS,
    SE_MAX,
    BridgedEvidence,
    LogDensity,
    bridged_log_bf,
    thin,
)
from llmsize.studies.compare.crossval import (
    CV_SETTINGS,
    DEFAULT_FOLDS,
    cross_validate,
    cv_table,
    folds,
)
from llmsize.version import __version__

log = logging.getLogger(__name__)

#: Pareto k above this makes a PSIS-LOO estimate unreliable (Vehtari et al. 2024).
PARETO_K_MAX = 0.7
#: Fewest posterior draws in all (draws x chains) that PSIS-LOO can smooth: ArviZ
#: fits the Pareto tail to a fifth of the draws and needs at least 5 in it.
MIN_LOO_DRAWS = 25


@dataclass(frozen=True)
class Claim:
    """A public claim about ChatGPT's size, as a question the posterior can answer."""

    text: str
    source: str
    model: str
    #: "about X billion": P(X / ABOUT_FACTOR <= N <= X * ABOUT_FACTOR).
    about_b: float | None = None
    #: "smaller than that model": P(N_model < N_other).
    smaller_than: str | None = None
    #: The claim is about what some evidence implies; evaluate it where that evidence is on.
    needs_evidence: str | None = None
    date: str = ""


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "ChatGPT was about 200B at launch",
        "the hand-argued timeline this project tests (GPT-3 was 175B, so ChatGPT started near it)",
        "gpt-3.5-turbo-0301",
        about_b=200,
        date="2023-03-01",
    ),
    Claim(
        "about 120B after March 2023",
        "the same timeline, after the first price cut",
        "gpt-3.5-turbo-0613",
        about_b=120,
        date="2023-06-13",
    ),
    Claim(
        "about 20B by the end of 2023",
        "CodeFusion, arXiv:2310.17680 v1 (withdrawn; traced to a Forbes opinion article)",
        "gpt-3.5-turbo-1106",
        about_b=20,
        date="2023-11-06",
    ),
    Claim(
        "ChatGPT is about 175B",
        "MEDEC, arXiv:2412.19260 v1 (an estimate without evidence)",
        "gpt-3.5-turbo-0125",
        about_b=175,
        date="2024-01-25",
    ),
    Claim(
        "a hidden size of about 4096 means about 7B parameters",
        "Finlayson et al. 2024 (arXiv:2403.09539) measured d_model about 4096; "
        "press readings turned it into 7B",
        "gpt-3.5-turbo-0125",
        about_b=7,
        needs_evidence="hidden_size",
        date="2024-01-25",
    ),
    Claim(
        "the 2023-06-13 cut was a smaller model",
        "the hand-argued timeline: each price cut a smaller model",
        "gpt-3.5-turbo-0613",
        smaller_than="gpt-3.5-turbo-0301",
        date="2023-06-13",
    ),
)


@dataclass(frozen=True)
class CompareSettings:
    """Settings of a comparison. NUTS draws, tuning steps, chains and seed left
    ``None`` come from each hypothesis' own ``[sampler]`` table, as ``infer``
    takes them (so the reference's row is the reference report's fit); given,
    they apply to every hypothesis.
    """

    draws: int | None = None
    tune: int | None = None
    chains: int | None = None
    seed: int | None = None
    prior_draws: int = 1000
    #: Threads each fit's chains run on.
    cores: int = 2
    #: nutpie's progress bar during each fit.
    progress: bool = False
    #: Folds of the cross-validation on known sizes of hypotheses of another
    #: structure (:mod:`llmsize.studies.compare.crossval`); 0: none; ``None``:
    #: ``DEFAULT_FOLDS``, or one per group of families where the data have fewer.
    cv_folds: int | None = None

    @classmethod
    def from_options(
        cls,
        *,
        draws: int | None,
        tune: int | None,
        chains: int | None,
        seed: int | None,
        cores: int | None,
        progress: bool,
        cv_folds: int | None = None,
    ) -> CompareSettings:
        """The settings of the command's or the API's options (``None``: the default)."""
        return cls(
            draws=draws, tune=tune, chains=chains, seed=seed, progress=progress,
            **({} if cores is None else {"cores": cores}),
            cv_folds=cv_folds,
        )  # fmt: skip

    def cv_settings(self) -> dict:
        """NUTS settings of each cross-validation refit: a calibration refit's, with
        the draws, tuning steps and chains given to ``compare`` over them.
        """
        given = {"draws": self.draws, "tune": self.tune, "chains": self.chains}
        return {**CV_SETTINGS, **{k: v for k, v in given.items() if v is not None}}


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO of one fit: what the evidence table reads (not the pointwise draws)."""

    elpd: float
    se: float
    p: float
    elpd_i: np.ndarray
    pareto_k: np.ndarray

    @classmethod
    def of(cls, elpd) -> LooResult:
        """The numbers of an arviz-stats ``ELPDData``."""
        return cls(
            elpd=float(elpd.elpd),
            se=float(elpd.se),
            p=float(elpd.p),
            elpd_i=np.asarray(elpd.elpd_i, dtype=np.float64).reshape(-1),
            pareto_k=np.asarray(elpd.pareto_k, dtype=np.float64).reshape(-1),
        )


@dataclass
class HypothesisFit:
    """Everything ``compare`` keeps of one hypothesis.

    Not all its draws: a fit's DataTree (about 600 MB on the bundled data) is
    reduced to its tables as soon as the fit ends, so a comparison of many
    hypotheses holds one fit at a time. For the Bayes factors it keeps the
    posterior of the quantities the hypothesis files give priors to
    (``prior_quantities``, the input of :func:`llmsize.inference.sampling.log_prior`)
    and a thinned copy of the sampled variables' draws (``draws``).
    """

    name: str
    path: str
    hyp: Hypothesis
    design: Design
    diagnostics: Diagnostics
    seconds: float
    loo: LooResult
    psense: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The NUTS settings of its fit (its ``[sampler]``, or what ``compare`` was given).
    sample: SampleSettings | None = None
    #: Its rows of ``comparison.csv`` and ``claims.csv`` (:func:`size_rows`, :func:`claim_rows`).
    sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    prior_quantities: xr.Dataset = field(default_factory=xr.Dataset)
    #: The sampled variables' draws, thinned (:func:`llmsize.studies.compare.bridge.thin`).
    draws: xr.Dataset = field(default_factory=xr.Dataset)


def fit_hypothesis(
    path: str | Path,
    data: Dataset,
    settings: CompareSettings,
    *,
    overrides: list[str] | None = None,
) -> HypothesisFit:
    """Fit one hypothesis with NUTS; compute LOO, psense, its sizes and claims."""
    from arviz_stats import loo

    hyp = load_hypothesis(path, overrides)
    design = build_design(data, hyp)
    sample = sample_settings(hyp, settings)
    t0 = time.perf_counter()
    tree = fit(design, hyp, sample, pointwise=True, progress=settings.progress)
    diag = diagnostics(tree, summary_table(tree, design))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elpd = loo(tree, var_name="serving", pointwise=True)
    psense = psense_table(tree, ("params_total_b",))
    post = tree["posterior"].to_dataset()
    names = [n for n in type(hyp.priors).model_fields if n in post]
    return HypothesisFit(
        name=hyp.name,
        path=str(path),
        hyp=hyp,
        design=design,
        diagnostics=diag,
        seconds=time.perf_counter() - t0,
        loo=LooResult.of(elpd),
        psense=psense,
        sample=sample,
        sizes=size_rows(hyp.name, design, post),
        claims=claim_rows(hyp, design, tree, psense),
        prior_quantities=post[names].load(),
        draws=thin(post, [rv.name for rv in build_model(design, hyp).free_RVs]),
    )


def sample_settings(hyp: Hypothesis, settings: CompareSettings) -> SampleSettings:
    """NUTS settings of one hypothesis' fit: its ``[sampler]``, the given ones over it."""
    return SampleSettings.from_hypothesis(
        hyp.sampler,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        seed=settings.seed,
        prior_draws=settings.prior_draws,
        cores=settings.cores,
    )


# --------------------------------------------------------------------------- tables


#: Columns of ``comparison.csv``.
SIZE_COLUMNS = [
    "hypothesis",
    "date",
    "model",
    "median_b",
    "q05_b",
    "q95_b",
    "p_le_20b",
    "p_ge_100b",
]


def _headline(design: Design) -> list[tuple[str, str]]:
    """(model, date) of each headline price point, one row per model and date."""
    seen = []
    for e in headline_epochs(design):
        r = design.epochs.iloc[e]
        key = (r["model"], r["date"].isoformat())
        if key not in seen:
            seen.append(key)
    return seen


def _sizes(ds: xr.Dataset, model: str) -> np.ndarray:
    return ds["params_total_b"].sel(unknown_model=model).values.reshape(-1)


def size_rows(name: str, design: Design, post: xr.Dataset) -> pd.DataFrame:
    """One hypothesis' size quantiles and claim probabilities at each headline price date."""
    rows = []
    for model, date in _headline(design):
        x = _sizes(post, model)
        q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
        rows.append(
            {
                "hypothesis": name,
                "date": date,
                "model": model,
                "median_b": q50,
                "q05_b": q05,
                "q95_b": q95,
                "p_le_20b": float(np.mean(x <= 20)),
                "p_ge_100b": float(np.mean(x >= 100)),
            }
        )
    return pd.DataFrame(rows, columns=SIZE_COLUMNS)


def size_table(fits: list[HypothesisFit]) -> pd.DataFrame:
    """Per hypothesis and headline price date: size quantiles and claim probabilities."""
    return pd.concat([f.sizes for f in fits], ignore_index=True)


def _same_structure(model, ref_model) -> str | None:
    """Why two built models are not one compiled structure with one data set (None: they are)."""
    from llmsize.inference.compiled import Uncacheable, model_key
    from llmsize.inference.model import PRIOR_VALUES

    try:
        if model_key(ref_model) != model_key(model):
            return "another model structure"
    except Uncacheable as exc:
        return f"structure not comparable ({exc})"
    if model.prior_value_index != ref_model.prior_value_index:
        return "the priors differ in kind, not only in value"
    for a, b in zip(ref_model.data_vars, model.data_vars, strict=True):
        if a.name != PRIOR_VALUES and not np.array_equal(a.get_value(), b.get_value()):
            return f"the data differ ({a.name})"
    return None


class Evidence:
    """Bayes factors of hypotheses against one reference fit (:meth:`of`).

    A hypothesis of the reference's compiled structure differs from it only in
    the values the graph reads (prior parameters, component weights, price
    levels), so the ratio of the two unnormalised posteriors at any draw is the
    compiled log density under one set of values minus the other
    (:class:`llmsize.studies.compare.bridge.LogDensity`), and the bridge between
    the two fits' draws gives the Bayes factor. A hypothesis that changes only
    prior densities is also scored by reweighting the reference's draws alone.
    """

    def __init__(self, ref: HypothesisFit):
        from llmsize.inference.model import PRIOR_VALUES

        self.ref = ref
        self.model = build_model(ref.design, ref.hyp)
        self.values = self.model[PRIOR_VALUES].get_value()
        self._density: LogDensity | None = None
        self._at_ref: np.ndarray | None = None

    def _log_density(self) -> tuple[LogDensity, np.ndarray]:
        """The compiled density, and its values at the reference's draws (compiled once)."""
        if self._density is None or self._at_ref is None:
            self._density = LogDensity(self.model)
            self._at_ref = self._density.at(self.ref.draws, self.values)
        return self._density, self._at_ref

    def of(self, fit: HypothesisFit) -> tuple[ReweightedEvidence | str, BridgedEvidence | str]:
        """Log B(fit vs reference): reweighted and bridged, or why each cannot be."""
        from llmsize.inference.model import PRIOR_VALUES

        model = build_model(fit.design, fit.hyp)
        why = _same_structure(model, self.model)
        if why is not None:
            return why, why
        reweighted: ReweightedEvidence | str
        why = reweightable(self.model, model)
        if why is None:
            prior_ratio = log_prior_ratio(
                log_prior(self.ref.prior_quantities, fit.hyp),
                log_prior(self.ref.prior_quantities, self.ref.hyp),
            )
            reweighted = reweighted_log_bf(prior_ratio.transpose("chain", "draw"))
        else:
            reweighted = why
        density, ref_density = self._log_density()
        values = model[PRIOR_VALUES].get_value()
        ratio_ref = density.at(self.ref.draws, values) - ref_density
        ratio_fit = density.at(fit.draws, values) - density.at(fit.draws, self.values)
        return reweighted, bridged_log_bf(ratio_ref, ratio_fit)


def _estimate_columns(prefix: str, est, k: float | None = None) -> dict[str, object]:
    """The columns of one Bayes-factor estimate (or of the reason it was refused)."""
    if isinstance(est, str):
        row: dict[str, object] = {
            f"log_bf_{prefix}": float("nan"),
            f"log_bf_{prefix}_se": float("nan"),
            f"log_bf_{prefix}_reliable": False,
        }
    else:
        row = {
            f"log_bf_{prefix}": est.log_bf,
            f"log_bf_{prefix}_se": est.se,
            f"log_bf_{prefix}_reliable": est.reliable,
        }
    if k is not None:
        row["reweighted_pareto_k"] = k
    return row


def evidence_table(
    fits: list[HypothesisFit],
    reference: str,
    reweighted: dict[str, ReweightedEvidence | str] | None = None,
    bridged: dict[str, BridgedEvidence | str] | None = None,
    crossval: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Bayes factors (bridged and reweighted, where they apply), cross-validation on
    known sizes (where it ran) and PSIS-LOO against the reference, with flags.
    ``reweighted`` and ``bridged``: the two estimates of :meth:`Evidence.of` by
    hypothesis name (left out: no such columns); ``crossval``: the pointwise table of
    :func:`~llmsize.studies.compare.crossval.cross_validate`.
    """
    cv = (
        cv_table(crossval, reference).set_index("hypothesis")
        if crossval is not None and len(crossval)
        else None
    )
    ref = next(f for f in fits if f.name == reference)
    rows = []
    for f in fits:
        row: dict[str, object] = {"hypothesis": f.name}
        br = None if bridged is None else bridged.get(f.name)
        if br is not None:
            row.update(_estimate_columns("bridged", br))
        rw = None if reweighted is None else reweighted.get(f.name)
        if rw is not None:
            k = float("nan") if isinstance(rw, str) else rw.pareto_k
            row.update(_estimate_columns("reweighted", rw, k))
        if br is not None:
            row["bridge_refused"] = br if isinstance(br, str) else ""
        if rw is not None:
            row["reweighted_refused"] = rw if isinstance(rw, str) else ""
        if cv is not None and f.name in cv.index:
            row.update(cv.loc[f.name].to_dict())
        pareto_k = f.loo.pareto_k
        diff = f.loo.elpd_i - ref.loo.elpd_i
        row.update(
            elpd_loo=f.loo.elpd,
            elpd_se=f.loo.se,
            p_loo=f.loo.p,
            elpd_diff_vs_ref=float(diff.sum()),
            elpd_diff_se=float(math.sqrt(len(diff)) * diff.std(ddof=1)) if f is not ref else 0.0,
            max_pareto_k=(
                float(np.nanmax(pareto_k)) if np.isfinite(pareto_k).any() else float("nan")
            ),
            n_pareto_k_bad=int(np.sum(pareto_k > PARETO_K_MAX)),
            divergences=f.diagnostics.divergences,
            max_r_hat=f.diagnostics.max_r_hat,
            min_ess_bulk=f.diagnostics.min_ess_bulk,
            nuts_seconds=f.seconds,
        )
        row["notes"] = "; ".join(_evidence_notes(row, f is ref))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt_sample(sample: SampleSettings | None) -> str:
    if sample is None:
        return "-"
    return (
        f"{sample.chains} x {sample.draws} ({sample.tune}), {sample.target_accept:g}, {sample.seed}"
    )


def _fmt_k(k: float) -> str:
    """A Pareto k; '-' where the weights were all equal (no tail to fit)."""
    return f"{k:.2f}" if np.isfinite(k) else "-"


def _significant_sign(value: float, se: float) -> int:
    """Sign of a difference that is both over 1 nat and over 2 standard errors, else 0."""
    return int(np.sign(value)) if abs(value) > max(1.0, 2 * se) else 0


def _best_evidence(row: dict) -> tuple[float, float] | None:
    """The log Bayes factor to read and its standard error: bridged, else reweighted."""
    for prefix in ("bridged", "reweighted"):
        if row.get(f"log_bf_{prefix}_reliable"):
            return float(row[f"log_bf_{prefix}"]), float(row[f"log_bf_{prefix}_se"])
    return None


def _fit_notes(row: dict) -> list[str]:
    """Flags of the fit itself: LOO's Pareto k, NUTS diagnostics, the cross-validation refits'."""
    notes = []
    if row["n_pareto_k_bad"]:
        notes.append(f"LOO unreliable ({row['n_pareto_k_bad']} Pareto k > {PARETO_K_MAX})")
    if row["divergences"]:
        notes.append(f"{row['divergences']} divergences")
    if row["max_r_hat"] > RHAT_MAX:
        notes.append(f"R-hat {row['max_r_hat']:.3f} > {RHAT_MAX}")
    if row["min_ess_bulk"] < ESS_BULK_MIN:
        notes.append(f"bulk ESS {row['min_ess_bulk']:.0f} < {ESS_BULK_MIN}")
    if row.get("cv_max_r_hat", 0.0) > RHAT_MAX:
        notes.append(f"cross-validation fits: R-hat {row['cv_max_r_hat']:.3f} > {RHAT_MAX}")
    if row.get("cv_divergences", 0):
        notes.append(f"cross-validation fits: {row['cv_divergences']} divergences")
    return notes


def _evidence_notes(row: dict, is_ref: bool) -> list[str]:
    notes = ["reference"] if is_ref else []
    if not is_ref and row.get("bridge_refused"):
        notes.append(f"no Bayes factor: {row['bridge_refused']}")
        if not np.isfinite(row.get("elpd_cv", math.nan)):
            notes.append("no evidence figure: cross-validation on known sizes not run")
    elif not is_ref:
        if "log_bf_bridged" in row and not row["log_bf_bridged_reliable"]:
            notes.append(
                f"bridged estimate unreliable (se {row['log_bf_bridged_se']:.2f} > {SE_MAX})"
            )
        if row.get("reweighted_refused"):
            notes.append(f"not reweighted: {row['reweighted_refused']}")
        elif "log_bf_reweighted" in row and not row["log_bf_reweighted_reliable"]:
            notes.append(
                f"reweighting unreliable (Pareto k {row['reweighted_pareto_k']:.2f} > {K_MAX})"
            )
    notes += _fit_notes(row)
    if is_ref:
        return notes
    if row.get("log_bf_bridged_reliable") and row.get("log_bf_reweighted_reliable"):
        gap = float(row["log_bf_bridged"]) - float(row["log_bf_reweighted"])
        se = math.hypot(float(row["log_bf_bridged_se"]), float(row["log_bf_reweighted_se"]))
        if _significant_sign(gap, se):
            notes.append("bridged and reweighted estimates disagree")
    best = _best_evidence(row)
    if best is not None:
        bf_sign = _significant_sign(*best)
        loo_sign = _significant_sign(row["elpd_diff_vs_ref"], row["elpd_diff_se"])
        if bf_sign and loo_sign and bf_sign != loo_sign:
            notes.append("evidence and LOO disagree")
    return notes


def _claim_probability(ds: xr.Dataset, claim: Claim) -> float:
    x = _sizes(ds, claim.model)
    if claim.about_b is not None:
        lo, hi = claim.about_b / ABOUT_FACTOR, claim.about_b * ABOUT_FACTOR
        return float(np.mean((x >= lo) & (x <= hi)))
    assert claim.smaller_than is not None  # a claim is either about a size or a comparison
    y = _sizes(ds, claim.smaller_than)
    return float(np.mean(x < y))


#: Columns of ``claims.csv``.
CLAIM_COLUMNS = [
    "claim",
    "hypothesis",
    "model",
    "posterior_p",
    "prior_p",
    "odds_ratio",
    "prior_sensitivity",
    "psense",
    "rests_on",
]


def claim_rows(
    hyp: Hypothesis, design: Design, tree: xr.DataTree, psense: pd.DataFrame
) -> pd.DataFrame:
    """Each public claim one hypothesis can answer: posterior and prior probability."""
    rows = []
    models = set(design.unknown)
    posterior, prior_draws = tree["posterior"].to_dataset(), tree["prior"].to_dataset()
    for claim in CLAIMS:
        if claim.model not in models or (claim.smaller_than and claim.smaller_than not in models):
            continue
        if claim.needs_evidence and not getattr(hyp.evidence, claim.needs_evidence):
            continue
        post = _claim_probability(posterior, claim)
        prior = _claim_probability(prior_draws, claim)
        sens = psense[(psense["model"] == claim.model) & (psense["quantity"] == "params_total_b")]
        rows.append(
            {
                "claim": claim.text,
                "hypothesis": hyp.name,
                "model": claim.model,
                "posterior_p": post,
                "prior_p": prior,
                "odds_ratio": _odds(post) / _odds(prior) if 0 < prior < 1 else float("nan"),
                "prior_sensitivity": float(sens["prior"].iloc[0]) if len(sens) else np.nan,
                "psense": str(sens["diagnosis"].iloc[0]) if len(sens) else "-",
                "rests_on": "; ".join(
                    f"{label} ({r:+.2f})" for label, r in drivers(tree, design, claim.model)
                ),
            }
        )
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_table(fits: list[HypothesisFit]) -> pd.DataFrame:
    """Each public claim under each hypothesis, claim by claim in :data:`CLAIMS`' order."""
    table = pd.concat([f.claims for f in fits], ignore_index=True)
    if table.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    order = {c.text: i for i, c in enumerate(CLAIMS)}
    return table.sort_values("claim", key=lambda c: c.map(order), kind="stable").reset_index(
        drop=True
    )


def _odds(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return p / (1 - p)


# --------------------------------------------------------------------------- plots


def plot_sizes(sizes: pd.DataFrame):
    """gpt-3.5-turbo's size at each price date under each hypothesis (90% intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    claim_lines = sorted({c.about_b for c in CLAIMS if c.about_b is not None})
    keys = list(dict.fromkeys(zip(sizes["date"], sizes["model"], strict=True)))
    hyps = list(dict.fromkeys(sizes["hypothesis"]))
    fig, axes = plt.subplots(
        1, len(keys), figsize=(3.0 * len(keys) + 1.5, 0.32 * len(hyps) + 1.6), sharey=True
    )
    axes = np.atleast_1d(axes)
    for ax, (date, model) in zip(axes, keys, strict=True):
        t = sizes[(sizes["date"] == date) & (sizes["model"] == model)].set_index("hypothesis")
        for i, h in enumerate(hyps):
            if h not in t.index:
                continue
            r = t.loc[h]
            ax.plot([r["q05_b"], r["q95_b"]], [i, i], color="C0", lw=2)
            ax.plot(r["median_b"], i, "o", color="C0", ms=4)
        for value in claim_lines:
            ax.axvline(value, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(1, 3000)
        ax.set_title(f"{model.removeprefix(HEADLINE_PREFIX + '-')}\n{date}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("total parameters (B)", fontsize=7)
    axes[0].set_yticks(range(len(hyps)))
    axes[0].set_yticklabels(hyps, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"{HEADLINE_PREFIX}: median and 90% interval under each hypothesis "
        f"(dotted: claims of {', '.join(f'{v:g}B' for v in claim_lines)})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_evidence(evidence: pd.DataFrame, reference: str):
    """Reweighted log Bayes factors (where they apply) and ELPD differences
    (PSIS-LOO) against the reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyps = list(evidence["hypothesis"])
    y = np.arange(len(hyps))
    panels = []
    for prefix in ("bridged", "reweighted"):
        col = f"log_bf_{prefix}"
        if col in evidence and np.isfinite(evidence[col]).any():
            panels.append((col, f"{col}_se", f"log Bayes factor ({prefix})"))
    panels.append(("elpd_diff_vs_ref", "elpd_diff_se", "ELPD-LOO difference (prices, speeds)"))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels) + 1.5, 0.32 * len(hyps) + 1.6), sharey=True
    )
    axes = np.atleast_1d(axes)
    for ax, (col, se, title) in zip(axes, panels, strict=True):
        # An estimate flagged unreliable is drawn hollow and grey.
        rel = f"{col}_reliable"
        ok = evidence[rel].to_numpy(dtype=bool) if rel in evidence else np.ones(len(y), bool)
        for mask, style in ((ok, {"color": "C0"}), (~ok, {"color": "0.6", "mfc": "none"})):
            ax.errorbar(
                evidence[col][mask], y[mask], xerr=2 * evidence[se][mask].fillna(0).clip(upper=50),
                fmt="o", ms=4, lw=1.2, **style,
            )  # fmt: skip
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_title(f"{title}\nagainst {reference} (bars: 2 se)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(hyps, fontsize=7)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- report


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else (">0.999" if p > 0.999 else f"{p:.3f}")


def claim_sentences(claims: pd.DataFrame, reference: str) -> list[str]:
    """One quotable paragraph per claim, from the reference hypothesis where it applies
    (macro ``claim_reading`` of ``outputs/templates/prose.md.j2``).
    """
    out = []
    for claim in CLAIMS:
        t = claims[claims["claim"] == claim.text]
        if t.empty:
            out.append(prose("claim_reading", claim, None))
            continue
        main = t[t["hypothesis"] == reference]
        r = (main if len(main) else t).iloc[0]
        reading = {
            "low_b": billions(claim.about_b / ABOUT_FACTOR) if claim.about_b is not None else "",
            "high_b": billions(claim.about_b * ABOUT_FACTOR) if claim.about_b is not None else "",
            "hypothesis": r["hypothesis"],
            "p": _fmt_p(r["posterior_p"]),
            "prior_p": _fmt_p(r["prior_p"]),
            "odds_ratio": r["odds_ratio"],
            "psense": r["psense"],
            "sensitivity": r["prior_sensitivity"],
            "threshold": PSENSE_THRESHOLD,
            "n_hypotheses": len(t),
            "p_min": _fmt_p(t["posterior_p"].min()),
            "p_max": _fmt_p(t["posterior_p"].max()),
            "rests_on": r["rests_on"],
        }
        out.append(prose("claim_reading", claim, reading))
    return out


def render_markdown(
    fits: list[HypothesisFit],
    sizes: pd.DataFrame,
    evidence: pd.DataFrame,
    claims: pd.DataFrame,
    *,
    reference: str,
    settings: CompareSettings,
    data: Dataset,
    command: str,
) -> str:
    """The comparison's README.md (``outputs/templates/compare.md.j2``)."""
    keys = list(dict.fromkeys(zip(sizes["date"], sizes["model"], strict=True)))
    head = ["hypothesis", *[f"{m.removeprefix(HEADLINE_PREFIX + '-')} {d}" for d, m in keys]]
    body = []
    for h in dict.fromkeys(sizes["hypothesis"]):
        row = [f"`{h}`"]
        for d, m in keys:
            r = sizes[(sizes["hypothesis"] == h) & (sizes["date"] == d) & (sizes["model"] == m)]
            if r.empty:
                row.append("-")
                continue
            r = r.iloc[0]
            row.append(
                f"{billions(r.median_b)} [{billions(r.q05_b)}-{billions(r.q95_b)}]; "
                f"{r.p_le_20b:.2f} / {r.p_ge_100b:.2f}"
            )
        body.append(row)
    ev = pd.DataFrame({"hypothesis": evidence["hypothesis"].map(lambda h: f"`{h}`")})
    if "log_bf_bridged" in evidence:
        ev["log BF, bridged (se)"] = [
            "-" if not np.isfinite(r.log_bf_bridged) else
            f"{r.log_bf_bridged:+.2f} ({r.log_bf_bridged_se:.2f})"
            f"{'' if r.log_bf_bridged_reliable else ' unreliable'}"
            for r in evidence.itertuples()
        ]  # fmt: skip
    if "log_bf_reweighted" in evidence:
        ev["log BF, reweighted (se; Pareto k)"] = [
            "-" if not np.isfinite(r.log_bf_reweighted) else
            f"{r.log_bf_reweighted:+.2f} ({r.log_bf_reweighted_se:.2f}; "
            f"{_fmt_k(r.reweighted_pareto_k)})"
            f"{'' if r.log_bf_reweighted_reliable else ' unreliable'}"
            for r in evidence.itertuples()
        ]  # fmt: skip
    if "elpd_cv" in evidence:
        ev["CV on known sizes: ELPD diff (se); weight; 90% covered"] = [
            "-" if not np.isfinite(r.elpd_cv) else
            f"{r.elpd_cv_diff:+.1f} ({r.elpd_cv_diff_se:.1f}); {r.cv_weight:.2f}; "
            f"{r.cv_coverage_90:.0%} of {r.cv_models:.0f}"
            for r in evidence.itertuples()
        ]  # fmt: skip
    ev["ELPD diff (se)"] = [
        f"{d:+.1f} ({se:.1f})"
        for d, se in zip(evidence["elpd_diff_vs_ref"], evidence["elpd_diff_se"], strict=True)
    ]
    ev["p_loo"] = evidence["p_loo"].map(lambda v: f"{v:.1f}")
    ev["max Pareto k"] = evidence["max_pareto_k"].map(lambda v: f"{v:.2f}")
    ev["NUTS: div / max R-hat / min ESS"] = [
        f"{r.divergences} / {r.max_r_hat:.3f} / {r.min_ess_bulk:.0f}" for r in evidence.itertuples()
    ]
    ev["notes"] = evidence["notes"]
    ps = [
        [
            f"`{f.name}`", r.model, f"{r.prior:.3f}", f"{r.likelihood:.3f}", r.diagnosis,
            f"`{r.driving_prior}` ({r.driving_prior_sensitivity:.3f})",
        ]
        for f in fits
        for r in f.psense.itertuples()
        if isinstance(r.model, str) and r.model.startswith(HEADLINE_PREFIX)
    ]  # fmt: skip
    ps_columns = ["hypothesis", "model", "prior", "likelihood", "diagnosis",
                  "prior that moves it most"]  # fmt: skip
    return render(
        "compare.md.j2",
        command=command,
        version=__version__,
        data_sha=data.digest[:12],
        reference=reference,
        hypotheses=[(f.name, f.hyp.description.strip(), _fmt_sample(f.sample)) for f in fits],
        about_factor=ABOUT_FACTOR,
        claim_sentences=claim_sentences(claims, reference),
        claims=markdown_table(
            claims[["claim", "hypothesis", "posterior_p", "prior_p"]].assign(
                posterior_p=claims["posterior_p"].map(_fmt_p),
                prior_p=claims["prior_p"].map(_fmt_p),
            )
        ),
        headline_prefix=HEADLINE_PREFIX,
        sizes=markdown_table(pd.DataFrame(body, columns=head)),
        k_max=K_MAX,
        se_max=SE_MAX,
        bridge_draws=f"{MAX_DRAWS:,}",
        evidence=markdown_table(ev),
        psense_threshold=PSENSE_THRESHOLD,
        psense=markdown_table(pd.DataFrame(ps, columns=ps_columns)),
    )


def check_compare(
    paths: list[Path],
    *,
    data_dir: Path,
    out_dir: Path,
    settings: CompareSettings,
    overrides: list[str] | None = None,
    reference: str | None = None,
) -> tuple[list[Hypothesis], Dataset, str]:
    """Check everything ``compare`` needs before the first fit, as ``infer`` does.

    The sampler settings (in range; enough draws for PSIS-LOO), every hypothesis
    file (and that their names differ and include ``reference``), the data (at
    least one model of unknown size; a design for each hypothesis) and the output
    folder (:func:`~llmsize.outputs.folders.check_output_dir`, with every
    hypothesis file's folder kept out of it). Returns the hypotheses, the data
    and the reference's name; raises :class:`~llmsize.exceptions.LlmsizeError`.
    """
    from llmsize.outputs.folders import check_output_dir

    check_sampler_options(
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        seed=settings.seed,
        cores=settings.cores,
    )
    hyps = [load_hypothesis(p, overrides) for p in paths]
    for path, hyp in zip(paths, hyps, strict=True):
        sample = sample_settings(hyp, settings)
        if sample.draws * sample.chains < MIN_LOO_DRAWS:
            given = settings.draws is not None or settings.chains is not None
            raise LlmsizeError(
                f"{sample.draws} draws x {sample.chains} chains is "
                f"{sample.draws * sample.chains} posterior draws; PSIS-LOO needs at least "
                f"{MIN_LOO_DRAWS}: raise "
                + ("--draws or --chains" if given else "[sampler] draws or chains"),
                file="--draws" if given else str(path),
            )
    names = [h.name for h in hyps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LlmsizeError(f"two files share the hypothesis name {dupes[0]!r}", field="name")
    if reference is None:
        reference = "default" if "default" in names else names[0]
    elif reference not in names:
        raise LlmsizeError(
            f"--reference {reference!r} is none of {', '.join(names)}", field="reference"
        )
    data = load_dataset(data_dir)
    check_unknown_models(data)
    designs = [build_design(data, hyp) for hyp in hyps]
    if settings.cv_folds is not None and settings.cv_folds != 0:
        try:
            folds(data, designs[0], settings.cv_folds)
        except ValueError as exc:
            raise LlmsizeError(
                f"--cv-folds {settings.cv_folds}: {exc}", file="--cv-folds"
            ) from None
    check_output_dir(
        out_dir,
        data_dir=data_dir,
        hypothesis_files=[f for p in paths for f in hypothesis_files(p)],
    )
    return hyps, data, reference


def run_compare(
    paths: list[Path],
    *,
    data: Dataset,
    settings: CompareSettings,
    overrides: list[str] | None = None,
    progress=None,
) -> list[HypothesisFit]:
    """Fit every hypothesis (in order); ``progress(i, n, name)`` is told before each."""
    fits = []
    for i, p in enumerate(paths):
        if progress:
            progress(i, len(paths), str(p))
        fits.append(fit_hypothesis(p, data, settings, overrides=overrides))
    return fits


def write_compare(
    out_dir: Path,
    fits: list[HypothesisFit],
    *,
    reference: str,
    settings: CompareSettings,
    data: Dataset,
    command: str,
    estimates: dict[str, tuple[ReweightedEvidence | str, BridgedEvidence | str]] | None = None,
    crossval: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """comparison.csv, evidence.csv, claims.csv, psense.csv, hypotheses.json, plots,
    README.md, and crossval.csv where cross-validation ran (``crossval``).
    ``estimates``: :func:`estimate_evidence`'s (computed here if not given).
    """
    import matplotlib.pyplot as plt

    from llmsize.outputs import io as llmsize_io

    sizes = size_table(fits)
    if estimates is None:
        estimates = estimate_evidence(fits, reference)
    evidence = evidence_table(
        fits,
        reference,
        {name: rw for name, (rw, _) in estimates.items()},
        {name: br for name, (_, br) in estimates.items()},
        crossval,
    )
    claims = claims_table(fits)
    psense = pd.concat([f.psense.assign(hypothesis=f.name) for f in fits], ignore_index=True)
    with llmsize_io.staged_output(out_dir) as tmp:
        sizes.to_csv(tmp / "comparison.csv", index=False, float_format="%.4g", lineterminator="\n")
        evidence.to_csv(tmp / "evidence.csv", index=False, float_format="%.4g", lineterminator="\n")
        claims.to_csv(tmp / "claims.csv", index=False, float_format="%.4g", lineterminator="\n")
        psense.to_csv(tmp / "psense.csv", index=False, float_format="%.4g", lineterminator="\n")
        if crossval is not None and len(crossval):
            crossval.to_csv(
                tmp / "crossval.csv", index=False, float_format="%.4g", lineterminator="\n"
            )
        llmsize_io.write_json({f.name: f.hyp.to_dict() for f in fits}, tmp / "hypotheses.json")
        for name, fig in (
            ("compare_sizes.png", plot_sizes(sizes)),
            ("compare_evidence.png", plot_evidence(evidence, reference)),
        ):
            fig.savefig(tmp / name, dpi=110, metadata={"Software": None})
            plt.close(fig)
        (tmp / "README.md").write_text(
            render_markdown(
                fits,
                sizes,
                evidence,
                claims,
                reference=reference,
                settings=settings,
                data=data,
                command=command,
            ),
            encoding="utf-8",
        )
    return sizes, evidence, claims


def estimate_evidence(
    fits: list[HypothesisFit], reference: str
) -> dict[str, tuple[ReweightedEvidence | str, BridgedEvidence | str]]:
    """Each fit's Bayes factors against the reference (:meth:`Evidence.of`)."""
    evidence_of = Evidence(next(f for f in fits if f.name == reference))
    return {f.name: evidence_of.of(f) for f in fits}


def structural(
    estimates: dict[str, tuple[ReweightedEvidence | str, BridgedEvidence | str]],
) -> list[str]:
    """The hypotheses with no Bayes factor because they change the model's structure."""
    return [name for name, (_, br) in estimates.items() if isinstance(br, str)]


def run_crossval(
    fits: list[HypothesisFit],
    names: list[str],
    *,
    reference: str,
    data: Dataset,
    settings: CompareSettings,
) -> pd.DataFrame | None:
    """Grouped K-fold cross-validation of ``names`` and the reference on known sizes
    (None: no such hypothesis, or ``settings.cv_folds`` 0).
    """
    k = settings.cv_folds
    if not names or k == 0:
        return None
    by_name = {f.name: f for f in fits}
    design = by_name[reference].design
    if k is None:
        groups = len(family_holdouts(data, design))
        k = min(DEFAULT_FOLDS, groups)
        if k < 2:
            log.warning("cross-validation skipped: %d group(s) of families of known size", groups)
            return None
    hyps = [by_name[reference].hyp, *(by_name[n].hyp for n in names if n != reference)]
    log.info(
        "cross-validation on known sizes: %d folds x %d hypotheses (%s)",
        k, len(hyps), ", ".join(h.name for h in hyps),
    )  # fmt: skip
    return cross_validate(
        data,
        hyps,
        k=k,
        design=design,
        settings=settings.cv_settings(),
        workers=settings.cores,
        progress=settings.progress,
    )


@dataclass(frozen=True)
class CompareResult:
    """What a comparison wrote to ``out_dir``: the fits and their tables.

    ``sizes``: each hypothesis' size of each model at each price date; ``evidence``:
    one row per hypothesis (Bayes factor against the reference where reweighting
    applies, PSIS-LOO, diagnostics and notes); ``claims``: each public claim's
    probability under each hypothesis.
    """

    out_dir: Path
    reference: str
    fits: list[HypothesisFit]
    sizes: pd.DataFrame
    evidence: pd.DataFrame
    claims: pd.DataFrame


def compare(
    paths: list[Path],
    *,
    data_dir: Path,
    out_dir: Path,
    settings: CompareSettings,
    overrides: list[str] | None = None,
    reference: str | None = None,
    command: str = "llmsize.compare()",
    progress=None,
) -> CompareResult:
    """Check everything (:func:`check_compare`), fit every hypothesis
    (:func:`run_compare`) and write ``out_dir`` (:func:`write_compare`).
    """
    _, data, reference = check_compare(
        paths,
        data_dir=data_dir,
        out_dir=out_dir,
        settings=settings,
        overrides=overrides,
        reference=reference,
    )
    fits = run_compare(paths, data=data, settings=settings, overrides=overrides, progress=progress)
    estimates = estimate_evidence(fits, reference)
    crossval = run_crossval(
        fits, structural(estimates), reference=reference, data=data, settings=settings
    )
    sizes, evidence, claims = write_compare(
        out_dir,
        fits,
        reference=reference,
        settings=settings,
        data=data,
        command=command,
        estimates=estimates,
        crossval=crossval,
    )
    return CompareResult(out_dir, reference, fits, sizes, evidence, claims)
