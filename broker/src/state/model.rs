//! A proptest model of the consumer state: random sends, receives, acks, invisibility
//! changes, dead-letter moves, time passing and snapshot/restore, checked step by step
//! against a reference model that keeps one plain record per message.
//!
//! proptest prints the failing case (and its seed in `proptest-regressions/`); set
//! `PROPTEST_CASES` for a longer run.

use proptest::prelude::*;

use super::*;

#[allow(clippy::cast_possible_truncation)]
fn at(o: u64) -> usize {
    o as usize
}

const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Send(u8),
    Receive {
        batch: u8,
        invisible: u16,
    },
    /// Ack the k-th handle handed out so far (stale ones included).
    Ack(u16),
    Change {
        k: u16,
        invisible: u16,
    },
    Dlq(u16),
    Wait(u16),
    SnapshotRestore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..6).prop_map(Op::Send),
        (1u8..6, 1u16..400).prop_map(|(batch, invisible)| Op::Receive { batch, invisible }),
        any::<u16>().prop_map(Op::Ack),
        (any::<u16>(), 1u16..400).prop_map(|(k, invisible)| Op::Change { k, invisible }),
        any::<u16>().prop_map(Op::Dlq),
        (1u16..500).prop_map(Op::Wait),
        Just(Op::SnapshotRestore),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Ready,
    Out {
        visible_at: u64,
        attempt: u32,
        epoch: u64,
    },
    Acked,
    Dead,
}

/// The reference: one record per message of a one-queue topic, and the rules in their
/// plainest form.
#[derive(Default)]
struct Reference {
    msgs: Vec<Msg>,
    dead: u64,
}

impl Reference {
    /// Expired in-flight messages first (by offset), then never-delivered ones, up to `batch`.
    fn receive(&mut self, index: u64, now: u64, batch: usize, invisible: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        for (o, m) in self.msgs.iter_mut().enumerate() {
            if out.len() >= batch {
                break;
            }
            if let Msg::Out {
                visible_at,
                attempt,
                ..
            } = *m
            {
                if visible_at > now {
                    continue;
                }
                if attempt >= MAX_ATTEMPTS {
                    *m = Msg::Dead;
                    self.dead += 1;
                    continue;
                }
                *m = Msg::Out {
                    visible_at: now + invisible,
                    attempt: attempt + 1,
                    epoch: index,
                };
                out.push((o as u64, attempt + 1));
            }
        }
        for (o, m) in self.msgs.iter_mut().enumerate() {
            if out.len() >= batch {
                break;
            }
            if *m == Msg::Ready {
                *m = Msg::Out {
                    visible_at: now + invisible,
                    attempt: 1,
                    epoch: index,
                };
                out.push((o as u64, 1));
            }
        }
        out
    }

    fn current(&self, offset: u64, epoch: u64) -> bool {
        matches!(
            self.msgs.get(at(offset)),
            Some(Msg::Out { epoch: e, .. }) if *e == epoch
        )
    }

    fn floor(&self) -> u64 {
        self.msgs
            .iter()
            .position(|m| !matches!(m, Msg::Acked | Msg::Dead))
            .unwrap_or(self.msgs.len()) as u64
    }
}

struct Run {
    state: BrokerState,
    reference: Reference,
    index: u64,
    now: u64,
    handles: Vec<String>,
}

fn message() -> StoredMessage {
    StoredMessage::sample("t", "m")
}

impl Run {
    fn new() -> Run {
        let mut state = BrokerState::new(
            StateConfig {
                auto_create_topic_enable: false,
                default_topic_queue_nums: 1,
            },
            ConsumeQueues::in_memory(),
        );
        state
            .apply(
                1,
                &Command::UpdateTopic {
                    topic: "t".into(),
                    queues: 1,
                },
            )
            .unwrap();
        Run {
            state,
            reference: Reference::default(),
            index: 1,
            now: 1000,
            handles: Vec::new(),
        }
    }

    fn apply(&mut self, c: Command) -> ApplyResult {
        self.index += 1;
        self.state.apply(self.index, &c).unwrap().unwrap()
    }

    fn handle(&self, k: u16) -> Option<String> {
        (!self.handles.is_empty()).then(|| self.handles[k as usize % self.handles.len()].clone())
    }

    /// Whether the reference considers `handle` current.
    fn valid(&self, handle: &str) -> bool {
        decode_handle(handle).is_some_and(|(_, o, e)| self.reference.current(o, e))
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Send(n) => {
                let messages = (0..n).map(|_| message()).collect();
                let r = self.apply(Command::Send {
                    now_ms: self.now,
                    messages,
                });
                let ApplyResult::Sent(r) = r else {
                    panic!("{r:?}")
                };
                for sent in r {
                    let offset = sent.unwrap().offset;
                    assert_eq!(offset, self.reference.msgs.len() as u64);
                    self.reference.msgs.push(Msg::Ready);
                }
            }
            Op::Receive { batch, invisible } => self.receive(batch, invisible),
            Op::Ack(k) => {
                let Some(h) = self.handle(k) else { return };
                let expect = self.valid(&h);
                let r = self.apply(Command::Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    handles: vec![h.clone()],
                });
                assert_eq!(r, ApplyResult::Acked(vec![ok_if(expect, &h)]));
                if expect {
                    let (_, o, _) = decode_handle(&h).unwrap();
                    self.reference.msgs[at(o)] = Msg::Acked;
                }
            }
            Op::Change { k, invisible } => self.change(k, invisible),
            Op::Dlq(k) => {
                let Some(h) = self.handle(k) else { return };
                let expect = self.valid(&h);
                let r = self.apply(Command::ForwardToDeadLetter {
                    group: "g".into(),
                    topic: "t".into(),
                    handle: h.clone(),
                });
                assert_eq!(r, ApplyResult::DeadLettered(ok_if(expect, &h)));
                if expect {
                    let (_, o, _) = decode_handle(&h).unwrap();
                    self.reference.msgs[at(o)] = Msg::Dead;
                    self.reference.dead += 1;
                }
            }
            Op::Wait(ms) => self.now += u64::from(ms),
            Op::SnapshotRestore => {
                let snap = self.state.snapshot();
                let cq = std::mem::replace(&mut self.state.cq, ConsumeQueues::in_memory());
                let (restored, holes) = BrokerState::restore(&snap, cq).unwrap();
                assert_eq!(holes, 0);
                assert_eq!(restored, self.state, "restore gives back the same state");
                self.state = restored;
            }
        }
        self.check();
    }

    fn receive(&mut self, batch: u8, invisible: u16) {
        let r = self.apply(Command::Receive(Receive {
            now_ms: self.now,
            group: "g".into(),
            topic: "t".into(),
            tags: vec![],
            batch: u32::from(batch),
            invisible_ms: u64::from(invisible),
            max_attempts: MAX_ATTEMPTS,
        }));
        let ApplyResult::Received(Ok(got)) = r else {
            panic!("{r:?}")
        };
        let mut want =
            self.reference
                .receive(self.index, self.now, batch as usize, u64::from(invisible));
        want.sort_unstable();
        let mut seen: Vec<(u64, u32)> = got.iter().map(|d| (d.offset, d.attempt)).collect();
        seen.sort_unstable();
        assert_eq!(seen, want, "deliveries (offset, attempt)");
        self.handles.extend(got.into_iter().map(|d| d.handle));
    }

    fn change(&mut self, k: u16, invisible: u16) {
        let Some(h) = self.handle(k) else { return };
        let expect = self.valid(&h);
        let r = self.apply(Command::ChangeInvisible {
            now_ms: self.now,
            group: "g".into(),
            topic: "t".into(),
            handle: h.clone(),
            invisible_ms: u64::from(invisible),
        });
        let ApplyResult::Changed(r) = r else {
            panic!("{r:?}")
        };
        assert_eq!(r.is_ok(), expect, "change-invisible of {h}");
        if let Ok(new) = r {
            let (_, o, epoch) = decode_handle(&new).unwrap();
            if let Msg::Out { attempt, .. } = self.reference.msgs[at(o)] {
                self.reference.msgs[at(o)] = Msg::Out {
                    visible_at: self.now + u64::from(invisible),
                    attempt,
                    epoch,
                };
            }
            self.handles.push(new);
        }
    }

    fn check(&self) {
        let depth = self.state.queue_depths("t").unwrap();
        assert_eq!(depth, vec![self.reference.msgs.len() as u64]);
        let dlq = self.state.queue_depths("%DLQ%g").map_or(0, |d| d[0]);
        assert_eq!(dlq, self.reference.dead, "dead letters");
        if let Some(p) = self.state.group_progress("g", "t") {
            let out = self
                .reference
                .msgs
                .iter()
                .filter(|m| matches!(m, Msg::Out { .. }))
                .count();
            assert_eq!(
                p[0].0,
                self.reference.floor(),
                "consumer offset (ack floor)"
            );
            assert_eq!(p[0].2, out, "in flight");
        }
    }
}

fn ok_if(valid: bool, handle: &str) -> Result<(), ApplyError> {
    if valid {
        Ok(())
    } else {
        Err(ApplyError::InvalidHandle {
            handle: handle.to_string(),
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn consumer_state_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        // Everything still open can be finished: wait past every deadline and drain.
        run.now += 1_000_000;
        let mut rounds = 0;
        while run.reference.floor() < run.reference.msgs.len() as u64 {
            rounds += 1;
            prop_assert!(rounds < 1000, "drain did not finish");
            run.receive(8, 10);
            let open: Vec<String> = run.handles.iter().filter(|h| run.valid(h)).cloned().collect();
            for h in open {
                let r = run.apply(Command::Ack { group: "g".into(), topic: "t".into(), handles: vec![h.clone()] });
                prop_assert_eq!(r, ApplyResult::Acked(vec![Ok(())]));
                let (_, o, _) = decode_handle(&h).unwrap();
                run.reference.msgs[at(o)] = Msg::Acked;
            }
            run.check();
        }
    }
}
