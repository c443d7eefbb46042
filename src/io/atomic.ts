// The one atomic-write helper. Every file the product writes goes through here: the new content
// goes to a temp file in the same directory, is fsynced, renamed over the target, and the
// directory is fsynced, so a crash at any moment leaves either the old file or the new one.
// Directories (checkpoints, caches) are published the same way: filled under a temp name, every
// file fsynced, then renamed into place in one step.
//
// `crashPoint(label)` is a fault-injection hook for tests: with ICLD_CRASH_AT=label (or
// label#N for its N-th hit, 1-based) the process SIGKILLs itself there, as a power cut would.

import { closeSync, fsyncSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

const hits = new Map<string, number>();

/** Kill this process (SIGKILL, no cleanup) when ICLD_CRASH_AT names this point. */
export function crashPoint(label: string): void {
  const want = process.env.ICLD_CRASH_AT;
  if (!want) return;
  const n = (hits.get(label) ?? 0) + 1;
  hits.set(label, n);
  const [name, nth] = want.split('#');
  if (name === label && (nth === undefined || Number(nth) === n)) process.kill(process.pid, 'SIGKILL');
}

/** Write a whole buffer to a fd. */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done);
  crashPoint('atomic:chunk'); // fault injection: killed with part of a file written
}

/** fsync a directory so a rename inside it survives a crash (best effort where unsupported). */
export function fsyncDir(dir: string): void {
  let fd: number;
  try { fd = openSync(dir, 'r'); } catch { return; }
  try { fsyncSync(fd); } catch { /* some file systems refuse directory fsync */ } finally { closeSync(fd); }
}

/** A temp name next to `path` that no other process or call will pick. */
/** This machine's name: ICLD_WORKER_HOST, else the host name (study workers on a shared --out sign leases with it). */
export const machineName = (): string => process.env.ICLD_WORKER_HOST || hostname();
/** Six hex digits naming this machine in temp names: a pid means nothing on another machine. */
const hostTag = (): string => createHash('sha256').update(machineName()).digest('hex').slice(0, 6);

export function tempSibling(path: string, tag = 'tmp'): string {
  return join(dirname(path), `.${basename(path)}.${tag}-${process.pid}-h${hostTag()}-${randomBytes(4).toString('hex')}`);
}

/**
 * Write `path` atomically: `writer` fills a temp file in the same directory, which is then
 * fsynced and renamed over `path`, and the directory fsynced. If `writer` throws, the temp file
 * is removed and any existing file at `path` is untouched.
 */
export function atomicWrite(path: string, writer: (fd: number) => void): void {
  const tmp = tempSibling(path);
  const fd = openSync(tmp, 'wx', 0o644);
  let ok = false;
  try {
    writer(fd);
    fsyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) { try { unlinkSync(tmp); } catch { /* already gone */ } }
  }
  crashPoint('atomic:before-rename');
  try {
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* ignore */ }
    throw e;
  }
  fsyncDir(dirname(path));
}

/** Write a string or bytes to `path` atomically. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  atomicWrite(path, (fd) => writeAll(fd, bytes));
}

/** JSON (indent 2, trailing newline), atomically. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}

/** fsync every regular file under `dir` (recursively) and the directories themselves. */
export function fsyncTree(dir: string): void {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) fsyncTree(p);
    else { const fd = openSync(p, 'r'); try { fsyncSync(fd); } finally { closeSync(fd); } }
  }
  fsyncDir(dir);
}

/**
 * Publish a directory filled under `tmp` as `final` in one rename. `final` must not exist
 * (callers move an old version aside first and delete it only after this returns).
 */
export function publishDir(tmp: string, final: string): void {
  fsyncTree(tmp);
  crashPoint('publish:before-rename');
  renameSync(tmp, final);
  fsyncDir(dirname(final));
}

/** Remove a directory tree; its name is first changed to a `.trash-*` sibling so a crash midway never leaves a half-deleted directory under the real name. */
export function removeDirAtomic(dir: string): void {
  const trash = tempSibling(dir, 'trash');
  try { renameSync(dir, trash); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; throw e; }
  fsyncDir(dirname(dir));
  crashPoint('remove:after-rename');
  if (process.env.ICLD_CRASH_AT) {
    // Fault injection: delete file by file so a kill can land midway through the removal.
    for (const e of readdirSync(trash)) {
      rmSync(join(trash, e), { recursive: true, force: true });
      crashPoint('remove:partial');
    }
  }
  rmSync(trash, { recursive: true, force: true });
}

/** Whether a process id belongs to a live process other than this one. */
export function otherProcessAlive(pid: number): boolean {
  if (pid === process.pid) return false; // our own leftovers come from an earlier, failed call
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Remove temp and trash entries (tempSibling names: .NAME.TAG-PID-hHOST-HEX, or the older
 * .NAME.TAG-PID-HEX) that processes no longer running on this machine left directly in `dir`
 * after a crash. Returns the names removed.
 */
export function cleanStaleTemps(dir: string, tags: readonly string[] = ['tmp', 'trash']): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const removed: string[] = [];
  for (const name of names) {
    const m = /^\..+\.([a-z]+)-(\d+)(?:-h([0-9a-f]{6}))?-[0-9a-f]{8}$/.exec(name);
    // Another machine's temp (a shared --out on NFS) may be in flight: its pid cannot be checked here.
    if (!m || !tags.includes(m[1]) || (m[3] !== undefined && m[3] !== hostTag()) || otherProcessAlive(Number(m[2]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
