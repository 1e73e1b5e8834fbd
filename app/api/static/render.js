/* How mail shows on the inbox page: a list row's contents, times and sizes,
   senders, plain text with its links. Mail data (senders, subjects, text) is
   attacker-controlled: it reaches the page only as text nodes and attribute
   values, never as markup. */

import { el } from './util.js';

function shortTime(when) {
  if (Number.isNaN(when.getTime())) return '';
  const today = new Date().toDateString() === when.toDateString();
  return today
    ? when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : when.toLocaleDateString([], { day: 'numeric', month: 'short' });
}

export function size(bytes) {
  if (bytes < 1024) return bytes + ' B';
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + ' KB';
  return (bytes / 1024 / 1024).toFixed(1) + ' MB';
}

export const person = (contact) => {
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
export function linkified(text) {
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

// The two shapes a message summary comes in: Mailpit's list, mail.tm's event.
export const fromList = (m) => ({
  id: m.ID, name: m.From ? m.From.Name : '', from: m.From ? m.From.Address : '',
  subject: m.Subject, intro: m.Snippet, date: m.Created, attachments: m.Attachments > 0,
  read: m.Read, reasons: m.JunkReasons || [],
});
export const fromEvent = (m) => ({
  id: m.id, name: m.from.name, from: m.from.address, subject: m.subject, intro: m.intro,
  date: m.createdAt, attachments: m.hasAttachments, read: m.seen, junk: Boolean(m.junk),
  reasons: m.junkReasons || [],
});
// Junk (README "Defence") is never in the main list: each view asks for its own.
export const junkText = (reasons) => 'Junk: ' + (reasons.join('; ') || 'marked by the checks');

// A list row's link, filled with summary `m`; `current`: it is the open message.
export function fillRow(link, m, current) {
  link.classList.toggle('unread', !m.read);
  link.setAttribute('aria-current', current ? 'true' : 'false');
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
