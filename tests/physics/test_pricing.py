"""The pricing layer's pure functions against numbers worked by hand."""

import math

import numpy as np
import pytensor.tensor as pt
import pytest

from llmsize.physics import pricing


def test_elasticity_adds_first_party_shift():
    # 0.9 mean, -0.1 provider deviation; a lab's own price adds 0.6.
    assert pricing.elasticity(0.9, -0.1, 0.0, 0.6) == pytest.approx(0.8)
    assert pricing.elasticity(0.9, -0.1, 1.0, 0.6) == pytest.approx(1.4)


def test_price_over_level_pivots():
    pivot = math.log(0.2)
    # At the pivot the elasticity has no effect.
    assert pricing.log_price_over_level(pivot, 0.3, log_pivot=pivot) == pytest.approx(pivot)
    # Elasticity 1: price proportional to work, whatever the pivot.
    assert pricing.log_price_over_level(math.log(5.0), 1.0, log_pivot=pivot) == pytest.approx(
        math.log(5.0)
    )
    # Elasticity 0.5 and 4x the pivot's work (0.8 GPU-hours): 2x the pivot, ln 0.4.
    got = pricing.log_price_over_level(math.log(0.8), 0.5, log_pivot=pivot)
    assert got == pytest.approx(math.log(0.4))


def test_soft_floor_by_hand():
    # Equal price and floor: lifted by ln(2) / 4.
    assert pricing.soft_floor(math.log(0.1), math.log(0.1)) == pytest.approx(
        math.log(0.1) + math.log(2.0) / 4.0
    )
    # A price 10x its floor: ln(10) * 4 = 9.2 nats apart, lifted by ln(1 + e^-9.2) / 4.
    a, f = math.log(1.0), math.log(0.1)
    assert pricing.soft_floor(a, f) == pytest.approx(math.log1p(math.exp(-4 * math.log(10))) / 4)
    # A price far below its floor reads as the floor.
    assert pricing.soft_floor(math.log(1e-4), math.log(0.1)) == pytest.approx(
        math.log(0.1), abs=1e-9
    )
    # Stable for large magnitudes (no overflow of exp).
    assert np.isfinite(pricing.soft_floor(np.array([800.0, -800.0]), 0.0)).all()


def test_log_list_price_by_hand():
    # $2 per GPU-hour, markup 1.5, work 0.05 GPU-hours per 1M tokens, elasticity 0.8
    # around a 0.2 pivot, offset +0.1, floor $0.10:
    # raw = ln 2 + ln 1.5 + ln 0.2 + 0.8 * (ln 0.05 - ln 0.2) + 0.1 = ln 0.6 + 0.8 ln 0.25 + 0.1
    raw = math.log(0.6) + 0.8 * math.log(0.25) + 0.1
    got = pricing.log_list_price(
        math.log(0.05), math.log(2.0) + math.log(1.5), 0.8, 0.1, log_pivot=math.log(0.2)
    )
    assert got == pytest.approx(raw)
    floored = pricing.log_list_price(
        math.log(0.05),
        math.log(2.0) + math.log(1.5),
        0.8,
        0.1,
        log_pivot=math.log(0.2),
        log_floor=math.log(0.1),
    )
    assert floored == pytest.approx(np.logaddexp(4 * raw, 4 * math.log(0.1)) / 4)
    # The same through PyTensor.
    tensor = pricing.log_list_price(
        pt.as_tensor_variable(math.log(0.05)),
        math.log(3.0),
        0.8,
        0.1,
        log_pivot=math.log(0.2),
        log_floor=math.log(0.1),
        xp=pt,
    )
    assert float(tensor.eval()) == pytest.approx(floored)


def test_gpu_hour_at_date():
    # $3 in 2024 falling 0.4 per year in logs: $3 * e^-0.6 = $1.646 in mid-2025.
    assert math.exp(pricing.log_gpu_hour_at(math.log(3.0), -0.4, 1.5)) == pytest.approx(
        3.0 * math.exp(-0.6)
    )
