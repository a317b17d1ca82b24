"""The simulator's menu (UC-PR-01): 58 SPUs in five categories with prices, unit costs and a Zipf-like
popularity, baskets that pair items the way coffee-shop customers do, and the menu scenarios.

Fixed catalogue (its own seed, independent of ``--seed``), so the scenario targets never move. Baskets draw
exactly one uniform per item from the order's generator, as ``random.choices`` did before, so the other domains'
random numbers (quantities, discounts, channels, statuses) are unchanged by the basket model.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Product:
    """One menu item (SPU) of the catalogue."""

    spu: str
    name: str
    price_minor: int
    cost_minor: int
    popularity: float
    category: str = "uncategorised"  # menu category (UC-PR-01)


DAY = 86400.0
CATEGORIES = ("espresso", "iced", "tea", "bakery", "food")
# (price choices in cents, unit cost as a share of the list price)
_ECONOMICS = {"espresso": ((425, 450, 475, 495, 525, 550, 575), (0.18, 0.30)),
              "iced": ((450, 475, 495, 525, 550, 575, 595), (0.20, 0.32)),
              "tea": ((395, 425, 450, 475, 495, 525, 550), (0.15, 0.28)),
              "bakery": ((295, 325, 350, 375, 395, 425), (0.30, 0.45)),
              "food": ((395, 450, 525, 595, 650, 695, 750), (0.35, 0.50))}
_NAMES = ("Latte", "Iced Latte", "Americano", "Iced Americano", "Coconut Latte", "Iced Coconut Latte",
          "Cappuccino", "Flat White", "Mocha", "Iced Mocha", "Caramel Latte", "Vanilla Latte", "Cold Brew",
          "Orange Americano", "Velvet Latte", "Matcha Latte", "Iced Matcha Latte", "Oat Latte",
          "Hazelnut Latte", "Pistachio Latte", "Brown Sugar Latte", "Espresso", "Cortado", "Macchiato",
          "Peach Oolong Tea", "Jasmine Tea", "Lemon Tea", "Grapefruit Cold Brew Tea", "Chai Latte",
          "Hot Chocolate", "Strawberry Coconut Drink", "Mango Smoothie", "Blueberry Smoothie",
          "Sparkling Coffee", "Tiramisu Latte", "Salted Caramel Cold Brew", "Honey Oat Latte",
          "Coconut Cold Brew", "Raspberry Americano", "Lavender Latte",
          "Butter Croissant", "Almond Croissant", "Chocolate Croissant", "Blueberry Muffin", "Banana Bread",
          "Cheese Danish", "Egg & Cheese Sandwich", "Turkey Sandwich", "Ham & Swiss Sandwich", "Avocado Toast",
          "Bagel & Cream Cheese", "Yogurt Parfait", "Fruit Cup", "Cookie", "Brownie", "Cinnamon Roll",
          "Granola Bar", "Madeleine")
_FOOD = {"Egg & Cheese Sandwich", "Turkey Sandwich", "Ham & Swiss Sandwich", "Avocado Toast",
         "Bagel & Cream Cheese", "Yogurt Parfait", "Fruit Cup", "Granola Bar"}
_TEA = {"Matcha Latte", "Iced Matcha Latte", "Chai Latte", "Hot Chocolate", "Strawberry Coconut Drink",
        "Mango Smoothie", "Blueberry Smoothie"}
# What a second item in a basket tends to be, by the category of the first one.
COMPANIONS = {"espresso": ("bakery",), "iced": ("food", "bakery"), "tea": ("bakery",), "bakery": ("espresso",),
              "food": ("iced", "espresso")}
# Set by hand: the chain's star must be one (high popularity, CM well above its category's benchmark).
_FIXED = {"Latte": (575, 110), "Oat Latte": (575, 100)}
PAIR_P = 0.45  # chance that a further item is a companion of the first (else: drawn like the first)


def category_of(name: str) -> str:
    if name in _FOOD:
        return "food"
    if name in _TEA or name.endswith("Tea"):
        return "tea"
    if name in ("Butter Croissant", "Almond Croissant", "Chocolate Croissant", "Blueberry Muffin", "Banana Bread",
                "Cheese Danish", "Cookie", "Brownie", "Cinnamon Roll", "Madeleine"):
        return "bakery"
    if name.startswith("Iced") or "Cold Brew" in name or name == "Sparkling Coffee":
        return "iced"
    return "espresso"


def catalogue() -> tuple[Product, ...]:
    """The 58 SPUs: ``SPU0001`` Latte (the chain's star) ... ``SPU0058`` Madeleine."""
    rng = random.Random("spcwatch-menu-v2")
    products = []
    for i, name in enumerate(_NAMES):
        cat = category_of(name)
        prices, (lo, hi) = _ECONOMICS[cat]
        price = rng.choice(prices)
        cost = round(price * rng.uniform(lo, hi))
        price, cost = _FIXED.get(name, (price, cost))
        food = cat in ("bakery", "food")
        products.append(Product(f"SPU{i + 1:04d}", name, price, cost,
                                popularity=1.0 / (1 + i) ** 0.9 * (0.6 if food else 1.0), category=cat))
    return tuple(products)


def spu_of(name: str) -> str:
    return f"SPU{_NAMES.index(name) + 1:04d}"


# --------------------------------------------------------------------------- scenarios

COST_ITEM = "Latte"  # the star whose cost rises
COST_FACTOR = 0.60  # its new unit cost, as a share of the list price (usually ~25 %)
CAMPAIGN_ITEM = "Oat Latte"  # a puzzle put on a deep discount
CAMPAIGN_DISCOUNT = 0.50
CAMPAIGN_BOOST = 3.0  # the campaign triples its share of first picks
COST_SCENARIO, CAMPAIGN_SCENARIO = "menu-cost-increase", "menu-discount-campaign"


class _Config(Protocol):
    def active(self, name: str) -> bool: ...
    def window(self, name: str) -> tuple[float, float]: ...


@dataclass(frozen=True, slots=True)
class MenuDay:
    """One day's menu as the scenarios make it: per product its unit cost and forced discount share (None: the
    usual coupons), and the popularity weights (cumulative, for :meth:`basket`)."""

    products: tuple[Product, ...]
    costs: tuple[int, ...]
    forced: tuple[float | None, ...]
    cum: tuple[float, ...]
    by_category: dict[str, tuple[tuple[int, ...], tuple[float, ...]]]

    @classmethod
    def build(cls, menu: tuple[Product, ...], cfg: _Config | None, ts: float) -> MenuDay:
        costs = [p.cost_minor for p in menu]
        forced: list[float | None] = [None] * len(menu)
        weights = [p.popularity for p in menu]
        if cfg is not None and cfg.active(COST_SCENARIO) and _within(cfg, COST_SCENARIO, ts):
            i = _index(menu, COST_ITEM)
            costs[i] = round(menu[i].price_minor * COST_FACTOR)
        if cfg is not None and cfg.active(CAMPAIGN_SCENARIO) and _within(cfg, CAMPAIGN_SCENARIO, ts):
            i = _index(menu, CAMPAIGN_ITEM)
            forced[i] = CAMPAIGN_DISCOUNT
            weights[i] *= CAMPAIGN_BOOST
        by_cat: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}
        for cat in {p.category for p in menu}:
            idx = tuple(i for i, p in enumerate(menu) if p.category == cat)
            by_cat[cat] = idx, tuple(accumulate(weights[i] for i in idx))
        return cls(menu, tuple(costs), tuple(forced), tuple(accumulate(weights)), by_cat)

    def basket(self, rng: random.Random, n_items: int) -> list[int]:
        """Indices of ``n_items`` products, one uniform of ``rng`` each: the first by popularity; each further
        one with probability :data:`PAIR_P` a companion of the first's category (by popularity there), else by
        popularity again (repeats allowed, as with ``random.choices``)."""
        first = _pick(self.cum, rng.random())
        out = [first]
        companions = COMPANIONS.get(self.products[first].category, ())
        pool = [c for c in companions if c in self.by_category]
        for _ in range(n_items - 1):
            u = rng.random()
            if pool and u < PAIR_P:
                v = u / PAIR_P * len(pool)
                idx, cum = self.by_category[pool[min(int(v), len(pool) - 1)]]
                out.append(idx[_pick(cum, v - int(v))])
            else:
                out.append(_pick(self.cum, (u - PAIR_P) / (1 - PAIR_P) if pool else u))
        return out


def _pick(cum: tuple[float, ...], u: float) -> int:
    return min(bisect_right(cum, u * cum[-1]), len(cum) - 1)


def _index(menu: tuple[Product, ...], name: str) -> int:
    return next(i for i, p in enumerate(menu) if p.name == name)


def _within(cfg: _Config, name: str, ts: float) -> bool:
    lo, hi = cfg.window(name)
    return lo <= ts < hi


def item(product: Product, cost_minor: int, qty: int, discount_minor: int, money: Any) -> dict[str, Any]:
    """An order item of the contract, with its menu category."""
    return {"spu": product.spu, "name": product.name, "qty": qty, "unit_price": money(product.price_minor),
            "discount": money(discount_minor), "unit_cost": money(cost_minor), "category": product.category}
