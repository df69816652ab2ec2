"""The built-in simulated cloud: one more :class:`~stackback.ports.Cloud` adapter.

``adapter`` holds :class:`SimulatedCloud` and :func:`open_simulator`; ``compute`` models
Nova's servers and ``createImage``; ``model`` Glance images and Cinder snapshots; ``db``
the SQLite file the state lives in; ``config`` the simulated limits and faults.
"""

from stackback.cloud.simulator.adapter import SimulatedCloud, open_simulator
from stackback.cloud.simulator.config import SimConfig, SimFaults

__all__ = ["SimConfig", "SimFaults", "SimulatedCloud", "open_simulator"]
