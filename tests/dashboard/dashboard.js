// The built-in dashboard in a real headless Chromium, against a running fast-try group.
//
//   node dashboard.js --dashboard http://127.0.0.1:5557 --brokers '127.0.0.1:30911;…' \
//     --mqadmin target/release/mqadmin --shots DIR
//
// Checks, each through the page as a user clicks it:
//   1. Cluster: three nodes, the leader the page names is the one `mqadmin clusterList` names;
//   2. Topics: a topic created with the page's form appears in `mqadmin topicList`;
//   3. Messages: a message sent with `mqadmin sendMessage -k KEY` is found by topic and key, with
//      its body and properties;
//   4. Consumers: after `mqadmin consumeMessage`, the group is listed with its progress.
// A screenshot of each page goes to --shots. Prints one JSON line; exits 1 if a check fails.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const puppeteer = require('puppeteer-core');

function args() {
  const a = { dashboard: 'http://127.0.0.1:5557', brokers: '127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931', mqadmin: 'target/release/mqadmin', shots: 'target/dashboard', chromium: '/usr/bin/chromium' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) a[argv[i].replace(/^--/, '')] = argv[i + 1];
  return a;
}

const RUN = Date.now().toString(36);
const checks = {};
const info = {};

function mqadmin(a, ...rest) {
  return execFileSync(a.mqadmin, rest, { encoding: 'utf8', timeout: 30000 });
}

async function waitFor(fn, ms, what) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} not within ${ms} ms${last ? ': ' + last.message : ''}`);
}

async function clusterPage(page, a) {
  await page.goto(`${a.dashboard}/#cluster`, { waitUntil: 'networkidle0' });
  const rows = await waitFor(() => page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => ({ node: tr.dataset.node, role: tr.dataset.role }))).then((r) => r.length === 3 && r.some((x) => x.role === 'LEADER') ? r : null), 15000, 'three nodes with a leader');
  const shown = rows.find((r) => r.role === 'LEADER').node;
  const leaderCard = await page.$eval('#leader', (e) => e.textContent.trim());
  const truth = mqadmin(a, 'clusterList', '-n', a.brokers, '--leader-id').trim();
  info.cluster = { rows, leader_card: leaderCard, mqadmin_leader: truth };
  checks.three_nodes = rows.length === 3;
  checks.leader_is_mqadmins = shown === truth && leaderCard === truth;
  // Let the TPS chart draw a few points.
  await new Promise((r) => setTimeout(r, 4500));
  await page.screenshot({ path: path.join(a.shots, 'cluster.png'), fullPage: true });
}

async function topicsPage(page, a) {
  const topic = `DashTopic_${RUN}`;
  await page.goto(`${a.dashboard}/#topics`, { waitUntil: 'networkidle0' });
  await page.type('#topic-name', topic);
  await page.$eval('#topic-queues', (e) => { e.value = '4'; });
  await page.click('#topic-create');
  const result = await waitFor(() => page.$eval('#topic-result', (e) => e.className.includes('ok') || e.className.includes('err') ? e.textContent : null), 15000, 'the save answer');
  await waitFor(() => page.$(`#topics tr[data-topic="${topic}"]`), 10000, 'the topic in the page\'s table');
  const listed = await waitFor(() => mqadmin(a, 'topicList', '-n', a.brokers).split('\n').map((l) => l.trim()).includes(topic), 15000, 'the topic in mqadmin topicList');
  info.topics = { topic, result };
  checks.topic_created_from_page_in_mqadmin_topicList = Boolean(listed);
  await page.screenshot({ path: path.join(a.shots, 'topics.png'), fullPage: true });
  return topic;
}

async function messagesPage(page, a, topic) {
  const key = `order-${RUN}`;
  const body = `hello from mqadmin ${RUN}`;
  mqadmin(a, 'sendMessage', '-n', a.brokers, '-t', topic, '-p', body, '-k', key, '-c', 'TagDash');
  await page.goto(`${a.dashboard}/#messages`, { waitUntil: 'networkidle0' });
  await page.type('#lookup-topic', topic);
  await page.type('#lookup-key', key);
  // The key index is built as the message is applied on this node: search until it is there.
  const found = await waitFor(async () => {
    await page.click('#lookup-go');
    await new Promise((r) => setTimeout(r, 300));
    return page.$$eval('#lookup-messages .msg', (ms) => ms.map((m) => m.textContent)).then((t) => t.length ? t : null);
  }, 15000, 'the message by key');
  info.messages = { key, found: found.length };
  checks.message_found_by_key_with_body = found.some((t) => t.includes(body) && t.includes('TagDash'));
  await page.screenshot({ path: path.join(a.shots, 'messages.png'), fullPage: true });
}

async function consumersPage(page, a, topic) {
  const group = `DashGroup_${RUN}`;
  mqadmin(a, 'consumeMessage', '-n', a.brokers, '-t', topic, '-g', group, '-c', '1');
  await page.goto(`${a.dashboard}/#consumers`, { waitUntil: 'networkidle0' });
  const row = await waitFor(async () => {
    await page.goto(`${a.dashboard}/#consumers`, { waitUntil: 'networkidle0' });
    return page.$eval(`#groups tr[data-group="${group}"]`, (tr) => tr.textContent).catch(() => null);
  }, 15000, 'the group in the consumers table');
  info.consumers = { group, row };
  checks.group_listed_with_progress = row.includes(topic);
  await page.screenshot({ path: path.join(a.shots, 'consumers.png'), fullPage: true });
}

(async () => {
  const a = args();
  require('node:fs').mkdirSync(a.shots, { recursive: true });
  const browser = await puppeteer.launch({ executablePath: a.chromium, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const errors = [];
  let ok = false;
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    await clusterPage(page, a);
    const topic = await topicsPage(page, a);
    await messagesPage(page, a, topic);
    await consumersPage(page, a, topic);
    checks.no_page_errors = errors.length === 0;
    ok = Object.values(checks).every(Boolean);
  } catch (e) {
    errors.push(e.stack || String(e));
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ ok, checks, info, errors, shots: a.shots }));
  process.exit(ok ? 0 : 1);
})();
