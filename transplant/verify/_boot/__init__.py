"""The bootstrap folder ``transplant verify`` puts first on both runs' PYTHONPATH (see sitecustomize.py)."""
