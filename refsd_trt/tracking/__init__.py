"""People across a video's frames: track ids (``PeopleTracker``), the temporal guard that removes a
tracked person in the frames the detector misses them (``TemporalGuard``), and the streaming loop
that puts them together with the anonymizer (``TrackedVideo``)."""

from refsd_trt.tracking.guard import GuardBox, TemporalGuard, with_guard
from refsd_trt.tracking.stream import DEFAULT_GAP_FRAMES, FrameOut, TrackedVideo, TrackRecord, track_key
from refsd_trt.tracking.tracker import DEFAULT_TRACKER, PeopleTracker

__all__ = ["DEFAULT_GAP_FRAMES", "DEFAULT_TRACKER", "FrameOut", "GuardBox", "PeopleTracker", "TemporalGuard",
           "TrackRecord", "TrackedVideo", "track_key", "with_guard"]
