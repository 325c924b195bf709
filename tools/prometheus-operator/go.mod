// Pins the prometheus-operator release whose CRDs (example/prometheus-operator-crd/) the lab installs, so the
// chart's PodMonitor and ServiceMonitor are validated by the real schemas. Nothing is built from it.
module crossover.dev/tools/prometheus-operator

go 1.24

require github.com/prometheus-operator/prometheus-operator v0.85.0
