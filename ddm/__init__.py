"""ddm: masked discrete diffusion over token streams."""

__version__ = "0.1.0"
