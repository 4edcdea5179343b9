"""Loom's own Python kernel: the server side of the Jupyter messaging protocol."""
