package deploy

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the repository root (tests run in deploy/).
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(wd)
}()

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY …
	args string
	line int
}

func (in instruction) String() string { return in.cmd + " " + in.args }

// stage is a build stage: its FROM and what follows up to the next FROM.
type stage struct {
	from, name string
	instrs     []instruction
}

// dockerfile is a parsed Dockerfile: the ARGs before the first FROM and the stages.
type dockerfile struct {
	globalArgs map[string]string
	stages     []stage
}

// parseDockerfile reads the subset of the Dockerfile syntax that
// deploy/Dockerfile uses: comments, line continuations, global ARGs and
// FROM … [AS name] stages.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{globalArgs: map[string]string{}}
	var cur strings.Builder
	start := 0
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("Dockerfile:%d: cannot read FROM %q", in.line, in.args)
			}
			df.stages = append(df.stages, st)
			return nil
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				return fmt.Errorf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			name, def, _ := strings.Cut(in.args, "=")
			df.globalArgs[name] = def
			return nil
		}
		st := &df.stages[len(df.stages)-1]
		st.instrs = append(st.instrs, in)
		return nil
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments are dropped, also inside continuations
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(strings.TrimSpace(cont) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(df.stages) == 0 {
		return nil, errors.New("Dockerfile has no FROM")
	}
	return df, nil
}

func readDockerfile(t testing.TB) *dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return df
}

func (df *dockerfile) stage(name string) (*stage, error) {
	for i := range df.stages {
		if df.stages[i].name == name {
			return &df.stages[i], nil
		}
	}
	return nil, fmt.Errorf("Dockerfile has no stage %q", name)
}

// goBuild is the builder stage's `go build` command: its environment
// assignments, arguments, and the path it writes (-o).
type goBuild struct {
	env  []string
	args []string // after "go"
	out  string
}

// builderCommand finds the RUN … go build … of the stage named "build" and
// expands it with the stage's ARG defaults overridden by buildArgs.
func (df *dockerfile) builderCommand(buildArgs map[string]string) (*goBuild, error) {
	st, err := df.stage("build")
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, in := range st.instrs {
		switch {
		case in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			vars[name] = def
			if v, ok := buildArgs[name]; ok {
				vars[name] = v
			}
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			words, err := shellFields(in.args, vars)
			if err != nil {
				return nil, fmt.Errorf("Dockerfile:%d: %w", in.line, err)
			}
			gb := &goBuild{}
			for len(words) > 0 && strings.Contains(words[0], "=") {
				gb.env, words = append(gb.env, words[0]), words[1:]
			}
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				return nil, fmt.Errorf("Dockerfile:%d: want [VAR=value …] go build …, got %q", in.line, in.args)
			}
			gb.args = words[1:]
			i := slices.Index(gb.args, "-o")
			if i < 0 || i+1 >= len(gb.args) {
				return nil, fmt.Errorf("Dockerfile:%d: go build has no -o", in.line)
			}
			gb.out = gb.args[i+1]
			return gb, nil
		}
	}
	return nil, errors.New(`Dockerfile: the "build" stage has no RUN … go build`)
}

// shellFields splits a shell command line into words as sh would for the
// simple lines of a Dockerfile: blanks separate words, single quotes are
// literal, double quotes group and expand ${VAR} and $VAR from vars. Anything
// fancier (;, |, &&, backquotes, $( )) is an error, not a guess.
func shellFields(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	expand := func(i int) (int, error) { // s[i] == '$'
		rest := s[i+1:]
		var name string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return 0, fmt.Errorf("unclosed ${ in %q", s)
			}
			name = rest[1:end]
			i += end + 2
		default:
			n := 0
			for n < len(rest) && (rest[n] == '_' || rest[n] >= 'A' && rest[n] <= 'Z' || rest[n] >= 'a' && rest[n] <= 'z' || rest[n] >= '0' && rest[n] <= '9') {
				n++
			}
			if n == 0 {
				return 0, fmt.Errorf("unsupported $ in %q", s)
			}
			name = rest[:n]
			i += n + 1
		}
		v, ok := vars[name]
		if !ok {
			return 0, fmt.Errorf("undefined variable %s in %q", name, s)
		}
		w.WriteString(v)
		return i, nil
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			inWord = true
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf(`unclosed " in %q`, s)
				}
				if s[i] == '"' {
					i++
					break
				}
				if s[i] == '$' {
					var err error
					if i, err = expand(i); err != nil {
						return nil, err
					}
					continue
				}
				if s[i] == '\\' || s[i] == '`' {
					return nil, fmt.Errorf("unsupported %c in %q", s[i], s)
				}
				w.WriteByte(s[i])
				i++
			}
		case c == '$':
			inWord = true
			var err error
			if i, err = expand(i); err != nil {
				return nil, err
			}
		case strings.IndexByte(";|&<>()`\\", c) >= 0:
			return nil, fmt.Errorf("unsupported %q in %q", c, s)
		default:
			w.WriteByte(c)
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

func TestShellFields(t *testing.T) {
	vars := map[string]string{"VERSION": "v1.2", "E": ""}
	f := func(in string, want ...string) {
		t.Helper()
		got, err := shellFields(in, vars)
		if err != nil {
			t.Errorf("%q: %v", in, err)
		} else if !slices.Equal(got, want) {
			t.Errorf("%q = %q, want %q", in, got, want)
		}
	}
	bad := func(in, wantErr string) {
		t.Helper()
		if _, err := shellFields(in, vars); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one containing %q", in, err, wantErr)
		}
	}
	f(`CGO_ENABLED=0 go build -o /out/x ./cmd/x`, "CGO_ENABLED=0", "go", "build", "-o", "/out/x", "./cmd/x")
	f(`go build -ldflags "-s -w -X main.version=${VERSION}" .`, "go", "build", "-ldflags", "-s -w -X main.version=v1.2", ".")
	f(`a$VERSION 'lit $VERSION' "x${E}y"`, "av1.2", "lit $VERSION", "xy")
	f("  spaced \t out  ", "spaced", "out")
	f(`""`, "")
	bad(`go build && rm -rf /`, "unsupported")
	bad(`echo $(id)`, "unsupported")
	bad(`echo ${NOPE}`, "undefined variable NOPE")
	bad(`echo "open`, "unclosed")
}

func TestParseDockerfile(t *testing.T) {
	df, err := parseDockerfile("# c\nARG A=1\nFROM img:${A} AS build\nRUN a \\\n  # inside\n  b\n\nFROM scratch\nCOPY --from=build /x /y\n")
	if err != nil {
		t.Fatal(err)
	}
	if df.globalArgs["A"] != "1" || len(df.stages) != 2 || df.stages[0].name != "build" || df.stages[1].from != "scratch" {
		t.Fatalf("parsed %+v", df)
	}
	if got := df.stages[0].instrs[0]; got.String() != "RUN a b" || got.line != 4 {
		t.Errorf("continued RUN = %q at line %d, want \"RUN a b\" at 4", got, got.line)
	}
	for in, want := range map[string]string{
		"RUN x\n":                   "RUN before the first FROM",
		"FROM a b\n":                "cannot read FROM",
		"# only a comment\nARG X\n": "no FROM",
	} {
		if _, err := parseDockerfile(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

// built is the leadstream binary of this test binary, built once by the
// Dockerfile's own go build command with the local toolchain.
var built struct {
	once          sync.Once
	dir           string
	path, version string
	gb            *goBuild
	err           error
}

// leadstreamBinary builds (once) the leadstream binary exactly as the
// Dockerfile's builder stage does, with VERSION set to a test value, and
// returns its path, that version and the build command.
func leadstreamBinary(t testing.TB) (string, string, *goBuild) {
	t.Helper()
	built.once.Do(func() {
		built.version = "deploy-test"
		built.gb, built.err = readDockerfile(t).builderCommand(map[string]string{"VERSION": built.version})
		if built.err != nil {
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "leadstream-deploy-test-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "leadstream")
		args := slices.Clone(built.gb.args)
		args[slices.Index(args, "-o")+1] = built.path
		cmd := exec.Command("go", args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), built.gb.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if built.err != nil {
		t.Fatalf("building leadstream as deploy/Dockerfile does: %v", built.err)
	}
	return built.path, built.version, built.gb
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestBinaryIsStatic: the Dockerfile's build command makes a binary that runs
// on an empty base image (no dynamic loader, no shared libraries).
func TestBinaryIsStatic(t *testing.T) {
	path, version, gb := leadstreamBinary(t)
	if !slices.Contains(gb.env, "CGO_ENABLED=0") {
		t.Errorf("the Dockerfile builds with env %q: CGO_ENABLED=0 is what makes the binary static", gb.env)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %q", libs)
	}
	out, err := exec.Command(path, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "leadstream "+version {
		t.Errorf("leadstream version = %q, %v; want %q (the Dockerfile's VERSION build arg)", out, err, "leadstream "+version)
	}
}
