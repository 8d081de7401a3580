package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/leadstream/leadstream/internal/secretflag"
)

// envName maps a flag name to its environment variable: kafka.brokers ->
// LEADSTREAM_KAFKA_BROKERS, write-keys -> LEADSTREAM_WRITE_KEYS.
func envName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "LEADSTREAM_" + strings.ToUpper(r.Replace(flagName))
}

// fileSuffix names the companion of a secret flag that reads it from a file:
// redis.password -> redis.password-file (LEADSTREAM_REDIS_PASSWORD_FILE).
const fileSuffix = "-file"

// commandOnly are the flags read from the command line only, never from the
// environment: -apply makes retention drop data and rescore rewrite Redis,
// which a LEADSTREAM_APPLY=true left in a shared environment must not do;
// -rebuild-events copies the whole events table, an operator's decision.
var commandOnly = map[string]bool{"apply": true, "rebuild-events": true}

// valueHidden are flags that are not secrets themselves but hold some
// (collector.cors-origins: KEY=ORIGIN pairs, the key possibly a server
// key): their values are not echoed in errors either.
var valueHidden = map[string]bool{"collector.cors-origins": true}

// hideValue takes the value out of the flag package's "invalid value %q for
// flag -name: …" when name is in valueHidden.
func hideValue(err error) error {
	msg := err.Error()
	for name := range valueHidden {
		tail := " for flag -" + name + ":"
		if i, j := strings.Index(msg, "invalid value "), strings.Index(msg, tail); i >= 0 && j > i {
			return errors.New(msg[:i] + "invalid value (not shown: it holds write keys)" + msg[j:])
		}
	}
	return err
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable. Flags win over the environment.
//
// Every secret flag NAME (package secretflag) also has NAME-file, whose
// value is a file to read NAME from (trailing line breaks dropped), so a
// secret can come from a mounted file rather than the command line, which
// any user can see in the process list. For each secret the first of these
// is used: -NAME, -NAME-file, $NAME, $NAME_FILE; setting both forms at the
// same level is an error. Secrets never appear in errors or in -h.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	secrets := addFileFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs)
			os.Exit(0)
		}
		return fmt.Errorf("%s: %w (see `leadstream %s -h`)", fs.Name(), hideValue(err), fs.Name())
	}
	if fs.NArg() > 0 && fs.Name() != "rules check" && fs.Name() != "costs import" && fs.Name() != "erase" {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil || secrets[f.Name] || secrets[strings.TrimSuffix(f.Name, fileSuffix)] || commandOnly[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				if valueHidden[f.Name] {
					err = fmt.Errorf("%s: %w", envName(f.Name), serr)
				} else {
					err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, serr)
				}
			}
		}
	})
	if err != nil {
		return err
	}
	for name := range secrets {
		if err := setSecret(fs, name, given); err != nil {
			return err
		}
	}
	return secretflag.Check(fs)
}

// addFileFlags registers NAME-file for every secret flag NAME of fs and
// returns the secret flags' names.
func addFileFlags(fs *flag.FlagSet) map[string]bool {
	secrets := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if secretflag.Is(f) {
			secrets[f.Name] = true
		}
	})
	for name := range secrets {
		fs.String(name+fileSuffix, "", "file to read -"+name+" from (trailing line breaks dropped); keeps the secret out of the process list")
	}
	return secrets
}

// setSecret sets the secret flag name from the first of its four sources.
func setSecret(fs *flag.FlagSet, name string, given map[string]bool) error {
	file := name + fileSuffix
	switch {
	case given[name] && given[file]:
		return fmt.Errorf("%s: set -%s or -%s, not both", fs.Name(), name, file)
	case given[name]:
		return nil
	case given[file]:
		return setFromFile(fs, name, "-"+file, fs.Lookup(file).Value.String())
	}
	v, inEnv := os.LookupEnv(envName(name))
	path, inFile := os.LookupEnv(envName(file))
	switch {
	case inEnv && inFile:
		return fmt.Errorf("%s: set %s or %s, not both", fs.Name(), envName(name), envName(file))
	case inEnv:
		return fs.Set(name, v) // a secret flag's Set never fails; secretflag.Check reports bad values
	case inFile:
		return setFromFile(fs, name, envName(file), path)
	}
	return nil
}

func setFromFile(fs *flag.FlagSet, name, source, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: reading -%s from %s: %w", fs.Name(), name, source, err)
	}
	return fs.Set(name, strings.TrimRight(string(b), "\r\n"))
}

func usage(fs *flag.FlagSet) {
	writeUsage(os.Stdout, fs)
}

// writeUsage prints the flags of fs, each with the environment variable it
// reads (or "command line only" for commandOnly flags, which read none).
func writeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: leadstream %s [flags]\n\nEvery flag can also be set through the environment variable shown.\n\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		name, u := flag.UnquoteUsage(f)
		if strings.Contains(f.Usage, "`") {
			// A word in back quotes ("empty in `dev`") is emphasis in these
			// texts, not the name of the value, which flag.UnquoteUsage would
			// make it (-redis.addr dev): name the value by its type.
			plain := *f
			plain.Usage = strings.ReplaceAll(f.Usage, "`", "")
			name, u = flag.UnquoteUsage(&plain)
		}
		if name == "value" && secretflag.Is(f) {
			name = "string"
		}
		if name != "" {
			name = " " + name
		}
		source := "env " + envName(f.Name)
		if commandOnly[f.Name] {
			source = "command line only, no environment variable"
		}
		fmt.Fprintf(w, "  -%s%s\n    \t%s (%s", f.Name, name, u, source)
		if f.DefValue != "" && !secretflag.Is(f) {
			fmt.Fprintf(w, ", default %q", f.DefValue)
		}
		fmt.Fprintln(w, ")")
	})
}
