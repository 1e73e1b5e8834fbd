/* The inbox's search box and its two views (Inbox, Junk): which list the
   page asks Mailpit's search route for. */

import { $ } from './util.js';

// The list's path: the view's tag and the query (Mailpit's syntax), '' for none.
export const listPath = (junkView, search) => '/api/v1/search?query=' +
  encodeURIComponent((junkView ? 'tag:junk' : '-tag:junk') + (search ? ' ' + search : ''));

// Calls `searchFor(query)` 0.3 s after the typing stops, or at once on Enter.
export function watchSearchBox(searchFor) {
  let typing = 0;
  $('query').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => searchFor($('query').value.trim()), 300);
  });
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(typing);
    searchFor($('query').value.trim());
  });
}
