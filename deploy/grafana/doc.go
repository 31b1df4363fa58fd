// Package grafana holds Shoal's Grafana dashboard, shoal.json, for the
// shoal_* metrics that agents and the tracker serve on GET /metrics:
// rollout progress, bytes by source, origin egress, peer-to-peer rates,
// errors and store usage. Import it in Grafana with a Prometheus data
// source; the job and instance variables pick the scrape targets.
//
// Its test runs a real tracker and two agents, pulls an image through
// them, and checks that every metric the dashboard queries is served and
// that every shoal_* metric says what it means in its Help text.
package grafana
