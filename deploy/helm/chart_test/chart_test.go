package charttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
)

// minimalValues are the values the chart cannot do without.
func minimalValues(t *testing.T, kafka, redis, clickhouse string) map[string]any {
	return values(t, `
kafka: {brokers: "`+kafka+`"}
redis: {addr: "`+redis+`"}
clickhouse: {addr: "`+clickhouse+`"}
secrets: {writeKeys: wk-1}
`)
}

// sentinel marks the test's secret values: no object but the Secret may hold it.
const sentinel = "SENTINEL"

// fullValues sets every value, each to something other than its default:
// every setting of every role (the notifier enabled, with a destinations file
// reading its secrets from files), TLS with client certificates for each
// service, SASL, rules, every secret, the Ingress and the ServiceMonitors.
func fullValues(t *testing.T, kafka, redis, clickhouse string) map[string]any {
	v := values(t, `
image: {repository: registry.acme.example/leadstream, tag: v1.4.2, pullPolicy: Always}
log: {level: debug, format: json}
kafka:
  brokers: "`+kafka+`"
  topicPrefix: acme.
  partitions: 12
  replicationFactor: 3
  minInsyncReplicas: 2
  retention: 336h
  sessionTimeout: 15s
  compression: zstd
  tls: {enabled: true, serverName: kafka.acme.example, secretName: kafka-tls, ca: ca.crt, cert: tls.crt, key: tls.key}
  sasl: {mechanism: SCRAM-SHA-512, username: leadstream}
redis:
  addr: "`+redis+`"
  cluster: true
  username: leadstream-processor
  db: 0
  tls: {enabled: true, serverName: redis.acme.example, secretName: redis-tls, ca: ca.crt, cert: tls.crt, key: tls.key}
clickhouse:
  addr: "`+clickhouse+`"
  database: leads
  username: leadstream
  dialTimeout: 3s
  cluster: lscluster
  tls: {enabled: true, serverName: clickhouse.acme.example, secretName: clickhouse-tls, ca: ca.crt, cert: tls.crt, key: tls.key}
secrets:
  writeKeys: wk-browser,wk-browser-2-`+sentinel+`
  serverWriteKeys: wk-server-`+sentinel+`
  secretKey: lead-api-`+sentinel+`
  tokenKeys: k2:token-key-`+sentinel+`-0123456789,k1:older-key-`+sentinel+`-0123456789
  identityKeys: identity-`+sentinel+`-0123456789
  redisPassword: redis-processor-`+sentinel+`
  collectorRedisPassword: redis-collector-`+sentinel+`
  clickhousePassword: clickhouse-`+sentinel+`
  kafkaSaslPassword: kafka-`+sentinel+`
  notify:
    crm-hook: crm-hook-`+sentinel+`-0123456789
    crm-token: Bearer crm-`+sentinel+`
    slack-url: https://hooks.slack.example/services/T0/B0/`+sentinel+`
    smtp-password: smtp-`+sentinel+`
collector:
  autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 12, targetCPUUtilizationPercentage: 60}
  publicURL: https://t.acme.example
  cookieDomain: acme.example
  corsOrigins: wk-browser=https://www.acme.example|https://*.acme.example
  trustedProxies: [10.0.0.0/8, 192.168.1.7]
  produceTimeout: 3s
  idleTimeout: 75s
  maxConnsPerIP: 64
  rateLimitIP: "50:500"
  rateLimitKey: "2000"
  maxEventAge: 48h
  ipAnonymize: false
  maxQueueBytes: 134217728
  gogc: 200
  scannerMinDelay: 10s
  scannerBurst: 2s
  redis: {enabled: true, username: leadstream-collector}
  ingress:
    enabled: true
    className: nginx
    hosts: [{host: t.acme.example}]
    tls: [{secretName: t-acme-example-tls, hosts: [t.acme.example]}]
accounts: {fromEmailDomain: true}
processor: {replicas: 4, group: acme-scoring, batchSize: 1000, maxWait: 50ms, dedupWindow: 1440h, anonymousTTL: 4800h, stateCache: 0}
sink: {replicas: 3, group: acme-clickhouse, batchSize: 100000, flushInterval: 2s}
notifier:
  enabled: true
  replicas: 2
  groupPrefix: acme-notifier
  maxAge: 48h
  retryMin: 2s
  retryMax: 10m
  timeout: 5s
  concurrency: 8
  maxPending: 2000
  topicCheck: 1m
serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
`)
	v["rules"] = map[string]any{"content": defaultRules(t)}
	v["notifier"].(map[string]any)["config"] = map[string]any{"content": fullDestinations}
	return v
}

// fullDestinations is a destinations file of every type whose secrets are
// files of the chart's Secret (secrets.notify).
const fullDestinations = `destinations:
  - name: crm
    type: webhook
    url: https://crm.acme.example/hooks/leadstream
    secret: {file: /etc/leadstream/secrets/notify-crm-hook}
    headers:
      Authorization: {file: /etc/leadstream/secrets/notify-crm-token}
    kinds: [mql, mqa]
  - name: sales-slack
    type: slack
    url: {file: /etc/leadstream/secrets/notify-slack-url}
    min_score: 120
  - name: sales-mail
    type: email
    from: leadstream@acme.example
    to: [sales@acme.example]
    smtp:
      host: smtp.acme.example
      username: leadstream
      password: {file: /etc/leadstream/secrets/notify-smtp-password}
`

func defaultRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "scoring", "default_rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFullValues renders the chart with every value set and checks every
// object, then starts each role with its pod's environment and files.
func TestFullValues(t *testing.T) {
	kafka, redis, ch := closedAddr(t), closedAddr(t), closedAddr(t)
	vals := fullValues(t, kafka, redis, ch)
	r := mustRender(t, vals)
	if extra := extraForUnwired(t, r); len(extra) > 0 {
		for role, settings := range extra {
			vals[role].(map[string]any)["extraSettings"] = settings
		}
		r = mustRender(t, vals)
	}

	want := []string{
		"ConfigMap/" + fullname + "-collector", "ConfigMap/" + fullname + "-destinations", "ConfigMap/" + fullname + "-notifier",
		"ConfigMap/" + fullname + "-processor", "ConfigMap/" + fullname + "-rules", "ConfigMap/" + fullname + "-sink",
		"Deployment/" + fullname + "-collector", "Deployment/" + fullname + "-notifier", "Deployment/" + fullname + "-processor", "Deployment/" + fullname + "-sink",
		"HorizontalPodAutoscaler/" + fullname + "-collector", "Ingress/" + fullname + "-collector", "PodDisruptionBudget/" + fullname + "-collector",
		"Secret/" + fullname + "-secrets",
		"Service/" + fullname + "-collector", "Service/" + fullname + "-notifier", "Service/" + fullname + "-processor", "Service/" + fullname + "-sink",
		"ServiceAccount/" + fullname,
		"ServiceMonitor/" + fullname + "-collector", "ServiceMonitor/" + fullname + "-notifier", "ServiceMonitor/" + fullname + "-processor", "ServiceMonitor/" + fullname + "-sink",
	}
	if !slices.Equal(r.all, want) {
		t.Fatalf("rendered %q,\nwant %q", r.all, want)
	}

	// The Secret holds every secret, and nothing else holds any.
	sec := r.secrets[fullname+"-secrets"]
	var keys []string
	for k, v := range sec.Data {
		keys = append(keys, k)
		if !strings.Contains(string(v), sentinel) {
			t.Errorf("Secret key %s = %q: not the value given", k, v)
		}
	}
	slices.Sort(keys)
	wantKeys := []string{"clickhouse-password", "collector-redis-password", "identity-keys", "kafka-sasl-password", "notify-crm-hook", "notify-crm-token", "notify-slack-url", "notify-smtp-password",
		"redis-password", "secret-key", "server-write-keys", "token-keys", "write-keys"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("Secret keys %q, want %q", keys, wantKeys)
	}
	for id, m := range r.raw {
		if !strings.HasPrefix(id, "Secret/") && strings.Contains(m, sentinel) {
			t.Errorf("%s holds a secret value:\n%s", id, m)
		}
	}

	tls := tlsSecrets(t)
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			checkRole(t, r, role, true)
			checkStarts(t, r, role, kafka, tls)
		})
	}
	_, c := container(t, r, "collector")
	env := podEnv(t, r, c)
	if env["LEADSTREAM_REDIS_USERNAME"] != "leadstream-collector" || env["LEADSTREAM_REDIS_PASSWORD_FILE"] != "/etc/leadstream/secrets/collector-redis-password" {
		t.Errorf("collector: Redis user %q, password file %q: want its own (collector.redis.username, collector-redis-password)",
			env["LEADSTREAM_REDIS_USERNAME"], env["LEADSTREAM_REDIS_PASSWORD_FILE"])
	}
	if d, _ := container(t, r, "collector"); d.Spec.Template.Spec.Containers[0].Image != "registry.acme.example/leadstream:v1.4.2" {
		t.Errorf("collector image %q", d.Spec.Template.Spec.Containers[0].Image)
	}
	for role, n := range map[string]int32{"processor": 4, "sink": 3, "notifier": 2} {
		if d, _ := container(t, r, role); d.Spec.Replicas == nil || *d.Spec.Replicas != n {
			t.Errorf("%s: replicas %v, want %d", role, d.Spec.Replicas, n)
		}
	}
	checkAutoscaling(t, r, 3, 12)
	checkServiceMonitors(t, r)

	ing := r.ingresses[fullname+"-collector"]
	for _, rule := range ing.Spec.Rules {
		var paths []string
		for _, p := range rule.HTTP.Paths {
			paths = append(paths, p.Path)
			// The collector's /metrics, /healthz and /readyz stay inside the cluster.
			for _, inside := range []string{"/metrics", "/healthz", "/readyz"} {
				if strings.HasPrefix(inside, p.Path) {
					t.Errorf("Ingress %s: path %q (%s) routes the collector's %s to the public", rule.Host, p.Path, *p.PathType, inside)
				}
			}
		}
		if want := []string{"/v1", "/o/", "/c/", "/f/", "/ls.js"}; !slices.Equal(paths, want) {
			t.Errorf("Ingress %s paths %v, want the public ones %v", rule.Host, paths, want)
		}
		for _, p := range rule.HTTP.Paths {
			b := p.Backend.Service
			if b == nil || b.Name != fullname+"-collector" || b.Port.Name != r.services[fullname+"-collector"].Spec.Ports[0].Name {
				t.Errorf("Ingress %s%s goes to %+v, want the collector Service's port", rule.Host, p.Path, b)
			}
		}
	}
	if strings.Contains(r.notes, "WARNING") {
		t.Errorf("NOTES warn with 4 processors, 3 sinks and 2 notifiers on 12 partitions:\n%s", r.notes)
	}
	if got := secretItems(t, r, "notifier", fullname+"-secrets"); !slices.Equal(got, []string{"clickhouse-password", "kafka-sasl-password", "notify-crm-hook", "notify-crm-token", "notify-slack-url", "notify-smtp-password"}) {
		t.Errorf("the notifier mounts %q: want its ClickHouse and Kafka passwords and the notify-NAME secrets", got)
	}
}

// extraForUnwired finds the flags of each role the full values leave unset.
// A flag the chart's templates name is an error (its value is missing from
// fullValues, or the chart does not pass it). A flag they do not name was
// added to leadstream after the chart: it is logged, and given through the
// role's extraSettings with its default (when it has one), so the roles
// started below show the chart passes it and the role takes it.
func extraForUnwired(t *testing.T, r *rendered) map[string]map[string]any {
	t.Helper()
	tpl := chartTemplates(t)
	extra := map[string]map[string]any{}
	for _, role := range roles {
		_, c := container(t, r, role)
		settings, secrets := unwired(t, role, podEnv(t, r, c))
		for _, k := range append(settings, secrets...) {
			if roleFlags(t, role).deprecated[k] {
				continue // its replacement is set instead (TestVariants sets it)
			}
			if strings.Contains(tpl, k) {
				t.Errorf("%s: %s is a setting of the chart, but the full values do not give it", role, k)
			}
		}
		for _, k := range secrets {
			t.Logf("%s: secret %s has no value in the chart: mount it with %s.extraVolumes and give its path in %s.extraSettings", role, k, role, role)
		}
		for _, k := range settings {
			if roleFlags(t, role).deprecated[k] {
				continue
			}
			def := roleFlags(t, role).env[k]
			t.Logf("%s: %s has no value in the chart: given through %s.extraSettings (with its default %q)", role, k, role, def)
			if def == "" {
				continue
			}
			if extra[role] == nil {
				extra[role] = map[string]any{}
			}
			extra[role][k] = def
		}
	}
	return extra
}

// chartTemplates is the text of every template of the chart.
func chartTemplates(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the chart's templates: %v (%d files)", err, len(files))
	}
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// TestMinimalValues renders the chart with only the required values: no
// TLS, SASL, rules or optional secrets, no Ingress or ServiceMonitor, no
// notifier.
func TestMinimalValues(t *testing.T) {
	kafka := closedAddr(t)
	r := mustRender(t, minimalValues(t, kafka, closedAddr(t), closedAddr(t)))
	want := []string{
		"ConfigMap/" + fullname + "-collector", "ConfigMap/" + fullname + "-processor", "ConfigMap/" + fullname + "-sink",
		"Deployment/" + fullname + "-collector", "Deployment/" + fullname + "-processor", "Deployment/" + fullname + "-sink",
		"HorizontalPodAutoscaler/" + fullname + "-collector", "PodDisruptionBudget/" + fullname + "-collector",
		"Secret/" + fullname + "-secrets",
		"Service/" + fullname + "-collector", "Service/" + fullname + "-processor", "Service/" + fullname + "-sink",
		"ServiceAccount/" + fullname,
	}
	if !slices.Equal(r.all, want) {
		t.Fatalf("rendered %q,\nwant %q", r.all, want)
	}
	for _, role := range coreRoles {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			checkRole(t, r, role, false)
			checkStarts(t, r, role, kafka, nil)
		})
	}
	wantMounts := map[string][]string{"collector": {"write-keys"}, "processor": nil, "sink": nil}
	for role, want := range wantMounts {
		if got := secretItems(t, r, role, fullname+"-secrets"); !slices.Equal(got, want) {
			t.Errorf("%s mounts secrets %q, want %q", role, got, want)
		}
	}
	checkAutoscaling(t, r, 2, 10)
}

// TestExistingSecret: with secrets.existingSecret the chart creates no
// Secret and each role mounts the keys it reads from the one given; rules
// and the notifier's destinations from existing ConfigMaps.
func TestExistingSecret(t *testing.T) {
	kafka := closedAddr(t)
	v := minimalValues(t, kafka, closedAddr(t), closedAddr(t))
	v["secrets"] = map[string]any{"existingSecret": "leadstream-prod",
		"existingSecretKeys": []any{"write-keys", "secret-key", "redis-password", "clickhouse-password", "kafka-sasl-password", "notify-crm-hook"}}
	v["kafka"].(map[string]any)["sasl"] = map[string]any{"mechanism": "PLAIN", "username": "leadstream"}
	v["rules"] = map[string]any{"existingConfigMap": "acme-scoring-rules", "key": "acme.yaml"}
	v["notifier"] = map[string]any{"enabled": true, "config": map[string]any{"existingConfigMap": "acme-destinations", "key": "destinations.yaml"}}
	r := mustRender(t, v)
	if len(r.secrets) != 0 {
		t.Errorf("renders Secrets %v beside existingSecret", r.all)
	}
	if _, ok := r.configMaps[fullname+"-rules"]; ok {
		t.Error("renders a rules ConfigMap beside rules.existingConfigMap")
	}
	if _, ok := r.configMaps[fullname+"-destinations"]; ok {
		t.Error("renders a destinations ConfigMap beside notifier.config.existingConfigMap")
	}
	existing := map[string]map[string]string{
		"leadstream-prod": {"write-keys": "wk-1,wk-2", "secret-key": "s3cret", "token-keys": "k1:0123456789abcdef0123",
			"redis-password": "r", "clickhouse-password": "c", "kafka-sasl-password": "k", "notify-crm-hook": "crm-hook-secret-0123456789\n"},
		"acme-scoring-rules": {"acme.yaml": defaultRules(t)},
		"acme-destinations": {"destinations.yaml": `destinations:
  - {name: crm, type: webhook, url: "https://crm.acme.example/hooks", secret: {file: /etc/leadstream/secrets/notify-crm-hook}}
`},
	}
	want := map[string][]string{
		"collector": {"clickhouse-password", "kafka-sasl-password", "redis-password", "secret-key", "write-keys"},
		"processor": {"kafka-sasl-password", "redis-password"},
		"sink":      {"clickhouse-password", "kafka-sasl-password"},
		"notifier":  {"clickhouse-password", "kafka-sasl-password", "notify-crm-hook"},
	}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			checkRole(t, r, role, false)
			if got := secretItems(t, r, role, "leadstream-prod"); !slices.Equal(got, want[role]) {
				t.Errorf("mounts %q of the existing Secret, want %q", got, want[role])
			}
			d, _ := container(t, r, role)
			if _, ok := d.Spec.Template.Annotations["checksum/secret"]; ok {
				t.Error("a checksum/secret annotation, though the chart does not know the existing Secret's content")
			}
			checkStarts(t, r, role, kafka, existing)
		})
	}
}

// secretItems are the keys of the Secret secretName the role mounts.
func secretItems(t *testing.T, r *rendered, role, secretName string) []string {
	t.Helper()
	d, _ := container(t, r, role)
	var keys []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secretName {
			for _, it := range v.Secret.Items {
				keys = append(keys, it.Key)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// checkAutoscaling: the HPA scales the collector Deployment on CPU, which
// then has no replica count of its own (the HPA's would be reset on every
// upgrade), and requests CPU (the HPA's utilization is of the request); the
// PDB covers the collectors and only them.
func checkAutoscaling(t *testing.T, r *rendered, min, max int32) {
	t.Helper()
	d, c := container(t, r, "collector")
	hpa := r.hpas[fullname+"-collector"]
	if hpa == nil {
		t.Fatal("no HorizontalPodAutoscaler for the collector")
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA scales %+v, want the collector Deployment", ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != min || hpa.Spec.MaxReplicas != max {
		t.Errorf("HPA replicas %v..%d, want %d..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, min, max)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Type != autoscalingv2.ResourceMetricSourceType ||
		hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU || hpa.Spec.Metrics[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
		hpa.Spec.Metrics[0].Resource.Target.AverageUtilization == nil {
		t.Errorf("HPA metrics %+v: want CPU utilization", hpa.Spec.Metrics)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("the collector Deployment sets replicas %d beside its HPA", *d.Spec.Replicas)
	}
	if c.Resources.Requests.Cpu().IsZero() {
		t.Error("the collector requests no CPU: its HPA cannot compute utilization")
	}
	pdb := r.pdbs[fullname+"-collector"]
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget for the collector")
	}
	if got := selectedDeployments(t, r, pdb.Spec.Selector); !slices.Equal(got, []string{d.Name}) {
		t.Errorf("the PDB covers the pods of %q, want the collector's", got)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("the PDB sets neither maxUnavailable nor minAvailable")
	}
}

// checkServiceMonitors: one per role, selecting that role's Service and
// scraping /metrics on its port under the job name the alert rules and the
// dashboard use (deploy/prometheus/prometheus.yml's).
func checkServiceMonitors(t *testing.T, r *rendered) {
	t.Helper()
	jobs := prometheusJobs(t)
	for _, role := range roles {
		sm := r.serviceMonitors[fullname+"-"+role]
		if sm == nil {
			t.Errorf("no ServiceMonitor for the %s", role)
			continue
		}
		var svcs []string
		for name, s := range r.services {
			if selects(t, &sm.Spec.Selector, s.Labels) {
				svcs = append(svcs, name)
			}
		}
		if !slices.Equal(svcs, []string{fullname + "-" + role}) {
			t.Errorf("ServiceMonitor %s selects Services %q", sm.Name, svcs)
			continue
		}
		if sm.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor %s labels %v: serviceMonitor.labels missing", sm.Name, sm.Labels)
		}
		svc := r.services[svcs[0]]
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor %s: endpoints %+v", sm.Name, sm.Spec.Endpoints)
		}
		ep := sm.Spec.Endpoints[0]
		if ep.Port != svc.Spec.Ports[0].Name || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor %s scrapes port %q path %q, want the Service's port %q and /metrics", sm.Name, ep.Port, ep.Path, svc.Spec.Ports[0].Name)
		}
		job := ""
		for _, rc := range ep.RelabelConfigs {
			if rc.TargetLabel == "job" && len(rc.SourceLabels) == 0 && rc.Replacement != nil {
				job = *rc.Replacement
			}
		}
		if want := "leadstream-" + role; job != want || !slices.Contains(jobs, job) {
			t.Errorf("ServiceMonitor %s: job %q, want %q, a job of prometheus.yml (%q)", sm.Name, job, want, jobs)
		}
	}
}

// TestVariants checks what depends on a value or the cluster version.
func TestVariants(t *testing.T) {
	base := func() map[string]any { return minimalValues(t, "kafka:9092", "redis:6379", "clickhouse:9000") }
	with := func(v map[string]any, path string, val any) map[string]any {
		parts := strings.Split(path, ".")
		m := v
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = val
		return v
	}

	t.Run("autoscaling off", func(t *testing.T) {
		r := mustRender(t, with(with(base(), "collector.autoscaling.enabled", false), "collector.replicas", 3))
		d, _ := container(t, r, "collector")
		if len(r.hpas) != 0 || d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("HPAs %v, collector replicas %v: want no HPA and 3 replicas", r.hpas, d.Spec.Replicas)
		}
	})
	t.Run("pdb off", func(t *testing.T) {
		if r := mustRender(t, with(base(), "collector.pdb.enabled", false)); len(r.pdbs) != 0 {
			t.Errorf("PDBs %v with collector.pdb.enabled false", r.all)
		}
	})

	// The preStop sleep action exists from Kubernetes 1.30 on.
	preStop := func(t *testing.T, v map[string]any, kube string) *corev1.LifecycleHandler {
		t.Helper()
		r, err := renderChart(v, kube)
		if err != nil {
			t.Fatal(err)
		}
		_, c := container(t, r, "collector")
		for _, role := range []string{"processor", "sink"} {
			if _, pc := container(t, r, role); pc.Lifecycle != nil {
				t.Errorf("%s: lifecycle %+v: only the collector is behind a Service that sends it requests", role, pc.Lifecycle)
			}
		}
		if c.Lifecycle == nil {
			return nil
		}
		return c.Lifecycle.PreStop
	}
	if h := preStop(t, base(), "v1.29.4"); h != nil {
		t.Errorf("Kubernetes 1.29: preStop %+v, which it does not have", h)
	}
	if h := preStop(t, base(), "v1.30.0"); h == nil || h.Sleep == nil || h.Sleep.Seconds != 5 || h.Exec != nil {
		t.Errorf("Kubernetes 1.30: preStop %+v, want a 5 s sleep action (the image has no shell)", h)
	}
	if h := preStop(t, with(base(), "collector.preStopSleepSeconds", 0), "v1.31.0"); h != nil {
		t.Errorf("preStopSleepSeconds 0: preStop %+v", h)
	}
	r := mustRender(t, base())
	if d, _ := container(t, r, "collector"); *d.Spec.Template.Spec.TerminationGracePeriodSeconds < 45+5 {
		t.Errorf("collector: terminationGracePeriodSeconds %d: the preStop sleep counts against it, and the drain needs 45 s after it",
			*d.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}

	// A changed setting or secret rolls the pods that read it, and only those.
	annotations := func(v map[string]any) map[string]map[string]string {
		r := mustRender(t, v)
		a := map[string]map[string]string{}
		for _, role := range coreRoles {
			d, _ := container(t, r, role)
			a[role] = d.Spec.Template.Annotations
		}
		return a
	}
	a0 := annotations(base())
	a1 := annotations(with(base(), "sink.batchSize", 20000))
	a2 := annotations(with(base(), "secrets.writeKeys", "wk-2"))
	a3 := annotations(with(base(), "rules.content", defaultRules(t)))
	for _, role := range coreRoles {
		if changed := a0[role]["checksum/config"] != a1[role]["checksum/config"]; changed != (role == "sink") {
			t.Errorf("%s: sink.batchSize changed: checksum/config changed %v", role, changed)
		}
		if a0[role]["checksum/secret"] == a2[role]["checksum/secret"] {
			t.Errorf("%s: a secret changed, checksum/secret did not", role)
		}
		if changed := a0[role]["checksum/config"] != a3[role]["checksum/config"]; changed != (role != "sink") {
			t.Errorf("%s: rules set: checksum/config changed %v (the collector and processor read them)", role, changed)
		}
	}

	// More consumers than partitions sit idle: the NOTES say so.
	r = mustRender(t, with(base(), "processor.replicas", 10))
	if !strings.Contains(r.notes, "processor.replicas (10) is more than kafka.partitions (8)") {
		t.Errorf("NOTES with 10 processors on 8 partitions:\n%s", r.notes)
	}

	// extraSettings reach the role's ConfigMap (numbers as integers) and roll only its pods.
	t.Run("extraSettings", func(t *testing.T) {
		kafka, redis, ch := closedAddr(t), closedAddr(t), closedAddr(t)
		v := minimalValues(t, kafka, redis, ch)
		v["collector"] = values(t, "extraSettings: {LEADSTREAM_COLLECTOR_GOGC: 150, LEADSTREAM_COLLECTOR_SCANNER_BURST: 3s}")
		r := mustRender(t, v)
		_, c := container(t, r, "collector")
		env := podEnv(t, r, c)
		if env["LEADSTREAM_COLLECTOR_GOGC"] != "150" || env["LEADSTREAM_COLLECTOR_SCANNER_BURST"] != "3s" {
			t.Errorf("collector.extraSettings: env GOGC %q, SCANNER_BURST %q, want 150 and 3s",
				env["LEADSTREAM_COLLECTOR_GOGC"], env["LEADSTREAM_COLLECTOR_SCANNER_BURST"])
		}
		checkRole(t, r, "collector", false)
		checkStarts(t, r, "collector", kafka, nil)
		b := mustRender(t, minimalValues(t, kafka, redis, ch))
		for _, role := range coreRoles {
			d1, _ := container(t, r, role)
			d0, _ := container(t, b, role)
			if changed := d0.Spec.Template.Annotations["checksum/config"] != d1.Spec.Template.Annotations["checksum/config"]; changed != (role == "collector") {
				t.Errorf("%s: collector.extraSettings set: checksum/config changed %v", role, changed)
			}
		}
	})

	// The deprecated collector.trustForwarded still reaches the collector.
	r = mustRender(t, with(base(), "collector.trustForwarded", true))
	if _, c := container(t, r, "collector"); podEnv(t, r, c)["LEADSTREAM_COLLECTOR_TRUST_FORWARDED"] != "true" {
		t.Errorf("collector.trustForwarded true: env %v", podEnv(t, r, c))
	}
	checkRole(t, r, "collector", false)

	// Without Redis for the collector (lead API off) it gets no Redis setting or password.
	r = mustRender(t, with(with(base(), "collector.redis.enabled", false), "secrets.redisPassword", "pw"))
	_, c := container(t, r, "collector")
	for k := range podEnv(t, r, c) {
		if strings.HasPrefix(k, "LEADSTREAM_REDIS_") {
			t.Errorf("collector.redis.enabled false: the collector still gets %s", k)
		}
	}
	if got := secretItems(t, r, "processor", fullname+"-secrets"); !slices.Equal(got, []string{"redis-password"}) {
		t.Errorf("processor mounts %q, want redis-password", got)
	}
}

// TestBadValues: values the roles could not run with are refused when
// rendering, naming the value.
func TestBadValues(t *testing.T) {
	f := func(kube, want string, edit func(v map[string]any)) {
		t.Helper()
		v := minimalValues(t, "kafka:9092", "redis:6379", "clickhouse:9000")
		edit(v)
		_, err := renderChart(v, kube)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
	m := func(v map[string]any, key string) map[string]any {
		if _, ok := v[key].(map[string]any); !ok {
			v[key] = map[string]any{}
		}
		return v[key].(map[string]any)
	}
	k := kubeVersion
	f(k, "kafka.brokers is required", func(v map[string]any) { delete(v, "kafka") })
	f(k, "redis.addr is required", func(v map[string]any) { delete(v, "redis") })
	f(k, "clickhouse.addr is required", func(v map[string]any) { delete(v, "clickhouse") })
	f(k, "secrets.writeKeys (or secrets.existingSecret) is required", func(v map[string]any) { delete(v, "secrets") })
	f(k, "secrets.existingSecretKeys must list write-keys", func(v map[string]any) {
		v["secrets"] = map[string]any{"existingSecret": "s", "existingSecretKeys": []any{"secret-key"}}
	})
	// values.schema.json: unknown keys, wrong types, bad durations and enums.
	f(k, "broker", func(v map[string]any) { m(v, "kafka")["broker"] = "kafka:9092" })
	f(k, "collector", func(v map[string]any) { m(v, "collector")["port"] = "8080" })
	f(k, "retention", func(v map[string]any) { m(v, "kafka")["retention"] = "7d" })
	f(k, "compression", func(v map[string]any) { m(v, "kafka")["compression"] = "gzip" })
	f(k, "existingSecretKeys", func(v map[string]any) {
		v["secrets"] = map[string]any{"existingSecret": "s", "existingSecretKeys": []any{"write-keys", "redis-pasword"}}
	})
	f(k, "maxQueueBytes", func(v map[string]any) { m(v, "collector")["maxQueueBytes"] = 1.5 })
	// Combinations.
	f(k, "kafka.sasl.username and the kafka-sasl-password secret", func(v map[string]any) {
		m(v, "kafka")["sasl"] = map[string]any{"mechanism": "PLAIN", "username": "u"}
	})
	f(k, "kafka.sasl.mechanism is empty", func(v map[string]any) { m(v, "secrets")["kafkaSaslPassword"] = "p" })
	f(k, "collector-redis-password secret is set but collector.redis.username is empty", func(v map[string]any) {
		m(v, "secrets")["collectorRedisPassword"] = "p"
	})
	f(k, "collector.redis.username names the collector's own Redis user but the collector-redis-password secret is not set", func(v map[string]any) {
		m(v, "collector")["redis"] = map[string]any{"username": "ls-collector"}
	})
	f(k, "kafka.tls.cert and kafka.tls.key go together", func(v map[string]any) {
		m(v, "kafka")["tls"] = map[string]any{"enabled": true, "secretName": "t", "cert": "tls.crt"}
	})
	f(k, "redis.tls.enabled is false", func(v map[string]any) {
		m(v, "redis")["tls"] = map[string]any{"secretName": "t", "ca": "ca.crt"}
	})
	f(k, "clickhouse.tls.secretName is set: name the keys", func(v map[string]any) {
		m(v, "clickhouse")["tls"] = map[string]any{"enabled": true, "secretName": "t"}
	})
	f(k, "collector.trustForwarded (deprecated: every address is a proxy) and collector.trustedProxies", func(v map[string]any) {
		m(v, "collector")["trustForwarded"] = true
		m(v, "collector")["trustedProxies"] = []any{"10.0.0.0/8"}
	})
	f(k, "rules.content and rules.existingConfigMap", func(v map[string]any) {
		v["rules"] = map[string]any{"content": "x", "existingConfigMap": "y"}
	})
	f(k, "collector.extraSettings.LEADSTREAM_REDIS_PASSWORD: a secret", func(v map[string]any) {
		m(v, "collector")["extraSettings"] = map[string]any{"LEADSTREAM_REDIS_PASSWORD": "pw"}
	})
	f(k, "sink.extraSettings.LEADSTREAM_CLICKHOUSE_PASSWORD_FILE: a secret", func(v map[string]any) {
		m(v, "sink")["extraSettings"] = map[string]any{"LEADSTREAM_CLICKHOUSE_PASSWORD_FILE": "/x"}
	})
	f(k, "processor.extraSettings.LEADSTREAM_KAFKA_BROKERS: the chart sets", func(v map[string]any) {
		m(v, "processor")["extraSettings"] = map[string]any{"LEADSTREAM_KAFKA_BROKERS": "other:9092"}
	})
	f(k, "'processor.batch-size' does not match pattern '^LEADSTREAM_", func(v map[string]any) {
		m(v, "processor")["extraSettings"] = map[string]any{"processor.batch-size": "10"}
	})
	f("v1.22.9", "incompatible with Kubernetes v1.22.9", func(map[string]any) {})
}

// TestLint runs `helm lint --strict` on the chart: no warnings.
func TestLint(t *testing.T) {
	lint(t, minimalValues(t, "kafka:9092", "redis:6379", "clickhouse:9000"))
}

// lint runs `helm lint --strict` on the chart with values: every message
// above info, and every error, fails the test.
func lint(t *testing.T, values map[string]any) {
	t.Helper()
	l := action.NewLint()
	l.Strict = true
	l.Namespace = namespace
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	l.KubeVersion = kv
	res := l.Run([]string{chartDir}, values)
	for _, msg := range res.Messages {
		if msg.Severity > support.InfoSev {
			t.Errorf("helm lint: %s", msg)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("helm lint: %v", err)
	}
	if res.TotalChartsLinted != 1 {
		t.Errorf("helm lint linted %d charts", res.TotalChartsLinted)
	}
}

// tlsSecrets are the Secrets full values name for TLS: a CA and a client
// certificate and key, as the roles load them (PEM).
func tlsSecrets(t *testing.T) map[string]map[string]string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chart test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "leadstream"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ca.crt":  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		"tls.crt": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"tls.key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
	return map[string]map[string]string{"kafka-tls": files, "redis-tls": files, "clickhouse-tls": files}
}

// TestREADMEExample renders the values file of README "Kubernetes: the Helm
// chart" and checks each role as the other renders are checked.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "cat > leads-values.yaml <<'YAML'\n")
	example, _, ok2 := strings.Cut(rest, "\nYAML\n")
	if !ok || !ok2 {
		t.Fatal("README: no values file between cat > leads-values.yaml <<'YAML' and YAML")
	}
	r := mustRender(t, values(t, example))
	for _, role := range roles {
		checkRole(t, r, role, false)
		if got := secretItems(t, r, role, "leadstream-secrets"); len(got) == 0 {
			t.Errorf("%s mounts no key of leadstream-secrets", role)
		}
	}
	if len(r.ingresses) != 1 || len(r.serviceMonitors) != len(roles) {
		t.Errorf("README example renders %q: want an Ingress and a ServiceMonitor per role (the notifier too)", r.all)
	}
}
