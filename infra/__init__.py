"""Adapters to the outside world: Kafka admin, MongoDB, Redis, object store, service launchers."""
