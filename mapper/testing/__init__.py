"""The test kit: emulator launchers, the fault layer, a pytest plugin and a local dev server."""

from mapper.testing.emulator import Emulator, start_emulator
from mapper.testing.faults import FaultPlan, SimulatedCrash

__all__ = ["Emulator", "FaultPlan", "SimulatedCrash", "start_emulator"]
