"""The report a person reads first: ``README.md`` of a report folder."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import xarray as xr

from llmsize.config import Hypothesis
from llmsize.decompose import FACTORS
from llmsize.design import Design
from llmsize.families import ABOUT_FACTOR, Family, claim_probability
from llmsize.outputs.plots import SCALARS, headline_epochs
from llmsize.outputs.tables import billions, markdown_table
from llmsize.outputs.templating import render
from llmsize.summary import (
    ESS_BULK_MIN,
    PSENSE_THRESHOLD,
    RHAT_MAX,
    Diagnostics,
    diagnostics,
)

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
        np.log(post["batch"].sel(epoch=[names[e] for e in epochs])).mean("epoch")
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
    optional blocks are empty) closed up to one."""
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


def prior_conflicts(tree: xr.DataTree, names: tuple[str, ...]) -> list[str]:
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
            out.append(f"`{v}`: posterior median {med:.3g}, prior 90% range {lo:.3g} to {hi:.3g}")
    return out


def _calibration_limit(mets: pd.DataFrame | None) -> str:
    from llmsize.calibration import COVERAGE_RANGE, VARIANT_LABELS

    full = mets[mets["method"] == VARIANT_LABELS["full"]] if mets is not None else []
    if mets is None or not len(full):
        return (
            "- These intervals have not been checked against held-out models of known size "
            "(`llmsize calibrate`); until they are, read them as the model's statement, not "
            "a validated error bar."
        )
    cov = float(full.iloc[0]["coverage_90_families"])
    if cov < COVERAGE_RANGE[0]:
        return (
            f"- On held-out models of known size the 90% intervals covered {cov:.0%} of "
            "families, fewer than the nominal 90%: these intervals are too narrow, and the "
            "true uncertainty is larger than shown."
        )
    if cov > COVERAGE_RANGE[1]:
        return (
            f"- On held-out models of known size the 90% intervals covered {cov:.0%} of "
            "families: these intervals are conservative."
        )
    return f"- On held-out models of known size the 90% intervals covered {cov:.0%} of families."


def calibration_section(mets: pd.DataFrame | None, where: str | None) -> list[str]:
    """How the same model does on held-out models of known size."""
    from llmsize.calibration import VARIANT_LABELS, sentence, targets

    lines = ["## Calibration on models of known size", ""]
    full = mets[mets["method"] == VARIANT_LABELS["full"]] if mets is not None else []
    if mets is None or not len(full):
        return [
            *lines,
            "Not run for this hypothesis: `llmsize calibrate` holds out each family of "
            "known-size models and checks these intervals against the truth.",
            "",
        ]
    m = full.iloc[0]
    lines += [f"**{sentence(m)}**", ""]
    lines += [
        f"- {'holds' if ok else 'MISSED'}: {name}: {detail}" for name, ok, detail in targets(m)
    ]
    lines += [
        "",
        "| method | models | median abs log10 error | 90% coverage (families) |",
        "|---|---|---|---|",
    ]
    for r in mets.itertuples(index=False):
        cov = getattr(r, "coverage_90_families", float("nan"))
        cov_s = f"{cov:.0%}" if isinstance(cov, float) and np.isfinite(cov) else "point estimate"
        lines.append(f"| {r.method} | {r.models} | {r.median_abs_log10_error:.2f} | {cov_s} |")
    lines += ["", *baseline_sentences(mets), "", f"Details: `{where}`." if where else "", ""]
    return lines


#: Why each baseline of ``llmsize calibrate`` does as it does, by its label.
BASELINE_REASONS = {
    "baseline: price ratio to a reference model": (
        'reads a price ratio as a size ratio ("10x cheaper, so 10x smaller"), with nothing '
        "for markup, precision, hardware or date between the two prices"
    ),
    "baseline: provider size tiers": (
        "places only the models priced at a provider that publishes per-size price tiers, "
        "where the tier all but names the size; it cannot place a lab's own prices, "
        "ChatGPT's among them"
    ),
}


def baseline_sentences(mets: pd.DataFrame) -> list[str]:
    """How llmsize's calibration compares with each baseline's on the same hold-outs, and why."""
    from llmsize.calibration import VARIANT_LABELS

    full = mets[mets["method"] == VARIANT_LABELS["full"]]
    if not len(full):
        return []
    ours = full.iloc[0]
    out = []
    for r in mets[mets["method"].str.startswith("baseline")].itertuples(index=False):
        reason = BASELINE_REASONS.get(r.method, "")
        out.append(
            f"- **{r.method.removeprefix('baseline: ')}**: median error "
            f"{r.median_abs_log10_error:.2f} on the {r.models} models it can place, against "
            f"llmsize's {ours.median_abs_log10_error:.2f} on {ours.models}."
            + (f" The baseline {reason}" if reason else " The baseline")
            + ", and gives one number with no interval, so nothing says how far to trust it."
        )
    if out:
        out.insert(0, "How llmsize compares with the baselines (same hold-outs):")
        out.insert(1, "")
    return out


def sensitivity_section(sens: pd.DataFrame | None) -> list[str]:
    """Power-scaling sensitivity of every reported per-model quantity, with flags."""
    if sens is None or sens.empty:
        return []
    lines = [
        "## Prior sensitivity",
        "",
        "Power-scaling sensitivity (ArviZ `psense`, Kallioinen et al. 2024): how far each "
        "posterior moves when the hypothesis file's priors, or the likelihood of the prices, "
        "speeds and MMLU scores, are raised to a power near 1. Above "
        f"{PSENSE_THRESHOLD} on the prior but not on the likelihood, a conclusion is "
        "*prior-driven*: the data barely inform it and another prior would move it. Above on "
        "both, prior and data *conflict*: the data inform the quantity, but they pull it away "
        "from where the priors put it, so the answer depends on both. The last column scales "
        "one prior at a time and names the one that moves the quantity most.",
        "",
    ]
    flagged = sens[sens["diagnosis"] != "ok"]
    if flagged.empty:
        lines.append(
            "No reported quantity is flagged: every size, active size and training-token "
            "count below is informed by the data."
        )
    else:
        counts = flagged["diagnosis"].value_counts()
        lines.append(
            "**Flagged:** "
            + "; ".join(f"{n} of {len(sens)} quantities {d}" for d, n in counts.items())
            + ". Prior-driven: "
            + (
                ", ".join(
                    f"{r.model} {r.quantity}"
                    for r in flagged[flagged["diagnosis"] == "prior-driven"].itertuples()
                )
                or "none"
            )
            + "."
        )
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
    return [*lines, "", markdown_table(show), ""]


def headline_table(
    tree: xr.DataTree, design: Design, epochs: list[int] | None = None
) -> pd.DataFrame:
    """Per price point (by default the headline family's): size quantiles, the
    chance of the 20B and 100B marks, serving guesses."""
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

    w_act, w_tot = width("params_active_b"), width("params_total_b")
    return (
        "Prices pin the *active* size (the weights and compute behind each token) much "
        "better than the *total* size of a mixture of experts, which they reach only through "
        "memory and speed: across these models the median 90% interval spans "
        f"x{w_act:.0f} for the active size and x{w_tot:.0f} for the total."
    )


def page_question(title: str | None) -> str:
    """The question a page answers, from its family's title.

    A name in parentheses is the name readers know the family by ("... (ChatGPT)"
    asks "How big is ChatGPT?"); otherwise the part of the title before a colon.
    """
    if not title:
        return "How big are the models of unknown size?"
    known = re.search(r"\(([^()]+)\)\s*$", title)
    subject = known.group(1) if known else title.split(":")[0].strip()
    verb = "are" if " and " in subject else "is"
    return f"How big {verb} {subject}?"


def _dollars(x: float) -> str:
    return f"${x:g}"


def answer_sentence(tree: xr.DataTree, design: Design, epochs: list[int]) -> str:
    """One sentence: each model's total and active size (median and 90% interval)
    with the price dates it holds for, in the order of ``epochs``."""
    post = tree["posterior"].to_dataset()
    rows = design.epochs.iloc[epochs]
    parts = []
    for model in dict.fromkeys(rows["model"]):
        mine = rows[rows["model"] == model]
        when = " and ".join(
            f"{r.date.isoformat()} ({_dollars(r.input_usd_per_mtok)} / "
            f"{_dollars(r.output_usd_per_mtok)})"
            for r in mine.itertuples()
        )
        sizes = []
        for var in ("params_total_b", "params_active_b"):
            q = np.quantile(post[var].sel(unknown_model=model).values, [0.05, 0.5, 0.95])
            sizes.append(f"{billions(q[1])}B [{billions(q[0])}-{billions(q[2])}]")
        parts.append(f"{model} on {when}: {sizes[0]} total, {sizes[1]} active")
    if not parts:
        return ""
    return (
        "**Answer:** median and 90% interval of the parameter count at each price date "
        "(list price in / out, $ per 1M tokens): " + "; ".join(parts) + "."
    )


def family_diagnostics(
    tree: xr.DataTree, table: pd.DataFrame | None, models: list[str]
) -> dict[str, str] | None:
    """The run's checks (:func:`llmsize.summary.diagnostics`) on the summary rows of
    ``models`` (their reported quantities): worst R-hat and bulk ESS with the quantity
    at each extreme, and the run's divergences."""
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
    posterior, and what changed in the model and why (``templates/method.md.j2``)."""
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


MODEL_TABLE_NOTE = (
    "*posterior/prior sd* compares the spread of log10 size after and before the data: "
    "near 1, the data barely inform the size and the interval is the prior's; the report "
    "says so rather than narrowing it. *moved most by* lists the serving and training "
    "quantities whose posterior correlation with log10 size is largest: a price pins "
    "size times serving efficiency, so these are the inputs whose priors would move the "
    "answer most (a positive sign: a larger value goes with a larger model)."
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
        lp = post["log10_params_total_b"].sel(unknown_model=m).values.reshape(-1)
        prior_sd = float(np.std(prior["log10_params_total_b"].sel(unknown_model=m).values))
        ratio = float(np.std(lp)) / prior_sd if prior_sd > 0 else float("nan")
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
                "moved most by": "; ".join(
                    f"{label} ({c:+.2f})" for label, c in drivers(tree, design, m)
                ),
            }
        )
    return per_model


def _factor(q50: float, q05: float, q95: float) -> str:
    f = lambda v: f"{v:.2g}"  # noqa: E731
    return f"x{f(q50)} [{f(q05)}-{f(q95)}]"


CUTS_NOTE = (
    "Each cut of the blended price (3 input tokens to 1 output token) is split, draw by "
    "draw, among five causes by the Shapley value of the forward model: the model's size, "
    "its serving precision, the accelerator (and its GPU-hour price), the decode batch, and "
    "the markup (the provider's and the model's own price offset). The five multiply to the "
    "modelled change; *price noise* is what the model leaves unexplained (observed over "
    "modelled). Cells are posterior medians with 90% intervals; x1 means no part of the cut. "
    "A model keeps one markup offset at all its dates, so a cut of an unchanged model's price "
    "can only be explained by serving, precision, hardware or noise."
)


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


def cuts_section(decomposition: pd.DataFrame | None, figure: str | None) -> list[str]:
    """The "Price cuts, decomposed" section: note, table and figure."""
    if decomposition is None or decomposition.empty:
        return []
    lines = [
        "## Price cuts, decomposed",
        "",
        CUTS_NOTE,
        "",
        markdown_table(cuts_table(decomposition)),
        "",
    ]
    if figure:
        lines += [f"![price cuts]({figure})", ""]
    return lines


#: A web address in a source, made a Markdown autolink (trailing punctuation left out).
_URL = re.compile(r"https?://[^\s<>|()'\"]+[^\s<>|()'\".,;]")


def claims_table(tree: xr.DataTree, family: Family) -> pd.DataFrame:
    """Each claim of a family against each model it is about: posterior and prior
    probability that the size is within ABOUT_FACTOR of the claim."""
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


def family_section(family: Family) -> list[str]:
    """Headline-page table of the families, each linked to its own page."""
    return [
        f"| [{family.title}]({family.page}.md) | {', '.join(family.models)} | {len(family.cuts)} |"
    ]


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

    ``table`` is the run's summary (:func:`llmsize.summary.summary_table`); the page's
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
        cuts="\n".join(
            cuts_section(
                family_cuts(decomposition, family),
                f"cuts-{family.name}.png" if family.cuts else None,
            )
        ),
        models=markdown_table(pd.DataFrame(model_rows(tree, design, family.models))),
        model_note=MODEL_TABLE_NOTE,
        diagnostics=family_diagnostics(tree, table, family.models),
        rhat_max=RHAT_MAX,
        ess_min=ESS_BULK_MIN,
    )


def _sampler_details(attrs: dict) -> str:
    """Tuning steps, target acceptance and mass-matrix adaptation, as recorded."""
    settings = json.loads(attrs.get("sampler_settings", "{}"))
    tune = f" after {settings['tune']} tuning steps" if "tune" in settings else ""
    extra = [f"{key} {settings[key]}" for key in ("target_accept", "adaptation") if key in settings]
    return tune + (f" ({', '.join(extra)})" if extra else "")


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
        sampler_details=_sampler_details(attrs),
        repeated=sorted({m for m in shown if shown.count(m) > 1}),
        identification=identification_sentence(tree, shown),
        table=markdown_table(headline_table(tree, design, epochs)),
        claims=[
            f"{c.label} ({'total' if c.quantity == 'params_total_b' else 'active'}, {c.pattern})"
            for c in (head_fam.claims if head_fam else [])
        ],
        cuts="\n".join(
            cuts_section(
                family_cuts(decomposition, head_fam), "cuts.png" if head_fam.cuts else None
            )
            if head_fam is not None
            else []
        ),
        family_rows=[row for fam in families or [] for row in family_section(fam)],
        models=markdown_table(pd.DataFrame(per_model)),
        model_note=MODEL_TABLE_NOTE,
        weak=[r["model"] for r in per_model if float(r["posterior/prior sd"]) > 0.7],
        method=method_section(tree, design, hyp),
        sensitivity="\n".join(sensitivity_section(sensitivity)),
        calibration="\n".join(calibration_section(calibration, calibration_dir)),
        calibration_limit=_calibration_limit(calibration),
        rhat_max=RHAT_MAX,
        ess_min=ESS_BULK_MIN,
        conflicts=prior_conflicts(tree, SCALARS),
        design=design,
        n_known=len(design.models) - len(design.unknown),
        figures=FIGURES,
    )
