package localsvc

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// StartClickHouse starts clickhouse-server listening on 127.0.0.1 with its
// native protocol on tcpPort and HTTP on httpPort (0 picks a free port). Its
// config, users, data and logs live under dir; nothing is read from
// /etc/clickhouse-server. It returns once `SELECT 1` succeeds. Server.Addr is
// the native host:port; Server.HTTPAddr the HTTP one.
func StartClickHouse(ctx context.Context, dir string, tcpPort, httpPort int) (*Server, error) {
	bin, err := lookPath("clickhouse-server", "clickhouse-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	return withAutoPort(tcpPort == 0 || httpPort == 0, func() (*Server, error) {
		p, err := pickPorts(tcpPort, httpPort)
		if err != nil {
			return nil, err
		}
		return startClickHouse(ctx, bin, dir, clickHouseConfig{tcpPort: p[0], httpPort: p[1]})
	})
}

// clickHouseConfig is what differs between the servers this package starts.
type clickHouseConfig struct {
	tcpPort, securePort, httpPort int // 0 = none (tcp, secure)
	tls                           *TLS
	users                         map[string]string // extra users: name -> password
	probeTLS                      *tls.Config       // readiness check on the secure port
	extra                         string            // XML added inside <yandex> (cluster nodes)
	profile                       string            // XML added inside the default profile
}

func startClickHouse(ctx context.Context, bin, dir string, cc clickHouseConfig) (*Server, error) {
	config := filepath.Join(dir, "config.xml")
	if err := writeClickHouseConfig(dir, config, cc); err != nil {
		return nil, err
	}
	port := cc.tcpPort
	if cc.securePort != 0 {
		port = cc.securePort
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cc.httpPort))
	s, err := startProcess("clickhouse", dir, addr, bin, []string{"--config-file=" + config},
		filepath.Join(dir, "err.log"))
	if err != nil {
		return nil, err
	}
	s.HTTPAddr = httpAddr
	// No keep-alive: an idle connection delays ClickHouse's shutdown.
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	if err := s.waitReady(ctx, func(ctx context.Context) error {
		if err := clickHouseSelect1(ctx, client, httpAddr); err != nil {
			return err
		}
		var d interface {
			DialContext(ctx context.Context, network, addr string) (net.Conn, error)
		} = &net.Dialer{Timeout: time.Second}
		if cc.probeTLS != nil {
			d = &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: cc.probeTLS}
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// clickHouseSelect1 runs SELECT 1 through the HTTP interface.
func clickHouseSelect1(ctx context.Context, client *http.Client, httpAddr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/?query=SELECT%201", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "1" {
		return fmt.Errorf("SELECT 1 over HTTP: %s: %q", resp.Status, body)
	}
	return nil
}

// writeClickHouseConfig writes config.xml (at path) and users.xml into dir.
// The format is the <yandex> one understood by old releases such as Debian's
// 18.16 as well as by current ones.
func writeClickHouseConfig(dir, path string, cc clickHouseConfig) error {
	d := xmlEscape(dir)
	var ports, openSSL, users strings.Builder
	if cc.tcpPort != 0 {
		fmt.Fprintf(&ports, "  <tcp_port>%d</tcp_port>\n", cc.tcpPort)
	}
	if cc.securePort != 0 {
		fmt.Fprintf(&ports, "  <tcp_port_secure>%d</tcp_port_secure>\n", cc.securePort)
	}
	fmt.Fprintf(&ports, "  <http_port>%d</http_port>", cc.httpPort)
	if cc.tls != nil {
		openSSL.WriteString(openSSLServer(cc.tls))
	}
	names := make([]string, 0, len(cc.users))
	for name := range cc.users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&users, `    <%[1]s>
      <password>%[2]s</password>
      <networks><ip>::/0</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </%[1]s>
`, name, xmlEscape(cc.users[name]))
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>%[1]s/server.log</log>
    <errorlog>%[1]s/err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
%[2]s
%[3]s  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>5368709120</mark_cache_size>
%[4]s</yandex>
`, d, ports.String(), openSSL.String(), cc.extra)
	usersXML := `<?xml version="1.0"?>
<yandex>
  <profiles><default>` + cc.profile + `</default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>::/0</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
` + users.String() + `  </users>
  <quotas><default/></quotas>
</yandex>
`
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return fmt.Errorf("localsvc: clickhouse config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o600); err != nil {
		return fmt.Errorf("localsvc: clickhouse users: %w", err)
	}
	return nil
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
