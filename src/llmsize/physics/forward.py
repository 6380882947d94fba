"""Physical serving-cost and scaling-law forward model.

Pure functions, no PyMC. Every function uses only arithmetic operators, so it
accepts floats, NumPy arrays or PyTensor tensors alike; the few that need an
elementwise ``exp``/``log`` take the array namespace as ``xp`` (``numpy`` by
default, ``pytensor.tensor`` inside the PyMC model). The equations follow
``methods.md`` of the project's reference notes (sections B-E).

Units: parameters and tokens are plain counts, times are seconds, bandwidth is
bytes/s, throughput is FLOP/s, prices are USD per GPU-hour in and USD per
million tokens out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Extra bits per weight for group-wise 4-bit formats: one fp16 scale per group
#: of 128 weights (AWQ, GPTQ with g = 128), so 4-bit weights cost 4.125 bits.
GROUP_SCALE_BITS = 16.0 / 128.0

#: Sharpness of the smooth maximum of memory time and compute time. With 8 the
#: smooth maximum exceeds the true maximum by at most 2**(1/8) - 1 = 9% (when the
#: two are equal) and by under 0.1% once one is twice the other.
SMOOTH_MAX_SHARPNESS = 8.0


@dataclass(frozen=True)
class Accelerator:
    """Peak figures of one accelerator.

    Parameters
    ----------
    name : str
        Key as in ``data/hardware.csv``.
    hbm_bytes_per_s : float
        Peak memory bandwidth.
    bf16_flops : float
        Dense bf16 tensor throughput.
    fp8_flops : float or None
        Dense fp8 (or int8) tensor throughput, where the chip has it.
    memory_bytes : float
        Memory per accelerator.
    """

    name: str
    hbm_bytes_per_s: float
    bf16_flops: float
    fp8_flops: float | None
    memory_bytes: float

    def flops_at(self, bits: float) -> float:
        """Dense throughput for weights served at ``bits``.

        8-bit serving is taken as W8A8 (fp8 or int8 math) where the chip has
        it; 4-bit formats are weight-only and compute in bf16 (methods E2).
        """
        if bits == 8 and self.fp8_flops:
            return self.fp8_flops
        return self.bf16_flops


def bytes_per_weight(bits):
    """Bytes per stored weight, with the group-scale overhead below 8 bits (E1).

    ``bits`` is a number or NumPy array (serving precision is a discrete choice,
    never a tensor).
    """
    bits = np.asarray(bits, dtype=float)
    return (bits + np.where(bits < 8, GROUP_SCALE_BITS, 0.0)) / 8.0


def weights_touched(total, active, batch):
    """Parameters read from memory in one decode step of ``batch`` sequences.

    A dense model (active == total) reads every weight. A mixture of experts
    reads ``active`` for one sequence and approaches ``total`` as the batch
    grows, since each sequence routes to its own experts (methods D3, with all
    parameters treated as expert parameters):
    ``total * (1 - (1 - active/total) ** batch)``.
    """
    frac = active / total
    return total * (1.0 - (1.0 - frac) ** batch)


def kv_bytes_per_token_estimate(active, kv_bits=16.0, coef=46_000.0):
    """KV-cache bytes per token of context, from the active parameter count.

    A grouped-query-attention fit ``coef * sqrt(active / 1e9)`` at 16 bits,
    through Llama-3-8B (128 KiB per token, methods D2) and close to Llama-3-70B
    (320 KiB). Older multi-head models (Llama-2-13B, about 0.8 MB) need more.
    """
    return coef * (active / 1e9) ** 0.5 * (kv_bits / 16.0)


def smooth_max(a, b, sharpness=SMOOTH_MAX_SHARPNESS):
    """Differentiable maximum of two positive quantities (a power mean).

    For a sharpness that is a power of two the root is taken as repeated square
    roots (the same number; in the model's gradient, square roots are several
    times cheaper than a general power).
    """
    total = a**sharpness + b**sharpness
    halvings = math.log2(sharpness)
    if halvings.is_integer() and halvings > 0:
        for _ in range(int(halvings)):
            total = total**0.5
        return total
    return total ** (1.0 / sharpness)


def gpus_per_replica(total, bits, memory_bytes, weight_memory_fraction=0.5):
    """Accelerators one replica needs so its weights fill ``weight_memory_fraction``.

    The rest of the memory holds the KV cache. Continuous, and at least one:
    a smooth maximum of 1 and ``weight bytes / (memory * fraction)``.
    """
    need = bytes_per_weight(bits) * total / (memory_bytes * weight_memory_fraction)
    return smooth_max(need, 1.0)


def tensor_parallel_width(n_replica, gpus_per_node, sharpness=SMOOTH_MAX_SHARPNESS):
    """Accelerators that split each decode step: the replica's, up to one node.

    Tensor parallelism needs the all-reduce bandwidth of one node's NVLink
    domain (8 GPUs in an HGX/DGX A100 or H100 server), so a replica larger than a
    node runs its extra nodes as pipeline stages. A token then passes every
    stage in turn, each streaming its share of the weights on ``gpus_per_node``
    chips: its step takes as long as the whole model streamed by one node, while
    the stages in flight serve other sequences. Per-user speed thus falls as
    1 / size above one node's memory; the cost per token (GPU-seconds per token)
    is that of a ``width``-GPU replica, since the stages add throughput and
    accelerators in equal measure.

    A smooth minimum, ``1 / smooth_max(1 / n_replica, 1 / gpus_per_node)``.
    """
    return 1.0 / smooth_max(1.0 / n_replica, 1.0 / gpus_per_node, sharpness)


def pipeline_share(n_replica, width):
    """Share of a replica's sequences in one decode step: ``width / n_replica``.

    A replica of ``n_replica`` accelerators split ``width`` ways per step runs
    ``n_replica / width`` pipeline stages, each with a batch of its own in
    flight, so the memory's KV cache is shared among that many batches (1 for
    a replica within one node).
    """
    return width / n_replica


def kv_batch_limit(n_gpus, memory_bytes, total, bits, *, context_tokens, kv_bytes_per_token):
    """Most sequences a replica can hold: the memory its weights leave, over one
    sequence's KV cache (``context_tokens`` tokens of ``kv_bytes_per_token``).
    """
    free = n_gpus * memory_bytes - bytes_per_weight(bits) * total
    return free / (context_tokens * kv_bytes_per_token)


def capped_batch(batch, limit, sharpness=SMOOTH_MAX_SHARPNESS):
    """The decode batch a replica can run: a smooth minimum of the batch it would
    take and the most its memory holds (:func:`kv_batch_limit`).

    ``1 / smooth_max(1 / batch, 1 / limit)``: below the smaller of the two by at
    most 9% where they are equal, and by under 0.1% once one is twice the other.
    """
    return 1.0 / smooth_max(1.0 / batch, 1.0 / limit, sharpness)


def decode_step_time(  # noqa: PLR0913 (one keyword per physical input of the roofline)
    total,
    active,
    bits,
    batch,
    *,
    context_tokens,
    kv_bytes_per_token,
    n_gpus,
    hbm_bytes_per_s,
    flops,
    mbu,
    mfu,
    overhead_s=0.0,
    touched=None,
):
    """Seconds for one decode step of a replica serving ``batch`` sequences (D3).

    ``t_mem`` streams the touched weights once and every sequence's KV cache;
    ``t_comp`` is ``2 * active`` FLOP per token for every sequence. The step
    takes the (smooth) larger of the two plus a fixed overhead. ``touched`` is
    :func:`weights_touched` of ``total, active, batch`` when the caller already
    has it.
    """
    if touched is None:
        touched = weights_touched(total, active, batch)
    bytes_step = bytes_per_weight(bits) * touched + (batch * context_tokens * kv_bytes_per_token)
    t_mem = bytes_step / (n_gpus * hbm_bytes_per_s * mbu)
    t_comp = batch * 2.0 * active / (n_gpus * flops * mfu)
    return smooth_max(t_mem, t_comp) + overhead_s


def per_user_tokens_per_s(step_time):
    """Output tokens per second one caller sees: one token per decode step."""
    return 1.0 / step_time


def prefill_time(active, input_tokens, *, n_gpus, flops, mfu):
    """Seconds to process ``input_tokens`` of prompt (D4, attention term dropped)."""
    return 2.0 * active * input_tokens / (n_gpus * flops * mfu)


def output_cost_per_mtok(step_time, batch, *, n_gpus, usd_per_gpu_hour):
    """USD cost of one million output tokens: replica-seconds per token (D5)."""
    return n_gpus * usd_per_gpu_hour / 3600.0 * step_time / batch * 1e6


def input_cost_per_mtok(active, *, flops, mfu, usd_per_gpu_hour):
    """USD cost of one million prompt tokens, prefill being compute-bound (D5).

    The replica size cancels: ``n_gpus`` chips finish ``n_gpus`` times faster.
    """
    return usd_per_gpu_hour / 3600.0 * 2.0 * active / (flops * mfu) * 1e6


def training_compute(active, tokens):
    """Training FLOP, ``6 * N_active * D`` (C1)."""
    return 6.0 * active * tokens


def chinchilla_optimal_tokens(params, *, E, A, B, alpha, beta):  # noqa: N803
    """Compute-optimal training tokens for a model of ``params`` parameters (C4).

    Inverts ``N* = G * (C/6) ** a`` with ``G = (alpha A / (beta B)) ** (1/(alpha+beta))``
    and ``a = beta / (alpha + beta)``, then ``D* = (C/6) / N*``. ``E`` (the
    irreducible loss) does not enter the allocation; it is accepted so a whole
    fit can be passed as keywords.
    """
    del E
    a = beta / (alpha + beta)
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    c_over_6 = (params / g) ** (1.0 / a)
    return c_over_6 / params


def chinchilla_loss(params, tokens, *, E, A, B, alpha, beta):  # noqa: N803
    """Parametric loss ``E + A / N**alpha + B / D**beta`` (C3)."""
    return E + A / params**alpha + B / tokens**beta


def mmlu_from_compute(log10_compute, slope, midpoint, *, floor=25.0, ceiling=100.0, xp=np):
    """MMLU (percent) as a saturating sigmoid of log10 training FLOP (C8).

    ``floor`` is chance on four-way multiple choice.
    """
    return floor + (ceiling - floor) / (1.0 + xp.exp(-slope * (log10_compute - midpoint)))


def serving_prediction(  # noqa: PLR0913 (one keyword per physical input of the roofline)
    total,
    active,
    bits,
    batch,
    accelerator: Accelerator,
    *,
    usd_per_gpu_hour,
    mbu,
    mfu_decode,
    mfu_prefill,
    context_tokens,
    weight_memory_fraction=0.5,
    gpus_per_node=8.0,
    kv_coef=46_000.0,
    kv_bytes_per_token=None,
    kv_memory_cap=True,
):
    """Cost per 1M input and output tokens and per-user speed of one deployment.

    Convenience wrapper over the functions above for scalar or NumPy inputs.
    ``kv_bytes_per_token`` defaults to :func:`kv_bytes_per_token_estimate` with
    ``kv_coef``. The batch is capped by what the replica's memory holds
    (:func:`capped_batch`) unless ``kv_memory_cap`` is false; ``batch`` in the
    result is the batch that runs.
    Each decode step is split across :func:`tensor_parallel_width` accelerators
    (the replica's, at most one node's ``gpus_per_node``).

    Returns
    -------
    dict
        ``input_usd_per_mtok``, ``output_usd_per_mtok``, ``output_tokens_per_s``,
        ``n_gpus`` (the replica's accelerators), ``tp_width`` (those splitting a
        step) and ``step_time_s``.
    """
    flops = accelerator.flops_at(bits)
    n_gpus = gpus_per_replica(total, bits, accelerator.memory_bytes, weight_memory_fraction)
    width = tensor_parallel_width(n_gpus, gpus_per_node)
    kv = kv_bytes_per_token
    if kv is None:
        kv = kv_bytes_per_token_estimate(active, coef=kv_coef)
    limit = kv_batch_limit(
        n_gpus,
        accelerator.memory_bytes,
        total,
        bits,
        context_tokens=context_tokens,
        kv_bytes_per_token=kv,
    ) * pipeline_share(n_gpus, width)
    if kv_memory_cap:
        batch = capped_batch(batch, limit)
    t_step = decode_step_time(
        total,
        active,
        bits,
        batch,
        context_tokens=context_tokens,
        kv_bytes_per_token=kv,
        n_gpus=width,
        hbm_bytes_per_s=accelerator.hbm_bytes_per_s,
        flops=flops,
        mbu=mbu,
        mfu=mfu_decode,
    )
    return {
        "input_usd_per_mtok": input_cost_per_mtok(
            active, flops=flops, mfu=mfu_prefill, usd_per_gpu_hour=usd_per_gpu_hour
        ),
        "output_usd_per_mtok": output_cost_per_mtok(
            t_step, batch, n_gpus=width, usd_per_gpu_hour=usd_per_gpu_hour
        ),
        "output_tokens_per_s": per_user_tokens_per_s(t_step),
        "n_gpus": n_gpus,
        "tp_width": width,
        "step_time_s": t_step,
        "batch": batch,
    }
