"""Group the models of unknown size into report families, with their claims and price cuts.

A family (``data/families.csv``: a name, a title and glob patterns over model
names) gets one report page. Its public claims (``data/claims.csv``) are drawn
on its charts as claims, never used as data, and its price cuts
(``data/cuts.csv``: pairs of price points a provider compared itself) are
decomposed into their causes by :mod:`llmsize.outputs.decompose`. A cut belongs to the
family of the model it cuts to.

Without ``families.csv`` every model of unknown size forms one family; models
that no pattern matches form a last family, ``other``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np
import xarray as xr

from llmsize.inputs.data import Dataset
from llmsize.physics.design import Design

#: "About X" in a claim: within this factor of X either way.
ABOUT_FACTOR = 1.5


@dataclass(frozen=True)
class SizeClaim:
    """A public statement of a model's size (billions), shown next to the posterior."""

    pattern: str
    quantity: str  # "params_total_b" or "params_active_b"
    params_b: float
    label: str
    date: dt.date
    source: str

    def applies_to(self, model: str) -> bool:
        """Whether the claim is about ``model`` (its name matches the claim's pattern)."""
        return fnmatchcase(model, self.pattern)


@dataclass(frozen=True)
class PriceCut:
    """Two price points of one provider: ``before`` and ``after`` are epoch indices."""

    provider: str
    from_model: str
    from_date: dt.date
    to_model: str
    to_date: dt.date
    before: int
    after: int
    source: str

    @property
    def label(self) -> str:
        """The cut as the pages name it: model and dates, or one model's two dates."""
        if self.from_model == self.to_model:
            return f"{self.to_model}: {self.from_date} to {self.to_date}"
        return f"{self.from_model} ({self.from_date}) to {self.to_model} ({self.to_date})"


@dataclass
class Family:
    """Models of unknown size reported together on one page."""

    name: str
    title: str
    models: list[str]
    epochs: list[int]  # indices into ``design.epochs``, by date
    claims: list[SizeClaim] = field(default_factory=list)
    cuts: list[PriceCut] = field(default_factory=list)

    @property
    def page(self) -> str:
        """File name (without suffix) of the family's page in a report folder."""
        return f"family-{self.name}"


def epochs_of(design: Design, models: list[str]) -> list[int]:
    """Epochs of ``models``, by date then model name."""
    rows = [i for i, m in enumerate(design.epochs["model"]) if m in models]
    return sorted(
        rows, key=lambda i: (design.epochs["date"].iloc[i], design.epochs["model"].iloc[i])
    )


def report_families(data: Dataset, design: Design) -> list[Family]:
    """The families of ``design``'s models of unknown size, in the order of ``families.csv``."""
    claims = [
        SizeClaim(
            pattern=r["model"],
            quantity=r["quantity"],
            params_b=float(r["params_b"]),
            label=r["label"],
            date=r["date"],
            source=r["source"],
        )
        for _, r in data.claims.iterrows()
    ]
    epoch_at = {(r.provider, r.model, r.date): i for i, r in enumerate(design.epochs.itertuples())}
    cuts = []
    for _, r in data.cuts.iterrows():
        before = epoch_at.get((r["provider"], r["from_model"], r["from_date"]))
        after = epoch_at.get((r["provider"], r["to_model"], r["to_date"]))
        if before is None or after is None:
            continue  # e.g. a provider outside the GPU serving model
        cuts.append(
            PriceCut(
                provider=r["provider"],
                from_model=r["from_model"],
                from_date=r["from_date"],
                to_model=r["to_model"],
                to_date=r["to_date"],
                before=before,
                after=after,
                source=r["source"],
            )
        )

    groups: dict[str, tuple[str, list[str]]] = {}
    for _, r in data.families.iterrows():
        groups.setdefault(r["family"], (r["title"], []))[1].append(r["pattern"])
    if not groups:
        groups = {"all": ("Models of unknown size", ["*"])}
    taken: set[str] = set()
    families = []
    for name, (title, patterns) in groups.items():
        models = [
            m for m in design.unknown if m not in taken and any(fnmatchcase(m, p) for p in patterns)
        ]
        if models:
            taken.update(models)
            families.append(Family(name=name, title=title, models=models, epochs=[]))
    rest = [m for m in design.unknown if m not in taken]
    if rest:
        families.append(
            Family(name="other", title="Other models of unknown size", models=rest, epochs=[])
        )
    for fam in families:
        fam.epochs = epochs_of(design, fam.models)
        fam.claims = [c for c in claims if any(c.applies_to(m) for m in fam.models)]
        fam.cuts = sorted(
            (c for c in cuts if c.to_model in fam.models),
            key=lambda c: (c.to_date, c.to_model, c.from_date),
        )
    return families


def claim_probability(ds: xr.Dataset, claim: SizeClaim, model: str) -> float:
    """Share of draws within :data:`ABOUT_FACTOR` of the claimed size."""
    if claim.quantity not in ds:
        return float("nan")
    x = ds[claim.quantity].sel(unknown_model=model).values.reshape(-1)
    lo, hi = claim.params_b / ABOUT_FACTOR, claim.params_b * ABOUT_FACTOR
    return float(np.mean((x >= lo) & (x <= hi)))
