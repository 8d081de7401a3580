package secretflag

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestSecretFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var pw string
	var keys []string
	String(fs, &pw, "pw", "a password")
	Func(fs, "keys", "keys", func(s string) error {
		if s == "bad-value" {
			return errors.New("keys must not be bad")
		}
		keys = strings.Split(s, ",")
		return nil
	})
	fs.String("plain", "", "not secret")
	if err := fs.Parse([]string{"-pw", "hunter2", "-keys", "a,b"}); err != nil {
		t.Fatal(err)
	}
	if pw != "hunter2" || len(keys) != 2 || Check(fs) != nil {
		t.Fatalf("pw %q keys %q", pw, keys)
	}
	for _, name := range []string{"pw", "keys"} {
		f := fs.Lookup(name)
		if !Is(f) || f.Value.String() != "" || f.DefValue != "" {
			t.Errorf("%s: secret %v, shows %q, default %q", name, Is(f), f.Value.String(), f.DefValue)
		}
	}
	if Is(fs.Lookup("plain")) {
		t.Error("plain flag is secret")
	}
	// A bad value does not fail Parse (whose error would quote it) but Check.
	if err := fs.Parse([]string{"-keys", "bad-value"}); err != nil {
		t.Fatal(err)
	}
	err := Check(fs)
	if err == nil || !strings.Contains(err.Error(), "-keys") || strings.Contains(err.Error(), "bad-value") {
		t.Fatalf("Check = %v", err)
	}
}
