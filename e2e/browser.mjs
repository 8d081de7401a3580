// Drives Debian's headless Chromium through the demo site of a running
// `leadstream dev`, one browser context per scenario, and prints what each
// scenario saw as one JSON object. e2e_test.go runs it and checks the
// pipeline's side (ClickHouse, the lead API, kcat).
//   node browser.mjs '{"base":"http://127.0.0.1:PORT","chromium":"/usr/bin/chromium","scenarios":[…]}'
// Every scenario has a unique "tag" appended to its user agent, so the test
// can find (or prove the absence of) its events on the server side.
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const base = plan.base;
// A normal desktop Chrome: the "human" paths must not look headless.
const HUMAN = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36';

const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  timeout: 60000,
});

// watch counts the context's requests to the ingest API and remembers the
// collector's Set-Cookie answers.
function watch(ctx) {
  const seen = { ingest: 0, statuses: [], setCookie: '' };
  ctx.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) seen.ingest++; });
  ctx.on('response', async (r) => {
    if (!r.url().endsWith('/v1/batch')) return;
    seen.statuses.push(r.status());
    const c = await r.headerValue('set-cookie').catch(() => null);
    if (c) seen.setCookie = c;
  });
  return seen;
}

const isBatch = (r) => r.url().endsWith('/v1/batch') && r.request().method() === 'POST';

// visit opens a page and waits until the beacon delivered its page view.
async function visit(page, path) {
  const delivered = page.waitForResponse(isBatch, { timeout: 15000 });
  await page.goto(base + path);
  const r = await delivered;
  if (r.status() !== 200) throw new Error(`beacon got ${r.status()} on ${path}`);
}

async function fillWhitepaper(page, email) {
  await page.fill('input[name=email]', email);
  await page.fill('input[name=name]', 'Test Person');
  await page.fill('input[name=title]', 'VP Marketing');
  await page.fill('input[name=company]', 'Acme');
  await page.selectOption('select[name=employees]', '500');
}

async function anonCookie(ctx) {
  return (await ctx.cookies()).find((c) => c.name === 'ls_anon') || null;
}

const scenarios = {
  // A visitor browses, downloads the whitepaper with the beacon's form capture.
  async journey(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    const seen = watch(ctx);
    const page = await ctx.newPage();
    // 8 page views, then the form and its thank-you page: with the default
    // rules 9 × 5 + form 30 + fit 30 = 105, an MQL.
    const pages = ['/demo/', '/demo/pricing.html?utm_source=e2e&utm_medium=test&utm_campaign=launch', '/demo/', '/demo/pricing.html',
      '/demo/webinar.html', '/demo/pricing.html', '/demo/', '/demo/whitepaper.html'];
    for (const p of pages) {
      await visit(page, p);
    }
    await fillWhitepaper(page, sc.email);
    const thanks = page.waitForResponse(isBatch, { timeout: 15000 });
    await Promise.all([page.waitForURL('**/demo/thanks.html'), page.click('button[type=submit]')]);
    await thanks;
    const ck = await anonCookie(ctx);
    const anonInPage = await page.evaluate(() => window.leadstream.anonymousId());
    await ctx.close();
    return { anon: ck && ck.value, anonInPage, httpOnly: ck && ck.httpOnly, setCookie: seen.setCookie, statuses: seen.statuses };
  },

  // The default headless user agent must be flagged as a bot by the collector.
  async headless(sc) {
    const probe = await browser.newContext();
    const ua = await (await probe.newPage()).evaluate(() => navigator.userAgent);
    await probe.close();
    const ctx = await browser.newContext({ userAgent: `${ua} ${sc.tag}` });
    const page = await ctx.newPage();
    await visit(page, '/demo/whitepaper.html');
    await fillWhitepaper(page, sc.email);
    const thanks = page.waitForResponse(isBatch, { timeout: 15000 });
    await Promise.all([page.waitForURL('**/demo/thanks.html'), page.click('button[type=submit]')]);
    await thanks;
    const ck = await anonCookie(ctx);
    await ctx.close();
    return { ua, anon: ck && ck.value };
  },

  // Do-Not-Track or Global Privacy Control: nothing is sent, nothing is stored.
  async privacy(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}`, extraHTTPHeaders: sc.signal === 'gpc' ? { 'Sec-GPC': '1' } : { DNT: '1' } });
    await ctx.addInitScript((signal) => {
      if (signal === 'gpc') Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true });
      else Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' });
    }, sc.signal);
    const seen = watch(ctx);
    const page = await ctx.newPage();
    await page.goto(base + '/demo/');
    await page.goto(base + '/demo/whitepaper.html');
    await page.waitForFunction(() => window.leadstream && window.leadstream._ls);
    await page.evaluate(() => window.leadstream.track('Should Not Be Sent'));
    await fillWhitepaper(page, sc.email);
    await Promise.all([page.waitForURL('**/demo/thanks.html'), page.click('button[type=submit]')]);
    await page.waitForTimeout(1500); // longer than the beacon's batching delay
    const ck = await anonCookie(ctx);
    const stored = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('ls_')));
    await ctx.close();
    return { ingestRequests: seen.ingest, cookie: ck !== null, stored };
  },

  // Opt-in consent mode: silent until leadstream.consent(true), then delivers.
  async consent(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    const seen = watch(ctx);
    const page = await ctx.newPage();
    await page.goto(base + '/demo/consent.html');
    await page.waitForFunction(() => window.leadstream && window.leadstream._ls);
    await page.evaluate(() => window.leadstream.track('Before Consent'));
    await page.waitForTimeout(1500);
    const before = { ingestRequests: seen.ingest, cookie: (await anonCookie(ctx)) !== null, stored: await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('ls_'))) };
    const delivered = page.waitForResponse(isBatch, { timeout: 15000 });
    await page.click('#accept');
    await delivered;
    const ck = await anonCookie(ctx);
    await ctx.close();
    return { before, afterRequests: seen.ingest, anon: ck && ck.value };
  },

  // A page that is hard on the beacon: calls queued before it loaded (one not
  // of its API), events of UTF-8 text over the 64 KiB keepalive allows, a form
  // whose fields are named action, name and id; none may throw into the page.
  async hostile(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.addInitScript(() => { window.leadstream = [['group', 'acme'], ['track', 'Queued Call'], 'junk']; });
    await visit(page, '/demo/');
    const anon = await page.evaluate(() => window.leadstream.anonymousId());
    // 40 events of 3,000 bytes of UTF-8 each: 120 KB, more than one batch may carry.
    await page.evaluate(() => { for (let i = 0; i < 40; i++) window.leadstream.track('Big Text', { i, t: 'あ'.repeat(1000) }); });
    await page.waitForFunction(() => !localStorage.getItem('ls_q') || JSON.parse(localStorage.getItem('ls_q')).length === 0, null, { timeout: 20000 });
    await page.evaluate((email) => {
      const f = document.createElement('form');
      f.setAttribute('id', 'hostile-form');
      f.setAttribute('action', '/demo/thanks.html');
      f.innerHTML = '<input name="email" type="email"><input name="action" value="subscribe"><input name="name" value="N"><input name="id" value="7"><button type="submit">go</button>';
      document.body.appendChild(f);
      f.elements.email.value = email;
    }, sc.email);
    const thanks = page.waitForResponse(isBatch, { timeout: 15000 });
    await Promise.all([page.waitForURL('**/demo/thanks.html?**'), page.click('#hostile-form button')]);
    await thanks;
    await ctx.close();
    return { anon, errors };
  },

  // Two tabs of the site offline at once: each queues an event; the first is
  // closed while still offline, after the second overwrote the saved queue
  // with a copy that lacks the first's event. Both events must arrive once
  // the browser is back online (a third tab sends what the closed one saved).
  async tabs(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    const a = await ctx.newPage();
    const b = await ctx.newPage();
    await visit(a, '/demo/');
    await visit(b, '/demo/pricing.html');
    await ctx.setOffline(true);
    await a.evaluate(() => window.leadstream.track('Offline Tab A'));
    await b.evaluate(() => window.leadstream.track('Offline Tab B'));
    await a.waitForTimeout(1500); // past the batching delay: both fetches failed
    const savedBeforeClose = await b.evaluate(() => JSON.parse(localStorage.getItem('ls_q') || '[]').map((m) => m.event || m.type));
    // What tab B writes when it read the queue before tab A's write reached
    // it (their writes cross): the saved queue without A's event. A must
    // save it again as it closes.
    await b.evaluate(() => localStorage.setItem('ls_q', JSON.stringify(JSON.parse(localStorage.getItem('ls_q') || '[]').filter((m) => m.event !== 'Offline Tab A'))));
    await a.close({ runBeforeUnload: true });
    // A saved its event again as it closed, next to B's (waited for: another
    // tab's write reaches B a moment later).
    const both = () => { const q = JSON.parse(localStorage.getItem('ls_q') || '[]').map((m) => m.event); return q.includes('Offline Tab A') && q.includes('Offline Tab B'); };
    await b.waitForFunction(both, null, { timeout: 5000 }).catch(() => {});
    const savedAfterClose = await b.evaluate(() => JSON.parse(localStorage.getItem('ls_q') || '[]').map((m) => m.event || m.type));
    await ctx.setOffline(false);
    const c = await ctx.newPage();
    await visit(c, '/demo/webinar.html');
    await c.waitForFunction(() => !localStorage.getItem('ls_q') || JSON.parse(localStorage.getItem('ls_q')).length === 0, null, { timeout: 40000 });
    await ctx.close();
    return { savedBeforeClose, savedAfterClose };
  },

  // A landing page without JavaScript: the plain form post to /f/ and its 303.
  async nojs(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}`, javaScriptEnabled: false });
    const page = await ctx.newPage();
    await page.goto(base + '/demo/webinar.html');
    await page.fill('input[name=email]', sc.email);
    await page.fill('input[name=title]', 'Director of Sales');
    await Promise.all([page.waitForURL('**/demo/thanks.html'), page.click('button[type=submit]')]);
    const url = page.url();
    await ctx.close();
    return { url };
  },

  // Personalisation: a visitor who viewed the pricing page three times is
  // in the pricing-returner audience and sees the webinar popup on the next
  // page; a new visitor is in no audience and sees none.
  async audiences(sc) {
    const recordAudiences = () => {
      window.__audiences = [];
      document.addEventListener('leadstream:audiences', (e) => window.__audiences.push(e.detail.audiences));
    };
    const announced = async (page) => {
      await page.waitForFunction(() => window.__audiences.length > 0, null, { timeout: 15000 });
      return page.evaluate(() => window.__audiences[0]);
    };
    const popupShown = (page) => page.evaluate(() => !document.getElementById('webinar-popup').hidden);

    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    await ctx.addInitScript(recordAudiences);
    const page = await ctx.newPage();
    const views = [];
    for (let i = 0; i < 3; i++) {
      await visit(page, '/demo/pricing.html');
      const aud = await announced(page);
      views.push({ audiences: aud, popup: await popupShown(page) });
      if (i == 2) break;
    }
    await visit(page, '/demo/');
    const next = await announced(page);
    await page.waitForSelector('#webinar-popup:not([hidden])', { timeout: 5000 });
    const nextPopup = await popupShown(page);
    const asked = await page.evaluate(() => new Promise((res) => window.leadstream.audiences(res)));
    const anon = await page.evaluate(() => window.leadstream.anonymousId());

    // The visitor signs in: identify merges its history into the lead. Its
    // own audiences stay its own; the lead's are told only with the userHash
    // the site's backend computed.
    const ask = (p) => p.evaluate(() => new Promise((res) => window.leadstream.audiences(res)));
    const lookups = [];
    page.on('request', (r) => { if (r.url().includes('/v1/audiences')) lookups.push(r.method() + ' ' + r.url() + ' ' + (r.postData() || '')); });
    await page.evaluate(([email, hash]) => { window.leadstream.identify(email, {}, { userHash: hash }); window.leadstream.flush(); }, [sc.email, sc.userHash]);
    const signedIn = await ask(page);
    await ctx.close();

    // Another browser signs in as the same person: it has no history of its
    // own, so nothing without the hash, and the lead's audiences with it
    // (once the first browser's history is merged into the lead).
    const other = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}-other` });
    const p3 = await other.newPage();
    await visit(p3, '/demo/');
    await p3.evaluate((email) => { window.leadstream.identify(email); window.leadstream.flush(); }, sc.email);
    const unproven = await ask(p3);
    await p3.evaluate(([email, hash]) => window.leadstream.identify(email, {}, { userHash: hash }), [sc.email, sc.userHash]);
    let proven = await ask(p3);
    for (let t = Date.now(); Date.now() - t < 15000 && !proven.includes('pricing-returner'); ) {
      await p3.waitForTimeout(200);
      proven = await ask(p3);
    }
    await other.close();

    const fresh = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}-new` });
    await fresh.addInitScript(recordAudiences);
    const p2 = await fresh.newPage();
    await visit(p2, '/demo/');
    const newAudiences = await announced(p2);
    const newPopup = await popupShown(p2);
    await fresh.close();
    return { views, next, nextPopup, asked, anon, newAudiences, newPopup, signedIn, unproven, proven, lookups };
  },

  // Email links: a signed click lands on its target; a forged one stays put.
  async click(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    const page = await ctx.newPage();
    await page.goto(sc.click);
    const landed = page.url();
    const forged = await page.goto(sc.forged);
    const res = { landed, forgedStatus: forged.status(), forgedURL: page.url() };
    await ctx.close();
    return res;
  },
};

const out = {};
try {
  for (const sc of plan.scenarios) out[sc.name] = await scenarios[sc.kind || sc.name](sc);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
