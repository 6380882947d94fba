"""Calibration on models of known size: hold-outs refitted, baselines, SBC.

Each hold-out (:mod:`llmsize.studies.calibration.holdouts`: a group of same-size
families, or a lab's own-API ladder with one of its sizes kept) has its sizes
removed, the model is refitted, and the posterior of every held-out size is
compared with the truth. The same is done with every speed removed and with the
held-out models' prices removed, to show what each kind of evidence adds, and two
hand-made baselines are scored on the same models. The scores are in
:mod:`llmsize.studies.calibration.metrics`, the report's Markdown in
:mod:`llmsize.studies.calibration.report`. Simulation-based calibration (SBC)
checks the Bayesian machinery itself: sizes drawn from the prior, prices simulated
from them, refitted, and the ranks of the truths tested for uniformity.

Fits are independent, so they run in parallel on a Dask cluster; each result is
written to disk as soon as it arrives (named by a hash of the hypothesis, data,
sampler settings and the hold-out's definition), and a rerun skips what is
already there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from llmsize.config import Hypothesis
from llmsize.data import Dataset, load_dataset, read_table
from llmsize.design import Design, build_design
from llmsize.exceptions import DataError
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
from llmsize.studies.calibration.metrics import (
    COVERAGE_RANGE,  # noqa: F401  (read by llmsize.report)
    NOMINAL_LEVELS,
    class_metrics,
    coverage,
    metrics,
    targets,  # noqa: F401  (read by llmsize.report and the CLI)
)
from llmsize.studies.calibration.report import render_markdown, sentence  # noqa: F401

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- refits


def fit_holdout(
    data_dir: str, hyp_json: str, holdout: Holdout | str, variant: str, settings: dict
) -> list[dict]:
    """Refit with ``holdout`` (a :class:`Holdout`, its JSON, or one family's name)
    withheld and score its models (runs in a worker)."""
    import warnings

    from llmsize.config import Hypothesis
    from llmsize.model import build_model
    from llmsize.sampling import SampleSettings, sample_posterior
    from llmsize.summary import divergences

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


# --------------------------------------------------------------------------- baselines


def price_ratio_baseline(
    data: Dataset,
    design: Design,
    members: Iterable[str],
    *,
    epochs: pd.DataFrame | None = None,
) -> dict[str, float]:
    """'10x cheaper, so 10x smaller': size from one reference model's price.

    For each price point of a held-out model, the reference is the known model
    of another family at the same provider whose price date is nearest; the
    estimate is ``N_ref * price / price_ref`` (output prices), and a model's
    estimate is the geometric mean over its price points. ``epochs`` (default:
    the design's) are the price points a hold-out keeps.
    """
    members = set(members)
    known = data.known_models.set_index("model")
    ep = design.epochs if epochs is None else epochs
    out: dict[str, float] = {}
    for m in members:
        logs = []
        for _, r in ep[ep["model"] == m].iterrows():
            refs = ep[(ep["provider"] == r["provider"]) & ~ep["model"].isin(members)]
            refs = refs[refs["model"].isin(known.index)]
            if refs.empty:
                continue
            gap = (refs["date"] - r["date"]).map(lambda d: abs(d.days))
            ref = refs.loc[gap.idxmin()]
            n_ref = float(known.loc[ref["model"], "total_params_b"])
            logs.append(math.log10(n_ref * r["output_usd_per_mtok"] / ref["output_usd_per_mtok"]))
        if logs:
            out[m] = 10 ** float(np.mean(logs))
    return out


def size_tier_baseline(data: Dataset, members: Iterable[str]) -> dict[str, float]:
    """Invert a provider's published size tiers (``size_tiers.csv``).

    A held-out model priced at a provider that publishes per-size tiers is
    placed at the geometric middle of the tier whose price matches, from the
    tier list nearest in date.
    """
    path = data.root / "size_tiers.csv"
    if not path.exists():
        return {}
    from llmsize.data import Column

    tiers = read_table(
        path,
        [
            Column("provider", "text"),
            Column("date", "date"),
            Column("min_params_b", "nonnegative"),
            Column("max_params_b", "positive"),
            Column("output_usd_per_mtok", "positive"),
            Column("source", "text"),
        ],
    )
    known = data.known_models.set_index("model")
    out: dict[str, float] = {}
    for m in members:
        moe = float(known.loc[m, "active_params_b"]) < float(known.loc[m, "total_params_b"])
        kind = "moe" if moe else "dense"
        est = []
        for _, r in data.prices[data.prices["model"] == m].iterrows():
            t = tiers[tiers["provider"] == r["provider"]]
            if "kind" in t.columns:
                t = t[t["kind"].str.strip().str.lower() == kind]
            if t.empty:
                continue
            gap = (t["date"] - r["date"]).map(lambda d: abs(d.days))
            t = t[gap == gap.min()]
            match = t[np.isclose(t["output_usd_per_mtok"], r["output_usd_per_mtok"], rtol=0.02)]
            if match.empty:
                continue
            lo = max(float(match["min_params_b"].iloc[0]), 0.5)
            hi = float(match["max_params_b"].iloc[0])
            est.append(0.5 * (math.log10(lo) + math.log10(hi)))
        if est:
            out[m] = 10 ** float(np.mean(est))
    return out


# --------------------------------------------------------------------------- running


def run_key(hyp_json: str, data_digest: str, settings: dict) -> str:
    """Short hash of everything a stored fit depends on, so a resume never mixes
    fits of another hypothesis, dataset, sampler setting, llmsize version or model
    code (:func:`llmsize.outputs.provenance.model_code_digest`)."""
    import hashlib

    from llmsize import __version__
    from llmsize.outputs.provenance import model_code_digest

    blob = json.dumps(
        [hyp_json, data_digest, settings, __version__, model_code_digest()], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _result_path(out_dir: Path, holdout: Holdout | str, variant: str, key: str = "") -> Path:
    """Where one refit is stored: named by the hold-out and a hash of its definition,
    in a folder named by ``key`` (:func:`run_key`)."""
    name = holdout.name if isinstance(holdout, Holdout) else holdout
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    tag = f"__{holdout.digest()[:10]}" if isinstance(holdout, Holdout) else ""
    return out_dir / (f"fits-{key}" if key else "fits") / f"{safe}__{variant}{tag}.json"


def run_parallel(
    tasks: list[tuple[Callable, tuple, Path]],
    *,
    scheduler: str | None = None,
    workers: int = 2,
    progress: bool = True,
) -> None:
    """Run ``fn(*args)`` for each task on Dask; write each result to its path as it arrives.

    Tasks whose result file exists are skipped, so an interrupted run resumes.
    """
    todo = [t for t in tasks if not t[2].exists()]
    if not todo:
        return
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        futures = {client.submit(fn, *args, pure=False): path for fn, args, path in todo}
        bar = tqdm(
            total=len(tasks), initial=len(tasks) - len(todo), disable=not progress, unit="fit"
        )
        for fut in as_completed(futures):
            path = futures[fut]
            result = fut.result()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result), encoding="utf-8")
            tmp.replace(path)
            bar.update(1)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def collect(
    out_dir: Path, data: Dataset, design: Design, holdouts: Iterable[Holdout], key: str = ""
) -> pd.DataFrame:
    """Gather the written fits and the baselines into one table: one row per (held-out
    model, hold-out, method), with the hold-out's kind and split and the model's
    family, lab and classes (architecture, price regime, era)."""
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
            path = _result_path(out_dir, h, variant, key)
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

    The refits' sampler settings (:func:`llmsize.config.check_sampler_options`),
    the cluster's size and the number of SBC runs in range, and the output folder
    (:func:`llmsize.outputs.folders.check_output_dir`; a calibration writes its
    files into the folder, keeping the fits of earlier runs, so an existing
    folder is written into, never replaced). Raises
    :class:`~llmsize.exceptions.LlmsizeError`.
    """
    from llmsize.config import check_sampler_options, check_whole_number
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
            _result_path(out_dir, h, v, key),
        )
        for h in holdouts
        for v in variants
    ]
    sbc_todo: list[tuple[Callable, tuple, Path]] = []
    if simulations:
        sbc_settings = {**settings, **(sbc_settings or SBC_SETTINGS)}
        sbc_todo = sbc_tasks(data_dir, hyp_json, data.digest, out_dir, simulations, sbc_settings)
    run_parallel(sbc_todo + tasks, scheduler=scheduler, workers=workers, progress=progress)
    table = collect(out_dir, data, design, holdouts, key)
    sbc = sbc_collect(sbc_todo, simulations) if simulations else None
    return table, metrics(table), sbc


# --------------------------------------------------------------------------- output


def plot_calibration(table: pd.DataFrame):
    """Predicted against true size; coverage against nominal; log error against size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = table[table["method"] == VARIANT_LABELS["full"]]
    figs = {}

    fig, ax = plt.subplots(figsize=(6, 6))
    methods = list(table["method"].unique())
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        x = t["true_total_b"].to_numpy() * (1.0 + 0.04 * (i - len(methods) / 2))
        y = t["total_q50"].to_numpy()
        if t["total_q05"].notna().any():
            yerr = [y - t["total_q05"].to_numpy(), t["total_q95"].to_numpy() - y]
            ax.errorbar(
                x, y, yerr=yerr, fmt="o", ms=3, lw=0.8, alpha=0.8, color=f"C{i}", label=method
            )
        else:
            ax.plot(x, y, "x", ms=5, color=f"C{i}", label=method)
    lims = [0.5, 1000]
    ax.plot(lims, lims, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lims)
    ax.set_ylim(0.1, 5000)
    ax.set_xlabel("true total parameters (B)")
    ax.set_ylabel("estimate (B): median and 90% interval")
    ax.set_title("Held-out families: estimate against truth", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["calibration_pred_vs_true.png"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        if t["total_pit"].notna().any():
            pit = t["total_pit"].to_numpy()
            ax.plot(
                NOMINAL_LEVELS,
                [coverage(pit, lv) for lv in NOMINAL_LEVELS],
                "o-",
                color=f"C{i}",
                label=method,
            )
    ax.plot([0, 1], [0, 1], color="k", lw=0.8)
    if len(full):
        n = len(full)
        lv = np.linspace(0.01, 0.99, 50)
        band = 1.96 * np.sqrt(lv * (1 - lv) / n)
        ax.fill_between(lv, lv - band, lv + band, color="0.85", label=f"95% band for {n} models")
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("empirical coverage")
    ax.set_title("Coverage of held-out true sizes", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["calibration_coverage.png"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(methods):
        t = table[table["method"] == method]
        err = np.log10(t["total_q50"]) - np.log10(t["true_total_b"])
        ax.plot(
            t["true_total_b"],
            err,
            "o" if t["total_pit"].notna().any() else "x",
            color=f"C{i}",
            label=method,
            alpha=0.8,
        )
    ax.axhline(0, color="k", lw=0.8)
    for s in (-0.3, 0.3):
        ax.axhline(s, color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("true total parameters (B)")
    ax.set_ylabel("log10(estimate / truth)")
    ax.set_title("Error against size (dashed: a factor of 2)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["calibration_error.png"] = fig
    return figs


def write_outputs(
    out_dir: Path,
    table: pd.DataFrame,
    mets: pd.DataFrame,
    sbc: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    classes: pd.DataFrame | None = None,
) -> None:
    """calibration.csv (with each row's hold-out, split and classes), metrics.csv,
    class_metrics.csv (per split and class, :func:`class_metrics` of ``table`` unless
    given), the plots, SBC results and README.md."""
    import matplotlib.pyplot as plt

    if classes is None:
        classes = class_metrics(table)
    text = render_markdown(table, mets, classes)
    if sbc is not None:
        ranks, tests = sbc
        ranks.to_csv(out_dir / "sbc_ranks.csv", index=False, lineterminator="\n")
        tests.to_csv(
            out_dir / "sbc_tests.csv", index=False, float_format="%.4g", lineterminator="\n"
        )
        fig = plot_sbc(ranks, tests)
        fig.savefig(out_dir / "sbc_ranks.png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        n_tests = len(tests)
        low = tests[tests["p_value"] < 0.01]
        text += "\n".join(
            [
                "",
                "## Simulation-based calibration",
                "",
                f"{len(ranks)} datasets simulated from the prior on the bundled design, each "
                f"refitted (one chain, {SBC_SETTINGS['tune']} tuning steps, "
                f"{SBC_SETTINGS['draws']} draws thinned to {SBC_RANKS}); {int((ranks['divergences'] > 0).sum())} refits had divergences. If "
                "the sampler and model are correct, the rank of each true value among its "
                "posterior draws is uniform. Chi-square tests (10 bins) of uniformity, one per "
                f"quantity; with {n_tests} tests, about {0.01 * n_tests:.1f} p-values below 0.01 "
                f"are expected by chance, and {len(low)} were seen"
                + (f" ({', '.join(low['quantity'])})." if len(low) else "."),
                "",
                "| quantity | simulations | chi2 | p-value |",
                "|---|---|---|---|",
                *[
                    f"| {r.quantity} | {r.simulations} | {r.chi2:.1f} | {r.p_value:.3f} |"
                    for r in tests.itertuples()
                ],
                "",
                "![SBC ranks](sbc_ranks.png)",
                "",
            ]
        )

    table.to_csv(out_dir / "calibration.csv", index=False, float_format="%.6g", lineterminator="\n")
    mets.to_csv(out_dir / "metrics.csv", index=False, float_format="%.6g", lineterminator="\n")
    classes.to_csv(
        out_dir / "class_metrics.csv", index=False, float_format="%.6g", lineterminator="\n"
    )
    for name, fig in plot_calibration(table).items():
        fig.savefig(out_dir / name, dpi=110, metadata={"Software": None})
        plt.close(fig)
    (out_dir / "README.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- SBC

#: Shared quantities checked by SBC besides each unknown model's size.
SBC_SCALARS = ("log_batch_mu", "mbu", "log_markup_out_mu", "provider_sigma", "price_sigma")
SBC_RANKS = 99  # posterior draws a truth is ranked against (ranks 0..99)
SBC_BINS = 10
SBC_BATCH = 10  # simulations per Dask task (the model is compiled once per task)
#: Each SBC refit is one chain: ranks need draws, not between-chain diagnostics.
#: nutpie adapts in a few hundred steps, and 400 draws thinned to 99 keep the
#: ranks nearly independent (Talts et al. 2018 thin for the same reason).
SBC_SETTINGS = {"chains": 1, "tune": 300, "draws": 400}


def sbc_batch(data_dir: str, hyp_json: str, first: int, size: int, settings: dict) -> list[dict]:
    """Simulate datasets ``first .. first + size - 1`` from the prior, refit each,
    and rank the truths.

    The model is compiled once per batch; each simulated dataset replaces the
    observations through the model's data containers.
    """
    import warnings

    import nutpie
    import pymc as pm

    from llmsize.cache import compile_model
    from llmsize.config import Hypothesis
    from llmsize.model import build_model

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    hyp = Hypothesis.model_validate_json(hyp_json)
    design = build_design(load_dataset(data_dir), hyp)
    seed = int(settings["seed"])
    prior = pm.sample_prior_predictive(
        draws=size,
        model=build_model(design, hyp, predictive="prior"),
        random_seed=seed + 1_000_000 + first,
    )
    pr = prior["prior"].to_dataset()
    obs_pp = prior["prior_predictive"].to_dataset()
    # The same compile as ``infer`` (exact math, the compiled-model cache): every
    # batch of every SBC run loads one compiled model instead of compiling its own.
    compiled = compile_model(build_model(design, hyp))
    quantities = [("log10_params_total_b", m) for m in design.unknown] + [
        (v, None) for v in SBC_SCALARS if v in pr and pr[v].ndim == 2
    ]
    rows = []
    for i in range(size):

        def pick(var, _i=i):
            return (pr[var] if var in pr else obs_pp[var]).isel(chain=0, draw=_i).values

        data = {
            "obs_log_price_out": np.log(pick("output_price")),
            "obs_log_price_in": np.log(pick("input_price")),
        }
        if len(design.log_speed):
            data["obs_log_speed"] = np.log(pick("output_speed"))
        if len(design.log_ttft):
            data["obs_log_ttft"] = np.log(pick("ttft"))
        if len(design.mmlu_score):
            data["obs_mmlu"] = pick("mmlu")
        trace = nutpie.sample(
            compiled.with_data(**data),
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            seed=seed + 2_000_000 + first + i,
            target_accept=settings["target_accept"],
            adaptation=settings.get("adaptation", "diag"),
            progress_bar=False,
            cores=1,
        )
        post = trace["posterior"].to_dataset()
        row = {
            "simulation": first + i,
            "divergences": int(trace["sample_stats"]["diverging"].sum()),
        }
        for var, model in quantities:
            truth = pr[var].isel(chain=0, draw=i)
            draws = post[var]
            label = var
            if model is not None:
                truth, draws, label = (
                    truth.sel(unknown_model=model),
                    draws.sel(unknown_model=model),
                    f"{var}[{model}]",
                )
            flat = draws.values.reshape(-1)
            thin = flat[np.linspace(0, flat.size - 1, SBC_RANKS).astype(int)]
            row[label] = int(np.sum(thin < float(truth)))
        rows.append(row)
    return rows


def sbc_uniformity(ranks: pd.DataFrame) -> pd.DataFrame:
    """Chi-square test of uniform ranks (``SBC_BINS`` bins) for every quantity."""
    from scipy import stats

    rows = []
    for col in ranks.columns:
        if col in ("simulation", "divergences"):
            continue
        counts = np.histogram(ranks[col], bins=SBC_BINS, range=(0, SBC_RANKS + 1))[0]
        chi = stats.chisquare(counts)
        rows.append(
            {
                "quantity": col,
                "simulations": int(counts.sum()),
                "chi2": float(chi.statistic),
                "p_value": float(chi.pvalue),
            }
        )
    return pd.DataFrame(rows)


def sbc_tasks(
    data_dir: Path,
    hyp_json: str,
    data_digest: str,
    out_dir: Path,
    simulations: int,
    settings: dict,
    batch_size: int = SBC_BATCH,
) -> list[tuple[Callable, tuple, Path]]:
    """SBC refits in batches of at most ``batch_size`` (one compiled model per batch)."""
    key = run_key(hyp_json, data_digest, settings)
    tasks = []
    for first in range(0, simulations, batch_size):
        size = min(batch_size, simulations - first)
        tasks.append(
            (
                sbc_batch,
                (str(data_dir), hyp_json, first, size, settings),
                out_dir / f"sbc-{key}" / f"sims_{first:04d}_{first + size - 1:04d}.json",
            )
        )
    return tasks


def sbc_collect(
    tasks: list[tuple[Callable, tuple, Path]], simulations: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ranks of the first ``simulations`` simulations and their uniformity tests."""
    rows = []
    for _, _, path in tasks:
        rows += json.loads(path.read_text(encoding="utf-8"))
    ranks = pd.DataFrame(rows).sort_values("simulation").head(simulations)
    return ranks.reset_index(drop=True), sbc_uniformity(ranks)


def plot_sbc(ranks: pd.DataFrame, tests: pd.DataFrame):
    """Rank histograms with the 99% band of a uniform histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    cols = list(tests["quantity"])
    ncol = 4
    nrow = max(1, math.ceil(len(cols) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    n = len(ranks)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / SBC_BINS)
    for ax, col in zip(axes.flat, cols, strict=False):
        ax.hist(ranks[col], bins=SBC_BINS, range=(0, SBC_RANKS + 1), color="C0", alpha=0.8)
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        p = float(tests.loc[tests["quantity"] == col, "p_value"].iloc[0])
        ax.set_title(f"{col}\nchi2 p = {p:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.suptitle(f"SBC rank histograms ({n} simulations; grey: 99% band if uniform)", fontsize=9)
    fig.tight_layout()
    return fig
