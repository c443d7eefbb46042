#!/usr/bin/env node
// icld: thin command dispatcher. Each command parses its flags and calls into the library;
// --json prints one JSON object on stdout, logs go to stderr, errors are one line + exit 1.

import { parseArgs, helpText, UsageError, type FlagSpec } from './args.js';
import { info, formatInfo } from './info.js';

interface Command {
  summary: string;
  flags: Record<string, FlagSpec>;
  run: (a: ReturnType<typeof parseArgs>) => Promise<void> | void;
}

const json: FlagSpec = { type: 'boolean', help: 'print one JSON object on stdout' };

const commands: Record<string, Command> = {
  info: {
    summary: 'Version, compute backend (native/reference), GEMM provider and threads.',
    flags: { json },
    run: (a) => {
      const i = info();
      if (a.json) console.log(JSON.stringify(i));
      else console.log(formatInfo(i));
    },
  },
  'bench ops': {
    summary: 'Time the core kernels (matmul, attention, layer norm, softmax+cross-entropy, GELU, an MLP block fwd+bwd) on this machine.',
    flags: {
      json,
      quick: { type: 'boolean', help: 'fewer repetitions (smoke run)' },
      filter: { type: 'string', help: 'only cases whose name contains this text' },
    },
    run: async (a) => {
      const { benchOps } = await import('./bench-ops.js');
      const r = await benchOps({ json: !!a.json, quick: !!a.quick, filter: a.filter as string | undefined });
      if (a.json) { console.log(JSON.stringify(r)); return; }
      console.log(`backend ${r.backend}, gemm ${r.gemm}, threads ${r.threads}`);
      for (const c of r.cases) console.log(`${c.name.padEnd(40)} ${c.ms.toFixed(3).padStart(10)} ms${c.gflops ? `  ${c.gflops.toFixed(1)} GFLOP/s` : ''}`);
    },
  },
  start: {
    summary: 'The main job on the embedded default data: trains a small causal transformer on Tiny Shakespeare and prints samples.',
    flags: {
      json,
      seconds: { type: 'number', default: 60, help: 'training time budget' },
    },
    run: async (a) => {
      const { runStart } = await import('./start.js');
      await runStart({ seconds: a.seconds as number, json: !!a.json });
    },
  },
};

function usage(): string {
  const names = Object.keys(commands);
  return ['usage: icld <command> [flags]', '', 'commands:', ...names.map((n) => `  ${n.padEnd(14)}${commands[n].summary}`), '', 'Run `icld <command> --help` for its flags.'].join('\n');
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') { console.log(usage()); return; }
  if (argv[0] === '--version') { console.log(info().version); return; }
  // Longest matching command name (e.g. "bench ops").
  let name = '', rest = argv;
  for (let n = Math.min(3, argv.length); n >= 1; n--) {
    const cand = argv.slice(0, n).join(' ');
    if (commands[cand]) { name = cand; rest = argv.slice(n); break; }
  }
  if (!name) throw new UsageError(`icld: unknown command '${argv.slice(0, 2).join(' ')}' (run icld --help)`);
  const cmd = commands[name];
  if (rest.includes('--help') || rest.includes('-h')) { console.log(helpText(`icld ${name}`, cmd.summary, cmd.flags)); return; }
  await cmd.run(parseArgs(rest, cmd.flags, `icld ${name}`));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`icld: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
  if (process.env.ICLD_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
