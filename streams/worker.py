"""The Faust worker of `mugpos worker`: reconnect backoff, throttled logs, no start-up spinner."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from infra.kafka_backoff import install_reconnect_backoff
from infra.log_throttle import throttle_handlers
from infra.logging_setup import format_handlers


class PipelineWorker(faust.Worker):
    """A `faust.Worker` that stays quiet and cheap while the broker is down.

    * Its Kafka clients back off between reconnects (infra.kafka_backoff): installed before Faust
      creates its producer and consumer.
    * Its log handlers aggregate repeated records (infra.log_throttle). Faust (mode) replaces the
      root logger's handlers when the worker starts, so a filter added earlier would be thrown
      away; `on_setup_root_logger` runs right after, on the new handlers.
    * On SIGTERM it first runs `before_stop` (agents.pipeline's drain: stop taking input, finish
      and commit what is in hand), then stops as Faust does.
    * Its log lines are formatted as every `mugpos` process's (infra.logging_setup: JSON, or
      console lines on a terminal; `log_format`), Faust's own included, and at its `loglevel`.
    * No start-up spinner: at WARNING, Faust adds a handler for it that takes every DEBUG record
      and leaves the root logger at DEBUG for the worker's whole life, so every library builds a
      record for each of its debug calls (aiokafka's fetch loop, botocore's request signing) only
      to throw it away.
    """

    def __init__(
        self,
        *args: Any,
        before_stop: Callable[[], Awaitable[None]] | None = None,
        log_format: str = "auto",
        **kwargs: Any,
    ) -> None:
        install_reconnect_backoff()
        self._log_format = log_format
        super().__init__(*args, **kwargs)
        self.spinner = None
        self._before_stop = before_stop

    async def _stop_on_signal(self, signal: signal.Signals) -> None:
        """SIGTERM/SIGINT: let the pipeline finish and commit what it holds while the consumer,
        producer and agents still run; Faust stops the consumer first of all when it stops."""
        if self._before_stop is not None:
            try:
                await self._before_stop()
            except Exception:  # stopping goes on regardless: the inputs are redone elsewhere
                logging.getLogger(__name__).exception("could not settle before stopping")
        await super()._stop_on_signal(signal)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        throttle_handlers(logger.handlers)
        format_handlers(logger.handlers, self._log_format)  # no credential in its log either
