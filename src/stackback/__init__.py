"""stackback: scheduled, consistent, rotated and verified backups for OpenStack."""

__version__ = "0.1.0"
