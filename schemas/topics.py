"""Public Kafka topic names, derived from one prefix so several deployments can share a cluster."""

from __future__ import annotations

from dataclasses import dataclass

# Stage messages carry the letterboxed model input as PNG in JSON (base64): about 1.7 MB for a
# noisy 640 px picture, over Kafka's 1 MB default. Stage topics, the pipeline's producer and its
# consumer all allow this much.
STAGE_MESSAGE_MAX_BYTES = 8 * 1024 * 1024
# The largest image a producer of this project puts inside a message of the images or uploads
# topic (the API, `mugpos ingest`): half of Kafka's default message limit (message.max.bytes /
# max.request.size, 1 MiB), room for headers and the record batch on any broker left at its
# defaults. The API sends a larger one by claim check; ingestion downscales a larger frame.
INLINE_MAX_BYTES = 512 * 1024
# Source ids that name no particular camera: what an image without a source-id header, an upload
# without a source, or one from `mugpos submit` without --source-id is filed under.
UNNAMED_SOURCES = frozenset({"unknown", "api", "cli"})


def partition_key(source_id: str, request_id: str) -> bytes:
    """The Kafka key of an image and of its stage messages: frames of one named source share a
    partition, so they are analysed in order (tracking over time needs that); images of no
    particular source are spread by request id."""
    return (request_id if source_id in UNNAMED_SOURCES else source_id).encode()


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The versioned topics of one deployment; the `.v1` suffix changes only with the contract."""

    prefix: str

    @property
    def images(self) -> str:
        """Input: raw image bytes (or a claim-check reference) from any Kafka client."""
        return f"{self.prefix}.images.v1"

    @property
    def uploads(self) -> str:
        """Input, interactive: uploads through the API (REST, `mugpos submit`), in the images
        topic's format. Workers take them in an agent of their own, ahead of the images topic, so
        a client waiting for its result never waits behind a camera's backlog."""
        return f"{self.prefix}.uploads.v1"

    @property
    def results(self) -> str:
        """Output: one AnalysisResult per request, keyed by request id."""
        return f"{self.prefix}.results.v1"

    @property
    def dlq(self) -> str:
        """Dead letters: inputs that could not be processed, with a reason code."""
        return f"{self.prefix}.dlq.v1"

    @property
    def alerts(self) -> str:
        """Alert events (raised, resolved) of rules with alert or webhook actions."""
        return f"{self.prefix}.alerts.v2"

    @property
    def control(self) -> str:
        """Operator commands and worker status for the control plane."""
        return f"{self.prefix}.control.v1"

    @property
    def prepared(self) -> str:
        """Internal: preprocess -> inference."""
        return f"{self.prefix}.stage.prepared.v1"

    @property
    def detected(self) -> str:
        """Internal: inference -> analysis."""
        return f"{self.prefix}.stage.detected.v1"

    @property
    def pipeline_group(self) -> str:
        """Consumer group (Faust app id) of the fused workers, and the stem of every role's."""
        return f"{self.prefix}-pipeline"

    def role_group(self, stages: tuple[str, ...]) -> str:
        """The consumer group of a split deployment's role: the workers running these stages (in
        pipeline order). Each role is a group of its own: aiokafka has no cooperative
        rebalancing, so in one shared group every scale step of the GPU workers would stop every
        CPU worker too. Two roles must not share a stage (both would process its messages)."""
        return f"{self.pipeline_group}-{'-'.join(stages)}"

    def consumed(self) -> tuple[str, ...]:
        """The topics pipeline workers consume, in stage order."""
        return (self.images, self.uploads, self.prepared, self.detected)

    def stages(self) -> tuple[str, ...]:
        return (self.prepared, self.detected)

    def public(self) -> tuple[str, ...]:
        """Every topic the project declares itself (stage topics are added by the pipeline)."""
        return (self.images, self.uploads, self.results, self.dlq, self.alerts, self.control)
