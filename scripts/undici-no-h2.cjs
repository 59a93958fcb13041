'use strict';
// Stands for undici's HTTP/2 client (lib/dispatcher/client-h2.js) in the bundles: see the
// undici-parts plugin in scripts/bundle.mjs. A connection reaches it only when it negotiated
// HTTP/2, and the Graphite client turns allowH2 off (functions/adapters/graphite.ts); should that
// change, this says so instead of speaking HTTP/1.1 to an HTTP/2 connection.
module.exports = function connectH2() {
  throw new Error('HTTP/2 is not in this bundle (scripts/undici-no-h2.cjs): the Graphite client speaks HTTP/1.1, allowH2 off');
};
