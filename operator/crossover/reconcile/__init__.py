"""The operator's reconcile logic: pure builders (children, conditions, status) and the reconcile step,
which talks to the world only through the small Protocols in `ports.py`."""
