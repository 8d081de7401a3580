// Package charttest checks the Helm chart deploy/helm/leadstream without a
// cluster: it renders the chart with the Helm Go module (what `helm template`
// and `helm lint` do), decodes every manifest strictly into the Kubernetes API
// types (and the Prometheus Operator's, for the ServiceMonitors), and checks
// the result against the leadstream binary built from this repository: every
// variable a role is given is one of that role's flags as `leadstream ROLE -h`
// prints them, every setting can be given, secrets arrive only as files, and
// each role started with exactly the environment and files its pod would have
// gets past its settings to dialling Kafka. Ports, probes, Services, the
// autoscaler, the disruption budget and the ServiceMonitors are checked
// against the roles' ports, deploy/Dockerfile and deploy/prometheus.
//
// It is a module of its own so that the Helm and Kubernetes libraries stay
// out of leadstream's go.mod; `make chart-test` (part of `make test`) runs it.
package charttest
