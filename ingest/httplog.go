package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
)

// httpLogger is fasthttp's Logger writing through slog, without addresses:
// fasthttp's messages name the client's address ("error when serving
// connection 1.2.3.4:5678<->…"), and client addresses are personal data.
// What a client does wrong (a broken or timed-out connection) is logged at
// debug level, as it is each client's own business and a flood of them must
// not flood the logs; anything else (the server out of connections, an
// accept error) at warn.
type httpLogger struct{ log *slog.Logger }

// addrPattern matches IPv4 and IPv6 addresses, with or without a port.
var addrPattern = regexp.MustCompile(`\[?(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[0-9A-Za-z]+)?(?:\.\d+){0,3}\]?(?::\d+)?|\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?`)

func (l httpLogger) Printf(format string, args ...any) {
	for i, a := range args {
		if _, ok := a.(net.Addr); ok {
			args[i] = "[address]"
		}
	}
	msg := addrPattern.ReplaceAllString(fmt.Sprintf(format, args...), "[address]")
	level := slog.LevelWarn
	if strings.HasPrefix(format, "error when serving connection") {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, "http server: "+msg)
}
