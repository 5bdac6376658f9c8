"""Rule kinds ``device``, ``backend``, ``envvar`` and ``tensor_type`` (placeholder; filled in next)."""
from __future__ import annotations


class LiteralSlots:
    def __init__(self, ctx):
        self.ctx = ctx

    def call(self, node, stack, qual):
        return None

    def string(self, node, stack):
        return None

    def fstring(self, node, stack):
        return None

    def if_chain(self, node, stack):
        return None

    def param(self, node, stack):
        return None

    def finish(self):
        return None
