"""The lab: a real Kubernetes control plane, fake GPU nodes, Prometheus and emulators on 127.0.0.1."""
