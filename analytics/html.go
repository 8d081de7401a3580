package analytics

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"time"
)

// Page is everything the HTML report shows.
type Page struct {
	Database  string
	Filter    Filter
	Generated time.Time
	Funnel    *Funnel // by campaign
	ROMI      []ROMIRow
	Campaigns []CampaignRow
	Velocity  []VelocityRow
	Weekly    []WeekRow // one row per week of the period, zeros included (FillWeeks)
}

// Page runs the queries the HTML report needs.
func (r *Reporter) Page(ctx context.Context, f Filter) (*Page, error) {
	p := &Page{Database: r.db, Filter: f, Generated: time.Now().UTC()}
	var err error
	if p.Funnel, err = r.Funnel(ctx, ByCampaign, f); err != nil {
		return nil, err
	}
	if p.ROMI, err = r.ROMI(ctx, f); err != nil {
		return nil, err
	}
	if p.Campaigns, err = r.Campaigns(ctx, f); err != nil {
		return nil, err
	}
	if p.Velocity, err = r.Velocity(ctx, f); err != nil {
		return nil, err
	}
	weekly, err := r.Weekly(ctx, f)
	if err != nil {
		return nil, err
	}
	p.Weekly = FillWeeks(weekly, f.From, f.To)
	return p, nil
}

// Chart geometry, in SVG user units (the page scales them to its width).
const (
	chartW    = 960.0
	labelW    = 150.0 // campaign or step names left of the bars
	valueW    = 330.0 // figures right of the bars
	barAreaW  = chartW - labelW - valueW
	funnelBar = 46.0
	funnelGap = 14.0
	romiBar   = 16.0
	romiGap   = 3.0
	romiGroup = 22.0
	lineH     = 300.0
	lineLeft  = 50.0
	lineRight = 20.0
	lineTop   = 24.0
	lineBot   = 40.0
)

// romiModels are the attribution models in chart order, with their colours.
var romiModels = []struct{ Key, Label, Color string }{
	{"first_touch", "first touch", "#4e79a7"},
	{"last_touch", "last touch", "#f28e2b"},
	{"linear", "linear", "#59a14f"},
}

type funnelBarView struct {
	Step, Label, Value, Detail string
	Count                      uint64
	X, Y, W, H, TextY          float64
}

type romiBarView struct {
	Campaign, Model, Color, Label string
	Value                         float64
	X, Y, W, H, TextX, TextY      float64
	Anchor                        string
}

type romiGroupView struct {
	Campaign    string
	LabelY      float64
	NoCost      bool
	NoCostTextY float64
	Bars        []romiBarView
}

type pointView struct {
	Week, Label string
	Value       uint64
	X, Y        float64
	ShowLabel   bool
}

type tickView struct {
	Y     float64
	Label string
}

type pageView struct {
	Title, Period, Campaign, Database, Generated string
	ValueX, DetailX                              float64

	FunnelH    float64
	FunnelBars []funnelBarView

	ROMIH, ZeroX float64
	ROMIGroups   []romiGroupView
	ROMIModels   []struct{ Key, Label, Color string }

	LineH, LineBottom, LineRight float64
	Points                       []pointView
	Polyline                     string
	Ticks                        []tickView
	NoWeeks                      bool

	Tables []tableView
}

type tableView struct {
	Title   string
	Head    []cellView
	Rows    [][]cellView
	Footer  []cellView
	Missing bool
}

type cellView struct {
	Text string
	Num  bool
}

func f1(x float64) float64 { return math.Round(x*10) / 10 }

func funnelView(f *Funnel) ([]funnelBarView, float64) {
	t := f.Total()
	steps := []struct {
		key, label string
		n          uint64
	}{{"visits", "Visits", t.Visitors}, {"forms", "Form submissions", t.Forms}, {"mqls", "MQLs", t.MQLs}, {"won", "Deals won", t.Won}}
	var out []funnelBarView
	for i, s := range steps {
		w := 0.0
		if t.Visitors > 0 {
			w = barAreaW * float64(s.n) / float64(t.Visitors)
		}
		if s.n > 0 {
			w = max(w, 2)
		}
		y := funnelGap/2 + float64(i)*(funnelBar+funnelGap)
		detail := ""
		if i > 0 {
			detail = format(Rate, ratio(s.n, steps[i-1].n)) + " of previous · " + format(Rate, ratio(s.n, t.Visitors)) + " of visits"
		}
		out = append(out, funnelBarView{Step: s.key, Label: s.label, Count: s.n, Value: strconv.FormatUint(s.n, 10), Detail: detail,
			X: f1(labelW + (barAreaW-w)/2), Y: y, W: f1(w), H: funnelBar, TextY: y + funnelBar/2})
	}
	return out, float64(len(steps)) * (funnelBar + funnelGap)
}

func romiView(rows []ROMIRow) ([]romiGroupView, float64, float64) {
	lo, hi := 0.0, 0.0
	for _, r := range rows {
		for _, v := range []*float64{r.ROMIFirst, r.ROMILast, r.ROMILinear} {
			if v != nil {
				lo, hi = min(lo, *v), max(hi, *v)
			}
		}
	}
	if hi == lo {
		hi = lo + 1
	}
	scale := barAreaW / (hi - lo)
	zero := labelW + (0-lo)*scale
	var groups []romiGroupView
	y := romiGroup / 2
	groupH := float64(len(romiModels))*(romiBar+romiGap) - romiGap
	for _, r := range rows {
		g := romiGroupView{Campaign: r.Campaign, LabelY: y + groupH/2}
		vals := []*float64{r.ROMIFirst, r.ROMILast, r.ROMILinear}
		if vals[0] == nil && vals[1] == nil && vals[2] == nil {
			g.NoCost, g.NoCostTextY = true, y+groupH/2
		}
		for i, m := range romiModels {
			by := y + float64(i)*(romiBar+romiGap)
			if vals[i] == nil {
				continue
			}
			v := *vals[i]
			x0, x1 := zero, zero+v*scale
			b := romiBarView{Campaign: r.Campaign, Model: m.Key, Color: m.Color, Value: v, Label: format(SignedRate, v),
				X: f1(min(x0, x1)), Y: by, W: f1(max(math.Abs(x1-x0), 1)), H: romiBar, TextY: by + romiBar/2, Anchor: "start", TextX: f1(max(x0, x1) + 4)}
			if v < 0 {
				b.Anchor, b.TextX = "end", f1(min(x0, x1)-4)
			}
			g.Bars = append(g.Bars, b)
		}
		groups = append(groups, g)
		y += groupH + romiGroup
	}
	return groups, f1(zero), y - romiGroup/2
}

func lineView(weeks []WeekRow) (points []pointView, poly string, ticks []tickView) {
	var top uint64 = 1
	for _, w := range weeks {
		top = max(top, w.MQLs)
	}
	step := uint64(1)
	for top/step > 8 {
		step *= 2
	}
	top = (top + step - 1) / step * step
	plotH := lineH - lineTop - lineBot
	y := func(v uint64) float64 { return f1(lineTop + plotH*(1-float64(v)/float64(top))) }
	for v := uint64(0); v <= top; v += step {
		ticks = append(ticks, tickView{Y: y(v), Label: strconv.FormatUint(v, 10)})
	}
	plotW := chartW - lineLeft - lineRight
	every := (len(weeks) + 11) / 12 // at most ~12 week labels
	for i, w := range weeks {
		x := lineLeft + plotW/2
		if len(weeks) > 1 {
			x = lineLeft + plotW*float64(i)/float64(len(weeks)-1)
		}
		p := pointView{Week: w.Week.Format(time.DateOnly), Label: w.Week.Format("Jan 2"), Value: w.MQLs, X: f1(x), Y: y(w.MQLs),
			ShowLabel: i%every == 0 || i == len(weeks)-1}
		points = append(points, p)
		if i > 0 {
			poly += " "
		}
		poly += strconv.FormatFloat(p.X, 'f', -1, 64) + "," + strconv.FormatFloat(p.Y, 'f', -1, 64)
	}
	return points, poly, ticks
}

func tableViewOf(t Table) tableView {
	v := tableView{Title: t.Title, Missing: len(t.Rows) == 0}
	for _, c := range t.Columns {
		v.Head = append(v.Head, cellView{Text: c.Name, Num: c.Kind != Text && c.Kind != Date})
	}
	row := func(r []any) []cellView {
		out := make([]cellView, len(r))
		for i, c := range t.Columns {
			out[i] = cellView{Text: format(c.Kind, r[i]), Num: c.Kind != Text && c.Kind != Date}
		}
		return out
	}
	for _, r := range t.Rows {
		v.Rows = append(v.Rows, row(r))
	}
	if t.Footer != nil {
		v.Footer = row(t.Footer)
	}
	return v
}

// period describes a filter's dates for people.
func period(f Filter) string {
	switch {
	case f.From.IsZero() && f.To.IsZero():
		return "all time"
	case f.From.IsZero():
		return "up to " + f.To.Format(time.DateOnly)
	case f.To.IsZero():
		return "from " + f.From.Format(time.DateOnly)
	}
	return f.From.Format(time.DateOnly) + " to " + f.To.Format(time.DateOnly)
}

// WriteHTML writes p as one self-contained HTML page: inline CSS and SVG,
// no scripts, fonts, images or links to anything outside the file.
func WriteHTML(w io.Writer, p *Page) error {
	if p.Funnel == nil {
		p.Funnel = &Funnel{By: ByCampaign}
	}
	v := pageView{Title: "leadstream marketing report", Period: period(p.Filter), Campaign: p.Filter.Campaign,
		Database: p.Database, Generated: p.Generated.UTC().Format("2006-01-02 15:04 UTC"),
		ValueX: labelW + barAreaW + 16, DetailX: labelW + barAreaW + 56,
		ROMIModels: romiModels, LineH: lineH, LineBottom: lineH - lineBot, LineRight: chartW - lineRight}
	v.FunnelBars, v.FunnelH = funnelView(p.Funnel)
	v.ROMIGroups, v.ZeroX, v.ROMIH = romiView(p.ROMI)
	v.Points, v.Polyline, v.Ticks = lineView(p.Weekly)
	v.NoWeeks = len(p.Weekly) == 0
	v.Tables = []tableView{
		tableViewOf(p.Funnel.Table()),
		tableViewOf(ROMITable(p.ROMI)),
		tableViewOf(CampaignTable(p.Campaigns)),
		tableViewOf(VelocityTable(p.Velocity)),
		tableViewOf(WeekTable(p.Weekly)),
	}
	if err := pageTemplate.Execute(w, v); err != nil {
		return fmt.Errorf("rendering the html report: %w", err)
	}
	return nil
}

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))
