package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "kafka producer not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	f := func(args []string, wantErr string) {
		t.Helper()
		err := runHealthcheck(args)
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("healthcheck %q: %v", args, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("healthcheck %q: error %v, want one containing %q", args, err, wantErr)
		}
	}
	f([]string{srv.URL + "/readyz"}, "")
	f([]string{"-timeout", "1s", srv.URL + "/readyz"}, "")
	f([]string{srv.URL + "/healthz"}, "503 Service Unavailable: kafka producer not ready")
	srv.Close()
	f([]string{srv.URL + "/readyz"}, "connection refused")
	f([]string{"a", "b"}, `unexpected argument "b"`)
	f([]string{"-timeout", "soon"}, "invalid value")
}
