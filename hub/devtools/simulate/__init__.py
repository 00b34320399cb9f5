"""A seeded model of a mid-size county's co-responder traffic, and the servers and
writers that present it the way real systems do (SoQL CAD feed, case-system REST API,
CSV drops). The demo and the tests build on :class:`hub.devtools.simulate.model.CountyModel`."""

from hub.devtools.simulate.model import County, CountyModel, SimCall, SimEncounter, SimPerson, SimReferral

__all__ = ["County", "CountyModel", "SimCall", "SimEncounter", "SimPerson", "SimReferral"]
