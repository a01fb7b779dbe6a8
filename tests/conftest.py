"""Shared pytest configuration: import path and hypothesis profiles.

Profiles (select with ``HYPOTHESIS_PROFILE=<name>``): ``ci`` (default: modest example counts, no deadline —
timings on shared machines are noisy and exact arithmetic is slow by design), ``dev`` (fewer examples, for
quick iteration) and ``thorough`` (many examples, for hunting rare bugs).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("lsrl") is None:
    sys.path.insert(0, str(_ROOT / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers: strategies, reference_eval

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The default run is derandomized: CI sees the examples a developer saw, so a red run is a real regression,
# not a new draw; `thorough` keeps hunting with fresh random examples.
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
