// Package kubernetes holds Shoal's Helm chart (charts/shoal) and the
// manifests it renders with its default values (shoal.yaml, for kubectl
// apply), in a Go module of its own so that the main module does not
// depend on Helm or the Kubernetes API.
//
// Render renders the chart with Helm's own engine, in process; cmd/render
// writes shoal.yaml with it (go generate, or make kubernetes-manifests), and
// the tests render several value sets, decode every object strictly into
// the k8s.io/api types and check the chart's invariants against the shoal
// binary's flags.
package kubernetes

//go:generate go run ./cmd/render -out shoal.yaml
