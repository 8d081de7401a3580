package charttest

import (
	"slices"
	"strings"
	"testing"
)

// notifierValues are the required values and the notifier, its destinations
// file given inline with a webhook secret from secrets.notify.
func notifierValues(t *testing.T, kafka, redis, clickhouse string) map[string]any {
	v := minimalValues(t, kafka, redis, clickhouse)
	v["secrets"].(map[string]any)["notify"] = map[string]any{"crm-hook": "crm-hook-secret-0123456789"}
	v["notifier"] = map[string]any{"enabled": true, "config": map[string]any{"content": `destinations:
  - name: crm
    type: webhook
    url: https://crm.acme.example/hooks/leadstream
    secret: {file: /etc/leadstream/secrets/notify-crm-hook}
`}}
	return v
}

// TestNotifier: with notifier.enabled and only the values it needs, the
// notifier renders as the other roles do (checkRole), starts with its pod's
// environment and files, reading its destinations and their secret, and
// changes to its destinations or replicas touch only what they should.
func TestNotifier(t *testing.T) {
	kafka := closedAddr(t)
	v := notifierValues(t, kafka, closedAddr(t), closedAddr(t))
	r := mustRender(t, v)
	for _, id := range []string{"Deployment/" + fullname + "-notifier", "Service/" + fullname + "-notifier",
		"ConfigMap/" + fullname + "-notifier", "ConfigMap/" + fullname + "-destinations"} {
		if _, ok := r.raw[id]; !ok {
			t.Errorf("no %s in %q", id, r.all)
		}
	}
	checkRole(t, r, "notifier", false)
	checkStarts(t, r, "notifier", kafka, nil)
	_, c := container(t, r, "notifier")
	env := podEnv(t, r, c)
	if got := env["LEADSTREAM_NOTIFY_CONFIG"]; got != "/etc/leadstream/notify/notify.yaml" {
		t.Errorf("LEADSTREAM_NOTIFY_CONFIG %q, want the mounted destinations file", got)
	}
	if got := secretItems(t, r, "notifier", fullname+"-secrets"); !slices.Equal(got, []string{"notify-crm-hook"}) {
		t.Errorf("the notifier mounts %q, want notify-crm-hook", got)
	}
	for _, role := range coreRoles {
		if got := secretItems(t, r, role, fullname+"-secrets"); slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "notify-") }) {
			t.Errorf("%s mounts %q: the notify-NAME secrets are the notifier's", role, got)
		}
	}
	if !strings.Contains(r.notes, "collector, processor, sink, notifier") || !strings.Contains(r.notes, fullname+"-destinations") {
		t.Errorf("NOTES do not list the notifier and its destinations:\n%s", r.notes)
	}

	// The destinations changed: only the notifier rolls.
	checksums := func(v map[string]any) map[string]string {
		r := mustRender(t, v)
		out := map[string]string{}
		for _, role := range roles {
			d, _ := container(t, r, role)
			out[role] = d.Spec.Template.Annotations["checksum/config"]
		}
		return out
	}
	before := checksums(v)
	v2 := notifierValues(t, kafka, closedAddr(t), closedAddr(t))
	v2["kafka"], v2["redis"], v2["clickhouse"] = v["kafka"], v["redis"], v["clickhouse"]
	cfg := v2["notifier"].(map[string]any)["config"].(map[string]any)
	cfg["content"] = cfg["content"].(string) + "    min_score: 120\n"
	after := checksums(v2)
	for _, role := range roles {
		if changed := before[role] != after[role]; changed != (role == "notifier") {
			t.Errorf("%s: the destinations changed: checksum/config changed %v", role, changed)
		}
	}

	// More notifiers than partitions: the NOTES say so.
	v3 := notifierValues(t, "kafka:9092", "redis:6379", "clickhouse:9000")
	v3["notifier"].(map[string]any)["replicas"] = 9
	if r := mustRender(t, v3); !strings.Contains(r.notes, "notifier.replicas (9) is more than kafka.partitions (8)") {
		t.Errorf("NOTES with 9 notifiers on 8 partitions:\n%s", r.notes)
	}
}

// TestNotifierBadValues: a notifier without destinations, with a secret
// written into them, or reading a secret file it does not mount is refused
// when rendering, naming the value.
func TestNotifierBadValues(t *testing.T) {
	f := func(want string, edit func(v map[string]any, n map[string]any)) {
		t.Helper()
		v := notifierValues(t, "kafka:9092", "redis:6379", "clickhouse:9000")
		edit(v, v["notifier"].(map[string]any))
		_, err := renderChart(v, kubeVersion)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
	content := func(n map[string]any, c string) { n["config"] = map[string]any{"content": c} }
	f("notifier.enabled: notifier.config.content", func(_, n map[string]any) { delete(n, "config") })
	f("notifier.config.content and notifier.config.existingConfigMap", func(_, n map[string]any) {
		n["config"].(map[string]any)["existingConfigMap"] = "x"
	})
	f("destinations[0].secret is written into the file", func(_, n map[string]any) {
		content(n, "destinations:\n  - {name: crm, type: webhook, url: \"https://crm.example/h\", secret: plain-secret-0123456789}\n")
	})
	f("destinations[1].smtp.password is written into the file", func(_, n map[string]any) {
		content(n, `destinations:
  - {name: crm, type: webhook, url: "https://crm.example/h", secret: {file: /etc/leadstream/secrets/notify-crm-hook}}
  - name: mail
    type: email
    from: a@example.com
    to: [b@example.com]
    smtp: {host: smtp.example.com, username: u, password: hunter2}
`)
	})
	f("destinations[0].url is written into the file", func(_, n map[string]any) {
		content(n, "destinations:\n  - {name: sales, type: slack, url: \"https://hooks.slack.example/services/T0/B0/x\"}\n")
	})
	f("destinations[0].headers.Authorization is written into the file", func(_, n map[string]any) {
		content(n, "destinations:\n  - {name: crm, type: webhook, url: \"https://crm.example/h\", secret: {file: /etc/leadstream/secrets/notify-crm-hook}, headers: {X-Source: leadstream, Authorization: \"Bearer abc\"}}\n")
	})
	f("reads /etc/leadstream/secrets/notify-smtp, but there is no secret notify-smtp: set secrets.notify.smtp", func(_, n map[string]any) {
		content(n, "destinations:\n  - {name: crm, type: webhook, url: \"https://crm.example/h\", secret: {file: /etc/leadstream/secrets/notify-smtp}}\n")
	})
	f("the destinations file reads only notify-NAME keys", func(_, n map[string]any) {
		content(n, "destinations:\n  - {name: crm, type: webhook, url: \"https://crm.example/h\", secret: {file: /etc/leadstream/secrets/clickhouse-password}}\n")
	})
	f("notifier.config.content is not a YAML mapping", func(_, n map[string]any) { content(n, "destinations: [\n") })
	// values.schema.json.
	f("'crm hook' does not match pattern", func(v, _ map[string]any) { v["secrets"].(map[string]any)["notify"] = map[string]any{"crm hook": "x"} })
	f("concurrency", func(_, n map[string]any) { n["concurrency"] = 0 })
	f("maxAge", func(_, n map[string]any) { n["maxAge"] = "1d" })
	f("existingSecretKeys", func(v, _ map[string]any) {
		v["secrets"] = map[string]any{"existingSecret": "s", "existingSecretKeys": []any{"write-keys", "notify-"}}
	})
	f("notifier.extraSettings.LEADSTREAM_NOTIFY_CONFIG: the chart sets", func(_, n map[string]any) {
		n["extraSettings"] = map[string]any{"LEADSTREAM_NOTIFY_CONFIG": "/x.yaml"}
	})
}

// TestNotifierLint runs `helm lint --strict` with the notifier enabled.
func TestNotifierLint(t *testing.T) {
	lint(t, notifierValues(t, "kafka:9092", "redis:6379", "clickhouse:9000"))
}
