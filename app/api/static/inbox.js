/* "/inbox/{address}": the live list and the reader. The list is read from
   Mailpit's per-address routes (api.js) and kept up to date from the
   address's stream (live.js); the message's HTML is shown from
   /mailpit/{address}/view/{ID}.html in a sandboxed iframe. One address per
   document: its state is this module's. */

import { LoginNeeded, addressApi, login, servedStatus } from './api.js';
import { codeItems } from './codes.js';
import { LiveStream, streamUrl } from './live.js';
import { fillRow, fromEvent, fromList, junkText, linkified, person, size } from './render.js';
import { listPath, watchSearchBox } from './search.js';
import { $, copy, el, looksLikeAddress } from './util.js';

const PAGE = 50;
const MAX_SOURCE = 1000000; // characters of source shown; the download has it all

let address = '';
let base = ''; // the address's Mailpit routes
let tokenKey = '';
let token = '';
const rows = new Map(); // id -> {data, node, link}
let order = []; // ids, newest first
let total = 0;
let shown = null; // the open message: {id, html, read}
let opening = 0;
let marks = 0; // read/unread changes made here, numbered
const markedAt = new Map(); // id -> the number of its last change
const pushedLog = { seq: 0, entries: [] }; // [seq, id] of the rows pushed, the last 200
let junkView = false; // the Junk view: mail the inbound checks stored as junk
let search = ''; // the search box's query (Mailpit's syntax), '' for none
let listing = 0; // list reads started, numbered: only the latest one is shown
let refused = false; // mail to this address's domain is not received here
let api = null;
let live = null;

function report(error) {
  if (error instanceof LoginNeeded) return;
  $('problem').textContent = 'Could not reach the server (' + error.message + '): retrying.';
  $('problem').hidden = false;
}

function setLive(state) {
  $('live').dataset.state = state;
  $('live').textContent = state;
}

// The list ----------------------------------------------------------------------

const fill = (link, m) => fillRow(link, m, shown && shown.id === m.id);

function upsert(m) {
  const known = rows.get(m.id);
  if (known) {
    known.data = m;
    fill(known.link, m);
    return;
  }
  const link = el('a', { class: 'row', href: '#' + m.id, 'data-id': m.id });
  rows.set(m.id, { data: m, node: el('li', {}, link), link });
  fill(link, m);
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
  const mark = pushedLog.seq;
  const marked = marks;
  const mine = ++listing;
  const limit = Math.max(PAGE, order.length);
  const response = await api(listPath(junkView, search) + '&limit=' + limit);
  const body = await response.json();
  if (mine !== listing) return; // a newer read (another query, newer mail) is on its way
  const fresh = body.messages.map(fromList);
  const listed = new Set(fresh.map((m) => m.id));
  // Pushed while the list was being read, and committed after it: keep them.
  const late = pushedLog.entries
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
  const response = await api(listPath(junkView, search) + '&start=' + order.length +
    '&limit=' + PAGE);
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
    pushedLog.entries.push([++pushedLog.seq, m.id]);
    if (pushedLog.entries.length > 200) pushedLog.entries.shift();
  }
  upsert(m);
  render();
}

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

// Mail to a domain this server does not receive is refused: say so, not "waiting".
async function checkServed() {
  const status = await servedStatus(address);
  if (!status) return;
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
    if (!(error instanceof LoginNeeded)) live.later(start, 2000);
    return;
  }
  live.connect();
  route();
}

// A claimed address ----------------------------------------------------------------

function askPassword(message) {
  live.disconnect();
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

async function logIn(event) {
  event.preventDefault();
  const response = await login(address, $('password').value);
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
}

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
  fill(row.link, row.data);
  render();
}

async function open(id) {
  const mine = ++opening;
  const response = await api('/api/v1/message/' + encodeURIComponent(id)); // marks it read
  const m = await response.json();
  if (mine !== opening) return;
  const previous = shown && rows.get(shown.id);
  shown = { id, html: Boolean(m.HTML), read: true };
  if (previous) fill(previous.link, previous.data);
  showMessage(id, m);
  $('message').hidden = false;
  $('reader-empty').hidden = true;
  document.body.classList.add('reading');
  markRow(id, true);
  if (matchMedia('(max-width: 699px)').matches) $('m-subject').focus();
}

// The reader's fields for message `m` (Mailpit's message), its buttons reset.
function showMessage(id, m) {
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
    fill(was.link, was.data);
    was.link.focus();
  }
}

function route() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id) open(id).catch(report);
  else if (shown) close();
}

// The page's controls ---------------------------------------------------------------

function watchList() {
  $('more').addEventListener('click', () => more().catch(report));
  watchSearchBox((query) => {
    if (query === search) return;
    search = query;
    relist();
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
}

// A reader button's handler; a failure is reported, not left unhandled.
const onButton = (id, handler) => $(id).addEventListener('click', () => {
  if (shown) handler(shown).catch(report);
});

async function toggleRead({ id, read: wasRead }) {
  await api('/api/v1/messages', { method: 'PUT', json: { IDs: [id], Read: !wasRead } });
  if (shown && shown.id === id) {
    shown.read = !wasRead;
    $('toggle-read').textContent = shown.read ? 'Mark unread' : 'Mark read';
  }
  markRow(id, !wasRead);
}

async function toggleSource({ id }) {
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
}

async function remove({ id }) {
  await api('/api/v1/messages', { method: 'DELETE', json: { IDs: [id] } });
  rows.delete(id);
  order = order.filter((other) => other !== id);
  total -= 1;
  close();
  if (location.hash) location.hash = '';
  render();
}

function watchReader() {
  $('back').addEventListener('click', () => { location.hash = ''; });
  onButton('toggle-read', toggleRead);
  onButton('images', async ({ id }) => {
    $('m-html').src = viewUrl(id, true);
    $('images').disabled = true;
    $('images').textContent = 'Images loaded';
    $('images-note').hidden = true;
  });
  onButton('source', toggleSource);
  onButton('delete', remove);
  window.addEventListener('hashchange', route);
}

export function inbox() {
  address = decodeURIComponent(location.pathname.slice('/inbox/'.length)).trim().toLowerCase();
  base = '/mailpit/' + encodeURIComponent(address);
  tokenKey = 'tempmail.token:' + address;
  token = sessionStorage.getItem(tokenKey) || '';
  api = addressApi(base, () => token, (was) => {
    askPassword(was ? 'Your session has ended: enter the password again.' : '');
  }, () => { $('problem').hidden = true; });
  live = new LiveStream({
    url: () => streamUrl(address, token),
    onOpen: () => refresh().catch(report),
    onMessage: pushed,
    onState: setLive,
  });
  $('address').textContent = address;
  $('empty-address').textContent = address;
  $('login-address').value = address; // for password managers
  $('copy').addEventListener('click', () => copy(address, $('copy')));
  $('login').addEventListener('submit', logIn);
  watchList();
  watchReader();
  if (!looksLikeAddress(address)) {
    $('problem').textContent = 'This is not an address: go back and pick one.';
    $('problem').hidden = false;
    setLive('stopped');
    return;
  }
  start();
}
