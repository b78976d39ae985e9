"""Contracts shared by every layer: topic names and message models. Depends on nothing of ours."""

from schemas.topics import TopicNames

__all__ = ["TopicNames"]
