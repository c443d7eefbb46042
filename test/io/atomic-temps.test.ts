// Temp names carry the machine: on a shared --out (NFS) a temp another machine is writing must
// survive this machine's stale-temp cleanup, since its pid means nothing here.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { cleanStaleTemps, tempSibling } from '../../src/io/atomic.js';

const atomic = new URL('../../src/io/atomic.js', import.meta.url).href;
/** A temp name made by another process (dead once this returns), on the machine named `host`. */
function foreignTemp(dir: string, host: string): string {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { tempSibling } from '${atomic}'; process.stdout.write(tempSibling(process.argv[1]))`, join(dir, 'result.json')],
    { encoding: 'utf8', env: { ...process.env, ICLD_WORKER_HOST: host } });
  assert.equal(r.status, 0, r.stderr);
  return basename(r.stdout);
}

test('cleanStaleTemps removes dead processes\' temps of this machine only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-temps-'));
  const here = process.env.ICLD_WORKER_HOST;
  const mine = foreignTemp(dir, here ?? ''), other = foreignTemp(dir, 'some-other-node');
  assert.match(mine, /^\.result\.json\.tmp-\d+-h[0-9a-f]{6}-[0-9a-f]{8}$/);
  assert.notEqual(mine.split('-h')[1].slice(0, 6), other.split('-h')[1].slice(0, 6), 'two machines share a temp tag');
  const old = '.result.json.tmp-999999-0badcafe'; // a name from before the machine tag: judged by pid
  const live = basename(tempSibling(join(dir, 'x.json'))); // this process: alive, but its own leftovers go
  for (const n of [mine, other, old, live, 'result.json']) writeFileSync(join(dir, n), 'x');
  assert.deepEqual(cleanStaleTemps(dir).sort(), [old, live, mine].sort());
  assert.deepEqual(readdirSync(dir).sort(), [other, 'result.json'].sort());
});
