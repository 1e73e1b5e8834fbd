/* The reader's one-time codes, each with a "copy code" button, and the
   verification link (README "Codes and links"): text nodes and an http(s) href. */

import { copy, el } from './util.js';

// A link we show as a link: http(s) only (never javascript:, data:, ...), or null.
function webLink(text) {
  let url;
  try { url = new URL(String(text)); } catch (error) { return null; }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
}

export function codeItems(codes, link) {
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
