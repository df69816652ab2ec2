"""The engine: a database-coordinated scheduler and lease-holding workers.

``scheduler`` turns due cron schedules into run records; ``runner`` moves one
run through its recorded state machine; ``worker`` claims runs and drives the
runner; ``collector`` finishes recorded deletions; ``loop`` ties them together
for ``stackback serve`` and the demo.
"""
