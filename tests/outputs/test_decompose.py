"""The price-cut decomposition: Shapley values, and prices checked by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from llmsize.outputs.decompose import (
    FACTORS,
    PricePoints,
    cut_contributions,
    decompose_cuts,
    shapley,
)
from llmsize.outputs.families import report_families
from llmsize.physics import forward

from .test_markdown import stand_in_run


def test_shapley_of_an_additive_game_is_each_players_own_effect():
    effect = {"a": 1.0, "b": -2.0, "c": 0.5}
    phi = shapley(lambda s: sum(effect[p] for p in s), list(effect))
    assert phi == pytest.approx(effect)


def test_shapley_splits_an_interaction_evenly_and_adds_up():
    # v(S) = 1 only when both a and b are in: each gets half; c is a dummy.
    phi = shapley(lambda s: float({"a", "b"} <= s), ["a", "b", "c"])
    assert phi == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    # Any game: the values add up to v(all) - v(none) (efficiency).
    rng = np.random.default_rng(3)
    table = {
        frozenset(s): rng.normal() for r in range(5) for s in itertools.combinations("wxyz", r)
    }
    phi = shapley(table.__getitem__, list("wxyz"))
    assert sum(phi.values()) == pytest.approx(table[frozenset("wxyz")] - table[frozenset()])


@pytest.fixture(scope="module")
def stand_in(tiny_design, default_hypothesis, tiny_data):
    tree = stand_in_run(tiny_design, default_hypothesis)
    shape = tree["posterior"]["batch"].shape  # (chain, draw, epoch)
    rng = np.random.default_rng(11)
    comp = rng.integers(0, len(tiny_design.component_bits), size=shape).astype("int8")
    pp = xr.Dataset(
        {"serving_component": (("chain", "draw", "epoch"), comp)},
        coords=tree["posterior"]["batch"].coords,
    )
    tree["posterior_predictive"] = xr.DataTree(pp)
    return tree, report_families(tiny_data, tiny_design)


def test_log_price_matches_the_forward_model_by_hand(stand_in, tiny_design, default_hypothesis):
    tree, _ = stand_in
    points = PricePoints(tree, tiny_design, default_hypothesis, max_draws=50)
    e = int(np.flatnonzero(tiny_design.epochs["model"] == "closed-y")[0])
    st = points.state(e)
    got = points.log_price(st)
    c = default_hypothesis.constants
    for s in (0, 17, 49):
        k = points.comp[s, e]
        acc = tiny_design.accelerators[tiny_design.component_hardware[k]]
        m = tiny_design.epoch_model[e]
        pred = forward.serving_prediction(
            points.total[s, m],
            points.active[s, m],
            float(tiny_design.component_bits[k]),
            points.batch[s, e],
            acc,
            usd_per_gpu_hour=1.0,  # work in GPU-hours; the price layer below
            mbu=points.mbu[s],
            mfu_decode=points.mfu_decode[s],
            mfu_prefill=points.mfu_prefill[s],
            context_tokens=points.context[s],
            weight_memory_fraction=float(points.fill[s]),
            gpus_per_node=c.gpus_per_node,
            kv_memory_cap=c.kv_memory_cap,
            kv_bytes_per_token=points.kv[s, m],
        )
        mk_out, mk_in, eps, offset, floor = (part[s] for part in st["margin"])
        # The pricing layer by hand: GPU-hour price at the date, elasticity around
        # the pivot, offsets, soft floor of sharpness 4.
        g = points.gpu_hour[s, tiny_design.component_hardware[k]] * np.exp(
            points.gpu_trend[s] * tiny_design.epoch_year[e]
        )
        pivot = np.log(c.price_pivot_gpu_hours_per_mtok)

        def price(work, mk, g=g, eps=eps, offset=offset, floor=floor, pivot=pivot):
            raw = np.log(g) + mk + pivot + eps * (np.log(work) - pivot) + offset
            return np.exp(np.logaddexp(4 * raw, 4 * floor) / 4)

        blended = 0.75 * price(pred["input_usd_per_mtok"], mk_in) + 0.25 * price(
            pred["output_usd_per_mtok"], mk_out
        )
        assert got[s] == pytest.approx(np.log(blended), rel=1e-10)


def test_contributions_add_up_draw_by_draw(stand_in, tiny_design, default_hypothesis):
    tree, families = stand_in
    points = PricePoints(tree, tiny_design, default_hypothesis, max_draws=200)
    cuts = [c for f in families for c in f.cuts]
    assert len(cuts) == 2
    for cut in cuts:
        parts = cut_contributions(points, cut)
        total = sum(np.broadcast_to(parts[f], points.idx.shape) for f in FACTORS)
        np.testing.assert_allclose(total, parts["modelled"], atol=1e-10)
        np.testing.assert_allclose(parts["modelled"] + parts["noise"], parts["observed"])
    same = next(c for c in cuts if c.from_model == c.to_model)
    parts = cut_contributions(points, same)
    # One model, one markup: no part of this cut can be size or margin.
    assert np.all(parts["model"] == 0)
    assert np.all(parts["margin"] == 0)


def test_decompose_table(stand_in, tiny_design, default_hypothesis):
    tree, families = stand_in
    table = decompose_cuts(tree, tiny_design, default_hypothesis, families[0].cuts, max_draws=100)
    assert len(table) == 2 * (len(FACTORS) + 3)
    assert (table["q05"] <= table["q50"]).all()
    assert (table["q50"] <= table["q95"]).all()
    assert table["p_cheaper"].between(0, 1).all()
    assert decompose_cuts(tree, tiny_design, default_hypothesis, []).empty
