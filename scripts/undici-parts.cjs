'use strict';
// What the bundles take from undici, in place of its index (scripts/bundle.mjs resolves `undici`
// here). The index loads every part of undici at start-up: fetch, WebSocket, EventSource, caches,
// mocks, proxies and a second, experimental HTTP parser (Milo); 765 KB of the 2.1 MB Lambda bundle,
// parsed and run on every cold start. The Graphite client uses only what is exported below;
// test/unit/undici-parts.test.ts checks that these are undici's own objects and that every name
// functions/ imports from undici is here.
const Dispatcher = require('undici/lib/dispatcher/dispatcher.js');
const request = require('undici/lib/api/api-request.js');

// As undici's index does for every API method: Dispatcher#request is the one the client calls.
if (Dispatcher.prototype.request === undefined) Dispatcher.prototype.request = request;

module.exports = {
  Agent: require('undici/lib/dispatcher/agent.js'),
  Dispatcher,
  interceptors: { retry: require('undici/lib/interceptor/retry.js') },
};
