"""Development tooling: the local Kafka + PostgreSQL, the simulators and the demo. No production
module imports it; only the CLI root mounts its command groups."""
