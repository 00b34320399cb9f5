"""FHIR R4 referrals: transaction Bundles out, Task status back."""
