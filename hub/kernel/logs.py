"""Logging of a hub process: one format, one level (``settings.log_level``, ``HUB_LOG_LEVEL``).

The process's entry point configures it once, before anything logs: the ``hub`` CLI's root
callback for every command (:mod:`hub.entry.cli`), ``python -m bench`` for the benchmark.

Records go to stderr as ``time level logger: message``. Messages never carry PHI: modules
log ids, pseudonyms, counts and field names, never record values (see
:func:`hub.kernel.deadletters.describe_error`). The Kafka client libraries are held at
WARNING unless the level is DEBUG (their INFO lines are connection chatter).
"""

from __future__ import annotations

import logging
import sys

from hub.kernel.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "hub"
QUIET_LIBRARIES = ("aiokafka", "kafka", "faust", "mode", "asyncio", "httpx", "httpcore")


def configure_logging(settings: Settings) -> None:
    """Install the hub's stderr handler on the root logger (once; later calls only change
    the level), so every command and worker logs the same way."""
    level = logging.getLevelName(settings.log_level)
    root = logging.getLogger()
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
