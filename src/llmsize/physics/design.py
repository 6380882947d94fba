"""Turn a checked dataset and a hypothesis into the arrays the model is built from.

The design is plain NumPy: index arrays that map each observation to its
serving epoch, model and provider, the fixed sizes of known models, the
hardware constants of each discrete serving choice and their prior weights.
Building it is separate from building the PyMC model so that the same design
feeds the model, the simulations of the tests and the report.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmsize.exceptions import DataError, HypothesisError
from llmsize.inputs.data import Dataset
from llmsize.inputs.hypothesis import Hypothesis, prior_centre
from llmsize.physics import forward

EPOCH_ZERO = dt.date(2024, 1, 1)
MMLU = "MMLU"


def years_since_2024(date: dt.date) -> float:
    """Decimal years from 2024-01-01 (negative before)."""
    return (date - EPOCH_ZERO).days / 365.25


def newer_share(year, *, midpoint_year: float, width_years: float, cap: float) -> np.ndarray:
    """Prior chance that serving at ``year`` runs on the newer hardware generation.

    A logistic in the date (years since 2024), centred on ``midpoint_year`` with
    scale ``width_years`` and capped at ``cap``: the ``[hardware]`` table.
    """
    year = np.asarray(year, dtype=float)
    return cap / (1.0 + np.exp(-(year - midpoint_year) / width_years))


def hardware_transition(p_price, p_measure) -> np.ndarray:
    """Chance of each hardware generation at a measurement, given the one at the price date.

    A server moves from the older generation to the newer and not back, so the
    generation at two dates is one of three paths: older at both (chance
    ``1 - max(p)``), newer at both (``min(p)``), or older at the earlier date and
    newer at the later (``max(p) - min(p)``), where ``p`` is :func:`newer_share`
    at each date. Conditioning on the generation at the price date gives, with
    rows the generation at the price date (older, newer) and columns the one at
    the measurement: for a measurement after the price date
    ``[[(1 - b) / (1 - a), (b - a) / (1 - a)], [0, 1]]``, and before it
    ``[[1, 0], [(a - b) / a, b / a]]``, with ``a = p_price`` and ``b = p_measure``.
    A row whose condition has no prior chance (``a`` of 0 or 1) keeps the generation.
    Shape ``(n, 2, 2)``; each row sums to 1.
    """
    a = np.atleast_1d(np.asarray(p_price, dtype=float))
    b = np.atleast_1d(np.asarray(p_measure, dtype=float))
    out = np.zeros((len(a), 2, 2))
    later = b >= a
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(a < 1.0, (b - a) / (1.0 - a), 0.0)
        down = np.where(a > 0.0, (a - b) / a, 0.0)
    up = np.clip(np.where(later, up, 0.0), 0.0, 1.0)
    down = np.clip(np.where(later, 0.0, down), 0.0, 1.0)
    out[:, 0, 0] = 1.0 - up
    out[:, 0, 1] = up
    out[:, 1, 0] = down
    out[:, 1, 1] = 1.0 - down
    return out


@dataclass(frozen=True)
class Design:
    """Index arrays and constants of one fit. Shapes: E epochs, K components."""

    models: list[str]
    unknown: list[str]
    providers: list[str]
    epochs: pd.DataFrame
    epoch_model: np.ndarray
    epoch_provider: np.ndarray
    epoch_year: np.ndarray
    log_price_out: np.ndarray
    log_price_in: np.ndarray
    known_total: np.ndarray  # per model, parameters (NaN when unknown)
    known_active: np.ndarray
    #: per model, KV-cache bytes per token at 16 bits from its published config
    #: (NaN when unknown or not published)
    known_kv: np.ndarray
    unknown_pos: np.ndarray  # per unknown model, its index in ``models``
    component_bits: np.ndarray  # (K,)
    component_hardware: np.ndarray  # (K,) index into ``hardware``
    component_labels: list[str]
    hardware: list[str]
    accelerators: list[forward.Accelerator]
    log_gpu_hour_mu: np.ndarray  # per hardware generation, at 2024-01-01
    log_weights: np.ndarray  # (E, K) prior log weights of the components
    speed_epoch: np.ndarray
    log_speed: np.ndarray
    ttft_epoch: np.ndarray
    log_ttft: np.ndarray
    mmlu_model: np.ndarray  # index into ``models`` (-1 for a known model)
    mmlu_score: np.ndarray
    mmlu_known_log10_compute: np.ndarray  # NaN when the model's compute is latent
    #: 1 where the epoch's provider is the lab that made the model (its own API).
    epoch_first_party: np.ndarray
    #: 1 where the epoch's provider serves on GPUs (or does not say); prices of
    #: custom silicon enter through the pricing layer alone, and their speeds not at all.
    epoch_gpu: np.ndarray
    #: Speed and first-token-time measurements: the speed and TTFT rows of one
    #: (price epoch, date) are one measurement, served on one component. Per
    #: measurement, its epoch and the prior log chance of its component given the
    #: epoch's (``(M, K, K)``: the hardware at the measurement's own date, see
    #: :func:`hardware_transition`; the precision is the epoch's); per speed and
    #: TTFT row, its measurement.
    measure_epoch: np.ndarray
    measure_log_transition: np.ndarray
    speed_measure: np.ndarray
    ttft_measure: np.ndarray
    #: 1 where an epoch's prices enter the likelihood, 0 where they are withheld
    #: (calibration with prices removed). Speeds and MMLU are unaffected.
    price_mask: np.ndarray
    #: Measured d_model of models of unknown size: index into ``unknown``, value.
    hidden_unknown: np.ndarray
    hidden_size: np.ndarray
    #: Stated serving-cost ratios (``cost_statements.csv``): the two epochs of each
    #: (from, to) and the log of the stated ratio, to over from.
    statement_epochs: np.ndarray
    statement_log_ratio: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n_epochs(self) -> int:
        """The number of serving epochs (price points)."""
        return len(self.epochs)

    def component_flops(self) -> np.ndarray:
        """Dense FLOP/s of each component (fp8 math for 8-bit where available)."""
        return np.array(
            [
                self.accelerators[h].flops_at(int(b))
                for b, h in zip(self.component_bits, self.component_hardware, strict=True)
            ]
        )

    def component_array(self, attr: str) -> np.ndarray:
        """Attribute ``attr`` of each component's accelerator (e.g. ``memory_bytes``)."""
        return np.array([getattr(self.accelerators[h], attr) for h in self.component_hardware])


def _accelerators(data: Dataset, hyp: Hypothesis) -> tuple[list[forward.Accelerator], np.ndarray]:
    accs, mus = [], []
    for key in hyp.hardware.generations:
        rows = data.hardware[data.hardware["gpu"] == key]
        if rows.empty:
            raise HypothesisError(
                f"GPU {key!r} is not in {data.root / 'hardware.csv'}",
                file=hyp.name,
                field="hardware.generations",
            )
        r = rows.iloc[0]
        if r["bf16_tflops"] is None or pd.isna(r["bf16_tflops"]):
            raise DataError(
                f"GPU {key!r} has no bf16_tflops, which the model needs",
                file=str(data.root / "hardware.csv"),
                row=int(r["_row"]),
                field="bf16_tflops",
            )
        fp8 = r["fp8_tflops"]
        accs.append(
            forward.Accelerator(
                name=key,
                hbm_bytes_per_s=float(r["hbm_tb_per_s"]) * 1e12,
                bf16_flops=float(r["bf16_tflops"]) * 1e12,
                fp8_flops=None if fp8 is None or pd.isna(fp8) else float(fp8) * 1e12,
                memory_bytes=float(r["memory_gb"]) * 1e9,
            )
        )
        family = key.split("-")[0]
        prices = data.gpu_prices[data.gpu_prices["gpu"].str.split("-").str[0] == family]
        if prices.empty:
            raise DataError(
                f"no rental price for any {family} GPU (needed for {key})",
                file=str(data.root / "gpu_prices.csv"),
                field="gpu",
            )
        # The quotes' mean, moved to 2024-01-01 along the prior's mean trend (the
        # quotes date from 2023 to 2026 and rental prices fell over those years).
        # A quote without a date is taken as of 2024.
        years = np.array(
            [0.0 if d is None or pd.isna(d) else years_since_2024(d) for d in prices["date"]]
        )
        trend = prior_centre(hyp.priors.gpu_hour_trend)
        log_q = np.log(prices["usd_per_gpu_hour"].astype(float).to_numpy())
        mus.append(float(np.mean(log_q - trend * years)))
    return accs, np.array(mus)


def build_design(data: Dataset, hyp: Hypothesis) -> Design:
    """Assemble the design of a fit, leaving out rows the model cannot use."""
    notes: list[str] = []
    epochs = _epochs(data, notes)
    known = data.known_models.set_index("model")
    models = list(dict.fromkeys(epochs["model"]))
    unknown = [m for m in models if m not in known.index]
    providers = sorted(set(epochs["provider"]))
    m_index = {m: i for i, m in enumerate(models)}
    p_index = {p: i for i, p in enumerate(providers)}
    accs, log_gpu_mu = _accelerators(data, hyp)
    comp_bits, comp_hw = _components(hyp)
    year = np.array([years_since_2024(d) for d in epochs["date"]])
    p_newer = _p_newer(hyp, year)
    log_weights = _log_weights(epochs, hyp, p_newer)
    epoch_gpu = epochs["provider"].map(data.is_gpu_like).to_numpy(bool)
    measures = _speed_measures(data, epochs, epoch_gpu, notes)
    hw_step = hardware_transition(p_newer[measures.epoch], _p_newer(hyp, measures.years))
    same_bits = (comp_bits[:, None] == comp_bits[None, :]).astype(float)  # (K, K)
    m_transition = same_bits[None] * hw_step[:, comp_hw[:, None], comp_hw[None, :]]
    q_m, q_s, q_c = _mmlu(data, known, m_index, notes)
    st_e, st_r = _cost_statements(data, epochs, hyp)
    hid = data.hidden_size[data.hidden_size["model"].isin(unknown)]
    return Design(
        statement_epochs=np.array(st_e, dtype=int).reshape(-1, 2),
        statement_log_ratio=np.array(st_r),
        hidden_unknown=np.array([unknown.index(m) for m in hid["model"]], dtype=int),
        hidden_size=hid["hidden_size"].to_numpy(float),
        models=models,
        unknown=unknown,
        providers=providers,
        epochs=epochs,
        epoch_model=epochs["model"].map(m_index).to_numpy(int),
        epoch_provider=epochs["provider"].map(p_index).to_numpy(int),
        epoch_year=year,
        log_price_out=np.log(epochs["output_usd_per_mtok"].astype(float).to_numpy()),
        log_price_in=np.log(epochs["input_usd_per_mtok"].astype(float).to_numpy()),
        known_total=_known_column(known, models, "total_params_b", 1e9),
        known_active=_known_column(known, models, "active_params_b", 1e9),
        known_kv=_known_column(known, models, "kv_bytes_per_token", 1.0),
        unknown_pos=np.array([m_index[m] for m in unknown], dtype=int),
        component_bits=comp_bits,
        component_hardware=comp_hw,
        component_labels=[
            f"{b}-bit {accs[h].name}" for b, h in zip(comp_bits, comp_hw, strict=True)
        ],
        hardware=[a.name for a in accs],
        accelerators=accs,
        log_gpu_hour_mu=log_gpu_mu,
        log_weights=log_weights,
        speed_epoch=np.array(measures.speed_epoch, dtype=int),
        log_speed=np.array(measures.log_speed),
        ttft_epoch=np.array(measures.ttft_epoch, dtype=int),
        log_ttft=np.array(measures.log_ttft),
        mmlu_model=np.array(q_m, dtype=int),
        mmlu_score=np.array(q_s),
        mmlu_known_log10_compute=np.array(q_c),
        epoch_first_party=np.array(
            [
                data.is_first_party(m, p)
                for m, p in zip(epochs["model"], epochs["provider"], strict=True)
            ],
            dtype=float,
        ),
        epoch_gpu=epoch_gpu.astype(float),
        measure_epoch=measures.epoch,
        measure_log_transition=np.log(np.clip(m_transition, 1e-300, None)),
        speed_measure=np.array(measures.speed_measure, dtype=int),
        ttft_measure=np.array(measures.ttft_measure, dtype=int),
        price_mask=np.ones(len(epochs)),
        notes=notes + data.notes,
    )


def _epochs(data: Dataset, notes: list[str]) -> pd.DataFrame:
    """The price rows, one serving epoch each, sorted by model, provider and date."""
    prices = data.prices.copy()
    gpu_mask = prices["provider"].map(data.is_gpu_like)
    if (~gpu_mask).any():
        others = sorted(set(prices.loc[~gpu_mask, "provider"]))
        notes.append(
            f"{int((~gpu_mask).sum())} price rows of providers on custom silicon "
            f"({', '.join(others)}) enter through the pricing layer alone: their cost is "
            "the GPU roofline's and the provider's own markup and elasticity absorb the "
            "difference; their speeds are not used"
        )
    return prices.sort_values(["model", "provider", "date"]).reset_index(drop=True)


def _known_column(known: pd.DataFrame, models: list[str], column: str, scale: float) -> np.ndarray:
    """A column of ``known_models.csv`` per model, times ``scale`` (NaN where unknown or empty)."""

    def value(m: str) -> float:
        v = known.loc[m, column] if m in known.index else None
        return np.nan if v is None or pd.isna(v) else float(v) * scale

    return np.array([value(m) for m in models])


def _components(hyp: Hypothesis) -> tuple[np.ndarray, np.ndarray]:
    """Bits and hardware index of each serving component (every precision on each generation)."""
    bits = np.array(hyp.precision.bits)
    return np.repeat(bits, 2), np.tile([0, 1], len(bits))


def _p_newer(hyp: Hypothesis, years) -> np.ndarray:
    """The ``[hardware]`` prior chance of the newer generation at each date (in years)."""
    return newer_share(
        years,
        midpoint_year=years_since_2024(hyp.hardware.newer_midpoint),
        width_years=hyp.hardware.newer_width_years,
        cap=hyp.hardware.newer_max,
    )


def _log_weights(epochs: pd.DataFrame, hyp: Hypothesis, p_newer: np.ndarray) -> np.ndarray:
    """Prior log weight of each epoch's components: precision (fixed where the data
    fixes the serving bits) times the chance of each hardware generation at its date.
    """
    bits = np.array(hyp.precision.bits)
    w_bits = np.array(hyp.precision.weights) / np.sum(hyp.precision.weights)
    p_hw = np.stack([1.0 - p_newer, p_newer], axis=1)  # (E, 2)
    wb = np.tile(w_bits, (len(epochs), 1))  # (E, n_bits)
    for i, sb in enumerate(epochs.get("serving_bits", pd.Series([None] * len(epochs)))):
        if sb is not None and not pd.isna(sb):
            if int(sb) not in bits:
                raise HypothesisError(
                    f"data fixes serving bits {int(sb)} but the hypothesis allows only "
                    f"{[int(b) for b in bits]}",
                    file=hyp.name,
                    field="precision.bits",
                )
            wb[i] = (bits == int(sb)).astype(float)
    weights = np.repeat(wb, 2, axis=1) * np.tile(p_hw, (1, len(bits)))
    return np.log(np.clip(weights, 1e-12, None))


@dataclass
class _SpeedMeasures:
    """Speed and first-token-time rows mapped to their price epochs and measurements."""

    speed_epoch: list[int] = field(default_factory=list)
    speed_measure: list[int] = field(default_factory=list)
    log_speed: list[float] = field(default_factory=list)
    ttft_epoch: list[int] = field(default_factory=list)
    ttft_measure: list[int] = field(default_factory=list)
    log_ttft: list[float] = field(default_factory=list)
    #: per measurement, its (epoch, date)
    keys: dict[tuple[int, dt.date], int] = field(default_factory=dict)

    @property
    def epoch(self) -> np.ndarray:
        """Each measurement's price epoch."""
        return np.array([e for e, _ in self.keys], dtype=int)

    @property
    def years(self) -> list[float]:
        """Each measurement's date, in years since 2024."""
        return [years_since_2024(d) for _, d in self.keys]


def _speed_measures(
    data: Dataset, epochs: pd.DataFrame, epoch_gpu: np.ndarray, notes: list[str]
) -> _SpeedMeasures:
    """Speeds and first-token times, each mapped to the price epoch in force (the
    first one when measured before any price); the rows of one (epoch, date)
    form a measurement, whose hardware is drawn at its own date.
    """
    ep_key: dict[tuple[str, str], list[tuple[dt.date, int]]] = {}
    for i, r in epochs.iterrows():
        if not epoch_gpu[i]:
            continue
        ep_key.setdefault((r["model"], r["provider"]), []).append((r["date"], i))
    out = _SpeedMeasures()
    unmatched = 0
    for _, r in data.speed.iterrows():
        cands = ep_key.get((r["model"], r["provider"]))
        if not cands:
            unmatched += 1
            continue
        before = [i for d, i in cands if d <= r["date"]]
        e = before[-1] if before else cands[0][1]
        has_speed = r["output_tokens_per_s"] is not None and not pd.isna(r["output_tokens_per_s"])
        has_ttft = r["ttft_s"] is not None and not pd.isna(r["ttft_s"])
        if not (has_speed or has_ttft):
            continue
        m = out.keys.setdefault((int(e), r["date"]), len(out.keys))
        if has_speed:
            out.speed_epoch.append(e)
            out.speed_measure.append(m)
            out.log_speed.append(math.log(float(r["output_tokens_per_s"])))
        if has_ttft:
            out.ttft_epoch.append(e)
            out.ttft_measure.append(m)
            out.log_ttft.append(math.log(float(r["ttft_s"])))
    if unmatched:
        notes.append(
            f"{unmatched} speed rows have no price epoch at a GPU provider "
            "(same model and provider) and are not used"
        )
    return out


def _mmlu(
    data: Dataset, known: pd.DataFrame, m_index: dict[str, int], notes: list[str]
) -> tuple[list[int], list[float], list[float]]:
    """MMLU against training compute: every known model with training tokens
    (priced or not, e.g. a base checkpoint) fixes a point of the curve; an
    unknown model's score depends on its latent compute. Returns each row's
    model (-1 when known), score and known log10 compute (NaN when latent).
    """
    q_m: list[int] = []
    q_s: list[float] = []
    q_c: list[float] = []
    skipped = 0
    for _, r in data.quality.iterrows():
        if r["benchmark"].strip().upper() != MMLU:
            continue
        m = r["model"]
        if m in known.index:
            tok = known.loc[m, "training_tokens_t"]
            if tok is None or pd.isna(tok):
                skipped += 1
                continue
            act = float(known.loc[m, "active_params_b"]) * 1e9
            q_m.append(-1)
            q_c.append(math.log10(forward.training_compute(act, float(tok) * 1e12)))
        elif m in m_index:
            q_m.append(m_index[m])
            q_c.append(np.nan)
        else:
            skipped += 1
            continue
        q_s.append(float(r["score_pct"]))
    if skipped:
        notes.append(
            f"{skipped} MMLU rows not used (known model without training tokens, "
            "or model of unknown size not priced at a GPU provider)"
        )
    return q_m, q_s, q_c


def _cost_statements(
    data: Dataset, epochs: pd.DataFrame, hyp: Hypothesis
) -> tuple[list[list[int]], list[float]]:
    """The two epochs and the log stated ratio of each serving-cost statement
    (none unless ``[evidence] cost_statements``).
    """
    st_e: list[list[int]] = []
    st_r: list[float] = []
    if not hyp.evidence.cost_statements:
        return st_e, st_r
    where = {(r.provider, r.model, r.date): i for i, r in enumerate(epochs.itertuples())}
    used: set[int] = set()
    for r in data.cost_statements.itertuples():
        pair = [
            where[(r.provider, getattr(r, f"{end}_model"), getattr(r, f"{end}_date"))]
            for end in ("from", "to")
        ]
        if used & set(pair) or pair[0] == pair[1]:
            raise DataError(
                "a price point may be in one cost statement only, and a statement "
                "needs two price points",
                file=str(data.root / "cost_statements.csv"),
                row=int(r._1),
                field="to_model",
            )
        used |= set(pair)
        st_e.append(pair)
        st_r.append(math.log(float(r.cost_ratio)))
    return st_e, st_r
