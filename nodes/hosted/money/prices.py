"""What a hosted node will cost before it runs, and where that number comes from.

A node describes one run as a `CostShape`: which provider and endpoint, a `variant` for inputs
that change the price in ways no formula captures (the SDXL refiner, a SinkIn model or
ControlNet), and the inputs a price scales with (requests, images per request, pixels, steps,
LCM's half price). The estimate comes, in this order, from:

1. this account's own measured cost of the same request (same shape);
2. its measured cost of the same endpoint and variant, scaled by the shape's units;
3. a published price (PUBLISHED below, each with its source), scaled the same way;
4. otherwise None: "unknown", never a made-up number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import ledger as spending

REFERENCE_PIXELS = 512 * 512  # units are counted in 512x512 images


@dataclass(frozen=True)
class CostShape:
    provider: str
    endpoint: str
    variant: str = ""
    requests: int = 1               # paid requests (an img2img batch sends one per image)
    images: int = 1                 # images each request makes
    pixels: int | None = None       # width x height, None when the request does not say
    steps: int | None = None        # denoising steps, None when the request does not say
    factor: float = 1.0             # SinkIn's LCM costs half

    @property
    def kind(self) -> str:
        return f"{self.provider}|{self.endpoint}|{self.variant}"

    @property
    def signature(self) -> str:
        return json.dumps([self.requests, self.images, self.pixels, self.steps, self.factor])

    @property
    def units(self) -> float:
        size = self.pixels / REFERENCE_PIXELS if self.pixels else 1.0
        return self.requests * self.images * size * (self.steps or 1) * self.factor

    def describe(self) -> str:
        """"2 images, 1024x1024, 25 steps" (what a basis quotes)."""
        count = self.requests * self.images
        parts = [f"{count} image{'s' if count != 1 else ''}"]
        if self.pixels:
            parts.append(f"{self.pixels / 1e6:.2g} MP")
        if self.steps:
            parts.append(f"{self.steps} steps")
        if self.factor != 1.0:
            parts.append("LCM")
        return ", ".join(parts)


@dataclass(frozen=True)
class Published:
    credits: float
    shape: CostShape
    source: str


# Published prices: Segmind's credits are US dollars (docs.segmind.com, "Pricing and Billing":
# the usage page shows "how much you have left in your account (in dollars)"), and each model
# page shows "~$X" for its own example request. Only the two endpoints whose page shows a price
# are listed; the others stay unknown until this account has run them. SinkIn publishes no price.
PUBLISHED: dict[tuple[str, str, str], Published] = {
    ("segmind", "sdxl1.0-txt2img", "refiner"): Published(
        0.008, CostShape("segmind", "sdxl1.0-txt2img", "refiner", pixels=896 * 1152, steps=25),
        "segmind.com/models/sdxl1.0-txt2img: ~$0.008 for its example, 1 image, 896x1152, 25 steps, refiner"),
    ("segmind", "sdxl1.0-realvis", ""): Published(
        0.01, CostShape("segmind", "sdxl1.0-realvis", pixels=896 * 1152, steps=25),
        "segmind.com/models/sdxl1.0-realvis: ~$0.01 for its example, 1 image, 896x1152, 25 steps"),
}


@dataclass(frozen=True)
class Estimate:
    credits: float | None
    basis: str

    def as_dict(self, provider: str) -> dict:
        return {"provider": provider, "credits": self.credits, "basis": self.basis}


def rounded(credits: float) -> float:
    """Four significant digits: an estimate is not more precise than that."""
    return float(f"{credits:.4g}")


def estimate(shape: CostShape, ledger: dict | None = None) -> Estimate:
    """The credits one run of `shape` will cost, and the basis of that number."""
    ledger = spending.read() if ledger is None else ledger
    kind = ledger.get("kinds", {}).get(shape.kind)
    if isinstance(kind, dict):
        exact = kind.get("exact", {})
        if isinstance(exact, dict) and isinstance(exact.get(shape.signature), (int, float)):
            return Estimate(rounded(exact[shape.signature]), "measured: what your last run with these settings cost")
        per_unit = kind.get("per_unit")
        if isinstance(per_unit, (int, float)) and per_unit >= 0:
            seen = kind.get("described") or "another size"
            return Estimate(rounded(per_unit * shape.units),
                            f"scaled from your measured run ({seen}: {rounded(kind.get('credits', 0))} credits)")
    published = PUBLISHED.get((shape.provider, shape.endpoint, shape.variant))
    if published is not None:
        scale = shape.units / published.shape.units
        return Estimate(rounded(published.credits * scale), f"published price, scaled: {published.source}")
    return Estimate(None, "unknown: no run of this kind measured yet, and no published price")


def record_measured(shape: CostShape, credits: float, release: str | None = None) -> None:
    """Remember what a run of `shape` cost (and add it to today's spend, replacing its hold)."""
    spending.record(shape.provider, credits, kind=shape.kind, signature=shape.signature, units=shape.units,
                    described=shape.describe(), release=release)


# What a request of unknown cost is counted as toward the caps when nothing of its provider was
# ever measured: deliberately high per unit (a 512x512 image, one step), so a cap errs towards
# stopping. Segmind: about ten times its published SDXL price (0.008 for 98 units); SinkIn
# publishes nothing: about 2 credits for a 512x768 image of 30 steps.
CAUTIOUS_PER_UNIT = {"segmind": 0.001, "sinkin": 0.05}


def counted(shape: CostShape, ledger: dict | None = None) -> Estimate:
    """What a request that may have cost money counts toward the caps: its estimate, else the
    highest per-unit cost measured for its provider, else CAUTIOUS_PER_UNIT; scaled by its units."""
    ledger = spending.read() if ledger is None else ledger
    found = estimate(shape, ledger)
    if found.credits is not None:
        return found
    measured = [kind.get("per_unit") for name, kind in ledger.get("kinds", {}).items()
                if name.startswith(f"{shape.provider}|") and isinstance(kind, dict)]
    measured = [v for v in measured if isinstance(v, (int, float)) and v >= 0]
    if measured:
        return Estimate(rounded(max(measured) * shape.units), "counted: the highest cost per image measured for "
                        "this provider, scaled")
    per_unit = CAUTIOUS_PER_UNIT.get(shape.provider, 0.0)
    return Estimate(rounded(per_unit * shape.units), "counted: a cautious default, nothing of this provider measured yet")
