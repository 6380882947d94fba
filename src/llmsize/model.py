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

from typing import Literal

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from llmsize import forward
from llmsize.config import ConstantPrior, Hypothesis, TruncatedNormalPrior
from llmsize.design import Design

Predictive = Literal["prior", "posterior"] | None


def prior_variable(name: str, spec, *, dims=None, size: int | None = None):
    """Create the PyMC variable ``name`` from a validated prior.

    A ``Constant`` prior gives a fixed tensor (broadcast to ``size``), so a
    hypothesis can pin a quantity without changing the model's code.
    """
    if isinstance(spec, ConstantPrior):
        value = np.full(size, spec.value) if size is not None else spec.value
        # Recorded as a deterministic so reports and summaries treat a pinned
        # quantity like any other (a constant with no spread).
        return pm.Deterministic(
            name, pt.as_tensor_variable(np.asarray(value, dtype=float)), dims=dims
        )
    params = spec.model_dump(exclude={"distribution"})
    if isinstance(spec, TruncatedNormalPrior):
        params = {k: v for k, v in params.items() if v is not None}
    dist = getattr(pm, spec.distribution)
    return dist(name, **params, dims=dims)


def unknown_model_variable(name: str, hyp: Hypothesis, models: list[str]):
    """Create a per-model quantity of the models of unknown size, each model's
    prior taken from ``[model_priors]`` where a pattern matches it, else from
    ``[priors]``. The hypothesis validator ensures one distribution for all."""
    specs = [hyp.prior_for(name, m) for m in models]
    first = specs[0]
    if all(s == first for s in specs):
        return prior_variable(name, first, dims="unknown_model", size=len(models))
    if isinstance(first, ConstantPrior):
        value = np.array([s.value for s in specs], dtype=float)
        return pm.Deterministic(name, pt.as_tensor_variable(value), dims="unknown_model")
    params = {
        k: np.array([getattr(s, k) for s in specs], dtype=float)
        for k, v in first.model_dump(exclude={"distribution"}).items()
        if v is not None
    }
    return getattr(pm, first.distribution)(name, **params, dims="unknown_model")


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
    pr = hyp.priors
    const = hyp.constants
    n_e, n_u = design.n_epochs, len(design.unknown)
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
        "mmlu_obs": np.arange(len(design.mmlu_score)),
        "hidden_obs": [design.unknown[i] for i in design.hidden_unknown],
    }
    with pm.Model(coords=coords) as model:
        # --- sizes and training tokens -------------------------------------
        total = pt.as_tensor_variable(np.nan_to_num(design.known_total, nan=1.0))
        active = pt.as_tensor_variable(np.nan_to_num(design.known_active, nan=1.0))
        if n_u:
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

        # --- serving setup of each epoch -----------------------------------
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
        z_gpu = pm.Normal("gpu_hour_z", 0.0, 1.0, dims="hardware")
        gpu_hour = pm.Deterministic(
            "usd_per_gpu_hour",
            pt.exp(design.log_gpu_hour_mu + hyp.hardware.usd_per_gpu_hour_sigma * z_gpu),
            dims="hardware",
        )
        mk_out_mu = prior_variable("log_markup_out_mu", pr.log_markup_out_mu)
        mk_in_mu = prior_variable("log_markup_in_mu", pr.log_markup_in_mu)
        prov_sigma = prior_variable("provider_sigma", pr.provider_sigma)
        z_out = pm.Normal("provider_out_z", 0.0, 1.0, dims="provider")
        z_in = pm.Normal("provider_in_z", 0.0, 1.0, dims="provider")
        mk_out = mk_out_mu + prov_sigma * z_out
        mk_in = mk_in_mu + prov_sigma * z_in
        model_sigma = prior_variable("model_markup_sigma", pr.model_markup_sigma)
        z_model = pm.Normal("model_markup_z", 0.0, 1.0, dims="model")
        model_offset = (model_sigma * z_model)[design.epoch_model][:, None]
        price_sigma = prior_variable("price_sigma", pr.price_sigma)

        # --- forward model on the (epoch, component) grid -------------------
        em = design.epoch_model
        n_tot = total[em][:, None]
        n_act = active[em][:, None]
        b = batch_ek
        bits = design.component_bits[None, :]
        flops = design.component_flops()[None, :]
        bw = design.component_array("hbm_bytes_per_s")[None, :]
        mem = design.component_array("memory_bytes")[None, :]
        g_hour = gpu_hour[design.component_hardware][None, :]
        n_gpus = forward.gpus_per_replica(n_tot, bits, mem, const.weight_memory_fraction)
        kv = forward.kv_bytes_per_token_estimate(n_act, coef=const.kv_bytes_coef)
        t_step = forward.decode_step_time(
            n_tot,
            n_act,
            bits,
            b,
            context_tokens=const.context_tokens,
            kv_bytes_per_token=kv,
            n_gpus=n_gpus,
            hbm_bytes_per_s=bw,
            flops=flops,
            mbu=mbu,
            mfu=const.mfu_decode,
        )
        log_cost_out = pt.log(
            forward.output_cost_per_mtok(t_step, b, n_gpus=n_gpus, usd_per_gpu_hour=g_hour)
        )
        log_cost_in = pt.log(
            forward.input_cost_per_mtok(
                n_act, flops=flops, mfu=mfu_prefill, usd_per_gpu_hour=g_hour
            )
        )
        mu_out = log_cost_out + mk_out[design.epoch_provider][:, None] + model_offset
        mu_in = log_cost_in + mk_in[design.epoch_provider][:, None] + model_offset
        # Observations are data containers, so a compiled model can be refitted
        # to other (e.g. simulated) observations without compiling again.
        obs_out = pm.Data("obs_log_price_out", design.log_price_out, dims="epoch")
        obs_in = pm.Data("obs_log_price_in", design.log_price_in, dims="epoch")
        price_mask = pm.Data("price_mask", design.price_mask, dims="epoch")
        loglik = price_mask[:, None] * (
            _normal_logp(obs_out[:, None], mu_out, price_sigma)
            + _normal_logp(obs_in[:, None], mu_in, price_sigma)
        )

        speed_bias = speed_sigma = overhead = ttft_sigma = None
        log_speed_mu = log_ttft_mu = None
        if len(design.speed_epoch):
            speed_bias = prior_variable("speed_log_bias", pr.speed_log_bias)
            speed_sigma = prior_variable("speed_sigma", pr.speed_sigma)
            log_speed_mu = -pt.log(t_step[design.speed_epoch]) + speed_bias
            obs_speed = pm.Data("obs_log_speed", design.log_speed, dims="speed_obs")
            ll_speed = _normal_logp(obs_speed[:, None], log_speed_mu, speed_sigma)
            loglik = pt.inc_subtensor(loglik[design.speed_epoch], ll_speed)
        if len(design.ttft_epoch):
            overhead = prior_variable(
                "ttft_overhead_s", pr.ttft_overhead_s, dims="provider", size=len(design.providers)
            )
            ttft_sigma = prior_variable("ttft_sigma", pr.ttft_sigma)
            te = design.ttft_epoch
            t_pre = forward.prefill_time(
                n_act[te], const.ttft_input_tokens, n_gpus=n_gpus[te], flops=flops, mfu=mfu_prefill
            )
            ov = overhead[design.epoch_provider[te]][:, None] if overhead.ndim else overhead
            log_ttft_mu = pt.log(ov + t_pre + t_step[te])
            obs_ttft = pm.Data("obs_log_ttft", design.log_ttft, dims="ttft_obs")
            ll_ttft = _normal_logp(obs_ttft[:, None], log_ttft_mu, ttft_sigma)
            loglik = pt.inc_subtensor(loglik[te], ll_ttft)

        joint = design.log_weights + loglik
        epoch_loglik = pm.math.logsumexp(joint, axis=1)
        pm.Potential("serving_loglik", epoch_loglik.sum())
        if pointwise:
            pm.Deterministic("loglik_serving", epoch_loglik, dims="epoch")
        post = pt.special.softmax(joint, axis=1)
        # The batch of each epoch, averaged (in logs) over the components by their
        # posterior probability in this draw.
        pm.Deterministic("batch", pt.exp((post * pt.log(batch_ek)).sum(axis=1)), dims="epoch")
        n_bits = len(hyp.precision.bits)
        pm.Deterministic(
            "p_bits", post.reshape((n_e, n_bits, 2)).sum(axis=2), dims=("epoch", "bits")
        )
        pm.Deterministic(
            "p_hardware", post.reshape((n_e, n_bits, 2)).sum(axis=1), dims=("epoch", "hardware")
        )

        # --- quality against training compute -------------------------------
        if len(design.mmlu_score):
            slope = prior_variable("mmlu_slope", pr.mmlu_slope)
            midpoint = prior_variable("mmlu_midpoint", pr.mmlu_midpoint)
            known_c = np.nan_to_num(design.mmlu_known_log10_compute, nan=0.0)
            latent = np.isnan(design.mmlu_known_log10_compute)
            log10c = pt.as_tensor_variable(known_c)
            if latent.any():
                u_index = {pos: i for i, pos in enumerate(design.unknown_pos)}
                rows = np.flatnonzero(latent)
                ui = np.array([u_index[design.mmlu_model[r]] for r in rows])
                c_u = pt.log10(forward.training_compute(frac * n_unknown, tokens))
                log10c = pt.set_subtensor(log10c[rows], c_u[ui])
            mmlu_mu = forward.mmlu_from_compute(log10c, slope, midpoint, xp=pt)
            obs_mmlu = pm.Data("obs_mmlu", design.mmlu_score, dims="mmlu_obs")
            pm.Normal(
                "mmlu", mu=mmlu_mu, sigma=const.mmlu_sigma, observed=obs_mmlu, dims="mmlu_obs"
            )
            if pointwise:
                pm.Deterministic(
                    "loglik_mmlu",
                    _normal_logp(obs_mmlu, mmlu_mu, const.mmlu_sigma),
                    dims="mmlu_obs",
                )

        # --- measured hidden size (optional evidence) -------------------------
        if hyp.evidence.hidden_size and n_u and len(design.hidden_size):
            ev = hyp.evidence
            n_h = len(design.hidden_size)
            log_depth = prior_variable("log_depth", pr.log_depth, dims="hidden_obs", size=n_h)
            log_coef = prior_variable(
                "log_params_per_layer_d2", pr.log_params_per_layer_d2, dims="hidden_obs", size=n_h
            )
            d = design.hidden_size
            # Active parameters = coef * depth * d^2 + embedding and unembedding.
            n_act_h = (frac * n_unknown)[design.hidden_unknown]
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

        if predictive is not None:
            probs = pt.exp(design.log_weights) if predictive == "prior" else post
            probs = probs / probs.sum(axis=1, keepdims=True)
            comp = pm.Categorical("serving_component", p=probs, dims="epoch")
            rows = pt.arange(n_e)
            pm.LogNormal("output_price", mu=mu_out[rows, comp], sigma=price_sigma, dims="epoch")
            pm.LogNormal("input_price", mu=mu_in[rows, comp], sigma=price_sigma, dims="epoch")
            if log_speed_mu is not None:
                sc = comp[design.speed_epoch]
                pm.LogNormal(
                    "output_speed",
                    mu=log_speed_mu[pt.arange(len(design.speed_epoch)), sc],
                    sigma=speed_sigma,
                    dims="speed_obs",
                )
            if log_ttft_mu is not None:
                tc = comp[design.ttft_epoch]
                pm.LogNormal(
                    "ttft",
                    mu=log_ttft_mu[pt.arange(len(design.ttft_epoch)), tc],
                    sigma=ttft_sigma,
                    dims="ttft_obs",
                )
    return model


#: Observed quantities and, for each, the predictive variable and design field.
OBSERVATIONS = {
    "output_price": "log_price_out",
    "input_price": "log_price_in",
    "output_speed": "log_speed",
    "ttft": "log_ttft",
}
