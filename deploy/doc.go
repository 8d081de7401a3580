// Package deploy holds what operators deploy and watch, next to the tests that
// check it against the real binary:
//
//	Dockerfile                  the container image (static binary on scratch, non-root)
//	compose.yaml                a single-host stack: Redpanda, Redis (AOF), ClickHouse,
//	                            the roles (the notifier with its profile), Prometheus
//	                            and Grafana
//	notify.example.yaml         an example destinations file of the notifier
//	prometheus/alerts.yaml      alert rules, unit-tested in prometheus/alerts_test.yaml
//	prometheus/prometheus.yml   the compose stack's scrape configuration
//	grafana/leadstream.json     the dashboard (provisioned by compose)
//	systemd/                    units for running the roles on hosts
//	install-deps.sh             the Debian packages of dev mode and the tests
//
// The tests build the image with podman and run the roles from it, unit-test
// the alerts with promtool, check every metric the dashboard and the alerts
// query against the /metrics of running roles (and evaluate them in a real
// Prometheus), and check compose.yaml's settings against each role's flags.
// The package has no code of its own.
package deploy
