"""spcwatch.models: pure, incremental statistical process control.

No I/O, no Faust, no wall clock: event timestamps (epoch seconds) drive time.
See models/README.md for the API, the conventions and the state format.
"""

from .baseline import Moments, RollingBaseline, SlotProfile, slot_of
from .config import DetectorConfig, RobustConfig
from .detector import (
    EXCLUDED,
    LATE,
    MISSING,
    OK,
    STATE_VERSION,
    STATUS_NAMES,
    WARMUP,
    Batch,
    SeriesDetector,
    StateError,
    Verdict,
)
from .episodes import EpisodeEvent, EpisodeTracker, episode_id
from .robust import RobustBatch, RobustDetector, RobustVerdict
from .rules import (
    ALL_RULES,
    RULE_IDS,
    WESTERN_ELECTRIC,
    RuleState,
    evaluate_rules,
    mask_rules,
    rules_mask,
)

__all__ = [
    "ALL_RULES",
    "EXCLUDED",
    "LATE",
    "MISSING",
    "OK",
    "RULE_IDS",
    "STATE_VERSION",
    "STATUS_NAMES",
    "WARMUP",
    "WESTERN_ELECTRIC",
    "Batch",
    "DetectorConfig",
    "EpisodeEvent",
    "EpisodeTracker",
    "Moments",
    "RobustBatch",
    "RobustConfig",
    "RobustDetector",
    "RobustVerdict",
    "RollingBaseline",
    "RuleState",
    "SeriesDetector",
    "SlotProfile",
    "StateError",
    "Verdict",
    "episode_id",
    "evaluate_rules",
    "mask_rules",
    "rules_mask",
    "slot_of",
]
