"""The read-model reader is built from explicit values or from settings — the agency's time
zone and small-cell maximum — and refuses values that would make a report wrong or its SQL
unsafe. (Its queries run against PostgreSQL: tests/integration/projections.)"""

from __future__ import annotations

import pytest

from hub.kernel.db import MigrationError
from hub.kernel.settings import ProjectionSettings, Settings
from projections.queries import ReadModelReader


def test_from_settings_takes_the_agency_zone_cell_size_and_schema() -> None:
    settings = Settings(
        agency_timezone="America/Denver", projections=ProjectionSettings(small_cell_max=5)
    )
    default = ReadModelReader.from_settings(None, settings)  # type: ignore[arg-type]
    assert (default.schema, default.tz, default.small_cell_max) == (
        settings.postgres.schema_, "America/Denver", 5
    )
    named = ReadModelReader.from_settings(None, settings, schema="other_schema")  # type: ignore[arg-type]
    assert (named.schema, named.tz, named.small_cell_max) == ("other_schema", "America/Denver", 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tz": "Mars/Olympus"}, ValueError, "unknown time zone"),
        ({"tz": ""}, ValueError, "unknown time zone"),
        ({"small_cell_max": -1}, ValueError, "small_cell_max"),
        ({"schema": 'hub"; DROP TABLE x; --'}, MigrationError, "invalid schema name"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(kwargs: dict, error: type, match: str) -> None:
    args = {"schema": "hub", "tz": "UTC", "small_cell_max": 10} | kwargs
    with pytest.raises(error, match=match):
        ReadModelReader(None, **args)  # type: ignore[arg-type]
