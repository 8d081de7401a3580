package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// envName maps a flag name to its environment variable: kafka.brokers ->
// LEADSTREAM_KAFKA_BROKERS, write-keys -> LEADSTREAM_WRITE_KEYS.
func envName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "LEADSTREAM_" + strings.ToUpper(r.Replace(flagName))
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable. Flags win over the environment.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs)
			os.Exit(0)
		}
		return fmt.Errorf("%s: %w (see `leadstream %s -h`)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > 0 && fs.Name() != "rules check" && fs.Name() != "costs import" {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(os.Stdout, "usage: leadstream %s [flags]\n\nEvery flag can also be set through the environment variable shown.\n\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		name, u := flag.UnquoteUsage(f)
		fmt.Fprintf(os.Stdout, "  -%s %s\n    \t%s (env %s", f.Name, name, u, envName(f.Name))
		if f.DefValue != "" {
			fmt.Fprintf(os.Stdout, ", default %q", f.DefValue)
		}
		fmt.Fprintln(os.Stdout, ")")
	})
}
