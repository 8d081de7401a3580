// Sends identify, track and page with Segment's own Node SDK, pointed at the
// collector by changing only its host. Prints the HTTP statuses it saw as JSON;
// exits non-zero on any delivery error.
//   node segment.mjs BASE_URL WRITE_KEY USER_ID
import { Analytics } from '@segment/analytics-node';

const [base, writeKey, userId] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host: base, flushInterval: 200, maxRetries: 2 });
const statuses = [];
const errors = [];
analytics.on('http_response', (r) => statuses.push(r.status));
analytics.on('error', (e) => errors.push(String(e.reason ?? e.code ?? e)));

analytics.identify({ userId, traits: { email: userId, title: 'Head of Operations', employees: 250 } });
analytics.track({ userId, event: 'Webinar Attended', properties: { webinar: 'scoring-live' } });
analytics.page({ userId, name: 'Pricing', properties: { url: 'https://acme.example/pricing?utm_source=sdk', path: '/pricing' } });
await analytics.closeAndFlush({ timeout: 20000 });

console.log(JSON.stringify({ statuses, errors }));
process.exit(errors.length === 0 && statuses.length > 0 && statuses.every((s) => s === 200) ? 0 : 1);
