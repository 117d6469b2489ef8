// The scheme follows the page: wss:// on https pages, ws:// on http ones.
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/live");
