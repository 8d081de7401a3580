package charttest

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// roleSecrets are the secret keys each role may mount: nothing it does not
// read. The notifier also mounts the notify-NAME keys its destinations file reads.
var roleSecrets = map[string][]string{
	"collector": {"write-keys", "server-write-keys", "secret-key", "clickhouse-password", "token-keys", "identity-keys", "redis-password", "collector-redis-password", "kafka-sasl-password"},
	"processor": {"redis-password", "kafka-sasl-password"},
	"sink":      {"clickhouse-password", "kafka-sasl-password"},
	"notifier":  {"clickhouse-password", "kafka-sasl-password"},
}

// container returns the role's Deployment and its one container.
func container(t *testing.T, r *rendered, role string) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := r.deployments[fullname+"-"+role]
	if d == nil {
		t.Fatalf("no Deployment %s-%s in %q", fullname, role, r.all)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment %s: %d containers, want 1", d.Name, n)
	}
	return d, &d.Spec.Template.Spec.Containers[0]
}

// podEnv is the environment the kubelet gives the container: its envFrom
// ConfigMaps, then env (which wins). A variable from a Secret or any other
// source is an error: secrets must arrive as files.
func podEnv(t *testing.T, r *rendered, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil || from.Prefix != "" {
			t.Errorf("%s: envFrom %+v: want a ConfigMap without prefix", c.Name, from)
			continue
		}
		cm := r.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Errorf("%s: envFrom names ConfigMap %q, which the chart does not render", c.Name, from.ConfigMapRef.Name)
			continue
		}
		maps.Copy(env, cm.Data)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("%s: %s comes from %+v: settings come from the ConfigMap, secrets from files", c.Name, e.Name, e.ValueFrom)
		}
		env[e.Name] = e.Value
	}
	return env
}

// checkEnv checks the role's variables against its flags as the binary
// prints them: each is a flag's (or a logging variable), no secret is a
// variable (only its _FILE), and none is empty. With all (every value set),
// the logging variables must be set too.
func checkEnv(t *testing.T, role string, env map[string]string, all bool) {
	t.Helper()
	fs := roleFlags(t, role)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		switch _, isFlag := fs.env[k]; {
		case fs.secrets[k]:
			t.Errorf("%s: secret %s is a variable (in the pod spec and ConfigMap for all to read); mount it and set %s_FILE", role, k, k)
		case !isFlag && !envOnly[k]:
			t.Errorf("%s: %s is not a variable of `leadstream %s` (it would be ignored)", role, k, role)
		case env[k] == "":
			t.Errorf("%s: %s is empty: leave an unset setting out, so the role's default applies", role, k)
		}
	}
	if !all {
		return
	}
	for k := range envOnly {
		if _, ok := env[k]; !ok {
			t.Errorf("%s: %s cannot be given through the chart", role, k)
		}
	}
}

// unwired are the role's flags the environment does not set: settings by
// their variable, secrets by their _FILE variable.
func unwired(t *testing.T, role string, env map[string]string) (settings, secrets []string) {
	t.Helper()
	fs := roleFlags(t, role)
	for _, k := range slices.Sorted(maps.Keys(fs.env)) {
		base, isFile := strings.CutSuffix(k, "_FILE")
		switch {
		case fs.secrets[k]:
			if _, ok := env[k+"_FILE"]; !ok {
				secrets = append(secrets, k+"_FILE")
			}
		case isFile && fs.secrets[base]:
		default:
			if _, ok := env[k]; !ok {
				settings = append(settings, k)
			}
		}
	}
	return settings, secrets
}

// selects reports whether sel selects a pod or object with these labels.
func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// selectedDeployments are the Deployments whose pods sel selects.
func selectedDeployments(t *testing.T, r *rendered, sel *metav1.LabelSelector) []string {
	t.Helper()
	var names []string
	for name, d := range r.deployments {
		if selects(t, sel, d.Spec.Template.Labels) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// containerPort resolves a probe's or Service's port (a name or a number)
// on the container, or 0.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkRole checks one role's Deployment, container and Service; all says
// every value is set (checkEnv).
func checkRole(t *testing.T, r *rendered, role string, all bool) {
	t.Helper()
	img := readImage(t)
	d, c := container(t, r, role)
	pod := d.Spec.Template.Spec
	env := podEnv(t, r, c)
	checkEnv(t, role, env, all)

	if !slices.Equal(c.Args, []string{role}) || len(c.Command) > 0 {
		t.Errorf("%s: command %q args %q, want the image's entrypoint with args [%s]", role, c.Command, c.Args, role)
	}
	if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("%s: the Deployment's selector %+v does not select its own pods %v", role, d.Spec.Selector, d.Spec.Template.Labels)
	}
	if got := selectedDeployments(t, r, d.Spec.Selector); !slices.Equal(got, []string{d.Name}) {
		t.Errorf("%s: the Deployment's selector selects the pods of %q: each role needs its own", role, got)
	}

	// The port: LEADSTREAM_HTTP_ADDR, the container port, the image's EXPOSE.
	_, p, err := net.SplitHostPort(env["LEADSTREAM_HTTP_ADDR"])
	port, _ := strconv.Atoi(p)
	if err != nil || port == 0 {
		t.Fatalf("%s: LEADSTREAM_HTTP_ADDR %q: want :PORT", role, env["LEADSTREAM_HTTP_ADDR"])
	}
	if got := containerPort(c, intstr.FromString("http")); got != int32(port) {
		t.Errorf("%s: container port \"http\" is %d, the role listens on %d", role, got, port)
	}
	if !slices.Contains(img.exposed, int32(port)) {
		t.Errorf("%s: port %d is not one the image exposes (%v)", role, port, img.exposed)
	}

	// Probes: alive while the process serves /healthz; ready while /readyz
	// answers 2xx. Each /readyz check takes up to 2 s (cmd/leadstream readyTimeout).
	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}}
	for _, pr := range probes {
		switch h := pr.probe; {
		case h == nil || h.HTTPGet == nil:
			t.Errorf("%s: %s %+v: want an HTTP GET of %s", role, pr.name, h, pr.path)
		case h.HTTPGet.Path != pr.path || containerPort(c, h.HTTPGet.Port) != int32(port):
			t.Errorf("%s: %s gets %s on port %s, want %s on %d", role, pr.name, h.HTTPGet.Path, h.HTTPGet.Port.String(), pr.path, port)
		case h.TimeoutSeconds < 3:
			t.Errorf("%s: %s timeout %d s: the role's checks take up to 2 s", role, pr.name, h.TimeoutSeconds)
		}
	}

	// Security: as the image runs (non-root uid, no shell, no files written).
	psc, sc := pod.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != int64(img.uid):
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and runAsUser %d (the image's USER)", role, psc, img.uid)
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("%s: container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", role, sc)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks is not false: Services named leadstream-… would add LEADSTREAM_… variables the roles read", role)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; the roles use no Kubernetes API", role)
	}
	if sa := pod.ServiceAccountName; sa != "default" && r.serviceAccounts[sa] == nil {
		t.Errorf("%s: service account %q is not rendered", role, sa)
	}
	// SIGTERM: the roles flush and commit; compose and systemd give them 45 s.
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 45 {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want at least 45", role, g)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v: want CPU and memory requests and a memory limit", role, c.Resources)
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Errorf("%s: no checksum/config annotation: a changed setting would not restart the pods", role)
	}
	checkSecretMounts(t, r, role, pod, c)

	// The Service: selects only this role's pods, at its port.
	svc := r.services[fullname+"-"+role]
	if svc == nil {
		t.Fatalf("%s: no Service %s-%s", role, fullname, role)
	}
	if got := selectedDeployments(t, r, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}); !slices.Equal(got, []string{d.Name}) {
		t.Errorf("%s: Service %s selects the pods of %q", role, svc.Name, got)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || containerPort(c, svc.Spec.Ports[0].TargetPort) != int32(port) {
		t.Errorf("%s: Service ports %+v: want one named http reaching the container's port %d", role, svc.Spec.Ports, port)
	}
}

// checkSecretMounts: the Secret volume projects only keys the role reads,
// read-only and readable by the pod's group.
func checkSecretMounts(t *testing.T, r *rendered, role string, pod corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Secret == nil || v.Name != "secrets" {
			continue
		}
		if len(v.Secret.Items) == 0 {
			t.Errorf("%s: secret volume mounts every key of %s; project only the role's", role, v.Secret.SecretName)
		}
		for _, it := range v.Secret.Items {
			if !slices.Contains(roleSecrets[role], it.Key) && !(role == "notifier" && strings.HasPrefix(it.Key, "notify-")) {
				t.Errorf("%s: mounts secret %s, which it does not read", role, it.Key)
			}
		}
		if m := v.Secret.DefaultMode; m == nil || *m&0o040 == 0 || *m&0o007 != 0 {
			t.Errorf("%s: secret files' mode %v: want group-readable (fsGroup), not world-readable", role, m)
		}
		if pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil {
			t.Errorf("%s: no fsGroup: the non-root user could not read the secret files", role)
		}
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("%s: volume %s is mounted writable", role, m.Name)
		}
	}
}

// podFiles lays out the files the container's volumes hold under root (a
// Secret or ConfigMap volume: its items, or every key), reading them from
// the rendered objects or from existing (Secrets the chart refers to but
// does not create). Paths of the pod's mounts written in a ConfigMap's files
// (the notifier's destinations file names its secret files) are moved under
// root too.
func podFiles(t *testing.T, r *rendered, d *appsv1.Deployment, c *corev1.Container, root string, existing map[string]map[string]string) {
	t.Helper()
	var configFiles []string
	defer func() {
		for _, f := range configFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			content := string(b)
			for _, m := range c.VolumeMounts {
				content = strings.ReplaceAll(content, m.MountPath+"/", filepath.Join(root, m.MountPath)+"/")
			}
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}()
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("%s: mounts volume %q, which the pod does not have", c.Name, m.Name)
		}
		var data map[string]string
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			items = v.Secret.Items
			if s := r.secrets[v.Secret.SecretName]; s != nil {
				data = map[string]string{}
				for k, b := range s.Data {
					data[k] = string(b)
				}
			} else if data = existing[v.Secret.SecretName]; data == nil {
				t.Fatalf("%s: mounts Secret %q, which is neither rendered nor one the test provides", c.Name, v.Secret.SecretName)
			}
		case v.ConfigMap != nil:
			items = v.ConfigMap.Items
			if cm := r.configMaps[v.ConfigMap.Name]; cm != nil {
				data = cm.Data
			} else if data = existing[v.ConfigMap.Name]; data == nil {
				t.Fatalf("%s: mounts ConfigMap %q, which is neither rendered nor one the test provides", c.Name, v.ConfigMap.Name)
			}
		default:
			t.Fatalf("%s: volume %+v: the test knows Secret and ConfigMap volumes", c.Name, v)
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			content, ok := data[it.Key]
			if !ok {
				// The kubelet would not start the pod.
				t.Errorf("%s: volume %s projects key %q, which %s does not hold", c.Name, m.Name, it.Key, v.Name)
				continue
			}
			file := filepath.Join(root, m.MountPath, it.Path)
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if v.ConfigMap != nil {
				configFiles = append(configFiles, file)
			}
		}
	}
}

// startRole runs the role's binary with the pod's environment and files (its
// paths moved under a temporary root) and returns its output once it exits.
// Every service address should be one nothing listens on: the role then
// gets through its settings, secrets, TLS files and rules, and stops when it
// dials Kafka, which it checks first.
func startRole(t *testing.T, r *rendered, role string, existing map[string]map[string]string) string {
	t.Helper()
	d, c := container(t, r, role)
	root := t.TempDir()
	podFiles(t, r, d, c, root, existing)
	var env []string
	for k, v := range podEnv(t, r, c) {
		if path.IsAbs(v) {
			// A file setting: the file must be where a volume put it.
			moved := filepath.Join(root, v)
			if _, err := os.Stat(moved); err != nil {
				t.Errorf("%s: %s=%s: no volume provides that file", role, k, v)
			}
			v = moved
		}
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, leadstreamBin, c.Args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("%s: want it to stop with an error at dialling Kafka, got %v (%v):\n%s", role, err, ctx.Err(), out)
	}
	return string(out)
}

// checkStarts runs the role (startRole) and checks it got past its settings
// (and the notifier past its destinations file and the secret files it
// reads): it stopped dialling Kafka at kafkaAddr, and named no variable,
// setting or destination.
func checkStarts(t *testing.T, r *rendered, role, kafkaAddr string, existing map[string]map[string]string) {
	t.Helper()
	out := startRole(t, r, role, existing)
	if !strings.Contains(out, "kafka at "+kafkaAddr) || strings.Contains(out, "LEADSTREAM_") || strings.Contains(out, "destinations[") {
		t.Errorf("%s: want it to get through its settings and stop dialling kafka at %s; it said:\n%s", role, kafkaAddr, out)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
