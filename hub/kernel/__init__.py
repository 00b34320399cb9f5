"""The kernel: event log, tamper evidence, keys and crypto, identity, settings, metrics, errors and
the runtime that wires them. Imports only :mod:`schemas`."""
