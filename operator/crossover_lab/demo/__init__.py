"""`make demo`: the lab, the operator installed with Helm, and a real trace replayed through the router."""
