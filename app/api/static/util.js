/* What both pages use: element lookup and creation, copying to the clipboard,
   and whether a text looks like an address. Mail data goes through `el` only
   as text nodes and attribute values, never as markup. */

export const $ = (id) => document.getElementById(id);

// el('a', {class: 'row', href: '#x'}, child, 'text'): strings become text nodes.
export function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export async function copy(text, button) {
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

export const looksLikeAddress = (text) => /^[^@\s/]+@[^@\s/]+\.[^@\s/]+$/.test(text);
