// The official RocketMQ 5 Node.js SDK (npm rocketmq-client-nodejs) against a running RaftMQ group.
//
// Usage:
//   node node_smoke.js smoke ENDPOINT
//   node node_smoke.js failover ENDPOINT --seconds S --ready-file F --killed-file K
//   node node_smoke.js refuses-multi-address 'a:p;b:p'
//   node node_smoke.js transaction ENDPOINT --check-interval S [--ready-file F --killed-file K]
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
// transaction runs a transactional producer (with a TransactionChecker) and a SimpleConsumer:
// four half messages; a receive before any commit gets none of them; the producer commits one
// (delivered exactly once) and rolls one back (never delivered); the two left open are checked
// back by the broker and the checker's answers hold (one delivered exactly once, one never).
// After all that it keeps receiving for three check intervals (S, the brokers'
// transactionCheckInterval in seconds): nothing rolled back may arrive and nothing arrive twice;
// the broker must not ask about a transaction after the producer ended it (but for a check round
// already under way) and, without a kill, must ask once about each one left open.
// With --ready-file/--killed-file it touches F after the half messages and that first receive,
// waits for K (the harness SIGKILLs the leader in between) and then ends the transactions,
// retrying while the group elects a new leader; the check rounds must go on under the new one.
//
// refuses-multi-address checks that this SDK still fails to start with several addresses, as
// README says; when an SDK release fixes that, this check fails and README must change.
//
// One line per check on stdout; exit 0 on PASS.
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');
const { Producer, SimpleConsumer } = require('rocketmq-client-nodejs');
// The SDK's index does not export the protobuf enums; its own examples import them from here.
const { TransactionResolution } = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb');

const log = (line) => console.log(`[node-sdk] ${line}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Failure extends Error {}
const fail = (message) => {
  throw new Failure(message);
};

async function start(endpoints, topic, group, checker) {
  const producer = new Producer({ endpoints, namespace: '', topics: [topic], checker });
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

// Commits or rolls back; true if this call ended it. With retries (after a leader kill) it tries
// again while the group elects a new leader; the transaction may then be over already, ended by
// an earlier attempt whose outcome was unknown. Either way a check-back the checker answered may
// have ended it first.
async function endTransaction(tx, commit, retries, endedByCheck) {
  const what = commit ? 'commit' : 'rollback';
  const end = Date.now() + 30000;
  let tried = false;
  for (;;) {
    try {
      await (commit ? tx.commit() : tx.rollback());
      return true;
    } catch (e) {
      if (String(e.message).includes('no open transaction') && (tried || endedByCheck())) return false;
      if (!retries) fail(`${what}: ${e.message}`);
      if (Date.now() > end) fail(`${what} kept failing: ${e.message}`);
      log(`${what} failed, retrying: ${e.message}`);
      tried = true;
      await sleep(500);
    }
  }
}

// A check round in flight when a transaction ended may still ask about it this long after.
const CHECK_GRACE_MS = 2000;

async function transaction(endpoints, checkIntervalS, readyFile, killedFile) {
  const run = crypto.randomBytes(4).toString('hex');
  const topic = `TxTopic_js_${run}`;
  const body = (kind) => `${kind}-${run}`;
  // The local transactions' outcomes: what the checker answers when the broker asks (also about
  // the two the producer ends itself, should a check-back come first).
  const committed = new Set([body('commit'), body('orphan-commit')]);
  const never = new Set([body('rollback'), body('orphan-rollback')]);
  const asks = []; // { body, at }: every time the broker asked the checker
  const wasAsked = (b) => asks.some((a) => a.body === b);
  const checker = {
    async check(messageView) {
      const b = messageView.body.toString();
      asks.push({ body: b, at: Date.now() });
      log(`checker asked about '${b}'`);
      return committed.has(b) ? TransactionResolution.COMMIT : TransactionResolution.ROLLBACK;
    },
  };
  const { producer, consumer } = await start(endpoints, topic, `TxGroup_js_${run}`, checker);
  const txs = {};
  for (const kind of ['commit', 'rollback', 'orphan-commit', 'orphan-rollback']) {
    const tx = producer.beginTransaction();
    const receipt = await producer.send({ topic, body: Buffer.from(body(kind)), keys: [kind] }, tx);
    if (!receipt.transactionId) fail(`half message ${kind}: no transaction id in the send receipt`);
    txs[kind] = tx;
  }
  log('4 half messages sent (transaction ids from the receipts)');

  const endedByUs = new Set(); // may arrive from the producer's first attempt to commit on
  const deliveries = new Set();
  const ackFailed = new Set(); // such a message comes again after its invisible time
  const take = async (messages) => {
    for (const m of messages) {
      const b = m.body.toString();
      if (never.has(b)) fail(`delivered a rolled-back message: ${b}`);
      if (!wasAsked(b) && !endedByUs.has(b)) fail(`delivered before it was committed: ${b}`);
      if (deliveries.has(b) && !ackFailed.delete(b)) fail(`delivered twice: ${b}`);
      deliveries.add(b);
      try {
        await consumer.ack(m);
      } catch (e) {
        if (!killedFile) throw e;
        log(`ack of ${b} failed: ${e.message}`);
        ackFailed.add(b);
      }
    }
  };
  // Receive errors are tolerated only while the group recovers from the kill.
  const receive = async (tolerate) => {
    try {
      return await consumer.receive(32, 15000);
    } catch (e) {
      if (!tolerate) throw e;
      log(`receive failed: ${e.message}`);
      await sleep(500);
      return [];
    }
  };

  // Before the producer ends anything, only what a check-back committed may arrive.
  await take(await receive(false));
  log(`before the commit only check-back commits arrived: [${[...deliveries]}]`);
  if (readyFile) {
    fs.writeFileSync(readyFile, 'ready');
    const end = Date.now() + 60000;
    while (!fs.existsSync(killedFile)) {
      if (Date.now() > end) fail('the harness never killed the leader');
      await sleep(100);
    }
    log('the leader was killed; ending the transactions on the new one');
  }
  const endedAt = new Map(); // ended by this producer's own call: never to be asked about later
  endedByUs.add(body('commit'));
  for (const [kind, commit] of [['commit', true], ['rollback', false]]) {
    if (await endTransaction(txs[kind], commit, Boolean(readyFile), () => wasAsked(body(kind)))) {
      endedAt.set(body(kind), Date.now());
    } else {
      log(`${kind}: a check-back ended it first`);
    }
  }
  log('committed one, rolled back one');

  const orphans = [body('orphan-commit'), body('orphan-rollback')];
  const settled = () => [...committed].every((b) => deliveries.has(b)) && orphans.every(wasAsked);
  const end = Date.now() + 90000;
  while (!settled() && Date.now() < end) await take(await receive(Boolean(readyFile)));
  if (!settled()) {
    fail(`not settled in 90 s: delivered [${[...deliveries]}], checker asked [${asks.map((a) => a.body)}]`);
  }
  log(`committed and checked-back-committed delivered: [${[...deliveries]}]`);
  const asksBefore = asks.length;
  const windowEnd = Date.now() + 3 * checkIntervalS * 1000;
  while (Date.now() < windowEnd) await take(await receive(false));
  for (const [b, at] of endedAt) {
    const late = asks.find((a) => a.body === b && a.at > at + CHECK_GRACE_MS);
    if (late) fail(`the broker asked about ${b} ${(late.at - at) / 1000} s after the producer ended it`);
  }
  if (!readyFile) {
    // An answer that reached the broker ends the transaction: it is asked once. (After a kill
    // an answer may be lost with its node, and the broker rightly asks again.)
    for (const b of orphans) {
      const n = asks.filter((a) => a.body === b).length;
      if (n !== 1) fail(`the checker was asked ${n} times about ${b}; its first answer should have ended it`);
    }
  }
  log(`over ${3 * checkIntervalS} s more (three check intervals): nothing rolled back or twice delivered; ` +
    `checker asked ${asks.length} time(s) in all, ${asks.length - asksBefore} of them in that time`);
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

function parseTransaction(rest) {
  const opts = {};
  for (let i = 0; i + 1 < rest.length; i += 2) opts[rest[i]] = rest[i + 1];
  const checkIntervalS = Number(opts['--check-interval']);
  if (!checkIntervalS || Boolean(opts['--ready-file']) !== Boolean(opts['--killed-file'])) {
    fail('transaction needs --check-interval, and --ready-file with --killed-file or neither');
  }
  return [checkIntervalS, opts['--ready-file'], opts['--killed-file']];
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
  else if (mode === 'transaction' && endpoints) await transaction(endpoints, ...parseTransaction(rest));
  else {
    fail('usage: smoke ENDPOINT | failover ENDPOINT --seconds S --ready-file F --killed-file K | ' +
      'transaction ENDPOINT --check-interval S [--ready-file F --killed-file K]');
  }
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
