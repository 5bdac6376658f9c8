"""Bootstrap modules put on the children's PYTHONPATH by ``transplant run`` (see runner.py).

This directory is a package only so that it ships with the wheel; its modules are meant to be
imported as top-level modules (``sitecustomize``, ``_transplant_torchrun``).
"""
