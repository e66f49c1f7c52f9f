//! The scheduler alone: admission, chunked prefill interleaved with decode, the prompt
//! cache, eviction, context limits and cancellation.

use super::*;

fn sched(slots: usize, n_ctx: usize, chunk: usize, queue: usize) -> Scheduler {
    Scheduler::new(Limits {
        slots,
        n_ctx,
        chunk,
        queue,
    })
}

/// Runs steps until nothing is left, sampling token 7 for everyone; returns the steps.
fn drain(s: &mut Scheduler) -> Vec<Work> {
    let mut rows = Vec::new();
    let mut steps = Vec::new();
    while let Some(w) = s.next(&mut rows) {
        match &w {
            Work::Prefill { slot, range } => {
                if s.prefilled(*slot, range.clone()) {
                    s.accept(*slot, 7);
                }
            }
            Work::Decode => {
                for r in rows.clone() {
                    s.accept(r.seq, 7);
                }
            }
        }
        steps.push(w);
        assert!(steps.len() < 10_000, "the scheduler does not finish");
    }
    steps
}

#[test]
fn a_prompt_goes_in_by_chunks_then_decodes_to_max_tokens() {
    let mut s = sched(2, 64, 4, 4);
    s.submit(1, (0..10).collect(), 3).unwrap();
    let steps = drain(&mut s);
    assert_eq!(
        steps,
        vec![
            Work::Prefill {
                slot: 0,
                range: 0..4
            },
            Work::Prefill {
                slot: 0,
                range: 4..8
            },
            Work::Prefill {
                slot: 0,
                range: 8..10
            },
            Work::Decode,
            Work::Decode,
        ]
    );
    // The prompt and the two tokens fed; the third sampled one was never fed.
    assert_eq!(s.cached(0).len(), 12);
    assert_eq!(s.load(), (0, 0));
}

#[test]
fn prompt_chunks_alternate_with_decode_steps() {
    let mut s = sched(2, 64, 4, 4);
    let mut rows = Vec::new();
    s.submit(1, vec![1, 2], 100).unwrap();
    let w = s.next(&mut rows).unwrap();
    assert_eq!(
        w,
        Work::Prefill {
            slot: 0,
            range: 0..2
        }
    );
    assert!(s.prefilled(0, 0..2));
    assert_eq!(s.accept(0, 5), None);
    // A long prompt arrives while request 1 decodes: chunk, decode, chunk, decode...
    s.submit(2, (0..12).collect(), 100).unwrap();
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let w = s.next(&mut rows).unwrap();
        match &w {
            Work::Prefill { slot, range } => {
                assert_eq!(*slot, 1);
                s.prefilled(1, range.clone());
                kinds.push('P');
            }
            Work::Decode => {
                assert_eq!(rows.len(), 1, "only request 1 decodes yet");
                assert_eq!(
                    rows[0],
                    Row {
                        seq: 0,
                        pos: s.cached(0).len(),
                        token: 5
                    }
                );
                s.accept(0, 5);
                kinds.push('D');
            }
        }
    }
    // The last step fed a prompt, so a decode step comes first.
    assert_eq!(kinds.iter().collect::<String>(), "DPDPDP");
    // Request 2's prompt is in (3 chunks of 4): both decode in one step now.
    s.accept(1, 9);
    assert_eq!(s.next(&mut rows), Some(Work::Decode));
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1],
        Row {
            seq: 1,
            pos: 12,
            token: 9
        }
    );
}

#[test]
fn short_prompts_go_in_back_to_back() {
    let mut s = sched(4, 64, 16, 4);
    let mut rows = Vec::new();
    s.submit(1, vec![1, 2], 100).unwrap();
    let Some(Work::Prefill { slot, range }) = s.next(&mut rows) else {
        panic!()
    };
    s.prefilled(slot, range);
    s.accept(slot, 5);
    // Three short prompts arrive while request 1 decodes: all three before its next step.
    for id in 2..5 {
        s.submit(id, vec![id as u32; 3], 100).unwrap();
    }
    for _ in 0..3 {
        let Some(Work::Prefill { slot, range }) = s.next(&mut rows) else {
            panic!("a short prompt waits behind a decode step")
        };
        assert!(s.prefilled(slot, range));
        s.accept(slot, 5);
    }
    assert_eq!(s.next(&mut rows), Some(Work::Decode));
    assert_eq!(rows.len(), 4);
}

#[test]
fn the_queue_is_bounded_and_waits_for_a_slot() {
    let mut s = sched(1, 64, 8, 1);
    s.submit(1, vec![1, 2, 3], 2).unwrap();
    s.submit(2, vec![4], 2).unwrap();
    let mut rows = Vec::new();
    s.next(&mut rows);
    // Slot taken by 1, queue holds 2: the next is refused.
    assert_eq!(s.submit(3, vec![5], 2), Err(Reject::Busy(1)));
    assert_eq!(s.load(), (1, 1));
    drain(&mut s);
    assert_eq!(s.load(), (0, 0));
    s.submit(3, vec![5], 2).unwrap();
    // No queue at all: a request runs when a slot is free, else it is refused.
    let mut s = sched(1, 64, 8, 0);
    s.submit(1, vec![1], 2).unwrap();
    assert_eq!(s.submit(2, vec![1], 2), Err(Reject::Busy(0)));
}

#[test]
fn prompts_that_leave_no_room_are_refused() {
    let mut s = sched(1, 8, 8, 1);
    assert_eq!(
        s.submit(1, (0..8).collect(), 2),
        Err(Reject::TooLong {
            tokens: 8,
            n_ctx: 8
        })
    );
    assert_eq!(s.submit(1, vec![], 2), Err(Reject::Empty));
    // 7 prompt tokens leave one position: exactly one token comes out, then Length.
    s.submit(2, (0..7).collect(), 100).unwrap();
    let mut rows = Vec::new();
    let Some(Work::Prefill { range, .. }) = s.next(&mut rows) else {
        panic!("a prefill first")
    };
    assert!(s.prefilled(0, range));
    assert_eq!(
        s.accept(0, 1),
        None,
        "token 1 can still be fed at position 7"
    );
    assert_eq!(s.next(&mut rows), Some(Work::Decode));
    assert_eq!(rows[0].pos, 7);
    assert_eq!(s.accept(0, 2), Some(Finish::Length), "the context is full");
    assert_eq!(s.cached(0).len(), 8);
}

#[test]
fn a_follow_up_prompt_reuses_its_cached_prefix() {
    let mut s = sched(2, 64, 16, 2);
    s.submit(1, vec![1, 2, 3, 4], 2).unwrap();
    drain(&mut s);
    assert_eq!(s.cached(0), &[1, 2, 3, 4, 7]);
    // Another conversation takes the other (empty, least recently used) slot...
    s.submit(2, vec![9, 9], 1).unwrap();
    // ...and the follow-up of the first finds its slot and feeds only the new tokens.
    s.submit(3, vec![1, 2, 3, 4, 7, 7, 5], 1).unwrap();
    let mut rows = Vec::new();
    let mut fed = Vec::new();
    while let Some(w) = s.next(&mut rows) {
        if let Work::Prefill { slot, range } = w {
            fed.push((s.job_in(slot).unwrap(), slot, range.clone()));
            if s.prefilled(slot, range) {
                s.accept(slot, 7);
            }
        }
    }
    assert_eq!(fed, vec![(2, 1, 0..2), (3, 0, 5..7)]);
}

#[test]
fn an_identical_prompt_feeds_its_last_token_again() {
    let mut s = sched(1, 64, 16, 1);
    s.submit(1, vec![1, 2, 3], 1).unwrap();
    drain(&mut s);
    s.submit(2, vec![1, 2, 3], 1).unwrap();
    let mut rows = Vec::new();
    assert_eq!(
        s.next(&mut rows),
        Some(Work::Prefill {
            slot: 0,
            range: 2..3
        })
    );
}

#[test]
fn a_short_shared_prefix_does_not_evict_a_conversation() {
    let mut s = sched(2, 64, 16, 2);
    s.submit(1, vec![1, 2, 3, 4, 5, 6], 1).unwrap();
    drain(&mut s);
    // Shares one token of four with slot 0: it takes the empty slot 1.
    s.submit(2, vec![1, 9, 9, 9], 1).unwrap();
    let mut rows = Vec::new();
    assert_eq!(
        s.next(&mut rows),
        Some(Work::Prefill {
            slot: 1,
            range: 0..4
        })
    );
}

#[test]
fn the_least_recently_used_cache_is_evicted() {
    let mut s = sched(2, 64, 16, 2);
    for (id, p) in [(1, vec![1, 1]), (2, vec![2, 2]), (3, vec![1, 1, 5])] {
        s.submit(id, p, 1).unwrap();
        drain(&mut s);
    }
    // Slot 0 holds 1 1 5 (just used), slot 1 holds 2 2: a new prompt evicts slot 1.
    s.submit(4, vec![3, 3], 1).unwrap();
    let mut rows = Vec::new();
    assert_eq!(
        s.next(&mut rows),
        Some(Work::Prefill {
            slot: 1,
            range: 0..2
        })
    );
    assert_eq!(s.cached(1), &[] as &[u32]);
}

#[test]
fn cancelled_requests_leave_at_once() {
    let mut s = sched(1, 64, 2, 2);
    s.submit(1, (0..6).collect(), 10).unwrap();
    s.submit(2, vec![1], 10).unwrap();
    s.submit(3, vec![2], 10).unwrap();
    let mut rows = Vec::new();
    let Some(Work::Prefill { slot, range }) = s.next(&mut rows) else {
        panic!()
    };
    s.prefilled(slot, range);
    // Cancel the running one mid-prompt and a waiting one: the other waiter runs next.
    assert!(s.cancel(1));
    assert!(s.cancel(3));
    assert!(!s.cancel(3));
    assert_eq!(s.load(), (0, 1));
    let w = s.next(&mut rows);
    assert_eq!(s.job_in(0), Some(2));
    assert_eq!(
        w,
        Some(Work::Prefill {
            slot: 0,
            range: 0..1
        })
    );
    // Cancelled mid-decode: the slot frees before its next step.
    assert!(s.prefilled(0, 0..1));
    s.accept(0, 4);
    assert!(s.cancel(2));
    assert_eq!(s.next(&mut rows), None);
}

#[test]
fn every_request_completes_under_random_load() {
    use proptest::prelude::*;
    proptest!(|(jobs in prop::collection::vec((1usize..40, 1usize..30), 1..40),
                slots in 1usize..5, chunk in 1usize..9)| {
        let mut s = sched(slots, 48, chunk, 64);
        let mut want = std::collections::HashMap::new();
        for (i, (len, max)) in jobs.iter().enumerate() {
            s.submit(i as u64, (0..*len as u32).collect(), *max).unwrap();
            want.insert(i as u64, (*len, *max));
        }
        let mut rows = Vec::new();
        let mut made = std::collections::HashMap::<u64, usize>::new();
        let mut done = std::collections::HashSet::new();
        let mut steps = 0;
        while let Some(w) = s.next(&mut rows) {
            steps += 1;
            prop_assert!(steps < 100_000);
            let slots_run: Vec<usize> = match &w {
                Work::Prefill { slot, range } => {
                    prop_assert!(range.end - range.start <= chunk);
                    if s.prefilled(*slot, range.clone()) { vec![*slot] } else { vec![] }
                }
                Work::Decode => {
                    prop_assert!(rows.len() <= slots);
                    rows.iter().map(|r| r.seq).collect()
                }
            };
            for slot in slots_run {
                let id = s.job_in(slot).unwrap();
                *made.entry(id).or_default() += 1;
                if s.accept(slot, 3).is_some() {
                    done.insert(id);
                }
            }
        }
        prop_assert_eq!(done.len(), jobs.len());
        for (id, (len, max)) in want {
            // max tokens, or as many as fit: the last sampled one is never fed.
            prop_assert_eq!(made[&id], max.min(49 - len));
        }
    });
}
