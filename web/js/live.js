// Live chart data: a WebSocket subscription to /v1/live (snapshot, then one
// update per closed bucket), or, when the socket cannot be opened or fails,
// the query op polled every 2 s. The socket is retried with backoff while
// polling; the indicator says which is in use.
//
// Protocol of /v1/live:
//   -> {"op":"subscribe","id":ID,"query":{...the query op's fields...}}
//   <- {"id":ID,"ok":true,"type":"snapshot", ...the query reply...}
//   <- {"id":ID,"type":"update","series":[{"tags":{..},"points":[..]}]}
//   -> {"op":"unsubscribe","id":ID}
//   <- {"id":ID,"ok":false,"error":{"code":..,"message":..}}
import { api, ApiError, socketProtocols } from "./util.js";

const POLL_MS = 2000;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

export class LiveFeed {
  /// handlers: onSnapshot(reply), onUpdate(series), onError(err), onMode(mode)
  constructor(handlers) {
    this.h = handlers;
    this.query = null;       // the query op's fields, without "op"
    this.subId = null;       // id of the current subscription
    this.seq = 0;
    this.ws = null;
    this.wsOpen = false;
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.pollTimer = null;
    this.polling = false;
    this.stopped = true;
    this.mode = "off";
    this.setMode("off");
  }

  setMode(mode) {
    this.mode = mode;
    this.h.onMode(mode);
  }

  /// Follows `query` (null stops). `live` false: one answer, no updates.
  follow(query, live) {
    this.unsubscribe();
    this.query = query;
    this.stopped = !query;
    this.live = live;
    this.stopPolling();
    if (!query) { this.setMode("off"); return; }
    if (!live) { this.setMode("off"); this.pollOnce(); return; }
    if (this.wsOpen) { this.subscribe(); return; }
    // Until the socket is open (or fails) the chart is not left empty.
    this.startPolling();
    if (!this.ws && !this.retryTimer) this.connect();
  }

  connect() {
    this.retryTimer = null;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/v1/live`, socketProtocols());
    } catch (e) {
      this.socketFailed();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.wsOpen = true;
      this.backoff = BACKOFF_MIN_MS;
      if (!this.stopped && this.live) this.subscribe();
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    // close follows error; one place handles both.
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.wsOpen = false;
      this.subId = null;
      this.socketFailed();
    };
  }

  socketFailed() {
    if (!this.stopped && this.live) this.startPolling();
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  subscribe() {
    this.subId = `q${++this.seq}`;
    this.ws.send(JSON.stringify({ op: "subscribe", id: this.subId, query: this.query }));
    this.stopPolling();
    this.setMode("websocket");
  }

  unsubscribe() {
    if (this.subId && this.wsOpen) {
      try { this.ws.send(JSON.stringify({ op: "unsubscribe", id: this.subId })); } catch (e) { /* closing */ }
    }
    this.subId = null;
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      this.h.onError(new ApiError("live_bad_frame", "the live feed sent a frame that is not JSON"));
      return;
    }
    if (msg.id !== this.subId) return;  // an older subscription's late frames
    if (msg.ok === false) {
      const err = msg.error || {};
      this.h.onError(new ApiError(err.code || "error", err.message || "subscription failed"));
      // A recovering node refuses for a while: ask again (the same query).
      if (err.code === "unavailable") {
        const id = this.subId;
        setTimeout(() => { if (this.subId === id && this.wsOpen) this.subscribe(); }, POLL_MS);
      }
      return;
    }
    if (msg.type === "snapshot") this.h.onSnapshot(msg);
    else if (msg.type === "update") this.h.onUpdate(msg.series || []);
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    this.setMode("polling");
    const tick = async () => {
      if (!this.polling) return;
      await this.pollOnce();
      if (this.polling) this.pollTimer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  /// A poll's answer still wanted: same query, and no subscription took
  /// over while it was under way.
  current(query) {
    return query === this.query && (this.polling || !this.live);
  }

  async pollOnce() {
    const query = this.query;
    try {
      const reply = await api({ op: "query", ...query });
      if (this.current(query)) this.h.onSnapshot(reply);
    } catch (e) {
      if (this.current(query)) this.h.onError(e);
    }
  }
}
