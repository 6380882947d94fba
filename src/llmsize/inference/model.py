r"""The PyMC model: sizes, training data and serving setups behind observed prices.

Generative story, for serving epoch :math:`e` (a model :math:`m` priced by a
provider :math:`p` from a date :math:`t`) and discrete serving component
:math:`k` (precision :math:`b_k` bits on accelerator generation :math:`h_k`):

.. math::

    \log_{10} N_m &\sim \text{prior (unknown models; known models fixed)} \\
    N^{act}_m &= f_m N_m,\quad f_m \sim \text{prior} \\
    B_{ek} &= 1 + \exp(\mu_B + \tau_B\, t_e + \sigma_B z_{ek}),\quad z_{ek} \sim N(0, 1) \\
    c^{out}_{ek} &= \text{output\_cost}(N_m, N^{act}_m, b_k, B_{ek}, h_k, g_{h_k}, \text{MBU}) \\
    c^{in}_{ek} &= \text{input\_cost}(N^{act}_m, b_k, h_k, g_{h_k}, \text{MFU}) \\
    \log \pi^{out}_e \mid k &\sim N(\log c^{out}_{ek} + \mu^{out} + \sigma_P u^{out}_p + \sigma_M v_m,\ \sigma_\pi) \\
    \log \pi^{in}_e \mid k &\sim N(\log c^{in}_{ek} + \mu^{in} + \sigma_P u^{in}_p + \sigma_M v_m,\ \sigma_\pi) \\
    \log v_{s} \mid k &\sim N(-\log t^{step}_{ek} + \delta_v,\ \sigma_v) \\
    \log \text{TTFT}_{s} \mid k &\sim N(\log(o_p + t^{pre}_{ek} + t^{step}_{ek}),\ \sigma_T) \\
    p(\text{data}_e) &= \textstyle\sum_k w_{ek}\, p(\text{data}_e \mid k) \\
    \text{MMLU}_m &\sim N(25 + 75\,\sigma(a(\log_{10} 6 N^{act}_m D_m - c_0)),\ \sigma_Q) \\
    D_m &= D^*(N_m)\, 10^{\omega_m},\quad \omega_m \sim \text{prior} \\
    \log d_m &\sim N\big(\tfrac12 \log\frac{N^{act}_m - 2 V d_m}{c_m L_m},\ \sigma_d\big)
        \quad \text{(optional: a measured hidden size } d_m\text{)}

:math:`g_h` is the GPU-hour price, :math:`D^*` the compute-optimal training
tokens of the hypothesis' scaling law, and :math:`w_{ek}` the prior weight of
each precision times the date-dependent chance of the newer hardware. The
discrete component is summed out of the likelihood epoch by epoch, so NUTS
samples only continuous quantities; the posterior probability of each
component is recorded for every draw. With ``[evidence] hidden_size``, a
measured d_model enters through the layer count :math:`L_m` and the parameters
per layer over :math:`d^2`, :math:`c_m` (both with priors), and the vocabulary
:math:`V`.

Known-size models enter with their size fixed, so their prices, speeds and
MMLU scores inform the shared serving, markup and quality parameters that the
unknown models borrow. A model version keeps one size at every date; what
changes between its dates is batch, hardware, precision and noise.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from llmsize.inputs.hypothesis import (
    ConstantPrior,
    Hypothesis,
    NormalPrior,
    prior_centre,
)
from llmsize.physics import forward, pricing
from llmsize.physics.design import Design

Predictive = Literal["prior", "posterior"] | None


#: The data container holding every value of the hypothesis the graph reads.
PRIOR_VALUES = "prior_values"

_PRIOR_VALUES: contextvars.ContextVar[_PriorValues | None] = contextvars.ContextVar(
    "llmsize_prior_values", default=None
)


class _PriorValues:
    """The values of the hypothesis (prior parameters and what derives from them)
    packed into one data container, ``prior_values``, while a model is built.

    One container, not one per value: the compiled callbacks take each data
    container as an argument, and Numba cannot compile a call of more than
    about 30 arguments (CPython builds it through a list). :attr:`index` maps
    each value's name to its slice and shape, for tests and reading.
    """

    def __init__(self):
        self.var = pm.Data(PRIOR_VALUES, np.zeros(0))
        self.chunks: list[np.ndarray] = []
        self.index: dict[str, tuple[slice, tuple[int, ...]]] = {}
        self.size = 0

    def add(self, name: str, value):
        arr = np.asarray(value, dtype=np.float64)
        if name in self.index:
            raise ValueError(f"prior value {name!r} added twice")
        at = slice(self.size, self.size + arr.size)
        self.index[name] = (at, arr.shape)
        self.chunks.append(arr.ravel())
        self.size += arr.size
        if arr.ndim == 0:
            return self.var[at.start]
        return self.var[at].reshape(arr.shape)

    def finish(self) -> None:
        self.var.set_value(np.concatenate(self.chunks) if self.chunks else np.zeros(0))


def prior_data(name: str, value, *, dims=None):
    """A value of the hypothesis as data of the compiled model, not a constant.

    Prior parameters (and the few values derived from them, such as the start
    of a reparameterised variable or the components' prior weights) are read
    from one data container, ``prior_values`` (:class:`_PriorValues`), at the
    place ``name`` (``prior.<quantity>.<parameter>``) was given. The compiled
    model's structure, and so its cache key (:mod:`llmsize.inference.compiled`), is then the
    same for every hypothesis that differs only in prior values (by file,
    ``[model_priors]`` or ``--set``): a prior swap reuses the compiled model.
    Outside :func:`build_model`, a constant. ``dims`` is documentation only.
    """
    values = _PRIOR_VALUES.get()
    if values is None:
        return pt.as_tensor_variable(np.asarray(value, dtype=np.float64))
    return values.add(name, value)


def _prior_params(name: str, spec, *, dims=None) -> dict:
    """The parameters of a (non-constant) prior as data containers."""
    params = spec.model_dump(exclude={"distribution"})
    return {
        k: prior_data(f"prior.{name}.{k}", v, dims=dims) for k, v in params.items() if v is not None
    }


def prior_variable(name: str, spec, *, dims=None, size: int | None = None):
    """Create the PyMC variable ``name`` from a validated prior.

    A ``Constant`` prior gives a fixed tensor (broadcast to ``size``), so a
    hypothesis can pin a quantity without changing the model's code. Every
    parameter value is a data container (:func:`prior_data`): only the kind of
    prior (its distribution, which bounds a TruncatedNormal has) shapes the
    compiled model.
    """
    if isinstance(spec, ConstantPrior):
        value = np.full(size, spec.value) if size is not None else spec.value
        # Recorded as a deterministic so reports and summaries treat a pinned
        # quantity like any other (a constant with no spread).
        return pm.Deterministic(name, prior_data(f"prior.{name}.value", value), dims=dims)
    dist = getattr(pm, spec.distribution)
    return dist(name, **_prior_params(name, spec), dims=dims)


def unknown_model_variable(name: str, hyp: Hypothesis, models: list[str]):
    """Create a per-model quantity of the models of unknown size, each model's
    prior taken from ``[model_priors]`` where a pattern matches it, else from
    ``[priors]``. The hypothesis validator ensures one distribution for all.

    The parameters are one value per model in data containers, whether or not
    ``[model_priors]`` sets any, so a per-model prior swaps without compiling.
    """
    specs = [hyp.prior_for(name, m) for m in models]
    first = specs[0]
    if isinstance(first, ConstantPrior):
        value = np.array([s.value for s in specs], dtype=float)
        return pm.Deterministic(
            name, prior_data(f"prior.{name}.value", value, dims="unknown_model"),
            dims="unknown_model",
        )  # fmt: skip
    params = {}
    for k, v in first.model_dump(exclude={"distribution"}).items():
        values = [getattr(s, k) for s in specs]
        if v is None:
            if any(x is not None for x in values):
                raise ValueError(f"{name}: every model's prior must set the same bounds")
            continue
        params[k] = prior_data(f"prior.{name}.{k}", np.array(values, float), dims="unknown_model")
    return getattr(pm, first.distribution)(name, **params, dims="unknown_model")


def _markups(design: Design, hyp: Hypothesis, mfu_prefill):
    r"""GPU-hour prices and each provider's log markups, sampled along what prices identify.

    Returns ``(usd_per_gpu_hour, markup_out, markup_in)``: the price per
    hardware generation, and the natural-log output and input markup of each
    provider (the mean plus the provider's offset).

    A price fixes only a product, cost per token times markup. Provider
    :math:`p`'s output prices fix :math:`\log g_h + \mu^{out} + \sigma_P
    u^{out}_p` on the hardware :math:`h` they ran on, its input prices
    :math:`\log g_h + \mu^{in} - \log \text{MFU}_{pre} + \sigma_P u^{in}_p`.
    Sampled as written (:math:`\log g_h = \bar g_h + \sigma_g z_h`, standard
    normal :math:`z_h, u_p`), the markup means, GPU-hour prices, prefill MFU and
    provider offsets lie on narrow ridges that NUTS's diagonal mass matrix
    cannot follow, and they mixed worst of all parameters. So NUTS samples
    these instead, beside :math:`\mu^{out}`, MFU and :math:`\sigma_P`:

    - ``log_gpu_hour_ratio`` :math:`\Delta = \log g_1 - \log g_0`, as
      :math:`N(\bar g_1 - \bar g_0, \sqrt 2 \sigma_g)`;
    - ``log_billed_gpu_hour_out`` :math:`= \log g_0 + \bar w \Delta +
      \mu^{out}`: the GPU-hour price at the average prior mix of hardware
      (:math:`\bar w`, the mean prior chance of the newer generation over all
      serving epochs) times the mean output markup, given :math:`\Delta` as
      :math:`N(\mu^{out} + \bar g_0 + \bar w \Delta - (\Delta - \bar g_1 +
      \bar g_0)/2, \sigma_g / \sqrt 2)`;
    - ``log_markup_in_over_out`` :math:`= \mu^{in} - \mu^{out} - \log
      \text{MFU}_{pre}`, as :math:`N(m - \mu^{out} - \log \text{MFU}_{pre}, s)`
      when the hypothesis' prior of :math:`\mu^{in}` is :math:`N(m, s)` (any
      other prior keeps :math:`\mu^{in}` itself sampled);
    - ``provider_billed_out`` and ``provider_billed_in``: each provider's
      billed GPU-hour level at its own prior mix :math:`w_p`, :math:`\ell_p +
      \sigma_P u^{out}_p` with :math:`\ell_p = \log g_0 + w_p \Delta +
      \mu^{out}`, as :math:`N(\ell_p, \sigma_P)`, and likewise with
      :math:`\mu^{in} - \log \text{MFU}_{pre}` for input (centred: a
      provider's prices pin its level). A hypothesis that pins
      :math:`\sigma_P` keeps the standard-normal offsets instead.

    The first two are the conditional decomposition of the two independent
    GPU-hour prices; each of the others is an independent normal prior shifted
    (for the providers, also scaled) by quantities sampled before it, with the
    Jacobian in its density. So the joint prior of the markups, GPU-hour
    prices, MFU, :math:`\sigma_P` and offsets is exactly the hypothesis' own
    (``tests/inference/test_model.py`` checks it by drawing from it). The physical
    quantities are recorded under their usual names (``usd_per_gpu_hour``,
    ``gpu_hour_z``, ``log_markup_in_mu``, ``provider_out_z``, ``provider_in_z``).
    On the bundled data the smallest bulk ESS over all parameters rose from 669
    to 1,218 in 12,000 draws.

    Each new variable starts from a fixed value (its level with every prior at
    its centre): a start that moved with its parents' random start would not be
    the independent one :mod:`llmsize.inference.compiled` reproduces.
    """
    v = _markup_values(design, hyp)
    mk_out_mu = prior_variable("log_markup_out_mu", hyp.priors.log_markup_out_mu)
    ratio = pm.Normal("log_gpu_hour_ratio", mu=v.d_mu, sigma=np.sqrt(2.0) * v.sigma_g)
    billed = pm.Normal(
        "log_billed_gpu_hour_out",
        mu=mk_out_mu + v.mu_g[0] + v.w_all * ratio - 0.5 * (ratio - v.d_mu),
        sigma=v.sigma_g / np.sqrt(2.0),
        initval=v.m_out + v.mu_g[0] + v.w_all * v.d_mu,
    )
    log_g0 = billed - mk_out_mu - v.w_all * ratio
    log_g = pt.stack([log_g0, log_g0 + ratio])
    pm.Deterministic("gpu_hour_z", (log_g - v.mu_g) / v.sigma_g, dims="hardware")
    gpu_hour = pm.Deterministic("usd_per_gpu_hour", pt.exp(log_g), dims="hardware")
    mk_out, mk_in = _provider_markups(hyp, v, mk_out_mu, log_g0 + v.w_provider * ratio, mfu_prefill)
    return gpu_hour, mk_out, mk_in


@dataclass(frozen=True)
class _MarkupValues:
    """The hypothesis' values :func:`_markups` reads, as data containers."""

    sigma_g: TensorVariable  # prior sd of the log GPU-hour prices
    mu_g: TensorVariable  # (H,) prior means of the log GPU-hour prices
    d_mu: TensorVariable  # their difference, newer over older
    w_all: TensorVariable  # prior chance of the newer generation, over all epochs
    w_provider: TensorVariable  # (P,) the same over each provider's epochs
    m_out: TensorVariable  # centre of the output markup's prior
    m_in: TensorVariable  # centre of the input markup's prior
    log_mfu0: TensorVariable  # log of the centre of the prefill MFU's prior


def _markup_values(design: Design, hyp: Hypothesis) -> _MarkupValues:
    """Values of the hypothesis (GPU-hour prices moved along the prior's trend, the
    prior chance of the newer hardware, the priors' centres that start the
    reparameterised variables), as data containers like the priors' parameters
    (:func:`prior_data`).
    """
    pr = hyp.priors
    sigma_g = prior_data("prior.usd_per_gpu_hour_sigma", hyp.hardware.usd_per_gpu_hour_sigma)
    mu_g_value = np.asarray(design.log_gpu_hour_mu, dtype=np.float64)
    mu_g = prior_data("prior.log_gpu_hour_mu", mu_g_value, dims="hardware")
    # Prior chance of the newer generation in each epoch, averaged over all epochs
    # and over each provider's.
    weights = np.exp(design.log_weights)
    newer = (weights * (design.component_hardware == 1)).sum(axis=1) / weights.sum(axis=1)
    w_all = prior_data("prior.newer_share", float(newer.mean()))
    w_provider = prior_data(
        "prior.newer_share_provider",
        np.array([newer[design.epoch_provider == p].mean() for p in range(len(design.providers))]),
        dims="provider",
    )
    return _MarkupValues(
        sigma_g=sigma_g,
        mu_g=mu_g,
        d_mu=mu_g[1] - mu_g[0],
        w_all=w_all,
        w_provider=w_provider,
        m_out=prior_data("prior.log_markup_out_mu.centre", prior_centre(pr.log_markup_out_mu)),
        m_in=prior_data("prior.log_markup_in_mu.centre", prior_centre(pr.log_markup_in_mu)),
        log_mfu0=pt.log(prior_data("prior.mfu_prefill.centre", prior_centre(pr.mfu_prefill))),
    )


def _provider_markups(hyp: Hypothesis, v: _MarkupValues, mk_out_mu, log_g_provider, mfu_prefill):
    """The input markup's mean and each provider's output and input log markup, sampled
    as billed levels (see :func:`_markups`).
    """
    pr = hyp.priors
    log_mfu = pt.log(mfu_prefill)
    spec = pr.log_markup_in_mu
    if isinstance(spec, NormalPrior):
        shift = mk_out_mu + log_mfu
        params = _prior_params("log_markup_in_mu", spec)
        in_over_out = pm.Normal(
            "log_markup_in_over_out",
            mu=params["mu"] - shift,
            sigma=params["sigma"],
            initval=params["mu"] - v.m_out - v.log_mfu0,
        )
        mk_in_mu = pm.Deterministic("log_markup_in_mu", in_over_out + shift)
    else:
        mk_in_mu = prior_variable("log_markup_in_mu", spec)

    prov_sigma = prior_variable("provider_sigma", pr.provider_sigma)
    if isinstance(pr.provider_sigma, ConstantPrior):
        # A pinned spread may be zero, where a centred level has no density.
        z_out = pm.Normal("provider_out_z", 0.0, 1.0, dims="provider")
        z_in = pm.Normal("provider_in_z", 0.0, 1.0, dims="provider")
        return mk_out_mu + prov_sigma * z_out, mk_in_mu + prov_sigma * z_in
    level_out = log_g_provider + mk_out_mu
    level_in = log_g_provider + mk_in_mu - log_mfu
    start = v.mu_g[0] + v.w_provider * v.d_mu
    y_out = pm.Normal(
        "provider_billed_out", mu=level_out, sigma=prov_sigma, dims="provider",
        initval=start + v.m_out,
    )  # fmt: skip
    y_in = pm.Normal(
        "provider_billed_in", mu=level_in, sigma=prov_sigma, dims="provider",
        initval=start + v.m_in - v.log_mfu0,
    )  # fmt: skip
    pm.Deterministic("provider_out_z", (y_out - level_out) / prov_sigma, dims="provider")
    pm.Deterministic("provider_in_z", (y_in - level_in) / prov_sigma, dims="provider")
    return y_out - log_g_provider, y_in - log_g_provider + log_mfu


@dataclass(frozen=True)
class PricingTerms:
    """The pricing layer's terms at each serving epoch (see :mod:`llmsize.physics.pricing`)."""

    elasticity: TensorVariable  # (E,) elasticity of price in work
    offset: TensorVariable  # (E,) per-model and first-party log offsets
    log_floor: TensorVariable  # (P,) each provider's log price floor
    trend: TensorVariable  # scalar: change of the log GPU-hour price per year
    log_pivot: float


def _pricing(design: Design, hyp: Hypothesis) -> PricingTerms:
    """Priors of the pricing layer and its terms at each epoch.

    Each provider's elasticity and floor are partially pooled (non-centred
    offsets around the providers' mean); a lab's own price (``first_party``)
    shifts the elasticity and the markup and adds a per-model offset of its
    own (value pricing across a lab's ladder), beside the per-model offset that
    every provider's price of a model shares.
    """
    pr = hyp.priors
    fp = design.epoch_first_party
    ep, em = design.epoch_provider, design.epoch_model
    eps_mu = prior_variable("price_elasticity_mu", pr.price_elasticity_mu)
    eps_sigma = prior_variable("price_elasticity_sigma", pr.price_elasticity_sigma)
    eps_z = pm.Normal("price_elasticity_z", 0.0, 1.0, dims="provider")
    eps_fp = prior_variable("first_party_elasticity", pr.first_party_elasticity)
    eps_e = pm.Deterministic(
        "price_elasticity",
        pricing.elasticity(eps_mu, (eps_sigma * eps_z)[ep], fp, eps_fp),
        dims="epoch",
    )
    model_sigma = prior_variable("model_markup_sigma", pr.model_markup_sigma)
    z_model = pm.Normal("model_markup_z", 0.0, 1.0, dims="model")
    fp_markup = prior_variable("first_party_markup", pr.first_party_markup)
    fp_sigma = prior_variable("first_party_model_sigma", pr.first_party_model_sigma)
    z_fp = pm.Normal("first_party_model_z", 0.0, 1.0, dims="model")
    offset = pm.Deterministic(
        "log_price_offset",
        (model_sigma * z_model)[em] + fp * (fp_markup + (fp_sigma * z_fp)[em]),
        dims="epoch",
    )
    floor_mu = prior_variable("log_price_floor_mu", pr.log_price_floor_mu)
    floor_sigma = prior_variable("log_price_floor_sigma", pr.log_price_floor_sigma)
    floor_z = pm.Normal("log_price_floor_z", 0.0, 1.0, dims="provider")
    log_floor = pm.Deterministic(
        "log_price_floor", floor_mu + floor_sigma * floor_z, dims="provider"
    )
    trend = prior_variable("gpu_hour_trend", pr.gpu_hour_trend)
    return PricingTerms(
        elasticity=eps_e,
        offset=offset,
        log_floor=log_floor,
        trend=trend,
        log_pivot=float(np.log(hyp.constants.price_pivot_gpu_hours_per_mtok)),
    )


def _cost_statements(design: Design, hyp: Hypothesis, *, joint, log_cost, epoch_loglik, post):
    r"""Add a provider's stated serving-cost ratios to the serving likelihood.

    A statement ties two epochs: the modelled blended serving cost (GPU-hours
    times GPU-hour price, no markup) at the second over the first must match
    the stated ratio, :math:`\log r \sim N(\log c_{e_2 k_2} - \log c_{e_1 k_1},
    \sigma)`. The two epochs' serving components are then no longer
    independent, so they are summed out together over the :math:`K \times K`
    pairs. Returns the per-epoch log-likelihood (the pair's joint term on its
    second epoch, so the sum is exact) and the component probabilities, whose
    rows of the two epochs become the pair's marginals.
    """
    # A Python float would become a float32 constant where float32 holds it exactly
    # (PyTensor's autocasting), and its log would lose precision: keep it float64.
    sigma = np.float64(hyp.evidence.cost_statement_log_sigma)
    for (e1, e2), obs in zip(design.statement_epochs, design.statement_log_ratio, strict=True):
        ratio = log_cost[e2][None, :] - log_cost[e1][:, None]  # (K1, K2)
        pair = joint[e1][:, None] + joint[e2][None, :] + _normal_logp(obs, ratio, sigma)
        total = pm.math.logsumexp(pair)
        epoch_loglik = pt.set_subtensor(epoch_loglik[e2], total - epoch_loglik[e1])
        post = pt.set_subtensor(post[e1], pt.exp(pm.math.logsumexp(pair, axis=1) - total))
        post = pt.set_subtensor(post[e2], pt.exp(pm.math.logsumexp(pair, axis=0) - total))
    return epoch_loglik, post


def _normal_logp(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - pt.log(sigma) - 0.5 * np.log(2 * np.pi)


def build_model(
    design: Design, hyp: Hypothesis, *, predictive: Predictive = None, pointwise: bool = False
) -> pm.Model:
    """Build (do not sample) the PyMC model of ``design`` under ``hyp``.

    Parameters
    ----------
    design : Design
        Observations and index arrays.
    hyp : Hypothesis
        Priors and settings.
    predictive : {None, "prior", "posterior"}
        ``None`` builds the model for sampling. ``"prior"`` and ``"posterior"``
        add unobserved copies of the observations (with the discrete serving
        component drawn from its prior or its posterior weights) for
        predictive checks; such a model is only used for forward sampling.
    """
    coords = {
        "model": design.models,
        "unknown_model": design.unknown,
        "provider": design.providers,
        "epoch": [
            f"{r.model} | {r.provider} | {r.date.isoformat()}" for r in design.epochs.itertuples()
        ],
        "component": design.component_labels,
        "bits": [str(b) for b in hyp.precision.bits],
        "hardware": design.hardware,
        "speed_obs": np.arange(len(design.speed_epoch)),
        "ttft_obs": np.arange(len(design.ttft_epoch)),
        "measurement": np.arange(len(design.measure_epoch)),
        "mmlu_obs": np.arange(len(design.mmlu_score)),
        "hidden_obs": [design.unknown[i] for i in design.hidden_unknown],
    }
    with pm.Model(coords=coords) as model:
        values = _PriorValues()
        token = _PRIOR_VALUES.set(values)
        try:
            _build(design, hyp, predictive=predictive, pointwise=pointwise)
        finally:
            _PRIOR_VALUES.reset(token)
        values.finish()
        model.prior_value_index = values.index
    return model


@dataclass(frozen=True)
class _Sizes:
    """Each model's total and active parameters (known, or latent for the unknown
    models, whose fraction, size and training tokens are kept for the quality terms).
    """

    total: TensorVariable  # (M,) parameters
    active: TensorVariable  # (M,)
    frac: TensorVariable | None = None  # (U,) active fraction of the unknown models
    n_unknown: TensorVariable | None = None  # (U,) their total parameters
    tokens: TensorVariable | None = None  # (U,) their training tokens

    def unknown_active(self) -> TensorVariable:
        """(U,) active parameters of the unknown models."""
        if self.frac is None or self.n_unknown is None:
            raise ValueError("the fit has no model of unknown size")
        return self.frac * self.n_unknown


@dataclass(frozen=True)
class _Setup:
    """The serving setup shared by every epoch: batch, utilisations, markups, pricing."""

    batch: TensorVariable  # (E, K) decode batch before the memory cap
    mbu: TensorVariable
    mfu_prefill: TensorVariable
    gpu_hour: TensorVariable  # (H,) GPU-hour price per hardware generation
    markup_out: TensorVariable  # (P,) log output markup per provider
    markup_in: TensorVariable  # (P,)
    pricing: PricingTerms
    price_sigma: TensorVariable


@dataclass(frozen=True)
class _Decode:
    """The forward model on the (epoch, component) grid."""

    n_act: TensorVariable  # (E, 1) active parameters of the epoch's model
    flops: np.ndarray  # (1, K) peak FLOP/s of the component's accelerator
    width: TensorVariable  # (E, K) accelerators that split a decode step
    batch: TensorVariable  # (E, K) decode batch after the memory cap
    t_step: TensorVariable  # (E, K) seconds per decode step
    log_work_out: TensorVariable  # (E, K) log GPU-hours per 1M output tokens
    log_work_in: TensorVariable  # (E, K) log GPU-hours per 1M input tokens


@dataclass(frozen=True)
class _Measures:
    """The speed and first-token-time terms of each measurement and component."""

    ll: TensorVariable  # (Msr, K) log-likelihood of each measurement on each component
    log_transition: TensorVariable | None = None  # (Msr, K, K) prior log chance of its component
    log_speed_mu: TensorVariable | None = None
    speed_sigma: TensorVariable | None = None
    log_ttft_mu: TensorVariable | None = None
    ttft_sigma: TensorVariable | None = None


def _build(design: Design, hyp: Hypothesis, *, predictive: Predictive, pointwise: bool) -> None:
    """The variables of :func:`build_model`, added to the model being built, step by step
    (the order of the steps is the order of the model's variables).
    """
    sizes = _sizes(design, hyp)
    setup = _serving_setup(design, hyp)
    decode = _decode(design, hyp, sizes, setup)
    mu_out, mu_in, log_g = _list_prices(design, setup, decode)
    loglik = _price_loglik(design, setup, mu_out, mu_in)
    measures = _measurements(design, hyp, setup, decode)
    log_weights, post = _serving_likelihood(
        design, hyp, loglik=loglik, measures=measures, log_g=log_g, decode=decode,
        pointwise=pointwise,
    )  # fmt: skip
    if len(design.mmlu_score):
        _quality(design, hyp, sizes, pointwise=pointwise)
    if hyp.evidence.hidden_size and len(design.unknown) and len(design.hidden_size):
        _hidden_size(design, hyp, sizes, pointwise=pointwise)
    if predictive is not None:
        probs = pt.exp(log_weights) if predictive == "prior" else post
        _predictive(
            design, predictive, probs=probs, mu_out=mu_out, mu_in=mu_in,
            price_sigma=setup.price_sigma, m=measures,
        )  # fmt: skip


def _sizes(design: Design, hyp: Hypothesis) -> _Sizes:
    """Sizes and training tokens: known models fixed, unknown ones latent."""
    total = pt.as_tensor_variable(np.nan_to_num(design.known_total, nan=1.0))
    active = pt.as_tensor_variable(np.nan_to_num(design.known_active, nan=1.0))
    if not len(design.unknown):
        return _Sizes(total, active)
    log10_n = unknown_model_variable("log10_params_total_b", hyp, design.unknown)
    frac = unknown_model_variable("active_fraction", hyp, design.unknown)
    n_unknown = 10.0**log10_n * 1e9
    total = pt.set_subtensor(total[design.unknown_pos], n_unknown)
    active = pt.set_subtensor(active[design.unknown_pos], frac * n_unknown)
    omega = unknown_model_variable("log10_overtrain", hyp, design.unknown)
    sl = hyp.scaling_law
    d_opt = forward.chinchilla_optimal_tokens(
        n_unknown, E=sl.E, A=sl.A, B=sl.B, alpha=sl.alpha, beta=sl.beta
    )
    tokens = d_opt * 10.0**omega
    pm.Deterministic("params_total_b", n_unknown / 1e9, dims="unknown_model")
    pm.Deterministic("params_active_b", frac * n_unknown / 1e9, dims="unknown_model")
    pm.Deterministic("tokens_t", tokens / 1e12, dims="unknown_model")
    return _Sizes(total, active, frac, n_unknown, tokens)


def _serving_setup(design: Design, hyp: Hypothesis) -> _Setup:
    """Decode batch, utilisations, markups, GPU-hour prices and the pricing layer."""
    pr = hyp.priors
    lb_mu = prior_variable("log_batch_mu", pr.log_batch_mu)
    lb_sigma = prior_variable("log_batch_sigma", pr.log_batch_sigma)
    lb_trend = prior_variable("log_batch_trend", pr.log_batch_trend)
    # One batch per (epoch, serving component): the component is summed out, and
    # a batch of its own for each component gives the same marginal likelihood
    # as one shared batch (each is drawn from the same prior and only the
    # chosen component's enters), without a ridge NUTS must cross to move
    # between, say, a 16-bit A100 and an 8-bit H100 explanation of one price.
    z_batch = pm.Normal("batch_z", 0.0, 1.0, dims=("epoch", "component"))
    batch_ek = 1.0 + pt.exp(lb_mu + lb_trend * design.epoch_year[:, None] + lb_sigma * z_batch)
    mbu = prior_variable("mbu", pr.mbu)
    mfu_prefill = prior_variable("mfu_prefill", pr.mfu_prefill)
    gpu_hour, mk_out, mk_in = _markups(design, hyp, mfu_prefill)
    pm.Deterministic("log_markup_out", mk_out, dims="provider")
    pm.Deterministic("log_markup_in", mk_in, dims="provider")
    pricing_terms = _pricing(design, hyp)
    price_sigma = prior_variable("price_sigma", pr.price_sigma)
    return _Setup(batch_ek, mbu, mfu_prefill, gpu_hour, mk_out, mk_in, pricing_terms, price_sigma)


def _kv_per_token(design: Design, hyp: Hypothesis, active) -> TensorVariable:
    """KV cache per token of each model: a known model's published value, else the
    GQA fit (times the model's own multiplier for a model of unknown size).
    """
    const = hyp.constants
    kv_fit = forward.kv_bytes_per_token_estimate(active, coef=const.kv_bytes_coef)
    if len(design.unknown):
        log_kv = unknown_model_variable("log_kv_multiplier", hyp, design.unknown)
        pos = design.unknown_pos
        kv_fit = pt.set_subtensor(kv_fit[pos], kv_fit[pos] * pt.exp(log_kv))
    has_kv = ~np.isnan(design.known_kv) & const.published_kv
    return pm.Deterministic(
        "kv_bytes_per_token",
        pt.where(has_kv, np.nan_to_num(design.known_kv, nan=1.0), kv_fit),
        dims="model",
    )


def _decode(design: Design, hyp: Hypothesis, sizes: _Sizes, setup: _Setup) -> _Decode:
    """The roofline on the (epoch, component) grid: replica, batch, step time, work."""
    pr, const = hyp.priors, hyp.constants
    em = design.epoch_model
    n_tot = sizes.total[em][:, None]
    n_act = sizes.active[em][:, None]
    bits = design.component_bits[None, :]
    flops = design.component_flops()[None, :]
    mem = design.component_array("memory_bytes")[None, :]
    # A replica's accelerators: enough that its weights fill the (latent) share
    # of their memory; at most one node's split each decode step, the rest run
    # as pipeline stages (forward.tensor_parallel_width). Both depend on the
    # model's total size, the component and the fill only.
    fill = prior_variable("weight_memory_fraction", pr.weight_memory_fraction)
    n_gpus = forward.smooth_max(forward.bytes_per_weight(bits) * n_tot / mem / fill, 1.0)
    width = forward.tensor_parallel_width(n_gpus, const.gpus_per_node)
    kv = _kv_per_token(design, hyp, sizes.active)[em][:, None]
    context = prior_variable("context_tokens", pr.context_tokens)
    mfu_decode = prior_variable("mfu_decode", pr.mfu_decode)
    # The batch a replica runs is capped by the memory its weights leave for KV cache.
    b = setup.batch
    if const.kv_memory_cap:
        limit = forward.kv_batch_limit(
            n_gpus, mem, n_tot, bits, context_tokens=context, kv_bytes_per_token=kv
        ) * forward.pipeline_share(n_gpus, width)
        b = forward.capped_batch(setup.batch, limit)
    # A dense model reads all its weights at any batch: for models of known size
    # that is a constant, and the graph computes it only for the other epochs.
    known_n = np.nan_to_num(design.known_total, nan=1.0)[em][:, None]
    touched = np.repeat(known_n, len(design.component_bits), axis=1)
    rows = np.flatnonzero(design.known_active[em] != design.known_total[em])
    if len(rows):
        touched = pt.set_subtensor(
            pt.as_tensor_variable(touched)[rows],
            forward.weights_touched(n_tot[rows], n_act[rows], b[rows]),
        )
    t_step = forward.decode_step_time(
        n_tot, n_act, bits, b, context_tokens=context, kv_bytes_per_token=kv, n_gpus=width,
        hbm_bytes_per_s=design.component_array("hbm_bytes_per_s")[None, :], flops=flops,
        mbu=setup.mbu, mfu=mfu_decode, touched=touched,
    )  # fmt: skip
    # Work in GPU-hours per 1M tokens (the cost at $1 per GPU-hour); the
    # pricing layer turns it into a price at the epoch's GPU-hour price.
    out = forward.output_cost_per_mtok(t_step, b, n_gpus=width, usd_per_gpu_hour=1.0)
    inp = forward.input_cost_per_mtok(
        n_act, flops=flops, mfu=setup.mfu_prefill, usd_per_gpu_hour=1.0
    )
    return _Decode(n_act, flops, width, b, t_step, pt.log(out), pt.log(inp))


def _list_prices(design: Design, setup: _Setup, decode: _Decode):
    """Modelled log list prices (output, input) and log GPU-hour price on the grid."""
    terms = setup.pricing
    log_g = pricing.log_gpu_hour_at(
        pt.log(setup.gpu_hour)[design.component_hardware][None, :],
        terms.trend,
        design.epoch_year[:, None],
    )
    ep = design.epoch_provider
    mu_out, mu_in = (
        pricing.log_list_price(
            log_work,
            log_g + markup[ep][:, None],
            terms.elasticity[:, None],
            terms.offset[:, None],
            log_pivot=terms.log_pivot,
            log_floor=terms.log_floor[ep][:, None],
            xp=pt,
        )
        for log_work, markup in (
            (decode.log_work_out, setup.markup_out),
            (decode.log_work_in, setup.markup_in),
        )
    )
    return mu_out, mu_in, log_g


def _price_loglik(design: Design, setup: _Setup, mu_out, mu_in):
    """Log-likelihood of each epoch's two prices on each component (masked epochs: 0)."""
    # Observations are data containers, so a compiled model can be refitted
    # to other (e.g. simulated) observations without compiling again.
    obs_out = pm.Data("obs_log_price_out", design.log_price_out, dims="epoch")
    obs_in = pm.Data("obs_log_price_in", design.log_price_in, dims="epoch")
    price_mask = pm.Data("price_mask", design.price_mask, dims="epoch")
    return price_mask[:, None] * (
        _normal_logp(obs_out[:, None], mu_out, setup.price_sigma)
        + _normal_logp(obs_in[:, None], mu_in, setup.price_sigma)
    )


def _measurements(design: Design, hyp: Hypothesis, setup: _Setup, decode: _Decode) -> _Measures:
    """Speeds and first-token times: each measurement's log-likelihood on each component."""
    pr, const = hyp.priors, hyp.constants
    t_step = decode.t_step
    speed = ttft = {}
    ll = pt.zeros((len(design.measure_epoch), len(design.component_labels)))
    if len(design.speed_epoch):
        bias = prior_variable("speed_log_bias", pr.speed_log_bias)
        sigma = prior_variable("speed_sigma", pr.speed_sigma)
        mu = -pt.log(t_step[design.speed_epoch]) + bias
        obs = pm.Data("obs_log_speed", design.log_speed, dims="speed_obs")
        ll = pt.inc_subtensor(ll[design.speed_measure], _normal_logp(obs[:, None], mu, sigma))
        speed = {"log_speed_mu": mu, "speed_sigma": sigma}
    if len(design.ttft_epoch):
        overhead = prior_variable(
            "ttft_overhead_s", pr.ttft_overhead_s, dims="provider", size=len(design.providers)
        )
        sigma = prior_variable("ttft_sigma", pr.ttft_sigma)
        te = design.ttft_epoch
        t_pre = forward.prefill_time(
            decode.n_act[te], const.ttft_input_tokens, n_gpus=decode.width[te],
            flops=decode.flops, mfu=setup.mfu_prefill,
        )  # fmt: skip
        ov = overhead[design.epoch_provider[te]][:, None] if overhead.ndim else overhead
        mu = pt.log(ov + t_pre + t_step[te])
        obs = pm.Data("obs_log_ttft", design.log_ttft, dims="ttft_obs")
        ll = pt.inc_subtensor(ll[design.ttft_measure], _normal_logp(obs[:, None], mu, sigma))
        ttft = {"log_ttft_mu": mu, "ttft_sigma": sigma}
    # Each measurement (the speeds and TTFTs of one epoch at one date) is served on
    # one component, which may differ from the epoch's: the hardware is drawn at
    # the measurement's own date given the one at the price date (a server is
    # upgraded, never downgraded; design.hardware_transition).
    log_transition = None
    if len(design.measure_epoch):
        log_transition = prior_data(
            "prior.measure_log_transition",
            design.measure_log_transition,
            dims=("measurement", "component", "component"),
        )
    return _Measures(ll, log_transition, **speed, **ttft)


def _serving_likelihood(
    design: Design, hyp: Hypothesis, *, loglik, measures: _Measures, log_g, decode: _Decode,
    pointwise: bool,
):  # fmt: skip
    """Sum the serving component out of each epoch's likelihood; record the batch and
    the components' posterior probabilities. Returns (prior log weights, posterior
    component probabilities), both (E, K).
    """
    # A measurement's term in the epoch's component k is log sum_k' T[k, k']
    # p(measurement | k'), where k' uses that epoch's batch of component k'.
    if measures.log_transition is not None:
        ll_by_epoch_component = pm.math.logsumexp(
            measures.log_transition + measures.ll[:, None, :], axis=2
        )
        loglik = pt.inc_subtensor(loglik[design.measure_epoch], ll_by_epoch_component)
    # The components' prior weights (precision, and the newer hardware's chance
    # at each date) are the hypothesis' values: data, like its priors.
    log_weights = prior_data("prior.log_weights", design.log_weights, dims=("epoch", "component"))
    joint = log_weights + loglik
    epoch_loglik = pm.math.logsumexp(joint, axis=1)
    post = pt.special.softmax(joint, axis=1)
    if len(design.statement_log_ratio):
        log_cost = pt.logaddexp(
            np.log(pricing.INPUT_SHARE) + log_g + decode.log_work_in,
            np.log(1.0 - pricing.INPUT_SHARE) + log_g + decode.log_work_out,
        )
        epoch_loglik, post = _cost_statements(
            design, hyp, joint=joint, log_cost=log_cost, epoch_loglik=epoch_loglik, post=post
        )
    pm.Potential("serving_loglik", epoch_loglik.sum())
    if pointwise:
        pm.Deterministic("loglik_serving", epoch_loglik, dims="epoch")
    # The batch of each epoch, averaged (in logs) over the components by their
    # posterior probability in this draw.
    pm.Deterministic("batch", pt.exp((post * pt.log(decode.batch)).sum(axis=1)), dims="epoch")
    n_e, n_bits = design.n_epochs, len(hyp.precision.bits)
    pm.Deterministic("p_bits", post.reshape((n_e, n_bits, 2)).sum(axis=2), dims=("epoch", "bits"))
    pm.Deterministic(
        "p_hardware", post.reshape((n_e, n_bits, 2)).sum(axis=1), dims=("epoch", "hardware")
    )
    return log_weights, post


def _quality(design: Design, hyp: Hypothesis, sizes: _Sizes, *, pointwise: bool) -> None:
    """MMLU scores against training compute (latent for models of unknown size)."""
    pr, const = hyp.priors, hyp.constants
    slope = prior_variable("mmlu_slope", pr.mmlu_slope)
    midpoint = prior_variable("mmlu_midpoint", pr.mmlu_midpoint)
    known_c = np.nan_to_num(design.mmlu_known_log10_compute, nan=0.0)
    latent = np.isnan(design.mmlu_known_log10_compute)
    log10c = pt.as_tensor_variable(known_c)
    if latent.any():
        u_index = {pos: i for i, pos in enumerate(design.unknown_pos)}
        rows = np.flatnonzero(latent)
        ui = np.array([u_index[design.mmlu_model[r]] for r in rows])
        c_u = pt.log10(forward.training_compute(sizes.unknown_active(), sizes.tokens))
        log10c = pt.set_subtensor(log10c[rows], c_u[ui])
    mmlu_mu = forward.mmlu_from_compute(log10c, slope, midpoint, xp=pt)
    obs_mmlu = pm.Data("obs_mmlu", design.mmlu_score, dims="mmlu_obs")
    pm.Normal("mmlu", mu=mmlu_mu, sigma=const.mmlu_sigma, observed=obs_mmlu, dims="mmlu_obs")
    if pointwise:
        pm.Deterministic(
            "loglik_mmlu", _normal_logp(obs_mmlu, mmlu_mu, const.mmlu_sigma), dims="mmlu_obs"
        )


def _hidden_size(design: Design, hyp: Hypothesis, sizes: _Sizes, *, pointwise: bool) -> None:
    """A measured hidden size (optional evidence) through depth and parameters per layer."""
    pr, ev = hyp.priors, hyp.evidence
    n_h = len(design.hidden_size)
    log_depth = prior_variable("log_depth", pr.log_depth, dims="hidden_obs", size=n_h)
    log_coef = prior_variable(
        "log_params_per_layer_d2", pr.log_params_per_layer_d2, dims="hidden_obs", size=n_h
    )
    d = design.hidden_size
    # Active parameters = coef * depth * d^2 + embedding and unembedding.
    n_act_h = sizes.unknown_active()[design.hidden_unknown]
    core = pt.maximum(n_act_h - 2.0 * ev.vocab_size * d, 1e6)
    mu_d = 0.5 * (pt.log(core) - log_coef - log_depth)
    pm.Normal(
        "log_hidden_size",
        mu=mu_d,
        sigma=ev.hidden_size_log_sigma,
        observed=np.log(d),
        dims="hidden_obs",
    )
    if pointwise:
        pm.Deterministic(
            "loglik_hidden",
            _normal_logp(np.log(d), mu_d, ev.hidden_size_log_sigma),
            dims="hidden_obs",
        )


def _predictive(
    design: Design, predictive: Predictive, *, probs, mu_out, mu_in, price_sigma, m: _Measures
) -> None:
    """Unobserved copies of the observations, on a serving component drawn with ``probs``
    (its prior weights or its posterior probabilities), for predictive checks.
    """
    n_e = design.n_epochs
    probs = probs / probs.sum(axis=1, keepdims=True)
    comp = pm.Categorical("serving_component", p=probs, dims="epoch")
    rows = pt.arange(n_e)
    pm.LogNormal("output_price", mu=mu_out[rows, comp], sigma=price_sigma, dims="epoch")
    pm.LogNormal("input_price", mu=mu_in[rows, comp], sigma=price_sigma, dims="epoch")
    if m.log_transition is not None:
        # The measurement's component given the epoch's: its prior chance, and
        # in the posterior also its measurements' likelihood.
        step = m.log_transition[pt.arange(len(design.measure_epoch)), comp[design.measure_epoch]]
        if predictive == "posterior":
            step = step + m.ll
        mcomp = pm.Categorical(
            "measure_component", p=pt.special.softmax(step, axis=1), dims="measurement"
        )
    for name, mu, sigma, measure, dims in (
        ("output_speed", m.log_speed_mu, m.speed_sigma, design.speed_measure, "speed_obs"),
        ("ttft", m.log_ttft_mu, m.ttft_sigma, design.ttft_measure, "ttft_obs"),
    ):
        if mu is not None:
            # Each observation on the component its measurement was drawn on.
            rows = pt.arange(len(measure))
            pm.LogNormal(name, mu=mu[rows, mcomp[measure]], sigma=sigma, dims=dims)
