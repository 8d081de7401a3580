// Package secretflag registers command-line flags that hold secrets
// (passwords, keys). Such a flag never shows its value: its default in
// `-h` is empty, and an invalid value is reported without echoing it.
//
// The binary's flag parser (cmd/leadstream) gives every secret flag NAME a
// companion NAME-file (environment …_FILE) that reads the value from a file,
// so a secret need not appear in the process list.
package secretflag

import (
	"flag"
	"fmt"
)

// value is the flag.Value of a secret flag. Set never fails: the flag
// package would quote the value in its error. The error is kept for Check.
type value struct {
	set func(string) error
	err error
}

func (v *value) String() string { return "" }

func (v *value) Set(s string) error {
	v.err = v.set(s)
	return nil
}

// Secret marks the flag as holding a secret.
func (v *value) Secret() bool { return true }

// String registers a secret string flag stored in p.
func String(fs *flag.FlagSet, p *string, name, usage string) {
	fs.Var(&value{set: func(s string) error { *p = s; return nil }}, name, usage)
}

// Func registers a secret flag whose value fn parses. fn's error must not
// contain the value.
func Func(fs *flag.FlagSet, name, usage string, fn func(string) error) {
	fs.Var(&value{set: fn}, name, usage)
}

// Is reports whether f was registered by this package.
func Is(f *flag.Flag) bool {
	s, ok := f.Value.(interface{ Secret() bool })
	return ok && s.Secret()
}

// Check returns the first error of a secret flag's last Set, naming the
// flag but not the value.
func Check(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := f.Value.(*value); ok && v.err != nil && err == nil {
			err = fmt.Errorf("invalid value for -%s: %w", f.Name, v.err)
		}
	})
	return err
}
