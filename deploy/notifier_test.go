package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/notify"
)

// webhook is the receiver the stack's notifier delivers to: it verifies each
// request's signature, answers the first attempt of every record with a 503
// (so a retry happens, as it would against a flaky CRM) and keeps what the
// second attempt brought.
type webhook struct {
	srv    *httptest.Server
	secret []byte

	mu        sync.Mutex
	attempts  map[string]int             // Idempotency-Key -> attempts seen
	delivered map[string]webhookDelivery // Idempotency-Key -> the accepted request
	bad       []string                   // requests that broke the contract
}

type webhookDelivery struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Record struct {
		MQLID  string  `json:"mql_id"`
		LeadID string  `json:"lead_id"`
		Model  string  `json:"model"`
		Score  float64 `json:"score"`
	} `json:"record"`
	Attempt string `json:"-"`
}

func newWebhook(t *testing.T, secret string) *webhook {
	t.Helper()
	h := &webhook{secret: []byte(secret), attempts: map[string]int{}, delivered: map[string]webhookDelivery{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *webhook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	key := r.Header.Get(notify.HeaderIdempotencyKey)
	if err := notify.Verify(h.secret, r.Header.Get(notify.HeaderSignature), body, time.Now(), time.Minute); err != nil {
		h.bad = append(h.bad, fmt.Sprintf("%s: signature: %v", key, err))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var d webhookDelivery
	if err := json.Unmarshal(body, &d); err != nil || key == "" || d.ID != key || d.Record.MQLID != key {
		h.bad = append(h.bad, fmt.Sprintf("%s: body %s (%v): want the record with its id as the Idempotency-Key", key, body, err))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	h.attempts[key]++
	if h.attempts[key] == 1 {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	d.Attempt = r.Header.Get(notify.HeaderAttempt)
	h.delivered[key] = d
}

// forLead returns the accepted delivery of the lead's MQL, if any, and the
// contract violations seen so far.
func (h *webhook) forLead(lead string) (webhookDelivery, bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.delivered {
		if d.Kind == "mql" && d.Record.LeadID == lead {
			return d, true, slices.Clone(h.bad)
		}
	}
	return webhookDelivery{}, false, slices.Clone(h.bad)
}

// writeNotifyConfig writes the stack notifier's destinations file and its
// webhook secret (read with {file: …}, as the Helm chart gives secrets) into
// a directory of their own, readable by the image's non-root user: the
// container launcher mounts it read-only, as compose mounts the file.
func writeNotifyConfig(t *testing.T, hook *webhook) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "notify")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "hook-secret")
	conf := fmt.Sprintf(`destinations:
  - name: crm
    type: webhook
    url: %s/hooks/leadstream
    secret: {file: %s}
    kinds: [mql]
    timeout: 5s
`, hook.srv.URL, secretFile)
	for name, content := range map[string]string{"notify.yaml": conf, "hook-secret": string(hook.secret) + "\n"} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitNotified waits until the notifier has delivered the journey's MQL to
// the webhook (on its second attempt, after the 503) and both attempts are
// rows of ClickHouse's notifications table.
func (s *stack) waitNotified(t *testing.T) {
	t.Helper()
	var d webhookDelivery
	testsvc.Eventually(t, "the notifier delivers the lead's MQL to the webhook", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		var ok bool
		var bad []string
		d, ok, bad = s.hook.forLead(s.lead)
		if len(bad) > 0 {
			t.Fatalf("the webhook got requests that break the contract: %q", bad)
		}
		return ok, "no accepted delivery yet"
	})
	if d.Attempt != "2" || d.Record.Model != "default" || d.Record.Score < 100 {
		t.Errorf("delivered %+v: want attempt 2 (the first answered 503) of model default's crossing of 100", d)
	}
	q := fmt.Sprintf("SELECT arrayStringConcat(groupArray(status), ',') FROM (SELECT status FROM %s.notifications FINAL "+
		"WHERE destination = 'crm' AND mql_id = '%s' ORDER BY attempt)", s.database, d.ID)
	testsvc.Eventually(t, "the notifier's attempts are rows in ClickHouse", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		out, err := clickhouseTry(s.clickhouse, q)
		return err == nil && out == "retry,delivered", fmt.Sprintf("%q %v (want retry,delivered)", out, err)
	})
}

// envRefs are the variables a destinations file reads with {env: NAME}.
func envRefs(t *testing.T, file string) []string {
	t.Helper()
	var doc any
	readYAML(t, file, &doc)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if name, ok := v["env"].(string); ok && len(v) == 1 {
				refs = append(refs, name)
				return
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	slices.Sort(refs)
	return slices.Compact(refs)
}

// checkComposeNotifier: the notifier mounts its destinations file read-only
// where LEADSTREAM_NOTIFY_CONFIG points; the file (as compose.env.example
// chooses it) exists; every {env: NAME} of it is in the notifier's
// environment and every other variable there is one of them; and the binary
// started with that environment (its values as compose.env.example gives
// them) and that file gets through the destinations to dialling Kafka, so the
// example is valid for the notifier's own parser.
func checkComposeNotifier(t *testing.T, bin string, svc composeService, envExample map[string]string) {
	t.Helper()
	confPath := svc.Environment["LEADSTREAM_NOTIFY_CONFIG"]
	var source string
	for _, v := range svc.Volumes {
		parts := strings.Split(interpolate(v, envExample), ":")
		if len(parts) >= 2 && parts[1] == confPath {
			if len(parts) != 3 || parts[2] != "ro" {
				t.Errorf("notifier volume %q: mount the destinations file read-only (:ro)", v)
			}
			source = parts[0]
		}
	}
	if confPath == "" || source == "" {
		t.Fatalf("notifier: LEADSTREAM_NOTIFY_CONFIG %q, volumes %q: want the destinations file mounted there", confPath, svc.Volumes)
	}
	file := filepath.Join(repoRoot, "deploy", source)
	refs := envRefs(t, file)
	if len(refs) == 0 {
		t.Errorf("%s reads no secret with {env: NAME}: a webhook needs its secret", source)
	}
	env := append(cleanEnv(), "LEADSTREAM_NOTIFY_CONFIG="+file)
	for k, v := range svc.Environment {
		switch {
		case k == "LEADSTREAM_NOTIFY_CONFIG":
		case k == "LEADSTREAM_KAFKA_BROKERS":
			env = append(env, k+"="+freeAddr(t)) // nothing listens: the role stops there
		default:
			env = append(env, k+"="+interpolate(v, envExample))
		}
	}
	for _, name := range refs {
		if _, ok := svc.Environment[name]; !ok {
			t.Errorf("%s reads {env: %s}, which the notifier's environment does not set", source, name)
		}
	}
	for k := range svc.Environment {
		if !strings.HasPrefix(k, "LEADSTREAM_") && !slices.Contains(refs, k) {
			t.Errorf("the notifier's environment sets %s, which %s does not read", k, source)
		}
	}
	out := runRole(t, bin, "notifier", env)
	if !strings.Contains(out, "kafka at ") || strings.Contains(out, "destinations[") || strings.Contains(out, "notify config") {
		t.Errorf("leadstream notifier with %s and compose's environment: want it past the destinations file, stopping at Kafka; it said:\n%s", source, out)
	}
}

// composeEnvExample reads deploy/compose.env.example: NAME -> value.
func composeEnvExample(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "compose.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || v == "" {
			t.Errorf("compose.env.example: %q: want NAME=value", line)
		}
		set[k] = v
	}
	return set
}

// runRole runs `leadstream ROLE` with exactly env and returns its output once
// it exits with an error, as a role does when it cannot reach Kafka.
func runRole(t *testing.T, bin, role string, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, role)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("leadstream %s: want it to stop with an error, got %v (%v):\n%s", role, err, ctx.Err(), out)
	}
	return string(out)
}
