"""Hold-outs of the calibration: which sizes and prices each refit withholds.

Two kinds, each a :class:`Holdout`:

``family``
    A family of known-size models (``known_models.csv``'s ``family`` column: a model
    with its fine-tunes and variants) has its sizes removed and is refitted on every
    price it has. Families whose models share a size (the same total *and* active
    parameters, to 3 significant figures) are held out together: Llama-2-70B-chat,
    Llama-3-70B-Instruct, Llama-3.1-70B and Llama-3.3-70B at the same providers would
    otherwise give each other's answer away. A merged hold-out is named by its
    families, sorted and joined by ``+``.

``ladder``
    The davinci situation: OpenAI priced its own models at its own API, and of their
    sizes only one (GPT-3 davinci, 175B) is known. For each lab (``labs.csv``) that
    has first-party prices for at least two known-size models of different sizes, one
    hold-out keeps one size of the lab's as the known *anchor*, removes the sizes of
    all its other models (base checkpoints included), and removes their prices
    everywhere but at the lab's own API. Same-size siblings from other labs keep their
    sizes. **The anchor** is the lab's model of known size whose first first-party
    price is the earliest (ties: the first model name in sort order), as davinci was
    OpenAI's first priced model; every lab model of the anchor's size stays known,
    with all its prices. Held-out models left without a price (priced only at
    resellers) drop out of the fit; every other held-out model is scored.

**The split.** Each hold-out is assigned, once and for all, to ``choose`` (results
that may be looked at while choosing priors) or ``score`` (results that judge them):
a prior changed after seeing a calibration result must be judged on the score split
only. A family's split is fixed by the first byte of the sha256 of its name (even:
choose, odd: score), so it does not depend on which other families exist; a merged
hold-out is in ``choose`` if any of its families is, so that adding a sibling can move
a hold-out from score to choose but never from choose to score (a family once used to
choose is never scored later). Lab ladders are few and are the case that matters
most, so all of them are in ``score`` while there are fewer than
:data:`MIN_LADDERS_TO_SPLIT`; from that many on, each goes by the hash of its name
like a family.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from llmsize.exceptions import DataError
from llmsize.inputs.data import Dataset
from llmsize.inputs.hypothesis import Hypothesis
from llmsize.physics.design import Design, build_design

#: Evidence kept in each refit of a hold-out.
VARIANTS = ("full", "no_speed", "no_price")
VARIANT_LABELS = {
    "full": "llmsize (prices, speeds, MMLU)",
    "no_speed": "llmsize, speeds removed",
    "no_price": "llmsize, held-out prices removed",
}
#: Kinds of hold-out.
KINDS = ("family", "ladder")
#: The split a hold-out belongs to: used to choose priors, or to score them.
SPLITS = ("choose", "score")
#: Below this many lab ladders, all of them are in the score split.
MIN_LADDERS_TO_SPLIT = 4
#: Eras of a model's first price (its year), as the report groups them.
ERAS = ("2022 and before", "2023", "2024", "2025 and after")
ARCHITECTURES = ("dense", "moe")
REGIMES = ("first-party", "reseller")
#: Bumped whenever the rules that turn a hold-out into a dataset change, so that a
#: resumed run refits instead of reusing fits of another definition.
RULES_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Holdout:
    """One refit's withheld knowledge.

    ``held_out`` lists every model whose size is removed (priced or not);
    ``first_party_only`` the models whose prices are kept only at their lab's own API;
    ``anchor`` (ladders) the model whose size stays known.
    """

    kind: str
    name: str
    families: tuple[str, ...]
    held_out: tuple[str, ...]
    first_party_only: tuple[str, ...] = ()
    lab: str | None = None
    anchor: str | None = None
    split: str = ""

    def definition(self) -> dict:
        """What the refit depends on (the split does not change a fit)."""
        return {
            "rules": RULES_VERSION,
            "kind": self.kind,
            "name": self.name,
            "held_out": sorted(self.held_out),
            "first_party_only": sorted(self.first_party_only),
            "anchor": self.anchor,
        }

    def digest(self) -> str:
        """sha256 of :meth:`definition`: part of the stored fit's file name."""
        blob = json.dumps(self.definition(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_json(self) -> str:
        """The hold-out as JSON, as it travels to a calibration worker."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holdout:
        """The hold-out of :meth:`to_json`'s ``text``."""
        raw = json.loads(text)
        for key in ("families", "held_out", "first_party_only"):
            raw[key] = tuple(raw.get(key, ()))
        return cls(**raw)


# --------------------------------------------------------------------------- families


def model_families(data: Dataset) -> dict[str, str]:
    """Each known model's family (``family`` column; the model's own name if empty)."""
    k = data.known_models
    fams = k["family"] if "family" in k.columns else pd.Series([None] * len(k), index=k.index)
    out = {}
    for m, f in zip(k["model"], fams, strict=True):
        f = "" if f is None or (isinstance(f, float) and np.isnan(f)) else str(f).strip()
        out[m] = f or m
    return out


def families(data: Dataset, design: Design) -> dict[str, list[str]]:
    """Known-size families with at least one price in the fit: family -> priced models."""
    fam = model_families(data)
    out: dict[str, list[str]] = {}
    for m in design.models:
        if m in fam:
            out.setdefault(fam[m], []).append(m)
    return out


def family_of(data: Dataset, family: str) -> list[str]:
    """Every model of ``family`` in known_models.csv (priced or not)."""
    return [m for m, f in model_families(data).items() if f == family]


def size_key(data: Dataset, model: str) -> tuple[float, float]:
    """A known model's (total, active) size in billions, to 3 significant figures."""
    row = data.known_models.loc[data.known_models["model"] == model].iloc[0]
    return (
        float(f"{float(row['total_params_b']):.3g}"),
        float(f"{float(row['active_params_b']):.3g}"),
    )


def family_holdouts(data: Dataset, design: Design) -> list[Holdout]:
    """One hold-out per group of priced families that share a (total, active) size."""
    priced = families(data, design)
    fam = model_families(data)
    parent = {f: f for f in priced}

    def root(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    first_with: dict[tuple[float, float], str] = {}
    for m in data.known_models["model"]:
        if fam[m] not in priced:
            continue
        other = first_with.setdefault(size_key(data, m), fam[m])
        a, b = root(other), root(fam[m])
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for f in priced:  # design order: the first member's position
        groups.setdefault(root(f), []).append(f)
    out = []
    for members in groups.values():
        names = tuple(sorted(members))
        held = tuple(m for m in data.known_models["model"] if fam[m] in names)
        out.append(Holdout(kind="family", name="+".join(names), families=names, held_out=held))
    return out


# --------------------------------------------------------------------------- lab ladders


def lab_ladders(data: Dataset, design: Design) -> dict[str, list[str]]:
    """Per lab, its known-size models with a first-party price in the fit, earliest
    first-party price first (ties by model name).
    """
    known = set(data.known_models["model"])
    ep = design.epochs
    first: dict[str, dict[str, dt.date]] = {}
    for m, p, d in zip(ep["model"], ep["provider"], ep["date"], strict=True):
        if m in known and data.is_first_party(m, p):
            lab = str(data.lab_of(m))
            seen = first.setdefault(lab, {})
            seen[m] = min(seen.get(m, d), d)
    return {
        lab: [m for _, m in sorted((d, m) for m, d in dates.items())]
        for lab, dates in first.items()
    }


def ladder_holdouts(data: Dataset, design: Design) -> list[Holdout]:
    """One hold-out per lab with first-party prices for two or more known sizes."""
    fam = model_families(data)
    out = []
    for lab, models in sorted(lab_ladders(data, design).items()):
        if len({size_key(data, m) for m in models}) < 2:
            continue
        anchor = models[0]
        kept = size_key(data, anchor)
        held = tuple(
            m
            for m in data.known_models["model"]
            if data.lab_of(m) == lab and size_key(data, m) != kept
        )
        out.append(
            Holdout(
                kind="ladder",
                name=f"ladder-{lab}",
                families=tuple(sorted({fam[m] for m in held})),
                held_out=held,
                first_party_only=held,
                lab=lab,
                anchor=anchor,
            )
        )
    return out


# --------------------------------------------------------------------------- the split


def split_of(name: str) -> str:
    """``choose`` or ``score`` from the first byte of sha256(name): even, odd."""
    return SPLITS[hashlib.sha256(name.encode()).digest()[0] & 1]


def assign_splits(holdouts: Iterable[Holdout], prior_families: Iterable[str] = ()) -> list[Holdout]:
    """Each hold-out with its split (see the module docstring for the rule); a
    hold-out of a family in ``prior_families`` (one that shaped a prior of the
    hypothesis, ``[calibration] prior_families``) is always in ``choose``.
    """
    holdouts = list(holdouts)
    shaped = set(prior_families)
    n_ladders = sum(h.kind == "ladder" for h in holdouts)
    out = []
    for h in holdouts:
        if h.kind == "ladder":
            split = "score" if n_ladders < MIN_LADDERS_TO_SPLIT else split_of(h.name)
        else:
            names = h.families or (h.name,)
            chosen = any(split_of(f) == "choose" or f in shaped for f in names)
            split = "choose" if chosen else "score"
        out.append(dataclasses.replace(h, split=split))
    return out


def build_holdouts(
    data: Dataset,
    design: Design,
    kinds: Iterable[str] = KINDS,
    prior_families: Iterable[str] = (),
) -> list[Holdout]:
    """Every hold-out of the given kinds, with its split (``prior_families``:
    see :func:`assign_splits`).
    """
    kinds = tuple(kinds)
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        raise ValueError(f"unknown hold-out kind {bad[0]!r}")
    # The split of a ladder depends on how many ladders there are, whatever is run.
    everything = assign_splits(
        family_holdouts(data, design) + ladder_holdouts(data, design), prior_families
    )
    return [h for h in everything if h.kind in kinds]


def select_holdouts(holdouts: Iterable[Holdout], only: Iterable[str]) -> list[Holdout]:
    """The hold-outs named in ``only``, or holding out a family named there."""
    holdouts = list(holdouts)
    only = list(only)
    chosen = [h for h in holdouts if h.name in only or set(h.families) & set(only)]
    matched = {h.name for h in chosen} | {f for h in chosen for f in h.families}
    missing = [o for o in only if o not in matched]
    if missing:
        raise DataError(
            f"no such hold-out or family with prices: {', '.join(missing)}", field="family"
        )
    return chosen


def as_holdout(data: Dataset, holdout: Holdout | str) -> Holdout:
    """A :class:`Holdout`, its JSON, or the name of one family (held out alone)."""
    if isinstance(holdout, Holdout):
        return holdout
    if holdout.lstrip().startswith("{"):
        return Holdout.from_json(holdout)
    return Holdout(
        kind="family",
        name=holdout,
        families=(holdout,),
        held_out=tuple(family_of(data, holdout)),
    )


# --------------------------------------------------------------------------- datasets


def holdout_prices(data: Dataset, holdout: Holdout | str) -> pd.DataFrame:
    """The price rows a hold-out keeps: its ``first_party_only`` models only at their lab."""
    h = as_holdout(data, holdout)
    if not h.first_party_only:
        return data.prices
    only = set(h.first_party_only)
    keep = [
        m not in only or data.is_first_party(m, p)
        for m, p in zip(data.prices["model"], data.prices["provider"], strict=True)
    ]
    return data.prices[np.array(keep, dtype=bool)]


def holdout_dataset(data: Dataset, holdout: Holdout | str, variant: str = "full") -> Dataset:
    """``data`` as one refit sees it: the held-out sizes and the removed prices gone
    (and every speed, for ``no_speed``).
    """
    h = as_holdout(data, holdout)
    held = set(h.held_out)
    known = data.known_models[~data.known_models["model"].isin(held)]
    prices = holdout_prices(data, h)
    # A held-out model left without a price (a base checkpoint, or a ladder model
    # priced only at resellers) can no longer be placed: its other rows go too.
    keep = set(prices["model"]) | set(known["model"])
    quality = data.quality[data.quality["model"].isin(keep)]
    speed = data.speed.iloc[0:0] if variant == "no_speed" else data.speed
    speed = speed[speed["model"].isin(keep)]
    hidden = data.hidden_size[data.hidden_size["model"].isin(keep)]
    points = set(zip(prices["provider"], prices["model"], prices["date"], strict=True))
    c = data.cuts
    cut_kept = [
        (p, fm, fd) in points and (p, tm, td) in points
        for p, fm, fd, tm, td in zip(
            c["provider"], c["from_model"], c["from_date"], c["to_model"], c["to_date"], strict=True
        )
    ]
    cuts = c[np.array(cut_kept, dtype=bool)]
    return dataclasses.replace(
        data,
        known_models=known,
        prices=prices,
        quality=quality,
        speed=speed,
        hidden_size=hidden,
        cuts=cuts,
    )


def holdout_design(data: Dataset, hyp: Hypothesis, holdout: Holdout | str, variant: str) -> Design:
    """The design of one calibration refit."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    h = as_holdout(data, holdout)
    design = build_design(holdout_dataset(data, h, variant), hyp)
    if variant == "no_price":
        # A new design with the held-out models' prices masked: a built one is never changed.
        mask = (~design.epochs["model"].isin(set(h.held_out))).to_numpy(float)
        design = dataclasses.replace(design, price_mask=mask)
    return design


def holdout_epochs(data: Dataset, design: Design, holdout: Holdout | str) -> pd.DataFrame:
    """The serving epochs of the full ``design`` that a hold-out keeps."""
    kept = holdout_prices(data, holdout)
    if kept is data.prices:
        return design.epochs
    points = set(zip(kept["model"], kept["provider"], kept["date"], strict=True))
    ep = design.epochs
    mask = [
        (m, p, d) in points for m, p, d in zip(ep["model"], ep["provider"], ep["date"], strict=True)
    ]
    return ep[np.array(mask, dtype=bool)]


# --------------------------------------------------------------------------- classes


def era_of(year: int) -> str:
    """The era of a model first priced in ``year``."""
    if year <= 2022:
        return ERAS[0]
    if year >= 2025:
        return ERAS[3]
    return str(year)


def architecture_of(data: Dataset, model: str) -> str:
    """``dense`` or ``moe``: the ``architecture`` column, else active < total."""
    row = data.known_models.loc[data.known_models["model"] == model].iloc[0]
    arch = str(row.get("architecture") or "").strip().lower()
    if arch in ARCHITECTURES:
        return arch
    return "moe" if float(row["active_params_b"]) < float(row["total_params_b"]) else "dense"


def classify(data: Dataset, epochs: pd.DataFrame, model: str) -> dict[str, str]:
    """The classes of a held-out model in one fit, whose serving epochs are ``epochs``.

    ``regime`` is ``first-party`` when every price the model has in the fit is at its
    lab's own API, else ``reseller``; ``era`` is from the year of its first price in
    the fit; ``architecture`` from ``known_models.csv``.
    """
    ep = epochs[epochs["model"] == model]
    first_party = len(ep) > 0 and all(data.is_first_party(model, p) for p in ep["provider"])
    return {
        "lab": data.lab_of(model) or "",
        "architecture": architecture_of(data, model),
        "regime": REGIMES[0] if first_party else REGIMES[1],
        "era": era_of(min(ep["date"]).year) if len(ep) else "",
        "first_price": str(min(ep["date"])) if len(ep) else "",
    }
