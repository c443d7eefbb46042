// Teacher logit cache: the teacher's targets (top-k ids + raw logits + temperature
// log-sum-exp per answer position) for a fixed list of ICT instances, computed once and reused
// across epochs, seeds and students. Binary layout of targets.bin, per position in instance order:
//   uint32 count | count × int32 ids | count × float32 logits | float32 lse
// meta.json records the key (teacher weights, instances, τ, k) and per-instance offsets.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cleanStaleTemps, crashPoint, publishDir, removeDirAtomic, tempSibling, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { tidy, noGrad } from '../engine/index.js';
import type { LanguageModel } from '../models/index.js';
import type { Instance } from '../icl/ict.js';
import * as O from '../engine/ops.js';
import { answerLogits, answerSpan, makeBatch } from '../icl/ict.js';
import { teacherTarget, type TeacherTarget } from './loss.js';

export interface CacheMeta { version: 1; key: string; tau: number; top_k: number; instances: number; positions: number; offsets: number[]; bytes: number; }

/** Hash of a model's weights (identifies the teacher in cache keys). */
export function weightsHash(m: LanguageModel): string {
  const h = createHash('sha256');
  for (const [n, p] of m.namedParameters()) { h.update(n); h.update(new Uint8Array(p.f32.buffer, p.f32.byteOffset, p.f32.byteLength)); }
  return h.digest('hex').slice(0, 16);
}

export function instancesHash(xs: Instance[]): string {
  const h = createHash('sha256');
  for (const x of xs) {
    h.update(new Uint8Array(Int32Array.from(x.prefix.concat(x.suffix)).buffer));
    const { start, end } = answerSpan(x);
    h.update(`|${start}|${x.candidates?.map((c) => c.join(',')).join(';') ?? ''}${x.mask !== undefined ? `|mask ${x.mask} ${end}` : ''}\n`);
  }
  return h.digest('hex').slice(0, 16);
}


/** Teacher targets for a batch of instances from a live teacher (noGrad). */
export function liveTargets(teacher: LanguageModel, batch: Instance[], pad: number, tau: number, topK: number): TeacherTarget[][] {
  const b = makeBatch(batch, pad);
  return tidy(() => noGrad(() => {
    teacher.eval();
    const lg = O.contiguous(answerLogits(teacher, b).logits);
    const V = lg.shape[1], d = lg.f32.subarray(lg.offset);
    // answerLogits' rows: instance by instance, each instance's answer tokens in order.
    let r = 0;
    return batch.map((inst) => {
      const { start, end } = answerSpan(inst);
      return Array.from({ length: end - start }, (_, j) => teacherTarget(d.subarray(r * V, (++r) * V), topK, tau, inst.candidates?.[j] ?? []));
    });
  }));
}

export class TeacherCache {
  private constructor(readonly dir: string, readonly meta: CacheMeta, private readonly buf: Buffer) {}

  /**
   * Load the cache in `dir` if its key matches and it passes validation, else compute it with the
   * teacher and publish it atomically (temp dir + rename). A damaged cache is recomputed, saying so.
   */
  static ensure(dir: string, teacher: LanguageModel, instances: Instance[], o: { tau: number; topK: number; pad: number; batchSize?: number; log?: (s: string) => void }): TeacherCache {
    const key = `${weightsHash(teacher)}-${instancesHash(instances)}-t${o.tau}-k${o.topK}`;
    const mp = join(dir, 'meta.json');
    mkdirSync(dirname(dir), { recursive: true });
    cleanStaleTemps(dirname(dir));
    if (existsSync(mp)) {
      try {
        const c = TeacherCache.open(dir, teacher.vocabSize);
        if (c.meta.key === key) { o.log?.(`teacher cache hit: ${dir}`); return c; }
        o.log?.(`teacher cache ${dir} was made for a different teacher/data/τ/k; recomputing`);
      } catch (e) { o.log?.(`${(e as Error).message}; recomputing the teacher cache`); }
    }
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    const offsets: number[] = [];
    let bytes = 0, positions = 0;
    const B = o.batchSize ?? 16;
    for (let i = 0; i < instances.length; i += B) {
      const batch = instances.slice(i, i + B);
      for (const perInst of liveTargets(teacher, batch, o.pad, o.tau, o.topK)) {
        offsets.push(bytes);
        for (const t of perInst) {
          const c = t.ids.length, buf = Buffer.alloc(4 + 8 * c + 4);
          buf.writeUInt32LE(c, 0);
          Buffer.from(t.ids.buffer, t.ids.byteOffset, 4 * c).copy(buf, 4);
          Buffer.from(t.logits.buffer, t.logits.byteOffset, 4 * c).copy(buf, 4 + 4 * c);
          buf.writeFloatLE(t.lse, 4 + 8 * c);
          chunks.push(buf); bytes += buf.length; positions++;
        }
      }
      crashPoint('cache:batch');
    }
    offsets.push(bytes);
    const meta: CacheMeta = { version: 1, key, tau: o.tau, top_k: o.topK, instances: instances.length, positions, offsets, bytes };
    const tmp = tempSibling(dir);
    mkdirSync(tmp);
    const all = Buffer.concat(chunks);
    writeFileAtomic(join(tmp, 'targets.bin'), all);
    writeJsonAtomic(join(tmp, 'meta.json'), meta);
    // A cache is recomputable: drop the old one, then publish the new one in one rename.
    if (existsSync(dir)) removeDirAtomic(dir);
    publishDir(tmp, dir);
    o.log?.(`teacher cache: ${instances.length} instances, ${positions} answer positions, ${(bytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${dir}`);
    return new TeacherCache(dir, meta, all);
  }

  /**
   * Open and fully validate a cache dir: meta.json's fields and offsets, targets.bin's size, and
   * every record (counts within the file, ids within the vocabulary) before anything is
   * allocated from a count. Errors name the file.
   */
  static open(dir: string, vocabSize: number): TeacherCache {
    const mp = join(dir, 'meta.json'), bp = join(dir, 'targets.bin');
    const meta = readJsonFile(mp, 'teacher cache meta') as CacheMeta;
    const bad = (what: string): never => { throw new Error(`${mp}: ${what}`); };
    const nat = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
    if (!meta || typeof meta !== 'object' || Array.isArray(meta)) bad('expected a JSON object');
    if (meta.version !== 1) bad(`version ${JSON.stringify(meta.version)} is not 1`);
    if (typeof meta.key !== 'string') bad('key must be a string');
    if (typeof meta.tau !== 'number' || !(meta.tau > 0)) bad(`tau must be a number > 0, got ${JSON.stringify(meta.tau)}`);
    for (const k of ['top_k', 'instances', 'positions', 'bytes'] as const) if (!nat(meta[k])) bad(`${k} must be an integer ≥ 0, got ${JSON.stringify(meta[k])}`);
    if (!Array.isArray(meta.offsets) || meta.offsets.length !== meta.instances + 1) bad(`offsets must be an array of instances + 1 = ${meta.instances + 1} numbers`);
    meta.offsets.forEach((x, i) => {
      if (!nat(x)) bad(`offsets[${i}] must be an integer ≥ 0, got ${JSON.stringify(x)}`);
      if (i === 0 ? x !== 0 : x < meta.offsets[i - 1]) bad(`offsets must start at 0 and never decrease (offsets[${i}] = ${x})`);
    });
    if (meta.offsets[meta.instances] !== meta.bytes) bad(`the last offset ${meta.offsets[meta.instances]} is not bytes ${meta.bytes}`);
    if (!existsSync(bp)) throw new Error(`${bp}: missing`);
    const size = statSync(bp).size;
    if (size !== meta.bytes) throw new Error(`${bp}: ${size} bytes, ${mp} says ${meta.bytes}`);
    const buf = readFileSync(bp);
    let positions = 0;
    for (let i = 0; i < meta.instances; i++) {
      let p = meta.offsets[i];
      const end = meta.offsets[i + 1];
      while (p < end) {
        if (p + 4 > end) throw new Error(`${bp}: record at byte ${p} is cut off`);
        const c = buf.readUInt32LE(p);
        if (c > vocabSize || p + 4 + 8 * c + 4 > end) throw new Error(`${bp}: record at byte ${p} claims ${c} tokens, more than ${c > vocabSize ? `the vocabulary (${vocabSize})` : 'its instance holds'}`);
        for (let j = 0; j < c; j++) { const id = buf.readInt32LE(p + 4 + 4 * j); if (id < 0 || id >= vocabSize) throw new Error(`${bp}: token id ${id} at byte ${p + 4 + 4 * j} is outside the vocabulary (${vocabSize})`); }
        p += 4 + 8 * c + 4;
        positions++;
      }
    }
    if (positions !== meta.positions) bad(`positions ${meta.positions}, targets.bin holds ${positions}`);
    return new TeacherCache(dir, meta, buf);
  }

  /** Targets of instance i (one per answer position). */
  targets(i: number): TeacherTarget[] {
    if (i < 0 || i >= this.meta.instances) throw new Error(`teacher cache: instance ${i} out of range (${this.meta.instances})`);
    const out: TeacherTarget[] = [];
    let p = this.meta.offsets[i];
    const end = this.meta.offsets[i + 1];
    while (p < end) {
      const c = this.buf.readUInt32LE(p);
      const ids = new Int32Array(c), logits = new Float32Array(c);
      for (let j = 0; j < c; j++) { ids[j] = this.buf.readInt32LE(p + 4 + 4 * j); logits[j] = this.buf.readFloatLE(p + 4 + 4 * c + 4 * j); }
      out.push({ ids, logits, lse: this.buf.readFloatLE(p + 4 + 8 * c) });
      p += 4 + 8 * c + 4;
    }
    return out;
  }
}
