"""What happened: event types, canonical JSON, the hash chain and upcasters. No I/O here."""

from codirector.events import calls, director, keyframe, memory, quality, retrieval, specs, story, video
from codirector.events.base import (
    GENESIS,
    Draft,
    Event,
    RecordedEvent,
    canonical_json,
    chain_hash,
    event_class,
    event_types,
    referenced_blobs,
    seal,
    utc_now,
)
from codirector.events.calls import (
    JOB_EVENTS,
    RUN_MARKS,
    BudgetReached,
    ModelCalled,
    ProviderJobLost,
    ProviderJobSubmitted,
)
from codirector.events.director import BranchRanked, DirectionChosen, RewardObserved
from codirector.events.keyframe import AlignmentReport, KeyframeGenerated, KeyframeJudged, KeyframeSelected
from codirector.events.memory import EmbeddingRef, EntityRegistered, ViewAdded, ViewSource
from codirector.events.quality import AgentOutputRejected, ShotJudged, StoryJudged
from codirector.events.retrieval import Candidate, DuplicateResolved, MemoryRetrieved, ProposedEntity, Reference
from codirector.events.story import (
    BranchCreated,
    RunSegmentStarted,
    ShotCompleted,
    ShotPlanned,
    ShotPlanRevised,
    ShotStarted,
    StoryCompleted,
    StoryCreated,
    StoryForgotten,
)
from codirector.events.video import EntityUpdate, MotionPromptRefined, VideoAnalyzed, VideoGenerated

MEMORY_EVENT_TYPES = ("EntityRegistered", "ViewAdded")

__all__ = [
    "GENESIS", "JOB_EVENTS", "MEMORY_EVENT_TYPES", "RUN_MARKS", "AgentOutputRejected", "AlignmentReport",
    "BranchCreated", "BranchRanked", "BudgetReached",
    "Candidate", "DirectionChosen", "Draft", "DuplicateResolved", "EmbeddingRef", "EntityRegistered",
    "EntityUpdate", "Event", "KeyframeGenerated", "KeyframeJudged", "KeyframeSelected", "MemoryRetrieved",
    "ModelCalled", "MotionPromptRefined", "ProposedEntity", "ProviderJobLost", "ProviderJobSubmitted",
    "RecordedEvent", "Reference", "RewardObserved", "RunSegmentStarted",
    "ShotCompleted", "ShotJudged", "ShotPlanRevised", "ShotPlanned", "ShotStarted", "StoryCompleted",
    "StoryCreated", "StoryForgotten", "StoryJudged", "VideoAnalyzed", "VideoGenerated", "ViewAdded", "ViewSource",
    "calls", "canonical_json", "chain_hash", "director", "event_class", "event_types", "keyframe", "memory",
    "quality", "referenced_blobs", "retrieval", "seal", "specs", "story", "utc_now", "video",
]
