#!/usr/bin/env python3
"""RocketMQ 4.x remoting acceptance test with PyPI rocketmq==0.4.4 (C++ core).

  client4.py smoke    --namesrv H:P --topic T --group G
  client4.py failover --namesrv H:P --topic T --group G --seconds 30

Prints one JSON line; exits 1 if any check fails.
"""
import argparse, ctypes, json, sys, threading, time, uuid
from collections import defaultdict

from rocketmq.client import Message, Producer, PushConsumer, RecvMessage
from rocketmq.ffi import dll

RUN = uuid.uuid4().hex[:8]
CONSUME_SUCCESS, RECONSUME_LATER = 0, 1


def s(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


class Recorder:
    """Collects received messages keyed by body; thread-safe (callbacks run on C++ threads)."""

    def __init__(self, fail_once=()):
        self.lock = threading.Lock()
        self.got = defaultdict(list)     # body -> [(time, queue_id, queue_offset, reconsume_times, tags, keys)]
        self.fail_once = set(fail_once)  # bodies to answer RECONSUME_LATER the first time

    def __call__(self, m):
        body = s(m.body)
        rec = (time.time(), m.queue_id, m.queue_offset, m.reconsume_times, s(m.tags), s(m.keys))
        with self.lock:
            self.got[body].append(rec)
            if body in self.fail_once:
                self.fail_once.discard(body)
                return RECONSUME_LATER
        return CONSUME_SUCCESS

    def have(self, bodies):
        with self.lock:
            return [b for b in bodies if b in self.got]


def consumer(args, group, rec, orderly=False, instance=None):
    c = PushConsumer(group, orderly=orderly)
    c.set_namesrv_addr(args.namesrv)
    if instance:
        c.set_instance_name(instance)
    c.set_thread_count(2)

    def cb(_consumer, cmsg):  # raw callback so we can return RECONSUME_LATER
        try:
            return rec(RecvMessage(cmsg))
        except Exception as e:  # never let an exception escape into C++
            print("callback error:", e, file=sys.stderr)
            return RECONSUME_LATER

    rc = dll.Subscribe(c._handle, args.topic.encode(), b"*")
    assert rc == 0, "Subscribe failed"
    c._register_callback(cb)
    c.start()
    return c


def producer(args):
    p = Producer(args.group + "_P", timeout=3000)
    p.set_namesrv_addr(args.namesrv)
    p.start()
    return p


def msg(topic, body, tags=None, keys=None, delay=None):
    m = Message(topic)
    m.set_body(body)
    if tags:
        m.set_tags(tags)
    if keys:
        m.set_keys(keys)
    if delay:
        m.set_delay_time_level(delay)
    return m


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def smoke(args):
    checks, info = {}, {}
    retry_body = f"{RUN}-retry"
    main = Recorder()
    retry = Recorder(fail_once=[retry_body])  # own group: the C++ core fails the whole pulled batch
    ordered = Recorder()
    share = [Recorder(), Recorder()]
    consumers = [consumer(args, args.group, main),
                 consumer(args, args.group + "_RTY", retry),
                 consumer(args, args.group + "_ORD", ordered, orderly=True),
                 consumer(args, args.group + "_SHR", share[0], instance=f"shr1-{RUN}"),
                 consumer(args, args.group + "_SHR", share[1], instance=f"shr2-{RUN}")]
    time.sleep(args.settle)  # let consumers rebalance before we send
    p = producer(args)
    acked, errors = [], []

    def send(body, **kw):
        try:
            r = p.send_sync(msg(args.topic, body, **kw))
            if r.status == 0 and r.msg_id:
                acked.append(body)
                return r
            errors.append(f"{body}: status {r.status}")
        except Exception as e:
            errors.append(f"{body}: {e}")

    # 1. sync sends with tags and keys
    for i in range(20):
        send(f"{RUN}-sync-{i}", tags="TagA" if i % 2 else "TagB", keys=f"k-{RUN}-{i}")
    # 2. oneway
    oneway_body = f"{RUN}-oneway"
    try:
        p.send_oneway(msg(args.topic, oneway_body, tags="TagO"))
    except Exception as e:
        errors.append(f"oneway: {e}")
    # 3. delay level 2 = 5 s
    delay_body, delay_sent = f"{RUN}-delay", time.time()
    send(delay_body, tags="TagD", delay=2)
    # 4. orderly: 3 keys x 10 messages, selector arg = key index
    order_keys = {}
    for i in range(30):
        k = i % 3
        body = f"{RUN}-ord-{k}-{i // 3:03d}"
        try:
            r = p.send_orderly(msg(args.topic, body, tags="TagOrd", keys=f"ok-{k}"), k)
            if r.status == 0:
                acked.append(body)
                order_keys[body] = k
        except Exception as e:
            errors.append(f"{body}: {e}")
    # 5. the retry message (main consumer fails it once)
    send(retry_body, tags="TagR")

    # wait: every acked send and the oneway in the main group; retry twice
    def main_done():
        return (len(main.have(acked + [oneway_body])) == len(acked) + 1
                and len(retry.got.get(retry_body, [])) >= 2)
    wait_for(main_done, args.timeout)
    missing = sorted(set(acked) - set(main.have(acked)))
    checks["all_acked_received"] = not missing
    checks["oneway_received"] = bool(main.have([oneway_body]))
    d = main.got.get(delay_body)
    info["delay_latency_s"] = round(d[0][0] - delay_sent, 2) if d else None
    checks["delay_not_early"] = bool(d) and d[0][0] - delay_sent >= 4.0
    r = retry.got.get(retry_body, [])
    info["retry_deliveries"] = [x[3] for x in r]
    checks["retry_redelivered"] = len(r) >= 2 and r[-1][3] >= 1
    tagged = main.got.get(f"{RUN}-sync-1")
    checks["tags_keys_roundtrip"] = bool(tagged) and tagged[0][4] == "TagA" and tagged[0][5] == f"k-{RUN}-1"

    # orderly: same key -> one queue, and per-queue order preserved in the orderly group
    wait_for(lambda: len(ordered.have(list(order_keys))) == len(order_keys), 10)
    q_of_key = defaultdict(set)
    for b, k in order_keys.items():
        for x in main.got.get(b, []):
            q_of_key[k].add(x[1])
    if not all(len(v) == 1 for v in q_of_key.values()):
        info["orderly_queues_per_key"] = {k: sorted(v) for k, v in q_of_key.items()}
        info["orderly_deliveries"] = {b: [x[1:4] for x in main.got.get(b, [])] for b in order_keys}
    checks["orderly_same_key_same_queue"] = bool(order_keys) and all(len(v) == 1 for v in q_of_key.values())
    per_q = defaultdict(list)
    with ordered.lock:
        for b, lst in ordered.got.items():
            if b.startswith(RUN):
                per_q[lst[0][1]].append((lst[0][0], lst[0][2], b))
    in_order = True
    for q, lst in per_q.items():
        offs = [o for _, o, _ in sorted(lst)]
        in_order &= offs == sorted(offs)
        if offs != sorted(offs):
            info.setdefault("order_violations", {})[q] = [(o, b) for _, o, b in sorted(lst)]
        for k in range(3):
            seq = [b for _, _, b in sorted(lst) if b.startswith(f"{RUN}-ord-{k}-")]
            in_order &= seq == sorted(seq)
    checks["orderly_consumed_in_order"] = bool(per_q) and in_order and \
        len(ordered.have(list(order_keys))) == len(order_keys)

    # shared group: union has everything, both members got some
    wait_for(lambda: len(set(share[0].have(acked)) | set(share[1].have(acked))) == len(acked), 10)
    union = set(share[0].have(acked)) | set(share[1].have(acked))
    info["shared_split"] = [len(share[0].have(acked)), len(share[1].have(acked))]
    checks["shared_group_nothing_missed"] = union == set(acked)
    checks["shared_group_both_used"] = all(info["shared_split"])
    checks["no_send_errors"] = not errors

    p.shutdown()
    for c in consumers:
        c.shutdown()
    ok = all(checks.values())
    print(json.dumps({"client": "python-rocketmq-0.4.4", "mode": "smoke", "ok": ok, "acked": len(acked),
                      "missing": missing[:20], "errors": errors[:10], "checks": checks, "info": info}))
    return ok


def failover(args):
    rec = Recorder()
    c = consumer(args, args.group, rec)
    time.sleep(args.settle)
    p = producer(args)
    acked, failed, i = [], 0, 0
    last_ack, gap = time.time(), 0.0  # the longest time without an acknowledged send
    end = time.time() + args.seconds
    # the leader is killed mid-run: a pass needs acknowledged sends in the last quarter too,
    # so a group that never served, or never came back, fails
    late = end - args.seconds / 4
    acked_late = 0
    while time.time() < end:
        body = f"{RUN}-fo-{i}"
        i += 1
        try:
            r = p.send_sync(msg(args.topic, body, keys=body))
            if r.status == 0:
                acked.append(body)
                gap = max(gap, time.time() - last_ack)
                last_ack = time.time()
                acked_late += last_ack >= late
            else:
                failed += 1
        except Exception:
            failed += 1
            time.sleep(0.1)
        time.sleep(args.interval)
    wait_for(lambda: len(rec.have(acked)) == len(acked), args.timeout)
    missing = sorted(set(acked) - set(rec.have(acked)))
    p.shutdown()
    c.shutdown()
    ok = not missing and acked_late > 0
    print(json.dumps({"client": "python-rocketmq-0.4.4", "mode": "failover", "ok": ok, "acked": len(acked),
                      "acked_last_quarter": acked_late,
                      "received": len(acked) - len(missing), "missing": len(missing),
                      "missing_sample": missing[:20], "failed_sends": failed,
                      "longest_send_gap_s": round(gap, 3)}))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["smoke", "failover"])
    ap.add_argument("--namesrv", default="127.0.0.1:9876")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--interval", type=float, default=0.02, help="pause between failover sends")
    ap.add_argument("--settle", type=float, default=12,
                    help="seconds to let consumers rebalance (the C++ core rebalances extra consumers of a process only on its 10 s timer)")
    ap.add_argument("--timeout", type=float, default=35, help="seconds to wait for deliveries")
    args = ap.parse_args()
    import os
    limit = 88 if args.mode == "smoke" else args.seconds + args.timeout + 60
    def hard_stop():
        print(json.dumps({"client": "python-rocketmq-0.4.4", "mode": args.mode, "ok": False, "error": "hard timeout"}), flush=True)
        os._exit(1)
    threading.Timer(limit, hard_stop).start()
    ok = smoke(args) if args.mode == "smoke" else failover(args)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
