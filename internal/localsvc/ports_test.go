package localsvc

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// listensOn tells the process holding a listening port from any other: the
// readiness probe of a server whose port another process took in between
// must not count that one's answer as ours.
func TestListensOn(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp: listensOn answers true here by design")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if !listensOn(os.Getpid(), port) {
		t.Errorf("listensOn(self, %d) = false for our own listener", port)
	}
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	if listensOn(other.Process.Pid, port) {
		t.Errorf("listensOn(other process, %d) = true for our listener", port)
	}
	// A connected (not listening) socket on the port is not a listener.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ln.Close()
	if listensOn(os.Getpid(), port) {
		t.Errorf("listensOn(self, %d) = true after the listener closed", port)
	}
}
