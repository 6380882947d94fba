r"""Decompose a price cut into what the posterior says caused it.

A price point's modelled price is the forward model's cost times the markup:
it depends on five groups of quantities, each of which can differ between the
two price points of a cut:

- **model**: total and active parameters (a smaller model),
- **precision**: the serving bits (lower precision),
- **hardware**: the accelerator generation, its specs and its GPU-hour price at
  the price point's date (newer or cheaper hardware),
- **serving**: the decode batch (better serving),
- **margin**: the pricing layer (:mod:`llmsize.physics.pricing`): the provider's
  markup, elasticity and floor, and the model's own price offsets (lower margin).

For every posterior draw the change in the log of the modelled price is split
among the five groups by the Shapley value: the contribution of a group is its
effect on the log price, averaged over every order in which the groups could
be switched from the old price point's values to the new one's,

.. math::

    \phi_i = \sum_{S \subseteq F \setminus \{i\}}
        \frac{|S|!\,(n - |S| - 1)!}{n!}\,\big(v(S \cup \{i\}) - v(S)\big),

where :math:`v(S)` is the log price with the groups in :math:`S` at the new
point's values and the others at the old. The five contributions add up to the
modelled change exactly, draw by draw; what the model does not explain (the
per-price residual) is reported as *price noise*. The discrete serving
component of each price point is the one drawn for that posterior draw in the
posterior predictive group (``serving_component``).

Prices are blended 3:1 input to output tokens, the convention of Artificial
Analysis' price comparisons, so a cut of either price counts. Pure NumPy on
the functions of :mod:`llmsize.physics.forward`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from llmsize.inputs.hypothesis import Hypothesis
from llmsize.outputs.families import PriceCut
from llmsize.physics import forward, pricing
from llmsize.physics.design import Design

#: Factor groups, in the order of the tables, with their labels.
FACTORS = {
    "model": "smaller model",
    "precision": "lower precision",
    "hardware": "newer or cheaper hardware",
    "serving": "better serving (batch)",
    "margin": "lower margin",
}
#: Draws used, evenly thinned from the posterior (enough for 90% intervals).
MAX_DRAWS = 4000


def _flat(da: xr.DataArray) -> np.ndarray:
    """(chain, draw, ...) to (sample, ...)."""
    return da.values.reshape(-1, *da.shape[2:])


class PricePoints:
    """Per-draw quantities of every price point, ready for counterfactual prices."""

    def __init__(self, tree: xr.DataTree, design: Design, hyp: Hypothesis, max_draws: int):
        post = tree["posterior"].to_dataset()
        comp = _flat(tree["posterior_predictive"].to_dataset()["serving_component"])
        n = comp.shape[0]
        self.idx = np.unique(np.linspace(0, n - 1, min(n, max_draws)).round().astype(int))
        take = lambda a: np.asarray(a)[self.idx]  # noqa: E731
        self.design = design
        self.const = hyp.constants
        self.comp = take(comp)  # (S, E)
        # Each component has its own batch (model.build_model): the drawn one's is used.
        z = take(_flat(post["batch_z"]))  # (S, E, K)
        log_b = (
            take(_flat(post["log_batch_mu"]))[:, None]
            + take(_flat(post["log_batch_trend"]))[:, None] * design.epoch_year[None, :]
        )[:, :, None] + take(_flat(post["log_batch_sigma"]))[:, None, None] * z
        batch = 1.0 + np.exp(log_b)
        self.batch = np.take_along_axis(batch, self.comp[:, :, None].astype(int), axis=2)[..., 0]
        self.mbu = take(_flat(post["mbu"]))
        self.mfu_decode = take(_flat(post["mfu_decode"]))
        self.context = take(_flat(post["context_tokens"]))
        self.fill = take(_flat(post["weight_memory_fraction"]))
        self.kv = take(_flat(post["kv_bytes_per_token"]))  # (S, M)
        self.mfu_prefill = take(_flat(post["mfu_prefill"]))
        self.gpu_hour = take(_flat(post["usd_per_gpu_hour"]))  # (S, H)
        s = len(self.idx)
        total = np.tile(np.nan_to_num(design.known_total, nan=1.0), (s, 1))
        active = np.tile(np.nan_to_num(design.known_active, nan=1.0), (s, 1))
        if design.unknown:
            total[:, design.unknown_pos] = take(_flat(post["params_total_b"])) * 1e9
            active[:, design.unknown_pos] = take(_flat(post["params_active_b"])) * 1e9
        self.total, self.active = total, active  # (S, M)
        # The pricing layer's terms (model._pricing): each provider's log markup and
        # floor, each price point's elasticity and offsets, the GPU-hour price trend.
        self.mk_out = take(_flat(post["log_markup_out"]))  # (S, P)
        self.mk_in = take(_flat(post["log_markup_in"]))
        self.elasticity = take(_flat(post["price_elasticity"]))  # (S, E)
        self.offset = take(_flat(post["log_price_offset"]))  # (S, E)
        self.floor = take(_flat(post["log_price_floor"]))  # (S, P)
        self.gpu_trend = take(_flat(post["gpu_hour_trend"]))  # (S,)
        accs = design.accelerators
        self.hbm = np.array([a.hbm_bytes_per_s for a in accs])
        self.memory = np.array([a.memory_bytes for a in accs])
        self.bf16 = np.array([a.bf16_flops for a in accs])
        self.fp8 = np.array([a.fp8_flops or a.bf16_flops for a in accs])

    def state(self, e: int) -> dict[str, tuple[np.ndarray, ...]]:
        """Each factor group's per-draw values at price point ``e``."""
        d = self.design
        m, p = d.epoch_model[e], d.epoch_provider[e]
        k = self.comp[:, e]
        return {
            "model": (self.total[:, m], self.active[:, m], self.kv[:, m]),
            "precision": (d.component_bits[k].astype(float),),
            "hardware": (d.component_hardware[k], np.full(len(k), d.epoch_year[e])),
            "serving": (self.batch[:, e],),
            "margin": (
                self.mk_out[:, p],
                self.mk_in[:, p],
                self.elasticity[:, e],
                self.offset[:, e],
                self.floor[:, p],
            ),
        }

    def log_price(self, st: dict[str, tuple[np.ndarray, ...]]) -> np.ndarray:
        """Log of the modelled blended price (USD per 1M tokens) of a state."""
        total, active, kv = st["model"]
        (bits,) = st["precision"]
        hw, year = st["hardware"]
        (batch,) = st["serving"]
        mk_out, mk_in, eps, offset, floor = st["margin"]
        c = self.const
        flops = np.where(bits == 8, self.fp8[hw], self.bf16[hw])
        log_g = pricing.log_gpu_hour_at(
            np.log(np.take_along_axis(self.gpu_hour, hw[:, None], axis=1)[:, 0]),
            self.gpu_trend,
            year,
        )
        n_gpus = forward.gpus_per_replica(total, bits, self.memory[hw], self.fill)
        width = forward.tensor_parallel_width(n_gpus, c.gpus_per_node)
        if c.kv_memory_cap:
            limit = forward.kv_batch_limit(
                n_gpus,
                self.memory[hw],
                total,
                bits,
                context_tokens=self.context,
                kv_bytes_per_token=kv,
            ) * forward.pipeline_share(n_gpus, width)
            batch = forward.capped_batch(batch, limit)
        t_step = forward.decode_step_time(
            total,
            active,
            bits,
            batch,
            context_tokens=self.context,
            kv_bytes_per_token=kv,
            n_gpus=width,
            hbm_bytes_per_s=self.hbm[hw],
            flops=flops,
            mbu=self.mbu,
            mfu=self.mfu_decode,
        )
        work_out = forward.output_cost_per_mtok(t_step, batch, n_gpus=width, usd_per_gpu_hour=1.0)
        work_in = forward.input_cost_per_mtok(
            active, flops=flops, mfu=self.mfu_prefill, usd_per_gpu_hour=1.0
        )
        pivot = math.log(c.price_pivot_gpu_hours_per_mtok)
        out, inp = (
            pricing.log_list_price(
                np.log(work), log_g + mk, eps, offset, log_pivot=pivot, log_floor=floor
            )
            for work, mk in ((work_out, mk_out), (work_in, mk_in))
        )
        return np.logaddexp(
            np.log(pricing.INPUT_SHARE) + inp, np.log(1.0 - pricing.INPUT_SHARE) + out
        )


def shapley(value, players: Sequence[str]) -> dict[str, np.ndarray]:
    """Shapley value of each player for ``value(frozenset) -> array``.

    Exact enumeration of the 2^n coalitions; ``value`` is called once per coalition.
    """
    n = len(players)
    cache = {
        frozenset(s): value(frozenset(s))
        for r in range(n + 1)
        for s in itertools.combinations(players, r)
    }
    out: dict[str, np.ndarray] = {}
    for i in players:
        others = [p for p in players if p != i]
        phi: Any = 0.0
        for r in range(n):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in itertools.combinations(others, r):
                coalition = frozenset(s)
                phi = phi + w * (cache[coalition | {i}] - cache[coalition])
        out[i] = phi
    return out


def cut_contributions(points: PricePoints, cut: PriceCut) -> dict[str, np.ndarray]:
    """Per-draw log-price contributions of each factor group to one cut, plus
    ``modelled`` (their sum) and ``noise`` (observed change minus modelled).
    """
    old, new = points.state(cut.before), points.state(cut.after)

    def value(switched: frozenset) -> np.ndarray:
        return points.log_price({k: (new[k] if k in switched else old[k]) for k in FACTORS})

    phi = shapley(value, list(FACTORS))
    modelled = value(frozenset(FACTORS)) - value(frozenset())
    d = points.design
    blended = lambda e: np.log(  # noqa: E731
        pricing.INPUT_SHARE * np.exp(d.log_price_in[e])
        + (1.0 - pricing.INPUT_SHARE) * np.exp(d.log_price_out[e])
    )
    observed = blended(cut.after) - blended(cut.before)
    return {**phi, "modelled": modelled, "noise": observed - modelled, "observed": observed}


def decompose_cuts(
    tree: xr.DataTree,
    design: Design,
    hyp: Hypothesis,
    cuts: Sequence[PriceCut],
    *,
    max_draws: int = MAX_DRAWS,
) -> pd.DataFrame:
    """One row per (cut, part): the part's multiplicative effect on the blended
    price, as posterior mean of the log and 5/50/95% quantiles of the factor.

    Parts are the five factor groups, ``modelled`` (their product), ``noise`` and
    ``observed`` (the price ratio itself). ``p_cheaper`` is the posterior
    probability that the part lowered the price.
    """
    columns = ["cut", "provider", "from_model", "from_date", "to_model", "to_date", "part",
               "label", "mean_log", "q05", "q50", "q95", "p_cheaper"]  # fmt: skip
    if not cuts:
        return pd.DataFrame(columns=columns)
    points = PricePoints(tree, design, hyp, max_draws)
    rows = []
    labels = {**FACTORS, "modelled": "all five (modelled)", "noise": "price noise",
              "observed": "observed price ratio"}  # fmt: skip
    for cut in cuts:
        parts = cut_contributions(points, cut)
        for part, label in labels.items():
            x = np.broadcast_to(parts[part], points.idx.shape)
            q = np.exp(np.quantile(x, [0.05, 0.5, 0.95]))
            rows.append(
                {
                    "cut": cut.label,
                    "provider": cut.provider,
                    "from_model": cut.from_model,
                    "from_date": cut.from_date.isoformat(),
                    "to_model": cut.to_model,
                    "to_date": cut.to_date.isoformat(),
                    "part": part,
                    "label": label,
                    "mean_log": float(np.mean(x)),
                    "q05": float(q[0]),
                    "q50": float(q[1]),
                    "q95": float(q[2]),
                    "p_cheaper": float(np.mean(x < 0)),
                }
            )
    return pd.DataFrame(rows, columns=columns)
