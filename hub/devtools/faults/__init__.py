"""Fault injection for the fault tests and ``make faults``: real connection cuts, process
kills and outages against real services (never mocks)."""
