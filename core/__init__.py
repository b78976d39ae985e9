"""Pure domain: configuration, models, positioning and rules. No Kafka, HTTP or database imports."""
