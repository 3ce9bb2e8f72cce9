#!/usr/bin/env node
// RocketMQ 4.x remoting acceptance test with npm ali-ons@3.12.0 (pure JS).
//
//   node client4.js smoke    --namesrv H:P --topic T --group G
//   node client4.js failover --namesrv H:P --topic T --group G --seconds 30
//
// Prints one JSON line; exits 1 if any check fails.
// ali-ons has no oneway send and no orderly (locking) consumer: the oneway
// check is reported as "n/a"; per-queue order is checked on a normal consumer
// (ali-ons consumes each queue sequentially with parallelConsumeLimit=1).
'use strict';

const crypto = require('crypto');
const { Producer, Consumer, Message } = require('ali-ons');

const RUN = crypto.randomBytes(4).toString('hex');
const sleep = ms => new Promise(r => setTimeout(r, ms));
const VERBOSE = !!process.env.SDK4_VERBOSE;
const errors = [];
const logger = {
  info() {}, debug() {},
  warn(...a) { if (VERBOSE) console.error('[warn]', ...a); },
  error(...a) { if (VERBOSE) console.error('[error]', ...a); },
};

function parseArgs() {
  const a = { namesrv: '127.0.0.1:9876', seconds: 30, interval: 20, settle: 5, timeout: 35 };
  const argv = process.argv.slice(2);
  a.mode = argv.shift();
  while (argv.length) {
    const k = argv.shift().replace(/^--/, '');
    a[k] = argv.shift();
  }
  for (const k of [ 'seconds', 'interval', 'settle', 'timeout' ]) a[k] = Number(a[k]);
  if (![ 'smoke', 'failover' ].includes(a.mode) || !a.topic || !a.group) {
    console.error('usage: client4.js smoke|failover --namesrv H:P --topic T --group G [--seconds N]');
    process.exit(2);
  }
  return a;
}

const common = args => ({
  nameSrv: args.namesrv,
  httpclient: { request() { throw new Error('unused: nameSrv is set'); } },
  logger,
});

// Records deliveries by body. failOnce: bodies whose first delivery throws (-> retry topic).
class Recorder {
  constructor(failOnce = []) { this.got = new Map(); this.failOnce = new Set(failOnce); }
  async handle(msg) {
    const body = msg.body ? msg.body.toString() : '';
    const rec = { t: Date.now(), q: msg.queueId, off: msg.queueOffset, rt: msg.reconsumeTimes, tags: msg.tags, keys: msg.keys };
    if (!this.got.has(body)) this.got.set(body, []);
    this.got.get(body).push(rec);
    if (this.failOnce.delete(body)) throw new Error('intentional failure for retry test');
  }
  have(bodies) { return bodies.filter(b => this.got.has(b)); }
}

async function startConsumer(args, group, rec, extra = {}) {
  const c = new Consumer(Object.assign(common(args), { consumerGroup: group, consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' }, extra));
  c.on('error', err => { if (!/intentional failure/.test(err.message) && VERBOSE) console.error('[consumer]', err.message); });
  c.subscribe(args.topic, '*', async msg => rec.handle(msg));
  await c.ready();
  return c;
}

async function startProducer(args) {
  const p = new Producer(Object.assign(common(args), { producerGroup: args.group + '_P', retryTimesWhenSendFailed: 2 }));
  p.on('error', err => { if (VERBOSE) console.error('[producer]', err.message); });
  await p.ready();
  return p;
}

function newMsg(topic, body, { tags, keys, delay, shardingKey } = {}) {
  const m = new Message(topic, tags || '', body);
  if (keys) m.keys = [ keys ];
  if (delay) m.delayTimeLevel = delay;
  if (shardingKey) m.shardingKey = shardingKey;
  return m;
}

async function waitFor(pred, timeoutS) {
  const end = Date.now() + timeoutS * 1000;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(200);
  }
  return pred();
}

async function smoke(args) {
  const checks = {};
  const info = {};
  const retryBody = `${RUN}-retry`;
  const main = new Recorder([ retryBody ]);
  const ordered = new Recorder();
  const share = [ new Recorder(), new Recorder() ];
  const consumers = [
    await startConsumer(args, args.group, main),
    await startConsumer(args, args.group + '_ORD', ordered),
    await startConsumer(args, args.group + '_SHR', share[0], { instanceName: `shr1-${RUN}` }),
    await startConsumer(args, args.group + '_SHR', share[1], { instanceName: `shr2-${RUN}` }),
  ];
  await sleep(args.settle * 1000);
  const p = await startProducer(args);
  const acked = [];
  const send = async (body, opts) => {
    try {
      const r = await p.send(newMsg(args.topic, body, opts));
      if (r.sendStatus === 'SEND_OK' && r.msgId) { acked.push(body); return r; }
      errors.push(`${body}: ${r.sendStatus}`);
    } catch (err) { errors.push(`${body}: ${err.message}`); }
  };

  for (let i = 0; i < 20; i++) await send(`${RUN}-sync-${i}`, { tags: i % 2 ? 'TagA' : 'TagB', keys: `k-${RUN}-${i}` });
  const delayBody = `${RUN}-delay`;
  const delaySent = Date.now();
  await send(delayBody, { tags: 'TagD', delay: 2 }); // level 2 = 5 s
  const orderKey = new Map();
  const sendQueue = new Map();
  for (let i = 0; i < 30; i++) {
    const k = i % 3;
    const body = `${RUN}-ord-${k}-${String(Math.floor(i / 3)).padStart(3, '0')}`;
    const r = await send(body, { tags: 'TagOrd', keys: `ok-${k}`, shardingKey: `ok-${k}` });
    if (r) { orderKey.set(body, k); sendQueue.set(body, Number(r.messageQueue.queueId)); }
  }
  await send(retryBody, { tags: 'TagR' });

  await waitFor(() => main.have(acked).length === acked.length && (main.got.get(retryBody) || []).length >= 2, args.timeout);
  const missing = acked.filter(b => !main.got.has(b)).sort();
  checks.all_acked_received = missing.length === 0;
  info.oneway = 'n/a (ali-ons has no oneway send)';
  const d = main.got.get(delayBody);
  info.delay_latency_s = d ? (d[0].t - delaySent) / 1000 : null;
  checks.delay_not_early = !!d && d[0].t - delaySent >= 4000;
  const r = main.got.get(retryBody) || [];
  info.retry_deliveries = r.map(x => x.rt);
  checks.retry_redelivered = r.length >= 2 && r[r.length - 1].rt >= 1;
  const tagged = main.got.get(`${RUN}-sync-1`);
  checks.tags_keys_roundtrip = !!tagged && tagged[0].tags === 'TagA' && tagged[0].keys === `k-${RUN}-1`;

  // same sharding key -> same queue (on send and on receive); per-queue order in the _ORD group
  const qOfKey = new Map();
  for (const [ b, k ] of orderKey) {
    if (!qOfKey.has(k)) qOfKey.set(k, new Set());
    qOfKey.get(k).add(sendQueue.get(b));
    for (const x of main.got.get(b) || []) qOfKey.get(k).add(x.q);
  }
  checks.orderly_same_key_same_queue = orderKey.size > 0 && [ ...qOfKey.values() ].every(s => s.size === 1);
  const orderBodies = [ ...orderKey.keys() ];
  await waitFor(() => ordered.have(orderBodies).length === orderBodies.length, 10);
  const perQ = new Map();
  for (const [ b, lst ] of ordered.got) {
    if (!b.startsWith(RUN)) continue;
    if (!perQ.has(lst[0].q)) perQ.set(lst[0].q, []);
    perQ.get(lst[0].q).push({ t: lst[0].t, off: lst[0].off, b });
  }
  let inOrder = true;
  for (const lst of perQ.values()) {
    // deliveries in arrival order must have increasing queue offsets, and per key increasing sequence
    const offs = lst.map(x => x.off);
    inOrder = inOrder && offs.every((o, i) => i === 0 || o > offs[i - 1]);
    for (let k = 0; k < 3; k++) {
      const seq = lst.map(x => x.b).filter(b => b.startsWith(`${RUN}-ord-${k}-`));
      inOrder = inOrder && seq.every((s, i) => i === 0 || s > seq[i - 1]);
    }
  }
  checks.orderly_consumed_in_order = perQ.size > 0 && inOrder && ordered.have(orderBodies).length === orderBodies.length;

  const union = () => new Set([ ...share[0].have(acked), ...share[1].have(acked) ]);
  await waitFor(() => union().size === acked.length, 10);
  info.shared_split = [ share[0].have(acked).length, share[1].have(acked).length ];
  checks.shared_group_nothing_missed = union().size === acked.length;
  checks.shared_group_both_used = info.shared_split.every(n => n > 0);
  checks.no_send_errors = errors.length === 0;

  await closeAll(p, consumers);
  const ok = Object.values(checks).every(Boolean);
  console.log(JSON.stringify({ client: 'node-ali-ons-3.12.0', mode: 'smoke', ok, acked: acked.length,
    missing: missing.slice(0, 20), errors: errors.slice(0, 10), checks, info }));
  return ok;
}

async function failover(args) {
  const rec = new Recorder();
  const c = await startConsumer(args, args.group, rec);
  await sleep(args.settle * 1000);
  const p = await startProducer(args);
  const acked = [];
  let failed = 0;
  let lastAck = Date.now();
  let gapMs = 0; // the longest time without an acknowledged send: the outage clients saw
  const end = Date.now() + args.seconds * 1000;
  // the leader is killed mid-run: a pass needs acknowledged sends in the last quarter too,
  // so a group that never served, or never came back, fails
  const late = end - args.seconds * 250;
  let ackedLate = 0;
  for (let i = 0; Date.now() < end; i++) {
    const body = `${RUN}-fo-${i}`;
    try {
      const r = await p.send(newMsg(args.topic, body, { keys: body }));
      if (r.sendStatus === 'SEND_OK') {
        acked.push(body);
        gapMs = Math.max(gapMs, Date.now() - lastAck);
        lastAck = Date.now();
        if (lastAck >= late) ackedLate++;
      } else failed++;
    } catch (err) {
      failed++;
      await sleep(100);
    }
    await sleep(args.interval);
  }
  await waitFor(() => rec.have(acked).length === acked.length, args.timeout);
  const missing = acked.filter(b => !rec.got.has(b));
  await closeAll(p, [ c ]);
  const ok = missing.length === 0 && ackedLate > 0;
  console.log(JSON.stringify({ client: 'node-ali-ons-3.12.0', mode: 'failover', ok, acked: acked.length,
    acked_last_quarter: ackedLate, received: acked.length - missing.length, missing: missing.length, missing_sample: missing.slice(0, 20), failed_sends: failed,
    longest_send_gap_s: gapMs / 1000 }));
  return ok;
}

async function closeAll(p, consumers) {
  const closing = [ p.close(), ...consumers.map(c => c.close()) ];
  await Promise.race([ Promise.all(closing).catch(() => {}), sleep(3000) ]);
}

(async () => {
  const args = parseArgs();
  const hardStop = setTimeout(() => { console.log(JSON.stringify({ client: 'node-ali-ons-3.12.0', mode: args.mode, ok: false, error: 'hard timeout' })); process.exit(1); },
    (args.mode === 'smoke' ? 88 : args.seconds + args.timeout + 60) * 1000);
  hardStop.unref();
  let ok = false;
  try {
    ok = args.mode === 'smoke' ? await smoke(args) : await failover(args);
  } catch (err) {
    console.log(JSON.stringify({ client: 'node-ali-ons-3.12.0', mode: args.mode, ok: false, error: err.message }));
  }
  process.exit(ok ? 0 : 1);
})();
