"""Non-intrusive load monitoring: appliance detection from one monitor's aggregate power.

``NilmModel`` (supervised, gradient-boosted trees) gives per-appliance power, on/off timelines
and energy; ``OnlineDisaggregator`` streams readings into it; ``EventClusterer`` is the
unsupervised first pass; ``baselines`` holds Mean, CO and FHMM for comparison.
"""

from wattwatch.ai.nilm.cluster import CandidateAppliance, EventClusterer
from wattwatch.ai.nilm.events import detect_events, pair_events
from wattwatch.ai.nilm.features import FeatureSpec
from wattwatch.ai.nilm.model import NilmModel, OnInterval, on_intervals
from wattwatch.ai.nilm.online import ApplianceStatus, OnlineDisaggregator

__all__ = [
    "ApplianceStatus",
    "CandidateAppliance",
    "EventClusterer",
    "FeatureSpec",
    "NilmModel",
    "OnInterval",
    "OnlineDisaggregator",
    "detect_events",
    "on_intervals",
    "pair_events",
]
