"""Prices with volume discounts and tax."""

DISCOUNTS = [(100, 0.15), (20, 0.05)]  # (minimum quantity, discount)


def unit_price(base: float, quantity: int) -> float:
    """The price of one item when ``quantity`` are bought together."""
    for minimum, discount in DISCOUNTS:
        if quantity >= minimum:
            return round(base * (1 - discount), 2)
    return base


def order_total(base: float, quantity: int, tax_rate: float = 0.2) -> float:
    """What the customer pays, tax included."""
    return round(unit_price(base, quantity) * quantity * (1 + tax_rate), 2)
