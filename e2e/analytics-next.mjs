// Loads Segment's analytics.js (Analytics Next, the npm package's browser
// bundle, served by a static server of this script's own) in Debian's
// headless Chromium with only its CDN changed to the collector:
//   AnalyticsBrowser.load({writeKey, cdnURL: <collector>})
// and sends identify, page and track from a page with UTM parameters, in its
// standard mode (/v1/i, /v1/p, /v1/t), in its batching mode (/v1/b), and with
// the browser's clock an hour ahead. Prints what each scenario saw as JSON;
// e2e_test.go checks the pipeline's side.
//   node analytics-next.mjs '{"base":"http://127.0.0.1:PORT","chromium":"/usr/bin/chromium","writeKey":"…","scenarios":[…]}'
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const HUMAN = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36';
const bundles = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/@segment/analytics-next/dist/umd');

// The site: /ajs/* is the package's browser (UMD) build, /site/*.html a page
// that loads it with the options of its scenario (?scenario=…).
const site = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith('/ajs/')) {
    const file = path.join(bundles, path.basename(url.pathname));
    if (!fs.existsSync(file)) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'Content-Type': 'application/javascript' }).end(fs.readFileSync(file));
    return;
  }
  if (url.pathname.startsWith('/site/')) {
    const sc = plan.scenarios.find((s) => s.name === url.searchParams.get('scenario'));
    const options = sc.batching
      ? { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 3, timeout: 500 } } } } }
      : {};
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(`<!doctype html>
<html><head><title>Pricing — analytics.js e2e</title><script src="/ajs/index.js"></script></head>
<body><h1>Pricing</h1><script>
  window.ajs = AnalyticsNext.AnalyticsBrowser.load({ writeKey: ${JSON.stringify(plan.writeKey)}, cdnURL: ${JSON.stringify(plan.base)} }, ${JSON.stringify(options)});
</script></body></html>`);
    return;
  }
  res.writeHead(404).end();
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const siteBase = `http://127.0.0.1:${site.address().port}`;

const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  timeout: 60000,
});

const scenarios = {
  // identify, page and track from a page with UTM parameters.
  async send(sc) {
    const ctx = await browser.newContext({ userAgent: `${HUMAN} ${sc.tag}` });
    if (sc.clockAheadMs) await ctx.clock.setSystemTime(new Date(Date.now() + sc.clockAheadMs));
    const seen = { requests: [], responses: [], foreign: [] };
    ctx.on('request', (r) => {
      const u = new URL(r.url());
      if (u.origin === plan.base) seen.requests.push(`${r.method()} ${u.pathname}`);
      else if (u.origin !== siteBase) seen.foreign.push(r.url()); // nothing may go anywhere else (Segment's CDN or API)
    });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const want = sc.batching ? ['/v1/b'] : ['/v1/i', '/v1/p', '/v1/t'];
    const delivered = Promise.all(want.map((p) => page.waitForResponse((r) => r.url() === plan.base + p && r.request().method() === 'POST', { timeout: 20000 })));
    await page.goto(`${siteBase}/site/pricing.html?scenario=${sc.name}&utm_source=e2e&utm_medium=ajs&utm_campaign=${sc.campaign}`);
    const browserNow = await page.evaluate(() => Date.now());
    await page.evaluate(async (sc) => {
      await Promise.all([
        window.ajs.identify(sc.userId, { email: sc.userId, title: 'VP Marketing', employees: 500 }),
        window.ajs.page(),
        window.ajs.track('Webinar Attended', { webinar: 'ajs-live' }),
      ]);
    }, sc);
    for (const r of await delivered) seen.responses.push({ path: new URL(r.url()).pathname, status: r.status(), body: await r.text() });
    const anon = await page.evaluate(async () => (await window.ajs.user()).anonymousId());
    await ctx.close();
    return { ...seen, anon, errors, clockSkewMs: browserNow - Date.now() };
  },
};

const out = {};
try {
  for (const sc of plan.scenarios) out[sc.name] = await scenarios.send(sc);
} finally {
  await browser.close();
  site.close();
}
console.log(JSON.stringify(out));
