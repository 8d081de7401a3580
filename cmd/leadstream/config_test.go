package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/warehouse"
)

// A secret comes from, in order: -NAME, -NAME-file, $NAME, $NAME_FILE; a
// file's trailing line break is dropped; both forms at one level is an error.
func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+content[:3])
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const env, envFile = "LEADSTREAM_REDIS_PASSWORD", "LEADSTREAM_REDIS_PASSWORD_FILE"
	f := func(args []string, envs map[string]string, want, wantErr string) {
		t.Helper()
		for _, k := range []string{env, envFile, "LEADSTREAM_REDIS_ADDR"} {
			os.Unsetenv(k)
		}
		for k, v := range envs {
			t.Setenv(k, v)
		}
		var c leadstate.Config
		fs := flag.NewFlagSet("processor", flag.ContinueOnError)
		c.RegisterFlags(fs)
		err := parse(fs, args)
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%q %v: error %v, want one containing %q", args, envs, err, wantErr)
			}
		case err != nil:
			t.Errorf("%q %v: %v", args, envs, err)
		case c.Password != want:
			t.Errorf("%q %v: password %q, want %q", args, envs, c.Password, want)
		}
	}
	fromFile := file("file-secret\n")
	crlf := file("crlf-secret\r\n")
	f(nil, nil, "", "")
	f([]string{"-redis.password", "flag-secret"}, map[string]string{env: "env-secret"}, "flag-secret", "")
	f([]string{"-redis.password-file", fromFile}, map[string]string{env: "env-secret"}, "file-secret", "")
	f(nil, map[string]string{env: "env-secret"}, "env-secret", "")
	f(nil, map[string]string{envFile: fromFile}, "file-secret", "")
	f(nil, map[string]string{envFile: crlf}, "crlf-secret", "")
	f([]string{"-redis.password", "flag-secret"}, map[string]string{envFile: fromFile}, "flag-secret", "")
	f([]string{"-redis.password", "a", "-redis.password-file", fromFile}, nil, "", "not both")
	f(nil, map[string]string{env: "a", envFile: fromFile}, "", "set LEADSTREAM_REDIS_PASSWORD or LEADSTREAM_REDIS_PASSWORD_FILE, not both")
	f(nil, map[string]string{envFile: filepath.Join(dir, "missing")}, "", "reading -redis.password from LEADSTREAM_REDIS_PASSWORD_FILE")
}

// Every secret of the collector has its _FILE variable, and a bad secret is
// reported without its value.
func TestCollectorSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("LEADSTREAM_WRITE_KEYS_FILE", write("wk", "key-one,key-two"))
	t.Setenv("LEADSTREAM_SECRET_KEY_FILE", write("sk", "the-secret-key"))
	t.Setenv("LEADSTREAM_TOKEN_KEYS_FILE", write("tk", "k1:0123456789abcdef0123"))
	t.Setenv("LEADSTREAM_KAFKA_SASL_PASSWORD_FILE", write("kp", "kafka-pw"))
	var cfg ingest.Config
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	cfg.Kafka.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.WriteKeys, ",") != "key-one,key-two" || cfg.SecretKey != "the-secret-key" ||
		len(cfg.TokenKeys) != 1 || string(cfg.TokenKeys[0].Secret) != "0123456789abcdef0123" || cfg.Kafka.Security.SASLPassword != "kafka-pw" {
		t.Fatalf("secrets from files: %+v", cfg)
	}

	t.Setenv("LEADSTREAM_TOKEN_KEYS_FILE", write("bad", "tooshort-xyz"))
	fs = flag.NewFlagSet("collector", flag.ContinueOnError)
	cfg = ingest.Config{}
	cfg.RegisterFlags(fs)
	err := parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "-token-keys") || strings.Contains(err.Error(), "tooshort-xyz") {
		t.Fatalf("bad token key: %v", err)
	}
	fs = flag.NewFlagSet("collector", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err = parse(fs, []string{"-token-keys", "short-one"})
	if err == nil || strings.Contains(err.Error(), "short-one") {
		t.Fatalf("bad token key on the command line: %v", err)
	}
}

// -apply (retention drops data, rescore rewrites Redis) is taken from the
// command line only: LEADSTREAM_APPLY=true in the environment does nothing,
// while the other flags of such a command still read theirs.
func TestApplyNotFromEnvironment(t *testing.T) {
	t.Setenv("LEADSTREAM_APPLY", "true")
	t.Setenv("LEADSTREAM_OLDER_THAN", "400d")
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	apply := fs.Bool("apply", false, "")
	older := fs.String("older-than", "", "")
	if err := parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if *apply || *older != "400d" {
		t.Fatalf("apply %v, older-than %q: want false (environment ignored) and 400d", *apply, *older)
	}
	fs = flag.NewFlagSet("retention", flag.ContinueOnError)
	apply = fs.Bool("apply", false, "")
	if err := parse(fs, []string{"-apply"}); err != nil || !*apply {
		t.Fatalf("-apply on the command line: %v, %v", *apply, err)
	}
}

// Commands that take a subcommand answer -h with their usage (exit 0), as
// the roles do, instead of "unknown command -h".
func TestSubcommandHelp(t *testing.T) {
	for _, h := range []string{"-h", "-help", "--help"} {
		if err := runToken([]string{h}); err != nil {
			t.Errorf("token %s: %v", h, err)
		}
		if err := runRules([]string{h}); err != nil {
			t.Errorf("rules %s: %v", h, err)
		}
		if err := runCosts(t.Context(), []string{h}, nil); err != nil {
			t.Errorf("costs %s: %v", h, err)
		}
	}
	if err := runRules([]string{"nope"}); err == nil {
		t.Error("rules nope: no error")
	}
}

// collector.cors-origins holds write keys (KEY=ORIGIN): a bad value is
// reported without echoing it, from the command line and from the environment.
func TestCORSOriginsErrorHidesKeys(t *testing.T) {
	for _, env := range []bool{false, true} {
		fs := flag.NewFlagSet("collector", flag.ContinueOnError)
		var c ingest.Config
		c.RegisterFlags(fs)
		args := []string{"-collector.cors-origins", "sk_TOPSECRET=ftp//bad"}
		if env {
			t.Setenv("LEADSTREAM_COLLECTOR_CORS_ORIGINS", "sk_TOPSECRET=ftp//bad")
			args = nil
		}
		err := parse(fs, args)
		if err == nil || strings.Contains(err.Error(), "TOPSECRET") || !strings.Contains(strings.ToLower(err.Error()), "cors") {
			t.Errorf("env %v: %v, want an error naming the setting, not its value", env, err)
		}
	}
}

// -h names each flag's value by its type, never by a word the usage text
// puts in back quotes ("empty in `dev`" printed -redis.addr dev), leaves no
// blank after a bool flag, and says that a command-only flag (-apply,
// -rebuild-events) reads no environment variable instead of naming one it
// ignores.
func TestUsageText(t *testing.T) {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	var w warehouse.Config
	w.RegisterFlags(fs)
	var r leadstate.Config
	r.RegisterFlags(fs)
	fs.Bool("apply", false, "drop them")
	var b strings.Builder
	writeUsage(&b, fs)
	out := b.String()
	for _, want := range []string{
		"\n  -clickhouse.addr string\n",
		"\n  -redis.addr string\n",
		"empty in dev = ",
		"\n  -redis.tls\n",
		"\n  -apply\n    \tdrop them (command line only, no environment variable, default \"false\")\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{" dev\n", "LEADSTREAM_APPLY", " \n"} {
		if strings.Contains(out, bad) {
			t.Errorf("usage has %q:\n%s", bad, out)
		}
	}
}

// leadstream help names every kind of report and every token subcommand
// (it listed six of the eight reports and no token verify).
func TestHelpListsReportKindsAndTokenVerify(t *testing.T) {
	for _, k := range reportKinds {
		if !regexp.MustCompile(`[ ,]` + regexp.QuoteMeta(k) + `[,;]`).MatchString(help) {
			t.Errorf("leadstream help does not list the report %q", k)
		}
	}
	if !strings.Contains(help, "token open|click|verify") {
		t.Error("leadstream help does not list token verify")
	}
}
