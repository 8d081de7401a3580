package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestE2EBeaconBuild: the served ls.min.js is what terser makes of ls.js, and
// it stays within the size budget stated in the README.
func TestE2EBeaconBuild(t *testing.T) {
	requireTools(t)
	var size struct{ Minified, Gzipped int }
	node(t, &size, "minify.mjs", "--check")
	if size.Gzipped >= 4096 || size.Minified == 0 {
		t.Fatalf("ls.min.js is %d bytes gzipped, over the 4 KB budget", size.Gzipped)
	}
	t.Logf("ls.js: %d bytes minified, %d bytes minified+gzipped", size.Minified, size.Gzipped)
}

// TestE2EBrowserAndSDK drives the demo site with headless Chromium and sends
// events with analytics-node, then checks what the pipeline made of them.
func TestE2EBrowserAndSDK(t *testing.T) {
	d := startDev(t)
	run := fmt.Sprintf("%d", rand.Uint32())
	email := func(who string) string { return fmt.Sprintf("%s-%s@e2e.example", who, run) }
	tag := func(who string) string { return "e2e-" + who + "-" + run }
	plan := map[string]any{"base": d.base, "chromium": d.chromium, "scenarios": []map[string]string{
		{"name": "journey", "email": email("Journey"), "tag": tag("journey")},
		{"name": "headless", "email": email("headless"), "tag": tag("headless")},
		{"name": "dnt", "kind": "privacy", "signal": "dnt", "email": email("dnt"), "tag": tag("dnt")},
		{"name": "gpc", "kind": "privacy", "signal": "gpc", "email": email("gpc"), "tag": tag("gpc")},
		{"name": "consent", "tag": tag("consent")},
		{"name": "nojs", "email": email("nojs"), "tag": tag("nojs")},
		{"name": "hostile", "email": email("hostile"), "tag": tag("hostile")},
		{"name": "tabs", "tag": tag("tabs")},
		{"name": "audiences", "tag": tag("audiences"), "email": email("audiences"), "userHash": userHash(email("audiences"))},
	}}
	var res struct {
		Journey struct {
			Anon, AnonInPage, SetCookie string
			HTTPOnly                    bool
			Statuses                    []int
		}
		Headless struct{ UA, Anon string }
		DNT      privacyResult `json:"dnt"`
		GPC      privacyResult `json:"gpc"`
		Consent  struct {
			Before        privacyResult
			AfterRequests int
			Anon          string
		}
		NoJS    struct{ URL string } `json:"nojs"`
		Hostile struct {
			Anon   string
			Errors []string
		}
		Tabs struct {
			SavedBeforeClose []string
			SavedAfterClose  []string
		}
		Audiences struct {
			Views []struct {
				Audiences []string
				Popup     bool
			}
			Next, Asked, NewAudiences           []string
			NextPopup, NewPopup                 bool
			Anon                                string
			SignedIn, Unproven, Proven, Lookups []string
		}
	}
	node(t, &res, "browser.mjs", mustJSON(t, plan))
	lead := strings.ToLower(email("Journey")) // the lead id is the lower-cased email
	ev := d.db + ".events FINAL"

	t.Run("journey lands under one anonymous id linked to the lead", func(t *testing.T) {
		j := res.Journey
		if j.Anon == "" || j.Anon != j.AnonInPage || j.HTTPOnly {
			t.Fatalf("ls_anon cookie %q (page says %q, httpOnly %v): want one script-readable id", j.Anon, j.AnonInPage, j.HTTPOnly)
		}
		if !strings.Contains(j.SetCookie, "ls_anon="+j.Anon) {
			t.Fatalf("the collector's response did not set the ls_anon cookie: %q", j.SetCookie)
		}
		d.rows(t, "journey events", fmt.Sprintf("SELECT type, lead_id, bot, count() FROM %s WHERE anonymous_id = '%s' GROUP BY type, lead_id, bot ORDER BY type, lead_id", ev, j.Anon),
			fmt.Sprintf("form_submit\t%s\t0\t1\nidentify\t%s\t0\t1\npage_view\t\t0\t8\npage_view\t%s\t0\t1", lead, lead, lead))
		d.rows(t, "identity link", fmt.Sprintf("SELECT lead_id FROM %s.identity_links FINAL WHERE anonymous_id = '%s'", d.db, j.Anon), lead)
		d.rows(t, "utm of the pricing visit", fmt.Sprintf("SELECT utm_source, utm_medium, utm_campaign, path FROM %s WHERE anonymous_id = '%s' AND utm_campaign != ''", ev, j.Anon),
			"e2e\ttest\tlaunch\t/demo/pricing.html")
		d.rows(t, "form fields", fmt.Sprintf("SELECT visitParamExtractString(properties, 'form'), position(properties, 'VP Marketing') > 0 FROM %s WHERE anonymous_id = '%s' AND type = 'form_submit'", ev, j.Anon),
			"whitepaper\t1")
	})

	var scoreAfterJourney float64
	t.Run("the lead is scored and becomes an MQL seen by kcat", func(t *testing.T) {
		eventually(t, "lead score", 30*time.Second, func() (bool, string) {
			code, v := d.lead(t, lead)
			m := v.Models["default"]
			scoreAfterJourney = m.Score
			// 9 page views (45) + form (30) + fit VP & 500 employees (30), barely decayed.
			// (The default pricing rule matches /pricing*, not /demo/pricing.html.)
			return code == 200 && m.Score > 104 && m.MQL, fmt.Sprintf("%d %s", code, v.raw)
		})
		eventually(t, "kcat sees the MQL record", 30*time.Second, func() (bool, string) {
			out, err := exec.Command("kcat", "-b", d.kafka, "-C", "-t", "leadstream.mql", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n").CombinedOutput()
			return err == nil && strings.Contains(string(out), lead+"\t{") && strings.Contains(string(out), `"lead_id":"`+lead+`"`), string(out)
		})
	})

	t.Run("HeadlessChrome is flagged as a bot and never scored", func(t *testing.T) {
		if !strings.Contains(res.Headless.UA, "HeadlessChrome") || res.Headless.Anon == "" {
			t.Fatalf("headless run: %+v", res.Headless)
		}
		d.rows(t, "flagged events", fmt.Sprintf("SELECT DISTINCT bot, bot_reason FROM %s WHERE anonymous_id = '%s'", ev, res.Headless.Anon), "1\tuser_agent:headlesschrome")
		d.rows(t, "its form submission", fmt.Sprintf("SELECT count() FROM %s WHERE lead_id = '%s' AND bot = 1 AND type IN ('form_submit', 'identify')", ev, strings.ToLower(email("headless"))), "2")
		if code, v := d.lead(t, strings.ToLower(email("headless"))); code != 404 {
			t.Fatalf("a bot's lead has scores: %d %+v", code, v)
		}
	})

	t.Run("ls.js on a page hard on it: queued calls, large UTF-8 batches, shadowing form fields", func(t *testing.T) {
		h := res.Hostile
		if h.Anon == "" || len(h.Errors) != 0 {
			t.Fatalf("hostile page: anon %q, errors in the page %v", h.Anon, h.Errors)
		}
		d.rows(t, "queued call and large events", fmt.Sprintf("SELECT track, count() FROM %s WHERE user_agent LIKE '%%%s' AND type = 'custom' GROUP BY track ORDER BY track", ev, tag("hostile")),
			"Big Text\t40\nQueued Call\t2") // queued on the page and on its thank-you page
		d.rows(t, "form with fields named action, name and id", fmt.Sprintf("SELECT visitParamExtractString(properties, 'form') FROM %s WHERE lead_id = '%s' AND type = 'form_submit'", ev, strings.ToLower(email("hostile"))),
			"hostile-form")
	})

	t.Run("ls.js: two tabs offline at once, one closed before the network is back: no event lost", func(t *testing.T) {
		// Before: B's event at least (A's too unless their writes crossed;
		// the test then removes A's as a crossed write would).
		if saved := strings.Join(res.Tabs.SavedBeforeClose, ","); !strings.Contains(saved, "Offline Tab B") {
			t.Errorf("the saved queue before the first tab closed held %q, want tab B's event", saved)
		}
		// After A closed: A saved its event again, and kept B's.
		if saved := strings.Join(res.Tabs.SavedAfterClose, ","); !strings.Contains(saved, "Offline Tab A") || !strings.Contains(saved, "Offline Tab B") {
			t.Errorf("the saved queue after the first tab closed held %q, want both tabs' events", saved)
		}
		// Both tabs may send an event the other saved: its copies are one row.
		d.rows(t, "both tabs' events", fmt.Sprintf("SELECT track, count() FROM %s WHERE user_agent LIKE '%%%s' AND type = 'custom' GROUP BY track ORDER BY track", ev, tag("tabs")),
			"Offline Tab A\t1\nOffline Tab B\t1")
	})

	t.Run("a plain HTML form works without JavaScript", func(t *testing.T) {
		if !strings.HasSuffix(res.NoJS.URL, "/demo/thanks.html") {
			t.Fatalf("after the form post the browser is at %q, want the redirect target", res.NoJS.URL)
		}
		d.rows(t, "form post", fmt.Sprintf("SELECT type, visitParamExtractString(properties, 'form') FROM %s WHERE lead_id = '%s' ORDER BY type DESC", ev, email("nojs")),
			"identify\t\nform_submit\twebinar")
	})

	t.Run("a pricing-returner sees the webinar popup on the next page, a new visitor does not", func(t *testing.T) {
		a := res.Audiences
		if len(a.Views) != 3 || a.Anon == "" {
			t.Fatalf("audiences scenario: %+v", a)
		}
		for i, v := range a.Views[:2] {
			if slices.Contains(v.Audiences, "pricing-returner") || v.Popup {
				t.Errorf("after pricing view %d: audiences %v, popup %v", i+1, v.Audiences, v.Popup)
			}
		}
		if !slices.Contains(a.Next, "pricing-returner") || !a.NextPopup || !slices.Contains(a.Asked, "pricing-returner") {
			t.Errorf("the page after three pricing views: announced %v, popup %v, leadstream.audiences %v", a.Next, a.NextPopup, a.Asked)
		}
		if len(a.NewAudiences) != 0 || a.NewPopup {
			t.Errorf("a new visitor: audiences %v, popup %v", a.NewAudiences, a.NewPopup)
		}
		// The API answers names only, for the visitor's id and the write key:
		// since the visitor signed in (below), with the lead's userHash.
		code, body := d.get(t, "/v1/audiences?writeKey="+writeKey+"&anonymousId="+a.Anon+"&userId="+email("audiences")+"&userHash="+userHash(email("audiences")))
		if code != 200 || body != `{"audiences":["pricing-returner"]}` {
			t.Errorf("GET /v1/audiences with the userHash: %d %s", code, body)
		}
		// Without it, the visitor's own audiences (its three pricing views).
		if code, body := d.get(t, "/v1/audiences?writeKey="+writeKey+"&anonymousId="+a.Anon); code != 200 || body != `{"audiences":["pricing-returner"]}` {
			t.Errorf("GET /v1/audiences of the signed-in visitor without the userHash: %d %s", code, body)
		}
		if code, _ := d.get(t, "/v1/audiences?writeKey=wrong&anonymousId="+a.Anon); code != 401 {
			t.Errorf("GET /v1/audiences with a wrong key: %d", code)
		}
		// Signed in: the lead's audiences with the backend's userHash only. A
		// second browser signing in as the same person has none of its own.
		if !slices.Equal(a.SignedIn, []string{"pricing-returner"}) {
			t.Errorf("after identify with userHash: %v, want pricing-returner", a.SignedIn)
		}
		if len(a.Unproven) != 0 || !slices.Equal(a.Proven, []string{"pricing-returner"}) {
			t.Errorf("another browser signed in as the lead: without userHash %v (want none), with it %v (want pricing-returner)", a.Unproven, a.Proven)
		}
		if n := len(a.Lookups); n == 0 || !strings.HasPrefix(a.Lookups[n-1], "POST ") || !strings.Contains(a.Lookups[n-1], "&userHash="+userHash(email("audiences"))) ||
			strings.Contains(strings.Fields(a.Lookups[n-1])[1], "userHash") {
			t.Errorf("ls.js lookups %q: the last one does not POST the userHash in its body (and not in its URL)", a.Lookups)
		}
		code, body = d.get(t, "/v1/audiences?writeKey="+writeKey+"&anonymousId="+a.Anon+"&userId="+email("audiences")+"&userHash="+userHash(email("someone-else")))
		if code != 403 {
			t.Errorf("GET /v1/audiences with another user's hash: %d %s", code, body)
		}
	})

	t.Run("consent mode sends nothing before consent", func(t *testing.T) {
		c := res.Consent
		if c.Before.IngestRequests != 0 || c.Before.Cookie || len(c.Before.Stored) != 0 {
			t.Fatalf("before consent: %+v", c.Before)
		}
		if c.AfterRequests == 0 || c.Anon == "" {
			t.Fatalf("after consent: %+v", c)
		}
		d.rows(t, "events after consent", fmt.Sprintf("SELECT type, track FROM %s WHERE anonymous_id = '%s' ORDER BY type DESC", ev, c.Anon),
			"page_view\t\ncustom\tBefore Consent") // held in the page, sent once consent was given
	})

	t.Run("Do-Not-Track and Global Privacy Control send nothing", func(t *testing.T) {
		for name, p := range map[string]privacyResult{"dnt": res.DNT, "gpc": res.GPC} {
			if p.IngestRequests != 0 || p.Cookie || len(p.Stored) != 0 {
				t.Errorf("%s: %+v, want no requests, no cookie, no storage", name, p)
			}
			// The consent and no-JS events, sent later, are stored by now.
			if got, _ := d.query(fmt.Sprintf("SELECT count() FROM %s.events WHERE user_agent LIKE '%%%s%%'", d.db, tag(name))); got != "0" {
				t.Errorf("%s: %s events stored", name, got)
			}
		}
	})

	t.Run("email click with a signed token redirects, scores; a forged one does not", func(t *testing.T) {
		target := d.base + "/demo/pricing.html?utm_source=email&utm_campaign=nurture"
		mint := exec.Command(d.bin, "token", "click", "--base", d.base, "--lead", lead, "--campaign", "nurture", "--message", "m-"+run,
			"--url", target, "--sent-at", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
		mint.Env = append(os.Environ(), d.tokenEnv)
		out, err := mint.Output()
		if err != nil {
			t.Fatalf("leadstream token click: %v (%s)", err, exitStderr(err))
		}
		click := strings.TrimSpace(string(out))
		// Same length, other signature: a forgery pointing at the same target.
		forged := click[:len(click)-6] + "AAAAAA"
		var r struct {
			Click struct {
				Landed, ForgedURL string
				ForgedStatus      int
			}
		}
		node(t, &r, "browser.mjs", mustJSON(t, map[string]any{"base": d.base, "chromium": d.chromium,
			"scenarios": []map[string]string{{"name": "click", "click": click, "forged": forged, "tag": tag("click")}}}))
		if r.Click.Landed != target || r.Click.ForgedStatus != 404 || r.Click.ForgedURL != forged {
			t.Fatalf("click: %+v", r.Click)
		}
		d.rows(t, "email click", fmt.Sprintf("SELECT campaign, bot, path FROM %s WHERE type = 'email_click' AND lead_id = '%s'", ev, lead), "nurture\t0\t/demo/pricing.html")
		eventually(t, "score rises with the click", 30*time.Second, func() (bool, string) {
			_, v := d.lead(t, lead)
			return v.Models["default"].Score > scoreAfterJourney+14, fmt.Sprintf("%v -> %+v", scoreAfterJourney, v)
		})
	})

	t.Run("analytics-node with only its host changed", func(t *testing.T) {
		user := email("sdk")
		var r struct{ Statuses []int }
		node(t, &r, "segment.mjs", d.base, writeKey, user)
		d.rows(t, "sdk events", fmt.Sprintf("SELECT type, track, bot FROM %s WHERE lead_id = '%s' ORDER BY type", ev, user),
			"custom\tWebinar Attended\t0\nidentify\t\t0\npage_view\t\t0")
		eventually(t, "sdk lead scored", 30*time.Second, func() (bool, string) {
			code, v := d.lead(t, user)
			return code == 200 && v.Models["default"].Score > 45, fmt.Sprintf("%d %+v", code, v) // page 5 + pricing 15 + fit 30
		})
	})
}

type privacyResult struct {
	IngestRequests int
	Cookie         bool
	Stored         []string
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// get sends a GET to the collector and returns the status and body.
func (d *dev) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := http.Get(d.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}
