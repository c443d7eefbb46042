// The chat page of `icld serve`: plain DOM, no framework. Talks to the same origin's
// OpenAI-compatible API. Model and user text only ever goes through textContent, never innerHTML.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const transcript = $('transcript'), errorBox = $('error'), input = $('input');
  const modelSel = $('model'), tempIn = $('temperature'), maxIn = $('max-tokens'), keyIn = $('api-key');
  const sendBtn = $('send'), stopBtn = $('stop');
  const KEY = 'icld.apiKey';

  /** The conversation sent with each request: {role, content} in order. */
  let history = [];
  /** The AbortController of the request in flight, or null when idle. */
  let inflight = null;

  keyIn.value = sessionStorage.getItem(KEY) ?? '';

  function headers(json) {
    const h = {};
    if (json) h['Content-Type'] = 'application/json';
    const key = keyIn.value.trim();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  function showError(msg) { errorBox.textContent = msg; errorBox.hidden = false; }
  function clearError() { errorBox.textContent = ''; errorBox.hidden = true; }

  /** The message of a failed response: OpenAI's {"error": {"message"}} when the body has it. */
  async function errorOf(res) {
    let text = '';
    try { text = await res.text(); } catch { /* body unreadable: the status says enough */ }
    try {
      const j = JSON.parse(text);
      if (j && j.error) return `${res.status}: ${typeof j.error === 'string' ? j.error : j.error.message}`;
    } catch { /* not JSON */ }
    return `${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ''}`;
  }

  function bubble(role, text) {
    const div = document.createElement('div');
    div.className = `msg ${role}`;
    const who = document.createElement('div');
    who.className = 'role';
    who.textContent = role === 'user' ? 'You' : 'Assistant';
    const content = document.createElement('div');
    content.className = 'content';
    content.textContent = text;
    div.append(who, content);
    transcript.append(div);
    scrollDown();
    return div;
  }

  function note(div, text) {
    const n = document.createElement('div');
    n.className = 'note';
    n.textContent = text;
    div.append(n);
  }

  function scrollDown() { const m = transcript.parentElement; m.scrollTop = m.scrollHeight; }

  function setBusy(busy) {
    sendBtn.disabled = busy;
    stopBtn.disabled = !busy;
    modelSel.disabled = busy;
    transcript.setAttribute('aria-busy', String(busy));
  }

  async function loadModels() {
    clearError();
    let res;
    try { res = await fetch('/v1/models', { headers: headers(false) }); } catch (e) { showError(`Cannot reach the server: ${e.message}`); return; }
    if (!res.ok) {
      showError(`Models: ${await errorOf(res)}`);
      if (res.status === 503) setTimeout(loadModels, 1000); // still loading: try again
      return;
    }
    const body = await res.json();
    const keep = modelSel.value;
    modelSel.replaceChildren();
    for (const m of body.data ?? []) {
      const o = document.createElement('option');
      o.value = m.id;
      // icld's extra fields, when there: which entries are adapters, which cannot chat (masked LMs).
      const peft = m.adapter && m.adapter.peft_type;
      o.textContent = peft ? `${m.id} (${peft} adapter)` : m.id;
      if (peft) o.dataset.adapter = peft;
      if (Array.isArray(m.endpoints) && !m.endpoints.includes('/v1/chat/completions')) {
        o.disabled = true;
        o.textContent += ' (no chat)';
      }
      if (m.chat_template) o.title = `chat template: ${m.chat_template}`;
      modelSel.append(o);
    }
    // Keep the user's pick across reloads; otherwise start on the base (the list may put adapters first).
    const opts = [...modelSel.options].filter((o) => !o.disabled);
    const pick = opts.find((o) => o.value === keep) ?? opts.find((o) => !o.dataset.adapter) ?? opts[0];
    if (pick) modelSel.value = pick.value;
  }

  /**
   * Reads an SSE body as it arrives and calls onData with each event's data (the `data:` lines
   * of one event joined by newlines). Resolves at `data: [DONE]` or the end of the body.
   */
  async function readSSE(body, onData) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '', data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        buf += done ? dec.decode() : dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (nl === buf.length - 1 && buf[nl] === '\r' && !done) break; // maybe half of a \r\n
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (data.length) {
              const d = data.join('\n');
              data = [];
              if (d === '[DONE]') return;
              onData(d);
            }
          } else if (line.startsWith('data:')) {
            data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
          } // comments (":…") and other fields (event:, id:, retry:) carry nothing the page needs
        }
        if (done) {
          if (data.length && data.join('\n') !== '[DONE]') onData(data.join('\n'));
          return;
        }
      }
    } finally {
      reader.cancel().catch(() => {}); // a no-op after the end; frees the connection otherwise
    }
  }

  async function send() {
    const text = input.value.trim();
    if (!text || inflight) return;
    clearError();
    if (!modelSel.value) { showError('No model to talk to: the model list has none that can chat (check the API key).'); return; }
    input.value = '';
    // "New chat" replaces `history`; this turn's results go to the conversation it started in.
    const conv = history;
    const userDiv = bubble('user', text);
    conv.push({ role: 'user', content: text });
    const div = bubble('assistant', '');
    div.dataset.state = 'streaming';
    const content = div.querySelector('.content');
    const ctl = new AbortController();
    inflight = ctl;
    setBusy(true);
    const req = { model: modelSel.value, messages: conv, stream: true, stream_options: { include_usage: true } };
    const t = Number(tempIn.value), mt = Number(maxIn.value);
    if (tempIn.value !== '' && Number.isFinite(t)) req.temperature = t;
    if (maxIn.value !== '' && Number.isInteger(mt) && mt > 0) req.max_tokens = mt;
    let answer = '', finish = null, usage = null, first = 0;
    try {
      const res = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(true), body: JSON.stringify(req), signal: ctl.signal });
      if (!res.ok) throw new Error(await errorOf(res));
      await readSSE(res.body, (d) => {
        const chunk = JSON.parse(d);
        if (chunk.error) throw new Error(chunk.error.message ?? String(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        const c = chunk.choices && chunk.choices[0];
        if (!c) return;
        const piece = c.delta && c.delta.content;
        if (piece) {
          if (!answer) first = performance.now();
          answer += piece; content.textContent = answer; scrollDown();
        }
        if (c.finish_reason) finish = c.finish_reason;
      });
      const n = usage && usage.completion_tokens;
      const secs = (performance.now() - first) / 1000;
      let info = typeof n === 'number' ? `${n} token${n === 1 ? '' : 's'}` : '';
      if (info && n > 1 && first && secs > 0) info += `, ${((n - 1) / secs).toFixed(1)} tokens/s`;
      if (finish === 'length') info += `${info ? ' · ' : ''}stopped at the max tokens limit`;
      if (info) note(div, info);
      div.dataset.state = 'done';
      conv.push({ role: 'assistant', content: answer });
    } catch (e) {
      if (ctl.signal.aborted) {
        // Stopped by the user: what arrived stays, and is part of the conversation.
        div.dataset.state = 'stopped';
        note(div, 'Stopped.');
        conv.push({ role: 'assistant', content: answer });
      } else if (answer) {
        div.dataset.state = 'error';
        note(div, 'Interrupted.');
        conv.push({ role: 'assistant', content: answer });
        showError(e.message);
      } else {
        // Nothing came back: undo the turn so it can be sent again.
        div.remove();
        userDiv.remove();
        conv.pop();
        input.value = text;
        showError(e.message);
      }
    } finally {
      inflight = null;
      setBusy(false);
      input.focus();
    }
  }

  $('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  stopBtn.addEventListener('click', () => { if (inflight) inflight.abort(); });
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && inflight) inflight.abort(); });
  $('clear').addEventListener('click', () => {
    if (inflight) inflight.abort();
    history = [];
    transcript.replaceChildren();
    clearError();
    input.focus();
  });
  keyIn.addEventListener('change', () => {
    const key = keyIn.value.trim();
    if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
    loadModels();
  });

  setBusy(false);
  loadModels();
  input.focus();
})();
