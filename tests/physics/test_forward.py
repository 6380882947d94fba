"""The physical forward model against hand calculations (methods.md B-E).

The arithmetic of every expected value is written out so a reader can check it
with a pocket calculator. Tolerances reflect the rounding of the reference
table, not slack in the code: the code is evaluated at exact inputs.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from llmsize.physics import forward

H100 = forward.Accelerator(
    name="H100-SXM",
    hbm_bytes_per_s=3.35e12,
    bf16_flops=989e12,
    fp8_flops=1979e12,
    memory_bytes=80e9,
)
A100 = forward.Accelerator(
    name="A100-80GB", hbm_bytes_per_s=2.039e12, bf16_flops=312e12, fp8_flops=None, memory_bytes=80e9
)

#: Besiroglu et al. 2024 refit of the Chinchilla loss (methods C3/C4).
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}

#: Llama-3-8B worked example (methods D6): 8e9 params, bf16, 1x H100, MBU 0.75,
#: MFU 0.7, $2/h, context S = 2048, KV 128 KiB per token.
N8B = 8e9
KV_8B = 131072.0
S = 2048


def d6_step(batch, context_tokens=S, kv=KV_8B):
    return forward.decode_step_time(
        N8B,
        N8B,
        16,
        batch,
        context_tokens=context_tokens,
        kv_bytes_per_token=kv,
        n_gpus=1,
        hbm_bytes_per_s=H100.hbm_bytes_per_s,
        flops=H100.bf16_flops,
        mbu=0.75,
        mfu=0.7,
    )


# --- precision ------------------------------------------------------------------


def test_bytes_per_weight():
    # 16 bits = 2 bytes, 8 bits = 1 byte, no group scales at 8 bits and above.
    assert forward.bytes_per_weight(16) == 2.0
    assert forward.bytes_per_weight(8) == 1.0
    # 4-bit weights carry one fp16 scale per group of 128: 4 + 16/128 = 4.125 bits
    # = 0.515625 bytes.
    assert forward.bytes_per_weight(4) * 8 == pytest.approx(4.125, rel=1e-12)
    np.testing.assert_allclose(forward.bytes_per_weight([16, 8, 4]), [2.0, 1.0, 0.515625])


def test_flops_at_uses_fp8_only_where_available():
    assert H100.flops_at(8) == 1979e12
    assert H100.flops_at(16) == H100.flops_at(4) == 989e12  # 4-bit is weight-only, bf16 math
    assert A100.flops_at(8) == 312e12  # Ampere: no fp8


# --- decode: the D6 worked example ------------------------------------------------


def test_8b_bf16_h100_batch1_speed_without_kv():
    # Weights: 8e9 * 2 B = 16e9 B; bandwidth 3.35e12 * 0.75 = 2.5125e12 B/s
    # -> t_mem = 16e9 / 2.5125e12 = 6.368 ms -> 157.0 tok/s.
    # Compute: 2 * 8e9 / (989e12 * 0.7) = 0.0231 ms, ~280x smaller: the smooth
    # maximum adds (1/280)**8 / 8 ~ 1e-20 relative.
    t = d6_step(1, context_tokens=0.0)
    assert t == pytest.approx(16e9 / 2.5125e12, rel=1e-9)
    assert 150 <= forward.per_user_tokens_per_s(t) <= 157.5


def test_8b_bf16_h100_batch1_matches_d6():
    # KV at S = 2048: 2048 * 131072 B = 0.268e9 B (D6: "0.3 GB").
    # t_mem = (16e9 + 0.268e9) / 2.5125e12 = 6.475 ms (D6: 6.5 ms) -> 154.4 tok/s (D6: 154).
    # Cost: 1 GPU * $2/h / 3600 s/h * 6.475e-3 s/token * 1e6 tokens = $3.597 (D6: $3.61,
    # which is 6.5 ms rounded: 2/3600*6.5e-3*1e6 = 3.611).
    t = d6_step(1)
    expected_t = (16e9 + 2048 * 131072) / (3.35e12 * 0.75)
    assert t == pytest.approx(expected_t, rel=1e-9)
    assert t * 1e3 == pytest.approx(6.5, abs=0.05)  # D6 rounds to 0.1 ms
    speed = forward.per_user_tokens_per_s(t)
    assert speed == pytest.approx(154, abs=1)  # D6 rounds to whole tok/s
    assert 150 <= speed <= 157
    cost = forward.output_cost_per_mtok(t, 1, n_gpus=1, usd_per_gpu_hour=2.0)
    assert cost == pytest.approx(2.0 / 3600 * expected_t * 1e6, rel=1e-12)
    # 1% covers D6's rounding of t_step to 6.5 ms (0.4%).
    assert cost == pytest.approx(3.61, rel=0.01)


def test_8b_bf16_h100_batch32_matches_d6():
    # Bytes: weights 16e9 + KV 32 * 2048 * 131072 = 8.590e9 -> 24.59e9 B
    # t_mem = 24.59e9 / 2.5125e12 = 9.787 ms (D6: 9.8 ms) -> 102.2 tok/s (D6: 102).
    # t_comp = 32 * 2 * 8e9 / (989e12 * 0.7) = 0.740 ms, 13x smaller: negligible.
    # Cost: $2/h / 3600 * 9.787e-3 s / 32 tokens * 1e6 = $0.1699 (D6: $0.17).
    t = d6_step(32)
    expected_t = (16e9 + 32 * 2048 * 131072) / 2.5125e12
    assert t == pytest.approx(expected_t, rel=1e-6)
    assert forward.per_user_tokens_per_s(t) == pytest.approx(102, abs=1)
    cost = forward.output_cost_per_mtok(t, 32, n_gpus=1, usd_per_gpu_hour=2.0)
    assert cost == pytest.approx(2.0 / 3600 * expected_t / 32 * 1e6, rel=1e-6)
    assert cost == pytest.approx(0.17, abs=0.005)  # D6 gives two decimals


def test_decode_becomes_compute_bound_at_huge_batch():
    # Without KV traffic, at batch 4096: t_mem = 16e9 / 2.5125e12 = 6.37 ms and
    # t_comp = 4096 * 2 * 8e9 / (989e12 * 0.7) = 94.7 ms: compute dominates and the
    # smooth maximum is within (6.37/94.7)**8/8 ~ 5e-11 of it.
    t = d6_step(4096, context_tokens=0.0)
    assert t == pytest.approx(4096 * 2 * 8e9 / (989e12 * 0.7), rel=1e-6)


def test_smooth_max_bounds():
    # Equal inputs: 2 ** (1/8) = 1.0905, the documented worst case (+9%).
    assert forward.smooth_max(1.0, 1.0) == pytest.approx(2 ** (1 / 8), rel=1e-12)
    # One twice the other: (1 + 2**-8) ** (1/8) - 1 = 0.049%, under 0.1%.
    assert forward.smooth_max(2.0, 1.0) == pytest.approx(2.0, rel=1e-3)
    assert forward.smooth_max(2.0, 1.0) > 2.0


@pytest.mark.parametrize("sharpness", [2.0, 3.0, 8.0])
def test_smooth_max_is_the_power_mean(sharpness):
    """Powers of two take the root as repeated square roots; any sharpness gives the
    power mean."""
    a, b = np.array([0.3, 1.0, 2.5, 1e-3]), np.array([0.2, 1.0, 0.1, 5e-3])
    expected = (a**sharpness + b**sharpness) ** (1 / sharpness)
    np.testing.assert_allclose(forward.smooth_max(a, b, sharpness), expected, rtol=1e-14)


def test_decode_overhead_is_added():
    assert d6_step(1) + 0.01 == pytest.approx(
        forward.decode_step_time(
            N8B,
            N8B,
            16,
            1,
            context_tokens=S,
            kv_bytes_per_token=KV_8B,
            n_gpus=1,
            hbm_bytes_per_s=3.35e12,
            flops=989e12,
            mbu=0.75,
            mfu=0.7,
            overhead_s=0.01,
        ),
        rel=1e-12,
    )


# --- mixture of experts -----------------------------------------------------------


def test_moe_weights_touched():
    total, active = 46.7e9, 12.9e9  # Mixtral 8x7B
    # batch 1: total * (1 - (1 - active/total)) = active exactly.
    assert forward.weights_touched(total, active, 1) == pytest.approx(active, rel=1e-12)
    # batch 1000: 1 - (1 - 0.276)**1000 = 1 - 1e-140: every weight is touched.
    assert forward.weights_touched(total, active, 1000) == pytest.approx(total, rel=1e-9)
    # In between it rises monotonically: batch 2 touches 12.9 + 12.9 * 0.724 = 22.2e9.
    assert forward.weights_touched(total, active, 2) == pytest.approx(
        12.9e9 + 12.9e9 * (1 - 12.9 / 46.7), rel=1e-12
    )
    batches = np.array([1, 2, 4, 8, 16, 32, 64])
    touched = forward.weights_touched(total, active, batches)
    assert np.all(np.diff(touched) > 0)
    assert np.all(touched <= total)


def test_dense_touches_every_weight_at_any_batch():
    for b in (1, 7, 128):
        assert forward.weights_touched(70e9, 70e9, b) == 70e9


# --- memory and replica size --------------------------------------------------------


def test_kv_estimate_through_llama3_8b():
    # 46000 * sqrt(8) = 130108 B, within 1% of Llama-3-8B's 128 KiB = 131072 B.
    assert forward.kv_bytes_per_token_estimate(8e9) == pytest.approx(131072, rel=0.01)
    # 8-bit KV halves it.
    assert forward.kv_bytes_per_token_estimate(8e9, kv_bits=8) == pytest.approx(
        forward.kv_bytes_per_token_estimate(8e9) / 2
    )


def test_gpus_per_replica():
    # 8B bf16 = 16e9 B, half of 80 GB = 40e9 B -> need 0.4 -> smooth max with 1:
    # (1 + 0.4**8) ** (1/8) = 1.00008.
    assert forward.gpus_per_replica(8e9, 16, 80e9) == pytest.approx(1.0, abs=1e-3)
    # 405B bf16 = 810e9 B / 40e9 B = 20.25 GPUs (1/20.25 ** 8 is negligible).
    assert forward.gpus_per_replica(405e9, 16, 80e9) == pytest.approx(20.25, rel=1e-6)
    # 4-bit: 405e9 * 0.515625 / 40e9 = 5.22 GPUs.
    assert forward.gpus_per_replica(405e9, 4, 80e9) == pytest.approx(
        405e9 * 0.515625 / 40e9, rel=1e-4
    )


# --- prefill and input cost -----------------------------------------------------------


def test_prefill_and_input_cost_by_hand():
    # 8B, 1e6 prompt tokens, bf16 H100 at MFU 0.5: 2 * 8e9 * 1e6 = 1.6e16 FLOP
    # / (989e12 * 0.5) = 32.36 s -> $2/h * 32.36 s / 3600 = $0.01798 per 1M tokens.
    t = forward.prefill_time(8e9, 1e6, n_gpus=1, flops=989e12, mfu=0.5)
    assert t == pytest.approx(1.6e16 / 4.945e14, rel=1e-9)
    cost = forward.input_cost_per_mtok(8e9, flops=989e12, mfu=0.5, usd_per_gpu_hour=2.0)
    assert cost == pytest.approx(2.0 * 32.356 / 3600, rel=1e-4)


@pytest.mark.parametrize("n_gpus", [1, 2, 8, 20.25])
def test_input_cost_independent_of_n_gpus(n_gpus):
    # n GPUs finish the prompt n times faster: n * price * t(n) is the same for any n.
    t = forward.prefill_time(70e9, 1e6, n_gpus=n_gpus, flops=989e12, mfu=0.5)
    replica_cost = n_gpus * 2.0 / 3600 * t
    direct = forward.input_cost_per_mtok(70e9, flops=989e12, mfu=0.5, usd_per_gpu_hour=2.0)
    assert replica_cost == pytest.approx(direct, rel=1e-12)


def test_serving_prediction_input_cost_ignores_replica_size():
    # Halving the memory share of the weights doubles the replica (70B bf16: 140e9 B
    # over 20e9 B = 7 GPUs vs over 40e9 B = 3.5 GPUs). The input cost stays; the
    # per-user speed doubles (twice the bandwidth streams the same bytes; both
    # replicas have room for the batch's KV cache, so the cap does not bind).
    kw = {
        "usd_per_gpu_hour": 2.0,
        "mbu": 0.75,
        "mfu_decode": 0.3,
        "mfu_prefill": 0.5,
        "context_tokens": 1024,
        "gpus_per_node": 1024,  # no node limit here (see the tests of tensor_parallel_width)
    }
    a = forward.serving_prediction(70e9, 70e9, 16, 32, H100, weight_memory_fraction=0.25, **kw)
    b = forward.serving_prediction(70e9, 70e9, 16, 32, H100, weight_memory_fraction=0.5, **kw)
    assert a["n_gpus"] == pytest.approx(7.0, rel=1e-3)
    assert b["n_gpus"] == pytest.approx(3.5, rel=1e-3)
    assert a["batch"] == pytest.approx(32, rel=1e-6)
    assert b["batch"] == pytest.approx(32, rel=1e-6)
    assert a["input_usd_per_mtok"] == pytest.approx(b["input_usd_per_mtok"], rel=1e-12)
    assert a["output_tokens_per_s"] == pytest.approx(2 * b["output_tokens_per_s"], rel=1e-2)


def test_serving_prediction_matches_parts():
    # 8B bf16 on one H100 at batch 1, context 2048 with the KV fit (130108 B/token),
    # MFU decode 0.7: within 1% of the D6 figures (154 tok/s, $3.61).
    out = forward.serving_prediction(
        8e9,
        8e9,
        16,
        1,
        H100,
        usd_per_gpu_hour=2.0,
        mbu=0.75,
        mfu_decode=0.7,
        mfu_prefill=0.5,
        context_tokens=2048,
    )
    assert out["output_tokens_per_s"] == pytest.approx(154, rel=0.01)
    assert out["output_usd_per_mtok"] == pytest.approx(3.61, rel=0.01)
    assert out["step_time_s"] == pytest.approx(1 / out["output_tokens_per_s"])


# --- scaling laws -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compute", "n_star", "d_star", "d_over_n"),
    [
        # methods C4, Besiroglu columns
        (1e23, 29e9, 0.57e12, 19),
        (5.8e23, 72e9, 1.33e12, 18),
        (1e24, 96e9, 1.74e12, 18),
        (2.1e25, 456e9, 7.7e12, 17),
    ],
)
def test_chinchilla_optimal_tokens_besiroglu(compute, n_star, d_star, d_over_n):
    # Hand inversion (C4): a = beta / (alpha + beta) = 0.3658 / 0.7136 = 0.5126,
    # G = (alpha A / (beta B)) ** (1 / (alpha + beta)), N* = G (C/6) ** a.
    sl = BESIROGLU
    a = sl["beta"] / (sl["alpha"] + sl["beta"])
    assert a == pytest.approx(0.513, abs=5e-4)  # C4: "Besiroglu: a = 0.513"
    g = (sl["alpha"] * sl["A"] / (sl["beta"] * sl["B"])) ** (1 / (sl["alpha"] + sl["beta"]))
    n = g * (compute / 6) ** a
    d = forward.chinchilla_optimal_tokens(n, **sl)
    # The allocation spends exactly the compute: 6 N* D* = C.
    assert 6 * n * d == pytest.approx(compute, rel=1e-9)
    # The table rounds N* and D* to 2-3 significant figures (29B stands for
    # 28.5-29.5B: 1.7%), so 2%; D/N to whole numbers, so 0.5.
    assert n == pytest.approx(n_star, rel=0.02)
    assert d == pytest.approx(d_star, rel=0.02)
    assert d / n == pytest.approx(d_over_n, abs=0.5)


@pytest.mark.parametrize(("n", "d_over_n"), [(29e9, 19), (72e9, 18), (96e9, 18), (456e9, 17)])
def test_chinchilla_tokens_per_param_at_rounded_sizes(n, d_over_n):
    # D/N falls slowly with N (D/N ~ N ** (1/a - 2) = N ** -0.05), so the rounded
    # sizes of the table give the same whole-number ratios: 19.2, 18.4, 18.1, 16.8.
    assert forward.chinchilla_optimal_tokens(n, **BESIROGLU) / n == pytest.approx(d_over_n, abs=0.5)


def test_chinchilla_optimum_minimises_loss_at_fixed_compute():
    # At C = 6 N* D*, moving N by +-10% along C = 6ND raises the loss.
    n = 72e9
    d = forward.chinchilla_optimal_tokens(n, **BESIROGLU)
    c6 = n * d
    best = forward.chinchilla_loss(n, d, **BESIROGLU)
    for f in (0.9, 1.1):
        assert forward.chinchilla_loss(n * f, c6 / (n * f), **BESIROGLU) > best


def test_training_compute():
    # 6 * N * D: 6 * 70e9 * 2e12 = 8.4e23 FLOP; GPT-3: 6 * 175e9 * 300e9 = 3.15e23.
    assert forward.training_compute(70e9, 2e12) == pytest.approx(8.4e23, rel=1e-12)
    assert forward.training_compute(175e9, 300e9) == pytest.approx(3.15e23, rel=1e-12)


def test_mmlu_from_compute():
    # At the midpoint the sigmoid is 1/2: 25 + 75 / 2 = 62.5.
    assert forward.mmlu_from_compute(24.0, 1.0, 24.0) == pytest.approx(62.5, rel=1e-12)
    # One unit above with slope 1: 25 + 75 / (1 + e^-1) = 25 + 75 * 0.7311 = 79.83.
    assert forward.mmlu_from_compute(25.0, 1.0, 24.0) == pytest.approx(79.83, abs=0.01)
    grid = np.linspace(18, 30, 121)
    y = forward.mmlu_from_compute(grid, 1.3, 24.0)
    assert np.all(np.diff(y) > 0)
    assert np.all((y > 25) & (y < 100))
    assert forward.mmlu_from_compute(0.0, 1.0, 24.0) == pytest.approx(25.0, abs=1e-6)
    assert forward.mmlu_from_compute(60.0, 1.0, 24.0) == pytest.approx(100.0, abs=1e-6)


# --- the same functions on PyTensor tensors ----------------------------------------------


def test_forward_on_pytensor_matches_numpy():
    total, active, batch, mbu = pt.dscalars("total", "active", "batch", "mbu")
    kv = forward.kv_bytes_per_token_estimate(active)
    n_gpus = forward.gpus_per_replica(total, 8, 80e9)
    t_step = forward.decode_step_time(
        total,
        active,
        8,
        batch,
        context_tokens=1024,
        kv_bytes_per_token=kv,
        n_gpus=n_gpus,
        hbm_bytes_per_s=3.35e12,
        flops=1979e12,
        mbu=mbu,
        mfu=0.3,
    )
    out_cost = forward.output_cost_per_mtok(t_step, batch, n_gpus=n_gpus, usd_per_gpu_hour=2.5)
    in_cost = forward.input_cost_per_mtok(active, flops=1979e12, mfu=mbu, usd_per_gpu_hour=2.5)
    d_opt = forward.chinchilla_optimal_tokens(total, **BESIROGLU)
    mmlu = forward.mmlu_from_compute(
        pt.log10(forward.training_compute(active, d_opt)), 1.2, 24.0, xp=pt
    )
    fn = pytensor.function([total, active, batch, mbu], [t_step, out_cost, in_cost, d_opt, mmlu])

    args = (141e9, 39e9, 24.0, 0.7)  # Mixtral 8x22B at fp8, batch 24
    got = fn(*args)
    np_total, np_active, np_batch, np_mbu = args
    np_kv = forward.kv_bytes_per_token_estimate(np_active)
    np_gpus = forward.gpus_per_replica(np_total, 8, 80e9)
    np_t = forward.decode_step_time(
        np_total,
        np_active,
        8,
        np_batch,
        context_tokens=1024,
        kv_bytes_per_token=np_kv,
        n_gpus=np_gpus,
        hbm_bytes_per_s=3.35e12,
        flops=1979e12,
        mbu=np_mbu,
        mfu=0.3,
    )
    np_d = forward.chinchilla_optimal_tokens(np_total, **BESIROGLU)
    expected = [
        np_t,
        forward.output_cost_per_mtok(np_t, np_batch, n_gpus=np_gpus, usd_per_gpu_hour=2.5),
        forward.input_cost_per_mtok(np_active, flops=1979e12, mfu=np_mbu, usd_per_gpu_hour=2.5),
        np_d,
        forward.mmlu_from_compute(np.log10(forward.training_compute(np_active, np_d)), 1.2, 24.0),
    ]
    # Same float64 arithmetic in a different order: agreement to ~1e-12 relative.
    for g, e in zip(got, expected, strict=True):
        assert float(g) == pytest.approx(float(e), rel=1e-9)


def test_kv_batch_limit_and_cap_by_hand():
    # 70B at 16 bits on 2 x 80 GB: 140 GB of weights leave 20 GB; at 1,024 tokens of
    # 320 KiB each (Llama-3-70B), one sequence holds 335.5 MB, so 59.6 sequences fit.
    limit = forward.kv_batch_limit(
        2.0, 80e9, 70e9, 16, context_tokens=1024, kv_bytes_per_token=320 * 1024
    )
    assert limit == pytest.approx(20e9 / (1024 * 320 * 1024))
    # A batch far below the limit runs as it is; far above, it runs at the limit.
    assert forward.capped_batch(4.0, limit) == pytest.approx(4.0, rel=1e-6)
    assert forward.capped_batch(1e4, limit) == pytest.approx(limit, rel=1e-6)
    # Equal: 2 ** (-1/8) of either.
    assert forward.capped_batch(limit, limit) == pytest.approx(limit * 2 ** (-1 / 8))


def test_serving_prediction_caps_the_batch():
    acc = forward.Accelerator("A100-80GB", 2.039e12, 312e12, None, 80e9)
    kw = {
        "usd_per_gpu_hour": 2.0,
        "mbu": 0.7,
        "mfu_decode": 0.3,
        "mfu_prefill": 0.5,
        "context_tokens": 1024,
    }
    # davinci's multi-head KV cache (4.7 MB per token) at a batch of 512 does not fit
    # on the 8.75 A100s its weights need at a fill of half: the batch is capped. The
    # replica is more than one node (8), so its memory is shared by the batches of
    # n_gpus / width pipeline stages.
    got = forward.serving_prediction(175e9, 175e9, 16, 512.0, acc, kv_bytes_per_token=4718592, **kw)
    n_gpus = got["n_gpus"]
    assert n_gpus == pytest.approx(8.75, rel=1e-3)
    width = ((1 / n_gpus) ** 8 + (1 / 8) ** 8) ** (-1 / 8)
    assert got["tp_width"] == pytest.approx(width)
    limit = (n_gpus * 80e9 - 350e9) / (1024 * 4718592) * width / n_gpus
    assert got["batch"] == pytest.approx(1.0 / ((1 / 512) ** 8 + (1 / limit) ** 8) ** (1 / 8))
    assert got["batch"] < 100


def test_tensor_parallel_width_by_hand():
    # A smooth minimum of sharpness 8: 1 / ((1/n)^8 + (1/8)^8)^(1/8).
    assert forward.tensor_parallel_width(2.0, 8.0) == pytest.approx(2.0 * (1 + 4.0**-8) ** -0.125)
    assert forward.tensor_parallel_width(2.0, 8.0) == pytest.approx(2.0, rel=1e-5)
    # At one node exactly it is 2^(1/8) = 9% below (the power mean's largest gap).
    assert forward.tensor_parallel_width(8.0, 8.0) == pytest.approx(8.0 / 2**0.125)
    assert forward.tensor_parallel_width(64.0, 8.0) == pytest.approx(8.0, rel=1e-7)
    assert forward.pipeline_share(32.0, 8.0) == 0.25


def test_speed_falls_with_size_beyond_one_node():
    # fp8 on H100 (80 GB) at a fill of 0.5: 40 GB of weights per GPU, so a 20B model
    # needs 1 GPU (0.5), 160B 4 GPUs, 500B 12.5 and 1T 25 (one node holds 8). At batch 1
    # the step streams the weights (memory-bound): within a node the replica grows with
    # the model and the speed stays; beyond it a step streams the whole model on one
    # node's 8 GPUs, so the speed halves when the size doubles.
    kw = {
        "usd_per_gpu_hour": 2.0,
        "mbu": 0.8,
        "mfu_decode": 0.3,
        "mfu_prefill": 0.5,
        "context_tokens": 1,
        "kv_bytes_per_token": 1.0,
        "weight_memory_fraction": 0.5,
        "gpus_per_node": 8,
    }
    small, mid, big, huge = (
        forward.serving_prediction(n, n, 8, 1, H100, **kw) for n in (80e9, 160e9, 500e9, 1e12)
    )
    assert small["n_gpus"] == pytest.approx(2.0, rel=1e-3)
    assert mid["n_gpus"] == pytest.approx(4.0, rel=1e-3)
    assert huge["n_gpus"] == pytest.approx(25.0, rel=1e-6)
    assert huge["tp_width"] == pytest.approx(8.0, rel=1e-3)
    assert small["output_tokens_per_s"] == pytest.approx(mid["output_tokens_per_s"], rel=1e-3)
    # By hand: 1e12 bytes over 8 x 3.35 TB/s x 0.8 = 46.6 ms a token, 21.4 tokens/s.
    by_hand = 8 * 3.35e12 * 0.8 / 1e12
    assert huge["output_tokens_per_s"] == pytest.approx(by_hand, rel=2e-3)
    # 500B: 12.5 GPUs, split 8 (1 + (8 / 12.5)^8)^(-1/8) = 7.97 ways; 1T: 8.00 ways.
    width_big = 8 * (1 + (8 / 12.5) ** 8) ** (-1 / 8)
    assert big["tp_width"] == pytest.approx(width_big, rel=1e-6)
    ratio = big["output_tokens_per_s"] / huge["output_tokens_per_s"]
    assert ratio == pytest.approx(2.0 * width_big / huge["tp_width"], rel=1e-9)
    assert ratio == pytest.approx(2.0, rel=5e-3)
    # GPU-seconds per token scale with the bytes a step streams: twice the model, twice
    # the cost (to the same 0.3%).
    cost = huge["output_usd_per_mtok"] / big["output_usd_per_mtok"]
    assert cost == pytest.approx(2.0, rel=5e-3)
