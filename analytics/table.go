package analytics

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Kind says how a column's values are shown in text and HTML. CSV and JSON
// carry the raw values: counts, amounts and ratios (0.25, not 25%).
type Kind int

// Column kinds.
const (
	Text       Kind = iota // string
	Count                  // uint64
	Money                  // float64, two decimals with thousands separators
	Rate                   // *float64 ratio shown as a percentage, "—" when nil
	SignedRate             // *float64 ratio shown as a signed percentage, "—" when nil
	Days                   // float64, two decimals
	Date                   // time.Time, YYYY-MM-DD
	Integer                // int64
)

// Column is one column of a Table.
type Column struct {
	Name string
	Kind Kind
}

// Table is a report result ready to print: rows of values whose Go types
// follow their column's Kind.
type Table struct {
	Title   string
	Columns []Column
	Rows    [][]any
	Footer  []any // an optional summary row (text and HTML only), e.g. the funnel total
}

func ratio(n, d uint64) *float64 {
	if d == 0 {
		return nil
	}
	r := float64(n) / float64(d)
	return &r
}

// Table returns the funnel with its step-to-step conversion rates, and the
// total as footer.
func (f *Funnel) Table() Table {
	t := Table{Title: "Funnel by " + string(f.By), Columns: []Column{
		{string(f.By), Text}, {"visitors", Count}, {"forms", Count}, {"mqls", Count}, {"won", Count},
		{"visit_to_form", Rate}, {"form_to_mql", Rate}, {"mql_to_won", Rate}, {"visit_to_won", Rate},
	}}
	row := func(r FunnelRow) []any {
		return []any{r.Group, r.Visitors, r.Forms, r.MQLs, r.Won,
			ratio(r.Forms, r.Visitors), ratio(r.MQLs, r.Forms), ratio(r.Won, r.MQLs), ratio(r.Won, r.Visitors)}
	}
	for _, r := range f.Rows {
		t.Rows = append(t.Rows, row(r))
	}
	t.Footer = row(f.Total())
	return t
}

// ROMITable returns the ROMI rows as a Table.
func ROMITable(rows []ROMIRow) Table {
	t := Table{Title: "ROMI per campaign", Columns: []Column{
		{"campaign", Text}, {"cost", Money},
		{"revenue_first_touch", Money}, {"revenue_last_touch", Money}, {"revenue_linear", Money},
		{"romi_first_touch", SignedRate}, {"romi_last_touch", SignedRate}, {"romi_linear", SignedRate}, {"currencies", Text},
	}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []any{r.Campaign, r.Cost, r.RevenueFirst, r.RevenueLast, r.RevenueLinear,
			r.ROMIFirst, r.ROMILast, r.ROMILinear, r.Currencies})
	}
	return t
}

// CampaignTable returns the campaign performance rows as a Table.
func CampaignTable(rows []CampaignRow) Table {
	t := Table{Title: "Campaign performance", Columns: []Column{
		{"campaign", Text}, {"touches", Count}, {"people", Count}, {"leads", Count}, {"mqls", Count},
		{"won", Count}, {"revenue", Money}, {"cost", Money},
	}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []any{r.Campaign, r.Touches, r.People, r.Leads, r.MQLs, r.Won, r.Revenue, r.Cost})
	}
	return t
}

// VelocityTable returns the MQL velocity rows as a Table.
func VelocityTable(rows []VelocityRow) Table {
	t := Table{Title: "MQL velocity (first touch to MQL)", Columns: []Column{
		{"model", Text}, {"mqls", Count}, {"median_days", Days}, {"p90_days", Days}, {"avg_days", Days},
	}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []any{r.Model, r.MQLs, r.MedianDays, r.P90Days, r.AvgDays})
	}
	return t
}

// BandTable returns the score band rows as a Table.
func BandTable(rows []BandRow) Table {
	t := Table{Title: "Leads by score band", Columns: []Column{{"model", Text}, {"band", Text}, {"leads", Count}}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []any{r.Model, r.Band, r.Leads})
	}
	return t
}

// WeekTable returns the weekly MQL rows as a Table.
func WeekTable(rows []WeekRow) Table {
	t := Table{Title: "MQLs per week", Columns: []Column{{"week", Date}, {"mqls", Count}}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []any{r.Week, r.MQLs})
	}
	return t
}

// format shows v as text and HTML show a value of kind k.
func format(k Kind, v any) string {
	switch x := v.(type) {
	case nil:
		return "—"
	case string:
		return x
	case uint64:
		return strconv.FormatUint(x, 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case time.Time:
		return x.Format(time.DateOnly)
	case *float64:
		if x == nil {
			return "—"
		}
		return format(k, *x)
	case float64:
		switch k {
		case Money:
			return money(x)
		case Rate:
			return strconv.FormatFloat(100*x, 'f', 1, 64) + "%"
		case SignedRate:
			s := strconv.FormatFloat(100*x, 'f', 1, 64) + "%"
			if x > 0 {
				s = "+" + s
			}
			return s
		default:
			return strconv.FormatFloat(x, 'f', 2, 64)
		}
	}
	return fmt.Sprint(v)
}

// money formats x with two decimals and comma thousands separators.
func money(x float64) string {
	s := strconv.FormatFloat(math.Abs(x), 'f', 2, 64)
	whole, frac := s[:len(s)-3], s[len(s)-3:]
	var b strings.Builder
	if x < 0 && s != "0.00" {
		b.WriteByte('-')
	}
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String() + frac
}

// raw is v as CSV carries it: plain numbers, empty for nil.
func raw(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case *float64:
		if x == nil {
			return ""
		}
		return raw(*x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Time:
		return x.Format(time.DateOnly)
	}
	return fmt.Sprint(v)
}

// WriteText writes t as an aligned table: text left-aligned, numbers right.
func WriteText(w io.Writer, t Table) error {
	cells := [][]string{make([]string, len(t.Columns))}
	for i, c := range t.Columns {
		cells[0][i] = c.Name
	}
	rows := t.Rows
	if t.Footer != nil {
		rows = append(rows[:len(rows):len(rows)], t.Footer)
	}
	for _, r := range rows {
		line := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			line[i] = printable(format(c.Kind, r[i]))
		}
		cells = append(cells, line)
	}
	width := make([]int, len(t.Columns))
	for _, line := range cells {
		for i, s := range line {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	var b strings.Builder
	put := func(line []string) {
		for i, s := range line {
			pad := strings.Repeat(" ", width[i]-len([]rune(s)))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.Columns[i].Kind == Text || t.Columns[i].Kind == Date {
				b.WriteString(s)
				if i < len(line)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad + s)
			}
		}
		b.WriteByte('\n')
	}
	rule := func() {
		for i, n := range width {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(strings.Repeat("-", n))
		}
		b.WriteByte('\n')
	}
	put(cells[0])
	rule()
	for i, line := range cells[1:] {
		if t.Footer != nil && i == len(cells)-2 {
			rule()
		}
		put(line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV writes t as CSV with a header line; the footer is left out.
func WriteCSV(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	head := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		head[i] = c.Name
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, r := range t.Rows {
		line := make([]string, len(r))
		for i, v := range r {
			line[i] = raw(v)
			if _, text := v.(string); text {
				line[i] = csvText(line[i])
			}
		}
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvText defuses a text cell a spreadsheet would run as a formula (CSV
// injection: a campaign or URL named "=HYPERLINK(…)" from a public write
// key): a cell starting with = + - @, tab or carriage return gets a leading
// apostrophe, which spreadsheets show as text and do not evaluate. Numbers
// are not text cells, so a negative ROMI stays a number.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// printable drops the control characters of s (escape sequences a terminal
// would run, carriage returns that overwrite a line), for table output.
func printable(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

// WriteJSON writes t as a JSON array of objects keyed by column name; nil
// ratios are null, dates "YYYY-MM-DD". The footer is left out.
func WriteJSON(w io.Writer, t Table) error {
	out := make([]orderedObject, 0, len(t.Rows))
	for _, r := range t.Rows {
		o := orderedObject{keys: make([]string, len(t.Columns)), values: make([]any, len(t.Columns))}
		for i, c := range t.Columns {
			o.keys[i] = c.Name
			o.values[i] = r[i]
			if d, ok := r[i].(time.Time); ok {
				o.values[i] = d.Format(time.DateOnly)
			}
		}
		out = append(out, o)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// orderedObject is a JSON object that keeps the column order.
type orderedObject struct {
	keys   []string
	values []any
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(o.values[i])
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", k, err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}
