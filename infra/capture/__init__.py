"""Camera ingestion adapters (`mugpos ingest`): OpenCV readers for video files and live streams,
a folder watcher, and the bounded Kafka sender. The pure part (sampling, change detection,
headers, counters) is `core.ingest`; `infra.capture.runner` puts them together."""
