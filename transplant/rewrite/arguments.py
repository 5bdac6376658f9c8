"""Rule kind ``arguments`` (placeholder; filled in next)."""
from __future__ import annotations


class ArgumentRules:
    def __init__(self, ctx, index):
        self.ctx = ctx

    def call(self, node, stack, qual):
        return None

    def decorator(self, node, stack):
        return None
