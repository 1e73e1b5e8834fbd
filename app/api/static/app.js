/* The inbox page's script: "/" (pick an address) and "/inbox/{address}" (the
   live list and the reader), on the API's own routes:
     list, read, mark, delete, raw, parts: /mailpit/{address}/api/v1/...
     the message's HTML: /mailpit/{address}/view/{ID}.html in a sandboxed iframe
     new mail: server-sent events, /.well-known/mercure?topic=/addresses/{address}
     a claimed address: POST /token once, the token kept in sessionStorage.
   Mail data (senders, subjects, text) is attacker-controlled: it reaches the
   page only as text nodes and attribute values, never as markup. */
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // el('a', {class: 'row', href: '#x'}, child, 'text'): strings become text nodes.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? '' : String(value));
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  // fetch with JSON and a bearer token; a 429 (the API's rate limit) is retried.
  async function request(path, options = {}) {
    const headers = { Accept: 'application/json' };
    if (options.token) headers.Authorization = 'Bearer ' + options.token;
    let body;
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    for (let attempt = 0; ; attempt += 1) {
      // credentials: 'omit': no cookies, and a 401 with WWW-Authenticate (Mailpit's
      // routes send Basic) comes back to us instead of opening the browser's dialog.
      const response = await fetch(path, {
        method: options.method || 'GET', headers, body, cache: 'no-store', credentials: 'omit',
      });
      if (response.status !== 429 || attempt >= 4) return response;
      await sleep(1000 * (attempt + 1));
    }
  }

  async function copy(text, button) {
    let done = false;
    try {
      await navigator.clipboard.writeText(text);
      done = true;
    } catch (error) { // no clipboard API (plain http on a remote host): the old way
      const area = el('textarea', { class: 'offscreen', readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      try { done = document.execCommand('copy'); } catch (ignored) { done = false; }
      area.remove();
    }
    const label = button.dataset.label || (button.dataset.label = button.textContent);
    button.textContent = done ? 'Copied' : 'Press Ctrl+C';
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  const looksLikeAddress = (text) => /^[^@\s/]+@[^@\s/]+\.[^@\s/]+$/.test(text);

  // "/": a random address on one of our domains, or one typed in --------------------------

  function randomLocal() {
    const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789'; // 32: no bias, no 0/o, 1/l
    const bytes = crypto.getRandomValues(new Uint8Array(10));
    return Array.from(bytes, (byte) => alphabet[byte % alphabet.length]).join('');
  }

  async function home() {
    const local = $('local');
    const domain = $('domain');
    const address = () => {
      const typed = local.value.trim().toLowerCase();
      if (typed.includes('@')) return typed;
      return typed && domain.value ? typed + '@' + domain.value : typed;
    };
    const update = () => {
      $('address').textContent = address();
      domain.disabled = local.value.includes('@');
    };
    local.value = randomLocal();
    local.addEventListener('input', update);
    domain.addEventListener('change', update);
    $('random').addEventListener('click', () => { local.value = randomLocal(); update(); });
    $('copy').addEventListener('click', () => copy(address(), $('copy')));
    $('pick').addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = address();
      if (!looksLikeAddress(chosen)) {
        $('domains-note').textContent = 'That is not an address: name@domain.';
        $('domains-note').hidden = false;
        return;
      }
      location.assign('/inbox/' + encodeURIComponent(chosen));
    });
    let names = [];
    try {
      const response = await request('/domains');
      if (response.ok) names = (await response.json()).map((entry) => entry.domain);
    } catch (error) { /* shown below as no domains */ }
    for (const name of names) domain.append(el('option', { value: name }, name));
    if (names.length) {
      domain.selectedIndex = crypto.getRandomValues(new Uint32Array(1))[0] % names.length;
    } else {
      domain.hidden = true;
      $('domains-note').textContent = 'No domain is listed here: type a whole address.';
      $('domains-note').hidden = false;
    }
    update();
  }

  // "/inbox/{address}" ------------------------------------------------------------------

  const PAGE = 50;
  const MAX_SOURCE = 1000000; // characters of source shown; the download has it all

  class LoginNeeded extends Error {}

  function shortTime(when) {
    if (Number.isNaN(when.getTime())) return '';
    const today = new Date().toDateString() === when.toDateString();
    return today
      ? when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : when.toLocaleDateString([], { day: 'numeric', month: 'short' });
  }

  function size(bytes) {
    if (bytes < 1024) return bytes + ' B';
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + ' KB';
    return (bytes / 1024 / 1024).toFixed(1) + ' MB';
  }

  const person = (contact) => {
    if (!contact || !contact.Address) return '';
    return contact.Name ? contact.Name + ' <' + contact.Address + '>' : contact.Address;
  };

  function clipIcon() {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', 'clip');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', 'has attachments');
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d',
      'M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5');
    svg.append(path);
    return svg;
  }

  // Plain text with its http(s) URLs as links (sign-up links are what people came for).
  function linkified(text) {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(/\bhttps?:\/\/[^\s<>"']+/gi)) {
      const url = match[0].replace(/[.,;:!?)\]}]+$/, '');
      parts.push(text.slice(last, match.index));
      parts.push(el('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, url));
      last = match.index + url.length;
    }
    parts.push(text.slice(last));
    return parts;
  }

  // A link we show as a link: http(s) only (never javascript:, data:, ...), or null.
  function webLink(text) {
    let url;
    try { url = new URL(String(text)); } catch (error) { return null; }
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  }

  // The reader's one-time codes, each with a "copy code" button, and the
  // verification link (README "Codes and links"): text nodes and an http(s) href.
  function codeItems(codes, link) {
    const items = [];
    for (const code of codes) {
      const button = el('button', { type: 'button', class: 'copy-code', 'data-code': code },
        'Copy code');
      button.addEventListener('click', () => copy(code, button));
      items.push(el('span', { class: 'code', translate: 'no' }, code), button);
    }
    const href = webLink(link);
    if (href) {
      items.push(el('a', { class: 'open-link', href, target: '_blank',
        rel: 'noopener noreferrer', referrerpolicy: 'no-referrer' }, 'Open link'));
    }
    return items;
  }

  // The two shapes a message summary comes in: Mailpit's list, mail.tm's event.
  const fromList = (m) => ({
    id: m.ID, name: m.From ? m.From.Name : '', from: m.From ? m.From.Address : '',
    subject: m.Subject, intro: m.Snippet, date: m.Created, attachments: m.Attachments > 0,
    read: m.Read, reasons: m.JunkReasons || [],
  });
  const fromEvent = (m) => ({
    id: m.id, name: m.from.name, from: m.from.address, subject: m.subject, intro: m.intro,
    date: m.createdAt, attachments: m.hasAttachments, read: m.seen, junk: Boolean(m.junk),
    reasons: m.junkReasons || [],
  });
  // Junk (README "Defence") is never in the main list: each view asks for its own.
  const junkText = (reasons) => 'Junk: ' + (reasons.join('; ') || 'marked by the checks');

  function inbox() {
    const address = decodeURIComponent(location.pathname.slice('/inbox/'.length))
      .trim().toLowerCase();
    const base = '/mailpit/' + encodeURIComponent(address);
    const tokenKey = 'tempmail.token:' + address;
    let token = sessionStorage.getItem(tokenKey) || '';
    const rows = new Map(); // id -> {data, node, link}
    let order = []; // ids, newest first
    let total = 0;
    let shown = null; // the open message: {id, html, read}
    let opening = 0;
    let marks = 0; // read/unread changes made here, numbered
    const markedAt = new Map(); // id -> the number of its last change
    const live = { source: null, timer: 0, retry: 0, seq: 0, log: [] };
    let junkView = false; // the Junk view: mail the inbound checks stored as junk
    let search = ''; // the search box's query (Mailpit's syntax), '' for none
    const listPath = () => '/api/v1/search?query=' +
      encodeURIComponent((junkView ? 'tag:junk' : '-tag:junk') + (search ? ' ' + search : ''));
    let listing = 0; // list reads started, numbered: only the latest one is shown
    let refused = false; // mail to this address's domain is not received here

    $('address').textContent = address;
    $('empty-address').textContent = address;
    $('login-address').value = address; // for password managers
    $('copy').addEventListener('click', () => copy(address, $('copy')));

    function report(error) {
      if (error instanceof LoginNeeded) return;
      $('problem').textContent = 'Could not reach the server (' + error.message + '): retrying.';
      $('problem').hidden = false;
    }

    async function api(path, options = {}) {
      const response = await request(base + path, { ...options, token });
      if (response.status === 401) {
        askPassword(token ? 'Your session has ended: enter the password again.' : '');
        throw new LoginNeeded();
      }
      if (!response.ok) throw new Error('HTTP ' + response.status);
      $('problem').hidden = true;
      return response;
    }

    function setLive(state) {
      $('live').dataset.state = state;
      $('live').textContent = state;
    }

    // The list ----------------------------------------------------------------------

    function fillRow(link, m) {
      link.classList.toggle('unread', !m.read);
      link.setAttribute('aria-current', shown && shown.id === m.id ? 'true' : 'false');
      const when = new Date(m.date);
      link.replaceChildren(
        el('span', { class: 'dot' }, m.read ? null : el('span', { class: 'sr' }, 'unread')),
        el('span', { class: 'from' }, m.name || m.from || '(no sender)'),
        el('time', { class: 'time', datetime: m.date, title: when.toLocaleString() },
          shortTime(when)),
        el('span', { class: 'subject' }, m.subject || '(no subject)'),
        el('span', { class: 'mark' }, m.attachments ? clipIcon() : null),
        el('span', { class: 'intro' }, m.reasons.length ? junkText(m.reasons) : m.intro || ''),
      );
    }

    function upsert(m) {
      const known = rows.get(m.id);
      if (known) {
        known.data = m;
        fillRow(known.link, m);
        return;
      }
      const link = el('a', { class: 'row', href: '#' + m.id, 'data-id': m.id });
      rows.set(m.id, { data: m, node: el('li', {}, link), link });
      fillRow(link, m);
    }

    // Puts the rows in `order` without moving those already in place (focus stays).
    function render() {
      const list = $('messages');
      order.forEach((id, index) => {
        const node = rows.get(id).node;
        if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
      });
      while (list.children.length > order.length) list.lastElementChild.remove();
      const unread = order.filter((id) => !rows.get(id).data.read).length;
      $('count').textContent = unread ? unread + ' unread' : '';
      document.title = (unread ? '(' + unread + ') ' : '') + address;
      $('empty').hidden = order.length > 0 || !$('login').hidden || refused || Boolean(search);
      $('no-match').hidden = order.length > 0 || !search;
      $('more').hidden = order.length >= total;
    }

    // The first page again (as long as what is shown): after a (re)connect, and at start.
    async function refresh() {
      const mark = live.seq;
      const marked = marks;
      const mine = ++listing;
      const response = await api(listPath() + '&limit=' + Math.max(PAGE, order.length));
      const body = await response.json();
      if (mine !== listing) return; // a newer read (another query, newer mail) is on its way
      const fresh = body.messages.map(fromList);
      const listed = new Set(fresh.map((m) => m.id));
      // Pushed while the list was being read, and committed after it: keep them.
      const late = live.log
        .filter(([seq, id]) => seq > mark && !listed.has(id) && rows.has(id)).map(([, id]) => id);
      order = [...late.reverse(), ...fresh.map((m) => m.id)];
      const kept = new Set(order);
      for (const id of [...rows.keys()]) if (!kept.has(id)) rows.delete(id);
      for (const m of fresh) { // a change made here after the list was read wins
        const known = rows.get(m.id);
        if (known && (markedAt.get(m.id) || 0) > marked) m.read = known.data.read;
        upsert(m);
      }
      total = body.messages_count + late.length;
      render();
    }

    async function more() {
      const response = await api(listPath() + '&start=' + order.length + '&limit=' + PAGE);
      const body = await response.json();
      for (const m of body.messages.map(fromList)) {
        if (!rows.has(m.id)) order.push(m.id);
        upsert(m);
      }
      total = body.messages_count;
      render();
    }

    function pushed(event) {
      let data;
      try { data = JSON.parse(event.data); } catch (error) { return; }
      if (!data || data['@type'] !== 'Message' || !data.id) return;
      const m = fromEvent(data);
      if (m.junk !== junkView) return; // it belongs to the other view
      if (search) { // does it match? The server's search says: read the list again
        refresh().catch(report);
        return;
      }
      if (!rows.has(m.id)) {
        order.unshift(m.id);
        total += 1;
        live.log.push([++live.seq, m.id]);
        if (live.log.length > 200) live.log.shift();
      }
      upsert(m);
      render();
    }

    // The stream: "live" while open; on any error, "reconnecting", then a new stream
    // (after 0.5 s, doubling to 10 s) and the list read again to catch up.
    function connect() {
      clearTimeout(live.timer);
      let url = '/.well-known/mercure?topic=' + encodeURIComponent('/addresses/' + address);
      if (token) url += '&authorization=' + encodeURIComponent(token);
      const source = new EventSource(url);
      live.source = source;
      source.onopen = () => {
        live.retry = 0;
        setLive('live');
        refresh().catch(report);
      };
      source.onmessage = pushed;
      source.onerror = () => {
        source.close();
        if (live.source !== source) return;
        setLive('reconnecting');
        live.timer = setTimeout(connect, Math.min(10000, 500 * 2 ** live.retry));
        live.retry += 1;
      };
    }

    function disconnect() {
      clearTimeout(live.timer);
      if (live.source) live.source.close();
      live.source = null;
    }

    // Mail to a domain this server does not receive is refused: say so, not "waiting".
    async function checkServed() {
      const response = await request('/addresses/' + encodeURIComponent(address));
      if (!response.ok) return;
      const status = await response.json();
      refused = status.served === false;
      $('refused-address').textContent = address;
      $('refused-domain').textContent = status.domain;
      $('refused').hidden = !refused;
      render();
    }

    async function start() {
      checkServed().catch(() => {}); // unknown: the list's own errors are reported
      try {
        await refresh();
      } catch (error) {
        report(error);
        if (!(error instanceof LoginNeeded)) live.timer = setTimeout(start, 2000);
        return;
      }
      connect();
      route();
    }

    // A claimed address ----------------------------------------------------------------

    function askPassword(message) {
      disconnect();
      token = '';
      sessionStorage.removeItem(tokenKey);
      setLive('locked');
      $('login').hidden = false;
      if (shown) close();
      rows.clear(); // nothing of this address stays on screen without its password
      order = [];
      total = 0;
      render();
      $('login-error').textContent = message;
      $('password').focus();
    }

    $('login').addEventListener('submit', async (event) => {
      event.preventDefault();
      const response = await request('/token', {
        method: 'POST', json: { address, password: $('password').value },
      });
      if (!response.ok) {
        $('login-error').textContent = response.status === 401
          ? 'Wrong password.' : 'Could not log in (HTTP ' + response.status + ').';
        return;
      }
      token = (await response.json()).token;
      sessionStorage.setItem(tokenKey, token);
      $('password').value = '';
      $('login').hidden = true;
      start();
    });

    // The reader ------------------------------------------------------------------------

    function viewUrl(id, images) {
      const query = new URLSearchParams();
      if (images) query.set('remoteImages', '1');
      if (token) query.set('authorization', token);
      const text = query.toString();
      return base + '/view/' + encodeURIComponent(id) + '.html' + (text ? '?' + text : '');
    }

    async function save(url, name) { // a download that needs the token
      const response = await api(url.slice(base.length));
      const link = el('a', { href: URL.createObjectURL(await response.blob()), download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    }

    function fileItem(id, file) {
      const url = base + '/api/v1/message/' + encodeURIComponent(id) + '/part/' +
        encodeURIComponent(file.PartID);
      const name = file.FileName || 'part-' + file.PartID;
      const link = el('a', { href: url, download: name, rel: 'noopener noreferrer' }, name);
      if (token) {
        link.addEventListener('click', (event) => {
          event.preventDefault();
          save(url, name).catch(report);
        });
      }
      return el('li', {}, link, el('span', { class: 'size' }, size(file.Size)));
    }

    function markRow(id, read) {
      const row = rows.get(id);
      if (!row) return;
      markedAt.set(id, ++marks);
      row.data.read = read;
      fillRow(row.link, row.data);
      render();
    }

    async function open(id) {
      const mine = ++opening;
      const response = await api('/api/v1/message/' + encodeURIComponent(id)); // marks it read
      const m = await response.json();
      if (mine !== opening) return;
      const previous = shown && rows.get(shown.id);
      shown = { id, html: Boolean(m.HTML), read: true };
      if (previous) fillRow(previous.link, previous.data);
      $('m-subject').textContent = m.Subject || '(no subject)';
      $('m-from').textContent = person(m.From) || m.ReturnPath || '(no sender)';
      $('m-to').textContent = (m.To || []).map(person).join(', ') || address;
      $('m-date').textContent = new Date(m.Date).toLocaleString();
      $('m-junk').textContent = (m.Tags || []).includes('junk') ? junkText(m.JunkReasons || []) : '';
      $('m-junk').hidden = !(m.Tags || []).includes('junk');
      $('m-codes').replaceChildren(...codeItems(m.Codes || [], m.VerifyLink));
      $('m-codes').hidden = $('m-codes').childElementCount === 0;
      const files = [...(m.Attachments || []), ...(m.Inline || [])];
      $('m-attachments').replaceChildren(...files.map((file) => fileItem(id, file)));
      $('m-attachments').hidden = files.length === 0;
      $('m-html').hidden = !shown.html;
      $('m-html').src = shown.html ? viewUrl(id, false) : 'about:blank';
      $('m-text').hidden = shown.html;
      $('m-text').replaceChildren(...(shown.html ? [] : linkified(m.Text || '')));
      $('images').hidden = !shown.html;
      $('images').disabled = false;
      $('images').textContent = 'Load images';
      $('images-note').hidden = !shown.html;
      $('m-source').hidden = true;
      $('m-source').textContent = '';
      $('source').textContent = 'View source';
      $('toggle-read').textContent = 'Mark unread';
      $('message').hidden = false;
      $('reader-empty').hidden = true;
      document.body.classList.add('reading');
      markRow(id, true);
      if (matchMedia('(max-width: 699px)').matches) $('m-subject').focus();
    }

    function close() {
      const was = shown && rows.get(shown.id);
      shown = null;
      opening += 1;
      $('message').hidden = true;
      $('m-html').src = 'about:blank';
      $('reader-empty').hidden = false;
      document.body.classList.remove('reading');
      if (was) {
        fillRow(was.link, was.data);
        was.link.focus();
      }
    }

    function route() {
      const id = decodeURIComponent(location.hash.slice(1));
      if (id) open(id).catch(report);
      else if (shown) close();
    }

    $('back').addEventListener('click', () => { location.hash = ''; });
    $('more').addEventListener('click', () => more().catch(report));
    function relist() { // another view or search: its own list, read afresh
      order = [];
      rows.clear();
      total = 0;
      render();
      refresh().catch((error) => {
        if (search && error.message === 'HTTP 400') { // Mailpit's answer to a bad query
          $('problem').textContent = 'This search is not understood (at most 20 terms).';
          $('problem').hidden = false;
        } else report(error);
      });
    }
    let typing = 0;
    function searchFor(query) {
      if (query === search) return;
      search = query;
      relist();
    }
    $('query').addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => searchFor($('query').value.trim()), 300);
    });
    $('search').addEventListener('submit', (event) => {
      event.preventDefault();
      clearTimeout(typing);
      searchFor($('query').value.trim());
    });
    $('junk-view').addEventListener('click', () => { // the other view: its own list
      junkView = !junkView;
      $('list-name').textContent = junkView ? 'Junk' : 'Inbox';
      $('junk-view').textContent = junkView ? 'Inbox' : 'Junk';
      relist();
    });
    $('messages').addEventListener('click', (event) => {
      const link = event.target.closest('a.row');
      if (link && location.hash === '#' + link.dataset.id) { // already the hash: open again
        event.preventDefault();
        open(link.dataset.id).catch(report);
      }
    });
    $('messages').addEventListener('keydown', (event) => { // arrows move between rows
      if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
      const item = event.target.closest('li');
      const next = item && (event.key === 'ArrowDown'
        ? item.nextElementSibling : item.previousElementSibling);
      if (next) {
        event.preventDefault();
        next.querySelector('a').focus();
      }
    });
    // A button's handler; a failure is reported, not left unhandled.
    const on = (id, handler) => $(id).addEventListener('click', () => {
      if (shown) handler(shown).catch(report);
    });
    on('toggle-read', async ({ id, read: wasRead }) => {
      await api('/api/v1/messages', { method: 'PUT', json: { IDs: [id], Read: !wasRead } });
      if (shown && shown.id === id) {
        shown.read = !wasRead;
        $('toggle-read').textContent = shown.read ? 'Mark unread' : 'Mark read';
      }
      markRow(id, !wasRead);
    });
    on('images', async ({ id }) => {
      $('m-html').src = viewUrl(id, true);
      $('images').disabled = true;
      $('images').textContent = 'Images loaded';
      $('images-note').hidden = true;
    });
    on('source', async ({ id }) => {
      const pre = $('m-source');
      if (!pre.hidden) {
        pre.hidden = true;
        $('source').textContent = 'View source';
        return;
      }
      const response = await api('/api/v1/message/' + encodeURIComponent(id) + '/raw');
      const text = await response.text();
      pre.textContent = text.length > MAX_SOURCE ? text.slice(0, MAX_SOURCE) + '\n[...]' : text;
      pre.hidden = false;
      $('source').textContent = 'Hide source';
    });
    on('delete', async ({ id }) => {
      await api('/api/v1/messages', { method: 'DELETE', json: { IDs: [id] } });
      rows.delete(id);
      order = order.filter((other) => other !== id);
      total -= 1;
      close();
      if (location.hash) location.hash = '';
      render();
    });
    window.addEventListener('hashchange', route);

    if (!looksLikeAddress(address)) {
      $('problem').textContent = 'This is not an address: go back and pick one.';
      $('problem').hidden = false;
      setLive('stopped');
      return;
    }
    start();
  }

  if (document.body.dataset.page === 'home') home();
  if (document.body.dataset.page === 'inbox') inbox();
})();
