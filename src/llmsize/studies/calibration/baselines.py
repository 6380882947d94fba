"""The two hand-made baselines ``llmsize calibrate`` scores beside llmsize.

- ``price_ratio_baseline``: "10x cheaper, so 10x smaller", a size from one reference
  model's price;
- ``size_tier_baseline``: a provider's published size tiers, inverted.

Each gives one number per held-out model and no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from llmsize.inputs.data import Column, Dataset, read_table
from llmsize.physics.design import Design


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
    for m in sorted(members):
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
    for m in sorted(members):
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
