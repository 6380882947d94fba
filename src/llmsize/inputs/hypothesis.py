"""Hypothesis files: priors and settings as data, validated into typed objects.

A hypothesis is a TOML file in ``models/``. ``default.toml`` holds every prior
of the model, each keyed by the name of the PyMC variable it sets. Another file
can start with ``extends = "default.toml"`` and override any subset (a parent
named by its bare file name and missing beside the file is the bundled one of
that name, :func:`llmsize.inputs.bundled.bundled_parent`); the two
are merged key by key (the child wins) and the result is validated as a whole
before anything is built or sampled. Unknown keys, distributions and
parameters are errors with a "did you mean" hint.
"""

from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import hashlib
import json
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from scipy import stats

from llmsize.exceptions import HypothesisError, one_line
from llmsize.inputs.bundled import bundled_parent
from llmsize.inputs.files import read_input_bytes

SCHEMA_VERSION = 1

#: The largest magnitude of a prior's parameter (mu, sigma, alpha, beta, bounds):
#: beyond it a value is a typo (``1e300``), and draws or densities overflow.
MAX_PARAMETER = 1e6

#: Longest ``extends`` chain: a file and at most this many ancestors.
MAX_EXTENDS_DEPTH = 16

#: Largest seed: the sampler's random generators take 32-bit seeds.
MAX_SEED = 2**32 - 1

#: Most chains a run may ask for (each is a thread and a copy of the draws).
MAX_CHAINS = 64

#: Most draws, or tuning steps, per chain (the draws of 4 chains at this many
#: already take gigabytes).
MAX_DRAWS = 1_000_000

#: The range of each whole-number sampler setting, in the hypothesis' ``[sampler]``
#: table and on every command's command line alike (:func:`check_sampler_options`).
SAMPLER_LIMITS: dict[str, tuple[int, int]] = {
    "draws": (1, MAX_DRAWS),
    "tune": (0, MAX_DRAWS),
    "chains": (1, MAX_CHAINS),
    "seed": (0, MAX_SEED),
    # Threads nutpie samples the chains on (more than the chains gives nothing).
    "cores": (1, MAX_CHAINS),
}

#: A bounded prior parameter: finite, and not absurdly large.
_Param = Annotated[float, Field(ge=-MAX_PARAMETER, le=MAX_PARAMETER)]
#: A scale (sigma) or shape (Beta's alpha, beta): positive, finite, not absurd.
_Scale = Annotated[float, Field(gt=0, le=MAX_PARAMETER)]


class _Strict(BaseModel):
    # inf and nan are not priors: a fit would fail on them far from the file.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NormalPrior(_Strict):
    """A normal prior, ``Normal(mu, sigma)``."""

    distribution: Literal["Normal"]
    mu: _Param
    sigma: _Scale

    def logpdf(self, x):
        """Log density at ``x`` (scipy), as the prior-sensitivity checks evaluate it."""
        return stats.norm.logpdf(x, self.mu, self.sigma)


class HalfNormalPrior(_Strict):
    """A half-normal prior on the positive reals, ``HalfNormal(sigma)``."""

    distribution: Literal["HalfNormal"]
    sigma: _Scale

    def logpdf(self, x):
        """Log density at ``x`` (scipy), as the prior-sensitivity checks evaluate it."""
        return stats.halfnorm.logpdf(x, scale=self.sigma)


class LogNormalPrior(_Strict):
    """A log-normal prior: the log of the quantity is ``Normal(mu, sigma)``."""

    distribution: Literal["LogNormal"]
    mu: _Param
    sigma: _Scale

    def logpdf(self, x):
        """Log density at ``x`` (scipy), as the prior-sensitivity checks evaluate it."""
        return stats.lognorm.logpdf(x, self.sigma, scale=math.exp(self.mu))


class BetaPrior(_Strict):
    """A beta prior on (0, 1), ``Beta(alpha, beta)``."""

    distribution: Literal["Beta"]
    alpha: _Scale
    beta: _Scale

    def logpdf(self, x):
        """Log density at ``x`` (scipy), as the prior-sensitivity checks evaluate it."""
        return stats.beta.logpdf(x, self.alpha, self.beta)


class TruncatedNormalPrior(_Strict):
    """A normal prior cut to ``[lower, upper]`` (either bound may be open)."""

    distribution: Literal["TruncatedNormal"]
    mu: _Param
    sigma: _Scale
    lower: _Param | None = None
    upper: _Param | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TruncatedNormalPrior:
        # lower >= upper leaves no support: every draw would be NaN.
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(
                f"TruncatedNormal needs lower < upper, got lower = {self.lower:g} "
                f"and upper = {self.upper:g}"
            )
        return self

    def logpdf(self, x):
        """Log density at ``x`` (scipy), as the prior-sensitivity checks evaluate it."""
        lo = -math.inf if self.lower is None else (self.lower - self.mu) / self.sigma
        hi = math.inf if self.upper is None else (self.upper - self.mu) / self.sigma
        return stats.truncnorm.logpdf(x, lo, hi, loc=self.mu, scale=self.sigma)


class ConstantPrior(_Strict):
    """A fixed value: the quantity is not sampled (e.g. a dense-only hypothesis)."""

    distribution: Literal["Constant"]
    value: float


Prior = Annotated[
    NormalPrior
    | HalfNormalPrior
    | LogNormalPrior
    | BetaPrior
    | TruncatedNormalPrior
    | ConstantPrior,
    Field(discriminator="distribution"),
]


def prior_centre(spec) -> float:
    """A central value of a prior: its mean (Normal, Beta), median (LogNormal),
    scale (HalfNormal), clipped mean (TruncatedNormal), or the constant's value.
    """
    if isinstance(spec, ConstantPrior):
        return spec.value
    if isinstance(spec, LogNormalPrior):
        return math.exp(spec.mu)
    if isinstance(spec, HalfNormalPrior):
        return spec.sigma
    if isinstance(spec, BetaPrior):
        return spec.alpha / (spec.alpha + spec.beta)
    lower = -math.inf if getattr(spec, "lower", None) is None else spec.lower
    upper = math.inf if getattr(spec, "upper", None) is None else spec.upper
    return min(max(spec.mu, lower), upper)


DISTRIBUTIONS: dict[str, type[BaseModel]] = {
    "Normal": NormalPrior,
    "HalfNormal": HalfNormalPrior,
    "LogNormal": LogNormalPrior,
    "Beta": BetaPrior,
    "TruncatedNormal": TruncatedNormalPrior,
    "Constant": ConstantPrior,
}


@dataclass(frozen=True)
class Interval:
    """An interval of the real line; ``low_open``/``high_open`` exclude an end."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = True
    high_open: bool = True

    def __contains__(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def covers(self, low: float, high: float) -> bool:
        """Whether the open interval (low, high), a distribution's support, lies inside."""
        return low >= self.low and high <= self.high

    def __str__(self) -> str:
        left = "(" if self.low_open or not math.isfinite(self.low) else "["
        right = ")" if self.high_open or not math.isfinite(self.high) else "]"
        return f"{left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(x: float) -> str:
    return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:g}"


@dataclass(frozen=True)
class QuantityRange:
    """What the model needs of one prior quantity.

    ``values``: where the quantity may lie at all; a prior's whole support must
    lie inside (a Beta on a fraction, a HalfNormal on a spread; a Normal only on
    an unbounded quantity), and a ``Constant`` inside it. ``centre``: where the
    prior's centre (:func:`prior_centre`: its mean, median, scale or value) may
    sit and still mean something physical (a log10 size of 300 is no size).
    ``max_sigma``: the largest ``sigma`` of a Normal, HalfNormal or
    TruncatedNormal prior, in the quantity's own units, that is not absurd.
    """

    meaning: str
    values: Interval = Interval()
    centre: Interval = Interval()
    max_sigma: float = MAX_PARAMETER


#: A fraction of something: active parameters, bandwidth or FLOP utilisation.
_FRACTION = Interval(0.0, 1.0, low_open=True, high_open=False)
#: The spread of standard-normal offsets (zero allowed: no spread at all).
_SPREAD = Interval(0.0, math.inf, low_open=False)
#: A scale of a likelihood or a positive physical quantity (zero not allowed).
_POSITIVE = Interval(0.0, math.inf)


def _real(lo: float, hi: float) -> Interval:
    return Interval(lo, hi, low_open=False, high_open=False)


def _spread(meaning: str) -> QuantityRange:
    return QuantityRange(meaning, _SPREAD, Interval(0.0, 20.0, low_open=False, high_open=False), 20)


def _scale(meaning: str) -> QuantityRange:
    return QuantityRange(meaning, _POSITIVE, Interval(0.0, 20.0, high_open=False), 20)


#: The valid range of every prior quantity of :class:`Priors` (and of
#: :class:`ModelPriors`): checked by ``llmsize validate`` and by every command
#: before anything is built, so a prior the model cannot use (an active fraction
#: of 2, a negative bandwidth utilisation, a spread of 1e300) is one clear error
#: instead of a crash or a nonsense report after the fit. The centre windows are
#: generous: they refuse only what no hypothesis could mean.
PRIOR_RANGES: dict[str, QuantityRange] = {
    "log10_params_total_b": QuantityRange(
        "log10 of total parameters in billions",
        centre=_real(-3, 6),
        max_sigma=10,
    ),
    "active_fraction": QuantityRange("active / total parameters", _FRACTION, _FRACTION),
    "log10_overtrain": QuantityRange(
        "log10 of training tokens over the compute-optimal tokens",
        centre=_real(-3, 4),
        max_sigma=10,
    ),
    "log_batch_mu": QuantityRange(
        "natural log of the decode batch in 2024", centre=_real(-5, 15), max_sigma=20
    ),
    "log_batch_sigma": _spread("spread of the log decode batch across epochs"),
    "log_batch_trend": QuantityRange(
        "change of the log decode batch per year", centre=_real(-5, 5), max_sigma=10
    ),
    "mbu": QuantityRange("fraction of HBM bandwidth achieved in decode", _FRACTION, _FRACTION),
    "mfu_prefill": QuantityRange(
        "fraction of peak FLOP/s achieved in prefill", _FRACTION, _FRACTION
    ),
    "mfu_decode": QuantityRange("fraction of peak FLOP/s achieved in decode", _FRACTION, _FRACTION),
    "weight_memory_fraction": QuantityRange(
        "fraction of a replica's memory its weights fill", _FRACTION, _FRACTION
    ),
    "context_tokens": QuantityRange(
        "mean context of a decoding sequence, in tokens",
        _POSITIVE,
        Interval(0.0, 1e8, high_open=False),
        max_sigma=1e8,
    ),
    "log_kv_multiplier": QuantityRange(
        "natural log of the KV cache per token over the GQA fit",
        centre=_real(-10, 10),
        max_sigma=10,
    ),
    "log_markup_out_mu": QuantityRange(
        "natural log of the output price over cost", centre=_real(-20, 20), max_sigma=20
    ),
    "log_markup_in_mu": QuantityRange(
        "natural log of the input price over cost", centre=_real(-20, 20), max_sigma=20
    ),
    "provider_sigma": _spread("spread of the providers' log markups"),
    "model_markup_sigma": _spread("spread of a model's log prices"),
    "price_sigma": _scale("residual spread of a log price"),
    "price_elasticity_mu": QuantityRange(
        "elasticity of price in serving work", centre=_real(-10, 10), max_sigma=10
    ),
    "price_elasticity_sigma": _spread("spread of the providers' price elasticities"),
    "first_party_elasticity": QuantityRange(
        "shift of the price elasticity of a lab's own price", centre=_real(-10, 10), max_sigma=10
    ),
    "first_party_markup": QuantityRange(
        "log markup of a lab's own price over a reseller's", centre=_real(-20, 20), max_sigma=20
    ),
    "first_party_model_sigma": _spread("spread of a lab's own log price per model"),
    "log_price_floor_mu": QuantityRange(
        "natural log of the price floor in USD per 1M tokens", centre=_real(-30, 20), max_sigma=20
    ),
    "log_price_floor_sigma": _spread("spread of the providers' log price floors"),
    "gpu_hour_trend": QuantityRange(
        "change of the log GPU-hour price per year", centre=_real(-5, 5), max_sigma=10
    ),
    "speed_log_bias": QuantityRange(
        "log of measured over roofline speed", centre=_real(-20, 20), max_sigma=20
    ),
    "speed_sigma": _scale("residual spread of a log speed"),
    "ttft_overhead_s": QuantityRange(
        "fixed part of the time to first token, in seconds",
        _SPREAD,
        Interval(0.0, 1e4, low_open=False, high_open=False),
        max_sigma=1e4,
    ),
    "ttft_sigma": _scale("residual spread of a log time to first token"),
    "mmlu_slope": QuantityRange(
        "slope of MMLU's sigmoid in log10 training FLOP, positive",
        centre=Interval(0.0, 20.0, high_open=False),
        max_sigma=20,
    ),
    "mmlu_midpoint": QuantityRange(
        "log10 training FLOP at MMLU's midpoint", centre=_real(10, 40), max_sigma=20
    ),
    "log_depth": QuantityRange(
        "natural log of the number of layers", centre=_real(0, 10), max_sigma=10
    ),
    "log_params_per_layer_d2": QuantityRange(
        "natural log of parameters per layer over d_model squared",
        centre=_real(-5, 10),
        max_sigma=10,
    ),
}

#: Largest sigma of a LogNormal prior (a spread of logs: e^20 is a factor 5e8 per sd).
MAX_LOG_SIGMA = 20.0


def _support(spec) -> tuple[float, float]:
    """The open interval a (non-constant) prior's draws fall in."""
    if isinstance(spec, NormalPrior):
        return -math.inf, math.inf
    if isinstance(spec, HalfNormalPrior | LogNormalPrior):
        return 0.0, math.inf
    if isinstance(spec, BetaPrior):
        return 0.0, 1.0
    lower = -math.inf if spec.lower is None else spec.lower
    upper = math.inf if spec.upper is None else spec.upper
    return lower, upper


def check_prior(name: str, spec) -> str | None:  # noqa: PLR0911 (one return per kind of invalid prior)
    """Why prior ``spec`` cannot be the prior of quantity ``name`` (``None``: it can).

    Checks, against :data:`PRIOR_RANGES`: a ``Constant`` inside the valid range and
    centre window; any other prior's support inside the valid range, its centre in
    the window, and its ``sigma`` not absurd.
    """
    rng = PRIOR_RANGES.get(name)
    if rng is None:
        return None
    what = f"{name} ({rng.meaning})"
    if isinstance(spec, ConstantPrior):
        if spec.value not in rng.values or spec.value not in rng.centre:
            bounds = rng.values if spec.value not in rng.values else rng.centre
            return f"Constant value {spec.value:g} is outside {bounds}, the valid range of {what}"
        return None
    low, high = _support(spec)
    if not rng.values.covers(low, high):
        return (
            f"a {spec.distribution} prior takes values in ({_num(low)}, {_num(high)}), "
            f"outside {rng.values}, the valid range of {what}; use a prior whose values stay "
            "inside (Beta for a fraction, HalfNormal or LogNormal for a positive quantity, "
            "TruncatedNormal with bounds)"
        )
    if isinstance(spec, LogNormalPrior):
        if spec.sigma > MAX_LOG_SIGMA:
            return f"sigma {spec.sigma:g} of a LogNormal is absurd (at most {MAX_LOG_SIGMA:g})"
    elif getattr(spec, "sigma", None) is not None and spec.sigma > rng.max_sigma:
        return f"sigma {spec.sigma:g} is absurd: at most {rng.max_sigma:g} for {what}"
    try:
        centre = f"{prior_centre(spec):g}"
        inside = prior_centre(spec) in rng.centre
    except OverflowError:  # a LogNormal's median exp(mu)
        centre, inside = f"exp({spec.mu:g})", False
    if not inside:
        return (
            f"the prior's centre {centre} is outside {rng.centre}, the values of {what} "
            "that mean something"
        )
    return None


class Priors(_Strict):
    """Every prior of the model, keyed by its PyMC variable name.

    Size and training (per model of unknown size):

    - ``log10_params_total_b``: log10 of total parameters, in billions.
    - ``active_fraction``: active / total parameters (1 = dense).
    - ``log10_overtrain``: log10 of training tokens over the compute-optimal
      tokens of the scaling law at that size (0 = Chinchilla-optimal).

    Serving (shared across providers and dates, learned from known models):

    - ``log_batch_mu``, ``log_batch_sigma``, ``log_batch_trend``: natural-log
      decode batch of each serving epoch, its spread, and its change per year.
    - ``mbu``: achieved fraction of HBM bandwidth in decode.
    - ``mfu_prefill``: achieved fraction of peak FLOP/s in prefill.
    - ``mfu_decode``: achieved fraction of peak FLOP/s in decode, when compute-bound.
    - ``weight_memory_fraction``: share of a replica's accelerator memory its
      weights fill (the rest holds KV cache). With one node's accelerators
      splitting each step (``[constants] gpus_per_node``), it sets how many a
      replica has, and so the speed of a model that needs more than one but not
      more than a node.
    - ``context_tokens``: mean context a decoding sequence attends to (tokens); it
      sizes the KV cache read per step and how many sequences fit in memory.
    - ``log_kv_multiplier`` (per model of unknown size): natural log of its KV
      cache per token over the grouped-query-attention fit of ``[constants]``
      ``kv_bytes_coef`` (multi-head attention holds several times more, multi-latent
      attention less). Models of known size use their own published value.
    - ``log_markup_out_mu``, ``log_markup_in_mu``: natural-log price over cost
      for output and input tokens, averaged over providers.
    - ``provider_sigma``: spread of the providers' markups around that mean.
    - ``model_markup_sigma``: spread of a model's prices, at every provider, around
      what its size and the providers' markups predict (demand, competition, a
      provider's choice of precision for that model). It keeps the many prices of
      one model from counting as independent evidence of its size.
    - ``price_sigma``: residual spread of a price around its provider's markup.

    Pricing layer (:mod:`llmsize.physics.pricing`: how a provider turns cost into
    a price, learned from the models of known size):

    - ``price_elasticity_mu``, ``price_elasticity_sigma``: elasticity of price in
      serving work (GPU-hours per token), its providers' mean and spread (1 on the
      roofline: price proportional to cost).
    - ``first_party_elasticity``: the elasticity's shift where a lab prices its own
      model (a lab prices its ladder by value as well as cost).
    - ``first_party_markup``: log markup of a lab's own price over a reseller's.
    - ``first_party_model_sigma``: spread of a lab's own price of each of its models
      beyond what size predicts (value pricing: two models of one size, one at 5x).
    - ``log_price_floor_mu``, ``log_price_floor_sigma``: natural-log price floor
      (USD per 1M tokens) of the providers, mean and spread: no provider sells
      tokens below some price, whatever the model's size.
    - ``gpu_hour_trend``: change of the log GPU-hour price per year (rental
      prices fell over 2023-2025).
    - ``speed_log_bias``, ``speed_sigma``: measured speed over roofline speed
      (log), and the spread of measurements around it.
    - ``ttft_overhead_s``: fixed part of the time to first token (network,
      queueing), per provider; ``ttft_sigma`` its log-scale residual.

    Quality:

    - ``mmlu_slope``, ``mmlu_midpoint``: the sigmoid of log10 training FLOP
      that maps compute to MMLU.

    Shape (used only with ``[evidence] hidden_size = true``, per model whose
    hidden size was measured):

    - ``log_depth``: natural log of the number of layers.
    - ``log_params_per_layer_d2``: natural log of the active parameters per
      layer over d_model squared (12 for a dense MHA transformer, about 13
      for Llama-3-8B's GQA and SwiGLU, about 23 for Mixtral's two experts).
    """

    log10_params_total_b: Prior
    active_fraction: Prior
    log10_overtrain: Prior
    log_batch_mu: Prior
    log_batch_sigma: Prior
    log_batch_trend: Prior
    mbu: Prior
    mfu_prefill: Prior
    mfu_decode: Prior
    context_tokens: Prior
    log_kv_multiplier: Prior
    log_markup_out_mu: Prior
    log_markup_in_mu: Prior
    provider_sigma: Prior
    model_markup_sigma: Prior
    price_sigma: Prior
    price_elasticity_mu: Prior
    price_elasticity_sigma: Prior
    first_party_elasticity: Prior
    first_party_markup: Prior
    first_party_model_sigma: Prior
    log_price_floor_mu: Prior
    log_price_floor_sigma: Prior
    gpu_hour_trend: Prior
    speed_log_bias: Prior
    speed_sigma: Prior
    ttft_overhead_s: Prior
    ttft_sigma: Prior
    mmlu_slope: Prior
    mmlu_midpoint: Prior
    # Optional so that hypothesis files written before the hidden-size evidence
    # still validate; models/default.toml states both with their sources.
    log_depth: Prior = NormalPrior(distribution="Normal", mu=3.466, sigma=0.4)
    log_params_per_layer_d2: Prior = NormalPrior(distribution="Normal", mu=2.565, sigma=0.35)
    # Optional for the same reason: files written when it was the constant 0.5 keep it.
    weight_memory_fraction: Prior = ConstantPrior(distribution="Constant", value=0.5)

    @field_validator("*")
    @classmethod
    def _in_range(cls, spec, info: ValidationInfo):
        return _checked(spec, info)


#: Priors that are one value per model of unknown size, and so may be set per model.
PER_MODEL_PRIORS = (
    "log10_params_total_b",
    "active_fraction",
    "log10_overtrain",
    "log_kv_multiplier",
)


class ModelPriors(_Strict):
    """Priors for the models of unknown size whose names match one pattern."""

    log10_params_total_b: Prior | None = None
    active_fraction: Prior | None = None
    log10_overtrain: Prior | None = None
    log_kv_multiplier: Prior | None = None

    @field_validator("*")
    @classmethod
    def _in_range(cls, spec, info: ValidationInfo):
        return _checked(spec, info)


def _checked(spec, info: ValidationInfo):
    """``spec`` if it suits the quantity named by the field, else a ValueError."""
    problem = None if spec is None else check_prior(str(info.field_name), spec)
    if problem:
        raise ValueError(problem)
    return spec


class Evidence(_Strict):
    """Optional likelihood terms beyond prices, speeds and MMLU.

    ``hidden_size``: use ``hidden_size.csv`` (d_model measured from a model's
    logits, Finlayson et al. 2024): d^2 * depth * params-per-layer-per-d^2, plus
    the embeddings, must match the model's active parameters.

    ``cost_statements``: use ``cost_statements.csv`` (a provider's own word on
    how its serving cost changed between two price points: OpenAI's "90% cost
    reduction for ChatGPT since December" at the ChatGPT API's launch): the
    modelled serving cost's ratio between the two must match the stated one.
    """

    hidden_size: bool = False
    cost_statements: bool = True
    #: log-scale error of a stated cost ratio: a rounded "90%" (x0.1) read as
    #: between about x0.06 and x0.16 (2 sd). A very large value makes the statement
    #: uninformative (its density flat), which is a meaningful check, so the bound
    #: is the general one on prior parameters.
    cost_statement_log_sigma: float = Field(0.25, gt=0, le=MAX_PARAMETER)
    #: log-scale error of a measured d_model: 0.06 puts 4096 and 4608 (the two
    #: readings of Finlayson et al.) two standard deviations apart.
    hidden_size_log_sigma: float = Field(0.06, gt=0, le=MAX_LOG_SIGMA)
    #: Vocabulary of the embedding and unembedding (cl100k_base: 100,256 tokens).
    vocab_size: int = Field(100_256, gt=0)


class Precision(_Strict):
    """Serving precision: the discrete choices and their prior weights."""

    bits: tuple[int, ...] = (16, 8, 4)
    weights: tuple[float, ...] = (0.5, 0.35, 0.15)

    @model_validator(mode="after")
    def _check(self) -> Precision:
        if len(self.bits) != len(self.weights):
            raise ValueError("precision.bits and precision.weights differ in length")
        if any(b not in (16, 8, 4) for b in self.bits):
            raise ValueError("precision.bits may only hold 16, 8 and 4")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("precision.weights must be non-negative and not all zero")
        return self


class Hardware(_Strict):
    """Accelerator generations and when the newer one took over.

    The prior probability that a serving epoch runs on ``generations[1]`` is a
    logistic function of its date, centred on ``newer_midpoint`` with scale
    ``newer_width_years``; ``newer_max`` caps it (0 = never).
    """

    generations: tuple[str, str] = ("A100-80GB", "H100-SXM")
    usd_per_gpu_hour_sigma: float = Field(0.4, gt=0, le=MAX_LOG_SIGMA)
    newer_midpoint: dt.date = dt.date(2023, 10, 1)
    newer_width_years: float = Field(0.3, gt=0, le=100)
    newer_max: float = Field(0.95, ge=0, le=1)


class ScalingLaw(_Strict):
    """Chinchilla parametric loss fit (default: Besiroglu et al. 2024 refit)."""

    E: float = 1.8172
    A: float = 482.01
    B: float = 2085.43
    alpha: float = 0.3478
    beta: float = 0.3658
    source: str = "Besiroglu et al. 2024, arXiv:2404.10102"


class Constants(_Strict):
    """Fixed settings of the forward model."""

    ttft_input_tokens: float = Field(550, gt=0)
    #: Accelerators of one node (one NVLink domain), the most that split a decode
    #: step by tensor parallelism (:func:`llmsize.physics.forward.tensor_parallel_width`).
    gpus_per_node: float = Field(8, ge=1, le=1024)
    kv_bytes_coef: float = Field(46_000, gt=0)
    mmlu_sigma: float = Field(6.0, gt=0, le=100)  # percentage points
    #: Serving work (GPU-hours per 1M tokens, i.e. USD at $1 per GPU-hour) at which
    #: the price elasticity has no effect, so the markups keep their meaning there.
    price_pivot_gpu_hours_per_mtok: float = Field(0.2, gt=0)
    #: Cap each decode batch at what the memory left by the weights holds of KV cache.
    kv_memory_cap: bool = True
    #: Use a known model's published KV cache per token (known_models.csv) instead of
    #: the grouped-query-attention fit.
    published_kv: bool = True


class Calibration(_Strict):
    """How ``llmsize calibrate`` treats this hypothesis' own priors.

    ``prior_families``: the known-size families whose sizes shaped a prior of
    this hypothesis. Their hold-outs always go to the calibration's "choose"
    split, so the split that scores the hypothesis never includes what chose it.
    """

    prior_families: tuple[str, ...] = ()


class Sampler(_Strict):
    """Sampler settings, separate from the priors."""

    draws: int = Field(2500, ge=SAMPLER_LIMITS["draws"][0], le=SAMPLER_LIMITS["draws"][1])
    tune: int = Field(300, ge=SAMPLER_LIMITS["tune"][0], le=SAMPLER_LIMITS["tune"][1])
    chains: int = Field(4, ge=SAMPLER_LIMITS["chains"][0], le=SAMPLER_LIMITS["chains"][1])
    target_accept: float = Field(0.8, gt=0, lt=1)
    #: nutpie's mass-matrix adaptation: "diag" (nutpie's default, from draws and
    #: gradients), "draw_diag" (from the draws' variances) or "low_rank".
    adaptation: Literal["diag", "draw_diag", "low_rank"] = "diag"
    seed: int = Field(20231026, ge=SAMPLER_LIMITS["seed"][0], le=SAMPLER_LIMITS["seed"][1])


def check_whole_number(option: str, value: Any, low: int, high: int, why: str = "") -> None:
    """Refuse ``value`` of command-line option ``option`` unless it is a whole
    number from ``low`` to ``high``: one :class:`HypothesisError` naming the option
    (``--seed: must be a whole number from 0 to 4294967295, got -1``).
    """
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or not low <= value <= high:
        raise HypothesisError(
            one_line(f"must be a whole number from {low} to {high}{why}, got {value!r}"),
            file=option,
        )


def check_sampler_options(**values: Any) -> None:
    """Refuse a sampler setting given on the command line (or to the Python API)
    outside :data:`SAMPLER_LIMITS`; ``None`` means not given.

    Checked before anything is built, so no command compiles a model for a seed
    the sampler then refuses, or starts a million chains.
    """
    for name, value in values.items():
        if value is not None:
            why = " (the sampler takes 32-bit seeds)" if name == "seed" else ""
            check_whole_number(f"--{name}", value, *SAMPLER_LIMITS[name], why)


class Hypothesis(_Strict):
    """A validated hypothesis: priors, discrete choices, constants, sampler."""

    schema_version: Literal[1] = 1
    # It names the report folder (reports/<name>): no "." or "..", no separators.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    priors: Priors
    precision: Precision = Precision()
    hardware: Hardware = Hardware()
    scaling_law: ScalingLaw = ScalingLaw()
    constants: Constants = Constants()
    sampler: Sampler = Sampler()
    calibration: Calibration = Calibration()
    #: Per-model priors: ``[model_priors."gpt-3.5-turbo*"]`` overrides [priors]
    #: for the models of unknown size matching the pattern (shell-style; the
    #: last matching pattern wins).
    model_priors: dict[str, ModelPriors] = {}
    evidence: Evidence = Evidence()

    @model_validator(mode="after")
    def _same_distribution(self) -> Hypothesis:
        for pattern, mp in self.model_priors.items():
            for name in PER_MODEL_PRIORS:
                spec = getattr(mp, name)
                base = getattr(self.priors, name)
                if spec is None:
                    continue
                if spec.distribution != base.distribution:
                    raise ValueError(
                        f"model_priors.{pattern}.{name}: use {base.distribution} like "
                        f"priors.{name} (one distribution per quantity across models), "
                        f"got {spec.distribution}"
                    )
                if {k for k, v in spec.model_dump().items() if v is None} != {
                    k for k, v in base.model_dump().items() if v is None
                }:
                    raise ValueError(
                        f"model_priors.{pattern}.{name}: set the same parameters as priors.{name}"
                    )
        return self

    def prior_for(self, name: str, model: str):
        """The prior of per-model quantity ``name`` for ``model`` (last matching pattern)."""
        spec = getattr(self.priors, name)
        for pattern, mp in self.model_priors.items():
            if fnmatch.fnmatchcase(model, pattern) and getattr(mp, name) is not None:
                spec = getattr(mp, name)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping (dates as ISO strings)."""
        return json.loads(self.model_dump_json())

    def digest(self) -> str:
        """sha256 of the canonical JSON of the hypothesis."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def model_digest(self) -> str:
        """sha256 of what defines the statistical model: everything but the
        name, description and sampler settings.
        """
        d = self.to_dict()
        for key in ("name", "description", "sampler"):
            d.pop(key, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key == "distribution" or not isinstance(value, dict):
            out[key] = value
        elif isinstance(out.get(key), dict) and "distribution" not in value:
            out[key] = _merge(out[key], value)
        else:
            # A prior given with its own distribution replaces the parent's whole.
            out[key] = value
    return out


def _read_toml(
    path: Path,
    seen: tuple[Path, ...] = (),
    sources: list[Path] | None = None,
    shown: str | None = None,
) -> dict[str, Any]:
    """The raw mapping of hypothesis file ``path``, its ``extends`` chain merged in.

    Only regular files are read, at most :data:`~llmsize.inputs.files.MAX_INPUT_BYTES`
    each (a FIFO or a link to ``/dev/zero`` is refused, not waited on), as UTF-8
    (a byte-order mark accepted), and a chain longer than
    :data:`MAX_EXTENDS_DEPTH` is refused. Every file read is appended to
    ``sources``, so a command knows the folders it must not write into. Errors
    name the file as ``shown`` (the path the user gave, for a resolved ``path``).
    """
    file = one_line(shown if shown is not None else str(path))
    if path in seen:
        raise HypothesisError("'extends' forms a cycle", file=file, field="extends")
    blob = read_input_bytes(path, error=HypothesisError, what="hypothesis file", shown=file)
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HypothesisError(
            f"not UTF-8 text (byte {exc.start} is {blob[exc.start]:#04x}); save it as UTF-8",
            file=file,
        ) from None
    if sources is not None:
        sources.append(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HypothesisError(f"not valid TOML: {exc}", file=file) from None
    except RecursionError:
        raise HypothesisError("not valid TOML: nested too deeply", file=file) from None
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise HypothesisError("must be a file name", file=file, field="extends")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise HypothesisError(
            f"'extends' chain is longer than {MAX_EXTENDS_DEPTH} files; a hypothesis may "
            f"extend at most {MAX_EXTENDS_DEPTH} files in turn",
            file=file,
            field="extends",
        )
    parent_path = path.parent / parent
    try:
        parent_path = parent_path.resolve()
        mode: int | None = os.stat(parent_path).st_mode
    except (OSError, ValueError):  # missing, a name too long for the file system, a NUL byte
        mode = None
    if mode is None and (bundled := bundled_parent(parent)) is not None:
        # A file outside the clone that extends "default.toml" (or another bundled
        # hypothesis by its bare name) with no such file beside it: the bundled one.
        parent_path, mode = bundled.resolve(), os.stat(bundled).st_mode
    if mode is None:
        raise HypothesisError(
            one_line(f"extends {parent!r}, which does not exist ({parent_path})"),
            file=file,
            field="extends",
        )
    if not stat.S_ISREG(mode):
        raise HypothesisError(
            one_line(f"extends {parent!r}, which is not a regular file ({parent_path})"),
            file=file,
            field="extends",
        )
    base = _read_toml(parent_path, (*seen, path), sources)
    base.pop("name", None)
    base.pop("description", None)
    return _merge(base, raw)


def _hint(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _explain(err: Mapping[str, Any], raw: dict[str, Any]) -> tuple[str, str]:  # noqa: PLR0911 (one return per kind of validation error)
    """Turn one pydantic error into (dotted location, message) with hints."""
    loc = [str(p) for p in err["loc"] if not str(p).endswith("Prior")]
    # pydantic puts the union tag into the location; drop it.
    loc = [p for p in loc if p not in DISTRIBUTIONS]
    where = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        parent_keys: list[str] = []
        node: Any = raw
        for part in loc[:-1]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if loc[:1] == ["priors"] and len(loc) == 2:
            parent_keys = list(Priors.model_fields)
            return where, f"unknown prior '{loc[-1]}'{_hint(loc[-1], parent_keys)}"
        if loc[:1] == ["priors"] and len(loc) == 3 and isinstance(node, dict):
            dist = DISTRIBUTIONS.get(node.get("distribution", ""))
            names = [k for k in dist.model_fields if k != "distribution"] if dist else []
            return where, (
                f"unknown parameter '{loc[-1]}' for {node.get('distribution')}"
                f"{_hint(loc[-1], names)}; it takes {', '.join(names)}"
            )
        sections: dict[str, type[BaseModel]] = {
            "": Hypothesis,
            "precision": Precision,
            "hardware": Hardware,
            "scaling_law": ScalingLaw,
            "constants": Constants,
            "sampler": Sampler,
            "evidence": Evidence,
        }
        section = sections.get(".".join(loc[:-1]))
        if loc[:1] == ["model_priors"] and len(loc) == 3:
            section = ModelPriors
        names = list(section.model_fields) if section else []
        return where, f"unknown key '{loc[-1]}'{_hint(loc[-1], names)}"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        return f"{where}.distribution", (
            f"unknown distribution '{tag}'{_hint(str(tag), list(DISTRIBUTIONS))}; "
            f"known: {', '.join(DISTRIBUTIONS)}"
        )
    if kind == "union_tag_not_found":
        return where, "a prior needs a 'distribution' key"
    if kind == "missing":
        return where, "required but missing"
    if kind == "value_error":
        return where, err["msg"].removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict | list):
        return where, f"{err['msg']} (got {err['input']!r})"
    return where, err["msg"]


def validate(raw: dict[str, Any], *, source: str = "<hypothesis>") -> Hypothesis:
    """Validate a raw mapping into a :class:`Hypothesis`, or raise one clear error."""
    try:
        return Hypothesis.model_validate(raw)
    except ValidationError as exc:
        # Report the most telling problem first: an unknown name explains the
        # "missing" errors that follow from it.
        order = {"extra_forbidden": 0, "union_tag_invalid": 1, "union_tag_not_found": 2}
        errors = sorted(exc.errors(), key=lambda e: order.get(e["type"], 3))
        where, message = _explain(errors[0], raw)
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise HypothesisError(
            one_line(message), file=one_line(source), field=one_line(where) or None
        ) from None


def _parse_value(text: str) -> Any:
    """A TOML value (number, boolean, string, array, date); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a raw hypothesis mapping.

    ``KEY`` is a dotted path (``sampler.draws``, ``priors.mbu.alpha``); a path
    that starts with a prior's name is taken under ``priors`` (``mbu.alpha``).
    Setting ``NAME.distribution`` starts that prior afresh. The result is
    validated like a file, so a broken override gets the same one-line error.
    """
    out = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise HypothesisError(
                "expected KEY=VALUE, e.g. mbu.alpha=4", file="--set", field=one_line(item)
            )
        parts = key.split(".")
        if parts[0] in Priors.model_fields:
            parts = ["priors", *parts]
        elif parts[0] not in Hypothesis.model_fields:
            names = list(Hypothesis.model_fields) + list(Priors.model_fields)
            raise HypothesisError(
                one_line(f"unknown key '{parts[0]}'{_hint(parts[0], names)}"),
                file="--set",
                field=one_line(key),
            )
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise HypothesisError(
                    one_line(f"'{part}' is not a table"), file="--set", field=one_line(key)
                )
            node = node.setdefault(part, {})
        if parts[-1] == "distribution":
            node.clear()
        try:
            node[parts[-1]] = _parse_value(value.strip())
        except RecursionError:
            raise HypothesisError("nested too deeply", file="--set", field=one_line(key)) from None
    return out


def load_hypothesis(path: str | Path, overrides: list[str] | None = None) -> Hypothesis:
    """Read, merge (``extends``), override (``--set``) and validate a hypothesis file."""
    path = Path(path)
    try:
        resolved = path.resolve()
    except ValueError:  # a NUL byte
        raise HypothesisError("no such hypothesis file", file=one_line(str(path))) from None
    raw = _read_toml(resolved, shown=str(path))
    raw.setdefault("name", path.stem)
    if overrides:
        raw = apply_overrides(raw, overrides)
        try:
            return Hypothesis.model_validate(raw)
        except ValidationError:
            return validate(raw, source=f"{path} with --set {' '.join(overrides)}")
    return validate(raw, source=str(path))


def hypothesis_files(path: str | Path) -> tuple[Path, ...]:
    """The files hypothesis ``path`` is made of: itself, then its ``extends`` chain.

    Resolved paths; a command keeps its output out of their folders. Raises
    :class:`~llmsize.exceptions.HypothesisError` like :func:`load_hypothesis`.
    """
    path = Path(path)
    try:
        resolved = path.resolve()
    except ValueError:  # a NUL byte
        raise HypothesisError("no such hypothesis file", file=one_line(str(path))) from None
    sources: list[Path] = []
    _read_toml(resolved, sources=sources, shown=str(path))
    return tuple(sources)
