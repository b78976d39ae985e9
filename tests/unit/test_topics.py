"""Topic names and their declared specs come from settings."""

from __future__ import annotations

from agents.pipeline import FUSED, consumer_group
from core.config import Settings
from infra.kafka_admin import topic_specs
from schemas.topics import TopicNames


def test_public_topic_names_follow_the_prefix() -> None:
    names = TopicNames("site-a")
    assert names.public() == (
        "site-a.images.v1",
        "site-a.uploads.v1",
        "site-a.results.v1",
        "site-a.dlq.v1",
        "site-a.alerts.v2",
        "site-a.control.v1",
    )


def test_specs_take_partitions_replication_and_retention_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        topic_prefix="p",
        topic_partitions=9,
        topic_replication=3,
        topic_retention_ms=1234,
    )
    specs = {spec.name: spec for spec in topic_specs(settings)}
    names = TopicNames("p")
    assert set(specs) == set(names.public()) | set(names.stages())
    assert {(s.partitions, s.replication) for s in specs.values()} == {(9, 3)}
    assert {s.configs["retention.ms"] for s in specs.values()} == {"1234"}
    assert specs["p.control.v1"].configs["cleanup.policy"] == "compact,delete"


def test_each_worker_role_has_a_consumer_group_of_its_own() -> None:
    """Fused workers share one group; a split role's group names its stages in pipeline order,
    whatever order `--stage` listed them in."""
    assert consumer_group("acme", [FUSED]) == "acme-pipeline"
    assert consumer_group("acme", ["inference"]) == "acme-pipeline-inference"
    split = consumer_group("acme", ["analysis", "preprocess"])
    assert split == "acme-pipeline-preprocess-analysis"
    roles = ([FUSED], ["inference"], ["analysis", "preprocess"], ["preprocess"])
    assert len({consumer_group("acme", role) for role in roles}) == len(roles)
