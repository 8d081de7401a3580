package charttest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

var (
	// repoRoot is the repository root (the test runs in deploy/helm/chart_test).
	repoRoot = func() string {
		abs, err := filepath.Abs(filepath.Join("..", "..", ".."))
		if err != nil {
			panic(err)
		}
		return abs
	}()
	chartDir = filepath.Join(repoRoot, "deploy", "helm", "leadstream")

	// leadstreamBin is the binary built from the repository by TestMain.
	leadstreamBin string
)

const (
	release   = "leads"
	namespace = "marketing"
	// fullname is the chart's name for the release's resources.
	fullname = release + "-leadstream"
	// kubeVersion is the cluster version the chart is rendered for, unless a
	// test says otherwise. (Helm's library default is v1.20, older than the
	// chart's kubeVersion; the helm CLI sets its own at build time.)
	kubeVersion = "v1.31.0"
)

// coreRoles always run; roles are every role the chart can run (the
// notifier with notifier.enabled).
var (
	coreRoles = []string{"collector", "processor", "sink"}
	roles     = append(slices.Clone(coreRoles), "notifier")
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "leadstream-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	leadstreamBin = filepath.Join(dir, "leadstream")
	build := exec.Command("go", "build", "-o", leadstreamBin, "./cmd/leadstream")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building leadstream: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// values parses a values file as `helm install -f` does (numbers become
// float64, as they do for helm).
func values(t *testing.T, text string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("test values: %v\n%s", err, text)
	}
	return v
}

// rendered is a chart rendered for one set of values.
type rendered struct {
	notes string
	// all holds every object as "Kind/name".
	all             []string
	raw             map[string]string // "Kind/name" -> manifest
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
	ingresses       map[string]*networkingv1.Ingress
	serviceMonitors map[string]*monitoringv1.ServiceMonitor
}

// renderChart renders the chart as `helm template` does: the install action,
// client only, dry run, against the given Kubernetes version. The chart's
// values.schema.json and kubeVersion are enforced.
func renderChart(vals map[string]any, kube string) (*rendered, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun = true
	inst.DryRunOption = "client"
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = release
	inst.Namespace = namespace
	if inst.KubeVersion, err = chartutil.ParseKubeVersion(kube); err != nil {
		return nil, err
	}
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{notes: rel.Info.Notes, raw: map[string]string{},
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		ingresses: map[string]*networkingv1.Ingress{}, serviceMonitors: map[string]*monitoringv1.ServiceMonitor{},
	}
	for _, m := range releaseutil.SplitManifests(rel.Manifest) {
		if err := r.add(m); err != nil {
			return nil, err
		}
	}
	slices.Sort(r.all)
	return r, nil
}

// add decodes one manifest strictly (a field the API type does not have is an
// error) into its API type, and checks its names and labels are valid.
func (r *rendered) add(m string) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(m), &head); err != nil {
		return fmt.Errorf("manifest: %v\n%s", err, m)
	}
	id := head.Kind + "/" + head.Metadata.Name
	if _, dup := r.raw[id]; dup {
		return fmt.Errorf("%s is rendered twice", id)
	}
	r.all = append(r.all, id)
	r.raw[id] = m
	if errs := validation.IsDNS1123Subdomain(head.Metadata.Name); len(errs) > 0 {
		return fmt.Errorf("%s: name: %s", id, strings.Join(errs, "; "))
	}
	if head.Metadata.Namespace != "" {
		return fmt.Errorf("%s: sets namespace %q (the release's namespace applies)", id, head.Metadata.Namespace)
	}
	if err := checkLabels(head.Metadata.Labels); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	name := head.Metadata.Name
	type kind struct{ apiVersion, kind string }
	var err error
	switch (kind{head.APIVersion, head.Kind}) {
	case kind{"apps/v1", "Deployment"}:
		r.deployments[name], err = decode[appsv1.Deployment](m)
	case kind{"v1", "Service"}:
		r.services[name], err = decode[corev1.Service](m)
		if errs := validation.IsDNS1035Label(name); err == nil && len(errs) > 0 {
			err = fmt.Errorf("a Service name is a DNS label: %s", strings.Join(errs, "; "))
		}
	case kind{"v1", "ConfigMap"}:
		r.configMaps[name], err = decode[corev1.ConfigMap](m)
	case kind{"v1", "Secret"}:
		r.secrets[name], err = decode[corev1.Secret](m)
	case kind{"v1", "ServiceAccount"}:
		r.serviceAccounts[name], err = decode[corev1.ServiceAccount](m)
	case kind{"autoscaling/v2", "HorizontalPodAutoscaler"}:
		r.hpas[name], err = decode[autoscalingv2.HorizontalPodAutoscaler](m)
	case kind{"policy/v1", "PodDisruptionBudget"}:
		r.pdbs[name], err = decode[policyv1.PodDisruptionBudget](m)
	case kind{"networking.k8s.io/v1", "Ingress"}:
		r.ingresses[name], err = decode[networkingv1.Ingress](m)
	case kind{"monitoring.coreos.com/v1", "ServiceMonitor"}:
		r.serviceMonitors[name], err = decode[monitoringv1.ServiceMonitor](m)
	default:
		err = fmt.Errorf("%s %s: a kind the test does not check", head.APIVersion, head.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", id, err, m)
	}
	return nil
}

func decode[T any](m string) (*T, error) {
	var v T
	if err := yaml.UnmarshalStrict([]byte(m), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func checkLabels(l map[string]string) error {
	for k, v := range l {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("label %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %s=%q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	return nil
}

// mustRender renders and fails the test on an error.
func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(vals, kubeVersion)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

// flagSet is what `leadstream ROLE -h` says a role reads.
type flagSet struct {
	// env holds the variable of every flag (with the flag's default).
	env map[string]string
	// secrets holds the variables of secret settings (LEADSTREAM_REDIS_PASSWORD):
	// those also read from a file, LEADSTREAM_REDIS_PASSWORD_FILE.
	secrets map[string]bool
	// deprecated holds the variables of flags whose usage starts "deprecated".
	deprecated map[string]bool
}

// envOnly are the variables every role reads without a flag (cmd/leadstream newLogger).
var envOnly = map[string]bool{"LEADSTREAM_LOG_LEVEL": true, "LEADSTREAM_LOG_FORMAT": true}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]flagSet{}
)

// roleFlags runs `leadstream ROLE -h` and reads each flag's variable; a
// secret is a flag whose NAME-file companion is "file to read -NAME from".
func roleFlags(t *testing.T, role string) flagSet {
	t.Helper()
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if fs, ok := flagsCache[role]; ok {
		return fs
	}
	out, err := exec.Command(leadstreamBin, role, "-h").Output()
	if err != nil {
		t.Fatalf("leadstream %s -h: %v", role, err)
	}
	envRe := regexp.MustCompile(`\(env (LEADSTREAM_[A-Z0-9_]+)(?:, default "([^"]*)")?\)$`)
	fs := flagSet{env: map[string]string{}, secrets: map[string]bool{}, deprecated: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		m := envRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fs.env[m[1]] = m[2]
		if strings.HasPrefix(line, "deprecated") {
			fs.deprecated[m[1]] = true
		}
		if strings.HasPrefix(line, "file to read -") {
			secret, ok := strings.CutSuffix(m[1], "_FILE")
			if !ok {
				t.Fatalf("leadstream %s -h: %q reads a file but its variable %s does not end in _FILE", role, line, m[1])
			}
			fs.secrets[secret] = true
		}
	}
	if len(fs.env) < 10 || len(fs.secrets) == 0 {
		t.Fatalf("leadstream %s -h: read %d flags, %d secrets:\n%s", role, len(fs.env), len(fs.secrets), out)
	}
	flagsCache[role] = fs
	return fs
}

// image is what deploy/Dockerfile's final stage says about the container.
type image struct {
	uid, gid int
	exposed  []int32
}

// readImage reads USER and EXPOSE of the Dockerfile's last stage.
func readImage(t *testing.T) image {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var img image
	user := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			user, img.exposed = "", nil
		case "USER":
			user = f[1]
		case "EXPOSE":
			for _, p := range f[1:] {
				n, err := strconv.ParseInt(strings.TrimSuffix(p, "/tcp"), 10, 32)
				if err != nil {
					t.Fatalf("Dockerfile EXPOSE %q: %v", p, err)
				}
				img.exposed = append(img.exposed, int32(n))
			}
		}
	}
	u, g, ok := strings.Cut(user, ":")
	var err1, err2 error
	img.uid, err1 = strconv.Atoi(u)
	img.gid, err2 = strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("Dockerfile: final stage USER %q, want numeric uid:gid", user)
	}
	return img
}

// prometheusJobs are the scrape jobs of deploy/prometheus/prometheus.yml,
// whose names the alert rules and the dashboard use.
func prometheusJobs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
	}
	return jobs
}
