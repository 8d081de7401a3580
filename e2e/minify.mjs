// Minifies ingest/beacon/ls.js into ls.min.js (the file the collector serves)
// and reports its size. `node minify.mjs --check` changes nothing and fails
// when ls.min.js is not what the source minifies to (the e2e tests run it).
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { minify } from 'terser';

const dir = new URL('../ingest/beacon/', import.meta.url);
const src = readFileSync(new URL('ls.js', dir), 'utf8');
const { code } = await minify(src, {
  compress: { passes: 2 },
  mangle: true,
  format: { comments: /^!/ }, // keep the /*! … */ banner
});
const out = code + '\n';
const size = { minified: Buffer.byteLength(out), gzipped: gzipSync(out, { level: 9 }).length };
if (process.argv.includes('--check')) {
  const current = readFileSync(new URL('ls.min.js', dir), 'utf8');
  if (current !== out) {
    console.error('ingest/beacon/ls.min.js is stale: run `make beacon` and commit it');
    process.exit(1);
  }
} else {
  writeFileSync(new URL('ls.min.js', dir), out);
}
console.log(JSON.stringify(size));
