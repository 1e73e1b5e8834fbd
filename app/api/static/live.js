/* Live events: the address's new mail as server-sent events, from
   /.well-known/mercure?topic=/addresses/{address} (a claimed address's token
   in the URL, as EventSource cannot send a header). The stream is "live"
   while open; on any error "reconnecting", then a new stream after 0.5 s,
   doubling to 10 s (the page reads its list again on each open, to catch up). */

export function streamUrl(address, token) {
  let url = '/.well-known/mercure?topic=' + encodeURIComponent('/addresses/' + address);
  if (token) url += '&authorization=' + encodeURIComponent(token);
  return url;
}

export class LiveStream {
  // url(): where to connect now; onOpen(); onMessage(event); onState('live' | 'reconnecting').
  constructor({ url, onOpen, onMessage, onState }) {
    Object.assign(this, { url, onOpen, onMessage, onState });
    this.source = null;
    this.timer = 0;
    this.retry = 0;
  }

  connect() {
    clearTimeout(this.timer);
    const source = new EventSource(this.url());
    this.source = source;
    source.onopen = () => {
      this.retry = 0;
      this.onState('live');
      this.onOpen();
    };
    source.onmessage = this.onMessage;
    source.onerror = () => {
      source.close();
      if (this.source !== source) return;
      this.onState('reconnecting');
      this.timer = setTimeout(() => this.connect(), Math.min(10000, 500 * 2 ** this.retry));
      this.retry += 1;
    };
  }

  disconnect() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }

  // Runs `retry` after `ms`, unless the stream is (dis)connected first.
  later(retry, ms) {
    this.timer = setTimeout(retry, ms);
  }
}
