package main

import (
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/ingest/token"
)

func TestBaseAlias(t *testing.T) {
	got := baseAlias([]string{"--base", "https://t.example", "--base=https://u.example", "-base", "x", "--lead", "base"})
	want := []string{"-public-url", "https://t.example", "-public-url=https://u.example", "-public-url", "x", "--lead", "base"}
	if !slices.Equal(got, want) {
		t.Fatalf("baseAlias = %q, want %q", got, want)
	}
}

// leadstream token mints links that expire --ttl from now (180 days by
// default), and verify says so.
func TestTokenTTL(t *testing.T) {
	const keys = "k1:0123456789abcdef-test"
	mint := func(args ...string) string {
		t.Helper()
		out, err := captureStdout(func() error {
			return runToken(append([]string{"click", "-token-keys", keys, "--lead", "l", "--message", "m", "--url", "https://acme.example/"}, args...))
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	ks, _ := token.ParseKeys(keys)
	kr, _ := token.NewKeyring(ks...)
	for _, c := range []struct {
		args []string
		ttl  time.Duration
	}{{nil, token.DefaultTTL}, {[]string{"--ttl", "2h"}, 2 * time.Hour}} {
		u := mint(c.args...)
		claims, err := kr.Verify(u[strings.LastIndex(u, "/c/")+3:])
		if want := time.Now().Add(c.ttl); err != nil || claims.Expires.Before(want.Add(-5*time.Second)) || claims.Expires.After(want) {
			t.Errorf("%v: expires %v (%v), want about %v", c.args, claims.Expires, err, want)
		}
	}
	out, err := captureStdout(func() error { return runToken([]string{"verify", "-token-keys", keys, mint("--ttl", "1m")}) })
	if err != nil || !strings.Contains(out, "expires") {
		t.Fatalf("verify: %s %v", out, err)
	}
	u := mint("--ttl", "1s")
	time.Sleep(2100 * time.Millisecond)
	out, err = captureStdout(func() error { return runToken([]string{"verify", "-token-keys", keys, u}) })
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired link: %v", err)
	}
	// What verify prints of an expired link does not call it valid.
	if !strings.HasPrefix(out, "expired click token (key k1)\n") {
		t.Errorf("an expired link printed %q, want it to begin with \"expired click token (key k1)\"", out)
	}
}

// captureStdout runs f with os.Stdout going to a pipe and returns what it wrote.
func captureStdout(f func() error) (string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	err = f()
	os.Stdout = stdout
	w.Close()
	return <-done, err
}
