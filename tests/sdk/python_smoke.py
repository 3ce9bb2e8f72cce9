"""Official RocketMQ 5 Python SDK (rocketmq-python-client) against a running RaftMQ group.

Usage:
  python_smoke.py smoke ENDPOINTS
  python_smoke.py failover ENDPOINTS --seconds S --ready-file F --killed-file K

ENDPOINTS is what an application gives ClientConfiguration: host:port of one broker, or the
group's nodes joined by ';' (127.0.0.1:30911;127.0.0.1:30921;127.0.0.1:30931).

smoke sends a normal, three FIFO (same group, ordered) and a delay (+3 s) message, receives them
with a SimpleConsumer, changes the invisible time of one, acks all, and checks redelivery of the
unacked message with delivery_attempt 2.

failover sends and receives concurrently for S seconds; it touches F once 20 sends were
acknowledged, and the harness then SIGKILLs the leader and touches K. Afterwards it drains. It
fails unless every acknowledged send was received, and unless sends and receives succeeded again
after K appeared. A failed send is an unknown outcome (it may or may not arrive).

transaction runs a transactional producer (with a TransactionChecker) and a SimpleConsumer:
a committed half message is delivered, and not before its commit; a rolled-back one never is;
two half messages left open are checked back by the broker and the checker's answers hold
(one committed, one rolled back). With --ready-file/--killed-file it sends the four half
messages, touches F, waits for K (the harness SIGKILLs the leader in between) and then
commits, rolls back and waits for the check-backs, which the new leader must carry on.

recall sends two delay messages (+4 s) and a normal one, recalls one delay message with the
recall handle of its SendReceipt (a second recall of it must fail), and receives until well past
the delivery time: the normal and the other delay message arrive, the recalled one never does.

Prints one line per check and exits non-zero on failure.
"""
import argparse
import os
import sys
import threading
import time
import uuid

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer, TransactionChecker, TransactionResolution)


def log(msg):
    print(f"[python-sdk] {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def receive_until(consumer, want, invisible_s, deadline_s):
    got = []
    end = time.time() + deadline_s
    while len(got) < want and time.time() < end:
        for m in consumer.receive(32, invisible_s) or []:
            got.append(m)
    return got


def smoke(args):
    run = uuid.uuid4().hex[:8]
    topic = f"SdkTopic_{run}"
    group = f"SdkGroup_{run}"
    cfg = ClientConfiguration(args.endpoint, Credentials())

    producer = Producer(cfg, (topic,))
    producer.startup()
    sent = {}
    m = Message()
    m.topic, m.body, m.tag, m.keys = topic, f"normal-{run}".encode(), args.tag, f"k-{run}"
    r = producer.send(m)
    sent[r.message_id] = "normal"
    log(f"sent normal {r.message_id}")
    for i in range(3):
        m = Message()
        m.topic, m.body, m.tag, m.message_group = topic, f"fifo-{i}-{run}".encode(), args.tag, "order-1"
        r = producer.send(m)
        sent[r.message_id] = f"fifo-{i}"
    log("sent 3 FIFO messages in group order-1")
    m = Message()
    m.topic, m.body, m.tag = topic, f"delay-{run}".encode(), args.tag
    delay_at = int(time.time()) + 3
    m.delivery_timestamp = delay_at
    r = producer.send(m)
    sent[r.message_id] = "delay"
    delay_id = r.message_id
    log(f"sent delay message {delay_id} (+3 s)")
    producer.shutdown()

    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression(args.tag)}, await_duration=5)
    consumer.startup()
    fifo_seen = []
    seen = {}
    end = time.time() + 30
    redelivery_probe = None
    while len(seen) < len(sent) and time.time() < end:
        for msg in consumer.receive(32, 15) or []:
            body = msg.body.decode()
            if body.startswith("fifo-"):
                fifo_seen.append(int(body.split("-")[1]))
            if body.startswith("delay-") and time.time() < delay_at - 1:
                fail(f"delay message arrived {delay_at - time.time():.1f} s early")
            if body.startswith("normal-") and redelivery_probe is None:
                # Keep this one unacked: it must come back with delivery_attempt 2.
                redelivery_probe = msg
                consumer.change_invisible_duration(msg, 10)
                log("changed the invisible time of the normal message to 10 s (not acked)")
                seen[msg.message_id] = body
                continue
            seen[msg.message_id] = body
            consumer.ack(msg)
    if len(seen) != len(sent):
        fail(f"received {len(seen)} of {len(sent)} messages: {sorted(seen.values())}")
    if fifo_seen != sorted(fifo_seen):
        fail(f"FIFO order broken: {fifo_seen}")
    log(f"received all {len(sent)} messages; FIFO order {fifo_seen}")

    again = None
    end = time.time() + 25
    while again is None and time.time() < end:
        for msg in consumer.receive(32, 15) or []:
            if msg.message_id == redelivery_probe.message_id:
                again = msg
            else:
                consumer.ack(msg)
    if again is None:
        fail("the unacked message was not redelivered")
    if again.delivery_attempt != 2:
        fail(f"redelivery has delivery_attempt {again.delivery_attempt}, want 2")
    consumer.ack(again)
    log("unacked message redelivered with delivery_attempt 2, then acked")
    consumer.shutdown()


def failover(args):
    run = uuid.uuid4().hex[:8]
    topic = f"SdkFail_py_{run}"
    group = f"SdkFailGroup_py_{run}"
    cfg = ClientConfiguration(args.endpoint, Credentials())
    producer = Producer(cfg, (topic,))
    producer.startup()
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression()}, await_duration=5)
    consumer.startup()
    acked, received = set(), set()
    lock = threading.Lock()
    tally = {"send_ok": 0, "send_failed": 0, "send_ok_after_kill": 0,
             "receive_ok": 0, "receive_failed": 0, "receive_ok_after_kill": 0, "ack_failed": 0}
    end = time.time() + args.seconds

    def produce():
        for i in range(100_000):
            if time.time() >= end:
                return
            m = Message()
            m.topic, m.body = topic, f"m-{i}".encode()
            try:
                r = producer.send(m)
            except Exception:  # an unknown outcome: it may still arrive
                tally["send_failed"] += 1
                time.sleep(0.1)
                continue
            with lock:
                acked.add(r.message_id)
            tally["send_ok"] += 1
            tally["send_ok_after_kill"] += os.path.exists(args.killed_file)
            if tally["send_ok"] == 20:
                open(args.ready_file, "w").close()
            time.sleep(0.005)

    def take(msgs):
        for msg in msgs or []:
            with lock:
                received.add(msg.message_id)
            try:
                consumer.ack(msg)
            except Exception:  # it comes again after its invisible time
                tally["ack_failed"] += 1

    def consume():
        while time.time() < end:
            try:
                msgs = consumer.receive(32, 15)
            except Exception:
                tally["receive_failed"] += 1
                time.sleep(0.1)
                continue
            tally["receive_ok"] += 1
            tally["receive_ok_after_kill"] += bool(msgs) and os.path.exists(args.killed_file)
            take(msgs)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(f"tally {tally}")
    drain_end = time.time() + 45
    while not acked <= received and time.time() < drain_end:
        try:
            take(consumer.receive(32, 15))
        except Exception:
            time.sleep(0.1)
    missing = acked - received
    log(f"acked sends {len(acked)}, received {len(received)}, missing {len(missing)}")
    if not os.path.exists(args.killed_file):
        fail("the harness never killed the leader")
    if missing:
        fail(f"{len(missing)} acknowledged sends were never received: {sorted(missing)[:5]}")
    if tally["send_ok_after_kill"] < 10 or tally["receive_ok_after_kill"] == 0:
        fail(f"the client did not recover after the kill: {tally}")
    producer.shutdown()
    consumer.shutdown()


class Decisions(TransactionChecker):
    """Answers the broker's check-back from a table of bodies; records what it was asked."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def check(self, message):
        body = message.body.decode()
        self.asked.append(body)
        log(f"checker asked about {body!r}")
        return self.answers.get(body, TransactionResolution.ROLLBACK)


def end_with_retry(tx, commit, deadline_s, ended_by_check):
    """Commits or rolls back, retrying while the group elects a new leader. The transaction
    may be over already: ended by a check-back the checker answered the same way, or by an
    earlier attempt whose outcome was unknown."""
    end = time.time() + deadline_s
    tried = False
    while True:
        try:
            (tx.commit if commit else tx.rollback)()
            return
        except Exception as e:  # noqa: BLE001 - the SDK raises several kinds
            if "no open transaction" in str(e) and (tried or ended_by_check()):
                return
            if time.time() > end:
                fail(f"{'commit' if commit else 'rollback'} kept failing: {e}")
            tried = True
            time.sleep(0.5)


def transaction(args):
    run = uuid.uuid4().hex[:8]
    topic = f"TxTopic_{run}"
    group = f"TxGroup_{run}"
    cfg = ClientConfiguration(args.endpoint, Credentials())
    bodies = {k: f"{k}-{run}" for k in ("commit", "rollback", "orphan-commit", "orphan-rollback")}
    # The local transactions' outcomes: what the checker answers when the broker asks (also
    # about the two the producer ends itself, should a check-back come first).
    committed = {bodies["commit"], bodies["orphan-commit"]}
    checker = Decisions({b: TransactionResolution.COMMIT if b in committed
                         else TransactionResolution.ROLLBACK for b in bodies.values()})
    producer = Producer(cfg, (topic,), checker)
    producer.startup()
    # A 5 s long poll (the broker's shortest) ends before the first check-back (transactionTimeOut:
    # 6 s by default, 10 s in tests/sdk/run.sh).
    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression()}, await_duration=5)
    consumer.startup()
    try:
        txs = {}
        for k, body in bodies.items():
            tx = producer.begin_transaction()
            m = Message()
            m.topic, m.body, m.keys = topic, body.encode(), k
            receipt = producer.send(m, tx)
            if not receipt.transaction_id:
                fail(f"half message {k}: no transaction id in the send receipt")
            txs[k] = tx
        log(f"4 half messages sent (transaction ids from the receipts)")
        seen = set()
        never = {bodies["rollback"], bodies["orphan-rollback"]}
        ended_by_us = set()  # committed by this producer: may arrive from then on

        def take(messages):
            for m in messages or []:
                body = m.body.decode()
                if body in never:
                    fail(f"delivered a rolled-back message: {body}")
                if body not in checker.asked and body not in ended_by_us:
                    fail(f"delivered before it was committed: {body}")
                seen.add(body)
                consumer.ack(m)

        # Before the producer ends anything, only what a check-back committed may arrive.
        take(consumer.receive(32, 10))
        log(f"before the commit only check-back commits arrived: {sorted(seen)}")
        if args.ready_file:
            open(args.ready_file, "w").close()
            end = time.time() + 60
            while not os.path.exists(args.killed_file):
                if time.time() > end:
                    fail("the harness never killed the leader")
                time.sleep(0.1)
            log("the leader was killed; ending the transactions on the new one")
        end_with_retry(txs["commit"], True, 30, lambda: bodies["commit"] in checker.asked)
        end_with_retry(txs["rollback"], False, 30, lambda: bodies["rollback"] in checker.asked)
        ended_by_us.add(bodies["commit"])
        want = committed
        end = time.time() + 90
        while time.time() < end and not want <= seen:
            take(consumer.receive(32, 10))
        if not want <= seen:
            fail(f"not delivered in 90 s: {sorted(want - seen)} (checker asked {checker.asked})")
        log(f"committed and checked-back-committed delivered: {sorted(seen)}")
        take(receive_until(consumer, 1, 10, 3))
        for k in ("orphan-commit", "orphan-rollback"):
            if bodies[k] not in checker.asked:
                fail(f"the broker never checked {k} back (asked: {checker.asked})")
        log(f"checker asked {len(checker.asked)} time(s); rolled-back messages never delivered")
    finally:
        producer.shutdown()
        consumer.shutdown()


def recall(args):
    run = uuid.uuid4().hex[:8]
    topic = f"SdkRecall_{run}"
    group = f"SdkRecallGroup_{run}"
    cfg = ClientConfiguration(args.endpoint, Credentials())
    producer = Producer(cfg, (topic,))
    producer.startup()
    due = int(time.time()) + 4
    receipts = {}
    for name in ("recalled", "kept", "normal"):
        m = Message()
        m.topic, m.body = topic, f"{name}-{run}".encode()
        if name != "normal":
            m.delivery_timestamp = due
        receipts[name] = producer.send(m)
    if not receipts["recalled"].recall_handle:
        fail("a delay message's SendReceipt has no recall handle")
    recalled_id = producer.recall_message(topic, receipts["recalled"].recall_handle)
    if recalled_id != receipts["recalled"].message_id:
        fail(f"recall answered message id {recalled_id}, want {receipts['recalled'].message_id}")
    log(f"recalled delay message {recalled_id} before its time")
    try:
        producer.recall_message(topic, receipts["recalled"].recall_handle)
        fail("a second recall of the same message succeeded")
    except Exception as e:  # the SDK raises its own exception types
        log(f"a second recall is refused: {type(e).__name__}")
    producer.shutdown()

    consumer = SimpleConsumer(cfg, group, {topic: FilterExpression("*")}, await_duration=5)
    consumer.startup()
    seen = set()
    end = due + 6
    while time.time() < end:
        for msg in consumer.receive(32, 15) or []:
            seen.add(msg.body.decode().split("-")[0])
            consumer.ack(msg)
    consumer.shutdown()
    if "recalled" in seen:
        fail("the recalled delay message was delivered")
    if seen != {"kept", "normal"}:
        fail(f"received {sorted(seen)}, want the kept delay message and the normal one")
    log("received the normal and the kept delay message; the recalled one never came")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("smoke")
    s.add_argument("endpoint")
    s.add_argument("--tag", default="smoke")
    f = sub.add_parser("failover")
    f.add_argument("endpoint")
    f.add_argument("--seconds", type=int, required=True)
    f.add_argument("--ready-file", required=True)
    f.add_argument("--killed-file", required=True)
    t = sub.add_parser("transaction")
    t.add_argument("endpoint")
    t.add_argument("--ready-file")
    t.add_argument("--killed-file")
    r = sub.add_parser("recall")
    r.add_argument("endpoint")
    args = ap.parse_args()
    {"smoke": smoke, "failover": failover, "transaction": transaction, "recall": recall}[
        args.mode
    ](args)
    log("PASS")


if __name__ == "__main__":
    main()
