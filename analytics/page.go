package analytics

// pageHTML is the template of the HTML report. Everything it shows is in the
// file: CSS in <style>, charts as inline SVG, system fonts only, no scripts.
// The data-* attributes name what each bar and point stands for, so tests
// (and curious readers of the source) can check the figures.
const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto; max-width: 1140px; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #666; margin-top: 0; font-size: 13px; }
p.note { color: #555; font-size: 13px; margin: 4px 0 8px; }
svg { width: 100%; height: auto; display: block; }
svg text { font-family: inherit; font-size: 13px; fill: #333; }
svg .value { font-weight: 600; }
svg .muted { fill: #777; font-size: 12px; }
svg .axis { stroke: #999; stroke-width: 1; }
svg .grid { stroke: #e5e5e5; stroke-width: 1; }
div.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; border-top: 2px solid #ccc; }
.legend span { display: inline-block; margin-right: 16px; font-size: 13px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">Period: {{.Period}}{{if .Campaign}} · campaign: {{.Campaign}}{{end}} · database: {{.Database}} · generated {{.Generated}}</p>

<h2>Funnel</h2>
<p class="note">People (leads with their anonymous history, and anonymous visitors) reaching each step in order within 90 days: visit → form → MQL → deal won. Bot traffic excluded.</p>
<svg class="chart funnel" viewBox="0 0 960 {{.FunnelH}}" role="img" aria-label="Funnel">
{{- range .FunnelBars}}
<text x="0" y="{{.TextY}}" dominant-baseline="middle">{{.Label}}</text>
<rect class="bar funnel" data-step="{{.Step}}" data-value="{{.Count}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" rx="3" fill="#4e79a7"></rect>
<text class="value" x="{{$.ValueX}}" y="{{.TextY}}" dominant-baseline="middle">{{.Value}}</text>
{{- if .Detail}}
<text class="muted" x="{{$.DetailX}}" y="{{.TextY}}" dominant-baseline="middle">{{.Detail}}</text>
{{- end}}
{{- end}}
</svg>

<h2>ROMI per campaign</h2>
<p class="note">ROMI = (attributed revenue − cost) / cost. Revenue of won deals is credited to the campaigns that touched the lead before the deal: all to the first touch, all to the last touch, or split evenly (linear).</p>
<p class="legend">{{range .ROMIModels}}<span><i style="background: {{.Color}}"></i>{{.Label}}</span>{{end}}</p>
{{- if .ROMIGroups}}
<svg class="chart romi" viewBox="0 0 960 {{.ROMIH}}" role="img" aria-label="ROMI per campaign">
<line class="axis" x1="{{.ZeroX}}" y1="0" x2="{{.ZeroX}}" y2="{{.ROMIH}}"></line>
{{- range .ROMIGroups}}
<text x="0" y="{{.LabelY}}" dominant-baseline="middle">{{.Campaign}}</text>
{{- if .NoCost}}
<text class="muted" x="{{$.ZeroX}}" dx="6" y="{{.NoCostTextY}}" dominant-baseline="middle">no cost recorded</text>
{{- end}}
{{- range .Bars}}
<rect class="bar romi" data-campaign="{{.Campaign}}" data-model="{{.Model}}" data-value="{{.Value}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{.Color}}"></rect>
<text class="muted" x="{{.TextX}}" y="{{.TextY}}" text-anchor="{{.Anchor}}" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
{{- end}}
</svg>
{{- else}}
<p class="note">No campaign costs or won deals in this period.</p>
{{- end}}

<h2>MQLs per week</h2>
{{- if .NoWeeks}}
<p class="note">No MQLs in this period.</p>
{{- else}}
<svg class="chart weekly" viewBox="0 0 960 {{.LineH}}" role="img" aria-label="MQLs per week">
{{- range .Ticks}}
<line class="grid" x1="50" y1="{{.Y}}" x2="{{$.LineRight}}" y2="{{.Y}}"></line>
<text class="muted" x="42" y="{{.Y}}" text-anchor="end" dominant-baseline="middle">{{.Label}}</text>
{{- end}}
<line class="axis" x1="50" y1="{{.LineBottom}}" x2="{{.LineRight}}" y2="{{.LineBottom}}"></line>
<polyline class="line" points="{{.Polyline}}" fill="none" stroke="#e15759" stroke-width="2.5"></polyline>
{{- range .Points}}
<circle class="point" data-week="{{.Week}}" data-value="{{.Value}}" cx="{{.X}}" cy="{{.Y}}" r="4" fill="#e15759"></circle>
<text class="value" x="{{.X}}" y="{{.Y}}" dy="-10" text-anchor="middle">{{.Value}}</text>
{{- if .ShowLabel}}
<text class="muted" x="{{.X}}" y="{{$.LineBottom}}" dy="20" text-anchor="middle">{{.Label}}</text>
{{- end}}
{{- end}}
</svg>
{{- end}}

{{- range .Tables}}
<h2>{{.Title}}</h2>
{{- if .Missing}}
<p class="note">No rows.</p>
{{- else}}
<div class="scroll"><table>
<thead><tr>{{range .Head}}<th{{if .Num}} class="num"{{end}}>{{.Text}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
<tr>{{range .}}<td{{if .Num}} class="num"{{end}}>{{.Text}}</td>{{end}}</tr>
{{- end}}
</tbody>
{{- if .Footer}}
<tfoot><tr>{{range .Footer}}<td{{if .Num}} class="num"{{end}}>{{.Text}}</td>{{end}}</tr></tfoot>
{{- end}}
</table></div>
{{- end}}
{{- end}}
</body>
</html>
`
