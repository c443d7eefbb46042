// The flag parser and the real command table: range checks, choices, escapes, suggestions and
// help layout, checked in-process (the spawned-CLI side is cli-errors.test.ts).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, helpText, columns, unescapeArg, describeRange, UsageError, type FlagSpec } from '../../src/cli/args.js';
import { commands, usage, resolveCommand, errorLine } from '../../src/cli/main.js';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The UsageError message of parsing argv for a real command (fails the test when nothing is thrown). */
function usageError(cmd: string, argv: string[]): string {
  try {
    parseArgs(argv, commands[cmd].flags, `icld ${cmd}`);
  } catch (e) {
    assert.ok(e instanceof UsageError, `UsageError for ${cmd} ${argv.join(' ')}: ${String(e)}`);
    return e.message;
  }
  assert.fail(`icld ${cmd} ${argv.join(' ')} was accepted`);
}

describe('parseArgs range checks', () => {
  const spec: Record<string, FlagSpec> = {
    n: { type: 'number', integer: true, min: 1, help: '' },
    p: { type: 'number', min: 0, minExclusive: true, max: 1, help: '' },
    t: { type: 'number', min: 0, help: '' },
    s: { type: 'list', items: 'number', integer: true, min: 0, help: '' },
  };
  it('accepts values in range and converts them', () => {
    const a = parseArgs(['--n', '3', '--p=1', '--t', '0', '--s', '1,2', '3'], spec, 'x');
    assert.deepEqual([a.n, a.p, a.t, a.s], [3, 1, 0, ['1', '2', '3']]);
  });
  it('rejects out-of-range, non-integer and non-numeric values with the flag name', () => {
    const bad: [string[], string][] = [
      [['--n', '0'], 'x: --n must be an integer ≥ 1, got 0'],
      [['--n', '2.5'], 'x: --n must be an integer ≥ 1, got 2.5'],
      [['--p', '0'], 'x: --p must be a number in (0, 1], got 0'],
      [['--p', '1.01'], 'x: --p must be a number in (0, 1], got 1.01'],
      [['--t', '-0.1'], 'x: --t must be a number ≥ 0, got -0.1'],
      [['--t', ''], "x: --t expects a number, got ''"],
      [['--t', 'Infinity'], "x: --t expects a number, got 'Infinity'"],
      [['--s', '1,-2'], 'x: --s must be an integer ≥ 0, got -2'],
      [['--s', '1', 'x'], "x: --s expects a number, got 'x'"],
      [['--n'], 'x: --n needs a value'],
      [['--n', '--t', '1'], 'x: --n needs a value'],
    ];
    for (const [argv, msg] of bad) assert.throws(() => parseArgs(argv, spec, 'x'), (e: Error) => e instanceof UsageError && e.message === msg, argv.join(' '));
  });
  it('describes ranges', () => {
    assert.equal(describeRange({ type: 'number', help: '', min: 0, max: 10, maxExclusive: true }), 'a number in [0, 10)');
    assert.equal(describeRange({ type: 'number', help: '', integer: true, max: 5 }), 'an integer ≤ 5');
  });
});

describe('real command flags', () => {
  it('every numeric flag of every command has a range (and number lists are checked item by item)', () => {
    for (const [name, c] of Object.entries(commands)) {
      for (const [k, s] of Object.entries(c.flags)) {
        if (s.type === 'number') assert.ok(s.min !== undefined || s.max !== undefined, `icld ${name} --${k} has no range`);
        if (s.default !== undefined && s.type === 'number') assert.doesNotThrow(() => parseArgs([`--${k}`, String(s.default)], c.flags, name), `default of --${k}`);
      }
    }
    assert.equal(commands['icl eval'].flags.seeds.items, 'number');
    assert.equal(commands['ict train'].flags.seeds.items, 'number');
  });

  it('the issue\'s examples are usage errors naming the flag', () => {
    const cases: [string, string[], string][] = [
      ['icl eval', ['--batch-size', '0'], 'icld icl eval: --batch-size must be an integer ≥ 1, got 0'],
      ['icl eval', ['--test-limit', '0'], 'icld icl eval: --test-limit must be an integer ≥ 1, got 0'],
      ['icl eval', ['--orders', '0'], 'icld icl eval: --orders must be an integer ≥ 1, got 0'],
      ['icl eval', ['--k', '1.5'], 'icld icl eval: --k must be an integer ≥ 0, got 1.5'],
      ['icl eval', ['--seeds', '13', '2.5'], 'icld icl eval: --seeds must be an integer in [0, 4294967295], got 2.5'],
      ['icl eval', ['--max-new-tokens', '0'], 'icld icl eval: --max-new-tokens must be an integer ≥ 1, got 0'],
      ['generate', ['--top-k', '-3'], 'icld generate: --top-k must be an integer ≥ 0, got -3'],
      ['generate', ['--repetition-penalty', '0'], 'icld generate: --repetition-penalty must be a number > 0, got 0'],
      ['generate', ['--max-new-tokens', '-5'], 'icld generate: --max-new-tokens must be an integer ≥ 1, got -5'],
      ['generate', ['--temperature', '-1'], 'icld generate: --temperature must be a number ≥ 0, got -1'],
      ['generate', ['--top-p', '0'], 'icld generate: --top-p must be a number in (0, 1], got 0'],
      ['generate', ['--seed', '-1'], 'icld generate: --seed must be an integer in [0, 4294967295], got -1'],
      ['ict train', ['--lr', '0'], 'icld ict train: --lr must be a number > 0, got 0'],
      ['ict train', ['--steps', '0'], 'icld ict train: --steps must be an integer ≥ 1, got 0'],
      ['ict train', ['--warmup', '1.5'], 'icld ict train: --warmup must be an integer ≥ 0, got 1.5'],
      ['ict train', ['--seeds', 'x'], "icld ict train: --seeds expects a number, got 'x'"],
      ['tokenizer train', ['--vocab-size', '0'], 'icld tokenizer train: --vocab-size must be an integer ≥ 1, got 0'],
      ['pretrain', ['--steps', '-1'], 'icld pretrain: --steps must be an integer ≥ 1, got -1'],
      ['bench train', ['--steps', '0'], 'icld bench train: --steps must be an integer ≥ 1, got 0'],
      ['bench generate', ['--reps', '0'], 'icld bench generate: --reps must be an integer ≥ 1, got 0'],
    ];
    for (const [cmd, argv, msg] of cases) assert.equal(usageError(cmd, argv), msg);
  });

  it('fixed-choice flags are validated with the closest suggestion', () => {
    assert.equal(usageError('icl eval', ['--method', 'chanel']), "icld icl eval: --method must be direct or channel, got 'chanel' (did you mean 'channel'?)");
    assert.equal(usageError('ict train', ['--setting', 'multi-task']), "icld ict train: --setting must be meta or multitask, got 'multi-task' (did you mean 'multitask'?)");
    assert.equal(usageError('pretrain', ['--arch', 'gpt3']), "icld pretrain: --arch must be gpt2 or bert, got 'gpt3' (did you mean 'gpt2'?)");
    assert.equal(usageError('bench train', ['--config', 'huge']), "icld bench train: --config must be one of small, gpt2s, bert-small, got 'huge'");
    assert.equal(usageError('tokenizer train', ['--type', 'wordpiece']), "icld tokenizer train: --type must be bpe, got 'wordpiece'");
  });

  it('an unknown flag suggests the closest one', () => {
    assert.equal(usageError('icl eval', ['--batch_size', '4']), 'icld icl eval: unknown flag --batch_size (did you mean --batch-size?)');
    assert.equal(usageError('generate', ['--temprature', '0']), 'icld generate: unknown flag --temprature (did you mean --temperature?)');
    assert.match(usageError('generate', ['--zzzzzz']), /^icld generate: unknown flag --zzzzzz \(see icld generate --help\)$/);
  });

  it('--stop decodes escapes: the README\'s --stop "\\n\\n" is two newlines', () => {
    // The shell passes the README's "\n\n" as backslash, n, backslash, n.
    assert.deepEqual(parseArgs(['--stop', '\\n\\n'], commands.generate.flags, 'g').stop, ['\n\n']);
    assert.deepEqual(parseArgs(['--stop', 'a\\tb', '\\u00e9', 'x\\\\n'], commands.generate.flags, 'g').stop, ['a\tb', 'é', 'x\\n']);
    assert.throws(() => parseArgs(['--stop', '\\q'], commands.generate.flags, 'g'), /unknown escape \\q/);
    assert.throws(() => parseArgs(['--stop', '\\u12'], commands.generate.flags, 'g'), /\\u needs 4 hex digits/);
    assert.throws(() => parseArgs(['--stop', 'ab\\'], commands.generate.flags, 'g'), /trailing backslash/);
    assert.equal(unescapeArg('plain', 'x'), 'plain');
    assert.deepEqual(parseArgs(['--stop=, ', '--seed', '1'], commands.generate.flags, 'g').stop, [', ']);
    // The README's example as a shell passes it, pasted into bash.
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
    const m = /--stop ("[^"]*")/.exec(readme);
    assert.ok(m, 'README has a --stop "…" example');
    const sh = spawnSync('bash', ['-c', `printf '%s' ${m[1]}`], { encoding: 'utf8' });
    if (sh.status === 0) assert.deepEqual(parseArgs(['--stop', sh.stdout], commands.generate.flags, 'g').stop, ['\n\n']);
    assert.match(helpText('icld generate', '', commands.generate.flags), /--stop[^\n]*escapes[^\n]*\\n/);
  });
});

describe('README', () => {
  it('every icld example in the Commands section names a real command and valid flags', () => {
    const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
    const sec = readme.slice(readme.indexOf('## Commands'), readme.indexOf('### Pretraining config'));
    const block = sec.slice(sec.indexOf('```sh') + 5, sec.indexOf('```', sec.indexOf('```sh') + 5)).replace(/\\\n\s*/g, ' ');
    let n = 0;
    for (const line of block.split('\n')) {
      const cmd = line.replace(/\s#\s.*$/, '').trim();
      if (!cmd.startsWith('icld ') || cmd.includes('...')) continue;
      // Shell words: double quotes group (backslashes inside stay, as in bash), [optional] brackets dropped.
      const words = [...cmd.slice(5).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]).filter((w) => !/^\[.*\]$/.test(w));
      const { name, rest } = resolveCommand(words);
      const a = parseArgs(rest, commands[name].flags, `icld ${name}`);
      if (!commands[name].positionals) assert.deepEqual(a._, [], cmd);
      n++;
    }
    assert.ok(n >= 8, `found ${n} examples`);
  });
});

describe('commands and help', () => {
  it('resolves commands and suggests the nearest one', () => {
    assert.deepEqual(resolveCommand(['bench', 'ops', '--quick']), { name: 'bench ops', rest: ['--quick'] });
    assert.deepEqual(resolveCommand(['eval-lm', '--model', 'm']), { name: 'eval-lm', rest: ['--model', 'm'] });
    const msg = (argv: string[]): string => { try { resolveCommand(argv); } catch (e) { assert.ok(e instanceof UsageError); return e.message; } return assert.fail(argv.join(' ')); };
    assert.equal(msg(['pretrian', '--config', 'x']), "icld: unknown command 'pretrian' (did you mean 'pretrain'?)");
    assert.equal(msg(['bench', 'opps']), "icld: unknown command 'bench opps' (did you mean 'bench ops'?)");
    assert.equal(msg(['icl', 'evl']), "icld: unknown command 'icl evl' (did you mean 'icl eval'?)");
    assert.equal(msg(['tokenzier', 'train']), "icld: unknown command 'tokenzier train' (did you mean 'tokenizer train'?)");
    assert.equal(msg(['tokenizer']), 'icld tokenizer: needs a subcommand: train (see icld tokenizer --help)');
    assert.equal(msg(['bench', '--json']), 'icld bench: needs a subcommand: ops, train, fill-mask, generate (see icld bench --help)');
  });

  it('error lines carry the command once', () => {
    assert.equal(errorLine(new Error('icld: unknown command x'), 'icld'), 'icld: unknown command x');
    assert.equal(errorLine(new Error('icld generate: --top-k …'), 'icld generate'), 'icld generate: --top-k …');
    assert.equal(errorLine(new Error('tokenizer train: bad'), 'icld tokenizer train'), 'icld tokenizer train: bad');
    assert.equal(errorLine(new Error('x.json: invalid\nJSON'), 'icld study'), 'icld study: x.json: invalid JSON');
  });

  it('a space always separates a name from its text (commands and flags), and no help cites DESIGN.md', () => {
    const check = (text: string, names: string[]): void => {
      for (const n of names) {
        const line = text.split('\n').find((l) => l.trimStart().startsWith(n + ' ') || l.trimStart() === n);
        assert.ok(line, `a line for ${n} in:\n${text}`);
        assert.match(line, new RegExp(`^\\s+${n.replace(/[-[\]<>]/g, '\\$&')}\\s{2,}\\S`), `name and text touch: ${line}`);
      }
      assert.ok(!text.includes('DESIGN'), text);
    };
    check(usage(), Object.keys(commands));
    assert.match(usage(), /Exit codes: 0 success; 1 runtime failure/);
    assert.match(usage(), /2 usage error/);
    for (const [name, c] of Object.entries(commands)) {
      const h = helpText(`icld ${name}`, c.summary, c.flags, c.positionals);
      check(h, Object.entries(c.flags).map(([k, s]) => `--${k}${s.type === 'boolean' ? '' : ` <${s.type === 'list' ? (s.items === 'number' ? 'numbers' : 'values') : s.type}>`}`));
      for (const l of h.split('\n')) assert.ok(l.length <= 100, `help line over 100 columns: ${l}`);
    }
  });

  it('columns pads to the longest name and wraps long text under the text column', () => {
    const out = columns([['a', 'x'], ['a-very-long-name', 'word '.repeat(40).trim()]], 2, 60);
    assert.equal(out[0], '  a                 x');
    assert.ok(out.length > 3);
    for (const l of out.slice(2)) assert.match(l, /^ {20}word/);
  });
});
