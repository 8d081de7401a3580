package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/url"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/event"
)

func multipartBody(t testing.TB, fields [][2]string, file bool) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	if file {
		w, _ := mw.CreateFormFile("cv", "cv.pdf")
		_, _ = w.Write(bytes.Repeat([]byte("%PDF"), 2000))
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.String()
}

func TestDecodeForm(t *testing.T) {
	f := func(ct, body string, want url.Values) {
		t.Helper()
		got, err := decodeForm(ct, []byte(body))
		if err != nil {
			t.Fatalf("decodeForm(%q): %v", body, err)
		}
		if !equalValues(got, want) {
			t.Fatalf("decodeForm(%q) = %v, want %v", body, got, want)
		}
	}
	f("application/x-www-form-urlencoded", "email=Ann%40Acme.example&title=VP+Sales&topic=a&topic=b", url.Values{"email": {"Ann@Acme.example"}, "title": {"VP Sales"}, "topic": {"a", "b"}})
	f("application/x-www-form-urlencoded; charset=UTF-8", "a=%C3%A9&&b=", url.Values{"a": {"é"}, "b": {""}})
	f("", "x=1", url.Values{"x": {"1"}})
	ct, body := multipartBody(t, [][2]string{{"email", "a@b.example"}, {"company", "Acme"}}, true)
	f(ct, body, url.Values{"email": {"a@b.example"}, "company": {"Acme"}}) // the file part is skipped

	bad := func(ct, body string, limit bool) {
		t.Helper()
		_, err := decodeForm(ct, []byte(body))
		if err == nil || errors.Is(err, errFormTooLarge) != limit {
			t.Fatalf("decodeForm(%.40q) = %v, want an error (limit=%v)", body, err, limit)
		}
	}
	bad("application/x-www-form-urlencoded", "a=%zz", false)
	bad("application/json", `{"a":1}`, false)
	bad("multipart/form-data", "--x\r\n", false)
	bad("multipart/form-data; boundary=x", "--x\r\nbroken", false)
	bad("application/x-www-form-urlencoded", "a="+strings.Repeat("v", maxFieldValue+1), true)
	bad("application/x-www-form-urlencoded", strings.Repeat("a", maxFieldName+1)+"=1", true)
	bad("application/x-www-form-urlencoded", "=1", true)
	var many []string
	for i := range maxFormFields + 1 {
		many = append(many, "f"+strings.Repeat("x", i)+"=1")
	}
	bad("application/x-www-form-urlencoded", strings.Join(many, "&"), true)
	bad("application/x-www-form-urlencoded", strings.Repeat("a", maxFormBody+1), true)
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") || len(v) != len(b[k]) {
			return false
		}
	}
	return true
}

func TestLeadFromFields(t *testing.T) {
	f := func(v url.Values, want string) {
		t.Helper()
		if got := leadFromFields(v); got != want {
			t.Errorf("leadFromFields(%v) = %q, want %q", v, got, want)
		}
	}
	f(url.Values{"email": {" Ann@Acme.Example "}}, "ann@acme.example")
	f(url.Values{"Work_Email": {"b@c.example"}, "name": {"x"}}, "b@c.example")
	f(url.Values{"EMAIL": {"c@d.example"}, "backup_email": {"z@z.example"}}, "c@d.example")
	f(url.Values{"email": {"not an email"}}, "")
	f(url.Values{"name": {"a@b.example"}}, "")
}

func TestFormRedirect(t *testing.T) {
	f := func(redirect, referer, origin string, allowed []string, want string) {
		t.Helper()
		if got := formRedirect(redirect, referer, origin, allowed); got != want {
			t.Errorf("formRedirect(%q, %q, %q) = %q, want %q", redirect, referer, origin, got, want)
		}
	}
	page := "https://go.acme.example/webinar?utm_source=x"
	f("https://www.acme.example/thanks", page, "https://go.acme.example", nil, "https://www.acme.example/thanks") // same site
	f("/thanks", page, "https://go.acme.example", nil, "https://go.acme.example/thanks")                          // relative to the page
	f("https://evil.example/", page, "https://go.acme.example", nil, page)                                        // other site: back to the page
	f("//evil.example/x", page, "https://go.acme.example", nil, page)
	f("javascript:alert(1)", page, "https://go.acme.example", nil, page)
	f("https://user@www.acme.example/", page, "https://go.acme.example", nil, page)
	f("https://evil.co.uk/", "https://acme.co.uk/p", "https://acme.co.uk", nil, "https://acme.co.uk/p") // public suffix aware
	f("http://127.0.0.2/x", "http://127.0.0.1/p", "http://127.0.0.1", nil, "http://127.0.0.1/p")        // IPs must be equal
	f("https://shop.partner.example/ok", "", "", []string{"https://shop.partner.example"}, "https://shop.partner.example/ok")
	f("https://any.example/", "", "", []string{"*"}, "") // "*" accepts senders, not redirect targets
	f("", "", "", nil, "")
}

func TestFormPost(t *testing.T) {
	s := startServer(t, nil)
	auth := "Content-Type: application/x-www-form-urlencoded"
	res, body := s.do(t, "POST", "/f/webinar", "writeKey="+testKey+"&email=Ann%40Acme.example&title=VP+Marketing&employees=500&password=hunter2&redirect=%2Fthanks",
		auth, "Referer: https://go.acme.example/webinar?utm_campaign=spring", "Origin: https://go.acme.example", "Cookie: ls_anon=0123456789abcdef")
	if res.StatusCode != 303 || res.Header.Get("Location") != "https://go.acme.example/thanks" {
		t.Fatalf("form post: %d Location %q %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	// Multipart, no redirect, posted from nowhere in particular: thank-you page.
	ct, mbody := multipartBody(t, [][2]string{{"writeKey", testKey}, {"work_email", "bob@beta.example"}, {"redirect", "https://evil.example/"}}, true)
	res, body = s.do(t, "POST", "/f/contact", mbody, "Content-Type: "+ct)
	if res.StatusCode != 200 || res.Header.Get("Location") != "" || !strings.Contains(body, "Thank you") {
		t.Fatalf("multipart post: %d Location %q %s", res.StatusCode, res.Header.Get("Location"), body)
	}
	// Refusals: browser-facing HTML, nothing recorded.
	for _, c := range []struct {
		path, body string
		hdr        []string
		code       int
	}{
		{"/f/webinar", "email=a%40b.example", []string{auth}, 401},
		{"/f/webinar", "writeKey=nope&email=a%40b.example", []string{auth}, 401},
		{"/f/bad%20id", "writeKey=" + testKey, []string{auth}, 404},
		{"/f/webinar", "writeKey=" + testKey + "&a=%zz", []string{auth}, 400},
		{"/f/webinar", "writeKey=" + testOtherKey + "&email=a%40b.example", []string{auth, "Origin: https://evil.example"}, 403},
	} {
		res, body := s.do(t, "POST", c.path, c.body, c.hdr...)
		if res.StatusCode != c.code || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("POST %s %q = %d %s, want %d (HTML)", c.path, c.body, res.StatusCode, res.Header.Get("Content-Type"), c.code)
		}
		_ = body
	}
	if res, _ := s.do(t, "GET", "/f/webinar", ""); res.StatusCode != 405 {
		t.Errorf("GET /f/webinar = %d, want 405", res.StatusCode)
	}

	evs := s.events(t)
	if len(evs) != 4 {
		t.Fatalf("got %d events, want form_submit+identify twice: %+v", len(evs), evs)
	}
	sub, id := evs[0], evs[1]
	var props struct {
		Form   string         `json:"form"`
		Fields map[string]any `json:"fields"`
	}
	if err := json.Unmarshal(sub.Properties, &props); err != nil {
		t.Fatal(err)
	}
	if sub.Type != event.FormSubmit || sub.Track != "Form Submitted" || sub.LeadID != "ann@acme.example" || sub.AnonymousID != "0123456789abcdef" ||
		props.Form != "webinar" || props.Fields["title"] != "VP Marketing" || props.Fields["password"] != nil || props.Fields["writeKey"] != nil ||
		sub.UTMCampaign != "spring" || sub.Path != "/webinar" || sub.WriteKeyID != KeyID(testKey) || sub.Bot {
		t.Fatalf("form_submit event %+v (properties %s)", sub, sub.Properties)
	}
	if id.Type != event.Identify || id.LeadID != sub.LeadID || id.AnonymousID != sub.AnonymousID || !strings.Contains(string(id.Traits), `"employees":"500"`) || id.ID != sub.ID+"-identify" {
		t.Fatalf("identify event %+v", id)
	}
	if evs[2].LeadID != "bob@beta.example" || evs[2].AnonymousID != "" {
		t.Fatalf("multipart form_submit %+v", evs[2])
	}
}

// FuzzDecodeForm: arbitrary bodies and content types never panic, and what is
// accepted is within the limits.
func FuzzDecodeForm(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("email=a%40b.example&title=VP+Sales&x=1&x=2"))
	ct, body := multipartBody(f, [][2]string{{"email", "a@b.example"}, {"n", "v"}}, true)
	f.Add(ct, []byte(body))
	f.Add("multipart/form-data; boundary=zz", []byte("--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--zz--\r\n"))
	f.Add("", []byte("a=%zz&=&&"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		v, err := decodeForm(ct, body)
		if err != nil {
			return
		}
		if len(v) > maxFormFields {
			t.Fatalf("%d fields accepted", len(v))
		}
		for name, vals := range v {
			if name == "" || len(name) > maxFieldName {
				t.Fatalf("field name %q accepted", name)
			}
			for _, s := range vals {
				if len(s) > maxFieldValue {
					t.Fatalf("field value of %d bytes accepted", len(s))
				}
			}
		}
		_ = leadFromFields(v)
		_ = storedFields(v)
	})
}

// A form post sent again (after a 503 whose events Kafka stored anyway, a
// double click) is the same event: one id, which the processor scores once.
// Other fields, another person or another form is another event.
func TestFormPostSentAgain(t *testing.T) {
	s := startServer(t, nil)
	hdr := []string{"Content-Type: application/x-www-form-urlencoded", "Cookie: ls_anon=0123456789abcdef"}
	post := func(path, body string) {
		t.Helper()
		if res, b := s.do(t, "POST", path, "writeKey="+testKey+"&"+body, hdr...); res.StatusCode != 200 {
			t.Fatalf("post %s: %d %s", body, res.StatusCode, b)
		}
	}
	post("/f/webinar", "email=ann%40acme.example&title=VP")
	post("/f/webinar", "title=VP&email=ann%40acme.example") // the same fields, another order
	post("/f/webinar", "email=ann%40acme.example&title=CMO")
	post("/f/contact", "email=ann%40acme.example&title=VP")
	post("/f/webinar", "email=bob%40acme.example&title=VP")
	var ids []string
	for _, e := range s.events(t) {
		if e.Type == event.FormSubmit {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) != 5 || ids[0] != ids[1] || !strings.HasPrefix(ids[0], "f-") {
		t.Fatalf("form_submit ids %v: want the first two equal", ids)
	}
	seen := map[string]bool{}
	for _, id := range ids[1:] {
		if seen[id] {
			t.Fatalf("form_submit ids %v: want the last four distinct", ids)
		}
		seen[id] = true
	}
}
