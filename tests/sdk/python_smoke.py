"""Official RocketMQ 5 Python SDK (rocketmq-python-client) against a running RaftMQ group.

Usage: python_smoke.py ENDPOINT [--phase before|after]
  ENDPOINT   host:port of any broker (followers forward writes to the leader)

Sends a normal, a FIFO (same group, ordered) and a delay (+3 s) message, receives them with a
SimpleConsumer, changes the invisible time of one, acks all, and checks redelivery of an unacked
message with delivery_attempt 2. Prints one line per check and exits non-zero on failure.
"""
import argparse
import sys
import time
import uuid

from rocketmq import (ClientConfiguration, Credentials, FilterExpression, Message, Producer,
                      SimpleConsumer)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--tag", default="smoke")
    args = ap.parse_args()
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
    log("PASS")


if __name__ == "__main__":
    main()
