/* The page's script, an ES module: "/" (pick an address: home.js) and
   "/inbox/{address}" (the live list and the reader: inbox.js), on the API's
   own routes (api.js), with new mail as server-sent events (live.js).
   The modules it imports are this origin's files in /static/, as the page's
   Content-Security-Policy (script-src 'self') requires. Mail data (senders,
   subjects, text) is attacker-controlled: it reaches the page only as text
   nodes and attribute values, never as markup (render.js). */

import { home } from './home.js';
import { inbox } from './inbox.js';

if (document.body.dataset.page === 'home') home();
if (document.body.dataset.page === 'inbox') inbox();
