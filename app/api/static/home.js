/* "/": a random address on one of our domains, or one typed in. */

import { domainNames } from './api.js';
import { $, copy, el, looksLikeAddress } from './util.js';

function randomLocal() {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789'; // 32: no bias, no 0/o, 1/l
  const bytes = crypto.getRandomValues(new Uint8Array(10));
  return Array.from(bytes, (byte) => alphabet[byte % alphabet.length]).join('');
}

function note(text) {
  $('domains-note').textContent = text;
  $('domains-note').hidden = false;
}

export async function home() {
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
      note('That is not an address: name@domain.');
      return;
    }
    location.assign('/inbox/' + encodeURIComponent(chosen));
  });
  let names = [];
  try {
    names = await domainNames();
  } catch (error) { /* shown below as no domains */ }
  for (const name of names) domain.append(el('option', { value: name }, name));
  if (names.length) {
    domain.selectedIndex = crypto.getRandomValues(new Uint32Array(1))[0] % names.length;
  } else {
    domain.hidden = true;
    note('No domain is listed here: type a whole address.');
  }
  update();
}
