"""The loopback OpenStack control plane for integration tests (see plane.py)."""
