package ingest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/segment"
	"github.com/valyala/fasthttp"
)

// Form limits: generous for landing pages, small enough that one post is one event.
const (
	maxFormBody   = 1 << 20 // multipart posts may carry files, which are skipped
	maxFormFields = 100
	maxFieldName  = 128
	maxFieldValue = 4 << 10
)

// Reserved form fields steer the collector and are not stored as fields.
const (
	fieldWriteKey = "writeKey"
	fieldRedirect = "redirect"
	fieldAnonID   = "anonymousId" // filled in by ls.js on forms that post here
)

// sensitiveField matches field names whose values are never stored.
var sensitiveField = regexp.MustCompile(`(?i)pass(word|wd)?|card|cvv|cvc|ssn|iban|secret|token`)

var formIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// errFormTooLarge distinguishes a limit from malformed input.
var errFormTooLarge = errors.New("form is over a limit")

// decodeForm reads an application/x-www-form-urlencoded or multipart/form-data
// body into fields, skipping file parts. It works on a copy of the body, so it
// may be called with fasthttp's buffer, and never keeps it.
func decodeForm(contentType string, body []byte) (url.Values, error) {
	if len(body) > maxFormBody {
		return nil, fmt.Errorf("%w: body over %d bytes", errFormTooLarge, maxFormBody)
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "" // browsers always send one; treat a missing type as urlencoded
	}
	out := url.Values{}
	add := func(name, value string) error {
		switch {
		case len(out) >= maxFormFields && out[name] == nil:
			return fmt.Errorf("%w: more than %d fields", errFormTooLarge, maxFormFields)
		case len(name) == 0 || len(name) > maxFieldName:
			return fmt.Errorf("%w: a field name is empty or over %d bytes", errFormTooLarge, maxFieldName)
		case len(value) > maxFieldValue:
			return fmt.Errorf("%w: field %q is over %d bytes", errFormTooLarge, name, maxFieldValue)
		case len(out[name]) >= maxFormFields:
			return fmt.Errorf("%w: field %q repeats more than %d times", errFormTooLarge, name, maxFormFields)
		}
		out[name] = append(out[name], value)
		return nil
	}
	switch mt {
	case "multipart/form-data":
		boundary := params["boundary"]
		if boundary == "" {
			return nil, errors.New("multipart body without a boundary")
		}
		mr := multipart.NewReader(bytes.NewReader(body), boundary)
		for parts := 0; ; parts++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("malformed multipart body: %v", err)
			}
			if parts >= 2*maxFormFields {
				return nil, fmt.Errorf("%w: more than %d parts", errFormTooLarge, 2*maxFormFields)
			}
			if p.FileName() != "" {
				continue // uploads are not tracking data
			}
			v, err := io.ReadAll(io.LimitReader(p, maxFieldValue+1))
			if err != nil {
				return nil, fmt.Errorf("malformed multipart body: %v", err)
			}
			if err := add(p.FormName(), string(v)); err != nil {
				return nil, err
			}
		}
	case "", "application/x-www-form-urlencoded":
		for _, pair := range strings.Split(string(body), "&") {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			name, err1 := url.QueryUnescape(k)
			value, err2 := url.QueryUnescape(v)
			if err1 != nil || err2 != nil {
				return nil, errors.New("malformed urlencoded body")
			}
			if err := add(name, value); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unsupported content type %q (use a plain HTML form: urlencoded or multipart)", mt)
	}
	return out, nil
}

// emailPattern is deliberately loose: the form's own validation is the
// authority; this only stops obvious non-addresses becoming lead ids.
var emailPattern = regexp.MustCompile(`^[^\s@]+@[^\s@]+\.[^\s@]+$`)

// leadFromFields finds the email field ("email", or else the first field whose
// name contains "email") and returns the lead id: the lower-cased address.
func leadFromFields(fields url.Values) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	pick := ""
	for _, n := range names {
		if strings.EqualFold(n, "email") {
			pick = n
			break
		}
		if pick == "" && strings.Contains(strings.ToLower(n), "email") {
			pick = n
		}
	}
	if pick == "" {
		return ""
	}
	email := strings.ToLower(strings.TrimSpace(fields.Get(pick)))
	if len(email) > 254 || !emailPattern.MatchString(email) {
		return ""
	}
	return email
}

// storedFields drops reserved and sensitive fields; one value stays a string,
// repeated ones (checkboxes) become a list.
func storedFields(fields url.Values) map[string]any {
	out := make(map[string]any, len(fields))
	for n, vs := range fields {
		if n == fieldWriteKey || n == fieldRedirect || n == fieldAnonID || sensitiveField.MatchString(n) {
			continue
		}
		if len(vs) == 1 {
			out[n] = vs[0]
		} else {
			out[n] = vs
		}
	}
	return out
}

// form serves POST /f/{form_id}: a plain HTML form post from a landing page
// without JavaScript. It records a form_submit (and an identify carrying the
// fields as traits, for fit scoring) for the lead whose email the form holds,
// linked to the ls_anon visitor id when the page had one; then it sends the
// browser back to the site with a 303 (same site only) or shows a thank-you
// page. Answers are small HTML pages, as a person is looking at them.
func (c *Collector) form(ctx *fasthttp.RequestCtx, formID string) {
	if ctx.IsOptions() {
		c.preflight(ctx)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		htmlPage(ctx, fasthttp.StatusMethodNotAllowed, "Not a form post", "This address only accepts form submissions.")
		return
	}
	if !formIDPattern.MatchString(formID) {
		htmlPage(ctx, fasthttp.StatusNotFound, "Unknown form", "The form id must be 1-64 letters, digits, '.', '_' or '-'.")
		return
	}
	if gz, err := gzipCoded(ctx.Request.Header.ContentEncoding()); gz || err != nil {
		// Browsers send forms as they are; a compressed body read as a
		// form would be stored as fields of binary junk, its email lost.
		c.m.rejected.WithLabelValues("malformed").Inc()
		htmlPage(ctx, fasthttp.StatusBadRequest, "Form not accepted", "The form could not be read (Content-Encoding: send the form as it is, not compressed).")
		return
	}
	fields, err := decodeForm(string(ctx.Request.Header.ContentType()), ctx.PostBody())
	if err != nil {
		reason := "malformed"
		if errors.Is(err, errFormTooLarge) {
			reason = "limit"
		}
		c.m.rejected.WithLabelValues(reason).Inc()
		htmlPage(ctx, fasthttp.StatusBadRequest, "Form not accepted", "The form could not be read ("+reason+").")
		return
	}
	keyID := c.writeKey(ctx, cmp.Or(fields.Get(fieldWriteKey), string(ctx.QueryArgs().Peek(fieldWriteKey))))
	if keyID == "" {
		c.m.rejected.WithLabelValues("auth").Inc()
		htmlPage(ctx, fasthttp.StatusUnauthorized, "Form not accepted", "The form has no valid write key (a hidden field named writeKey).")
		return
	}
	origin := requestOrigin(ctx)
	if origin != "" && !c.originAllowed(keyID, origin) {
		c.m.rejected.WithLabelValues("origin").Inc()
		htmlPage(ctx, fasthttp.StatusForbidden, "Form not accepted", "This site may not send forms with this write key.")
		return
	}
	if o := string(ctx.Request.Header.Peek("Origin")); o != "" {
		allowCORS(ctx, o)
	}
	if gpc(ctx) {
		// Global Privacy Control: nothing of the post is stored; the
		// browser goes where it would have gone.
		c.m.gpc.WithLabelValues("/f").Inc()
		c.formDone(ctx, fields, keyID, origin)
		return
	}
	if !c.server[keyID] {
		if wait, limit, ok := c.limit(c.clientAddr(ctx), keyID, 2, time.Now()); !ok {
			c.m.rejected.WithLabelValues("rate_limit").Inc()
			ctx.Response.Header.Set("Retry-After", retryAfter(wait))
			msg := "Too many submissions from your network just now. Please go back and send the form again in a minute."
			if limit == limitRateKey {
				msg = "Too many submissions just now. Please go back and send the form again in a minute."
			}
			htmlPage(ctx, fasthttp.StatusTooManyRequests, "Please try again", msg)
			return
		}
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	lead := leadFromFields(fields)
	anon := validAnonID(cmp.Or(fields.Get(fieldAnonID), string(ctx.Request.Header.Cookie(anonCookie))))
	if lead == "" && anon == "" {
		anon = newID("f-")
		c.setAnonCookie(ctx, origin, anon)
	}
	stored := storedFields(fields)
	props, err := json.Marshal(map[string]any{"form": formID, "fields": stored})
	if err != nil {
		panic("BUG: encoding form fields: " + err.Error())
	}
	if len(props) > segment.MaxEventBytes {
		c.m.rejected.WithLabelValues("limit").Inc()
		htmlPage(ctx, fasthttp.StatusBadRequest, "Form not accepted", "The form is over the limit of 32 KB per event.")
		return
	}
	ref := string(ctx.Request.Header.Referer())
	base := event.Event{
		EventTime: now, ReceivedAt: now, AnonymousID: anon, LeadID: lead, WriteKeyID: keyID,
		IP: c.clientIP(ctx), UserAgent: string(ctx.UserAgent()), URL: ref,
	}
	segment.FillFromURL(&base)
	id := formEventID(keyID, lead, anon, props, now)
	submit := base
	submit.ID, submit.Type, submit.Track, submit.Properties = id, event.FormSubmit, "Form Submitted", props
	events := []*event.Event{&submit}
	if lead != "" {
		traits, _ := json.Marshal(stored)
		ident := base
		ident.ID, ident.Type = id+"-identify", event.Identify
		if string(traits) != "{}" {
			ident.Traits = traits
		}
		events = append(events, &ident)
	}
	for _, e := range events {
		// The page's address (Referer, up to the 16 KiB of a request's
		// head) is stored in url, path, its utm_* fields and campaign,
		// each < > & escaped in six bytes: held to the bound of every
		// stored event, as a Segment call's is.
		if n := event.EncodedSize(e); n > segment.MaxRecordBytes {
			c.m.rejected.WithLabelValues("limit").Inc()
			htmlPage(ctx, fasthttp.StatusBadRequest, "Form not accepted", "The form could not be read (limit: the page's address makes it over 128 KB once stored).")
			return
		}
		c.bots.userAgent(e, true)
	}
	if err := c.write(ctx, events); err != nil {
		c.m.rejected.WithLabelValues("unavailable").Inc()
		c.log.Warn("form submission not written to kafka", "err", err)
		ctx.Response.Header.Set("Retry-After", "5")
		htmlPage(ctx, fasthttp.StatusServiceUnavailable, "Please try again", "Your submission could not be saved just now. Please go back and send it again in a moment.")
		return
	}
	c.countEvents(events)
	c.formDone(ctx, fields, keyID, origin)
}

// formEventID is the id of a form post: 128 bits of SHA-256 of the key, the
// person (lead and anonymous id), the form and its stored fields (props:
// JSON with sorted keys) and the hour. A post sent again — after a 503 whose
// events Kafka stored anyway, a double click, the back button — is the same
// event, scored once; the same form filled in the same way the next hour is
// a new one. A 503 answer also sets the anonymous cookie it made, so the
// retry of a visitor without one is the same person.
func formEventID(keyID, lead, anon string, props []byte, at time.Time) string {
	return hourEventID("f-", at, []byte(keyID+"\x00"+lead+"\x00"+anon+"\x00"), props)
}

// formDone sends the browser on after a form post: back to the site (303)
// when the form or its page says where, else a thank-you page.
func (c *Collector) formDone(ctx *fasthttp.RequestCtx, fields url.Values, keyID, origin string) {
	ref := string(ctx.Request.Header.Referer())
	if target := formRedirect(fields.Get(fieldRedirect), ref, origin, c.origins[keyID]); target != "" {
		ctx.Response.Header.Set("Location", target)
		ctx.SetStatusCode(fasthttp.StatusSeeOther)
		return
	}
	htmlPage(ctx, fasthttp.StatusOK, "Thank you", "Your submission was received.")
}

// formRedirect picks where to send the browser after a form post: the
// redirect field (relative ones resolved against the page), else the page
// itself (Referer). Only targets on the same site as the posting page, or on
// an origin allowed for the write key, qualify: the collector must not become
// an open redirect. "" = show the thank-you page.
func formRedirect(redirect, referer, origin string, allowed []string) string {
	page, _ := url.Parse(referer)
	for _, cand := range []string{redirect, referer} {
		if cand == "" {
			continue
		}
		u, err := url.Parse(cand)
		if err != nil {
			continue
		}
		if !u.IsAbs() {
			if page == nil || page.Host == "" || strings.HasPrefix(cand, "//") {
				continue
			}
			u = page.ResolveReference(u)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil {
			continue
		}
		if (origin != "" && sameSite(u.Hostname(), hostOf(origin))) || matchOrigins(withoutWildcard(allowed), u.Scheme+"://"+u.Host) {
			return u.String()
		}
	}
	return ""
}

// withoutWildcard drops "*": an origin list that accepts any sender must not
// make any redirect target acceptable.
func withoutWildcard(list []string) []string {
	out := make([]string, 0, len(list))
	for _, o := range list {
		if o != "*" {
			out = append(out, o)
		}
	}
	return out
}
