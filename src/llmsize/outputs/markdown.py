"""The report a person reads first: ``README.md`` of a report folder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from llmsize.inputs.hypothesis import Hypothesis
from llmsize.outputs.decompose import FACTORS
from llmsize.outputs.families import ABOUT_FACTOR, Family, claim_probability
from llmsize.outputs.plots import SCALARS, headline_epochs
from llmsize.outputs.summary import (
    ESS_BULK_MIN,
    PSENSE_THRESHOLD,
    RHAT_MAX,
    Diagnostics,
    diagnostics,
)
from llmsize.outputs.tables import billions, markdown_table
from llmsize.outputs.templating import prose, render
from llmsize.physics.design import Design
from llmsize.studies.calibration.holdouts import VARIANT_LABELS
from llmsize.studies.calibration.metrics import COVERAGE_RANGE, targets
from llmsize.studies.calibration.report import sentence

FIGURES = {
    "size_by_date.png": "Posterior size at each price point of the headline family, with the "
    "public claims",
    "cuts.png": "The headline family's price cuts, split into their causes",
    "prior_posterior.png": "Prior against posterior of the main latent quantities",
    "ppc.png": "Posterior predictive check of prices, speeds and MMLU",
}


#: Nuisance quantities whose posterior correlation with a model's size says
#: which inputs move the answer (label, how to get per-draw values).
def _nuisances(
    post: xr.Dataset, design: Design, model: str, epochs: list[int]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    flat = lambda a: np.asarray(a).reshape(-1)  # noqa: E731
    provider = design.epochs["provider"].iloc[epochs[0]]
    p = design.providers.index(provider)
    mk = post["log_markup_out_mu"] + post["provider_sigma"] * post["provider_out_z"].isel(
        provider=p
    )
    out[f"{provider}'s output markup"] = flat(mk)
    mk_in = post["log_markup_in_mu"] + post["provider_sigma"] * post["provider_in_z"].isel(
        provider=p
    )
    out[f"{provider}'s input markup"] = flat(mk_in)
    if "model_markup_z" in post and "model_markup_sigma" in post:
        own = post["model_markup_sigma"] * post["model_markup_z"].sel(model=model)
        out["the model's own price offset"] = flat(own)
    names = list(post["batch"].coords["epoch"].values)
    out["decode batch at its price points"] = flat(
        xr.apply_ufunc(np.log, post["batch"].sel(epoch=[names[e] for e in epochs])).mean("epoch")
    )
    out["memory-bandwidth utilisation"] = flat(post["mbu"])
    out["prefill FLOP utilisation"] = flat(post["mfu_prefill"])
    for h in post["usd_per_gpu_hour"].coords["hardware"].values:
        out[f"{h} GPU-hour price"] = flat(np.log(post["usd_per_gpu_hour"].sel(hardware=h)))
    bits = post["p_bits"].sel(epoch=[names[e] for e in epochs]).mean("epoch")
    out["serving precision (expected bits)"] = flat(
        (bits * np.array([float(b) for b in bits.coords["bits"].values])).sum("bits")
    )
    out["active fraction (MoE)"] = (
        flat(post["active_fraction"].sel(unknown_model=model))
        if "active_fraction" in post and post["active_fraction"].ndim == 3
        else np.zeros(1)
    )
    if "log10_overtrain" in post and post["log10_overtrain"].ndim == 3:
        out["training tokens over Chinchilla-optimal"] = flat(
            post["log10_overtrain"].sel(unknown_model=model)
        )
    if "mmlu_midpoint" in post:
        out["MMLU-compute curve midpoint"] = flat(post["mmlu_midpoint"])
    return out


def _page(name: str, **context) -> str:
    """A page rendered from template ``name``, with runs of blank lines (left where
    optional blocks are empty) closed up to one.
    """
    return re.sub(r"\n{3,}", "\n\n", render(name, **context))


def drivers(tree: xr.DataTree, design: Design, model: str, top: int = 3) -> list[tuple[str, float]]:
    """The quantities most correlated with ``log10`` size in the posterior."""
    post = tree["posterior"].to_dataset()
    epochs = [i for i, m in enumerate(design.epochs["model"]) if m == model]
    y = post["log10_params_total_b"].sel(unknown_model=model).values.reshape(-1)
    out = []
    for label, x in _nuisances(post, design, model, epochs).items():
        if x.size != y.size or np.ptp(x) == 0:
            continue
        out.append((label, float(np.corrcoef(x, y)[0, 1])))
    return sorted(out, key=lambda t: -abs(t[1]))[:top]


@dataclass(frozen=True)
class Conflict:
    """A shared quantity whose posterior median lies outside its prior's 90% range."""

    name: str
    median: float
    low: float
    high: float


def prior_conflicts(tree: xr.DataTree, names: tuple[str, ...]) -> list[Conflict]:
    """Shared quantities whose posterior median falls outside the prior's 90% range.

    Such a quantity is one the data fight the prior over: either the prior was
    wrong or the forward model misses something the quantity absorbs.
    """
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    out = []
    for v in names:
        if v not in post or v not in prior or post[v].ndim != 2:
            continue
        lo, hi = np.quantile(prior[v].values, [0.05, 0.95])
        med = float(np.median(post[v].values))
        if not lo <= med <= hi:
            out.append(Conflict(v, med, float(lo), float(hi)))
    return out


def _full_run(mets: pd.DataFrame | None) -> pd.Series | None:
    """The metrics row of llmsize's own method (the ``full`` variant), if any."""
    if mets is None:
        return None
    full = mets[mets["method"] == VARIANT_LABELS["full"]]
    return full.iloc[0] if len(full) else None


def calibration_limit(mets: pd.DataFrame | None) -> str:
    """The report's limit on what the intervals are worth, from the calibration."""
    m = _full_run(mets)
    coverage = None if m is None else float(m["coverage_90_families"])
    return prose("calibration_limit", coverage, *COVERAGE_RANGE)


def calibration_section(mets: pd.DataFrame | None, where: str | None) -> str:
    """How the same model does on held-out models of known size
    (``templates/calibration_section.md.j2``).
    """
    m = _full_run(mets)
    if mets is None or m is None:
        return render("calibration_section.md.j2", full=None)
    methods = []
    for r in mets.itertuples(index=False):
        cov = getattr(r, "coverage_90_families", float("nan"))
        finite = isinstance(cov, float) and np.isfinite(cov)
        methods.append(
            {
                "method": r.method,
                "models": r.models,
                "error": r.median_abs_log10_error,
                "coverage": cov if finite else None,
            }
        )
    return render(
        "calibration_section.md.j2",
        full=m,
        sentence=sentence(m),
        checks=targets(m),
        methods=methods,
        baselines=baselines(mets),
        where=where,
    )


@dataclass(frozen=True)
class Baseline:
    """A baseline of ``llmsize calibrate`` against llmsize on the same hold-outs."""

    method: str
    error: float
    models: int
    ours_error: float
    ours_models: int

    @property
    def name(self) -> str:
        """The baseline's label without its ``baseline: `` prefix."""
        return self.method.removeprefix("baseline: ")


def baselines(mets: pd.DataFrame) -> list[Baseline]:
    """Each baseline's median error and models placed, beside llmsize's own."""
    ours = _full_run(mets)
    if ours is None:
        return []
    return [
        Baseline(
            method=r.method,
            error=r.median_abs_log10_error,
            models=r.models,
            ours_error=ours.median_abs_log10_error,
            ours_models=ours.models,
        )
        for r in mets[mets["method"].str.startswith("baseline")].itertuples(index=False)
    ]


def sensitivity_section(sens: pd.DataFrame | None) -> str:
    """Power-scaling sensitivity of every reported per-model quantity, with flags
    (``templates/sensitivity.md.j2``); empty without a sensitivity table.
    """
    if sens is None or sens.empty:
        return ""
    flagged = sens[sens["diagnosis"] != "ok"]
    show = sens.assign(
        prior=sens["prior"].map(lambda v: f"{v:.3f}"),
        likelihood=sens["likelihood"].map(lambda v: f"{v:.3f}"),
        driving=[
            f"`{p}` ({v:.3f})"
            for p, v in zip(sens["driving_prior"], sens["driving_prior_sensitivity"], strict=True)
        ],
    )[["model", "quantity", "prior", "likelihood", "diagnosis", "driving"]].rename(
        columns={"driving": "prior that moves it most"}
    )
    driven = flagged[flagged["diagnosis"] == "prior-driven"]
    return render(
        "sensitivity.md.j2",
        threshold=PSENSE_THRESHOLD,
        counts=list(flagged["diagnosis"].value_counts().items()),
        total=len(sens),
        prior_driven=[f"{r.model} {r.quantity}" for r in driven.itertuples()],
        table=markdown_table(show),
    )


def headline_table(
    tree: xr.DataTree, design: Design, epochs: list[int] | None = None
) -> pd.DataFrame:
    """Per price point (by default the headline family's): size quantiles, the
    chance of the 20B and 100B marks, serving guesses.
    """
    post = tree["posterior"].to_dataset()
    names = list(post["p_bits"].coords["epoch"].values)
    rows = []
    for e in headline_epochs(design) if epochs is None else epochs:
        r = design.epochs.iloc[e]
        x = post["params_total_b"].sel(unknown_model=r["model"]).values.reshape(-1)
        q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
        a = post["params_active_b"].sel(unknown_model=r["model"]).values.reshape(-1)
        qa = np.quantile(a, [0.05, 0.5, 0.95])
        pb = post["p_bits"].sel(epoch=names[e]).mean(("chain", "draw"))
        ph = post["p_hardware"].sel(epoch=names[e]).mean(("chain", "draw"))
        best_bits = str(pb["bits"].values[int(pb.values.argmax())])
        rows.append(
            {
                "date": r["date"].isoformat(),
                "model": r["model"],
                "price in/out ($/1M)": f"{r['input_usd_per_mtok']:g} / {r['output_usd_per_mtok']:g}",
                "median (B)": billions(q[2]),
                "50% interval": f"{billions(q[1])}-{billions(q[3])}",
                "90% interval": f"{billions(q[0])}-{billions(q[4])}",
                "active (B), median [90%]": f"{billions(qa[1])} [{billions(qa[0])}-{billions(qa[2])}]",
                "P(<=20B)": f"{np.mean(x <= 20):.2f}",
                "P(>=100B)": f"{np.mean(x >= 100):.2f}",
                "likeliest bits": f"{best_bits} ({float(pb.max()):.2f})",
                f"P({ph['hardware'].values[-1]})": f"{float(ph.values[-1]):.2f}",
            }
        )
    return pd.DataFrame(rows)


def identification_sentence(tree: xr.DataTree, models: list[str]) -> str:
    """What the prices pin among ``models``: the median 90% width of active and of total size."""
    post = tree["posterior"].to_dataset()
    models = list(dict.fromkeys(models))
    if not models:
        return ""

    def width(var: str) -> float:
        spans = [np.quantile(post[var].sel(unknown_model=m).values, [0.05, 0.95]) for m in models]
        return float(np.median([hi / lo for lo, hi in spans]))

    return prose("identification", width("params_active_b"), width("params_total_b"))


def page_question(title: str | None) -> str:
    """The question a page answers, from its family's title.

    A name in parentheses is the name readers know the family by ("... (ChatGPT)"
    asks "How big is ChatGPT?"); otherwise the part of the title before a colon.
    """
    if not title:
        return prose("question", None)
    known = re.search(r"\(([^()]+)\)\s*$", title)
    return prose("question", known.group(1) if known else title.split(":")[0].strip())


@dataclass(frozen=True)
class PriceDate:
    """A model's list price (input and output, $ per 1M tokens) at one date."""

    date: str
    price_in: float
    price_out: float


@dataclass(frozen=True)
class SizeAtDates:
    """One model's total and active size (5%, 50%, 95% quantiles, billions) and the
    price dates they hold for.
    """

    model: str
    dates: list[PriceDate]
    total: tuple[float, float, float]
    active: tuple[float, float, float]


def answer_parts(tree: xr.DataTree, design: Design, epochs: list[int]) -> list[SizeAtDates]:
    """Each model of ``epochs`` (in their order) with its sizes and its price dates."""
    post = tree["posterior"].to_dataset()
    rows = design.epochs.iloc[epochs]
    parts = []
    for model in dict.fromkeys(rows["model"]):
        mine = rows[rows["model"] == model]
        q = [
            tuple(np.quantile(post[var].sel(unknown_model=model).values, [0.05, 0.5, 0.95]))
            for var in ("params_total_b", "params_active_b")
        ]
        dates = [
            PriceDate(r.date.isoformat(), r.input_usd_per_mtok, r.output_usd_per_mtok)
            for r in mine.itertuples()
        ]
        parts.append(SizeAtDates(model, dates, q[0], q[1]))
    return parts


def answer_sentence(tree: xr.DataTree, design: Design, epochs: list[int]) -> str:
    """One sentence: each model's total and active size (median and 90% interval)
    with the price dates it holds for, in the order of ``epochs``.
    """
    parts = answer_parts(tree, design, epochs)
    return prose("answer", parts) if parts else ""


def family_diagnostics(
    tree: xr.DataTree, table: pd.DataFrame | None, models: list[str]
) -> dict[str, str] | None:
    """The run's checks (:func:`llmsize.outputs.summary.diagnostics`) on the summary rows of
    ``models`` (their reported quantities): worst R-hat and bulk ESS with the quantity
    at each extreme, and the run's divergences.
    """
    if table is None:
        return None
    rows = table[table["model"].isin(models)]
    if rows.empty:
        return None
    # The every-parameter figures are the run's, shown on the README, not here.
    d = diagnostics(tree, rows, parameters=(float("nan"), float("nan")))
    return {
        "verdict": "PASS" if d.passed else "FAIL",
        "n": str(len(rows)),
        "max_r_hat": f"{d.max_r_hat:.4f}",
        "worst_r_hat": d.worst_r_hat,
        "min_ess_bulk": f"{d.min_ess_bulk:.0f}",
        "worst_ess": d.worst_ess,
        "divergences": str(d.divergences),
    }


def _median_interval(post: xr.Dataset, var: str, transform=lambda v: v, fmt: str = ".2f") -> str:
    """``median [5%-95%]`` of a scalar posterior quantity, after ``transform``."""
    q = transform(np.quantile(post[var].values, [0.05, 0.5, 0.95]))
    return f"{q[1]:{fmt}} [{q[0]:{fmt}}-{q[2]:{fmt}}]"


def _prior_or_posterior(post: xr.Dataset, var: str, fmt: str = ".2f") -> str:
    """A pinned quantity's value ("pinned at ..."), else its posterior median and 90% interval."""
    x = post[var].values
    if np.ptp(x) == 0:
        return f"pinned at {float(x.reshape(-1)[0]):{fmt}}"
    return "sampled, " + _median_interval(post, var, fmt=fmt)


def method_section(tree: xr.DataTree, design: Design, hyp: Hypothesis) -> str:
    """The method section: what is observed, latent and learned, the pricing layer's
    posterior, and what changed in the model and why (``templates/method.md.j2``).
    """
    post = tree["posterior"].to_dataset()
    frac = hyp.priors.active_fraction
    return render(
        "method.md.j2",
        n_epochs=design.n_epochs,
        n_models=len(design.models),
        n_providers=len(design.providers),
        n_known=len(design.models) - len(design.unknown),
        statements=len(design.statement_log_ratio),
        elasticity=_median_interval(post, "price_elasticity_mu"),
        fp_elasticity=_median_interval(post, "first_party_elasticity", fmt="+.2f"),
        fp_markup=_median_interval(post, "first_party_markup", np.exp),
        fp_spread=_median_interval(post, "first_party_model_sigma", np.exp),
        floor=_median_interval(post, "log_price_floor_mu", np.exp, ".3f"),
        gpu_trend=_median_interval(post, "gpu_hour_trend", np.exp),
        frac_prior=", ".join(
            f"{k} {v:g}"
            for k, v in frac.model_dump(exclude={"distribution"}).items()
            if v is not None
        ),
        frac_distribution=frac.distribution,
        kv_cap=hyp.constants.kv_memory_cap,
        published_kv=hyp.constants.published_kv,
        mfu_decode=_prior_or_posterior(post, "mfu_decode"),
        context=_prior_or_posterior(post, "context_tokens", fmt=".0f"),
        fill=_prior_or_posterior(post, "weight_memory_fraction"),
        gpus_per_node=f"{hyp.constants.gpus_per_node:g}",
    )


def model_rows(tree: xr.DataTree, design: Design, models: list[str]) -> list[dict[str, str]]:
    """Per model of unknown size: total, active, training tokens, width, what moves it."""
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    per_model = []
    for m in models:
        x = post["params_total_b"].sel(unknown_model=m).values.reshape(-1)
        a = post["params_active_b"].sel(unknown_model=m).values.reshape(-1)
        t = post["tokens_t"].sel(unknown_model=m).values.reshape(-1)
        ratio, ratio_active = (
            sd_ratio(np.log10(post[v].sel(unknown_model=m).values),
                      np.log10(prior[v].sel(unknown_model=m).values))
            for v in ("params_total_b", "params_active_b")
        )  # fmt: skip
        q = np.quantile(x, [0.05, 0.5, 0.95])
        qa = np.quantile(a, [0.05, 0.5, 0.95])
        qt = np.quantile(t, [0.05, 0.5, 0.95])
        span = q[2] / q[0]
        per_model.append(
            {
                "model": m,
                "total (B), median [90%]": f"{billions(q[1])} [{billions(q[0])}-{billions(q[2])}]",
                "active (B)": f"{billions(qa[1])} [{billions(qa[0])}-{billions(qa[2])}]",
                "training tokens (T)": f"{qt[1]:.2g} [{qt[0]:.2g}-{qt[2]:.2g}]",
                "90% width": f"x{span:.0f}",
                "posterior/prior sd": f"{ratio:.2f}",
                "active: posterior/prior sd": f"{ratio_active:.2f}",
                "moved most by": "; ".join(
                    f"{label} ({c:+.2f})" for label, c in drivers(tree, design, m)
                ),
            }
        )
    return per_model


def sd_ratio(post_log: np.ndarray, prior_log: np.ndarray) -> float:
    """Posterior over prior standard deviation of a log size (NaN for a pinned prior)."""
    prior_sd = float(np.std(prior_log))
    return float(np.std(post_log)) / prior_sd if prior_sd > 0 else float("nan")


def _factor(q50: float, q05: float, q95: float) -> str:
    f = lambda v: f"{v:.2g}"  # noqa: E731
    return f"x{f(q50)} [{f(q05)}-{f(q95)}]"


def cuts_table(decomposition: pd.DataFrame) -> pd.DataFrame:
    """One row per cut: observed and modelled ratio and each cause's factor."""
    rows = []
    for cut, d in decomposition.groupby("cut", sort=False):
        d = d.set_index("part")
        row = {"cut": cut, "observed": f"x{d.loc['observed', 'q50']:.2g}"}
        for part in ("modelled", *FACTORS, "noise"):
            r = d.loc[part]
            row[r["label"]] = _factor(r["q50"], r["q05"], r["q95"])
        rows.append(row)
    return pd.DataFrame(rows)


def family_cuts(decomposition: pd.DataFrame | None, family: Family) -> pd.DataFrame | None:
    """The rows of ``decomposition`` about the cuts of ``family``."""
    if decomposition is None:
        return None
    return decomposition[decomposition["cut"].isin([c.label for c in family.cuts])]


def cuts_section(decomposition: pd.DataFrame | None, figure: str | None) -> str:
    """The "Price cuts, decomposed" section (``templates/cuts.md.j2``): note, table
    and figure; empty without cuts.
    """
    if decomposition is None or decomposition.empty:
        return ""
    return render("cuts.md.j2", table=markdown_table(cuts_table(decomposition)), figure=figure)


#: A web address in a source, made a Markdown autolink (trailing punctuation left out).
_URL = re.compile(r"https?://[^\s<>|()'\"]+[^\s<>|()'\".,;]")


def claims_table(tree: xr.DataTree, family: Family) -> pd.DataFrame:
    """Each claim of a family against each model it is about: posterior and prior
    probability that the size is within ABOUT_FACTOR of the claim.
    """
    post = tree["posterior"].to_dataset()
    prior = tree["prior"].to_dataset()
    rows = []
    for c in family.claims:
        for m in family.models:
            if not c.applies_to(m):
                continue
            x = post[c.quantity].sel(unknown_model=m).values.reshape(-1)
            q = np.quantile(x, [0.05, 0.5, 0.95])
            rows.append(
                {
                    "claim": c.label,
                    "model": m,
                    "quantity": "total" if c.quantity == "params_total_b" else "active",
                    "posterior median [90%] (B)": f"{billions(q[1])} [{billions(q[0])}-{billions(q[2])}]",
                    f"P(within x{ABOUT_FACTOR:g})": f"{claim_probability(post, c, m):.2f}",
                    "prior P": f"{claim_probability(prior, c, m):.2f}",
                    "claimed": c.date.isoformat(),
                    "source": _URL.sub(lambda u: f"<{u.group(0)}>", c.source),
                }
            )
    return pd.DataFrame(rows)


def render_family(
    *,
    tree: xr.DataTree,
    design: Design,
    family: Family,
    decomposition: pd.DataFrame | None,
    attrs: dict[str, str],
    table: pd.DataFrame | None = None,
) -> str:
    """The Markdown page of one model family (``templates/family.md.j2``).

    ``table`` is the run's summary (:func:`llmsize.outputs.summary.summary_table`); the page's
    sampler diagnostics are those of its own models' rows.
    """
    claims = claims_table(tree, family)
    return _page(
        "family.md.j2",
        question=page_question(family.title),
        answer=answer_sentence(tree, design, family.epochs),
        title=family.title,
        figure=f"size-{family.name}.png",
        attrs=attrs,
        identification=identification_sentence(tree, family.models),
        table=markdown_table(headline_table(tree, design, family.epochs)),
        claims=markdown_table(claims) if len(claims) else "",
        about_factor=f"{ABOUT_FACTOR:g}",
        cuts=cuts_section(
            family_cuts(decomposition, family),
            f"cuts-{family.name}.png" if family.cuts else None,
        ),
        models=markdown_table(pd.DataFrame(model_rows(tree, design, family.models))),
        diagnostics=family_diagnostics(tree, table, family.models),
        rhat_max=RHAT_MAX,
        ess_min=ESS_BULK_MIN,
    )


def render_readme(
    *,
    tree: xr.DataTree,
    design: Design,
    hyp: Hypothesis,
    diag: Diagnostics,
    attrs: dict[str, str],
    command: str,
    calibration: pd.DataFrame | None = None,
    calibration_dir: str | None = None,
    sensitivity: pd.DataFrame | None = None,
    families: list[Family] | None = None,
    decomposition: pd.DataFrame | None = None,
) -> str:
    """The report's README.md.

    ``calibration`` is the metrics table of ``llmsize calibrate`` for the same
    hypothesis, when it has been run. The first of ``families`` is the headline;
    each family has a page of its own (:func:`render_family`), linked from here.
    """
    head_fam = families[0] if families else None
    epochs = head_fam.epochs if head_fam else headline_epochs(design)
    shown = [design.epochs["model"].iloc[e] for e in epochs]
    per_model = model_rows(tree, design, design.unknown)
    return _page(
        "readme.md.j2",
        question=page_question(head_fam.title if head_fam else None),
        answer=answer_sentence(tree, design, epochs),
        head_title=head_fam.title if head_fam else "models of unknown size",
        hyp=hyp,
        attrs=attrs,
        command=command,
        diag=diag,
        sampler=json.loads(attrs.get("sampler_settings", "{}")),
        repeated=sorted({m for m in shown if shown.count(m) > 1}),
        identification=identification_sentence(tree, shown),
        table=markdown_table(headline_table(tree, design, epochs)),
        claims=[
            f"{c.label} ({'total' if c.quantity == 'params_total_b' else 'active'}, {c.pattern})"
            for c in (head_fam.claims if head_fam else [])
        ],
        cuts=cuts_section(
            family_cuts(decomposition, head_fam), "cuts.png" if head_fam.cuts else None
        )
        if head_fam is not None
        else "",
        families=families or [],
        models=markdown_table(pd.DataFrame(per_model)),
        weak=[r["model"] for r in per_model if float(r["posterior/prior sd"]) > 0.7],
        method=method_section(tree, design, hyp),
        sensitivity=sensitivity_section(sensitivity),
        calibration=calibration_section(calibration, calibration_dir),
        calibration_limit=calibration_limit(calibration),
        rhat_max=RHAT_MAX,
        ess_min=ESS_BULK_MIN,
        conflicts=prior_conflicts(tree, SCALARS),
        design=design,
        n_known=len(design.models) - len(design.unknown),
        figures=FIGURES,
    )
