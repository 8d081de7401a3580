package localsvc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listensOn reports whether process pid holds a listening TCP socket on
// port (any local address). A port chosen free and released before the
// server binds it can be taken meanwhile by another process (another test's
// server, say): the readiness probe would then succeed against that one
// while ours fails to bind, and the caller would talk to a stranger. Where
// /proc cannot tell (not Linux), it answers true.
func listensOn(pid, port int) bool {
	inodes, known := listeningInodes(port)
	if !known {
		return true
	}
	if len(inodes) == 0 {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false // gone, or not ours to read: not known to be it
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true
		}
	}
	return false
}

// listeningInodes returns the socket inodes listening on port, from
// /proc/net/tcp and tcp6; known is false when neither can be read.
func listeningInodes(port int) (inodes map[string]bool, known bool) {
	inodes = map[string]bool{}
	want := fmt.Sprintf(":%04X", port)
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		known = true
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) > 9 && fs[3] == "0A" && strings.HasSuffix(fs[1], want) {
				inodes[fs[9]] = true
			}
		}
		f.Close()
	}
	return inodes, known
}

// portOf returns the port of a host:port address, 0 when it has none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
