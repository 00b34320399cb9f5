"""EHR simulator for demos and tests (FHIR + MLLP endpoints with configurable faults)."""
