"""Co-responder integration hub: runtime (event log, tamper evidence, identity, CLI, API)."""

__version__ = "0.1.0"
