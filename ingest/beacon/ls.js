/*! leadstream beacon (ls.js) | MIT */
// Install: <script async src="https://COLLECTOR/ls.js" data-key="WRITE_KEY"></script>
// Options (attributes of that tag):
//   data-consent="required"   opt-in mode: nothing is stored or sent before leadstream.consent(true)
//   data-cookie-domain="acme.example"   share the visitor id across subdomains
//   data-auto-page="false"    no automatic page view (single-page apps call leadstream.page())
// API: leadstream.page(name?, props?), .track(name, props?), .identify(userId, traits?, {userHash}?),
//      .consent(true|false), .anonymousId(), .flush(), .audiences(callback)
// After each page view is delivered the visitor's audiences are fetched and a
// "leadstream:audiences" event is dispatched on document (detail.audiences).
// A signed-in user's lead audiences need the userHash the site's backend
// computes (hex HMAC-SHA256 of the user id with an identity key), given to
// identify on each page; it is kept in memory only.
// Do-Not-Track and Global Privacy Control turn the beacon off entirely.
(function (w, d) {
  'use strict';
  var nav = navigator;
  var script = d.currentScript;
  var pre = w.leadstream;
  if (!script || (pre && pre._ls)) return; // not a script tag, or loaded twice

  var attr = function (n) { return script.getAttribute('data-' + n); };
  var key = attr('key');
  var prefix = script.src.replace(/[^/]*$/, ''); // the collector, path included
  var endpoint = prefix + 'v1/batch';
  var domain = attr('cookie-domain');
  var LIB = { name: 'leadstream.js', version: '1' };
  var SENSITIVE = /pass|card|cvv|cvc|ssn|iban|secret|token/i;
  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  var A = 'ls_anon', C = 'ls_consent', Q = 'ls_q', U = 'ls_uid';
  var YEAR = 31536000;

  // Privacy: DNT or GPC = off for good; consent mode = off until consent(true).
  var off = nav.doNotTrack == '1' || w.doNotTrack == '1' || nav.globalPrivacyControl === true;
  var consented = attr('consent') == 'required' ? cookie(C) == '1' : cookie(C) != '0';

  var q = [], held = [], inflight = [], aid, uid, hash, timer, sending, tries = 0;
  var enc = w.TextEncoder && new TextEncoder();

  // Cookies throw in a sandboxed iframe: never into the page.
  function cookie(n) {
    try {
      var m = d.cookie.match('(?:^|; )' + n + '=([^;]*)');
      return m ? decodeURIComponent(m[1]) : '';
    } catch (e) { return ''; }
  }
  function setCookie(n, v, age) {
    try {
      d.cookie = n + '=' + v + ';path=/;max-age=' + age + ';SameSite=Lax' +
        (location.protocol == 'https:' ? ';Secure' : '') + (domain ? ';domain=' + domain : '');
    } catch (e) {}
  }
  function bytes(s) { return enc ? enc.encode(s).length : 3 * s.length; }
  function store(k, v) {
    try {
      if (v == null) localStorage.removeItem(k);
      else localStorage.setItem(k, v);
    } catch (e) {}
  }
  function load(k) {
    try { return localStorage.getItem(k); } catch (e) {}
  }
  function rid() {
    var a = crypto.getRandomValues(new Uint8Array(16)), s = '';
    for (var i = 0; i < 16; i++) s += (a[i] + 256).toString(16).slice(1);
    return s;
  }
  function active() { return !off && consented; }

  // The visitor id lives in a first-party cookie; before consent it exists in memory only.
  function anon() {
    aid = aid || cookie(A) || rid();
    return aid;
  }
  // The saved queue is shared by the site's tabs: a tab keeps the others'
  // unsent events there, adds its own and takes out those it sent.
  function persist(sent) {
    if (!active()) return;
    setCookie(A, anon(), 2 * YEAR);
    if (uid) store(U, uid);
    var seen = {}, out = [], saved;
    (sent || []).forEach(function (m) { seen[m.messageId] = 1; });
    try { saved = JSON.parse(load(Q)); } catch (e) {}
    (saved || []).concat(q).forEach(function (m) {
      if (m && !seen[m.messageId]) out.push(m), seen[m.messageId] = 1;
    });
    store(Q, JSON.stringify(out.slice(-100)));
  }
  function pageInfo() {
    var l = location;
    return { url: l.href, path: l.pathname, search: l.search, referrer: d.referrer, title: d.title };
  }

  function send(type, fields) {
    if (off) return;
    var m = {
      type: type, messageId: 'ls-' + rid(), anonymousId: anon(),
      originalTimestamp: new Date().toISOString(),
      context: { page: pageInfo(), userAgent: nav.userAgent }
    };
    for (var k in fields) m[k] = fields[k];
    if (uid && !m.userId) m.userId = uid;
    // Nothing leaves the page before consent; memory is bounded when the
    // collector cannot be reached (the saved copy keeps the last 100).
    if (!consented) return held.length < 100 && held.push(m);
    if (q.push(m) > 1000) q.shift();
    persist();
    schedule(500);
  }
  function schedule(ms) {
    if (!timer) timer = setTimeout(flush, ms);
  }
  function drop(batch) {
    q = q.filter(function (m) { return batch.indexOf(m) < 0; });
    persist(batch);
  }

  // flush sends the queue: fetch with keepalive while the page lives (its
  // answer tells whether to retry), sendBeacon when the page goes away. Both
  // post text/plain, which needs no CORS preflight. Unsent events stay in
  // localStorage and go with the next page; messageIds make resends harmless.
  //
  // A batch is at most 50 events and 60,000 bytes of UTF-8 (keepalive and
  // sendBeacon refuse bodies over 64 KiB, which a retry would meet again for
  // ever); a single larger event goes alone, without keepalive. What a fetch
  // in flight carries is not sent again by sendBeacon when the page hides.
  function flush(unloading) {
    clearTimeout(timer);
    timer = 0;
    if (!q.length || !active()) return;
    var batch = [], n = 200;
    for (var i = 0; i < q.length && batch.length < 50; i++) {
      if (inflight.indexOf(q[i]) >= 0) continue;
      var s = bytes(JSON.stringify(q[i])) + 1;
      if (batch.length && n + s > 60000) break;
      batch.push(q[i]);
      n += s;
    }
    if (!batch.length) return;
    var body = JSON.stringify({ writeKey: key, sentAt: new Date().toISOString(), context: { library: LIB }, batch: batch });
    var small = n < 60000;
    if (unloading === true || !w.fetch) {
      // Offline, a beacon is accepted and lost: the saved queue keeps them.
      if (nav.sendBeacon && small && nav.onLine !== false && nav.sendBeacon(endpoint, body)) drop(batch);
      return;
    }
    if (sending) return;
    sending = 1;
    inflight = batch;
    fetch(endpoint, { method: 'POST', body: body, keepalive: small, credentials: 'include' })
      .then(function (r) {
        // 4xx will not get better by retrying (bad key, origin, limit): drop;
        // 429 (a rate limit) and 408 (a proxy's timeout) will, with the
        // backoff below, at least the Retry-After the answer asks for.
        if (r.status < 500 && r.status != 429 && r.status != 408) {
          drop(batch);
          return r.ok;
        }
        throw r;
      })
      .then(function (ok) {
        sending = tries = 0;
        inflight = [];
        if (q.length) schedule(0);
        // A page view was delivered: once it is scored, tell the page its audiences.
        if (ok && batch.some(function (m) { return m.type == 'page'; })) setTimeout(announce, 300);
      }, function (r) {
        sending = 0;
        inflight = [];
        var after = r && r.headers ? +r.headers.get('Retry-After') || 0 : 0;
        schedule(Math.max(1000 << Math.min(tries++, 5), after * 1000)); // 1 s … 32 s
      });
  }

  // audiences asks the collector which audiences the visitor is in: names
  // only (GET /v1/audiences). cb gets [] when tracking is off or on failure.
  function audiences(cb) {
    cb = cb || function () {};
    if (!active() || !w.fetch) return cb([]);
    // POSTed form-encoded (no preflight): the user id and its userHash stay
    // out of URLs, and so out of the logs of proxies.
    var p = new URLSearchParams({ writeKey: key, anonymousId: anon() });
    if (uid && hash) { p.set('userId', uid); p.set('userHash', hash); }
    fetch(prefix + 'v1/audiences', { method: 'POST', body: p })
      .then(function (r) { return r.json(); })
      .then(function (b) { cb(b.audiences || []); }, function () { cb([]); });
  }
  function announce() {
    audiences(function (a) {
      d.dispatchEvent(new CustomEvent('leadstream:audiences', { detail: { audiences: a } }));
    });
  }

  var api = {
    _ls: 1,
    page: function (name, props) {
      var p = pageInfo();
      for (var k in props) p[k] = props[k];
      send('page', { name: name || d.title, properties: p });
    },
    track: function (name, props) {
      send('track', { event: name, properties: props || {} });
    },
    identify: function (id, traits, opts) {
      if (id && '' + id != uid) hash = '';
      if (id) uid = '' + id;
      if (opts && opts.userHash) hash = '' + opts.userHash;
      send('identify', { userId: uid, traits: traits || {} });
    },
    consent: function (yes) {
      consented = !!yes;
      if (off) return;
      setCookie(C, yes ? 1 : 0, YEAR);
      if (yes) {
        q = q.concat(held);
        held = [];
        persist();
        flush();
      } else {
        q = [];
        held = [];
        aid = uid = hash = '';
        setCookie(A, '', 0);
        store(Q);
        store(U);
      }
    },
    anonymousId: function () { return active() ? anon() : ''; },
    audiences: audiences,
    flush: flush
  };

  // Forms: those with an email field or data-leadstream are captured as a
  // form submission plus an identify (lead id = the lower-cased email).
  // Forms that post to the collector's /f/ are recorded by the collector;
  // they only get the visitor id, so it can link the anonymous history.
  // Attributes are read with getAttribute: a field named "action", "name"
  // or "id" shadows the form's property of that name.
  d.addEventListener('submit', function (ev) {
    try { submitted(ev.target); } catch (e) {} // never an error in the page
  }, true);
  function submitted(f) {
    var els = f.elements || [], fields = {}, mail;
    if (off || f.tagName != 'FORM' || f.hasAttribute('data-leadstream-ignore')) return;
    if (new URL(f.getAttribute('action') || '', location.href).href.indexOf(prefix + 'f/') == 0) {
      if (!active()) return;
      var h = f.elements.anonymousId || f.appendChild(d.createElement('input'));
      h.type = 'hidden';
      h.name = 'anonymousId';
      h.value = anon();
      return;
    }
    var email = f.querySelector('input[type=email],input[name*=email i]');
    if (!email && !f.hasAttribute('data-leadstream')) return;
    for (var i = 0; i < els.length; i++) {
      var el = els[i], n = el.name, v = el.value;
      if (!n || el.disabled || /^(password|file|submit|button|reset|image)$/.test(el.type) || SENSITIVE.test(n) ||
        (/^(checkbox|radio)$/.test(el.type) && !el.checked)) continue;
      fields[n] = n in fields ? [].concat(fields[n], v) : v;
    }
    mail = email && email.value.trim().toLowerCase();
    if (mail && EMAIL.test(mail)) api.identify(mail, fields);
    api.track('Form Submitted', {
      form: f.getAttribute('data-leadstream') || f.getAttribute('id') || f.getAttribute('name') || f.getAttribute('action') || location.pathname,
      fields: fields
    });
    flush(true); // the page is about to go away
  }
  // Leaving (or hidden, which may be the last a mobile browser lets a page
  // do): the unsent events are saved again before the beacon. Tabs write the
  // shared queue from copies read a moment before, and another tab's write
  // reaches this one late, so a tab's saved events can be overwritten by
  // another's; saved again here, they survive this tab (sent by the next page).
  function leaving() {
    persist();
    flush(true);
  }
  d.addEventListener('visibilitychange', function () {
    if (d.visibilityState == 'hidden') leaving();
  });
  w.addEventListener('pagehide', leaving);

  w.leadstream = api;
  if (active()) {
    uid = load(U);
    try { q = JSON.parse(load(Q)) || []; } catch (e) {}
    persist();
    schedule(0);
  }
  // Calls made before the script loaded: window.leadstream = [['track', 'X'], …].
  // One that is not a call of the API is skipped, and none throws into the page.
  if (pre && pre.length) for (var j = 0; j < pre.length; j++) {
    var fn = pre[j] && pre[j][0] != '_ls' && api[pre[j][0]];
    if (typeof fn == 'function') try { fn.apply(api, pre[j].slice(1)); } catch (e) {}
  }
  if (attr('auto-page') != 'false') api.page();
})(window, document);
