// The official RocketMQ 5 Node.js SDK (npm rocketmq-client-nodejs) against a running RaftMQ group.
//
// Usage:
//   node node_smoke.js smoke ENDPOINT
//   node node_smoke.js failover ENDPOINT --seconds S --ready-file F --killed-file K
//   node node_smoke.js refuses-multi-address 'a:p;b:p'
//
// ENDPOINT is what an application gives the client's `endpoints` option: one `host:port`. (This
// SDK cannot take several: it turns `a:p;b:p` into the gRPC target `a:p,b:p` without an `ipv4:`
// scheme, which grpc-js then fails to resolve as a DNS name; see README "SDKs".)
//
// smoke sends a normal, three FIFO (one message group) and a delay (+3 s) message, receives them
// with a SimpleConsumer, changes the invisible time of one, acks all, and checks that the unacked
// one comes back with deliveryAttempt 2.
//
// failover sends and receives concurrently for S seconds; it touches F once 20 sends were
// acknowledged, and the harness then SIGKILLs the leader and touches K. Afterwards it drains. It
// fails unless every acknowledged send was received, and unless sends and receives succeeded
// again after K appeared. A failed send is an unknown outcome (it may or may not arrive).
//
// refuses-multi-address checks that this SDK still fails to start with several addresses, as
// README says; when an SDK release fixes that, this check fails and README must change.
//
// One line per check on stdout; exit 0 on PASS.
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');
const { Producer, SimpleConsumer } = require('rocketmq-client-nodejs');

const log = (line) => console.log(`[node-sdk] ${line}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Failure extends Error {}
const fail = (message) => {
  throw new Failure(message);
};

async function start(endpoints, topic, group) {
  const producer = new Producer({ endpoints, namespace: '', topics: [topic] });
  await producer.startup();
  const consumer = new SimpleConsumer({
    endpoints,
    namespace: '',
    consumerGroup: group,
    subscriptions: new Map([[topic, '*']]),
    awaitDuration: 5000,
  });
  await consumer.startup();
  return { producer, consumer };
}

async function smoke(endpoints) {
  const run = crypto.randomBytes(4).toString('hex');
  const topic = `SdkTopic_js_${run}`;
  const { producer, consumer } = await start(endpoints, topic, `SdkGroup_js_${run}`);
  const sent = new Set();
  const normal = await producer.send({ topic, tag: 'smoke', body: Buffer.from('normal') });
  sent.add(normal.messageId);
  log(`sent normal ${normal.messageId}`);
  for (let i = 0; i < 3; i++) {
    const body = Buffer.from(`fifo-${i}`);
    sent.add((await producer.send({ topic, tag: 'smoke', body, messageGroup: 'order-1' })).messageId);
  }
  log('sent 3 FIFO messages in group order-1');
  const delayAt = Date.now() + 3000;
  const delayed = await producer.send({ topic, tag: 'smoke', body: Buffer.from('delay'), delay: 3000 });
  sent.add(delayed.messageId);
  log(`sent delay message ${delayed.messageId} (+3 s)`);
  await producer.shutdown();

  const seen = new Set();
  const fifo = [];
  let probe = null;
  const end = Date.now() + 30000;
  while (seen.size < sent.size && Date.now() < end) {
    for (const m of await consumer.receive(32, 15000)) {
      const body = m.body.toString();
      if (body.startsWith('fifo-')) fifo.push(Number(body.split('-')[1]));
      if (body === 'delay' && Date.now() < delayAt - 1000) {
        fail(`delay message arrived ${(delayAt - Date.now()) / 1000} s early`);
      }
      seen.add(m.messageId);
      if (body === 'normal' && probe === null) {
        // Keep this one unacked: it must come back with deliveryAttempt 2.
        probe = m;
        await consumer.changeInvisibleDuration(m, 10000);
        log('changed the invisible time of the normal message to 10 s (not acked)');
        continue;
      }
      await consumer.ack(m);
    }
  }
  if (seen.size !== sent.size) fail(`received ${seen.size} of ${sent.size} messages`);
  if (fifo.join() !== '0,1,2') fail(`FIFO order broken: ${fifo}`);
  log(`received all ${sent.size} messages; FIFO order ${fifo}`);
  let again = null;
  const redeliveryEnd = Date.now() + 25000;
  while (again === null && Date.now() < redeliveryEnd) {
    for (const m of await consumer.receive(32, 15000)) {
      if (m.messageId === probe.messageId) again = m;
      else await consumer.ack(m);
    }
  }
  if (again === null) fail('the unacked message was not redelivered');
  if (again.deliveryAttempt !== 2) fail(`redelivery has deliveryAttempt ${again.deliveryAttempt}, want 2`);
  await consumer.ack(again);
  log('unacked message redelivered with deliveryAttempt 2, then acked');
  await consumer.shutdown();
}

async function failover(endpoints, seconds, readyFile, killedFile) {
  const run = crypto.randomBytes(4).toString('hex');
  const topic = `SdkFail_js_${run}`;
  const { producer, consumer } = await start(endpoints, topic, `SdkFailGroup_js_${run}`);
  const acked = new Set();
  const received = new Set();
  const tally = { sendOk: 0, sendFailed: 0, sendOkAfterKill: 0, receiveOk: 0, receiveFailed: 0, receiveOkAfterKill: 0, ackFailed: 0 };
  const end = Date.now() + seconds * 1000;
  const take = async (messages) => {
    for (const m of messages) {
      received.add(m.messageId);
      try {
        await consumer.ack(m);
      } catch {
        tally.ackFailed++; // it comes again after its invisible time
      }
    }
  };
  const produce = async () => {
    for (let i = 0; i < 100000 && Date.now() < end; i++) {
      try {
        const r = await producer.send({ topic, body: Buffer.from(`m-${i}`) });
        acked.add(r.messageId);
        tally.sendOk++;
        if (fs.existsSync(killedFile)) tally.sendOkAfterKill++;
        if (tally.sendOk === 20) fs.writeFileSync(readyFile, 'ready');
      } catch {
        tally.sendFailed++; // an unknown outcome: it may still arrive
        await sleep(100);
      }
      await sleep(5);
    }
  };
  const consume = async () => {
    while (Date.now() < end) {
      let messages;
      try {
        messages = await consumer.receive(32, 15000);
      } catch {
        tally.receiveFailed++;
        await sleep(100);
        continue;
      }
      tally.receiveOk++;
      if (messages.length > 0 && fs.existsSync(killedFile)) tally.receiveOkAfterKill++;
      await take(messages);
    }
  };
  await Promise.all([produce(), consume()]);
  log(`tally ${JSON.stringify(tally)}`);
  const drainEnd = Date.now() + 45000;
  const isMissing = (id) => !received.has(id);
  while ([...acked].some(isMissing) && Date.now() < drainEnd) {
    try {
      await take(await consumer.receive(32, 15000));
    } catch {
      await sleep(100);
    }
  }
  const missing = [...acked].filter(isMissing);
  log(`acked sends ${acked.size}, received ${received.size}, missing ${missing.length}`);
  if (!fs.existsSync(killedFile)) fail('the harness never killed the leader');
  if (missing.length > 0) fail(`${missing.length} acknowledged sends were never received: ${missing.slice(0, 5)}`);
  if (tally.sendOkAfterKill < 10 || tally.receiveOkAfterKill === 0) {
    fail(`the client did not recover after the kill: ${JSON.stringify(tally)}`);
  }
  await producer.shutdown();
  await consumer.shutdown();
}

async function refusesMultiAddress(endpoints) {
  const topic = `SdkTopic_js_${crypto.randomBytes(4).toString('hex')}`;
  const producer = new Producer({ endpoints, namespace: '', topics: [topic] });
  try {
    await producer.startup();
  } catch (e) {
    if (!String(e.message).includes('Failed to fetch topic routes')) throw e;
    log(`startup with '${endpoints}' fails as README says: ${e.message}`);
    return;
  }
  await producer.shutdown();
  fail(`startup with '${endpoints}' succeeded: this SDK now takes several addresses; update README "SDKs"`);
}

function parseFailover(rest) {
  const opts = {};
  for (let i = 0; i + 1 < rest.length; i += 2) opts[rest[i]] = rest[i + 1];
  const seconds = Number(opts['--seconds']);
  if (!seconds || !opts['--ready-file'] || !opts['--killed-file']) {
    fail('failover needs --seconds, --ready-file and --killed-file');
  }
  return [seconds, opts['--ready-file'], opts['--killed-file']];
}

async function main() {
  const [mode, endpoints, ...rest] = process.argv.slice(2);
  if (mode === 'smoke' && endpoints) await smoke(endpoints);
  else if (mode === 'failover' && endpoints) await failover(endpoints, ...parseFailover(rest));
  else if (mode === 'refuses-multi-address' && endpoints) await refusesMultiAddress(endpoints);
  else fail('usage: smoke ENDPOINT | failover ENDPOINT --seconds S --ready-file F --killed-file K');
}

main().then(
  () => {
    log('PASS');
    process.exit(0);
  },
  (e) => {
    log(`FAIL: ${e instanceof Failure ? e.message : e.stack}`);
    process.exit(1);
  },
);
