package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// ceiling is what the component underneath a stage achieves alone, measured
// in the same run.
type ceiling struct {
	ID     string  `json:"id"`
	What   string  `json:"what"`
	Figure float64 `json:"figure"`
	Unit   string  `json:"unit"`
	Detail any     `json:"detail,omitempty"`
}

// stageResult is one row of the table.
type stageResult struct {
	ID        string   `json:"id"`
	Stage     string   `json:"stage"`
	Figure    float64  `json:"figure"`
	Unit      string   `json:"unit"`
	P50Ms     float64  `json:"p50_ms,omitempty"`
	P99Ms     float64  `json:"p99_ms,omitempty"`
	CeilingID string   `json:"ceiling_id,omitempty"`
	Ratio     float64  `json:"ratio,omitempty"`
	Target    string   `json:"target,omitempty"`
	TargetMet *bool    `json:"target_met,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	Detail    any      `json:"detail,omitempty"`
	// custom renders the measured cell when set (latency and memory rows).
	custom string
}

type machine struct {
	CPUs       int    `json:"nproc"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	Redis      string `json:"redis_server"`
	ClickHouse string `json:"clickhouse_server"`
	Commit     string `json:"commit"`
	Load1      string `json:"loadavg_at_start"`
}

type report struct {
	Started  time.Time           `json:"started"`
	Seconds  float64             `json:"seconds"`
	Mode     string              `json:"mode"`
	Warmup   string              `json:"warmup"`
	Measure  string              `json:"measure"`
	Machine  machine             `json:"machine"`
	Workload string              `json:"workload"`
	Ceilings map[string]*ceiling `json:"ceilings"`
	Stages   []*stageResult      `json:"stages"`
	Skipped  []string            `json:"skipped,omitempty"`
	Errors   []string            `json:"errors,omitempty"`
	// CPU is the CPU use of each measured window; Contended lists the
	// windows where other processes on the machine took a noticeable share.
	CPU       map[string]cpuUse `json:"cpu_per_window,omitempty"`
	Contended []string          `json:"contended,omitempty"`
	Profiles  string            `json:"profiles_dir,omitempty"`
	// Wrk is the wrk scenarios' figures (also a second table).
	Wrk []*wrkEndpoint `json:"wrk,omitempty"`
}

func (r *report) addCeiling(c *ceiling) { r.Ceilings[c.ID] = c }

func (r *report) addStage(s *stageResult) {
	if c, ok := r.Ceilings[s.CeilingID]; ok && c.Figure > 0 {
		s.Ratio = s.Figure / c.Figure
	}
	r.Stages = append(r.Stages, s)
}

// relink recomputes ratios once every ceiling is known (some ceilings are
// measured after the stage they bound).
func (r *report) relink() {
	for _, s := range r.Stages {
		if c, ok := r.Ceilings[s.CeilingID]; ok && c.Figure > 0 && s.custom == "" {
			s.Ratio = s.Figure / c.Figure
		}
		s.evaluate()
	}
}

// evaluate fills TargetMet from the row's target.
func (s *stageResult) evaluate() {
	var ok bool
	switch s.ID {
	case "collector_track", "collector_pixel":
		ok = s.Ratio >= 0.60
	case "wrk_track", "wrk_pixel":
		ok = s.Ratio >= 0.60 && s.P99Ms > 0 && s.P99Ms <= 25
	case "collector_batch", "sink":
		ok = s.Ratio >= 0.50
	case "processor":
		// ≥ 60% of its own Redis ceiling, and Redis CPU per event ≤ 3x the floor.
		cost, _ := s.Detail.(map[string]any)["redis_cost_vs_floor"].(float64)
		ok = s.Ratio >= 0.60 && cost > 0 && cost <= 3
	case "e2e_sustained":
		ok = s.Figure >= 50_000
	case "e2e_latency_score", "e2e_latency_audience":
		ok = s.P99Ms > 0 && s.P99Ms <= 100
	case "e2e_latency_mql":
		ok = s.P99Ms > 0 && s.P99Ms <= 250
	case "collector_rss":
		ok = s.Figure > 0 && s.Figure < 200
	default:
		return
	}
	if s.Figure == 0 && s.P99Ms == 0 {
		return
	}
	s.TargetMet = &ok
}

// table renders the one markdown table of the run.
func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| stage | measured | ceiling (same run) | ceiling figure | ratio | target |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, s := range r.Stages {
		measured := s.custom
		if measured == "" {
			measured = num(s.Figure) + " " + s.Unit
			if s.P50Ms > 0 || s.P99Ms > 0 {
				measured += fmt.Sprintf(", p50 %s ms, p99 %s ms", ms(s.P50Ms), ms(s.P99Ms))
			}
		}
		cw, cf, ratio := "—", "—", "—"
		if c, ok := r.Ceilings[s.CeilingID]; ok {
			cw, cf = c.What, num(c.Figure)+" "+c.Unit
			if s.Ratio > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*s.Ratio)
			}
		}
		target := s.Target
		if s.TargetMet != nil {
			if *s.TargetMet {
				target += " ✔"
			} else {
				target += " ✘"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", s.Stage, measured, cw, cf, ratio, target)
	}
	b.WriteString(r.wrkTable())
	return b.String()
}

// num formats a rate with thousands separators, 3 significant digits.
func num(v float64) string {
	if v == 0 {
		return "0"
	}
	mag := math.Pow(10, math.Floor(math.Log10(math.Abs(v)))-2)
	v = math.Round(v/mag) * mag
	s := fmt.Sprintf("%.0f", v)
	if v < 100 {
		s = strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var out []byte
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, byte(c))
	}
	res := string(out)
	if frac != "" {
		res += "." + frac
	}
	if neg {
		res = "-" + res
	}
	return res
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (r *report) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// machineFacts describes the machine and the versions measured.
func machineFacts(ctx context.Context, chPort string) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load1 = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	m.Redis = cmdOut(ctx, "redis-server", "--version")
	if chPort != "" {
		m.ClickHouse = cmdOut(ctx, "clickhouse-client", "--port", chPort, "-q", "SELECT version()")
	}
	commit := cmdOut(ctx, "git", "rev-parse", "--short", "HEAD")
	if commit != "" && cmdOut(ctx, "git", "status", "--porcelain", "--untracked-files=no") != "" {
		commit += " + uncommitted changes"
	}
	m.Commit = commit
	return m
}

func cmdOut(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(out))
}
