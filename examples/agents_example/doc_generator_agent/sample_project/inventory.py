"""Stock levels of a small shop, kept in memory."""

from dataclasses import dataclass, field


@dataclass
class Inventory:
    """Items on hand, by SKU."""

    stock: dict[str, int] = field(default_factory=dict)

    def receive(self, sku: str, quantity: int) -> int:
        """Add a delivery; returns the new count."""
        if quantity <= 0:
            raise ValueError("a delivery brings at least one item")
        self.stock[sku] = self.stock.get(sku, 0) + quantity
        return self.stock[sku]

    def ship(self, sku: str, quantity: int) -> int:
        """Take items out for an order; refuses to go below zero."""
        have = self.stock.get(sku, 0)
        if quantity > have:
            raise ValueError(f"only {have} of {sku} in stock")
        self.stock[sku] = have - quantity
        return self.stock[sku]

    def low(self, threshold: int = 5) -> list[str]:
        """SKUs at or under the reorder threshold."""
        return sorted(sku for sku, n in self.stock.items() if n <= threshold)
