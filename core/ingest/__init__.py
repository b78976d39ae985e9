"""Camera ingestion, the pure part (`mugpos ingest`): what a source URL names, sampling intervals
and schedules, the fingerprint that tells a changed picture from the same one, the wire form
of a sampled frame and the counters a status line shows. The capture adapters (OpenCV readers,
the folder watcher, the Kafka sender) are `infra.capture`."""
