r"""How a provider turns serving cost into a list price: the pricing layer.

The roofline (:mod:`llmsize.physics.forward`) gives what one million tokens cost a
provider: GPU-hours of work times the GPU-hour price. A list price is not that
cost times one constant markup. Across the models of known size, log price
rises with log size at a provider-specific slope below the roofline's (about
0.8, 0.7-1.0 by provider); small models sit on price floors; and a lab that
prices its own models follows a curve of its own (value pricing across its
ladder). Forcing one markup onto all of this pushed the mismatch into the
per-model offsets, which are confounded with size, and sizes regressed towards
the prior centre. This module writes the layer between cost and price:

.. math::

    \log \pi = \underbrace{\log g + \mu_p}_{\text{billed level}}
        + \log w_0 + \varepsilon \,(\log w - \log w_0) + o,
    \qquad \pi \leftarrow \operatorname{smax}_k(\pi, \phi_p)

where :math:`w` is the GPU-hours of work per million tokens (the cost at
$1 per GPU-hour), :math:`w_0` a fixed pivot, :math:`g` the GPU-hour price at the
price's date, :math:`\mu_p` the provider's log markup, :math:`\varepsilon` the
elasticity of price in work (1 on the roofline: price proportional to cost),
:math:`o` the first-party and per-model offsets and :math:`\phi_p` the
provider's price floor, joined by a smooth maximum of sharpness :math:`k` in
log space. The elasticity applies to the work, not to the GPU-hour price, so
``log g + mu_p`` stays the level that prices pin (:func:`llmsize.inference.model._markups`
samples it directly).

Pure functions: they take floats, NumPy arrays or PyTensor tensors (``xp`` is
the array namespace, ``numpy`` by default).
"""

from __future__ import annotations

import numpy as np

#: Weight of input tokens in a blended price or cost: 3 input tokens to 1 output
#: token, the convention of Artificial Analysis' price comparisons.
INPUT_SHARE = 0.75

#: Sharpness of the smooth maximum of a price and its floor, in natural-log
#: units: at the floor itself the price is lifted by ln(2)/4 = 0.17 (19%), and
#: by under 1% once the modelled price is 2x the floor (k (ln 2) = 2.8 nats apart).
FLOOR_SHARPNESS = 4.0


def elasticity(mu, provider_offset, first_party, first_party_shift):
    """Elasticity of price in work at each price: the providers' mean, the
    provider's own deviation, and a shift where the provider is the model's lab.

    ``first_party`` is 1 for a lab's own price and 0 for a reseller's.
    """
    return mu + provider_offset + first_party * first_party_shift


def log_price_over_level(log_work, elasticity, *, log_pivot):
    """Log price over the billed level (GPU-hour price times markup), before offsets.

    ``log_pivot + elasticity * (log_work - log_pivot)``: at the pivot the
    elasticity has no effect, so the markup keeps its meaning there; with
    elasticity 1 this is ``log_work`` and price is proportional to cost.
    """
    return log_pivot + elasticity * (log_work - log_pivot)


def soft_floor(log_price, log_floor, *, sharpness=FLOOR_SHARPNESS, xp=np):
    """Smooth maximum of a log price and a log floor (a scaled log-sum-exp).

    Exceeds the true maximum by at most ``ln(2) / sharpness`` (where the two are
    equal), and tends to the larger of the two as they part.
    """
    top = xp.maximum(log_price, log_floor)
    return (
        top
        + xp.log(xp.exp(sharpness * (log_price - top)) + xp.exp(sharpness * (log_floor - top)))
        / sharpness
    )


def log_list_price(
    log_work,
    log_level,
    elasticity,
    offset,
    *,
    log_pivot,
    log_floor=None,
    sharpness=FLOOR_SHARPNESS,
    xp=np,
):
    """Log list price (USD per 1M tokens) of work ``log_work`` (log GPU-hours per 1M tokens).

    ``log_level`` is the log GPU-hour price plus the provider's log markup,
    ``offset`` the first-party and per-model log offsets, ``log_floor`` the
    provider's log price floor (``None`` for none).
    """
    raw = log_level + log_price_over_level(log_work, elasticity, log_pivot=log_pivot) + offset
    if log_floor is None:
        return raw
    return soft_floor(raw, log_floor, sharpness=sharpness, xp=xp)


def log_gpu_hour_at(log_price_2024, trend_per_year, years_since_2024):
    """Log GPU-hour price at a date: the 2024 level moved by a trend per year.

    Rental prices fell over 2023-2025 (H100 from about $4.7 to under $2 an hour
    at resellers), so one price for every date mixes eras.
    """
    return log_price_2024 + trend_per_year * years_since_2024
