"""The console logger of runs the CLI executes in process: Dagster's, without the tracebacks of steps and runs
that an interrupt ended (mm prints one line for those; the event log keeps the tracebacks)."""

from __future__ import annotations

import logging

import dagster as dg

from mm_assets.interrupts import INTERRUPT_ERRORS


def _interrupt_error(record: logging.LogRecord) -> bool:
    """Whether the record is a Dagster event about an error that an interrupt raised."""
    event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
    error = getattr(getattr(event, "event_specific_data", None), "error", None)
    while error is not None:
        if error.cls_name in INTERRUPT_ERRORS:
            return True
        error = error.cause or error.context
    return False


@dg.logger(dg.colored_console_logger.config_schema, description="The console logger, without interrupt tracebacks.")
def cli_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    log.addFilter(lambda record: not _interrupt_error(record))
    return log
