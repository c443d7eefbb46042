// Renders Hugging Face chat templates: the Jinja subset real tokenizer_config.json templates use,
// with transformers' environment settings (trim_blocks, lstrip_blocks, no trailing newline kept,
// loop controls, raise_exception) so output matches `tokenizer.apply_chat_template` byte for byte.
//
// Supported: {{ expr }}, {% if/elif/else/endif %}, {% for x in xs [if c] %}…{% else %}…{% endfor %}
// (loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem, tuple targets),
// {% set x = … %} and {% set ns.attr = … %} (namespace()), {% break %}/{% continue %},
// {% macro name(a, b=default) %}…{% endmacro %} (called as a function returning its text),
// {% generation %} (transformers' marker, rendered as its body), whitespace control {%- -%} {{- -}}
// {%+ +%}, comments, literals (strings with escapes, numbers, true/false/none, lists, dicts),
// operators + - * / // % ** ~ == != < > <= >= and or not in, `a if c else b`, tests (defined,
// undefined, none, string, number, mapping, sequence, iterable, boolean, true, false, eq…), subscripts,
// attributes, slices, a few str/dict methods (strip, split, startswith, items, get…), the filters
// listed in FILTERS, and the globals raise_exception, namespace, range, dict, strftime_now.
// Anything else is a one-line error naming the construct and its line:column.

type Obj = { [k: string]: unknown };
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Namespace) && !(v instanceof Loop);

/** A Jinja namespace() object: the one value `set` may change in place (so a loop can carry state out). */
export class Namespace { constructor(readonly attrs: Map<string, unknown>) {} }
class Loop {
  constructor(readonly items: unknown[], public i: number) {}
  get(k: string): unknown {
    const n = this.items.length, i = this.i;
    switch (k) {
      case 'index': return i + 1;
      case 'index0': return i;
      case 'revindex': return n - i;
      case 'revindex0': return n - i - 1;
      case 'first': return i === 0;
      case 'last': return i === n - 1;
      case 'length': return n;
      case 'previtem': return i > 0 ? this.items[i - 1] : undefined;
      case 'nextitem': return i < n - 1 ? this.items[i + 1] : undefined;
      default: return undefined;
    }
  }
}
type Fn = (args: unknown[], kw: Obj) => unknown;
class Callable { constructor(readonly name: string, readonly fn: Fn) {} }

/** Thrown by raise_exception(msg) in a template: the message is the template's own. */
export class TemplateRaisedError extends Error {}

// ------------------------------------------------------------------------------------ lexing

interface Tok { t: 'name' | 'str' | 'num' | 'op'; v: string; n?: number; pos: number }
type Seg =
  | { k: 'text'; v: string }
  | { k: 'out'; toks: Tok[]; pos: number }
  | { k: 'stmt'; toks: Tok[]; pos: number };

const OPS = ['**', '//', '==', '!=', '<=', '>=', '+', '-', '*', '/', '%', '~', '<', '>', '(', ')', '[', ']', '{', '}', ',', '.', ':', '|', '='];
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0', a: '\x07', b: '\b', f: '\f', v: '\v', '\n': '' };

class Source {
  private lineStarts: number[] = [0];
  constructor(readonly text: string) {
    for (let i = 0; i < text.length; i++) if (text[i] === '\n') this.lineStarts.push(i + 1);
  }
  at(pos: number): string {
    let lo = 0, hi = this.lineStarts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.lineStarts[mid] <= pos) lo = mid; else hi = mid - 1; }
    return `line ${lo + 1}:${pos - this.lineStarts[lo] + 1}`;
  }
}

class TemplateSyntaxError extends Error {}
function fail(src: Source, pos: number, msg: string): never { throw new TemplateSyntaxError(`chat template ${src.at(pos)}: ${msg}`); }

function lex(src: Source): Seg[] {
  const s = src.text, n = s.length, segs: Seg[] = [];
  let pos = 0, lineStarting = true, stripNext = false;
  const tagRe = /\{([{%#])([-+]?)/g;
  while (pos <= n) {
    tagRe.lastIndex = pos;
    const m = tagRe.exec(s);
    let text = s.slice(pos, m ? m.index : n);
    if (stripNext) { text = text.replace(/^\s+/, ''); stripNext = false; }
    if (!m) { if (text) segs.push({ k: 'text', v: text }); break; }
    const kind = m[1], sign = m[2];
    if (sign === '-') text = text.replace(/\s+$/, '');
    else if (sign !== '+' && kind !== '{') {
      // lstrip_blocks: a block or comment tag preceded on its line by blanks only takes them away.
      const l = text.lastIndexOf('\n') + 1;
      if ((l > 0 || lineStarting) && /^[^\S\n]+$/.test(text.slice(l))) text = text.slice(0, l);
    }
    if (text) segs.push({ k: 'text', v: text });
    const start = m.index;
    let p = m.index + 2 + sign.length, endText: string;
    if (kind === '#') {
      const e = s.indexOf('#}', p);
      if (e < 0) fail(src, start, 'comment {# … is never closed with #}');
      const before = s[e - 1];
      p = e + 2;
      if (before === '-' && e - 1 >= m.index + 2) stripNext = true;
      else if (before !== '+' && s[p] === '\n') p++;
      endText = s.slice(e - 1, p);
    } else {
      const close = kind === '{' ? '}}' : '%}';
      const toks: Tok[] = [];
      let depth = 0;
      for (;;) {
        while (p < n && /\s/.test(s[p])) p++;
        if (p >= n) fail(src, start, `tag opened here is never closed with ${close}`);
        if (depth === 0) {
          if (s.startsWith('-' + close, p)) { p += 3; stripNext = true; break; }
          if (kind === '%' && s.startsWith('+' + close, p)) { p += 3; break; }
          if (s.startsWith(close, p)) { p += 2; if (kind === '%' && s[p] === '\n') p++; break; }
        }
        const c = s[p];
        if (c === "'" || c === '"') {
          let v = '', q = p + 1;
          for (;;) {
            if (q >= n) fail(src, p, 'string literal is never closed');
            const d = s[q];
            if (d === c) break;
            if (d === '\\') {
              const e = s[q + 1];
              if (e === 'u' || e === 'x' || e === 'U') {
                const len = e === 'x' ? 2 : e === 'u' ? 4 : 8, hex = s.slice(q + 2, q + 2 + len);
                if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) fail(src, q, `bad \\${e} escape in a string literal`);
                v += String.fromCodePoint(parseInt(hex, 16)); q += 2 + len; continue;
              }
              if (e !== undefined && Object.prototype.hasOwnProperty.call(ESCAPES, e)) { v += ESCAPES[e]; q += 2; continue; }
              v += d; q++; continue; // Python keeps unknown escapes as written
            }
            v += d; q++;
          }
          toks.push({ t: 'str', v, pos: p });
          p = q + 1;
          continue;
        }
        const num = /^(\d[\d_]*)(\.\d[\d_]*)?([eE][+-]?\d+)?/.exec(s.slice(p, p + 64));
        if (num) { toks.push({ t: 'num', v: num[0], n: Number(num[0].replace(/_/g, '')), pos: p }); p += num[0].length; continue; }
        const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(p, p + 256));
        if (name) { toks.push({ t: 'name', v: name[0], pos: p }); p += name[0].length; continue; }
        const op = OPS.find((o) => s.startsWith(o, p));
        if (!op) fail(src, p, `unexpected character ${JSON.stringify(c)}`);
        if (op === '(' || op === '[' || op === '{') depth++;
        else if ((op === ')' || op === ']' || op === '}') && depth > 0) depth--;
        toks.push({ t: 'op', v: op, pos: p });
        p += op.length;
      }
      segs.push(kind === '{' ? { k: 'out', toks, pos: start } : { k: 'stmt', toks, pos: start });
      endText = s.slice(p - 1, p);
    }
    lineStarting = endText.endsWith('\n');
    pos = p;
  }
  return segs;
}

// ------------------------------------------------------------------------------------ parsing

type Expr =
  | { k: 'lit'; v: unknown }
  | { k: 'name'; name: string; pos: number }
  | { k: 'list'; items: Expr[] }
  | { k: 'dict'; pairs: [Expr, Expr][] }
  | { k: 'attr'; obj: Expr; name: string; pos: number }
  | { k: 'item'; obj: Expr; key: Expr; pos: number }
  | { k: 'slice'; obj: Expr; a: Expr | null; b: Expr | null; c: Expr | null; pos: number }
  | { k: 'call'; fn: Expr; args: Expr[]; kw: [string, Expr][]; pos: number }
  | { k: 'filter'; e: Expr; name: string; args: Expr[]; kw: [string, Expr][]; pos: number }
  | { k: 'test'; e: Expr; name: string; args: Expr[]; neg: boolean; pos: number }
  | { k: 'un'; op: string; e: Expr }
  | { k: 'bin'; op: string; a: Expr; b: Expr; pos: number }
  | { k: 'cmp'; first: Expr; rest: [string, Expr][]; pos: number }
  | { k: 'and' | 'or'; a: Expr; b: Expr }
  | { k: 'cond'; cond: Expr; a: Expr; b: Expr | null };

type Node =
  | { k: 'text'; v: string }
  | { k: 'out'; e: Expr }
  | { k: 'if'; branches: { cond: Expr; body: Node[] }[]; orelse: Node[] }
  | { k: 'for'; targets: string[]; iter: Expr; filter: Expr | null; body: Node[]; orelse: Node[]; pos: number }
  | { k: 'set'; name: string; attr: string | null; e: Expr; pos: number }
  | { k: 'macro'; name: string; params: string[]; defaults: (Expr | null)[]; body: Node[]; pos: number }
  | { k: 'break' | 'continue' };

class ExprParser {
  i = 0;
  constructor(readonly src: Source, readonly toks: Tok[], readonly tagPos: number) {}
  peek(o = 0): Tok | undefined { return this.toks[this.i + o]; }
  pos(): number { return this.peek()?.pos ?? this.tagPos; }
  isOp(v: string): boolean { const t = this.peek(); return t !== undefined && t.t === 'op' && t.v === v; }
  isName(v: string): boolean { const t = this.peek(); return t !== undefined && t.t === 'name' && t.v === v; }
  expectOp(v: string): void {
    if (!this.isOp(v)) fail(this.src, this.pos(), `expected '${v}', got ${this.describe()}`);
    this.i++;
  }
  describe(): string { const t = this.peek(); return t ? (t.t === 'str' ? 'a string' : `'${t.v}'`) : 'the end of the tag'; }
  done(): boolean { return this.i >= this.toks.length; }
  end(what: string): void { if (!this.done()) fail(this.src, this.pos(), `unexpected ${this.describe()} in ${what}`); }
  ident(): string {
    const t = this.peek();
    if (!t || t.t !== 'name') fail(this.src, this.pos(), `expected a name, got ${this.describe()}`);
    this.i++;
    return t.v;
  }

  expr(): Expr {
    const a = this.or();
    if (this.isName('if')) {
      this.i++;
      const cond = this.or();
      let b: Expr | null = null;
      if (this.isName('else')) { this.i++; b = this.expr(); }
      return { k: 'cond', cond, a, b };
    }
    return a;
  }
  /** `expr` without the trailing `if` (for-loop filters use it). */
  or(): Expr {
    let a = this.and();
    while (this.isName('or')) { this.i++; a = { k: 'or', a, b: this.and() }; }
    return a;
  }
  and(): Expr {
    let a = this.not();
    while (this.isName('and')) { this.i++; a = { k: 'and', a, b: this.not() }; }
    return a;
  }
  not(): Expr {
    if (this.isName('not')) { this.i++; return { k: 'un', op: 'not', e: this.not() }; }
    return this.compare();
  }
  compare(): Expr {
    const pos = this.pos();
    const first = this.math1();
    const rest: [string, Expr][] = [];
    for (;;) {
      const t = this.peek();
      if (t && t.t === 'op' && ['==', '!=', '<', '>', '<=', '>='].includes(t.v)) { this.i++; rest.push([t.v, this.math1()]); }
      else if (this.isName('in')) { this.i++; rest.push(['in', this.math1()]); }
      else if (this.isName('not') && this.peek(1)?.t === 'name' && this.peek(1)?.v === 'in') { this.i += 2; rest.push(['notin', this.math1()]); }
      else break;
    }
    return rest.length ? { k: 'cmp', first, rest, pos } : first;
  }
  math1(): Expr {
    let a = this.concat();
    for (;;) {
      const pos = this.pos();
      if (this.isOp('+') || this.isOp('-')) { const op = this.peek()!.v; this.i++; a = { k: 'bin', op, a, b: this.concat(), pos }; } else return a;
    }
  }
  concat(): Expr {
    let a = this.math2();
    while (this.isOp('~')) { const pos = this.pos(); this.i++; a = { k: 'bin', op: '~', a, b: this.math2(), pos }; }
    return a;
  }
  math2(): Expr {
    let a = this.pow();
    for (;;) {
      const pos = this.pos();
      const t = this.peek();
      if (t && t.t === 'op' && ['*', '/', '//', '%'].includes(t.v)) { this.i++; a = { k: 'bin', op: t.v, a, b: this.pow(), pos }; } else return a;
    }
  }
  pow(): Expr {
    let a = this.unary();
    while (this.isOp('**')) { const pos = this.pos(); this.i++; a = { k: 'bin', op: '**', a, b: this.unary(), pos }; }
    return a;
  }
  unary(): Expr {
    if (this.isOp('-') || this.isOp('+')) {
      const op = this.peek()!.v; this.i++;
      return this.filters({ k: 'un', op, e: this.unaryNoFilter() });
    }
    return this.filters(this.postfix(this.primary()));
  }
  unaryNoFilter(): Expr {
    if (this.isOp('-') || this.isOp('+')) { const op = this.peek()!.v; this.i++; return { k: 'un', op, e: this.unaryNoFilter() }; }
    return this.postfix(this.primary());
  }
  primary(): Expr {
    const t = this.peek();
    if (!t) fail(this.src, this.tagPos, 'expected an expression, got the end of the tag');
    const pos = t.pos;
    if (t.t === 'str') {
      this.i++;
      let v = t.v;
      while (this.peek()?.t === 'str') v += this.toks[this.i++].v; // adjacent literals join, as in Python
      return { k: 'lit', v };
    }
    if (t.t === 'num') { this.i++; return { k: 'lit', v: t.n }; }
    if (t.t === 'name') {
      this.i++;
      switch (t.v) {
        case 'true': case 'True': return { k: 'lit', v: true };
        case 'false': case 'False': return { k: 'lit', v: false };
        case 'none': case 'None': return { k: 'lit', v: null };
        default: return { k: 'name', name: t.v, pos };
      }
    }
    if (t.v === '(') {
      this.i++;
      if (this.isOp(')')) { this.i++; return { k: 'list', items: [] }; }
      const e = this.expr();
      if (this.isOp(',')) { // a tuple: behaves as a list here
        const items = [e];
        while (this.isOp(',')) { this.i++; if (this.isOp(')')) break; items.push(this.expr()); }
        this.expectOp(')');
        return { k: 'list', items };
      }
      this.expectOp(')');
      return e;
    }
    if (t.v === '[') {
      this.i++;
      const items: Expr[] = [];
      while (!this.isOp(']')) {
        items.push(this.expr());
        if (!this.isOp(']')) this.expectOp(',');
      }
      this.i++;
      return { k: 'list', items };
    }
    if (t.v === '{') {
      this.i++;
      const pairs: [Expr, Expr][] = [];
      while (!this.isOp('}')) {
        const key = this.expr();
        this.expectOp(':');
        pairs.push([key, this.expr()]);
        if (!this.isOp('}')) this.expectOp(',');
      }
      this.i++;
      return { k: 'dict', pairs };
    }
    fail(this.src, pos, `unexpected '${t.v}' where an expression should start`);
  }
  postfix(e: Expr): Expr {
    for (;;) {
      const pos = this.pos();
      if (this.isOp('.')) {
        this.i++;
        const t = this.peek();
        if (t?.t === 'num' && /^\d+$/.test(t.v)) { this.i++; e = { k: 'item', obj: e, key: { k: 'lit', v: t.n }, pos }; continue; }
        e = { k: 'attr', obj: e, name: this.ident(), pos };
      } else if (this.isOp('[')) {
        this.i++;
        const part = (): Expr | null => (this.isOp(':') || this.isOp(']') ? null : this.expr());
        const a = part();
        if (this.isOp(':')) {
          this.i++;
          const b = part();
          let c: Expr | null = null;
          if (this.isOp(':')) { this.i++; c = part(); }
          this.expectOp(']');
          e = { k: 'slice', obj: e, a, b, c, pos };
        } else {
          if (a === null) fail(this.src, pos, 'empty subscript []');
          this.expectOp(']');
          e = { k: 'item', obj: e, key: a, pos };
        }
      } else if (this.isOp('(')) {
        const { args, kw } = this.callArgs();
        e = { k: 'call', fn: e, args, kw, pos };
      } else return e;
    }
  }
  callArgs(): { args: Expr[]; kw: [string, Expr][] } {
    this.expectOp('(');
    const args: Expr[] = [], kw: [string, Expr][] = [];
    while (!this.isOp(')')) {
      if (this.isOp('*') || this.isOp('**')) fail(this.src, this.pos(), '*args / **kwargs in calls are not supported');
      if (this.peek()?.t === 'name' && this.peek(1)?.t === 'op' && this.peek(1)?.v === '=') {
        const name = this.ident(); this.i++;
        kw.push([name, this.expr()]);
      } else {
        if (kw.length) fail(this.src, this.pos(), 'a positional argument follows a keyword argument');
        args.push(this.expr());
      }
      if (!this.isOp(')')) this.expectOp(',');
    }
    this.i++;
    return { args, kw };
  }
  filters(e: Expr): Expr {
    for (;;) {
      const pos = this.pos();
      if (this.isOp('|')) {
        this.i++;
        let name = this.ident();
        while (this.isOp('.')) { this.i++; name += '.' + this.ident(); }
        let args: Expr[] = [], kw: [string, Expr][] = [];
        if (this.isOp('(')) ({ args, kw } = this.callArgs());
        e = { k: 'filter', e, name, args, kw, pos };
      } else if (this.isName('is')) {
        this.i++;
        let neg = false;
        if (this.isName('not')) { this.i++; neg = true; }
        const name = this.ident();
        let args: Expr[] = [];
        const t = this.peek();
        if (this.isOp('(')) {
          const c = this.callArgs();
          if (c.kw.length) fail(this.src, pos, `keyword arguments to test '${name}' are not supported`);
          args = c.args;
        } else if (t && (t.t === 'str' || t.t === 'num' || (t.t === 'name' && !['else', 'or', 'and', 'if', 'is', 'in', 'not'].includes(t.v)) || (t.t === 'op' && (t.v === '[' || t.v === '{')))) {
          args = [this.postfix(this.primary())];
        }
        e = { k: 'test', e, name, args, neg, pos };
      } else return e;
    }
  }
}

const STMT_ENDS: Record<string, string[]> = { if: ['elif', 'else', 'endif'], for: ['else', 'endfor'], generation: ['endgeneration'], macro: ['endmacro'] };

function parse(src: Source, segs: Seg[]): Node[] {
  let i = 0;
  // Parses nodes until one of `stops` (a statement keyword); returns the nodes and the stop met.
  const block = (stops: string[], opener: { what: string; pos: number } | null): { body: Node[]; stop: string; seg: Seg & { k: 'stmt' } | null; p: ExprParser | null } => {
    const body: Node[] = [];
    while (i < segs.length) {
      const seg = segs[i++];
      if (seg.k === 'text') { body.push({ k: 'text', v: seg.v }); continue; }
      const p = new ExprParser(src, seg.toks, seg.pos);
      if (seg.k === 'out') {
        if (p.done()) fail(src, seg.pos, 'empty {{ }}');
        const e = p.expr();
        p.end('{{ … }}');
        body.push({ k: 'out', e });
        continue;
      }
      if (p.done()) fail(src, seg.pos, 'empty {% %} tag');
      const kwTok = p.peek()!;
      if (kwTok.t !== 'name') fail(src, seg.pos, `expected a statement keyword, got '${kwTok.v}'`);
      const kw = kwTok.v;
      p.i++;
      if (stops.includes(kw)) return { body, stop: kw, seg, p };
      switch (kw) {
        case 'if': {
          const branches: { cond: Expr; body: Node[] }[] = [];
          let cond = p.expr(); p.end('{% if %}');
          let orelse: Node[] = [];
          for (;;) {
            const r = block(['elif', 'else', 'endif'], { what: 'if', pos: seg.pos });
            branches.push({ cond, body: r.body });
            if (r.stop === 'elif') { cond = r.p!.expr(); r.p!.end('{% elif %}'); continue; }
            if (r.stop === 'else') {
              r.p!.end('{% else %}');
              const e = block(['endif'], { what: 'if', pos: seg.pos });
              e.p!.end('{% endif %}');
              orelse = e.body;
            } else r.p!.end('{% endif %}');
            break;
          }
          body.push({ k: 'if', branches, orelse });
          break;
        }
        case 'for': {
          const targets = [p.ident()];
          while (p.isOp(',')) { p.i++; targets.push(p.ident()); }
          if (!p.isName('in')) fail(src, p.pos(), `expected 'in' in {% for %}, got ${p.describe()}`);
          p.i++;
          const iter = p.or();
          let filter: Expr | null = null;
          if (p.isName('if')) { p.i++; filter = p.or(); }
          if (p.isName('recursive')) fail(src, p.pos(), 'recursive for loops are not supported');
          p.end('{% for %}');
          const r = block(['else', 'endfor'], { what: 'for', pos: seg.pos });
          let orelse: Node[] = [];
          if (r.stop === 'else') {
            r.p!.end('{% else %}');
            const e = block(['endfor'], { what: 'for', pos: seg.pos });
            e.p!.end('{% endfor %}');
            orelse = e.body;
          } else r.p!.end('{% endfor %}');
          body.push({ k: 'for', targets, iter, filter, body: r.body, orelse, pos: seg.pos });
          break;
        }
        case 'set': {
          const name = p.ident();
          let attr: string | null = null;
          if (p.isOp('.')) { p.i++; attr = p.ident(); }
          if (p.isOp(',')) fail(src, p.pos(), 'tuple assignment in {% set %} is not supported');
          if (!p.isOp('=')) fail(src, p.pos(), p.done() ? 'block {% set %}…{% endset %} is not supported' : `expected '=' in {% set %}, got ${p.describe()}`);
          p.i++;
          const e = p.expr();
          p.end('{% set %}');
          body.push({ k: 'set', name, attr, e, pos: seg.pos });
          break;
        }
        case 'break': case 'continue':
          p.end(`{% ${kw} %}`);
          body.push({ k: kw });
          break;
        case 'macro': {
          const name = p.ident();
          const params: string[] = [], defaults: (Expr | null)[] = [];
          p.expectOp('(');
          while (!p.isOp(')')) {
            params.push(p.ident());
            if (p.isOp('=')) { p.i++; defaults.push(p.expr()); } else {
              if (defaults.some((d) => d !== null)) fail(src, p.pos(), 'a macro parameter without a default follows one with a default');
              defaults.push(null);
            }
            if (!p.isOp(')')) p.expectOp(',');
          }
          p.i++;
          p.end('{% macro %}');
          const r = block(['endmacro'], { what: 'macro', pos: seg.pos });
          r.p!.end('{% endmacro %}');
          body.push({ k: 'macro', name, params, defaults, body: r.body, pos: seg.pos });
          break;
        }
        case 'generation': {
          p.end('{% generation %}');
          const r = block(['endgeneration'], { what: 'generation', pos: seg.pos });
          r.p!.end('{% endgeneration %}');
          body.push(...r.body);
          break;
        }
        default: {
          const closer = Object.entries(STMT_ENDS).find(([, ends]) => ends.includes(kw));
          if (closer) fail(src, seg.pos, `{% ${kw} %} without a matching {% ${closer[0]} %}`);
          fail(src, seg.pos, `unsupported statement {% ${kw} %}`);
        }
      }
    }
    if (opener) fail(src, opener.pos, `{% ${opener.what} %} is never closed (expected {% ${stops[stops.length - 1]} %})`);
    return { body, stop: '', seg: null, p: null };
  };
  return block([], null).body;
}

// ------------------------------------------------------------------------------------ values

function pyStr(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  return pyRepr(v);
}
function pyNum(n: number): string {
  if (Number.isInteger(n) || !Number.isFinite(n)) return Number.isFinite(n) ? String(n) : n > 0 ? 'inf' : n < 0 ? '-inf' : 'nan';
  return String(n);
}
function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') return pyNum(v);
  if (typeof v === 'string') {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    return q + v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t').replace(new RegExp(q, 'g'), '\\' + q) + q;
  }
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  if (v instanceof Namespace) return `<Namespace ${[...v.attrs].map(([k, x]) => `${k}=${pyRepr(x)}`).join(', ')}>`;
  if (isObj(v)) return `{${Object.entries(v).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
  return String(v);
}
/** json.dumps as transformers' tojson filter calls it (ensure_ascii=False, ', ' and ': ' separators). */
function pyJson(v: unknown, indent: number | null, sortKeys: boolean, depth = 0): string {
  if (v === null || v === undefined) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'number') return Number.isFinite(v) ? pyNum(v) : v > 0 ? 'Infinity' : v < 0 ? '-Infinity' : 'NaN';
  if (typeof v === 'string') return JSON.stringify(v);
  const nl = indent === null ? '' : '\n' + ' '.repeat(indent * (depth + 1));
  const close = indent === null ? '' : '\n' + ' '.repeat(indent * depth);
  const sep = indent === null ? ', ' : ',';
  if (Array.isArray(v)) return v.length === 0 ? '[]' : `[${nl}${v.map((x) => pyJson(x, indent, sortKeys, depth + 1)).join(sep + nl)}${close}]`;
  const entries = v instanceof Namespace ? [...v.attrs] : isObj(v) ? Object.entries(v) : null;
  if (entries === null) throw new Error(`tojson: cannot serialise ${typeName(v)}`);
  if (sortKeys) entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return entries.length === 0 ? '{}' : `{${nl}${entries.map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x, indent, sortKeys, depth + 1)}`).join(sep + nl)}${close}}`;
}
function typeName(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'none';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Namespace) return 'namespace';
  if (v instanceof Loop) return 'loop';
  if (v instanceof Callable) return 'function';
  if (typeof v === 'object') return 'dict';
  return typeof v === 'number' ? (Number.isInteger(v) ? 'int' : 'float') : typeof v === 'boolean' ? 'bool' : 'str';
}
function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObj(v)) return Object.keys(v).length > 0;
  return true;
}
function eq(a: unknown, b: unknown): boolean {
  if (typeof a === 'boolean') a = +a;
  if (typeof b === 'boolean') b = +b;
  if (a === undefined || b === undefined) return a === b;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => eq(x, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && eq(a[k], b[k]));
  }
  return a === b;
}
function iterable(v: unknown): unknown[] | null {
  if (v === undefined) return []; // Jinja's Undefined iterates as empty
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') return [...v];
  if (isObj(v)) return Object.keys(v);
  if (v instanceof Namespace) return [...v.attrs.keys()];
  return null;
}
const normIndex = (i: number, n: number) => (i < 0 ? i + n : i);
function sliceOf<T>(xs: T[], a: number | null, b: number | null, c: number | null): T[] {
  const n = xs.length, step = c ?? 1;
  if (step === 0) throw new Error('slice step cannot be zero');
  const clamp = (i: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, i));
  const out: T[] = [];
  if (step > 0) {
    const s = a === null ? 0 : clamp(normIndex(a, n), 0, n), e = b === null ? n : clamp(normIndex(b, n), 0, n);
    for (let i = s; i < e; i += step) out.push(xs[i]);
  } else {
    const s = a === null ? n - 1 : clamp(normIndex(a, n), -1, n - 1), e = b === null ? -1 : clamp(normIndex(b, n), -1, n - 1);
    for (let i = s; i > e; i += step) out.push(xs[i]);
  }
  return out;
}
function pyStrip(s: string, chars: unknown, left: boolean, right: boolean): string {
  if (chars === undefined || chars === null) {
    if (left) s = s.replace(/^\s+/, '');
    if (right) s = s.replace(/\s+$/, '');
    return s;
  }
  const set = new Set([...String(chars)]);
  const cs = [...s];
  let a = 0, b = cs.length;
  if (left) while (a < b && set.has(cs[a])) a++;
  if (right) while (b > a && set.has(cs[b - 1])) b--;
  return cs.slice(a, b).join('');
}
function pySplit(s: string, sep: unknown, max: unknown): string[] {
  const limit = typeof max === 'number' && max >= 0 ? max : Infinity;
  if (sep === undefined || sep === null) {
    const out: string[] = [];
    let rest = s.replace(/^\s+/, '');
    while (rest.length) {
      if (out.length >= limit) { out.push(rest); break; }
      const m = /\s+/.exec(rest);
      if (!m) { out.push(rest); break; }
      out.push(rest.slice(0, m.index));
      rest = rest.slice(m.index + m[0].length);
    }
    return out;
  }
  if (typeof sep !== 'string' || sep === '') throw new Error('split: separator must be a non-empty string');
  const parts = s.split(sep);
  if (parts.length - 1 <= limit) return parts;
  return [...parts.slice(0, limit), parts.slice(limit).join(sep)];
}
const title = (s: string) => s.replace(/[A-Za-z\u00c0-\uffff]+/g, (w) => w[0].toUpperCase() + w.slice(1).toLowerCase());
const capitalize = (s: string) => (s ? s[0].toUpperCase() + s.slice(1).toLowerCase() : s);

function strMethod(s: string, name: string): Fn | undefined {
  switch (name) {
    case 'strip': return (a) => pyStrip(s, a[0], true, true);
    case 'lstrip': return (a) => pyStrip(s, a[0], true, false);
    case 'rstrip': return (a) => pyStrip(s, a[0], false, true);
    case 'split': return (a, kw) => pySplit(s, a[0] ?? kw.sep, a[1] ?? kw.maxsplit);
    case 'startswith': case 'endswith': return (a) => {
      const ps = Array.isArray(a[0]) ? a[0] : [a[0]];
      return ps.some((p) => typeof p === 'string' && (name === 'startswith' ? s.startsWith(p) : s.endsWith(p)));
    };
    case 'upper': return () => s.toUpperCase();
    case 'lower': return () => s.toLowerCase();
    case 'title': return () => title(s);
    case 'capitalize': return () => capitalize(s);
    case 'replace': return (a) => replaceStr(s, a[0], a[1], a[2]);
    case 'find': return (a) => s.indexOf(String(a[0]));
    case 'count': return (a) => (String(a[0]) === '' ? s.length + 1 : s.split(String(a[0])).length - 1);
    case 'join': return (a) => (iterable(a[0]) ?? []).map(pyStr).join(s);
    case 'isdigit': return () => /^\d+$/.test(s);
    default: return undefined;
  }
}
function replaceStr(s: string, a: unknown, b: unknown, count: unknown): string {
  const from = pyStr(a), to = pyStr(b);
  const parts = s.split(from);
  const n = typeof count === 'number' && count >= 0 ? count : Infinity;
  if (parts.length - 1 <= n) return parts.join(to);
  return parts.slice(0, n + 1).join(to) + from + parts.slice(n + 1).join(from);
}

// ------------------------------------------------------------------------------------ rendering

class Scope {
  vars = new Map<string, unknown>();
  constructor(readonly parent: Scope | null) {}
  get(name: string): unknown {
    for (let s: Scope | null = this; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
    return undefined;
  }
  has(name: string): boolean {
    for (let s: Scope | null = this; s; s = s.parent) if (s.vars.has(name)) return true;
    return false;
  }
}
class LoopSignal { constructor(readonly kind: 'break' | 'continue') {} }

class RenderError extends Error {}

const GLOBALS: Record<string, Fn> = {
  raise_exception: (a) => { throw new TemplateRaisedError(pyStr(a[0])); },
  namespace: (a, kw) => {
    const m = new Map<string, unknown>();
    if (a[0] !== undefined) { if (!isObj(a[0])) throw new Error('namespace() takes a dict or keyword arguments'); for (const [k, v] of Object.entries(a[0])) m.set(k, v); }
    for (const [k, v] of Object.entries(kw)) m.set(k, v);
    return new Namespace(m);
  },
  range: (a) => {
    const nums = a.map((x) => { if (typeof x !== 'number' || !Number.isInteger(x)) throw new Error('range() takes integers'); return x; });
    const [start, stop, step] = nums.length === 1 ? [0, nums[0], 1] : [nums[0], nums[1], nums[2] ?? 1];
    if (step === 0) throw new Error('range() step must not be zero');
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) { out.push(i); if (out.length > 1e6) throw new Error('range() too long'); }
    return out;
  },
  dict: (a, kw) => ({ ...(isObj(a[0]) ? a[0] : {}), ...kw }),
  // transformers provides it (Llama 3.1 dates its system prompt): local time, strftime format.
  strftime_now: (a) => strftime(pyStr(a[0]), new Date()),
};

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
function strftime(fmt: string, d: Date): string {
  const p2 = (n: number) => String(n).padStart(2, '0');
  return fmt.replace(/%(.)/g, (m, c: string) => {
    switch (c) {
      case 'd': return p2(d.getDate());
      case 'm': return p2(d.getMonth() + 1);
      case 'Y': return String(d.getFullYear());
      case 'y': return p2(d.getFullYear() % 100);
      case 'b': return MONTHS[d.getMonth()].slice(0, 3);
      case 'B': return MONTHS[d.getMonth()];
      case 'a': return DAYS[d.getDay()].slice(0, 3);
      case 'A': return DAYS[d.getDay()];
      case 'H': return p2(d.getHours());
      case 'M': return p2(d.getMinutes());
      case 'S': return p2(d.getSeconds());
      case '%': return '%';
      default: throw new Error(`strftime_now: unsupported format ${m}`);
    }
  });
}

const TESTS: Record<string, (v: unknown, a: unknown[]) => boolean> = {
  defined: (v) => v !== undefined,
  undefined: (v) => v === undefined,
  none: (v) => v === null,
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  integer: (v) => typeof v === 'number' && Number.isInteger(v),
  float: (v) => typeof v === 'number' && !Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean',
  true: (v) => v === true,
  false: (v) => v === false,
  mapping: (v) => isObj(v),
  sequence: (v) => Array.isArray(v) || typeof v === 'string' || isObj(v),
  iterable: (v) => iterable(v) !== null,
  callable: (v) => v instanceof Callable,
  odd: (v) => typeof v === 'number' && Math.abs(v % 2) === 1,
  even: (v) => typeof v === 'number' && v % 2 === 0,
  divisibleby: (v, a) => typeof v === 'number' && typeof a[0] === 'number' && v % a[0] === 0,
  eq: (v, a) => eq(v, a[0]), equalto: (v, a) => eq(v, a[0]), '==': (v, a) => eq(v, a[0]),
  ne: (v, a) => !eq(v, a[0]), '!=': (v, a) => !eq(v, a[0]),
  in: (v, a) => contains(a[0], v),
  lower: (v) => typeof v === 'string' && v === v.toLowerCase(),
  upper: (v) => typeof v === 'string' && v === v.toUpperCase(),
};

function contains(container: unknown, x: unknown): boolean {
  if (typeof container === 'string') {
    if (typeof x !== 'string') throw new Error(`'in <string>' requires a string on the left, got ${typeName(x)}`);
    return container.includes(x);
  }
  if (Array.isArray(container)) return container.some((y) => eq(x, y));
  if (isObj(container)) return typeof x === 'string' && Object.prototype.hasOwnProperty.call(container, x);
  if (container instanceof Namespace) return typeof x === 'string' && container.attrs.has(x);
  throw new Error(`'in' needs a string, list or dict on the right, got ${typeName(container)}`);
}

function attrOf(obj: unknown, name: string): unknown {
  if (obj instanceof Loop) return obj.get(name);
  if (obj instanceof Namespace) return obj.attrs.get(name);
  if (typeof obj === 'string') { const f = strMethod(obj, name); return f ? new Callable(name, f) : undefined; }
  if (isObj(obj)) {
    if (Object.prototype.hasOwnProperty.call(obj, name)) return obj[name];
    switch (name) {
      case 'items': return new Callable(name, () => Object.entries(obj));
      case 'keys': return new Callable(name, () => Object.keys(obj));
      case 'values': return new Callable(name, () => Object.values(obj));
      case 'get': return new Callable(name, (a) => (Object.prototype.hasOwnProperty.call(obj, pyStr(a[0])) ? obj[pyStr(a[0])] : a[1] ?? null));
      default: return undefined;
    }
  }
  return undefined;
}
function itemOf(obj: unknown, key: unknown): unknown {
  if (Array.isArray(obj) || typeof obj === 'string') {
    if (typeof key !== 'number' || !Number.isInteger(key)) return typeof key === 'string' ? attrOf(obj, key) : undefined;
    const xs = typeof obj === 'string' ? [...obj] : obj;
    const i = normIndex(key, xs.length);
    return i >= 0 && i < xs.length ? xs[i] : undefined;
  }
  if (typeof key === 'string') return attrOf(obj, key);
  if (isObj(obj) && typeof key === 'number' && Object.prototype.hasOwnProperty.call(obj, String(key))) return obj[String(key)];
  return undefined;
}

const MAX_OUTPUT = 64 << 20;

class Renderer {
  out: string[] = [];
  size = 0;
  constructor(readonly src: Source) {}

  err(pos: number, msg: string): never { throw new RenderError(`chat template ${this.src.at(pos)}: ${msg}`); }
  wrap<T>(pos: number, f: () => T): T {
    try { return f(); } catch (e) {
      if (e instanceof RenderError || e instanceof TemplateRaisedError || e instanceof LoopSignal) throw e;
      this.err(pos, (e as Error).message);
    }
  }

  run(nodes: Node[], scope: Scope): void {
    for (const n of nodes) {
      switch (n.k) {
        case 'text': this.emit(n.v); break;
        case 'out': this.emit(pyStr(this.eval(n.e, scope))); break;
        case 'if': {
          const b = n.branches.find((br) => truthy(this.eval(br.cond, scope)));
          this.run(b ? b.body : n.orelse, scope);
          break;
        }
        case 'for': this.runFor(n, scope); break;
        case 'set': {
          const v = this.eval(n.e, scope);
          if (n.attr === null) { scope.vars.set(n.name, v); break; }
          const ns = scope.get(n.name);
          if (!(ns instanceof Namespace)) this.err(n.pos, `can only set attributes on namespace() objects; '${n.name}' is ${typeName(ns)}`);
          ns.attrs.set(n.attr, v);
          break;
        }
        case 'macro': {
          const def = scope;
          scope.vars.set(n.name, new Callable(n.name, (args, kw) => this.callMacro(n, def, args, kw)));
          break;
        }
        case 'break': case 'continue': throw new LoopSignal(n.k);
      }
    }
  }
  /** A macro call renders its body, with the parameters bound, into a string. */
  callMacro(n: Node & { k: 'macro' }, def: Scope, args: unknown[], kw: Obj): string {
    if (args.length > n.params.length) this.err(n.pos, `macro '${n.name}' takes ${n.params.length} arguments, got ${args.length}`);
    const s = new Scope(def);
    n.params.forEach((p, j) => {
      if (j < args.length) {
        if (Object.prototype.hasOwnProperty.call(kw, p)) this.err(n.pos, `macro '${n.name}' got argument '${p}' twice`);
        s.vars.set(p, args[j]);
      } else if (Object.prototype.hasOwnProperty.call(kw, p)) s.vars.set(p, kw[p]);
      else { const d = n.defaults[j]; s.vars.set(p, d ? this.eval(d, s) : undefined); }
    });
    for (const k of Object.keys(kw)) if (!n.params.includes(k)) this.err(n.pos, `macro '${n.name}' has no parameter '${k}'`);
    const saved = this.out;
    this.out = [];
    try {
      this.run(n.body, s);
      return this.out.join('');
    } catch (e) {
      if (e instanceof LoopSignal) this.err(n.pos, `{% ${e.kind} %} outside a loop in macro '${n.name}'`);
      throw e;
    } finally { this.out = saved; }
  }
  runFor(n: Node & { k: 'for' }, scope: Scope): void {
    const it = this.eval(n.iter, scope);
    let xs = iterable(it);
    if (xs === null) this.err(n.pos, `cannot loop over ${typeName(it)}`);
    const bind = (s: Scope, x: unknown) => {
      if (n.targets.length === 1) { s.vars.set(n.targets[0], x); return; }
      const parts = iterable(x);
      if (parts === null || parts.length !== n.targets.length) this.err(n.pos, `cannot unpack ${typeName(x)} into ${n.targets.length} names`);
      n.targets.forEach((t, j) => s.vars.set(t, parts[j]));
    };
    if (n.filter) {
      const f = n.filter;
      xs = xs.filter((x) => { const s = new Scope(scope); bind(s, x); return truthy(this.eval(f, s)); });
    }
    if (xs.length === 0) { this.run(n.orelse, scope); return; }
    const loop = new Loop(xs, 0);
    for (let i = 0; i < xs.length; i++) {
      // Each iteration gets a fresh scope: a plain `set` inside a loop does not outlive the iteration (Jinja's rule).
      const s = new Scope(scope);
      loop.i = i;
      s.vars.set('loop', loop);
      bind(s, xs[i]);
      try { this.run(n.body, s); } catch (e) {
        if (!(e instanceof LoopSignal)) throw e;
        if (e.kind === 'break') break;
      }
    }
  }
  emit(s: string): void {
    this.size += s.length;
    if (this.size > MAX_OUTPUT) throw new RenderError(`chat template: output exceeds ${MAX_OUTPUT} characters`);
    this.out.push(s);
  }

  eval(e: Expr, scope: Scope): unknown {
    switch (e.k) {
      case 'lit': return e.v;
      case 'name': {
        if (scope.has(e.name)) return scope.get(e.name);
        const g = GLOBALS[e.name];
        return g ? new Callable(e.name, g) : undefined;
      }
      case 'list': return e.items.map((x) => this.eval(x, scope));
      case 'dict': {
        const o: Obj = {};
        for (const [k, v] of e.pairs) o[pyStr(this.eval(k, scope))] = this.eval(v, scope);
        return o;
      }
      case 'attr': {
        const o = this.eval(e.obj, scope);
        if (o === undefined) this.err(e.pos, `${describeExpr(e.obj)} is undefined (reading .${e.name})`);
        return attrOf(o, e.name);
      }
      case 'item': {
        const o = this.eval(e.obj, scope);
        const k = this.eval(e.key, scope);
        if (o === undefined) this.err(e.pos, `${describeExpr(e.obj)} is undefined (reading [${pyRepr(k)}])`);
        return itemOf(o, k);
      }
      case 'slice': {
        const o = this.eval(e.obj, scope);
        const num = (x: Expr | null) => {
          if (x === null) return null;
          const v = this.eval(x, scope);
          if (v === null) return null;
          if (typeof v !== 'number' || !Number.isInteger(v)) this.err(e.pos, `slice bounds must be integers, got ${typeName(v)}`);
          return v;
        };
        const a = num(e.a), b = num(e.b), c = num(e.c);
        if (typeof o === 'string') return this.wrap(e.pos, () => sliceOf([...o], a, b, c).join(''));
        if (Array.isArray(o)) return this.wrap(e.pos, () => sliceOf(o, a, b, c));
        this.err(e.pos, `cannot slice ${o === undefined ? `${describeExpr(e.obj)} (undefined)` : typeName(o)}`);
      }
      case 'call': {
        const f = this.eval(e.fn, scope);
        if (!(f instanceof Callable)) this.err(e.pos, `${describeExpr(e.fn)} is ${f === undefined ? 'undefined' : `a ${typeName(f)}`}, not a function`);
        const args = e.args.map((x) => this.eval(x, scope));
        const kw: Obj = {};
        for (const [k, v] of e.kw) kw[k] = this.eval(v, scope);
        return this.wrap(e.pos, () => f.fn(args, kw));
      }
      case 'filter': {
        const f = FILTERS[e.name];
        if (!f) this.err(e.pos, `unsupported filter '${e.name}'`);
        const v = this.eval(e.e, scope);
        const args = e.args.map((x) => this.eval(x, scope));
        const kw: Obj = {};
        for (const [k, x] of e.kw) kw[k] = this.eval(x, scope);
        return this.wrap(e.pos, () => f(v, args, kw));
      }
      case 'test': {
        const t = TESTS[e.name];
        if (!t) this.err(e.pos, `unsupported test 'is ${e.name}'`);
        const v = this.eval(e.e, scope);
        const r = this.wrap(e.pos, () => t(v, e.args.map((x) => this.eval(x, scope))));
        return e.neg ? !r : r;
      }
      case 'un': {
        const v = this.eval(e.e, scope);
        if (e.op === 'not') return !truthy(v);
        if (typeof v !== 'number' && typeof v !== 'boolean') throw new RenderError(`chat template: bad operand for unary ${e.op}: ${typeName(v)}`);
        return e.op === '-' ? -v : +v;
      }
      case 'and': { const a = this.eval(e.a, scope); return truthy(a) ? this.eval(e.b, scope) : a; }
      case 'or': { const a = this.eval(e.a, scope); return truthy(a) ? a : this.eval(e.b, scope); }
      case 'cond': return truthy(this.eval(e.cond, scope)) ? this.eval(e.a, scope) : e.b ? this.eval(e.b, scope) : undefined;
      case 'cmp': {
        let a = this.eval(e.first, scope);
        for (const [op, x] of e.rest) {
          const b = this.eval(x, scope);
          if (!this.wrap(e.pos, () => compare(op, a, b))) return false;
          a = b;
        }
        return true;
      }
      case 'bin': {
        const a = this.eval(e.a, scope), b = this.eval(e.b, scope);
        return this.wrap(e.pos, () => binop(e.op, a, b));
      }
    }
  }
}

function describeExpr(e: Expr): string {
  switch (e.k) {
    case 'name': return `'${e.name}'`;
    case 'attr': return `${describeExpr(e.obj).replace(/'$/, '')}.${e.name}'`.replace(/^([^'])/, "'$1");
    case 'item': return `${describeExpr(e.obj).replace(/'$/, '')}[${e.key.k === 'lit' ? pyRepr(e.key.v) : '…'}]'`.replace(/^([^'])/, "'$1");
    default: return 'the value';
  }
}

function num(v: unknown, op: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return +v;
  throw new Error(`unsupported operand for ${op}: ${typeName(v)}`);
}
function binop(op: string, a: unknown, b: unknown): unknown {
  switch (op) {
    case '~': return pyStr(a) + pyStr(b);
    case '+':
      if (typeof a === 'string' && typeof b === 'string') return a + b;
      if (Array.isArray(a) && Array.isArray(b)) return [...a, ...b];
      if ((typeof a === 'string') !== (typeof b === 'string') || a === undefined || b === undefined) {
        throw new Error(`cannot add ${typeName(a)} and ${typeName(b)} (use ~ to join as text)`);
      }
      return num(a, '+') + num(b, '+');
    case '-': return num(a, '-') - num(b, '-');
    case '*':
      if (typeof a === 'string' && typeof b === 'number') return a.repeat(Math.max(0, b));
      if (Array.isArray(a) && typeof b === 'number') return Array.from({ length: Math.max(0, b) }, () => a).flat();
      return num(a, '*') * num(b, '*');
    case '/': { const d = num(b, '/'); if (d === 0) throw new Error('division by zero'); return num(a, '/') / d; }
    case '//': { const d = num(b, '//'); if (d === 0) throw new Error('division by zero'); return Math.floor(num(a, '//') / d); }
    case '%': {
      if (typeof a === 'string') throw new Error("string formatting with '%' is not supported");
      const d = num(b, '%'); if (d === 0) throw new Error('modulo by zero');
      const x = num(a, '%');
      return ((x % d) + d) % d;
    }
    case '**': return num(a, '**') ** num(b, '**');
  }
  throw new Error(`unknown operator ${op}`);
}
function compare(op: string, a: unknown, b: unknown): boolean {
  switch (op) {
    case '==': return eq(a, b);
    case '!=': return !eq(a, b);
    case 'in': return contains(b, a);
    case 'notin': return !contains(b, a);
  }
  const ok = (typeof a === 'number' || typeof a === 'boolean') && (typeof b === 'number' || typeof b === 'boolean') || (typeof a === 'string' && typeof b === 'string');
  if (!ok) throw new Error(`cannot compare ${typeName(a)} ${op} ${typeName(b)}`);
  const x = a as number | string, y = b as number | string;
  return op === '<' ? x < y : op === '>' ? x > y : op === '<=' ? x <= y : x >= y;
}

function seqOf(v: unknown, what: string): unknown[] {
  const xs = iterable(v);
  if (xs === null) throw new Error(`${what}: expected a list or string, got ${typeName(v)}`);
  return xs;
}
function attrPath(v: unknown, path: string): unknown {
  for (const part of path.split('.')) v = /^\d+$/.test(part) ? itemOf(v, Number(part)) : attrOf(v, part);
  return v;
}
function selectBy(v: unknown, a: unknown[], keep: boolean, byAttr: boolean): unknown[] {
  const xs = seqOf(v, byAttr ? 'selectattr' : 'select');
  const [attr, test, ...rest] = byAttr ? a : [undefined, ...a];
  return xs.filter((x) => {
    const val = byAttr ? attrPath(x, pyStr(attr)) : x;
    let r: boolean;
    if (test === undefined) r = truthy(val);
    else {
      const t = TESTS[pyStr(test)];
      if (!t) throw new Error(`unsupported test '${pyStr(test)}'`);
      r = t(val, rest);
    }
    return r === keep;
  });
}

const FILTERS: Record<string, (v: unknown, a: unknown[], kw: Obj) => unknown> = {
  trim: (v, a) => pyStrip(pyStr(v), a[0], true, true),
  length: (v) => { if (v === undefined) return 0; if (typeof v === 'string') return [...v].length; return seqOf(v, 'length').length; },
  upper: (v) => pyStr(v).toUpperCase(),
  lower: (v) => pyStr(v).toLowerCase(),
  capitalize: (v) => capitalize(pyStr(v)),
  title: (v) => title(pyStr(v)),
  string: (v) => pyStr(v),
  safe: (v) => v,
  tojson: (v, a, kw) => {
    const indent = a[0] ?? kw.indent ?? null;
    if (indent !== null && (typeof indent !== 'number' || !Number.isInteger(indent))) throw new Error('tojson: indent must be an integer');
    if (kw.separators !== undefined) throw new Error('tojson: separators= is not supported');
    return pyJson(v, indent as number | null, truthy(kw.sort_keys));
  },
  default: (v, a, kw) => ((a[1] ?? kw.boolean) ? (truthy(v) ? v : a[0] ?? kw.default_value ?? '') : v === undefined ? (a[0] ?? kw.default_value ?? '') : v),
  join: (v, a, kw) => {
    let xs = seqOf(v, 'join');
    const attr = kw.attribute ?? a[1];
    if (attr !== undefined) xs = xs.map((x) => attrPath(x, pyStr(attr)));
    return xs.map(pyStr).join(pyStr(a[0] ?? kw.d ?? ''));
  },
  replace: (v, a) => replaceStr(pyStr(v), a[0], a[1], a[2]),
  first: (v) => seqOf(v, 'first')[0],
  last: (v) => { const xs = seqOf(v, 'last'); return xs[xs.length - 1]; },
  list: (v) => seqOf(v, 'list').slice(),
  reverse: (v) => (typeof v === 'string' ? [...v].reverse().join('') : seqOf(v, 'reverse').slice().reverse()),
  items: (v) => { if (!isObj(v)) throw new Error(`items: expected a dict, got ${typeName(v)}`); return Object.entries(v); },
  int: (v, a) => { const n = typeof v === 'string' ? Number(v.trim()) : typeof v === 'number' || typeof v === 'boolean' ? +v : NaN; return Number.isFinite(n) ? Math.trunc(n) : a[0] ?? 0; },
  float: (v, a) => { const n = typeof v === 'string' ? Number(v.trim()) : typeof v === 'number' || typeof v === 'boolean' ? +v : NaN; return Number.isFinite(n) ? n : a[0] ?? 0; },
  abs: (v) => Math.abs(num(v, 'abs')),
  select: (v, a) => selectBy(v, a, true, false),
  reject: (v, a) => selectBy(v, a, false, false),
  selectattr: (v, a) => selectBy(v, a, true, true),
  rejectattr: (v, a) => selectBy(v, a, false, true),
  map: (v, a, kw) => {
    const xs = seqOf(v, 'map');
    if (kw.attribute !== undefined) return xs.map((x) => attrPath(x, pyStr(kw.attribute)) ?? kw.default);
    const f = FILTERS[pyStr(a[0])];
    if (!f) throw new Error(`map: unsupported filter '${pyStr(a[0])}'`);
    return xs.map((x) => f(x, a.slice(1), {}));
  },
};
FILTERS.count = FILTERS.length;
FILTERS.d = FILTERS.default;

// ------------------------------------------------------------------------------------ API

/** A parsed chat template; render() may be called many times. */
export class ChatTemplate {
  private readonly nodes: Node[];
  private readonly src: Source;
  /** Top-level names the template reads (to tell whether it handles e.g. `tools`). */
  readonly names: ReadonlySet<string>;

  constructor(readonly source: string) {
    // Jinja's lexer normalises newlines and (keep_trailing_newline off) drops one final newline.
    let text = source.replace(/\r\n?/g, '\n');
    if (text.endsWith('\n')) text = text.slice(0, -1);
    this.src = new Source(text);
    const segs = lex(this.src);
    this.nodes = parse(this.src, segs);
    const names = new Set<string>();
    for (const s of segs) if (s.k !== 'text') for (const t of s.toks) if (t.t === 'name') names.add(t.v);
    this.names = names;
  }

  /** Renders with `vars` (messages, add_generation_prompt, bos_token, eos_token, …). */
  render(vars: Record<string, unknown>): string {
    const scope = new Scope(null);
    for (const [k, v] of Object.entries(vars)) if (v !== undefined) scope.vars.set(k, v);
    const r = new Renderer(this.src);
    try { r.run(this.nodes, scope); } catch (e) {
      if (e instanceof LoopSignal) throw new RenderError(`chat template: {% ${e.kind} %} outside a loop`);
      throw e;
    }
    return r.out.join('');
  }
}

const cache = new Map<string, ChatTemplate>();
/** Parses (once per distinct source) and returns the template. */
export function compileChatTemplate(source: string): ChatTemplate {
  let t = cache.get(source);
  if (!t) {
    t = new ChatTemplate(source);
    if (cache.size > 32) cache.clear();
    cache.set(source, t);
  }
  return t;
}

export interface ChatTemplateVars {
  messages: unknown[];
  add_generation_prompt?: boolean;
  bos_token?: string;
  eos_token?: string;
  [k: string]: unknown;
}

/** Renders a chat template as transformers' apply_chat_template does (tokenize=False). */
export function renderChatTemplate(source: string, vars: ChatTemplateVars): string {
  return compileChatTemplate(source).render({ add_generation_prompt: false, ...vars });
}
