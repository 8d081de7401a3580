package deploy

import (
	"bufio"
	"bytes"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// composeFile is the part of the Compose specification deploy/compose.yaml
// uses. Anchors and merge keys (<<) are resolved by the YAML decoder.
type composeFile struct {
	Services map[string]composeService
	Volumes  map[string]any
}

type composeService struct {
	Image       string
	Profiles    []string
	Build       *struct{ Context, Dockerfile string }
	Command     []string
	Environment map[string]string
	Ports       []string
	Volumes     []string
	DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
	Healthcheck *struct {
		Test              []string
		Interval, Timeout string
		Retries           int
		StartPeriod       string `yaml:"start_period"`
	}
	StopGracePeriod string         `yaml:"stop_grace_period"`
	ReadOnly        bool           `yaml:"read_only"`
	Restart         string         `yaml:"restart"`
	CapDrop         []string       `yaml:"cap_drop"`
	SecurityOpt     []string       `yaml:"security_opt"`
	Ulimits         map[string]any `yaml:"ulimits"`
	Logging         any            `yaml:"logging"`
}

func readCompose(t *testing.T) (*composeFile, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeCompose(b)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c, string(b)
}

// decodeCompose resolves anchors, aliases and merge keys (<<), drops the
// top-level x- extensions (their content reaches the services through
// anchors), and decodes the rest strictly: a key composeFile does not know is
// a typo or a setting this test does not check.
func decodeCompose(b []byte) (*composeFile, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	for k := range doc {
		if strings.HasPrefix(k, "x-") {
			delete(doc, k)
		}
	}
	expanded, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

// roleFlags runs `leadstream ROLE -h` and returns the environment variables
// of the role's flags with their defaults (config.go's flag <-> env rule, as
// the binary prints it).
func roleFlags(t *testing.T, bin, role string) map[string]string {
	t.Helper()
	out, err := exec.Command(bin, role, "-h").Output()
	if err != nil {
		t.Fatalf("leadstream %s -h: %v", role, err)
	}
	re := regexp.MustCompile(`\(env (LEADSTREAM_[A-Z0-9_]+)(?:, default "([^"]*)")?\)$`)
	flags := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2]
		}
	}
	if len(flags) < 3 {
		t.Fatalf("leadstream %s -h listed %d flags:\n%s", role, len(flags), out)
	}
	return flags
}

// envOnly are variables every role reads without a flag (cmd/leadstream newLogger).
var envOnly = map[string]bool{"LEADSTREAM_LOG_LEVEL": true, "LEADSTREAM_LOG_FORMAT": true}

// roleNeeds are the services each role must be given (variable -> service).
var roleNeeds = map[string]map[string]string{
	"collector": {"LEADSTREAM_KAFKA_BROKERS": "redpanda", "LEADSTREAM_REDIS_ADDR": "redis", "LEADSTREAM_CLICKHOUSE_ADDR": "clickhouse"}, // erasure
	"processor": {"LEADSTREAM_KAFKA_BROKERS": "redpanda", "LEADSTREAM_REDIS_ADDR": "redis"},
	"sink":      {"LEADSTREAM_KAFKA_BROKERS": "redpanda", "LEADSTREAM_CLICKHOUSE_ADDR": "clickhouse"},
	"notifier":  {"LEADSTREAM_KAFKA_BROKERS": "redpanda", "LEADSTREAM_CLICKHOUSE_ADDR": "clickhouse"},
}

// optionalRoles start only with their compose profile: the notifier needs
// the operator's destinations file (README "Notifications").
var optionalRoles = map[string]string{"notifier": "notifier"}

// composeVarRE is compose's interpolation: ${NAME}, ${NAME:-default},
// ${NAME-default}, ${NAME:?message}, ${NAME?message}.
var composeVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate resolves compose's ${…} in s with the settings of env (a
// missing required one is docker-compose's to refuse: checkDockerCompose).
func interpolate(s string, env map[string]string) string {
	return composeVarRE.ReplaceAllStringFunc(s, func(m string) string {
		g := composeVarRE.FindStringSubmatch(m)
		v, set := env[g[1]]
		switch g[2] {
		case ":-":
			if v == "" {
				return g[3]
			}
		case "-":
			if !set {
				return g[3]
			}
		}
		return v
	})
}

// TestCompose checks deploy/compose.yaml without starting it (no image can
// be pulled here): Debian's docker-compose validates it against the Compose
// schema; every LEADSTREAM_ variable of a role is one of that role's flags (as
// `leadstream ROLE -h` lists them); roles reach the services they need at the
// ports those services listen on and wait for them to be healthy; each role's
// health check and Prometheus scrape use its HTTP port; Redis keeps an AOF;
// Prometheus loads the alert rules and Grafana the dashboard; bind mounts
// exist; every ${VAR} is documented in compose.env.example. The notifier
// (profile notifier) mounts its destinations file, and the binary accepts the
// file compose.env.example names with the environment compose gives it.
func TestCompose(t *testing.T) {
	bin, _, _ := leadstreamBinary(t)
	c, raw := readCompose(t)
	deployDir := filepath.Join(repoRoot, "deploy")
	envExample := composeEnvExample(t)

	wantServices := []string{"clickhouse", "collector", "grafana", "notifier", "processor", "prometheus", "redis", "redpanda", "sink"}
	if got := slices.Sorted(maps.Keys(c.Services)); !slices.Equal(got, wantServices) {
		t.Errorf("services %q, want %q", got, wantServices)
	}

	// Where each service listens inside the network.
	listens := map[string][]string{
		"redis":      {"6379"},
		"clickhouse": {"9000", "8123"},
		"prometheus": {"9090"},
		"grafana":    {"3000"},
	}
	for _, arg := range c.Services["redpanda"].Command {
		if v, ok := strings.CutPrefix(arg, "--kafka-addr="); ok {
			for _, l := range strings.Split(v, ",") {
				u, err := url.Parse(l)
				if err != nil {
					t.Fatalf("redpanda --kafka-addr %q: %v", l, err)
				}
				listens["redpanda"] = append(listens["redpanda"], u.Port())
			}
		}
	}
	if len(listens["redpanda"]) == 0 {
		t.Error("redpanda: no --kafka-addr in its command")
	}

	hostPorts := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 || svc.Healthcheck.Interval == "" || svc.Healthcheck.Timeout == "" || svc.Healthcheck.Retries == 0 {
			t.Errorf("%s: health check %+v: want a test, an interval, a timeout and retries", name, svc.Healthcheck)
		}
		if svc.Restart != "unless-stopped" && svc.Restart != "always" {
			t.Errorf("%s: restart %q: want unless-stopped or always", name, svc.Restart)
		}
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			hostPort := parts[len(parts)-2]
			if prev, ok := hostPorts[hostPort]; ok {
				t.Errorf("%s and %s both publish host port %s", prev, name, hostPort)
			}
			hostPorts[hostPort] = name
			if len(parts) == 3 && parts[0] != "127.0.0.1" || len(parts) == 2 && name != "collector" {
				t.Errorf("%s publishes %q: only the collector is for the outside, the rest binds 127.0.0.1", name, p)
			}
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(interpolate(v, envExample), ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("%s mounts %s, which does not exist beside compose.yaml", name, src)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %q, which is not declared", name, src)
			}
		}
		if !strings.Contains(svc.Image, ":") || strings.HasSuffix(svc.Image, ":latest") && svc.Build == nil {
			t.Errorf("%s: image %q: pin a version", name, svc.Image)
		}
	}

	entrypoint := ""
	for _, in := range readDockerfile(t).stages[len(readDockerfile(t).stages)-1].instrs {
		if in.cmd == "ENTRYPOINT" {
			entrypoint = strings.Trim(in.args, `[]"`)
		}
	}
	promJobs := prometheusJobs(t)
	for _, role := range roles {
		svc, ok := c.Services[role]
		if !ok {
			continue
		}
		t.Run(role, func(t *testing.T) {
			if !slices.Equal(svc.Command, []string{role}) {
				t.Errorf("command %q, want [%s]", svc.Command, role)
			}
			if svc.Build == nil || filepath.Join(deployDir, svc.Build.Context, svc.Build.Dockerfile) != filepath.Join(deployDir, "Dockerfile") {
				t.Errorf("build %+v: want context .. and dockerfile deploy/Dockerfile", svc.Build)
			}
			if !svc.ReadOnly || svc.StopGracePeriod == "" || !slices.Equal(svc.CapDrop, []string{"ALL"}) {
				t.Errorf("read_only %v, stop_grace_period %q, cap_drop %q: want a read-only root, time to flush on SIGTERM, no capabilities",
					svc.ReadOnly, svc.StopGracePeriod, svc.CapDrop)
			}
			var wantProfiles []string // none: `docker compose up` starts the role
			if p, ok := optionalRoles[role]; ok {
				wantProfiles = []string{p}
			}
			if !slices.Equal(svc.Profiles, wantProfiles) {
				t.Errorf("profiles %q, want %q", svc.Profiles, wantProfiles)
			}
			flags := roleFlags(t, bin, role)
			for k := range svc.Environment {
				// Other variables of the notifier are its destinations file's {env: NAME}: checkComposeNotifier.
				if _, ok := flags[k]; !ok && !envOnly[k] && (role != "notifier" || strings.HasPrefix(k, "LEADSTREAM_")) {
					t.Errorf("environment %s is not a flag of `leadstream %s` (it would be ignored)", k, role)
				}
			}
			for k, dep := range roleNeeds[role] {
				v := svc.Environment[k]
				for _, addr := range strings.Split(v, ",") {
					host, port, err := net.SplitHostPort(addr)
					if err != nil || host != dep || !slices.Contains(listens[dep], port) {
						t.Errorf("%s=%q: want %s at one of its ports %q", k, v, dep, listens[dep])
					}
				}
				if svc.DependsOn[dep].Condition != "service_healthy" {
					t.Errorf("depends_on %s: %+v, want condition service_healthy", dep, svc.DependsOn[dep])
				}
			}
			httpAddr, ok := svc.Environment["LEADSTREAM_HTTP_ADDR"]
			if !ok {
				httpAddr = flags["LEADSTREAM_HTTP_ADDR"]
			}
			_, port, err := net.SplitHostPort(httpAddr)
			if err != nil || port == "" {
				t.Fatalf("LEADSTREAM_HTTP_ADDR %q: %v", httpAddr, err)
			}
			wantHC := []string{"CMD", entrypoint, "healthcheck", "http://127.0.0.1:" + port + "/readyz"}
			if svc.Healthcheck == nil || !slices.Equal(svc.Healthcheck.Test, wantHC) {
				t.Errorf("healthcheck %+v, want test %q (the image has no shell)", svc.Healthcheck, wantHC)
			}
			for _, p := range svc.Ports {
				parts := strings.Split(p, ":")
				if parts[len(parts)-1] != port {
					t.Errorf("publishes %q, but listens on %s", p, port)
				}
			}
			if got := promJobs["leadstream-"+role]; !slices.Contains(got, role+":"+port) {
				t.Errorf("prometheus job leadstream-%s scrapes %q, want %s:%s", role, got, role, port)
			}
		})
	}
	if _, ok := c.Services["collector"]; ok && len(c.Services["collector"].Ports) == 0 {
		t.Error("the collector publishes no port")
	}
	for _, role := range []string{"collector", "sink", "notifier"} {
		if got := c.Services[role].Environment["LEADSTREAM_CLICKHOUSE_USERNAME"]; got != c.Services["clickhouse"].Environment["CLICKHOUSE_USER"] {
			t.Errorf("the %s logs in as %q, ClickHouse's user is %q", role, got, c.Services["clickhouse"].Environment["CLICKHOUSE_USER"])
		}
		if a, b := c.Services[role].Environment["LEADSTREAM_CLICKHOUSE_PASSWORD"], c.Services["clickhouse"].Environment["CLICKHOUSE_PASSWORD"]; a != b || a == "" {
			t.Errorf("the %s's ClickHouse password %q is not ClickHouse's %q", role, a, b)
		}
	}
	checkComposeNotifier(t, bin, c.Services["notifier"], envExample)

	redisCmd := strings.Join(c.Services["redis"].Command, " ")
	if !strings.Contains(redisCmd, "--appendonly yes") || !strings.Contains(redisCmd, "--appendfsync") {
		t.Errorf("redis command %q: want AOF persistence (--appendonly yes, --appendfsync)", redisCmd)
	}
	if !slices.ContainsFunc(c.Services["redis"].Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		t.Error("redis keeps its AOF in the container: mount a volume at /data")
	}

	prom := c.Services["prometheus"]
	if !slices.Contains(prom.Volumes, "./prometheus:/etc/prometheus:ro") || !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus: volumes %q, command %q: want ./prometheus mounted at /etc/prometheus and its prometheus.yml", prom.Volumes, prom.Command)
	}
	checkGrafana(t, c)
	checkComposeEnv(t, raw, envExample)
	checkDockerCompose(t)
}

// prometheusJobs reads deploy/prometheus/prometheus.yml: the targets of each
// job, "host:port" (static, or DNS names with their port); and checks it
// loads alerts.yaml.
func prometheusJobs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string                       `yaml:"job_name"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
			DNSSDConfigs  []struct {
				Names []string
				Port  int
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yaml") {
		t.Errorf("prometheus.yml rule_files %q: want alerts.yaml", cfg.RuleFiles)
	}
	jobs := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			jobs[sc.JobName] = append(jobs[sc.JobName], s.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				jobs[sc.JobName] = append(jobs[sc.JobName], n+":"+strconv.Itoa(d.Port))
			}
		}
	}
	return jobs
}

// checkGrafana: the provisioned datasource is the compose Prometheus, and the
// dashboard provider reads the directory where compose mounts leadstream.json.
func checkGrafana(t *testing.T, c *composeFile) {
	t.Helper()
	g := c.Services["grafana"]
	var provisioning, dashboard string
	for _, v := range g.Volumes {
		parts := strings.Split(v, ":")
		switch parts[0] {
		case "./grafana/provisioning":
			provisioning = parts[1]
		case "./grafana/leadstream.json":
			dashboard = parts[1]
		}
	}
	if provisioning != "/etc/grafana/provisioning" || dashboard == "" {
		t.Fatalf("grafana volumes %q: want ./grafana/provisioning at /etc/grafana/provisioning and ./grafana/leadstream.json mounted", g.Volumes)
	}
	dir := filepath.Join(repoRoot, "deploy", "grafana", "provisioning")
	var ds struct {
		Datasources []struct {
			Type, URL, UID string
			IsDefault      bool `yaml:"isDefault"`
		}
	}
	readYAML(t, filepath.Join(dir, "datasources", "prometheus.yaml"), &ds)
	promURL := "http://prometheus:9090"
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != promURL || !ds.Datasources[0].IsDefault {
		t.Errorf("grafana datasources %+v: want one default prometheus at %s", ds.Datasources, promURL)
	}
	var dp struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	readYAML(t, filepath.Join(dir, "dashboards", "leadstream.yaml"), &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path != path.Dir(dashboard) {
		t.Errorf("grafana dashboard providers %+v: want a file provider reading %s", dp.Providers, path.Dir(dashboard))
	}
}

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// checkComposeEnv: every ${VAR} of compose.yaml is set in
// compose.env.example (set), and the example sets nothing else.
func checkComposeEnv(t *testing.T, raw string, set map[string]string) {
	t.Helper()
	refs := map[string]bool{}
	for _, m := range composeVarRE.FindAllStringSubmatch(raw, -1) {
		refs[m[1]] = true
	}
	for k := range refs {
		if _, ok := set[k]; !ok {
			t.Errorf("compose.yaml uses ${%s}, which compose.env.example does not document", k)
		}
	}
	for k := range set {
		if !refs[k] {
			t.Errorf("compose.env.example sets %s, which compose.yaml does not use", k)
		}
	}
}

// checkDockerCompose validates the file with Debian's docker-compose (1.29,
// which needs no Docker engine for `config`): with compose.env.example it is
// valid; with no settings it refuses, naming each required one.
func checkDockerCompose(t *testing.T) {
	t.Helper()
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		testsvc.Required(t, "docker-compose", "Debian's docker-compose validates deploy/compose.yaml; deploy/install-deps.sh --test installs it")
	}
	run := func(envFile string) (string, error) {
		cmd := exec.Command(dc, "--project-directory", filepath.Join(repoRoot, "deploy"), "-f", filepath.Join(repoRoot, "deploy", "compose.yaml"),
			"--env-file", envFile, "config", "--quiet")
		var env []string
		for _, kv := range cleanEnv() {
			if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "CLICKHOUSE_") && !strings.HasPrefix(k, "GRAFANA_") {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(filepath.Join(repoRoot, "deploy", "compose.env.example")); err != nil {
		t.Errorf("docker-compose config with compose.env.example: %v\n%s", err, out)
	}
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(empty)
	if err == nil {
		t.Errorf("docker-compose config without settings passed: required secrets must be refused:\n%s", out)
	}
	// docker-compose stops at the first missing one.
	if !regexp.MustCompile(`set [A-Z_]+ in deploy/\.env`).MatchString(out) {
		t.Errorf("docker-compose config without settings: %q, want the message naming the missing variable", out)
	}
}
