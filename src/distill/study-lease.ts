// Cell leases for `icld study --worker`: many workers over one shared --out claim a cell by
// creating OUT/cells/<arm>/<seed>/lease.json with exclusive create. The holder rewrites it
// (atomically) every lease/3 from a worker thread, since a cell's training blocks the main
// thread's event loop. A lease not renewed for the expiry, or one from a dead process on this
// host, is taken over, so a killed or pre-empted worker's cell is redone. The host is
// machineName() (ICLD_WORKER_HOST, else hostname()).

import { closeSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { machineName, otherProcessAlive, tempSibling, writeAll } from '../io/atomic.js';

interface LeaseData { worker: string; time: number }
export interface Lease { path: string; release(): Promise<void> }

/** This process as a worker: host:pid. */
export const workerId = (): string => `${machineName()}:${process.pid}`;

function readLease(p: string): LeaseData | null {
  try {
    const v = JSON.parse(readFileSync(p, 'utf8')) as LeaseData;
    return typeof v?.worker === 'string' && typeof v.time === 'number' ? v : null;
  } catch { return null; }
}

function expired(l: LeaseData | null, p: string, ms: number): boolean {
  // Empty or torn (being written this instant): judged by its age on disk.
  if (!l) { try { return Date.now() - statSync(p).mtimeMs > ms; } catch { return true; } }
  const at = l.worker.lastIndexOf(':'), h = l.worker.slice(0, at), pid = Number(l.worker.slice(at + 1));
  if (h === machineName() && pid !== process.pid && !otherProcessAlive(pid)) return true;
  return Date.now() - l.time > ms;
}

function create(p: string): boolean {
  let fd: number;
  try { fd = openSync(p, 'wx', 0o644); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false; throw e; }
  try { writeAll(fd, Buffer.from(JSON.stringify({ worker: workerId(), time: Date.now() }) + '\n')); } finally { closeSync(fd); }
  return true;
}

/** Claim the lease at `path`, or null when another live worker holds it. */
export function tryClaim(path: string, leaseSeconds: number): Lease | null {
  const ms = leaseSeconds * 1000;
  if (!create(path)) {
    const old = readLease(path);
    if (!expired(old, path, ms)) return null;
    // Take over: move the expired lease aside (one rename wins), check it was the one judged expired.
    const trash = tempSibling(path, 'trash');
    try { renameSync(path, trash); } catch { return null; }
    const moved = readLease(trash);
    if (JSON.stringify(moved) !== JSON.stringify(old) && !expired(moved, trash, ms)) {
      try { linkSync(trash, path); } catch { /* someone claimed it meanwhile */ }
      unlinkSync(trash);
      return null;
    }
    unlinkSync(trash);
    if (!create(path)) return null;
  }
  const renew = new Worker(
    `const { workerData: d } = require('node:worker_threads'); const fs = require('node:fs');
     import(d.atomic).then((a) => setInterval(() => {
       try { if (JSON.parse(fs.readFileSync(d.path, 'utf8')).worker !== d.id) return; } catch { return; }
       a.writeJsonAtomic(d.path, { worker: d.id, time: Date.now() });
     }, d.every));`,
    { eval: true, workerData: { path, id: workerId(), every: Math.max(100, Math.floor(ms / 3)), atomic: new URL('../io/atomic.js', import.meta.url).href } });
  renew.unref();
  return {
    path,
    async release() {
      await renew.terminate();
      if (readLease(path)?.worker === workerId()) { try { unlinkSync(path); } catch { /* gone */ } }
    },
  };
}
