"""Hypothesis profiles of the reliability fuzz tests, picked by environment variable.

CI runs ``wattwatch-ci`` (a few hundred examples per property). ``WATTWATCH_LONG=1`` selects
``wattwatch-long`` (10,000 examples per property, i.e. per decoder); ``WATTWATCH_FUZZ_EXAMPLES=N``
overrides the count of either.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("WATTWATCH_LONG", "") not in ("", "0")
CI_EXAMPLES = 200
LONG_EXAMPLES = 10_000
_override = os.environ.get("WATTWATCH_FUZZ_EXAMPLES")
EXAMPLES = int(_override) if _override else (LONG_EXAMPLES if LONG else CI_EXAMPLES)

_COMMON = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    "derandomize": False,
    "print_blob": True,
}
settings.register_profile("wattwatch-ci", max_examples=CI_EXAMPLES, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("wattwatch-long", max_examples=LONG_EXAMPLES, **_COMMON)  # type: ignore[arg-type]


def fuzz_settings(scale: float = 1.0) -> settings:
    """The selected profile, with ``scale`` × its examples (for slow, end-to-end properties)."""
    base = settings.get_profile("wattwatch-long" if LONG else "wattwatch-ci")
    return settings(base, max_examples=max(10, int(EXAMPLES * scale)))


def timeout_for(examples: int, per_example_s: float) -> int:
    """A pytest timeout that fits a long run (the suite's default is 300 s per test)."""
    return max(300, int(examples * per_example_s) + 60)
