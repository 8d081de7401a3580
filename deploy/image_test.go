package deploy

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// podman runs podman with its own storage under a test directory (vfs: no
// overlay mounts left behind), the runc runtime (crun refuses the hybrid
// cgroup layout of these machines) and no image pulls.
type podman struct {
	base []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			testsvc.Required(t, bin, "the image test builds and runs deploy/Dockerfile with podman (runtime runc)")
		}
	}
	runc, _ := exec.LookPath("runc")
	dir := t.TempDir()
	p := &podman{base: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--runtime", runc, "--cgroup-manager", "cgroupfs",
		"--events-backend", "file"}}
	t.Cleanup(func() {
		// Containers first, then images: the storage directory is then plain files.
		_, _ = p.try("rm", "--all", "--force", "--time", "0")
		_, _ = p.try("rmi", "--all", "--force")
	})
	return p
}

func (p *podman) try(args ...string) (string, error) {
	cmd := exec.Command("podman", append(slices.Clone(p.base), args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("podman %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), out.String())
	}
	return out.String(), nil
}

func (p *podman) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := p.try(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// limits are podman run's --ulimit options. podman's defaults are above this
// machine's hard limits, and raising a hard limit needs CAP_SYS_RESOURCE,
// which root lacks here: open files at this process's own limit, processes
// (threads) at 4096 (runc could not set this machine's 96k).
func limits() []string {
	nofile := "1024"
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil {
		nofile = strconv.FormatUint(l.Max, 10)
	}
	return []string{"--ulimit", "nofile=" + nofile + ":" + nofile, "--ulimit", "nproc=4096:4096"}
}

const testImage = "localhost/leadstream:deploy-test"

// buildImage builds deploy/Dockerfile's final stage, as written, on a
// stand-in for the builder stage that holds the output of the builder's own
// go build command (run locally) and the host's copies of the other files the
// final stage takes from the builder (Debian's CA bundle, like the golang
// image's). It returns the build context's files by image path.
func buildImage(t *testing.T, p *podman) map[string]string {
	t.Helper()
	bin, _, gb := leadstreamBinary(t)
	df := readDockerfile(t)
	final := df.stages[len(df.stages)-1]
	if final.from != "scratch" {
		t.Fatalf("the final stage is FROM %s, want scratch (nothing but the binary)", final.from)
	}
	ctx := t.TempDir()
	files := map[string]string{} // image path -> host file
	var stand strings.Builder
	stand.WriteString("FROM scratch AS build\n")
	var body strings.Builder
	body.WriteString("FROM scratch\n")
	for _, in := range final.instrs {
		body.WriteString(in.String() + "\n")
		if in.cmd != "COPY" || !strings.HasPrefix(in.args, "--from=") {
			continue
		}
		f := strings.Fields(in.args)
		if f[0] != "--from=build" || len(f) != 3 {
			t.Fatalf("Dockerfile:%d: %s: the test supports COPY --from=build SRC DST only", in.line, in)
		}
		src := f[1]
		host := src
		if src == gb.out {
			host = bin
		} else if _, err := os.Stat(host); err != nil {
			t.Fatalf("Dockerfile:%d: the final stage copies %s from the builder; the test provides it from this Debian host, which lacks it: %v", in.line, src, err)
		}
		name := fmt.Sprintf("f%d", len(files))
		b, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctx, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&stand, "COPY %s %s\n", name, src)
		files[strings.TrimPrefix(f[2], "/")] = host
	}
	containerfile := filepath.Join(ctx, "Containerfile")
	if err := os.WriteFile(containerfile, []byte(stand.String()+body.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p.run(t, "build", "--pull=never", "--format", "oci", "-f", containerfile, "-t", testImage, ctx)
	return files
}

// TestImage builds the image with podman and checks what it holds and how it
// runs: non-root, no shell, only the binary and the CA bundle; `version`;
// then the four roles run from it against the test services (host network),
// pass their health checks, carry a visitor's journey through to an MQL,
// its webhook notification and ClickHouse rows, and stop with exit code 0
// promptly on SIGTERM.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a container image")
	}
	p := newPodman(t)
	files := buildImage(t, p)
	_, version, _ := leadstreamBinary(t)

	t.Run("config", func(t *testing.T) {
		var inspect []struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				ExposedPorts map[string]struct{}
				Env          []string
			}
		}
		if err := json.Unmarshal([]byte(p.run(t, "image", "inspect", testImage)), &inspect); err != nil || len(inspect) != 1 {
			t.Fatalf("podman image inspect: %v", err)
		}
		c := inspect[0].Config
		uid, gid, _ := strings.Cut(c.User, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("image user %q: want a numeric non-root uid (scratch has no passwd file)", c.User)
		}
		if n, err := strconv.Atoi(gid); err != nil || n == 0 {
			t.Errorf("image group of %q: want a numeric non-root gid", c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/leadstream"}) {
			t.Errorf("entrypoint %q, want [/usr/local/bin/leadstream]", c.Entrypoint)
		}
		var ports []string
		for port := range c.ExposedPorts {
			ports = append(ports, port)
		}
		slices.Sort(ports)
		if want := []string{"8080/tcp", "9101/tcp", "9102/tcp", "9103/tcp"}; !slices.Equal(ports, want) {
			t.Errorf("exposed ports %q, want %q (collector, processor, sink, notifier)", ports, want)
		}
	})

	t.Run("files", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "image.tar")
		p.run(t, "save", "--format", "docker-archive", "-o", archive, testImage)
		got := imageFiles(t, archive)
		var names []string
		for name := range got {
			names = append(names, name)
		}
		slices.Sort(names)
		if want := []string{"etc/ssl/certs/ca-certificates.crt", "usr/local/bin/leadstream"}; !slices.Equal(names, want) {
			t.Fatalf("image files %q, want only %q (no shell, no libraries)", names, want)
		}
		for name, host := range files {
			b, err := os.ReadFile(host)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(b) != got[name].sum {
				t.Errorf("%s in the image differs from %s", name, host)
			}
		}
		if m := got["usr/local/bin/leadstream"].mode; m&0o111 == 0 {
			t.Errorf("leadstream in the image has mode %v: not executable", m)
		}
	})

	t.Run("run", func(t *testing.T) {
		out := p.run(t, append(append([]string{"run", "--rm", "--network", "none"}, limits()...), testImage, "version")...)
		if want := "leadstream " + version; strings.TrimSpace(out) != want {
			t.Errorf("podman run IMAGE version = %q, want %q", out, want)
		}
		out = p.run(t, append(append([]string{"run", "--rm", "--network", "none"}, limits()...), testImage)...)
		if !strings.Contains(out, "usage: leadstream <command>") {
			t.Errorf("podman run IMAGE (no command) printed %q, want the help", out)
		}
		if out, err := p.try(append(append([]string{"run", "--rm", "--network", "none", "--entrypoint", "/bin/sh"}, limits()...), testImage, "-c", "true")...); err == nil {
			t.Errorf("the image ran /bin/sh (%q): it should have no shell", out)
		}
	})

	t.Run("roles", func(t *testing.T) {
		s := newStack(t)
		stop := s.run(t, containerLauncher(p))
		// The health check compose uses, run inside each container.
		for _, r := range roles {
			url := "http://" + s.addrs[r] + "/readyz"
			if out, err := p.try("exec", "leadstream-test-"+r, "/usr/local/bin/leadstream", "healthcheck", url); err != nil {
				t.Errorf("%s: health check in the container: %v %s", r, err, out)
			}
			if out, err := p.try("exec", "leadstream-test-"+r, "/usr/local/bin/leadstream", "healthcheck", "http://"+freeAddr(t)+"/readyz"); err == nil {
				t.Errorf("%s: health check of an address nobody listens on passed: %s", r, out)
			}
		}
		// Every role runs as the image's user, not root.
		for _, r := range roles {
			if out := strings.TrimSpace(p.run(t, "inspect", "--format", "{{.Config.User}}", "leadstream-test-"+r)); out != "65532:65532" {
				t.Errorf("%s runs as %q, want the image's 65532:65532", r, out)
			}
		}
		stop()
	})
}

// containerLauncher runs a role in a container of the test image on the
// host's network (the test services listen on loopback), with a read-only
// root file system and no capabilities, as compose.yaml runs it; the role's
// files (the notifier's destinations file) are mounted read-only, as compose
// mounts them. Stopping sends SIGTERM (podman stop) and wants exit code 0
// within 20 s.
func containerLauncher(p *podman) launcher {
	return func(t *testing.T, role string, env, mounts []string) func() {
		t.Helper()
		name := "leadstream-test-" + role
		// As compose.yaml runs the roles: read-only root, no capabilities, no privilege gain.
		args := append([]string{"run", "--detach", "--name", name, "--network", "host",
			"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}, limits()...)
		for _, kv := range env {
			args = append(args, "--env", kv)
		}
		for _, dir := range mounts {
			args = append(args, "--volume", dir+":"+dir+":ro")
		}
		p.run(t, append(args, testImage, role)...)
		var once sync.Once
		stop := func() {
			once.Do(func() {
				start := time.Now()
				if _, err := p.try("stop", "--time", "20", name); err != nil {
					t.Errorf("podman stop %s: %v", name, err)
				}
				took := time.Since(start)
				code, err := p.try("inspect", "--format", "{{.State.ExitCode}}", name)
				if err != nil || strings.TrimSpace(code) != "0" || took > 15*time.Second {
					logs, _ := p.try("logs", name)
					t.Errorf("%s: exit code %q (%v) %s after SIGTERM, want 0 within 15s; logs:\n%s", role, strings.TrimSpace(code), err, took.Round(time.Millisecond), logs)
				}
			})
		}
		t.Cleanup(stop)
		t.Cleanup(func() {
			if t.Failed() {
				logs, _ := p.try("logs", name)
				t.Logf("%s container logs:\n%s", role, logs)
			}
		})
		return stop
	}
}

type imageFile struct {
	sum  [32]byte
	mode os.FileMode
}

// imageFiles lists the regular files of a docker-archive image (its layers
// applied in order; whiteouts remove files).
func imageFiles(t *testing.T, archive string) map[string]imageFile {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = b
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("docker-archive manifest.json: %v", err)
	}
	files := map[string]imageFile{}
	for _, layer := range manifest[0].Layers {
		lr := tar.NewReader(bytes.NewReader(entries[layer]))
		for {
			h, err := lr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", layer, err)
			}
			name := strings.TrimPrefix(h.Name, "./")
			if dir, base := filepath.Split(name); strings.HasPrefix(base, ".wh.") {
				delete(files, dir+strings.TrimPrefix(base, ".wh."))
				continue
			}
			if h.Typeflag == tar.TypeDir {
				continue
			}
			b, err := io.ReadAll(lr)
			if err != nil {
				t.Fatal(err)
			}
			files[name] = imageFile{sum: sha256.Sum256(b), mode: h.FileInfo().Mode()}
		}
	}
	return files
}
