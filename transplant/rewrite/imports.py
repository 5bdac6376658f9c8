"""Rule kind ``import`` (placeholder; filled in next)."""
from __future__ import annotations


class ImportEdits:
    def __init__(self, ctx):
        self.ctx = ctx

    def finish(self):
        return None
