"""A task with a known distribution: the yardstick of the core and the samplers.

`source.py` holds the exact distribution (a unifilar HMM), `task.py` the task
registered as `synthetic` (data, metrics, report).
"""

from .source import SourceSpec, UnifilarHMM

__all__ = ["SourceSpec", "UnifilarHMM"]
