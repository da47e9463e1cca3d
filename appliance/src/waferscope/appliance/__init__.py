"""waferscope on one machine: the broker, the hub and edge agents as processes (``Appliance``),
fed by the tester simulator (``waferscope demo``)."""

from waferscope.appliance.launcher import Appliance, ApplianceOptions
from waferscope.appliance.processes import ApplianceError

__all__ = ["Appliance", "ApplianceError", "ApplianceOptions"]
