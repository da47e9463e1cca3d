"""A tester simulator: real wafer maps replayed as real tester files into hot folders.

It feeds edge agents for demos, benchmarks and installation checks::

    from waferscope.protocols.simulator import Output, TesterSimulator

    sim = TesterSimulator(
        ["../shared/data/wm811k/val.npz"],
        [Output("edge-a/incoming", "stdf"), Output("edge-b/incoming", "mixed")],
        rate=2.0,  # wafers per second over both outputs
        count=100,
        patterns=["Scratch", "Donut"],
        shuffle=True,
    )
    stats = sim.run(stop_event)  # or: for written in sim.files(stop_event): ...

Sources, selection and ids: :mod:`.sources` and :mod:`.delivery`; pacing: :mod:`.engine`;
the command ``waferscope simulate-tester``: :mod:`.cli`. A guide: ``docs/simulator.md``.
"""

from __future__ import annotations

from waferscope.protocols.simulator.delivery import MIXED, Output, writable_formats
from waferscope.protocols.simulator.engine import SimulatorStats, TesterSimulator, WrittenFile

__all__ = [
    "MIXED",
    "Output",
    "SimulatorStats",
    "TesterSimulator",
    "WrittenFile",
    "writable_formats",
]
