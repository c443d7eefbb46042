// deploy/k8s/: every manifest is a valid Kubernetes 1.27 object (kubernetes-models' validators,
// plus a strict pass for unknown fields, which those validators let through), and the manifests
// agree with the image, the volume, the icld CLI, the study config and the server they run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { commands, resolveCommand } from '../../src/cli/main.js';
import { parseArgs } from '../../src/cli/args.js';
import { readStudyConfig } from '../../src/distill/study-config.js';
import { startServer } from '../../src/server/index.js';
import { get, gpt2Dir } from '../server/serve-fixture.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const k8sDir = join(root, 'deploy', 'k8s');

type Obj = Record<string, any>;
interface Doc { file: string; obj: Obj }

/** Every YAML document of the given files (a YAML syntax error fails, naming the file). */
function loadDocs(files: { file: string; text: string }[]): Doc[] {
  const out: Doc[] = [];
  for (const { file, text } of files) {
    for (const d of parseAllDocuments(text)) {
      assert.equal(d.errors.length, 0, `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      const obj = d.toJSON() as Obj | null;
      if (obj !== null) out.push({ file, obj });
    }
  }
  return out;
}

const manifestFiles = (): string[] => readdirSync(k8sDir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
const repoDocs = (): Doc[] => loadDocs(manifestFiles().map((f) => ({ file: f, text: readFileSync(join(k8sDir, f), 'utf8') })));

type ModelCtor = new (data: Obj) => { validate(): void };

/** The kubernetes-models class for apiVersion + kind; an unknown one is an error. */
async function modelFor(o: Obj): Promise<ModelCtor> {
  const av = o.apiVersion, kind = o.kind;
  if (typeof av !== 'string' || typeof kind !== 'string' || !/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(av)) throw new Error(`no apiVersion/kind (${String(av)} ${String(kind)})`);
  let mod: Record<string, unknown>;
  try { mod = await import(`kubernetes-models/${av}`) as Record<string, unknown>; } catch { throw new Error(`unknown apiVersion ${av}`); }
  const m = mod[kind];
  if (typeof m !== 'function' || (m as { kind?: string }).kind !== kind) throw new Error(`unknown kind ${kind} in ${av}`);
  return m as ModelCtor;
}

interface AjvError { instancePath: string; message?: string }

/** The validator's errors for `o` (empty when valid). */
function schemaErrors(M: ModelCtor, o: Obj): AjvError[] {
  try { new M(o).validate(); return []; } catch (e) {
    const errs = (e as { errors?: AjvError[] }).errors;
    if (!errs) throw e;
    return errs;
  }
}

const pointer = (p: (string | number)[]): string => p.map((k) => '/' + String(k).replace(/~/g, '~0').replace(/\//g, '~1')).join('');

/**
 * Fields the schema does not know. The validators accept any extra property, so each key is
 * probed: its value replaced by a Symbol (no JSON schema type admits one) must give an error at
 * that key. A known field (or a key of a map such as labels, whose values are typed) does; an
 * unknown one, e.g. a misspelled `restartPolcy`, does not. Known fields are walked into.
 */
function unknownFields(M: ModelCtor, o: Obj): string[] {
  const out: string[] = [];
  const walk = (v: unknown, path: (string | number)[]): void => {
    if (Array.isArray(v)) { v.forEach((x, i) => walk(x, [...path, i])); return; }
    if (!v || typeof v !== 'object') return;
    for (const k of Object.keys(v)) {
      const p = [...path, k], probe = structuredClone(o);
      let parent: any = probe;
      for (const s of path) parent = parent[s];
      parent[k] = Symbol('probe');
      const ptr = pointer(p);
      if (!schemaErrors(M, probe).some((e) => e.instancePath === ptr || e.instancePath.startsWith(ptr + '/'))) out.push(ptr);
      else walk((v as Obj)[k], p);
    }
  };
  walk(o, []);
  return out;
}

/** Schema errors and unknown fields of one document, as readable lines. */
async function problems(d: Doc): Promise<string[]> {
  let M: ModelCtor;
  try { M = await modelFor(d.obj); } catch (e) { return [`${d.file}: ${(e as Error).message}`]; }
  return [
    ...schemaErrors(M, d.obj).map((e) => `${d.file} ${d.obj.kind}: ${e.instancePath || '/'} ${e.message ?? ''}`),
    ...unknownFields(M, d.obj).map((p) => `${d.file} ${d.obj.kind}: unknown field ${p}`),
  ];
}

const podSpec = (o: Obj): Obj | undefined => o.kind === 'Pod' ? o.spec : o.spec?.template?.spec;
const containersOf = (o: Obj): Obj[] => { const s = podSpec(o); return s ? [...(s.initContainers ?? []), ...(s.containers ?? [])] : []; };
const byKind = (docs: Doc[], kind: string): Obj[] => docs.filter((d) => d.obj.kind === kind).map((d) => d.obj);
const jobNamed = (docs: Doc[], name: string): Obj => {
  const j = byKind(docs, 'Job').find((o) => o.metadata.name === name);
  assert.ok(j, `no Job ${name}`);
  return j;
};

/** The image the Dockerfile documents building (`docker build -t NAME .`). */
function documentedImage(): string {
  const m = /docker build -t (\S+) \./.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  assert.ok(m, 'Dockerfile: no `docker build -t IMAGE .` line');
  return m[1];
}

/** A container's args as an icld invocation ($(VAR) replaced by vars[VAR], which must be in its env). */
function icldArgs(c: Obj, vars: Record<string, string> = {}): { name: string; parsed: ReturnType<typeof parseArgs> } {
  assert.equal(c.command, undefined, `container ${c.name}: icld containers keep the image's entrypoint`);
  const envNames = new Set((c.env ?? []).map((e: Obj) => e.name as string));
  const argv = (c.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => {
    assert.ok(envNames.has(v), `container ${c.name}: $(${v}) is not in its env, Kubernetes would pass it literally`);
    assert.ok(v in vars, `no test value for $(${v})`);
    return vars[v];
  }));
  const { name, rest } = resolveCommand(argv);
  const parsed = parseArgs(rest, commands[name].flags, `icld ${name}`);
  if (!commands[name].positionals) assert.deepEqual(parsed._, [], `icld ${name}: stray arguments`);
  return { name, parsed };
}

const mountOf = (o: Obj, c: Obj, path: string): Obj | undefined => {
  const m = (c.volumeMounts ?? []).filter((v: Obj) => path === v.mountPath || path.startsWith(v.mountPath.replace(/\/?$/, '/')));
  const vm = m.sort((a: Obj, b: Obj) => b.mountPath.length - a.mountPath.length)[0];
  return vm && podSpec(o)!.volumes.find((v: Obj) => v.name === vm.name);
};

test('every manifest is a valid Kubernetes object with no unknown field', async () => {
  const docs = repoDocs();
  assert.ok(docs.length >= 8, `only ${docs.length} documents in deploy/k8s`);
  const kinds = new Set(docs.map((d) => d.obj.kind));
  for (const k of ['PersistentVolumeClaim', 'Job', 'Deployment', 'Service', 'HorizontalPodAutoscaler']) assert.ok(kinds.has(k), `no ${k}`);
  const bad = (await Promise.all(docs.map(problems))).flat();
  assert.deepEqual(bad, []);
});

test('the validator rejects broken manifests: a wrong type, a misspelled field, an unknown kind', async () => {
  const job = structuredClone(jobNamed(repoDocs(), 'icld-study-workers'));
  const spec = job.spec.template.spec;
  spec.restartPolcy = spec.restartPolicy; delete spec.restartPolicy;
  spec.containers[0].resources.limts = spec.containers[0].resources.limits;
  job.spec.parallelism = 'four';
  job.metadata.labels.extra = 'a map key, not a field';
  assert.deepEqual(await problems({ file: 'broken.yaml', obj: job }), [
    'broken.yaml Job: /spec/parallelism must be integer',
    'broken.yaml Job: unknown field /spec/template/spec/containers/0/resources/limts',
    'broken.yaml Job: unknown field /spec/template/spec/restartPolcy',
  ]);
  assert.deepEqual(await problems({ file: 'x.yaml', obj: { apiVersion: 'batch/v1', kind: 'Jobb', metadata: { name: 'x' } } }), ['x.yaml: unknown kind Jobb in batch/v1']);
  assert.deepEqual(await problems({ file: 'x.yaml', obj: { apiVersion: 'batch/v9', kind: 'Job' } }), ['x.yaml: unknown apiVersion batch/v9']);
});

test('the Dockerfile copies only what its context has, builds the portable addon and checks it in both stages', () => {
  const df = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  // .dockerignore patterns match paths from the context root; `*` within one path segment.
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const ignored = (p: string): boolean => ignore.some((g) => new RegExp('^' + g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*') + '(/.*)?$').test(p));
  const copies = [...df.matchAll(/^COPY (?!--from)(.+)$/gm)].map((m) => m[1].trim().split(/\s+/).slice(0, -1)).flat();
  assert.ok(copies.length >= 8, `${copies.length} COPY sources`);
  for (const c of copies) {
    const p = c.replace(/\/$/, '');
    assert.ok(existsSync(join(root, p)), `Dockerfile: COPY ${c}: not in the repository`);
    assert.ok(!ignored(p), `Dockerfile: COPY ${c}: excluded by .dockerignore`);
  }
  for (const must of ['node_modules', 'dist', 'build', '.git']) assert.ok(ignored(must), `.dockerignore lets ${must} into the context`);
  assert.doesNotMatch(df, /ICLD_MARCH=native/);
  assert.match(df, /env -u ICLD_MARCH node scripts\/build-native\.mjs/);
  const stages = df.split(/^FROM /m).slice(1);
  assert.equal(stages.length, 2);
  for (const st of stages) assert.match(st, /RUN .*node scripts\/check-native\.mjs --gemm openblas/, `stage ${st.split('\n')[0]}: no native check`);
  assert.match(stages[1], /^USER (?!root|0\b)\S+$/m, 'the runtime stage runs as root');
  assert.match(stages[1], /^ENTRYPOINT \[.*"icld"\]$/m);
});

test('containers use the documented image and the one PVC; kustomization lists existing non-Job files', () => {
  const docs = repoDocs(), image = documentedImage();
  const pvcs = byKind(docs, 'PersistentVolumeClaim');
  assert.equal(pvcs.length, 1);
  assert.ok(pvcs[0].spec.accessModes.includes('ReadWriteMany'), 'study workers on several nodes need ReadWriteMany');
  let containers = 0, claims = 0;
  for (const d of docs) {
    for (const c of containersOf(d.obj)) { containers++; assert.equal(c.image, image, `${d.file} ${c.name}`); }
    for (const v of podSpec(d.obj)?.volumes ?? []) if (v.persistentVolumeClaim) { claims++; assert.equal(v.persistentVolumeClaim.claimName, pvcs[0].metadata.name, d.file); }
  }
  assert.ok(containers >= 6 && claims >= 6, `${containers} containers, ${claims} claims`);
  const readme = readFileSync(join(k8sDir, 'README.md'), 'utf8');
  assert.ok(readme.includes(`docker build -t ${image} .`), 'deploy/k8s/README.md does not build the image the manifests use');
  const k = loadDocs([{ file: 'kustomization.yaml', text: readFileSync(join(k8sDir, 'kustomization.yaml'), 'utf8') }])[0].obj;
  assert.equal(k.kind, 'Kustomization');
  for (const r of k.resources as string[]) {
    assert.ok(existsSync(join(k8sDir, r)), `kustomization.yaml: ${r} does not exist`);
    const kinds = loadDocs([{ file: r, text: readFileSync(join(k8sDir, r), 'utf8') }]).map((d) => d.obj.kind);
    assert.ok(!kinds.includes('Job'), `kustomization.yaml: ${r} holds a Job; apply -k would start the study's steps all at once`);
  }
  assert.equal(k.images[0].name, image.split(':')[0]);
});

test('the study Jobs are valid icld invocations over one config and one output, sized to the study\'s threads', () => {
  const docs = repoDocs();
  const script = readFileSync(join(k8sDir, 'run-study.sh'), 'utf8');
  // run-study.sh's default config is the one the manifests' sizes are for.
  const cfgRel = /CONFIG=\$\{CONFIG:-\$repo\/([^}]+)\}/.exec(script);
  assert.ok(cfgRel, 'run-study.sh: no default CONFIG');
  const threads = readStudyConfig(join(root, cfgRel[1]), false).threads;
  assert.ok(threads !== undefined && threads >= 1, `${cfgRel[1]} sets no "threads"`);
  const parts: Record<string, string> = { 'icld-study-stage': 'stage', 'icld-study-workers': 'worker', 'icld-study-shards': 'shard', 'icld-study-merge': 'merge' };
  const configs = new Set<string>(), outs = new Set<string>();
  for (const [job, part] of Object.entries(parts)) {
    const o = jobNamed(docs, job), [c] = o.spec.template.spec.containers;
    const n = o.spec.completions ?? 1;
    for (let i = 0; i < n; i++) {
      const { name, parsed: a } = icldArgs(c, { SHARD: String(i) });
      assert.equal(name, 'study', job);
      const given = ['stage', 'worker', 'shard', 'merge'].filter((k) => a[k] !== undefined && a[k] !== false);
      assert.deepEqual(given, [part], `${job}: study parts ${given.join(', ')}`);
      if (part === 'stage') assert.equal(a.stage, 'teacher');
      if (part === 'shard') {
        const m = /^(\d+)\/(\d+)$/.exec(String(a.shard));
        assert.ok(m, `${job}: --shard ${String(a.shard)}`);
        assert.equal(Number(m[1]), i, `${job}: pod ${i} runs shard ${m[1]}`);
        assert.equal(Number(m[2]), n, `${job}: --shard i/${m[2]} but completions ${n}`);
        const env = c.env.find((e: Obj) => e.name === 'SHARD');
        assert.equal(env.valueFrom.fieldRef.fieldPath, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
      }
      configs.add(a.config as string); outs.add(a.out as string);
      // --config on the ConfigMap run-study.sh creates, with the key it creates; --out on the PVC.
      const cfgVol = mountOf(o, c, a.config as string), outVol = mountOf(o, c, a.out as string);
      assert.ok(cfgVol?.configMap, `${job}: --config is not on a ConfigMap volume`);
      const key = (a.config as string).split('/').pop();
      assert.ok(script.includes(`create configmap ${cfgVol.configMap.name} --from-file=${key}=`), `${job}: run-study.sh does not create ConfigMap ${cfgVol.configMap.name} with key ${key}`);
      assert.ok(outVol?.persistentVolumeClaim, `${job}: --out is not on the PVC`);
    }
    if (part === 'worker' || part === 'shard') {
      assert.equal(o.spec.completionMode, 'Indexed', job);
      assert.ok(o.spec.parallelism >= 1 && o.spec.parallelism <= n, `${job}: parallelism ${o.spec.parallelism}, completions ${n}`);
    }
    if (part === 'worker') assert.equal(o.spec.parallelism, n, `${job}: every worker runs until all cells are done, so all start at once`);
    // Guaranteed CPUs = the study's threads, and the addon told so (it would count the node's cores).
    assert.equal(c.resources.requests.cpu, String(threads), `${job}: cpu request`);
    assert.equal(c.resources.limits.cpu, String(threads), `${job}: cpu limit`);
    assert.equal(c.resources.requests.memory, c.resources.limits.memory, `${job}: memory`);
    const t = c.env.find((e: Obj) => e.name === 'ICLD_THREADS');
    assert.equal(t?.valueFrom?.resourceFieldRef?.resource, 'limits.cpu', `${job}: ICLD_THREADS`);
    assert.ok(script.includes(`job/${job}`) || script.includes(`job2=${job}`), `run-study.sh never runs ${job}`);
  }
  assert.equal(configs.size, 1, [...configs].join(' '));
  assert.equal(outs.size, 1, [...outs].join(' '));
});

test('the server Deployment: valid icld serve flags, probes and scrape path that the server answers', async () => {
  const docs = repoDocs();
  const [dep] = byKind(docs, 'Deployment'), [svc] = byKind(docs, 'Service'), [hpa] = byKind(docs, 'HorizontalPodAutoscaler');
  const tpl = dep.spec.template, [c] = tpl.spec.containers;
  const { name, parsed: a } = icldArgs(c);
  assert.equal(name, 'serve');
  assert.notEqual(a.host, '127.0.0.1', 'serve on loopback cannot be probed or reached through the Service');
  assert.ok(mountOf(dep, c, a.model as string)?.persistentVolumeClaim, '--model is not on the PVC');
  const port = c.ports.find((p: Obj) => p.containerPort === a.port);
  assert.ok(port, `no container port ${String(a.port)}`);
  assert.ok(Number(tpl.spec.terminationGracePeriodSeconds ?? 30) > (a.grace as number), 'the kill comes before --grace ends');
  const paths: string[] = [];
  for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
    assert.ok(c[p]?.httpGet, `no ${p}`);
    assert.ok([port.name, port.containerPort].includes(c[p].httpGet.port), `${p} port ${c[p].httpGet.port}`);
    paths.push(c[p].httpGet.path);
  }
  assert.deepEqual([...new Set(paths)], ['/health']);
  const ann = tpl.metadata.annotations;
  assert.equal(ann['prometheus.io/scrape'], 'true');
  assert.equal(Number(ann['prometheus.io/port']), a.port);
  // The Service and the HPA reach this Deployment.
  for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) assert.equal(tpl.metadata.labels[k], v, `selector ${k}`);
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(tpl.metadata.labels[k], v, `Service selector ${k}`);
  assert.ok(svc.spec.ports.every((p: Obj) => [port.name, port.containerPort].includes(p.targetPort)), 'Service targetPort');
  assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name, hpa.spec.scaleTargetRef.apiVersion], ['Deployment', dep.metadata.name, dep.apiVersion]);
  assert.ok(c.resources.requests.cpu, 'an HPA on CPU utilisation needs a CPU request');
  // The real server answers those paths.
  const s = await startServer({ model: gpt2Dir(), port: 0, host: '127.0.0.1' });
  try {
    for (const p of [...new Set(paths)]) { const r = await get(`${s.url}${p}`); assert.equal(r.status, 200, p); assert.equal(r.json().status, 'ok'); }
    const m = await get(`${s.url}${ann['prometheus.io/path']}`);
    assert.equal(m.status, 200);
    assert.match(m.text, /^# TYPE icld_queue_length gauge$/m);
    assert.match(m.text, /^icld_active_slots 0$/m);
  } finally { await s.close(); }
});

test('run-study.sh applies stage, workers or shards, merge in order, each rendered manifest valid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-k8s-')), bin = join(dir, 'bin'), applied = join(dir, 'applied');
  mkdirSync(bin); mkdirSync(applied);
  // A kubectl that logs its calls, keeps what is applied, and reports every Job complete.
  writeFileSync(join(bin, 'kubectl'), `#!/usr/bin/env bash
echo "$*" >> "${dir}/log"
case "$*" in
  *"apply -f -"*) n=$(ls "${applied}" | wc -l); cat > "${applied}/$(printf %02d "$n").yaml"; echo "apply $(printf %02d "$n")" >> "${dir}/log" ;;
  *"get job \${FAIL_JOB:-none} "*) printf Failed ;;
  *"get job"*) printf Complete ;;
  *"create configmap"*) printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: icld-study-config\\n' ;;
esac
`);
  chmodSync(join(bin, 'kubectl'), 0o755);
  // The synthetic study at 2 threads: every pod must get 2 CPUs.
  const cfg = join(dir, 'study.json');
  writeFileSync(cfg, JSON.stringify({ ...JSON.parse(readFileSync(join(root, 'studies', 'synthetic.json'), 'utf8')), threads: 2 }, null, 2));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONFIG: cfg, MODE: 'shard', WORKERS: '3', STUDY: 'mine', IMAGE: 'reg.example/icl-distill:9', MEMORY: '3Gi' };
  const r = spawnSync('bash', [join(k8sDir, 'run-study.sh')], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const log = readFileSync(join(dir, 'log'), 'utf8');
  const order = log.split('\n').filter((l) => /^get job|^apply \d|^create configmap/.test(l)).map((l) => l.replace(/ -o .*/, ''));
  assert.deepEqual(order, [`create configmap icld-study-config --from-file=study.json=${cfg} --dry-run=client`, 'apply 00',
    'apply 01', 'get job icld-study-stage', 'apply 02', 'get job icld-study-shards', 'apply 03', 'get job icld-study-merge']);
  const docs = loadDocs(readdirSync(applied).sort().map((f) => ({ file: f, text: readFileSync(join(applied, f), 'utf8') })));
  assert.deepEqual(docs.map((d) => d.obj.metadata.name), ['icld-study-config', 'icld-study-stage', 'icld-study-shards', 'icld-study-merge']);
  assert.deepEqual((await Promise.all(docs.map(problems))).flat(), []);
  const shards = docs[2].obj;
  assert.equal(shards.spec.completions, 3);
  assert.equal(shards.spec.parallelism, 3);
  for (const d of docs.slice(1)) {
    const [c] = d.obj.spec.template.spec.containers;
    assert.equal(c.image, 'reg.example/icl-distill:9');
    assert.equal(c.resources.limits.memory, '3Gi');
    assert.deepEqual([c.resources.requests.cpu, c.resources.limits.cpu], ['2', '2']);
    assert.equal(icldArgs(c, { SHARD: '2' }).parsed.out, '/data/runs/mine');
  }
  assert.equal(icldArgs(shards.spec.template.spec.containers[0], { SHARD: '2' }).parsed.shard, '2/3');
  // CPUs that differ from the config's "threads" are refused before anything is applied.
  const bad = spawnSync('bash', [join(k8sDir, 'run-study.sh')], { env: { ...env, CPUS: '1' }, encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^run-study: CPUS=1 differs from the config's "threads": 2/);
  assert.equal(readdirSync(applied).length, 4);
  // Failed workers: the merge still runs (it lists the missing cells), then the script fails.
  const failed = spawnSync('bash', [join(k8sDir, 'run-study.sh')], { env: { ...env, FAIL_JOB: 'icld-study-shards' }, encoding: 'utf8' });
  assert.equal(failed.status, 1);
  assert.match(failed.stderr, /job\/icld-study-shards failed; the merge lists the missing cells/);
  assert.deepEqual(readdirSync(applied).slice(4).map((f) => loadDocs([{ file: f, text: readFileSync(join(applied, f), 'utf8') }])[0].obj.metadata.name),
    ['icld-study-config', 'icld-study-stage', 'icld-study-shards', 'icld-study-merge']);
  // A failed stage stops before any worker starts.
  const stage = spawnSync('bash', [join(k8sDir, 'run-study.sh')], { env: { ...env, FAIL_JOB: 'icld-study-stage' }, encoding: 'utf8' });
  assert.equal(stage.status, 1);
  assert.match(stage.stderr, /the teacher stage failed/);
  assert.deepEqual(readdirSync(applied).slice(8).map((f) => loadDocs([{ file: f, text: readFileSync(join(applied, f), 'utf8') }])[0].obj.metadata.name), ['icld-study-config', 'icld-study-stage']);
});
